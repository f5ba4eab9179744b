"""The lifecycle of one order: the formal state machine and the table derived from it.

Venue-neutral: each venue adapter turns what its venue says into these events (Hyperliquid's
in ``engine/venues/hyperliquid/order_events.py``; the funding pairs' neutral order events, any
venue's, in ``engine/core/two_leg.py``); nothing here knows a venue's words. One OMS: both
venues' orders move only through :func:`next_order_state`.

Owns :class:`OrderMachine` (python-statemachine, synchronous, no callbacks with side effects),
:data:`ORDER_TABLE`, the transition table derived from the machine at import time by driving it
through every (state, event) pair, and :func:`next_order_state`, the dict lookup the hot path
uses (a machine costs ~120 µs to create and ~80 µs per transition; a lookup ~0.06 µs). A
Hypothesis test proves table and machine agree. See ``docs/state-machines.md``.

Every order has a cloid generated once; resend and reconciliation use it, never a new one.
Events are named for what the venue tells us (``transmit`` and ``abandon`` are our own acts):

```mermaid
stateDiagram-v2
    [*] --> NEW
    NEW --> SENT: transmit
    NEW --> EXPIRED: abandon
    SENT --> RESTING: ack_resting
    SENT --> PARTIAL: fill_partial
    SENT --> UNKNOWN: lose_contact
    RESTING --> RESTING: ack_resting
    RESTING --> PARTIAL: fill_partial
    RESTING --> UNKNOWN: lose_contact
    PARTIAL --> PARTIAL: ack_resting, fill_partial
    PARTIAL --> UNKNOWN: lose_contact
    UNKNOWN --> RESTING: ack_resting
    UNKNOWN --> PARTIAL: fill_partial
    UNKNOWN --> UNKNOWN: lose_contact
    SENT --> FILLED: fill_complete
    RESTING --> FILLED: fill_complete
    PARTIAL --> FILLED: fill_complete
    UNKNOWN --> FILLED: fill_complete
    SENT --> CANCELED: cancel_confirmed
    RESTING --> CANCELED: cancel_confirmed
    PARTIAL --> CANCELED: cancel_confirmed
    UNKNOWN --> CANCELED: cancel_confirmed
    SENT --> REJECTED: reject
    RESTING --> REJECTED: reject
    PARTIAL --> REJECTED: reject
    UNKNOWN --> REJECTED: reject
    SENT --> EXPIRED: expire
    RESTING --> EXPIRED: expire
    PARTIAL --> EXPIRED: expire
    UNKNOWN --> EXPIRED: expire, resolve_not_found
    FILLED --> [*]
    CANCELED --> [*]
    REJECTED --> [*]
    EXPIRED --> [*]
```

- NEW: created (queued), not yet handed to the socket. SENT: the post frame was written; no
  answer yet. RESTING: the venue accepted it and it is live with no fill known. PARTIAL: live,
  partly filled. UNKNOWN: we lost track (post timeout, disconnect, lost or unreadable
  response); it stays pending until resolved by client id (a status query, or a late order
  update), which uses the same events as live updates, plus ``resolve_not_found`` (the venue
  does not know the order).
- FILLED: the venue reports it done with fills (for an IOC the remainder that found no match
  is simply gone, and the post response still says ``filled``). CANCELED: canceled by us or by
  the system (possibly after partial fills), or an unrecognised status (fail safe). REJECTED:
  the venue refused it. EXPIRED: ended with no fill and no refusal: an IOC that found nothing
  to match, an order the venue never saw (not found), or one abandoned before sending.

Terminal states are absorbing. They are not ``final=True`` in the machine (python-statemachine
forbids transitions out of final states), because the few events they tolerate are declared in
the machine itself as internal self-transitions; :data:`ORDER_TABLE` maps those to
:data:`IGNORE`: the same outcome delivered again by another channel (order answer,
order update, status query), a progress echo that precedes the outcome (``ack_resting`` /
``fill_partial`` after FILLED or CANCELED), a late ``lose_contact`` timer, a "not found"
consistent with the outcome, and two benign pairs (a partly filled IOC may be reported
filled or canceled; an IOC that found nothing may be reported expired or canceled). Every other event in a terminal state is a contradiction and raises
:class:`InvalidOrderTransition`; the caller keeps the terminal state, logs an anomaly and
reconciles. The machine carries no quantities, so an ignored duplicate cannot double count:
quantities are not effects of transitions; fills are counted once by trade id, and a
venue-reported cumulative filled size is merged with ``max`` on every message (ignored,
contradictory or not), never added.
"""

from __future__ import annotations

import itertools
from typing import Final

from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

# -- states -------------------------------------------------------------------------------------
NEW: Final = "new"
SENT: Final = "sent"
RESTING: Final = "resting"
PARTIAL: Final = "partial"
UNKNOWN: Final = "unknown"
FILLED: Final = "filled"
CANCELED: Final = "canceled"
REJECTED: Final = "rejected"
EXPIRED: Final = "expired"

STATES: Final[tuple[str, ...]] = (
    NEW,
    SENT,
    RESTING,
    PARTIAL,
    UNKNOWN,
    FILLED,
    CANCELED,
    REJECTED,
    EXPIRED,
)
TERMINAL_STATES: Final[frozenset[str]] = frozenset({FILLED, CANCELED, REJECTED, EXPIRED})
ACTIVE_STATES: Final[frozenset[str]] = frozenset(STATES) - TERMINAL_STATES
"""Pending: counts toward limits and may still trade (NEW is queued, the rest are at or
possibly at the venue)."""
LIVE_STATES: Final[frozenset[str]] = ACTIVE_STATES - {NEW}
"""Handed to the venue and not known to be done."""

# -- events -------------------------------------------------------------------------------------
TRANSMIT: Final = "transmit"
ABANDON: Final = "abandon"
ACK_RESTING: Final = "ack_resting"
FILL_PARTIAL: Final = "fill_partial"
FILL_COMPLETE: Final = "fill_complete"
CANCEL_CONFIRMED: Final = "cancel_confirmed"
REJECT: Final = "reject"
EXPIRE: Final = "expire"
LOSE_CONTACT: Final = "lose_contact"
RESOLVE_NOT_FOUND: Final = "resolve_not_found"

EVENTS: Final[tuple[str, ...]] = (
    TRANSMIT,
    ABANDON,
    ACK_RESTING,
    FILL_PARTIAL,
    FILL_COMPLETE,
    CANCEL_CONFIRMED,
    REJECT,
    EXPIRE,
    LOSE_CONTACT,
    RESOLVE_NOT_FOUND,
)
LOCAL_EVENTS: Final[frozenset[str]] = frozenset({TRANSMIT, ABANDON})
"""Our own acts: the frame was handed to the socket / the order was dropped before sending."""
VENUE_EVENTS: Final[frozenset[str]] = frozenset(EVENTS) - LOCAL_EVENTS
"""What the venue (or its silence) tells us; venue adapters produce only these."""

IGNORE: Final = "ignore"
"""Table value for a tolerated event in a terminal state: keep the state, apply no effect."""


class OrderMachine(StateMachine):
    """Formal definition of one order's lifecycle (see the module docstring)."""

    new = State(initial=True)
    sent = State()
    resting = State()
    partial = State()
    unknown = State()
    filled = State()
    canceled = State()
    rejected = State()
    expired = State()

    transmit = new.to(sent)
    abandon = new.to(expired)
    ack_resting = (
        sent.to(resting)
        | resting.to.itself()
        | partial.to.itself()
        | unknown.to(resting)
        | filled.to.itself(internal=True)
        | canceled.to.itself(internal=True)
    )
    fill_partial = (
        sent.to(partial)
        | resting.to(partial)
        | partial.to.itself()
        | unknown.to(partial)
        | filled.to.itself(internal=True)
        | canceled.to.itself(internal=True)
    )
    fill_complete = (
        sent.to(filled)
        | resting.to(filled)
        | partial.to(filled)
        | unknown.to(filled)
        | filled.to.itself(internal=True)
        | canceled.to.itself(internal=True)
    )
    cancel_confirmed = (
        sent.to(canceled)
        | resting.to(canceled)
        | partial.to(canceled)
        | unknown.to(canceled)
        | canceled.to.itself(internal=True)
        | filled.to.itself(internal=True)
        | expired.to.itself(internal=True)
    )
    reject = (
        sent.to(rejected)
        | resting.to(rejected)
        | partial.to(rejected)
        | unknown.to(rejected)
        | rejected.to.itself(internal=True)
    )
    expire = (
        sent.to(expired)
        | resting.to(expired)
        | partial.to(expired)
        | unknown.to(expired)
        | expired.to.itself(internal=True)
        | canceled.to.itself(internal=True)
    )
    lose_contact = (
        sent.to(unknown)
        | resting.to(unknown)
        | partial.to(unknown)
        | unknown.to.itself()
        | filled.to.itself(internal=True)
        | canceled.to.itself(internal=True)
        | rejected.to.itself(internal=True)
        | expired.to.itself(internal=True)
    )
    resolve_not_found = (
        unknown.to(expired) | expired.to.itself(internal=True) | rejected.to.itself(internal=True)
    )

    @property
    def state_id(self) -> str:
        """The id of the current state (one of :data:`STATES`)."""
        return str(self.current_state_value)


class InvalidOrderTransition(Exception):
    """An event the order machine does not allow in that state (a bug, or a venue
    contradiction after a terminal state: keep the state, log, reconcile)."""


def machine_in(state: str) -> OrderMachine:
    """A fresh :class:`OrderMachine` positioned in ``state``."""
    return OrderMachine(start_value=state)


def _derive_table() -> dict[tuple[str, str], str]:
    """Drive the machine through every (state, event) pair and record where it lands."""
    table: dict[tuple[str, str], str] = {}
    sm: OrderMachine | None = None
    for state, event in itertools.product(STATES, EVENTS):
        if sm is None or sm.state_id != state:
            sm = machine_in(state)  # a refused event leaves the machine where it was: reuse it
        try:
            sm.send(event)
        except TransitionNotAllowed:
            continue
        target = sm.state_id
        if state in TERMINAL_STATES:
            if target != state:  # pragma: no cover - guarded by the tests
                raise AssertionError(f"terminal state {state!r} left on {event!r}")
            target = IGNORE
        table[(state, event)] = target
    return table


ORDER_TABLE: Final[dict[tuple[str, str], str]] = _derive_table()
"""(state, event) -> next state, or :data:`IGNORE`; a missing key is an invalid transition."""


def next_order_state(state: str, event: str) -> str:
    """The state after ``event`` in ``state``, or :data:`IGNORE` for a tolerated event in a
    terminal state (keep the state, apply no effect); raises :class:`InvalidOrderTransition`."""
    try:
        return ORDER_TABLE[(state, event)]
    except KeyError:
        raise InvalidOrderTransition(f"order: {event!r} not allowed in state {state!r}") from None
