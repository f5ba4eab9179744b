"""Hyperliquid feed: the connection lifecycle (reconnect loop, sessions, replay) and the reader.

:class:`HyperliquidFeed` keeps one connection alive forever (until cancelled): connect, subscribe
``bbo`` and ``activeAssetCtx`` for every coin (plus ``orderUpdates`` and ``userFills`` of the
master account when ``user`` is set), track the subscription acks, read the socket in big
batches and dispatch every decoded frame of a batch synchronously to the handler (no channel hop
per frame), keep the connection alive with ``{"method":"ping"}``, reconnect (with exponential
backoff and jitter, resubscribing everything) after any failure, a pong timeout or stale streams,
and correlate WS ``post`` requests with their answers.

With ``l2book=True`` it also subscribes ``l2Book`` per coin: valid frames (see
:class:`~engine.venues.hyperliquid.wire.WireDecoder`) update :attr:`HyperliquidFeed.l2book`, an
:class:`~engine.venues.hyperliquid.l2book.L2BookStore` (which refuses a regressing ``time``),
and then go to the handler's optional ``on_l2book``; the store drops its levels on disconnect.

User channels are READY on their ``subscriptionResponse`` acks, never on first data (an idle
account sends nothing: P1/BUG-001): ``handler.on_user_channels_acked(True)`` once both are acked
on a connection, ``(False)`` on every disconnect.

Posts (:class:`PostTicket`): a post is registered (id, deadline, one of at most
``max_inflight_posts`` slots), queued in the outbox, then written by :meth:`HyperliquidFeed.flush`,
which writes everything queued with ONE socket write and runs as a group commit (a second caller
waits for the running flush, which loops until the outbox is empty). A frame handler that wants
to send calls :meth:`HyperliquidFeed.request_send`; the reader flushes right after the frame that
asked first in a socket read, and coalesces later requests of the same read until the read is
done or the oldest waited ``send_coalesce_s``, so a burst costs few writes without delaying its
first order (``send_first_at_once=False`` coalesces the first request too: one write per read).
The reader's writes do not yield to the scheduler after the bytes left (its next socket read is
the checkpoint), so the rest of a read is not delayed by other tasks. :class:`SendSource` objects (the order executor) turn their queued work into posts
just before each write. Outcomes are exact about the socket: :class:`PostNotSent` when no byte
of the frame was handed to it (nothing can have happened at the venue); otherwise the ticket's
``on_sent`` ran and the answer, :class:`PostTimeout`, :class:`PostLost` or :class:`PostError`
follows (``on_sent`` always before the outcome).

Task tree (every task lives in a nursery that owns it)::

    run()                          the reconnect loop (caller's task)
      └─ session nursery           one per connection; cancelled to end the session
           ├─ _reader              receive_batch → router → handler.on_*(...) → flush → on_batch_end()
           ├─ Watchdog.run         ping after idle, pong timeout, stale streams, backoff reset
           ├─ PostBook.writer      flushes sends requested outside the reader (rarely used)
           └─ PostBook.post_timer  fails posts at their deadline (PostTimeout)

Cancelling ``run()`` closes the socket (close frame best effort, ≤ 1 s), fails every pending
post (:class:`PostLost`, or :class:`PostNotSent` if it was never written) and calls
``handler.on_disconnected("shutdown")``. Exceptions raised by the handler are bugs of the caller
and propagate out of ``run()``. Times for keep-alive and staleness come from the injected
``clock`` (Trio's clock by default); post deadlines use Trio's clock.

This module owns :class:`HyperliquidFeed` itself: construction, the reconnect loop
(:meth:`HyperliquidFeed.run`, back-off from :func:`.session.reconnect_delay`), the synchronous
start and end of a connection (shared with replay), the reader task with its write-coalescing
policy, and the public post API (forwarded to the post book). The other jobs are in their own
modules: :mod:`.session` (one connection, back-off), :mod:`.subscriptions` (streams and
acks), :mod:`.routing` (decode and route each frame), :mod:`.watchdog` (keep-alive,
staleness, stability), :mod:`.outbox` (post/request correlation), :mod:`.posts` (tickets and
post failures), :mod:`.handlers` (the protocols the feed calls), :mod:`.feed_stats`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import trio

from engine.config import VenueConfig
from engine.net import ws
from engine.net.ratelog import RateLimitedLog
from engine.venues.hyperliquid.feed_stats import BusyPollStats, FeedStats
from engine.venues.hyperliquid.handlers import (
    FeedHandler,
    FrameSink,
    L2BookHandler,
    SendSource,
    UserStreamHandler,
)
from engine.venues.hyperliquid.l2book import L2BookStore
from engine.venues.hyperliquid.outbox import MAX_INFLIGHT_POSTS, PostBook
from engine.venues.hyperliquid.posts import (
    EncodedRequest,
    PostError,
    PostFailure,
    PostLost,
    PostNotSent,
    PostTicket,
    PostTimeout,
)
from engine.venues.hyperliquid.routing import FrameRouter
from engine.venues.hyperliquid.session import Connector, Session, reconnect_delay
from engine.venues.hyperliquid.signing import check_address
from engine.venues.hyperliquid.subscriptions import USER_CHANNELS, Subscriptions
from engine.venues.hyperliquid.watchdog import Watchdog
from engine.venues.hyperliquid.wire import WireDecoder

# Names other modules (and other branches) import from here; their homes are named above.
__all__ = [
    "MAX_INFLIGHT_POSTS",
    "SEND_COALESCE_S",
    "STABLE_AFTER_S",
    "USER_CHANNELS",
    "BusyPollStats",
    "EncodedRequest",
    "FeedHandler",
    "FeedStats",
    "FrameSink",
    "HyperliquidFeed",
    "L2BookHandler",
    "PostError",
    "PostFailure",
    "PostLost",
    "PostNotSent",
    "PostTicket",
    "PostTimeout",
    "SendSource",
    "UserStreamHandler",
]

log = logging.getLogger(__name__)

STABLE_AFTER_S: Final = 60.0
SEND_COALESCE_S: Final = 2e-3
"""Longest wait of a read's later orders for the rest of that read (see the module docstring):
above the ~1.2 ms a 40-market burst takes to decide, so its 39 later orders leave as ONE action
right after the read (two signatures and two writes for the burst, its first order at once)."""


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
        user: str | None = None,
        send_coalesce_s: float = SEND_COALESCE_S,
        send_first_at_once: bool = True,
        l2book: bool = False,
        l2book_store: L2BookStore | None = None,
    ) -> None:
        """``l2book``: also subscribe ``l2Book`` per coin, kept in ``l2book_store`` (a new
        :class:`L2BookStore` when not given; passing a store without ``l2book`` is an error).

        ``send_first_at_once=False``: the first send request of a socket read coalesces too,
        like the later ones (written at the end of the read, or once it waited
        ``send_coalesce_s``): a read that triggers many orders sends them in one action, one
        signature and one write sooner for its last order, but its first order waits for the
        rest of the read (see bench/README.md, ``bench_trade_path.py``)."""
        if l2book_store is not None and not l2book:
            raise ValueError("l2book_store given but l2book is False: nothing would fill it")
        self.cfg = cfg
        self.coins: list[str] = list(dict.fromkeys(coins))
        for c in self.coins:
            if not isinstance(c, str) or not c:
                raise ValueError(f"coin names must be non-empty strings, got {c!r}")
        if not send_coalesce_s >= 0:
            raise ValueError(f"send_coalesce_s must be >= 0, got {send_coalesce_s!r}")
        self.stats = FeedStats()
        self._handler = handler
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._connector = connector
        self._rlog = RateLimitedLog(log)
        # the master account (never the agent's address): its orderUpdates and userFills
        self.user: str | None = None if user is None else check_address(user)
        self.l2book: L2BookStore | None = None
        if l2book:
            self.l2book = l2book_store if l2book_store is not None else L2BookStore()
        self._h_user_acked: Callable[[bool], None] | None = getattr(
            handler, "on_user_channels_acked", None
        )
        self.subs = Subscriptions(self.coins, self.user, l2book, self.stats, handler,
                                  self._h_user_acked)
        self.posts = PostBook(self.stats, cfg.post_timeout_s, max_inflight_posts)
        self.router = FrameRouter(WireDecoder(self.stats, l2book=l2book), handler, self.stats,
                                  self.subs, self.posts, self.l2book, self.coins)
        self.watchdog = Watchdog(cfg, clock, self.stats, self.subs, stable_after_s,
                                 self._connection_stable)
        self._session: Session | None = None
        self._running = False
        self._connected = trio.Event()
        self._attempt = 0
        # with [venue] busy_poll_us: run about every ms while a read spins (e.g. the order
        # executor's warm-up); synchronous, must be quick; set before run()
        self.spin_hook: Callable[[], None] | None = None
        self.busy_poll_totals = BusyPollStats()  # of the connections that ended
        self._recorder: FrameSink | None = None
        # epoch seconds for display (the apps inject their clock; replay its simulated one)
        self.wall_clock: Callable[[], float] = time.time
        self._replay_dispatch: tuple[Session, Callable[[list[Any], float], None]] | None = None
        self._coalesce_s = send_coalesce_s
        self.send_first_at_once = send_first_at_once

    # ------------------------------------------------------------------ public state

    @property
    def recorder(self) -> FrameSink | None:
        """``[recording]``: every read's texts, our writes and connection events (set before
        :meth:`run`)."""
        return self._recorder

    @recorder.setter
    def recorder(self, sink: FrameSink | None) -> None:
        self._recorder = sink
        self.posts.recorder = sink

    @property
    def connected(self) -> bool:
        return self._session is not None

    @property
    def all_acked(self) -> bool:
        """True when every (type, coin) subscription of the current connection is acked."""
        return self._session is not None and self.subs.all_acked

    @property
    def acked(self) -> frozenset[tuple[str, str | None]]:
        return frozenset(self.subs.acked)

    @property
    def user_channels_acked(self) -> bool:
        """True when ``orderUpdates`` and ``userFills`` are acked on the current connection."""
        return self._session is not None and self.subs.user_channels_acked

    @property
    def inflight_posts(self) -> int:
        """Posts registered and not done (queued, being written or awaiting the answer)."""
        return len(self.posts.pending)

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
            self.posts.fail_pending("feed stopped")

    def _backoff_delay(self, attempt: int) -> float:
        return reconnect_delay(self.cfg, attempt, self._rng)

    def _connection_stable(self) -> None:
        """The watchdog saw a fully acked connection last ``stable_after_s``."""
        if self._attempt:
            log.debug("connection stable; reconnect backoff reset")
        self._attempt = 0

    async def _connect_and_serve(self) -> str:
        url = self.cfg.ws_url
        try:
            conn = await self._connector(url, self.cfg.connect_timeout_s)
        except ws.WsError as exc:
            return f"connect failed: {exc}"
        hook = None
        if self.cfg.busy_poll_us > 0 and isinstance(conn, ws.WsConnection):
            if conn.busy_poll_supported:
                conn.busy_poll_s = self.cfg.busy_poll_us / 1e6
                conn.spin_hook = hook = self.spin_hook
            else:
                self._rlog.log(
                    "busy_poll", logging.WARNING,
                    "busy_poll_us is set but this stream cannot be busy-polled: reads wait "
                    "in the kernel",
                )
        try:
            return await self._serve(conn)
        finally:
            if hook is not None and isinstance(conn, ws.WsConnection):
                self.busy_poll_totals.add(conn.stats)
                if conn.spin_hook is None and self.spin_hook is hook:
                    self.spin_hook = None  # it failed (logged once): not again after a reconnect
            await conn.aclose()

    @property
    def busy_poll_stats(self) -> BusyPollStats:
        """Busy-poll counters over every connection so far, the live one included."""
        totals = BusyPollStats(self.busy_poll_totals.busy_polls,
                               self.busy_poll_totals.busy_poll_timeouts,
                               self.busy_poll_totals.spin_hooks)
        s = self._session
        if s is not None and isinstance(s.conn, ws.WsConnection) and s.conn.busy_poll_s > 0:
            totals.add(s.conn.stats)
        return totals

    async def _serve(self, conn: ws.WsConnection) -> str:
        s = self._open_session(conn, conn.url, self._clock())
        try:
            self._handler.on_connected()
            async with trio.open_nursery() as nursery:
                s.scope = nursery.cancel_scope
                if s.reason is not None:  # ended by a callback before the scope existed
                    nursery.cancel_scope.cancel()
                nursery.start_soon(self._reader, s)
                nursery.start_soon(self.watchdog.run, s)
                nursery.start_soon(self.posts.writer)
                nursery.start_soon(self.posts.post_timer)
                texts = self.subs.texts
                if texts:
                    try:
                        await conn.send_texts(texts)
                    except ws.ConnectionClosed as exc:
                        s.end(f"subscribe failed: {exc}")
                    if self._recorder is not None:
                        self._recorder.outbound(list(texts))
            return s.reason or "session ended"
        finally:
            self._close_session(s)

    def _open_session(self, conn: Any, url: str, now: float) -> Session:
        """The synchronous start of a connection (live and replay)."""
        s = Session(conn, now)
        self.subs.session_started(s, now)
        self.posts.session_started(s)
        st = self.stats
        st.connected = True
        st.connects += 1
        st.last_connect_time = now
        st.last_connect_wall = self.wall_clock()
        self._session = s
        self._connected.set()
        if self._recorder is not None:
            self._recorder.event("conn", {"event": "connected", "url": url})
        log.info("connected to %s; subscribing %d stream(s)", url, len(self.subs.keys))
        return s

    def _close_session(self, s: Session) -> None:
        """The synchronous end of a connection (live and replay)."""
        st = self.stats
        self._session = None
        self.posts.session = None
        self._connected = trio.Event()
        st.connected = False
        reason = s.reason or "shutdown"
        if self._recorder is not None:
            self._recorder.event("conn", {"event": "disconnected", "reason": reason})
        self.posts.session_ended(reason)
        if self.l2book is not None:
            self.l2book.invalidate(reason)
        self.subs.session_ended()
        self._handler.on_disconnected(reason)


    # ------------------------------------------------------------------ replay

    def replay_connected(self, url: str, now: float) -> None:
        """Replay (:mod:`engine.replay`): a recorded connection started at ``now`` (the
        feed's clock, seconds); the same synchronous steps as a live connection."""
        if self._session is not None:
            self.replay_disconnected("connection replaced", now)
        self._open_session(None, url, now)
        self._handler.on_connected()

    def replay_disconnected(self, reason: str, now: float) -> None:
        """Replay: the recorded connection ended with ``reason``."""
        s = self._session
        if s is None:
            return
        s.reason = reason
        self._close_session(s)

    def replay_batch(self, texts: list[Any], now: float) -> None:
        """Replay: one recorded socket read, dispatched exactly as the live reader does
        (decode → handler → core per frame, then ``on_batch_end``). A text is a str or the
        recorded bytes (the wire decoder reads ASCII bytes exactly as their str)."""
        s = self._session
        if s is None:  # frames before any recorded connection: a connection is implied
            self._open_session(None, "replay", now)
            self._handler.on_connected()
            s = self._session
            assert s is not None
        cached = self._replay_dispatch
        if cached is None or cached[0] is not s:
            cached = self._replay_dispatch = (s, self._replay_reader(s))
        cached[1](texts, now)

    def replay_reads(self, items: list[Any], start: int, end: int,
                     before: Callable[[float], None]) -> int:
        """Replay: the recorded socket reads ``items[start:end]`` in order, each exactly as
        :meth:`replay_batch` with ``now = wall_ns / 1e6 / 1000.0`` (the same float steps the
        driver always used), ``before(t_ms)`` called first (replay's timers up to the read's
        receive time). An item is ``(kind, batch, wall_ns, texts)`` (``engine.io.frames``'
        ``BatchItem`` of one read). One call per run of reads instead of one per read; the
        frames dispatched are returned."""
        if start < end and self._session is None:  # the implied connection: replay_batch's
            it = items[start]
            t_ms = it[2] / 1e6
            before(t_ms)
            self.replay_batch(it[3], t_ms / 1000.0)
            start += 1
            first = len(it[3])
        else:
            first = 0
        s = self._session
        if s is None or start >= end:
            return first
        dispatch = self.router.dispatcher(s)
        on_batch_end = self._handler.on_batch_end
        st = self.stats
        posts = self.posts
        n = 0
        for k in range(start, end):  # what _replay_reader's read does, per item
            it = items[k]
            t_ms = it[2] / 1e6
            before(t_ms)
            now = t_ms / 1000.0
            s.last_rx = now
            st.batches += 1
            texts = it[3]
            for text in texts:
                dispatch(text, now)
            n += len(texts)
            on_batch_end()
            if posts.outbox or posts.send_requested:
                posts.replay_drop_sends()
        return first + n

    def _replay_reader(self, s: Session) -> Callable[[list[Any], float], None]:
        """Replay's whole socket read for session ``s``: what :meth:`_reader` does with one
        read (the live reader's per-frame dispatch for each text, then ``on_batch_end``),
        without the sends (replay sends nothing). A closure over the lookups, like the
        dispatch: one call per read."""
        dispatch = self.router.dispatcher(s)
        on_batch_end = self._handler.on_batch_end
        st = self.stats
        drop_sends = self.posts.replay_drop_sends

        def read(texts: list[Any], now: float) -> None:
            s.last_rx = now
            st.batches += 1
            for text in texts:
                dispatch(text, now)
            on_batch_end()
            drop_sends()

        return read

    # ------------------------------------------------------------------ reader (hot path)

    async def _reader(self, s: Session) -> None:
        conn = s.conn
        clock = self._clock
        on_batch_end = self._handler.on_batch_end
        dispatch = self.router.dispatcher(s)
        posts = self.posts
        st = self.stats
        coalesce = self._coalesce_s
        perf = time.perf_counter
        record = self._recorder.inbound if self._recorder is not None else None
        try:
            while True:
                batch = await conn.receive_batch()
                now = clock()
                s.last_rx = now
                if not batch:
                    continue
                if record is not None:
                    record(batch)
                st.batches += 1
                posts.dispatching = True
                flushed = not self.send_first_at_once  # this read already flushed once
                deferred_at = 0.0  # when a later send request of this read was deferred
                for text in batch:
                    dispatch(text, now)
                    if posts.send_requested and not posts.flushing:
                        # first request of this read: write now; later ones coalesce (a
                        # flush running in another task picks them up without us waiting).
                        # No yield after these writes: the next socket read is a checkpoint.
                        if not flushed:
                            flushed = True
                            await posts.flush(yield_after=False)
                        else:
                            if deferred_at == 0.0:
                                deferred_at = perf()
                            if perf() - deferred_at >= coalesce:
                                deferred_at = 0.0
                                await posts.flush(yield_after=False)
                on_batch_end()
                if (posts.send_requested or posts.outbox) and not posts.flushing:
                    await posts.flush(yield_after=False)
                posts.dispatching = False
        except ws.ConnectionClosed as exc:
            s.end(f"connection closed: {exc.reason or 'no reason'} (code {exc.code})")

    # ------------------------------------------------------------------ posts (PostBook)

    def add_send_source(self, source: SendSource) -> None:
        """Register ``source``: materialized before every write, discarded on disconnect."""
        self.posts.add_send_source(source)

    def request_send(self) -> None:
        """Ask for a flush soon (sync, cheap): :meth:`.outbox.PostBook.request_send`."""
        self.posts.request_send()

    def post_nowait(
        self,
        request: Mapping[str, Any] | EncodedRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - not async; the post's deadline
        on_sent: Callable[[PostTicket], None] | None = None,
        on_done: Callable[[PostTicket], None] | None = None,
        context: object = None,
    ) -> PostTicket:
        """Register and queue a post without blocking: :meth:`.outbox.PostBook.post_nowait`."""
        return self.posts.post_nowait(request, timeout=timeout, on_sent=on_sent,
                                      on_done=on_done, context=context)

    async def send(
        self,
        request: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - default cfg.post_timeout_s, per API
        on_sent: Callable[[PostTicket], None] | None = None,
        context: object = None,
    ) -> PostTicket:
        """Register a post and write it; the ticket once the frame reached the socket
        (:meth:`.outbox.PostBook.send`)."""
        return await self.posts.send(request, timeout=timeout, on_sent=on_sent, context=context)

    async def post(
        self,
        request: Mapping[str, Any],
        timeout: float | None = None,  # noqa: ASYNC109 - default cfg.post_timeout_s, per API
    ) -> dict[str, Any]:
        """Send a post and return the answer's ``response`` (:meth:`.outbox.PostBook.post`)."""
        return await self.posts.post(request, timeout)

    async def info(self, payload: Mapping[str, Any], timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """``post({"type":"info","payload":payload})`` and return the answer's ``payload.data``."""
        return await self.posts.info(payload, timeout)

    async def flush(self, *, yield_after: bool = True) -> None:
        """Write every queued post now (group commit): :meth:`.outbox.PostBook.flush`."""
        await self.posts.flush(yield_after=yield_after)
