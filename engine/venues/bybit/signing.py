"""Bybit v5 HMAC-SHA256 signing for REST requests and the private WebSocket's ``auth``.

REST: ``sign = hex(HMAC_SHA256(secret, timestamp + api_key + recv_window + payload))`` where the
payload is the exact query string of a GET or the exact JSON body of a POST; headers
``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP``, ``X-BAPI-SIGN``, ``X-BAPI-RECV-WINDOW``,
``X-BAPI-SIGN-TYPE: 2``. WebSocket: ``hex(HMAC_SHA256(secret, "GET/realtime" + expires_ms))``.
The venue accepts a timestamp within ``[server - recv_window, server + 1000)``.

:class:`BybitCredentials` holds the key pair; its repr and str never show the secret (nor the
key beyond its last 4 characters). The keyed HMAC is prepared once and copied per signature
(``bench/bench_bybit_signing.py`` prints the cost).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import msgspec

SIGN_TYPE_HMAC = "2"
WS_AUTH_PREFIX = b"GET/realtime"


class BybitCredentials:
    """An API key and secret. Never logged: repr shows only the key's last 4 characters."""

    __slots__ = ("api_key", "_key_bytes", "_mac")

    def __init__(self, api_key: str, api_secret: str) -> None:
        if not api_key or not api_secret:
            raise ValueError("Bybit api_key and api_secret must both be non-empty")
        self.api_key = api_key
        self._key_bytes = api_key.encode("ascii")
        self._mac = hmac.new(api_secret.encode("ascii"), digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return f"BybitCredentials(api_key=…{self.api_key[-4:]})"

    __str__ = __repr__

    def sign(self, message: bytes) -> str:
        """Lowercase hex HMAC-SHA256 of ``message`` under the secret."""
        mac = self._mac.copy()
        mac.update(message)
        return mac.hexdigest()

    def sign_rest(self, timestamp_ms: int, recv_window_ms: int, payload: str | bytes) -> str:
        """The ``X-BAPI-SIGN`` of a request whose query string / body is ``payload``."""
        body = payload.encode("utf-8") if isinstance(payload, str) else payload
        return self.sign(b"%d%s%d%s" % (timestamp_ms, self._key_bytes, recv_window_ms, body))

    def rest_headers(
        self, timestamp_ms: int, recv_window_ms: int, payload: str | bytes
    ) -> dict[str, str]:
        """The authentication headers of one signed request."""
        return {
            "X-BAPI-API-KEY": self.api_key,
            "X-BAPI-TIMESTAMP": str(timestamp_ms),
            "X-BAPI-SIGN": self.sign_rest(timestamp_ms, recv_window_ms, payload),
            "X-BAPI-SIGN-TYPE": SIGN_TYPE_HMAC,
            "X-BAPI-RECV-WINDOW": str(recv_window_ms),
        }

    def ws_auth_args(self, expires_ms: int) -> list[Any]:
        """The ``args`` of ``{"op":"auth"}``: ``[api_key, expires, signature]``."""
        return [self.api_key, expires_ms, self.sign(WS_AUTH_PREFIX + str(expires_ms).encode())]


def query_string(params: Mapping[str, Any]) -> str:
    """The GET query string Bybit signs: keys sorted, ``None`` dropped, ``k=v`` joined by ``&``
    (pybit's rule; values are sent as they are, so the signed and the sent string agree)."""
    return "&".join(f"{k}={_scalar(v)}" for k, v in sorted(params.items()) if v is not None)


def json_body(params: Mapping[str, Any]) -> bytes:
    """The compact JSON body of a POST, ``None`` values dropped, key order kept: the bytes that
    are signed are the bytes that are sent."""
    return msgspec.json.encode({k: v for k, v in params.items() if v is not None})


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
