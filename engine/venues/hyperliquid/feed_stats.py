"""Counters of the Hyperliquid feed: :class:`FeedStats` (connection, subscriptions, posts and
user streams, plus the decoder's :class:`~engine.venues.hyperliquid.wire.WireStats`) and
:class:`BusyPollStats` (``[venue] busy_poll_us``)."""

from __future__ import annotations

import attrs

from engine.net import ws
from engine.venues.hyperliquid.wire import WireStats


@attrs.define
class BusyPollStats:
    """``[venue] busy_poll_us``: reads that spun, spins that ended in a kernel wait, spin-hook
    calls (warm-ups)."""

    busy_polls: int = 0
    busy_poll_timeouts: int = 0
    spin_hooks: int = 0

    def add(self, st: ws.WsStats) -> None:
        self.busy_polls += st.busy_polls
        self.busy_poll_timeouts += st.busy_poll_timeouts
        self.spin_hooks += st.spin_hooks



@attrs.define(slots=True)
class FeedStats(WireStats):
    """Feed counters (the decoder's counters are inherited from :class:`WireStats`)."""

    connected: bool = False
    connects: int = 0
    reconnects: int = 0
    stale_reconnects: int = 0
    last_connect_time: float | None = None  # injected clock
    last_connect_wall: float | None = None  # epoch seconds, for display
    last_disconnect_reason: str | None = None
    acked: int = 0
    subscriptions: int = 0
    pings_sent: int = 0
    batches: int = 0
    unexpected_coin: int = 0
    unexpected_ack: int = 0
    errors: int = 0
    posts_sent: int = 0
    post_writes: int = 0  # socket writes carrying posts (a burst shares writes)
    posts_not_sent: int = 0
    post_timeouts: int = 0
    posts_lost: int = 0
    post_errors: int = 0
    post_unmatched: int = 0
    user_acked: bool = False
    order_update_frames: int = 0
    order_updates: int = 0
    user_fill_frames: int = 0
    user_fills: int = 0
    user_snapshots: int = 0
    user_mismatch: int = 0  # userFills of another user: dropped
    user_unsubscribed: int = 0  # user-channel frames without a user subscription: dropped
    user_unhandled: int = 0  # user-channel frames the handler has no method for: dropped

