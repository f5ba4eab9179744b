"""Hyperliquid feed: owns the venue WebSocket session, its health, user streams and WS posts.

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
           ├─ _reader              receive_batch → decode → handler.on_*(...) → flush → on_batch_end()
           ├─ _watchdog            ping after idle, pong timeout, stale streams, backoff reset
           ├─ _writer              flushes sends requested outside the reader (rarely used)
           └─ _post_timer          fails posts at their deadline (PostTimeout)

Cancelling ``run()`` closes the socket (close frame best effort, ≤ 1 s), fails every pending
post (:class:`PostLost`, or :class:`PostNotSent` if it was never written) and calls
``handler.on_disconnected("shutdown")``. Exceptions raised by the handler are bugs of the caller
and propagate out of ``run()``. Times for keep-alive and staleness come from the injected
``clock`` (Trio's clock by default); post deadlines use Trio's clock.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import attrs
import trio

from engine.config import VenueConfig
from engine.venues.hyperliquid import ws
from engine.venues.hyperliquid.l2book import L2BookStore
from engine.venues.hyperliquid.ratelog import RateLimitedLog, excerpt
from engine.venues.hyperliquid.signing import check_address
from engine.venues.hyperliquid.wire import (
    CH_BBO,
    CH_CTX,
    CH_L2BOOK,
    CH_ORDER_UPDATES,
    CH_USER_FILLS,
    PING_TEXT,
    BboEvent,
    CtxEvent,
    ErrorEvent,
    L2BookEvent,
    OrderUpdate,
    OrderUpdatesEvent,
    PongEvent,
    PostEvent,
    SubAckEvent,
    UserFill,
    UserFillsEvent,
    WireDecoder,
    WireStats,
    encode_post,
    encode_subscribe,
    subscription,
)

log = logging.getLogger(__name__)

STABLE_AFTER_S: Final = 60.0
MAX_INFLIGHT_POSTS: Final = 100
SEND_COALESCE_S: Final = 2e-3
"""Longest wait of a read's later orders for the rest of that read (see the module docstring):
above the ~1.2 ms a 40-market burst takes to decide, so its 39 later orders leave as ONE action
right after the read (two signatures and two writes for the burst, its first order at once)."""
USER_CHANNELS: Final = (CH_ORDER_UPDATES, CH_USER_FILLS)
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

    Optional (looked up once with ``getattr`` at construction; see :class:`UserStreamHandler`):
    ``on_order_updates``, ``on_user_fills``, ``on_user_channels_acked``. Without them, user
    stream messages are counted (``user_unhandled``) and dropped. ``on_l2book`` (see
    :class:`L2BookHandler`) is optional too: without it l2Book frames only update the store.
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


class UserStreamHandler(Protocol):
    """The optional user-stream methods of a :class:`FeedHandler` (same rules: sync, no block).

    ``on_order_updates`` gets the decoded elements of one ``orderUpdates`` frame (possibly
    empty); ``on_user_fills`` the fills of one ``userFills`` frame and whether it is the
    snapshot (history: never rebuild positions from it, P17); ``on_user_channels_acked(True)``
    once both user subscriptions are acked on a connection, ``(False)`` on every disconnect and
    when the venue confirms an unsubscribe.
    """

    def on_order_updates(self, updates: list[OrderUpdate]) -> None: ...

    def on_user_fills(self, fills: list[UserFill], is_snapshot: bool) -> None: ...

    def on_user_channels_acked(self, acked: bool) -> None: ...


class L2BookHandler(Protocol):
    """The optional l2Book method of a :class:`FeedHandler` (only with ``l2book=True``).

    Called after the store accepted the frame (valid levels, ``time`` not regressing) with the
    levels best first as ``(px, sz)``; the lists are the stored ones: do not mutate them.
    """

    def on_l2book(
        self,
        coin: str,
        time_ms: int,
        bids: list[tuple[float, float]],
        asks: list[tuple[float, float]],
    ) -> None: ...


class FrameSink(Protocol):
    """Where the feed hands its frames for recording (:class:`engine.io.frames.FrameRecorder`):
    synchronous and cheap (a list append); the sink owns the lists it is given."""

    def inbound(self, texts: list[str]) -> None: ...

    def outbound(self, texts: list[str]) -> None: ...

    def event(self, kind: str, obj: Any) -> None: ...


class SendSource(Protocol):
    """Work queued outside the outbox (e.g. orders to coalesce into one action).

    ``materialize()`` runs right before every write: turn the queued work into posts with
    :meth:`HyperliquidFeed.post_nowait`. ``discard(reason)`` runs when the connection ends (or a
    flush finds none): the queued work was never sent. Both are synchronous and must not raise.
    """

    def materialize(self) -> None: ...

    def discard(self, reason: str) -> None: ...


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


class EncodedRequest(str):
    """A post ``request`` already encoded as compact JSON (the order path builds it from
    fragments, :func:`~engine.venues.hyperliquid.signing.ioc_action_fragments`): written as
    ``{"method":"post","id":<id>,"request":<this text>}``, the bytes :func:`encode_post` gives
    for the same request as a dict."""

    __slots__ = ()


class PostFailure(Exception):
    """Base class of post errors."""


class PostTimeout(PostFailure):
    """No answer to the post within the timeout."""


class PostError(PostFailure):
    """The server answered with a response of type ``error`` (or an unusable answer)."""


class PostLost(PostFailure):
    """The connection dropped (or there was none) before the answer arrived."""


class PostNotSent(PostLost):
    """No byte of the post reached the socket (not connected, no free slot, the connection
    failed first): the venue cannot have seen it. A :class:`PostLost` for older callers."""


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


QUEUED: Final = 0
WRITING: Final = 1
WRITTEN: Final = 2
DONE: Final = 3


class PostTicket:
    """One post: QUEUED (in the outbox) → WRITING → WRITTEN (``on_sent`` ran) → DONE.

    When DONE exactly one of ``event`` (the answer) and ``error`` is set, :meth:`wait`
    returns and ``on_done`` (if any) ran. An answer, timeout or loss that comes while the frame is being
    written is held until ``on_sent`` ran, so ``on_sent`` always precedes the outcome.
    ``context`` is free for the caller.
    """

    __slots__ = (
        "id",
        "text",
        "deadline",
        "state",
        "event",
        "error",
        "_done",
        "on_sent",
        "on_done",
        "context",
        "_held",
        "_slot",
    )

    def __init__(
        self,
        post_id: int,
        text: str,
        deadline: float,
        on_sent: Callable[[PostTicket], None] | None,
        on_done: Callable[[PostTicket], None] | None,
        context: object,
    ) -> None:
        self.id = post_id
        self.text = text
        self.deadline = deadline
        self.state = QUEUED
        self.event: PostEvent | None = None
        self.error: PostFailure | None = None
        self._done: trio.Event | None = None  # created by the first wait() only
        self.on_sent = on_sent
        self.on_done = on_done
        self.context = context
        self._held: tuple[PostEvent | None, PostFailure | None] | None = None
        self._slot = True

    @property
    def written(self) -> bool:
        """The frame was handed to the socket (its bytes may have left)."""
        return self.state >= WRITTEN and not isinstance(self.error, PostNotSent)

    async def wait(self) -> None:
        """Return once the post is DONE (a checkpoint even if it already is)."""
        if self.state == DONE:
            await trio.lowlevel.checkpoint()
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()

    def result(self) -> dict[str, Any]:
        """The answer's ``response`` (once DONE); raises the failure, or :class:`PostError`
        for a response of type ``error``."""
        if self.error is not None:
            raise self.error
        ev = self.event
        if ev is None:
            raise RuntimeError(f"post {self.id} is not done")
        if ev.response_type == "error":
            raise PostError(f"post {self.id}: {excerpt(str(ev.payload))}")
        return ev.response


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
        self.stats = FeedStats()
        self._handler = handler
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._stable_after = stable_after_s
        self._connector = connector
        self._decoder = WireDecoder(self.stats, l2book=l2book)
        self._rlog = RateLimitedLog(log)
        # the master account (never the agent's address): its orderUpdates and userFills
        self.user: str | None = None if user is None else check_address(user)
        self._subs: list[tuple[str, str | None]] = [(CH_BBO, c) for c in self.coins]
        self._subs += [(CH_CTX, c) for c in self.coins]
        self.l2book: L2BookStore | None = None
        if l2book:
            self.l2book = l2book_store if l2book_store is not None else L2BookStore()
            self._subs += [(CH_L2BOOK, c) for c in self.coins]
        self._l2_coins = frozenset(self.coins) if l2book else frozenset()
        self._h_l2book: Callable[[str, int, list[tuple[float, float]],
                                  list[tuple[float, float]]], None] | None = getattr(
            handler, "on_l2book", None
        )
        self._sub_texts = [encode_subscribe(subscription(t, c)) for t, c in self._subs]
        if self.user is not None:
            for ch in USER_CHANNELS:
                self._subs.append((ch, None))
                self._sub_texts.append(encode_subscribe(subscription(ch, user=self.user)))
        self._sub_set = frozenset(self._subs)
        self.stats.subscriptions = len(self._subs)
        self._user_acked: set[str] = set()
        self._h_order_updates: Callable[[list[OrderUpdate]], None] | None = getattr(
            handler, "on_order_updates", None
        )
        self._h_user_fills: Callable[[list[UserFill], bool], None] | None = getattr(
            handler, "on_user_fills", None
        )
        self._h_user_acked: Callable[[bool], None] | None = getattr(
            handler, "on_user_channels_acked", None
        )
        if self.user is not None:
            missing = [
                name
                for name, h in (
                    ("on_order_updates", self._h_order_updates),
                    ("on_user_fills", self._h_user_fills),
                    ("on_user_channels_acked", self._h_user_acked),
                )
                if h is None
            ]
            if missing:
                log.warning(
                    "user streams are subscribed but the handler has no %s: those messages "
                    "are counted and dropped",
                    ", ".join(missing),
                )
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
        self._pending: dict[int, PostTicket] = {}
        self._max_inflight = max_inflight_posts
        self._post_slots = trio.Semaphore(max_inflight_posts)
        self._outbox: list[PostTicket] = []
        self._sources: list[SendSource] = []
        # with [venue] busy_poll_us: run about every ms while a read spins (e.g. the order
        # executor's warm-up); synchronous, must be quick; set before run()
        self.spin_hook: Callable[[], None] | None = None
        self.busy_poll_totals = BusyPollStats()  # of the connections that ended
        # [recording]: every read's texts, our writes and connection events (set before run())
        self.recorder: FrameSink | None = None
        # epoch seconds for display (the apps inject their clock; replay its simulated one)
        self.wall_clock: Callable[[], float] = time.time
        self._replay_dispatch: tuple[_Session, Callable[[list[Any], float], None]] | None = None
        self._send_requested = False
        self._dispatching = False
        self._flushing = False
        self._flush_idle = trio.Event()
        self._writer_wake = trio.Event()
        self._deadlines: list[tuple[float, int, PostTicket]] = []
        self._timer_wake = trio.Event()
        self._timer_due = math.inf
        if not send_coalesce_s >= 0:
            raise ValueError(f"send_coalesce_s must be >= 0, got {send_coalesce_s!r}")
        self._coalesce_s = send_coalesce_s
        self.send_first_at_once = send_first_at_once
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

    @property
    def user_channels_acked(self) -> bool:
        """True when ``orderUpdates`` and ``userFills`` are acked on the current connection."""
        return self._session is not None and len(self._user_acked) == len(USER_CHANNELS)

    @property
    def inflight_posts(self) -> int:
        """Posts registered and not done (queued, being written or awaiting the answer)."""
        return len(self._pending)

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
                nursery.start_soon(self._watchdog, s)
                nursery.start_soon(self._writer)
                nursery.start_soon(self._post_timer)
                if self._sub_texts:
                    try:
                        await conn.send_texts(self._sub_texts)
                    except ws.ConnectionClosed as exc:
                        s.end(f"subscribe failed: {exc}")
                    if self.recorder is not None:
                        self.recorder.outbound(list(self._sub_texts))
            return s.reason or "session ended"
        finally:
            self._close_session(s)

    def _open_session(self, conn: Any, url: str, now: float) -> _Session:
        """The synchronous start of a connection (live and replay)."""
        s = _Session(conn, now)
        if not self._subs:
            s.all_acked_at = now
        self._acked.clear()
        self._user_acked.clear()
        self._dispatching = False
        self._timer_due = math.inf
        for d in (self._bbo_last, self._ctx_last):
            for c in d:
                d[c] = now
        st = self.stats
        st.acked = 0
        st.user_acked = False
        st.connected = True
        st.connects += 1
        st.last_connect_time = now
        st.last_connect_wall = self.wall_clock()
        self._session = s
        self._connected.set()
        if self.recorder is not None:
            self.recorder.event("conn", {"event": "connected", "url": url})
        log.info("connected to %s; subscribing %d stream(s)", url, len(self._subs))
        return s

    def _close_session(self, s: _Session) -> None:
        """The synchronous end of a connection (live and replay)."""
        st = self.stats
        self._session = None
        self._connected = trio.Event()
        st.connected = False
        reason = s.reason or "shutdown"
        if self.recorder is not None:
            self.recorder.event("conn", {"event": "disconnected", "reason": reason})
        self._dispatching = False
        self._fail_pending(reason)
        if self.l2book is not None:
            self.l2book.invalidate(reason)
        if self.user is not None:
            self._user_acked.clear()
            st.user_acked = False
            if self._h_user_acked is not None:
                self._h_user_acked(False)
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

    def _replay_reader(self, s: _Session) -> Callable[[list[Any], float], None]:
        """Replay's whole socket read for session ``s``: what :meth:`_reader` does with one
        read (the live reader's per-frame dispatch for each text, then ``on_batch_end``),
        without the sends (replay sends nothing). A closure over the lookups, like the
        dispatch: one call per read."""
        dispatch = self._frame_dispatcher(s)
        on_batch_end = self._handler.on_batch_end
        st = self.stats

        def read(texts: list[Any], now: float) -> None:
            s.last_rx = now
            st.batches += 1
            for text in texts:
                dispatch(text, now)
            on_batch_end()
            self._send_requested = False
            self._outbox.clear()

        return read

    # ------------------------------------------------------------------ reader (hot path)

    def _frame_dispatcher(self, s: _Session) -> Callable[[str, float], None]:
        """The per-frame step of a read (decode → handler), shared by the live reader and
        replay: a closure over the session's lookups (no attribute loads per frame)."""
        decode = self._decoder.decode
        h = self._handler
        on_bbo = h.on_bbo
        on_ctx = h.on_ctx
        bbo_last = self._bbo_last
        ctx_last = self._ctx_last
        on_l2book = self._on_l2book
        on_control = self._on_control
        unexpected = self._unexpected_coin

        def dispatch(text: str, now: float) -> None:
            ev = decode(text)
            t = type(ev)
            if t is BboEvent:
                b: BboEvent = ev  # type: ignore[assignment]
                coin = b.coin
                if coin in bbo_last:
                    bbo_last[coin] = now
                    on_bbo(coin, b.time_ms, b.bid_px, b.bid_sz, b.ask_px, b.ask_sz)
                else:
                    unexpected(CH_BBO, coin)
            elif t is CtxEvent:
                c: CtxEvent = ev  # type: ignore[assignment]
                coin = c.coin
                if coin in ctx_last:
                    ctx_last[coin] = now
                    on_ctx(coin, c.oracle_px, c.mark_px)
                else:
                    unexpected(CH_CTX, coin)
            elif t is L2BookEvent:
                on_l2book(ev)  # type: ignore[arg-type]
            elif ev is not None:
                on_control(s, ev, now)

        return dispatch

    async def _reader(self, s: _Session) -> None:
        conn = s.conn
        clock = self._clock
        on_batch_end = self._handler.on_batch_end
        dispatch = self._frame_dispatcher(s)
        st = self.stats
        coalesce = self._coalesce_s
        perf = time.perf_counter
        record = self.recorder.inbound if self.recorder is not None else None
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
                self._dispatching = True
                flushed = not self.send_first_at_once  # this read already flushed once
                deferred_at = 0.0  # when a later send request of this read was deferred
                for text in batch:
                    dispatch(text, now)
                    if self._send_requested and not self._flushing:
                        # first request of this read: write now; later ones coalesce (a
                        # flush running in another task picks them up without us waiting).
                        # No yield after these writes: the next socket read is a checkpoint.
                        if not flushed:
                            flushed = True
                            await self.flush(yield_after=False)
                        else:
                            if deferred_at == 0.0:
                                deferred_at = perf()
                            if perf() - deferred_at >= coalesce:
                                deferred_at = 0.0
                                await self.flush(yield_after=False)
                on_batch_end()
                if (self._send_requested or self._outbox) and not self._flushing:
                    await self.flush(yield_after=False)
                self._dispatching = False
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

    def _on_l2book(self, ev: L2BookEvent) -> None:
        coin = ev.coin
        store = self.l2book
        if store is None or coin not in self._l2_coins:
            self._unexpected_coin(CH_L2BOOK, coin)
            return
        if not store.update(coin, ev.time_ms, ev.bids, ev.asks):
            return
        h = self._h_l2book
        if h is not None:
            snap = store.snapshot(coin)
            assert snap is not None
            h(coin, ev.time_ms, snap.bids, snap.asks)

    def _on_control(self, s: _Session, ev: object, now: float) -> None:
        if isinstance(ev, PongEvent):
            return  # liveness is any received byte; nothing else to do
        if isinstance(ev, PostEvent):
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
            self._resolve(p, ev, None)
        elif isinstance(ev, OrderUpdatesEvent):
            self._on_order_updates(ev)
        elif isinstance(ev, UserFillsEvent):
            self._on_user_fills(ev)
        elif isinstance(ev, SubAckEvent):
            self._on_ack(s, ev, now)
        elif isinstance(ev, ErrorEvent):
            self.stats.errors += 1
            self._rlog.log(
                "error_channel", logging.WARNING, "server error message: %s", excerpt(ev.message)
            )
            m = _TOO_MANY_POSTS.search(ev.message)
            if m is not None:
                p = self._pending.get(int(m.group(1)))
                if p is not None:
                    self._resolve(p, None, PostError(ev.message))

    def _user_frame_usable(self, channel: str, handler: object) -> bool:
        st = self.stats
        if self.user is None:
            st.user_unsubscribed += 1
            self._rlog.log(
                "user_unsubscribed",
                logging.WARNING,
                "%s frame without a user subscription dropped",
                channel,
            )
            return False
        if handler is None:
            st.user_unhandled += 1
            self._rlog.log(
                "user_unhandled",
                logging.WARNING,
                "%s frame dropped: the handler has no method for it",
                channel,
            )
            return False
        return True

    def _on_order_updates(self, ev: OrderUpdatesEvent) -> None:
        h = self._h_order_updates
        if not self._user_frame_usable(CH_ORDER_UPDATES, h):
            return
        st = self.stats
        st.order_update_frames += 1
        st.order_updates += len(ev.updates)
        assert h is not None
        h(ev.updates)

    def _on_user_fills(self, ev: UserFillsEvent) -> None:
        h = self._h_user_fills
        if not self._user_frame_usable(CH_USER_FILLS, h):
            return
        st = self.stats
        if ev.user is not None and ev.user.lower() != self.user:
            st.user_mismatch += 1
            self._rlog.log(
                "user_mismatch",
                logging.ERROR,
                "userFills for another user (%s, expected %s) dropped",
                excerpt(ev.user, 50),
                self.user,
            )
            return
        st.user_fill_frames += 1
        st.user_fills += len(ev.fills)
        if ev.is_snapshot:
            st.user_snapshots += 1
        assert h is not None
        h(ev.fills, ev.is_snapshot)

    def _on_ack(self, s: _Session, ev: SubAckEvent, now: float) -> None:
        key = (ev.sub_type, ev.coin)
        user_channel = ev.sub_type in USER_CHANNELS
        if user_channel and ev.user is not None and ev.user.lower() != self.user:
            key = ("<other user>", None)
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
            if user_channel:
                was = len(self._user_acked) == len(USER_CHANNELS)
                self._user_acked.discard(ev.sub_type)
                self.stats.user_acked = False
                if was and self._h_user_acked is not None:
                    self._h_user_acked(False)
            return
        if key in self._acked:
            return
        self._acked.add(key)
        self.stats.acked = len(self._acked)
        if user_channel:
            self._user_acked.add(ev.sub_type)
            self._handler.on_subscribed(ev.sub_type, None)
            if len(self._user_acked) == len(USER_CHANNELS):
                self.stats.user_acked = True
                log.info("user channels acknowledged for %s", self.user)
                if self._h_user_acked is not None:
                    self._h_user_acked(True)
            if len(self._acked) == len(self._subs):
                s.all_acked_at = now
                log.info("all %d subscriptions acknowledged", len(self._subs))
            return
        coin = ev.coin
        last = (
            self._bbo_last
            if ev.sub_type == CH_BBO
            else self._ctx_last
            if ev.sub_type == CH_CTX
            else {}  # l2Book: no staleness watch
        )
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

    def add_send_source(self, source: SendSource) -> None:
        """Register ``source``: materialized before every write, discarded on disconnect."""
        self._sources.append(source)

    def request_send(self) -> None:
        """Ask for a flush soon (sync, cheap). Inside a handler callback the reader flushes
        right after the current frame (or coalesces, see the module docstring); elsewhere the
        session's writer task does."""
        self._send_requested = True
        if not self._dispatching and not self._flushing:
            self._writer_wake.set()

    def post_nowait(
        self,
        request: Mapping[str, Any] | EncodedRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - not async; the post's deadline
        on_sent: Callable[[PostTicket], None] | None = None,
        on_done: Callable[[PostTicket], None] | None = None,
        context: object = None,
    ) -> PostTicket:
        """Register and queue a post without blocking; it is written by the next flush
        (``request`` as a dict, or already encoded: :class:`EncodedRequest`).

        Raises :class:`PostNotSent` when not connected or all ``max_inflight_posts`` slots
        are taken. ``on_sent(ticket)`` runs right after the write that carried the frame;
        ``on_done(ticket)`` when it is DONE (answer, timeout, loss, not sent). A send is
        requested (:meth:`request_send`); await :meth:`flush` to write it at once.
        """
        s = self._session
        if s is None:
            self.stats.posts_not_sent += 1
            raise PostNotSent("post not sent: not connected")
        try:
            self._post_slots.acquire_nowait()
        except trio.WouldBlock:
            self.stats.posts_not_sent += 1
            raise PostNotSent(
                f"post not sent: {self._max_inflight} posts already in flight"
            ) from None
        t = self._register(request, timeout, on_sent, on_done, context)
        self.request_send()
        return t

    async def send(
        self,
        request: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - default cfg.post_timeout_s, per API
        on_sent: Callable[[PostTicket], None] | None = None,
        context: object = None,
    ) -> PostTicket:
        """Register a post (waiting up to ``timeout`` for a free slot), write it, return the
        ticket once the frame was handed to the socket; ``await ticket.wait()`` for the outcome.

        ``request`` may be a callable, called once a slot is held (e.g. to take a nonce and
        sign as late as possible; its exceptions propagate, nothing is sent). Raises
        :class:`PostNotSent` if no byte of the frame reached the socket.
        """
        limit = self.cfg.post_timeout_s if timeout is None else timeout
        if self._session is None:
            self.stats.posts_not_sent += 1
            raise PostNotSent("post not sent: not connected")
        acquired = False
        try:
            self._post_slots.acquire_nowait()  # no checkpoint before the write when free
            acquired = True
        except trio.WouldBlock:
            with trio.move_on_after(limit):
                await self._post_slots.acquire()
                acquired = True
        if not acquired:
            self.stats.posts_not_sent += 1
            raise PostNotSent(
                f"post not sent: no free slot ({self._max_inflight} in flight) within {limit}s"
            )
        try:
            if self._session is None:
                self.stats.posts_not_sent += 1
                raise PostNotSent("post not sent: connection lost while waiting for a slot")
            req = request() if callable(request) else request
        except BaseException:
            self._post_slots.release()
            raise
        t = self._register(req, limit, on_sent, None, context)
        try:
            await self.flush()
        finally:
            if t.state == QUEUED:  # cancelled before the write: never let it go out later
                self._drop_queued(t, "post not sent: cancelled before the write")
        if isinstance(t.error, PostNotSent):
            raise t.error
        return t

    async def post(
        self,
        request: Mapping[str, Any],
        timeout: float | None = None,  # noqa: ASYNC109 - default cfg.post_timeout_s, per API
    ) -> dict[str, Any]:
        """Send ``{"method":"post","id":n,"request":request}``; return the answer's ``response``.

        Raises :class:`PostTimeout` (no answer within ``timeout``, default
        ``cfg.post_timeout_s``), :class:`PostError` (response type ``error``) or
        :class:`PostLost` (the connection dropped before the answer; :class:`PostNotSent`, a
        subclass, when the post never reached the socket).
        """
        t = await self.send(request, timeout=timeout)
        await t.wait()
        return t.result()

    async def info(self, payload: Mapping[str, Any], timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """``post({"type":"info","payload":payload})`` and return the answer's ``payload.data``."""
        resp = await self.post({"type": "info", "payload": payload}, timeout)
        body = resp.get("payload")
        if resp.get("type") != "info" or not isinstance(body, dict) or "data" not in body:
            raise PostError(
                f"unexpected answer to info {payload.get('type')!r}: {excerpt(str(resp))}"
            )
        return body["data"]

    # -- registration, writing, completion

    def _register(
        self,
        request: Mapping[str, Any] | EncodedRequest,
        timeout: float | None,
        on_sent: Callable[[PostTicket], None] | None,
        on_done: Callable[[PostTicket], None] | None,
        context: object,
    ) -> PostTicket:
        """Queue a post whose slot is already held."""
        limit = self.cfg.post_timeout_s if timeout is None else timeout
        post_id = next(self._ids)
        try:
            if isinstance(request, EncodedRequest):
                text = '{"method":"post","id":' + str(post_id) + ',"request":' + request + "}"
            else:
                text = encode_post(post_id, request)
        except (TypeError, ValueError, OverflowError) as exc:  # msgspec.EncodeError is one
            self._post_slots.release()
            self.stats.posts_not_sent += 1
            raise PostNotSent(f"post not sent: cannot encode the request: {exc}") from None
        deadline = trio.current_time() + limit
        t = PostTicket(post_id, text, deadline, on_sent, on_done, context)
        self._pending[post_id] = t
        self._outbox.append(t)
        heapq.heappush(self._deadlines, (deadline, post_id, t))
        if deadline < self._timer_due:
            self._timer_wake.set()
        return t

    async def flush(self, *, yield_after: bool = True) -> None:
        """Write every queued post now, with one socket write per round (group commit).

        Returns when what was queued at the call has been handed to the socket (or failed as
        not sent). If a flush is already running, waits for it: it loops until the outbox is
        empty. Send sources are materialized before each round. Never raises for a failed
        write: the tickets carry the outcome and the session ends. ``yield_after=False``: no
        yield to the scheduler after a write that went out whole (for the reader, whose next
        socket read is a checkpoint; it may then return without any checkpoint).
        """
        if self._flushing:
            await self._flush_idle.wait()
            return
        self._flushing = True
        try:
            while True:
                self._send_requested = False
                s = self._session
                if s is None:
                    self._discard_sources("not connected")
                    for t in self._outbox:
                        self._drop_queued(t, "post not sent: not connected", remove=False)
                    self._outbox.clear()
                    return
                for src in self._sources:
                    src.materialize()
                batch = self._outbox
                if not batch:
                    return
                self._outbox = []
                for t in batch:
                    t.state = WRITING
                await self._write(s, batch, yield_after)
        finally:
            self._flushing = False
            idle = self._flush_idle
            self._flush_idle = trio.Event()
            idle.set()
            if self._outbox or self._send_requested:
                self._writer_wake.set()  # e.g. this flusher was cancelled between rounds

    async def _write(self, s: _Session, batch: list[PostTicket], yield_after: bool = True) -> None:
        st = self.stats
        texts = [t.text for t in batch]
        try:
            # once bytes are handed to the socket the send is shielded (see ws): a Cancelled
            # can only come from waiting for the send lock, before any byte was written
            if yield_after or not isinstance(s.conn, ws.WsConnection):
                await s.conn.send_texts(texts)
            else:  # no yield after the bytes left (other connection types always yield)
                await s.conn.send_texts(texts, yield_after=False)
        except trio.Cancelled:
            for t in batch:
                self._complete(t, None, PostNotSent(f"post {t.id} not sent: cancelled"))
            raise
        except ws.NothingSent as exc:
            for t in batch:
                self._complete(t, None, PostNotSent(f"post {t.id} not sent: {exc}"))
            s.end(f"post write failed: {exc}")
            return
        except ws.ConnectionClosed as exc:
            # some bytes may have left: the posts count as sent, their answers are lost
            self._mark_written(batch)
            for t in batch:
                held = t._held
                err = held[1] if held is not None and held[1] is not None else None
                self._complete(t, None, err or PostLost(f"post {t.id}: send failed: {exc}"))
            s.end(f"post write failed: {exc}")
            return
        st.post_writes += 1
        if self.recorder is not None:
            self.recorder.outbound(texts)
        self._mark_written(batch)
        for t in batch:
            held = t._held
            if held is not None:
                self._complete(t, held[0], held[1])

    def _mark_written(self, batch: list[PostTicket]) -> None:
        self.stats.posts_sent += len(batch)
        for t in batch:
            t.state = WRITTEN
        for t in batch:
            if t.on_sent is not None:
                t.on_sent(t)

    def _resolve(self, t: PostTicket, event: PostEvent | None, error: PostFailure | None) -> None:
        """An outcome for ``t`` (answer, error-channel refusal, timeout, loss)."""
        state = t.state
        if state == WRITTEN:
            self._complete(t, event, error)
        elif state == WRITING:
            if t._held is None or t._held[0] is None:
                t._held = (event, error)  # completed right after the write and on_sent
        elif state == QUEUED:
            self._drop_queued(t, f"post {t.id} not sent: {error or 'answered before the write'}")

    def _drop_queued(self, t: PostTicket, why: str, *, remove: bool = True) -> None:
        if remove:
            try:
                self._outbox.remove(t)
            except ValueError:
                pass
        self._complete(t, None, PostNotSent(why))

    def _complete(self, t: PostTicket, event: PostEvent | None, error: PostFailure | None) -> None:
        if t.state == DONE:
            return
        t.state = DONE
        t._held = None
        self._pending.pop(t.id, None)
        if t._slot:
            t._slot = False
            self._post_slots.release()
        st = self.stats
        if error is not None:
            t.error = error
            if isinstance(error, PostNotSent):
                st.posts_not_sent += 1
            elif isinstance(error, PostTimeout):
                st.post_timeouts += 1
            elif isinstance(error, PostLost):
                st.posts_lost += 1
            else:
                st.post_errors += 1
        else:
            t.event = event
            if event is not None and event.response_type == "error":
                st.post_errors += 1
        if t._done is not None:
            t._done.set()
        if t.on_done is not None:
            t.on_done(t)

    def _fail_pending(self, reason: str) -> None:
        self._discard_sources(reason)
        for t in list(self._pending.values()):
            if t.state == QUEUED:
                self._drop_queued(
                    t, f"post {t.id} not sent: connection ended ({reason})", remove=False
                )
            else:
                self._resolve(
                    t, None, PostLost(f"post {t.id}: connection lost before the answer ({reason})")
                )
        self._outbox.clear()
        self._deadlines.clear()
        self._send_requested = False

    def _discard_sources(self, reason: str) -> None:
        for src in self._sources:
            src.discard(reason)

    # -- tasks

    async def _writer(self) -> None:
        """Flushes sends requested outside the reader's dispatch."""
        while True:
            await self._writer_wake.wait()
            self._writer_wake = trio.Event()
            if self._send_requested or self._outbox:
                await self.flush()

    async def _post_timer(self) -> None:
        """Fails each post at its deadline (:class:`PostTimeout` once written)."""
        heap = self._deadlines
        while True:
            while heap and heap[0][2].state == DONE:
                heapq.heappop(heap)
            if not heap:
                self._timer_due = math.inf
                await self._timer_wake.wait()
                self._timer_wake = trio.Event()
                continue
            deadline, _, t = heap[0]
            if trio.current_time() >= deadline:
                heapq.heappop(heap)
                self._resolve(t, None, PostTimeout(f"post {t.id}: no answer in time"))
                continue
            self._timer_due = deadline
            with trio.move_on_at(deadline):
                await self._timer_wake.wait()
            if self._timer_wake.is_set():
                self._timer_wake = trio.Event()


def _summarise(streams: list[str], limit: int = 8) -> str:
    shown = ", ".join(streams[:limit])
    return shown + (f" (+{len(streams) - limit} more)" if len(streams) > limit else "")
