"""The two-leg intent controller: drives :mod:`fsm.two_leg` from neutral order events and
returns neutral order intents. Synchronous, deterministic, injected time (``now_ms``).

Leg A is sent first (on Bybit: the perpetual); every leg-A fill immediately sends a leg-B order
for the unhedged difference. The exposure ``|pos_A + pos_B| × ref_price`` is integrated over
time into :attr:`TwoLegIntent.risk_usd_s` (except while HEDGED: the sub-lot residual a hedged
pair keeps is not leg risk, and counting it over a long hold would unwind the next rebalance
at once). While unhedged (LEG1/HEDGING) the intent unwinds —
cancels what is in flight and flattens both legs — as soon as either

- the budget left, ``budget − risk − max_exposure × unwind_reserve_s``, reaches zero (the
  reserve is the time the unwind itself may take, priced at the intent's whole size), or
- the hard deadline ``deadline_s`` after the exposure began has passed, or
- leg B was rejected ``max_hedge_attempts`` times.

The shell must call :meth:`TwoLegIntent.on_tick` by :meth:`TwoLegIntent.next_wakeup_ms`.
Exposure accrued while the venue is unreachable (:meth:`disconnect` … :meth:`reconnect`) is
counted apart in :attr:`risk_disconnected_usd_s`: nothing can be sent then; intents made
meanwhile are sent on reconnect, together with every in-flight order re-sent under its *same*
``client_id`` (idempotent at the venue). Positions are Σ fills per leg, each fill counted once
by trade id, *net of fees charged in the coin traded* (a Bybit spot buy of ``q`` adds
``q − fee_base``): the leg is what the venue holds. A leg-B buy is therefore sized
``need / (1 − LegSpec.buy_fee_base_rate)`` (down to the lot), so the coin that arrives matches
leg A, and a close sells what is held down to the lot (the sub-lot rest a fee leaves is dust). :meth:`to_record` / :meth:`from_record` journal and restore the whole state; a
restored intent is offline until :meth:`reconnect`.

HEDGED means nothing in flight and ``|net|`` below leg B's lot (finer cannot be hedged) or,
when the leg has minimums (``LegSpec.min_qty`` / ``min_notional``), below the smallest
quantity it can trade (:meth:`TwoLegIntent.min_trade`): a hedge the venue must refuse is never
sent. Likewise a flattening leg left with less than it can trade is *dust*: it is not sent
(the venue would refuse it) and counts as flat; the caller sees it in ``pos``.
"""

from __future__ import annotations

from decimal import ROUND_UP, Decimal
from typing import Any

import attrs

from engine.config import FundingConfig
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
from fsm import order as ofsm
from fsm import two_leg as fsm

LEG_A = "a"
LEG_B = "b"
OPEN_ROLE = "open"
HEDGE_ROLE = "hedge"
CLOSE_ROLE = "close"
MAX_CLOSE_REJECTS = 5
"""A leg whose close the venue refused this many times is left to the operator (an anomaly),
not retried in a loop."""
MAX_CANCEL_REJECTS = 5
"""A cancel the venue refused (other than NOT_FOUND: the order is still live) is sent again at
the next step of the policy, at the latest :data:`CANCEL_RETRY_MS` later, up to this many
refusals per order; then it is an anomaly."""
CANCEL_RETRY_MS = 250

Intent = PlaceOrder | CancelOrder


@attrs.frozen
class LegSpec:
    venue: str
    symbol: str
    kind: InstrumentKind
    side: Side  # side of this leg's opening order
    lot: Decimal
    min_qty: Decimal = Decimal(0)  # the instrument's minimums (0 = none known)
    min_notional: Decimal = Decimal(0)
    # the share of a *buy* the venue keeps as its fee in the coin bought (Bybit spot: the
    # taker rate); 0 when fees are charged in the quote coin (perps, spot sells)
    buy_fee_base_rate: Decimal = Decimal(0)

    def received(self, side: Side, qty: Decimal) -> Decimal:
        """What ``qty`` traded on ``side`` adds to (or takes from) the position, signed."""
        if side is Side.BUY:
            return qty * (1 - self.buy_fee_base_rate)
        return -qty

    def to_receive(self, side: Side, want: Decimal) -> Decimal:
        """The order quantity (down to the lot) whose fill moves the position by ``want``
        (unsigned): a buy is grossed up by its base-coin fee."""
        q = want / (1 - self.buy_fee_base_rate) if side is Side.BUY else want
        return (q / self.lot).to_integral_value(rounding="ROUND_DOWN") * self.lot


@attrs.frozen
class LegRiskConfig:
    budget_usd_s: float
    deadline_s: float
    unwind_reserve_s: float = 1.0
    max_hedge_attempts: int = 3

    @classmethod
    def from_funding(cls, cfg: FundingConfig) -> LegRiskConfig:
        """The leg-risk settings of ``[funding]``."""
        return cls(cfg.leg_risk_budget_usd_s, cfg.leg_deadline_s, cfg.leg_unwind_reserve_s,
                   cfg.max_hedge_attempts)


@attrs.define
class OrderSlot:
    """One order of the pair. ``state`` is its :mod:`fsm.order` state (the table the
    Hyperliquid orders use), driven only through :meth:`TwoLegIntent._order_event`;
    ``filled`` is Σ of its fills (each trade id once); ``cancel_sent`` records our own
    request to cancel it (not a state: the venue's answer decides)."""

    client_id: str
    leg: str
    role: str
    side: Side
    qty: Decimal
    reduce_only: bool = False
    filled: Decimal = Decimal(0)
    state: str = ofsm.NEW
    cancel_sent: bool = False

    @property
    def done(self) -> bool:
        """Over: the state is terminal (FILLED, CANCELED, REJECTED or EXPIRED)."""
        return self.state in ofsm.TERMINAL_STATES

    @property
    def live(self) -> bool:
        """Handed to the venue and not known to be over (SENT, RESTING, PARTIAL, UNKNOWN)."""
        return self.state in ofsm.LIVE_STATES


def legacy_slot_state(done: bool, filled: Decimal, qty: Decimal, deferred: bool) -> str:
    """The :mod:`fsm.order` state of a slot journaled before slots carried one (``done`` /
    ``filled`` only): over with all of it filled → FILLED, with part of it → CANCELED, with
    nothing → EXPIRED (ended, no fill, no refusal known); not over: never sent (its place is
    deferred) → NEW, partly filled → PARTIAL, else SENT."""
    if done:
        if filled >= qty:
            return ofsm.FILLED
        return ofsm.CANCELED if filled > 0 else ofsm.EXPIRED
    if deferred:
        return ofsm.NEW
    return ofsm.PARTIAL if filled > 0 else ofsm.SENT


def _d(x: float) -> Decimal:
    return Decimal(repr(x))


class TwoLegIntent:
    """One delta-neutral position opened, held and closed as a unit (see module)."""

    def __init__(self, intent_id: str, leg_a: LegSpec, leg_b: LegSpec, qty: Decimal,
                 cfg: LegRiskConfig, ref_price: float) -> None:
        if leg_a.side is leg_b.side:
            raise ValueError("the two legs must trade opposite sides")
        self.intent_id = intent_id
        self.legs = {LEG_A: leg_a, LEG_B: leg_b}
        self.qty = qty
        self.cfg = cfg
        self.ref_price = ref_price
        self.state = fsm.IDLE
        self.pos = {LEG_A: Decimal(0), LEG_B: Decimal(0)}
        self.fills: dict[str, tuple[str, str]] = {}  # trade id -> (leg, signed qty)
        self.orders: dict[str, OrderSlot] = {}
        self.risk_usd_s = 0.0
        self.risk_disconnected_usd_s = 0.0
        self.unhedged_since_ms: int | None = None
        self.last_ms: int | None = None
        self.hedge_rejects = 0
        self.close_rejects: dict[str, int] = {}
        self.cancel_rejects: dict[str, int] = {}  # client id -> refusals of our cancel
        self.cancel_retry_ms: int | None = None  # a refused cancel is sent again by then
        self.connected = True
        self.deferred: list[Intent] = []
        self.transitions: list[tuple[str, str, str]] = []
        self.anomalies: list[str] = []
        self.fail_reason = ""
        self._seq = 0

    # -- queries ---------------------------------------------------------------------------------

    @property
    def net(self) -> Decimal:
        return self.pos[LEG_A] + self.pos[LEG_B]

    def exposure_usd(self) -> float:
        return abs(float(self.net)) * self.ref_price

    def in_flight(self, leg: str | None = None, role: str | None = None) -> list[OrderSlot]:
        return [o for o in self.orders.values() if not o.done
                and (leg is None or o.leg == leg) and (role is None or o.role == role)]

    def min_trade(self, leg: str) -> Decimal:
        """The smallest quantity ``leg`` can trade: its lot, its minimum quantity, and its
        minimum notional at the reference price (up to the lot)."""
        spec = self.legs[leg]
        m = max(spec.lot, spec.min_qty)
        if spec.min_notional > 0 and self.ref_price > 0:
            q = spec.min_notional / _d(self.ref_price)
            m = max(m, (q / spec.lot).to_integral_value(rounding=ROUND_UP) * spec.lot)
        return m

    def _dust(self, leg: str) -> Decimal:
        """Below this a position cannot be traded away (0 when the leg has no minimums)."""
        spec = self.legs[leg]
        if spec.min_qty <= 0 and spec.min_notional <= 0:
            return Decimal(0)
        return self.min_trade(leg)

    def _closable(self, leg: str) -> Decimal:
        """What a close of ``leg`` can send: its position down to the lot (a base-coin fee
        leaves a remainder finer than the lot; a buy-back is grossed up by its fee), 0 when that is below what the leg can trade
        (dust: counts as flat, stays visible in ``pos``)."""
        spec = self.legs[leg]
        p = self.pos[leg]
        # buying a short leg back is grossed up by the buy's base-coin fee, like a hedge
        q = spec.to_receive(Side.SELL if p > 0 else Side.BUY, abs(p))
        return q if q > 0 and q >= self._dust(leg) else Decimal(0)

    def max_exposure_usd(self) -> float:
        """The largest exposure this intent can have (its whole size at the reference price):
        the unwind reserve is priced at it, so a fill that raises the exposure just before the
        unwind cannot push the risk past the budget."""
        return float(self.qty) * self.ref_price

    def next_wakeup_ms(self) -> int | None:
        """When :meth:`on_tick` must run next (None: no time limit pending): the leg-risk
        budget or deadline while unhedged, and a refused cancel to send again."""
        retry = self.cancel_retry_ms if self.state in fsm.FLATTENING else None
        if self.state not in fsm.UNHEDGED_STATES or self.last_ms is None:
            return retry
        exposure = self.exposure_usd()
        if exposure <= 0 or self.unhedged_since_ms is None:
            return retry
        left = self.cfg.budget_usd_s - self.risk_usd_s - self.max_exposure_usd() * (
            self.cfg.unwind_reserve_s)
        t_budget = self.last_ms + max(left, 0.0) / exposure * 1000.0
        t_deadline = self.unhedged_since_ms + self.cfg.deadline_s * 1000.0
        due = int(min(t_budget, t_deadline))
        return due if retry is None else min(due, retry)

    # -- transitions -------------------------------------------------------------------------------

    def _fire(self, event: str) -> bool:
        if (self.state, event) not in fsm.TWO_LEG_TABLE:
            self.anomalies.append(f"{event} in {self.state}")
            return False
        new = fsm.next_two_leg_state(self.state, event)
        self.transitions.append((self.state, event, new))
        self.state = new
        return True

    def _accrue(self, now_ms: int) -> None:
        # the budget prices the legging (opening, hedging, closing): a HEDGED pair's residual
        # below one tradable quantity is not leg risk, however long it is held
        if self.last_ms is not None and now_ms > self.last_ms and self.state != fsm.HEDGED:
            dt = (now_ms - self.last_ms) / 1000.0
            if self.connected:
                self.risk_usd_s += self.exposure_usd() * dt
            else:
                self.risk_disconnected_usd_s += self.exposure_usd() * dt
        self.last_ms = max(now_ms, self.last_ms or now_ms)

    def _mark_exposure(self, now_ms: int) -> None:
        if self.net == 0:
            self.unhedged_since_ms = None
        elif self.unhedged_since_ms is None:
            self.unhedged_since_ms = now_ms

    def _order_event(self, slot: OrderSlot, event: str) -> bool:
        """Apply one :mod:`fsm.order` event to ``slot`` by :func:`fsm.order.next_order_state`.
        True when the table moved it (possibly to the same state); False for a tolerated
        duplicate (``IGNORE``: nothing changes) and for a contradiction (the state is kept and
        the contradiction appended to :attr:`anomalies`). Quantities are never effects of
        this: fills are counted once by trade id by the caller, whatever the answer."""
        try:
            nxt = ofsm.next_order_state(slot.state, event)
        except ofsm.InvalidOrderTransition:
            self.anomalies.append(f"order {slot.client_id}: {event} in {slot.state} "
                                  f"(kept {slot.state}): reconcile")
            return False
        if nxt == ofsm.IGNORE:
            return False
        slot.state = nxt
        return True

    def _emit(self, out: list[Intent], intent: Intent) -> None:
        if self.connected:
            out.append(intent)
            if isinstance(intent, PlaceOrder):
                self._order_event(self.orders[intent.client_id], ofsm.TRANSMIT)
        else:
            self.deferred.append(intent)

    def _place(self, out: list[Intent], leg: str, role: str, side: Side, qty: Decimal,
               reduce_only: bool = False) -> None:
        self._seq += 1
        spec = self.legs[leg]
        cid = f"{self.intent_id}-{leg}{self._seq}"
        self.orders[cid] = OrderSlot(cid, leg, role, side, qty, reduce_only)
        self._emit(out, PlaceOrder(spec.venue, spec.symbol, spec.kind, side, qty, cid,
                                   reduce_only=reduce_only))

    def _cancel_open_work(self, out: list[Intent]) -> None:
        for o in self.in_flight():
            if o.role != CLOSE_ROLE and not o.cancel_sent:
                o.cancel_sent = True
                spec = self.legs[o.leg]
                self._emit(out, CancelOrder(spec.venue, spec.symbol, spec.kind, o.client_id))

    # -- commands ------------------------------------------------------------------------------------

    def open(self, now_ms: int) -> list[Intent]:
        out: list[Intent] = []
        self._accrue(now_ms)
        if self._fire(fsm.OPEN):
            spec = self.legs[LEG_A]
            self._place(out, LEG_A, OPEN_ROLE, spec.side, self.qty)
        return out

    def close(self, now_ms: int) -> list[Intent]:
        """Flatten both legs (strategy close or kill); repeated calls add nothing."""
        out: list[Intent] = []
        self._accrue(now_ms)
        if self.state == fsm.IDLE:
            return out
        if self.state not in fsm.FLATTENING:
            self._fire(fsm.CLOSE)
        self._cancel_open_work(out)
        self._advance(now_ms, out)
        return out

    def rebalance(self, now_ms: int) -> list[Intent]:
        """HEDGED with ``|net| >= lot_B`` (e.g. after a reconciliation): hedge it again."""
        out: list[Intent] = []
        self._accrue(now_ms)
        if self.state == fsm.HEDGED and abs(self.net) >= max(self.legs[LEG_B].lot,
                                                               self._dust(LEG_B)):
            self._fire(fsm.DRIFT)
            self._mark_exposure(now_ms)
            self._advance(now_ms, out)
        return out

    def adjust(self, leg: str, venue_pos: Decimal, now_ms: int) -> Decimal:
        """Take the venue's position of ``leg`` as the truth (an ADL, a manual trade): the
        difference is booked as one synthetic fill (``adjust-N``) so positions stay Σ fills.
        Returns the signed difference (0: nothing to do). Follow with :meth:`rebalance`."""
        self._accrue(now_ms)
        diff = venue_pos - self.pos[leg]
        if diff == 0:
            return diff
        self._seq += 1
        self.fills[f"adjust-{self.intent_id}-{self._seq}"] = (leg, str(diff))
        self.pos[leg] = venue_pos
        self._mark_exposure(now_ms)
        return diff

    def disconnect(self, now_ms: int) -> None:
        """Offline: every order at the venue is UNKNOWN (``lose_contact``) until the venue
        speaks of it again; nothing is sent until :meth:`reconnect`."""
        self._accrue(now_ms)
        self.connected = False
        for o in self.orders.values():
            if o.live:
                self._order_event(o, ofsm.LOSE_CONTACT)

    def reconnect(self, now_ms: int) -> list[Intent]:
        """Send what waited (its orders NEW → SENT), and re-send every in-flight order under
        its same client id: a re-sent order is UNKNOWN (``lose_contact``; already so after
        :meth:`disconnect`, and so made after a restart from the journal) until the venue's
        answers resolve it by the same events as live updates."""
        self._accrue(now_ms)
        self.connected = True
        deferred_ids = {i.client_id for i in self.deferred if isinstance(i, PlaceOrder)}
        out: list[Intent] = list(self.deferred)
        self.deferred = []
        for cid in deferred_ids:
            slot = self.orders.get(cid)
            if slot is not None and slot.state == ofsm.NEW:
                self._order_event(slot, ofsm.TRANSMIT)
        for o in self.in_flight():
            if o.client_id in deferred_ids:
                continue
            if o.live:
                self._order_event(o, ofsm.LOSE_CONTACT)
            spec = self.legs[o.leg]
            if o.cancel_sent:
                out.append(CancelOrder(spec.venue, spec.symbol, spec.kind, o.client_id))
            else:
                out.append(PlaceOrder(spec.venue, spec.symbol, spec.kind, o.side, o.qty,
                                      o.client_id, reduce_only=o.reduce_only))
        self._advance(now_ms, out)
        return out

    # -- venue events ----------------------------------------------------------------------------------

    def on_fill(self, f: OrderFill, now_ms: int) -> list[Intent]:
        out: list[Intent] = []
        self._accrue(now_ms)
        slot = self.orders.get(f.client_id)
        if slot is None:
            self.anomalies.append(f"fill for unknown order {f.client_id}")
            return out
        if f.trade_id in self.fills:
            return out  # the same fill again (another channel, a replay): counted once
        qty = _d(f.qty)
        # the position is what the venue holds: a fee charged in the coin bought never arrived
        signed = qty - _d(f.fee_base) if f.side is Side.BUY else -qty
        self.fills[f.trade_id] = (slot.leg, str(signed))
        self.pos[slot.leg] += signed
        slot.filled += qty
        # counted above whatever the order machine says: the venue holds it (after FILLED or
        # CANCELED an echo is ignored; after REJECTED/EXPIRED it is a contradiction: anomaly)
        self._order_event(slot, ofsm.FILL_COMPLETE if slot.filled >= slot.qty
                          else ofsm.FILL_PARTIAL)
        if slot.role == OPEN_ROLE:
            self._fire(fsm.LEG1_FILL)
        elif slot.role == HEDGE_ROLE:
            self._fire(fsm.HEDGE_PARTIAL)
        else:
            self._fire(fsm.CLOSE_FILL)
        self._mark_exposure(now_ms)
        self._advance(now_ms, out)
        return out

    def on_ack(self, a: OrderAck) -> None:
        """The venue accepted the order (or our cancel or re-send of it): ``ack_resting``
        (an UNKNOWN order is live again: RESTING). Once the order is over, the answer to our
        cancel request changes nothing. Sends nothing, moves no leg."""
        slot = self.orders.get(a.client_id)
        if slot is None or (slot.done and slot.cancel_sent):
            return
        self._order_event(slot, ofsm.ACK_RESTING)

    def on_done(self, d: OrderDone, now_ms: int) -> list[Intent]:
        """The order is over: ``cancel_confirmed`` when canceled (possibly after fills),
        ``fill_complete`` when it filled anything (the venue's cumulative figure or Σ fills),
        ``expire`` when it ended with nothing filled and not canceled."""
        out: list[Intent] = []
        self._accrue(now_ms)
        slot = self.orders.get(d.client_id)
        if slot is None:
            return out
        if d.canceled:
            event = ofsm.CANCEL_CONFIRMED
        elif max(_d(d.filled_qty), slot.filled) > 0:
            event = ofsm.FILL_COMPLETE
        else:
            event = ofsm.EXPIRE
        if not self._order_event(slot, event):
            return out  # the same outcome again (IGNORE) or a contradiction: no effect
        self._advance(now_ms, out)
        return out

    def on_reject(self, r: OrderReject, now_ms: int) -> list[Intent]:
        """``reject`` when the venue refused the order itself (``request`` PLACE). A refusal
        of our cancel or amend is that request's answer, not the order's: the order stays as
        it was (a refused cancel of a live order is sent again at the policy's next step,
        up to :data:`MAX_CANCEL_REJECTS` refusals, then an anomaly), except a cancel refused
        NOT_FOUND while we hold the order live: the venue no longer has it live, so it is
        over (``lose_contact`` then ``resolve_not_found`` → EXPIRED when nothing filled, else
        ``cancel_confirmed`` → CANCELED after its fills; a fill still on its way is counted
        when it comes). Once the order is over, a refusal of a re-send (the venue already has
        that client id) changes nothing either."""
        out: list[Intent] = []
        self._accrue(now_ms)
        slot = self.orders.get(r.client_id)
        if slot is None:
            return out
        if r.request is not OrderRequest.PLACE:
            if r.request is OrderRequest.CANCEL and slot.live:
                if r.reason is RejectReason.NOT_FOUND:
                    self._order_event(slot, ofsm.LOSE_CONTACT)
                    self._order_event(slot, ofsm.CANCEL_CONFIRMED if slot.filled > 0
                                      else ofsm.RESOLVE_NOT_FOUND)
                    self._advance(now_ms, out)
                else:  # still live: the cancel is sent again at the policy's next step
                    n = self.cancel_rejects[slot.client_id] = \
                        self.cancel_rejects.get(slot.client_id, 0) + 1
                    if n < MAX_CANCEL_REJECTS:
                        slot.cancel_sent = False
                        self.cancel_retry_ms = now_ms + CANCEL_RETRY_MS
                    else:
                        self.anomalies.append(
                            f"cancel of order {slot.client_id} refused {n} times "
                            f"({r.reason.value}); not retried: reconcile")
            return out
        if slot.done and (slot.cancel_sent or r.reason is RejectReason.DUPLICATE_CLIENT_ID):
            return out
        if not self._order_event(slot, ofsm.REJECT):
            return out
        if slot.role == CLOSE_ROLE:
            self.close_rejects[slot.leg] = self.close_rejects.get(slot.leg, 0) + 1
            if self.close_rejects[slot.leg] == MAX_CLOSE_REJECTS:
                self.anomalies.append(f"close of leg {slot.leg} rejected {MAX_CLOSE_REJECTS} "
                                      f"times ({r.reason.value}); not retried: reconcile")
        if slot.role == HEDGE_ROLE and self.state == fsm.HEDGING:
            self.hedge_rejects += 1
            if self.hedge_rejects >= self.cfg.max_hedge_attempts:
                self._unwind(f"second leg rejected {self.hedge_rejects} times ({r.reason.value})",
                             out)
        self._advance(now_ms, out)
        return out

    def on_tick(self, now_ms: int) -> list[Intent]:
        out: list[Intent] = []
        self._accrue(now_ms)
        self._advance(now_ms, out)
        return out

    # -- the policy ---------------------------------------------------------------------------------------

    def _unwind(self, reason: str, out: list[Intent]) -> None:
        if self._fire(fsm.HEDGE_FAIL):
            self.fail_reason = reason
            self._cancel_open_work(out)

    def _advance(self, now_ms: int, out: list[Intent]) -> None:
        if self.state in fsm.UNHEDGED_STATES and self.net != 0 and self.last_ms is not None:
            wake = self.next_wakeup_ms()
            if wake is not None and now_ms >= wake:
                deadline = (self.unhedged_since_ms or now_ms) + self.cfg.deadline_s * 1000
                self._unwind("hard deadline" if now_ms >= deadline else "leg-risk budget", out)
        if self.state == fsm.LEG1:
            if not self.in_flight() and self.pos[LEG_A] == 0:
                self._fire(fsm.LEG1_EMPTY)
            return
        if self.state == fsm.HEDGING:
            spec_b = self.legs[LEG_B]
            lot = spec_b.lot
            # in position terms: a buy in flight will add its quantity net of its base fee
            pending = sum(spec_b.received(o.side, o.qty - o.filled)
                          for o in self.in_flight(LEG_B, HEDGE_ROLE))
            need = -self.net - pending
            side = Side.BUY if need > 0 else Side.SELL
            qty = spec_b.to_receive(side, abs(need))
            floor = max(lot, self._dust(LEG_B))  # a smaller hedge would only be refused
            if qty >= floor and self.hedge_rejects < self.cfg.max_hedge_attempts:
                self._place(out, LEG_B, HEDGE_ROLE, side, qty)
            if not self.in_flight() and abs(self.net) < floor:
                self._fire(fsm.HEDGE_COMPLETE)
                # what is left cannot be traded (finer than the lot: a base-coin fee's rest):
                # not an exposure whose deadline runs on into the next rebalance
                self.unhedged_since_ms = None
            return
        if self.state in fsm.FLATTENING:
            # every order but the closes is canceled while flattening (close, unwind): this
            # sends again a cancel the venue refused (none else is left uncanceled)
            self._cancel_open_work(out)
            self.cancel_retry_ms = None
            for leg, spec in self.legs.items():
                p = self.pos[leg]
                qty = self._closable(leg) if leg == LEG_B else self._leg_a_close()
                if qty > 0 and not self.in_flight(leg, CLOSE_ROLE) and (
                    self.close_rejects.get(leg, 0) < MAX_CLOSE_REJECTS
                ):
                    open_work = self.in_flight(leg)
                    if open_work:
                        continue  # wait for the cancel to end it: its fills change p
                    self._place(out, leg, CLOSE_ROLE, Side.SELL if p > 0 else Side.BUY, qty,
                                reduce_only=spec.kind is InstrumentKind.LINEAR_PERP)
            if all(self._closable(leg) == 0 for leg in self.pos) and not self.in_flight():
                self._fire(fsm.FLAT)
                self.unhedged_since_ms = None

    def _leg_a_close(self) -> Decimal:
        """What leg A's close may send now. CLOSING (a close or kill, usually of a hedged
        pair): all of it, at once with leg B's, the fastest way flat when both legs trade.
        UNWINDING (a leg already failed or lagged): only its excess over what leg B still
        hedges, the rest as leg B's close fills. Leg B (the hedge leg, on Bybit the spot)
        leads the unwind and leg A follows it, so the fast leg never runs ahead of the slow
        one: closing the perp at once while a lagging, half-filling spot leg sold in pieces
        left the whole spot position unhedged for as long as that took. Once leg B is flat
        (or dust), or can no longer close (its closes or a cancel of its open work refused too
        often: left to the operator), leg A closes all of it."""
        full = self._closable(LEG_A)
        a, b = self.pos[LEG_A], self.pos[LEG_B]
        if self.state != fsm.UNWINDING or full == 0 or a * b >= 0:
            return full  # (or leg B hedges nothing of leg A)
        stuck = self.close_rejects.get(LEG_B, 0) >= MAX_CLOSE_REJECTS or any(
            self.cancel_rejects.get(o.client_id, 0) >= MAX_CANCEL_REJECTS
            for o in self.in_flight(LEG_B))
        if stuck or (self._closable(LEG_B) == 0 and not self.in_flight(LEG_B)):
            return full
        spec = self.legs[LEG_A]
        q = spec.to_receive(Side.SELL if a > 0 else Side.BUY, abs(a) - abs(b)) \
            if abs(a) > abs(b) else Decimal(0)
        return min(q, full) if q >= max(spec.lot, self._dust(LEG_A)) else Decimal(0)

    # -- journal -----------------------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """The whole state as JSON-able data (one journal line)."""
        return {
            "intent_id": self.intent_id, "qty": str(self.qty), "ref_price": self.ref_price,
            "legs": {k: {"venue": v.venue, "symbol": v.symbol, "kind": v.kind.value,
                         "side": v.side.value, "lot": str(v.lot), "min_qty": str(v.min_qty),
                         "min_notional": str(v.min_notional),
                         "buy_fee_base_rate": str(v.buy_fee_base_rate)}
                     for k, v in self.legs.items()},
            "cfg": attrs.asdict(self.cfg), "state": self.state,
            "pos": {k: str(v) for k, v in self.pos.items()},
            "fills": {k: list(v) for k, v in self.fills.items()},
            "orders": [{"client_id": o.client_id, "leg": o.leg, "role": o.role,
                        "side": o.side.value, "qty": str(o.qty), "reduce_only": o.reduce_only,
                        "filled": str(o.filled), "state": o.state, "done": o.done,
                        "cancel_sent": o.cancel_sent}
                       for o in self.orders.values()],
            "risk_usd_s": self.risk_usd_s, "risk_disconnected_usd_s": self.risk_disconnected_usd_s,
            "unhedged_since_ms": self.unhedged_since_ms, "last_ms": self.last_ms,
            "hedge_rejects": self.hedge_rejects, "close_rejects": dict(self.close_rejects),
            "seq": self._seq,
            "fail_reason": self.fail_reason,
            "deferred": [_intent_record(i) for i in self.deferred],
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> TwoLegIntent:
        """Rebuild from :meth:`to_record`; offline until :meth:`reconnect`."""
        legs = {k: LegSpec(v["venue"], v["symbol"], InstrumentKind(v["kind"]), Side(v["side"]),
                           Decimal(v["lot"]), Decimal(v.get("min_qty", "0")),
                           Decimal(v.get("min_notional", "0")),
                           Decimal(v.get("buy_fee_base_rate", "0")))
                for k, v in r["legs"].items()}
        self = cls(r["intent_id"], legs[LEG_A], legs[LEG_B], Decimal(r["qty"]),
                   LegRiskConfig(**r["cfg"]), float(r["ref_price"]))
        self.state = r["state"]
        self.pos = {k: Decimal(v) for k, v in r["pos"].items()}
        self.fills = {k: (v[0], v[1]) for k, v in r["fills"].items()}
        deferred_ids = {i["client_id"] for i in r["deferred"] if i.get("t") == "place"}
        for o in r["orders"]:
            qty, filled = Decimal(o["qty"]), Decimal(o["filled"])
            state = o.get("state")  # absent in a record of an older run: derived
            if state not in ofsm.STATES:
                state = legacy_slot_state(bool(o["done"]), filled, qty,
                                          o["client_id"] in deferred_ids)
            self.orders[o["client_id"]] = OrderSlot(
                o["client_id"], o["leg"], o["role"], Side(o["side"]), qty,
                o["reduce_only"], filled, state=state, cancel_sent=o["cancel_sent"])
        self.risk_usd_s = float(r["risk_usd_s"])
        self.risk_disconnected_usd_s = float(r["risk_disconnected_usd_s"])
        self.unhedged_since_ms = r["unhedged_since_ms"]
        self.last_ms = r["last_ms"]
        self.hedge_rejects = int(r["hedge_rejects"])
        self.close_rejects = {str(k): int(v) for k, v in r.get("close_rejects", {}).items()}
        self._seq = int(r["seq"])
        self.fail_reason = r["fail_reason"]
        self.deferred = [_intent_from_record(i) for i in r["deferred"]]
        self.connected = False
        return self


def _intent_record(i: Intent) -> dict[str, Any]:
    if isinstance(i, PlaceOrder):
        return {"t": "place", "venue": i.venue, "symbol": i.symbol, "kind": i.kind.value,
                "side": i.side.value, "qty": str(i.qty), "client_id": i.client_id,
                "reduce_only": i.reduce_only}
    return {"t": "cancel", "venue": i.venue, "symbol": i.symbol, "kind": i.kind.value,
            "client_id": i.client_id}


def _intent_from_record(r: dict[str, Any]) -> Intent:
    if r["t"] == "place":
        return PlaceOrder(r["venue"], r["symbol"], InstrumentKind(r["kind"]), Side(r["side"]),
                          Decimal(r["qty"]), r["client_id"], reduce_only=r["reduce_only"])
    return CancelOrder(r["venue"], r["symbol"], InstrumentKind(r["kind"]), r["client_id"])
