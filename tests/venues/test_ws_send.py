"""The send side of ws.WsConnection: our text framing, the direct-write fast path, and the
"nothing sent" vs "maybe sent" distinction. The peer is always a wsproto SERVER connection
(an independent parser) on the other end of a socketpair."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from engine.net import ws


def server_messages(data: bytes) -> list[str]:
    """Parse client bytes as a server would (masking enforced by wsproto)."""
    srv = Connection(ConnectionType.SERVER)
    srv.receive_data(data)
    out: list[str] = []
    parts: list[str] = []
    for ev in srv.events():
        assert isinstance(ev, TextMessage), ev
        parts.append(ev.data)
        if ev.message_finished:
            out.append("".join(parts))
            parts.clear()
    return out


@given(st.text(max_size=300) | st.sampled_from(["", "x" * 125, "x" * 126, "é" * 40000]))
@settings(max_examples=300, deadline=None)
def test_text_frame_parses_like_wsproto(s: str) -> None:
    frame = ws.text_frame(s.encode())
    assert server_messages(frame) == [s]
    assert frame[1] & 0x80  # masked, as a client must


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 70000])
def test_text_frame_length_encodings(n: int) -> None:
    s = "a" * n
    assert server_messages(ws.text_frame(s.encode())) == [s]


def test_masking_keys_differ() -> None:
    keys = {ws.text_frame(b"abc")[2:6] for _ in range(50)}
    assert len(keys) > 40


def pair(**kw: Any) -> tuple[ws.WsConnection, socket.socket]:
    a, b = socket.socketpair()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(a))
    conn = ws.WsConnection(stream, Connection(ConnectionType.CLIENT), "ws://pair/ws", **kw)
    return conn, b


async def read_all(peer: socket.socket, nbytes_hint: int = 1 << 16) -> bytes:
    tsock = trio.socket.from_stdlib_socket(peer)
    chunks = []
    while True:
        data = await tsock.recv(nbytes_hint)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


@pytest.mark.parametrize("fast", [True, False], ids=["fast_path", "wsproto_only"])
async def test_big_sends_partially_written_then_completed(fast: bool) -> None:
    """A 3 MB message does not fit the socket buffer: the direct write takes what it can and
    send_all finishes; concurrent senders never interleave frames."""
    conn, peer = pair(fast_path=fast)
    conn._stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # type: ignore[attr-defined]
    big = "é" * 1_500_000
    small = [f"msg-{i}" for i in range(20)]
    received: list[bytes] = []

    async def reader() -> None:
        received.append(await read_all(peer))

    async with trio.open_nursery() as n:
        n.start_soon(reader)
        async with trio.open_nursery() as senders:
            senders.start_soon(conn.send_text, big)
            for s in small:
                senders.start_soon(conn.send_text, s)
        await conn._stream.aclose()  # type: ignore[attr-defined]
    msgs = server_messages(received[0])
    assert sorted(msgs) == sorted([big, *small])


async def test_send_texts_one_write_many_frames() -> None:
    conn, peer = pair()
    await conn.send_texts(["a", "bb", "ccc"])
    peer.setblocking(False)
    assert server_messages(peer.recv(1 << 16)) == ["a", "bb", "ccc"]


async def test_nothing_sent_after_local_close() -> None:
    conn, peer = pair()
    await conn.aclose()
    with pytest.raises(ws.NothingSent):
        await conn.send_text("late")
    with pytest.raises(ws.ConnectionClosed):  # still a ConnectionClosed for older callers
        await conn.send_texts(["late"])


async def test_nothing_sent_once_the_server_started_closing() -> None:
    conn, peer = pair()
    # the server's close frame arrives; wsproto is now REMOTE_CLOSING: no message may go out
    close = Connection(ConnectionType.SERVER).send(CloseConnection(code=1000))
    conn._proto.receive_data(close)
    list(conn._proto.events())
    with pytest.raises(ws.NothingSent, match="REMOTE_CLOSING"):
        await conn.send_text("x")


async def test_peer_gone_direct_write_refused_is_nothing_sent() -> None:
    """The direct write is all or nothing per call: a refused write took none of the bytes."""
    conn, peer = pair()
    peer.close()
    with pytest.raises(ws.ConnectionClosed) as ei:
        for _ in range(50):  # the first writes may still be accepted by the kernel
            await conn.send_text("x" * 1000)
    assert isinstance(ei.value, ws.NothingSent) and "send failed" in ei.value.reason
    with pytest.raises(ws.NothingSent):
        await conn.send_text("after")


async def test_failure_after_a_partial_write_is_maybe_sent() -> None:
    """Once part of a message was taken, a failure is a plain ConnectionClosed (maybe sent)."""
    conn, peer = pair()
    conn._stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # type: ignore[attr-defined]

    async def close_peer_soon() -> None:
        await trio.sleep(0.05)
        peer.close()

    async with trio.open_nursery() as n:
        n.start_soon(close_peer_soon)
        with pytest.raises(ws.ConnectionClosed) as ei:
            await conn.send_text("y" * 2_000_000)  # partly written, the rest never fits
    assert not isinstance(ei.value, ws.NothingSent)
