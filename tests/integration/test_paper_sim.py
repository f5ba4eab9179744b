"""Paper mode end to end: real engine, real simulator, real loopback WebSockets."""

from __future__ import annotations

from pathlib import Path

from engine.trading_app import TradingApp

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
