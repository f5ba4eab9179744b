"""Positions from fills: one authoritative path, deduplicated by trade id (tid).

The position of a market is the signed sum of its distinct fills (design invariant 2). A post
response that says an order filled before its userFills arrived is counted as *unconfirmed*
exposure (the order's venue-reported cumulative size minus the fills already seen for it), so
gates and exits see the exposure at once and the later fills replace it without double counting
(predecessor L11, L13). Trades (flat → exposure → flat) are recorded with entry signal, exit
reason, prices, fees and P&L.

Memory stays bounded however long the process runs (a live engine for weeks, a replay of a
day): only the last :data:`KEEP_FILLS` fills are kept (:attr:`PositionBook.fills`, for
inspection; ``fills.total`` counts all), the tid dedup window holds the last
:data:`TID_WINDOW` distinct trade ids, and the per-cloid fill sums of orders the order book has
pruned are forgotten (:meth:`PositionBook.forget_cloids`).
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from engine.core.bounded import RecentIds, RecentList
from engine.core.exits import ExitState
from fsm.position import FLAT

EPS = 1e-12
KEEP_FILLS = 1000
"""Fills kept in :attr:`PositionBook.fills` (the most recent; up to twice this between trims)."""
TID_WINDOW = 20_000
"""Distinct trade ids remembered for dedup. A venue can resend only fills it still serves:
Hyperliquid's userFills snapshot and info answers hold at most its 2,000 most recent fills of
the user and only its 10,000 most recent fills are retrievable at all, so a resent fill is
always among the last 10,000 distinct fills of this user, all of which pass through this
window (streamed, or remembered from a snapshot); twice that leaves a margin. The paper venue
never resends."""


class Fill:
    __slots__ = ("tid", "cloid", "coin", "is_buy", "px", "sz", "fee", "time_ms", "synthetic")

    def __init__(self, tid: str, cloid: str | None, coin: str, is_buy: bool, px: float, sz: float,
                 fee: float, time_ms: float, synthetic: bool = False) -> None:
        self.tid = tid
        self.cloid = cloid
        self.coin = coin
        self.is_buy = is_buy
        self.px = px
        self.sz = sz
        self.fee = fee
        self.time_ms = time_ms
        self.synthetic = synthetic

    @property
    def signed(self) -> float:
        return self.sz if self.is_buy else -self.sz

    def record(self) -> dict[str, Any]:
        return {"tid": self.tid, "cloid": self.cloid, "market_key": self.coin,
                "side": "buy" if self.is_buy else "sell", "px": self.px, "sz": self.sz,
                "fee": self.fee, "time_ms": self.time_ms, "synthetic": self.synthetic}


class Position:
    """Exposure and lifecycle of one market."""

    __slots__ = (
        "idx", "coin", "state", "size", "avg_px", "realized_pnl", "fees", "entry_ms",
        "entry_edge_bps", "entry_signal_id", "entry_decision_px", "exit_state", "entry_cloid",
        "flatten_cloid", "flatten_failures", "next_flatten_ms", "exit_reason", "trade_open_ms",
        "trade_fees", "trade_pnl", "trade_entry_qty", "trade_entry_cost", "trade_exit_qty",
        "trade_exit_cost", "trade_dir", "mismatches", "unconfirmed", "dust_size",
    )

    def __init__(self, idx: int, coin: str) -> None:
        self.idx = idx
        self.coin = coin
        self.state = FLAT
        self.size = 0.0  # signed sum of distinct fills
        self.avg_px = 0.0
        self.realized_pnl = 0.0
        self.fees = 0.0
        self.entry_ms: float | None = None
        self.entry_edge_bps: float | None = None
        self.entry_signal_id: str | None = None
        self.entry_decision_px: float | None = None
        self.exit_state: ExitState | None = None
        self.entry_cloid: str | None = None
        self.flatten_cloid: str | None = None
        self.flatten_failures = 0
        self.next_flatten_ms = 0.0
        self.exit_reason: str | None = None
        self.trade_open_ms: float | None = None
        self.trade_fees = 0.0
        self.trade_pnl = 0.0
        self.trade_entry_qty = 0.0
        self.trade_entry_cost = 0.0
        self.trade_exit_qty = 0.0
        self.trade_exit_cost = 0.0
        self.trade_dir = 0
        self.mismatches = 0
        # exposure the venue refused to flatten (below its minimum order value): no retries
        # until the exposure changes
        self.dust_size: float | None = None
        # cloid -> signed size the venue reported filled that no fill has confirmed yet
        self.unconfirmed: dict[str, float] = {}

    @property
    def effective(self) -> float:
        """Exposure counting venue-reported fills whose trade messages have not arrived."""
        s = self.size
        for v in self.unconfirmed.values():
            s += v
        return s

    @property
    def has_exposure(self) -> bool:
        if not self.unconfirmed:  # the common case: ``effective`` is then ``size``
            return abs(self.size) > EPS
        return abs(self.effective) > EPS

    def unrealized(self, mark: float) -> float:
        """Unrealised P&L at ``mark`` of the exposure confirmed by fills, at their average
        price. Venue-reported fills not yet confirmed (``unconfirmed``) have no entry price
        and count 0 until their fills arrive (no phantom P&L from ``avg_px`` 0)."""
        return (mark - self.avg_px) * self.size if self.size else 0.0


class PositionBook:
    """Positions of every market plus the set of seen trade ids."""

    def __init__(self, coins: list[str]) -> None:
        self.positions = [Position(i, c) for i, c in enumerate(coins)]
        self.by_coin = {p.coin: p for p in self.positions}
        self.seen_tids = RecentIds(TID_WINDOW)  # .total: distinct fills ever seen
        self.fills_by_cloid: dict[str, float] = {}  # cloid -> |size| confirmed by fills
        self.fills: RecentList[Fill] = RecentList(KEEP_FILLS)  # .total: fills ever applied
        # fills applied so far: a position's size, average price, realised P&L and fees
        # change only in apply_fill (a caller's cache of them is current while this is)
        self.changes = 0

    def set_venue_filled(self, p: Position, cloid: str, is_buy: bool, venue_filled: float) -> None:
        """An order's cumulative filled size per the venue (merged with max by the caller)."""
        missing = venue_filled - self.fills_by_cloid.get(cloid, 0.0)
        if missing > EPS:
            p.unconfirmed[cloid] = missing if is_buy else -missing
        else:
            p.unconfirmed.pop(cloid, None)

    def apply_fill(self, p: Position, f: Fill) -> tuple[bool, dict[str, Any] | None]:
        """Apply a fill once. Returns (applied, closed trade record or None)."""
        if not self.seen_tids.add(f.tid):
            return False, None
        self.fills.append(f)
        self.changes += 1
        if f.cloid is not None:
            done = self.fills_by_cloid.get(f.cloid, 0.0) + f.sz
            self.fills_by_cloid[f.cloid] = done
            if f.cloid in p.unconfirmed:
                left = abs(p.unconfirmed[f.cloid]) - f.sz
                if left > EPS:
                    p.unconfirmed[f.cloid] = left if f.is_buy else -left
                else:
                    del p.unconfirmed[f.cloid]
        p.fees += f.fee
        closed = self._apply_size(p, f)
        return True, closed

    def _apply_size(self, p: Position, f: Fill) -> dict[str, Any] | None:
        signed = f.signed
        before = p.size
        after = before + signed
        if abs(before) <= EPS:
            # opening a new trade
            p.avg_px = f.px
            p.trade_open_ms = f.time_ms
            p.trade_dir = 1 if signed > 0 else -1
            p.trade_fees = 0.0
            p.trade_pnl = 0.0
            p.trade_entry_qty = abs(signed)
            p.trade_entry_cost = abs(signed) * f.px
            p.trade_exit_qty = 0.0
            p.trade_exit_cost = 0.0
        elif (before > 0) == (signed > 0):
            # adding in the same direction: VWAP
            p.avg_px = (abs(before) * p.avg_px + abs(signed) * f.px) / (abs(before) + abs(signed))
            p.trade_entry_qty += abs(signed)
            p.trade_entry_cost += abs(signed) * f.px
        else:
            closing = min(abs(signed), abs(before))
            direction = 1 if before > 0 else -1
            pnl = (f.px - p.avg_px) * closing * direction
            p.realized_pnl += pnl
            p.trade_pnl += pnl
            p.trade_exit_qty += closing
            p.trade_exit_cost += closing * f.px
        p.trade_fees += f.fee
        p.size = 0.0 if abs(after) <= EPS else after
        if abs(before) > EPS and (abs(after) <= EPS or (before > 0) != (after > 0)):
            trade = self._close_trade(p, f.time_ms)
            if abs(after) > EPS:  # flip: the remainder opens a new trade at this price
                p.avg_px = f.px
                p.trade_open_ms = f.time_ms
                p.trade_dir = 1 if after > 0 else -1
                p.trade_fees = 0.0
                p.trade_pnl = 0.0
                p.trade_entry_qty = abs(after)
                p.trade_entry_cost = abs(after) * f.px
                p.trade_exit_qty = 0.0
                p.trade_exit_cost = 0.0
            return trade
        return None

    def _close_trade(self, p: Position, time_ms: float) -> dict[str, Any]:
        entry_avg = p.trade_entry_cost / p.trade_entry_qty if p.trade_entry_qty else None
        exit_avg = p.trade_exit_cost / p.trade_exit_qty if p.trade_exit_qty else None
        slip_bps = None
        if p.entry_decision_px and entry_avg:
            sign = 1 if p.trade_dir > 0 else -1
            slip_bps = sign * (entry_avg - p.entry_decision_px) / p.entry_decision_px * 1e4
        trade = {
            "market_key": p.coin,
            "direction": "long" if p.trade_dir > 0 else "short",
            "entry_signal_id": p.entry_signal_id,
            "entry_time_ms": p.trade_open_ms,
            "exit_time_ms": time_ms,
            "hold_ms": None if p.trade_open_ms is None else time_ms - p.trade_open_ms,
            "size": p.trade_entry_qty,
            "entry_decision_px": p.entry_decision_px,
            "entry_avg_px": entry_avg,
            "entry_slippage_bps": slip_bps,
            "exit_avg_px": exit_avg,
            "exit_reason": p.exit_reason,
            "entry_edge_bps": p.entry_edge_bps,
            "gross_pnl": p.trade_pnl,
            "fees": p.trade_fees,
            "net_pnl": p.trade_pnl - p.trade_fees,
        }
        p.exit_reason = None
        p.entry_signal_id = None
        p.entry_decision_px = None
        p.entry_edge_bps = None
        return trade

    def forget_cloids(self, known: Container[str]) -> None:
        """Drop the fill sums of cloids not in ``known`` (the orders the order book still
        holds, after it pruned old terminal ones): nothing asks for them any more
        (:meth:`set_venue_filled` is called only for known orders)."""
        self.fills_by_cloid = {c: v for c, v in self.fills_by_cloid.items() if c in known}

    def total_abs_exposure(self) -> float:
        return sum(abs(p.effective) for p in self.positions)
