"""Server-sent events fan-out with bounded memory per client (the dashboard's live stream).

The publisher (one task) hands frames to :class:`SseHub`; each browser connection owns an
:class:`SseClient` and sends from its own task. Publishing never waits and never grows without
bound: a client has one *snapshot* slot (a newer snapshot replaces an unsent one, counted as
``coalesced``) and a bounded queue of *events* (beyond ``max_queued_events`` the oldest is
dropped, counted as ``dropped``; the client is told how many in a ``dropped`` event). A client
that does not read only fills its own queue; its connection task gives up after the server's
send timeout and :meth:`SseHub.unsubscribe` forgets it. At most ``max_clients`` are connected.

Framing follows the HTML standard's ``text/event-stream``: ``event: NAME`` and one ``data:``
line (JSON has no raw newlines), a blank line ending the frame; lines starting with ``:`` are
comments (keep-alives).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final

import attrs
import msgspec
import trio

from engine.deadline import DeadlineSleeper

CONTENT_TYPE: Final = "text/event-stream; charset=utf-8"
RETRY_MS: Final = 2000
KEEPALIVE: Final = b": keep-alive\n\n"

_encoder = msgspec.json.Encoder()


def sse_frame(event: str, data: Any) -> bytes:
    """One ``text/event-stream`` frame: ``event: <event>``, the JSON of ``data``, blank line."""
    if not event or any(c in event for c in "\r\n:"):
        raise ValueError(f"bad SSE event name {event!r}")
    return b"event: " + event.encode() + b"\ndata: " + _encoder.encode(data) + b"\n\n"


@attrs.define
class SseStats:
    """Hub counters (shown in the dashboard and ``/status``)."""

    connected: int = 0
    refused: int = 0  # over max_clients
    disconnected: int = 0
    dropped: int = 0  # events dropped from full client queues
    coalesced: int = 0  # snapshots replaced before they were sent


class SseClient:
    """One connection's pending frames (see the module docstring)."""

    def __init__(self, hub: SseHub, max_queued_events: int) -> None:
        self._hub = hub
        self._max = max_queued_events
        self.events: deque[bytes] = deque()
        self.snapshot: bytes | None = None
        self.dropped = 0
        self._dropped_told = 0
        self.coalesced = 0
        self.sent_frames = 0
        self._sleeper = DeadlineSleeper()

    @property
    def pending(self) -> int:
        return len(self.events) + (self.snapshot is not None)

    def offer_event(self, frame: bytes) -> None:
        if len(self.events) >= self._max:
            self.events.popleft()
            self.dropped += 1
            self._hub.stats.dropped += 1
        self.events.append(frame)
        self._sleeper.wake()

    def offer_snapshot(self, frame: bytes) -> None:
        if self.snapshot is not None:
            self.coalesced += 1
            self._hub.stats.coalesced += 1
        self.snapshot = frame
        self._sleeper.wake()

    def take(self) -> bytes:
        """Everything pending as one chunk (events in order, then the snapshot), or b""."""
        parts: list[bytes] = []
        if self.dropped != self._dropped_told:
            parts.append(sse_frame("dropped", {"dropped": self.dropped}))
            self._dropped_told = self.dropped
        parts.extend(self.events)
        self.events.clear()
        if self.snapshot is not None:
            parts.append(self.snapshot)
            self.snapshot = None
        self.sent_frames += len(parts)
        return b"".join(parts)

    async def next_chunk(self, keepalive_s: float) -> bytes:
        """Wait for pending frames (at most ``keepalive_s``; then a keep-alive comment)."""
        deadline = trio.current_time() + keepalive_s
        while not self.pending and self.dropped == self._dropped_told:
            if not await self._sleeper.sleep_until(deadline):
                break  # the keep-alive is due
        chunk = self.take()
        return chunk or KEEPALIVE


class SseHub:
    """The set of connected clients; publishing is synchronous and never blocks."""

    def __init__(self, *, max_clients: int = 8, max_queued_events: int = 256,
                 greeting: Callable[[], list[bytes]] | None = None) -> None:
        if max_clients <= 0 or max_queued_events <= 0:
            raise ValueError("max_clients and max_queued_events must be > 0")
        self.max_clients = max_clients
        self.max_queued_events = max_queued_events
        self.clients: set[SseClient] = set()
        self.stats = SseStats()
        self._greeting = greeting

    def subscribe(self) -> SseClient | None:
        """A new client (seeded with the greeting frames), or None when ``max_clients`` are
        already connected."""
        if len(self.clients) >= self.max_clients:
            self.stats.refused += 1
            return None
        client = SseClient(self, self.max_queued_events)
        if self._greeting is not None:
            for frame in self._greeting():
                client.offer_event(frame)
        self.clients.add(client)
        self.stats.connected = len(self.clients)
        return client

    def unsubscribe(self, client: SseClient) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self.stats.disconnected += 1
        self.stats.connected = len(self.clients)

    def publish_event(self, frame: bytes) -> None:
        for c in self.clients:
            c.offer_event(frame)

    def publish_snapshot(self, frame: bytes) -> None:
        for c in self.clients:
            c.offer_snapshot(frame)

    def stats_doc(self) -> dict[str, int]:
        return attrs.asdict(self.stats) | {"max_clients": self.max_clients,
                                           "max_queued_events": self.max_queued_events}
