"""The unmodified official SDK against ``python -m engine.sim`` in a subprocess, and the CLI's
startup line, argument checks and signal handling. These tests are synchronous (the SDK uses
requests and threads)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.sim.cli import main

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"simulator listening on http://127\.0\.0\.1:(\d+) \(ws://127\.0\.0\.1:(\d+)/ws\)"
)


@contextmanager
def simulator(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.sim", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout=10)
        assert result, "simulator did not print its listening line within 10 s"
        m = LINE.fullmatch(result[0].rstrip("\n"))
        assert m is not None, f"unexpected first line {result[0]!r}"
        assert m.group(1) == m.group(2)
        yield proc, int(m.group(1))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_official_sdk_unchanged() -> None:
    from hyperliquid.info import Info

    with simulator("--seed", "1") as (_proc, port):
        info = Info(base_url=f"http://127.0.0.1:{port}", skip_ws=False, perp_dexs=["xyz"])
        try:
            assert info.coin_to_asset["xyz:SILVER"] == 110026
            assert info.coin_to_asset["xyz:RIVN"] == 110027
            assert info.coin_to_asset["xyz:CL"] == 110029
            assert info.asset_to_sz_decimals[110003] == 4  # GOLD
            meta = info.meta(dex="xyz")
            assert len(meta["universe"]) == 42
            assert meta["universe"][26]["name"] == "xyz:SILVER"
            state = info.user_state("0x0116a3d95994bcc7d6a84380ed6256fbb32cd25d", dex="xyz")
            assert state["assetPositions"] == []
            assert info.open_orders("0x0116a3d95994bcc7d6a84380ed6256fbb32cd25d", dex="xyz") == []

            got = threading.Event()
            received: list[Any] = []

            def on_bbo(msg: Any) -> None:
                received.append(msg)
                got.set()

            info.subscribe({"type": "bbo", "coin": "xyz:GOLD"}, on_bbo)
            assert got.wait(5), "no bbo message within 5 s"
            msg = received[0]
            assert msg["channel"] == "bbo" and msg["data"]["coin"] == "xyz:GOLD"
            assert len(msg["data"]["bbo"]) == 2
        finally:
            info.disconnect_websocket()


def test_sdk_with_dex_position() -> None:
    from hyperliquid.info import Info

    with simulator("--dex-position", "2", "--markets", "30") as (_proc, port):
        info = Info(base_url=f"http://127.0.0.1:{port}", skip_ws=True, perp_dexs=["xyz"])
        assert info.coin_to_asset["xyz:SILVER"] == 120026  # xyz is perpDexs[2] here
        assert "xyz:GME" not in info.coin_to_asset


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_exits_zero_on_signal(sig: signal.Signals) -> None:
    with simulator("--seed", "2", "--rate", "1000", "--aligned") as (proc, _port):
        proc.send_signal(sig)
        assert proc.wait(timeout=5) == 0
        assert proc.stdout is not None and proc.stdout.read() == ""  # exactly one stdout line


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--markets", "0"]) == 2
    assert main(["--markets", "43"]) == 2
    assert main(["--dex-position", "0"]) == 2
    assert main(["--rate", "-1"]) == 2
    assert "error" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--port", "nope"])


def test_official_sdk_exchange_trades_through_an_agent() -> None:
    """The SDK's Exchange (REST /exchange) with an API wallet: rest, cancel, market IOC.

    The SDK signs with the testnet source "b" for any non-mainnet URL, hence ``--testnet``."""
    from eth_account import Account
    from hyperliquid.exchange import Exchange
    from hyperliquid.utils.types import Cloid

    master = Account.from_key("0x" + "11" * 32).address
    agent = Account.from_key("0x" + "22" * 32)
    with simulator(
        "--testnet",
        "--account",
        f"{master}=5000",
        "--agent",
        f"{agent.address}={master}",
        "--match-latency-ms",
        "20",
    ) as (_proc, port):
        url = f"http://127.0.0.1:{port}"
        ex = Exchange(agent, url, account_address=master, perp_dexs=["xyz"])
        book = ex.info.l2_snapshot("xyz:GOLD")
        bid = float(book["levels"][0][0]["px"])
        cloid = Cloid.from_str("0x" + "ab" * 16)
        res = ex.order(
            "xyz:GOLD", True, 0.01, round(bid * 0.95), {"limit": {"tif": "Gtc"}}, cloid=cloid
        )
        assert res["status"] == "ok", res
        oid = res["response"]["data"]["statuses"][0]["resting"]["oid"]
        assert ex.info.query_order_by_cloid(master, cloid)["order"]["status"] == "open"
        assert [o["oid"] for o in ex.info.open_orders(master, dex="xyz")] == [oid]
        res = ex.cancel("xyz:GOLD", oid)
        assert res["response"]["data"]["statuses"] == ["success"]
        res = ex.market_open("xyz:GOLD", True, 0.01)
        filled = res["response"]["data"]["statuses"][0]["filled"]
        assert filled["totalSz"] == "0.01"
        state = ex.info.user_state(master, dex="xyz")
        assert state["assetPositions"][0]["position"]["szi"] == "0.01"
        assert ex.info.user_state(master)["assetPositions"] == []
        assert len(ex.info.user_fills(master)) == 1


def test_cli_rejects_bad_trading_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--account", "nope"]) == 2
    assert main(["--account", "0x12=5"]) == 2
    assert main(["--agent", "0x" + "22" * 20 + "=0x" + "11" * 20]) == 2  # no such master
    assert main(["--match-latency-ms", "-1"]) == 2
    assert "error" in capsys.readouterr().err
