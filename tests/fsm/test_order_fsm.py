"""The order FSM: the derived table agrees with the python-statemachine definition, terminal
states absorb, every pending order can end, and venue statuses classify fail-safe."""

from __future__ import annotations

import inspect
import pathlib
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statemachine.exceptions import TransitionNotAllowed

import engine.venues.hyperliquid.order_events as hlo
import fsm.order as fo
from engine.venues.hyperliquid.order_events import (
    PostDetail,
    classify_cancel_status,
    classify_order_status_reply,
    classify_order_update,
    classify_order_update_status,
    classify_post_response,
    classify_post_status,
    is_known_order_status,
)
from fsm.order import (
    ABANDON,
    ACK_RESTING,
    ACTIVE_STATES,
    CANCEL_CONFIRMED,
    CANCELED,
    EVENTS,
    EXPIRE,
    EXPIRED,
    FILL_COMPLETE,
    FILL_PARTIAL,
    FILLED,
    IGNORE,
    LIVE_STATES,
    LOCAL_EVENTS,
    LOSE_CONTACT,
    NEW,
    ORDER_TABLE,
    PARTIAL,
    REJECT,
    REJECTED,
    RESOLVE_NOT_FOUND,
    RESTING,
    STATES,
    TERMINAL_STATES,
    TRANSMIT,
    UNKNOWN,
    VENUE_EVENTS,
    InvalidOrderTransition,
    OrderMachine,
    next_order_state,
)

# -- the definition ------------------------------------------------------------------------------


def test_vocabulary_matches_the_machine() -> None:
    assert set(STATES) == {s.id for s in OrderMachine.states}
    assert set(EVENTS) == {e.id for e in OrderMachine().events}
    assert len(set(STATES)) == len(STATES) and len(set(EVENTS)) == len(EVENTS)
    assert LOCAL_EVENTS | VENUE_EVENTS == set(EVENTS) and not LOCAL_EVENTS & VENUE_EVENTS
    assert ACTIVE_STATES | TERMINAL_STATES == set(STATES)
    assert LIVE_STATES == ACTIVE_STATES - {NEW}


def test_machine_callbacks_are_synchronous() -> None:
    """Async callbacks would run on asyncio, which this Trio process must never start."""
    for name, member in inspect.getmembers(OrderMachine):
        assert not inspect.iscoroutinefunction(member), name


def test_table_shape() -> None:
    assert len(ORDER_TABLE) == 49
    for (state, event), target in ORDER_TABLE.items():
        assert state in STATES and event in EVENTS
        if state in TERMINAL_STATES:
            assert target == IGNORE, (state, event)
        else:
            assert target in STATES, (state, event)
    # our own acts apply only to NEW, and NEW accepts nothing the venue says
    assert {k for k in ORDER_TABLE if k[1] in LOCAL_EVENTS} == {(NEW, TRANSMIT), (NEW, ABANDON)}
    assert {k for k in ORDER_TABLE if k[0] == NEW} == {(NEW, TRANSMIT), (NEW, ABANDON)}


def test_ignore_set_is_exactly_the_documented_one() -> None:
    ignored = {k for k, v in ORDER_TABLE.items() if v == IGNORE}
    assert ignored == {
        (FILLED, FILL_COMPLETE),  # duplicate: post response + orderUpdates + orderStatus
        (FILLED, FILL_PARTIAL),  # progress echo delivered late
        (FILLED, ACK_RESTING),  # progress echo delivered late
        (FILLED, CANCEL_CONFIRMED),  # a partly filled IOC's remainder
        (FILLED, LOSE_CONTACT),  # late timer
        (CANCELED, CANCEL_CONFIRMED),
        (CANCELED, FILL_PARTIAL),
        (CANCELED, ACK_RESTING),
        (CANCELED, FILL_COMPLETE),  # a partly filled IOC reported canceled first
        (CANCELED, EXPIRE),  # an IOC with no match reported canceled first
        (CANCELED, LOSE_CONTACT),
        (REJECTED, REJECT),
        (REJECTED, LOSE_CONTACT),
        (REJECTED, RESOLVE_NOT_FOUND),  # a refused order need not be found
        (EXPIRED, EXPIRE),
        (EXPIRED, CANCEL_CONFIRMED),  # an IOC with no match reported canceled later
        (EXPIRED, LOSE_CONTACT),
        (EXPIRED, RESOLVE_NOT_FOUND),
    }


def test_known_lifecycles() -> None:
    def run(*events: str) -> str:
        state = NEW
        for event in events:
            state = next_order_state(state, event)
        return state

    assert run(TRANSMIT, ACK_RESTING, FILL_PARTIAL, FILL_PARTIAL, FILL_COMPLETE) == FILLED
    assert run(TRANSMIT, FILL_COMPLETE) == FILLED  # IOC: post response "filled"
    assert run(TRANSMIT, EXPIRE) == EXPIRED  # IOC found nothing
    assert run(TRANSMIT, REJECT) == REJECTED
    assert run(TRANSMIT, ACK_RESTING, CANCEL_CONFIRMED) == CANCELED
    assert run(TRANSMIT, LOSE_CONTACT, ACK_RESTING) == RESTING  # orderStatus says it rests
    assert run(TRANSMIT, LOSE_CONTACT, LOSE_CONTACT, FILL_COMPLETE) == FILLED
    assert run(TRANSMIT, LOSE_CONTACT, RESOLVE_NOT_FOUND) == EXPIRED  # unknownOid
    assert run(TRANSMIT, ACK_RESTING, FILL_PARTIAL, LOSE_CONTACT, FILL_PARTIAL) == PARTIAL
    assert run(ABANDON) == EXPIRED


def test_unknown_resolves_to_every_outcome() -> None:
    outcomes = {v for (s, _e), v in ORDER_TABLE.items() if s == UNKNOWN}
    assert outcomes == {UNKNOWN, RESTING, PARTIAL, FILLED, CANCELED, REJECTED, EXPIRED}


def test_partial_never_regresses_to_resting() -> None:
    """A bare 'open' after a partial fill (no size info) keeps PARTIAL."""
    assert next_order_state(PARTIAL, ACK_RESTING) == PARTIAL


_CONFLICTS = sorted((s, e) for s in TERMINAL_STATES for e in EVENTS if (s, e) not in ORDER_TABLE)


@pytest.mark.parametrize(("state", "event"), _CONFLICTS)
def test_terminal_contradictions_raise_in_both(state: str, event: str) -> None:
    with pytest.raises(InvalidOrderTransition):
        next_order_state(state, event)
    sm = fo.machine_in(state)
    with pytest.raises(TransitionNotAllowed):
        sm.send(event)
    assert sm.state_id == state


def test_conflicts_include_the_dangerous_ones() -> None:
    """A fill or a resting order after we concluded 'no fill' must never pass silently."""
    for state, event in [
        (EXPIRED, FILL_COMPLETE),
        (EXPIRED, FILL_PARTIAL),
        (EXPIRED, ACK_RESTING),
        (REJECTED, FILL_COMPLETE),
        (REJECTED, ACK_RESTING),
        (FILLED, REJECT),
        (CANCELED, RESOLVE_NOT_FOUND),
    ]:
        assert (state, event) in _CONFLICTS


def _successors(state: str) -> set[str]:
    return {v for (s, _e), v in ORDER_TABLE.items() if s == state and v != IGNORE}


def _reachable(start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in _successors(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("state", sorted(ACTIVE_STATES))
def test_every_active_state_can_reach_a_terminal_state(state: str) -> None:
    assert _reachable(state) & TERMINAL_STATES


@pytest.mark.parametrize("state", sorted(LIVE_STATES))
def test_every_live_state_can_reach_every_outcome(state: str) -> None:
    assert TERMINAL_STATES <= _reachable(state)


def test_every_state_is_reachable_from_new() -> None:
    assert _reachable(NEW) == set(STATES)


def test_docstring_diagram_is_the_table() -> None:
    """Every non-ignore entry of the table is an edge of the Mermaid diagram and vice versa."""
    doc = fo.__doc__
    assert doc is not None and "```mermaid" in doc and "stateDiagram-v2" in doc
    edges: set[tuple[str, str, str]] = set()
    for src, dst, label in re.findall(r"^\s*(\w+) --> (\w+): (.+)$", doc, flags=re.M):
        for event in label.split(", "):
            edges.add((src.lower(), event, dst.lower()))
    expected = {(s, e, t) for (s, e), t in ORDER_TABLE.items() if t != IGNORE}
    assert edges == expected


# -- idempotency ---------------------------------------------------------------------------------


class _Book:
    """The minimum an order book does with the table: terminal effects exactly once."""

    def __init__(self) -> None:
        self.state = NEW
        self.terminal_effects = 0
        self.anomalies = 0

    def on(self, event: str) -> None:
        try:
            nxt = next_order_state(self.state, event)
        except InvalidOrderTransition:
            self.anomalies += 1  # keep the state, log, reconcile
            return
        if nxt == IGNORE:
            return
        if nxt in TERMINAL_STATES and self.state not in TERMINAL_STATES:
            self.terminal_effects += 1  # release pending, entry_done/flatten_done, record
        self.state = nxt


def test_duplicate_filled_after_filled_is_ignored_and_counted_once() -> None:
    book = _Book()
    book.on(TRANSMIT)
    book.on(classify_post_status({"filled": {"totalSz": "0.2", "avgPx": "104.63", "oid": 1}})[0])
    book.on(classify_order_update_status("filled"))  # orderUpdates
    book.on(classify_order_update_status("filled"))  # delivered twice
    book.on(classify_order_status_reply(_status_reply("filled", "0.0", "0.2")))  # orderStatus
    book.on(LOSE_CONTACT)  # the post timer fires late
    assert (book.state, book.terminal_effects, book.anomalies) == (FILLED, 1, 0)


def test_ioc_without_match_reported_both_ways_is_one_outcome() -> None:
    book = _Book()
    book.on(TRANSMIT)
    err = {"error": "Order could not immediately match against any resting orders. asset=110027"}
    book.on(classify_post_status(err)[0])
    book.on(classify_order_update_status("iocCancelRejected"))
    book.on(classify_order_update_status("canceled"))
    assert (book.state, book.terminal_effects, book.anomalies) == (EXPIRED, 1, 0)


def test_fill_after_not_found_is_an_anomaly_not_a_resurrection() -> None:
    book = _Book()
    for event in (TRANSMIT, LOSE_CONTACT, RESOLVE_NOT_FOUND, FILL_COMPLETE, ACK_RESTING):
        book.on(event)
    assert (book.state, book.terminal_effects, book.anomalies) == (EXPIRED, 1, 2)


# -- status classification -----------------------------------------------------------------------

_REJECTED = [
    "rejected",
    "tickRejected",
    "minTradeNtlRejected",
    "perpMarginRejected",
    "reduceOnlyRejected",
    "badAloPxRejected",
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
]
_CANCELED = [
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
]
_STATUS_CASES = (
    [("open", ACK_RESTING), ("triggered", ACK_RESTING), ("filled", FILL_COMPLETE)]
    + [("iocCancelRejected", EXPIRE)]
    + [(s, REJECT) for s in _REJECTED]
    + [(s, CANCEL_CONFIRMED) for s in _CANCELED]
)


@pytest.mark.parametrize(("status", "event"), _STATUS_CASES)
def test_order_update_vocabulary(status: str, event: str) -> None:
    assert classify_order_update_status(status) == event
    assert is_known_order_status(status)


def test_vocabulary_is_complete() -> None:
    assert {s for s, _ in _STATUS_CASES} == hlo.KNOWN_ORDER_STATUSES


@pytest.mark.parametrize(
    ("status", "event"),
    [
        ("futureThingRejected", REJECT),
        ("futureThingCanceled", CANCEL_CONFIRMED),
        ("futureThingCancel", CANCEL_CONFIRMED),
        ("somethingNew", CANCEL_CONFIRMED),  # fail-safe terminal
        ("", CANCEL_CONFIRMED),
        ("OPEN", CANCEL_CONFIRMED),  # statuses are case-sensitive
    ],
)
def test_unknown_statuses_are_fail_safe_terminal(status: str, event: str) -> None:
    assert classify_order_update_status(status) == event
    assert not is_known_order_status(status)
    assert ORDER_TABLE[(RESTING, event)] in TERMINAL_STATES


def test_order_update_sizes_refine_open_into_partial() -> None:
    assert classify_order_update("open", "0.2", "0.2") == ACK_RESTING
    assert classify_order_update("open", "0.05", "0.2") == FILL_PARTIAL
    assert classify_order_update("open", 0.05, 0.2) == FILL_PARTIAL
    assert classify_order_update("open", None, "0.2") == ACK_RESTING
    assert classify_order_update("open", "junk", "0.2") == ACK_RESTING
    assert classify_order_update("filled", "0.0", "0.2") == FILL_COMPLETE
    assert classify_order_update("canceled", "0.1", "0.2") == CANCEL_CONFIRMED


def _status_reply(status: str, sz: str, orig: str) -> dict[str, Any]:
    return {
        "status": "order",
        "order": {
            "order": {"coin": "xyz:SILVER", "sz": sz, "origSz": orig, "oid": 1},
            "status": status,
            "statusTimestamp": 1,
        },
    }


def test_order_status_reply() -> None:
    assert classify_order_status_reply({"status": "unknownOid"}) == RESOLVE_NOT_FOUND
    assert classify_order_status_reply(_status_reply("open", "0.2", "0.2")) == ACK_RESTING
    assert classify_order_status_reply(_status_reply("open", "0.1", "0.2")) == FILL_PARTIAL
    assert classify_order_status_reply(_status_reply("filled", "0", "0.2")) == FILL_COMPLETE
    assert classify_order_status_reply(_status_reply("marginCanceled", "0", "1")) == (
        CANCEL_CONFIRMED
    )
    reply = {"status": "order", "order": {"status": "rejected"}}
    assert classify_order_status_reply(reply) == REJECT
    for junk in (None, "x", {}, {"status": "order"}, {"status": "order", "order": {}}, [1]):
        assert classify_order_status_reply(junk) == LOSE_CONTACT  # still unknown: ask again


def test_post_status_resting_and_accepted_strings() -> None:
    assert classify_post_status({"resting": {"oid": 77}}) == (
        ACK_RESTING,
        PostDetail("resting", oid=77),
    )
    assert classify_post_status({"resting": {"oid": 77, "cloid": "0xab"}})[1].oid == 77
    for s in ("waitingForFill", "waitingForTrigger", "success"):
        assert classify_post_status(s) == (ACK_RESTING, PostDetail(s))


def test_post_status_filled() -> None:
    body = {"filled": {"totalSz": "0.2", "avgPx": "104.63", "oid": 302228651101}}
    detail = PostDetail("filled", oid=302228651101, total_sz="0.2", avg_px="104.63")
    assert classify_post_status(body) == (FILL_COMPLETE, detail)  # IOC by default
    part = {"filled": {"totalSz": "0.1", "avgPx": "104.63", "oid": 1}}
    assert classify_post_status(part, ioc=True, orig_sz="0.2")[0] == FILL_COMPLETE  # IOC: done
    assert classify_post_status(part, ioc=False, orig_sz="0.2")[0] == FILL_PARTIAL  # may rest
    assert classify_post_status(part, ioc=False, orig_sz="0.1")[0] == FILL_COMPLETE
    assert classify_post_status(part, ioc=False, orig_sz="0.10")[0] == FILL_COMPLETE
    assert classify_post_status(part, ioc=False)[0] == FILL_PARTIAL  # unknown size: stay live
    assert classify_post_status(part, ioc=False, orig_sz="nan?")[0] == FILL_PARTIAL


def test_post_status_errors() -> None:
    ioc = "Order could not immediately match against any resting orders. asset=110027"
    assert classify_post_status({"error": ioc}) == (EXPIRE, PostDetail("error", message=ioc))
    for msg in (
        "Order must have minimum value of $10. asset=110027",
        "Reduce only order would increase position. asset=110026",
        "Price must be divisible by tick size.",
        "Insufficient margin to place order.",
        "Post only order would have immediately matched, bbo was 1@2.",
        "something brand new",
    ):
        assert classify_post_status({"error": msg}) == (REJECT, PostDetail("error", message=msg))


def test_post_status_action_err_timeout_transport_and_junk() -> None:
    err = {
        "status": "err",
        "response": "L1 error: User or API Wallet 0xcd9de27135a4e0826525509178e97d592f24ef5a "
        "does not exist.",
    }
    assert classify_post_status(err)[0] == REJECT
    assert classify_post_status(err)[1].kind == "actionErr"
    assert classify_post_status(None) == (LOSE_CONTACT, PostDetail("timeout"))
    transport = {"type": "error", "payload": "too many pending post requests id=3"}
    assert classify_post_status(transport) == (
        LOSE_CONTACT,
        PostDetail("transportError", message="too many pending post requests id=3"),
    )
    junks: list[object] = ["weird", 5, [], {}, {"other": 1}]
    for junk in junks:
        event, detail = classify_post_status(junk)
        assert (event, detail.kind) == (LOSE_CONTACT, "unrecognized")


def _action(statuses: list[Any]) -> dict[str, Any]:
    return {
        "type": "action",
        "payload": {"status": "ok", "response": {"type": "order", "data": {"statuses": statuses}}},
    }


def test_post_response_batch() -> None:
    resp = _action(
        [
            {"filled": {"totalSz": "0.2", "avgPx": "104.63", "oid": 302228651101}},
            {"resting": {"oid": 5}},
            {"error": "Order must have minimum value of $10. asset=110027"},
            "success",
        ]
    )
    assert [e for e, _ in classify_post_response(resp, 4)] == [
        FILL_COMPLETE,
        ACK_RESTING,
        REJECT,
        ACK_RESTING,
    ]
    sized = _action([{"filled": {"totalSz": "1", "avgPx": "2", "oid": 3}}])
    assert classify_post_response(sized, 1, ioc=False, orig_szs=["2"])[0][0] == FILL_PARTIAL


def test_post_response_never_shifts_a_misaligned_batch() -> None:
    resp = _action([{"resting": {"oid": 5}}])
    assert classify_post_response(resp, 2) == [(LOSE_CONTACT, PostDetail("missing"))] * 2


def test_post_response_action_err_transport_error_and_timeout() -> None:
    err = {"type": "action", "payload": {"status": "err", "response": "bad nonce"}}
    assert [e for e, _ in classify_post_response(err, 3)] == [REJECT] * 3
    transport = {"type": "error", "payload": "503 Service Unavailable"}
    assert [e for e, _ in classify_post_response(transport, 2)] == [LOSE_CONTACT] * 2
    assert [e for e, _ in classify_post_response(None, 2)] == [LOSE_CONTACT] * 2
    cancel_shape = {
        "type": "action",
        "payload": {"status": "ok", "response": {"type": "cancel", "data": {"statuses": ["x"]}}},
    }
    assert [e for e, _ in classify_post_response(cancel_shape, 1)] == [LOSE_CONTACT]
    assert classify_post_response({"type": "action", "payload": "?"}, 1)[0][0] == LOSE_CONTACT


def test_cancel_status() -> None:
    assert classify_cancel_status("success") == CANCEL_CONFIRMED
    never = {"error": "Order was never placed, already canceled, or filled."}
    assert classify_cancel_status(never) is None
    assert classify_cancel_status(None) is None


# -- properties ----------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["resting", "filled", "error", "status", "response", "type", "payload", "oid"]
            )
            | st.text(max_size=6),
            inner,
            max_size=3,
        )
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(_json, st.booleans(), _json)
def test_classifiers_never_raise_and_yield_venue_events(
    obj: object, ioc: bool, size: object
) -> None:
    event, detail = classify_post_status(obj, ioc=ioc, orig_sz=size)
    assert event in VENUE_EVENTS and isinstance(detail, PostDetail)
    assert classify_order_status_reply(obj) in VENUE_EVENTS
    for event, _ in classify_post_response(obj, 2):
        assert event in VENUE_EVENTS
    if isinstance(obj, str):
        assert classify_order_update(obj, size, size) in VENUE_EVENTS


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(STATES), st.lists(st.sampled_from(EVENTS), max_size=14))
def test_table_agrees_with_machine_on_arbitrary_sequences(start: str, seq: list[str]) -> None:
    """Same states, same refusals, and IGNORE exactly where the machine stays terminal."""
    sm = fo.machine_in(start)
    state = start
    for event in seq:
        before = sm.state_id
        try:
            sm.send(event)
            machine_ok = True
        except TransitionNotAllowed:
            machine_ok = False
        try:
            nxt = next_order_state(state, event)
            table_ok = True
        except InvalidOrderTransition:
            table_ok = False
        assert machine_ok == table_ok
        if table_ok and nxt == IGNORE:
            assert before in TERMINAL_STATES and sm.state_id == before
        elif table_ok:
            state = nxt
        assert sm.state_id == state


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(TERMINAL_STATES)), st.lists(st.sampled_from(EVENTS), max_size=20))
def test_terminal_states_absorb(start: str, seq: list[str]) -> None:
    for event in seq:
        try:
            assert next_order_state(start, event) == IGNORE
        except InvalidOrderTransition:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(sorted(VENUE_EVENTS)), max_size=20))
def test_a_sent_order_under_any_venue_story_stays_resolvable(seq: list[str]) -> None:
    """Whatever the venue says (valid or not), the order is terminal or can still end."""
    state = next_order_state(NEW, TRANSMIT)
    for event in seq:
        try:
            nxt = next_order_state(state, event)
        except InvalidOrderTransition:
            continue
        if nxt != IGNORE:
            state = nxt
    assert state in TERMINAL_STATES or _reachable(state) & TERMINAL_STATES


def _mermaid_blocks(text: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)


def test_docs_page_shows_the_same_diagram() -> None:
    doc = fo.__doc__
    assert doc is not None
    page = pathlib.Path(__file__).parents[2] / "docs" / "state-machines.md"
    assert _mermaid_blocks(page.read_text())[0] == _mermaid_blocks(doc)[0]
