"""The lifecycle of one two-leg (delta-neutral) intent: the formal state machine and the
transition table derived from it.

Owns :class:`TwoLegMachine` (python-statemachine, synchronous, no side-effect callbacks),
:data:`TWO_LEG_TABLE` (derived at import time by driving the machine through every
(state, event) pair) and :func:`next_two_leg_state`, the lookup the controller
(:mod:`engine.core.two_leg`) uses. A Hypothesis test proves table and machine agree. See
``docs/state-machines.md`` ("Two-leg intent").

```mermaid
stateDiagram-v2
    [*] --> IDLE
    IDLE --> LEG1: open
    LEG1 --> HEDGING: leg1_fill
    LEG1 --> IDLE: leg1_empty
    LEG1 --> CLOSING: close
    LEG1 --> UNWINDING: hedge_fail
    HEDGING --> HEDGING: leg1_fill, hedge_partial
    HEDGING --> HEDGED: hedge_complete
    HEDGING --> UNWINDING: hedge_fail
    HEDGING --> CLOSING: close
    HEDGED --> HEDGING: leg1_fill, drift
    HEDGED --> CLOSING: close
    CLOSING --> CLOSING: leg1_fill, hedge_partial, close_fill, close
    CLOSING --> IDLE: flat
    UNWINDING --> UNWINDING: leg1_fill, hedge_partial, close_fill, close
    UNWINDING --> IDLE: flat
```

- IDLE: nothing held, nothing in flight. LEG1: the first leg's order is out, nothing filled.
- HEDGING: some leg-1 quantity is filled and the second leg is being bought/sold to match it
  (also after a ``drift``: a rebalance order is out). The intent is *unhedged* here; the
  controller integrates unhedged notional × time against the leg-risk budget.
- HEDGED: both legs filled and equal (net delta below one lot), nothing in flight.
- CLOSING: both legs are being flattened on request (strategy close, kill).
- UNWINDING: the second leg failed (rejected too often, lagged past the leg-risk budget or the
  hard deadline): both legs are being flattened to remove the unhedged exposure.
- ``flat`` ends CLOSING/UNWINDING when both positions are zero (or dust below what the leg
  can trade) and nothing is in flight.
"""

from __future__ import annotations

import itertools
from typing import Final

from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

IDLE: Final = "idle"
LEG1: Final = "leg1"
HEDGING: Final = "hedging"
HEDGED: Final = "hedged"
CLOSING: Final = "closing"
UNWINDING: Final = "unwinding"
STATES: Final[tuple[str, ...]] = (IDLE, LEG1, HEDGING, HEDGED, CLOSING, UNWINDING)
FLATTENING: Final[frozenset[str]] = frozenset({CLOSING, UNWINDING})
UNHEDGED_STATES: Final[frozenset[str]] = frozenset({LEG1, HEDGING})

OPEN: Final = "open"
LEG1_FILL: Final = "leg1_fill"
LEG1_EMPTY: Final = "leg1_empty"
HEDGE_PARTIAL: Final = "hedge_partial"
HEDGE_COMPLETE: Final = "hedge_complete"
HEDGE_FAIL: Final = "hedge_fail"
DRIFT: Final = "drift"
CLOSE: Final = "close"
CLOSE_FILL: Final = "close_fill"
FLAT: Final = "flat"
EVENTS: Final[tuple[str, ...]] = (OPEN, LEG1_FILL, LEG1_EMPTY, HEDGE_PARTIAL, HEDGE_COMPLETE,
                                  HEDGE_FAIL, DRIFT, CLOSE, CLOSE_FILL, FLAT)


class TwoLegMachine(StateMachine):
    """Formal definition of one two-leg intent (see the module docstring)."""

    idle = State(initial=True)
    leg1 = State()
    hedging = State()
    hedged = State()
    closing = State()
    unwinding = State()

    open = idle.to(leg1)
    leg1_fill = (leg1.to(hedging) | hedging.to.itself() | hedged.to(hedging)
                 | closing.to.itself() | unwinding.to.itself())
    leg1_empty = leg1.to(idle)
    hedge_partial = hedging.to.itself() | closing.to.itself() | unwinding.to.itself()
    hedge_complete = hedging.to(hedged)
    hedge_fail = leg1.to(unwinding) | hedging.to(unwinding)
    drift = hedged.to(hedging)
    close = (leg1.to(closing) | hedging.to(closing) | hedged.to(closing) | closing.to.itself()
             | unwinding.to.itself())
    close_fill = closing.to.itself() | unwinding.to.itself()
    flat = closing.to(idle) | unwinding.to(idle)

    @property
    def state_id(self) -> str:
        return str(self.current_state_value)


class InvalidTwoLegTransition(Exception):
    """An event the two-leg machine does not allow in that state (a controller bug)."""


def machine_in(state: str) -> TwoLegMachine:
    return TwoLegMachine(start_value=state)


def _derive_table() -> dict[tuple[str, str], str]:
    table: dict[tuple[str, str], str] = {}
    for state, event in itertools.product(STATES, EVENTS):
        sm = machine_in(state)
        try:
            sm.send(event)
        except TransitionNotAllowed:
            continue
        table[(state, event)] = sm.state_id
    return table


TWO_LEG_TABLE: Final[dict[tuple[str, str], str]] = _derive_table()
"""(state, event) -> next state; a missing key is an invalid transition."""


def next_two_leg_state(state: str, event: str) -> str:
    try:
        return TWO_LEG_TABLE[(state, event)]
    except KeyError:
        raise InvalidTwoLegTransition(f"two-leg: {event!r} not allowed in {state!r}") from None
