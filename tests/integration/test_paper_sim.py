"""Paper mode end to end: real engine, real simulator, real loopback WebSockets."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.clock import WallClock
from engine.config import VenueConfig, structure_config
from engine.core.orders import ENTRY, CloidFactory, Order
from engine.sim.server import SimExchange
from engine.strategies.dislocation import DislocationStrategy
from engine.trading_app import TradingApp
from engine.venues.hyperliquid.client import HyperliquidFeed
from engine.venues.hyperliquid.info import discover
from engine.venues.hyperliquid.l2book import L2BookStore
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore
from engine.venues.paper import PaperVenue

from .harness import records, running, wait_for

PAPER = {"mode": "paper",
         "detector": {"min_consecutive_moves": 0, "oracle_direction_filter": False,
                      "min_edge_above_baseline_bps": 0.0, "min_confidence": 0.0},
         "paper": {"latency_ms": 50.0}}


def _one_live_flatten_per_market(app: TradingApp) -> None:
    live: dict[str, int] = {}
    for o in app.trading.orders.active():
        if o.reduce_only:
            live[o.coin] = live.get(o.coin, 0) + 1
    assert all(n <= 1 for n in live.values()), live


async def test_paper_enters_on_a_dislocation_and_exits_when_it_closes(tmp_path: Path) -> None:
    async with running(tmp_path, config=PAPER, sim={"aligned": True},
                       app_cls=TradingApp) as (sim, app):
        await wait_for(lambda: app.trading is not None and app.trading.is_ready(), 10, "READY")
        sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
        await wait_for(lambda: app.trading.entries_sent >= 1, 10, "an entry")
        await wait_for(lambda: len(app.trading.trades) >= 1, 15, "a closed trade")
        _one_live_flatten_per_market(app)
        assert app.trading.flat()
    trades = records(tmp_path, "trades")
    assert trades and trades[0]["market_key"] == "xyz:GOLD"
    assert trades[0]["direction"] == "long" and trades[0]["exit_reason"]
    fills = records(tmp_path, "fills")
    # position = signed sum of distinct fills: the journal nets to zero per market
    net: dict[str, float] = {}
    for f in fills:
        net[f["market_key"]] = net.get(f["market_key"], 0.0) + (
            f["sz"] if f["side"] == "buy" else -f["sz"])
    assert all(abs(v) < 1e-9 for v in net.values()), net
    assert len({f["tid"] for f in fills}) == len(fills)
    sigs = records(tmp_path, "signals")
    assert any(s.get("executor_verdict") == "order_created" for s in sigs)


async def test_every_signal_is_recorded_with_its_followups(tmp_path: Path) -> None:
    """Every signal the trading core saw is in the signals file (none lost in deferral)."""
    async with running(tmp_path, config=PAPER, app_cls=TradingApp) as (sim, app):
        await wait_for(lambda: app.trading is not None and app.trading.signals_seen >= 6, 30,
                       "six signals")
        seen = app.trading.signals_seen
        entries = app.trading.entries_sent
    sigs = records(tmp_path, "signals")
    assert len(sigs) >= seen >= 6
    assert sum(1 for s in sigs if s["executor_verdict"] == "order_created") == entries
    assert app.stats.signals == len(sigs)


async def test_graceful_stop_flattens_open_positions(tmp_path: Path) -> None:
    cfg = {**PAPER, "exits": {"quick_profit_bps": 0.0, "edge_evap_enabled": False,
                              "oracle_exit_enabled": False, "min_hold_ms": 60_000.0,
                              "time_stop_ms": 120_000.0}}
    async with running(tmp_path, config=cfg, sim={"aligned": True},
                       app_cls=TradingApp) as (sim, app):
        await wait_for(lambda: app.trading is not None and app.trading.is_ready(), 10, "READY")
        sim.force_dislocation("xyz:TSLA", "sell", 40, lag_ms=1200)
        await wait_for(lambda: app.trading.open_positions() >= 1, 10, "an open position")
    # leaving the context ran the graceful stop: kill switch → reduce-only flatten → flat
    assert app.trading.flat()
    trades = records(tmp_path, "trades")
    assert trades and trades[-1]["exit_reason"] == "kill"
    assert app.trading.killed


async def test_hard_stop_blocks_entries_until_the_operator_resets_it(tmp_path: Path) -> None:
    import os
    import sys

    import trio

    async with running(tmp_path, config=PAPER, sim={"aligned": True},
                       app_cls=TradingApp) as (sim, app):
        await wait_for(lambda: app.trading is not None and app.trading.is_ready(), 10, "READY")
        now = app.clock()
        app.trading._latch("test_trigger", now, "latched by the test")
        app.execute(now)
        sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
        await wait_for(lambda: app.trading.skips["hard_stop"] >= 1, 10, "a blocked entry")
        assert app.trading.entries_sent == 0
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("ENGINE__")},
               "ENGINE__RECORDS__DIR": str(tmp_path / "data")}
        with trio.fail_after(60):
            r = await trio.run_process([sys.executable, "-m", "engine", "reset-hard-stop"],
                                       env=env, capture_stdout=True, capture_stderr=True,
                                       check=False)
        assert r.returncode == 0, r.stderr
        await wait_for(lambda: not app.trading.hard_stop.latched, 5, "the reset")
        sim.force_dislocation("xyz:TSLA", "buy", 40, lag_ms=1200)
        await wait_for(lambda: app.trading.entries_sent >= 1, 10, "an entry after the reset")
    events = [r["event"] for r in records(tmp_path, "positions")]
    assert "hard_stop" in events and "hard_stop_reset" in events


class _CoreFeedHandler:
    """Feeds a TradingCore from the feed (what TradingHandler does, without the app)."""

    def __init__(self, core: Any, clock: WallClock) -> None:
        self.core = core
        self.clock = clock
        self.index = {m.coin: m.index for m in core.strategy.markets}
        self.l2_frames = 0

    def on_bbo(self, coin: str, time_ms: int, bid_px: float | None, bid_sz: float | None,
               ask_px: float | None, ask_sz: float | None) -> None:
        self.core.on_bbo(self.index[coin], time_ms, bid_px, bid_sz, ask_px, ask_sz,
                         self.clock())

    def on_ctx(self, coin: str, oracle_px: float, mark_px: float | None) -> None:
        self.core.on_ctx(self.index[coin], oracle_px, mark_px, self.clock())

    def on_l2book(self, coin: str, time_ms: int, bids: list[tuple[float, float]],
                  asks: list[tuple[float, float]]) -> None:
        self.l2_frames += 1

    def on_connected(self) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass

    def on_subscribed(self, sub_type: str, coin: str | None) -> None:
        pass

    def on_batch_end(self) -> None:
        self.core.drain()  # nobody executes these intents here (the core is never READY)


async def test_paper_order_larger_than_the_top_level_walks_the_simulators_l2book() -> None:
    """The simulator's l2Book frames → feed → L2BookStore → PaperVenue walks the levels."""
    exchange = SimExchange(seed=7, n_markets=4, speed=2.0)
    clock = WallClock()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(exchange.serve)
        disc = await discover(f"http://127.0.0.1:{port}/info", "xyz", None, 5.0)
        cfg = structure_config({"mode": "paper"}, "test")
        obs = DislocationStrategy(disc.markets, cfg.gates, cfg.detector, cfg.sizing,
                          cfg.followups.offsets_ms, mode="paper", boot_id="it")
        core = TradingCore(obs, cfg, cloids=CloidFactory(b"\x02" * 8))
        store = L2BookStore(clock=clock)
        handler = _CoreFeedHandler(core, clock)
        venue_cfg = VenueConfig(ws_url=f"ws://127.0.0.1:{port}/ws",
                                info_url=f"http://127.0.0.1:{port}/info", ctx_stale_ms=0.0,
                                reconnect_base_s=0.05, reconnect_max_s=0.5)
        feed = HyperliquidFeed(venue_cfg, [m.coin for m in disc.markets], handler,
                               l2book=True, l2book_store=store)
        nursery.start_soon(feed.run)

        def book_ready(m: Any) -> bool:
            snap = store.snapshot(m.coin)
            return (m.ask_px is not None and snap is not None
                    and len([a for a in snap.asks if a[0] > m.ask_px]) >= 3)

        await wait_for(lambda: feed.all_acked and any(book_ready(m) for m in obs.markets), 10,
                       "l2Book levels and a bbo from the simulator")
        m = next(m for m in obs.markets if book_ready(m))
        exchange.stall(m.coin)  # freeze what the engine sees of this coin
        await trio.sleep(0.3)  # frames already on the wire are read
        assert handler.l2_frames >= 1 and feed.stats.l2_rejected == 0
        snap = store.snapshot(m.coin)
        assert snap is not None and len(snap.asks) >= 4 and snap.asks == sorted(snap.asks)
        assert m.ask_px is not None and m.ask_sz is not None
        deeper = [a for a in snap.asks if a[0] > m.ask_px]
        expected = [(m.ask_px, m.ask_sz)] + deeper[:2]  # the limit stops at the third level
        lot = Decimal(1).scaleb(-m.spec.sz_decimals)
        depth = sum((Decimal(str(sz)) for _, sz in expected), Decimal(0))
        order_sz = depth + Decimal(5) * lot  # larger than what the limit lets it take
        assert order_sz > Decimal(str(m.ask_sz))
        venue = PaperVenue(core, 50.0, 0.9, tid_prefix="it", levels=store.levels)
        order = Order("0x" + "ab" * 16, m.coin, m.index, m.spec.asset_id, True,
                      repr(expected[-1][0]), str(order_sz), False, ENTRY, clock(),
                      decision_px=m.ask_px)
        venue.submit(order, clock())
        await trio.sleep(0.05)
        now = clock()
        assert venue.on_timer(now) == 1
        got = [(f.px, f.sz) for f in venue.fills]
        assert got == [(px, pytest.approx(sz)) for px, sz in expected]
        (ex,) = venue.executions
        assert ex.source == "l2book" and ex.levels == 3
        assert ex.filled_sz == pytest.approx(float(depth))
        vwap = sum(px * sz for px, sz in expected) / float(depth)
        assert ex.decision_px == m.ask_px and ex.decision_px is not None
        assert ex.avg_px == pytest.approx(vwap) and ex.avg_px > ex.decision_px
        assert ex.fee == pytest.approx(vwap * float(depth) * 0.9 / 1e4, abs=1e-5)
        assert venue.order_status(order.cloid)["order"]["status"] == "canceled"  # IOC rest
        assert venue.stats.l2_fallbacks == 0 and store.stats.hits >= 1
        nursery.cancel_scope.cancel()


async def test_paper_app_with_walk_l2book_fills_against_l2book_levels(tmp_path: Path) -> None:
    cfg = {**PAPER, "paper": {"latency_ms": 50.0, "walk_l2book": True}}
    async with running(tmp_path, config=cfg, sim={"aligned": True},
                       app_cls=TradingApp) as (sim, app):
        await wait_for(lambda: app.trading is not None and app.trading.is_ready(), 10, "READY")
        store = app.feed.l2book
        assert store is not None and app.paper.levels is not None
        assert app.feed.stats.subscriptions == 3 * len(app.trading.strategy.markets)
        await wait_for(lambda: store.snapshot("xyz:GOLD") is not None, 10, "GOLD levels")
        sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
        await wait_for(lambda: len(app.paper.executions) >= 1, 10, "a paper execution")
        entry = app.paper.executions[0]
        assert entry.coin == "xyz:GOLD" and entry.source == "l2book"
        assert entry.decision_px is not None and entry.avg_px > 0
    assert app.trading.flat()
