"""Issue 9 item 1 end to end over loopback: trade mode against the simulator with reconciliation
several times a second. The simulator answers ``clearinghouseState`` like the venue with DEX
abstraction (the dex reports only its isolated margin, $0 when flat; the main dex the free
USDC), so a breaker fed the dex's value alone sees a "drawdown" every time a position closes.
The engine must measure main + dex: the run ends with no false latch, and the breakers' equity
is the simulator's account value."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.trading_app import TradingApp

from .harness import records, running, wait_for
from .test_trade_sim import MASTER, SIM, TRADE, agent_key, ready

__all__ = ["agent_key"]  # the fixture (autouse) that puts the agent key in the environment


def venue_equity(sim: Any) -> Decimal:
    main = sim.trading.clearinghouse(MASTER, "")["marginSummary"]["accountValue"]
    dex = sim.trading.clearinghouse(MASTER, "xyz")["marginSummary"]["accountValue"]
    return Decimal(main) + Decimal(dex)


async def test_frequent_reconciliation_over_profitable_trades_never_latches(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.trading")
    cfg: dict[str, Any] = {**TRADE, "trading": {**TRADE["trading"], "reconcile_interval_s": 0.2},
                           "breakers": {"drawdown_pct": 5.0, "daily_loss_pct": 2.0}}
    # a small account: the isolated margin of one $30-60 entry is a visible share of it
    sim_cfg = {**SIM, "accounts": {MASTER: 300.0}}
    dex_values: list[float] = []
    async with running(tmp_path, config=cfg, sim=sim_cfg, app_cls=TradingApp) as (sim, app):
        await ready(app)
        start_peak = app.trading.breakers.peak  # flat at start: the main dex's 300 USDC
        coins = sim.model.coins[:3]
        for n, coin in enumerate(coins, start=1):
            sim.force_dislocation(coin, "buy", 40, lag_ms=1500)
            await wait_for(lambda: not app.trading.flat(), 15, f"a position on {coin}")
            # reconciliations while the position is open: the dex now holds its margin
            with trio.move_on_after(1.0):
                while not app.trading.flat():  # noqa: ASYNC110 - sampling the venue's view
                    dex_values.append(float(
                        sim.trading.clearinghouse(MASTER, "xyz")["marginSummary"]
                        ["accountValue"]))
                    await trio.sleep(0.05)
            await wait_for(lambda n=n: len(app.trading.trades) >= n, 15, f"trade {n} closed")
            await wait_for(lambda: app.trading.flat(), 5, "flat")
        await trio.sleep(0.6)  # two more reconciliations, flat: the dex reports 0
        assert max(dex_values) > 0.0  # the venue really reported margin while positioned
        assert not app.trading.hard_stop.latched, app.trading.hard_stop.detail
        assert app.trading.breakers.tripped() == []
        assert start_peak == 300.0
        assert app.status_doc()["equity_source"] == "venue"
        # the breakers' equity is the account's: main-dex USDC + dex (0 when flat)
        assert abs(Decimal(str(app.trading.breakers.equity)) - venue_equity(sim)) < Decimal(
            "0.000001")
        assert "breakers: none tripped" in app.summary_line(0.0)
        pnl = sum(t["net_pnl"] for t in app.trading.trades)
    [at_stop] = [r.getMessage() for r in caplog.records
                 if r.getMessage().startswith("circuit breakers at stop")]
    assert at_stop.startswith("circuit breakers at stop: none tripped; ") and "(venue)" in at_stop
    trades = records(tmp_path, "trades")
    assert len(trades) == len(coins)
    assert abs(sum(t["net_pnl"] for t in trades) - pnl) < 1e-9
    # whatever the P&L, the equity moved by it and nothing else: no latch was journaled
    states = [r for r in records(tmp_path, "positions") if r.get("event") == "breakers"]
    assert states and all(r["state"]["trips"] == [] for r in states)
    assert all(r["equity_source"] == "venue" and r["account"] == MASTER for r in states
               if r["why"] != "rebase")
    assert not [r for r in records(tmp_path, "positions") if r.get("event") == "hard_stop"]
    assert all(r["state"]["peak"] >= 300.0 for r in states)  # never a margin-sized peak
