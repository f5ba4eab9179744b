"""Bybit v5 wire messages → neutral events (:mod:`engine.core.neutral`), and REST answers →
instruments, funding history and errors. Pure and synchronous; no I/O.

Public: ``tickers.{symbol}`` on linear is a snapshot then deltas, where a missing key means
"unchanged": :class:`TickerCache` merges key by key and emits a :class:`FundingQuote` only once
every field it needs is known (never a missing key read as zero). ``orderbook.{depth}.{symbol}``
(spot BBO comes from ``orderbook.1`` on the spot socket: spot tickers carry no bid/ask): a
snapshot resets the book; a delta applies only when ``u == last_u + 1`` (``u == 1`` = service
restart, overwrite), otherwise :class:`BookGap` asks the stream to resubscribe.

Private: ``order`` → :class:`OrderAck` / :class:`OrderDone` / :class:`OrderReject` (reason
enum); ``execution`` → :class:`OrderFill` (``execType`` Trade; a spot buy's fee is in the
coin bought: ``fee_base``, valued in USDT at the fill price in ``fee``) or
:class:`FundingSettlement` (``execType`` Funding, its ``execId`` the settlement id); ``position`` → :class:`PositionUpdate`; ``wallet`` →
:class:`BalanceUpdate`. ``op`` replies (subscribe, ping/pong, auth) → :class:`OpReply`.

REST answers for reconciliation and catch-up: :func:`parse_wallet_coins`
(``/v5/account/wallet-balance``), :func:`parse_position_list` (``/v5/position/list``),
:func:`parse_settlements` (the transaction log's ``SETTLEMENT`` rows: funding paid while the
private socket was down).

Bad input never raises out of :meth:`BybitDecoder.decode`: it comes back as a
:class:`Malformed` item the stream logs (one line each).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Final

import attrs
import msgspec

from engine.core.neutral import (
    BalanceUpdate,
    BookTop,
    FundingQuote,
    FundingRate,
    FundingSettlement,
    Instrument,
    InstrumentKind,
    OrderAck,
    OrderDone,
    OrderFill,
    OrderReject,
    PositionUpdate,
    RejectReason,
    Side,
)

VENUE: Final = "bybit"

CATEGORY_KIND: Final[dict[str, InstrumentKind]] = {
    "spot": InstrumentKind.SPOT,
    "linear": InstrumentKind.LINEAR_PERP,
}
KIND_CATEGORY: Final[dict[InstrumentKind, str]] = {v: k for k, v in CATEGORY_KIND.items()}

ORDER_STATUS_LIVE: Final = frozenset({"Created", "New", "PartiallyFilled", "Untriggered"})
ORDER_STATUS_FILLED: Final = frozenset({"Filled"})
ORDER_STATUS_CANCELED: Final = frozenset(
    {"Cancelled", "Canceled", "PartiallyFilledCanceled", "Deactivated", "Triggered"}
)
ORDER_STATUS_REJECTED: Final = frozenset({"Rejected"})

REJECT_REASONS: Final[dict[str, RejectReason]] = {
    "EC_PostOnlyWillTakeLiquidity": RejectReason.POST_ONLY_WOULD_TAKE,
    "EC_ReduceOnlySetButNotReducing": RejectReason.REDUCE_ONLY,
    "EC_InsufficientBalance": RejectReason.INSUFFICIENT_BALANCE,
    "EC_AvailableBalanceNotEnough": RejectReason.INSUFFICIENT_BALANCE,
    "EC_QtyInvalid": RejectReason.INVALID_QTY,
    "EC_PriceInvalid": RejectReason.INVALID_PRICE,
    "EC_NoImmediateQtyToFill": RejectReason.NO_LIQUIDITY,
    "EC_OrigClOrdIDDoesNotExist": RejectReason.NOT_FOUND,
}
RET_CODE_REASONS: Final[dict[int, RejectReason]] = {
    10001: RejectReason.PARAMETER,
    10002: RejectReason.TIMESTAMP,
    10003: RejectReason.AUTH,
    10004: RejectReason.AUTH,
    10005: RejectReason.AUTH,
    10006: RejectReason.RATE_LIMITED,
    10018: RejectReason.RATE_LIMITED,
    110001: RejectReason.NOT_FOUND,
    170213: RejectReason.NOT_FOUND,
    110007: RejectReason.INSUFFICIENT_BALANCE,
    170131: RejectReason.INSUFFICIENT_BALANCE,
    110017: RejectReason.INVALID_QTY,
    110072: RejectReason.DUPLICATE_CLIENT_ID,
    110094: RejectReason.INVALID_QTY,
}


def reject_reason(ret_code: int | None = None, reject_text: str | None = None) -> RejectReason:
    """The neutral reason for a REST ``retCode`` or an order's ``rejectReason``."""
    if reject_text is not None and reject_text in REJECT_REASONS:
        return REJECT_REASONS[reject_text]
    if ret_code is not None and ret_code in RET_CODE_REASONS:
        return RET_CODE_REASONS[ret_code]
    return RejectReason.VENUE_ERROR if ret_code else RejectReason.UNKNOWN


# -- decoded items that are not neutral events -----------------------------------------------------


@attrs.frozen
class OpReply:
    """A reply to our ``op`` (subscribe/unsubscribe/ping/auth): ``success`` False names why."""

    op: str
    success: bool
    ret_msg: str
    req_id: str


@attrs.frozen
class Malformed:
    """A message the codec could not use; ``reason`` is one log line (no secrets in it)."""

    reason: str
    sample: str


@attrs.frozen
class BookGap:
    """A book delta did not follow the last update id: resubscribe ``topic``."""

    topic: str
    last_u: int
    got_u: int


class CodecError(ValueError):
    """A REST answer the codec cannot use."""


def _f(v: Any) -> float:
    if isinstance(v, bool) or v is None or v == "":
        raise ValueError(f"not a number: {v!r}")
    return float(v)


def _dec(v: Any) -> Decimal:
    if v is None or v == "" or isinstance(v, bool):
        raise ValueError(f"not a decimal: {v!r}")
    try:
        return Decimal(str(v))
    except InvalidOperation:
        raise ValueError(f"not a decimal: {v!r}") from None


def _i(v: Any) -> int:
    if isinstance(v, bool) or v is None or v == "":
        raise ValueError(f"not an integer: {v!r}")
    return int(v)


def _side(v: Any) -> Side:
    if v == "Buy":
        return Side.BUY
    if v == "Sell":
        return Side.SELL
    raise ValueError(f"unknown side {v!r}")


# -- tickers ------------------------------------------------------------------------------------


class TickerCache:
    """Per-symbol merged linear ticker: replace on snapshot, update key by key on delta."""

    __slots__ = ("_state", "_interval_ms")

    def __init__(self) -> None:
        self._state: dict[str, dict[str, Any]] = {}
        self._interval_ms: dict[str, int] = {}

    def set_funding_interval(self, symbol: str, interval_ms: int) -> None:
        """The interval from instruments-info (used when the ticker lacks fundingIntervalHour)."""
        self._interval_ms[symbol] = interval_ms

    def merged(self, symbol: str) -> dict[str, Any] | None:
        state = self._state.get(symbol)
        return dict(state) if state is not None else None

    def apply(self, kind: str, data: dict[str, Any], ts_ms: int) -> FundingQuote | None:
        """Merge one message; the quote when complete, else None. A delta before any snapshot
        is merged too (a missing key stays missing, never zero)."""
        symbol = data.get("symbol")
        if not isinstance(symbol, str):
            raise ValueError("ticker without symbol")
        if kind == "snapshot":
            state = dict(data)
            self._state[symbol] = state
        else:
            state = self._state.setdefault(symbol, {})
            state.update(data)
        return self._quote(symbol, state, ts_ms)

    def _quote(self, symbol: str, s: dict[str, Any], ts_ms: int) -> FundingQuote | None:
        try:
            rate = _f(s.get("fundingRate"))
            next_ms = _i(s.get("nextFundingTime"))
            mark = _f(s.get("markPrice"))
            index = _f(s.get("indexPrice"))
        except ValueError:
            return None
        # instruments-info's fundingInterval (minutes) is exact; the ticker's whole hours are
        # the fallback (and they win when they disagree: the venue changed the interval)
        interval_ms = self._interval_ms.get(symbol, 0)
        hours = s.get("fundingIntervalHour")
        if hours not in (None, ""):
            h_ms = int(float(hours) * 3_600_000)
            if interval_ms == 0 or abs(h_ms - interval_ms) >= 3_600_000:
                interval_ms = h_ms
        bid = s.get("bid1Price")
        ask = s.get("ask1Price")
        return FundingQuote(
            venue=VENUE,
            symbol=symbol,
            rate=rate,
            next_funding_ms=next_ms,
            interval_ms=interval_ms,
            mark=mark,
            index=index,
            bid=float(bid) if bid not in (None, "") else None,
            ask=float(ask) if ask not in (None, "") else None,
            ts_ms=ts_ms,
        )


# -- order books --------------------------------------------------------------------------------


class OrderBook:
    """One ``orderbook.{depth}.{symbol}`` book kept by price (level 1 is snapshot-only)."""

    __slots__ = ("topic", "kind", "symbol", "bids", "asks", "last_u")

    def __init__(self, topic: str, kind: InstrumentKind, symbol: str) -> None:
        self.topic = topic
        self.kind = kind
        self.symbol = symbol
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.last_u = -1

    def apply(self, kind: str, data: dict[str, Any]) -> BookGap | None:
        u = _i(data.get("u"))
        bids = data.get("b") or []
        asks = data.get("a") or []
        if kind == "snapshot" or u == 1:
            self.bids = {float(p): float(q) for p, q in bids if float(q) > 0}
            self.asks = {float(p): float(q) for p, q in asks if float(q) > 0}
            self.last_u = u
            return None
        if self.last_u < 0 or u != self.last_u + 1:
            gap = BookGap(self.topic, self.last_u, u)
            self.last_u = -1
            return gap
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q in levels:
                px, sz = float(p), float(q)
                if sz == 0:
                    side.pop(px, None)
                else:
                    side[px] = sz
        self.last_u = u
        return None

    def top(self, ts_ms: int) -> BookTop:
        bid = max(self.bids) if self.bids else None
        ask = min(self.asks) if self.asks else None
        return BookTop(
            venue=VENUE,
            symbol=self.symbol,
            kind=self.kind,
            bid=bid,
            bid_size=self.bids[bid] if bid is not None else 0.0,
            ask=ask,
            ask_size=self.asks[ask] if ask is not None else 0.0,
            ts_ms=ts_ms,
        )


# -- the decoder --------------------------------------------------------------------------------


class BybitDecoder:
    """Stateful decoder for one or more Bybit sockets (ticker and book state per topic).

    ``book_kind`` is the instrument kind of the books on this decoder's socket (spot books on
    the spot socket, linear books on the linear one)."""

    def __init__(self, book_kind: InstrumentKind = InstrumentKind.LINEAR_PERP) -> None:
        self.tickers = TickerCache()
        self.books: dict[str, OrderBook] = {}
        self.book_kind = book_kind

    def reset_book(self, topic: str) -> None:
        self.books.pop(topic, None)

    def decode(self, raw: str | bytes) -> list[Any]:
        """Every event in one message (possibly none); never raises on bad input."""
        try:
            msg = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            return [Malformed(f"not JSON: {exc}", _sample(raw))]
        if not isinstance(msg, dict):
            return [Malformed("not a JSON object", _sample(raw))]
        try:
            return self._route(msg)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return [Malformed(f"{type(exc).__name__}: {exc}", _sample(raw))]

    def _route(self, msg: dict[str, Any]) -> list[Any]:
        topic = msg.get("topic")
        if topic is None:
            op = msg.get("op")
            if isinstance(op, str):
                ok = msg.get("success")
                return [
                    OpReply(
                        op=op,
                        success=True if ok is None else bool(ok),
                        ret_msg=str(msg.get("ret_msg", "")),
                        req_id=str(msg.get("req_id", "")),
                    )
                ]
            return [Malformed("message with neither topic nor op", _sample(msg))]
        if not isinstance(topic, str):
            return [Malformed("topic is not a string", _sample(msg))]
        if topic.startswith("tickers."):
            data = msg["data"]
            if isinstance(data, list):
                data = data[0]
            ts = _i(msg.get("ts"))
            if "fundingRate" not in data and msg.get("type") == "snapshot" and (
                "bid1Price" not in data
            ):
                return []  # a spot ticker: no funding and no book; spot BBO is orderbook.1
            quote = self.tickers.apply(str(msg.get("type", "snapshot")), data, ts)
            return [quote] if quote is not None else []
        if topic.startswith("orderbook."):
            parts = topic.split(".")
            if len(parts) != 3:
                return [Malformed(f"bad book topic {topic!r}", _sample(msg))]
            book = self.books.get(topic)
            if book is None:
                book = self.books[topic] = OrderBook(topic, self.book_kind, parts[2])
            gap = book.apply(str(msg.get("type")), msg["data"])
            if gap is not None:
                return [gap]
            return [book.top(_i(msg.get("ts")))]
        base = topic.split(".")[0]
        if base == "order":
            return [e for d in msg["data"] if (e := _order_event(d, msg)) is not None]
        if base == "execution":
            return [e for d in msg["data"] if (e := _execution_event(d)) is not None]
        if base == "position":
            return [_position_event(d, msg) for d in msg["data"] if d.get("category") == "linear"]
        if base == "wallet":
            return [ev for d in msg["data"] for ev in _wallet_events(d, msg)]
        return [Malformed(f"unknown topic {topic!r}", _sample(msg))]


def _order_event(d: dict[str, Any], msg: dict[str, Any]) -> Any:
    status = d.get("orderStatus")
    ts = _i(d.get("updatedTime") or msg.get("creationTime"))
    common = {
        "venue": VENUE,
        "symbol": str(d["symbol"]),
        "client_id": str(d.get("orderLinkId", "")),
    }
    if status in ORDER_STATUS_LIVE:
        return OrderAck(venue_order_id=str(d["orderId"]), ts_ms=ts, **common)
    if status in ORDER_STATUS_FILLED or status in ORDER_STATUS_CANCELED:
        cum = d.get("cumExecQty")
        return OrderDone(
            venue_order_id=str(d["orderId"]),
            filled_qty=float(cum) if cum not in (None, "") else 0.0,
            canceled=status not in ORDER_STATUS_FILLED,
            ts_ms=ts,
            **common,
        )
    if status in ORDER_STATUS_REJECTED:
        text = str(d.get("rejectReason", ""))
        # the order update says the order itself was refused (request PLACE)
        return OrderReject(VENUE, common["symbol"], common["client_id"],
                           reject_reason(None, text), text, ts)
    return Malformed(f"unknown orderStatus {status!r}", _sample(d))


def _execution_event(d: dict[str, Any]) -> Any:
    exec_type = d.get("execType")
    kind = CATEGORY_KIND.get(str(d.get("category")))
    if kind is None:
        return Malformed(f"execution in unsupported category {d.get('category')!r}", _sample(d))
    ts = _i(d.get("execTime"))
    if exec_type == "Funding":
        # execFee is the funding fee paid (positive = paid, negative = received)
        fee = _f(d.get("execFee"))
        qty = _f(d.get("execQty"))
        side = _side(d.get("side"))
        return FundingSettlement(
            venue=VENUE,
            symbol=str(d["symbol"]),
            rate=_f(d.get("feeRate")),
            position_size=qty * side.sign,
            amount=-fee,
            ts_ms=ts,
            settlement_id=str(d.get("execId") or ""),
        )
    if exec_type not in ("Trade", "AdlTrade", "BustTrade", "BlockTrade"):
        return None  # Delivery/Settle and others carry no order fill for us
    symbol = str(d["symbol"])
    side = _side(d.get("side"))
    price = _f(d.get("execPrice"))
    fee_raw = _f(d.get("execFee")) if d.get("execFee") not in (None, "") else 0.0
    fee, fee_base = _fill_fee(kind, symbol, side, fee_raw, price, d.get("feeCurrency"))
    return OrderFill(
        venue=VENUE,
        symbol=str(d["symbol"]),
        kind=kind,
        client_id=str(d.get("orderLinkId", "")),
        venue_order_id=str(d["orderId"]),
        trade_id=str(d["execId"]),
        side=side,
        qty=_f(d.get("execQty")),
        price=price,
        fee=fee,
        is_maker=bool(d.get("isMaker", False)),
        ts_ms=ts,
        fee_base=fee_base,
    )


def _fill_fee(kind: InstrumentKind, symbol: str, side: Side, exec_fee: float, price: float,
              fee_currency: Any) -> tuple[float, float]:
    """``(fee in USDT at the fill price, fee kept in the base coin)`` of one execution.

    Bybit charges a spot buy's fee in the coin bought and a spot sell's in the quote coin
    (perps: the settle coin). Newer messages name the coin (``feeCurrency``); recorded mainnet
    ``execution.spot`` frames do not (tests/venues/bybit/fixtures/arbwatch_*), so without it the
    side decides. A fee in a third coin (a fee discount token) changes neither leg and has no
    USDT price here: reported as 0 (the core then books the instrument's rate)."""
    if kind is not InstrumentKind.SPOT:
        return exec_fee, 0.0
    coin = str(fee_currency) if fee_currency not in (None, "") else None
    if coin is None:
        in_base = side is Side.BUY
    elif symbol.endswith(coin):
        in_base = False
    elif symbol.startswith(coin):
        in_base = True
    else:
        return 0.0, 0.0
    if in_base:
        return exec_fee * price, exec_fee
    return exec_fee, 0.0


def _position_event(d: dict[str, Any], msg: dict[str, Any]) -> PositionUpdate:
    size = _f(d.get("size"))
    side = d.get("side")
    signed = -size if side == "Sell" else size
    entry = d.get("entryPrice", d.get("avgPrice"))
    return PositionUpdate(
        venue=VENUE,
        symbol=str(d["symbol"]),
        size=signed,
        entry_price=float(entry) if entry not in (None, "") else 0.0,
        ts_ms=_i(d.get("updatedTime") or msg.get("creationTime")),
    )


def _wallet_events(d: dict[str, Any], msg: dict[str, Any]) -> list[BalanceUpdate]:
    ts = _i(msg.get("creationTime"))
    out = []
    for c in d.get("coin", []):
        out.append(
            BalanceUpdate(
                venue=VENUE,
                coin=str(c["coin"]),
                wallet_balance=_num_or_zero(c.get("walletBalance")),
                equity=_num_or_zero(c.get("equity")),
                available=_num_or_zero(
                    c.get("availableToWithdraw", c.get("walletBalance"))
                ),
                ts_ms=ts,
            )
        )
    return out


def _num_or_zero(v: Any) -> float:
    return float(v) if v not in (None, "") else 0.0


def _sample(raw: Any) -> str:
    text = raw if isinstance(raw, str) else (
        raw.decode("utf-8", "replace") if isinstance(raw, bytes) else repr(raw)
    )
    return text[:200]


# -- REST answers -------------------------------------------------------------------------------


class BybitApiError(Exception):
    """A REST answer with ``retCode != 0`` (or an HTTP error): ``reason`` is neutral."""

    def __init__(self, ret_code: int, ret_msg: str, http_status: int = 200) -> None:
        super().__init__(f"Bybit retCode {ret_code}: {ret_msg}")
        self.ret_code = ret_code
        self.ret_msg = ret_msg
        self.http_status = http_status
        self.reason = reject_reason(ret_code)


def parse_envelope(status: int, body: bytes) -> dict[str, Any]:
    """The ``result`` of a REST answer; raises :class:`BybitApiError` for ``retCode != 0`` or
    an HTTP error (403 = IP rate limit), :class:`CodecError` for an unreadable body."""
    if status == 403:
        raise BybitApiError(10006, "HTTP 403: access too frequent (IP rate limit)", status)
    try:
        msg = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise CodecError(f"HTTP {status}: body is not JSON: {_sample(body)!r}") from None
    if not isinstance(msg, dict) or "retCode" not in msg:
        raise CodecError(f"HTTP {status}: no retCode in answer: {_sample(body)!r}")
    try:
        code = int(msg["retCode"])  # recorded answers carry it as a number or a string
    except (TypeError, ValueError):
        raise CodecError(f"HTTP {status}: retCode {msg['retCode']!r} is not a number") from None
    if code != 0:
        raise BybitApiError(code, str(msg.get("retMsg", "")), status)
    if status != 200:
        raise CodecError(f"HTTP {status} with retCode 0")
    result = msg.get("result")
    return result if isinstance(result, dict) else {}


def parse_instruments(result: dict[str, Any], fee_taker: float = 0.00055,
                      fee_maker: float = 0.0002) -> list[Instrument]:
    """Instruments from ``/v5/market/instruments-info`` (linear or spot)."""
    category = result.get("category")
    kind = CATEGORY_KIND.get(str(category))
    if kind is None:
        raise CodecError(f"instruments-info for unsupported category {category!r}")
    out = []
    for item in result.get("list", []):
        try:
            lot = item["lotSizeFilter"]
            tick = _dec(item["priceFilter"]["tickSize"])
            if kind is InstrumentKind.SPOT:
                step = _dec(lot["basePrecision"])
                min_notional = _dec(lot.get("minOrderAmt", "0"))
                interval_ms = 0
                cap = None
            else:
                step = _dec(lot["qtyStep"])
                min_notional = _dec(lot.get("minNotionalValue", "0"))
                interval_ms = _i(item["fundingInterval"]) * 60_000
                up = item.get("upperFundingRate")
                cap = float(up) if up not in (None, "") else None
            max_qty = lot.get("maxOrderQty")
            out.append(
                Instrument(
                    venue=VENUE,
                    symbol=str(item["symbol"]),
                    kind=kind,
                    tick_size=tick,
                    lot_size=step,
                    min_qty=_dec(lot["minOrderQty"]),
                    min_notional=min_notional,
                    max_qty=_dec(max_qty) if max_qty not in (None, "") else None,
                    funding_interval_ms=interval_ms,
                    funding_cap=cap,
                    taker_fee=fee_taker,
                    maker_fee=fee_maker,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CodecError(
                f"instrument {item.get('symbol')!r}: {type(exc).__name__} {exc}"
            ) from None
    return out


def parse_funding_history(result: dict[str, Any]) -> list[FundingRate]:
    """Settled funding rates from ``/v5/market/funding/history``, oldest first."""
    rows = [
        FundingRate(VENUE, str(r["symbol"]), _f(r["fundingRate"]), _i(r["fundingRateTimestamp"]))
        for r in result.get("list", [])
    ]
    return sorted(rows, key=lambda r: r.ts_ms)


def parse_server_time_ms(result: dict[str, Any]) -> int:
    """Server time in ms from ``/v5/market/time`` (``timeNano`` when present)."""
    nano = result.get("timeNano")
    if nano not in (None, ""):
        return int(nano) // 1_000_000
    return _i(result["timeSecond"]) * 1000


def parse_settlements(result: dict[str, Any]) -> list[FundingSettlement]:
    """Funding payments from ``/v5/account/transaction-log`` (``type=SETTLEMENT`` rows of
    ``category=linear``), oldest first; other rows are skipped. ``funding`` is the wallet's
    change (the docs example: a long at +0.0001 on 100 × 0.3676 shows ``-0.003676``), so it is
    the amount received as is; ``tradeId`` is the payment's id (the stream's ``execId``)."""
    out = []
    for r in result.get("list", []):
        if r.get("type") != "SETTLEMENT" or r.get("category", "linear") != "linear":
            continue
        try:
            side = _side(r.get("side"))
            amount = _f(r.get("funding") if r.get("funding") not in (None, "")
                        else r.get("change"))
            out.append(FundingSettlement(
                venue=VENUE, symbol=str(r["symbol"]), rate=_f(r.get("feeRate")),
                position_size=_f(r.get("size")) * side.sign, amount=amount,
                ts_ms=_i(r.get("transactionTime")), settlement_id=str(r.get("tradeId") or "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise CodecError(f"transaction-log row {r.get('tradeId')!r}: "
                             f"{type(exc).__name__} {exc}") from None
    return sorted(out, key=lambda e: e.ts_ms)


def parse_wallet_coins(result: dict[str, Any]) -> dict[str, Decimal]:
    """Each coin's ``walletBalance`` from ``/v5/account/wallet-balance`` (exact decimals)."""
    out: dict[str, Decimal] = {}
    for acct in result.get("list", []):
        for c in acct.get("coin", []) or []:
            try:
                out[str(c["coin"])] = _dec(c.get("walletBalance") or "0")
            except (KeyError, ValueError) as exc:
                raise CodecError(f"wallet coin {c.get('coin')!r}: {exc}") from None
    return out


def parse_position_list(result: dict[str, Any], ts_ms: int) -> list[PositionUpdate]:
    """``/v5/position/list`` (linear) as signed positions (a flat symbol: size 0)."""
    try:
        return [_position_event(d, {"creationTime": ts_ms}) for d in result.get("list", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"position list: {type(exc).__name__} {exc}") from None


def parse_wallet_balance(result: dict[str, Any], ts_ms: int) -> list[BalanceUpdate]:
    """One :class:`BalanceUpdate` per coin of a ``/v5/account/wallet-balance`` result (the
    same figures as the private ``wallet`` topic, read once by REST); raises
    :class:`CodecError` for a malformed answer."""
    rows = result.get("list")
    if not isinstance(rows, list):
        raise CodecError("wallet-balance result has no list")
    try:
        return [ev for row in rows for ev in _wallet_events(row, {"creationTime": ts_ms})]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CodecError(f"malformed wallet-balance result: {exc}") from None


def parse_fee_rates(result: dict[str, Any]) -> dict[str, tuple[Decimal, Decimal]]:
    """``/v5/account/fee-rate``: each symbol's ``(takerFeeRate, makerFeeRate)`` as exact
    decimals. A malformed answer raises :class:`CodecError` naming the field (a rate must be a
    decimal in ``[-1, 1]``: Bybit quotes rebates as negative maker rates)."""
    rows = result.get("list") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        raise CodecError("fee-rate result: field 'list' missing or not a list")
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise CodecError(f"fee-rate list[{i}]: not an object")
        symbol = row.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise CodecError(f"fee-rate list[{i}]: field 'symbol' missing or empty")
        rates: list[Decimal] = []
        for name in ("takerFeeRate", "makerFeeRate"):
            try:
                rate = _dec(row.get(name))
            except ValueError:
                raise CodecError(f"fee-rate {symbol}: field {name!r} is not a decimal: "
                                 f"{repr(row.get(name))[:60]}") from None
            if not rate.is_finite() or not -1 <= rate <= 1:
                raise CodecError(f"fee-rate {symbol}: field {name!r} out of range: {rate}")
            rates.append(rate)
        out[symbol] = (rates[0], rates[1])
    return out
