"""The venue's dead-man switch (``scheduleCancel``, docs/reference/hyperliquid-protocol.md §5.3): one timer per account.

``{"type":"scheduleCancel","time":<ms>}`` (a signed L1 action, verified like any other by
:mod:`engine.sim.trading`) sets the account's timer; ``{"type":"scheduleCancel"}`` (no ``time``)
unsets it. When the timer ends, every open order of the account is cancelled with the status
``scheduledCancel`` (streamed on ``orderUpdates``) and the timer is cleared.

The venue's limits are enforced: ``time`` must be at least :data:`MIN_AHEAD_MS` (5 s) after the
venue's current time, and an account gets at most :data:`MAX_TRIGGERS_PER_DAY` (10) triggers per
UTC day (reset at 00:00 UTC); once they are used, setting the timer is refused until the next
day (unsetting always works). The error texts are the simulator's own (the venue's exact
wording is not documented).

The bookkeeping (:class:`ScheduledCancels`) is synchronous with the venue time passed in; the
Trio task :meth:`ScheduledCancels.run` fires due timers at their wall-clock time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import trio

MIN_AHEAD_MS = 5_000
MAX_TRIGGERS_PER_DAY = 10
DAY_MS = 86_400_000

ERR_TOO_EARLY = "Scheduled cancel time is too early: it must be at least 5 seconds from now."
ERR_TOO_MANY = (
    "Too many scheduled cancel triggers today: at most 10 per day (reset at 00:00 UTC)."
)

CancelAll = Callable[[str, int], int]
"""``cancel_all(user, now_ms)``: cancel the account's open orders, return how many."""


class ScheduledCancels:
    """Per-account ``scheduleCancel`` timers (see the module docstring)."""

    def __init__(self, now_ms: Callable[[], int], cancel_all: CancelAll) -> None:
        self._now_ms = now_ms
        self._cancel_all = cancel_all
        self.timers: dict[str, int] = {}  # user -> time (epoch ms)
        self.triggers: dict[str, tuple[int, int]] = {}  # user -> (UTC day, triggers that day)
        self.fired: list[tuple[str, int, int]] = []  # (user, time, orders cancelled)
        self._changed = trio.Event()

    def triggers_today(self, user: str, now_ms: int) -> int:
        day, n = self.triggers.get(user, (-1, 0))
        return n if day == now_ms // DAY_MS else 0

    def handle(self, user: str, time_ms: int | None, now_ms: int) -> str | None:
        """Apply one verified ``scheduleCancel`` of ``user``; an error text, or None when done."""
        if time_ms is None:
            self.timers.pop(user, None)
            self._changed.set()
            return None
        if time_ms < now_ms + MIN_AHEAD_MS:
            return ERR_TOO_EARLY
        if self.triggers_today(user, now_ms) >= MAX_TRIGGERS_PER_DAY:
            return ERR_TOO_MANY
        self.timers[user] = time_ms
        self._changed.set()
        return None

    def fire_due(self, now_ms: int) -> list[tuple[str, int, int]]:
        """Fire every timer whose time has come: cancel the account's open orders, count the
        trigger, clear the timer. Returns ``(user, time, orders cancelled)`` per timer fired."""
        out: list[tuple[str, int, int]] = []
        for user, at in sorted(self.timers.items(), key=lambda kv: kv[1]):
            if at > now_ms:
                continue
            del self.timers[user]
            self.triggers[user] = (now_ms // DAY_MS, self.triggers_today(user, now_ms) + 1)
            n = self._cancel_all(user, now_ms)
            out.append((user, at, n))
        self.fired.extend(out)
        return out

    def next_time_ms(self) -> int | None:
        return min(self.timers.values()) if self.timers else None

    async def run(self) -> None:
        """Fire timers at their time (venue wall clock), forever."""
        while True:
            self._changed = trio.Event()
            due = self.next_time_ms()
            wait_s = math.inf if due is None else max(0.0, (due - self._now_ms()) / 1000.0)
            with trio.move_on_after(wait_s):
                await self._changed.wait()
            self.fire_due(self._now_ms())

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        """For the control API: armed timers and today's trigger counts."""
        return {
            "timers": dict(self.timers),
            "triggers_today": {u: self.triggers_today(u, now_ms) for u in self.triggers},
        }
