"""The position of one market: the formal state machine and the table derived from it.

Owns :class:`PositionMachine` (python-statemachine, synchronous, no callbacks with side
effects), :data:`POSITION_TABLE`, the transition table derived from the machine at import time
by driving it through every (state, event, has_position) combination, and
:func:`next_position_state`, the dict lookup the hot path uses. A Hypothesis test proves table
and machine agree. See ``docs/state-machines.md``.

One position per market, no pyramiding. The state says which of our orders are live for the
market (at most one entry, at most one reduce-only flatten) and whether there is exposure:

```mermaid
stateDiagram-v2
    [*] --> FLAT
    FLAT --> OPENING: submit_entry
    FLAT --> OPEN: fill, sync [has_position]
    FLAT --> FLAT: fill, sync [not has_position]
    OPENING --> OPENING_PARTIAL: fill, sync [has_position]
    OPENING --> OPENING: fill, sync [not has_position]
    OPENING --> OPEN: entry_done [has_position]
    OPENING --> FLAT: entry_done [not has_position]
    OPENING_PARTIAL --> OPENING_PARTIAL: fill, sync [has_position]
    OPENING_PARTIAL --> OPENING: fill, sync [not has_position]
    OPENING_PARTIAL --> OPEN: entry_done [has_position]
    OPENING_PARTIAL --> FLAT: entry_done [not has_position]
    OPENING_PARTIAL --> FLATTENING_ENTRY_LIVE: submit_flatten
    OPEN --> OPEN: fill, sync [has_position]
    OPEN --> FLAT: fill, sync [not has_position]
    OPEN --> FLATTENING: submit_flatten
    FLATTENING --> FLATTENING: fill, sync
    FLATTENING --> OPEN: flatten_done [has_position]
    FLATTENING --> FLAT: flatten_done [not has_position]
    FLATTENING_ENTRY_LIVE --> FLATTENING_ENTRY_LIVE: fill, sync
    FLATTENING_ENTRY_LIVE --> FLATTENING: entry_done
    FLATTENING_ENTRY_LIVE --> OPENING_PARTIAL: flatten_done [has_position]
    FLATTENING_ENTRY_LIVE --> OPENING: flatten_done [not has_position]
```

| state | entry order live | flatten order live | exposure |
|---|---|---|---|
| FLAT | no | no | zero |
| OPENING | yes | no | zero |
| OPENING_PARTIAL | yes | no | non-zero |
| OPEN | no | no | non-zero |
| FLATTENING | no | yes | any |
| FLATTENING_ENTRY_LIVE | yes | yes | any |

Events: ``submit_entry`` / ``submit_flatten`` (we created the order; it is pending from then
on), ``entry_done`` / ``flatten_done`` (that order reached a terminal state: emitted once, on the
order's transition into FILLED, CANCELED, REJECTED or EXPIRED, never on an ignored duplicate),
``fill`` (a new fill for the market, deduplicated by trade id) and ``sync`` (the venue's
position, from its account state). ``has_position`` says the signed position is non-zero
*after* the event, counting every fill the venue has reported, including an order's cumulative
filled size (from the order's answer or an order update) whose fill messages have not
arrived yet. It is ignored by the two ``submit_*`` events and by ``entry_done`` while a flatten
is live.

Invariant (docs/reference/design.md §4.1, predecessor BUG-004 and L1): at most one live reduce-only order per
market. The only way into a flatten-live state (FLATTENING, FLATTENING_ENTRY_LIVE) is
``submit_flatten``, which no flatten-live state accepts, so a second flatten is impossible while
one is live; the only way out is ``flatten_done``, which every terminal outcome of the flatten
produces (filled, unfilled IOC, rejected, canceled), so the slot is always released and a retry
is possible. An order in UNKNOWN is not terminal: the slot stays held until it is resolved.
"""

from __future__ import annotations

import itertools
from typing import Final

from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed
from statemachine.transition_list import TransitionList

# -- states -------------------------------------------------------------------------------------
FLAT: Final = "flat"
OPENING: Final = "opening"
OPENING_PARTIAL: Final = "opening_partial"
OPEN: Final = "open"
FLATTENING: Final = "flattening"
FLATTENING_ENTRY_LIVE: Final = "flattening_entry_live"

STATES: Final[tuple[str, ...]] = (
    FLAT,
    OPENING,
    OPENING_PARTIAL,
    OPEN,
    FLATTENING,
    FLATTENING_ENTRY_LIVE,
)
FLATTEN_LIVE_STATES: Final[frozenset[str]] = frozenset({FLATTENING, FLATTENING_ENTRY_LIVE})
"""A reduce-only flatten order of this market is pending (its slot is taken)."""
ENTRY_LIVE_STATES: Final[frozenset[str]] = frozenset(
    {OPENING, OPENING_PARTIAL, FLATTENING_ENTRY_LIVE}
)
"""An entry order of this market is pending."""

# -- events -------------------------------------------------------------------------------------
SUBMIT_ENTRY: Final = "submit_entry"
ENTRY_DONE: Final = "entry_done"
SUBMIT_FLATTEN: Final = "submit_flatten"
FLATTEN_DONE: Final = "flatten_done"
FILL: Final = "fill"
SYNC: Final = "sync"

EVENTS: Final[tuple[str, ...]] = (
    SUBMIT_ENTRY,
    ENTRY_DONE,
    SUBMIT_FLATTEN,
    FLATTEN_DONE,
    FILL,
    SYNC,
)


def _exposure_transitions(
    flat: State,
    opening: State,
    opening_partial: State,
    open_: State,
    flattening: State,
    flattening_entry_live: State,
) -> TransitionList:
    """The transitions of an event that only changes exposure (``fill`` and ``sync``)."""
    return (
        flat.to(open_, cond="has_position")
        | flat.to.itself(unless="has_position")
        | opening.to(opening_partial, cond="has_position")
        | opening.to.itself(unless="has_position")
        | opening_partial.to.itself(cond="has_position")
        | opening_partial.to(opening, unless="has_position")
        | open_.to.itself(cond="has_position")
        | open_.to(flat, unless="has_position")
        | flattening.to.itself()
        | flattening_entry_live.to.itself()
    )


class PositionMachine(StateMachine):
    """Formal definition of one market's position (see the module docstring)."""

    flat = State(initial=True)
    opening = State()
    opening_partial = State()
    open = State()
    flattening = State()
    flattening_entry_live = State()

    submit_entry = flat.to(opening)
    entry_done = (
        opening.to(open, cond="has_position")
        | opening.to(flat, unless="has_position")
        | opening_partial.to(open, cond="has_position")
        | opening_partial.to(flat, unless="has_position")
        | flattening_entry_live.to(flattening)
    )
    submit_flatten = open.to(flattening) | opening_partial.to(flattening_entry_live)
    flatten_done = (
        flattening.to(open, cond="has_position")
        | flattening.to(flat, unless="has_position")
        | flattening_entry_live.to(opening_partial, cond="has_position")
        | flattening_entry_live.to(opening, unless="has_position")
    )
    fill = _exposure_transitions(
        flat, opening, opening_partial, open, flattening, flattening_entry_live
    )
    sync = _exposure_transitions(
        flat, opening, opening_partial, open, flattening, flattening_entry_live
    )

    def has_position(self, has_position: bool = False) -> bool:
        """Condition: the market's signed position is non-zero after the event."""
        return has_position

    @property
    def state_id(self) -> str:
        """The id of the current state (one of :data:`STATES`)."""
        return str(self.current_state_value)


class InvalidPositionTransition(Exception):
    """An event the position machine does not allow in that state (e.g. a second flatten)."""


TableKey = tuple[str, str, bool]


def machine_in(state: str) -> PositionMachine:
    """A fresh :class:`PositionMachine` positioned in ``state``."""
    return PositionMachine(start_value=state)


def _derive_table() -> dict[TableKey, str]:
    """Drive the machine through every combination and record where it lands."""
    table: dict[TableKey, str] = {}
    sm: PositionMachine | None = None
    for state, event, has_position in itertools.product(STATES, EVENTS, (False, True)):
        if sm is None or sm.state_id != state:
            sm = machine_in(state)  # a refused event leaves the machine where it was: reuse it
        try:
            sm.send(event, has_position=has_position)
        except TransitionNotAllowed:
            continue
        table[(state, event, has_position)] = sm.state_id
    return table


POSITION_TABLE: Final[dict[TableKey, str]] = _derive_table()
"""(state, event, has_position) -> next state; a missing key is an invalid transition."""

ENTRY_ALLOWED_STATES: Final[frozenset[str]] = frozenset(
    s for (s, e, _hp) in POSITION_TABLE if e == SUBMIT_ENTRY
)
"""States in which a new entry may be submitted (derived from the table)."""
FLATTEN_ALLOWED_STATES: Final[frozenset[str]] = frozenset(
    s for (s, e, _hp) in POSITION_TABLE if e == SUBMIT_FLATTEN
)
"""States in which a flatten may be submitted (derived from the table)."""


def next_position_state(state: str, event: str, has_position: bool) -> str:
    """The state after ``event`` in ``state``; raises :class:`InvalidPositionTransition`."""
    try:
        return POSITION_TABLE[(state, event, has_position)]
    except KeyError:
        raise InvalidPositionTransition(
            f"position: {event!r} not allowed in state {state!r} (has_position={has_position})"
        ) from None


def flatten_live(state: str) -> bool:
    """A reduce-only flatten order of the market is pending."""
    return state in FLATTEN_LIVE_STATES


def entry_live(state: str) -> bool:
    """An entry order of the market is pending."""
    return state in ENTRY_LIVE_STATES


def can_submit_flatten(state: str) -> bool:
    """A flatten may be submitted now: exposure exists and no flatten is live. Exit monitors,
    the time stop, the hard stop and the kill switch all ask this one question per market."""
    return state in FLATTEN_ALLOWED_STATES


def can_submit_entry(state: str) -> bool:
    """A new entry may be submitted now (the market is flat with nothing pending)."""
    return state in ENTRY_ALLOWED_STATES
