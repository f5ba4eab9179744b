"""Rate-limited logging of untrusted input, shared by the venue adapters: owns the per-key log
budget.

Bad input must never pass silently, but a misbehaving server can send thousands of bad frames
per second; :class:`RateLimitedLog` lets a few lines per key through per interval and reports
how many were suppressed when the next line for that key is allowed. :func:`excerpt` truncates
untrusted text before it reaches a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

EXCERPT_CHARS = 200


def excerpt(text: str | bytes, limit: int = EXCERPT_CHARS) -> str:
    """Return ``text`` (decoded leniently if bytes) cut to ``limit`` characters, repr-quoted."""
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text[: limit * 4]).decode("utf-8", errors="replace")
    if len(text) > limit:
        return repr(text[:limit]) + f"...(+{len(text) - limit} chars)"
    return repr(text)


class RateLimitedLog:
    """Allow at most ``burst`` log lines per key in each ``interval_s`` window.

    Suppressed lines are counted; the next allowed line for that key carries the count.
    The number of tracked keys is bounded (``max_keys``); beyond it keys share one budget.
    """

    __slots__ = ("_logger", "_interval", "_burst", "_clock", "_state", "_max_keys")

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = 10.0,
        burst: int = 3,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 256,
    ) -> None:
        self._logger = logger
        self._interval = interval_s
        self._burst = burst
        self._clock = clock
        self._max_keys = max_keys
        # key -> [window_start, lines_in_window, suppressed_since_last_line]
        self._state: dict[str, list[float]] = {}

    def log(self, key: str, level: int, msg: str, *args: object) -> bool:
        """Log ``msg % args`` at ``level`` unless the key's budget is spent; True if logged."""
        if not self._logger.isEnabledFor(level):
            return False
        now = self._clock()
        st = self._state.get(key)
        if st is None:
            if len(self._state) >= self._max_keys:
                key = "<other>"
                st = self._state.get(key)
            if st is None:
                st = [now, 0.0, 0.0]
                self._state[key] = st
        if now - st[0] >= self._interval:
            st[0] = now
            st[1] = 0.0
        if st[1] >= self._burst:
            st[2] += 1
            return False
        st[1] += 1
        suppressed = int(st[2])
        st[2] = 0.0
        if suppressed:
            self._logger.log(level, msg + " (%d similar lines suppressed)", *args, suppressed)
        else:
            self._logger.log(level, msg, *args)
        return True
