"""Circuit breakers: each fires at its threshold and not below, latches, resets, persists."""

from __future__ import annotations

import ast
import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import BreakersConfig
from engine.core.breakers import (
    BREAKERS,
    DAY_MS,
    CircuitBreakers,
    Trip,
    reached,
    utc_day,
)

T0 = 1_767_000_000_000.0  # 2025-12-29 09:20 UTC
MIDNIGHT = (utc_day(T0) + 1) * DAY_MS  # the next UTC midnight
EQ = 10_000.0

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def make(equity: float = EQ, **kw: Any) -> CircuitBreakers:
    return CircuitBreakers(BreakersConfig(**kw), equity)


def names(trips: list[Trip]) -> list[str]:
    return [t.breaker for t in trips]


# ------------------------------------------------------------------ daily loss
@pytest.mark.parametrize(("loss", "fires"), [
    (200.0, True),      # exactly 2 %
    (199.9, False),     # 1.999 %
    (200.1, True),      # 2.001 %
])
def test_daily_loss_threshold(loss: float, fires: bool) -> None:
    cb = make()
    trips = cb.on_trade_closed(-loss, T0)
    assert names(trips) == (["daily_loss"] if fires else [])
    if fires:
        t = trips[0]
        assert t.market is None and t.threshold == 2.0 and t.latches_hard_stop
        assert t.value == pytest.approx(loss / EQ * 100)
        assert f"{loss:.2f} USD" in t.detail and "2 %" in t.detail


def test_daily_loss_float_rounding_still_fires_at_threshold() -> None:
    base = 10_000.3
    loss = base * 2 / 100
    assert loss / base * 100 < 2.0  # float rounding puts it just below
    cb = make(base)
    assert names(cb.on_trade_closed(-loss, T0)) == ["daily_loss"]


def test_daily_loss_accumulates_realised_and_unrealised_pnl() -> None:
    cb = make()
    assert cb.on_trade_closed(-120.0, T0) == []
    assert cb.on_trade_closed(+20.0, T0 + 1) == []  # net −100: 1 %
    assert cb.on_unrealized(+60.0, T0 + 2) == []  # a confirmed gain offsets: −40
    assert cb.daily_loss_usd() == pytest.approx(40.0)
    assert cb.on_unrealized(-99.0, T0 + 3) == []  # 1.99 %
    trips = cb.on_unrealized(-100.0, T0 + 4)  # 2 %
    assert names(trips) == ["daily_loss"]
    assert "unrealised -100.00" in trips[0].detail
    assert cb.snapshot()["daily_pnl"] == pytest.approx(-200.0)


def test_an_unrealised_gain_offsets_a_realised_loss_until_it_fades() -> None:
    """Issue 9 invariant 7: no loss breaker while today's P&L (realised + unrealised of
    confirmed exposure) is ≥ 0. A trade closing 2.5 % down while another position is 3 % up
    is a profitable day; once the gain fades the loss shows and the breaker trips. Before: an
    unrealised gain never offset, and the breaker latched a profitable account."""
    cb = make()
    assert cb.on_unrealized(+300.0, T0) == []
    assert cb.on_trade_closed(-250.0, T0 + 1) == []  # today +50
    assert cb.daily_loss_usd() == pytest.approx(-50.0)
    assert cb.on_unrealized(+51.0, T0 + 2) == []  # 1.99 % down
    assert names(cb.on_unrealized(+50.0, T0 + 3)) == ["daily_loss"]  # 2 %: trips


def test_a_closed_trade_is_judged_with_the_unrealised_pnl_right_after_it() -> None:
    """The core passes the unrealised P&L with the closed trade: the closed position's own
    loss, still in the last tick's unrealised total, is not counted a second time, and a gain
    opened since that tick counts. Before: the last tick's total was used."""
    cb = make()
    assert cb.on_unrealized(-150.0, T0) == []  # the position about to close: 1.5 % down
    assert cb.on_trade_closed(-150.0, T0 + 1, unrealised=0.0) == []  # now closed: 1.5 %
    assert cb.daily_loss_usd() == pytest.approx(150.0)
    assert cb.on_trade_closed(-100.0, T0 + 2, unrealised=+60.0) == []  # −250 + 60: 1.9 %
    assert names(cb.on_equity(EQ, T0 + 3, unrealised=+50.0)) == ["daily_loss"]  # 2 %


def test_daily_loss_base_is_the_first_equity_of_the_day() -> None:
    cb = make()
    cb.on_equity(20_000.0, T0)  # the day's first equity: the base
    cb.on_equity(9_000.0, T0 + 1)
    assert cb.day_start_equity == 20_000.0
    assert cb.on_trade_closed(-399.0, T0 + 2) == []  # 1.995 % of 20k
    assert names(cb.on_trade_closed(-1.0, T0 + 3)) == ["daily_loss"]


def test_daily_loss_disabled_with_zero() -> None:
    cb = make(daily_loss_pct=0.0)
    assert cb.on_trade_closed(-5_000.0, T0) == []
    assert cb.tripped() == []


# -------------------------------------------------------------------- drawdown
@pytest.mark.parametrize(("equity", "fires"), [
    (9_500.0, True),    # exactly 5 %
    (9_500.1, False),   # 4.999 %
    (9_499.9, True),    # 5.001 %
])
def test_drawdown_threshold(equity: float, fires: bool) -> None:
    cb = make(daily_loss_pct=0.0)
    cb.on_equity(EQ, T0)
    trips = cb.on_equity(equity, T0 + 1)
    assert names(trips) == (["drawdown"] if fires else [])
    if fires:
        assert trips[0].value == pytest.approx((EQ - equity) / EQ * 100)
        assert "below the peak 10000.00 USD" in trips[0].detail


def test_drawdown_float_rounding_still_fires_at_threshold() -> None:
    peak = 10_000.3
    equity = peak - peak * 5 / 100
    assert (peak - equity) / peak * 100 < 5.0
    cb = make(peak, daily_loss_pct=0.0)
    assert names(cb.on_equity(equity, T0)) == ["drawdown"]


def test_drawdown_measured_from_the_running_peak() -> None:
    cb = make(daily_loss_pct=0.0)
    cb.on_equity(12_000.0, T0)
    cb.on_equity(11_500.0, T0 + 1)
    assert cb.on_equity(11_401.0, T0 + 2) == []  # 4.99 % of 12k, 14 % above the start
    assert names(cb.on_equity(11_400.0, T0 + 3)) == ["drawdown"]
    assert cb.peak == 12_000.0


def test_drawdown_disabled_with_zero() -> None:
    cb = make(drawdown_pct=0.0, daily_loss_pct=0.0)
    assert cb.on_equity(1.0, T0) == []


# ---------------------------------------------------------- consecutive losses
@pytest.mark.parametrize("limit", [1, 3, 5])
def test_consecutive_losses_fire_on_the_nth_loss_exactly(limit: int) -> None:
    cb = make(daily_loss_pct=0.0, max_consecutive_losses=limit)
    for i in range(limit - 1):
        assert cb.on_trade_closed(-1.0, T0 + i) == []  # below
    trips = cb.on_trade_closed(-1.0, T0 + limit)  # at
    assert names(trips) == ["consecutive_losses"]
    assert trips[0].value == limit and trips[0].threshold == limit
    assert f"{limit} consecutive losing trades" in trips[0].detail
    assert cb.on_trade_closed(-1.0, T0 + limit + 1) == []  # above: already latched
    assert cb.consecutive_losses == limit + 1


@pytest.mark.parametrize("breaker_pnl", [0.0, 0.01])
def test_break_even_or_win_ends_the_run(breaker_pnl: float) -> None:
    cb = make(daily_loss_pct=0.0)
    for i in range(4):
        cb.on_trade_closed(-1.0, T0 + i)
    assert cb.on_trade_closed(breaker_pnl, T0 + 10) == []
    assert cb.consecutive_losses == 0
    for i in range(4):
        assert cb.on_trade_closed(-1.0, T0 + 20 + i) == []
    assert names(cb.on_trade_closed(-1.0, T0 + 30)) == ["consecutive_losses"]


def test_consecutive_losses_disabled_with_zero() -> None:
    cb = make(daily_loss_pct=0.0, max_consecutive_losses=0)
    for i in range(50):
        assert cb.on_trade_closed(-1.0, T0 + i) == []


# ----------------------------------------------------------------- market move
@pytest.mark.parametrize(("px", "fires"), [
    (110.0, True), (109.99, False), (110.01, True),  # up: at, below, above
    (90.0, True), (90.01, False), (89.99, True),     # down (90/100 rounds to 9.999999…)
])
def test_market_move_threshold(px: float, fires: bool) -> None:
    cb = make()
    assert cb.on_price("xyz:GOLD", 100.0, T0) == []
    trips = cb.on_price("xyz:GOLD", px, T0 + 30_000)
    assert names(trips) == (["market_move"] if fires else [])
    assert cb.is_halted("xyz:GOLD") is fires
    if fires:
        t = trips[0]
        assert t.market == "xyz:GOLD" and not t.latches_hard_stop
        assert t.value == pytest.approx(abs(px / 100 - 1) * 100)
        assert ("up" if px > 100 else "down") in t.detail and "60 s" in t.detail


def test_market_move_relative_to_any_price_in_the_window() -> None:
    cb = make()
    cb.on_price("A", 100.0, T0)
    cb.on_price("A", 104.0, T0 + 10_000)
    cb.on_price("A", 96.0, T0 + 20_000)
    assert cb.on_price("A", 105.0, T0 + 30_000) == []  # 9.375 % above 96
    assert names(cb.on_price("A", 105.6, T0 + 40_000)) == ["market_move"]  # 10 % above 96


@pytest.mark.parametrize(("dt_ms", "fires"), [(60_000, True), (60_001, False)])
def test_market_move_window_is_inclusive(dt_ms: int, fires: bool) -> None:
    cb = make()
    cb.on_price("A", 100.0, T0)
    assert bool(cb.on_price("A", 110.0, T0 + dt_ms)) is fires


def test_market_move_halts_only_that_market() -> None:
    cb = make()
    cb.on_price("A", 100.0, T0)
    cb.on_price("B", 100.0, T0)
    assert names(cb.on_price("A", 120.0, T0 + 1)) == ["market_move"]
    assert cb.on_price("A", 200.0, T0 + 2) == []  # latched: no second trip
    assert cb.on_price("B", 105.0, T0 + 3) == []
    assert cb.halted_markets() == frozenset({"A"})
    assert not cb.any_global_tripped()


def test_market_move_disabled_with_zero() -> None:
    cb = make(market_move_pct=0.0)
    cb.on_price("A", 100.0, T0)
    assert cb.on_price("A", 1_000.0, T0 + 1) == []
    assert cb.windows == {}


# ---------------------------------------------------------------- reject burst
def test_reject_burst_is_named_as_a_global_breaker_and_latches() -> None:
    cb = make()
    trips = cb.on_reject_burst("last: Insufficient margin", T0, count=6, limit=5)
    assert names(trips) == ["reject_burst"]
    t = trips[0]
    assert t.latches_hard_stop and t.value == 6 and t.threshold == 5
    assert "Insufficient margin" in t.detail and "6 rejects, limit 5" in t.detail
    assert cb.on_reject_burst("again", T0 + 1) == []
    assert cb.any_global_tripped()


# -------------------------------------------------------------------- rollover
def test_yesterdays_losses_do_not_count_today() -> None:
    cb = make()
    cb.on_equity(EQ, MIDNIGHT - 10_000)
    assert cb.on_trade_closed(-150.0, MIDNIGHT - 5_000) == []  # 1.5 % yesterday
    assert cb.on_trade_closed(-100.0, MIDNIGHT + 5_000) == []  # 1 % today
    snap = cb.snapshot()
    assert snap["realised_today"] == pytest.approx(-100.0)
    assert snap["day"] == "2025-12-30"
    # the day was opened by a trade: the last equity known is the base
    assert snap["day_start_equity"] == EQ
    assert names(cb.on_trade_closed(-100.0, MIDNIGHT + 6_000)) == ["daily_loss"]


def test_first_equity_of_the_new_day_is_its_base() -> None:
    cb = make()
    cb.on_equity(EQ, MIDNIGHT - 1)
    cb.on_equity(9_900.0, MIDNIGHT)  # exactly midnight belongs to the new day
    cb.on_equity(9_950.0, MIDNIGHT + 1)
    assert cb.day_start_equity == 9_900.0


def test_a_trip_stays_latched_across_the_rollover_until_reset() -> None:
    cb = make()
    assert names(cb.on_trade_closed(-300.0, MIDNIGHT - 1)) == ["daily_loss"]
    cb.on_trade_closed(+1.0, MIDNIGHT + DAY_MS * 3)
    cb.on_equity(EQ, MIDNIGHT + DAY_MS * 3 + 1)
    assert names(cb.tripped()) == ["daily_loss"]
    assert cb.snapshot()["daily_loss_pct"] == pytest.approx(-0.01)
    assert names(cb.reset()) == ["daily_loss"]
    assert cb.tripped() == []


def test_a_latched_breaker_does_not_trip_twice_on_worse_input() -> None:
    cb = make()
    assert names(cb.on_trade_closed(-250.0, T0)) == ["daily_loss"]
    assert cb.on_trade_closed(-250.0, T0 + 1) == []
    assert cb.on_unrealized(-1_000.0, T0 + 2) == []
    assert names(cb.tripped()) == ["daily_loss"]


# ----------------------------------------------------------------------- reset
def test_reset_filters_by_breaker_and_market() -> None:
    cb = make()
    cb.on_price("A", 100.0, T0)
    cb.on_price("B", 100.0, T0)
    cb.on_price("A", 90.0, T0 + 1)
    cb.on_price("B", 90.0, T0 + 1)
    cb.on_reject_burst("x", T0 + 2)
    assert [t.market for t in cb.reset(market="A")] == ["A"]
    assert cb.halted_markets() == frozenset({"B"})
    assert cb.reset("drawdown") == []  # nothing matched
    assert names(cb.reset("reject_burst")) == ["reject_burst"]
    assert [t.market for t in cb.reset("market_move")] == ["B"]
    assert cb.tripped() == [] and cb.halted_markets() == frozenset()


@pytest.mark.parametrize(("breaker", "market"), [("nope", None), ("drawdown", "A"),
                                                 ("reject_burst", "A")])
def test_reset_rejects_unknown_names(breaker: str, market: str | None) -> None:
    with pytest.raises(ValueError, match="breaker"):
        make().reset(breaker, market)


def test_reset_rearms_drawdown_from_the_current_equity() -> None:
    cb = make(daily_loss_pct=0.0)
    assert names(cb.on_equity(9_000.0, T0)) == ["drawdown"]
    cb.reset("drawdown")
    assert cb.peak == 9_000.0
    assert cb.on_equity(8_600.0, T0 + 1) == []  # 4.44 % below the new peak
    assert names(cb.on_equity(8_550.0, T0 + 2)) == ["drawdown"]  # 5 %


def test_reset_rearms_daily_loss_from_now() -> None:
    cb = make()
    cb.on_equity(EQ, T0)
    assert names(cb.on_trade_closed(-250.0, T0 + 1)) == ["daily_loss"]
    cb.on_equity(9_750.0, T0 + 2)
    cb.reset("daily_loss")
    assert cb.day_start_equity == 9_750.0 and cb.realised_today == 0.0
    assert cb.on_trade_closed(-194.0, T0 + 3) == []  # 1.99 % of 9 750
    assert names(cb.on_trade_closed(-1.0, T0 + 4)) == ["daily_loss"]


def test_reset_rearms_consecutive_losses() -> None:
    cb = make(daily_loss_pct=0.0)
    for i in range(5):
        cb.on_trade_closed(-1.0, T0 + i)
    cb.reset("consecutive_losses")
    assert cb.consecutive_losses == 0
    for i in range(4):
        assert cb.on_trade_closed(-1.0, T0 + 10 + i) == []
    assert names(cb.on_trade_closed(-1.0, T0 + 20)) == ["consecutive_losses"]


def test_reset_forgets_the_markets_price_window() -> None:
    cb = make()
    cb.on_price("A", 100.0, T0)
    cb.on_price("A", 111.0, T0 + 1)
    cb.reset(market="A")
    assert cb.on_price("A", 111.0, T0 + 2) == []  # 100 is forgotten
    assert cb.on_price("A", 101.0, T0 + 3) == []  # −9 % from 111
    assert names(cb.on_price("A", 99.9, T0 + 4)) == ["market_move"]  # −10 %


def test_reset_leaves_other_breakers_state_alone() -> None:
    cb = make(daily_loss_pct=0.0)
    cb.on_equity(9_000.0, T0)  # drawdown trips
    cb.on_reject_burst("x", T0)
    cb.reset("reject_burst")
    assert cb.peak == EQ and names(cb.tripped()) == ["drawdown"]


# ----------------------------------------------------------------- persistence
def test_state_round_trip_through_json_keeps_the_latches() -> None:
    cfg = BreakersConfig()
    cb = CircuitBreakers(cfg, EQ)
    cb.on_equity(10_500.0, T0)
    cb.on_equity(9_900.0, T0 + 1)  # 5.7 % drawdown
    for i in range(3):
        cb.on_trade_closed(-10.0, T0 + 2 + i)
    cb.on_unrealized(-5.0, T0 + 5)
    cb.on_price("A", 100.0, T0 + 6)
    cb.on_price("A", 89.0, T0 + 7)
    state = json.loads(json.dumps(cb.to_state(), allow_nan=False))
    back = CircuitBreakers.from_state(cfg, state)
    assert back.snapshot() == cb.snapshot()
    assert back.tripped() == cb.tripped()
    assert back.halted_markets() == frozenset({"A"})
    assert back.to_state() == state
    # latched after the restart: no second notification, reset still works
    assert back.on_equity(9_000.0, T0 + 8) == []
    assert back.on_price("A", 50.0, T0 + 9) == []
    assert sorted(names(back.reset())) == ["drawdown", "market_move"]
    # the loss run carries over: two more losses make five
    back.on_trade_closed(-1.0, T0 + 10)
    assert names(back.on_trade_closed(-1.0, T0 + 11)) == ["consecutive_losses"]


def test_state_of_a_fresh_instance_round_trips() -> None:
    cb = make()
    state = json.loads(json.dumps(cb.to_state(), allow_nan=False))
    assert CircuitBreakers.from_state(BreakersConfig(), state).snapshot() == cb.snapshot()


def _state() -> dict[str, Any]:
    cb = make()
    cb.on_price("A", 100.0, T0)
    cb.on_price("A", 80.0, T0 + 1)
    return cb.to_state()


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda s: s.update(v=2), "version"),
    (lambda s: s.pop("peak"), "missing 'peak'"),
    (lambda s: s.update(equity="1"), "equity must be a finite number"),
    (lambda s: s.update(realised_today=float("nan")), "finite"),
    (lambda s: s.update(consecutive_losses=-1), "consecutive_losses"),
    (lambda s: s.update(day="x"), "day must be"),
    (lambda s: s.update(trips={}), "must be a list"),
    (lambda s: s["trips"][0].update(breaker="bogus"), "unknown breaker"),
    (lambda s: s["trips"][0].update(market=None), "needs a market"),
    (lambda s: s["trips"][0].update(breaker="drawdown"), "has a market"),
    (lambda s: s["trips"][0].pop("detail"), "missing 'detail'"),
    (lambda s: s["trips"].append(3), "must be an object"),
])
def test_malformed_state_is_a_clear_error(mutate: Any, match: str) -> None:
    state = _state()
    mutate(state)
    with pytest.raises(ValueError, match=match):
        CircuitBreakers.from_state(BreakersConfig(), state)


def test_state_that_is_not_a_dict_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="must be an object"):
        CircuitBreakers.from_state(BreakersConfig(), [1, 2])


# ------------------------------------------------------------------- bad input
@pytest.mark.parametrize("equity", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_starting_equity_is_refused(equity: float) -> None:
    with pytest.raises(ValueError, match="starting equity"):
        make(equity)


def test_bad_inputs_are_ignored_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    cb = make()
    caplog.set_level(logging.WARNING, logger="engine.breakers")
    nan, inf = float("nan"), float("inf")
    assert cb.on_equity(nan, T0) == []
    assert cb.on_trade_closed(-inf, T0) == []
    assert cb.on_unrealized(nan, T0) == []
    assert cb.on_price("A", 0.0, T0) == []
    assert cb.on_price("A", -5.0, T0) == []
    assert cb.on_price("A", nan, T0) == []
    assert cb.on_price("", 100.0, T0) == []
    assert cb.on_price("A", 100.0, nan) == []
    assert cb.on_trade_closed(-1.0, inf) == []
    assert cb.on_reject_burst("x", nan) == []
    snap = cb.snapshot()
    assert snap["bad_inputs"] == {"equity": 1, "trade": 2, "unrealised": 1, "price": 5,
                                  "reject_burst": 1}
    assert snap["equity"] == EQ and snap["realised_today"] == 0.0 and cb.tripped() == []
    assert "A" not in cb.windows or not cb.windows["A"].lows
    text = caplog.text
    assert "ignored bad equity input: equity=nan" in text
    assert "ignored bad trade input: pnl=-inf" in text
    assert "ignored bad price input: A=0.0" in text
    assert "ignored bad price input: market=''" in text
    assert "ignored bad price input: now_ms=nan" in text
    assert "ignored bad reject_burst input: now_ms=nan" in text


def test_bad_input_logging_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    cb = make()
    caplog.set_level(logging.WARNING, logger="engine.breakers")
    for i in range(100):
        cb.on_price("A", -1.0, T0 + i * 100)  # 10 s of garbage
    assert len(caplog.records) == 1
    cb.on_price("A", -1.0, T0 + 61_000)
    assert len(caplog.records) == 2
    assert "101 bad price inputs so far" in caplog.records[-1].getMessage()


def test_price_time_regression_is_clamped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    cb = make()
    caplog.set_level(logging.WARNING, logger="engine.breakers")
    cb.on_price("A", 100.0, T0 + 50_000)
    # an earlier timestamp is treated as the latest one seen, so the window stays ordered
    assert names(cb.on_price("A", 111.0, T0)) == ["market_move"]
    assert "price_time_regression" in caplog.text
    assert cb.snapshot()["bad_inputs"] == {"price_time_regression": 1}
    assert "ignored bad price_time_regression input: A=" in caplog.text


def test_snapshot_is_json_and_complete() -> None:
    cb = make()
    cb.on_equity(10_200.0, T0)
    cb.on_trade_closed(-10.0, T0)
    cb.on_price("A", 100.0, T0)
    cb.on_price("A", 120.0, T0)
    snap = json.loads(json.dumps(cb.snapshot(), allow_nan=False))
    assert snap["equity"] == 10_200.0 and snap["peak_equity"] == 10_200.0
    assert snap["day_start_equity"] == 10_200.0 and snap["consecutive_losses"] == 1
    assert snap["daily_loss_usd"] == pytest.approx(10.0)
    assert snap["drawdown_pct"] == 0.0 and snap["halted_markets"] == ["A"]
    assert [t["breaker"] for t in snap["trips"]] == ["market_move"]
    assert set(snap["thresholds"]) >= set(BREAKERS) - {"reject_burst"}


def test_module_is_pure() -> None:
    """No clock, no I/O, no async in the functional core."""
    import engine.core.breakers as mod

    tree = ast.parse(Path(mod.__file__).read_text("utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported.isdisjoint({"time", "trio", "asyncio", "os", "socket", "random"})


def test_reached_helper() -> None:
    assert reached(2.0, 2.0) and reached(1.9999999999999998, 2.0)
    assert not reached(1.999, 2.0) and not reached(5.0, 0.0)


# ------------------------------------------------------------------ properties
def _up_down(p: float, ref: float) -> float:
    return max((p / ref - 1.0) * 100.0, (1.0 - p / ref) * 100.0)


def oracle_market_trips(path: list[tuple[float, float]], window_ms: float,
                        pct: float) -> list[int]:
    """O(n²): indices where the price trips against any earlier price within the window;
    after a trip the breaker is reset, so the window restarts at the next price."""
    trips = []
    start = 0
    for j, (tj, pj) in enumerate(path):
        if any(tj - path[i][0] <= window_ms and reached(_up_down(pj, path[i][1]), pct)
               for i in range(start, j)):
            trips.append(j)
            start = j + 1
    return trips


prices = st.one_of(st.integers(min_value=50, max_value=150).map(float),
                   st.floats(min_value=1e-3, max_value=1e6, allow_nan=False,
                             allow_infinity=False))
paths = st.lists(st.tuples(st.integers(min_value=0, max_value=4_000), prices,
                           st.sampled_from(["A", "B"])), min_size=1, max_size=60)


@SETTINGS
@given(path=paths, window_s=st.sampled_from([0.5, 1.0, 2.5, 60.0]),
       pct=st.sampled_from([1.0, 5.0, 10.0, 25.0]))
def test_market_move_matches_brute_force(path: list[tuple[int, float, str]], window_s: float,
                                         pct: float) -> None:
    cb = make(market_move_pct=pct, market_move_window_s=window_s)
    t = T0
    per_market: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    got: dict[str, list[int]] = {"A": [], "B": []}
    for gap, px, m in path:
        t += gap
        trips = cb.on_price(m, px, t)
        if trips:
            assert names(trips) == ["market_move"] and trips[0].market == m
            assert reached(trips[0].value, pct)
            got[m].append(len(per_market[m]))
            assert [x.market for x in cb.reset(market=m)] == [m]
        per_market[m].append((t, px))
        # O(1) amortised: the deques never hold more than the window's prices
        w = cb.windows.get(m)
        if w is not None:
            assert len(w.lows) <= len(per_market[m]) and len(w.highs) <= len(per_market[m])
    for m, p in per_market.items():
        assert got[m] == oracle_market_trips(p, window_s * 1000.0, pct)


@SETTINGS
@given(equities=st.lists(st.floats(min_value=0, max_value=1e7, allow_nan=False),
                         min_size=1, max_size=50),
       start=st.floats(min_value=1, max_value=1e7), pct=st.sampled_from([1.0, 5.0, 50.0]))
def test_drawdown_equals_brute_force(equities: list[float], start: float, pct: float) -> None:
    cb = make(start, drawdown_pct=pct, daily_loss_pct=0.0)
    first_trip = None
    for i, e in enumerate(equities):
        trips = cb.on_equity(e, T0 + i)
        peak = max([start, *equities[: i + 1]])
        dd = (peak - e) / peak * 100
        assert cb.peak == peak
        assert cb.drawdown_pct() == dd
        if first_trip is None and reached(dd, pct):
            first_trip = i
            assert names(trips) == ["drawdown"] and trips[0].value == dd
        else:
            assert trips == []
    assert (first_trip is not None) == bool(cb.tripped())


@SETTINGS
@given(pnls=st.lists(st.one_of(st.just(0.0), st.floats(min_value=-100, max_value=100,
                                                          allow_nan=False)),
                     min_size=1, max_size=60),
       limit=st.integers(min_value=1, max_value=6))
def test_consecutive_losses_equals_trailing_run(pnls: list[float], limit: int) -> None:
    cb = make(daily_loss_pct=0.0, max_consecutive_losses=limit)
    fired_at = None
    for i, pnl in enumerate(pnls):
        trips = cb.on_trade_closed(pnl, T0 + i)
        run = 0
        for x in reversed(pnls[: i + 1]):
            if x >= 0:
                break
            run += 1
        assert cb.consecutive_losses == run
        if trips:
            assert fired_at is None and names(trips) == ["consecutive_losses"]
            fired_at = i
    expected = next((i for i in range(len(pnls))
                     if all(x < 0 for x in pnls[max(0, i - limit + 1): i + 1]) and i + 1 >= limit),
                    None)
    assert fired_at == expected


@SETTINGS
@given(trades=st.lists(st.tuples(st.integers(min_value=0, max_value=DAY_MS // 3),
                                 st.floats(min_value=-300, max_value=300, allow_nan=False)),
                       min_size=1, max_size=40))
def test_daily_realised_equals_brute_force_per_utc_day(trades: list[tuple[int, float]]) -> None:
    cb = make(daily_loss_pct=0.0, max_consecutive_losses=0)
    t = T0
    seen: list[tuple[float, float]] = []
    for gap, pnl in trades:
        t += gap
        cb.on_trade_closed(pnl, t)
        seen.append((t, pnl))
        today = sum(p for ts, p in seen if utc_day(ts) == utc_day(t))
        assert cb.realised_today == pytest.approx(today, abs=1e-6)
        assert cb.daily_loss_pct() == pytest.approx(-today / EQ * 100, abs=1e-8)
        assert math.isfinite(cb.snapshot()["daily_loss_pct"])


def test_an_empty_account_at_midnight_uses_the_peak_as_the_daily_base() -> None:
    cb = make()
    assert names(cb.on_equity(0.0, MIDNIGHT)) == ["drawdown"]  # 100 % below the peak
    assert cb.day_start_equity == 0.0
    assert cb.on_trade_closed(-199.0, MIDNIGHT + 1) == []  # 1.99 % of the 10 000 peak
    assert names(cb.on_trade_closed(-1.0, MIDNIGHT + 2)) == ["daily_loss"]
    assert math.isfinite(cb.snapshot()["daily_loss_pct"])
