"""Subscription registry and stream delivery: who receives which frame, per-coin bbo timestamps
(non-decreasing, except under the time-regression fault), stalls, subscribe snapshots, and the
user streams (orderUpdates, userFills, userEvents on channel ``user``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import trio

from engine.sim import frames
from engine.sim.faults import Stalls
from engine.sim.info import InfoService
from engine.sim.model import Bbo, Ctx, MarketModel
from engine.sim.subscriptions import MARKET_CHANNELS, Subscription
from engine.sim.ws import WsSession

StreamKey = tuple[str, str]  # (channel, coin | dex | user)


def stream_key(sub: Subscription) -> StreamKey:
    if sub.type in MARKET_CHANNELS:
        return (sub.type, sub.coin or "")
    if sub.type == "allMids":
        return ("allMids", sub.dex or "")
    return (sub.type, sub.user or "")


class Hub:
    """Routes frames to subscribed sessions. Single-threaded: call only from Trio tasks."""

    def __init__(
        self,
        model: MarketModel,
        info: InfoService,
        epoch_ms: Callable[[], int],
        counters: Counter[str],
    ) -> None:
        self.model = model
        self.info = info
        self.sessions: set[WsSession] = set()
        self.stalls = Stalls()
        self.counters = counters
        self._epoch_ms = epoch_ms
        self.epoch0_ms = 0  # epoch ms of virtual time 0 (set by the server at start)
        self._streams: dict[StreamKey, set[WsSession]] = defaultdict(set)
        self._last_bbo_time: dict[str, int] = {}
        self._regress: dict[str, int] = {}
        # user -> historical fills, newest first (set by the server when trading is enabled)
        self.user_fills: Callable[[str], list[Any]] | None = None

    # ------------------------------------------------------------------ registry

    def add(self, session: WsSession) -> None:
        self.sessions.add(session)

    def remove(self, session: WsSession) -> None:
        self.sessions.discard(session)
        for sub in session.subs.values():
            self._streams[stream_key(sub)].discard(session)
        session.subs.clear()

    def subscribe(self, session: WsSession, sub: Subscription) -> bool:
        """Register ``sub``; False when the session already has it."""
        if sub.key in session.subs:
            return False
        session.subs[sub.key] = sub
        self._streams[stream_key(sub)].add(session)
        return True

    def unsubscribe(self, session: WsSession, sub: Subscription) -> bool:
        """Remove ``sub``; False when the session does not have it."""
        if session.subs.pop(sub.key, None) is None:
            return False
        key = stream_key(sub)
        if not any(stream_key(s) == key for s in session.subs.values()):
            self._streams[key].discard(session)
        return True

    def subscribers(self, channel: str, name: str) -> set[WsSession]:
        return self._streams.get((channel, name)) or set()

    def subscribed_names(self, channel: str) -> list[str]:
        return [name for (ch, name), subs in self._streams.items() if ch == channel and subs]

    def subscription_count(self) -> int:
        return sum(len(s.subs) for s in self.sessions)

    # ------------------------------------------------------------------ faults

    def time_regression(self, coin: str, back_ms: int) -> None:
        self._regress[coin] = back_ms

    def stamp_bbo(self, coin: str, time_ms: int) -> int:
        """The ``time`` to put in the next bbo frame for ``coin`` (never decreasing, unless a
        time regression is pending, in which case it is ``back_ms`` before the previous one)."""
        last = self._last_bbo_time.get(coin, 0)
        if self._regress:
            back = self._regress.pop(coin, None)
            if back is not None and last:
                return last - back
        if time_ms < last:
            time_ms = last
        self._last_bbo_time[coin] = time_ms
        return time_ms

    def _live(self, coin: str, channel: str) -> bool:
        return not self.stalls.is_stalled(coin, channel, trio.current_time())

    # ------------------------------------------------------------------ publication

    def _broadcast(self, targets: set[WsSession], payload: bytes, channel: str) -> None:
        frame = frames.text_frame(payload)
        for s in targets:
            s.send_frame(frame)
        self.counters[channel] += len(targets)

    def publish_bbo(self, coin: str, time_ms: int, bbo: Bbo) -> None:
        targets = self._streams.get(("bbo", coin))
        if not targets or not self._live(coin, "bbo"):
            return
        self._broadcast(
            targets, frames.bbo_payload(coin, self.stamp_bbo(coin, time_ms), bbo), "bbo"
        )

    def publish_ctx(self, coin: str, ctx: Ctx) -> None:
        targets = self._streams.get(("activeAssetCtx", coin))
        if not targets or not self._live(coin, "activeAssetCtx"):
            return
        self._broadcast(targets, frames.ctx_payload(coin, ctx), "activeAssetCtx")

    def publish_l2(self, coin: str) -> None:
        targets = self._streams.get(("l2Book", coin))
        if not targets or not self._live(coin, "l2Book"):
            return
        self._broadcast(targets, self._l2_payload(coin), "l2Book")

    def publish_mids(self, dex: str) -> None:
        targets = self._streams.get(("allMids", dex))
        if not targets:
            return
        self._broadcast(
            targets, frames.all_mids_payload(self.info.mids(dex), dex or None), "allMids"
        )

    def publish_user(self, sub_type: str, user: str, channel: str, data: Any) -> None:
        """Send ``data`` on ``channel`` to every subscriber of ``sub_type`` for ``user``."""
        targets = self._streams.get((sub_type, user))
        if not targets:
            return
        self._broadcast(targets, frames.channel_payload(channel, data), channel)

    def _l2_payload(self, coin: str) -> bytes:
        bids, asks = self.model.l2_levels(coin, depth=20)
        return frames.l2book_payload(coin, self._epoch_ms(), bids, asks)

    def send_snapshot(self, session: WsSession, sub: Subscription) -> None:
        """The venue's initial message after a subscribe (current state of the stream)."""
        coin = sub.coin
        if sub.type == "bbo" and coin is not None:
            if self._live(coin, "bbo"):
                t = self.stamp_bbo(coin, self.epoch0_ms + self.model.bbo_time_ms(coin))
                session.send_payload(frames.bbo_payload(coin, t, self.model.bbo(coin)), "bbo")
        elif sub.type == "activeAssetCtx" and coin is not None:
            if self._live(coin, "activeAssetCtx"):
                session.send_payload(
                    frames.ctx_payload(coin, self.model.ctx(coin)), "activeAssetCtx"
                )
        elif sub.type == "l2Book" and coin is not None:
            if self._live(coin, "l2Book"):
                session.send_payload(self._l2_payload(coin), "l2Book")
        elif sub.type == "allMids":
            dex = sub.dex or ""
            payload = frames.all_mids_payload(self.info.mids(dex), dex or None)
            session.send_payload(payload, "allMids")
        elif sub.type == "userFills":
            fills = self.user_fills(sub.user or "") if self.user_fills is not None else []
            data: dict[str, Any] = {"isSnapshot": True, "user": sub.user, "fills": fills}
            session.send_payload(frames.channel_payload("userFills", data), "userFills")
