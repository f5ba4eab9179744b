"""engine.deadline.DeadlineSleeper: the one "sleep until the next deadline, wake earlier when
it moves" loop, on Trio's virtual clock (``autojump_clock``: time jumps when all tasks sleep,
so the times asserted are exact)."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from engine.deadline import DeadlineSleeper


async def _at(t: float) -> None:
    await trio.sleep_until(t)


async def test_sleeps_until_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    s = DeadlineSleeper()
    t0 = trio.current_time()
    assert await s.sleep_until(t0 + 5.0) is False
    assert trio.current_time() == t0 + 5.0
    assert not s.sleeping and s.deadline is None


async def test_sleep_for_is_relative_to_now(autojump_clock: trio.testing.MockClock) -> None:
    s = DeadlineSleeper()
    await trio.sleep(1.25)
    t0 = trio.current_time()
    assert await s.sleep_for(2.0) is False
    assert trio.current_time() == t0 + 2.0


async def test_a_past_deadline_returns_at_once(autojump_clock: trio.testing.MockClock) -> None:
    s = DeadlineSleeper()
    t0 = trio.current_time()
    assert await s.sleep_until(t0 - 1.0) is False
    assert trio.current_time() == t0


async def test_pull_in_ends_the_sleep_by_the_earlier_deadline(
        autojump_clock: trio.testing.MockClock) -> None:
    s = DeadlineSleeper()
    t0 = trio.current_time()
    seen: list[float | None] = []

    async def mover() -> None:
        await _at(t0 + 2.0)
        seen.append(s.deadline)
        s.pull_in(t0 + 4.0)
        s.pull_in(t0 + 9.0)  # later than the moved deadline: ignored
        seen.append(s.deadline)

    async with trio.open_nursery() as n:
        n.start_soon(mover)
        assert await s.sleep_until(t0 + 10.0) is False
        assert trio.current_time() == t0 + 4.0
    assert seen == [t0 + 10.0, t0 + 4.0]


async def test_pull_in_to_a_later_deadline_does_not_delay(
        autojump_clock: trio.testing.MockClock) -> None:
    s = DeadlineSleeper()
    t0 = trio.current_time()
    async with trio.open_nursery() as n:
        n.start_soon(lambda: _pull_at(s, t0 + 1.0, t0 + 30.0))
        await s.sleep_until(t0 + 3.0)
        assert trio.current_time() == t0 + 3.0


async def _pull_at(s: DeadlineSleeper, when: float, deadline: float) -> None:
    await _at(when)
    s.pull_in(deadline)


async def test_pull_in_without_a_sleep_is_forgotten(
        autojump_clock: trio.testing.MockClock) -> None:
    """The task computes its deadline afresh before it sleeps: an old pull-in must not cut
    the next sleep short."""
    s = DeadlineSleeper()
    t0 = trio.current_time()
    s.pull_in(t0)
    assert await s.sleep_until(t0 + 2.0) is False
    assert trio.current_time() == t0 + 2.0


async def test_wake_ends_a_sleep_now(autojump_clock: trio.testing.MockClock) -> None:
    s = DeadlineSleeper()
    t0 = trio.current_time()

    async def waker() -> None:
        await _at(t0 + 1.5)
        s.wake()

    async with trio.open_nursery() as n:
        n.start_soon(waker)
        assert await s.sleep_until(math.inf) is True
        assert trio.current_time() == t0 + 1.5
    # consumed: the next sleep runs to its deadline
    assert await s.sleep_until(t0 + 4.0) is False
    assert trio.current_time() == t0 + 4.0


async def test_a_wake_while_not_sleeping_is_not_lost(
        autojump_clock: trio.testing.MockClock) -> None:
    s = DeadlineSleeper()
    t0 = trio.current_time()
    s.wake()
    s.wake()  # several wakes before a sleep are one
    assert await s.sleep_until(t0 + 10.0) is True
    assert trio.current_time() == t0
    assert await s.sleep_until(t0 + 10.0) is False
    assert trio.current_time() == t0 + 10.0


async def test_a_woken_sleep_is_still_a_checkpoint(
        autojump_clock: trio.testing.MockClock) -> None:
    s = DeadlineSleeper()
    s.wake()
    with trio.CancelScope() as scope:
        scope.cancel()
        await s.sleep_until(math.inf)
    assert scope.cancelled_caught


async def test_outer_cancellation_propagates_and_the_sleeper_stays_usable(
        autojump_clock: trio.testing.MockClock) -> None:
    s = DeadlineSleeper()
    t0 = trio.current_time()
    with trio.move_on_at(t0 + 1.0) as outer:
        await s.sleep_until(t0 + 5.0)
    assert outer.cancelled_caught and trio.current_time() == t0 + 1.0
    assert not s.sleeping
    assert await s.sleep_until(t0 + 2.0) is False
    assert trio.current_time() == t0 + 2.0


async def test_two_sleeps_at_once_are_refused(autojump_clock: trio.testing.MockClock) -> None:
    s = DeadlineSleeper()
    async with trio.open_nursery() as n:
        n.start_soon(s.sleep_until, math.inf)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="already in progress"):
            await s.sleep_until(math.inf)
        s.wake()


async def test_the_timer_loop_it_is_made_for(autojump_clock: trio.testing.MockClock) -> None:
    """A task serving due times from a changing schedule: fires each due time exactly when it
    falls due, including one added earlier than the sleep in progress."""
    s = DeadlineSleeper()
    t0 = trio.current_time()
    due = [t0 + 10.0]
    fired: list[float] = []

    async def loop() -> None:
        while True:
            await s.sleep_until(min(due) if due else math.inf)
            now = trio.current_time()
            for d in [d for d in due if d <= now]:
                due.remove(d)
                fired.append(now - t0)

    def add(d: float) -> None:
        due.append(d)
        s.pull_in(d)

    async with trio.open_nursery() as n:
        n.start_soon(loop)
        await _at(t0 + 1.0)
        add(t0 + 3.0)  # earlier than the 10 s the loop sleeps for
        add(t0 + 20.0)
        await _at(t0 + 25.0)
        n.cancel_scope.cancel()
    assert fired == [3.0, 10.0, 20.0]
