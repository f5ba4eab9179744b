"""The Bybit simulator's own codec and authentication (independent of the engine's adapter).

Encodes the v5 message shapes the simulator publishes (REST envelope, ``op`` replies, ticker
snapshot/delta, ``orderbook.1`` snapshots, private ``order``/``execution``/``position``/
``wallet``) with the standard library's ``json``, and verifies requests by Bybit's rules:
REST ``X-BAPI-SIGN = hex(HMAC_SHA256(secret, timestamp + key + recv_window + payload))`` with
``server - recv_window <= timestamp < server + 1000``; WebSocket ``auth`` with
``hex(HMAC_SHA256(secret, "GET/realtime" + expires))`` and ``expires`` in the future.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

OK = 0
PARAM_ERROR = 10001
TIMESTAMP_ERROR = 10002
INVALID_KEY = 10003
SIGN_ERROR = 10004
RATE_LIMIT = 10006
SERVER_ERROR = 10016
ORDER_NOT_FOUND = 110001
INSUFFICIENT_BALANCE = 110007
REDUCE_ONLY_ZERO = 110017
DUPLICATE_LINK_ID = 110072
SPOT_INSUFFICIENT = 170131


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def envelope(now_ms: int, result: Any = None, code: int = OK, msg: str = "OK") -> bytes:
    return dumps({"retCode": code, "retMsg": msg if code == OK or msg != "OK" else "error",
                  "result": result if result is not None else {}, "retExtInfo": {},
                  "time": now_ms}).encode()


def hmac_hex(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


class AuthFailure(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def verify_rest(headers: Mapping[str, str], payload: str, secrets: Mapping[str, str],
                now_ms: int) -> str:
    """The API key of a correctly signed request; raises :class:`AuthFailure` otherwise.
    ``headers`` have lower-case names."""
    key = headers.get("x-bapi-api-key")
    if not key or key not in secrets:
        raise AuthFailure(INVALID_KEY, "API key is invalid.")
    try:
        ts = int(headers.get("x-bapi-timestamp", ""))
        rw = int(headers.get("x-bapi-recv-window", "5000"))
    except ValueError:
        raise AuthFailure(PARAM_ERROR, "invalid timestamp or recv_window header") from None
    if not (now_ms - rw <= ts < now_ms + 1000):
        raise AuthFailure(
            TIMESTAMP_ERROR,
            f"invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{ts}],server_timestamp[{now_ms}],recv_window[{rw}]",
        )
    expected = hmac_hex(secrets[key], f"{ts}{key}{rw}{payload}")
    if not hmac.compare_digest(expected, headers.get("x-bapi-sign", "")):
        raise AuthFailure(SIGN_ERROR, "error sign! origin_string[...]")
    return key


def verify_ws_auth(args: Any, secrets: Mapping[str, str], now_ms: int) -> str:
    """The API key of a valid ``{"op":"auth","args":[key, expires, sig]}``."""
    if not isinstance(args, list) or len(args) != 3:
        raise AuthFailure(PARAM_ERROR, "args must be [api_key, expires, signature]")
    key, expires, sig = args
    if not isinstance(key, str) or key not in secrets:
        raise AuthFailure(INVALID_KEY, "Invalid apikey")
    try:
        exp = int(expires)
    except (TypeError, ValueError):
        raise AuthFailure(PARAM_ERROR, "invalid expires") from None
    if exp <= now_ms:
        raise AuthFailure(TIMESTAMP_ERROR, "Params Error: auth expired")
    if not isinstance(sig, str) or not hmac.compare_digest(
        hmac_hex(secrets[key], f"GET/realtime{exp}"), sig
    ):
        raise AuthFailure(SIGN_ERROR, "Signature verification failed")
    return key


def op_reply(op: str, success: bool, ret_msg: str, conn_id: str, req_id: str | None,
             private: bool) -> str:
    if private and op == "ping":
        return dumps({"req_id": req_id or "", "op": "pong", "args": [ret_msg],
                      "conn_id": conn_id})
    out: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "conn_id": conn_id}
    if req_id is not None:
        out["req_id"] = req_id
    out["op"] = op
    return dumps(out)


def s(x: float, places: int = 8) -> str:
    """A decimal string without exponent and without trailing zeros."""
    text = f"{x:.{places}f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"
