"""The health watch of one Hyperliquid connection: :class:`Watchdog` pings after
``ping_idle_s`` without a received byte, ends the session on a pong timeout or on stale
streams (``bbo_stale_ms`` / ``ctx_stale_ms`` per coin, at most one stale-triggered reconnect
per ``stale_reconnect_min_interval_s``), and tells the feed when a fully acked connection has
been stable for ``stable_after_s`` (the reconnect back-off resets).

Its times come from the feed's injected clock; it wakes every ``tick`` (a quarter of the
shortest threshold, within [2 ms, 250 ms]).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import trio

from engine.config import VenueConfig
from engine.net import ws
from engine.venues.hyperliquid.feed_stats import FeedStats
from engine.venues.hyperliquid.session import Session
from engine.venues.hyperliquid.subscriptions import Subscriptions
from engine.venues.hyperliquid.wire import CH_BBO, CH_CTX, PING_TEXT

log = logging.getLogger(__name__)

_MAX_TICK_S: Final = 0.25
_MIN_TICK_S: Final = 0.002


def summarise(streams: list[str], limit: int = 8) -> str:
    shown = ", ".join(streams[:limit])
    return shown + (f" (+{len(streams) - limit} more)" if len(streams) > limit else "")


class Watchdog:
    """Keep-alive, staleness and stability of the feed's connections (one at a time)."""

    def __init__(self, cfg: VenueConfig, clock: Callable[[], float], stats: FeedStats,
                 subs: Subscriptions, stable_after_s: float,
                 on_stable: Callable[[], None]) -> None:
        self.cfg = cfg
        self._clock = clock
        self.stats = stats
        self._subs = subs
        self._stable_after = stable_after_s
        self._on_stable = on_stable
        self._last_stale_reconnect: float | None = None
        self._stale_wait_logged = False
        thresholds = [cfg.ping_idle_s, cfg.pong_timeout_s, stable_after_s]
        if cfg.ctx_stale_ms > 0:
            thresholds.append(cfg.ctx_stale_ms / 1000.0)
        if cfg.bbo_stale_ms > 0:
            thresholds.append(cfg.bbo_stale_ms / 1000.0)
        self.tick = max(_MIN_TICK_S, min(_MAX_TICK_S, min(thresholds) / 4.0))

    async def run(self, s: Session) -> None:
        """Watch session ``s`` until it ends (returns after ``s.end(reason)``)."""
        cfg = self.cfg
        clock = self._clock
        ctx_stale = cfg.ctx_stale_ms / 1000.0
        bbo_stale = cfg.bbo_stale_ms / 1000.0
        while True:
            await trio.sleep(self.tick)
            now = clock()
            # keep-alive
            if s.ping_sent_at is not None:
                if s.last_rx > s.ping_sent_at:
                    s.ping_sent_at = None
                elif now - s.ping_sent_at >= cfg.pong_timeout_s:
                    log.warning(
                        "no answer %.1fs after ping (nothing received for %.1fs); reconnecting",
                        now - s.ping_sent_at,
                        now - s.last_rx,
                    )
                    s.end("pong timeout")
                    return
            if s.ping_sent_at is None and now - s.last_rx >= cfg.ping_idle_s:
                s.ping_sent_at = now
                self.stats.pings_sent += 1
                try:
                    await s.conn.send_text(PING_TEXT)
                except ws.ConnectionClosed as exc:
                    s.end(f"ping failed: {exc}")
                    return
            # per-stream staleness
            if ctx_stale > 0 or bbo_stale > 0:
                stale = self._stale_streams(now, ctx_stale, bbo_stale)
                if stale and self._stale_reconnect_due(now, stale):
                    s.end(f"stale streams: {summarise(stale)}")
                    return
            # backoff reset after a stable, fully acked connection
            if s.all_acked_at is not None and now - s.all_acked_at >= self._stable_after:
                self._on_stable()

    def _stale_streams(self, now: float, ctx_stale: float, bbo_stale: float) -> list[str]:
        stale: list[str] = []
        if ctx_stale > 0:
            stale.extend(f"{CH_CTX}:{c}" for c, t in self._subs.ctx_last.items()
                         if now - t > ctx_stale)
        if bbo_stale > 0:
            stale.extend(f"{CH_BBO}:{c}" for c, t in self._subs.bbo_last.items()
                         if now - t > bbo_stale)
        return stale

    def _stale_reconnect_due(self, now: float, stale: list[str]) -> bool:
        last = self._last_stale_reconnect
        min_gap = self.cfg.stale_reconnect_min_interval_s
        if last is not None and now - last < min_gap:
            if not self._stale_wait_logged:
                self._stale_wait_logged = True
                log.warning(
                    "%d stale stream(s) (%s) but the last stale-triggered reconnect was %.1fs "
                    "ago (< %.1fs); waiting",
                    len(stale),
                    summarise(stale),
                    now - last,
                    min_gap,
                )
            return False
        log.warning("%d stale stream(s): %s; reconnecting", len(stale), summarise(stale))
        self._last_stale_reconnect = now
        self._stale_wait_logged = False
        self.stats.stale_reconnects += 1
        return True
