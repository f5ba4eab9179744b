"""Fault-injection state and payloads: stalled streams and the broken frames of ``inject_malformed``.

A stall silences one market's stream(s) for every client while the model keeps running;
malformed frames exercise a client's decoder (invalid JSON, wrong field types, unknown channel).
"""

from __future__ import annotations

from typing import Literal

import msgspec

StallStream = Literal["both", "bbo", "activeAssetCtx"]
MalformedKind = Literal["garbage", "bad_shape", "unknown_channel"]
MALFORMED_KINDS: tuple[str, ...] = ("garbage", "bad_shape", "unknown_channel")
UNKNOWN_CHANNEL = "simUnknownChannel"

_STREAMS = {
    "both": ("bbo", "activeAssetCtx"),
    "bbo": ("bbo",),
    "activeAssetCtx": ("activeAssetCtx",),
}
# channel -> the stall stream that silences it (l2Book is the book stream, like bbo)
_CHANNEL_STREAM = {"bbo": "bbo", "l2Book": "bbo", "activeAssetCtx": "activeAssetCtx"}


class Stalls:
    """Per-coin stalled streams, each until a deadline (trio clock) or indefinitely."""

    def __init__(self) -> None:
        self._until: dict[str, dict[str, float | None]] = {}

    def stall(self, coin: str, stream: str, until: float | None) -> None:
        if stream not in _STREAMS:
            raise ValueError(f"stream must be one of both, bbo, activeAssetCtx; got {stream!r}")
        slot = self._until.setdefault(coin, {})
        for s in _STREAMS[stream]:
            slot[s] = until

    def unstall(self, coin: str) -> bool:
        return self._until.pop(coin, None) is not None

    def is_stalled(self, coin: str, channel: str, now: float) -> bool:
        if not self._until:
            return False
        slot = self._until.get(coin)
        if slot is None:
            return False
        stream = _CHANNEL_STREAM.get(channel)
        if stream is None or stream not in slot:
            return False
        until = slot[stream]
        if until is None or now < until:
            return True
        del slot[stream]
        if not slot:
            del self._until[coin]
        return False

    def active(self, now: float) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for coin in list(self._until):
            streams = [s for s in ("bbo", "activeAssetCtx") if self.is_stalled(coin, s, now)]
            if streams:
                out[coin] = streams
        return out


def malformed_payload(kind: str, coin: str) -> bytes:
    """One broken frame payload of the given kind, about ``coin``."""
    if kind == "garbage":
        # Not JSON at all: a frame cut off in the middle.
        return b'{"channel":"bbo","data":{"coin":"' + coin.encode() + b'","time":17,"bbo":[{"px":'
    if kind == "bad_shape":
        return msgspec.json.encode(
            {
                "channel": "bbo",
                "data": {
                    "coin": coin,
                    "time": "1700000000000",
                    "bbo": [{"px": 112.5, "sz": None, "n": "2"}, "ask"],
                },
            }
        )
    if kind == "unknown_channel":
        return msgspec.json.encode({"channel": UNKNOWN_CHANNEL, "data": {"coin": coin, "x": 1}})
    raise ValueError(f"kind must be one of {', '.join(MALFORMED_KINDS)}; got {kind!r}")
