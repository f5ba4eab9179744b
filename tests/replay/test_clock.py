"""The simulated clock and the timer order of replay."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.replay.clock import SimClock, TimerLoopError, Timers


def test_clock_never_goes_back() -> None:
    c = SimClock(100.0)
    c.set(50.0)
    assert c() == 100.0
    c.set(150.5)
    assert c() == 150.5


class _Source:
    """A one-shot-per-due timer: fires, logs, and schedules its next due from a list."""

    def __init__(self, name: str, dues: list[float], log: list[tuple[float, str, float]],
                 clock: SimClock) -> None:
        self.name, self.dues, self.log, self.clock = name, sorted(dues), log, clock

    def due(self) -> float | None:
        return self.dues[0] if self.dues else None

    def fire(self, now: float) -> None:
        d = self.dues.pop(0)
        self.log.append((d, self.name, now))
        assert self.clock() == now


@given(a=st.lists(st.integers(0, 1000), max_size=20),
       b=st.lists(st.integers(0, 1000), max_size=20),
       cut=st.integers(0, 1100))
def test_timers_fire_in_due_order_at_their_due_time(a: list[int], b: list[int],
                                                    cut: int) -> None:
    clock = SimClock(0.0)
    log: list[tuple[float, str, float]] = []
    t = Timers(clock)
    sa, sb = _Source("a", [float(x) for x in a], log, clock), \
        _Source("b", [float(x) for x in b], log, clock)
    t.add("a", sa.due, sa.fire)
    t.add("b", sb.due, sb.fire)
    t.advance(float(cut))
    want = sorted([(float(x), "a") for x in a if x <= cut] + [(float(x), "b") for x in b
                                                              if x <= cut])
    assert [(d, n) for d, n, _ in log] == want  # time order; ties: the first source added
    assert all(now == d for d, _, now in log)  # each at its due time
    assert clock() == cut
    assert all(x > cut for x in sa.dues + sb.dues)  # nothing due is left behind


def test_a_source_that_stays_due_is_an_error_not_a_hang() -> None:
    clock = SimClock(0.0)
    t = Timers(clock)
    t.add("stuck", lambda: 5.0, lambda now: None)
    with pytest.raises(TimerLoopError, match="stuck"):
        t.advance(10.0)


def test_a_timer_set_by_a_timer_in_the_window_fires_too() -> None:
    clock = SimClock(0.0)
    dues = [10.0]
    seen: list[float] = []

    def fire(now: float) -> None:
        seen.append(now)
        dues.pop(0)
        if now < 30:
            dues.append(now + 10.0)

    t = Timers(clock)
    t.add("chain", lambda: dues[0] if dues else None, fire)
    t.advance(25.0)
    assert seen == [10.0, 20.0] and dues == [30.0]
