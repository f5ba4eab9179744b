"""Signer recovery for L1 actions with the official SDK (docs/reference/hyperliquid-protocol.md §8), imported lazily so that
market-data-only use of the simulator never loads eth-account.

The phantom-agent source is ``"a"`` on mainnet and ``"b"`` on testnet; the simulator is mainnet
unless configured otherwise. A signature that cannot be recovered at all (``v`` not 27/28, r/s
out of range) is reported as :class:`SignatureError`; one that recovers to some address is
returned as that address, lower-cased, and it is up to the caller to know the signer or not.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

_signing: ModuleType | None = None


class SignatureError(ValueError):
    """The signature is not a recoverable secp256k1 signature."""


def _sdk() -> ModuleType:
    global _signing
    if _signing is None:
        from hyperliquid.utils import signing

        _signing = signing
    return _signing


def recover_signer(
    action: Any,
    signature: dict[str, Any],
    vault: str | None,
    nonce: int,
    expires_after: int | None,
    is_mainnet: bool,
) -> str:
    """The lower-case address that signed ``action`` (see module docstring)."""
    if signature.get("v") not in (27, 28):
        raise SignatureError("v must be 27 or 28")
    try:
        address = _sdk().recover_agent_or_user_from_l1_action(
            action, signature, vault, nonce, expires_after, is_mainnet
        )
    except Exception as exc:  # noqa: BLE001 - eth-keys raises several unrelated types
        raise SignatureError(str(exc)) from exc
    return str(address).lower()


def action_hash(action: Any, vault: str | None, nonce: int, expires_after: int | None) -> str:
    """The action's connection id (keccak of msgpack ‖ nonce ‖ vault ‖ expiry) as 0x-hex."""
    return "0x" + bytes(_sdk().action_hash(action, vault, nonce, expires_after)).hex()
