"""The injected wall clock: epoch milliseconds that never jump backwards.

Anchored once to ``time.time()`` and advanced by ``time.monotonic()``, so an NTP step or a manual
clock change cannot make the core see time regress or jump mid-run. The core never calls it; the
shell passes ``now_ms`` into every core call.
"""

from __future__ import annotations

import time


class WallClock:
    """Monotonic-anchored epoch-ms clock; call the instance to read it."""

    __slots__ = ("_offset_ms",)

    def __init__(self) -> None:
        self._offset_ms = time.time() * 1000.0 - time.monotonic() * 1000.0

    def __call__(self) -> float:
        return time.monotonic() * 1000.0 + self._offset_ms
