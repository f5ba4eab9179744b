"""ws receive on plain TCP: one checkpoint and a direct ``os.read`` per read. Frames split at
every byte boundary still come out whole; EOF, a reset, a close from another task and a cancel
end the wait cleanly. The peer is the other end of a socketpair, written byte by byte."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from engine.net import ws

from .conftest import server_frame, ws_pair


def test_plain_tcp_uses_the_direct_read() -> None:
    conn, peer = ws_pair()
    assert conn._sock is not None  # the path under test
    peer.close()


@pytest.mark.parametrize("fast", [True, False], ids=["fast_path", "wsproto_only"])
async def test_frames_split_at_every_byte_arrive_whole(fast: bool) -> None:
    conn, peer = ws_pair(fast_path=fast)
    texts = ["a", "x" * 200, '{"channel":"bbo"}', "é" * 70]
    data = b"".join(server_frame(t) for t in texts)
    got: list[str] = []

    async def writer() -> None:
        for i in range(len(data)):
            peer.send(data[i : i + 1])
            await trio.testing.wait_all_tasks_blocked()  # the reader took it and waits again

    reads = 0
    async with trio.open_nursery() as n:
        n.start_soon(writer)
        with trio.fail_after(10):
            while len(got) < len(texts):
                got += await conn.receive_batch()
                reads += 1
    assert got == texts
    assert reads == len(data)  # one read per byte: every partial frame was seen
    peer.close()


async def test_eof_is_a_lost_connection() -> None:
    conn, peer = ws_pair()
    peer.sendall(server_frame("last"))
    peer.shutdown(socket.SHUT_WR)
    assert await conn.receive_batch() == ["last"]
    with pytest.raises(ws.ConnectionClosed) as ei:
        with trio.fail_after(5):
            await conn.receive_batch()
    assert ei.value.code == 1006
    peer.close()


async def test_reset_is_a_lost_connection() -> None:
    conn, peer = ws_pair()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()
    with pytest.raises(ws.ConnectionClosed) as ei:
        with trio.fail_after(5):
            await conn.receive_batch()
    assert ei.value.code == 1006


async def test_closing_the_stream_wakes_a_waiting_reader() -> None:
    conn, peer = ws_pair()
    errors: list[BaseException] = []

    async def reader() -> None:
        try:
            await conn.receive_batch()
        except ws.ConnectionClosed as exc:
            errors.append(exc)

    async with trio.open_nursery() as n:
        n.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(5):
            await trio.aclose_forcefully(conn._stream)
    assert errors and isinstance(errors[0], ws.ConnectionClosed)
    peer.close()


async def test_cancel_while_waiting() -> None:
    conn, peer = ws_pair()
    with trio.move_on_after(0.05) as cs:
        await conn.receive_batch()
    assert cs.cancelled_caught
    peer.sendall(server_frame("after"))  # the connection is still usable
    with trio.fail_after(5):
        assert await conn.receive_batch() == ["after"]
    peer.close()


async def test_a_read_with_data_waiting_is_still_a_checkpoint() -> None:
    conn, peer = ws_pair()
    peer.sendall(server_frame("ready"))
    ran: list[int] = []

    async def other() -> None:
        ran.append(1)

    with trio.CancelScope() as cs:
        cs.cancel()
        with pytest.raises(trio.Cancelled):
            await conn.receive_batch()  # cancelled at its checkpoint, nothing consumed
    async with trio.open_nursery() as n:
        n.start_soon(other)
        assert await conn.receive_batch() == ["ready"]
    assert ran == [1]
    peer.close()
