"""Fault-injection state and payloads: stalled streams, the broken frames of ``inject_malformed``
and the trading-side venue faults of :class:`TradingFaults`.

A stall silences one market's stream(s) for every client while the model keeps running;
malformed frames exercise a client's decoder (invalid JSON, wrong field types, unknown channel).
"""

from __future__ import annotations

import math
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


class TradingFaults:
    """Venue behaviours of the trading side that money-safety code must survive (issue 9).

    Every knob is off by default; times are the simulator's wall clock (epoch ms) unless noted.

    * ``user_stream_delay_ms``: ``orderUpdates``, ``userFills`` and ``userEvents`` caused by an
      action go out this long after its post response (so they arrive in separate socket
      reads, after the response that already says ``filled``);
    * an all-zero ``clearinghouseState`` (every dex, whoever asks) during a window
      (:meth:`empty_clearinghouse_for`) or periodically (:meth:`empty_clearinghouse_every`);
    * ``drop_on_reduce_only``: the next N order actions carrying a reduce-only order cut the
      WebSocket they arrived on before any answer; with ``drop_executes`` the action is
      executed first (the venue has it, the client never hears), otherwise it is discarded
      unexecuted (the venue never saw it);
    * ``unknown_oid_ms``: ``orderStatus`` answers ``unknownOid`` for an order younger than this
      (the venue's view lags its own order book).
    """

    def __init__(self) -> None:
        self.user_stream_delay_ms = 0.0
        self.empty_until_ms = 0.0
        self.empty_period_ms = 0.0
        self.empty_length_ms = 0.0
        self.empty_t0_ms = 0.0
        self.drop_on_reduce_only = 0
        self.drop_executes = False
        self.unknown_oid_ms = 0.0

    def set_user_stream_delay(self, ms: float) -> None:
        if not (ms >= 0 and math.isfinite(ms)):
            raise ValueError("the user-stream delay must be a finite number of ms >= 0")
        self.user_stream_delay_ms = float(ms)

    def empty_clearinghouse_for(self, seconds: float, now_ms: float) -> None:
        """All-zero ``clearinghouseState`` answers from now for ``seconds`` (0 ends it)."""
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError("the window must be a finite number of seconds >= 0")
        self.empty_until_ms = now_ms + seconds * 1000.0

    def empty_clearinghouse_every(self, period_s: float, length_s: float, now_ms: float) -> None:
        """From ``period_s`` after now, every ``period_s``: ``length_s`` of all-zero answers
        (period 0: off)."""
        if period_s == 0:
            self.empty_period_ms = 0.0
            return
        if not (0 < length_s < period_s and math.isfinite(period_s)):
            raise ValueError("need 0 < length_s < period_s")
        self.empty_period_ms = period_s * 1000.0
        self.empty_length_ms = length_s * 1000.0
        self.empty_t0_ms = now_ms

    def clearinghouse_empty(self, now_ms: float) -> bool:
        if now_ms < self.empty_until_ms:
            return True
        if self.empty_period_ms > 0:
            elapsed = now_ms - self.empty_t0_ms
            return elapsed >= self.empty_period_ms and elapsed % self.empty_period_ms < (
                self.empty_length_ms
            )
        return False

    def set_drop_on_reduce_only(self, n: int, execute: bool = False) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        self.drop_on_reduce_only = int(n)
        self.drop_executes = bool(execute)

    def take_reduce_only_drop(self, payload: object) -> bool:
        """True (and one drop used) when ``payload`` is an order action with a reduce-only
        order and a drop is armed."""
        if self.drop_on_reduce_only <= 0 or not isinstance(payload, dict):
            return False
        action = payload.get("action")
        if not isinstance(action, dict) or action.get("type") != "order":
            return False
        orders = action.get("orders")
        if not isinstance(orders, list) or not any(
            isinstance(o, dict) and o.get("r") is True for o in orders
        ):
            return False
        self.drop_on_reduce_only -= 1
        return True

    def set_unknown_oid(self, ms: float) -> None:
        if not (ms >= 0 and math.isfinite(ms)):
            raise ValueError("the unknownOid window must be a finite number of ms >= 0")
        self.unknown_oid_ms = float(ms)

    def hides_order(self, order_ts_ms: float, now_ms: float) -> bool:
        """``orderStatus`` pretends not to know an order created at ``order_ts_ms``."""
        return self.unknown_oid_ms > 0 and now_ms - order_ts_ms < self.unknown_oid_ms

    def snapshot(self, now_ms: float) -> dict[str, object]:
        return {
            "user_stream_delay_ms": self.user_stream_delay_ms,
            "clearinghouse_empty": self.clearinghouse_empty(now_ms),
            "empty_clearinghouse_every_s": self.empty_period_ms / 1000.0,
            "drop_on_reduce_only": self.drop_on_reduce_only,
            "drop_executes": self.drop_executes,
            "unknown_oid_ms": self.unknown_oid_ms,
        }
