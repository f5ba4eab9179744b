"""The subscriptions of the Hyperliquid feed and their acknowledgements.

:class:`Subscriptions` owns the list of ``(type, coin)`` streams (``bbo`` and
``activeAssetCtx`` per coin, ``l2Book`` per coin when asked, ``orderUpdates`` and
``userFills`` of the master account when ``user`` is set), their encoded subscribe frames
(resent on every connection), which of them the venue acknowledged on the current connection,
the user-channel READY state (acks, never first data: P1/BUG-001) and the per-coin time of the
last ``bbo``/``activeAssetCtx`` frame that the watchdog (:mod:`.watchdog`) judges staleness by.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Final

from engine.net.ratelog import RateLimitedLog
from engine.venues.hyperliquid.feed_stats import FeedStats
from engine.venues.hyperliquid.handlers import FeedHandler
from engine.venues.hyperliquid.session import Session
from engine.venues.hyperliquid.wire import (
    CH_BBO,
    CH_CTX,
    CH_L2BOOK,
    CH_ORDER_UPDATES,
    CH_USER_FILLS,
    SubAckEvent,
    encode_subscribe,
    subscription,
)

log = logging.getLogger(__name__)

USER_CHANNELS: Final = (CH_ORDER_UPDATES, CH_USER_FILLS)

SubKey = tuple[str, str | None]


class Subscriptions:
    """What the feed subscribes and what the venue acknowledged on this connection."""

    def __init__(self, coins: Sequence[str], user: str | None, l2book: bool, stats: FeedStats,
                 handler: FeedHandler, on_user_acked: Callable[[bool], None] | None) -> None:
        self.user = user
        self.stats = stats
        self._handler = handler
        self._on_user_acked = on_user_acked
        self._rlog = RateLimitedLog(log)
        keys: list[SubKey] = [(CH_BBO, c) for c in coins]
        keys += [(CH_CTX, c) for c in coins]
        if l2book:
            keys += [(CH_L2BOOK, c) for c in coins]
        self.texts = [encode_subscribe(subscription(t, c)) for t, c in keys]
        if user is not None:
            for ch in USER_CHANNELS:
                keys.append((ch, None))
                self.texts.append(encode_subscribe(subscription(ch, user=user)))
        self.keys = keys
        self._key_set = frozenset(keys)
        stats.subscriptions = len(keys)
        self.acked: set[SubKey] = set()
        self.user_acked: set[str] = set()
        self.bbo_last: dict[str, float] = dict.fromkeys(coins, 0.0)
        self.ctx_last: dict[str, float] = dict.fromkeys(coins, 0.0)

    @property
    def all_acked(self) -> bool:
        return len(self.acked) == len(self.keys)

    @property
    def user_channels_acked(self) -> bool:
        return len(self.user_acked) == len(USER_CHANNELS)

    def session_started(self, s: Session, now: float) -> None:
        """A new connection: nothing acked yet; staleness counts from now."""
        if not self.keys:
            s.all_acked_at = now
        self.acked.clear()
        self.user_acked.clear()
        for d in (self.bbo_last, self.ctx_last):
            for c in d:
                d[c] = now
        self.stats.acked = 0
        self.stats.user_acked = False

    def session_ended(self) -> None:
        """The connection ended: the user channels are no longer acked (handler told)."""
        if self.user is not None:
            self.user_acked.clear()
            self.stats.user_acked = False
            if self._on_user_acked is not None:
                self._on_user_acked(False)

    def on_ack(self, s: Session, ev: SubAckEvent, now: float) -> None:
        """A ``subscriptionResponse``: track it (an ack we did not ask for is counted, logged
        and ignored; a confirmed unsubscribe drops the ack)."""
        key = (ev.sub_type, ev.coin)
        user_channel = ev.sub_type in USER_CHANNELS
        if user_channel and ev.user is not None and ev.user.lower() != self.user:
            key = ("<other user>", None)
        if key not in self._key_set:
            self.stats.unexpected_ack += 1
            self._rlog.log(
                "unexpected_ack",
                logging.WARNING,
                "%s ack for a subscription we did not request: %s %s",
                ev.method,
                ev.sub_type,
                ev.coin,
            )
            return
        if ev.method != "subscribe":
            self.acked.discard(key)
            self.stats.acked = len(self.acked)
            log.warning("server confirmed unsubscribe of %s %s", ev.sub_type, ev.coin)
            if user_channel:
                was = len(self.user_acked) == len(USER_CHANNELS)
                self.user_acked.discard(ev.sub_type)
                self.stats.user_acked = False
                if was and self._on_user_acked is not None:
                    self._on_user_acked(False)
            return
        if key in self.acked:
            return
        self.acked.add(key)
        self.stats.acked = len(self.acked)
        if user_channel:
            self.user_acked.add(ev.sub_type)
            self._handler.on_subscribed(ev.sub_type, None)
            if len(self.user_acked) == len(USER_CHANNELS):
                self.stats.user_acked = True
                log.info("user channels acknowledged for %s", self.user)
                if self._on_user_acked is not None:
                    self._on_user_acked(True)
            if len(self.acked) == len(self.keys):
                s.all_acked_at = now
                log.info("all %d subscriptions acknowledged", len(self.keys))
            return
        coin = ev.coin
        last = (
            self.bbo_last
            if ev.sub_type == CH_BBO
            else self.ctx_last
            if ev.sub_type == CH_CTX
            else {}  # l2Book: no staleness watch
        )
        if coin is not None and coin in last and last[coin] <= s.started:
            last[coin] = now  # no message yet: staleness counts from the ack
        self._handler.on_subscribed(ev.sub_type, coin)
        if len(self.acked) == len(self.keys):
            s.all_acked_at = now
            log.info("all %d subscriptions acknowledged", len(self.keys))
