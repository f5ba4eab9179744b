"""The paper venue for two-leg (spot + linear perp) strategies: honest fills, fees and funding.

Pure and deterministic like Hyperliquid's :class:`engine.venues.paper.PaperVenue`: no Trio, no
clock, no randomness; every call takes ``now_ms``. The shell (or the backtest) hands each
neutral intent to :meth:`PaperTwoLegVenue.submit`, feeds the market with :meth:`on_book` /
:meth:`on_quote`, calls :meth:`due` by :meth:`next_wakeup_ms` and hands the order events it
returns to the core, exactly as it would the venue's own.

Honesty rules:

* an order (or cancel) **arrives** ``latency_ms`` after it was submitted and is executed then,
  against the book held **at that later time** — never at the touch the decision saw. Call
  :meth:`due` at the due time, before applying market data stamped later (the backtest does);
* a lagging leg (``extra_latency_ms[kind]``): its orders reach the matching engine that much
  later still, while a cancel reaches the venue at the base latency and removes an order that
  has not matched yet (``OrderDone`` canceled, nothing filled) — the venue was slow to match,
  not to hear;
* matching walks the depth where levels were given to :meth:`on_book` (``(bids, asks)``, best
  first), else only the top of book up to its displayed size; each level fills at its own
  price (:func:`engine.core.depth.walk_depth`, the Hyperliquid paper venue's walk too); what we took is removed from the held book until the next :meth:`on_book`, so two
  orders cannot take the same displayed size;
* market orders take what there is (the unmatched rest is canceled); limit IOC stops at its
  price; a limit GTC rests what did not match and fills as maker, at its own price, when a later
  book crosses it; ``post_only`` that would take is rejected (``POST_ONLY_WOULD_TAKE``);
* an order that matches nothing is rejected ``NO_LIQUIDITY`` (the venue's "could not match");
* fees per fill from the instrument's ``taker_fee`` (``maker_fee`` for a resting fill), in the
  coin Bybit charges them in: a perp fill and a spot *sell* pay ``qty × price × rate`` in USDT;
  a spot *buy* pays ``qty × rate`` in the base coin, so the base balance grows by
  ``qty × (1 − rate)`` and the fill says so (``OrderFill.fee_base``; ``fee`` is its USDT value
  at the fill price). Closing can only sell what the balance holds;
* rejects: unknown instrument (``PARAMETER``), quantity off the lot or below ``min_qty``, or
  notional below ``min_notional`` (``INVALID_QTY``), price off the tick (``INVALID_PRICE``),
  reduce-only that would open or grow a perp position (``REDUCE_ONLY``; a size above the
  position is clipped), a spot sell above the base coin held (``INSUFFICIENT_BALANCE``), a
  client id already used (``DUPLICATE_CLIENT_ID``), a cancel of an order not live
  (``NOT_FOUND``); plus the fault knob :meth:`reject_next`;
* funding: each perp's latest quote gives ``next_funding_ms``, ``rate`` and ``mark``; at that
  time the perp position held then is settled, ``amount = −position × mark × rate`` (a short
  receives positive funding), as a :class:`FundingSettlement` stamped at the settlement time.
  A quote that already points past an unsettled time settles it first with the rate that was
  quoted for it.

Identifiers: ``tid_prefix`` must be unique per run (use the boot id): a journal-restored intent
counts each fill once by trade id, so ids restarting from 1 under the same prefix would be
taken for fills it has already counted. Order ids and trade ids count up from 1.

Event order inside one :meth:`due`: by time; at equal times a settlement comes before an order
arriving then (the position at the settlement instant is the one held before it).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import attrs

from engine.core.depth import walk_depth
from engine.core.neutral import (
    BookTop,
    CancelOrder,
    FundingQuote,
    FundingSettlement,
    Instrument,
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

Level = tuple[float, float]
VenueEvent = OrderAck | OrderFill | OrderDone | OrderReject | FundingSettlement


@attrs.define
class _Live:
    order: PlaceOrder
    venue_order_id: str
    filled: Decimal = Decimal(0)


@attrs.define
class _Book:
    bids: list[list[float]]  # [px, size] best first, sizes reduced by what we took
    asks: list[list[float]]
    ts_ms: int
    depth: bool


def _d(x: float) -> Decimal:
    return Decimal(repr(x))


class PaperTwoLegVenue:
    """A paper spot + linear-perp venue (see the module docstring)."""

    def __init__(self, spot: dict[str, Instrument], perp: dict[str, Instrument], *,
                 latency_ms: float = 50.0,
                 extra_latency_ms: dict[InstrumentKind, float] | None = None,
                 venue: str = "bybit", tid_prefix: str,
                 partial_ratio: float = 1.0,
                 spot_balances: dict[str, float] | None = None) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if not 0.0 < partial_ratio <= 1.0:
            raise ValueError("partial_ratio must be within (0, 1]")
        if not tid_prefix:
            raise ValueError("tid_prefix must be a non-empty per-run string (the boot id): "
                             "restored intents count fills once by trade id")
        self.instruments = {(InstrumentKind.SPOT, s): i for s, i in spot.items()}
        self.instruments.update({(InstrumentKind.LINEAR_PERP, s): i for s, i in perp.items()})
        self.latency_ms = float(latency_ms)
        self.extra_latency_ms = dict(extra_latency_ms or {})
        self.venue = venue
        self.tid_prefix = tid_prefix
        self.partial_ratio = partial_ratio
        self.books: dict[tuple[InstrumentKind, str], _Book] = {}
        self.perp_pos: dict[str, Decimal] = {}
        self.spot_bal: dict[str, Decimal] = {s: _d(v) for s, v in (spot_balances or {}).items()}
        self.funding: dict[str, tuple[int, float, float]] = {}  # sym -> (next ms, rate, mark)
        self.settled: dict[str, int] = {}
        self.settlements: list[FundingSettlement] = []
        self.fees_paid = 0.0
        self._heap: list[tuple[float, int, PlaceOrder | CancelOrder]] = []
        self._live: dict[str, _Live] = {}  # resting limit orders by client id
        self._pending: dict[str, PlaceOrder] = {}  # submitted, not arrived yet
        self._canceled_early: set[str] = set()
        self._seen: set[str] = set()
        self._out: list[tuple[int, int, VenueEvent]] = []  # settlements found by on_quote
        self._resting_dirty = False
        self._book_ts = 0
        self._seq = 0
        self._oid = 0
        self._tid = 0
        self._fid = 0
        self._reject: dict[InstrumentKind, list[RejectReason]] = {}

    # -- knobs -----------------------------------------------------------------------------------

    def reject_next(self, kind: InstrumentKind, n: int = 1,
                    reason: RejectReason = RejectReason.VENUE_ERROR) -> None:
        """Refuse the next ``n`` orders of ``kind`` that arrive, with ``reason``."""
        self._reject.setdefault(kind, []).extend([reason] * n)

    # -- inputs ----------------------------------------------------------------------------------

    def submit(self, intent: PlaceOrder | CancelOrder, now_ms: int) -> None:
        """The order (or cancel) leaves now and arrives after the latency."""
        self._seq += 1
        due = now_ms + self.latency_ms
        if isinstance(intent, PlaceOrder):
            due += self.extra_latency_ms.get(intent.kind, 0.0)
            self._pending[intent.client_id] = intent
        heapq.heappush(self._heap, (due, self._seq, intent))

    def on_book(self, top: BookTop, levels: tuple[Sequence[Level], Sequence[Level]] | None = None
                ) -> None:
        """The instrument's book now: its top, and its depth when subscribed (best first)."""
        if levels is not None:
            bids = [[float(p), float(q)] for p, q in levels[0] if q > 0]
            asks = [[float(p), float(q)] for p, q in levels[1] if q > 0]
            depth = True
        else:
            bids = [[top.bid, top.bid_size]] if top.bid is not None and top.bid_size > 0 else []
            asks = [[top.ask, top.ask_size]] if top.ask is not None and top.ask_size > 0 else []
            depth = False
        self.books[(top.kind, top.symbol)] = _Book(bids, asks, top.ts_ms, depth)
        self._book_ts = max(self._book_ts, top.ts_ms)
        if self._live:
            self._resting_dirty = True

    def on_quote(self, q: FundingQuote) -> None:
        """A perp's funding state: schedules (or settles) its next funding time."""
        prev = self.funding.get(q.symbol)
        if prev is not None and prev[0] < q.next_funding_ms and prev[0] <= q.ts_ms \
                and self.settled.get(q.symbol, -1) < prev[0]:
            ev = self._settle(q.symbol, prev)
            if ev is not None:
                self._seq += 1
                self._out.append((prev[0], self._seq, ev))
        if q.next_funding_ms > self.settled.get(q.symbol, -1):
            self.funding[q.symbol] = (q.next_funding_ms, q.rate, q.mark)

    # -- time ------------------------------------------------------------------------------------

    def next_wakeup_ms(self) -> int | None:
        times: list[float] = [t for t, _, _ in self._out]
        if self._heap:
            times.append(self._heap[0][0])
        for sym, (t, _, _) in self.funding.items():
            if t > self.settled.get(sym, -1):
                times.append(t)
        if self._resting_dirty:
            times.append(self._book_ts)
        if not times:
            return None
        first = min(times)
        return int(first) if first == int(first) else int(first) + 1

    def due(self, now_ms: int) -> list[VenueEvent]:
        """Every event due at or before ``now_ms``, in time order."""
        out: list[tuple[float, int, VenueEvent]] = list(self._out)
        self._out = []
        while True:
            t_order = self._heap[0][0] if self._heap else None
            t_fund: int | None = None
            fsym: str | None = None
            for sym, (t, _, _) in self.funding.items():
                if t > self.settled.get(sym, -1) and t <= now_ms and (t_fund is None
                                                                       or t < t_fund):
                    t_fund, fsym = t, sym
            if t_fund is not None and fsym is not None and (t_order is None
                                                             or t_fund <= t_order):
                st = self._settle(fsym, self.funding[fsym])
                if st is not None:
                    self._seq += 1
                    out.append((t_fund, self._seq, st))
                continue
            if t_order is None or t_order > now_ms:
                break
            due, _, intent = heapq.heappop(self._heap)
            ts = int(due) if due == int(due) else int(due) + 1
            for aev in self._arrive(intent, ts):
                self._seq += 1
                out.append((ts, self._seq, aev))
        if self._resting_dirty:
            self._resting_dirty = False
            for rev in self._match_resting(now_ms):
                self._seq += 1
                out.append((now_ms, self._seq, rev))
        out.sort(key=lambda e: (e[0], e[1]))
        return [e for _, _, e in out]

    # -- matching --------------------------------------------------------------------------------

    def _settle(self, sym: str, f: tuple[int, float, float]) -> FundingSettlement | None:
        t, rate, mark = f
        self.settled[sym] = t
        pos = self.perp_pos.get(sym, Decimal(0))
        if pos == 0:
            return None
        amount = -float(pos) * mark * rate
        self._fid += 1
        ev = FundingSettlement(self.venue, sym, rate, float(pos), amount, t,
                               settlement_id=f"{self.tid_prefix}-f{self._fid}")
        self.settlements.append(ev)
        return ev

    def _reject_ev(self, o: PlaceOrder | CancelOrder, reason: RejectReason, detail: str,
                   ts: int) -> OrderReject:
        request = OrderRequest.CANCEL if isinstance(o, CancelOrder) else OrderRequest.PLACE
        return OrderReject(self.venue, o.symbol, o.client_id, reason, detail, ts, request)

    def _arrive(self, o: PlaceOrder | CancelOrder, ts: int) -> list[VenueEvent]:
        if isinstance(o, CancelOrder):
            live = self._live.pop(o.client_id, None)
            early = self._pending.pop(o.client_id, None)
            if live is None and early is not None:
                self._canceled_early.add(o.client_id)
                self._seen.add(o.client_id)
                self._oid += 1
                return [OrderDone(self.venue, o.symbol, o.client_id,
                                  f"{self.tid_prefix}-o{self._oid}", 0.0, True, ts)]
            if live is None:
                return [self._reject_ev(o, RejectReason.NOT_FOUND, "order not live", ts)]
            return [OrderDone(self.venue, o.symbol, o.client_id, live.venue_order_id,
                              float(live.filled), True, ts)]
        if o.client_id in self._canceled_early:
            self._canceled_early.discard(o.client_id)
            return []  # canceled before it reached the matching engine
        self._pending.pop(o.client_id, None)
        if o.client_id in self._seen:
            return [self._reject_ev(o, RejectReason.DUPLICATE_CLIENT_ID,
                                    "client id already used", ts)]
        self._seen.add(o.client_id)
        inst = self.instruments.get((o.kind, o.symbol))
        if inst is None:
            return [self._reject_ev(o, RejectReason.PARAMETER, "unknown instrument", ts)]
        pending = self._reject.get(o.kind)
        if pending:
            return [self._reject_ev(o, pending.pop(0), "fault knob", ts)]
        book = self.books.get((o.kind, o.symbol))
        qty = o.qty
        if qty <= 0 or qty % inst.lot_size != 0 or qty < inst.min_qty:
            return [self._reject_ev(o, RejectReason.INVALID_QTY,
                                    f"qty {qty} off lot {inst.lot_size} or below {inst.min_qty}",
                                    ts)]
        if o.price is not None and o.price % inst.tick_size != 0:
            return [self._reject_ev(o, RejectReason.INVALID_PRICE,
                                    f"price {o.price} off tick {inst.tick_size}", ts)]
        ref = float(o.price) if o.price is not None else _touch(book, o.side)
        if ref is not None and float(qty) * ref < float(inst.min_notional):
            return [self._reject_ev(o, RejectReason.INVALID_QTY,
                                    f"notional below {inst.min_notional}", ts)]
        if o.kind is InstrumentKind.LINEAR_PERP and o.reduce_only:
            pos = self.perp_pos.get(o.symbol, Decimal(0))
            if pos == 0 or (pos > 0) == (o.side is Side.BUY):
                return [self._reject_ev(o, RejectReason.REDUCE_ONLY,
                                        "reduce-only order would increase position", ts)]
            qty = min(qty, abs(pos))
        if o.kind is InstrumentKind.SPOT and o.side is Side.SELL \
                and qty > self.spot_bal.get(o.symbol, Decimal(0)):
            return [self._reject_ev(o, RejectReason.INSUFFICIENT_BALANCE,
                                    "spot sell above the base coin held", ts)]
        crosses = book is not None and _touch(book, o.side) is not None and (
            o.price is None or _better_or_equal(o.side, o.price, book))
        if o.post_only and crosses:
            return [self._reject_ev(o, RejectReason.POST_ONLY_WOULD_TAKE,
                                    "post-only order would take liquidity", ts)]
        self._oid += 1
        live = _Live(o, f"{self.tid_prefix}-o{self._oid}")
        events: list[VenueEvent] = [OrderAck(self.venue, o.symbol, o.client_id,
                                             live.venue_order_id, ts)]
        resting = o.price is not None and not o.ioc
        if crosses and book is not None:
            events += self._take(live, inst, book, qty, o.price, ts, maker=False)
        if live.filled >= qty:
            events.append(OrderDone(self.venue, o.symbol, o.client_id, live.venue_order_id,
                                    float(live.filled), False, ts))
        elif resting:
            self._live[o.client_id] = live
        elif live.filled == 0:
            events = [self._reject_ev(o, RejectReason.NO_LIQUIDITY,
                                      "nothing to match within the limit", ts)]
        else:
            events.append(OrderDone(self.venue, o.symbol, o.client_id, live.venue_order_id,
                                    float(live.filled), True, ts))
        return events

    def _take(self, live: _Live, inst: Instrument, book: _Book, qty: Decimal,
              limit: Decimal | None, ts: int, *, maker: bool) -> list[VenueEvent]:
        o = live.order
        levels = book.asks if o.side is Side.BUY else book.bids
        want = qty - live.filled
        if self.partial_ratio < 1.0:  # a partial fill is still at least one lot
            want = max(min(want, inst.lot_size), ((want * _d(self.partial_ratio))
                                                   / inst.lot_size).to_integral_value(
                rounding="ROUND_DOWN") * inst.lot_size)
        events: list[VenueEvent] = []
        for i, take in walk_depth(levels, o.side is Side.BUY,
                                  None if limit is None else float(limit), want, inst.lot_size):
            lvl = levels[i]
            px, size = lvl
            fill_px = float(limit) if maker and limit is not None else px
            lvl[1] = size - float(take)  # what we took is gone until the next book
            live.filled += take
            events.append(self._fill(o, live, take, fill_px, inst, ts, maker))
        return events

    def _fill(self, o: PlaceOrder, live: _Live, qty: Decimal, px: float, inst: Instrument,
              ts: int, maker: bool) -> OrderFill:
        self._tid += 1
        rate = inst.maker_fee if maker else inst.taker_fee
        fee_base = Decimal(0)
        signed = qty if o.side is Side.BUY else -qty
        if o.kind is InstrumentKind.LINEAR_PERP:
            fee = float(qty) * px * rate
            self.perp_pos[o.symbol] = self.perp_pos.get(o.symbol, Decimal(0)) + signed
        elif o.side is Side.BUY:  # the fee is taken from the coin bought
            fee_base = qty * _d(rate)
            fee = float(fee_base) * px
            self.spot_bal[o.symbol] = self.spot_bal.get(o.symbol, Decimal(0)) + qty - fee_base
        else:  # a spot sell pays its fee from the quote coin received
            fee = float(qty) * px * rate
            self.spot_bal[o.symbol] = self.spot_bal.get(o.symbol, Decimal(0)) - qty
        self.fees_paid += fee
        return OrderFill(self.venue, o.symbol, o.kind, o.client_id, live.venue_order_id,
                         f"{self.tid_prefix}-t{self._tid}", o.side, float(qty), px, fee, maker,
                         ts, fee_base=float(fee_base))

    def _match_resting(self, now_ms: int) -> list[VenueEvent]:
        events: list[VenueEvent] = []
        for cid, live in list(self._live.items()):
            o = live.order
            book = self.books.get((o.kind, o.symbol))
            inst = self.instruments[(o.kind, o.symbol)]
            if book is None or o.price is None or not _better_or_equal(o.side, o.price, book):
                continue
            events += self._take(live, inst, book, o.qty, o.price, now_ms, maker=True)
            if live.filled >= o.qty:
                del self._live[cid]
                events.append(OrderDone(self.venue, o.symbol, cid, live.venue_order_id,
                                        float(live.filled), False, now_ms))
        return events

    # -- queries ---------------------------------------------------------------------------------

    def open_orders(self) -> list[str]:
        return sorted(self._live)

    def in_flight(self) -> int:
        return len(self._heap)

    def state(self) -> dict[str, Any]:
        return {"perp": {s: str(v) for s, v in self.perp_pos.items() if v},
                "spot": {s: str(v) for s, v in self.spot_bal.items() if v},
                "fees_paid": self.fees_paid, "resting": self.open_orders()}


def _touch(book: _Book | None, side: Side) -> float | None:
    if book is None:
        return None
    levels = book.asks if side is Side.BUY else book.bids
    for px, size in levels:
        if size > 0:
            return px
    return None


def _within(side: Side, px: float, limit: Decimal) -> bool:
    return px <= float(limit) if side is Side.BUY else px >= float(limit)


def _better_or_equal(side: Side, limit: Decimal, book: _Book) -> bool:
    touch = _touch(book, side)
    return touch is not None and _within(side, touch, limit)
