"""Neutral order intents → Bybit v5 REST orders (create, amend, cancel, cancel-all), answered
as neutral events (:class:`OrderAck` / :class:`OrderReject`).

The intent's ``client_id`` is the ``orderLinkId``: generated once by whoever made the intent
(:func:`new_order_link_id`) and reused on every retry, so a retry after a lost answer can never
place a second order. A retry that meets ``110072`` (duplicate orderLinkId) means the first
attempt reached the venue: it is looked up by ``orderLinkId`` and acknowledged, not rejected.
``reduceOnly`` is sent for linear only (Bybit refuses it on spot); a spot market order states
its quantity in the base coin (``marketUnit=baseCoin``). The definitive order state arrives on
the private ``order``/``execution`` streams; the REST answer is only an acceptance.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from typing import Any

from engine.core.neutral import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    InstrumentKind,
    OrderAck,
    OrderReject,
    OrderRequest,
    PlaceOrder,
    RejectReason,
    Side,
)
from engine.venues.bybit.codec import KIND_CATEGORY, VENUE, BybitApiError
from engine.venues.bybit.rest import BybitRest

log = logging.getLogger("engine.venues.bybit.execution")

DUPLICATE_LINK_ID = 110072
_MAX_LINK_ID = 36


_LINK_COUNTER = itertools.count(1)
_LINK_SALT = os.urandom(4).hex()


def new_order_link_id(prefix: str = "e") -> str:
    """A fresh ``orderLinkId`` (≤ 36 chars of ``[A-Za-z0-9-_]``): a per-process random salt
    and a counter, so ids never repeat within a run nor (with high probability) across runs."""
    link = f"{prefix}-{_LINK_SALT}-{next(_LINK_COUNTER)}"
    if len(link) > _MAX_LINK_ID:
        raise ValueError(f"orderLinkId prefix too long: {prefix!r}")
    return link


def order_params(intent: PlaceOrder) -> dict[str, Any]:
    """The ``/v5/order/create`` body of ``intent`` (strings for qty and price, no exponent)."""
    category = KIND_CATEGORY[intent.kind]
    p: dict[str, Any] = {
        "category": category,
        "symbol": intent.symbol,
        "side": "Buy" if intent.side is Side.BUY else "Sell",
        "orderType": "Market" if intent.price is None else "Limit",
        "qty": format(intent.qty, "f"),
        "orderLinkId": intent.client_id,
    }
    if intent.price is not None:
        p["price"] = format(intent.price, "f")
        p["timeInForce"] = "PostOnly" if intent.post_only else ("IOC" if intent.ioc else "GTC")
    if intent.kind is InstrumentKind.SPOT and intent.price is None:
        p["marketUnit"] = "baseCoin"
    if intent.reduce_only and intent.kind is InstrumentKind.LINEAR_PERP:
        p["reduceOnly"] = True
    return p


class BybitExecution:
    """Sends intents over :class:`BybitRest`; ``clock`` gives epoch ms for event times."""

    def __init__(self, rest: BybitRest, clock: Callable[[], float]) -> None:
        self.rest = rest
        self.clock = clock

    def _reject(self, symbol: str, client_id: str, exc: BybitApiError,
                request: OrderRequest = OrderRequest.PLACE) -> OrderReject:
        return OrderReject(VENUE, symbol, client_id, exc.reason,
                           f"{exc.ret_code} {exc.ret_msg}", int(self.clock()), request)

    async def place(self, intent: PlaceOrder) -> OrderAck | OrderReject:
        try:
            result = await self.rest.post("/v5/order/create", order_params(intent))
        except BybitApiError as exc:
            if exc.ret_code == DUPLICATE_LINK_ID:
                found = await self._find(intent.kind, intent.symbol, intent.client_id)
                if found is not None:
                    log.info("order %s already at the venue (duplicate orderLinkId): acked",
                             intent.client_id)
                    return OrderAck(VENUE, intent.symbol, intent.client_id, found,
                                    int(self.clock()))
            return self._reject(intent.symbol, intent.client_id, exc)
        return OrderAck(VENUE, intent.symbol, intent.client_id, str(result.get("orderId", "")),
                        int(self.clock()))

    async def _find(self, kind: InstrumentKind, symbol: str, link_id: str) -> str | None:
        try:
            result = await self.rest.get("/v5/order/realtime",
                                         {"category": KIND_CATEGORY[kind], "symbol": symbol,
                                          "orderLinkId": link_id}, signed=True)
        except BybitApiError:
            return None
        rows = result.get("list") or []
        return str(rows[0].get("orderId")) if rows else None

    async def amend(self, intent: AmendOrder) -> OrderAck | OrderReject:
        params = {"category": KIND_CATEGORY[intent.kind], "symbol": intent.symbol,
                  "orderLinkId": intent.client_id,
                  "qty": format(intent.qty, "f") if intent.qty is not None else None,
                  "price": format(intent.price, "f") if intent.price is not None else None}
        try:
            result = await self.rest.post("/v5/order/amend", params)
        except BybitApiError as exc:
            return self._reject(intent.symbol, intent.client_id, exc, OrderRequest.AMEND)
        return OrderAck(VENUE, intent.symbol, intent.client_id, str(result.get("orderId", "")),
                        int(self.clock()))

    async def cancel(self, intent: CancelOrder) -> OrderAck | OrderReject:
        """Cancel by ``orderLinkId``. ``NOT_FOUND`` is returned as a reject with that reason:
        the caller decides (usually: the order already ended; wait for its stream event)."""
        try:
            result = await self.rest.post("/v5/order/cancel",
                                          {"category": KIND_CATEGORY[intent.kind],
                                           "symbol": intent.symbol,
                                           "orderLinkId": intent.client_id})
        except BybitApiError as exc:
            return self._reject(intent.symbol, intent.client_id, exc, OrderRequest.CANCEL)
        return OrderAck(VENUE, intent.symbol, intent.client_id, str(result.get("orderId", "")),
                        int(self.clock()))

    async def cancel_all(self, intent: CancelAll) -> list[str]:
        """Cancel every open order of the category (and symbol); the canceled orderLinkIds."""
        params: dict[str, Any] = {"category": KIND_CATEGORY[intent.kind], "symbol": intent.symbol}
        if intent.symbol is None and intent.kind is InstrumentKind.LINEAR_PERP:
            params["settleCoin"] = "USDT"
        result = await self.rest.post("/v5/order/cancel-all", params)
        return [str(r.get("orderLinkId", "")) for r in result.get("list") or []]


__all__ = ["BybitExecution", "RejectReason", "new_order_link_id", "order_params"]
