"""Intents: what the trading core asks the shell to do (the core itself performs no I/O)."""

from __future__ import annotations

from typing import Any

import attrs

from engine.core.orders import Order


@attrs.frozen(slots=True)
class PlaceOrder:
    """Sign and send this order (the shell reports back with ``on_sent`` / ``on_send_failed``)."""

    order: Order


@attrs.frozen(slots=True)
class CancelOrder:
    """Cancel an order by cloid (ours) or by oid (an orphan found at the venue)."""

    coin: str
    asset_id: int
    cloid: str | None
    oid: int | None


@attrs.frozen(slots=True)
class QueryOrder:
    """Ask the venue for an order's status by cloid (resolves UNKNOWN)."""

    coin: str
    cloid: str


@attrs.frozen(slots=True)
class Record:
    """Append a record (journal: orders, fills, positions; trades) to the day file of ``kind``."""

    kind: str
    ts_ms: float
    record: dict[str, Any]


@attrs.frozen(slots=True)
class Alert:
    """Something an operator must know (logged; notified in later versions)."""

    level: str  # "warning" | "error" | "critical"
    code: str
    message: str


@attrs.frozen(slots=True)
class RequestReconcile:
    """Query positions and open orders now (e.g. to confirm a suspicious answer)."""

    reason: str


@attrs.frozen(slots=True)
class QueryFills:
    """Ask the venue for the account's recent fills (``userFills``) and hand them to
    ``on_fills_answer``: the second source a reconciliation answer saying that a position of
    ``coins`` closed needs before it is believed early."""

    coins: tuple[str, ...]
    reason: str


Intent = PlaceOrder | CancelOrder | QueryOrder | Record | Alert | RequestReconcile | QueryFills
