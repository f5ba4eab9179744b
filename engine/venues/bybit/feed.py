"""The Bybit sockets a shell runs, as one market-data feed (:class:`BybitFeed`), and the timed
REST connection of an order lane (:class:`TimedHttpClient`).

:class:`BybitFeed` owns one :class:`~engine.venues.bybit.ws.BybitStream` per socket: ``spot``
(``orderbook.1.{symbol}``), ``linear`` (``tickers.{symbol}`` + ``orderbook.1.{symbol}``; its
decoder knows each perp's funding interval) and, with an account (trade mode), ``private``
(``order``/``execution``/``position``/``wallet``). :meth:`BybitFeed.run` connects them in
that order — the private socket first (its fills must not be published before we listen),
the quotes last (they are what opens positions) — each within a bound, then reports started
and keeps them reconnecting until cancelled. Every frame is stamped on arrival
(:meth:`BybitFeed.rx_ns`: a fill's receive time starts the leg latency), counted per socket
and handed to the frame recorder tagged with its socket
(:meth:`engine.io.frames.FrameRecorder.inbound_on`) before it is decoded; decoded events go
to the handler synchronously, in the stream's task.

Replay drives the same decoders without a socket (:meth:`BybitFeed.replay_batch`: recorded
``ins`` payloads, ``<socket> <frame>``); a full backtest of a recording is
:mod:`engine.replay.funding_backtest`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import trio

from engine.core.neutral import InstrumentKind
from engine.venues.bybit.codec import BookGap, BybitDecoder, Malformed, OpReply
from engine.venues.bybit.http import HttpClient
from engine.venues.bybit.ws import BybitStream

MARKET_SOCKETS = ("spot", "linear")
PRIVATE_TOPICS = ("order", "execution", "position", "wallet")


class TaggedDecoder(BybitDecoder):
    """A socket's decoder that first stamps the frame's arrival (``rx_ns``), counts it and
    hands it to the frame recorder tagged with the socket's name."""

    def __init__(self, kind: InstrumentKind, feed: BybitFeed, socket: str) -> None:
        super().__init__(kind)
        self.feed = feed
        self.socket = socket
        self.rx_ns = 0

    def decode(self, raw: str | bytes) -> list[Any]:
        self.rx_ns = time.perf_counter_ns()
        feed = self.feed
        if feed.recorder is not None:  # tagged with its socket: replay decodes it like this
            feed.recorder.inbound_on(self.socket, [raw if isinstance(raw, str)
                                                   else raw.decode("utf-8", "replace")])
        feed.frames_by_channel[self.socket] = feed.frames_by_channel.get(self.socket, 0) + 1
        if feed.on_frame is not None:
            feed.on_frame(self.socket)
        return super().decode(raw)


class BybitFeedStats:
    """The feed's counters as the shell shows them (``FeedStatsView``)."""

    def __init__(self, feed: BybitFeed) -> None:
        self._feed = feed

    @property
    def connected(self) -> bool:
        return self._feed.connected

    @property
    def reconnects(self) -> int:
        return sum(max(0, s.connects - 1) for s in self._feed.streams.values())

    @property
    def malformed(self) -> int:
        return sum(s.malformed for s in self._feed.streams.values())

    @property
    def frames_by_channel(self) -> dict[str, int]:
        return dict(self._feed.frames_by_channel)

    @property
    def frames_total(self) -> int:
        return sum(self._feed.frames_by_channel.values())


class _NoBusyPoll:
    """This feed never busy-polls (trio-websocket reads): every counter is 0."""

    busy_polls = 0
    busy_poll_timeouts = 0
    spin_hooks = 0


class BybitFeed:
    """The Bybit sockets of one shell (see the module docstring); built by
    :meth:`engine.venues.bybit.factory.BybitVenue.market_data`."""

    def __init__(self, make_stream: Callable[[str, Sequence[str], Callable[[Any], None]],
                                             BybitStream],
                 symbols: Sequence[str], handler: Callable[[Any], None], *,
                 private: bool = False, funding_interval_ms: Mapping[str, int] | None = None,
                 connect_timeout_s: float = 15.0) -> None:
        self.handler = handler
        self.recorder: Any = None  # a FrameRecorder (set before run)
        self.wall_clock: Callable[[], float] = time.time
        self.spin_hook: Callable[[], None] | None = None  # never called: no busy-poll
        self.on_frame: Callable[[str], None] | None = None  # called per frame (counting)
        self.frames_by_channel: dict[str, int] = {}
        self.connect_timeout_s = connect_timeout_s
        self._replay_connected = False
        syms = list(symbols)
        plan: list[tuple[str, list[str], InstrumentKind]] = [
            ("spot", [f"orderbook.1.{s}" for s in syms], InstrumentKind.SPOT),
            ("linear", [f"tickers.{s}" for s in syms] + [f"orderbook.1.{s}" for s in syms],
             InstrumentKind.LINEAR_PERP)]
        if private:
            plan.insert(0, ("private", list(PRIVATE_TOPICS), InstrumentKind.LINEAR_PERP))
        self.streams: dict[str, BybitStream] = {}
        for channel, topics, kind in plan:
            st = make_stream(channel, topics, handler)
            dec = TaggedDecoder(kind, self, channel)
            if channel == "linear":
                for s, ms in (funding_interval_ms or {}).items():
                    dec.tickers.set_funding_interval(s, ms)
            st.decoder = dec
            self.streams[channel] = st
        self.stats = BybitFeedStats(self)
        self.busy_poll_stats = _NoBusyPoll()

    @property
    def connected(self) -> bool:
        if not self.streams:
            return False
        if self._replay_connected:
            return True
        return all(s.connected.is_set() for s in self.streams.values())

    def rx_ns(self, channel: str) -> int:
        """``time.perf_counter_ns()`` at the arrival of socket ``channel``'s latest frame (0:
        none yet)."""
        st = self.streams.get(channel)
        dec = st.decoder if st is not None else None
        return dec.rx_ns if isinstance(dec, TaggedDecoder) else 0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect every socket in order (each within ``connect_timeout_s``: ``TooSlowError``
        otherwise), report started, keep them running. A refused ``auth`` raises
        :class:`~engine.venues.bybit.ws.BybitAuthError`."""
        async with trio.open_nursery() as nursery:
            for channel, st in self.streams.items():
                with trio.fail_after(self.connect_timeout_s):
                    await nursery.start(st.run, name=f"bybit-{channel}")
            task_status.started()

    # -- replay: the same decoders, no socket

    def replay_connected(self, url: str, now: float) -> None:
        self._replay_connected = True

    def replay_disconnected(self, reason: str, now: float) -> None:
        self._replay_connected = False

    def replay_batch(self, texts: list[str], now: float) -> None:
        """Recorded ``ins`` payloads (``<socket> <frame>``) through their socket's decoder
        (stamped, counted, recorded as live), events to the handler; control replies, book
        gaps (the book is reset, as the live stream does before resubscribing) and malformed
        frames give no event."""
        for text in texts:
            socket, _sep, frame = text.partition(" ")
            st = self.streams.get(socket)
            if st is None:
                continue
            for ev in st.decoder.decode(frame):
                if isinstance(ev, BookGap):
                    st.decoder.reset_book(ev.topic)
                elif isinstance(ev, Malformed):
                    st.malformed += 1
                elif not isinstance(ev, OpReply):
                    self.handler(ev)

    def replay_reads(self, items: list[Any], start: int, end: int,
                     before: Callable[[float], None]) -> int:
        """Replay: the recorded reads ``items[start:end]`` (``(kind, batch, wall_ns, texts)``)
        in order, each as :meth:`replay_batch` after ``before(t_ms)`` (replay's timers up to
        the read's receive time); the frames given are returned."""
        n = 0
        for k in range(start, end):
            it = items[k]
            t_ms = it[2] / 1e6
            before(t_ms)
            self.replay_batch(it[3], t_ms / 1000.0)
            n += len(it[3])
        return n


class _StampedStream(trio.abc.Stream):
    """A stream that reports each ``send_all``: ``on_write(issued_ns, returned_ns)``.

    ``issued_ns`` is read just before the inner ``send_all``: Trio tries the kernel write at
    once (no schedule point before it unless cancelled; it waits only on a full socket
    buffer, which a small request on an idle connection never meets), so this is when the
    bytes are written. ``returned_ns`` adds Trio's schedule point after the write, i.e. the
    other tasks that ran meanwhile."""

    def __init__(self, inner: trio.abc.Stream, on_write: Callable[[int, int], None]) -> None:
        self.inner = inner
        self.on_write = on_write

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        issued = time.perf_counter_ns()
        await self.inner.send_all(data)
        self.on_write(issued, time.perf_counter_ns())

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


class TimedHttpClient(HttpClient):
    """:class:`HttpClient` that reports when each request's bytes were written (for the leg
    latency): ``on_sent(body, issued_ns, returned_ns)`` after the socket write, off the
    measured path (see :class:`_StampedStream`)."""

    def __init__(self, base_url: str, timeout_s: float,
                 on_sent: Callable[[bytes, int, int], None]) -> None:
        super().__init__(base_url, timeout_s=timeout_s)
        self.on_sent = on_sent
        self._body = b""

    async def warm(self) -> None:
        """Open the connection now (TCP and TLS), so the first order does not pay for it."""
        async with self._lock:
            if self._stream is None:
                await self._connect()

    async def _connect(self) -> None:
        await super()._connect()
        assert self._stream is not None
        self._stream = _StampedStream(self._stream,
                                      lambda t0, t1: self.on_sent(self._body, t0, t1))

    async def _request(self, method: str, target: str, headers: dict[str, str],
                       body: bytes) -> Any:
        self._body = body  # under the client's lock: one request at a time
        return await super()._request(method, target, headers, body)
