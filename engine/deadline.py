"""Sleep until the next deadline, waking earlier when it moves: the one implementation of the
timer loop every shell task runs (the detector's quote-lag timer, the followup scheduler, the
record writer, the dashboard; the Hyperliquid post timer moves here with the ``client.py``
split).

A task owns one :class:`DeadlineSleeper` and loops: compute its next deadline, ``await
sleeper.sleep_until(deadline)``, do the work that fell due. Other code (synchronous, in the
same Trio thread, no ``await``) moves the sleep:

* :meth:`DeadlineSleeper.pull_in` — the work now has an earlier deadline: a sleep in progress
  ends by it instead (a later one changes nothing; with no sleep in progress nothing happens,
  since the task computes its deadline afresh before it sleeps again);
* :meth:`DeadlineSleeper.wake` — wake now: ends a sleep in progress, and when none is in
  progress the next sleep returns at once (so a wake-up requested while the task works is
  never lost; the semantics of a ``trio.Event`` set, waited for and then replaced).

Deadlines are Trio times (:func:`trio.current_time`); engine-clock milliseconds are turned
into one with :func:`engine.clock.trio_deadline`. ``math.inf`` sleeps until woken.
"""

from __future__ import annotations

import trio


class DeadlineSleeper:
    """See the module docstring. Not for use by two tasks at once."""

    __slots__ = ("_scope", "_woken")

    def __init__(self) -> None:
        self._scope: trio.CancelScope | None = None
        self._woken = False

    @property
    def sleeping(self) -> bool:
        """A :meth:`sleep_until` is in progress."""
        return self._scope is not None

    @property
    def deadline(self) -> float | None:
        """The deadline of the sleep in progress (as moved so far), or None."""
        scope = self._scope
        return None if scope is None else scope.deadline

    async def sleep_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` (Trio time; ``math.inf``: until woken), or until an earlier
        deadline given to :meth:`pull_in`, or a :meth:`wake`. Always a checkpoint. Returns True
        when ended by :meth:`wake` (now or since the last sleep), False otherwise."""
        if self._scope is not None:
            raise RuntimeError("DeadlineSleeper.sleep_until is already in progress")
        if self._woken:
            self._woken = False
            await trio.lowlevel.checkpoint()
            return True
        with trio.CancelScope(deadline=deadline) as scope:
            self._scope = scope
            try:
                await trio.sleep_forever()
            finally:
                self._scope = None
        woken, self._woken = self._woken, False
        return woken

    async def sleep_for(self, seconds: float) -> bool:
        """:meth:`sleep_until` ``seconds`` from now (a period, not a clock read for a decision:
        ``trio.move_on_after`` semantics)."""
        return await self.sleep_until(trio.current_time() + seconds)

    def pull_in(self, deadline: float) -> None:
        """End the sleep in progress by ``deadline`` if that is earlier than its own."""
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline

    def wake(self) -> None:
        """End the sleep in progress now; with none in progress, the next one returns at once."""
        self._woken = True
        scope = self._scope
        if scope is not None:
            scope.cancel()
