"""The lifecycle of one order: the formal state machine, the table derived from it, and the
venue-status classifiers that turn what Hyperliquid says into the machine's events.

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
  response); it stays pending until resolved by cloid (``orderStatus``, or a late orderUpdate),
  which uses the same events as live updates, plus ``resolve_not_found`` (``unknownOid``).
- FILLED: the venue reports it done with fills (for an IOC the remainder that found no match
  is simply gone, and the post response still says ``filled``). CANCELED: canceled by us or by
  the system (possibly after partial fills), or an unrecognised status (fail safe). REJECTED:
  the venue refused it. EXPIRED: ended with no fill and no refusal: an IOC that found nothing
  to match, an order the venue never saw (``unknownOid``), or one abandoned before sending.

Terminal states are absorbing. They are not ``final=True`` in the machine (python-statemachine
forbids transitions out of final states), because the few events they tolerate are declared in
the machine itself as internal self-transitions; :data:`ORDER_TABLE` maps those to
:data:`IGNORE`: the same outcome delivered again by another channel (post response,
orderUpdates, orderStatus), a progress echo that precedes the outcome (``ack_resting`` /
``fill_partial`` after FILLED or CANCELED), a late ``lose_contact`` timer, a "not found"
consistent with the outcome, and two benign pairs (a partly filled IOC may be reported
``filled`` or ``canceled``; an IOC that found nothing may be reported ``iocCancelRejected`` or
``canceled``). Every other event in a terminal state is a contradiction and raises
:class:`InvalidOrderTransition`; the caller keeps the terminal state, logs an anomaly and
reconciles. The machine carries no quantities, so an ignored duplicate cannot double count:
quantities are not effects of transitions; fills are counted once by trade id, and a
venue-reported cumulative filled size is merged with ``max`` on every message (ignored,
contradictory or not), never added.
"""

from __future__ import annotations

import itertools
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NamedTuple

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
"""What the venue (or its silence) tells us; the classifiers below produce only these."""

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


# -- venue status -> event -----------------------------------------------------------------------

IOC_NO_MATCH_PREFIX: Final = "Order could not immediately match"
"""Prefix of the post-response error of an IOC that found nothing (HIP-3 appends `` asset=N``)."""

ORDER_STATUSES_LIVE: Final[frozenset[str]] = frozenset({"open", "triggered"})
ORDER_STATUSES_REJECTED: Final[frozenset[str]] = frozenset(
    {
        "rejected",
        "tickRejected",
        "minTradeNtlRejected",
        "perpMarginRejected",
        "reduceOnlyRejected",
        "badAloPxRejected",
        "iocCancelRejected",
        "badTriggerPxRejected",
        "marketOrderNoLiquidityRejected",
        "positionIncreaseAtOpenInterestCapRejected",
        "positionFlipAtOpenInterestCapRejected",
        "tooAggressiveAtOpenInterestCapRejected",
        "openInterestIncreaseRejected",
        "insufficientSpotBalanceRejected",
        "oracleRejected",
        "perpMaxPositionRejected",
        "tooManyOpenOrdersRejected",
    }
)
ORDER_STATUSES_CANCELED: Final[frozenset[str]] = frozenset(
    {
        "canceled",
        "marginCanceled",
        "vaultWithdrawalCanceled",
        "openInterestCapCanceled",
        "selfTradeCanceled",
        "reduceOnlyCanceled",
        "siblingFilledCanceled",
        "delistedCanceled",
        "liquidatedCanceled",
        "outcomeSettledCanceled",
        "scheduledCancel",
        "internalCancel",
    }
)
KNOWN_ORDER_STATUSES: Final[frozenset[str]] = (
    ORDER_STATUSES_LIVE | {"filled"} | ORDER_STATUSES_REJECTED | ORDER_STATUSES_CANCELED
)
"""The orderUpdates / orderStatus vocabulary (docs/reference/hyperliquid-protocol.md §12)."""


def _status_event(status: str) -> str:
    if status in ORDER_STATUSES_LIVE:
        return ACK_RESTING
    if status == "filled":
        return FILL_COMPLETE
    if status == "iocCancelRejected":
        return EXPIRE  # an IOC that found nothing to match: benign, no fill
    if status == "rejected" or status.endswith("Rejected"):
        return REJECT
    # "canceled", every "*Canceled", "scheduledCancel", "internalCancel" -- and, fail safe, any
    # status we do not know: treat the order as done so nothing stays pending forever.
    return CANCEL_CONFIRMED


_STATUS_EVENTS: Final[dict[str, str]] = {s: _status_event(s) for s in KNOWN_ORDER_STATUSES}


def classify_order_update_status(status: str) -> str:
    """The event for an orderUpdates / orderStatus ``status`` string.

    ``open``/``triggered`` -> ack_resting, ``filled`` -> fill_complete, ``iocCancelRejected``
    -> expire, ``rejected``/``*Rejected`` -> reject, ``canceled``/``*Canceled``/``*Cancel`` ->
    cancel_confirmed, anything unrecognised -> cancel_confirmed (fail-safe terminal; check
    :func:`is_known_order_status` and log it).
    """
    event = _STATUS_EVENTS.get(status)
    return event if event is not None else _status_event(status)


def is_known_order_status(status: str) -> bool:
    """True if ``status`` is in the documented vocabulary (unknown ones deserve a warning)."""
    return status in KNOWN_ORDER_STATUSES


def _dec(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def classify_order_update(status: str, sz: object = None, orig_sz: object = None) -> str:
    """Like :func:`classify_order_update_status`, refined by sizes: a live status whose
    remaining ``sz`` is below ``origSz`` is ``fill_partial`` (partial fills arrive as ``open``
    with a smaller ``sz``)."""
    event = classify_order_update_status(status)
    if event == ACK_RESTING:
        rem, orig = _dec(sz), _dec(orig_sz)
        if rem is not None and orig is not None and rem < orig:
            return FILL_PARTIAL
    return event


def classify_order_status_reply(reply: object) -> str:
    """The event for an ``orderStatus`` (by cloid) info reply, used to resolve UNKNOWN.

    ``{"status":"unknownOid"}`` -> resolve_not_found; ``{"status":"order","order":{"order":
    {..., "sz", "origSz"}, "status": s}}`` -> :func:`classify_order_update`; anything
    unreadable -> lose_contact (still unknown: ask again).
    """
    if isinstance(reply, dict):
        if reply.get("status") == "unknownOid":
            return RESOLVE_NOT_FOUND
        wrapper = reply.get("order")
        if reply.get("status") == "order" and isinstance(wrapper, dict):
            status = wrapper.get("status")
            inner = wrapper.get("order")
            if isinstance(status, str):
                if isinstance(inner, dict):
                    return classify_order_update(status, inner.get("sz"), inner.get("origSz"))
                return classify_order_update_status(status)
    return LOSE_CONTACT


class PostDetail(NamedTuple):
    """What a post response said about one order, besides the event.

    ``kind`` is the venue's word (``resting``, ``filled``, ``error``, ``waitingForFill``,
    ``waitingForTrigger``, ``success``) or ours (``actionErr``, ``transportError``, ``timeout``,
    ``unrecognized``, ``missing``). Sizes and prices stay the exact wire strings.
    """

    kind: str
    oid: int | None = None
    total_sz: str | None = None
    avg_px: str | None = None
    message: str | None = None


POST_ACCEPTED_STRINGS: Final[frozenset[str]] = frozenset(
    {"waitingForFill", "waitingForTrigger", "success"}
)
"""Bare-string statuses: accepted by the venue, the oid and outcome follow on orderUpdates."""


def _oid(body: dict[str, Any]) -> int | None:
    oid = body.get("oid")
    return oid if isinstance(oid, int) and not isinstance(oid, bool) else None


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def classify_post_status(
    obj: object, *, ioc: bool = True, orig_sz: object = None
) -> tuple[str, PostDetail]:
    """(event, detail) for one order's post-response status, or for a whole-action outcome.

    - ``{"resting": {"oid"}}`` -> ack_resting.
    - ``{"filled": {"totalSz", "avgPx", "oid"}}`` -> fill_complete for an IOC (nothing of it
      can rest) or when ``totalSz >= orig_sz``; otherwise fill_partial (the rest may rest).
    - ``{"error": msg}`` -> expire if ``msg`` starts with :data:`IOC_NO_MATCH_PREFIX`, else
      reject.
    - ``"waitingForFill"`` / ``"waitingForTrigger"`` / ``"success"`` (ALO) -> ack_resting.
    - ``{"status": "err", "response": msg}`` (action-level error: the action was not applied)
      -> reject, for every order of the action.
    - ``{"type": "error", "payload": msg}`` (transport error: processing unknown) and ``None``
      (timeout, disconnect, lost response) -> lose_contact.
    - anything else -> lose_contact (we do not know what happened: resolve by cloid).
    """
    if obj is None:
        return LOSE_CONTACT, PostDetail("timeout")
    if isinstance(obj, str):
        if obj in POST_ACCEPTED_STRINGS:
            return ACK_RESTING, PostDetail(obj)
        return LOSE_CONTACT, PostDetail("unrecognized", message=obj)
    if isinstance(obj, dict):
        if "resting" in obj:
            body = obj["resting"]
            return ACK_RESTING, PostDetail(
                "resting", oid=_oid(body if isinstance(body, dict) else {})
            )
        if "filled" in obj:
            body = obj["filled"] if isinstance(obj["filled"], dict) else {}
            detail = PostDetail(
                "filled",
                oid=_oid(body),
                total_sz=_str_or_none(body.get("totalSz")),
                avg_px=_str_or_none(body.get("avgPx")),
            )
            if ioc:
                return FILL_COMPLETE, detail
            total, orig = _dec(detail.total_sz), _dec(orig_sz)
            if total is not None and orig is not None and total >= orig:
                return FILL_COMPLETE, detail
            return FILL_PARTIAL, detail
        if "error" in obj:
            msg = str(obj["error"])
            event = EXPIRE if msg.startswith(IOC_NO_MATCH_PREFIX) else REJECT
            return event, PostDetail("error", message=msg)
        if obj.get("status") == "err":
            return REJECT, PostDetail("actionErr", message=_str_or_none(obj.get("response")))
        if obj.get("type") == "error":
            return LOSE_CONTACT, PostDetail(
                "transportError", message=_str_or_none(obj.get("payload"))
            )
    return LOSE_CONTACT, PostDetail("unrecognized", message=repr(obj)[:200])


def classify_post_response(
    response: object,
    n_orders: int,
    *,
    ioc: bool = True,
    orig_szs: tuple[object, ...] | list[object] | None = None,
) -> list[tuple[str, PostDetail]]:
    """(event, detail) for each of the ``n_orders`` orders of one ``order`` action.

    ``response`` is the post ``data.response`` object (``{"type": "action", "payload": ...}`` or
    ``{"type": "error", "payload": msg}``), or ``None`` on timeout. ``statuses`` are matched to
    orders by position; if their count differs from ``n_orders`` the alignment cannot be
    trusted, so every order gets lose_contact (resolve each by cloid) -- never a shifted zip.
    """
    if isinstance(response, dict) and response.get("type") == "action":
        payload = response.get("payload")
        if isinstance(payload, dict):
            if payload.get("status") == "err":
                return [classify_post_status(payload)] * n_orders
            inner = payload.get("response")
            data = inner.get("data") if isinstance(inner, dict) else None
            statuses = data.get("statuses") if isinstance(data, dict) else None
            if (
                payload.get("status") == "ok"
                and isinstance(inner, dict)
                and inner.get("type") == "order"
                and isinstance(statuses, list)
            ):
                if len(statuses) == n_orders:
                    sizes = list(orig_szs) if orig_szs is not None else [None] * n_orders
                    return [
                        classify_post_status(s, ioc=ioc, orig_sz=sz)
                        for s, sz in zip(statuses, sizes, strict=True)
                    ]
                return [(LOSE_CONTACT, PostDetail("missing"))] * n_orders
        return [(LOSE_CONTACT, PostDetail("unrecognized", message=repr(response)[:200]))] * n_orders
    return [classify_post_status(response)] * n_orders


def classify_cancel_status(obj: object) -> str | None:
    """The order event for one ``cancel`` / ``cancelByCloid`` status: ``"success"`` ->
    cancel_confirmed; an error (already filled or canceled, never placed) -> ``None``: no
    event, the order's real outcome arrives on orderUpdates or from ``orderStatus``."""
    return CANCEL_CONFIRMED if obj == "success" else None
