"""The paper-mode exchange: IOC orders filled against the book *after* the latency, pure.

:class:`PaperVenue` stands where the signing/post shell stands in trade mode. The core's
:class:`~engine.core.intents.PlaceOrder` goes to :meth:`PaperVenue.submit` (which fires
``core.on_sent``) and is executed ``latency_ms`` later by :meth:`PaperVenue.on_timer`, against
the book the core holds **at that later time** (``core.strategy.markets[idx]``), never the book the
decision saw. Everything the venue learns it reports back exactly as Hyperliquid would, through
the same core entry points the live shell uses, in a fixed order:

1. the post response: ``core.on_post_result(cloid, {"filled": {"totalSz", "avgPx", "oid"}})``,
   or ``{"error": "Order could not immediately match against any resting orders. asset=N"}``,
   or another ``{"error": ...}`` for a refusal;
2. one userFill per level matched: ``core.on_fill(tid, ...)`` with ``tid = f"{prefix}-{n}"``
   and ``fee = px × sz × taker_fee_bps / 1e4`` (rounded to 6 decimals like the venue's fee);
3. an orderUpdates terminal status: ``filled`` (``sz`` 0), ``canceled`` (an IOC's unmatched
   remainder; ``sz`` = what did not fill, so ``origSz - sz`` is always the filled size),
   ``iocCancelRejected`` (nothing matched), ``reduceOnlyRejected`` / ``*Rejected``.

Matching rules (taker only, an IOC never rests here):

* buy crosses when ``limit >= ask``, sell when ``limit <= bid``; an empty side never matches;
* top of book (default): ``min(order size, ask_sz/bid_sz)`` at the book price, not the limit;
* with a ``levels`` provider (``coin -> (bids, asks)`` lists of ``(px, sz)``, best first, or
  ``None``; normally :meth:`engine.venues.hyperliquid.l2book.L2BookStore.levels`, fed by the
  feed's ``l2Book`` subscription) the order walks the book up to its limit price and size:
  the first level is the core's current bbo (the venue pushes a bbo on every change but an
  l2Book at most every 0.5 s, so the bbo is never older), then the provider's levels strictly
  behind it (levels at or better than the current bbo are gone: the book moved since that
  snapshot). It fills level by level at each level's price — partial when the depth within
  the limit runs out (the walk is :func:`engine.core.depth.walk_depth`, shared with the
  two-leg paper venue) — so ``avgPx`` is the volume-weighted fill price and the fee is charged
  on each level's notional. When the provider answers ``None`` (no snapshot, or a stale one)
  the order fills against the top of book only; that fallback is counted
  (``stats.l2_fallbacks``) and logged at most once a minute per coin;
* liquidity we took is remembered per displayed quote (``bbo_time_ms``, side, price), so two
  orders cannot both take the same displayed size before the book updates;
* reduce-only orders are checked against the venue's own position ledger (the truth, not the
  core's view): one that would increase the position (or open one) is refused with
  ``Reduce only order would increase position. asset=N``; a size above the position is
  clipped to it;
* sizes are floored to the market's ``szDecimals``; a fill that floors to zero is no match.

The recent fills are kept in :attr:`PaperVenue.fills` with the order's decision price and the
slippage against it (bps, positive = worse than decided), the recent orders that filled in
:attr:`PaperVenue.executions` (decision price vs volume-weighted fill price, levels taken, book
source): the last :data:`KEEP_RECENT` of each (``.total`` counts all), so a paper process that
runs for weeks or a replay of a day stays bounded. Totals are in :attr:`PaperVenue.stats` and
the size-weighted slippage sums behind :meth:`PaperVenue.mean_slippage_bps` are running sums
over every fill; processed orders (``orderStatus``) and taken liquidity are pruned too.

Fault knobs (for tests and drills): :meth:`reject_next`, :meth:`no_fill_next`,
:attr:`partial_ratio` and :meth:`drop_next_response`, which executes the order but loses its
post response and orderUpdate (and, optionally, its userFills), so the core must time the order
out to UNKNOWN and resolve it by cloid: :meth:`order_status` answers the core's
:class:`~engine.core.intents.QueryOrder` with the venue-shaped ``orderStatus`` reply.

Identifiers: ``tid_prefix`` must be unique per run (the journal restore deduplicates fills by
tid across restarts; use the boot id); oids count up from ``oid_start``.

Pure and deterministic: no Trio, no clock, no randomness; every call takes ``now_ms``. The shell
sleeps until :meth:`next_due_ms` and calls :meth:`on_timer`; in replay, call it at the due time
before applying market frames stamped later. :meth:`dispatch` / :meth:`pump` execute the
venue-bound intents (``PlaceOrder``, ``QueryOrder``, ``CancelOrder``) and hand the rest
(records, alerts, reconcile requests) back to the caller.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import attrs

from engine.core.bounded import RecentList
from engine.core.depth import walk_depth
from engine.core.intents import CancelOrder, Intent, PlaceOrder, QueryFills, QueryOrder
from engine.core.market import MarketState
from engine.core.orders import Order
from engine.core.positions import Fill
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore
from engine.venues.hyperliquid.rounding import decimal_to_wire, to_decimal

log = logging.getLogger(__name__)

NO_MATCH_MSG = "Order could not immediately match against any resting orders."
REDUCE_ONLY_MSG = "Reduce only order would increase position."
DEFAULT_REJECT_MSG = "Insufficient margin to place order."

# post-response error prefix -> orderUpdates/orderStatus status (docs/reference/hyperliquid-protocol.md §12)
_REJECT_STATUS: tuple[tuple[str, str], ...] = (
    ("Price must be divisible by tick size", "tickRejected"),
    ("Order must have minimum value", "minTradeNtlRejected"),
    ("Insufficient margin", "perpMarginRejected"),
    ("Reduce only order would increase position", "reduceOnlyRejected"),
    ("Invalid TP/SL price", "badTriggerPxRejected"),
    ("No liquidity available for market order", "marketOrderNoLiquidityRejected"),
    ("Order would increase open interest while open interest is capped",
     "positionIncreaseAtOpenInterestCapRejected"),
)

Level = tuple[float, float]
LevelsProvider = Callable[[str], tuple[Sequence[Level], Sequence[Level]] | None]
"""``coin -> (bids best first, asks best first)`` of ``(px, sz)``, or None (use the bbo)."""

SOURCE_TOP = "top_of_book"
SOURCE_L2 = "l2book"
FALLBACK_LOG_INTERVAL_MS = 60_000.0
"""At most one top-of-book fallback log line per coin in this interval (venue time, ms)."""

_ZERO = Decimal(0)
KEEP_RECENT = 1000
"""Fills and executions kept for inspection (the most recent; up to twice this between trims)."""
DONE_PRUNE_AT = 8192
"""Past this many remembered processed orders, those the core no longer knows are forgotten
(it can no longer ask for their status; the bound then doubles from what is kept)."""
TAKEN_PRUNE_AT = 4096
"""Past this many remembered (quote, price) entries over all markets, a market's entries for
quotes older than its current one are dropped when it trades (an older quote time comes back
only after a reconnect)."""


def reject_status_for(message: str) -> str:
    """The orderUpdates status the venue reports for a refusal with this error message."""
    for prefix, status in _REJECT_STATUS:
        if message.startswith(prefix):
            return status
    return "rejected"


def slippage_bps(is_buy: bool, decision_px: float | None, fill_px: float) -> float | None:
    """Fill price against the decision price in bps; positive means worse than decided."""
    if decision_px is None or decision_px <= 0:
        return None
    diff = fill_px - decision_px if is_buy else decision_px - fill_px
    return diff / decision_px * 1e4


@attrs.frozen(slots=True)
class PaperFill:
    """One simulated userFill with its decision price and slippage."""

    tid: str
    cloid: str
    coin: str
    is_buy: bool
    px: float
    sz: float
    fee: float
    time_ms: float
    purpose: str
    reduce_only: bool
    decision_px: float | None
    slippage_bps: float | None
    latency_ms: float
    delivered: bool

    @property
    def notional(self) -> float:
        return self.px * self.sz


@attrs.frozen(slots=True)
class PaperExecution:
    """One executed order that filled (in full or in part), priced against its decision.

    ``avg_px`` is the volume-weighted price of its fills; ``slippage_bps`` compares it with
    ``decision_px`` (positive = worse); ``levels`` is how many book levels it took and
    ``source`` which book it saw (``l2book`` or ``top_of_book``).
    """

    cloid: str
    coin: str
    is_buy: bool
    purpose: str
    decision_px: float | None
    limit_px: float
    requested_sz: float
    filled_sz: float
    avg_px: float
    fee: float
    slippage_bps: float | None
    levels: int
    source: str
    submitted_ms: float
    executed_ms: float


@attrs.define
class PaperStats:
    """Counters of a :class:`PaperVenue` (read them; the venue updates them)."""

    submitted: int = 0
    executed: int = 0
    filled: int = 0  # orders filled in full
    partial: int = 0  # orders filled in part (the IOC remainder canceled)
    no_match: int = 0
    rejected: int = 0
    reduce_only_rejected: int = 0
    reduce_only_clipped: int = 0
    responses_dropped: int = 0
    fills: int = 0
    fees: float = 0.0
    notional: float = 0.0
    queries: int = 0
    queries_deferred: int = 0
    cancels_ignored: int = 0
    l2_walks: int = 0  # orders executed against l2Book depth
    l2_fallbacks: int = 0  # orders executed against the top of book because no fresh levels


class _Pending:
    __slots__ = ("order", "submitted_ms")

    def __init__(self, order: Order, submitted_ms: float) -> None:
        self.order = order
        self.submitted_ms = submitted_ms


class _Done:
    """What the venue remembers of a processed order (answers ``orderStatus``)."""

    __slots__ = ("order", "oid", "filled", "status", "status_ms")

    def __init__(self, order: Order, oid: int, filled: Decimal, status: str,
                 status_ms: float) -> None:
        self.order = order
        self.oid = oid
        self.filled = filled
        self.status = status
        self.status_ms = status_ms


class PaperVenue:
    """Paper-mode exchange for one :class:`TradingCore` (see the module docstring)."""

    def __init__(self, core: TradingCore, latency_ms: float, taker_fee_bps: float, *,
                 tid_prefix: str, levels: LevelsProvider | None = None,
                 partial_ratio: float = 1.0, oid_start: int = 1) -> None:
        if latency_ms < 0 or taker_fee_bps < 0:
            raise ValueError("latency_ms and taker_fee_bps must be >= 0")
        if not tid_prefix:
            raise ValueError("tid_prefix must be a non-empty per-run string")
        self.core = core
        self.latency_ms = float(latency_ms)
        self.taker_fee_bps = float(taker_fee_bps)
        self.tid_prefix = tid_prefix
        self.levels = levels
        self.partial_ratio = partial_ratio
        self.fills: RecentList[PaperFill] = RecentList(KEEP_RECENT)
        self.executions: RecentList[PaperExecution] = RecentList(KEEP_RECENT)
        # size-weighted slippage over every fill that has one: purpose -> [Σ bps × sz, Σ sz],
        # and over all purposes (mean_slippage_bps)
        self._slip: dict[str, list[float]] = {}
        self._slip_all = [0.0, 0.0]
        self.stats = PaperStats()
        self._fallback_logged: dict[str, float] = {}
        self._heap: list[tuple[float, int, _Pending]] = []
        self._in_flight: dict[str, _Pending] = {}
        self._done: dict[str, _Done] = {}
        self._done_prune_at = DONE_PRUNE_AT
        self._positions: dict[str, Decimal] = {}
        # liquidity taken per displayed quote: coin -> {(is_buy, bbo_time_ms, px): size}, and
        # the number of entries over every coin (the pruning bound, see _book)
        self._taken: dict[str, dict[tuple[bool, int, float], Decimal]] = {}
        self._taken_n = 0
        self._seq = 0
        self._tid_n = 0
        self._next_oid = oid_start
        self._reject_left = 0
        self._reject_msg = DEFAULT_REJECT_MSG
        self._no_fill_left = 0
        self._drop_left = 0
        self._drop_fills = False

    @classmethod
    def from_config(cls, core: TradingCore, *, tid_prefix: str,
                    levels: LevelsProvider | None = None) -> PaperVenue:
        """A venue with the core's ``[paper]`` latency and taker fee."""
        pc = core.cfg.paper
        return cls(core, pc.latency_ms, pc.taker_fee_bps, tid_prefix=tid_prefix, levels=levels)

    # ------------------------------------------------------------------ knobs
    @property
    def partial_ratio(self) -> float:
        """Fraction of what would match that actually fills (1.0 = everything)."""
        return self._partial_ratio

    @partial_ratio.setter
    def partial_ratio(self, value: float) -> None:
        if not 0.0 < value <= 1.0:
            raise ValueError("partial_ratio must be within (0, 1]")
        self._partial_ratio = float(value)

    def reject_next(self, n: int = 1, msg: str = DEFAULT_REJECT_MSG) -> None:
        """Refuse the next ``n`` executed orders with ``msg`` (`` asset=N`` is appended)."""
        self._reject_left = n
        self._reject_msg = msg

    def no_fill_next(self, n: int = 1) -> None:
        """The next ``n`` executed orders find nothing to match, whatever the book says."""
        self._no_fill_left = n

    def drop_next_response(self, n: int = 1, *, fills: bool = True) -> None:
        """Execute the next ``n`` orders but lose their post response and orderUpdate.

        With ``fills=False`` their userFills are lost too (a disconnect): the core only learns
        the outcome from :meth:`order_status` (``origSz - sz``), as unconfirmed exposure.
        """
        self._drop_left = n
        self._drop_fills = not fills

    # ------------------------------------------------------------------ ledger
    def positions(self) -> dict[str, float]:
        """The venue's signed positions by coin (non-zero only): the reconciliation truth."""
        return {c: float(v) for c, v in self._positions.items() if v != 0}

    def seed_positions(self, positions: Mapping[str, float]) -> None:
        """Set the ledger (after a journal restore: the paper venue lives in the process)."""
        self._positions = {c: to_decimal(v) for c, v in positions.items() if v}

    def open_orders(self) -> list[dict[str, Any]]:
        """Always empty: an IOC never rests on this venue."""
        return []

    # ------------------------------------------------------------------ orders in
    def submit(self, order: Order, now_ms: float) -> None:
        """The shell would send ``order`` now: mark it sent and execute it after the latency."""
        if order.cloid in self._in_flight or order.cloid in self._done:
            raise ValueError(f"order {order.cloid} was already submitted")
        self.core.on_sent(order.cloid, now_ms)
        pending = _Pending(order, now_ms)
        self._seq += 1
        heapq.heappush(self._heap, (now_ms + self.latency_ms, self._seq, pending))
        self._in_flight[order.cloid] = pending
        self.stats.submitted += 1

    def next_due_ms(self) -> float | None:
        """When the next submitted order executes (None: nothing in flight)."""
        return self._heap[0][0] if self._heap else None

    def defer_bookkeeping(self) -> bool:
        """:class:`~engine.venues.base.ExecutionBackend`: paper orders need no socket write,
        so a read's bookkeeping never waits for one."""
        return False

    def in_flight(self) -> list[Order]:
        """Orders submitted and not executed yet, in execution order."""
        return [p.order for _, _, p in sorted(self._heap, key=lambda e: (e[0], e[1]))]

    def on_timer(self, now_ms: float) -> int:
        """Execute every order due at or before ``now_ms`` against the book as it is now."""
        n = 0
        while self._heap and self._heap[0][0] <= now_ms:
            _, _, pending = heapq.heappop(self._heap)
            del self._in_flight[pending.order.cloid]
            self._execute(pending, now_ms)
            n += 1
        return n

    # ------------------------------------------------------------------ queries
    def order_status(self, cloid: str) -> dict[str, Any]:
        """The ``orderStatus`` (by cloid) reply: ``unknownOid`` unless the order was processed."""
        done = self._done.get(cloid)
        if done is None:
            return {"status": "unknownOid"}
        o = done.order
        orig = Decimal(o.sz_wire)
        inner: dict[str, Any] = {
            "coin": o.coin, "side": "B" if o.is_buy else "A", "limitPx": o.px_wire,
            "sz": decimal_to_wire(orig - done.filled), "oid": done.oid,
            "timestamp": int(done.status_ms), "origSz": o.sz_wire, "cloid": o.cloid,
        }
        if o.reduce_only:
            inner["reduceOnly"] = True
        return {"status": "order",
                "order": {"order": inner, "status": done.status,
                          "statusTimestamp": int(done.status_ms)}}

    # ------------------------------------------------------------------ intents
    def dispatch(self, intents: Iterable[Intent], now_ms: float) -> list[Intent]:
        """Execute the venue-bound intents; return the others (records, alerts, reconcile).

        A query for an order still in flight is not answered (the venue has not seen it yet;
        answering ``unknownOid`` would expire an order that is about to fill): the core asks
        again after ``unknown_query_interval_ms``.
        """
        rest: list[Intent] = []
        core = self.core
        for it in intents:
            if isinstance(it, PlaceOrder):
                self.submit(it.order, now_ms)
            elif isinstance(it, QueryOrder):
                if it.cloid in self._in_flight:
                    self.stats.queries_deferred += 1
                    continue
                self.stats.queries += 1
                core.on_order_status(it.cloid, self.order_status(it.cloid), now_ms)
            elif isinstance(it, CancelOrder):
                self.stats.cancels_ignored += 1  # nothing ever rests here
            elif isinstance(it, QueryFills):
                # the recent fills this venue made, delivered or not (as the venue's userFills,
                # which also serves only a user's most recent fills)
                core.on_fills_answer([Fill(f.tid, f.cloid, f.coin, f.is_buy, f.px, f.sz, f.fee,
                                           f.time_ms) for f in self.fills], now_ms)
            else:
                rest.append(it)
        return rest

    def pump(self, now_ms: float) -> list[Intent]:
        """Drain the core and dispatch until it has nothing more; return the non-venue intents."""
        rest: list[Intent] = []
        while self.core.out:
            rest.extend(self.dispatch(self.core.drain(), now_ms))
        return rest

    # ------------------------------------------------------------------ execution
    def _execute(self, pending: _Pending, now_ms: float) -> None:
        o = pending.order
        self.stats.executed += 1
        oid = self._next_oid
        self._next_oid += 1
        drop = self._drop_left > 0
        if drop:
            self._drop_left -= 1
            self.stats.responses_dropped += 1
        if self._reject_left > 0:
            self._reject_left -= 1
            self._refuse(o, oid, self._reject_msg, now_ms, drop)
            return
        cap = Decimal(o.sz_wire)
        if o.reduce_only:
            pos = self._positions.get(o.coin, _ZERO)
            if pos == 0 or (pos > 0) == o.is_buy:
                self.stats.reduce_only_rejected += 1
                self._refuse(o, oid, REDUCE_ONLY_MSG, now_ms, drop)
                return
            if abs(pos) < cap:
                cap = abs(pos)
                self.stats.reduce_only_clipped += 1
        matched: list[tuple[float, Decimal]] = []
        source = SOURCE_TOP
        if self._no_fill_left > 0:
            self._no_fill_left -= 1
        else:
            matched, source = self._match(o, cap, now_ms)
        if not matched:
            self._no_match(o, oid, now_ms, drop)
            return
        self._report_fills(pending, oid, matched, now_ms, drop, source)

    def _market(self, o: Order) -> MarketState:
        return self.core.strategy.markets[o.idx]

    def _match(self, o: Order, cap: Decimal,
               now_ms: float) -> tuple[list[tuple[float, Decimal]], str]:
        """Levels taken as (px, size), best first, and the book's source; sizes floored to
        szDecimals; partial ratio applied."""
        m = self._market(o)
        dec = m.spec.sz_decimals
        book = self._book(o, m, now_ms)
        if book is None:
            return [], SOURCE_TOP
        full = _walk(book, o.is_buy, o.px, cap, dec)
        if not full or self._partial_ratio >= 1.0:
            taken = full
        else:
            total = sum((sz for _, sz in full), _ZERO)
            want = _floor(total * to_decimal(self._partial_ratio), dec)
            taken = _walk(book, o.is_buy, o.px, want, dec) if want > 0 else []
        if taken:
            mine = self._taken.get(o.coin)
            if mine is None:
                mine = self._taken[o.coin] = {}
            for px, sz in taken:
                key = (o.is_buy, m.bbo_time_ms, px)
                prev = mine.get(key)
                if prev is None:
                    self._taken_n += 1
                    prev = _ZERO
                mine[key] = prev + sz
        return taken, book.source

    def _book(self, o: Order, m: MarketState, now_ms: float) -> _Book | None:
        """The same-side levels this order may take now, minus what we already took."""
        px, sz = (m.ask_px, m.ask_sz) if o.is_buy else (m.bid_px, m.bid_sz)
        if px is None or sz is None:
            return None  # the side is empty now, whatever an older l2Book snapshot said
        shown: list[Level] = [(px, sz)]
        source = SOURCE_TOP
        if self.levels is not None:
            got = self.levels(o.coin)
            if got is None:
                self._fallback(o.coin, now_ms)
            else:
                source = SOURCE_L2
                self.stats.l2_walks += 1
                if o.is_buy:
                    shown.extend(lv for lv in got[1] if lv[0] > px)
                else:
                    shown.extend(lv for lv in got[0] if lv[0] < px)
        mine = self._taken.get(o.coin)
        if mine and self._taken_n > TAKEN_PRUNE_AT:
            # this market's older quotes no longer matter (the other markets' entries are
            # pruned when they trade: O(this market's entries), never a scan of all)
            kept = {k: v for k, v in mine.items() if k[1] >= m.bbo_time_ms}
            self._taken_n -= len(mine) - len(kept)
            mine = self._taken[o.coin] = kept
        levels: list[Level] = []
        for lpx, lsz in shown:
            avail = to_decimal(lsz)
            if mine:
                avail -= mine.get((o.is_buy, m.bbo_time_ms, lpx), _ZERO)
            if avail > 0:
                levels.append((lpx, float(avail)))
        return _Book(levels, source)

    def _fallback(self, coin: str, now_ms: float) -> None:
        self.stats.l2_fallbacks += 1
        last = self._fallback_logged.get(coin)
        if last is None or now_ms - last >= FALLBACK_LOG_INTERVAL_MS:
            self._fallback_logged[coin] = now_ms
            log.warning("paper %s: no fresh l2Book levels (none yet, or stale); filling against "
                        "the top of book only (logged at most once a minute per coin)", coin)

    # ------------------------------------------------------------------ reports
    def _remember(self, cloid: str, done: _Done) -> None:
        """Keep a processed order for ``orderStatus``; bounded: once past the bound, orders the
        core no longer holds (pruned terminal ones: it cannot ask about them) are forgotten, so
        a long paper run or replay does not keep every order it ever placed."""
        if len(self._done) >= self._done_prune_at:
            known = self.core.orders.by_cloid
            self._done = {c: d for c, d in self._done.items() if c in known}
            self._done_prune_at = max(DONE_PRUNE_AT, 2 * len(self._done))
        self._done[cloid] = done  # (the order just processed is always kept)

    def _refuse(self, o: Order, oid: int, msg: str, now_ms: float, drop: bool) -> None:
        self.stats.rejected += 1
        if "asset=" not in msg:
            msg = f"{msg} asset={o.asset_id}"
        status = reject_status_for(msg)
        self._remember(o.cloid, _Done(o, oid, _ZERO, status, now_ms))
        if not drop:
            self.core.on_post_result(o.cloid, {"error": msg}, now_ms)
            self.core.on_order_update(o.cloid, oid, status, o.sz_wire, o.sz_wire, now_ms)

    def _no_match(self, o: Order, oid: int, now_ms: float, drop: bool) -> None:
        self.stats.no_match += 1
        self._remember(o.cloid, _Done(o, oid, _ZERO, "iocCancelRejected", now_ms))
        if not drop:
            self.core.on_post_result(
                o.cloid, {"error": f"{NO_MATCH_MSG} asset={o.asset_id}"}, now_ms)
            self.core.on_order_update(o.cloid, oid, "iocCancelRejected", o.sz_wire, o.sz_wire,
                                      now_ms)

    def _report_fills(self, pending: _Pending, oid: int, matched: list[tuple[float, Decimal]],
                      now_ms: float, drop: bool, source: str) -> None:
        o = pending.order
        core = self.core
        total = sum((sz for _, sz in matched), _ZERO)
        orig = Decimal(o.sz_wire)
        complete = total >= orig
        status = "filled" if complete else "canceled"  # an IOC's remainder is canceled
        if complete:
            self.stats.filled += 1
        else:
            self.stats.partial += 1
        self._remember(o.cloid, _Done(o, oid, total, status, now_ms))
        notional = sum((to_decimal(px) * sz for px, sz in matched), _ZERO)
        avg_px = float(notional / total)
        signed = total if o.is_buy else -total
        self._positions[o.coin] = self._positions.get(o.coin, _ZERO) + signed
        if not drop:
            core.on_post_result(o.cloid, {"filled": {"totalSz": decimal_to_wire(total),
                                                     "avgPx": _px_wire(avg_px), "oid": oid}},
                                now_ms)
        deliver = not (drop and self._drop_fills)
        fees = 0.0
        for px, sz_d in matched:
            sz = float(sz_d)
            fee = round(px * sz * self.taker_fee_bps / 1e4, 6)
            self._tid_n += 1
            tid = f"{self.tid_prefix}-{self._tid_n}"
            slip = slippage_bps(o.is_buy, o.decision_px, px)
            self.fills.append(PaperFill(
                tid, o.cloid, o.coin, o.is_buy, px, sz, fee, now_ms, o.purpose, o.reduce_only,
                o.decision_px, slip, now_ms - pending.submitted_ms, deliver))
            if slip is not None:
                acc = self._slip.get(o.purpose)
                if acc is None:
                    acc = self._slip[o.purpose] = [0.0, 0.0]
                acc[0] += slip * sz
                acc[1] += sz
                self._slip_all[0] += slip * sz
                self._slip_all[1] += sz
            st = self.stats
            st.fills += 1
            st.fees += fee
            fees += fee
            st.notional += px * sz
            if deliver:
                core.on_fill(tid, o.cloid, o.coin, o.is_buy, px, sz, fee, now_ms, now_ms)
        self.executions.append(PaperExecution(
            o.cloid, o.coin, o.is_buy, o.purpose, o.decision_px, o.px, float(orig), float(total),
            avg_px, round(fees, 6), slippage_bps(o.is_buy, o.decision_px, avg_px), len(matched),
            source, pending.submitted_ms, now_ms))
        if not drop:
            core.on_order_update(o.cloid, oid, status, decimal_to_wire(orig - total), o.sz_wire,
                                 now_ms)

    # ------------------------------------------------------------------ summaries
    def mean_slippage_bps(self, purpose: str | None = None) -> float | None:
        """Size-weighted mean slippage of every fill so far (optionally of one purpose)."""
        num, den = self._slip_all if purpose is None else self._slip.get(purpose, (0.0, 0.0))
        return num / den if den else None


class _Book:
    """The levels one order may take (same side, best first, net of what we took) and their
    source (``l2book`` or ``top_of_book``)."""

    __slots__ = ("levels", "source")

    def __init__(self, levels: list[Level], source: str) -> None:
        self.levels = levels
        self.source = source


def _floor(x: Decimal, decimals: int) -> Decimal:
    return x.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR)


def _walk(book: _Book, is_buy: bool, limit: float, want: Decimal,
          decimals: int) -> list[tuple[float, Decimal]]:
    """Take levels that cross ``limit`` until ``want`` is filled (sizes floored to the lot
    ``10^-decimals``): :func:`engine.core.depth.walk_depth`, the two-leg paper venue's walk
    too, as ``(price, size)``."""
    levels = book.levels
    return [(levels[i][0], take) for i, take in
            walk_depth(levels, is_buy, limit, want, _lot(decimals))]


def _lot(decimals: int) -> Decimal:
    lot = _LOTS.get(decimals)
    if lot is None:
        lot = _LOTS[decimals] = Decimal(1).scaleb(-decimals)
    return lot


_LOTS: dict[int, Decimal] = {}


def _px_wire(px: float) -> str:
    """A price as the venue prints it (plain, at most 8 decimals, no trailing zeros)."""
    return decimal_to_wire(to_decimal(px).quantize(Decimal("1e-8")))
