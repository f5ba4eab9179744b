"""The injected wall clock: epoch milliseconds that never jump backwards.

Anchored once to ``time.time()`` and advanced by ``time.monotonic()``, so an NTP step or a manual
clock change cannot make the core see time regress or jump mid-run. The core never calls it; the
shell passes ``now_ms`` into every core call.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class WallClock:
    """Monotonic-anchored epoch-ms clock; call the instance to read it."""

    __slots__ = ("_offset_ms",)

    def __init__(self) -> None:
        self._offset_ms = time.time() * 1000.0 - time.monotonic() * 1000.0

    def __call__(self) -> float:
        return time.monotonic() * 1000.0 + self._offset_ms

    @property
    def offset_ms(self) -> float:
        """Epoch ms minus monotonic ms, fixed at construction (the frame recorder's anchor)."""
        return self._offset_ms


def trio_deadline(clock: Callable[[], float], due_ms: float) -> float:
    """The Trio deadline at which the engine clock ``clock`` reaches ``due_ms``.

    The one place where engine time (the injected clock) is turned into a Trio sleep: every
    timer task of the shell sleeps until such a deadline and then reads ``clock()`` — never
    ``time.time()`` or ``trio.current_time()`` for a decision — so replay, which drives the
    same timers from the recorded clock (:mod:`engine.replay`), cannot drift from live.
    """
    import trio

    return trio.current_time() + max(0.0, due_ms - clock()) / 1000.0
