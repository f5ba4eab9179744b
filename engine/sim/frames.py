"""Server-to-client wire frames: JSON payloads of every channel and RFC 6455 text framing.

Server frames are unmasked, so a text frame is a 2/4/10-byte header plus the UTF-8 payload; the
simulator frames them itself (one ``bytes`` per message) so they can be pre-encoded and batched.
No extension is ever negotiated, so plain frames are always valid.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine.sim import grid
from engine.sim.model import Bbo, Ctx, Level

GREETING = b"Websocket connection established."
PONG = b'{"channel":"pong"}'

_encoder = msgspec.json.Encoder()
encode = _encoder.encode


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked WebSocket text frame carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def level_wire(level: Level | None) -> dict[str, Any] | None:
    if level is None:
        return None
    return {"px": level.px, "sz": level.sz, "n": level.n}


def bbo_payload(coin: str, time_ms: int, bbo: Bbo) -> bytes:
    return encode(
        {
            "channel": "bbo",
            "data": {
                "coin": coin,
                "time": time_ms,
                "bbo": [level_wire(bbo.bid), level_wire(bbo.ask)],
            },
        }
    )


def ctx_payload(coin: str, ctx: Ctx) -> bytes:
    return encode({"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": ctx.to_wire()}})


def l2book_payload(coin: str, time_ms: int, bids: list[Level], asks: list[Level]) -> bytes:
    return encode(
        {
            "channel": "l2Book",
            "data": {
                "coin": coin,
                "time": time_ms,
                "levels": [[level_wire(b) for b in bids], [level_wire(a) for a in asks]],
            },
        }
    )


def all_mids_payload(mids: dict[str, str], dex: str | None) -> bytes:
    data: dict[str, Any] = {"mids": mids}
    if dex:
        data["dex"] = dex
    return encode({"channel": "allMids", "data": data})


def ack_payload(method: str, subscription: dict[str, Any]) -> bytes:
    return encode(
        {
            "channel": "subscriptionResponse",
            "data": {"method": method, "subscription": subscription},
        }
    )


def error_payload(message: str) -> bytes:
    return encode({"channel": "error", "data": message})


def channel_payload(channel: str, data: Any) -> bytes:
    return encode({"channel": channel, "data": data})


def post_payload(post_id: int, response: dict[str, Any]) -> bytes:
    return encode({"channel": "post", "data": {"id": post_id, "response": response}})


def post_info_response(info_type: str, data: Any) -> dict[str, Any]:
    return {"type": "info", "payload": {"type": info_type, "data": data}}


def post_action_response(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` is the /exchange body: ``{"status": "ok"|"err", "response": ...}``."""
    return {"type": "action", "payload": payload}


def post_action_error(message: str) -> dict[str, Any]:
    return {"type": "action", "payload": {"status": "err", "response": message}}


def post_error(message: str) -> dict[str, Any]:
    return {"type": "error", "payload": message}


class BboTemplates:
    """Pre-encoded bbo frames for one book with varying sizes (firehose re-publication).

    Prices are the book's own; sizes are the book's scaled by a few factors and re-rounded to
    the lot grid, so re-published frames never move a price. A frame is
    ``header + head + str(time) + tail``; the header is precomputed for 13-digit epoch-ms times.
    """

    FACTORS = (1.0, 0.8, 1.25, 0.6, 1.5, 0.9, 1.1, 0.7)
    _PLACEHOLDER = 1_000_000_000_000  # 13 digits, like every epoch-ms time until 2286

    def __init__(self, coin: str, bbo: Bbo, sz_decimals: int) -> None:
        self.bbo = bbo
        self.variants: list[tuple[bytes, bytes, bytes]] = []
        for f in self.FACTORS:
            sides: list[Level | None] = []
            for lvl in (bbo.bid, bbo.ask):
                if lvl is None:
                    sides.append(None)
                    continue
                sz = grid.round_size(grid.to_decimal(lvl.sz) * grid.to_decimal(f), sz_decimals)
                if sz <= 0:
                    sz = grid.to_decimal(lvl.sz)
                sides.append(Level(lvl.px, grid.fmt(sz), lvl.n))
            payload = bbo_payload(coin, self._PLACEHOLDER, Bbo(sides[0], sides[1]))
            marker = b'"time":' + str(self._PLACEHOLDER).encode()
            head, tail = payload.split(marker, 1)
            frame = text_frame(payload)
            header = frame[: len(frame) - len(payload)]
            self.variants.append((header, head + b'"time":', tail))

    def frame(self, variant: int, time_ms: int) -> bytes:
        header, head, tail = self.variants[variant % len(self.variants)]
        t = str(time_ms).encode()
        if len(t) == 13:
            return header + head + t + tail
        return text_frame(head + t + tail)
