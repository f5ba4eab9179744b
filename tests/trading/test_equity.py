"""Issue 9 items 1, 4 and 7 in the trading core: the circuit breakers measure the account's
usable equity (main-dex + dex ``accountValue``, protocol doc §9 / P22), never the dex's isolated
margin or a paper constant; a journaled peak from another mode or account is re-based;
unrealised P&L counts only fill-confirmed exposure at its real entry price; a repeating alert
condition is raised once per state change, with a count."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engine.config import ConfigError, structure_config
from engine.core.intents import Alert, Record
from engine.io.journal import load_journal, restore
from engine.io.jsonl import encode_line
from engine.trading_app import TradingApp
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore
from fsm import order as ofsm

from .helpers import T0, make_ready, make_trading

MASTER = "0x1111111111111111111111111111111111111111"
OTHER = "0x2222222222222222222222222222222222222222"
QUIET_EXITS = {"quick_profit_bps": 0.0, "edge_evap_enabled": False,
               "oracle_exit_enabled": False, "min_hold_ms": 600_000.0,
               "time_stop_ms": 900_000.0, "trailing_stop": False}


def trade(**breakers: Any) -> dict[str, Any]:
    return {"mode": "trade", "account": {"address": MASTER}, "exits": QUIET_EXITS,
            "breakers": {"daily_loss_pct": 2.0, "drawdown_pct": 5.0,
                         "max_consecutive_losses": 0, "market_move_pct": 0.0, **breakers}}


def alerts(core: TradingCore, code: str | None = None) -> list[Alert]:
    return [it for it in core.drain() if isinstance(it, Alert)
            and (code is None or it.code == code)]


def sell_entry(core: TradingCore, now: float) -> Any:
    """The oracle drops under the 99.99/100.01 book: one sell entry, sent."""
    core.on_ctx(0, 99.7, 99.7, now)
    (po,) = core.take_orders()
    core.on_sent(po.order.cloid, now + 1)
    return po.order


# ------------------------------------------------------------------------- item 1: equity
def test_a_profitable_run_never_trips_although_the_dex_margin_swings() -> None:
    """The reported run: the dex's accountValue is its isolated margin (20.42 while positions
    are open, 4.80 later, 0 when flat) while the free USDC sits on the main dex. Measured on
    the dex alone that is a 76 % "drawdown"; on main + dex it is a profit."""
    core, _ = make_trading(trade())
    make_ready(core)
    readings = [(10_000.0, 0.0), (9_979.80, 20.42), (9_996.62, 4.80), (10_001.10, 0.0),
                (9_989.00, 12.60), (10_002.40, 0.0)]
    for i, (main, dex) in enumerate(readings):
        core.on_account_values(main, dex, T0 + 1000 * (i + 1))
        core.on_housekeeping(T0 + 1000 * (i + 1) + 1)
    assert not core.hard_stop.latched and not core.breakers.tripped()
    assert core.equity_source == "venue"
    assert core.breakers.peak == pytest.approx(10_002.40)
    assert core.breakers.equity == pytest.approx(10_002.40)


def test_a_flat_account_at_start_arms_the_breakers_on_its_real_equity() -> None:
    """Flat at start (dex 0): the basis is the main dex's 1000 USD, not 10,000 of paper
    equity, so a real 5 % drawdown trips (against 10,000 it would be 0.5 %)."""
    core, _ = make_trading(trade())
    make_ready(core)
    core.on_account_values(1000.0, 0.0, T0 + 1)
    assert core.breakers.peak == 1000.0 and core.breakers.day_start_equity == 1000.0
    core.on_account_values(951.0, 0.0, T0 + 2)
    assert not core.hard_stop.latched
    core.on_account_values(949.0, 0.0, T0 + 3)
    assert core.hard_stop.latched and core.hard_stop.reason == "drawdown"


def test_unknown_equity_without_a_fallback_refuses_entries_and_says_so_once() -> None:
    core, _ = make_trading(trade())
    make_ready(core)
    for i in range(5):
        core.on_account_values(None, 0.0, T0 + i)  # the main dex does not answer
    [alert] = alerts(core, "equity_unknown")
    assert "new entries are refused" in alert.message and "equity_usd" in alert.message
    assert core.alert_states() == {"equity_unknown": 5}
    core.on_ctx(0, 99.7, 99.7, T0 + 10)
    assert core.take_orders() == [] and core.skips["equity_unknown"] == 1
    core.on_account_values(1000.0, 0.0, T0 + 20)
    [cleared] = alerts(core, "equity_unknown_cleared")
    assert cleared.level == "info" and "5 time(s)" in cleared.message
    core.on_ctx(0, 99.5, 99.5, T0 + 30)
    assert len(core.take_orders()) == 1


def test_unknown_equity_falls_back_to_the_configured_equity_plus_pnl() -> None:
    core, _ = make_trading(trade(equity_usd=500.0))
    make_ready(core)
    core.on_account_values(0.0, 0.0, T0 + 1)  # the venue reports nothing usable
    [alert] = alerts(core, "equity_unknown")
    assert "equity_usd = 500 USD" in alert.message
    assert core.equity_source == "config" and core.breakers.peak == 500.0
    o = sell_entry(core, T0 + 10)
    core.on_fill("t1", o.cloid, o.coin, False, 99.99, o.sz, 0.0, T0 + 12, T0 + 12)
    core.on_ctx(0, 100.5, 100.5, T0 + 20)  # the short loses (mark 100.5)
    core.on_housekeeping(T0 + 1000)
    loss = (100.5 - 99.99) * o.sz
    assert core.breakers.equity == pytest.approx(500.0 - loss)
    # the venue speaks again: its value becomes the basis (re-based, no false drawdown)
    core.on_account_values(9_000.0, 3.0, T0 + 2000)
    assert core.equity_source == "venue" and core.breakers.peak == 9_003.0
    assert not core.hard_stop.latched


def test_equity_usd_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="equity_usd"):
        structure_config({"breakers": {"equity_usd": -1.0}}, "test")


def test_a_transient_all_zero_main_answer_is_used_only_when_it_persists() -> None:
    """P23: the venue answers all zeros for a few seconds. Such answers are not used until
    they persisted [breakers] equity_confirm_s (10 s; here: the collateral really is all in
    the dex's margin), not even as the first answer of a run."""
    core, _ = make_trading(trade())
    make_ready(core)
    core.on_account_values(0.0, 20.0, T0)  # the very first answer is a transient one
    assert core.equity_source == "unknown"
    core.on_account_values(1000.0, 0.0, T0 + 2000)
    for t in range(3000, 12_000, 2000):  # transient for 8 s: not a 98 % drawdown
        core.on_account_values(0.0, 20.0, T0 + t)
    assert not core.hard_stop.latched and core.breakers.equity == 1000.0
    core.on_account_values(1000.5, 0.0, T0 + 13_000)
    for t in range(14_000, 25_000, 2000):
        core.on_account_values(0.0, 20.0, T0 + t)  # persisted 10 s: confirmed
    assert core.hard_stop.latched and core.hard_stop.reason == "drawdown"


def _journal(tmp_path: Path, core: TradingCore) -> None:
    day = "2027-01-15"  # the UTC day of T0
    for it in core.drain():
        if isinstance(it, Record):
            with open(tmp_path / f"{it.kind}_{day}.jsonl", "ab") as f:
                f.write(encode_line(it.record))


def _restored(tmp_path: Path, extra: dict[str, Any]) -> tuple[TradingCore, list[str]]:
    core, _ = make_trading(extra)
    rep = restore(core, load_journal(tmp_path, T0 + 50_000), T0 + 50_000)
    make_ready(core, now=T0 + 50_001)
    return core, rep.warnings


@pytest.mark.parametrize("origin", [
    {"mode": "paper"},
    {**trade(), "account": {"address": OTHER}},
])
def test_a_journaled_peak_from_another_mode_or_account_is_rebased(
        tmp_path: Path, origin: dict[str, Any]) -> None:
    first, _ = make_trading({**origin, "breakers": {"drawdown_pct": 5.0}})
    first.breakers.on_equity(10_000.0, T0)
    first.breakers.on_trade_closed(-3.0, T0 + 1)
    first._breaker_record(T0 + 2, "test")  # noqa: SLF001 - the record under test
    _journal(tmp_path, first)
    core, warnings = _restored(tmp_path, trade())
    assert any("re-based" in w for w in warnings), warnings
    assert core.breakers.consecutive_losses == 0 and core.breakers.realised_today == 0.0
    core.on_account_values(500.0, 0.0, T0 + 60_000)  # 95 % below the other peak
    assert not core.hard_stop.latched and core.breakers.peak == 500.0


def test_a_journaled_peak_of_the_same_account_is_kept(tmp_path: Path) -> None:
    first, _ = make_trading(trade())
    make_ready(first)
    first.on_account_values(1000.0, 0.0, T0 + 1)
    first._breaker_record(T0 + 2, "test")  # noqa: SLF001 - the record under test
    _journal(tmp_path, first)
    core, warnings = _restored(tmp_path, trade())
    assert core.breakers_restored and not any("re-based" in w for w in warnings)
    core.on_account_values(940.0, 0.0, T0 + 60_000)  # 6 % below the journaled peak
    assert core.hard_stop.latched and core.hard_stop.reason == "drawdown"


# --------------------------------------------------------------- item 4: unrealised P&L
def test_filled_before_userfills_makes_no_phantom_loss() -> None:
    """A post response says "filled" before the userFills arrive: the exposure is known at
    once (gates, exits) but has no entry price yet, so it adds no unrealised P&L to the
    breakers, /status or metrics. Before: (mark − 0) × −size, a loss of the whole notional."""
    core, _ = make_trading(trade(daily_loss_pct=1.0))
    make_ready(core)
    core.on_account_value(1000.0, T0 + 1)  # usable equity
    o = sell_entry(core, T0 + 10)
    assert o.sz * 99.7 > 10.0  # > 1 % of the equity: a phantom loss would trip
    core.on_post_result(o.cloid, {"filled": {"totalSz": o.sz_wire, "avgPx": "99.99",
                                             "oid": 7}}, T0 + 12)
    p = core.book.positions[0]
    assert o.state == ofsm.FILLED and p.has_exposure and p.size == 0.0
    for t in range(5):
        core.on_housekeeping(T0 + 200 + 200 * t)
    assert core._equity_parts()[1] == 0.0  # noqa: SLF001
    assert core.breakers.unrealised == 0.0 and not core.hard_stop.latched
    shell = SimpleNamespace(trading=core)
    assert TradingApp._unrealized(shell) == 0.0  # type: ignore[arg-type]  # /status, metrics
    # the fills arrive: now it counts, at their price
    core.on_fill("t1", o.cloid, o.coin, False, 99.99, o.sz, 0.0, T0 + 1300, T0 + 1300)
    core.on_housekeeping(T0 + 1500)
    want = (99.7 - 99.99) * -o.sz
    assert core._equity_parts()[1] == pytest.approx(want)  # noqa: SLF001
    assert TradingApp._unrealized(shell) == pytest.approx(want)  # type: ignore[arg-type]
    assert not core.hard_stop.latched


# ----------------------------------------------------------------- item 7: alert storms
def test_no_price_to_flatten_is_alerted_once_per_state_change_with_a_count() -> None:
    """A restored position with no price yet is retried every housekeeping tick: one alert
    when the condition starts, one (info) when it ends, with the count; again only if it
    comes back."""
    core, _ = make_trading(trade())
    core.set_ready("user_channels", True)  # connected: a flatten could leave the process
    # a fill nobody placed, before any market data: hard stop, flatten, but no price
    core.on_fill("t1", None, "xyz:GOLD", True, 100.0, 0.5, 0.0, T0, T0)
    core.kill(T0 + 1, "test")
    for t in range(50):
        core.on_housekeeping(T0 + 100 + 100 * t)
    out = alerts(core)
    assert [a.code for a in out if a.code == "flatten_no_price"] == ["flatten_no_price"]
    seen = core.alert_states()["flatten_no_price:xyz:GOLD"]
    assert seen >= 51  # counted, not alerted
    core.on_bbo(0, 1, 99.99, 10.0, 100.01, 10.0, T0 + 6000)  # a price: the flatten goes
    out = alerts(core)
    [cleared] = [a for a in out if a.code == "flatten_no_price_cleared"]
    assert f"{seen} time(s)" in cleared.message and core.alert_states() == {}
    assert core.book.positions[0].flatten_cloid is not None
