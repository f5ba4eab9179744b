"""Bybit v5 endpoints for mainnet and testnet (REST host, public spot/linear, private WS)."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

import attrs

_MAINNET_DOMAINS: Final = ("bybit.com", "bytick.com")
_NOT_LIVE_WORDS: Final = ("testnet", "demo")


@attrs.frozen
class BybitUrls:
    rest: str
    ws_public_linear: str
    ws_public_spot: str
    ws_private: str

    @property
    def is_mainnet(self) -> bool:
        return self.rest == MAINNET.rest


MAINNET = BybitUrls(
    rest="https://api.bybit.com",
    ws_public_linear="wss://stream.bybit.com/v5/public/linear",
    ws_public_spot="wss://stream.bybit.com/v5/public/spot",
    ws_private="wss://stream.bybit.com/v5/private",
)
TESTNET = BybitUrls(
    rest="https://api-testnet.bybit.com",
    ws_public_linear="wss://stream-testnet.bybit.com/v5/public/linear",
    ws_public_spot="wss://stream-testnet.bybit.com/v5/public/spot",
    ws_private="wss://stream-testnet.bybit.com/v5/private",
)


def local(base_http: str) -> BybitUrls:
    """The URLs of a simulator serving REST and every WebSocket path on one ``http://host:port``."""
    ws = "ws" + base_http[len("http"):]
    return BybitUrls(
        rest=base_http,
        ws_public_linear=f"{ws}/v5/public/linear",
        ws_public_spot=f"{ws}/v5/public/spot",
        ws_private=f"{ws}/v5/private",
    )


def for_environment(environment: str) -> BybitUrls:
    """``mainnet`` or ``testnet``; anything else raises ValueError naming the choices."""
    if environment == "mainnet":
        return MAINNET
    if environment == "testnet":
        return TESTNET
    raise ValueError(f"Bybit environment must be mainnet or testnet, got {environment!r}")


def mainnet_host(url: str) -> bool:
    """A Bybit mainnet host (``api.bybit.com``, ``stream.bybit.com``, ``api.bytick.com``…),
    not testnet or demo trading: an order sent there trades real money."""
    host = (urlsplit(url).hostname or "").lower()
    on_bybit = any(host == d or host.endswith("." + d) for d in _MAINNET_DOMAINS)
    return on_bybit and not any(w in host for w in _NOT_LIVE_WORDS)
