"""Post/request correlation of the Hyperliquid feed: :class:`PostBook` registers WS ``post``
requests (id, deadline, one of at most ``max_inflight`` slots), queues them, writes every
queued post with one socket write per round (group commit, :meth:`PostBook.flush`), matches
answers to their ticket by id (:meth:`PostBook.on_answer`), fails them at their deadline
(:meth:`PostBook.post_timer`) or when the connection ends (:meth:`PostBook.fail_pending`),
and materializes/discards the registered :class:`~.handlers.SendSource` objects around writes.
Its two tasks sleep on :class:`engine.deadline.DeadlineSleeper`: the post timer until the
earliest deadline (a shorter post pulls it in), the writer until a send is requested.

The feed (:mod:`.client`) owns the connection: it sets :attr:`PostBook.session` when one
opens and clears it when it ends; it starts :meth:`PostBook.writer` and
:meth:`PostBook.post_timer` in every session's nursery. The write and outcome rules are in
the :mod:`.client` module docstring ("Posts").
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import trio

from engine.deadline import DeadlineSleeper
from engine.net import ws
from engine.net.ratelog import RateLimitedLog, excerpt
from engine.venues.hyperliquid.feed_stats import FeedStats
from engine.venues.hyperliquid.handlers import FrameSink, SendSource
from engine.venues.hyperliquid.posts import (
    DONE,
    QUEUED,
    WRITING,
    WRITTEN,
    EncodedRequest,
    PostError,
    PostFailure,
    PostLost,
    PostNotSent,
    PostTicket,
    PostTimeout,
)
from engine.venues.hyperliquid.session import Session
from engine.venues.hyperliquid.wire import PostEvent, encode_post

log = logging.getLogger(__name__)

MAX_INFLIGHT_POSTS: Final = 100
_TOO_MANY_POSTS = re.compile(r"too many pending post requests.*?id=(\d+)")


class PostBook:
    """The posts of one feed: registered, queued, in flight and their answers."""

    def __init__(self, stats: FeedStats, post_timeout_s: float,
                 max_inflight: int = MAX_INFLIGHT_POSTS) -> None:
        self.stats = stats
        self.post_timeout_s = post_timeout_s
        self.session: Session | None = None  # set by the feed while a connection is up
        self.recorder: FrameSink | None = None  # [recording]: our writes
        self._rlog = RateLimitedLog(log)
        self._ids = itertools.count(1)
        self.pending: dict[int, PostTicket] = {}
        self._max_inflight = max_inflight
        self._post_slots = trio.Semaphore(max_inflight)
        self.outbox: list[PostTicket] = []
        self.sources: list[SendSource] = []
        self.send_requested = False
        self.dispatching = False  # the feed's reader is dispatching a read (it flushes)
        self.flushing = False
        self._flush_idle = trio.Event()
        self._writer_sleep = DeadlineSleeper()  # woken when a send is requested
        self._deadlines: list[tuple[float, int, PostTicket]] = []
        self._timer_sleep = DeadlineSleeper()  # until the earliest post deadline
        self._timer_due = math.inf

    def session_started(self, s: Session) -> None:
        """A connection is up: posts can be written to it."""
        self.dispatching = False
        self._timer_due = math.inf
        self.session = s

    def session_ended(self, reason: str) -> None:
        """The connection ended: every pending post fails (see :meth:`fail_pending`)."""
        self.session = None
        self.dispatching = False
        self.fail_pending(reason)

    def replay_drop_sends(self) -> None:
        """Replay: what a read queued is never written (no socket)."""
        self.send_requested = False
        self.outbox.clear()

    # -- answers routed here by the feed's reader

    def on_answer(self, ev: PostEvent) -> None:
        """A ``post`` answer: completes its ticket (an unknown id is counted and logged)."""
        p = self.pending.get(ev.id)
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
        self.resolve(p, ev, None)

    def on_error_message(self, message: str) -> None:
        """An ``error`` channel message: the venue's "too many pending post requests ...
        id=N" refusal fails post N with :class:`PostError`."""
        m = _TOO_MANY_POSTS.search(message)
        if m is not None:
            p = self.pending.get(int(m.group(1)))
            if p is not None:
                self.resolve(p, None, PostError(message))

    # -- registration and the public post API (the feed forwards to these)

    def add_send_source(self, source: SendSource) -> None:
        """Register ``source``: materialized before every write, discarded on disconnect."""
        self.sources.append(source)

    def request_send(self) -> None:
        """Ask for a flush soon (sync, cheap). Inside a handler callback the reader flushes
        right after the current frame (or coalesces, see the :mod:`.client` docstring);
        elsewhere the session's writer task does."""
        self.send_requested = True
        if not self.dispatching and not self.flushing:
            self._writer_sleep.wake()

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
        s = self.session
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
        t = self.register(request, timeout, on_sent, on_done, context)
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
        limit = self.post_timeout_s if timeout is None else timeout
        if self.session is None:
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
            if self.session is None:
                self.stats.posts_not_sent += 1
                raise PostNotSent("post not sent: connection lost while waiting for a slot")
            req = request() if callable(request) else request
        except BaseException:
            self._post_slots.release()
            raise
        t = self.register(req, limit, on_sent, None, context)
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

    def register(
        self,
        request: Mapping[str, Any] | EncodedRequest,
        timeout: float | None,
        on_sent: Callable[[PostTicket], None] | None,
        on_done: Callable[[PostTicket], None] | None,
        context: object,
    ) -> PostTicket:
        """Queue a post whose slot is already held."""
        limit = self.post_timeout_s if timeout is None else timeout
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
        self.pending[post_id] = t
        self.outbox.append(t)
        heapq.heappush(self._deadlines, (deadline, post_id, t))
        if deadline < self._timer_due:
            self._timer_due = deadline
            self._timer_sleep.pull_in(deadline)
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
        if self.flushing:
            await self._flush_idle.wait()
            return
        self.flushing = True
        try:
            while True:
                self.send_requested = False
                s = self.session
                if s is None:
                    self.discard_sources("not connected")
                    for t in self.outbox:
                        self._drop_queued(t, "post not sent: not connected", remove=False)
                    self.outbox.clear()
                    return
                for src in self.sources:
                    src.materialize()
                batch = self.outbox
                if not batch:
                    return
                self.outbox = []
                for t in batch:
                    t.state = WRITING
                await self._write(s, batch, yield_after)
        finally:
            self.flushing = False
            idle = self._flush_idle
            self._flush_idle = trio.Event()
            idle.set()
            if self.outbox or self.send_requested:
                self._writer_sleep.wake()  # e.g. this flusher was cancelled between rounds

    async def _write(self, s: Session, batch: list[PostTicket], yield_after: bool = True) -> None:
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

    def resolve(self, t: PostTicket, event: PostEvent | None, error: PostFailure | None) -> None:
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
                self.outbox.remove(t)
            except ValueError:
                pass
        self._complete(t, None, PostNotSent(why))

    def _complete(self, t: PostTicket, event: PostEvent | None, error: PostFailure | None) -> None:
        if t.state == DONE:
            return
        t.state = DONE
        t._held = None
        self.pending.pop(t.id, None)
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

    def fail_pending(self, reason: str) -> None:
        self.discard_sources(reason)
        for t in list(self.pending.values()):
            if t.state == QUEUED:
                self._drop_queued(
                    t, f"post {t.id} not sent: connection ended ({reason})", remove=False
                )
            else:
                self.resolve(
                    t, None, PostLost(f"post {t.id}: connection lost before the answer ({reason})")
                )
        self.outbox.clear()
        self._deadlines.clear()
        self.send_requested = False

    def discard_sources(self, reason: str) -> None:
        for src in self.sources:
            src.discard(reason)

    # -- tasks

    async def writer(self) -> None:
        """Flushes sends requested outside the reader's dispatch."""
        while True:
            await self._writer_sleep.sleep_until(math.inf)  # until woken
            if self.send_requested or self.outbox:
                await self.flush()

    async def post_timer(self) -> None:
        """Fails each post at its deadline (:class:`PostTimeout` once written); a post with an
        earlier deadline registered meanwhile pulls the sleep in (:meth:`register`)."""
        heap = self._deadlines
        while True:
            while heap and heap[0][2].state == DONE:
                heapq.heappop(heap)
            deadline = math.inf
            if heap:
                deadline, _, t = heap[0]
                if trio.current_time() >= deadline:
                    heapq.heappop(heap)
                    self.resolve(t, None, PostTimeout(f"post {t.id}: no answer in time"))
                    continue
            self._timer_due = deadline
            await self._timer_sleep.sleep_until(deadline)
