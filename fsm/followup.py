"""The followup lifecycle of one signal: the formal state machine and the table derived from it.

Owns :class:`FollowupMachine` (python-statemachine, synchronous, no callbacks with side
effects) and :data:`FOLLOWUP_TABLE`, the transition table derived from the machine at import
time by driving it through every (state, event, is_last, had_miss) combination. The hot path
(:class:`engine.core.followups.FollowupBook`) uses the table through :func:`next_state`; it never
builds a machine per signal. A Hypothesis test proves the two agree.

A signal has one or more followup offsets (e.g. 1 s, 3 s, 5 s). Each offset is resolved exactly
once, either ``capture`` (the market was observed) or ``miss`` (no data, disconnected, stale,
late, shutdown, restart). ``is_last`` says the event resolves the last pending offset;
``had_miss`` says an *earlier* offset of the same signal was missed.

```mermaid
stateDiagram-v2
    [*] --> SCHEDULED
    SCHEDULED --> CAPTURING: capture / miss [not is_last]
    CAPTURING --> CAPTURING: capture / miss [not is_last]
    SCHEDULED --> DONE: capture [is_last and not had_miss]
    CAPTURING --> DONE: capture [is_last and not had_miss]
    SCHEDULED --> MISSED: capture [is_last and had_miss]
    CAPTURING --> MISSED: capture [is_last and had_miss]
    SCHEDULED --> MISSED: miss [is_last]
    CAPTURING --> MISSED: miss [is_last]
    DONE --> [*]
    MISSED --> [*]
```

DONE means every offset was captured; MISSED means every offset was resolved and at least one
of them was missed. Events after a final state are rejected (``TransitionNotAllowed`` by the
machine, :class:`InvalidFollowupTransition` by :func:`next_state`).
"""

from __future__ import annotations

import itertools
from typing import Final

from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

SCHEDULED: Final = "scheduled"
CAPTURING: Final = "capturing"
DONE: Final = "done"
MISSED: Final = "missed"

CAPTURE: Final = "capture"
MISS: Final = "miss"

STATES: Final[tuple[str, ...]] = (SCHEDULED, CAPTURING, DONE, MISSED)
FINAL_STATES: Final[frozenset[str]] = frozenset({DONE, MISSED})
EVENTS: Final[tuple[str, ...]] = (CAPTURE, MISS)


class FollowupMachine(StateMachine):
    """Formal definition of one signal's followup lifecycle (see the module docstring)."""

    scheduled = State(initial=True)
    capturing = State()
    done = State(final=True)
    missed = State(final=True)

    capture = (
        scheduled.to(capturing, unless="is_last")
        | scheduled.to(done, cond="is_last", unless="had_miss")
        | scheduled.to(missed, cond=["is_last", "had_miss"])
        | capturing.to(capturing, unless="is_last")
        | capturing.to(done, cond="is_last", unless="had_miss")
        | capturing.to(missed, cond=["is_last", "had_miss"])
    )
    miss = (
        scheduled.to(capturing, unless="is_last")
        | scheduled.to(missed, cond="is_last")
        | capturing.to(capturing, unless="is_last")
        | capturing.to(missed, cond="is_last")
    )

    def is_last(self, is_last: bool = False) -> bool:
        """Condition: the event resolves the last pending offset of the signal."""
        return is_last

    def had_miss(self, had_miss: bool = False) -> bool:
        """Condition: an earlier offset of the signal was missed."""
        return had_miss

    @property
    def state_id(self) -> str:
        """The id of the current state (one of :data:`STATES`)."""
        return str(self.current_state_value)


class InvalidFollowupTransition(Exception):
    """An event that the followup machine does not allow (e.g. any event after a final state)."""


TableKey = tuple[str, str, bool, bool]


def machine_in(state: str) -> FollowupMachine:
    """A fresh :class:`FollowupMachine` positioned in ``state``."""
    return FollowupMachine(start_value=state)


def _derive_table() -> dict[TableKey, str]:
    """Drive the machine through every combination and record where it lands."""
    table: dict[TableKey, str] = {}
    for state, event, is_last, had_miss in itertools.product(
        STATES, EVENTS, (False, True), (False, True)
    ):
        sm = machine_in(state)
        try:
            sm.send(event, is_last=is_last, had_miss=had_miss)
        except TransitionNotAllowed:
            continue
        table[(state, event, is_last, had_miss)] = sm.state_id
    return table


FOLLOWUP_TABLE: Final[dict[TableKey, str]] = _derive_table()
"""(state, event, is_last, had_miss) -> next state; a missing key is an invalid transition."""


def next_state(state: str, event: str, is_last: bool, had_miss: bool) -> str:
    """The state after ``event`` in ``state``; raises :class:`InvalidFollowupTransition`."""
    try:
        return FOLLOWUP_TABLE[(state, event, is_last, had_miss)]
    except KeyError:
        raise InvalidFollowupTransition(
            f"followup: {event!r} not allowed in state {state!r} "
            f"(is_last={is_last}, had_miss={had_miss})"
        ) from None
