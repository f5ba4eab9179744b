"""HTTP/1.1 on one TCP connection with h11 (keep-alive), and the hand-off of ``GET /ws`` with
``Upgrade: websocket`` to wsproto. Routing of ordinary requests is the caller's job.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Awaitable, Callable

import h11
import msgspec
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection
from wsproto.events import Request as WsRequest
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

log = logging.getLogger("engine.sim.http")

WS_PATH = "/ws"
MAX_BODY = 1024 * 1024
KEEPALIVE_S = 75.0
_RECV_BYTES = 65536

# route(method, path, body) -> (status, JSON body), or None: never answer (the response is
# "lost": the connection is held until the client gives up and closes it)
Router = Callable[[str, str, bytes], Awaitable[tuple[int, bytes] | None]]
# websocket(stream, wsproto connection, 101 response bytes, bytes already received after it)
WsHandler = Callable[[trio.SocketStream, WSConnection, bytes, bytes], Awaitable[None]]

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
    422: b"Unprocessable Entity",
    426: b"Upgrade Required",
    500: b"Internal Server Error",
}


class _BodyTooLarge(Exception):
    pass


def json_error(status: int, message: str) -> tuple[int, bytes]:
    """A 4xx/5xx body in the venue's ``{code, msg, data}`` shape (what the official SDK parses)."""
    return status, msgspec.json.encode({"code": status, "msg": message, "data": None})


async def _next_event(conn: h11.Connection, stream: trio.SocketStream) -> object:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(_RECV_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            conn.receive_data(data)
            continue
        return event


async def _read_body(conn: h11.Connection, stream: trio.SocketStream) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_BODY:
                raise _BodyTooLarge
            parts.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(parts)
        else:
            raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} in request body")


async def _respond(
    conn: h11.Connection, stream: trio.SocketStream, status: int, body: bytes, close: bool = False
) -> None:
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("server", "engine-sim"),
        # like the venue's CDN: lets `python -m engine check` compare clocks
        ("date", email.utils.formatdate(usegmt=True)),
    ]
    if close:
        headers.append(("connection", "close"))
    data = conn.send(
        h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b""))
    )
    data = (
        (data or b"")
        + (conn.send(h11.Data(data=body)) or b"")
        + (conn.send(h11.EndOfMessage()) or b"")
    )
    await stream.send_all(data)


async def _wait_for_close(stream: trio.SocketStream) -> None:
    """Read and discard until the peer closes (or ``KEEPALIVE_S`` passes)."""
    with trio.move_on_after(KEEPALIVE_S):
        while True:
            try:
                if not await stream.receive_some(_RECV_BYTES):
                    return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return


def _is_upgrade(request: h11.Request) -> bool:
    for name, value in request.headers:
        if name == b"upgrade" and value.strip().lower() == b"websocket":
            return True
    return False


def _path(target: bytes) -> str:
    return target.split(b"?", 1)[0].decode("latin-1")


async def serve_http(stream: trio.SocketStream, route: Router, websocket: WsHandler) -> None:
    """Serve requests on ``stream`` until it closes (or hand it to ``websocket`` and return)."""
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            with trio.move_on_after(KEEPALIVE_S) as idle:
                event = await _next_event(conn, stream)
            if idle.cancelled_caught or not isinstance(event, h11.Request):
                return
            if _is_upgrade(event):
                await _upgrade(conn, stream, event, websocket)
                return
            method = event.method.decode("latin-1")
            path = _path(event.target)
            try:
                body = await _read_body(conn, stream)
            except _BodyTooLarge:
                status, payload = json_error(413, "request body too large")
                await _respond(conn, stream, status, payload, close=True)
                return
            result = await route(method, path, body)
            if result is None:
                await _wait_for_close(stream)
                return
            status, payload = result
            await _respond(conn, stream, status, payload)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except h11.RemoteProtocolError as exc:
        log.debug("http: bad request: %s", exc)
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            status, payload = json_error(400, f"bad request: {exc}")
            try:
                await _respond(conn, stream, status, payload, close=True)
            except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


async def _upgrade(
    conn: h11.Connection, stream: trio.SocketStream, request: h11.Request, websocket: WsHandler
) -> None:
    end = await _next_event(conn, stream)
    if not isinstance(end, h11.EndOfMessage):
        status, payload = json_error(400, "upgrade request must not have a body")
        await _respond(conn, stream, status, payload, close=True)
        return
    if _path(request.target) != WS_PATH:
        status, payload = json_error(404, f"no WebSocket endpoint at {_path(request.target)}")
        await _respond(conn, stream, status, payload, close=True)
        return
    conn.next_event()  # PAUSED: h11 stops parsing at the protocol switch
    trailing, _closed = conn.trailing_data
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.initiate_upgrade_connection(list(request.headers), request.target)
        if not any(isinstance(e, WsRequest) for e in ws.events()):
            raise WsRemoteProtocolError("no upgrade request", event_hint=None)
        accept = ws.send(AcceptConnection())
    except WsRemoteProtocolError as exc:
        status, payload = json_error(400, f"bad WebSocket handshake: {exc}")
        await _respond(conn, stream, status, payload, close=True)
        return
    await websocket(stream, ws, accept, bytes(trailing))
