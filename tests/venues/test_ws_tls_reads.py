"""ws reads over TLS: one read returns every message whose TLS record is already complete in
the buffers (a venue writing one record per message still gives the feed whole batches), never
waits for a record that is only partly there, and busy-polls while a record is incomplete.

The server is a raw ``ssl.SSLObject`` over memory BIOs on one end of a socketpair, so the test
decides exactly which TLS records reach the client's socket, and when."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import trio
from wsproto.connection import Connection, ConnectionType

from engine.net import ws

from .conftest import server_frame


class TlsPeer:
    """The server side: each ``record(payload)`` is one TLS record's bytes."""

    def __init__(self, sock: socket.socket, cert: Path, key: Path) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=True)
        self.sock = trio.socket.from_stdlib_socket(sock)

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = self.out.read()
                if pending:
                    await self.sock.send(pending)
                self.inc.write(await self.sock.recv(65536))
        pending = self.out.read()
        if pending:
            await self.sock.send(pending)

    def record(self, payload: bytes) -> bytes:
        self.obj.write(payload)
        return self.out.read()

    async def send(self, data: bytes) -> None:
        await self.sock.send(data)


async def tls_pair(self_signed: tuple[Path, Path], busy_poll_s: float = 0.0,
                   ) -> tuple[ws.WsConnection, TlsPeer]:
    cert, key = self_signed
    a, b = socket.socketpair()
    cctx = ssl.create_default_context(cafile=str(cert))
    client = trio.SSLStream(trio.SocketStream(trio.socket.from_stdlib_socket(a)), cctx,
                            server_hostname="localhost")
    peer = TlsPeer(b, cert, key)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.handshake)
        await client.do_handshake()
    conn = ws.WsConnection(client, Connection(ConnectionType.CLIENT), "wss://pair/ws",
                           busy_poll_s=busy_poll_s)
    assert conn.busy_poll_supported
    return conn, peer


@pytest.mark.parametrize("busy_poll_s", [0.0, 0.5], ids=["sleep", "busy_poll"])
async def test_records_already_buffered_come_back_as_one_batch(self_signed, busy_poll_s) -> None:
    conn, peer = await tls_pair(self_signed, busy_poll_s)
    texts = [f'{{"channel":"bbo","i":{i}}}' for i in range(40)]
    await peer.send(b"".join(peer.record(server_frame(t)) for t in texts))  # 40 records
    await trio.sleep(0.05)
    with trio.fail_after(5):
        assert await conn.receive_batch() == texts
    assert conn.stats.reads == 1


async def test_a_partial_record_is_not_waited_for(self_signed) -> None:
    """3 whole records and half of a 4th: the read returns the 3 at once; the 4th message
    arrives with the rest of its record (sent only after the first batch came back: a read
    that waited for it would never return)."""
    conn, peer = await tls_pair(self_signed)
    recs = [peer.record(server_frame(f"m{i}")) for i in range(4)]
    half = len(recs[3]) // 2
    await peer.send(b"".join(recs[:3]) + recs[3][:half])
    await trio.sleep(0.05)
    with trio.fail_after(2):
        assert await conn.receive_batch() == ["m0", "m1", "m2"]
    await peer.send(recs[3][half:])
    with trio.fail_after(2):
        assert await conn.receive_batch() == ["m3"]


async def test_busy_poll_keeps_spinning_while_a_record_is_incomplete(self_signed) -> None:
    """A partial record in the TLS buffer is not "data ready": the read spins (and picks the
    rest up from the socket) instead of sleeping in the kernel."""
    conn, peer = await tls_pair(self_signed, busy_poll_s=1.0)
    first, second = peer.record(server_frame("a")), peer.record(server_frame("b"))
    await peer.send(first + second[:10])
    await trio.sleep(0.05)
    with trio.fail_after(2):
        assert await conn.receive_batch() == ["a"]
    polls = conn.stats.busy_polls

    async def rest_later() -> None:
        await trio.sleep(0.05)
        await peer.send(second[10:])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(rest_later)
        with trio.fail_after(2):
            assert await conn.receive_batch() == ["b"]
    assert conn.stats.busy_polls == polls + 1  # this read spun ...
    assert conn.stats.busy_poll_timeouts == 0  # ... and the spin picked the record up


async def test_a_message_spanning_many_records_arrives_whole(self_signed) -> None:
    conn, peer = await tls_pair(self_signed, busy_poll_s=0.5)
    big = "x" * 50_000  # > 3 TLS records of 16 KiB
    frame = server_frame(big)
    recs = b"".join(peer.record(frame[i:i + 16_384]) for i in range(0, len(frame), 16_384))
    await peer.send(recs)
    got: list[str] = []
    with trio.fail_after(5):
        while not got:
            got += await conn.receive_batch()
    assert got == [big]


async def test_close_after_the_batch_is_reported_on_the_next_read(self_signed) -> None:
    conn, peer = await tls_pair(self_signed)
    await peer.send(peer.record(server_frame("last")))
    await trio.sleep(0.02)
    with trio.fail_after(2):
        assert await conn.receive_batch() == ["last"]
    peer.sock.close()
    with trio.fail_after(2), pytest.raises(ws.ConnectionClosed):
        while True:
            await conn.receive_batch()
