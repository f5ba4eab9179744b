"""The dead-man switch's decision (engine/venues/hyperliquid/deadman.py): when it arms, renews
and disarms, property-tested over random histories of wanted/not wanted, answers and time."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import TradingConfig
from engine.venues.hyperliquid.deadman import (
    ARMED,
    DISARMED,
    Arm,
    DeadManPolicy,
    DeadManSwitch,
    Disarm,
    wants_armed,
)
from fsm.order import CANCELED, FILLED, NEW, PARTIAL, RESTING, SENT, UNKNOWN


@attrs.define
class Ord:
    state: str


def test_wants_armed_for_orders_that_may_rest_or_venue_open_orders() -> None:
    assert not wants_armed([Ord(NEW), Ord(SENT), Ord(FILLED), Ord(CANCELED)], 0)
    for s in (RESTING, PARTIAL, UNKNOWN):
        assert wants_armed([Ord(SENT), Ord(s)], 0)
    assert wants_armed([], 1)


def test_first_decision_sends_one_disarm_or_arm() -> None:
    p = DeadManPolicy(30_000.0)
    d = p.decide(False, 1_000.0)
    assert d == Disarm()  # a previous run may have left the venue's timer armed
    p.on_result(d, True, 1_000.0)
    assert p.decide(False, 2_000.0) is None and p.state == DISARMED
    d = p.decide(True, 3_000.0)
    assert d == Arm(33_000)
    p.on_result(d, True, 3_000.0)
    assert p.state == ARMED and p.armed_until_ms == 33_000.0
    assert p.decide(True, 12_999.0) is None  # renewed once a third of the window has passed
    assert p.decide(True, 13_000.0) == Arm(43_000)


def test_refused_attempt_is_retried_a_third_later_and_expiry_counted() -> None:
    p = DeadManPolicy(9_000.0)
    d = p.decide(True, 0.0)
    p.on_result(d, False, 0.0)  # e.g. "too many triggers today"
    assert p.decide(True, 2_999.0) is None
    d = p.decide(True, 3_000.0)
    assert d == Arm(12_000)
    p.on_result(d, True, 3_000.0)
    # renewals fail until the venue's time passes: counted as expired, then re-armed
    p.on_result(Arm(18_000), False, 6_000.0)
    assert p.decide(True, 12_000.0) == Arm(21_000)
    assert p.expired == 1 and p.state == DISARMED


def test_window_below_the_venue_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 6"):
        DeadManPolicy(5_000.0)
    with pytest.raises(ValueError, match="dead_man_s"):
        TradingConfig(dead_man_s=5.0)
    assert TradingConfig(dead_man_s=0.0).dead_man_s == 0.0


@settings(max_examples=300, deadline=None)
@given(
    window_s=st.floats(6.0, 120.0),
    steps=st.lists(st.tuples(st.booleans(), st.floats(0.0, 20_000.0), st.booleans()),
                   min_size=1, max_size=60),
)
def test_policy_invariants(window_s: float, steps: list[tuple[bool, float, bool]]) -> None:
    """Whatever happens: an arm is always the whole window ahead of now (never under the
    venue's 5 s minimum); nothing is sent while not wanted and disarmed; while wanted,
    armed and every answer accepted, the venue's timer never runs out; an accepted disarm
    leaves nothing armed."""
    p = DeadManPolicy(window_s * 1000.0)
    now = 1_000_000.0
    all_accepted = gaps_ok = True
    for want, dt, accepted in steps:
        now += dt
        gaps_ok &= dt <= p.renew_ms
        d = p.decide(want, now)
        if isinstance(d, Arm):
            assert want
            assert d.time_ms >= now + 5_000.0 and d.time_ms == int(now + p.ahead_ms)
        elif isinstance(d, Disarm):
            assert not want
        else:
            if want and p.next_try_ms <= now:
                assert p.state == ARMED and p.armed_until_ms is not None
                assert p.armed_until_ms - now > p.ahead_ms - p.renew_ms
            if not want and p.next_try_ms <= now:
                assert p.state == DISARMED
        if d is not None:
            p.on_result(d, accepted, now)
            all_accepted &= accepted
            if accepted and isinstance(d, Disarm):
                assert p.state == DISARMED and p.armed_until_ms is None
        if all_accepted and gaps_ok:  # looked at often enough, never refused: never ran out
            assert p.expired == 0


class FakeVenue:
    """Stands in for the executor's transport only: the answers a venue gives."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.sent: list[int | None] = []

    async def schedule_cancel(self, time_ms: int | None) -> object | None:
        self.sent.append(time_ms)
        return self.answers.pop(0)


async def test_switch_sends_what_the_policy_decides_and_counts_failures() -> None:
    orders: list[Ord] = []
    now = [100_000.0]
    venue = FakeVenue([{"status": "ok", "response": {"type": "default"}},
                       {"status": "ok", "response": {"type": "default"}},
                       {"status": "err", "response": "Too many scheduled cancel triggers"},
                       None])
    sw = DeadManSwitch(venue, 6.0, orders=lambda: orders, connected=lambda: True,
                       clock=lambda: now[0])
    await sw.step()
    assert venue.sent == [None] and sw.stats.disarms == 1
    orders.append(Ord(RESTING))
    await sw.step()
    assert venue.sent == [None, 106_000] and sw.snapshot()["state"] == ARMED
    now[0] += 2_000.0
    await sw.step()  # renewal refused
    assert sw.stats.failures == 1 and "Too many" in (sw.stats.last_error or "")
    now[0] += 2_000.0
    await sw.step()  # retried a third of the window later: no answer
    assert venue.sent[-1] == 110_000 and sw.stats.failures == 2
    assert sw.stats.last_error == "no answer"
