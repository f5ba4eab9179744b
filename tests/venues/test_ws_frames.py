"""Frame-level checks of WsConnection's receive path over an in-memory stream.

The fast path (own frame delimiting for plain text frames) must behave exactly like feeding
every byte to wsproto, for any frame mix and any split of the byte stream into reads.
"""

from __future__ import annotations

import struct

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Message, Ping, Pong

from engine.net.ws import ConnectionClosed, WsConnection


class ChunkStream(trio.abc.Stream):
    """Replays ``chunks`` as successive reads (then EOF); records what the client sends."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.sent = bytearray()
        self.closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise trio.ClosedResourceError
        return self.chunks.pop(0) if self.chunks else b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise trio.ClosedResourceError
        self.sent += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


def server_events(sent: bytes) -> list[object]:
    srv = Connection(ConnectionType.SERVER)
    srv.receive_data(bytes(sent))
    return list(srv.events())


async def collect(
    chunks: list[bytes], fast: bool, initial: bytes = b"", **kw: int
) -> tuple[list[str], int | None, list[object]]:
    stream = ChunkStream(chunks)
    conn = WsConnection(
        stream, Connection(ConnectionType.CLIENT), "mem", initial=initial, fast_path=fast, **kw
    )
    got: list[str] = []
    code: int | None = None
    try:
        while True:
            got += await conn.receive_batch()
    except ConnectionClosed as exc:
        code = exc.code
    return got, code, server_events(bytes(stream.sent))


def frame(b0: int, payload: bytes, mask: bool = False) -> bytes:
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack("!Q", n)
    if mask:
        return head + b"\x00\x00\x00\x00" + payload
    return head + payload


# a frame mix a server could send: text (short, 16-bit and 64-bit lengths, non-ASCII),
# fragmented text with pings in between, binary UTF-8, pings
item = st.one_of(
    st.tuples(st.just("text"), st.text(max_size=300)),
    st.tuples(st.just("long"), st.integers(126, 70_000)),
    st.tuples(st.just("frag"), st.lists(st.text(max_size=50), min_size=2, max_size=4)),
    st.tuples(st.just("bin"), st.text(max_size=50)),
    st.tuples(st.just("ping"), st.binary(max_size=20)),
)


def build(items: list[tuple[str, object]]) -> tuple[bytes, list[str], list[bytes]]:
    srv = Connection(ConnectionType.SERVER)
    out = bytearray()
    msgs: list[str] = []
    pings: list[bytes] = []
    for kind, v in items:
        if kind == "text":
            assert isinstance(v, str)
            out += srv.send(Message(data=v))
            msgs.append(v)
        elif kind == "long":
            assert isinstance(v, int)
            s = "é" * (v // 2)
            out += srv.send(Message(data=s))
            msgs.append(s)
        elif kind == "frag":
            assert isinstance(v, list)
            for j, part in enumerate(v):
                out += srv.send(Message(data=part, message_finished=j == len(v) - 1))
                if j == 0:
                    out += srv.send(Ping(b"mid"))
                    pings.append(b"mid")
            msgs.append("".join(v))
        elif kind == "bin":
            assert isinstance(v, str)
            out += srv.send(Message(data=v.encode()))
            msgs.append(v)
        else:
            assert isinstance(v, bytes)
            out += srv.send(Ping(v))
            pings.append(v)
    return bytes(out), msgs, pings


def split(blob: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(blob) + 1) for c in cuts} | {0, len(blob)})
    return [blob[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(item, max_size=12), st.lists(st.integers(0, 10**6), max_size=30), st.integers(0, 40)
)
def test_fast_path_equals_wsproto(
    items: list[tuple[str, object]], cuts: list[int], head: int
) -> None:
    blob, msgs, pings = build(items)
    chunks = split(blob, cuts)
    initial = blob[:head] if chunks else b""  # some bytes may come with the handshake answer
    rest = split(blob[len(initial) :], cuts)
    for fast in (True, False):
        got, code, sent = trio.run(collect, rest, fast, initial)
        assert got == msgs
        assert code == 1006  # EOF after the stream
        assert [e.payload for e in sent if isinstance(e, Pong)] == pings
        assert all(isinstance(e, Pong | CloseConnection) for e in sent)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (frame(0x81, b"\xff\xfe"), 1007),  # invalid UTF-8 in a text frame
        (frame(0x81, b"hi", mask=True), 1002),  # servers must not mask
        (frame(0xC1, b"hi"), 1002),  # RSV1 without a negotiated extension
        (frame(0x83, b""), 1002),  # reserved opcode
        (frame(0x80, b"x"), 1002),  # continuation without a start
        (frame(0x01, b"a") + frame(0x81, b"b"), 1002),  # new message inside a fragmented one
        (frame(0x89, b"p" * 126), 1002),  # control frame too long
        (frame(0x88, b"\x03\xe8") + frame(0x81, b"after"), 1000),  # close: later frames ignored
    ],
)
async def test_protocol_violations(raw: bytes, code: int, fast: bool) -> None:
    got, got_code, sent = await collect([frame(0x81, b"ok") + raw], fast)
    assert got == ["ok"] and got_code == code
    closes = [e for e in sent if isinstance(e, CloseConnection)]
    assert closes and closes[0].code == code


@pytest.mark.parametrize("fast", [True, False])
async def test_frame_over_max_message(fast: bool) -> None:
    big = frame(0x01, b"a" * 3000) + frame(0x80, b"b" * 3000)
    got, code, _ = await collect([frame(0x81, b"ok"), big], fast, max_message=4000)
    assert got == ["ok"] and code == 1009


async def test_fast_path_single_big_frame_over_limit() -> None:
    got, code, _ = await collect([frame(0x81, b"x" * 5000)], True, max_message=4000)
    assert got == [] and code == 1009


async def test_split_header_and_payload_byte_by_byte() -> None:
    blob = frame(0x81, b"hello") + frame(0x81, "é".encode() * 200) + frame(0x81, b"x" * 70000)
    chunks = [blob[i : i + 1] for i in range(len(blob))]
    for fast in (True, False):
        got, code, _ = await collect(chunks, fast)
        assert got == ["hello", "é" * 200, "x" * 70000] and code == 1006
