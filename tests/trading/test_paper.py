"""PaperVenue: IOC fills after the latency against the later book, reported like the venue.

A ready TradingCore drives real decisions (dislocation signal → gated IOC entry → exit rules →
reduce-only flatten); the paper venue executes them. Every step checks the one-live-flatten
invariant (at most one live reduce-only order per market, and it exists exactly when the
position FSM says a flatten is live).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.intents import Alert, Intent, QueryOrder, Record, RequestReconcile
from engine.core.orders import ENTRY, FLATTEN, Order
from engine.io.jsonl import encode_line
from engine.venues.hyperliquid.l2book import L2BookStore
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore
from engine.venues.paper import (
    NO_MATCH_MSG,
    REDUCE_ONLY_MSG,
    PaperVenue,
    reject_status_for,
    slippage_bps,
)
from fsm import order as ofsm
from fsm import position as pfsm

from .helpers import T0, make_ready, make_trading

LATENCY = 150.0
FEE_BPS = 0.9


class Harness:
    """A core + paper venue driven in time order; records collected (and optionally written)."""

    def __init__(self, core: TradingCore, venue: PaperVenue, *,
                 write: Callable[[str, float, dict[str, Any]], None] | None = None) -> None:
        self.core = core
        self.venue = venue
        self.write = write
        self.now = T0
        self.records: list[Record] = []
        self.alerts: list[Alert] = []
        self.reconciles: list[RequestReconcile] = []
        self.bbo_seq = [10] * len(core.strategy.markets)
        self.lines: list[tuple[str, float, bytes]] = []  # every record line, in write order
        self.boundaries: list[tuple[int, dict[str, Any]]] = []  # (lines so far, core snapshot)
        self.max_live_flattens = 0
        core.on_signal_hook = self._on_signal

    # ------------------------------------------------------------ plumbing
    def _on_signal(self, sig: Any) -> None:
        self._emit("signals", float(sig.fields["timestamp_ms"]), sig.fields)

    def _emit(self, kind: str, ts: float, rec: dict[str, Any]) -> None:
        self.lines.append((kind, ts, encode_line(rec)))
        if self.write is not None:
            self.write(kind, ts, rec)

    def handle(self, intents: list[Intent]) -> None:
        for it in intents:
            if isinstance(it, Record):
                self.records.append(it)
                self._emit(it.kind, it.ts_ms, it.record)
            elif isinstance(it, Alert):
                self.alerts.append(it)
            elif isinstance(it, RequestReconcile):
                self.reconciles.append(it)

    def pump(self, now: float) -> None:
        self.handle(self.venue.pump(now))
        self.check()
        self.boundaries.append((len(self.lines), snapshot(self.core)))

    def check(self) -> None:
        """At most one live reduce-only order per market; it exists iff a flatten is live."""
        core = self.core
        for p in core.book.positions:
            live_ro = [o for o in core.orders.active_for(p.idx) if o.reduce_only]
            assert len(live_ro) <= 1, (p.coin, live_ro)
            assert (len(live_ro) == 1) == pfsm.flatten_live(p.state), (p.coin, p.state, live_ro)
            self.max_live_flattens = max(self.max_live_flattens, len(live_ro))
            in_venue = [o for o in self.venue.in_flight() if o.coin == p.coin and o.reduce_only]
            assert len(in_venue) <= 1

    # ------------------------------------------------------------ time
    def at(self, t: float) -> None:
        """Advance to ``t``: every paper execution due before it runs at its own due time."""
        assert t >= self.now
        while (due := self.venue.next_due_ms()) is not None and due <= t:
            self.now = due
            self.venue.on_timer(due)
            self.pump(due)
        self.now = t
        self.pump(t)

    def bbo(self, t: float, bid: float | None, ask: float | None, sz: float = 100.0,
            idx: int = 0, bid_sz: float | None = None) -> None:
        self.at(t)
        self.bbo_seq[idx] += 1
        self.core.on_bbo(idx, self.bbo_seq[idx], bid, bid_sz if bid_sz is not None else sz,
                         ask, sz, t)
        self.pump(t)

    def ctx(self, t: float, oracle: float, mark: float | None = None, idx: int = 0) -> None:
        self.at(t)
        self.core.on_ctx(idx, oracle, oracle if mark is None else mark, t)
        self.pump(t)

    def housekeeping(self, t: float) -> None:
        self.at(t)
        self.core.on_housekeeping(t)
        self.pump(t)

    # ------------------------------------------------------------ views
    def orders(self, purpose: str | None = None, idx: int = 0) -> list[Order]:
        return sorted((o for o in self.core.orders.by_cloid.values()
                       if o.idx == idx and (purpose is None or o.purpose == purpose)),
                      key=lambda o: o.created_ms)

    def position(self, idx: int = 0) -> Any:
        return self.core.book.positions[idx]


def snapshot(core: TradingCore) -> dict[str, Any]:
    """What a restore must reproduce (compared by the journal tests)."""
    return {
        "positions": {p.coin: (round(p.size, 9), round(p.avg_px, 9) if p.size else 0.0,
                               round(p.effective, 9)) for p in core.book.positions},
        "active": sorted(o.cloid for o in core.orders.active()),
        "hard_stop": core.hard_stop.reason if core.hard_stop.latched else None,
    }


def make(extra: dict[str, Any] | None = None, coins: tuple[str, ...] = ("xyz:GOLD",),
         **venue_kw: Any) -> Harness:
    core, _ = make_trading(extra, coins=coins)
    make_ready(core)
    venue = PaperVenue(core, LATENCY, FEE_BPS, tid_prefix="run1", **venue_kw)
    return Harness(core, venue)


def enter(h: Harness, t: float = T0 + 100, oracle: float = 101.0, idx: int = 0) -> Order:
    """A dislocation (oracle jumps above the ask) → the core sends a buy IOC entry."""
    h.ctx(t, oracle, idx=idx)
    entries = h.orders(ENTRY, idx)
    assert entries, h.core.skips
    o = entries[-1]
    assert o.state == ofsm.SENT and not o.reduce_only and o.is_buy
    return o


# ---------------------------------------------------------------------------------- the path


def test_signal_entry_fill_after_latency_exit_flat_with_fees() -> None:
    h = make()
    o = enter(h)
    assert o.decision_px == 100.01 and o.px_wire == "100.07" and o.sz_wire == "0.49"
    assert h.venue.next_due_ms() == T0 + 100 + LATENCY
    # the ask moves up but stays under the limit during the latency: the LATER price fills
    h.bbo(T0 + 200, 100.03, 100.05)
    assert h.position().state == pfsm.OPENING and o.state == ofsm.SENT
    h.at(T0 + 250)
    p = h.position()
    assert o.state == ofsm.FILLED and o.venue_filled == pytest.approx(0.49)
    assert p.state == pfsm.OPEN and p.size == pytest.approx(0.49)
    assert p.avg_px == pytest.approx(100.05)  # the book price, not the 100.07 limit
    f = h.venue.fills[0]
    assert (f.px, f.sz, f.decision_px, f.latency_ms) == (100.05, 0.49, 100.01, LATENCY)
    assert f.slippage_bps == pytest.approx((100.05 - 100.01) / 100.01 * 1e4)
    assert f.fee == pytest.approx(100.05 * 0.49 * FEE_BPS / 1e4, abs=1e-6)
    assert p.entry_ms == T0 + 250 and p.exit_state is not None
    # exit: the bid jumps → quick profit → one reduce-only flatten, filled after the latency
    h.bbo(T0 + 900, 100.90, 100.95)
    flat = h.orders(FLATTEN)
    assert len(flat) == 1 and flat[0].reduce_only and not flat[0].is_buy
    assert flat[0].sz_wire == "0.49" and flat[0].reason == "quick_profit"
    assert p.state == pfsm.FLATTENING
    h.bbo(T0 + 1000, 100.80, 100.95)  # the bid drops a bit before the flatten arrives
    h.at(T0 + 1050)
    assert flat[0].state == ofsm.FILLED and p.state == pfsm.FLAT and h.core.flat()
    g = h.venue.fills[1]
    assert g.px == 100.80 and g.decision_px == 100.90
    assert g.slippage_bps == pytest.approx((100.90 - 100.80) / 100.90 * 1e4)
    assert h.venue.positions() == {}
    fees = f.fee + g.fee
    assert p.fees == pytest.approx(fees)
    (trade,) = h.core.trades
    assert trade["fees"] == pytest.approx(fees)
    assert trade["gross_pnl"] == pytest.approx((100.80 - 100.05) * 0.49)
    assert trade["net_pnl"] == pytest.approx((100.80 - 100.05) * 0.49 - fees)
    assert trade["exit_reason"] == "quick_profit" and trade["entry_decision_px"] == 100.01
    assert h.venue.stats.fees == pytest.approx(fees)
    assert h.venue.mean_slippage_bps(ENTRY) == pytest.approx(f.slippage_bps)
    # the venue's view of both orders
    st = h.venue.order_status(o.cloid)
    assert st["order"]["status"] == "filled" and st["order"]["order"]["sz"] == "0"
    assert st["order"]["order"]["origSz"] == "0.49"
    fills = [r.record for r in h.records if r.kind == "fills"]
    assert [r["tid"] for r in fills] == ["run1-1", "run1-2"]


def test_book_moved_away_during_latency_no_fill_expired_flat() -> None:
    h = make()
    o = enter(h)
    h.bbo(T0 + 200, 100.28, 100.30)  # the ask left the 100.07 limit behind
    h.at(T0 + 250)
    assert o.state == ofsm.EXPIRED and o.message is not None
    assert o.message == f"{NO_MATCH_MSG} asset={o.asset_id}"
    p = h.position()
    assert p.state == pfsm.FLAT and not p.has_exposure and p.entry_signal_id is None
    assert h.venue.fills == [] and h.venue.stats.no_match == 1
    assert h.venue.order_status(o.cloid)["order"]["status"] == "iocCancelRejected"
    assert len(h.core.rejects.times) == 0  # an IOC without a match is benign


def test_empty_side_at_execution_is_no_match() -> None:
    h = make()
    o = enter(h)
    h.bbo(T0 + 200, 99.99, None)
    h.at(T0 + 250)
    assert o.state == ofsm.EXPIRED and h.core.flat()


def test_sell_side_dislocation_fills_at_the_bid() -> None:
    h = make()
    h.ctx(T0 + 100, 99.0)  # oracle below the bid → sell entry
    (o,) = h.orders(ENTRY)
    assert not o.is_buy and o.decision_px == 99.99
    h.bbo(T0 + 200, 99.97, 100.01)
    h.at(T0 + 250)
    p = h.position()
    assert p.size == pytest.approx(-float(o.sz_wire)) and p.avg_px == 99.97
    assert h.venue.fills[0].slippage_bps == pytest.approx((99.99 - 99.97) / 99.99 * 1e4)
    assert h.venue.positions() == {"xyz:GOLD": pytest.approx(p.size)}


# ---------------------------------------------------------------------------------- fault knobs


def test_reject_next_refuses_with_asset_suffix_and_status() -> None:
    h = make()
    h.venue.reject_next(1, "Insufficient margin to place order.")
    o = enter(h)
    h.at(T0 + 250)
    assert o.state == ofsm.REJECTED
    assert o.message == f"Insufficient margin to place order. asset={o.asset_id}"
    assert h.core.flat() and h.position().state == pfsm.FLAT
    assert h.venue.order_status(o.cloid)["order"]["status"] == "perpMarginRejected"
    assert len(h.core.rejects.times) == 1  # not benign: counts towards the burst
    # the knob is spent: the next entry fills
    o2 = enter(h, T0 + 400, 101.5)
    h.at(T0 + 550)
    assert o2.state == ofsm.FILLED


def test_reject_burst_latches_the_hard_stop() -> None:
    h = make({"trading": {"reject_burst_limit": 1}})
    h.venue.reject_next(2)
    enter(h)
    h.at(T0 + 250)
    enter(h, T0 + 400, 101.5)
    h.at(T0 + 550)
    assert h.core.hard_stop.latched and h.core.hard_stop.reason == "reject_burst"
    h.ctx(T0 + 700, 102.5)
    assert h.core.skips["hard_stop"] == 1


def test_reject_status_vocabulary() -> None:
    assert reject_status_for("Order must have minimum value of $10. asset=1") \
        == "minTradeNtlRejected"
    assert reject_status_for("Price must be divisible by tick size. asset=1") == "tickRejected"
    assert reject_status_for(f"{REDUCE_ONLY_MSG} asset=1") == "reduceOnlyRejected"
    assert reject_status_for("something new") == "rejected"
    assert slippage_bps(True, None, 1.0) is None
    assert slippage_bps(False, 100.0, 99.0) == pytest.approx(100.0)


def test_no_fill_next_expires_although_the_book_crosses() -> None:
    h = make()
    h.venue.no_fill_next(1)
    o = enter(h)
    h.at(T0 + 250)
    assert o.state == ofsm.EXPIRED and h.core.flat() and h.venue.fills == []


def test_partial_fill_then_flatten_of_exactly_the_filled_size() -> None:
    h = make(partial_ratio=0.5)
    o = enter(h)
    h.at(T0 + 250)
    p = h.position()
    # 0.49 × 0.5 floored to the 0.01 lot
    assert o.state == ofsm.FILLED and o.venue_filled == pytest.approx(0.24)
    assert p.size == pytest.approx(0.24) and p.state == pfsm.OPEN and not p.unconfirmed
    assert h.venue.order_status(o.cloid)["order"]["status"] == "canceled"
    assert h.venue.order_status(o.cloid)["order"]["order"]["sz"] == "0.25"
    h.venue.partial_ratio = 1.0
    h.bbo(T0 + 900, 100.90, 100.95)
    (f,) = h.orders(FLATTEN)
    assert f.sz_wire == "0.24"
    h.at(T0 + 1050)
    assert f.state == ofsm.FILLED and h.core.flat() and p.state == pfsm.FLAT
    assert h.venue.positions() == {}


def test_partial_flattens_are_retried_one_at_a_time_until_flat() -> None:
    h = make({"trading": {"max_flatten_failures": 20, "flatten_retry_ms": 500}})
    enter(h)
    h.at(T0 + 250)
    h.venue.partial_ratio = 0.5
    t = T0 + 900
    h.bbo(t, 100.90, 100.95)
    for _ in range(400):  # retries back off exponentially (500 ms, 1 s, 2 s, ...)
        if h.core.flat():
            break
        t += 300
        h.bbo(t, 100.90, 100.95)
        if h.venue.stats.no_match:  # 0.01 × 0.5 floors to nothing: let the rest fill
            h.venue.partial_ratio = 1.0
    assert h.core.flat() and h.venue.positions() == {}
    flattens = h.orders(FLATTEN)
    assert len(flattens) >= 4
    # each retry is sized to what was left, never more
    left = 0.49
    for f in flattens:
        assert float(f.sz_wire) == pytest.approx(left)
        left -= f.venue_filled
    assert h.max_live_flattens == 1
    assert not h.core.hard_stop.latched


def test_dropped_response_goes_unknown_and_is_resolved_by_cloid() -> None:
    h = make({"trading": {"pending_timeout_ms": 1000, "unknown_query_interval_ms": 500}})
    h.venue.drop_next_response(1)
    o = enter(h)
    h.at(T0 + 250)
    p = h.position()
    # the fill arrived on userFills; the order itself never heard back
    assert o.state == ofsm.SENT and p.size == pytest.approx(0.49)
    assert p.state == pfsm.OPENING_PARTIAL
    h.housekeeping(T0 + 1200)  # > pending_timeout after sending
    assert o.state == ofsm.FILLED  # UNKNOWN → QueryOrder → orderStatus "filled"
    orders = [r.record for r in h.records if r.kind == "orders" and r.record["cloid"] == o.cloid
              and r.record["event"] != "venue_filled"]
    assert [r["state"] for r in orders] == ["new", "sent", "unknown", "filled"]
    assert p.state == pfsm.OPEN and h.venue.stats.queries == 1
    assert h.venue.stats.responses_dropped == 1


def test_dropped_response_and_fills_resolve_to_unconfirmed_exposure_then_flat() -> None:
    h = make({"trading": {"pending_timeout_ms": 1000, "unknown_query_interval_ms": 500}})
    h.venue.drop_next_response(1, fills=False)
    o = enter(h)
    h.at(T0 + 250)
    p = h.position()
    assert o.state == ofsm.SENT and not p.has_exposure and p.state == pfsm.OPENING
    h.at(T0 + 1150)
    h.core.on_housekeeping(T0 + 1150)  # pending timeout → UNKNOWN, QueryOrder queued
    assert o.state == ofsm.UNKNOWN and not h.core.is_ready()
    assert any(isinstance(i, QueryOrder) and i.cloid == o.cloid for i in h.core.out)
    h.pump(T0 + 1150)  # the venue answers orderStatus: filled, sz 0 of origSz 0.49
    assert o.state == ofsm.FILLED and h.core.is_ready()
    assert p.size == 0.0 and p.effective == pytest.approx(0.49) and p.state == pfsm.OPEN
    assert not h.venue.fills[0].delivered
    h.bbo(T0 + 1800, 100.90, 100.95)
    (f,) = h.orders(FLATTEN)
    assert f.sz_wire == "0.49"
    h.at(T0 + 2000)
    assert h.core.flat() and p.state == pfsm.FLAT and h.venue.positions() == {}


def test_query_for_an_order_still_in_flight_is_not_answered() -> None:
    h = make()
    o = enter(h)
    h.core.on_disconnect(T0 + 120)  # the post is lost with the connection → UNKNOWN
    assert o.state == ofsm.UNKNOWN
    rest = h.venue.dispatch([QueryOrder(o.coin, o.cloid)], T0 + 130)
    assert rest == [] and h.venue.stats.queries_deferred == 1 and o.state == ofsm.UNKNOWN
    assert h.venue.order_status("0xnever")["status"] == "unknownOid"
    h.venue.on_timer(T0 + 250)  # executed: the fill resolves it through the normal reports
    h.handle(h.venue.pump(T0 + 250))
    assert o.state == ofsm.FILLED


def test_reduce_only_that_would_increase_is_refused() -> None:
    h = make()
    enter(h)
    h.at(T0 + 250)
    h.venue.seed_positions({})  # the venue says flat (say, liquidated): a sell would open
    h.bbo(T0 + 900, 100.90, 100.95)
    (f,) = h.orders(FLATTEN)
    h.at(T0 + 1050)
    assert f.state == ofsm.REJECTED
    assert f.message == f"{REDUCE_ONLY_MSG} asset={f.asset_id}"
    assert h.venue.order_status(f.cloid)["order"]["status"] == "reduceOnlyRejected"
    assert h.venue.stats.reduce_only_rejected == 1
    assert len(h.core.rejects.times) == 0  # benign
    assert h.position().state == pfsm.OPEN and h.position().flatten_failures == 1


def test_reduce_only_larger_than_the_position_is_clipped() -> None:
    h = make()
    enter(h)
    h.at(T0 + 250)
    h.venue.seed_positions({"xyz:GOLD": 0.2})
    h.bbo(T0 + 900, 100.90, 100.95)
    (f,) = h.orders(FLATTEN)
    h.at(T0 + 1050)
    assert f.venue_filled == pytest.approx(0.2) and h.venue.fills[-1].sz == pytest.approx(0.2)
    assert h.venue.stats.reduce_only_clipped == 1
    assert h.venue.positions() == {}
    assert h.position().size == pytest.approx(0.29)
    assert h.venue.order_status(f.cloid)["order"]["order"]["sz"] == "0.29"


def test_levels_provider_walks_the_book_up_to_the_limit() -> None:
    asks = [(100.01, 0.2), (100.03, 0.2), (100.10, 5.0)]
    bids = [(99.99, 1.0)]
    h = make(levels=lambda coin: (bids, asks) if coin == "xyz:GOLD" else None)
    o = enter(h)
    assert o.sz_wire == "0.49" and o.px_wire == "100.07"
    h.bbo(T0 + 200, 99.99, 100.01, sz=0.2)  # the book at execution time agrees with the levels
    h.at(T0 + 250)
    got = [(f.px, f.sz) for f in h.venue.fills]
    assert got == [(100.01, 0.2), (100.03, 0.2)]  # 100.10 is above the 100.07 limit
    assert len({f.tid for f in h.venue.fills}) == 2
    assert o.venue_filled == pytest.approx(0.4) and o.avg_px == pytest.approx(100.02)
    assert h.position().size == pytest.approx(0.4)
    assert h.venue.order_status(o.cloid)["order"]["status"] == "canceled"
    (ex,) = h.venue.executions
    assert (ex.source, ex.levels, ex.decision_px, ex.requested_sz) == ("l2book", 2, 100.01, 0.49)
    assert ex.slippage_bps == pytest.approx((100.02 - 100.01) / 100.01 * 1e4)


# ------------------------------------------------------------------- walking l2Book levels

BIDS = [(99.99, 1.0), (99.97, 1.0), (99.95, 1.0)]
ASKS = [(100.01, 0.2), (100.03, 0.3), (100.05, 0.4), (100.09, 5.0)]


def _venue(levels: Any, latency: float = LATENCY,
           fee_bps: float = FEE_BPS) -> tuple[TradingCore, PaperVenue]:
    core, _ = make_trading()
    make_ready(core)
    core.on_bbo(0, 10, 99.99, 1.0, 100.01, 0.2, T0)  # the top of BIDS/ASKS
    return core, PaperVenue(core, latency, fee_bps, tid_prefix="w", levels=levels)


def _order(cloid: str, is_buy: bool, px: str, sz: str, decision: float) -> Order:
    return Order(cloid, "xyz:GOLD", 0, 110000, is_buy, px, sz, False, ENTRY, T0,
                 decision_px=decision)


def test_walk_three_levels_limit_stops_in_the_middle_vwap_and_fees() -> None:
    levels: dict[str, Any] = {"book": None}
    core, venue = _venue(lambda coin: levels["book"])
    order = _order("0xa", True, "100.06", "2", 100.0)
    venue.submit(order, T0)
    # during the latency the book moves: this later book (not the decision's) is walked
    core.on_bbo(0, 20, 99.99, 1.0, 100.01, 0.2, T0 + 100)
    levels["book"] = (BIDS, ASKS)
    assert venue.on_timer(T0 + LATENCY - 1) == 0
    assert venue.on_timer(T0 + LATENCY) == 1
    got = [(f.px, f.sz) for f in venue.fills]
    assert got == [(100.01, 0.2), (100.03, 0.3), (100.05, 0.4)]  # 100.09 > the 100.06 limit
    notional = 100.01 * 0.2 + 100.03 * 0.3 + 100.05 * 0.4
    vwap = notional / 0.9
    (ex,) = venue.executions
    assert ex.filled_sz == pytest.approx(0.9) and ex.requested_sz == 2.0
    assert ex.avg_px == pytest.approx(vwap) and ex.levels == 3 and ex.source == "l2book"
    assert ex.decision_px == 100.0 and ex.limit_px == 100.06
    assert ex.slippage_bps == pytest.approx((vwap - 100.0) / 100.0 * 1e4)
    assert ex.fee == pytest.approx(notional * FEE_BPS / 1e4, abs=1e-6)
    assert ex.executed_ms - ex.submitted_ms == LATENCY
    assert venue.stats.fees == pytest.approx(ex.fee) and venue.stats.notional == pytest.approx(
        notional)
    for f in venue.fills:
        assert f.decision_px == 100.0 and f.fee == pytest.approx(f.px * f.sz * FEE_BPS / 1e4,
                                                                 abs=1e-6)
    st_ = venue.order_status("0xa")["order"]
    assert st_["status"] == "canceled" and st_["order"]["sz"] == "1.1"  # IOC remainder
    assert venue.stats.partial == 1 and venue.stats.l2_walks == 1 and venue.positions() == {
        "xyz:GOLD": pytest.approx(0.9)}


def test_walk_partial_when_the_depth_runs_out_sell_side() -> None:
    _core, venue = _venue(lambda coin: (BIDS, ASKS), latency=0.0)
    venue.submit(_order("0xs", False, "90", "5", 100.0), T0)  # sell, limit far below
    venue.on_timer(T0)
    assert [(f.px, f.sz) for f in venue.fills] == [(99.99, 1.0), (99.97, 1.0), (99.95, 1.0)]
    (ex,) = venue.executions
    assert ex.filled_sz == 3.0 and ex.avg_px == pytest.approx(99.97)
    assert ex.slippage_bps == pytest.approx((100.0 - 99.97) / 100.0 * 1e4)  # worse: positive
    assert venue.order_status("0xs")["order"]["order"]["sz"] == "2"
    assert venue.positions() == {"xyz:GOLD": -3.0}


def test_levels_at_or_better_than_the_current_bbo_are_gone() -> None:
    # the snapshot is older than the bbo: the ask moved up to 100.04 (size 0.1) since
    core, venue = _venue(lambda coin: (BIDS, ASKS), latency=0.0)
    core.on_bbo(0, 20, 99.99, 1.0, 100.04, 0.1, T0)
    venue.submit(_order("0xb", True, "100.06", "1", 100.0), T0)
    venue.on_timer(T0)
    assert [(f.px, f.sz) for f in venue.fills] == [(100.04, 0.1), (100.05, 0.4)]
    # the bid side is empty now: an older snapshot's bids must not fill a sell
    core.on_bbo(0, 21, None, None, 100.04, 0.1, T0 + 1)
    venue.submit(_order("0xc", False, "99", "1", 100.0), T0 + 1)
    venue.on_timer(T0 + 1)
    assert venue.order_status("0xc")["order"]["status"] == "iocCancelRejected"
    assert venue.stats.no_match == 1


def test_depth_taken_is_not_taken_twice_until_the_book_updates() -> None:
    core, venue = _venue(lambda coin: (BIDS, ASKS), latency=0.0)
    core.on_bbo(0, 20, 99.99, 1.0, 100.01, 0.2, T0)
    venue.submit(_order("0x1", True, "100.04", "0.4", 100.0), T0)
    venue.submit(_order("0x2", True, "100.04", "0.4", 100.0), T0)
    venue.on_timer(T0)
    assert [(f.cloid, f.px, f.sz) for f in venue.fills] == [
        ("0x1", 100.01, 0.2), ("0x1", 100.03, 0.2), ("0x2", 100.03, pytest.approx(0.1))]
    core.on_bbo(0, 21, 99.99, 1.0, 100.01, 0.2, T0 + 1)  # a new quote: fresh liquidity
    venue.submit(_order("0x3", True, "100.04", "0.4", 100.0), T0 + 1)
    venue.on_timer(T0 + 1)
    assert [(f.px, f.sz) for f in venue.fills[3:]] == [(100.01, 0.2), (100.03, 0.2)]


def test_stale_store_falls_back_to_top_of_book_logged_once_a_minute(caplog: Any) -> None:
    now = [T0]
    store = L2BookStore(max_age_ms=1000.0, clock=lambda: now[0])
    core, venue = _venue(store.levels, latency=0.0)
    core.on_bbo(0, 20, 99.99, 1.0, 100.01, 0.2, T0)
    assert store.update("xyz:GOLD", 1000, BIDS, ASKS)
    venue.submit(_order("0x1", True, "100.06", "1", 100.0), T0)
    venue.on_timer(T0)
    assert len(venue.fills) == 3 and venue.executions[-1].source == "l2book"
    with caplog.at_level(logging.WARNING, logger="engine.venues.paper"):
        for k in range(3):  # stale: top of book only, one log line for the three orders
            t = T0 + 1001 + k
            now[0] = t
            core.on_bbo(0, 21 + k, 99.99, 1.0, 100.01, 0.2, t)
            venue.submit(_order(f"0xf{k}", True, "100.06", "1", 100.0), t)
            venue.on_timer(t)
            ex = venue.executions[-1]
            assert (ex.source, ex.levels, ex.filled_sz) == ("top_of_book", 1, 0.2)
        assert caplog.text.count("no fresh l2Book levels") == 1 and "xyz:GOLD" in caplog.text
        t = T0 + 1001 + 60_000  # a minute later: logged again
        now[0] = t
        core.on_bbo(0, 30, 99.99, 1.0, 100.01, 0.2, t)
        venue.submit(_order("0xg", True, "100.06", "1", 100.0), t)
        venue.on_timer(t)
        assert caplog.text.count("no fresh l2Book levels") == 2
    assert venue.stats.l2_fallbacks == 4 and venue.stats.l2_walks == 1
    assert store.stats.stale == 4 and store.stats.hits == 1
    # a fresh snapshot: walking again
    assert store.update("xyz:GOLD", 2000, BIDS, ASKS)
    venue.submit(_order("0xh", True, "100.06", "1", 100.0), t)
    venue.on_timer(t)
    assert venue.executions[-1].source == "l2book"


def test_no_levels_provider_never_logs_a_fallback(caplog: Any) -> None:
    _core, venue = _venue(None, latency=0.0)
    with caplog.at_level(logging.WARNING, logger="engine.venues.paper"):
        venue.submit(_order("0x1", True, "100.06", "1", 100.0), T0)
        venue.on_timer(T0)
    assert venue.executions[-1].source == "top_of_book" and venue.stats.l2_fallbacks == 0
    assert "l2Book" not in caplog.text


def test_top_of_book_liquidity_is_not_taken_twice() -> None:
    core, _ = make_trading()
    make_ready(core)
    core.on_bbo(0, 5, 99.99, 100.0, 100.01, 0.5, T0)
    venue = PaperVenue(core, 0.0, FEE_BPS, tid_prefix="x")
    a = Order("0xa", "xyz:GOLD", 0, 110000, True, "100.05", "0.3", False, ENTRY, T0)
    b = Order("0xb", "xyz:GOLD", 0, 110000, True, "100.05", "0.3", False, ENTRY, T0)
    venue.submit(a, T0)
    venue.submit(b, T0)
    assert venue.on_timer(T0) == 2
    assert [f.sz for f in venue.fills] == [0.3, pytest.approx(0.2)]
    core.on_bbo(0, 6, 99.99, 100.0, 100.01, 0.5, T0 + 1)  # a new quote: fresh liquidity
    c = Order("0xc", "xyz:GOLD", 0, 110000, True, "100.05", "0.3", False, ENTRY, T0)
    venue.submit(c, T0 + 1)
    venue.on_timer(T0 + 1)
    assert venue.fills[-1].sz == 0.3
    with pytest.raises(ValueError):
        venue.submit(c, T0 + 2)


def test_constructor_and_knob_validation() -> None:
    core, _ = make_trading()
    with pytest.raises(ValueError):
        PaperVenue(core, -1.0, 0.0, tid_prefix="x")
    with pytest.raises(ValueError):
        PaperVenue(core, 1.0, 0.0, tid_prefix="")
    v = PaperVenue(core, 1.0, 0.0, tid_prefix="x")
    with pytest.raises(ValueError):
        v.partial_ratio = 0.0
    assert v.next_due_ms() is None and v.open_orders() == []
    w = PaperVenue.from_config(core, tid_prefix="y")
    assert (w.latency_ms, w.taker_fee_bps) == (core.cfg.paper.latency_ms,
                                               core.cfg.paper.taker_fee_bps)


def test_hard_stop_flattens_through_the_paper_venue_once() -> None:
    h = make()
    enter(h)
    h.at(T0 + 250)
    # a fill for an order this engine never placed latches the hard stop and flattens
    h.core.on_fill("ext-1", "0xforeign", "xyz:GOLD", True, 100.0, 0.1, 0.0, T0 + 300, T0 + 300)
    h.pump(T0 + 300)
    assert h.core.hard_stop.latched
    flat = h.orders(FLATTEN)
    assert len(flat) == 1 and flat[0].reason == "hard_stop"
    assert flat[0].sz_wire == "0.59"
    h.venue.seed_positions({"xyz:GOLD": 0.59})  # the foreign fill happened at the venue
    for k in range(5):
        h.bbo(T0 + 320 + k * 10, 99.99, 100.01)  # every frame re-asks the exit: no second one
    assert len(h.orders(FLATTEN)) == 1
    h.at(T0 + 500)
    assert h.core.flat()


# ---------------------------------------------------------------------------------- property

ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("oracle"), st.floats(98.0, 102.0)),
        st.tuples(st.just("book"), st.floats(-0.5, 0.5), st.floats(0.01, 2.0)),
        st.tuples(st.just("wait"), st.integers(10, 800)),
        st.tuples(st.just("housekeeping"), st.integers(10, 1500)),
        st.tuples(st.just("knob"), st.sampled_from(
            ["reject", "nofill", "drop", "dropall", "partial", "full"])),
        st.tuples(st.just("disconnect"), st.just(0)),
    ),
    min_size=5, max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS)
def test_random_sessions_keep_one_flatten_and_match_the_venue(actions: list[Any]) -> None:
    h = make({"trading": {"pending_timeout_ms": 1000, "unknown_query_interval_ms": 300,
                          "max_flatten_failures": 50, "flatten_retry_ms": 200,
                          "unknown_timeout_ms": 600_000}},
             coins=("xyz:GOLD", "xyz:SILVER"))
    t = T0 + 10
    mid = [100.0, 100.0]
    for a in actions:
        t += 10
        kind = a[0]
        if kind == "oracle":
            for i in (0, 1):
                h.ctx(t, a[1] + i * 0.01, idx=i)
        elif kind == "book":
            for i in (0, 1):
                mid[i] = max(90.0, mid[i] + a[1])
                h.bbo(t, round(mid[i] - 0.01, 2), round(mid[i] + 0.01, 2), sz=a[2], idx=i)
        elif kind == "wait":
            t += a[1]
            h.at(t)
        elif kind == "housekeeping":
            t += a[1]
            h.housekeeping(t)
        elif kind == "disconnect":
            h.at(t)
            h.core.on_disconnect(t)
            h.pump(t)
            for i in (0, 1):  # market data comes back at once
                h.bbo(t, round(mid[i] - 0.01, 2), round(mid[i] + 0.01, 2), idx=i)
                h.ctx(t, mid[i], idx=i)
            h.core.set_ready("user_channels", True)
        else:
            knob = a[1]
            if knob == "reject":
                h.venue.reject_next(1)
            elif knob == "nofill":
                h.venue.no_fill_next(1)
            elif knob == "drop":
                h.venue.drop_next_response(1)
            elif knob == "dropall":
                h.venue.drop_next_response(1, fills=False)
            elif knob == "partial":
                h.venue.partial_ratio = 0.5
            else:
                h.venue.partial_ratio = 1.0
    # settle: no more faults, every UNKNOWN resolved, everything flattened
    h.venue.partial_ratio = 1.0
    h.venue.reject_next(0)
    h.venue.no_fill_next(0)
    h.venue.drop_next_response(0)
    h.core.kill(t, "test end")
    h.pump(t)
    for _ in range(60):
        t += 400
        for i in (0, 1):
            h.bbo(t, round(mid[i] - 0.01, 2), round(mid[i] + 0.01, 2), idx=i)
        h.housekeeping(t)
        if not any(True for _ in h.core.orders.active()) and h.core.flat():
            break
    assert not any(True for _ in h.core.orders.active())
    assert h.core.flat(), [(p.coin, p.effective, p.state) for p in h.core.book.positions]
    assert h.venue.positions() == {}
    for p in h.core.book.positions:
        assert p.state == pfsm.FLAT
    # the core counted every delivered fill exactly once
    delivered = {f.tid for f in h.venue.fills if f.delivered}
    assert delivered <= h.core.book.seen_tids
    assert len([f for f in h.core.book.fills if not f.synthetic]) == len(delivered)


def test_dust_below_the_venue_minimum_is_alerted_once_and_not_retried() -> None:
    """A reduce-only flatten refused for the $10 minimum must not become a retry storm."""
    from engine.core.intents import Alert, PlaceOrder

    from .helpers import T0, make_ready, make_trading

    core, _ = make_trading()
    make_ready(core)
    p = core.book.positions[0]
    # a $3 short from a fill this engine did not place: the hard stop latches and flattens
    core.on_fill("d1", None, "xyz:GOLD", False, 100.0, 0.03, 0.0, T0, T0)
    flat_orders = [i.order for i in core.drain() if isinstance(i, PlaceOrder)]
    assert len(flat_orders) == 1
    o = flat_orders[0]
    core.on_sent(o.cloid, T0 + 2)
    core.on_post_result(o.cloid, {"error": "Order must have minimum value of $10. asset=110000"},
                        T0 + 3)
    alerts = [i for i in core.drain() if isinstance(i, Alert)]
    assert any(a.code == "dust_position" for a in alerts)
    for k in range(1, 50):
        core.on_housekeeping(T0 + 3 + 1000 * k)
    assert not [i for i in core.drain() if isinstance(i, PlaceOrder)]
    assert p.flatten_failures == 0 and p.dust_size == pytest.approx(-0.03)
