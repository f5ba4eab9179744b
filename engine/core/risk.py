"""Hard stop latch, reject-burst detector and action budget (pure, injected clock).

The hard stop is a latch: the first trigger records its reason; later triggers are kept in the
history; only an explicit :meth:`HardStop.reset` (operator command) releases it. While latched
only reduce-only orders may be sent. The predecessor's latch could never be reset without a
restart and most of its triggers were dead code (L7); here every trigger is wired by the core
and tested.
"""

from __future__ import annotations

from collections import deque

import attrs

from engine.core.neutral import RejectReason

BENIGN_REJECTS: frozenset[RejectReason] = frozenset({
    RejectReason.NO_LIQUIDITY,
    RejectReason.REDUCE_ONLY,
    RejectReason.BELOW_MIN_NOTIONAL,
    RejectReason.ZERO_SIZE,
})
"""Rejections that are part of normal taker life and must not count towards a burst
(docs/reference/predecessor-semantics.md §2.3; BOT commits e5d1d43, 83658cb): an IOC that found
nothing, a reduce-only order with nothing to reduce, the venue's minimum order value, a zero
size. Venue adapters map their reject texts and codes to :class:`RejectReason`."""


def is_benign(reason: RejectReason | None) -> bool:
    """Whether a reject with ``reason`` is benign (``None``, no reason known: not benign)."""
    return reason in BENIGN_REJECTS


@attrs.frozen
class HardStopEvent:
    now_ms: float
    reason: str
    detail: str


class HardStop:
    """The latch. ``latched`` is the only thing the hot path reads."""

    __slots__ = ("latched", "reason", "detail", "since_ms", "history")

    def __init__(self) -> None:
        self.latched = False
        self.reason: str | None = None
        self.detail = ""
        self.since_ms: float | None = None
        self.history: list[HardStopEvent] = []

    def trigger(self, reason: str, now_ms: float, detail: str = "") -> bool:
        """Latch (if not already); return True when this call latched it."""
        self.history.append(HardStopEvent(now_ms, reason, detail))
        if len(self.history) > 100:
            del self.history[0]
        if self.latched:
            return False
        self.latched = True
        self.reason = reason
        self.detail = detail
        self.since_ms = now_ms
        return True

    def reset(self) -> str | None:
        """Release the latch (explicit operator command); return the reason it held."""
        reason = self.reason
        self.latched = False
        self.reason = None
        self.detail = ""
        self.since_ms = None
        return reason


class RejectBurst:
    """Counts non-benign rejects in a sliding wall-clock window."""

    __slots__ = ("limit", "window_ms", "times")

    def __init__(self, limit: int, window_ms: float) -> None:
        self.limit = limit
        self.window_ms = window_ms
        self.times: deque[float] = deque()

    def record(self, now_ms: float) -> bool:
        """Record one reject; True when the count within the window exceeds ``limit``."""
        times = self.times
        times.append(now_ms)
        horizon = now_ms - self.window_ms
        while times and times[0] < horizon:
            times.popleft()
        return len(times) > self.limit


class ActionBudget:
    """At most ``limit`` new-risk orders per ``interval_ms`` (sliding window)."""

    __slots__ = ("limit", "interval_ms", "times")

    def __init__(self, limit: int, interval_ms: float) -> None:
        self.limit = limit
        self.interval_ms = interval_ms
        self.times: deque[float] = deque()

    def available(self, now_ms: float) -> bool:
        times = self.times
        horizon = now_ms - self.interval_ms
        while times and times[0] <= horizon:
            times.popleft()
        return len(times) < self.limit

    def consume(self, now_ms: float) -> None:
        self.times.append(now_ms)
