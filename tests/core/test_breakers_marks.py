"""``CircuitBreakers.on_marks`` (the housekeeping tick's unrealised P&L and equity) is
``on_unrealized`` then ``on_equity``, observably, and skips the checks when nothing changed.

Oracle: a second ``CircuitBreakers`` given the same random sequence of inputs, with each tick
as the two calls the trading core made before. Between ticks the sequence has the other inputs
(closed trades, equities, reject bursts, resets, rebases), bad values (NaN, ±inf, a NaN time),
repeated and changing tick values, clock regressions and UTC-day rollovers. After every step
the trips, the journaled state (compared as JSON text: -0.0 and 0.0 differ there), the
snapshot and the bad-input counts must be equal.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import BreakersConfig
from engine.core.breakers import DAY_MS, CircuitBreakers

T0 = 1_767_225_000_000.0  # 2026-01-01 00:50 UTC

VALUE = st.sampled_from([0.0, -0.0, 0.0, 12.5, -12.5, -150.0, -600.0, 40.0, math.nan,
                         math.inf, -math.inf])
EQUITY = st.one_of(st.none(), st.sampled_from([10_000.0, 10_000.0, 9_990.0, 10_050.0,
                                               9_400.0, 9_000.0, math.nan]))
DT = st.sampled_from([100.0, 100.0, 100.0, 0.0, -300.0, 60_000.0, DAY_MS, math.nan])
STEP = st.one_of(
    st.tuples(st.just("tick"), VALUE, EQUITY, DT),
    st.tuples(st.just("tick_same"), st.just(0.0), st.just(None), DT),
    st.tuples(st.just("trade"), st.sampled_from([-50.0, -0.0, 0.0, 25.0, math.nan]),
              st.none(), DT),
    st.tuples(st.just("equity"), st.sampled_from([10_000.0, 9_500.0, 10_200.0, math.inf]),
              st.none(), DT),
    st.tuples(st.just("reject_burst"), st.just(0.0), st.none(), DT),
    st.tuples(st.just("reset"), st.just(0.0), st.none(), DT),
    st.tuples(st.just("rebase"), st.just(0.0), st.none(), DT),
)


def _view(cb: CircuitBreakers) -> tuple[Any, ...]:
    return (json.dumps(cb.to_state(), sort_keys=True), json.dumps(cb.snapshot(),
                                                                  sort_keys=True, default=str),
            dict(cb.bad_inputs), cb.last_ms, sorted(cb.halted))


def _trips(trips: list[Any]) -> list[dict[str, Any]]:
    return [t.to_dict() for t in trips]


@settings(max_examples=400, deadline=None)
@given(st.lists(STEP, max_size=80), st.sampled_from([0.5, 2.0]), st.sampled_from([1.0, 5.0]),
       st.sampled_from([0, 3]))
def test_on_marks_equals_on_unrealized_then_on_equity(steps: list[tuple[Any, ...]],
                                                      daily: float, drawdown: float,
                                                      run: int) -> None:
    cfg = BreakersConfig(daily_loss_pct=daily, drawdown_pct=drawdown,
                         max_consecutive_losses=run)
    old = CircuitBreakers(cfg, 10_000.0)
    new = CircuitBreakers(cfg, 10_000.0)
    now = T0
    last = (0.0, 10_000.0)
    for kind, value, equity, dt in steps:
        t = now + dt
        if math.isfinite(t):
            now = t
        at = t  # (a NaN time is given as is: both must count it as bad input)
        if kind in ("tick", "tick_same"):
            if kind == "tick":
                last = (value, equity)
            u, e = last
            want = old.on_unrealized(u, at)
            if e is not None:
                want += old.on_equity(e, at)
            got = new.on_marks(u, e, at)
        elif kind == "trade":
            want = old.on_trade_closed(value, at, unrealised=last[0])
            got = new.on_trade_closed(value, at, unrealised=last[0])
        elif kind == "equity":
            want = old.on_equity(value, at)
            got = new.on_equity(value, at)
        elif kind == "reject_burst":
            want = old.on_reject_burst("burst", at, count=5, limit=4)
            got = new.on_reject_burst("burst", at, count=5, limit=4)
        elif kind == "reset":
            want, got = old.reset(), new.reset()
        else:
            old.rebase(old.equity)
            new.rebase(new.equity)
            want = got = []
        assert _trips(got) == _trips(want), kind
        assert _view(new) == _view(old), kind


def test_a_tick_with_nothing_changed_skips_the_checks() -> None:
    """The shortcut is taken (what makes a quiet tick O(1)), and only then."""
    cb = CircuitBreakers(BreakersConfig(), 10_000.0)
    checks = 0
    check = cb._check  # noqa: SLF001

    def counting(now_ms: float, last_pnl: float | None = None) -> list[Any]:
        nonlocal checks
        checks += 1
        return check(now_ms, last_pnl)

    cb._check = counting  # type: ignore[method-assign]  # noqa: SLF001
    assert cb.on_marks(0.0, 10_000.0, T0) == []
    assert checks == 2  # on_unrealized's and on_equity's
    for i in range(1, 50):
        assert cb.on_marks(0.0, 10_000.0, T0 + 100.0 * i) == []
    assert checks == 2
    assert cb.last_ms == T0 + 4_900.0  # the clock still moves on
    cb.on_marks(-5.0, 9_995.0, T0 + 5_000.0)  # a mark moved: checked again
    assert checks == 4
    cb.on_marks(-5.0, 9_995.0, T0 + 5_100.0)
    assert checks == 4
    cb.on_trade_closed(-1.0, T0 + 5_200.0)  # another input: the next tick checks
    assert checks == 5
    cb.on_marks(-5.0, 9_995.0, T0 + 5_300.0)
    assert checks == 7
    cb.on_marks(-5.0, 9_995.0, T0 + DAY_MS)  # a new UTC day: checked
    assert checks == 9
    assert cb.day == int((T0 + DAY_MS) // DAY_MS)
