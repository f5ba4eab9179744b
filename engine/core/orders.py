"""Our own orders: cloids, the per-order lifecycle (via the derived FSM table) and pending notional.

An order is created once per intent with a cloid that every resend and every reconciliation
uses. Its state only changes through :func:`fsm.order.next_order_state`; quantities are never
effects of transitions: the venue's cumulative filled size is merged with ``max``, fills are
counted once by trade id (in :mod:`engine.core.positions`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from engine.core.neutral import RejectReason
from fsm.order import (
    ACTIVE_STATES,
    IGNORE,
    NEW,
    TERMINAL_STATES,
    UNKNOWN,
    InvalidOrderTransition,
    next_order_state,
)

ENTRY = "entry"
FLATTEN = "flatten"


class CloidFactory:
    """``0x`` + 32 lowercase hex: 8 random bytes per run + a 64-bit counter (unique across runs)."""

    __slots__ = ("_prefix", "_n")

    def __init__(self, boot: bytes | None = None) -> None:
        self._prefix = (boot if boot is not None else os.urandom(8)).hex()
        if len(self._prefix) != 16:
            raise ValueError("boot prefix must be 8 bytes")
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return f"0x{self._prefix}{self._n:016x}"

    def advance_past(self, cloids: Iterable[str]) -> None:
        """Never hand out any of ``cloids`` (e.g. restored from the journal): the counter
        moves past the highest one of this factory's prefix; others are ignored."""
        head = f"0x{self._prefix}"
        top = self._n
        for c in cloids:
            if c.startswith(head) and len(c) == len(head) + 16:
                try:
                    top = max(top, int(c[len(head):], 16))
                except ValueError:
                    continue
        self._n = top


class Order:
    """One of our orders. Prices/sizes are kept both as floats and as the exact wire strings."""

    __slots__ = (
        "cloid", "coin", "idx", "asset_id", "is_buy", "px", "px_wire", "sz", "sz_wire",
        "reduce_only", "purpose", "state", "oid", "venue_filled", "avg_px", "created_ms",
        "sent_ms", "changed_ms", "unknown_since_ms", "next_query_ms", "signal_id", "reason",
        "message", "reject_reason", "decision_px", "expires_after_ms", "pending",
    )

    def __init__(self, cloid: str, coin: str, idx: int, asset_id: int, is_buy: bool,
                 px_wire: str, sz_wire: str, reduce_only: bool, purpose: str, now_ms: float,
                 *, signal_id: str | None = None, reason: str | None = None,
                 decision_px: float | None = None, expires_after_ms: int | None = None) -> None:
        self.cloid = cloid
        self.coin = coin
        self.idx = idx
        self.asset_id = asset_id
        self.is_buy = is_buy
        self.px_wire = px_wire
        self.px = float(px_wire)
        self.sz_wire = sz_wire
        self.sz = float(sz_wire)
        self.reduce_only = reduce_only
        self.purpose = purpose
        self.state = NEW
        self.oid: int | None = None
        self.venue_filled = 0.0
        self.avg_px: float | None = None
        self.created_ms = now_ms
        self.sent_ms: float | None = None
        self.changed_ms = now_ms
        self.unknown_since_ms: float | None = None
        self.next_query_ms: float | None = None
        self.signal_id = signal_id
        self.reason = reason
        self.message: str | None = None  # the venue's own text of a refusal (journaled)
        self.reject_reason: RejectReason | None = None  # its neutral reason (from the adapter)
        self.decision_px = decision_px
        self.expires_after_ms = expires_after_ms
        self.pending = 0.0  # its share of OrderBook.pending_total (kept by the book)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def remaining(self) -> float:
        return max(0.0, self.sz - self.venue_filled)

    def record(self) -> dict[str, Any]:
        return {
            "cloid": self.cloid, "market_key": self.coin, "asset_id": self.asset_id,
            "side": "buy" if self.is_buy else "sell", "px": self.px_wire, "sz": self.sz_wire,
            "reduce_only": self.reduce_only, "purpose": self.purpose, "state": self.state,
            "oid": self.oid, "venue_filled": self.venue_filled, "avg_px": self.avg_px,
            "created_ms": self.created_ms, "sent_ms": self.sent_ms,
            "signal_id": self.signal_id, "reason": self.reason, "message": self.message,
            "decision_px": self.decision_px, "expires_after_ms": self.expires_after_ms,
        }

    def created_record(self) -> dict[str, Any]:
        """:meth:`record` as it was when the order was created (NEW, nothing sent or filled),
        whatever happened to it since: the journal's ``created`` record, built after the send."""
        return {
            "cloid": self.cloid, "market_key": self.coin, "asset_id": self.asset_id,
            "side": "buy" if self.is_buy else "sell", "px": self.px_wire, "sz": self.sz_wire,
            "reduce_only": self.reduce_only, "purpose": self.purpose, "state": NEW,
            "oid": None, "venue_filled": 0.0, "avg_px": None,
            "created_ms": self.created_ms, "sent_ms": None,
            "signal_id": self.signal_id, "reason": self.reason, "message": None,
            "decision_px": self.decision_px, "expires_after_ms": self.expires_after_ms,
        }

    def __repr__(self) -> str:
        side = "B" if self.is_buy else "S"
        ro = " RO" if self.reduce_only else ""
        return f"Order({self.cloid[-6:]} {self.coin} {side} {self.sz_wire}@{self.px_wire}{ro} {self.state})"


class OrderBook:
    """Every order of this run (terminal ones are kept for dedup until pruned).

    Besides the orders it keeps, in O(1), what the entry gates ask on every signal: the live
    orders per market (``live_by_idx``), how many live orders are UNKNOWN (``unknown_count``)
    and the pending notional of the live non-reduce-only orders (``pending_total``: Σ remaining
    × px). They change only through :meth:`add`, :meth:`apply`, :meth:`set_venue_filled`,
    :meth:`prune` and :meth:`reindex` (call it after changing orders directly).
    """

    def __init__(self) -> None:
        self.by_cloid: dict[str, Order] = {}
        self.by_oid: dict[int, Order] = {}
        # index of the non-terminal orders: gates and exits scan only these (a handful),
        # never the whole history of the run
        self.live: dict[str, Order] = {}
        self.live_by_idx: dict[int, dict[str, Order]] = {}
        self.unknown_count = 0
        self.pending_total = 0.0
        self._pending_n = 0  # live non-reduce-only orders (pending_total is reset to 0 at 0)
        self.anomalies = 0

    # -- live index and running sums
    def _live_add(self, o: Order) -> None:
        c = o.cloid
        if c in self.live:
            return
        self.live[c] = o
        per = self.live_by_idx.get(o.idx)
        if per is None:
            per = self.live_by_idx[o.idx] = {}
        per[c] = o
        if o.state == UNKNOWN:
            self.unknown_count += 1
        if not o.reduce_only:
            o.pending = o.remaining * o.px
            self.pending_total += o.pending
            self._pending_n += 1

    def _live_remove(self, o: Order, prev_state: str) -> None:
        if self.live.pop(o.cloid, None) is None:
            return
        per = self.live_by_idx.get(o.idx)
        if per is not None:
            per.pop(o.cloid, None)
            if not per:
                del self.live_by_idx[o.idx]
        if prev_state == UNKNOWN:
            self.unknown_count -= 1
        if not o.reduce_only:
            self._pending_n -= 1
            self.pending_total = self.pending_total - o.pending if self._pending_n else 0.0
            o.pending = 0.0

    def add(self, order: Order) -> None:
        if order.cloid in self.by_cloid:
            raise ValueError(f"duplicate cloid {order.cloid}")
        self.by_cloid[order.cloid] = order
        if order.state in ACTIVE_STATES:
            self._live_add(order)

    def get(self, cloid: str | None) -> Order | None:
        return None if cloid is None else self.by_cloid.get(cloid)

    def apply(self, order: Order, event: str, now_ms: float) -> tuple[str, bool]:
        """Apply ``event``; return (previous state, became_terminal). Contradictions keep state."""
        prev = order.state
        try:
            nxt = next_order_state(prev, event)
        except InvalidOrderTransition:
            self.anomalies += 1
            return prev, False
        if nxt == IGNORE:
            return prev, False
        order.state = nxt
        order.changed_ms = now_ms
        if nxt in TERMINAL_STATES:
            self._live_remove(order, prev)
        elif order.cloid in self.live:
            if prev == UNKNOWN:
                self.unknown_count -= 1
            if nxt == UNKNOWN:
                self.unknown_count += 1
        else:
            self._live_add(order)
        if nxt == UNKNOWN:
            if order.unknown_since_ms is None:
                order.unknown_since_ms = now_ms
        else:
            order.unknown_since_ms = None
            order.next_query_ms = None
        return prev, (nxt in TERMINAL_STATES and prev not in TERMINAL_STATES)

    def set_venue_filled(self, order: Order, filled: float) -> None:
        """The venue's cumulative filled size of ``order`` (keeps the pending notional)."""
        order.venue_filled = filled
        if not order.reduce_only and order.cloid in self.live:
            pending = order.remaining * order.px
            self.pending_total += pending - order.pending
            order.pending = pending

    def set_oid(self, order: Order, oid: int | None) -> None:
        if oid is not None and order.oid is None:
            order.oid = oid
            self.by_oid[oid] = order

    def active(self) -> Iterator[Order]:
        return iter(list(self.live.values()))

    def active_for(self, idx: int) -> list[Order]:
        per = self.live_by_idx.get(idx)
        return [] if per is None else list(per.values())

    def pending_for(self, idx: int) -> float:
        """Σ remaining × px of the live non-reduce-only orders of market ``idx``."""
        per = self.live_by_idx.get(idx)
        if per is None:
            return 0.0
        return sum(o.remaining * o.px for o in per.values() if not o.reduce_only)

    def unknown(self) -> list[Order]:
        return [o for o in self.live.values() if o.state == UNKNOWN]

    def reindex(self) -> None:
        """Rebuild the live index and sums after orders were inserted or changed directly."""
        self.live = {}
        self.live_by_idx = {}
        self.unknown_count = 0
        self.pending_total = 0.0
        self._pending_n = 0
        for o in self.by_cloid.values():
            o.pending = 0.0
            if o.state in ACTIVE_STATES:
                self._live_add(o)

    def prune(self, keep_terminal: int = 10_000) -> None:
        """Drop the oldest terminal orders beyond ``keep_terminal`` (bounded memory)."""
        terminal = [o for o in self.by_cloid.values() if o.state in TERMINAL_STATES]
        if len(terminal) <= keep_terminal:
            return
        terminal.sort(key=lambda o: o.changed_ms)
        for o in terminal[: len(terminal) - keep_terminal]:
            del self.by_cloid[o.cloid]
            if o.cloid in self.live:  # not reachable through apply(); kept consistent anyway
                self._live_remove(o, o.state)
            if o.oid is not None:
                self.by_oid.pop(o.oid, None)
