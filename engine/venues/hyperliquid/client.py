"""Hyperliquid market-data feed: owns the venue WebSocket session and its health.

:class:`HyperliquidFeed` keeps one connection alive forever (until cancelled): connect, subscribe
``bbo`` and ``activeAssetCtx`` for every coin, track the subscription acks, read the socket in big
batches and dispatch every decoded frame of a batch synchronously to the handler (no channel hop
per frame), keep the connection alive with ``{"method":"ping"}``, reconnect (with exponential
backoff and jitter, resubscribing everything) after any failure, a pong timeout or stale streams,
and correlate WS ``post`` requests with their answers.

Task tree (every task lives in a nursery that owns it)::

    run()                          the reconnect loop (caller's task)
      └─ session nursery           one per connection; cancelled to end the session
           ├─ _reader              receive_batch → decode → handler.on_*(...) → on_batch_end()
           └─ _watchdog            ping after idle, pong timeout, stale streams, backoff reset

Cancelling ``run()`` closes the socket (close frame best effort, ≤ 1 s), fails every pending
post with :class:`PostLost` and calls ``handler.on_disconnected("shutdown")``. Exceptions raised
by the handler are bugs of the caller and propagate out of ``run()``. Times for keep-alive and
staleness come from the injected ``clock`` (Trio's clock by default).
"""

from __future__ import annotations

import itertools
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import attrs
import trio

from engine.config import VenueConfig
from engine.venues.hyperliquid import ws
from engine.venues.hyperliquid.ratelog import RateLimitedLog, excerpt
from engine.venues.hyperliquid.wire import (
    CH_BBO,
    CH_CTX,
    PING_TEXT,
    BboEvent,
    CtxEvent,
    ErrorEvent,
    PongEvent,
    PostEvent,
    SubAckEvent,
    WireDecoder,
    WireStats,
    encode_post,
    encode_subscribe,
    subscription,
)

log = logging.getLogger(__name__)

STABLE_AFTER_S: Final = 60.0
MAX_INFLIGHT_POSTS: Final = 100
_MAX_TICK_S: Final = 0.25
_MIN_TICK_S: Final = 0.002
_TOO_MANY_POSTS = re.compile(r"too many pending post requests.*?id=(\d+)")


class FeedHandler(Protocol):
    """What the feed calls; every method is synchronous, runs in the reader task, must not block.

    ``on_bbo``/``on_ctx`` are called once per valid frame for a subscribed coin, in arrival
    order; ``on_batch_end`` after the frames of one socket read (only if it held a message).
    ``on_connected``/``on_disconnected(reason)`` bracket every connection (reason
    ``"shutdown"`` when ``run()`` is cancelled); ``on_subscribed`` once per acked subscription
    per connection. An exception raised here propagates out of ``run()``.
    """

    def on_bbo(
        self,
        coin: str,
        time_ms: int,
        bid_px: float | None,
        bid_sz: float | None,
        ask_px: float | None,
        ask_sz: float | None,
    ) -> None: ...

    def on_ctx(self, coin: str, oracle_px: float, mark_px: float | None) -> None: ...

    def on_connected(self) -> None: ...

    def on_disconnected(self, reason: str) -> None: ...

    def on_subscribed(self, sub_type: str, coin: str | None) -> None: ...

    def on_batch_end(self) -> None: ...


class PostFailure(Exception):
    """Base class of post errors."""


class PostTimeout(PostFailure):
    """No answer to the post within the timeout."""


class PostError(PostFailure):
    """The server answered with a response of type ``error`` (or an unusable answer)."""


class PostLost(PostFailure):
    """The connection dropped (or there was none) before the answer arrived."""


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
    post_timeouts: int = 0
    posts_lost: int = 0
    post_errors: int = 0
    post_unmatched: int = 0


class _PendingPost:
    __slots__ = ("done", "event", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.event: PostEvent | None = None
        self.error: PostFailure | None = None


class _Session:
    """State of one connection; ``end()`` records the first reason and cancels the session."""

    __slots__ = ("conn", "scope", "reason", "started", "last_rx", "ping_sent_at", "all_acked_at")

    def __init__(self, conn: ws.WsConnection, now: float) -> None:
        self.conn = conn
        self.scope: trio.CancelScope | None = None
        self.reason: str | None = None
        self.started = now
        self.last_rx = now
        self.ping_sent_at: float | None = None
        self.all_acked_at: float | None = None

    def end(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()


Connector = Callable[[str, float], Awaitable[ws.WsConnection]]


class HyperliquidFeed:
    """Market data (``bbo`` + ``activeAssetCtx`` per coin) and WS posts over one connection."""

    def __init__(
        self,
        cfg: VenueConfig,
        coins: Sequence[str],
        handler: FeedHandler,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = trio.current_time,
        stable_after_s: float = STABLE_AFTER_S,
        max_inflight_posts: int = MAX_INFLIGHT_POSTS,
        connector: Connector = ws.connect,
    ) -> None:
        self.cfg = cfg
        self.coins: list[str] = list(dict.fromkeys(coins))
        for c in self.coins:
            if not isinstance(c, str) or not c:
                raise ValueError(f"coin names must be non-empty strings, got {c!r}")
        self.stats = FeedStats()
        self._handler = handler
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._stable_after = stable_after_s
        self._connector = connector
        self._decoder = WireDecoder(self.stats)
        self._rlog = RateLimitedLog(log)
        self._subs: list[tuple[str, str]] = [(CH_BBO, c) for c in self.coins] + [
            (CH_CTX, c) for c in self.coins
        ]
        self._sub_set = frozenset(self._subs)
        self._sub_texts = [encode_subscribe(subscription(t, c)) for t, c in self._subs]
        self.stats.subscriptions = len(self._subs)
        self._acked: set[tuple[str, str | None]] = set()
        self._bbo_last: dict[str, float] = dict.fromkeys(self.coins, 0.0)
        self._ctx_last: dict[str, float] = dict.fromkeys(self.coins, 0.0)
        self._session: _Session | None = None
        self._running = False
        self._connected = trio.Event()
        self._attempt = 0
        self._last_stale_reconnect: float | None = None
        self._stale_wait_logged = False
        self._ids = itertools.count(1)
        self._pending: dict[int, _PendingPost] = {}
        self._post_slots = trio.Semaphore(max_inflight_posts)
        thresholds = [cfg.ping_idle_s, cfg.pong_timeout_s, stable_after_s]
        if cfg.ctx_stale_ms > 0:
            thresholds.append(cfg.ctx_stale_ms / 1000.0)
        if cfg.bbo_stale_ms > 0:
            thresholds.append(cfg.bbo_stale_ms / 1000.0)
        self._tick = max(_MIN_TICK_S, min(_MAX_TICK_S, min(thresholds) / 4.0))

    # ------------------------------------------------------------------ public state

    @property
    def connected(self) -> bool:
        return self._session is not None

    @property
    def all_acked(self) -> bool:
        """True when every (type, coin) subscription of the current connection is acked."""
        return self._session is not None and len(self._acked) == len(self._subs)

    @property
    def acked(self) -> frozenset[tuple[str, str | None]]:
        return frozenset(self._acked)

    async def wait_connected(self) -> None:
        """Return once a connection is up (immediately if it already is)."""
        while self._session is None:
            await self._connected.wait()

    # ------------------------------------------------------------------ reconnect loop

    async def run(self) -> None:
        """Run forever: connect, serve, and reconnect with backoff. Cancel to stop."""
        if self._running:
            raise RuntimeError("HyperliquidFeed.run() is already running")
        self._running = True
        try:
            while True:
                reason = await self._connect_and_serve()
                self.stats.last_disconnect_reason = reason
                self._attempt += 1
                delay = self._backoff_delay(self._attempt)
                self.stats.reconnects += 1
                log.warning(
                    "feed disconnected (%s); reconnecting in %.2fs (attempt %d)",
                    reason,
                    delay,
                    self._attempt,
                )
                await trio.sleep(delay)
        finally:
            self._running = False
            self._fail_pending("feed stopped")

    def _backoff_delay(self, attempt: int) -> float:
        cfg = self.cfg
        exp = min(max(attempt - 1, 0), 32)
        base = min(cfg.reconnect_max_s, cfg.reconnect_base_s * (2.0**exp))
        jitter = self._rng.uniform(0.0, cfg.reconnect_jitter_s) if cfg.reconnect_jitter_s else 0.0
        return base + jitter

    async def _connect_and_serve(self) -> str:
        url = self.cfg.ws_url
        try:
            conn = await self._connector(url, self.cfg.connect_timeout_s)
        except ws.WsError as exc:
            return f"connect failed: {exc}"
        try:
            return await self._serve(conn)
        finally:
            await conn.aclose()

    async def _serve(self, conn: ws.WsConnection) -> str:
        now = self._clock()
        s = _Session(conn, now)
        if not self._subs:
            s.all_acked_at = now
        self._acked.clear()
        for d in (self._bbo_last, self._ctx_last):
            for c in d:
                d[c] = now
        st = self.stats
        st.acked = 0
        st.connected = True
        st.connects += 1
        st.last_connect_time = now
        st.last_connect_wall = time.time()
        self._session = s
        self._connected.set()
        log.info("connected to %s; subscribing %d stream(s)", conn.url, len(self._subs))
        try:
            self._handler.on_connected()
            async with trio.open_nursery() as nursery:
                s.scope = nursery.cancel_scope
                if s.reason is not None:  # ended by a callback before the scope existed
                    nursery.cancel_scope.cancel()
                nursery.start_soon(self._reader, s)
                nursery.start_soon(self._watchdog, s)
                if self._sub_texts:
                    try:
                        await conn.send_texts(self._sub_texts)
                    except ws.ConnectionClosed as exc:
                        s.end(f"subscribe failed: {exc}")
            return s.reason or "session ended"
        finally:
            self._session = None
            self._connected = trio.Event()
            st.connected = False
            reason = s.reason or "shutdown"
            self._fail_pending(reason)
            self._handler.on_disconnected(reason)

    # ------------------------------------------------------------------ reader (hot path)

    async def _reader(self, s: _Session) -> None:
        conn = s.conn
        decode = self._decoder.decode
        clock = self._clock
        h = self._handler
        on_bbo = h.on_bbo
        on_ctx = h.on_ctx
        on_batch_end = h.on_batch_end
        bbo_last = self._bbo_last
        ctx_last = self._ctx_last
        st = self.stats
        try:
            while True:
                batch = await conn.receive_batch()
                now = clock()
                s.last_rx = now
                if not batch:
                    continue
                st.batches += 1
                for text in batch:
                    ev = decode(text)
                    t = type(ev)
                    if t is BboEvent:
                        b: BboEvent = ev  # type: ignore[assignment]
                        coin = b.coin
                        if coin in bbo_last:
                            bbo_last[coin] = now
                            on_bbo(coin, b.time_ms, b.bid_px, b.bid_sz, b.ask_px, b.ask_sz)
                        else:
                            self._unexpected_coin(CH_BBO, coin)
                    elif t is CtxEvent:
                        c: CtxEvent = ev  # type: ignore[assignment]
                        coin = c.coin
                        if coin in ctx_last:
                            ctx_last[coin] = now
                            on_ctx(coin, c.oracle_px, c.mark_px)
                        else:
                            self._unexpected_coin(CH_CTX, coin)
                    elif ev is not None:
                        self._on_control(s, ev, now)
                on_batch_end()
        except ws.ConnectionClosed as exc:
            s.end(f"connection closed: {exc.reason or 'no reason'} (code {exc.code})")

    def _unexpected_coin(self, channel: str, coin: str) -> None:
        self.stats.unexpected_coin += 1
        self._rlog.log(
            "unexpected_coin",
            logging.WARNING,
            "%s frame for unsubscribed coin %s skipped",
            channel,
            excerpt(coin, 40),
        )

    def _on_control(self, s: _Session, ev: object, now: float) -> None:
        if isinstance(ev, PongEvent):
            return  # liveness is any received byte; nothing else to do
        if isinstance(ev, SubAckEvent):
            self._on_ack(s, ev, now)
        elif isinstance(ev, PostEvent):
            p = self._pending.get(ev.id)
            if p is None:
                self.stats.post_unmatched += 1
                self._rlog.log(
                    "post_unmatched",
                    logging.WARNING,
                    "answer to unknown or expired post id %d (type %s)",
                    ev.id,
                    ev.response_type,
                )
                return
            p.event = ev
            p.done.set()
        elif isinstance(ev, ErrorEvent):
            self.stats.errors += 1
            self._rlog.log(
                "error_channel", logging.WARNING, "server error message: %s", excerpt(ev.message)
            )
            m = _TOO_MANY_POSTS.search(ev.message)
            if m is not None:
                p = self._pending.get(int(m.group(1)))
                if p is not None and not p.done.is_set():
                    p.error = PostError(ev.message)
                    p.done.set()

    def _on_ack(self, s: _Session, ev: SubAckEvent, now: float) -> None:
        key = (ev.sub_type, ev.coin)
        if key not in self._sub_set:
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
            self._acked.discard(key)
            self.stats.acked = len(self._acked)
            log.warning("server confirmed unsubscribe of %s %s", ev.sub_type, ev.coin)
            return
        if key in self._acked:
            return
        self._acked.add(key)
        self.stats.acked = len(self._acked)
        coin = ev.coin
        last = self._bbo_last if ev.sub_type == CH_BBO else self._ctx_last
        if coin is not None and coin in last and last[coin] <= s.started:
            last[coin] = now  # no message yet: staleness counts from the ack
        self._handler.on_subscribed(ev.sub_type, coin)
        if len(self._acked) == len(self._subs):
            s.all_acked_at = now
            log.info("all %d subscriptions acknowledged", len(self._subs))

    # ------------------------------------------------------------------ watchdog

    async def _watchdog(self, s: _Session) -> None:
        cfg = self.cfg
        clock = self._clock
        ctx_stale = cfg.ctx_stale_ms / 1000.0
        bbo_stale = cfg.bbo_stale_ms / 1000.0
        while True:
            await trio.sleep(self._tick)
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
                    s.end(f"stale streams: {_summarise(stale)}")
                    return
            # backoff reset after a stable, fully acked connection
            if s.all_acked_at is not None and now - s.all_acked_at >= self._stable_after:
                if self._attempt:
                    log.debug("connection stable; reconnect backoff reset")
                self._attempt = 0

    def _stale_streams(self, now: float, ctx_stale: float, bbo_stale: float) -> list[str]:
        stale: list[str] = []
        if ctx_stale > 0:
            stale.extend(f"{CH_CTX}:{c}" for c, t in self._ctx_last.items() if now - t > ctx_stale)
        if bbo_stale > 0:
            stale.extend(f"{CH_BBO}:{c}" for c, t in self._bbo_last.items() if now - t > bbo_stale)
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
                    _summarise(stale),
                    now - last,
                    min_gap,
                )
            return False
        log.warning("%d stale stream(s): %s; reconnecting", len(stale), _summarise(stale))
        self._last_stale_reconnect = now
        self._stale_wait_logged = False
        self.stats.stale_reconnects += 1
        return True

    # ------------------------------------------------------------------ posts

    async def post(
        self,
        request: Mapping[str, Any],
        timeout: float | None = None,  # noqa: ASYNC109 - default cfg.post_timeout_s, per API
    ) -> dict[str, Any]:
        """Send ``{"method":"post","id":n,"request":request}``; return the answer's ``response``.

        Raises :class:`PostTimeout` (no answer within ``timeout``, default
        ``cfg.post_timeout_s``), :class:`PostError` (response type ``error``) or
        :class:`PostLost` (not connected, or the connection dropped before the answer).
        """
        limit = self.cfg.post_timeout_s if timeout is None else timeout
        s = self._session
        if s is None:
            self.stats.posts_lost += 1
            raise PostLost("post not sent: not connected")
        post_id = next(self._ids)
        pending = _PendingPost()
        self._pending[post_id] = pending
        try:
            with trio.move_on_after(limit):
                async with self._post_slots:
                    try:
                        await s.conn.send_text(encode_post(post_id, request))
                    except ws.ConnectionClosed as exc:
                        pending.error = PostLost(f"post {post_id}: connection lost: {exc}")
                        pending.done.set()
                    else:
                        self.stats.posts_sent += 1
                    await pending.done.wait()
        finally:
            del self._pending[post_id]
        if not pending.done.is_set():
            self.stats.post_timeouts += 1
            raise PostTimeout(f"post {post_id}: no answer within {limit}s")
        if pending.error is not None:
            if isinstance(pending.error, PostLost):
                self.stats.posts_lost += 1
            else:
                self.stats.post_errors += 1
            raise pending.error
        ev = pending.event
        assert ev is not None
        if ev.response_type == "error":
            self.stats.post_errors += 1
            raise PostError(f"post {post_id}: {excerpt(str(ev.payload))}")
        return ev.response

    async def info(self, payload: Mapping[str, Any], timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """``post({"type":"info","payload":payload})`` and return the answer's ``payload.data``."""
        resp = await self.post({"type": "info", "payload": payload}, timeout)
        body = resp.get("payload")
        if resp.get("type") != "info" or not isinstance(body, dict) or "data" not in body:
            raise PostError(
                f"unexpected answer to info {payload.get('type')!r}: {excerpt(str(resp))}"
            )
        return body["data"]

    def _fail_pending(self, reason: str) -> None:
        for pid, p in self._pending.items():
            if not p.done.is_set():
                p.error = PostLost(f"post {pid}: connection lost before the answer ({reason})")
                p.done.set()


def _summarise(streams: list[str], limit: int = 8) -> str:
    shown = ", ".join(streams[:limit])
    return shown + (f" (+{len(streams) - limit} more)" if len(streams) > limit else "")
