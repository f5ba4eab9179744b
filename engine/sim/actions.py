"""Signed action bodies (``POST /exchange`` and WS ``post`` of type ``action``; docs/reference/hyperliquid-protocol.md §4.1,
§5, §8): validation of the envelope and of ``order`` / ``cancel`` / ``cancelByCloid`` /
``updateLeverage`` / ``scheduleCancel`` actions, and the canonical action the venue hashes to recover the signer.

Like the venue, the simulator re-serialises what it parsed rather than hashing the bytes it
received: keys go in the canonical order, cloids and builder addresses are lower-cased and price
and size strings lose trailing zeros. A client that hashed something else (``"105.0"``, an
upper-case cloid, reordered keys) therefore recovers to a random address and gets
"User or API Wallet 0x… does not exist." (docs/reference/hyperliquid-protocol.md §15 P4). Other action types are hashed as received.
A body that does not have the venue's types is a deserialisation error (HTTP 422).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.sim import grid

DESERIALIZE = "Failed to deserialize the JSON body into the target type"
TIFS = ("Gtc", "Ioc", "Alo", "FrontendMarket")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_CLOID = re.compile(r"0x[0-9a-fA-F]{32}")
_HEX = re.compile(r"0x[0-9a-fA-F]{1,64}")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


class ActionParseError(ValueError):
    """The body does not deserialise into a venue action (HTTP 422, WS post type "error")."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"{DESERIALIZE}: {detail}")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    asset: int
    is_buy: bool
    px: Decimal
    sz: Decimal
    px_wire: str  # normalised (no trailing zeros)
    sz_wire: str
    reduce_only: bool
    tif: str | None  # None for trigger orders
    cloid: str | None


@dataclass(frozen=True, slots=True)
class CancelRequest:
    asset: int
    oid: int | None = None
    cloid: str | None = None


@dataclass(slots=True)
class SignedAction:
    """A parsed envelope: ``action`` is the canonical dict to hash."""

    kind: str
    action: Any
    nonce: int
    signature: dict[str, Any]
    vault: str | None
    expires_after: int | None
    orders: list[OrderRequest] = field(default_factory=list)
    cancels: list[CancelRequest] = field(default_factory=list)
    leverage: tuple[int, bool, int] | None = None  # (asset, isCross, leverage)
    schedule_time: int | None = None  # scheduleCancel's "time" (None: unset the timer)

    @property
    def n_requests(self) -> int:
        """Address-based rate limit cost: one per order or cancel of a batch."""
        return max(1, len(self.orders) + len(self.cancels))


# ---------------------------------------------------------------------- field helpers


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ActionParseError(f"`{what}` must be an object")
    return value


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ActionParseError(f"`{what}` must be an integer >= {minimum}")
    if value >= 2**64:
        raise ActionParseError(f"`{what}` does not fit in 64 bits")
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ActionParseError(f"`{what}` must be a boolean")
    return value


def _decimal(value: Any, what: str) -> tuple[Decimal, str]:
    if not isinstance(value, str) or _DECIMAL.fullmatch(value) is None:
        raise ActionParseError(f"`{what}` must be a decimal string, got {value!r}")
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise ActionParseError(f"`{what}` must be a decimal string, got {value!r}") from None
    return d, grid.fmt(d)


def _cloid(value: Any, what: str) -> str:
    if not isinstance(value, str) or _CLOID.fullmatch(value) is None:
        raise ActionParseError(f"`{what}` must be 0x followed by 32 hex digits, got {value!r}")
    return value.lower()


def _address(value: Any, what: str) -> str:
    if not isinstance(value, str) or _ADDRESS.fullmatch(value) is None:
        raise ActionParseError(f"`{what}` must be a 0x address, got {value!r}")
    return value.lower()


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ActionParseError(f"`{what}` must be an array")
    return value


# ---------------------------------------------------------------------- actions


def _order(raw: Any, i: int) -> tuple[OrderRequest, dict[str, Any]]:
    o = _obj(raw, f"orders[{i}]")
    for key in ("a", "b", "p", "s", "r", "t"):
        if key not in o:
            raise ActionParseError(f"missing field `{key}` in orders[{i}]")
    asset = _int(o["a"], f"orders[{i}].a")
    is_buy = _bool(o["b"], f"orders[{i}].b")
    px, px_wire = _decimal(o["p"], f"orders[{i}].p")
    sz, sz_wire = _decimal(o["s"], f"orders[{i}].s")
    reduce_only = _bool(o["r"], f"orders[{i}].r")
    t = _obj(o["t"], f"orders[{i}].t")
    tif: str | None
    wire_t: dict[str, Any]
    if set(t) == {"limit"}:
        limit = _obj(t["limit"], f"orders[{i}].t.limit")
        tif = limit.get("tif")
        if tif not in TIFS:
            raise ActionParseError(f"unknown variant {tif!r} for `orders[{i}].t.limit.tif`")
        wire_t = {"limit": {"tif": tif}}
    elif set(t) == {"trigger"}:
        trig = _obj(t["trigger"], f"orders[{i}].t.trigger")
        is_market = _bool(trig.get("isMarket"), f"orders[{i}].t.trigger.isMarket")
        _, trigger_px = _decimal(trig.get("triggerPx"), f"orders[{i}].t.trigger.triggerPx")
        tpsl = trig.get("tpsl")
        if tpsl not in ("tp", "sl"):
            raise ActionParseError(f"unknown variant {tpsl!r} for `orders[{i}].t.trigger.tpsl`")
        tif = None
        wire_t = {"trigger": {"isMarket": is_market, "triggerPx": trigger_px, "tpsl": tpsl}}
    else:
        raise ActionParseError(f"`orders[{i}].t` must have exactly one of `limit`, `trigger`")
    wire: dict[str, Any] = {
        "a": asset,
        "b": is_buy,
        "p": px_wire,
        "s": sz_wire,
        "r": reduce_only,
        "t": wire_t,
    }
    cloid: str | None = None
    if o.get("c") is not None:
        cloid = _cloid(o["c"], f"orders[{i}].c")
        wire["c"] = cloid
    return OrderRequest(asset, is_buy, px, sz, px_wire, sz_wire, reduce_only, tif, cloid), wire


def _grouping(value: Any) -> Any:
    if value in ("na", "normalTpsl", "positionTpsl"):
        return value
    if isinstance(value, dict) and set(value) == {"p"}:
        return {"p": _int(value["p"], "grouping.p")}
    raise ActionParseError(f"unknown variant {value!r} for `grouping`")


def _parse_order_action(action: dict[str, Any], out: SignedAction) -> dict[str, Any]:
    orders = _list(action.get("orders"), "orders")
    wires = []
    for i, raw in enumerate(orders):
        req, wire = _order(raw, i)
        out.orders.append(req)
        wires.append(wire)
    canonical: dict[str, Any] = {
        "type": "order",
        "orders": wires,
        "grouping": _grouping(action.get("grouping", "na")),
    }
    builder = action.get("builder")
    if builder is not None:
        b = _obj(builder, "builder")
        canonical["builder"] = {
            "b": _address(b.get("b"), "builder.b"),
            "f": _int(b.get("f"), "builder.f"),
        }
    return canonical


def _parse_cancel(action: dict[str, Any], out: SignedAction) -> dict[str, Any]:
    wires = []
    for i, raw in enumerate(_list(action.get("cancels"), "cancels")):
        c = _obj(raw, f"cancels[{i}]")
        asset = _int(c.get("a"), f"cancels[{i}].a")
        oid = _int(c.get("o"), f"cancels[{i}].o")
        out.cancels.append(CancelRequest(asset, oid=oid))
        wires.append({"a": asset, "o": oid})
    return {"type": "cancel", "cancels": wires}


def _parse_cancel_by_cloid(action: dict[str, Any], out: SignedAction) -> dict[str, Any]:
    wires = []
    for i, raw in enumerate(_list(action.get("cancels"), "cancels")):
        c = _obj(raw, f"cancels[{i}]")
        asset = _int(c.get("asset"), f"cancels[{i}].asset")
        cloid = _cloid(c.get("cloid"), f"cancels[{i}].cloid")
        out.cancels.append(CancelRequest(asset, cloid=cloid))
        wires.append({"asset": asset, "cloid": cloid})
    return {"type": "cancelByCloid", "cancels": wires}


def _parse_update_leverage(action: dict[str, Any], out: SignedAction) -> dict[str, Any]:
    asset = _int(action.get("asset"), "asset")
    is_cross = _bool(action.get("isCross"), "isCross")
    leverage = _int(action.get("leverage"), "leverage", minimum=1)
    out.leverage = (asset, is_cross, leverage)
    return {"type": "updateLeverage", "asset": asset, "isCross": is_cross, "leverage": leverage}


def _parse_schedule_cancel(action: dict[str, Any], out: SignedAction) -> dict[str, Any]:
    extra = set(action) - {"type", "time"}
    if extra:
        raise ActionParseError(f"unknown field `{sorted(extra)[0]}` in `scheduleCancel`")
    if "time" not in action or action["time"] is None:
        return {"type": "scheduleCancel"}
    out.schedule_time = _int(action["time"], "time")
    return {"type": "scheduleCancel", "time": out.schedule_time}


_PARSERS = {
    "order": _parse_order_action,
    "cancel": _parse_cancel,
    "cancelByCloid": _parse_cancel_by_cloid,
    "updateLeverage": _parse_update_leverage,
    "scheduleCancel": _parse_schedule_cancel,
}


def parse_signed_action(payload: Any) -> SignedAction:
    """The envelope ``{action, nonce, signature, vaultAddress?, expiresAfter?}``, validated."""
    body = _obj(payload, "body")
    action = _obj(body.get("action"), "action")
    kind = action.get("type")
    if not isinstance(kind, str):
        raise ActionParseError("missing field `type` in `action`")
    if "nonce" not in body:
        raise ActionParseError("missing field `nonce`")
    nonce = _int(body["nonce"], "nonce")
    sig = _obj(body.get("signature"), "signature")
    r, s, v = sig.get("r"), sig.get("s"), sig.get("v")
    if not isinstance(r, str) or _HEX.fullmatch(r) is None:
        raise ActionParseError("`signature.r` must be a 0x-prefixed hex string")
    if not isinstance(s, str) or _HEX.fullmatch(s) is None:
        raise ActionParseError("`signature.s` must be a 0x-prefixed hex string")
    if isinstance(v, bool) or not isinstance(v, int):
        raise ActionParseError("`signature.v` must be an integer")
    vault_raw = body.get("vaultAddress")
    vault = None if vault_raw is None else _address(vault_raw, "vaultAddress")
    expires_raw = body.get("expiresAfter")
    expires = None if expires_raw is None else _int(expires_raw, "expiresAfter")
    out = SignedAction(kind, action, nonce, {"r": r, "s": s, "v": v}, vault, expires)
    parser = _PARSERS.get(kind)
    if parser is not None:
        out.action = parser(action, out)
    return out
