"""The two-leg stateful run of tests/fsm/test_two_leg.py with leg B a Bybit-style spot leg
whose *buys* pay their fee in the coin bought (``qty × (1 − rate)`` arrives): the same
invariants hold — within the leg-risk budget and the deadline, neutral while HEDGED, positions
= Σ fills net of base-coin fees = what the venue holds, no duplicate or over-sized close — and a
flat pair keeps at most a sub-lot rest of the fee."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

from hypothesis import settings

from engine.core.neutral import InstrumentKind, OrderDone, OrderFill, OrderReject, Side
from engine.core.two_leg import LEG_A, LEG_B, LegSpec, TwoLegIntent
from fsm import two_leg as fsm

sys.path.insert(0, str(Path(__file__).parent))
from test_two_leg import CFG, LOT_A, PRICE, QTY, TwoLegRun, Venue  # noqa: E402

RATE = Decimal("0.001")
LOT_B_FINE = Decimal("0.0001")


class FeeVenue(Venue):
    """The scripted venue, but a leg-B buy credits ``qty − qty × RATE``."""

    def fill(self, cid: str, qty: Decimal, now: int) -> None:
        o = self.orders[cid]
        qty = min(qty, o["qty"] - o["filled"])
        if o["reduce_only"]:
            qty = min(qty, abs(self.pos[o["leg"]]))
        if qty <= 0:
            return
        fee_base = qty * RATE if o["leg"] == LEG_B and o["side"] is Side.BUY else Decimal(0)
        signed = qty - fee_base if o["side"] is Side.BUY else -qty
        before = self.pos[o["leg"]]
        self.pos[o["leg"]] += signed
        if o["close"] and before != 0 and (self.pos[o["leg"]] != 0) and (
            (before > 0) != (self.pos[o["leg"]] > 0)
        ):
            self.over_close = True
        o["filled"] += qty
        self.events.append(OrderFill("v", "X", InstrumentKind.SPOT, cid, cid,
                                     f"t{next(self.trade_ids)}", o["side"], float(qty), PRICE,
                                     float(fee_base) * PRICE, False, now,
                                     fee_base=float(fee_base)))


class TwoLegRunBaseFee(TwoLegRun):
    def __init__(self) -> None:
        super().__init__()
        self.venue = FeeVenue()

    def make_intent(self, n: int) -> TwoLegIntent:
        a = LegSpec("v", "X", InstrumentKind.LINEAR_PERP, Side.SELL, LOT_A)
        b = LegSpec("v", "X", InstrumentKind.SPOT, Side.BUY, LOT_B_FINE,
                    buy_fee_base_rate=RATE)
        return TwoLegIntent(f"i{n}", a, b, QTY, CFG, PRICE)

    def dust(self, leg: str) -> Decimal:
        """Leg B may keep less than its lot: the rest a base-coin fee leaves."""
        d = self.intent._dust(leg)
        return max(d, self.intent.legs[leg].lot) if leg == LEG_B else d

    def deliver(self) -> None:
        if not self.venue.connected:
            return
        while self.venue.events:
            ev = self.venue.events.pop(0)
            if isinstance(ev, OrderFill):
                self.seen_fills.append(ev)
                o = self.venue.orders[ev.client_id]
                if ev.trade_id not in self.intent.fills:
                    q = Decimal(repr(ev.qty))
                    self.delivered_fills[o["leg"]] += (
                        q - Decimal(repr(ev.fee_base)) if ev.side is Side.BUY else -q)
                self.send(self.intent.on_fill(ev, self.now))
            elif isinstance(ev, OrderDone):
                self.send(self.intent.on_done(ev, self.now))
            elif isinstance(ev, OrderReject):
                self.send(self.intent.on_reject(ev, self.now))


TwoLegRunBaseFee.TestCase.settings = settings(
    parent=TwoLegRun.TestCase.settings, max_examples=60)
test_two_leg_stateful_base_fee = TwoLegRunBaseFee.TestCase


def test_the_hedge_buys_enough_that_what_arrives_matches_the_perp() -> None:
    r = TwoLegRunBaseFee()
    r.open()
    (cid,) = r.venue.live_open_work()
    r.venue.fill(cid, QTY, r.now)
    r.venue.finish(cid, r.now)
    r.deliver()
    (h,) = r.venue.live_open_work()
    assert r.venue.orders[h]["qty"] == Decimal("1.001")  # 1.00 / 0.999, down to the lot
    r.venue.fill(h, Decimal("1.001"), r.now)
    r.venue.finish(h, r.now)
    r.deliver()
    it = r.intent
    assert it.state == fsm.HEDGED and it.pos[LEG_B] == Decimal("0.999999") == r.venue.pos[LEG_B]
    assert abs(it.net) < LOT_B_FINE
    r.kill_now()
    r.tick_to(r.now + 2_000)
    assert it.state == fsm.IDLE and r.venue.pos[LEG_A] == 0
    assert 0 <= r.venue.pos[LEG_B] < LOT_B_FINE and it.pos[LEG_B] == r.venue.pos[LEG_B]
