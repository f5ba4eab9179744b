"""Trading-session multipliers in exchange-local time that know weekends and DST.

The predecessor used fixed UTC windows that also applied on weekends and ignored daylight saving
(its latent bug L22). Here windows are weekday-only, in ``session_timezone`` (default New York),
evaluated with zoneinfo; results are cached per wall-clock minute so the hot path pays a dict-free
integer compare.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from engine.config import SessionWindow

NO_SESSION = ("none", 1.0, 1.0)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


class SessionClock:
    """Maps an epoch-ms instant to (session name, threshold multiplier, size multiplier)."""

    __slots__ = ("enabled", "tz", "windows", "_minute", "cached_value", "lo_ms", "hi_ms")

    def __init__(self, windows: list[SessionWindow], tz_name: str, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tz = ZoneInfo(tz_name)
        self.windows = [
            (_minutes(w.start), _minutes(w.end), (w.name, w.threshold_mult, w.size_mult))
            for w in windows
        ]
        self._minute = -1
        self.cached_value = NO_SESSION
        # the hot path's cache check (see :meth:`cached`): ``lo_ms <= now_ms < hi_ms`` lies
        # inside the cached minute, 1 ms clear of its edges (no rounding question at all)
        self.lo_ms = -math.inf if not enabled else math.inf
        self.hi_ms = math.inf

    def lookup(self, now_ms: float) -> tuple[str, float, float]:
        """Session in force at ``now_ms``; weekends (local Saturday/Sunday) have none."""
        if not self.enabled:
            return NO_SESSION
        minute = int(now_ms // 60_000)
        if minute == self._minute:
            return self.cached_value
        local = datetime.fromtimestamp(minute * 60.0, self.tz)
        result = NO_SESSION
        if local.weekday() < 5:
            mod = local.hour * 60 + local.minute
            for start, end, value in self.windows:
                inside = start <= mod < end if start <= end else (mod >= start or mod < end)
                if inside:
                    result = value
                    break
        self._minute = minute
        self.cached_value = result
        self.lo_ms = minute * 60_000.0 + 1.0
        self.hi_ms = minute * 60_000.0 + 59_999.0
        return result

    def cached(self, now_ms: float) -> tuple[str, float, float]:
        """:meth:`lookup`, for the hot path to inline: when ``lo_ms <= now_ms < hi_ms`` the
        answer is ``cached_value`` (the same minute as the last lookup, or disabled)."""
        if self.lo_ms <= now_ms < self.hi_ms:
            return self.cached_value
        return self.lookup(now_ms)


def utc_ms(year: int, month: int, day: int, hour: int, minute: int, tz: str = "UTC") -> float:
    """Epoch ms of a local wall-clock time (test and tooling helper)."""
    dt = datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz))
    return (dt - datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))) / timedelta(milliseconds=1)
