"""The position FSM: the derived table agrees with the python-statemachine definition, a
market never has two live flatten orders, every refusal is released, and the predecessor's
duplicate-flatten and fill-race bugs cannot happen (docs/reference/predecessor-semantics.md §4.3, §8)."""

from __future__ import annotations

import inspect
import pathlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from statemachine.exceptions import TransitionNotAllowed

import fsm.position as fp
from engine.venues.hyperliquid.order_events import (
    classify_cancel_status,
    classify_order_status_reply,
    classify_order_update,
    classify_post_response,
    classify_post_status,
)
from fsm.order import (
    ABANDON,
    ACK_RESTING,
    ACTIVE_STATES,
    CANCEL_CONFIRMED,
    EXPIRE,
    FILL_COMPLETE,
    FILL_PARTIAL,
    IGNORE,
    LIVE_STATES,
    LOSE_CONTACT,
    NEW,
    REJECT,
    RESOLVE_NOT_FOUND,
    TERMINAL_STATES,
    TRANSMIT,
    InvalidOrderTransition,
    next_order_state,
)
from fsm.position import (
    ENTRY_DONE,
    ENTRY_LIVE_STATES,
    EVENTS,
    FILL,
    FLAT,
    FLATTEN_DONE,
    FLATTEN_LIVE_STATES,
    FLATTENING,
    FLATTENING_ENTRY_LIVE,
    OPEN,
    OPENING,
    OPENING_PARTIAL,
    POSITION_TABLE,
    STATES,
    SUBMIT_ENTRY,
    SUBMIT_FLATTEN,
    SYNC,
    InvalidPositionTransition,
    PositionMachine,
    can_submit_entry,
    can_submit_flatten,
    entry_live,
    flatten_live,
    next_position_state,
)

ZERO_EXPOSURE = frozenset({FLAT, OPENING})
NONZERO_EXPOSURE = frozenset({OPEN, OPENING_PARTIAL})
EXPOSURE_EVENTS = frozenset({FILL, SYNC, ENTRY_DONE, FLATTEN_DONE})

# -- the definition ------------------------------------------------------------------------------


def test_vocabulary_matches_the_machine() -> None:
    assert set(STATES) == {s.id for s in PositionMachine.states}
    assert set(EVENTS) == {e.id for e in PositionMachine().events}
    assert FLATTEN_LIVE_STATES <= set(STATES) and ENTRY_LIVE_STATES <= set(STATES)


def test_machine_callbacks_are_synchronous() -> None:
    for name, member in inspect.getmembers(PositionMachine):
        assert not inspect.iscoroutinefunction(member), name


def test_table_shape() -> None:
    assert len(POSITION_TABLE) == 40
    assert fp.ENTRY_ALLOWED_STATES == {FLAT}
    assert fp.FLATTEN_ALLOWED_STATES == {OPEN, OPENING_PARTIAL}
    for (state, event, _hp), target in POSITION_TABLE.items():
        assert state in STATES and event in EVENTS and target in STATES
    # commands do not depend on has_position; both values are in the table
    for state, event, hp in POSITION_TABLE:
        if event in (SUBMIT_ENTRY, SUBMIT_FLATTEN):
            assert POSITION_TABLE[(state, event, not hp)] == POSITION_TABLE[(state, event, hp)]
        assert (state, event, not hp) in POSITION_TABLE  # no event is refused by a condition


def test_fill_and_sync_have_identical_transitions() -> None:
    for state in STATES:
        for hp in (False, True):
            assert POSITION_TABLE.get((state, FILL, hp)) == POSITION_TABLE.get((state, SYNC, hp))


def test_the_flatten_slot_is_taken_only_by_submit_and_freed_only_by_done() -> None:
    """The one-live-flatten invariant, proven over the whole table."""
    for (state, event, _hp), target in POSITION_TABLE.items():
        entering = state not in FLATTEN_LIVE_STATES and target in FLATTEN_LIVE_STATES
        leaving = state in FLATTEN_LIVE_STATES and target not in FLATTEN_LIVE_STATES
        assert entering == (event == SUBMIT_FLATTEN), (state, event)
        assert leaving == (event == FLATTEN_DONE), (state, event)
    for state in FLATTEN_LIVE_STATES:
        for hp in (False, True):
            assert (state, SUBMIT_FLATTEN, hp) not in POSITION_TABLE  # no second flatten
            assert (state, FLATTEN_DONE, hp) in POSITION_TABLE  # always releasable (L1)


def test_the_entry_slot_is_taken_only_by_submit_and_freed_only_by_done() -> None:
    for (state, event, _hp), target in POSITION_TABLE.items():
        entering = state not in ENTRY_LIVE_STATES and target in ENTRY_LIVE_STATES
        leaving = state in ENTRY_LIVE_STATES and target not in ENTRY_LIVE_STATES
        assert entering == (event == SUBMIT_ENTRY), (state, event)
        assert leaving == (event == ENTRY_DONE), (state, event)
    for state in ENTRY_LIVE_STATES:
        assert (state, SUBMIT_ENTRY, True) not in POSITION_TABLE  # no pyramiding
        assert (state, ENTRY_DONE, False) in POSITION_TABLE


def test_exposure_events_land_in_states_consistent_with_has_position() -> None:
    for (_state, event, hp), target in POSITION_TABLE.items():
        if event in EXPOSURE_EVENTS:
            if target in ZERO_EXPOSURE:
                assert not hp
            if target in NONZERO_EXPOSURE:
                assert hp


def test_required_paths() -> None:
    n = next_position_state
    assert n(FLAT, SUBMIT_ENTRY, False) == OPENING
    assert n(OPENING, ENTRY_DONE, True) == OPEN
    assert n(OPEN, SUBMIT_FLATTEN, True) == FLATTENING
    assert n(FLATTENING, FLATTEN_DONE, False) == FLAT
    assert n(OPENING, ENTRY_DONE, False) == FLAT  # entry ended with zero fill
    assert n(FLATTENING, FLATTEN_DONE, True) == OPEN  # flatten failed: retry possible
    assert n(OPENING, FILL, True) == OPENING_PARTIAL  # partial open, entry still live
    assert n(OPENING_PARTIAL, SUBMIT_FLATTEN, True) == FLATTENING_ENTRY_LIVE
    assert n(FLATTENING_ENTRY_LIVE, ENTRY_DONE, True) == FLATTENING
    assert n(FLATTENING_ENTRY_LIVE, FLATTEN_DONE, True) == OPENING_PARTIAL
    assert n(FLAT, FILL, True) == OPEN  # unexpected exposure is adopted and managed
    with pytest.raises(InvalidPositionTransition):
        n(FLATTENING, SUBMIT_FLATTEN, True)
    with pytest.raises(InvalidPositionTransition):
        n(OPEN, SUBMIT_ENTRY, True)
    with pytest.raises(InvalidPositionTransition):
        n(FLAT, SUBMIT_FLATTEN, False)
    with pytest.raises(InvalidPositionTransition):
        n(OPENING, SUBMIT_FLATTEN, False)  # nothing to flatten yet


def test_helpers() -> None:
    assert [s for s in STATES if flatten_live(s)] == [FLATTENING, FLATTENING_ENTRY_LIVE]
    assert [s for s in STATES if entry_live(s)] == [OPENING, OPENING_PARTIAL, FLATTENING_ENTRY_LIVE]
    assert [s for s in STATES if can_submit_flatten(s)] == [OPENING_PARTIAL, OPEN]
    assert [s for s in STATES if can_submit_entry(s)] == [FLAT]


def _reachable(start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        cur = todo.pop()
        for (s, _e, _hp), t in POSITION_TABLE.items():
            if s == cur and t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


@pytest.mark.parametrize("state", STATES)
def test_every_state_can_return_to_flat(state: str) -> None:
    assert FLAT in _reachable(state)


def test_every_state_is_reachable_from_flat() -> None:
    assert _reachable(FLAT) == set(STATES)


def test_docstring_diagram_is_the_table() -> None:
    """Every entry of the table is an edge of the Mermaid diagram and vice versa."""
    doc = fp.__doc__
    assert doc is not None and "```mermaid" in doc and "stateDiagram-v2" in doc
    edges: set[tuple[str, str, bool, str]] = set()
    for src, dst, label in re.findall(r"^\s*(\w+) --> (\w+): (.+)$", doc, flags=re.M):
        conds: tuple[bool, ...] = (False, True)
        for suffix, cond in ((" [has_position]", True), (" [not has_position]", False)):
            if label.endswith(suffix):
                label, conds = label.removesuffix(suffix), (cond,)
        for event in label.split(", "):
            for hp in conds:
                edges.add((src.lower(), event, hp, dst.lower()))
    assert edges == {(s, e, hp, t) for (s, e, hp), t in POSITION_TABLE.items()}


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(STATES),
    st.lists(st.tuples(st.sampled_from(EVENTS), st.booleans()), max_size=14),
)
def test_table_agrees_with_machine_on_arbitrary_sequences(
    start: str, seq: list[tuple[str, bool]]
) -> None:
    sm = fp.machine_in(start)
    state = start
    for event, hp in seq:
        try:
            sm.send(event, has_position=hp)
            machine_ok = True
        except TransitionNotAllowed:
            machine_ok = False
        try:
            state = next_position_state(state, event, hp)
            table_ok = True
        except InvalidPositionTransition:
            table_ok = False
        assert machine_ok == table_ok
        assert sm.state_id == state


# -- a market book driven by both tables (the contract docs/state-machines.md describes) --------


class _Order:
    def __init__(self, cloid: str, role: str, side: int, size: int) -> None:
        self.cloid, self.role, self.side, self.size = cloid, role, side, size
        self.state = NEW
        self.reported = 0  # cumulative fill the venue reported on the order (merged with max)
        self.counted = 0  # sum of userFills with distinct trade ids

    @property
    def known(self) -> int:
        return max(self.reported, self.counted)


class Market:
    """One market: its position state, its orders, and fills counted once."""

    def __init__(self) -> None:
        self.state = FLAT
        self.orders: dict[str, _Order] = {}
        self.tids: set[int] = set()
        self.log: list[tuple[str, bool, str, str]] = []  # (event, has_position, before, after)
        self.anomalies = 0
        self.external = 0  # fills not from our orders (liquidation, a manual trade)
        self._n = 0

    def exposure(self) -> int:
        return self.external + sum(o.side * o.known for o in self.orders.values())

    def _position(self, event: str) -> None:
        hp = self.exposure() != 0
        before = self.state
        self.state = next_position_state(self.state, event, hp)
        self.log.append((event, hp, before, self.state))

    def _new(self, role: str, side: int, size: int) -> str:
        self._n += 1
        cloid = f"0x{self._n:032x}"
        self.orders[cloid] = _Order(cloid, role, side, size)
        return cloid

    def submit_entry(self, side: int, size: int) -> str | None:
        if not can_submit_entry(self.state):
            return None
        self._position(SUBMIT_ENTRY)
        return self._new("entry", side, size)

    def submit_flatten(self) -> str | None:
        if not can_submit_flatten(self.state):
            return None
        x = self.exposure()
        assert x != 0
        self._position(SUBMIT_FLATTEN)
        return self._new("flatten", -1 if x > 0 else 1, abs(x))

    def order_event(self, cloid: str, event: str, cum: int | None = None) -> str:
        """Apply one order event; ``cum`` is the venue-reported cumulative fill, if any."""
        o = self.orders[cloid]
        if cum is not None and cum > o.known:  # quantities merge with max, whatever the state
            o.reported = cum
            self._position(FILL)
        elif cum is not None:
            o.reported = max(o.reported, cum)
        try:
            nxt = next_order_state(o.state, event)
        except InvalidOrderTransition:
            self.anomalies += 1
            return o.state
        if nxt == IGNORE:
            return IGNORE
        was_active = o.state in ACTIVE_STATES
        o.state = nxt
        if was_active and nxt in TERMINAL_STATES:
            self._position(ENTRY_DONE if o.role == "entry" else FLATTEN_DONE)
        return nxt

    def user_fill(self, cloid: str, tid: int, qty: int) -> None:
        if tid in self.tids:
            return
        self.tids.add(tid)
        o = self.orders[cloid]
        before = o.known
        o.counted += qty
        if o.known != before:
            self._position(FILL)

    def external_fill(self, qty: int) -> None:
        self.external += qty
        self._position(FILL)

    def sync(self) -> None:
        self._position(SYNC)

    def live(self, role: str) -> list[_Order]:
        return [o for o in self.orders.values() if o.role == role and o.state in ACTIVE_STATES]

    def check(self) -> None:
        flattens, entries = self.live("flatten"), self.live("entry")
        assert len(flattens) <= 1 and (len(flattens) == 1) == flatten_live(self.state)
        assert len(entries) <= 1 and (len(entries) == 1) == entry_live(self.state)
        if self.state in ZERO_EXPOSURE:
            assert self.exposure() == 0
        if self.state in NONZERO_EXPOSURE:
            assert self.exposure() != 0
        if self.state == OPEN:
            assert can_submit_flatten(self.state)  # never locked out (L1)


def _open_long(m: Market, size: int = 3) -> str:
    cloid = m.submit_entry(+1, size)
    assert cloid is not None
    m.order_event(cloid, TRANSMIT)
    event, _ = classify_post_status({"filled": {"totalSz": str(size), "avgPx": "105", "oid": 1}})
    m.order_event(cloid, event, cum=size)
    assert m.state == OPEN and m.exposure() == size
    return cloid


def test_bug004_second_flatten_while_the_first_is_live_is_impossible() -> None:
    """#32: a 200 ms poll re-triggered before the first flatten filled."""
    m = Market()
    _open_long(m)
    first = m.submit_flatten()  # T=0
    assert first is not None
    m.order_event(first, TRANSMIT)
    assert m.submit_flatten() is None  # T=200 ms, position still there
    with pytest.raises(InvalidPositionTransition):
        next_position_state(m.state, SUBMIT_FLATTEN, True)
    m.user_fill(first, tid=11, qty=3)  # the fill (userFills first)
    assert m.state == FLATTENING  # the slot is held until the order itself is done
    assert m.submit_flatten() is None
    m.order_event(first, classify_post_status({"filled": {"totalSz": "3", "oid": 2}})[0], cum=3)
    assert m.state == FLAT
    n_events = len(m.log)
    assert m.order_event(first, classify_order_update("filled", "0", "3"), cum=3) == IGNORE
    m.user_fill(first, tid=11, qty=3)  # duplicate delivery
    assert (m.state, len(m.log), m.exposure(), m.anomalies) == (FLAT, n_events, 0, 0)
    m.check()


def test_bug036_every_monitor_asks_the_same_market_slot() -> None:
    """#36 / L9: TimeStop, MarkRegression, OracleExit and the HardStop share one registered
    slot (the market's state), not a per-monitor mark that expires after one poll."""
    m = Market()
    _open_long(m)
    granted = [m.submit_flatten() for _monitor in range(4)]
    assert sum(c is not None for c in granted) == 1
    assert flatten_live(m.state)
    m.check()


@pytest.mark.parametrize(
    "status",
    [
        {"error": "Price must be divisible by tick size. asset=110026"},  # rejected
        {"error": "Order could not immediately match against any resting orders. asset=1"},
        {"status": "err", "response": "L1 error: bad nonce"},  # action-level
    ],
)
def test_l1_a_flatten_that_fails_releases_the_slot_and_a_retry_goes_out(
    status: object,
) -> None:
    """#40 / L1: the predecessor's guard was released only on a closing userFill."""
    m = Market()
    _open_long(m)
    first = m.submit_flatten()
    assert first is not None
    m.order_event(first, TRANSMIT)
    m.order_event(first, classify_post_status(status)[0])
    assert m.state == OPEN
    retry = m.submit_flatten()
    assert retry is not None and retry != first  # a new order, with its own cloid
    m.check()


def test_l1_a_canceled_flatten_releases_the_slot() -> None:
    m = Market()
    _open_long(m)
    first = m.submit_flatten()
    assert first is not None
    m.order_event(first, TRANSMIT)
    m.order_event(first, classify_order_update("reduceOnlyCanceled", "3", "3"))
    assert m.state == OPEN and m.submit_flatten() is not None


def test_l1_post_response_fill_closes_before_the_userfill() -> None:
    m = Market()
    _open_long(m)
    f = m.submit_flatten()
    assert f is not None
    m.order_event(f, TRANSMIT)
    m.order_event(f, FILL_COMPLETE, cum=3)  # post response first
    assert m.state == FLAT and can_submit_entry(m.state)
    m.user_fill(f, tid=21, qty=2)  # the userFills arrive later, in two pieces
    m.user_fill(f, tid=22, qty=1)
    assert (m.state, m.exposure()) == (FLAT, 0)
    m.check()


def test_a_partly_filled_ioc_flatten_is_retried_for_the_rest() -> None:
    m = Market()
    _open_long(m)
    f = m.submit_flatten()
    assert f is not None
    m.order_event(f, TRANSMIT)
    m.order_event(f, classify_post_status({"filled": {"totalSz": "1", "oid": 3}})[0], cum=1)
    assert (m.state, m.exposure()) == (OPEN, 2)
    retry = m.submit_flatten()
    assert retry is not None and m.orders[retry].size == 2


def test_a_flatten_with_lost_contact_holds_the_slot_until_resolved() -> None:
    m = Market()
    _open_long(m)
    f = m.submit_flatten()
    assert f is not None
    m.order_event(f, TRANSMIT)
    m.order_event(f, classify_post_status(None)[0])  # post timeout
    assert m.state == FLATTENING and m.submit_flatten() is None  # do not duplicate blindly
    m.order_event(f, classify_order_status_reply({"status": "unknownOid"}))
    assert m.state == OPEN and m.submit_flatten() is not None


def test_l11_partial_userfills_before_the_aggregate_post_response() -> None:
    """L11: per-match userFills (several tids, one cloid) precede the aggregate response."""
    m = Market()
    e = m.submit_entry(+1, 3)
    assert e is not None
    m.order_event(e, TRANSMIT)
    m.user_fill(e, tid=1, qty=1)
    assert m.state == OPENING_PARTIAL
    m.user_fill(e, tid=2, qty=2)
    m.user_fill(e, tid=1, qty=1)  # duplicate: dropped by tid, not by cloid
    m.order_event(e, FILL_COMPLETE, cum=3)
    assert (m.state, m.exposure()) == (OPEN, 3)
    m.check()


@pytest.mark.parametrize("first", ["post", "userfill"])
def test_l13_the_position_opens_exactly_once_whatever_arrives_first(first: str) -> None:
    m = Market()
    e = m.submit_entry(-1, 2)
    assert e is not None
    m.order_event(e, TRANSMIT)
    if first == "post":
        m.order_event(e, FILL_COMPLETE, cum=2)
        m.user_fill(e, tid=5, qty=2)
    else:
        m.user_fill(e, tid=5, qty=2)
        m.order_event(e, FILL_COMPLETE, cum=2)
    opened = [x for x in m.log if x[2] in ZERO_EXPOSURE and x[3] not in ZERO_EXPOSURE]
    assert len(opened) == 1 and m.state == OPEN and m.exposure() == -2


def test_l12_a_post_level_error_frees_the_market() -> None:
    m = Market()
    e = m.submit_entry(+1, 1)
    assert e is not None
    m.order_event(e, TRANSMIT)
    err = {"type": "action", "payload": {"status": "err", "response": "bad signature"}}
    ((event, _),) = classify_post_response(err, 1)
    m.order_event(e, event)
    assert m.state == FLAT and can_submit_entry(m.state)


def test_l12_a_transport_error_is_resolved_not_leaked() -> None:
    m = Market()
    e = m.submit_entry(+1, 1)
    assert e is not None
    m.order_event(e, TRANSMIT)
    ((event, _),) = classify_post_response({"type": "error", "payload": "502"}, 1)
    m.order_event(e, event)
    assert m.state == OPENING and not can_submit_entry(m.state)  # unknown: still pending
    m.order_event(e, classify_order_status_reply({"status": "unknownOid"}))
    assert m.state == FLAT and can_submit_entry(m.state)


def test_an_entry_with_zero_fill_returns_to_flat() -> None:
    m = Market()
    e = m.submit_entry(+1, 2)
    assert e is not None
    m.order_event(e, TRANSMIT)
    msg = "Order could not immediately match against any resting orders. asset=110027"
    m.order_event(e, classify_post_status({"error": msg})[0])
    assert m.state == FLAT and m.log[-1][0] == ENTRY_DONE


def test_an_abandoned_entry_returns_to_flat() -> None:
    m = Market()
    e = m.submit_entry(+1, 2)
    assert e is not None
    m.order_event(e, ABANDON)  # e.g. the hard stop latched while it was queued
    assert m.state == FLAT


def test_reduce_only_flatten_of_a_partially_filled_live_entry() -> None:
    """Kill switch while a resting entry is partly filled: flatten the exposure, cancel the
    entry; more entry fills after the flatten leave a remainder that is flattened again."""
    m = Market()
    e = m.submit_entry(+1, 3)
    assert e is not None
    m.order_event(e, TRANSMIT)
    m.order_event(e, classify_post_status({"resting": {"oid": 9}}, ioc=False)[0])
    m.order_event(e, classify_order_update("open", "2", "3"), cum=1)
    assert (m.state, m.exposure()) == (OPENING_PARTIAL, 1)
    f = m.submit_flatten()
    assert f is not None and m.state == FLATTENING_ENTRY_LIVE
    assert m.submit_flatten() is None
    m.order_event(f, TRANSMIT)
    m.order_event(e, classify_order_update("open", "1", "3"), cum=2)  # one more entry fill
    m.order_event(f, FILL_COMPLETE, cum=1)  # the flatten takes its 1
    assert (m.state, m.exposure()) == (OPENING_PARTIAL, 1)
    cancel = classify_cancel_status("success")
    assert cancel is not None
    m.order_event(e, cancel)
    assert m.state == OPEN
    f2 = m.submit_flatten()
    assert f2 is not None
    m.order_event(f2, TRANSMIT)
    m.order_event(f2, FILL_COMPLETE, cum=1)
    assert (m.state, m.exposure()) == (FLAT, 0)
    m.check()


def test_entry_done_while_flattening_a_partial_entry() -> None:
    m = Market()
    e = m.submit_entry(-1, 2)
    assert e is not None
    m.order_event(e, TRANSMIT)
    m.order_event(e, FILL_PARTIAL, cum=1)
    f = m.submit_flatten()
    assert f is not None
    m.order_event(e, CANCEL_CONFIRMED)
    assert m.state == FLATTENING
    m.order_event(f, TRANSMIT)
    m.order_event(f, FILL_COMPLETE, cum=1)
    assert m.state == FLAT


def test_a_flatten_that_closes_a_partial_entry_while_the_entry_still_rests() -> None:
    m = Market()
    e = m.submit_entry(+1, 3)
    assert e is not None
    m.order_event(e, TRANSMIT)
    m.order_event(e, classify_order_update("open", "2", "3"), cum=1)
    f = m.submit_flatten()
    assert f is not None
    m.order_event(f, TRANSMIT)
    m.order_event(f, FILL_COMPLETE, cum=1)
    assert (m.state, m.exposure()) == (OPENING, 0)  # the entry is still live
    assert m.submit_entry(+1, 1) is None and m.submit_flatten() is None
    m.order_event(e, CANCEL_CONFIRMED)
    assert m.state == FLAT
    m.check()


def test_a_fill_after_not_found_is_adopted_not_lost() -> None:
    """The venue contradicts our 'never placed' conclusion: the anomaly is logged, and the
    exposure is adopted so that the exit logic can flatten it."""
    m = Market()
    e = m.submit_entry(+1, 1)
    assert e is not None
    for event in (TRANSMIT, LOSE_CONTACT, RESOLVE_NOT_FOUND):
        m.order_event(e, event)
    assert m.state == FLAT
    m.order_event(e, FILL_COMPLETE, cum=1)
    assert (m.state, m.anomalies) == (OPEN, 1)
    assert m.submit_flatten() is not None


# -- the one-live-flatten invariant under random interleavings ---------------------------------

_VENUE = [ACK_RESTING, ACK_RESTING, FILL_PARTIAL, FILL_PARTIAL, FILL_PARTIAL, FILL_COMPLETE]
_VENUE += [FILL_COMPLETE, FILL_COMPLETE, CANCEL_CONFIRMED, REJECT, EXPIRE, LOSE_CONTACT]
_VENUE += [RESOLVE_NOT_FOUND]  # weighted towards fills; every venue event appears


class MarketInterleavings(RuleBasedStateMachine):
    """Entries, exit monitors, venue statuses (valid or contradictory), lagging and duplicate
    userFills, lost contact and resolution, syncs -- in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.m = Market()
        self.tid = 0

    def _cap(self, o: _Order) -> int:
        """How much more the venue may fill: never beyond the size, and a reduce-only order
        never beyond the exposure on the other side."""
        remaining = o.size - o.known
        if o.role == "flatten":
            x = self.m.exposure()
            return min(remaining, abs(x)) if x * o.side < 0 else 0
        return remaining

    @rule(side=st.sampled_from([-1, 1]), size=st.integers(1, 4))
    def entry(self, side: int, size: int) -> None:
        allowed = can_submit_entry(self.m.state)
        assert (self.m.submit_entry(side, size) is not None) == allowed

    @rule()
    def exit_monitor(self) -> None:
        live_before = bool(self.m.live("flatten"))
        cloid = self.m.submit_flatten()
        if live_before:
            assert cloid is None  # the second flatten is refused while the first is live

    @rule(data=st.data())
    def our_act(self, data: st.DataObject) -> None:
        new = [o for o in self.m.orders.values() if o.state == NEW]
        if new:
            o = data.draw(st.sampled_from(new))
            act = data.draw(st.sampled_from([TRANSMIT, TRANSMIT, TRANSMIT, TRANSMIT, ABANDON]))
            self.m.order_event(o.cloid, act)

    @rule(data=st.data())
    def venue_status(self, data: st.DataObject) -> None:
        sent = [o for o in self.m.orders.values() if o.state != NEW]
        live = [o for o in sent if o.state in LIVE_STATES]
        if not sent:
            return
        mostly_live = data.draw(st.integers(0, 3)) > 0
        pool = live if live and mostly_live else sent
        o = data.draw(st.sampled_from(pool))
        event = data.draw(st.sampled_from(_VENUE))
        cap = self._cap(o)
        cum = None
        if event == FILL_PARTIAL:
            cum = o.known + data.draw(st.integers(0, max(0, min(cap, o.size - o.known - 1))))
        elif event == FILL_COMPLETE:
            cum = o.known + data.draw(st.integers(0, cap))  # an IOC may end partly filled
        before = o.state
        result = self.m.order_event(o.cloid, event, cum)
        if result == IGNORE:
            assert o.state == before in TERMINAL_STATES

    @rule(data=st.data())
    def user_fill(self, data: st.DataObject) -> None:
        lagging = [o for o in self.m.orders.values() if o.counted < o.reported]
        live = [o for o in self.m.orders.values() if o.state in LIVE_STATES and self._cap(o)]
        if not lagging and not live:
            return
        o = data.draw(st.sampled_from(lagging + live))
        if o in lagging and (o not in live or data.draw(st.booleans())):
            qty = data.draw(st.integers(1, o.reported - o.counted))
        else:
            qty = data.draw(st.integers(1, self._cap(o)))
        self.tid += 1
        self.m.user_fill(o.cloid, self.tid, qty)
        if data.draw(st.booleans()):
            self.m.user_fill(o.cloid, self.tid, qty)  # duplicate delivery

    @rule()
    def sync(self) -> None:
        self.m.sync()

    @rule(qty=st.sampled_from([-2, -1, 1, 2]))
    def external_fill(self, qty: int) -> None:
        self.m.external_fill(qty)

    @invariant()
    def one_live_flatten_and_consistent_state(self) -> None:
        self.m.check()

    def teardown(self) -> None:
        """Liveness: whatever happened, the venue's answers bring the market back to FLAT."""
        m = self.m
        for _ in range(10):
            for o in list(m.orders.values()):
                if o.state == NEW:
                    m.order_event(o.cloid, ABANDON)
                elif o.state in LIVE_STATES:
                    m.order_event(o.cloid, CANCEL_CONFIRMED)
            f = m.submit_flatten()
            if f is not None:
                m.order_event(f, TRANSMIT)
                m.order_event(f, FILL_COMPLETE, cum=m.orders[f].size)
            m.check()
            if m.state == FLAT:
                break
        assert m.state == FLAT and m.exposure() == 0


MarketInterleavings.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None
)
test_market_interleavings = MarketInterleavings.TestCase


def _mermaid_blocks(text: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)


def test_docs_page_shows_the_same_diagram() -> None:
    doc = fp.__doc__
    assert doc is not None
    page = pathlib.Path(__file__).parents[2] / "docs" / "state-machines.md"
    assert _mermaid_blocks(page.read_text())[1] == _mermaid_blocks(doc)[0]
