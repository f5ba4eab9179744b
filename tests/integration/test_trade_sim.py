"""Trade mode end to end: signed orders over loopback WebSockets to the simulator, which
recovers the signer with the official SDK, matches IOC orders and streams orderUpdates and
userFills. Induced rejects, partial fills, lost responses and a kill/restart mid-position must
all end flat, with no duplicate flatten, and the journal must match the simulator's fills."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from engine.trading_app import TradingApp

from .harness import records, running, wait_for

KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
AGENT = "0x14791697260e4c9a71f18484c9f997b308e59325"  # address of KEY
MASTER = "0x1111111111111111111111111111111111111111"

TRADE: dict[str, Any] = {
    "mode": "trade",
    "account": {"address": MASTER},
    # entries of $30-60 so a half-filled one stays above the venue's $10 minimum and can be
    # flattened (below it a position is dust that only a manual close can remove)
    "sizing": {"min_order_notional": 30.0, "max_notional": 60.0},
    "detector": {"min_consecutive_moves": 0, "oracle_direction_filter": False,
                 "min_edge_above_baseline_bps": 0.0, "min_confidence": 0.0},
    "trading": {"pending_timeout_ms": 2000.0, "unknown_query_interval_ms": 300.0,
                "flatten_retry_ms": 300.0, "reconcile_interval_s": 2.0,
                # off here (tests/integration/test_dead_man.py has it): its scheduleCancel
                # posts would take the post response these runs drop on purpose
                "dead_man_s": 0.0},
}
SIM: dict[str, Any] = {"aligned": True, "accounts": {MASTER: 10_000.0},
                       "agents": {AGENT: MASTER}}


@pytest.fixture(autouse=True)
def agent_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_AGENT_KEY", KEY)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def one_live_flatten(app: TradingApp) -> None:
    live: dict[str, int] = {}
    for o in app.trading.orders.active():
        if o.reduce_only:
            live[o.coin] = live.get(o.coin, 0) + 1
    assert all(n <= 1 for n in live.values()), live


async def watch_flattens(app: TradingApp, done: trio.Event) -> None:
    """Check the one-live-flatten invariant continuously while a test runs."""
    while not done.is_set():
        if app.trading is not None:
            one_live_flatten(app)
        await trio.sleep(0.005)


def venue_position(sim: Any, coin: str) -> float:
    summary = sim.account_summary(MASTER)
    pos = summary["positions"].get(coin)
    return float(pos["szi"]) if pos else 0.0


def journal_matches_venue(tmp_path: Path, sim: Any) -> None:
    fills = [f for f in records(tmp_path, "fills") if not f.get("synthetic")]
    assert len({f["tid"] for f in fills}) == len(fills)
    assert sim.account_summary(MASTER)["fills"] == len(fills)
    net: dict[str, float] = {}
    for f in fills:
        net[f["market_key"]] = net.get(f["market_key"], 0.0) + (
            f["sz"] if f["side"] == "buy" else -f["sz"])
    for coin, size in net.items():
        assert abs(size - venue_position(sim, coin)) < 1e-9, coin


async def ready(app: TradingApp) -> None:
    await wait_for(lambda: app.trading is not None and app.trading.is_ready(), 10, "READY")


async def test_trade_enters_on_a_dislocation_and_exits_when_it_closes(tmp_path: Path) -> None:
    done = trio.Event()
    async with running(tmp_path, config=TRADE, sim=SIM, app_cls=TradingApp) as (sim, app):
        async with trio.open_nursery() as n:
            n.start_soon(watch_flattens, app, done)
            await ready(app)
            sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
            await wait_for(lambda: len(app.trading.trades) >= 1, 15, "a closed trade")
            await wait_for(lambda: app.trading.flat(), 5, "flat")
            done.set()
    trades = records(tmp_path, "trades")
    assert trades[0]["market_key"] == "xyz:GOLD" and trades[0]["direction"] == "long"
    assert venue_position(sim, "xyz:GOLD") == 0.0
    journal_matches_venue(tmp_path, sim)


async def test_trade_with_busy_poll_and_one_action_per_read(tmp_path: Path) -> None:
    """``[venue] busy_poll_us`` and ``send_first_at_once = false`` reach the live connection
    and the feed; the engine's spinning reader shares the Trio loop with the simulator here,
    and the round trip still completes."""
    cfg = {**TRADE, "venue": {"busy_poll_us": 20_000.0, "send_first_at_once": False}}
    done = trio.Event()
    async with running(tmp_path, config=cfg, sim=SIM, app_cls=TradingApp) as (sim, app):
        assert app.feed is not None and app.feed.send_first_at_once is False
        async with trio.open_nursery() as n:
            n.start_soon(watch_flattens, app, done)
            await ready(app)
            session = app.feed._session  # noqa: SLF001 - the live connection's setting
            assert session is not None and session.conn.busy_poll_s == 0.02
            sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
            await wait_for(lambda: len(app.trading.trades) >= 1, 15, "a closed trade")
            await wait_for(lambda: app.trading.flat(), 5, "flat")
            done.set()
        assert session.conn.stats.busy_polls > 0
        assert session.conn.stats.spin_hooks > 0  # the entry path was kept warm
        assert app.warmer is not None and app.warmer.enabled
        warm = app.warmer.stats()
        assert warm.cycles > 0 and warm.rebuilds == 0
        status = app.status_doc()["busy_poll"]
        assert status["spins"] > 0 and status["warm_ups"] > 0 and status["warm_up_hook"]
        assert status["core_warmer"]["cycles"] > 0 and not status["core_warmer"]["disabled"]
        line = app.summary_line(0.0)
        assert "busy-poll: spins" in line and "core warm-up: cycles" in line
    assert venue_position(sim, "xyz:GOLD") == 0.0
    journal_matches_venue(tmp_path, sim)


async def test_rejects_partial_fills_and_lost_responses_end_flat(tmp_path: Path) -> None:
    done = trio.Event()
    async with running(tmp_path, config=TRADE, sim=SIM, app_cls=TradingApp) as (sim, app):
        async with trio.open_nursery() as n:
            n.start_soon(watch_flattens, app, done)
            await ready(app)
            # 1. a rejected entry leaves no position and releases the market
            sim.reject_next(1)
            sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
            await wait_for(lambda: app.trading.entries_sent >= 1, 10, "entry 1")
            await wait_for(lambda: not any(True for _ in app.trading.orders.active()), 10,
                           "entry 1 resolved")
            assert app.trading.flat()
            # 2. a partial fill: the flatten closes exactly what filled
            sim.partial_fill_ratio = 0.5
            sim.force_dislocation("xyz:TSLA", "sell", 40, lag_ms=1200)
            tsla = app.trading.book.by_coin["xyz:TSLA"]
            await wait_for(lambda: tsla.has_exposure, 15, "a partially filled entry")
            sim.partial_fill_ratio = None  # the flatten meets a full book
            await wait_for(lambda: len(app.trading.trades) >= 1, 15, "partial trade closed")
            entry = next(o for o in app.trading.orders.by_cloid.values()
                         if o.coin == "xyz:TSLA" and o.purpose == "entry")
            assert entry.venue_filled < entry.sz  # it really was partial
            # 3. a lost response: the order goes UNKNOWN and is resolved by cloid
            sim.drop_next_post_responses(1)
            sim.force_dislocation("xyz:NVDA", "buy", 40, lag_ms=1200)
            await wait_for(lambda: len(app.trading.trades) >= 2, 20, "trade after a lost reply")
            await wait_for(lambda: app.trading.flat()
                           and not any(True for _ in app.trading.orders.active()), 10, "flat")
            done.set()
    for coin in ("xyz:GOLD", "xyz:TSLA", "xyz:NVDA"):
        assert venue_position(sim, coin) == 0.0
    journal_matches_venue(tmp_path, sim)
    orders = records(tmp_path, "orders")
    assert any(o["state"] == "rejected" for o in orders)
    last: dict[str, str] = {}
    for o in orders:
        last[o["cloid"]] = o["state"]
    # every order ended terminal, including the one whose post response was lost (resolved
    # from its orderUpdates/userFills, or by cloid after the pending timeout)
    assert set(last.values()) <= {"filled", "canceled", "rejected", "expired"}, last
    assert sim.stats()["trading"]["responses_dropped"] >= 1 if "responses_dropped" in \
        sim.stats()["trading"] else True


async def test_kill_and_restart_mid_position_ends_flat(tmp_path: Path) -> None:
    hold = {**TRADE, "exits": {"quick_profit_bps": 0.0, "edge_evap_enabled": False,
                               "oracle_exit_enabled": False, "min_hold_ms": 60_000.0,
                               "time_stop_ms": 4_000.0, "decay_start_ms": 0.0}}
    exchange: Any = None
    async with trio.open_nursery() as outer:
        from engine.sim.server import SimExchange

        exchange = SimExchange(seed=7, n_markets=12, speed=2.0, **SIM)
        port = await outer.start(exchange.serve)
        # run 1: open a position, then stop hard (no graceful flatten): a crash
        async with running_on(tmp_path, port, hold) as app:
            await ready(app)
            exchange.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
            await wait_for(lambda: app.trading.open_positions() == 1, 10, "a position")
            assert venue_position(exchange, "xyz:GOLD") > 0
            app.stop()  # cancel everything at once: the position stays open at the venue
        # run 2: a new engine restores the journal, reconciles, and the time stop flattens
        async with running_on(tmp_path, port, hold) as app2:
            await ready(app2)
            assert app2.trading.book.by_coin["xyz:GOLD"].has_exposure
            await wait_for(lambda: venue_position(exchange, "xyz:GOLD") == 0.0, 15, "flat")
            await wait_for(lambda: app2.trading.flat(), 5, "engine flat")
            one_live_flatten(app2)
        outer.cancel_scope.cancel()
    journal_matches_venue(tmp_path, exchange)
    flattens = [o for o in records(tmp_path, "orders")
                if o["purpose"] == "flatten" and o["event"] == "created"]
    assert len(flattens) == 1  # no duplicate flatten across the restart


from collections.abc import AsyncIterator  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402


@asynccontextmanager
async def running_on(tmp_path: Path, port: int, config: dict[str, Any]
                     ) -> AsyncIterator[TradingApp]:
    """An engine against an already running simulator (for restarts)."""
    import tomllib

    from engine.config import structure_config

    from .harness import BASE_TOML, _merge

    data = tomllib.loads(BASE_TOML.format(port=port, dir=tmp_path / "data"))
    _merge(data, config)
    app = TradingApp(structure_config(data, "test"))
    async with trio.open_nursery() as n:
        n.start_soon(app.run)
        with trio.fail_after(10):
            await app.ready.wait()
        yield app
        app.stop()
