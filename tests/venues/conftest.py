"""Fixtures for the Hyperliquid adapter tests: a scriptable fake Hyperliquid WS server.

The fake server is an independent implementation (trio-websocket, JSON built by hand here, no
engine codec) listening on 127.0.0.1 on an ephemeral port. Per connection it records what the
client sent and, unless told otherwise, sends the greeting, acks subscriptions (all, or those
``ack_filter`` accepts) and answers pings; a test can push frames, stop answering, close or drop
the connection, and answer posts in any order.

:class:`ScriptedConn` is an in-memory stand-in for ``ws.WsConnection`` (pass
``connector=scripted.connect`` to the feed): the test decides exactly which frames one
``receive_batch`` returns and what a send does (fail before/while writing, yield mid-write),
for ordering properties a real socket cannot pin down.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket
from wsproto.connection import Connection, ConnectionType

from engine.config import VenueConfig
from engine.net import ws
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

    async def ack(self, sub: dict[str, Any], method: str = "subscribe") -> None:
        await self.send(
            {"channel": "subscriptionResponse", "data": {"method": method, "subscription": sub}}
        )

    async def handle(self, text: str | bytes) -> None:
        msg = json.loads(text)
        self.received.append(msg)
        method = msg.get("method")
        if method == "subscribe":
            self.subscriptions.append(msg["subscription"])
            flt = self.server.ack_filter
            if self.auto_ack and (flt is None or flt(msg["subscription"])):
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
    ack_filter: Callable[[dict[str, Any]], bool] | None = None
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


@attrs.define
class UserRecorder(Recorder):
    """A Recorder that also implements the optional user-stream methods."""

    order_updates: list[list[Any]] = attrs.Factory(list)
    user_fills: list[tuple[list[Any], bool]] = attrs.Factory(list)
    user_acked: list[bool] = attrs.Factory(list)

    def on_order_updates(self, updates: list[Any]) -> None:
        self.order_updates.append(updates)
        self.calls.append(("order_updates", len(updates)))

    def on_user_fills(self, fills: list[Any], is_snapshot: bool) -> None:
        self.user_fills.append((fills, is_snapshot))
        self.calls.append(("user_fills", len(fills), is_snapshot))

    def on_user_channels_acked(self, acked: bool) -> None:
        self.user_acked.append(acked)
        self.calls.append(("user_acked", acked))


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
        handler: Any = None,
        **over: Any,
    ) -> tuple[HyperliquidFeed, Any]:
        cfg = VenueConfig(**{"ws_url": fake_hl.url, **FAST, **over})
        rec = handler if handler is not None else Recorder()
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


def order_update(
    cloid: str | None = "0x0de3e244a8f44fc28a6b7bc852d66d19",
    status: str = "filled",
    *,
    coin: str = "xyz:SILVER",
    sz: str = "0.0",
    orig_sz: str = "0.2",
    oid: int = 302228651101,
    side: str = "B",
) -> dict[str, Any]:
    """One WsOrder element of an ``orderUpdates`` array (shape of docs/reference/hyperliquid-protocol.md §3.5)."""
    order: dict[str, Any] = {
        "coin": coin,
        "side": side,
        "limitPx": "105",
        "sz": sz,
        "oid": oid,
        "timestamp": 1769339470600,
        "origSz": orig_sz,
    }
    if cloid is not None:
        order["cloid"] = cloid
    return {"order": order, "status": status, "statusTimestamp": 1769339470600}


def user_fill(tid: int = 694586448408875, **over: Any) -> dict[str, Any]:
    """One fill as recorded by the predecessor (docs/reference/hyperliquid-protocol.md §3.6), with overrides."""
    fill: dict[str, Any] = {
        "coin": "xyz:SILVER",
        "px": "112.89",
        "sz": "2.7",
        "side": "B",
        "time": 1769594065851,
        "startPosition": "-6.66",
        "dir": "Close Short",
        "closedPnl": "-0.02673",
        "hash": "0x403b2645eccc82d441b4043434c1a3020115002b87cfa1a6e403d198abc05cbe",
        "oid": 304587174168,
        "crossed": True,
        "fee": "0.023317",
        "tid": tid,
        "cloid": "0xd2ed5e997c5a4cb9946d84c35f0b737c",
        "feeToken": "USDC",
        "twapId": None,
    }
    fill.update(over)
    return fill


def action_ok(statuses: list[Any], kind: str = "order") -> dict[str, Any]:
    return {
        "type": "action",
        "payload": {"status": "ok", "response": {"type": kind, "data": {"statuses": statuses}}},
    }


def action_err(message: str) -> dict[str, Any]:
    return {"type": "action", "payload": {"status": "err", "response": message}}


def info_answer(info_type: str, data: Any) -> dict[str, Any]:
    return {"type": "info", "payload": {"type": info_type, "data": data}}


class ScriptedConn:
    """In-memory ``ws.WsConnection`` stand-in: frames in via :meth:`push`, sends recorded.

    ``send_hook(texts)`` (async) runs inside every ``send_texts`` before it returns; it may
    raise ``ws.NothingSent`` / ``ws.ConnectionClosed`` or push answers and sleep, to model a
    write that is still in progress when the answer is read.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent: list[str] = []
        self.writes = 0
        self.send_hook: Callable[[list[str]], Awaitable[None]] | None = None
        self._send, self._recv = trio.open_memory_channel[list[str] | None](1000)
        self.closed = False

    @property
    def is_open(self) -> bool:
        return not self.closed

    def push(self, *frames: Any) -> None:
        """Make the next ``receive_batch`` return these frames (dicts are JSON-encoded)."""
        texts = [f if isinstance(f, str) else json.dumps(f) for f in frames]
        self._send.send_nowait(texts)

    def eof(self) -> None:
        self._send.send_nowait(None)

    async def receive_batch(self) -> list[str]:
        batch = await self._recv.receive()
        if batch is None:
            self.closed = True
            raise ws.ConnectionClosed(1006, "connection lost (EOF)")
        return batch

    async def send_text(self, text: str) -> None:
        await self.send_texts([text])

    async def send_texts(self, texts: list[str]) -> None:
        if self.closed:
            raise ws.NothingSent(1006, "closed")
        if self.send_hook is not None:
            await self.send_hook(texts)
        self.sent.extend(texts)
        self.writes += 1
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed = True

    def posts(self) -> list[dict[str, Any]]:
        return [m for m in map(json.loads, self.sent) if m.get("method") == "post"]


class Scripted:
    """A connector handing out :class:`ScriptedConn` objects (``conns`` grows per connect)."""

    def __init__(self) -> None:
        self.conns: list[ScriptedConn] = []

    async def connect(self, url: str, timeout: float) -> ScriptedConn:  # noqa: ASYNC109
        conn = ScriptedConn(url)
        self.conns.append(conn)
        await trio.lowlevel.checkpoint()
        return conn


def ws_pair(**kw: object) -> tuple[ws.WsConnection, socket.socket]:
    """A client ``WsConnection`` on one end of a socketpair (no handshake); the other end is
    the test's raw peer."""
    a, b = socket.socketpair()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(a))
    conn = ws.WsConnection(stream, Connection(ConnectionType.CLIENT), "ws://pair/ws", **kw)  # type: ignore[arg-type]
    return conn, b


def server_frame(text: str) -> bytes:
    """An unmasked server text frame."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for ``localhost`` (openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
