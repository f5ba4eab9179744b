"""The simulated clock of replay and the ordered set of the shell's timers.

:class:`SimClock` is the injected clock (epoch ms) of a replayed app: it only moves when the
driver advances it, to the next recorded receive time or to a timer's due time, never back.

:class:`Timers` holds the live shell's timer tasks as *sources*: each source says when it is
next due (``due()``, ``None`` when idle) and what it does when it fires (``fire(now)``).
:meth:`Timers.advance` fires, in time order, every source due at or before a target time —
the earliest first; ties by the order the sources were added — with the clock set to the due
time, then sets the clock to the target. A source that stays due at the same time after it
fired is a bug (the live task would spin): it raises instead of looping forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_FIRES_AT_ONE_TIME = 10_000


class SimClock:
    """Epoch milliseconds that move only when told to (call the instance to read it)."""

    __slots__ = ("now_ms",)

    def __init__(self, now_ms: float = 0.0) -> None:
        self.now_ms = float(now_ms)

    def __call__(self) -> float:
        return self.now_ms

    def set(self, t_ms: float) -> None:
        """Move to ``t_ms`` (a recorded receive time earlier than now keeps now: never back)."""
        if t_ms > self.now_ms:
            self.now_ms = t_ms


class TimerLoopError(RuntimeError):
    """A timer source stayed due at the same instant after firing again and again."""


class Timers:
    """The shell's timer sources, fired in due-time order by :meth:`advance`."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self._sources: list[tuple[str, Callable[[], float | None], Callable[[float], None]]] = []
        self._dues: tuple[Callable[[], float | None], ...] = ()
        self._heaps: list[list[Any] | None] = []
        self.fired: dict[str, int] = {}

    def add(self, name: str, due: Callable[[], float | None],
            fire: Callable[[float], None], *, heap: list[Any] | None = None) -> None:
        """A source. ``heap``: the ``heapq`` list ``due()`` reads (``heap[0][0]``, None when
        empty) — mutated in place only, never rebound — so :meth:`advancer` can read it
        without a call."""
        self._sources.append((name, due, fire))
        self._dues = tuple(src[1] for src in self._sources)
        self._heaps.append(heap)
        self.fired[name] = 0

    def advancer(self) -> Callable[[float], None]:
        """:meth:`advance` as one closure for the hot loop (one call per socket read): the
        sources given as heaps are read directly (``heap and heap[0][0] <= t``: exactly the
        ``due()`` test), the others through ``due()``; when something is due it is
        :meth:`advance` itself. Build it after the last :meth:`add`."""
        heaps = tuple(h for h in self._heaps if h is not None)
        calls = tuple(due for due, h in zip(self._dues, self._heaps, strict=True) if h is None)
        clock = self.clock
        fire_due = self._fire_due
        if len(heaps) == 2 and not calls:
            h1, h2 = heaps

            def advance2(t_ms: float) -> None:
                if (h1 and h1[0][0] <= t_ms) or (h2 and h2[0][0] <= t_ms):
                    fire_due(t_ms)
                elif t_ms > clock.now_ms:
                    clock.now_ms = t_ms

            return advance2

        def advance(t_ms: float) -> None:
            for h in heaps:
                if h and h[0][0] <= t_ms:
                    fire_due(t_ms)
                    return
            for due in calls:
                d = due()
                if d is not None and d <= t_ms:
                    fire_due(t_ms)
                    return
            if t_ms > clock.now_ms:
                clock.now_ms = t_ms

        return advance

    def next_due(self) -> tuple[float, int] | None:
        """The earliest (due, source index), or None when every source is idle."""
        best: tuple[float, int] | None = None
        for i, (_, due, _f) in enumerate(self._sources):
            d = due()
            if d is not None and (best is None or d < best[0]):
                best = (d, i)
        return best

    def advance(self, t_ms: float) -> None:
        """Fire everything due at or before ``t_ms`` in order, then set the clock to ``t_ms``."""
        for due in self._dues:  # the common case first: nothing is due (what the loop finds)
            d = due()
            if d is not None and d <= t_ms:
                break
        else:
            clock = self.clock
            if t_ms > clock.now_ms:
                clock.now_ms = t_ms
            return
        self._fire_due(t_ms)

    def _fire_due(self, t_ms: float) -> None:
        clock = self.clock
        sources = self._sources
        last_t = None
        same = 0
        while True:
            # the earliest due source (ties: the first added), as next_due() without tuples
            best = t_ms
            bi = -1
            for i, src in enumerate(sources):
                d = src[1]()
                if d is not None and (d < best or (bi < 0 and d == best)):
                    best = d
                    bi = i
            if bi < 0:
                break
            clock.set(best)
            now = clock.now_ms
            if now == last_t:
                same += 1
                if same > MAX_FIRES_AT_ONE_TIME:
                    raise TimerLoopError(
                        f"timer {sources[bi][0]!r} is still due at {now} after "
                        f"{MAX_FIRES_AT_ONE_TIME} firings")
            else:
                last_t, same = now, 0
            name, _, fire = sources[bi]
            self.fired[name] += 1
            fire(now)
        if t_ms > clock.now_ms:
            clock.now_ms = t_ms
