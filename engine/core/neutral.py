"""Venue-neutral value types: instruments, market events, order events and order intents.

A venue adapter (``engine/venues/<venue>/``) turns its wire messages into these events; a
strategy consumes events and produces intents; an execution backend turns intents into wire
requests. Nothing here knows a venue's dialect: status words and reject strings are mapped to
:class:`RejectReason` by the adapter. All times are epoch milliseconds supplied by the caller
(injected clock); all types are frozen attrs classes, cheap to compare and to journal.
"""

from __future__ import annotations

import enum
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_UP, Decimal
from typing import Protocol

import attrs


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class InstrumentKind(enum.Enum):
    SPOT = "spot"
    LINEAR_PERP = "linear_perp"


@attrs.frozen
class Instrument:
    """One tradable instrument with its own rounding rules (tick, lot, minimums) and fees.

    ``funding_interval_ms`` is the venue's own funding period for a perpetual (0 for spot):
    never assume 8 h."""

    venue: str
    symbol: str
    kind: InstrumentKind
    tick_size: Decimal
    lot_size: Decimal
    min_qty: Decimal
    min_notional: Decimal = Decimal(0)
    max_qty: Decimal | None = None
    funding_interval_ms: int = 0
    funding_cap: float | None = None
    taker_fee: float = 0.00055
    maker_fee: float = 0.0002

    def round_qty(self, qty: float) -> Decimal:
        """``qty`` rounded down to the lot (never more than asked)."""
        q = Decimal(repr(abs(qty)))
        return (q / self.lot_size).to_integral_value(rounding=ROUND_DOWN) * self.lot_size

    def round_price(self, px: float, side: Side | None = None) -> Decimal:
        """``px`` on the tick: down for a buy, up for a sell (never more aggressive than asked),
        to nearest when ``side`` is None."""
        p = Decimal(repr(px))
        mode = ROUND_HALF_EVEN if side is None else (ROUND_DOWN if side is Side.BUY else ROUND_UP)
        return (p / self.tick_size).to_integral_value(rounding=mode) * self.tick_size

    def rounding(self) -> TickLotRounding:
        """This instrument's :class:`OrderRounding` (tick, lot, minimum quantity and value)."""
        return TickLotRounding(self.tick_size, self.lot_size, self.min_qty, self.min_notional)

    def tradable(self, qty: Decimal, px: float) -> bool:
        """Whether ``qty`` at ``px`` meets the minimum quantity and notional."""
        if qty < self.min_qty or qty <= 0:
            return False
        if self.max_qty is not None and qty > self.max_qty:
            return False
        return float(qty) * px >= float(self.min_notional)


class OrderRounding(Protocol):
    """An instrument's price and size rule for marketable (IOC) orders, as wire strings.

    The trading core rounds every order through its instrument's rule and knows no venue's
    grid: Hyperliquid's (5 significant figures and ``szDecimals``) is
    ``engine.venues.hyperliquid.rounding.HyperliquidRounding``; a plain tick/lot venue's is
    :class:`TickLotRounding`. ``min_notional`` is the venue's minimum order value (quote)."""

    min_notional: float

    def ioc_limit_price(self, best_px: float, is_buy: bool, slippage: float) -> str | None:
        """A limit ``slippage`` beyond ``best_px`` on the grid (buy up, sell down: stays
        marketable), or ``None`` when there is none."""
        ...

    def ioc_wire(self, is_buy: bool, px_wire: str, sz: float) -> tuple[str, str] | enum.Enum:
        """``(price, size)`` wire strings for an order at the valid ``px_wire`` of ``sz``
        floored to the lot, or the reason (an enum member) it must not be sent (zero size,
        below the minimum value at the price sent)."""
        ...

    def lot_size_wire(self, sz: float) -> str | None:
        """``sz`` floored to the lot as a wire string (``None``: zero)."""
        ...

    def min_notional_sell_px(self, px_wire: str, sz_wire: str, cap_px: float) -> str:
        """A sell limit raised (not above ``cap_px``) until ``px × sz`` meets the minimum,
        else ``px_wire`` unchanged."""
        ...


class TickRefusal(enum.Enum):
    """Why :meth:`TickLotRounding.ioc_wire` produced no order."""

    ZERO_SIZE = "zero_size"
    BELOW_MIN_NOTIONAL = "below_min_notional"


def _wire(d: Decimal) -> str:
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


@attrs.frozen(slots=True)
class TickLotRounding:
    """:class:`OrderRounding` for a venue whose prices are multiples of a tick and sizes of a
    lot (Bybit and most venues): exact Decimal arithmetic on the float's shortest repr."""

    tick_size: Decimal
    lot_size: Decimal
    min_qty: Decimal = Decimal(0)
    min_notional_d: Decimal = Decimal(0)

    @property
    def min_notional(self) -> float:
        return float(self.min_notional_d)

    def _px(self, px: Decimal, up: bool) -> Decimal:
        mode = ROUND_CEILING if up else ROUND_FLOOR
        return (px / self.tick_size).to_integral_value(rounding=mode) * self.tick_size

    def _lots(self, sz: float) -> Decimal:
        q = Decimal(repr(abs(sz)))
        return (q / self.lot_size).to_integral_value(rounding=ROUND_DOWN) * self.lot_size

    def ioc_limit_price(self, best_px: float, is_buy: bool, slippage: float) -> str | None:
        best, slip = Decimal(repr(best_px)), Decimal(repr(slippage))
        if best <= 0:
            return None
        target = best * (1 + slip) if is_buy else best * (1 - slip)
        r = self._px(target, up=is_buy)
        if r <= 0:
            r = self.tick_size
        if (is_buy and r < best) or (not is_buy and r > best):
            return None
        return _wire(r)

    def ioc_wire(self, is_buy: bool, px_wire: str, sz: float) -> tuple[str, str] | enum.Enum:
        qty = self._lots(sz)
        if qty <= 0 or qty < self.min_qty:
            return TickRefusal.ZERO_SIZE
        if Decimal(px_wire) * qty < self.min_notional_d:
            return TickRefusal.BELOW_MIN_NOTIONAL
        return _wire(Decimal(px_wire)), _wire(qty)

    def lot_size_wire(self, sz: float) -> str | None:
        qty = self._lots(sz)
        return _wire(qty) if qty > 0 else None

    def min_notional_sell_px(self, px_wire: str, sz_wire: str, cap_px: float) -> str:
        px, sz = Decimal(px_wire), Decimal(sz_wire)
        if sz <= 0 or px * sz >= self.min_notional_d:
            return px_wire
        need = self._px(self.min_notional_d / sz, up=True)
        return px_wire if need > Decimal(repr(cap_px)) else _wire(need)


# -- market events -------------------------------------------------------------------------------


@attrs.frozen
class FundingQuote:
    """A perpetual's current funding state and prices (a merged ticker, never a partial one).

    ``rate`` is the rate that settles at ``next_funding_ms``; ``interval_ms`` is the venue's
    funding period for this symbol (0 when the venue did not say)."""

    venue: str
    symbol: str
    rate: float
    next_funding_ms: int
    interval_ms: int
    mark: float
    index: float
    bid: float | None
    ask: float | None
    ts_ms: int


@attrs.frozen
class FundingRate:
    """One settled funding rate from the venue's history (``ts_ms`` = settlement time)."""

    venue: str
    symbol: str
    rate: float
    ts_ms: int


@attrs.frozen(slots=True)
class OracleUpdate:
    """A perpetual's oracle (index) and mark price as the venue published them."""

    venue: str
    symbol: str
    oracle_px: float
    mark_px: float | None
    ts_ms: int


@attrs.frozen
class BookTop:
    """Best bid and ask of one instrument (``None`` for an empty side)."""

    venue: str
    symbol: str
    kind: InstrumentKind
    bid: float | None
    bid_size: float
    ask: float | None
    ask_size: float
    ts_ms: int

    @property
    def mid(self) -> float | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2.0


# -- order events --------------------------------------------------------------------------------


class RejectReason(enum.Enum):
    """Why a venue refused an order or request, in the core's own words."""

    INSUFFICIENT_BALANCE = "insufficient_balance"
    POST_ONLY_WOULD_TAKE = "post_only_would_take"
    REDUCE_ONLY = "reduce_only"
    INVALID_QTY = "invalid_qty"
    INVALID_PRICE = "invalid_price"
    DUPLICATE_CLIENT_ID = "duplicate_client_id"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    TIMESTAMP = "timestamp"
    PARAMETER = "parameter"
    NO_LIQUIDITY = "no_liquidity"
    BELOW_MIN_NOTIONAL = "below_min_notional"
    ZERO_SIZE = "zero_size"
    VENUE_ERROR = "venue_error"
    UNKNOWN = "unknown"


@attrs.frozen
class OrderAck:
    """The venue accepted the order (live, possibly partly filled later)."""

    venue: str
    symbol: str
    client_id: str
    venue_order_id: str
    ts_ms: int


@attrs.frozen
class OrderFill:
    """One execution. ``trade_id`` is unique per fill: count each once.

    ``fee`` is the fee's value in the quote coin (USDT) at the fill price, whatever coin it was
    charged in. ``fee_base`` is the part charged in the *base* coin (Bybit takes a spot buy's
    fee from the coin bought: ``qty × (1 − rate)`` arrives): the position grows by
    ``qty − fee_base``, never by ``qty``. 0 when the fee is charged in the quote coin."""

    venue: str
    symbol: str
    kind: InstrumentKind
    client_id: str
    venue_order_id: str
    trade_id: str
    side: Side
    qty: float
    price: float
    fee: float
    is_maker: bool
    ts_ms: int
    fee_base: float = 0.0


@attrs.frozen
class OrderDone:
    """The order is over: filled, canceled (possibly after fills) or expired.
    ``filled_qty`` is the venue's cumulative figure (merge with ``max``, never add)."""

    venue: str
    symbol: str
    client_id: str
    venue_order_id: str
    filled_qty: float
    canceled: bool
    ts_ms: int


class OrderRequest(enum.Enum):
    """Which of our requests about an order a refusal answers."""

    PLACE = "place"
    AMEND = "amend"
    CANCEL = "cancel"


@attrs.frozen
class OrderReject:
    """The venue refused the order (``request`` PLACE, and an order update saying it was
    rejected), or refused a request about it (AMEND, CANCEL): then the order itself was not
    refused and is as it was (a cancel refused NOT_FOUND: no longer live at the venue)."""

    venue: str
    symbol: str
    client_id: str
    reason: RejectReason
    detail: str
    ts_ms: int
    request: OrderRequest = OrderRequest.PLACE


@attrs.frozen(slots=True)
class OrderReport:
    """What a venue said about one of our orders, in the order machine's words.

    An adapter builds one per venue message about an order (post answer, order update, status
    query); the core applies it (:meth:`engine.core.trading.TradingCore.on_order_report`).
    ``event`` is a venue event of :mod:`fsm.order` (``ack_resting``, ``fill_partial``,
    ``fill_complete``, ``cancel_confirmed``, ``reject``, ``expire``, ``lose_contact``,
    ``resolve_not_found``), or ``None`` when the message says nothing about the order's state
    (an unreadable status answer: still unknown, ask again). ``filled_qty`` is the venue's
    cumulative filled size (merged with ``max``, never added), ``reason`` the neutral reason of
    a refusal with ``message`` the venue's own text (kept verbatim for the operator and the
    journal); ``why`` names the message for the journal; ``unrecognized`` marks a status the
    adapter does not know (mapped fail-safe, worth a warning).
    """

    event: str | None
    why: str
    venue_order_id: int | None = None
    filled_qty: float | None = None
    avg_px: float | None = None
    reason: RejectReason | None = None
    message: str | None = None
    unrecognized: bool = False


@attrs.frozen
class PositionUpdate:
    """The venue's view of one perpetual position (signed size: + long, − short)."""

    venue: str
    symbol: str
    size: float
    entry_price: float
    ts_ms: int


@attrs.frozen
class FundingSettlement:
    """A funding payment on a perpetual position (``amount`` > 0 received, < 0 paid).

    ``settlement_id`` is the venue's id of this payment (Bybit: the ``execId`` of the
    ``execType=Funding`` execution, the ``tradeId`` of the transaction log's ``SETTLEMENT``
    row): the same payment seen twice (the stream, then a catch-up after an outage) is booked
    once. Empty when the source has none."""

    venue: str
    symbol: str
    rate: float
    position_size: float
    amount: float
    ts_ms: int
    settlement_id: str = ""


@attrs.frozen
class BalanceUpdate:
    """Wallet figures in the settlement coin."""

    venue: str
    coin: str
    wallet_balance: float
    equity: float
    available: float
    ts_ms: int


# -- intents -------------------------------------------------------------------------------------


@attrs.frozen
class PlaceOrder:
    """Send a new order. ``client_id`` is generated once per intent and reused on every retry."""

    venue: str
    symbol: str
    kind: InstrumentKind
    side: Side
    qty: Decimal
    client_id: str
    price: Decimal | None = None  # None = market
    post_only: bool = False
    ioc: bool = False
    reduce_only: bool = False


@attrs.frozen
class AmendOrder:
    venue: str
    symbol: str
    kind: InstrumentKind
    client_id: str
    qty: Decimal | None = None
    price: Decimal | None = None


@attrs.frozen
class CancelOrder:
    venue: str
    symbol: str
    kind: InstrumentKind
    client_id: str


@attrs.frozen
class CancelAll:
    venue: str
    kind: InstrumentKind
    symbol: str | None = None
