"""Circuit breakers wired into the trading core (paper venue): each fires at its threshold and
not below, latches the hard stop (or halts one market), survives a restart through the journal
and is released only by the operator's reset."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from engine.core.orders import ENTRY
from engine.io.journal import load_journal, restore
from engine.io.jsonl import encode_line
from fsm import order as ofsm

from .helpers import T0, make_ready, make_trading
from .test_paper import Harness, make

NO_EXIT_RULES = {"exits": {"quick_profit_bps": 0.0, "edge_evap_enabled": False,
                           "oracle_exit_enabled": False, "min_hold_ms": 600_000.0,
                           "time_stop_ms": 900_000.0, "trailing_stop": False}}


def losing_trade(h: Harness, t: float, drop: float = 1.0) -> dict[str, Any]:
    """Enter long on a dislocation, then flatten (operator) after the bid fell by ``drop``."""
    h.bbo(t, 99.99, 100.01)
    h.ctx(t + 10, 100.0)
    # a fresh oracle value each time: the detector signals once per oracle value
    h.ctx(t + 100, 101.0 + (t - T0) / 1e7)
    entries = [o for o in h.orders(ENTRY) if o.state == ofsm.SENT]
    assert entries, h.core.skips
    h.at(t + 300)
    assert h.position().effective > 0
    h.bbo(t + 400, 100.0 - drop, 100.0 - drop + 0.02)
    h.ctx(t + 410, 100.0 - drop)
    n = len(h.core.trades)
    h.core.flatten_all(t + 500, "test")
    h.pump(t + 500)
    h.at(t + 800)
    assert len(h.core.trades) == n + 1 and h.core.flat()
    trade = h.core.trades[-1]
    assert trade["net_pnl"] < 0
    return trade


def breaker_cfg(**kw: Any) -> dict[str, Any]:
    base = {"daily_loss_pct": 0.0, "drawdown_pct": 0.0, "max_consecutive_losses": 0,
            "market_move_pct": 0.0}
    base.update(kw)
    return {**NO_EXIT_RULES, "breakers": base}


def test_five_consecutive_losses_latch_the_hard_stop_and_four_do_not() -> None:
    h = make(breaker_cfg(max_consecutive_losses=5))
    for i in range(4):
        losing_trade(h, T0 + 1000 + i * 2000)
    assert not h.core.hard_stop.latched
    losing_trade(h, T0 + 1000 + 4 * 2000)
    assert h.core.hard_stop.latched and h.core.hard_stop.reason == "consecutive_losses"
    assert any(a.code == "circuit_breaker" for a in h.alerts)
    states = [r.record for r in h.records if r.record.get("event") == "breakers"]
    assert states and states[-1]["state"]  # the journal carries the breaker state
    # only the operator's reset releases it, and it clears the breaker as well
    assert h.core.reset_hard_stop(T0 + 20_000) == "consecutive_losses"
    assert not h.core.hard_stop.latched and not h.core.breakers.tripped()


@pytest.mark.parametrize("margin, fires", [(0.999, True), (1.0, True), (1.001, False)])
def test_daily_loss_fires_at_its_threshold_and_not_below(margin: float, fires: bool) -> None:
    # measure one losing trade's loss, then set the threshold just under / at / over it
    probe = make(breaker_cfg(daily_loss_pct=50.0, paper_equity=100.0))
    loss = -losing_trade(probe, T0 + 1000)["net_pnl"]
    pct = loss / 100.0 * 100.0
    h = make(breaker_cfg(daily_loss_pct=pct * margin, paper_equity=100.0))
    losing_trade(h, T0 + 1000)
    h.housekeeping(T0 + 5000)
    assert h.core.hard_stop.latched == fires
    if fires:
        assert h.core.hard_stop.reason == "daily_loss"


def test_drawdown_from_peak_latches() -> None:
    probe = make(breaker_cfg(paper_equity=100.0))
    loss = -losing_trade(probe, T0 + 1000)["net_pnl"]
    h = make(breaker_cfg(drawdown_pct=loss * 0.99, paper_equity=100.0))
    losing_trade(h, T0 + 1000)
    h.housekeeping(T0 + 5000)
    assert h.core.hard_stop.latched and h.core.hard_stop.reason == "drawdown"


@pytest.mark.parametrize("move, halts", [(1.10, True), (0.90, True), (1.099, False)])
def test_a_ten_percent_move_within_a_minute_halts_only_that_market(move: float,
                                                                   halts: bool) -> None:
    core, _ = make_trading(breaker_cfg(market_move_pct=10.0), coins=("xyz:GOLD", "xyz:TSLA"))
    make_ready(core)
    core.on_housekeeping(T0 + 100)  # mark 100 enters the window
    core.on_ctx(0, 100.0 * move, 100.0 * move, T0 + 30_000)
    core.on_housekeeping(T0 + 30_000)
    gold, tsla = core.strategy.markets
    assert (gold.halted == "circuit_breaker") == halts
    assert tsla.halted is None and not core.hard_stop.latched  # market-level only
    if halts:
        core.reset_hard_stop(T0 + 40_000)
        assert gold.halted is None


def test_tripped_breakers_survive_a_restart_through_the_journal(tmp_path: Path) -> None:
    h = make(breaker_cfg(max_consecutive_losses=2))
    losing_trade(h, T0 + 1000)
    losing_trade(h, T0 + 3000)
    assert h.core.hard_stop.reason == "consecutive_losses"
    day = dt.datetime.fromtimestamp(T0 / 1000, dt.UTC).date().isoformat()
    for r in h.records:
        with open(tmp_path / f"{r.kind}_{day}.jsonl", "ab") as f:
            f.write(encode_line(r.record))
    core2, _ = make_trading(breaker_cfg(max_consecutive_losses=2))
    rep = restore(core2, load_journal(tmp_path, T0 + 10_000), T0 + 10_000)
    assert core2.hard_stop.latched and rep.breakers == ["consecutive_losses"]
    assert core2.breakers.consecutive_losses == 2
    assert core2.reset_hard_stop(T0 + 11_000) is not None
    assert not core2.breakers.tripped()


def test_trade_mode_measures_against_the_venue_account_value() -> None:
    core, _ = make_trading({**breaker_cfg(drawdown_pct=5.0), "mode": "trade"})
    make_ready(core)
    core.on_account_value(0.0, T0 + 1)  # an empty dex account: no basis, one alert
    core.on_account_value(-1.0, T0 + 2)
    alerts = [a for a in core.drain() if getattr(a, "code", "") == "equity_unknown"]
    assert len(alerts) == 1 and not core.hard_stop.latched
    core.on_account_value(1000.0, T0 + 3)  # the first real value becomes the basis
    core.on_account_value(951.0, T0 + 4)  # -4.9 %
    assert not core.hard_stop.latched
    core.on_account_value(950.0, T0 + 5)  # -5 %
    assert core.hard_stop.latched and core.hard_stop.reason == "drawdown"
