"""Hyperliquid's order dialect → the core's neutral order reports.

Owns everything the venue says about an order in its own words: the ``orderUpdates`` /
``orderStatus`` status vocabulary (hyperliquid-protocol.md §12), the post-response shapes
(``{"resting": …}``, ``{"filled": …}``, ``{"error": msg}``, ``"waitingForFill"``, action and
transport errors), the ``orderStatus`` reply (``unknownOid``) and the reject strings. The
``classify_*`` functions map each to an event of :mod:`fsm.order`; :func:`post_report`,
:func:`update_report` and :func:`status_report` wrap that with the order's ids, the venue's
cumulative filled size and a neutral :class:`~engine.core.neutral.RejectReason` into an
:class:`~engine.core.neutral.OrderReport`, the only thing the core consumes
(:meth:`engine.core.trading.TradingCore.on_order_report`).

:class:`HyperliquidTradingCore` is the trading core with Hyperliquid's three order entry points
(``on_post_result``, ``on_order_update``, ``on_order_status``): each translates and hands the
report to the neutral core. The core and ``fsm`` know none of these words
(``tests/core/test_venue_neutral.py`` fails if they reappear there).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NamedTuple

from engine.config import EngineConfig
from engine.core.neutral import OrderReport, OrderRounding, RejectReason
from engine.core.orders import CloidFactory
from engine.core.risk import is_benign
from engine.core.trading import TradingCore
from engine.strategies.dislocation import DislocationStrategy
from engine.venues.hyperliquid.rounding import HyperliquidRounding
from fsm.order import (
    ACK_RESTING,
    CANCEL_CONFIRMED,
    EXPIRE,
    FILL_COMPLETE,
    FILL_PARTIAL,
    LOSE_CONTACT,
    REJECT,
    RESOLVE_NOT_FOUND,
)

# -- venue status -> event --------------------------------------------------------------------------

IOC_NO_MATCH_PREFIX: Final = "Order could not immediately match"
"""Prefix of the post-response error of an IOC that found nothing (HIP-3 appends `` asset=N``)."""

ORDER_STATUSES_LIVE: Final[frozenset[str]] = frozenset({"open", "triggered"})
ORDER_STATUSES_REJECTED: Final[frozenset[str]] = frozenset(
    {
        "rejected",
        "tickRejected",
        "minTradeNtlRejected",
        "perpMarginRejected",
        "reduceOnlyRejected",
        "badAloPxRejected",
        "iocCancelRejected",
        "badTriggerPxRejected",
        "marketOrderNoLiquidityRejected",
        "positionIncreaseAtOpenInterestCapRejected",
        "positionFlipAtOpenInterestCapRejected",
        "tooAggressiveAtOpenInterestCapRejected",
        "openInterestIncreaseRejected",
        "insufficientSpotBalanceRejected",
        "oracleRejected",
        "perpMaxPositionRejected",
        "tooManyOpenOrdersRejected",
    }
)
ORDER_STATUSES_CANCELED: Final[frozenset[str]] = frozenset(
    {
        "canceled",
        "marginCanceled",
        "vaultWithdrawalCanceled",
        "openInterestCapCanceled",
        "selfTradeCanceled",
        "reduceOnlyCanceled",
        "siblingFilledCanceled",
        "delistedCanceled",
        "liquidatedCanceled",
        "outcomeSettledCanceled",
        "scheduledCancel",
        "internalCancel",
    }
)
KNOWN_ORDER_STATUSES: Final[frozenset[str]] = (
    ORDER_STATUSES_LIVE | {"filled"} | ORDER_STATUSES_REJECTED | ORDER_STATUSES_CANCELED
)
"""The orderUpdates / orderStatus vocabulary (docs/reference/hyperliquid-protocol.md §12)."""


def _status_event(status: str) -> str:
    if status in ORDER_STATUSES_LIVE:
        return ACK_RESTING
    if status == "filled":
        return FILL_COMPLETE
    if status == "iocCancelRejected":
        return EXPIRE  # an IOC that found nothing to match: benign, no fill
    if status == "rejected" or status.endswith("Rejected"):
        return REJECT
    # "canceled", every "*Canceled", "scheduledCancel", "internalCancel" -- and, fail safe, any
    # status we do not know: treat the order as done so nothing stays pending forever.
    return CANCEL_CONFIRMED


_STATUS_EVENTS: Final[dict[str, str]] = {s: _status_event(s) for s in KNOWN_ORDER_STATUSES}


def classify_order_update_status(status: str) -> str:
    """The event for an orderUpdates / orderStatus ``status`` string.

    ``open``/``triggered`` -> ack_resting, ``filled`` -> fill_complete, ``iocCancelRejected``
    -> expire, ``rejected``/``*Rejected`` -> reject, ``canceled``/``*Canceled``/``*Cancel`` ->
    cancel_confirmed, anything unrecognised -> cancel_confirmed (fail-safe terminal; check
    :func:`is_known_order_status` and log it).
    """
    event = _STATUS_EVENTS.get(status)
    return event if event is not None else _status_event(status)


def is_known_order_status(status: str) -> bool:
    """True if ``status`` is in the documented vocabulary (unknown ones deserve a warning)."""
    return status in KNOWN_ORDER_STATUSES


def _dec(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def classify_order_update(status: str, sz: object = None, orig_sz: object = None) -> str:
    """Like :func:`classify_order_update_status`, refined by sizes: a live status whose
    remaining ``sz`` is below ``origSz`` is ``fill_partial`` (partial fills arrive as ``open``
    with a smaller ``sz``)."""
    event = classify_order_update_status(status)
    if event == ACK_RESTING:
        rem, orig = _dec(sz), _dec(orig_sz)
        if rem is not None and orig is not None and rem < orig:
            return FILL_PARTIAL
    return event


def classify_order_status_reply(reply: object) -> str:
    """The event for an ``orderStatus`` (by cloid) info reply, used to resolve UNKNOWN.

    ``{"status":"unknownOid"}`` -> resolve_not_found; ``{"status":"order","order":{"order":
    {..., "sz", "origSz"}, "status": s}}`` -> :func:`classify_order_update`; anything
    unreadable -> lose_contact (still unknown: ask again).
    """
    if isinstance(reply, dict):
        if reply.get("status") == "unknownOid":
            return RESOLVE_NOT_FOUND
        wrapper = reply.get("order")
        if reply.get("status") == "order" and isinstance(wrapper, dict):
            status = wrapper.get("status")
            inner = wrapper.get("order")
            if isinstance(status, str):
                if isinstance(inner, dict):
                    return classify_order_update(status, inner.get("sz"), inner.get("origSz"))
                return classify_order_update_status(status)
    return LOSE_CONTACT


class PostDetail(NamedTuple):
    """What a post response said about one order, besides the event.

    ``kind`` is the venue's word (``resting``, ``filled``, ``error``, ``waitingForFill``,
    ``waitingForTrigger``, ``success``) or ours (``actionErr``, ``transportError``, ``timeout``,
    ``unrecognized``, ``missing``). Sizes and prices stay the exact wire strings.
    """

    kind: str
    oid: int | None = None
    total_sz: str | None = None
    avg_px: str | None = None
    message: str | None = None


POST_ACCEPTED_STRINGS: Final[frozenset[str]] = frozenset(
    {"waitingForFill", "waitingForTrigger", "success"}
)
"""Bare-string statuses: accepted by the venue, the oid and outcome follow on orderUpdates."""


def _oid(body: dict[str, Any]) -> int | None:
    oid = body.get("oid")
    return oid if isinstance(oid, int) and not isinstance(oid, bool) else None


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def classify_post_status(
    obj: object, *, ioc: bool = True, orig_sz: object = None
) -> tuple[str, PostDetail]:
    """(event, detail) for one order's post-response status, or for a whole-action outcome.

    - ``{"resting": {"oid"}}`` -> ack_resting.
    - ``{"filled": {"totalSz", "avgPx", "oid"}}`` -> fill_complete for an IOC (nothing of it
      can rest) or when ``totalSz >= orig_sz``; otherwise fill_partial (the rest may rest).
    - ``{"error": msg}`` -> expire if ``msg`` starts with :data:`IOC_NO_MATCH_PREFIX`, else
      reject.
    - ``"waitingForFill"`` / ``"waitingForTrigger"`` / ``"success"`` (ALO) -> ack_resting.
    - ``{"status": "err", "response": msg}`` (action-level error: the action was not applied)
      -> reject, for every order of the action.
    - ``{"type": "error", "payload": msg}`` (transport error: processing unknown) and ``None``
      (timeout, disconnect, lost response) -> lose_contact.
    - anything else -> lose_contact (we do not know what happened: resolve by cloid).
    """
    if obj is None:
        return LOSE_CONTACT, PostDetail("timeout")
    if isinstance(obj, str):
        if obj in POST_ACCEPTED_STRINGS:
            return ACK_RESTING, PostDetail(obj)
        return LOSE_CONTACT, PostDetail("unrecognized", message=obj)
    if isinstance(obj, dict):
        if "resting" in obj:
            body = obj["resting"]
            return ACK_RESTING, PostDetail(
                "resting", oid=_oid(body if isinstance(body, dict) else {})
            )
        if "filled" in obj:
            body = obj["filled"] if isinstance(obj["filled"], dict) else {}
            detail = PostDetail(
                "filled",
                oid=_oid(body),
                total_sz=_str_or_none(body.get("totalSz")),
                avg_px=_str_or_none(body.get("avgPx")),
            )
            if ioc:
                return FILL_COMPLETE, detail
            total, orig = _dec(detail.total_sz), _dec(orig_sz)
            if total is not None and orig is not None and total >= orig:
                return FILL_COMPLETE, detail
            return FILL_PARTIAL, detail
        if "error" in obj:
            msg = str(obj["error"])
            event = EXPIRE if msg.startswith(IOC_NO_MATCH_PREFIX) else REJECT
            return event, PostDetail("error", message=msg)
        if obj.get("status") == "err":
            return REJECT, PostDetail("actionErr", message=_str_or_none(obj.get("response")))
        if obj.get("type") == "error":
            return LOSE_CONTACT, PostDetail(
                "transportError", message=_str_or_none(obj.get("payload"))
            )
    return LOSE_CONTACT, PostDetail("unrecognized", message=repr(obj)[:200])


def classify_post_response(
    response: object,
    n_orders: int,
    *,
    ioc: bool = True,
    orig_szs: tuple[object, ...] | list[object] | None = None,
) -> list[tuple[str, PostDetail]]:
    """(event, detail) for each of the ``n_orders`` orders of one ``order`` action.

    ``response`` is the post ``data.response`` object (``{"type": "action", "payload": ...}`` or
    ``{"type": "error", "payload": msg}``), or ``None`` on timeout. ``statuses`` are matched to
    orders by position; if their count differs from ``n_orders`` the alignment cannot be
    trusted, so every order gets lose_contact (resolve each by cloid) -- never a shifted zip.
    """
    if isinstance(response, dict) and response.get("type") == "action":
        payload = response.get("payload")
        if isinstance(payload, dict):
            if payload.get("status") == "err":
                return [classify_post_status(payload)] * n_orders
            inner = payload.get("response")
            data = inner.get("data") if isinstance(inner, dict) else None
            statuses = data.get("statuses") if isinstance(data, dict) else None
            if (
                payload.get("status") == "ok"
                and isinstance(inner, dict)
                and inner.get("type") == "order"
                and isinstance(statuses, list)
            ):
                if len(statuses) == n_orders:
                    sizes = list(orig_szs) if orig_szs is not None else [None] * n_orders
                    return [
                        classify_post_status(s, ioc=ioc, orig_sz=sz)
                        for s, sz in zip(statuses, sizes, strict=True)
                    ]
                return [(LOSE_CONTACT, PostDetail("missing"))] * n_orders
        return [(LOSE_CONTACT, PostDetail("unrecognized", message=repr(response)[:200]))] * n_orders
    return [classify_post_status(response)] * n_orders


def classify_cancel_status(obj: object) -> str | None:
    """The order event for one ``cancel`` / ``cancelByCloid`` status: ``"success"`` ->
    cancel_confirmed; an error (already filled or canceled, never placed) -> ``None``: no
    event, the order's real outcome arrives on orderUpdates or from ``orderStatus``."""
    return CANCEL_CONFIRMED if obj == "success" else None


# -- reject strings -> reason ---------------------------------------------------------------------

# (marker, reason), first match wins. The benign ones come first: a reject that is part of normal
# taker life (an IOC that found nothing, a reduce-only order with nothing to reduce, the $10
# minimum, a zero size) must not count towards a burst (predecessor-semantics.md §2.3; BOT
# commits e5d1d43, 83658cb), whatever else its text says.
_REJECT_MARKERS: Final[tuple[tuple[str, RejectReason], ...]] = (
    ("minimum value", RejectReason.BELOW_MIN_NOTIONAL),
    ("minTradeNtlRejected", RejectReason.BELOW_MIN_NOTIONAL),
    ("iocCancelRejected", RejectReason.NO_LIQUIDITY),
    (IOC_NO_MATCH_PREFIX, RejectReason.NO_LIQUIDITY),
    ("reduceOnlyRejected", RejectReason.REDUCE_ONLY),
    ("Reduce only order would increase position", RejectReason.REDUCE_ONLY),
    ("Order has zero size", RejectReason.ZERO_SIZE),
    ("Insufficient", RejectReason.INSUFFICIENT_BALANCE),
    ("tick size", RejectReason.INVALID_PRICE),
    ("Too many", RejectReason.RATE_LIMITED),
)


def reject_reason(message: str) -> RejectReason:
    """The neutral reason for one of the venue's reject texts (``VENUE_ERROR`` if unknown)."""
    for marker, reason in _REJECT_MARKERS:
        if marker in message:
            return reason
    return RejectReason.VENUE_ERROR


def is_benign_reject(message: str) -> bool:
    """Whether a reject text is part of normal taker life (see :data:`_REJECT_MARKERS`)."""
    return is_benign(reject_reason(message))


# -- neutral reports -----------------------------------------------------------------------------


def _f(value: object) -> float | None:
    if value is None:
        return None
    try:
        return float(str(value))
    except ValueError:
        return None


def post_report(status: object, orig_sz: object) -> OrderReport:
    """The report for one order's post-response status (``None``: timeout or lost) of an IOC
    of size ``orig_sz`` (the wire string)."""
    event, detail = classify_post_status(status, ioc=True, orig_sz=orig_sz)
    message = detail.message
    return OrderReport(
        event,
        detail.kind,
        venue_order_id=detail.oid,
        filled_qty=_f(detail.total_sz),
        avg_px=_f(detail.avg_px),
        reason=reject_reason(message) if message is not None else None,
        message=message,
    )


def update_report(status: str, oid: int | None, sz: str | None, orig_sz: str | None) -> OrderReport:
    """The report for one ``orderUpdates`` element (``sz`` remaining of ``origSz``)."""
    rem, orig = _f(sz), _f(orig_sz)
    filled = orig - rem if rem is not None and orig is not None and orig >= rem else None
    return OrderReport(
        classify_order_update(status, sz, orig_sz),
        status,
        venue_order_id=oid,
        filled_qty=filled,
        unrecognized=not is_known_order_status(status),
    )


def status_report(reply: object) -> OrderReport:
    """The report for an ``orderStatus`` (by cloid) reply; an unreadable one says nothing
    about the state (``event`` None: still unknown, ask again)."""
    event: str | None = classify_order_status_reply(reply)
    filled: float | None = None
    oid: int | None = None
    if isinstance(reply, dict) and isinstance(reply.get("order"), dict):
        inner = reply["order"].get("order")
        if isinstance(inner, dict):
            rem, orig = _f(inner.get("sz")), _f(inner.get("origSz"))
            if rem is not None and orig is not None and orig >= rem:
                filled = orig - rem
            got = inner.get("oid")
            if isinstance(got, int):
                oid = got
    if event == LOSE_CONTACT:
        event = None
    return OrderReport(event, "orderStatus", venue_order_id=oid, filled_qty=filled)


class HyperliquidTradingCore(TradingCore):
    """The trading core fed in Hyperliquid's words: each entry point translates one venue
    message into an :class:`~engine.core.neutral.OrderReport` and applies it. Each market's
    orders are rounded by Hyperliquid's rule for its ``szDecimals`` unless ``rules`` says
    otherwise."""

    def __init__(self, strategy: DislocationStrategy, cfg: EngineConfig, *,
                 rules: Sequence[OrderRounding] | None = None,
                 cloids: CloidFactory | None = None) -> None:
        if rules is None:
            rules = [HyperliquidRounding(m.spec.sz_decimals) for m in strategy.markets]
        super().__init__(strategy, cfg, rules=rules, cloids=cloids)

    def on_post_result(self, cloid: str, status: object, now_ms: float) -> None:
        """One order's post-response status (or None for timeout/lost)."""
        o = self.orders.get(cloid)
        if o is None:
            return
        self.on_order_report(o, post_report(status, o.sz_wire), now_ms)

    def on_order_update(self, cloid: str | None, oid: int | None, status: str, sz: str | None,
                        orig_sz: str | None, now_ms: float) -> None:
        """One ``orderUpdates`` element (found by cloid, else by oid)."""
        o = self.find_order(cloid, oid)
        if o is None:
            return
        self.on_order_report(o, update_report(status, oid, sz, orig_sz), now_ms)

    def on_order_status(self, cloid: str, reply: object, now_ms: float) -> None:
        """The ``orderStatus`` reply for ``cloid`` (resolves UNKNOWN)."""
        o = self.orders.get(cloid)
        if o is None:
            return
        self.on_order_report(o, status_report(reply), now_ms)
