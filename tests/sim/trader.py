"""Test helper: build correctly signed actions with the official SDK's signing code (never the
engine's signer) and send them to the simulator as WS posts or ``POST /exchange``."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from hyperliquid.utils.signing import (
    get_timestamp_ms,
    order_request_to_order_wire,
    order_wires_to_order_action,
    sign_l1_action,
)
from hyperliquid.utils.types import Cloid

MASTER_KEY = "0x" + "11" * 32
AGENT_KEY = "0x" + "22" * 32
STRANGER_KEY = "0x" + "33" * 32
MASTER = Account.from_key(MASTER_KEY).address.lower()
AGENT = Account.from_key(AGENT_KEY).address.lower()
STRANGER = Account.from_key(STRANGER_KEY).address.lower()

GOLD = "xyz:GOLD"
GOLD_ID = 110003  # xyz is perpDexs[1] by default; GOLD is meta index 3 (szDecimals 4)


def cloid(n: int) -> str:
    return f"0x{n:032x}"


def order_wire(
    asset: int,
    is_buy: bool,
    px: float,
    sz: float,
    tif: str = "Gtc",
    reduce_only: bool = False,
    cl: str | None = None,
) -> dict[str, Any]:
    """One order wire exactly as the SDK builds it (prices/sizes through float_to_wire)."""
    request: dict[str, Any] = {
        "coin": "unused",
        "is_buy": is_buy,
        "sz": sz,
        "limit_px": px,
        "order_type": {"limit": {"tif": tif}},
        "reduce_only": reduce_only,
    }
    if cl is not None:
        request["cloid"] = Cloid.from_str(cl)
    return dict(order_request_to_order_wire(request, asset))  # type: ignore[arg-type]


class Trader:
    """Signs L1 actions with one key; nonces are ``max(last + 1, now_ms)``."""

    def __init__(self, key: str = MASTER_KEY, is_mainnet: bool = True) -> None:
        self.wallet = Account.from_key(key)
        self.address = self.wallet.address.lower()
        self.is_mainnet = is_mainnet
        self.last_nonce = 0

    def next_nonce(self) -> int:
        self.last_nonce = max(self.last_nonce + 1, get_timestamp_ms())
        return self.last_nonce

    def sign(
        self,
        action: dict[str, Any],
        nonce: int | None = None,
        vault: str | None = None,
        expires_after: int | None = None,
        is_mainnet: bool | None = None,
    ) -> dict[str, Any]:
        """The /exchange body (also the WS post payload) for ``action``."""
        n = self.next_nonce() if nonce is None else nonce
        mainnet = self.is_mainnet if is_mainnet is None else is_mainnet
        sig = sign_l1_action(self.wallet, action, vault, n, expires_after, mainnet)
        body: dict[str, Any] = {"action": action, "nonce": n, "signature": sig}
        if vault is not None:
            body["vaultAddress"] = vault
        if expires_after is not None:
            body["expiresAfter"] = expires_after
        return body

    def orders(self, *wires: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return self.sign(order_wires_to_order_action(list(wires)), **kw)  # type: ignore[arg-type]

    def cancel(self, asset: int, oid: int, **kw: Any) -> dict[str, Any]:
        return self.sign({"type": "cancel", "cancels": [{"a": asset, "o": oid}]}, **kw)

    def cancel_by_cloid(self, asset: int, cl: str, **kw: Any) -> dict[str, Any]:
        return self.sign(
            {"type": "cancelByCloid", "cancels": [{"asset": asset, "cloid": cl}]}, **kw
        )


async def ws_action(client: Any, post_id: int, body: dict[str, Any], wait_s: float = 3.0) -> Any:
    """Send one action post on a conftest ``Client``; return ``data.response`` of its answer."""
    await client.send(
        {"method": "post", "id": post_id, "request": {"type": "action", "payload": body}}
    )
    msg = await client.expect(
        lambda m: m.get("channel") == "post" and m["data"]["id"] == post_id, wait_s=wait_s
    )
    return msg["data"]["response"]


async def ws_ok(client: Any, post_id: int, body: dict[str, Any]) -> list[Any]:
    """Send an order/cancel action and return its ``statuses`` (asserting status ok)."""
    response = await ws_action(client, post_id, body)
    assert response["type"] == "action", response
    payload = response["payload"]
    assert payload["status"] == "ok", payload
    statuses: list[Any] = payload["response"]["data"]["statuses"]
    return statuses
