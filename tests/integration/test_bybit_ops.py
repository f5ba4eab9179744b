"""Operating the funding app (:class:`engine.funding_app.FundingApp`) like an operator would,
against the Bybit simulator over loopback: the READY line and systemd's ``STATUS=`` name the
funding pairs; ``python -m engine kill`` (the real command, in its own process) flattens both
legs, the perp reduce-only, and the engine exits 0; the daily-loss breaker trips on the day's
net P&L, flattens both legs, stops entries and shows in /status, metrics and the records."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h11
import pytest
import trio

from engine.config import BybitConfig, load_config, structure_config
from engine.funding_app import FundingApp
from engine.ops.service import ready_status
from engine.sim.bybit.exchange import Exchange
from engine.sim.bybit.server import BybitSimServer
from engine.venues.bybit.factory import LiveNotAllowed, build_venue
from tests.integration.bybit_helpers import start_app

ROOT = Path(__file__).resolve().parents[2]
KEY, SECRET = "ops-it-key", "ops-it-secret"  # simulator-only keys
SYM = "BTCUSDT"
SPOT_LOT = 1e-6  # the simulator's BTCUSDT spot lot (basePrecision)


def now_ms() -> int:
    return int(time.time() * 1000)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ENGINE_", "BYBIT_")) and k not in (
               "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update(extra)
    return env


def config(tmp_path: Path, base: str, *, daily_loss_pct: float = 0.0,
           drawdown_pct: float = 0.0) -> dict[str, Any]:
    ws = "ws" + base[4:]
    return {
        "mode": "trade",
        "bybit": {"environment": "testnet", "rest_url": base,
                  "ws_public_linear_url": f"{ws}/v5/public/linear",
                  "ws_public_spot_url": f"{ws}/v5/public/spot",
                  "ws_private_url": f"{ws}/v5/private",
                  "reconnect_base_s": 0.05, "reconnect_max_s": 0.3, "http_timeout_s": 3.0},
        "funding": {"symbols": [SYM], "pre_event_open_minutes": 0, "min_expected_apr": 0.05,
                    "exit_apr": 0.01, "notional_usd": 600, "max_total_notional_usd": 5000,
                    "leg_risk_budget_usd_s": 1500.0, "leg_deadline_s": 2.0,
                    "leg_unwind_reserve_s": 0.5, "max_basis_bps": 100,
                    "negative_funding": "off", "reentry_cooldown_s": 0},
        "records": {"dir": str(tmp_path / "records"), "flush_interval_ms": 0},
        "ops": {"http_port": 0, "kill_flat_timeout_s": 8.0},
        "summary": {"interval_s": 0},
        "breakers": {"daily_loss_pct": daily_loss_pct, "drawdown_pct": drawdown_pct},
    }


def to_toml(doc: dict[str, Any]) -> str:
    """The few shapes :func:`config` uses (scalars, lists of strings, one level of tables)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str | list):
            return json.dumps(v)
        return repr(v)

    top = [f"{k} = {value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = [f"[{k}]\n" + "\n".join(f"{kk} = {value(vv)}" for kk, vv in v.items())
              for k, v in doc.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n\n".join(tables) + "\n"


def exchange() -> Exchange:
    ex = Exchange(seed=3, now_ms=now_ms(), funding_drift=0.0)
    ex.add_account(KEY, SECRET, usdt=100_000.0, coins={"BTC": 0.0})
    ex.set_funding(SYM, 0.001, interval_ms=3_600_000)  # 1 h, 876 % APR: a clear entry
    return ex


async def until(cond: Callable[[], Any], limit_s: float = 10.0) -> None:
    with trio.fail_after(limit_s):
        while not cond():  # noqa: ASYNC110 - polling state other tasks change
            await trio.sleep(0.02)


def hedged(app: FundingApp) -> bool:
    return app.funding is not None and bool(app.position_rows()[SYM]["hedged"])


def venue_perp(ex: Exchange) -> float:
    return ex.accounts[KEY].positions.get(SYM, [0.0, 0.0])[0]


def venue_btc(ex: Exchange) -> float:
    return ex.accounts[KEY].coins.get("BTC", 0.0)


def records(app: FundingApp) -> list[dict[str, Any]]:
    return [json.loads(x) for p in sorted(app.records_dir.glob("funding_*.jsonl"))
            for x in p.read_text().splitlines()]


# ------------------------------------------------------------------ READY


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """systemd's end of NOTIFY_SOCKET (a short path: AF_UNIX paths are limited to 107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="rdy", dir="/tmp"))
    path = str(d / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    try:
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)
        d.rmdir()


async def test_ready_line_and_systemd_status_name_the_funding_pairs(
        tmp_path: Path, notify_socket: tuple[socket.socket, str],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    env = clean_env(ENGINE__OPS__HTTP_PORT="0", ENGINE__RECORDS__DIR=str(tmp_path / "rec"))
    cfg = load_config(ROOT / "config" / "bybit-sim.toml", env=env)
    app = FundingApp(cfg, env={})
    caplog.set_level(logging.INFO, logger="engine.ops")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app.run)
        with trio.fail_after(20):
            await trio.lowlevel.wait_readable(sock)
        got = sock.recv(65536).decode()
        app.request_stop("test over")
    assert got == "READY=1\nSTATUS=READY: paper mode, 2 pairs (BTCUSDT, ETHUSDT)"
    assert any(r.getMessage().startswith("READY: paper mode, 2 pairs (BTCUSDT, ETHUSDT) (")
               for r in caplog.records)


def test_ready_status_text() -> None:
    assert ready_status("trade", "1 pair (BTCUSDT)") == "READY: trade mode, 1 pair (BTCUSDT)"
    assert ready_status("paper", "40 markets") == "READY: paper mode, 40 markets"


# ------------------------------------------------------------------ kill


async def test_the_kill_command_flattens_both_legs_reduce_only_and_the_engine_exits_0(
        tmp_path: Path) -> None:
    ex = exchange()
    server = BybitSimServer(ex, tick_s=0.03)
    async with trio.open_nursery() as nursery:
        base = await nursery.start(server.serve)
        doc = config(tmp_path, base)
        toml = tmp_path / "funding.toml"
        toml.write_text(to_toml(doc))
        cfg = load_config(toml, env=clean_env())
        app = FundingApp(cfg, env={"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET})
        codes: list[int] = []

        async def run() -> None:
            codes.append(await app.run())

        nursery.start_soon(run)
        await until(lambda: hedged(app))
        assert venue_perp(ex) < 0 < venue_btc(ex)
        r = await trio.run_process(
            [sys.executable, "-m", "engine", "kill", "--config", str(toml), "--reason",
             "it: operator kill"], capture_stdout=True, capture_stderr=True, env=clean_env(),
            cwd=str(tmp_path))
        assert r.returncode == 0, r.stderr
        assert app.kill_path.exists() and "kill file written" in r.stdout.decode()
        await until(lambda: bool(codes), limit_s=15)
        nursery.cancel_scope.cancel()
    assert codes == [0]
    assert venue_perp(ex) == 0 and 0 <= venue_btc(ex) < SPOT_LOT  # sub-lot dust of the fee kept in BTC
    closes = [o for o in ex.accounts[KEY].orders.values() if o.category == "linear"
              and o.side == "Buy"]
    assert len(closes) == 1 and closes[0].reduce_only and closes[0].status == "Filled"
    sells = [o for o in ex.accounts[KEY].orders.values() if o.category == "spot"
             and o.side == "Sell"]
    assert sells and all(o.status == "Filled" for o in sells)
    assert "kill file" in (app.stop_reason or "")


# ------------------------------------------------------------------ breakers


class Webhook:
    """A loopback HTTP server recording every POSTed JSON body (the notifier's webhook)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def serve(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._conn, listeners)

    async def _conn(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = b""
        with trio.move_on_after(10):
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(ev, h11.Data):
                    body += ev.data
                elif isinstance(ev, h11.EndOfMessage):
                    self.bodies.append(json.loads(body))
                    await stream.send_all(conn.send(h11.Response(
                        status_code=204, headers=[("content-length", "0")])) or b"")
                    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                    conn.start_next_cycle()
                    body = b""
                elif isinstance(ev, h11.ConnectionClosed):
                    return


async def test_daily_loss_breaker_flattens_both_legs_and_stops_entries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A limit of 0.0005 % of the 100,000 USD account (0.50 USD): the entry's fees on both legs
    (about 0.9 USD on 600 USD) are the day's loss, so the breaker trips once hedged; the
    webhook hears it."""
    ex = exchange()
    server = BybitSimServer(ex, tick_s=0.03)
    hook = Webhook()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(hook.serve)
        monkeypatch.setenv("ENGINE_WEBHOOK_URL", f"http://127.0.0.1:{port}/hook")
        base = await nursery.start(server.serve)
        cfg = structure_config(config(tmp_path, base, daily_loss_pct=0.0005), "test")
        app = FundingApp(cfg, env={"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET})
        codes: list[int] = []

        async def run() -> None:
            codes.append(await app.run())

        nursery.start_soon(run)
        await until(lambda: app.breaker_trip is not None)
        assert app.breaker_trip is not None and "daily loss" in app.breaker_trip
        # measured against the account's USDT equity (read at start), not paper_equity (10,000)
        equity = float(app.breaker_trip.rsplit("equity ", 1)[1])
        assert 90_000 < equity <= 100_000
        await until(app.flat)
        assert venue_perp(ex) == 0 and 0 <= venue_btc(ex) < SPOT_LOT  # sub-lot dust of the fee kept in BTC
        assert all(o.reduce_only for o in ex.accounts[KEY].orders.values()
                   if o.category == "linear" and o.side == "Buy")
        n = len(ex.accounts[KEY].orders)
        await trio.sleep(0.6)  # the rate still pays 876 % APR: no new entry while tripped
        assert len(ex.accounts[KEY].orders) == n
        assert app.ops is not None
        doc = app.ops.status()
        assert doc["hard_stop"] == app.breaker_trip
        assert doc["breakers"]["trips"][0]["breaker"] == "daily_loss"
        text = app.ops.metrics.registry.render().decode()
        assert 'engine_breaker_tripped{breaker="daily_loss"} 1' in text
        assert "engine_hard_stop 1" in text
        health = app.ops.health()  # a tripped breaker is a note, not a reason to restart
        assert any(n.startswith("hard stop latched: daily loss") for n in health.notes)
        trips = [x for x in records(app) if x["type"] == "breaker"]
        assert len(trips) == 1 and trips[0]["breaker"] == "daily_loss"
        await until(lambda: any("daily_loss: daily loss" in json.dumps(b)
                                for b in hook.bodies))
        app.request_stop("test over")
        await until(lambda: bool(codes), limit_s=15)
        nursery.cancel_scope.cancel()
    assert codes == [0]


async def test_drawdown_breaker_trips_on_its_own_and_flattens_both_legs(tmp_path: Path) -> None:
    """The daily-loss breaker off, drawdown at 0.0005 %: the run's equity (start equity + net
    P&L) falls below its peak by the entry's fees; the drawdown breaker trips by itself."""
    ex = exchange()
    server = BybitSimServer(ex, tick_s=0.03)
    async with trio.open_nursery() as nursery:
        base = await nursery.start(server.serve)
        cfg = structure_config(config(tmp_path, base, drawdown_pct=0.0005), "test")
        app = FundingApp(cfg, env={"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET})
        codes: list[int] = []

        async def run() -> None:
            codes.append(await app.run())

        nursery.start_soon(run)
        await until(lambda: app.breaker_trip is not None)
        assert app.breaker_trip is not None and app.breaker_trip.startswith("drawdown ")
        assert app.peak_equity is not None and 90_000 < app.peak_equity <= 100_000
        await until(app.flat)
        assert venue_perp(ex) == 0 and 0 <= venue_btc(ex) < SPOT_LOT  # sub-lot dust of the fee kept in BTC
        assert app.ops is not None
        doc = app.ops.status()
        assert doc["breakers"]["trips"][0]["breaker"] == "drawdown"
        assert doc["breakers"]["drawdown_pct"] >= 0.0005
        text = app.ops.metrics.registry.render().decode()
        assert 'engine_breaker_tripped{breaker="drawdown"} 1' in text
        assert [x["breaker"] for x in records(app) if x["type"] == "breaker"] == ["drawdown"]
        app.request_stop("test over")
        await until(lambda: bool(codes), limit_s=15)
        nursery.cancel_scope.cancel()
    assert codes == [0]


async def test_without_breaker_limits_the_same_entry_stays_on(tmp_path: Path) -> None:
    """The control for the tests above: the same fees with both breakers off (0) trip
    nothing."""
    ex = exchange()
    server = BybitSimServer(ex, tick_s=0.03)
    async with trio.open_nursery() as nursery:
        base = await nursery.start(server.serve)
        cfg = structure_config(config(tmp_path, base, daily_loss_pct=0.0), "test")
        app = FundingApp(cfg, env={"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET})
        nursery.start_soon(app.run)
        await until(lambda: hedged(app))
        await trio.sleep(0.5)
        assert app.breaker_trip is None and hedged(app) and venue_perp(ex) < 0
        app.request_stop("test over")
        await until(app.flat, limit_s=15)
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()


async def test_a_refused_second_leg_is_unwound_and_alerted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Bybit refuses the spot hedge three times: the perp leg is unwound (reduce-only), one
    WARNING line and one ``leg_unwound`` alert on the webhook name the symbol and the
    reason."""
    ex = exchange()
    ex.faults.reject_next, ex.faults.reject_category = 3, "spot"
    server = BybitSimServer(ex, tick_s=0.03)
    hook = Webhook()
    caplog.set_level(logging.WARNING, logger="engine.funding")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(hook.serve)
        monkeypatch.setenv("ENGINE_WEBHOOK_URL", f"http://127.0.0.1:{port}/hook")
        base = await nursery.start(server.serve)
        doc = config(tmp_path, base)
        doc["funding"]["reentry_cooldown_s"] = 600  # one attempt: the cooldown holds the rest
        cfg = structure_config(doc, "test")
        app = FundingApp(cfg, env={"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET})
        codes: list[int] = []

        async def run() -> None:
            codes.append(await app.run())

        nursery.start_soon(run)
        await until(lambda: any("leg_unwound" in json.dumps(b) or "leg unwound" in json.dumps(b)
                                for b in hook.bodies))
        body = json.dumps(hook.bodies)
        assert "BTCUSDT: second leg rejected 3 times" in body
        await until(lambda: venue_perp(ex) == 0)
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                  and r.getMessage().startswith("second leg failed: BTCUSDT")]
        assert len(warned) == 1 and "reentry_cooldown_s = 600 s" in warned[0]
        app.request_stop("test over")
        await until(lambda: bool(codes), limit_s=15)
        nursery.cancel_scope.cancel()
    assert codes == [0]



@pytest.mark.parametrize("key", ["rest_url", "ws_public_linear_url", "ws_private_url"])
def test_a_mainnet_url_under_testnet_is_refused_before_any_connection(key: str) -> None:
    """``environment = "testnet"`` with one URL on a mainnet host would trade (or read) real
    money: the venue is never built, so nothing connects (checked without any network: the
    factory raises before a client exists); the shell turns it into exit 2."""
    url = "https://api.bybit.com" if key == "rest_url" else "wss://stream.bybit.com/v5/private"
    cfg = BybitConfig(environment="testnet", **{key: url})
    with pytest.raises(LiveNotAllowed, match=f"{key} points at a Bybit mainnet host"):
        build_venue(cfg, lambda: 0.0, need_keys=False)
    ok = BybitConfig(environment="testnet", rest_url="http://127.0.0.1:9",
                     ws_private_url="wss://stream-testnet.bybit.com/v5/private")
    assert build_venue(ok, lambda: 0.0, need_keys=False).urls.rest == "http://127.0.0.1:9"


async def test_the_status_command_shows_the_pairs_legs_and_funding_totals(
        tmp_path: Path) -> None:
    ex = exchange()
    server = BybitSimServer(ex, tick_s=0.03)
    async with trio.open_nursery() as nursery:
        base = await nursery.start(server.serve)
        toml = tmp_path / "funding.toml"
        toml.write_text(to_toml(config(tmp_path, base)))
        app = FundingApp(load_config(toml, env=clean_env()),
                         env={"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET})
        nursery.start_soon(app.run)
        await until(lambda: hedged(app) and app.ops is not None and app.ops.health().healthy)
        assert app.ops is not None
        r = await trio.run_process(
            [sys.executable, "-m", "engine", "status", "--config", str(toml)],
            capture_stdout=True, capture_stderr=True, check=False, cwd=str(tmp_path),
            env=clean_env(ENGINE__OPS__HTTP_PORT=str(app.ops.http_port)))
        out = r.stdout.decode()
        assert r.returncode == 0, out + r.stderr.decode()
        assert "engine trade — HEALTHY (ready)" in out
        assert "pairs: 1 (hedged 1, unhedged 0), live 1" in out
        pair = next(ln for ln in out.splitlines() if ln.startswith("  BTCUSDT: HEDGED spot +"))
        assert " perp -" in pair and "| APR 876.0 % |" in pair
        net = float(re.search(r" net (\S+) ", pair).group(1))  # type: ignore[union-attr]
        assert abs(net) < SPOT_LOT  # hedged to the lot (the spot buy's fee is kept in BTC)
        assert re.search(r"\| leg risk \d+\.\d USD·s$", pair), pair  # what the hedge's wait cost
        assert "P&L: funding +0.0000 USD" in out and "leg latency median" in out
        assert "venue positions (perp): BTCUSDT -" in out
        # the same breakers as the Hyperliquid core (engine.core.breakers): the losing streak too
        assert "breakers: none tripped (daily loss" in out
        assert "consecutive losses 0 of 5" in out
        assert "entry ?" not in out  # not the Hyperliquid position layout
        app.request_stop("test over")
        await until(app.flat, limit_s=15)
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()


def test_funding_status_lines_survive_missing_and_malformed_fields() -> None:
    from engine.cli import format_status

    lines = format_status({"strategy": "funding", "mode": "paper", "funding": {
        "symbols": {"BTCUSDT": {"state": "leg1", "spot_qty": None, "apr": "x"},
                    "ETHUSDT": "garbage"}, "totals": None}, "breakers": {}})
    text = "\n".join(lines)
    assert "  BTCUSDT: LEG1 spot ? perp ? net ? | APR ? % |" in text
    assert "  ETHUSDT: ? spot ?" in text
    assert "P&L: funding ? USD, basis ? USD, fees ? USD, net ? USD" in text
    assert format_status({"strategy": "funding"})[2].startswith("pairs: 0 (hedged ?")


# ------------------------------------------------------------------ the latch across restarts


async def _phase(tmp_path: Path, ex: Exchange, base: str, *, daily_loss_pct: float,
                 until_cond: Callable[[FundingApp], Any], settle_s: float = 0.0) -> FundingApp:
    """One run of the funding app on ``tmp_path``'s records until ``until_cond``, then a stop."""
    cfg = structure_config(config(tmp_path, base, daily_loss_pct=daily_loss_pct), "test")
    app = FundingApp(cfg, env={"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET})
    async with trio.open_nursery() as nursery:
        codes = start_app(nursery, app)
        await until(lambda: until_cond(app))
        await trio.sleep(settle_s)
        app.request_stop("phase over")
        await until(lambda: bool(codes), limit_s=15)
    assert codes == [0]
    return app


async def test_a_tripped_breaker_holds_across_a_restart_until_the_operator_resets_it(
        tmp_path: Path) -> None:
    ex = exchange()
    server = BybitSimServer(ex, tick_s=0.03)
    async with trio.open_nursery() as nursery:
        base = await nursery.start(server.serve)
        first = await _phase(tmp_path, ex, base, daily_loss_pct=0.0005,
                             until_cond=lambda a: a.breaker_trip is not None and a.flat())
        assert venue_perp(ex) == 0
        # restart with the limit off: the latch comes from the records, not the config
        n = len(ex.accounts[KEY].orders)
        second = await _phase(tmp_path, ex, base, daily_loss_pct=0.0,
                              until_cond=lambda a: a.is_ready(), settle_s=0.8)
        assert second.breaker_trip == first.breaker_trip and second.breaker_name == "daily_loss"
        assert len(ex.accounts[KEY].orders) == n  # 876 % APR on offer: no entry while latched
        # the operator's reset, as the command writes it, while the engine is stopped
        r = await trio.run_process(
            [sys.executable, "-m", "engine", "reset-hard-stop", "--config",
             str(_toml(tmp_path, base))], env=clean_env(), capture_stdout=True,
            capture_stderr=True, check=False, cwd=str(tmp_path))
        assert r.returncode == 0, r.stderr
        third = await _phase(tmp_path, ex, base, daily_loss_pct=0.0,
                             until_cond=lambda a: hedged(a))
        assert third.breaker_trip is None and len(ex.accounts[KEY].orders) > n
        resets = [x for x in records(third) if x["type"] == "breaker_reset"]
        assert len(resets) == 1 and resets[0]["source"] == "reset file at start"
        # and the next start stays released
        fourth = await _phase(tmp_path, ex, base, daily_loss_pct=0.0,
                              until_cond=lambda a: a.is_ready())
        assert fourth.breaker_trip is None
        nursery.cancel_scope.cancel()


def _toml(tmp_path: Path, base: str) -> Path:
    p = tmp_path / "funding.toml"
    p.write_text(to_toml(config(tmp_path, base)))
    return p
