"""The health rule behind the systemd watchdog: examples plus Hypothesis properties."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ops.health import HealthInputs, HealthReport, evaluate_health

MAX_AGE = 10.0
MAX_LAG = 1000.0
SETTINGS = settings(max_examples=300, deadline=None)


def good(**changes: Any) -> HealthInputs:
    base = HealthInputs(ready=True, mode="paper", markets_total=40, max_market_data_age_s=1.5,
                        feed_connected=True, oldest_unresolved_order_age_s=None,
                        unresolved_order_bound_s=30.0, writer_pending=3, writer_max_pending=100,
                        writer_errors_recent=0, hard_stop=None, killed=False,
                        event_loop_lag_ms=2.0)
    return attrs.evolve(base, **changes)


def check(h: HealthInputs) -> HealthReport:
    return evaluate_health(h, MAX_AGE, MAX_LAG)


def test_healthy_baseline() -> None:
    r = check(good())
    assert r == HealthReport(healthy=True, problems=(), notes=())
    assert r.summary() == "healthy"


@pytest.mark.parametrize(("changes", "problem"), [
    ({"ready": False}, "not READY (paper)"),
    ({"feed_connected": False}, "market data feed disconnected"),
    ({"markets_total": 0}, "no markets (markets_total=0)"),
    ({"max_market_data_age_s": None}, "no market data yet"),
    ({"max_market_data_age_s": 12.34}, "market data 12.3 s old (bound 10 s)"),
    ({"max_market_data_age_s": math.nan}, "market data age invalid (nan)"),
    ({"max_market_data_age_s": -1.0}, "market data age invalid (-1.0)"),
    ({"oldest_unresolved_order_age_s": 45.0}, "order unresolved for 45.0 s (bound 30 s)"),
    ({"oldest_unresolved_order_age_s": math.nan}, "unresolved order age invalid (nan)"),
    ({"writer_pending": 101}, "record writer backlog 101 (max 100)"),
    ({"writer_pending": -1}, "record writer backlog invalid (-1)"),
    ({"writer_errors_recent": 2},
     "record writer: 2 write error(s) since the last successful flush"),
    ({"writer_errors_recent": -1}, "record writer error count invalid (-1)"),
    ({"event_loop_lag_ms": 1500.4}, "event loop lag 1500 ms (bound 1000 ms)"),
    ({"event_loop_lag_ms": math.inf}, "event loop lag inf ms (bound 1000 ms)"),
    ({"unresolved_order_bound_s": math.nan}, "health bound unresolved_order_bound_s invalid (nan)"),
])
def test_each_problem_is_named(changes: dict[str, Any], problem: str) -> None:
    r = check(good(**changes))
    assert not r.healthy
    assert r.problems == (problem,)
    assert r.summary() == f"unhealthy: {problem}"


def test_bounds_are_inclusive_and_none_means_nothing_pending() -> None:
    assert check(good(max_market_data_age_s=MAX_AGE, oldest_unresolved_order_age_s=30.0,
                      writer_pending=100, event_loop_lag_ms=MAX_LAG)).healthy
    assert check(good(oldest_unresolved_order_age_s=None, event_loop_lag_ms=None)).healthy


def test_invalid_bound_arguments_are_problems() -> None:
    r = evaluate_health(good(), math.nan, -1.0)
    assert not r.healthy
    assert r.problems[:2] == ("health bound max_data_age_s invalid (nan)",
                              "health bound max_loop_lag_ms invalid (-1.0)")


def test_hard_stop_and_kill_are_notes_not_problems() -> None:
    r = check(good(hard_stop="reject burst", killed=True))
    assert r.healthy and r.problems == ()
    assert r.notes == ("hard stop latched: reject burst", "kill switch on")
    assert r.summary() == "healthy; hard stop latched: reject burst; kill switch on"


def test_several_problems_in_a_fixed_order() -> None:
    r = check(good(ready=False, feed_connected=False, max_market_data_age_s=None, killed=True))
    assert r.problems == ("not READY (paper)", "market data feed disconnected",
                          "no market data yet")
    assert r.summary() == ("unhealthy: not READY (paper); market data feed disconnected; "
                           "no market data yet; kill switch on")


# --- properties --------------------------------------------------------------------------------

finite_age = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
any_age = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))

inputs = st.builds(
    HealthInputs,
    ready=st.booleans(),
    mode=st.sampled_from(["observe", "paper", "trade"]),
    markets_total=st.integers(min_value=-2, max_value=200),
    max_market_data_age_s=any_age,
    feed_connected=st.booleans(),
    oldest_unresolved_order_age_s=any_age,
    unresolved_order_bound_s=st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
    writer_pending=st.integers(min_value=-5, max_value=10**7),
    writer_max_pending=st.integers(min_value=1, max_value=10**7),
    writer_errors_recent=st.integers(min_value=-2, max_value=50),
    hard_stop=st.one_of(st.none(), st.text(max_size=20)),
    killed=st.booleans(),
    event_loop_lag_ms=any_age,
)


def _rule(h: HealthInputs) -> bool:
    """The rule restated independently (bounds MAX_AGE / MAX_LAG)."""
    def ok_age(x: float | None, bound: float, none_ok: bool) -> bool:
        if x is None:
            return none_ok
        return not math.isnan(x) and 0 <= x <= bound

    return (h.ready and h.feed_connected and h.markets_total > 0
            and ok_age(h.max_market_data_age_s, MAX_AGE, none_ok=False)
            and ok_age(h.oldest_unresolved_order_age_s, h.unresolved_order_bound_s, none_ok=True)
            and 0 <= h.writer_pending <= h.writer_max_pending
            and h.writer_errors_recent == 0
            and ok_age(h.event_loop_lag_ms, MAX_LAG, none_ok=True))


@SETTINGS
@given(inputs)
def test_healthy_iff_no_problems_and_matches_the_rule(h: HealthInputs) -> None:
    r = check(h)
    assert r.healthy == (r.problems == ())
    assert r.healthy == _rule(h)
    assert all(p and "\n" not in p for p in r.problems)
    assert check(h) == r  # deterministic


@SETTINGS
@given(inputs)
def test_hard_stop_and_kill_never_change_health(h: HealthInputs) -> None:
    base = check(attrs.evolve(h, hard_stop=None, killed=False))
    latched = check(attrs.evolve(h, hard_stop="flatten failures", killed=True))
    assert (latched.healthy, latched.problems) == (base.healthy, base.problems)
    assert len(latched.notes) == 2 and base.notes == ()


BREAKERS: list[tuple[str, Callable[[HealthInputs], HealthInputs]]] = [
    ("not ready", lambda h: attrs.evolve(h, ready=False)),
    ("feed down", lambda h: attrs.evolve(h, feed_connected=False)),
    ("no markets", lambda h: attrs.evolve(h, markets_total=0)),
    ("no data", lambda h: attrs.evolve(h, max_market_data_age_s=None)),
    ("stale data", lambda h: attrs.evolve(h, max_market_data_age_s=MAX_AGE + 0.01)),
    ("old order", lambda h: attrs.evolve(
        h, oldest_unresolved_order_age_s=h.unresolved_order_bound_s + 0.5)),
    ("writer backlog", lambda h: attrs.evolve(h, writer_pending=h.writer_max_pending + 1)),
    ("writer errors", lambda h: attrs.evolve(h, writer_errors_recent=1)),
    ("loop lag", lambda h: attrs.evolve(h, event_loop_lag_ms=MAX_LAG + 1)),
]

healthy_inputs = st.builds(
    HealthInputs,
    ready=st.just(True),
    mode=st.sampled_from(["observe", "paper", "trade"]),
    markets_total=st.integers(min_value=1, max_value=200),
    max_market_data_age_s=st.floats(min_value=0.0, max_value=MAX_AGE),
    feed_connected=st.just(True),
    oldest_unresolved_order_age_s=st.one_of(st.none(), st.floats(min_value=0.0, max_value=5.0)),
    unresolved_order_bound_s=st.floats(min_value=5.0, max_value=600.0),
    writer_pending=st.integers(min_value=0, max_value=1000),
    writer_max_pending=st.integers(min_value=1000, max_value=10**6),
    writer_errors_recent=st.just(0),
    hard_stop=st.one_of(st.none(), st.just("reject burst")),
    killed=st.booleans(),
    event_loop_lag_ms=st.one_of(st.none(), st.floats(min_value=0.0, max_value=MAX_LAG)),
)


@SETTINGS
@given(healthy_inputs, st.sampled_from(BREAKERS))
def test_each_condition_alone_makes_it_unhealthy(
        h: HealthInputs, breaker: tuple[str, Callable[[HealthInputs], HealthInputs]]) -> None:
    assert check(h).healthy
    name, breaks = breaker
    r = check(breaks(h))
    assert not r.healthy, name
    assert len(r.problems) == 1, (name, r.problems)


@SETTINGS
@given(healthy_inputs, st.lists(st.sampled_from(BREAKERS), min_size=1, unique=True))
def test_problems_accumulate(h: HealthInputs,
                             breakers: list[tuple[str, Callable[[HealthInputs], HealthInputs]]],
                             ) -> None:
    for _name, breaks in breakers:
        h = breaks(h)
    r = check(h)
    assert not r.healthy
    # "no data" replaces "stale data" (same field): count distinct fields broken
    fields = {"no data": "age", "stale data": "age"}
    assert len(r.problems) == len({fields.get(n, n) for n, _ in breakers})
