"""Every funding order's lifecycle is :mod:`fsm.order`'s (one OMS for both venues): each
neutral event maps onto one order-machine event, contradictions keep the terminal state and
are anomalies, duplicates change nothing, fills are counted once, and a journal line written
before slots carried a state still restores."""

from __future__ import annotations

import json
from decimal import Decimal

from engine.core.neutral import (
    CancelOrder,
    InstrumentKind,
    OrderAck,
    OrderDone,
    OrderFill,
    OrderReject,
    OrderRequest,
    PlaceOrder,
    RejectReason,
    Side,
)
from engine.core.two_leg import (
    CLOSE_ROLE,
    HEDGE_ROLE,
    LEG_A,
    LEG_B,
    OPEN_ROLE,
    LegRiskConfig,
    LegSpec,
    TwoLegIntent,
    legacy_slot_state,
)
from fsm import order as ofsm
from fsm import two_leg as fsm

T0 = 1_000_000
CFG = LegRiskConfig(budget_usd_s=1e9, deadline_s=1e6, unwind_reserve_s=1.0)
LOT = Decimal("0.01")
QTY = Decimal("1.00")


def intent() -> TwoLegIntent:
    a = LegSpec("v", "X", InstrumentKind.LINEAR_PERP, Side.SELL, LOT)
    b = LegSpec("v", "X", InstrumentKind.SPOT, Side.BUY, LOT)
    return TwoLegIntent("i", a, b, QTY, CFG, 100.0)


def opened() -> tuple[TwoLegIntent, str]:
    it = intent()
    (place,) = it.open(T0)
    assert isinstance(place, PlaceOrder)
    return it, place.client_id


def fill(cid: str, qty: str, tid: str, side: Side = Side.SELL) -> OrderFill:
    return OrderFill("v", "X", InstrumentKind.LINEAR_PERP, cid, "o1", tid, side, float(qty),
                     100.0, 0.0, False, T0)


def done(cid: str, filled: str, canceled: bool) -> OrderDone:
    return OrderDone("v", "X", cid, "o1", float(filled), canceled, T0)


def reject(cid: str, reason: RejectReason = RejectReason.INSUFFICIENT_BALANCE) -> OrderReject:
    return OrderReject("v", "X", cid, reason, "x", T0)


def ack(cid: str) -> OrderAck:
    return OrderAck("v", "X", cid, "o1", T0)


def hedge_of(it: TwoLegIntent) -> str:
    (h,) = [o.client_id for o in it.in_flight() if o.role == HEDGE_ROLE]
    return h


# -- each event mapping ----------------------------------------------------------------------------


def test_a_slot_is_new_when_made_and_sent_when_handed_over() -> None:
    it, cid = opened()
    assert it.orders[cid].state == ofsm.SENT and not it.orders[cid].done
    offline = intent()
    offline.disconnect(T0)
    assert offline.open(T0) == []  # deferred: made, not handed over
    (slot,) = offline.orders.values()
    assert slot.state == ofsm.NEW and slot in offline.in_flight()
    out = offline.reconnect(T0 + 1)
    assert [i.client_id for i in out] == [slot.client_id] and slot.state == ofsm.SENT


def test_ack_is_ack_resting() -> None:
    it, cid = opened()
    it.on_ack(ack(cid))
    assert it.orders[cid].state == ofsm.RESTING
    it.on_ack(ack(cid))  # again: still resting
    assert it.orders[cid].state == ofsm.RESTING and not it.anomalies


def test_fills_are_partial_until_the_sum_reaches_the_order_qty() -> None:
    it, cid = opened()
    it.on_fill(fill(cid, "0.4", "t1"), T0)
    assert it.orders[cid].state == ofsm.PARTIAL and it.state == fsm.HEDGING
    it.on_fill(fill(cid, "0.6", "t2"), T0)
    assert it.orders[cid].state == ofsm.FILLED and it.orders[cid].done
    assert it.orders[cid].filled == QTY and it.pos[LEG_A] == -QTY


def test_done_maps_to_fill_complete_cancel_confirmed_or_expire() -> None:
    it, cid = opened()
    it.on_fill(fill(cid, "0.4", "t1"), T0)
    it.on_done(done(cid, "0.4", canceled=False), T0)  # the venue says it is over, filled
    assert it.orders[cid].state == ofsm.FILLED
    h = hedge_of(it)
    it.on_done(done(h, "0", canceled=True), T0)
    assert it.orders[h].state == ofsm.CANCELED
    it2, cid2 = opened()
    it2.on_done(done(cid2, "0", canceled=False), T0)  # nothing filled, not canceled
    assert it2.orders[cid2].state == ofsm.EXPIRED and it2.state == fsm.IDLE
    it3, cid3 = opened()
    it3.on_done(done(cid3, "0.3", canceled=False), T0)  # the venue's cumulative figure
    assert it3.orders[cid3].state == ofsm.FILLED
    assert not (it.anomalies or it2.anomalies or it3.anomalies)


def test_a_partly_filled_order_canceled_is_canceled() -> None:
    it, cid = opened()
    it.on_fill(fill(cid, "0.4", "t1"), T0)
    it.on_done(done(cid, "0.4", canceled=True), T0)
    assert it.orders[cid].state == ofsm.CANCELED and it.pos[LEG_A] == Decimal("-0.4")


def test_reject_is_rejected() -> None:
    it, cid = opened()
    it.on_reject(reject(cid), T0)
    assert it.orders[cid].state == ofsm.REJECTED and it.state == fsm.IDLE


def test_disconnect_loses_contact_and_later_events_resolve() -> None:
    it, cid = opened()
    it.on_fill(fill(cid, "1.00", "t1"), T0)  # leg A filled; the hedge is sent
    h = hedge_of(it)
    it.on_ack(ack(h))
    assert it.orders[h].state == ofsm.RESTING
    it.disconnect(T0 + 10)
    assert it.orders[h].state == ofsm.UNKNOWN and it.orders[cid].state == ofsm.FILLED
    out = it.reconnect(T0 + 20)
    assert [(type(i), i.client_id) for i in out] == [(PlaceOrder, h)]  # same client id
    assert it.orders[h].state == ofsm.UNKNOWN  # until the venue speaks of it
    it.on_ack(ack(h))
    assert it.orders[h].state == ofsm.RESTING
    it.on_fill(fill(h, "1.00", "t2", Side.BUY), T0 + 30)
    assert it.orders[h].state == ofsm.FILLED and it.state == fsm.HEDGED
    assert not it.anomalies


def test_an_unknown_order_the_venue_ended_is_resolved_by_its_done() -> None:
    it, cid = opened()
    it.disconnect(T0 + 1)
    it.reconnect(T0 + 2)
    it.on_done(done(cid, "0", canceled=True), T0 + 3)
    assert it.orders[cid].state == ofsm.CANCELED and it.state == fsm.IDLE


def test_a_restored_intent_resends_its_live_orders_as_unknown() -> None:
    it, cid = opened()
    it.on_ack(ack(cid))
    again = TwoLegIntent.from_record(json.loads(json.dumps(it.to_record())))
    assert again.orders[cid].state == ofsm.RESTING  # the state before the restart
    out = again.reconnect(T0 + 5)
    assert [i.client_id for i in out] == [cid] and again.orders[cid].state == ofsm.UNKNOWN


# -- duplicates and contradictions ----------------------------------------------------------------


def test_duplicates_change_nothing_and_fills_count_once() -> None:
    it, cid = opened()
    f = fill(cid, "1.00", "t1")
    it.on_fill(f, T0)
    before = (it.orders[cid].state, it.pos[LEG_A], it.orders[cid].filled, len(it.orders))
    it.on_fill(f, T0)  # the same trade again
    it.on_done(done(cid, "1.00", canceled=False), T0)  # fill_complete in FILLED: IGNORE
    it.on_done(done(cid, "1.00", canceled=True), T0)  # cancel_confirmed in FILLED: IGNORE
    it.on_ack(ack(cid))  # an echo of the acceptance: IGNORE
    assert (it.orders[cid].state, it.pos[LEG_A], it.orders[cid].filled,
            len(it.orders)) == before
    assert not it.anomalies


def test_a_fill_after_rejected_is_an_anomaly_counted_once() -> None:
    it, cid = opened()
    it.on_reject(reject(cid), T0)
    f = fill(cid, "0.5", "t9")
    it.on_fill(f, T0)
    it.on_fill(f, T0)
    slot = it.orders[cid]
    assert slot.state == ofsm.REJECTED  # the terminal state is kept
    assert it.pos[LEG_A] == Decimal("-0.5") and slot.filled == Decimal("0.5")  # once
    (a,) = [a for a in it.anomalies if a.startswith("order ")]  # (and the pair's own)
    assert "fill_partial in rejected (kept rejected)" in a


def test_other_contradictions_keep_the_terminal_state() -> None:
    it, cid = opened()
    it.on_done(done(cid, "0", canceled=False), T0)
    assert it.orders[cid].state == ofsm.EXPIRED
    it.on_reject(reject(cid), T0)  # refused after it expired
    it.on_ack(ack(cid))  # accepted after it expired
    assert it.orders[cid].state == ofsm.EXPIRED
    assert [a.split(":")[1].strip() for a in it.anomalies] == [
        "reject in expired (kept expired)", "ack_resting in expired (kept expired)"]
    it2, cid2 = opened()
    it2.on_fill(fill(cid2, "1.00", "t1"), T0)
    it2.on_reject(reject(cid2), T0)  # refused after it filled: a contradiction, no effect
    assert it2.orders[cid2].state == ofsm.FILLED and it2.hedge_rejects == 0
    assert len(it2.anomalies) == 1


def test_answers_to_our_cancel_or_resend_after_the_outcome_are_quiet() -> None:
    it, cid = opened()
    it.on_fill(fill(cid, "1.00", "t1"), T0)
    h = hedge_of(it)
    out = it.close(T0 + 1)  # cancels the hedge
    assert any(isinstance(i, CancelOrder) and i.client_id == h for i in out)
    it.on_done(done(h, "0", canceled=True), T0 + 2)
    assert it.orders[h].state == ofsm.CANCELED
    it.on_reject(OrderReject("v", "X", h, RejectReason.NOT_FOUND, "x", T0, OrderRequest.CANCEL),
                 T0 + 3)  # the cancel's late answer
    it.on_ack(ack(h))
    it.on_reject(reject(cid, RejectReason.DUPLICATE_CLIENT_ID), T0 + 4)  # a re-send's answer
    assert it.orders[h].state == ofsm.CANCELED and it.orders[cid].state == ofsm.FILLED
    assert not it.anomalies


def test_a_rejected_hedge_counts_once() -> None:
    it, cid = opened()
    it.on_fill(fill(cid, "1.00", "t1"), T0)
    h = hedge_of(it)
    it.on_reject(reject(h), T0)
    it.on_reject(reject(h), T0)  # the same refusal again: IGNORE
    assert it.hedge_rejects == 1 and it.orders[h].state == ofsm.REJECTED
    assert not it.anomalies


# -- the journal ----------------------------------------------------------------------------------


def test_the_record_carries_each_slot_state() -> None:
    it, cid = opened()
    it.on_fill(fill(cid, "0.4", "t1"), T0)
    rec = json.loads(json.dumps(it.to_record()))
    states = {o["client_id"]: o["state"] for o in rec["orders"]}
    assert states[cid] == ofsm.PARTIAL and set(states.values()) <= set(ofsm.STATES)
    again = TwoLegIntent.from_record(rec)
    assert {c: o.state for c, o in again.orders.items()} == states
    assert again.to_record() == rec


def test_a_record_without_slot_states_still_restores() -> None:
    """A journal line of the previous code (``done`` / ``cancel_sent`` flags, no ``state``)."""
    it, cid = opened()
    it.on_fill(fill(cid, "1.00", "t1"), T0)  # leg A filled, hedge in flight
    h = hedge_of(it)
    it.on_fill(fill(h, "0.3", "t2", Side.BUY), T0)
    it.disconnect(T0 + 1)
    it.close(T0 + 2)  # offline: the cancel of the hedge is deferred
    rec = json.loads(json.dumps(it.to_record()))
    for o in rec["orders"]:
        del o["state"]
    rec["orders"].append({"client_id": "i-b99", "leg": LEG_B, "role": OPEN_ROLE,
                          "side": "buy", "qty": "1.00", "reduce_only": False,
                          "filled": "0", "done": True, "cancel_sent": False})
    rec["orders"].append({"client_id": "i-b98", "leg": LEG_B, "role": OPEN_ROLE,
                          "side": "buy", "qty": "1.00", "reduce_only": False,
                          "filled": "0.5", "done": True, "cancel_sent": False})
    again = TwoLegIntent.from_record(rec)
    (close,) = [i.client_id for i in again.deferred if isinstance(i, PlaceOrder)]
    got = {c: o.state for c, o in again.orders.items()}
    assert got == {cid: ofsm.FILLED, h: ofsm.PARTIAL, close: ofsm.NEW,
                   "i-b99": ofsm.EXPIRED, "i-b98": ofsm.CANCELED}
    assert again.in_flight() == [again.orders[h], again.orders[close]]
    assert again.orders[h].cancel_sent
    assert again.pos == it.pos and again.state == it.state
    out = again.reconnect(T0 + 3)  # resumes: the deferred cancel and close go out
    assert any(isinstance(i, CancelOrder) and i.client_id == h for i in out)
    assert again.orders[close].state == ofsm.SENT
    again.on_done(done(h, "0.3", canceled=True), T0 + 4)
    assert again.orders[h].state == ofsm.CANCELED and not again.anomalies


def test_legacy_state_derivation() -> None:
    q = Decimal(1)
    assert legacy_slot_state(True, q, q, False) == ofsm.FILLED
    assert legacy_slot_state(True, Decimal("0.5"), q, False) == ofsm.CANCELED
    assert legacy_slot_state(True, Decimal(0), q, False) == ofsm.EXPIRED
    assert legacy_slot_state(False, Decimal(0), q, True) == ofsm.NEW
    assert legacy_slot_state(False, Decimal("0.5"), q, False) == ofsm.PARTIAL
    assert legacy_slot_state(False, Decimal(0), q, False) == ofsm.SENT


# -- refusals of our cancel (not of the order) -------------------------------------------------------


def cancel_refused(cid: str, reason: RejectReason) -> OrderReject:
    return OrderReject("v", "X", cid, reason, "x", T0, OrderRequest.CANCEL)


def closing_with_live_hedge() -> tuple[TwoLegIntent, str, str]:
    """Leg A filled, its hedge live at the venue, then ``close``: the hedge's cancel sent."""
    it, cid = opened()
    it.on_fill(fill(cid, "1.00", "t1"), T0)
    h = hedge_of(it)
    it.on_ack(ack(h))
    out = it.close(T0 + 1)
    assert [i.client_id for i in out if isinstance(i, CancelOrder)] == [h]
    assert it.state == fsm.CLOSING and it.orders[h].cancel_sent
    return it, cid, h


def test_a_refused_cancel_leaves_the_order_live_and_is_sent_again_at_the_next_step() -> None:
    it, _, h = closing_with_live_hedge()
    out = it.on_reject(cancel_refused(h, RejectReason.RATE_LIMITED), T0 + 2)
    assert out == []  # not in the same breath: the next step sends it again
    assert it.orders[h].state == ofsm.RESTING and not it.orders[h].done
    assert it.hedge_rejects == 0  # the hedge was not refused
    again = it.on_tick(T0 + 1_000)
    assert [i.client_id for i in again if isinstance(i, CancelOrder)] == [h]
    assert it.on_tick(T0 + 2_000) == []  # sent once: its answer is awaited
    # the venue then cancels it: over, and the close goes on
    it.on_done(done(h, "0", canceled=True), T0 + 2_100)
    assert it.orders[h].state == ofsm.CANCELED
    assert not it.anomalies


def test_a_cancel_refused_again_and_again_becomes_an_anomaly_and_is_not_retried() -> None:
    from engine.core.two_leg import MAX_CANCEL_REJECTS
    it, _, h = closing_with_live_hedge()
    sent = 1
    for k in range(MAX_CANCEL_REJECTS):
        it.on_reject(cancel_refused(h, RejectReason.PARAMETER), T0 + 10 + k * 1_000)
        sent += sum(isinstance(i, CancelOrder) for i in it.on_tick(T0 + 500 + k * 1_000))
    assert sent == MAX_CANCEL_REJECTS  # the first and MAX - 1 retries, then no more
    assert it.orders[h].state == ofsm.RESTING
    (a,) = it.anomalies
    assert f"refused {MAX_CANCEL_REJECTS} times" in a and "reconcile" in a


def test_a_cancel_refused_not_found_ends_a_live_order_with_nothing_filled_expired() -> None:
    it, cid, h = closing_with_live_hedge()
    it.on_reject(cancel_refused(h, RejectReason.NOT_FOUND), T0 + 2)
    assert it.orders[h].state == ofsm.EXPIRED
    # nothing in flight but leg A's close: once it fills, the pair is flat
    (close,) = it.in_flight()
    assert close.role == CLOSE_ROLE and close.leg == LEG_A
    it.on_fill(fill(close.client_id, "1.00", "t9", Side.BUY), T0 + 3)
    it.on_done(done(close.client_id, "1.00", canceled=False), T0 + 3)
    assert it.state == fsm.IDLE and not it.in_flight()
    assert not it.anomalies


def test_a_cancel_refused_not_found_after_fills_is_canceled_and_a_late_fill_still_counts() -> None:
    it, _, h = closing_with_live_hedge()
    it.on_fill(fill(h, "0.40", "t2", Side.BUY), T0 + 2)
    it.on_reject(cancel_refused(h, RejectReason.NOT_FOUND), T0 + 3)
    assert it.orders[h].state == ofsm.CANCELED
    it.on_fill(fill(h, "0.10", "t3", Side.BUY), T0 + 4)  # was on its way: counted
    assert it.pos[LEG_B] == Decimal("0.50") and it.orders[h].state == ofsm.CANCELED
    assert not it.anomalies  # late progress after CANCELED is tolerated by the table


def test_an_amend_refusal_changes_nothing() -> None:
    it, cid = opened()
    it.on_ack(ack(cid))
    r = OrderReject("v", "X", cid, RejectReason.INVALID_QTY, "x", T0, OrderRequest.AMEND)
    assert it.on_reject(r, T0 + 1) == []
    assert it.orders[cid].state == ofsm.RESTING and not it.anomalies
