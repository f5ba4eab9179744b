"""ws send path details: the masking-key pool, the flag-based send turn (FIFO, cancellation
while waiting) and ``yield_after=False``. The peer is a wsproto SERVER on a socketpair."""

from __future__ import annotations

import os
import socket

import pytest
import trio
from wsproto.connection import Connection, ConnectionType

from engine.net import ws

from .test_ws_send import pair, read_all, server_messages


def test_masking_keys_over_several_pool_refills() -> None:
    n = 3 * ws._MASK_POOL_BYTES // 4 + 7  # three refills and a bit
    frames = [ws.text_frame(f"m{i}".encode()) for i in range(n)]
    keys = [f[2:6] for f in frames]
    assert server_messages(b"".join(frames)) == [f"m{i}" for i in range(n)]
    # 32-bit random keys: a handful of repeats at most among ~3000
    assert len(set(keys)) > n - 5
    assert all(keys[i] != keys[i + 1] for i in range(n - 1))


def test_dropped_pool_is_refilled() -> None:
    ws.text_frame(b"x")
    ws._drop_mask_pool()
    assert ws._mask_pool == b"" and ws._mask_pos == 0
    assert server_messages(ws.text_frame(b"hello")) == ["hello"]
    assert len(ws._mask_pool) == ws._MASK_POOL_BYTES and ws._mask_pos == 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_reuse_the_parents_keys() -> None:
    ws.text_frame(b"x")  # the pool exists and has unused keys
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(w, ws.text_frame(b"child")[2:6])
        finally:
            os._exit(0)
    os.close(w)
    child_key = os.read(r, 4)
    os.close(r)
    os.waitpid(pid, 0)
    parent_key = ws.text_frame(b"parent")[2:6]  # the key the child would have taken
    assert len(child_key) == 4 and child_key != parent_key


async def test_yield_after_false_returns_without_a_schedule_point() -> None:
    conn, peer = pair()
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with trio.open_nursery() as n:
        n.start_soon(other)
        for _ in range(20):
            await conn.send_texts(["a"], yield_after=False)
        assert ran == []  # no other task ran: nothing yielded
        sent = 0
        while not ran and sent < 40:  # the default yields after the write (Trio picks the
            await conn.send_texts(["b"])  # order of runnable tasks at random)
            sent += 1
        assert ran == ["other"]
    peer.setblocking(False)
    assert server_messages(peer.recv(1 << 16)) == ["a"] * 20 + ["b"] * sent


async def test_a_sender_cancelled_while_waiting_for_its_turn() -> None:
    """A blocked big send holds the turn; a second sender is cancelled while it waits; the turn
    still passes on (a third send goes out) and the cancelled message never does."""
    conn, peer = pair()
    conn._stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # type: ignore[attr-defined]
    big = "x" * 2_000_000
    received: list[bytes] = []
    third_sent = trio.Event()
    async with trio.open_nursery() as n:
        n.start_soon(conn.send_text, big)
        await trio.testing.wait_all_tasks_blocked()
        assert conn._sending
        with trio.move_on_after(0.05) as cs:
            await conn.send_text("cancelled")
        assert cs.cancelled_caught

        async def third() -> None:
            await conn.send_text("third")
            third_sent.set()

        n.start_soon(third)
        await trio.testing.wait_all_tasks_blocked()

        async def reader() -> None:
            received.append(await read_all(peer))

        n.start_soon(reader)
        with trio.fail_after(10):
            await third_sent.wait()
        assert not conn._sending
        await conn._stream.aclose()  # type: ignore[attr-defined]
    assert server_messages(received[0]) == [big, "third"]


async def test_turns_are_fifo() -> None:
    conn, peer = pair()
    conn._stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # type: ignore[attr-defined]
    received: list[bytes] = []
    sent = [trio.Event() for _ in range(10)]

    async def send(i: int) -> None:
        await conn.send_text(f"s{i}")
        sent[i].set()

    async with trio.open_nursery() as n:
        n.start_soon(conn.send_text, "y" * 1_000_000)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(10):
            n.start_soon(send, i)
            await trio.testing.wait_all_tasks_blocked()  # each parks in start order

        async def reader() -> None:
            received.append(await read_all(peer))

        n.start_soon(reader)
        with trio.fail_after(10):
            for ev in sent:
                await ev.wait()
        assert not conn._sending
        await conn._stream.aclose()  # type: ignore[attr-defined]
    assert server_messages(received[0])[1:] == [f"s{i}" for i in range(10)]


async def test_close_waits_for_no_sender() -> None:
    conn, peer = pair()
    await conn.send_text("a")
    assert not conn._sending
    await conn.aclose()
    peer.setblocking(False)
    data = peer.recv(1 << 16)
    srv = Connection(ConnectionType.SERVER)
    srv.receive_data(data)
    kinds = [type(e).__name__ for e in srv.events()]
    assert kinds[-1] == "CloseConnection"
