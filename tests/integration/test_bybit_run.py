"""The real funding shell (:class:`engine.funding_app.FundingApp`, trade mode: signed REST orders,
private streams) against the Bybit simulator over loopback, with short funding timings so each
scenario runs in seconds: enter on a funding opportunity, hold across a settlement and receive
funding, re-hedge a partially filled second leg, close on a sign flip; a lagging or refused
second leg is unwound within the leg-risk budget; kill flattens both legs (perp reduce-only);
a disconnect is ridden out; every record is a whole JSON line."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.config import structure_config
from engine.funding_app import FundingApp
from engine.ops.funding_report import build_funding_day
from engine.ops.report import write_report
from engine.sim.bybit.exchange import Exchange
from engine.sim.bybit.server import BybitSimServer

KEY, SECRET = "it-key", "it-secret"
SYM = "BTCUSDT"
DUST = 1e-6  # the simulator's BTC spot lot: a spot buy's BTC fee leaves less than this behind


def now_ms() -> int:
    return int(time.time() * 1000)


def base_config(tmp_path: Path, base: str, **funding: Any) -> dict[str, Any]:
    ws = "ws" + base[4:]
    f: dict[str, Any] = {
        "symbols": [SYM], "pre_event_open_minutes": 0, "min_expected_apr": 0.05,
        "exit_apr": 0.01, "expected_hold_hours": 24, "notional_usd": 600,
        "max_total_notional_usd": 5000, "leg_risk_budget_usd_s": 1500.0, "leg_deadline_s": 2.0,
        "leg_unwind_reserve_s": 0.5, "max_basis_bps": 100, "rebalance_band_bps": 5,
        "negative_funding": "off"}
    f.update(funding)
    return {
        "mode": "trade",
        "bybit": {"environment": "testnet", "rest_url": base,
                  "ws_public_linear_url": f"{ws}/v5/public/linear",
                  "ws_public_spot_url": f"{ws}/v5/public/spot",
                  "ws_private_url": f"{ws}/v5/private",
                  "reconnect_base_s": 0.05, "reconnect_max_s": 0.3, "http_timeout_s": 3.0},
        "funding": f,
        "records": {"dir": str(tmp_path / "records"), "flush_interval_ms": 0},
        "ops": {"http_port": 0, "kill_flat_timeout_s": 8.0},
        "summary": {"interval_s": 0},
        "breakers": {"daily_loss_pct": 0},
    }


@asynccontextmanager
async def running(tmp_path: Path, setup: Callable[[Exchange], None] | None = None,
                  **funding: Any) -> AsyncIterator[tuple[Exchange, BybitSimServer, FundingApp]]:
    ex = Exchange(seed=3, now_ms=now_ms(), funding_drift=0.0)
    ex.add_account(KEY, SECRET, usdt=100_000.0, coins={"BTC": 0.0})
    ex.set_funding(SYM, 0.001, interval_ms=3_600_000)  # 1 h, 876 % APR: a clear entry
    if setup is not None:
        setup(ex)
    server = BybitSimServer(ex, tick_s=0.03)
    async with trio.open_nursery() as nursery:
        base = await nursery.start(server.serve)
        cfg = structure_config(base_config(tmp_path, base, **funding), "test")
        app = FundingApp(cfg, env={"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET})
        done = trio.Event()
        codes: list[int] = []

        async def run() -> None:
            codes.append(await app.run())
            done.set()

        nursery.start_soon(run)
        with trio.fail_after(10):
            await app.ready.wait()
        try:
            yield ex, server, app
        finally:
            app.request_stop("test over")
            with trio.fail_after(15):
                await done.wait()
            nursery.cancel_scope.cancel()


async def until(cond: Callable[[], Any], limit_s: float = 10.0) -> None:
    with trio.fail_after(limit_s):
        while not cond():  # noqa: ASYNC110 - polling state other tasks change
            await trio.sleep(0.02)


def row(app: FundingApp) -> dict[str, Any]:
    return app.position_rows()[SYM]


def venue_perp(ex: Exchange) -> float:
    return ex.accounts[KEY].positions.get(SYM, [0.0, 0.0])[0]


def venue_btc(ex: Exchange) -> float:
    return ex.accounts[KEY].coins.get("BTC", 0.0)


def records(app: FundingApp) -> list[dict[str, Any]]:
    out = []
    for p in sorted(app.records_dir.glob("funding_*.jsonl")):
        for line in p.read_text().splitlines():
            out.append(json.loads(line))  # every line whole
    return out


async def test_enter_hold_across_settlement_receive_funding_close_on_flip(
        tmp_path: Path) -> None:
    async with running(tmp_path) as (ex, _server, app):
        await until(lambda: row(app)["hedged"])
        r = row(app)
        # the spot buy was sized up for its BTC fee: what arrived matches the perp to a lot
        assert r["perp_qty"] < 0 < r["spot_qty"] and abs(r["perp_qty"] + r["spot_qty"]) < DUST
        assert venue_perp(ex) == pytest.approx(r["perp_qty"])
        assert venue_btc(ex) == pytest.approx(r["spot_qty"])
        # a settlement while held: the short perp receives funding, the position stays on
        ex.set_funding(SYM, 0.001, next_funding_ms=now_ms() + 200)
        await until(lambda: app.stats.settlements >= 1)
        await until(lambda: float(row(app).get("funding") or 0.0) > 0)
        assert row(app)["hedged"]
        assert app.totals()["funding"] > 0
        # the rate flips: the strategy closes, both legs flatten
        ex.set_funding(SYM, -0.0005)
        await until(lambda: row(app).get("intent_id") is None)
        assert venue_perp(ex) == 0
        assert venue_btc(ex) == pytest.approx(0.0, abs=DUST)  # the fee's sub-lot rest at most
        recs = records(app)
        closed = [x for x in recs if x["type"] == "closed" and x.get("filled")]
        assert closed and closed[0]["funding"] > 0
        assert any(x["type"] == "decision" and x["action"] == "close"
                   and "flipped" in x["reason"] for x in recs)
        assert {"decision", "order", "fill", "funding", "position", "closed"} <= {
            x["type"] for x in recs}
        assert app.latency.count >= 1  # leg-1 fill -> leg-2 order written was measured
        # the daily report covers the strategy (from the very records of this run)
        day = dt.datetime.now(dt.UTC).date()
        md = write_report(app.records_dir, day, tmp_path / "reports").read_text()
        assert "## Funding / basis (Bybit)" in md
        fd = build_funding_day(app.records_dir, day)
        assert fd is not None and fd.closed == 1 and fd.settlements >= 1
        assert fd.funding > 0 and fd.funding_received == pytest.approx(fd.funding)
        assert fd.fees > 0 and fd.net == pytest.approx(fd.funding + fd.basis - fd.fees)
        assert fd.hedge_ratio == pytest.approx(1.0, abs=1e-3) and fd.net_apr is not None
        assert fd.leg_latency_median_ms is not None


async def test_partially_filled_second_leg_is_rehedged(tmp_path: Path) -> None:
    def setup(ex: Exchange) -> None:
        f = ex.faults
        f.partial_fill_ratio, f.partial_fill_category, f.partial_fill_orders = 0.5, "spot", 1

    async with running(tmp_path, setup) as (ex, _server, app):
        await until(lambda: row(app)["hedged"])
        assert row(app)["net_qty"] == pytest.approx(0.0, abs=1e-6)
        assert venue_btc(ex) == pytest.approx(-venue_perp(ex), abs=DUST)
        spot_buys = [o for o in ex.accounts[KEY].orders.values()
                     if o.category == "spot" and o.side == "Buy"]
        assert len(spot_buys) == 2  # half filled, the drift re-hedged by a second order
        assert spot_buys[0].cum_qty == pytest.approx(spot_buys[0].qty / 2, abs=DUST)


async def test_lagging_second_leg_is_unwound_within_the_budget(tmp_path: Path) -> None:
    def setup(ex: Exchange) -> None:
        ex.faults.lag_ms = {"spot": 60_000.0}  # the hedge never matches in time

    async with running(tmp_path, setup) as (ex, _server, app):
        core = app.funding
        assert core is not None
        await until(lambda: SYM in core.intents)
        it = core.intents[SYM]
        await until(lambda: row(app).get("intent_id") != it.intent_id, limit_s=12)
        ex.faults.lag_ms = {}
        assert it.risk_usd_s <= app.fcfg.leg_risk_budget_usd_s
        assert it.fail_reason in ("leg-risk budget", "hard deadline")
        await until(lambda: venue_perp(ex) == 0 or row(app)["hedged"])
        closed = [x for x in records(app) if x["type"] == "closed"
                  and x["intent_id"] == it.intent_id]
        assert closed and closed[0]["fail_reason"] in ("leg-risk budget", "hard deadline")


async def test_refused_second_leg_is_unwound(tmp_path: Path) -> None:
    def setup(ex: Exchange) -> None:
        f = ex.faults
        f.reject_next, f.reject_category = 3, "spot"

    async with running(tmp_path, setup, max_hedge_attempts=3) as (ex, _server, app):
        core = app.funding
        assert core is not None
        # on loopback the whole entry (perp fill, three refused hedges, the unwind) can be
        # over between two polls of core.intents: wait for its closed record instead
        def closed() -> list[dict[str, Any]]:
            return [x for x in records(app) if x["type"] == "closed" and x.get("filled")]

        await until(lambda: bool(closed()))
        (c,) = closed()
        assert "rejected 3 times" in c["fail_reason"]
        assert SYM not in core.intents and core.cooldown_until[SYM] > now_ms()
        assert c["leg_risk_usd_s"] <= app.fcfg.leg_risk_budget_usd_s
        closes = [o for o in ex.accounts[KEY].orders.values()
                  if o.category == "linear" and o.reduce_only]
        assert closes and all(o.status == "Filled" for o in closes)
        assert app.stats.rejects >= 3


async def test_kill_flattens_both_legs_reduce_only_and_stops_entries(tmp_path: Path) -> None:
    async with running(tmp_path) as (ex, _server, app):
        await until(lambda: row(app)["hedged"])
        app.kill("test kill")
        await until(app.flat)
        assert venue_perp(ex) == 0
        assert venue_btc(ex) == pytest.approx(0.0, abs=DUST)
        perp_closes = [o for o in ex.accounts[KEY].orders.values()
                       if o.category == "linear" and o.reduce_only]
        assert len(perp_closes) == 1 and perp_closes[0].status == "Filled"
        n = len(ex.accounts[KEY].orders)
        await trio.sleep(0.5)  # the rate still pays: no new entry after the kill
        assert len(ex.accounts[KEY].orders) == n
        assert app.status_doc()["killed"]


async def test_stop_flattens_and_exits_zero(tmp_path: Path) -> None:
    ex = Exchange(seed=4, now_ms=now_ms(), funding_drift=0.0)
    ex.add_account(KEY, SECRET, usdt=100_000.0, coins={"BTC": 0.0})
    ex.set_funding(SYM, 0.001, interval_ms=3_600_000)
    server = BybitSimServer(ex, tick_s=0.03)
    async with trio.open_nursery() as nursery:
        base = await nursery.start(server.serve)
        cfg = structure_config(base_config(tmp_path, base), "test")
        app = FundingApp(cfg, env={"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET})
        code: list[int] = []

        async def run() -> None:
            code.append(await app.run())

        nursery.start_soon(run)
        await until(lambda: app.funding is not None and row(app)["hedged"])
        app.request_stop("operator stop")
        await until(lambda: bool(code), limit_s=15)
        assert code == [0]
        assert venue_perp(ex) == 0 and venue_btc(ex) == pytest.approx(0.0, abs=DUST)
        nursery.cancel_scope.cancel()


async def test_disconnect_is_ridden_out_and_positions_kept(tmp_path: Path) -> None:
    async with running(tmp_path) as (ex, server, app):
        await until(lambda: row(app)["hedged"])
        before = row(app)["perp_qty"]
        await server.drop_connections()
        await until(lambda: app.stats.disconnects >= 1)
        await until(lambda: app.stats.reconnects >= 1 and app.connected())
        assert row(app)["hedged"] and row(app)["perp_qty"] == before
        conn = [x for x in records(app) if x["type"] == "connection"]
        assert [c["connected"] for c in conn][:2] == [False, True]
        ex.set_funding(SYM, 0.001, next_funding_ms=now_ms() + 200)  # still receives funding
        await until(lambda: app.stats.settlements >= 1)


async def test_status_and_metrics_cover_the_funding_strategy(tmp_path: Path) -> None:
    async with running(tmp_path) as (_ex, _server, app):
        await until(lambda: row(app)["hedged"])
        assert app.ops is not None
        doc = app.ops.status()
        assert doc["strategy"] == "funding" and doc["mode"] == "trade"
        assert doc["funding"]["hedged"] == 1 and doc["funding"]["unhedged"] == 0
        assert SYM in doc["positions"]
        text = app.ops.metrics.registry.render().decode()
        assert 'engine_funding_hedged{symbol="BTCUSDT"} 1' in text
        assert "engine_funding_leg_latency_seconds_count" in text
        assert "funding: symbols live 1/1 | positions 1 (hedged 1, unhedged 0)" in \
            app.summary_line()


async def test_fill_missed_while_disconnected_is_recovered_from_rest(tmp_path: Path) -> None:
    """The hedge fills at the venue while the private socket is down (the fill message is
    lost): after the reconnect the shell reads the trade from REST, so the position is hedged
    and nothing is unwound (without the resync the intent would wait for a fill that never
    comes, then sell back the perp while the venue holds the spot)."""
    def setup(ex: Exchange) -> None:
        ex.faults.lag_ms = {"spot": 300.0}

    async with running(tmp_path, setup, leg_deadline_s=15.0,
                       leg_risk_budget_usd_s=50_000.0) as (ex, server, app):
        core = app.funding
        assert core is not None
        await until(lambda: any(o.category == "spot" for o in ex.accounts[KEY].orders.values()))
        for st in app.streams.values():
            st.reconnect_base_s = st.reconnect_max_s = 1.0  # stay away past the hedge's fill
        await server.drop_connections()
        await until(lambda: app.stats.reconnects >= 1, limit_s=8)
        await until(lambda: row(app)["hedged"])
        assert row(app)["spot_qty"] == pytest.approx(venue_btc(ex))
        assert venue_btc(ex) == pytest.approx(-venue_perp(ex), abs=DUST) and venue_btc(ex) > 0
        assert not [o for o in ex.accounts[KEY].orders.values() if o.reduce_only]
