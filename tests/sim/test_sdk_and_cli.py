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
