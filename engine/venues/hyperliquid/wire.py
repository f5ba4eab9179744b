"""Hyperliquid WebSocket wire codec: owns the message shapes, the fast decode path and encoders.

Server → client frames are ``{"channel": <str>, "data": <any>}`` (``pong`` has no ``data``);
shapes follow docs/reference/hyperliquid-protocol.md §2–§4. :class:`WireDecoder` turns one text frame
into one small event (or ``None`` when the frame is ignored) with a single msgspec typed decode
of a tagged union on ``channel``:

* ``bbo`` → :class:`BboEvent`: floats; an empty (``null``) side, or a side with px ≤ 0 or
  sz ≤ 0, becomes ``None`` for both px and sz (never price 0); non-finite numbers are malformed.
* ``activeAssetCtx`` → :class:`CtxEvent`: ``oracle_px`` must be finite and > 0 (else
  malformed); ``mark_px`` is ``None`` when absent/null/≤ 0. Extra ctx fields are ignored.
* ``subscriptionResponse`` → :class:`SubAckEvent` (type read from ``data.subscription.type``,
  ``data.method`` must be ``subscribe``/``unsubscribe``: pitfall P1).
* ``pong`` → :data:`PONG`; ``post`` → :class:`PostEvent`; ``error`` → :class:`ErrorEvent`.
* ``orderUpdates`` → :class:`OrderUpdatesEvent`: ``data`` is always an array of WsOrder (P2; an
  empty array is valid). Each element is decoded on its own: a bad element is counted
  (``bad_elements``), logged rate-limited and skipped, the rest are kept. Sizes and prices stay
  the exact wire strings (:class:`OrderUpdate`).
* ``userFills`` → :class:`UserFillsEvent`: ``{"isSnapshot"?: true, "user", "fills": [...]}``
  with ``isSnapshot`` optional, default false (P15/P16); fills decoded one by one like order
  updates (:class:`UserFill`, extra fields accepted). Neither user channel is on the hot path.
* ``l2Book`` (only with ``WireDecoder(l2book=True)``; otherwise an unknown channel) →
  :class:`L2BookEvent`: ``levels`` is ``[bids, asks]``, each ``[{px, sz, n}, ...]`` best first
  (docs/reference/hyperliquid-protocol.md §3.2). A level with a px or sz that is not finite and > 0 makes the frame
  malformed; levels out of order (bids not strictly falling, asks not strictly rising) or a
  crossed book (best bid ≥ best ask) are rejected (``l2_rejected``) by :func:`check_l2_levels`.
  Each kind of l2Book problem is logged at most once a minute (with a suppressed count).

Anything else is counted in :class:`WireStats` and skipped, never raised: the plain-text
greeting ``Websocket connection established.`` and other text that is not JSON at all
(``non_json``; anything but the greeting is also logged, rate-limited), a JSON frame on a
channel we do not decode (``unknown_channel``, per name, logged once per name), and broken
JSON (starts with ``{``/``[`` but does not parse, e.g. truncated) or a frame of a known channel
with a bad shape or values (``malformed``, logged rate-limited with a truncated excerpt). The typed decode is tried first; the generic decode only runs on failure.

Encoders build client → server messages (§2.2, §2.3, §4.1) with msgspec, which keeps dict key
order (the order of a signed action must be preserved: pitfall P30).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs
import msgspec

from engine.venues.hyperliquid.ratelog import RateLimitedLog, excerpt

log = logging.getLogger(__name__)

GREETING: Final = "Websocket connection established."
CH_BBO: Final = "bbo"
CH_CTX: Final = "activeAssetCtx"
CH_SUB: Final = "subscriptionResponse"
CH_PONG: Final = "pong"
CH_POST: Final = "post"
CH_ERROR: Final = "error"
CH_ORDER_UPDATES: Final = "orderUpdates"
CH_USER_FILLS: Final = "userFills"
CH_L2BOOK: Final = "l2Book"
KNOWN_CHANNELS: Final = frozenset(
    {CH_BBO, CH_CTX, CH_SUB, CH_PONG, CH_POST, CH_ERROR, CH_ORDER_UPDATES, CH_USER_FILLS}
)
MAX_UNKNOWN_CHANNEL_NAMES: Final = 64
L2_LOG_INTERVAL_S: Final = 60.0
_INF: Final = float("inf")


# --------------------------------------------------------------------------- wire shapes
# Numbers arrive as decimal strings; the decoder runs with strict=False so msgspec converts
# "112.88" to a float in C. Unknown fields are ignored (P16: accept extra fields).


class _Level(msgspec.Struct, gc=False):
    px: float
    sz: float
    n: int = 0


class _BboData(msgspec.Struct, gc=False):
    coin: str
    time: int
    bbo: tuple[_Level | None, _Level | None]


class _BboMsg(msgspec.Struct, tag_field="channel", tag=CH_BBO, gc=False):
    data: _BboData


class _Ctx(msgspec.Struct, gc=False):
    oraclePx: float
    markPx: float | None = None


class _CtxData(msgspec.Struct, gc=False):
    coin: str
    ctx: _Ctx


class _CtxMsg(msgspec.Struct, tag_field="channel", tag=CH_CTX, gc=False):
    data: _CtxData


class _Subscription(msgspec.Struct, gc=False):
    type: str
    coin: str | None = None
    user: str | None = None


class _SubData(msgspec.Struct, gc=False):
    method: Literal["subscribe", "unsubscribe"]
    subscription: _Subscription


class _SubMsg(msgspec.Struct, tag_field="channel", tag=CH_SUB, gc=False):
    data: _SubData


class _PongMsg(msgspec.Struct, tag_field="channel", tag=CH_PONG, gc=False):
    pass


class _PostResponse(msgspec.Struct):
    type: str
    payload: Any = None


class _PostData(msgspec.Struct):
    id: int
    response: _PostResponse


class _PostMsg(msgspec.Struct, tag_field="channel", tag=CH_POST):
    data: _PostData


class _ErrorMsg(msgspec.Struct, tag_field="channel", tag=CH_ERROR):
    data: Any = None


class _OrderUpdatesMsg(msgspec.Struct, tag_field="channel", tag=CH_ORDER_UPDATES):
    data: list[msgspec.Raw]


class _UserFillsData(msgspec.Struct):
    fills: list[msgspec.Raw]
    isSnapshot: bool = False
    user: str | None = None


class _UserFillsMsg(msgspec.Struct, tag_field="channel", tag=CH_USER_FILLS):
    data: _UserFillsData


class _L2Data(msgspec.Struct):
    coin: str
    time: int
    levels: tuple[list[_Level], list[_Level]]


class _L2Msg(msgspec.Struct, tag_field="channel", tag=CH_L2BOOK):
    data: _L2Data


_WireMsg = (
    _BboMsg | _CtxMsg | _SubMsg | _PongMsg | _PostMsg | _ErrorMsg | _OrderUpdatesMsg | _UserFillsMsg
)
_WireMsgL2 = _WireMsg | _L2Msg


# user-channel elements (decoded one by one, strictly: a wrong type is a bad element)


class _WsOrderBody(msgspec.Struct):
    coin: str
    side: Literal["B", "A"]
    sz: str
    oid: int
    origSz: str
    limitPx: str | None = None
    timestamp: int | None = None
    cloid: str | None = None
    reduceOnly: bool = False


class _WsOrder(msgspec.Struct):
    order: _WsOrderBody
    status: str
    statusTimestamp: int | None = None


# --------------------------------------------------------------------------- events


class BboEvent(msgspec.Struct, gc=False):
    """Best bid/offer of one coin; a side is ``None`` (px and sz) when empty or invalid."""

    coin: str
    time_ms: int
    bid_px: float | None
    bid_sz: float | None
    ask_px: float | None
    ask_sz: float | None


class CtxEvent(msgspec.Struct, gc=False):
    """Asset context of one coin: oracle price (finite, > 0) and mark price (or ``None``)."""

    coin: str
    oracle_px: float
    mark_px: float | None


class SubAckEvent(msgspec.Struct, gc=False):
    """Acknowledgement of a (un)subscribe; ``sub_type`` from ``data.subscription.type``
    (``user`` is set for user channels such as ``orderUpdates``)."""

    method: str
    sub_type: str
    coin: str | None
    user: str | None = None


class PongEvent(msgspec.Struct, gc=False):
    """The answer to ``{"method":"ping"}``."""


PONG: Final = PongEvent()


class PostEvent(msgspec.Struct):
    """The answer to post ``id``: ``response`` is ``{"type": ..., "payload": ...}``."""

    id: int
    response_type: str
    payload: Any

    @property
    def response(self) -> dict[str, Any]:
        return {"type": self.response_type, "payload": self.payload}


class ErrorEvent(msgspec.Struct):
    """A message on the ``error`` channel (its ``data`` is normally a string)."""

    message: str


class OrderUpdate(msgspec.Struct, frozen=True, gc=False):
    """One element of an ``orderUpdates`` array (flattened WsOrder; wire strings kept exact).

    ``sz`` is the remaining size, ``orig_sz`` the original; ``side`` is ``"B"`` (buy) or ``"A"``.
    """

    coin: str
    side: str
    sz: str
    orig_sz: str
    oid: int
    status: str
    cloid: str | None = None
    limit_px: str | None = None
    timestamp: int | None = None
    status_timestamp: int | None = None
    reduce_only: bool = False

    @property
    def is_buy(self) -> bool:
        return self.side == "B"


class UserFill(msgspec.Struct, frozen=True, rename="camel"):
    """One fill of a ``userFills`` message (wire names in camelCase; extra fields ignored).

    ``tid`` is unique per trade (deduplicate by it, D1); ``px``/``sz``/``fee`` are the exact wire
    strings (``px``, ``sz`` > 0; ``fee`` may be negative); ``side`` is ``"B"`` or ``"A"``.
    """

    coin: str
    px: str
    sz: str
    side: Literal["B", "A"]
    time: int
    oid: int
    tid: int
    fee: str
    cloid: str | None = None
    crossed: bool | None = None
    dir: str | None = None
    closed_pnl: str | None = None
    start_position: str | None = None
    hash: str | None = None
    fee_token: str | None = None
    twap_id: int | None = None
    builder_fee: str | None = None
    liquidation: dict[str, Any] | None = None

    @property
    def is_buy(self) -> bool:
        return self.side == "B"


class L2BookEvent(msgspec.Struct):
    """An ``l2Book`` frame: ``(px, sz)`` levels best first, validated (finite, > 0, sorted,
    not crossed); ``time_ms`` is the frame's ``time``."""

    coin: str
    time_ms: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


class OrderUpdatesEvent(msgspec.Struct):
    """An ``orderUpdates`` frame: the elements that decoded (``bad`` were skipped)."""

    updates: list[OrderUpdate]
    bad: int = 0


class UserFillsEvent(msgspec.Struct):
    """A ``userFills`` frame: ``is_snapshot`` (history, P17) and the fills that decoded."""

    fills: list[UserFill]
    is_snapshot: bool
    user: str | None
    bad: int = 0


Event = (
    BboEvent
    | CtxEvent
    | SubAckEvent
    | PongEvent
    | PostEvent
    | ErrorEvent
    | OrderUpdatesEvent
    | UserFillsEvent
    | L2BookEvent
)

_UNSIGNED_DEC: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_SIGNED_DEC: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


@attrs.define(slots=True)
class WireStats:
    """Counters kept by :class:`WireDecoder` (the feed's stats object extends this)."""

    frames_total: int = 0
    frames_by_channel: dict[str, int] = attrs.Factory(
        lambda: dict.fromkeys(sorted(KNOWN_CHANNELS), 0)
    )
    malformed: int = 0
    bad_elements: int = 0  # user-channel array elements skipped (the rest of the frame is kept)
    unknown_channel: int = 0
    unknown_by_channel: dict[str, int] = attrs.Factory(dict)
    non_json: int = 0
    l2_rejected: int = 0  # l2Book frames with unsorted or crossed levels (shape errors: malformed)


def check_l2_levels(
    bids: list[tuple[float, float]], asks: list[tuple[float, float]]
) -> str | None:
    """Why these l2Book levels are unusable (``None``: they are fine).

    Every px and sz must be finite and > 0; bids strictly falling, asks strictly rising (best
    first); best bid < best ask. The first word of the answer is the kind (``bad``,
    ``unsorted``, ``crossed``).
    """
    for side, levels in (("bid", bids), ("ask", asks)):
        for px, sz in levels:
            if not (0.0 < px < _INF and 0.0 < sz < _INF):
                return f"bad {side} level px={px!r} sz={sz!r} (must be finite and > 0)"
    for i in range(1, len(bids)):
        if not bids[i][0] < bids[i - 1][0]:
            return f"unsorted bids: {bids[i - 1][0]!r} then {bids[i][0]!r} (must fall)"
    for i in range(1, len(asks)):
        if not asks[i][0] > asks[i - 1][0]:
            return f"unsorted asks: {asks[i - 1][0]!r} then {asks[i][0]!r} (must rise)"
    if bids and asks and bids[0][0] >= asks[0][0]:
        return f"crossed book: best bid {bids[0][0]!r} >= best ask {asks[0][0]!r}"
    return None


# --------------------------------------------------------------------------- decoder


class WireDecoder:
    """Decode server text frames into events; count and log (rate-limited) what it skips."""

    __slots__ = (
        "stats",
        "_decode",
        "_generic",
        "_rlog",
        "_fbc",
        "_order_dec",
        "_fill_dec",
        "_known",
        "_l2log",
    )

    def __init__(
        self,
        stats: WireStats | None = None,
        *,
        rlog: RateLimitedLog | None = None,
        l2book: bool = False,
    ):
        """``l2book``: decode ``l2Book`` frames (else they count as an unknown channel)."""
        self.stats = stats if stats is not None else WireStats()
        union: Any = _WireMsgL2 if l2book else _WireMsg
        self._decode = msgspec.json.Decoder(union, strict=False).decode
        self._generic = msgspec.json.Decoder().decode
        self._order_dec = msgspec.json.Decoder(_WsOrder).decode
        self._fill_dec = msgspec.json.Decoder(UserFill).decode
        self._rlog = rlog if rlog is not None else RateLimitedLog(log)
        self._l2log = RateLimitedLog(log, interval_s=L2_LOG_INTERVAL_S, burst=1)
        self._known = KNOWN_CHANNELS | {CH_L2BOOK} if l2book else KNOWN_CHANNELS
        fbc = self.stats.frames_by_channel
        for ch in self._known:
            fbc.setdefault(ch, 0)
        self._fbc = fbc

    def decode(self, text: str | bytes) -> Event | None:
        """Return the event carried by ``text``, or ``None`` if it was counted and skipped."""
        stats = self.stats
        stats.frames_total += 1
        try:
            msg = self._decode(text)
        except msgspec.DecodeError as exc:  # ValidationError is a subclass
            self._classify_failure(text, exc)
            return None
        t = type(msg)
        if t is _BboMsg:
            d = msg.data
            b, a = d.bbo
            bp: float | None
            bs: float | None
            ap: float | None
            asz: float | None
            if b is None:
                bp = bs = None
            else:
                bp = b.px
                bs = b.sz
                if not (0.0 < bp < _INF and 0.0 < bs < _INF):
                    if bp - bp != 0.0 or bs - bs != 0.0:  # nan or inf
                        self._malformed(text, "non-finite bid")
                        return None
                    bp = bs = None
            if a is None:
                ap = asz = None
            else:
                ap = a.px
                asz = a.sz
                if not (0.0 < ap < _INF and 0.0 < asz < _INF):
                    if ap - ap != 0.0 or asz - asz != 0.0:
                        self._malformed(text, "non-finite ask")
                        return None
                    ap = asz = None
            self._fbc[CH_BBO] += 1
            return BboEvent(d.coin, d.time, bp, bs, ap, asz)
        if t is _CtxMsg:
            cd = msg.data
            ctx = cd.ctx
            oracle = ctx.oraclePx
            if not 0.0 < oracle < _INF:
                self._malformed(text, "oraclePx not finite and > 0")
                return None
            mark = ctx.markPx
            if mark is not None and not 0.0 < mark < _INF:
                if mark - mark != 0.0:
                    self._malformed(text, "markPx not finite")
                    return None
                mark = None
            self._fbc[CH_CTX] += 1
            return CtxEvent(cd.coin, oracle, mark)
        return self._other(msg, text)

    # -- the router's fast path (FrameRouter.dispatcher): it decodes with ``raw_decode``
    # and handles a valid bbo / ctx message itself (the checks of decode() above, and the
    # same counters); any other decoded message goes to decoded(), anything else (a bbo or
    # ctx it does not take, a decode failure) to decode() again.

    @property
    def raw_decode(self) -> Any:
        """The typed msgspec decode of :meth:`decode` (raises ``msgspec.DecodeError``);
        its result's type is one of :attr:`FAST_TYPES` or a message for :meth:`decoded`."""
        return self._decode

    #: the message types of a ``bbo`` and an ``activeAssetCtx`` frame, as ``raw_decode``
    #: returns them (fields: ``data.coin``, ``data.time``, ``data.bbo`` (two levels or None,
    #: each ``px``, ``sz``); ``data.coin``, ``data.ctx.oraclePx``, ``data.ctx.markPx``)
    FAST_TYPES: Final = (_BboMsg, _CtxMsg)

    def decoded(self, msg: Any, text: str | bytes) -> Event | None:
        """What :meth:`decode` returns for ``text`` when ``raw_decode(text)`` gave ``msg``,
        for a message that is not one of :attr:`FAST_TYPES` (counted the same way)."""
        self.stats.frames_total += 1
        return self._other(msg, text)

    def _other(self, msg: Any, text: str | bytes) -> Event | None:
        """:meth:`decode` for every message type but bbo and ctx."""
        t = type(msg)
        if t is _SubMsg:
            sd = msg.data
            self._fbc[CH_SUB] += 1
            sub = sd.subscription
            return SubAckEvent(sd.method, sub.type, sub.coin, sub.user)
        if t is _PongMsg:
            self._fbc[CH_PONG] += 1
            return PONG
        if t is _PostMsg:
            pd = msg.data
            self._fbc[CH_POST] += 1
            return PostEvent(pd.id, pd.response.type, pd.response.payload)
        if t is _OrderUpdatesMsg:
            self._fbc[CH_ORDER_UPDATES] += 1
            return self._order_updates(msg.data)
        if t is _UserFillsMsg:
            self._fbc[CH_USER_FILLS] += 1
            fd = msg.data
            fills, bad = self._user_fills(fd.fills)
            return UserFillsEvent(fills, fd.isSnapshot, fd.user, bad)
        if t is _L2Msg:
            return self._l2book(text, msg.data)
        # _ErrorMsg
        data = msg.data
        self._fbc[CH_ERROR] += 1
        return ErrorEvent(data if isinstance(data, str) else msgspec.json.encode(data).decode())

    # -- l2Book: validated as a whole (one bad level spoils the snapshot)

    def _l2book(self, text: str | bytes, d: _L2Data) -> L2BookEvent | None:
        bids = [(lv.px, lv.sz) for lv in d.levels[0]]
        asks = [(lv.px, lv.sz) for lv in d.levels[1]]
        why = check_l2_levels(bids, asks)
        if why is not None:
            kind = why.split(" ", 1)[0]
            if kind == "bad":
                self.stats.malformed += 1
                self._l2_problem("malformed", f"{d.coin}: {why}", text)
            else:
                self.stats.l2_rejected += 1
                self._l2_problem(kind, f"{d.coin}: {why}", text)
            return None
        self._fbc[CH_L2BOOK] += 1
        return L2BookEvent(d.coin, d.time, bids, asks)

    def _l2_problem(self, kind: str, why: str, text: str | bytes) -> None:
        self._l2log.log(
            f"l2:{kind}",
            logging.WARNING,
            "l2Book frame rejected (%s): %s; frame %s",
            kind,
            why,
            excerpt(_as_text(text)),
        )

    # -- user channels: one element at a time, a bad one is counted and skipped

    def _order_updates(self, raws: list[msgspec.Raw]) -> OrderUpdatesEvent:
        out: list[OrderUpdate] = []
        bad = 0
        dec = self._order_dec
        for raw in raws:
            try:
                u = dec(raw)
            except msgspec.DecodeError as exc:
                bad += 1
                self._bad_element(CH_ORDER_UPDATES, raw, str(exc))
                continue
            o = u.order
            if (
                _UNSIGNED_DEC.fullmatch(o.sz) is None
                or _UNSIGNED_DEC.fullmatch(o.origSz) is None
                or not u.status
            ):
                bad += 1
                self._bad_element(CH_ORDER_UPDATES, raw, "sz/origSz not decimals or empty status")
                continue
            out.append(
                OrderUpdate(
                    o.coin,
                    o.side,
                    o.sz,
                    o.origSz,
                    o.oid,
                    u.status,
                    o.cloid,
                    o.limitPx,
                    o.timestamp,
                    u.statusTimestamp,
                    o.reduceOnly,
                )
            )
        return OrderUpdatesEvent(out, bad)

    def _user_fills(self, raws: list[msgspec.Raw]) -> tuple[list[UserFill], int]:
        out: list[UserFill] = []
        bad = 0
        dec = self._fill_dec
        for raw in raws:
            try:
                f = dec(raw)
            except msgspec.DecodeError as exc:
                bad += 1
                self._bad_element(CH_USER_FILLS, raw, str(exc))
                continue
            if (
                not _positive_dec(f.px)
                or not _positive_dec(f.sz)
                or _SIGNED_DEC.fullmatch(f.fee) is None
            ):
                bad += 1
                self._bad_element(CH_USER_FILLS, raw, "px/sz not positive decimals or bad fee")
                continue
            out.append(f)
        return out, bad

    def _bad_element(self, channel: str, raw: msgspec.Raw, why: str) -> None:
        self.stats.bad_elements += 1
        self._rlog.log(
            "bad_element",
            logging.WARNING,
            "%s element skipped (%s): %s",
            channel,
            why,
            excerpt(bytes(raw)),
        )

    # -- slow path: classification of frames the typed decode rejected

    def _classify_failure(self, text: str | bytes, exc: msgspec.DecodeError) -> None:
        text = _as_text(text)
        try:
            generic = self._generic(text)
        except msgspec.DecodeError as jexc:
            stripped = (
                text.strip() if isinstance(text, str) else text.strip().decode("utf-8", "replace")
            )
            if stripped[:1] in ("{", "["):  # meant to be JSON: a broken (e.g. truncated) frame
                self._malformed(text, f"invalid JSON: {jexc}")
                return
            self.stats.non_json += 1
            if stripped == GREETING:
                log.debug("ignored server greeting %r", GREETING)
            else:
                self._rlog.log(
                    "non_json", logging.WARNING, "ignored non-JSON frame: %s", excerpt(text)
                )
            return
        channel = generic.get("channel") if isinstance(generic, dict) else None
        if channel == CH_L2BOOK and CH_L2BOOK in self._known:
            self.stats.malformed += 1
            self._l2_problem("malformed", str(exc), text)
            return
        if isinstance(channel, str) and channel not in self._known:
            stats = self.stats
            stats.unknown_channel += 1
            ubc = stats.unknown_by_channel
            if channel not in ubc:
                if len(ubc) >= MAX_UNKNOWN_CHANNEL_NAMES:
                    channel = "<other>"
                else:
                    log.info("ignoring frames on unknown channel %r", channel)
            ubc[channel] = ubc.get(channel, 0) + 1
            return
        self._malformed(text, str(exc))

    def _malformed(self, text: str | bytes, why: str) -> None:
        self.stats.malformed += 1
        self._rlog.log(
            "malformed",
            logging.WARNING,
            "malformed frame skipped (%s): %s",
            why,
            excerpt(_as_text(text)),
        )


def _as_text(text: str | bytes) -> str:
    """A frame given as bytes (replay hands over the recorded ASCII payloads as they are) as
    the str the live reader had: every skip is then counted and logged exactly as for it."""
    return text if isinstance(text, str) else text.decode("utf-8", "replace")


def _positive_dec(s: str) -> bool:
    return _UNSIGNED_DEC.fullmatch(s) is not None and s.strip("0.") != ""


# --------------------------------------------------------------------------- encoders

_encode = msgspec.json.encode

PING_TEXT: Final = '{"method":"ping"}'


def subscription(sub_type: str, coin: str | None = None, **extra: Any) -> dict[str, Any]:
    """A subscription object, e.g. ``{"type":"bbo","coin":"xyz:SILVER"}``."""
    sub: dict[str, Any] = {"type": sub_type}
    if coin is not None:
        sub["coin"] = coin
    sub.update(extra)
    return sub


def encode_subscribe(sub: Mapping[str, Any]) -> str:
    """``{"method":"subscribe","subscription":{...}}``."""
    return _encode({"method": "subscribe", "subscription": sub}).decode()


def encode_unsubscribe(sub: Mapping[str, Any]) -> str:
    """``{"method":"unsubscribe","subscription":{...}}``."""
    return _encode({"method": "unsubscribe", "subscription": sub}).decode()


def encode_ping() -> str:
    """``{"method":"ping"}`` (answered by ``{"channel":"pong"}``)."""
    return PING_TEXT


def encode_post(post_id: int, request: Mapping[str, Any]) -> str:
    """``{"method":"post","id":<id>,"request":{...}}`` (request keys keep their order)."""
    return _encode({"method": "post", "id": post_id, "request": request}).decode()
