"""WebSocket subscription requests: validation, identity (for duplicate detection) and the echo.

The venue echoes the subscription in its ack and quotes it, compactly encoded, in
``Already subscribed: …`` / ``Invalid subscription …`` errors; the echo puts ``type`` first and
keeps only the fields the channel understands.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, TypeGuard

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

MARKET_CHANNELS = ("bbo", "activeAssetCtx", "l2Book")
USER_CHANNELS = ("orderUpdates", "userEvents", "userFills")


@dataclass(frozen=True, slots=True)
class Subscription:
    type: str
    key: tuple[Any, ...]  # identity: two subscribes with the same key are duplicates
    echo: dict[str, Any]
    coin: str | None = None
    dex: str | None = None
    user: str | None = None


def is_address(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and _ADDRESS.fullmatch(value) is not None


def parse_subscription(
    raw: dict[str, Any], coins: Collection[str], dexes: Collection[str]
) -> Subscription | None:
    """The subscription ``raw`` describes, or None when the venue would call it invalid."""
    kind = raw.get("type")
    if kind in ("bbo", "activeAssetCtx"):
        coin = raw.get("coin")
        if not isinstance(coin, str) or coin not in coins:
            return None
        return Subscription(kind, (kind, coin), {"type": kind, "coin": coin}, coin=coin)
    if kind == "l2Book":
        coin = raw.get("coin")
        if not isinstance(coin, str) or coin not in coins:
            return None
        n_sig = raw.get("nSigFigs")
        mantissa = raw.get("mantissa")
        if n_sig not in (None, 2, 3, 4, 5) or isinstance(n_sig, bool):
            return None
        if mantissa not in (None, 1, 2, 5) or isinstance(mantissa, bool):
            return None
        if mantissa is not None and n_sig != 5:
            return None
        echo: dict[str, Any] = {"type": kind, "coin": coin}
        if "nSigFigs" in raw:
            echo["nSigFigs"] = n_sig
        if "mantissa" in raw:
            echo["mantissa"] = mantissa
        return Subscription(kind, (kind, coin, n_sig, mantissa), echo, coin=coin)
    if kind == "allMids":
        dex = raw.get("dex")
        if dex is not None and (not isinstance(dex, str) or (dex and dex not in dexes)):
            return None
        echo = {"type": kind}
        if "dex" in raw:
            echo["dex"] = dex
        return Subscription(kind, (kind, dex or ""), echo, dex=dex or "")
    if kind in USER_CHANNELS:
        user = raw.get("user")
        if not is_address(user):
            return None
        echo = {"type": kind, "user": user}
        key: tuple[Any, ...] = (kind, user.lower())
        if kind == "userFills" and "aggregateByTime" in raw:
            agg = raw["aggregateByTime"]
            if not isinstance(agg, bool):
                return None
            echo["aggregateByTime"] = agg
            key = (kind, user.lower(), agg)
        return Subscription(kind, key, echo, user=user.lower())
    return None


def describe(raw: Any) -> dict[str, Any] | Any:
    """What an error message quotes for a subscription the server could not accept."""
    if isinstance(raw, dict) and "type" in raw:
        return {"type": raw["type"], **{k: v for k, v in raw.items() if k != "type"}}
    return raw
