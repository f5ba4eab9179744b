"""engine.backoff: the one exponential back-off. Its rules, and that it gives exactly what each
retry loop computed with its own copy before (the copies are kept here as the references)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.backoff import backoff_delay, backoff_equal_jitter, exponential_delay


def test_doubles_from_base_up_to_the_cap() -> None:
    assert [exponential_delay(n, 1.0, 30.0) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert exponential_delay(10_000, 0.25, 8.0) == 8.0  # no overflow for huge attempts
    with pytest.raises(ValueError, match="attempt"):
        exponential_delay(-1, 1.0, 2.0)


def test_jitter_is_added_within_its_bound() -> None:
    rng = random.Random(3)
    delays = {backoff_delay(2, 1.0, 10.0, 0.5, rng.random) for _ in range(100)}
    assert all(4.0 <= d <= 4.5 for d in delays) and len(delays) > 50
    assert backoff_delay(2, 1.0, 10.0) == 4.0


def test_equal_jitter_stays_in_the_upper_half() -> None:
    rng = random.Random(5)
    delays = {backoff_equal_jitter(3, 1.0, 100.0, rng.random) for _ in range(100)}
    assert all(4.0 <= d <= 8.0 for d in delays) and len(delays) > 50
    assert backoff_equal_jitter(3, 1.0, 100.0, lambda: 0.0) == 4.0
    assert backoff_equal_jitter(3, 1.0, 100.0, lambda: 1.0) == 8.0


# ---- the copies this replaced, verbatim, as references -------------------------------------


def _old_notify_backoff_s(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    delay = min(cap, base * 2.0 ** (attempt - 1))
    return delay / 2.0 + rng.uniform(0.0, delay / 2.0)


def _old_records_backoff_sequence(n: int, base: float, cap: float) -> list[float]:
    out, backoff = [], 0.0
    for _ in range(n):
        backoff = base if backoff <= 0 else min(backoff * 2, cap)
        out.append(backoff)
    return out


def _old_discovery_delays(n: int) -> list[float]:
    out, delay = [], 1.0
    for _ in range(n):
        out.append(delay)
        delay = min(delay * 2, 30.0)
    return out


def _old_feed_backoff(attempt: int, base: float, cap: float, jitter: float,
                      rng: random.Random) -> float:
    exp = min(max(attempt - 1, 0), 32)
    return min(cap, base * (2.0**exp)) + (rng.uniform(0.0, jitter) if jitter else 0.0)


@given(st.integers(1, 40), st.floats(0.001, 100.0), st.floats(0.001, 1000.0),
       st.integers(0, 2**32))
def test_same_as_the_notifier_copy(attempt: int, base: float, cap: float, seed: int) -> None:
    a, b = random.Random(seed), random.Random(seed)
    assert backoff_equal_jitter(attempt - 1, base, cap, a.random) == _old_notify_backoff_s(
        attempt, base, cap, b)


@given(st.integers(1, 80), st.floats(0.01, 1000.0), st.floats(1.0, 1e6))
def test_same_as_the_record_writer_copy(n: int, base: float, cap: float) -> None:
    if base > cap:  # the writer's defaults are 100 ms / 5000 ms: base <= cap
        base, cap = cap, base
    got = [exponential_delay(k, base, cap) for k in range(n)]
    assert got == _old_records_backoff_sequence(n, base, cap)


def test_same_as_the_discovery_copy() -> None:
    assert [exponential_delay(k, 1.0, 30.0) for k in range(12)] == _old_discovery_delays(12)


@given(st.integers(0, 80), st.floats(0.01, 10.0), st.floats(0.01, 100.0),
       st.floats(0.0, 5.0), st.integers(0, 2**32))
def test_gives_what_the_hyperliquid_feed_copy_gives(attempt: int, base: float, cap: float,
                                                    jitter: float, seed: int) -> None:
    """The mapping the ``client.py`` split uses: ``backoff_delay(max(attempt - 1, 0), ...)``."""
    a, b = random.Random(seed), random.Random(seed)
    assert backoff_delay(max(attempt - 1, 0), base, cap, jitter, a.random) == _old_feed_backoff(
        attempt, base, cap, jitter, b)
