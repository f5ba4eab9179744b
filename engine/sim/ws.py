"""One server-side WebSocket connection: wsproto for the handshake and incoming frames, an outbox
drained by a single writer (all outgoing frames are coalesced into one ``send_all``), protocol
Ping/Pong, close handshakes, the 60 s server-silence idle close and abrupt drops (TCP RST).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from wsproto import WSConnection
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from engine.sim.frames import GREETING, text_frame

log = logging.getLogger("engine.sim.ws")

_RECV_BYTES = 65536


class WsSession:
    """A connected WebSocket client. ``subs`` is owned by the hub; frames go through ``send_*``."""

    def __init__(
        self,
        conn_id: int,
        stream: trio.SocketStream,
        ws: WSConnection,
        on_text: Callable[[WsSession, str], None],
        counters: Counter[str],
        idle_timeout_s: float = 60.0,
        max_outbox_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.conn_id = conn_id
        self.subs: dict[tuple[Any, ...], Any] = {}
        self.closed = False
        self.dropped = False
        self.bytes_sent = 0
        self.frames_queued = 0
        self.inflight_posts = 0  # action posts accepted and not yet answered
        self._stream = stream
        self._ws = ws
        self._on_text = on_text
        self._counters = counters
        self._idle_timeout_s = idle_timeout_s
        self._max_outbox = max_outbox_bytes
        self._chunks: list[bytes] = []
        self._pending = 0
        self._wake = trio.Event()
        self._closing = False
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._text_parts: list[str] = []
        self.last_sent = trio.current_time()

    # ------------------------------------------------------------------ sending

    @property
    def pending_bytes(self) -> int:
        return self._pending

    def send_frame(self, frame: bytes) -> None:
        """Queue an already-framed message (see frames.text_frame)."""
        if self._closing or self.closed or self.dropped:
            return
        self._chunks.append(frame)
        self._pending += len(frame)
        self.frames_queued += 1
        if self._pending > self._max_outbox:
            log.warning(
                "ws %d: outbox above %d bytes, dropping slow client", self.conn_id, self._max_outbox
            )
            self._counters["slow_client_drops"] += 1
            self._chunks = []
            self._pending = 0
            self.drop()
            return
        self._wake.set()

    def send_payload(self, payload: bytes, channel: str) -> None:
        """Queue one JSON text message and count it under ``channel``."""
        if self._closing or self.closed or self.dropped:
            return
        self._counters[channel] += 1
        self.send_frame(text_frame(payload))

    def send_later(self, delay_s: float, payload: bytes, channel: str) -> None:
        """Queue ``payload`` after ``delay_s`` seconds (used by the slow-ack fault)."""
        if self._nursery is None:
            self.send_payload(payload, channel)
            return

        async def later() -> None:
            await trio.sleep(delay_s)
            self.send_payload(payload, channel)

        self._nursery.start_soon(later)

    def spawn(self, fn: Callable[..., Awaitable[object]], *args: Any) -> bool:
        """Run ``fn(*args)`` for as long as the connection lives; False when it is closed."""
        if self._nursery is None or self.closed or self.dropped:
            return False
        self._nursery.start_soon(fn, *args)
        return True

    def _send_raw(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)
            self._pending += len(data)
            self._wake.set()

    def begin_close(self, code: int = 1000, reason: str = "") -> None:
        """Send a Close frame, flush, then close the TCP stream."""
        if self._closing or self.closed:
            return
        with contextlib.suppress(LocalProtocolError):
            self._send_raw(self._ws.send(CloseConnection(code=code, reason=reason)))
        self._closing = True
        self._wake.set()
        if self._scope is not None:
            self._scope.deadline = min(self._scope.deadline, trio.current_time() + 2.0)

    def drop(self) -> None:
        """Abruptly reset the TCP connection (no Close frame)."""
        if self.closed:
            return
        self.dropped = True
        if self._scope is not None:
            self._scope.cancel()

    # ------------------------------------------------------------------ lifecycle

    async def run(self, handshake: bytes, trailing: bytes, greeting: bool = True) -> None:
        """Serve the connection until it closes; ``handshake`` is the 101 response to send."""
        self._send_raw(handshake)
        if greeting:
            self._counters["greeting"] += 1
            self.send_frame(text_frame(GREETING))
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                if self.dropped:
                    scope.cancel()
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._writer)
                    nursery.start_soon(self._idle_watchdog)
                    if trailing:
                        self._feed(trailing)
                    await self._reader()
        finally:
            self.closed = True
            self._nursery = None
            if self.dropped:
                with contextlib.suppress(OSError):
                    self._stream.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
            await trio.aclose_forcefully(self._stream)

    async def _reader(self) -> None:
        while not self._closing:
            try:
                data = await self._stream.receive_some(_RECV_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._abort()
                return
            self._feed(data)
        await trio.sleep_forever()  # the writer flushes the close and ends the session

    def _feed(self, data: bytes) -> None:
        try:
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, TextMessage):
                    self._text_parts.append(event.data)
                    if event.message_finished:
                        text = "".join(self._text_parts)
                        self._text_parts.clear()
                        self._on_text(self, text)
                elif isinstance(event, BytesMessage):
                    if event.message_finished:
                        self._on_text(self, bytes(event.data).decode("utf-8", "replace"))
                elif isinstance(event, Ping):
                    self._send_raw(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    with contextlib.suppress(LocalProtocolError):
                        self._send_raw(self._ws.send(event.response()))
                    self._closing = True
                    self._wake.set()
                    return
        except (RemoteProtocolError, LocalProtocolError) as exc:
            log.info("ws %d: protocol error: %s", self.conn_id, exc)
            self._abort()

    def _abort(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _writer(self) -> None:
        stream = self._stream
        while True:
            if not self._chunks:
                if self._closing:
                    self._abort()
                    return
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            self._chunks = []
            self._pending = 0
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._abort()
                return
            self.bytes_sent += len(data)
            self.last_sent = trio.current_time()

    async def _idle_watchdog(self) -> None:
        while True:
            deadline = self.last_sent + self._idle_timeout_s
            if trio.current_time() >= deadline and not self._chunks:
                log.info(
                    "ws %d: %.0f s without server traffic, closing",
                    self.conn_id,
                    self._idle_timeout_s,
                )
                self._counters["idle_closes"] += 1
                self.begin_close(1000, "idle timeout")
                return
            await trio.sleep_until(max(deadline, trio.current_time() + 0.001))
