"""The wsproto-direct WebSocket client against raw loopback servers (frame-level scripting)."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import wsproto
from trio_websocket import WebSocketRequest, serve_websocket
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, CloseConnection, Message, Ping, Request, TextMessage

from engine.net import ws
from engine.net.ws import ConnectError, ConnectionClosed

Script = Callable[[trio.SocketStream, wsproto.WSConnection, bytes], Awaitable[None]]


async def _server_handshake(stream: trio.SocketStream) -> tuple[wsproto.WSConnection, bytes]:
    srv = wsproto.WSConnection(ConnectionType.SERVER)
    while True:
        data = await stream.receive_some(65536)
        assert data
        srv.receive_data(data)
        for ev in srv.events():
            if isinstance(ev, Request):
                assert ev.target == "/ws"
                return srv, srv.send(AcceptConnection())


async def raw_server(nursery: trio.Nursery, script: Script) -> int:
    """Serve one scripted wsproto connection per client; return the port."""

    async def handle(stream: trio.SocketStream) -> None:
        srv, accept = await _server_handshake(stream)
        try:
            await script(stream, srv, accept)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


async def read_client(stream: trio.SocketStream, srv: wsproto.WSConnection) -> list[Any]:
    """Read client frames until at least one event arrives."""
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return []
        srv.receive_data(data)
        evs = list(srv.events())
        if evs:
            return evs


@pytest.fixture(params=[True, False], ids=["fast_path", "wsproto_only"])
def connect(request: pytest.FixtureRequest) -> Callable[..., Awaitable[ws.WsConnection]]:
    """ws.connect with the receive fast path on, and off (every byte through wsproto)."""
    return functools.partial(ws.connect, fast_path=request.param)


def text(srv: wsproto.WSConnection, s: str, fin: bool = True) -> bytes:
    return srv.send(Message(data=s, message_finished=fin))


async def test_frames_sent_with_the_handshake_answer_are_returned(nursery, connect) -> None:
    async def script(stream, srv, accept) -> None:
        await stream.send_all(accept + text(srv, "a") + text(srv, "b") + text(srv, "c"))
        await trio.sleep_forever()

    port = await raw_server(nursery, script)
    conn = await connect(f"ws://127.0.0.1:{port}/ws", 2)
    got: list[str] = []
    with trio.fail_after(2):
        while len(got) < 3:
            got += await conn.receive_batch()
    assert got == ["a", "b", "c"]
    await conn.aclose()


async def test_many_frames_one_read_and_big_batches(nursery, connect) -> None:
    msgs = [f'{{"channel":"bbo","n":{i}}}' for i in range(2000)]

    async def script(stream, srv, accept) -> None:
        await stream.send_all(accept)
        await stream.send_all(b"".join(text(srv, m) for m in msgs))
        await trio.sleep_forever()

    port = await raw_server(nursery, script)
    conn = await connect(f"ws://127.0.0.1:{port}/ws", 2)
    got: list[str] = []
    sizes = []
    with trio.fail_after(2):
        while len(got) < len(msgs):
            batch = await conn.receive_batch()
            sizes.append(len(batch))
            got += batch
    assert got == msgs
    assert max(sizes) > 100  # many frames per socket read


async def test_fragmented_message_reassembled_with_ping_in_between(nursery, connect) -> None:
    pongs: list[bytes] = []

    async def script(stream, srv, accept) -> None:
        await stream.send_all(accept)
        data = text(srv, "hel", fin=False) + srv.send(Ping(b"p1")) + text(srv, "lo wor", fin=False)
        await stream.send_all(data)
        await trio.sleep(0.05)
        await stream.send_all(text(srv, "ld") + text(srv, "next"))
        for ev in await read_client(stream, srv):
            if not isinstance(ev, TextMessage):
                pongs.append(ev.payload)
        await trio.sleep_forever()

    port = await raw_server(nursery, script)
    conn = await connect(f"ws://127.0.0.1:{port}/ws", 2)
    got: list[str] = []
    with trio.fail_after(2):
        while len(got) < 2:
            got += await conn.receive_batch()
        while not pongs:  # noqa: ASYNC110 - polling state set by the server task
            await trio.sleep(0.005)
    assert got == ["hello world", "next"]
    assert pongs == [b"p1"] and conn.stats.pings_answered == 1


async def test_large_message_across_many_reads(nursery, connect) -> None:
    big = "x" * 3_000_000

    async def script(stream, srv, accept) -> None:
        await stream.send_all(accept + text(srv, big) + text(srv, "after"))
        await trio.sleep_forever()

    port = await raw_server(nursery, script)
    conn = await connect(f"ws://127.0.0.1:{port}/ws", 2)
    got: list[str] = []
    with trio.fail_after(5):
        while len(got) < 2:
            got += await conn.receive_batch()
    assert got[0] == big and got[1] == "after"
    assert conn.stats.reads > 2


async def test_message_too_big_closes_1009(nursery, connect) -> None:
    async def script(stream, srv, accept) -> None:
        frags = b"".join(text(srv, "y" * 600, fin=False) for _ in range(5))
        await stream.send_all(accept + frags)
        await trio.sleep_forever()

    port = await raw_server(nursery, script)
    conn = await connect(f"ws://127.0.0.1:{port}/ws", 2, max_message=1000)
    with trio.fail_after(2), pytest.raises(ConnectionClosed) as ei:
        while True:
            await conn.receive_batch()
    assert ei.value.code == 1009


async def test_binary_messages(nursery, connect) -> None:
    async def script(stream, srv, accept) -> None:
        data = srv.send(Message(data=b'{"a":1}')) + srv.send(Message(data=b"\xff\x00"))
        await stream.send_all(accept + data + text(srv, "z"))
        await trio.sleep_forever()

    port = await raw_server(nursery, script)
    conn = await connect(f"ws://127.0.0.1:{port}/ws", 2)
    got: list[str] = []
    with trio.fail_after(2):
        while len(got) < 2:
            got += await conn.receive_batch()
    assert got == ['{"a":1}', "z"]
    assert conn.stats.binary_messages == 2 and conn.stats.binary_skipped == 1


async def test_close_frame_after_messages_in_same_read(nursery, connect) -> None:
    replies: list[Any] = []

    async def script(stream, srv, accept) -> None:
        await stream.send_all(
            accept
            + text(srv, "m1")
            + text(srv, "m2")
            + srv.send(CloseConnection(code=4001, reason="bye"))
        )
        replies.extend(await read_client(stream, srv))

    port = await raw_server(nursery, script)
    conn = await connect(f"ws://127.0.0.1:{port}/ws", 2)
    got: list[str] = []
    with trio.fail_after(2), pytest.raises(ConnectionClosed) as ei:
        while True:
            got += await conn.receive_batch()
    assert got == ["m1", "m2"]
    assert ei.value.code == 4001 and ei.value.reason == "bye"
    with trio.fail_after(2):
        while not replies:  # noqa: ASYNC110 - polling state set by the server task
            await trio.sleep(0.005)
    assert isinstance(replies[0], CloseConnection) and replies[0].code == 4001  # echoed
    with pytest.raises(ConnectionClosed):
        await conn.send_text("late")
    with pytest.raises(ConnectionClosed):
        await conn.receive_batch()


async def test_eof_is_connection_closed_1006(nursery, connect) -> None:
    async def script(stream, srv, accept) -> None:
        await stream.send_all(accept + text(srv, "last"))
        await stream.aclose()

    port = await raw_server(nursery, script)
    conn = await connect(f"ws://127.0.0.1:{port}/ws", 2)
    got: list[str] = []
    with trio.fail_after(2), pytest.raises(ConnectionClosed) as ei:
        while True:
            got += await conn.receive_batch()
    assert got == ["last"] and ei.value.code == 1006


async def test_protocol_error_closes_1002(nursery, connect) -> None:
    replies: list[Any] = []

    async def script(stream, srv, accept) -> None:
        await stream.send_all(accept + b"\x83\x00")  # reserved opcode 3
        replies.extend(await read_client(stream, srv))

    port = await raw_server(nursery, script)
    conn = await connect(f"ws://127.0.0.1:{port}/ws", 2)
    with trio.fail_after(2), pytest.raises(ConnectionClosed) as ei:
        while True:
            await conn.receive_batch()
    assert ei.value.code == 1002
    with trio.fail_after(2):
        while not replies:  # noqa: ASYNC110 - polling state set by the server task
            await trio.sleep(0.005)
    assert isinstance(replies[0], CloseConnection) and replies[0].code == 1002


async def test_send_text_and_close_reach_the_server(nursery, connect) -> None:
    seen: list[Any] = []

    async def script(stream, srv, accept) -> None:
        await stream.send_all(accept)
        while True:
            evs = await read_client(stream, srv)
            if not evs:
                return
            seen.extend(evs)

    port = await raw_server(nursery, script)
    conn = await connect(f"ws://127.0.0.1:{port}/ws", 2)
    await conn.send_text('{"method":"ping"}')
    await conn.send_texts(["é", "b"])
    await conn.aclose()
    with trio.fail_after(2):
        while not any(isinstance(e, CloseConnection) for e in seen):  # noqa: ASYNC110 - polling state set by the server task
            await trio.sleep(0.005)
    assert [e.data for e in seen if isinstance(e, TextMessage)] == ['{"method":"ping"}', "é", "b"]
    assert [e.code for e in seen if isinstance(e, CloseConnection)] == [1000]
    with pytest.raises(ConnectionClosed):
        await conn.send_text("after close")


async def test_connect_errors(nursery, connect) -> None:
    with pytest.raises(ConnectError, match="scheme"):
        await connect("http://127.0.0.1:1/ws", 1)
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(ConnectError):
        await connect(f"ws://127.0.0.1:{closed_port}/ws", 1)

    async def reject(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
        await trio.sleep_forever()

    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    ls = await nursery.start(functools.partial(trio.serve_tcp, reject, 0, host="127.0.0.1"))
    with pytest.raises(ConnectError, match="404"):
        await connect(f"ws://127.0.0.1:{ls[0].socket.getsockname()[1]}/ws", 2)
    for answer, match in (
        (b"HELLO\r\n\r\n", "Bad HTTP"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: wrong\r\n\r\n",
            "accept",
        ),
    ):

        async def bad(stream: trio.SocketStream, answer: bytes = answer) -> None:
            await stream.receive_some(65536)
            await stream.send_all(answer)
            await trio.sleep_forever()

        ls = await nursery.start(functools.partial(trio.serve_tcp, bad, 0, host="127.0.0.1"))
        with pytest.raises(ConnectError, match=match):
            await connect(f"ws://127.0.0.1:{ls[0].socket.getsockname()[1]}/ws", 2)
    ls = await nursery.start(functools.partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
    t0 = trio.current_time()
    with pytest.raises(ConnectError, match="timed out"):
        await connect(f"ws://127.0.0.1:{ls[0].socket.getsockname()[1]}/ws", 0.2)
    assert trio.current_time() - t0 < 1.0


async def test_wss_with_tls_and_sni(nursery, self_signed, connect) -> None:
    cert, key = self_signed
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: sni.append(name)

    async def handler(request: WebSocketRequest) -> None:
        conn = await request.accept()
        await conn.send_message("Websocket connection established.")
        await conn.send_message(await conn.get_message())  # echo

    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, server_ctx)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    conn = await connect(f"wss://localhost:{server.port}/ws", 5, ssl_context=client_ctx)
    await conn.send_text("echo me")
    got: list[str] = []
    with trio.fail_after(5):
        while len(got) < 2:
            got += await conn.receive_batch()
    assert got == ["Websocket connection established.", "echo me"]
    assert sni == ["localhost"]
    await conn.aclose()
    # the default context (system CAs) must refuse the self-signed certificate
    with pytest.raises(ConnectError):
        await connect(f"wss://localhost:{server.port}/ws", 5)
