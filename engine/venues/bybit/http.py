"""A trio-native HTTP/1.1 client on one keep-alive connection (h11 over a trio stream, TLS by
``trio.SSLStream`` for ``https``). No asyncio and no threads: the REST client awaits it in the
caller's nursery. Requests on one client are serialised by a lock (Bybit answers in order on one
connection anyway); a broken or non-reusable connection is replaced on the next request.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import attrs
import h11
import trio

_RECV = 65536
MAX_BODY = 8 * 1024 * 1024


class HttpError(Exception):
    """Transport failure (connect, timeout, broken connection, protocol error)."""


@attrs.frozen
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class HttpClient:
    """HTTP/1.1 to one origin (``http://host:port`` or ``https://host``)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"base URL must be http(s)://host[:port], got {base_url!r}")
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.host_header = u.netloc
        self.timeout_s = timeout_s
        self._ssl = ssl_context
        self._stream: trio.abc.Stream | None = None
        self._conn: h11.Connection | None = None
        self._lock = trio.Lock()
        self.connects = 0

    async def aclose(self) -> None:
        await self._drop()

    async def _drop(self) -> None:
        stream, self._stream, self._conn = self._stream, None, None
        if stream is not None:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _connect(self) -> None:
        stream: trio.abc.Stream
        try:
            if self.scheme == "https":
                ctx = self._ssl or ssl.create_default_context()
                stream = await trio.open_ssl_over_tcp_stream(
                    self.host, self.port, ssl_context=ctx, https_compatible=True
                )
            else:
                stream = await trio.open_tcp_stream(self.host, self.port)
        except OSError as exc:
            raise HttpError(f"connect to {self.host}:{self.port} failed: {exc}") from None
        self._stream = stream
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_BODY)
        self.connects += 1

    async def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> HttpResponse:
        """Send one request and read the whole answer within ``timeout_s``.

        A free connection is taken without a schedule point (``acquire_nowait``): the first
        checkpoint is the socket write itself, so an order handed over by the fill that
        made it is written before other tasks run (a hedge's latency: ``async with lock``
        would let every runnable task go first). A busy one is waited for as usual."""
        lock = self._lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            with trio.move_on_after(self.timeout_s) as scope:
                try:
                    return await self._request(method, target, headers or {}, body)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                        h11.ProtocolError) as exc:
                    await self._drop()
                    raise HttpError(f"{method} {target}: {type(exc).__name__}: {exc}") from None
            await self._drop()
            assert scope.cancelled_caught
            raise HttpError(f"{method} {target}: no answer within {self.timeout_s} s")
        finally:
            lock.release()

    async def _request(self, method: str, target: str, headers: dict[str, str],
                       body: bytes) -> HttpResponse:
        if self._conn is not None and self._conn.our_state is not h11.IDLE:
            await self._drop()
        if self._stream is None:
            await self._connect()
        conn, stream = self._conn, self._stream
        assert conn is not None and stream is not None
        hdrs = [("Host", self.host_header), ("Content-Length", str(len(body))),
                *headers.items()]
        data = conn.send(h11.Request(method=method, target=target, headers=hdrs))
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        await stream.send_all(data)
        status = 0
        resp_headers: dict[str, str] = {}
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                got = await stream.receive_some(_RECV)
                if not got:
                    raise trio.BrokenResourceError("connection closed by peer")
                conn.receive_data(bytes(got))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                resp_headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise trio.BrokenResourceError("connection closed mid-answer")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self._drop()
        return HttpResponse(status, resp_headers, b"".join(chunks))
