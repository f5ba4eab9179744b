"""Fixtures for the Hyperliquid adapter tests: a scriptable fake Hyperliquid WS server.

The fake server is an independent implementation (trio-websocket, JSON built by hand here, no
engine codec) listening on 127.0.0.1 on an ephemeral port. Per connection it records what the
client sent and, unless told otherwise, sends the greeting, acks subscriptions and answers
pings; a test can push frames, stop answering, close or drop the connection, and answer posts
in any order.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from engine.config import VenueConfig
from engine.venues.hyperliquid.client import HyperliquidFeed

GREETING = "Websocket connection established."


async def poll_until(pred: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Wait until ``pred()`` holds (polling: the state lives in code under test), or fail."""
    with trio.fail_after(timeout):
        while not pred():  # noqa: ASYNC110 - polling observable state is the point here
            await trio.sleep(0.002)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    return poll_until


class FakeConn:
    """One client connection as seen by the fake server."""

    def __init__(self, ws: WebSocketConnection, server: FakeHL, number: int) -> None:
        self.ws = ws
        self.server = server
        self.number = number
        self.auto_ack = server.auto_ack
        self.auto_pong = server.auto_pong
        self.received: list[Any] = []
        self.subscriptions: list[dict[str, Any]] = []
        self.posts: list[dict[str, Any]] = []
        self.pings = 0
        self.closed = trio.Event()

    async def send(self, msg: Any) -> None:
        await self.ws.send_message(msg if isinstance(msg, str | bytes) else json.dumps(msg))

    async def close(self, code: int = 1000, reason: str = "bye") -> None:
        await self.ws.aclose(code, reason)

    async def drop(self) -> None:
        """Abort the TCP connection without a close frame."""
        await self.ws._stream.aclose()  # noqa: SLF001 - test double reaching into the stream

    async def wait_for(self, pred: Callable[[FakeConn], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await poll_until(lambda: pred(self), timeout)

    async def answer_post(self, post_id: int, response: dict[str, Any]) -> None:
        await self.send({"channel": "post", "data": {"id": post_id, "response": response}})

    async def handle(self, text: str | bytes) -> None:
        msg = json.loads(text)
        self.received.append(msg)
        method = msg.get("method")
        if method == "subscribe":
            self.subscriptions.append(msg["subscription"])
            if self.auto_ack:
                await self.send(
                    {
                        "channel": "subscriptionResponse",
                        "data": {"method": "subscribe", "subscription": msg["subscription"]},
                    }
                )
        elif method == "ping":
            self.pings += 1
            if self.auto_pong:
                await self.send({"channel": "pong"})
        elif method == "post":
            self.posts.append(msg)
            if self.server.post_answer is not None:
                resp = self.server.post_answer(msg)
                if resp is not None:
                    await self.answer_post(msg["id"], resp)


@attrs.define
class FakeHL:
    """The fake server; ``connections`` grows with every client connection."""

    greeting: bool = True
    auto_ack: bool = True
    auto_pong: bool = True
    post_answer: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    port: int = 0
    connections: list[FakeConn] = attrs.Factory(list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def handler(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        conn = FakeConn(ws, self, len(self.connections) + 1)
        self.connections.append(conn)
        try:
            if self.greeting:
                await ws.send_message(GREETING)
            while True:
                await conn.handle(await ws.get_message())
        except ConnectionClosed:
            pass
        finally:
            conn.closed.set()

    async def wait_connections(self, n: int, timeout: float = 5.0) -> FakeConn:  # noqa: ASYNC109
        await poll_until(lambda: len(self.connections) >= n, timeout)
        return self.connections[n - 1]


@pytest.fixture
async def fake_hl(nursery: trio.Nursery) -> AsyncIterator[FakeHL]:
    server = FakeHL()
    ws_server = await nursery.start(serve_websocket, server.handler, "127.0.0.1", 0, None)
    server.port = ws_server.port
    yield server


@attrs.define
class Recorder:
    """A FeedHandler that records every call."""

    calls: list[tuple[Any, ...]] = attrs.Factory(list)
    bbo: list[tuple[Any, ...]] = attrs.Factory(list)
    ctx: list[tuple[Any, ...]] = attrs.Factory(list)
    subscribed: list[tuple[str, str | None]] = attrs.Factory(list)
    disconnected: list[str] = attrs.Factory(list)
    connected: int = 0
    batches: int = 0

    def on_bbo(
        self,
        coin: str,
        time_ms: int,
        bid_px: float | None,
        bid_sz: float | None,
        ask_px: float | None,
        ask_sz: float | None,
    ) -> None:
        self.bbo.append((coin, time_ms, bid_px, bid_sz, ask_px, ask_sz))
        self.calls.append(("bbo", coin))

    def on_ctx(self, coin: str, oracle_px: float, mark_px: float | None) -> None:
        self.ctx.append((coin, oracle_px, mark_px))
        self.calls.append(("ctx", coin))

    def on_connected(self) -> None:
        self.connected += 1
        self.calls.append(("connected",))

    def on_disconnected(self, reason: str) -> None:
        self.disconnected.append(reason)
        self.calls.append(("disconnected", reason))

    def on_subscribed(self, sub_type: str, coin: str | None) -> None:
        self.subscribed.append((sub_type, coin))

    def on_batch_end(self) -> None:
        self.batches += 1


FAST = dict(
    connect_timeout_s=2.0,
    ping_idle_s=30.0,
    pong_timeout_s=30.0,
    reconnect_base_s=0.01,
    reconnect_max_s=0.05,
    reconnect_jitter_s=0.0,
    ctx_stale_ms=0.0,
    bbo_stale_ms=0.0,
    stale_reconnect_min_interval_s=0.0,
    post_timeout_s=2.0,
)


@pytest.fixture
def make_feed(
    nursery: trio.Nursery, fake_hl: FakeHL
) -> Callable[..., tuple[HyperliquidFeed, Recorder]]:
    """``make_feed(coins, start=True, **cfg_overrides)`` → (feed, recorder), running."""

    def make(
        coins: list[str],
        *,
        start: bool = True,
        feed_kwargs: dict[str, Any] | None = None,
        **over: Any,
    ) -> tuple[HyperliquidFeed, Recorder]:
        cfg = VenueConfig(**{"ws_url": fake_hl.url, **FAST, **over})
        rec = Recorder()
        feed = HyperliquidFeed(cfg, coins, rec, **(feed_kwargs or {}))
        if start:
            nursery.start_soon(feed.run)
        return feed, rec

    return make


def bbo_frame(
    coin: str,
    bid: tuple[str, str] | None,
    ask: tuple[str, str] | None,
    time_ms: int = 1769594065851,
) -> dict[str, Any]:
    def side(s: tuple[str, str] | None) -> dict[str, Any] | None:
        return None if s is None else {"px": s[0], "sz": s[1], "n": 1}

    return {
        "channel": "bbo",
        "data": {"coin": coin, "time": time_ms, "bbo": [side(bid), side(ask)]},
    }


def ctx_frame(
    coin: str, oracle: str, mark: str | None = "1.0", mid: str | None = None
) -> dict[str, Any]:
    return {
        "channel": "activeAssetCtx",
        "data": {
            "coin": coin,
            "ctx": {
                "funding": "0.0000125",
                "openInterest": "1234.5",
                "prevDayPx": "110.1",
                "dayNtlVlm": "2500000.0",
                "premium": None,
                "oraclePx": oracle,
                "markPx": mark,
                "midPx": mid,
                "impactPxs": None,
                "dayBaseVlm": "22000.0",
            },
        },
    }


@pytest.fixture
def frames() -> Any:
    """Frame builders: ``frames.bbo(...)``, ``frames.ctx(...)``."""

    class _F:
        bbo = staticmethod(bbo_frame)
        ctx = staticmethod(ctx_frame)

    return _F
