"""Simulated user state: accounts (USDC cash, isolated xyz positions, orders, fills), API-wallet
approvals and per-signer nonce sets (docs/reference/hyperliquid-protocol.md §8.5, §9, §11), plus the venue's wire shapes
for them (orders, fills, positions, margin summaries).

Money model (DEX abstraction, docs/reference/hyperliquid-protocol.md §9 notes): the account's free USDC lives on the main dex;
opening or increasing an xyz position moves ``notional / leverage`` of it into that position's
isolated margin, closing moves it back together with the realised PnL; fees are paid from the
free USDC. ``clearinghouseState`` on the main dex therefore shows the free USDC and on ``xyz`` the
isolated margin plus unrealised PnL ($0 when flat), as BOT observed.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.sim import grid

ZERO = Decimal(0)
NONCE_SET_SIZE = 100
NONCE_PAST_MS = 2 * 86_400_000
NONCE_FUTURE_MS = 86_400_000

_USD_QUANTUM = Decimal("0.000001")
_PX_QUANTUM = Decimal("0.00000001")


def num(value: Decimal) -> str:
    """A decimal the way the venue prints numbers in user data: no exponent, no trailing zeros,
    but at least one decimal (``"105.0"``, ``"0.0"``, ``"0.0147"``)."""
    s = grid.fmt(value)
    return s if "." in s else s + ".0"


def usd(value: Decimal) -> str:
    """A USDC amount (6 decimals at most)."""
    return num(value.quantize(_USD_QUANTUM))


def px_str(value: Decimal) -> str:
    """A computed price such as an average or entry price (8 decimals at most)."""
    return num(value.quantize(_PX_QUANTUM))


@dataclass(slots=True)
class Order:
    """One order the venue accepted (it has an oid), open or done."""

    user: str
    oid: int
    coin: str
    asset: int
    is_buy: bool
    limit_px: Decimal
    orig_sz: Decimal
    sz: Decimal  # remaining
    tif: str
    reduce_only: bool
    cloid: str | None
    timestamp: int
    status: str = "open"
    status_ts: int = 0

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def wire(self) -> dict[str, Any]:
        """The ``openOrders`` / ``orderUpdates`` order object."""
        out: dict[str, Any] = {
            "coin": self.coin,
            "side": "B" if self.is_buy else "A",
            "limitPx": num(self.limit_px),
            "sz": num(self.sz),
            "oid": self.oid,
            "timestamp": self.timestamp,
            "origSz": num(self.orig_sz),
        }
        if self.cloid is not None:
            out["cloid"] = self.cloid
        if self.reduce_only:
            out["reduceOnly"] = True
        return out

    def frontend_wire(self) -> dict[str, Any]:
        """The ``frontendOpenOrders`` / ``orderStatus`` order object."""
        out: dict[str, Any] = {
            "coin": self.coin,
            "side": "B" if self.is_buy else "A",
            "limitPx": num(self.limit_px),
            "sz": num(self.sz),
            "oid": self.oid,
            "timestamp": self.timestamp,
            "triggerCondition": "N/A",
            "isTrigger": False,
            "triggerPx": "0.0",
            "children": [],
            "isPositionTpsl": False,
            "reduceOnly": self.reduce_only,
            "orderType": "Limit",
            "origSz": num(self.orig_sz),
            "tif": self.tif,
            "cloid": self.cloid,
        }
        return out

    def update_wire(self) -> dict[str, Any]:
        """One element of an ``orderUpdates`` array."""
        return {"order": self.wire(), "status": self.status, "statusTimestamp": self.status_ts}


@dataclass(slots=True)
class Position:
    """An isolated one-way position on one xyz market."""

    coin: str
    szi: Decimal = ZERO  # signed size
    entry_px: Decimal = ZERO
    margin: Decimal = ZERO  # isolated USDC backing the position


@dataclass(slots=True)
class Account:
    """A master account: free USDC on the main dex, xyz positions, orders and fills."""

    address: str
    cash: Decimal
    positions: dict[str, Position] = field(default_factory=dict)
    leverage: dict[str, int] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)  # every accepted order, by oid
    cloids: dict[str, int] = field(default_factory=dict)  # cloid -> latest oid
    fills: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    cum_volume: Decimal = ZERO
    n_requests: int = 0

    def open_orders(self, coin_prefix: str | None = None) -> list[Order]:
        """Open orders, newest first; ``coin_prefix`` "xyz:" keeps only that dex's."""
        out = [
            o
            for o in self.orders.values()
            if o.is_open and (coin_prefix is None or o.coin.startswith(coin_prefix))
        ]
        out.sort(key=lambda o: o.oid, reverse=True)
        return out

    def position(self, coin: str) -> Position:
        pos = self.positions.get(coin)
        if pos is None:
            pos = self.positions[coin] = Position(coin)
        return pos

    def szi(self, coin: str) -> Decimal:
        pos = self.positions.get(coin)
        return pos.szi if pos is not None else ZERO


class NonceSet:
    """The 100 highest nonces of one signer (docs/reference/hyperliquid-protocol.md §11): a new nonce must be unused and, once
    the set is full, greater than its smallest element."""

    __slots__ = ("_heap", "_set", "size")

    def __init__(self, size: int = NONCE_SET_SIZE) -> None:
        self.size = size
        self._heap: list[int] = []
        self._set: set[int] = set()

    def check(self, nonce: int, now_ms: int) -> str | None:
        """None when ``nonce`` is acceptable at ``now_ms``, else the venue-style error."""
        if nonce in self._set:
            return "Invalid nonce: duplicate nonce"
        if nonce <= now_ms - NONCE_PAST_MS:
            return f"Invalid nonce: nonce {nonce} too old (more than 2 days before {now_ms})"
        if nonce >= now_ms + NONCE_FUTURE_MS:
            return (
                f"Invalid nonce: nonce {nonce} too far in the future (more than 1 day after "
                f"{now_ms})"
            )
        if len(self._heap) >= self.size and nonce <= self._heap[0]:
            return (
                f"Invalid nonce: nonce {nonce} too low (must exceed {self._heap[0]}, the "
                f"smallest of the {self.size} highest nonces used)"
            )
        return None

    def add(self, nonce: int) -> None:
        heapq.heappush(self._heap, nonce)
        self._set.add(nonce)
        while len(self._heap) > self.size:
            self._set.discard(heapq.heappop(self._heap))

    def __len__(self) -> int:
        return len(self._heap)


def margin_summary(
    account_value: Decimal, ntl: Decimal, raw_usd: Decimal, margin_used: Decimal
) -> dict[str, str]:
    return {
        "accountValue": usd(account_value),
        "totalNtlPos": usd(ntl),
        "totalRawUsd": usd(raw_usd),
        "totalMarginUsed": usd(margin_used),
    }


def empty_clearinghouse(now_ms: int) -> dict[str, Any]:
    zero = margin_summary(ZERO, ZERO, ZERO, ZERO)
    return {
        "marginSummary": zero,
        "crossMarginSummary": dict(zero),
        "crossMaintenanceMarginUsed": "0.0",
        "withdrawable": "0.0",
        "assetPositions": [],
        "time": now_ms,
    }
