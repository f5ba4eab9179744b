"""One Bybit v5 WebSocket (public spot, public linear, or private) on Trio: connect, ``auth``
(private), subscribe in frames of at most 10 topics with a ``req_id`` each, ``{"op":"ping"}``
every ``ping_interval_s`` and a reconnect when no pong (or any frame) arrives within
``pong_timeout_s``, and reconnect with exponential back-off that resubscribes every topic.

Decoded items go to ``on_event`` (neutral events from :mod:`.codec`) as they arrive. A book gap
(:class:`~.codec.BookGap`) resubscribes that topic; a :class:`~.codec.Malformed` message is
logged (one line) and counted; a refused subscription is logged. A refused ``auth`` raises
:class:`BybitAuthError` out of :meth:`BybitStream.run` (wrong keys do not heal by retrying).
"""

from __future__ import annotations

import itertools
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from engine.backoff import backoff_delay
from engine.venues.bybit.codec import BookGap, BybitDecoder, Malformed, OpReply
from engine.venues.bybit.signing import BybitCredentials

log = logging.getLogger("engine.venues.bybit.ws")

SUBSCRIBE_CHUNK = 10


class BybitAuthError(Exception):
    """The private socket refused our ``auth``: check the API key pair and the host clock."""


class BybitStream:
    """A reconnecting Bybit socket. ``clock`` gives epoch ms (for ``auth`` expiry)."""

    def __init__(
        self,
        url: str,
        topics: Iterable[str],
        decoder: BybitDecoder,
        on_event: Callable[[Any], None],
        clock: Callable[[], float],
        credentials: BybitCredentials | None = None,
        ping_interval_s: float = 20.0,
        pong_timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
        reconnect_base_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        auth_expire_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.topics: list[str] = list(dict.fromkeys(topics))
        self.decoder = decoder
        self.on_event = on_event
        self.clock = clock
        self.credentials = credentials
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_base_s = reconnect_base_s
        self.reconnect_max_s = reconnect_max_s
        self.auth_expire_s = auth_expire_s
        self._ssl = ssl_context
        self._ws: WebSocketConnection | None = None
        self._req = itertools.count(1)
        self.connects = 0
        self.malformed = 0
        self.resubscribes = 0
        self.subscribe_failures: list[str] = []
        self.connected = trio.Event()
        self._last_rx = 0.0

    def _next_req(self) -> str:
        return f"r{next(self._req)}"

    async def _send(self, ws: WebSocketConnection, obj: dict[str, Any]) -> None:
        await ws.send_message(msgspec.json.encode(obj).decode())

    async def subscribe(self, topics: Iterable[str]) -> None:
        """Add topics (sent now when connected, and after every reconnect)."""
        new = [t for t in topics if t not in self.topics]
        self.topics.extend(new)
        ws = self._ws
        if ws is not None and new:
            await self._subscribe(ws, new)

    async def _subscribe(self, ws: WebSocketConnection, topics: list[str]) -> None:
        for i in range(0, len(topics), SUBSCRIBE_CHUNK):
            await self._send(ws, {"req_id": self._next_req(), "op": "subscribe",
                                  "args": topics[i:i + SUBSCRIBE_CHUNK]})

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the socket up forever (until cancelled); started once the first connection
        is subscribed."""
        attempt = 0
        started = False
        while True:
            try:
                async with open_websocket_url(
                    self.url, ssl_context=self._ssl, connect_timeout=self.connect_timeout_s,
                    disconnect_timeout=2.0,
                ) as ws:
                    self.connects += 1
                    if self.credentials is not None:
                        await self._auth(ws)
                    self._ws = ws
                    if self.topics:
                        await self._subscribe(ws, list(self.topics))
                    attempt = 0
                    self.connected.set()
                    if not started:
                        started = True
                        task_status.started()
                    await self._serve(ws)
            except (ConnectionClosed, HandshakeError, OSError, trio.TooSlowError) as exc:
                log.warning("bybit ws %s: %s: %s", self.url, type(exc).__name__, exc)
            finally:
                self._ws = None
                self.connected = trio.Event()
            delay = backoff_delay(attempt, self.reconnect_base_s, self.reconnect_max_s,
                                  self.reconnect_base_s)
            attempt += 1
            log.info("bybit ws %s: reconnecting in %.2f s (attempt %d)", self.url, delay, attempt)
            await trio.sleep(delay)

    async def _auth(self, ws: WebSocketConnection) -> None:
        assert self.credentials is not None
        expires = int(self.clock() + self.auth_expire_s * 1000)
        req = self._next_req()
        await self._send(ws, {"req_id": req, "op": "auth",
                              "args": self.credentials.ws_auth_args(expires)})
        with trio.fail_after(self.connect_timeout_s):
            while True:
                for item in self.decoder.decode(await ws.get_message()):
                    if isinstance(item, OpReply) and item.op == "auth":
                        if not item.success:
                            raise BybitAuthError(
                                f"Bybit refused auth on {self.url}: {item.ret_msg or 'no reason'}"
                                " (check the API key pair, its permissions, and the host clock)"
                            )
                        return

    async def _serve(self, ws: WebSocketConnection) -> None:
        """Read until the socket closes (raised as ConnectionClosed, not wrapped in a group) or
        the pinger gives up on a pong (returns)."""
        self._last_rx = trio.current_time()
        closed: ConnectionClosed | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pinger, ws, nursery.cancel_scope)
            try:
                while True:
                    msg = await ws.get_message()
                    self._last_rx = trio.current_time()
                    for item in self.decoder.decode(msg):
                        await self._handle(ws, item)
            except ConnectionClosed as exc:
                closed = exc
                nursery.cancel_scope.cancel()
        if closed is not None:
            raise closed

    async def _handle(self, ws: WebSocketConnection, item: Any) -> None:
        if isinstance(item, OpReply):
            if not item.success:
                self.subscribe_failures.append(item.ret_msg)
                log.error("bybit ws %s: %s refused: %s", self.url, item.op, item.ret_msg)
            return
        if isinstance(item, BookGap):
            self.resubscribes += 1
            log.warning("bybit ws %s: %s update id %d after %d; resubscribing", self.url,
                        item.topic, item.got_u, item.last_u)
            self.decoder.reset_book(item.topic)
            await self._send(ws, {"req_id": self._next_req(), "op": "unsubscribe",
                                  "args": [item.topic]})
            await self._send(ws, {"req_id": self._next_req(), "op": "subscribe",
                                  "args": [item.topic]})
            return
        if isinstance(item, Malformed):
            self.malformed += 1
            log.warning("bybit ws %s: unusable message (%s): %s", self.url, item.reason,
                        item.sample)
            return
        self.on_event(item)

    async def _pinger(self, ws: WebSocketConnection, scope: trio.CancelScope) -> None:
        try:
            await self._ping_loop(ws, scope)
        except ConnectionClosed:
            scope.cancel()  # the reader sees the close too; reconnect either way

    async def _ping_loop(self, ws: WebSocketConnection, scope: trio.CancelScope) -> None:
        next_ping = trio.current_time() + self.ping_interval_s
        while True:
            await trio.sleep_until(next_ping)
            sent = trio.current_time()
            next_ping = sent + self.ping_interval_s
            await self._send(ws, {"req_id": self._next_req(), "op": "ping"})
            await trio.sleep(min(self.pong_timeout_s, self.ping_interval_s))
            if self._last_rx < sent:
                log.warning("bybit ws %s: no pong within %.1f s; reconnecting", self.url,
                            self.pong_timeout_s)
                await ws.aclose()
                scope.cancel()
                return
