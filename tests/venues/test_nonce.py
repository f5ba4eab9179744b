"""Nonce allocation (max(last + 1, now)) and the clock drift check (docs/reference/hyperliquid-protocol.md §11)."""

from __future__ import annotations

import logging

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from engine.venues.hyperliquid.nonce import (
    ClockDriftError,
    Drift,
    NonceAllocator,
    check_drift,
    ensure_clock_ok,
)

T0 = 1_769_339_470_576


def test_fast_forwards_to_now_and_bumps_within_a_millisecond() -> None:
    n = NonceAllocator()
    assert n.next(T0) == T0
    assert n.next(T0) == T0 + 1  # same ms
    assert n.next(T0) == T0 + 2
    assert n.next(T0 + 100) == T0 + 100  # fast-forward
    assert n.next(T0 - 5_000) == T0 + 101  # clock stepped back: keep increasing
    assert n.last == T0 + 101
    assert n.lead_ms(T0 - 5_000) == 5_101
    assert "NonceAllocator(last=" in repr(n)


def test_resume_from_a_persisted_last() -> None:
    n = NonceAllocator(last=T0 + 10)
    assert n.next(T0) == T0 + 11


@pytest.mark.parametrize("bad", [1.5e12, True, 2**64])
def test_refuses_non_int_or_out_of_range_clocks(bad: object) -> None:
    n = NonceAllocator()
    with pytest.raises(ValueError):
        n.next(bad)  # type: ignore[arg-type]
    assert n.last == 0  # nothing was consumed
    with pytest.raises(ValueError):
        NonceAllocator(last=-1)


@given(st.lists(st.integers(0, 2**62), min_size=1, max_size=200))
def test_strictly_increasing_under_any_clock(clocks: list[int]) -> None:
    n = NonceAllocator()
    issued = [n.next(c) for c in clocks]
    assert all(b > a for a, b in zip(issued, issued[1:], strict=False))
    assert all(x >= c for x, c in zip(issued, clocks, strict=True))  # never behind the clock
    # and never further ahead than needed: each is max(prev + 1, clock)
    prev = 0
    for x, c in zip(issued, clocks, strict=True):
        assert x == max(prev + 1, c)
        prev = x


@given(
    st.integers(T0, T0 + 10**6),
    st.lists(st.integers(-10_000, 10_000), min_size=1, max_size=100),
)
def test_strictly_increasing_with_regressions_from_a_real_clock(
    start: int, steps: list[int]
) -> None:
    n = NonceAllocator()
    now, last = start, 0
    for step in steps:
        now += step  # may go backwards
        x = n.next(now)
        assert x > last
        last = x


async def test_shared_by_concurrent_trio_tasks() -> None:
    """Many tasks sharing one allocator and one frozen clock still get distinct nonces."""
    n = NonceAllocator()
    got: list[int] = []

    async def worker() -> None:
        for _ in range(50):
            got.append(n.next(T0))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(worker)
    assert len(got) == len(set(got)) == 1000
    assert got == sorted(got) == list(range(T0, T0 + 1000))


@pytest.mark.parametrize(
    ("local", "server", "verdict"),
    [
        (T0, T0, Drift.OK),
        (T0 + 1_999, T0, Drift.OK),
        (T0 + 2_000, T0, Drift.WARN),
        (T0 - 2_000, T0, Drift.WARN),
        (T0 + 4_999, T0, Drift.WARN),
        (T0 + 5_000, T0, Drift.REFUSE),
        (T0 - 60_000, T0, Drift.REFUSE),
    ],
)
def test_drift_thresholds(local: int, server: int, verdict: Drift) -> None:
    c = check_drift(local, server)
    assert c.verdict is verdict and c.drift_ms == local - server
    assert c.ok_to_trade is (verdict is not Drift.REFUSE)


def test_ensure_clock_ok_warns_then_refuses(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert ensure_clock_ok(T0, T0).verdict is Drift.OK
        assert not caplog.records
        assert ensure_clock_ok(T0 + 2_500, T0).verdict is Drift.WARN
        assert any("2500 ms" in r.getMessage() for r in caplog.records)
    with pytest.raises(ClockDriftError, match="-6000 ms"):
        ensure_clock_ok(T0 - 6_000, T0)
