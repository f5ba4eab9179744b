"""The ops HTTP endpoint: owns a small HTTP/1.1 server (Trio + h11) on a loopback address.

Endpoints (everything else is 404; a known path with another method is 405 with ``Allow``):

=====================  ===================================================================
``GET /health``        200 ``{"healthy": true, ...}`` or 503 ``{"healthy": false, ...}``
``GET /metrics``       the Prometheus text exposition (``text/plain; version=0.0.4``)
``GET /status``        JSON from the engine
``GET /``              the live dashboard page (and its assets, ``/dashboard.js`` ...), when
                       the handlers carry ``pages``
``GET /events``        the dashboard's server-sent events stream (``text/event-stream``), when
                       the handlers carry an :class:`engine.ops.sse.SseHub`; 503 beyond its
                       client cap
``POST /kill``         kill switch; optional JSON body ``{"reason": "..."}``; bearer token
``POST /flatten``      flatten every position now (the engine keeps running); bearer token
``POST /hardstop/reset``  reset the hard-stop latch; bearer token
=====================  ===================================================================

``HEAD`` is accepted wherever ``GET`` is. The server does not know the engine: it calls the
synchronous, cheap callbacks of an :class:`OpsHandlers`. A callback that raises gives a 500 and
a logged traceback; the server keeps serving.

The POST endpoints require ``Authorization: Bearer <token>``, compared in constant time.
The token comes from ``$CREDENTIALS_DIRECTORY/ops_token`` or ``ENGINE_OPS_TOKEN``
(:meth:`OpsServer.from_config`); without one they answer 403 saying how to configure it. A
missing or wrong token is 401 and a WARNING naming the peer, never the presented token.

Robustness: the server binds only to loopback (a non-loopback host is a ``ValueError``), and a
``Host`` header that does not name a loopback address is refused with 403 (DNS rebinding).
Request headers are capped (64 KiB → 431), bodies too (1 MiB → 413), a request must arrive
within ``request_timeout_s`` once started (408) and an idle keep-alive connection is closed
after ``idle_timeout_s``; a response that cannot be sent within ``send_timeout_s`` drops the
connection; at most ``max_connections`` are served at once (503 beyond). Each connection is its
own task, so a slow client never delays another or the engine. An event stream is sent from
its connection's task out of the client's bounded queue (:mod:`engine.ops.sse`): a stuck
browser only loses frames, and is dropped once a send does not complete in ``send_timeout_s``. Malformed requests get a 400
(505 for an HTTP version other than 1.0/1.1) and the connection is closed; error logs and bodies
never quote the client's bytes (a malformed header line may hold a token).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import attrs
import h11
import msgspec
import trio

from engine.ops import sse
from engine.ops.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from engine.secrets import load_credential

if TYPE_CHECKING:
    from engine.config import OpsConfig

log = logging.getLogger(__name__)

OPS_TOKEN_CREDENTIAL: Final = "ops_token"
OPS_TOKEN_ENV: Final = "ENGINE_OPS_TOKEN"
HOW_TO_CONFIGURE_TOKEN: Final = (
    f"configure an ops token: systemd LoadCredential={OPS_TOKEN_CREDENTIAL}:<file> "
    f"(read from $CREDENTIALS_DIRECTORY/{OPS_TOKEN_CREDENTIAL}) or the {OPS_TOKEN_ENV} "
    f"environment variable, then restart the engine"
)
JSON_CONTENT_TYPE: Final = "application/json"
MAX_REASON_CHARS: Final = 200

_RECV_BYTES: Final = 65536
_READ_METHODS: Final = ("GET", "HEAD")
_ROUTES: Final[dict[str, tuple[str, ...]]] = {
    "/health": _READ_METHODS,
    "/metrics": _READ_METHODS,
    "/status": _READ_METHODS,
    "/kill": ("POST",),
    "/flatten": ("POST",),
    "/hardstop/reset": ("POST",),
}
_EVENTS_PATH: Final = "/events"
# the dashboard page: nothing from elsewhere, never framed (clickjacking of its buttons)
PAGE_HEADERS: Final = (
    ("content-security-policy", "default-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
)
_REASONS: Final[dict[int, bytes]] = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}
@attrs.frozen
class OpsHandlers:
    """What the server asks the engine. All synchronous and cheap (they run on the Trio thread).

    * ``health() -> (healthy, detail)``: ``detail`` is merged into the JSON (put the problems
      there when unhealthy);
    * ``metrics() -> bytes``: the exposition, e.g. ``EngineMetrics().registry.render``;
    * ``status() -> dict``: anything JSON-encodable;
    * ``kill(reason) -> dict``: turn the kill switch on;
    * ``reset_hard_stop() -> dict``: reset the hard-stop latch;
    * ``flatten() -> dict`` (optional): flatten every position now;
    * ``pages``: path -> (content type, bytes) of the dashboard's static files;
    * ``events`` (optional): the hub ``GET /events`` subscribes to.
    """

    health: Callable[[], tuple[bool, Mapping[str, Any]]]
    metrics: Callable[[], bytes]
    status: Callable[[], Mapping[str, Any]]
    kill: Callable[[str], Mapping[str, Any]]
    reset_hard_stop: Callable[[], Mapping[str, Any]]
    flatten: Callable[[], Mapping[str, Any]] | None = None
    pages: Mapping[str, tuple[str, bytes]] = attrs.field(factory=dict)
    events: sse.SseHub | None = None


@attrs.frozen
class _Response:
    status: int
    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


def _json(status: int, obj: Mapping[str, Any], *, close: bool = False,
          headers: tuple[tuple[str, str], ...] = ()) -> _Response:
    return _Response(status, msgspec.json.encode(dict(obj)), headers=headers, close=close)


def _error(status: int, message: str, *, close: bool = False,
           headers: tuple[tuple[str, str], ...] = ()) -> _Response:
    return _json(status, {"error": message}, close=close, headers=headers)


def _raw_response(resp: _Response) -> bytes:
    """``resp`` as bytes without h11 (for answers h11's state machine cannot send, e.g. a 408
    for a request whose headers never completed); always ``connection: close``."""
    head = [f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, b'').decode()}",
            f"content-type: {resp.content_type}", f"content-length: {len(resp.body)}",
            "cache-control: no-store", *(f"{k}: {v}" for k, v in resp.headers),
            "connection: close", "", ""]
    return "\r\n".join(head).encode("latin-1") + resp.body


_BUSY_RESPONSE: Final = _raw_response(_error(503, "too many concurrent connections"))


def loopback_host(host: str) -> str:
    """``host`` if it is a loopback IP address (``localhost`` means ``127.0.0.1``), else
    ``ValueError``: the ops endpoints are never exposed to a network."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        addr = None
    if addr is None or not addr.is_loopback:
        raise ValueError(f"ops http host must be a loopback address (127.0.0.1, ::1, "
                         f"localhost), got {host!r}")
    return str(addr)


def _host_is_loopback(value: bytes) -> bool:
    """Whether a ``Host`` header names a loopback address (with or without a port)."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):  # [::1]:port
        end = text.find("]")
        name = text[1:end] if end > 0 else ""
    else:
        name = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    if name in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def load_ops_token(env: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """``(token, source)`` from ``$CREDENTIALS_DIRECTORY/ops_token`` or ``ENGINE_OPS_TOKEN``,
    or ``None``. Raises :class:`engine.secrets.SecretsError` for an unreadable or empty one."""
    return load_credential(OPS_TOKEN_CREDENTIAL, OPS_TOKEN_ENV, env)


_CLIENT_BYTES_RE: Final = re.compile(r"\s*:?\s*(?:bytearray\()?b['\"].*", re.DOTALL)


def _describe(exc: h11.ProtocolError) -> str:
    """h11's message without the client bytes it quotes (a malformed header line may be an
    ``Authorization`` header holding a token)."""
    return _clip(_CLIENT_BYTES_RE.sub(" (client data not shown)", str(exc)))


def _clip(text: str, limit: int = 200) -> str:
    """A client-controlled text cut for a log line or an error body."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _peer(stream: trio.SocketStream) -> str:
    try:
        addr = stream.socket.getpeername()
    except OSError:
        return "?"
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


@attrs.frozen
class _Stream:
    """Answer with the event stream of ``client`` (already subscribed)."""

    client: sse.SseClient


class _Closed(Exception):
    """Stop serving this connection: the peer is gone or too slow to read our response."""


class OpsServer:
    """The ops HTTP server. Start it with ``port = await nursery.start(server.serve)``."""

    def __init__(
        self,
        handlers: OpsHandlers,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        token_source: str = "configured",
        request_timeout_s: float = 10.0,
        idle_timeout_s: float = 60.0,
        send_timeout_s: float = 10.0,
        max_header_bytes: int = 64 * 1024,
        max_body_bytes: int = 1024 * 1024,
        max_connections: int = 64,
        keepalive_s: float = 15.0,
    ) -> None:
        self._host = loopback_host(host)
        if not 0 <= port <= 65535:
            raise ValueError(f"ops http port must be within 0..65535, got {port}")
        if token is not None and not token.strip():
            raise ValueError("ops token must not be empty (use None for no token)")
        for name, value in (("request_timeout_s", request_timeout_s),
                            ("idle_timeout_s", idle_timeout_s),
                            ("send_timeout_s", send_timeout_s),
                            ("max_header_bytes", max_header_bytes),
                            ("max_body_bytes", max_body_bytes),
                            ("max_connections", max_connections),
                            ("keepalive_s", keepalive_s)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        self._handlers = handlers
        self._requested_port = port
        self._port: int | None = None
        self._token = token.encode("utf-8") if token is not None else None
        self._token_source = token_source if token is not None else ""
        self._request_timeout_s = request_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._send_timeout_s = send_timeout_s
        self._max_header_bytes = max_header_bytes
        self._max_body_bytes = max_body_bytes
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._active = 0
        self._routes: dict[str, tuple[str, ...]] = dict(_ROUTES)
        for path in handlers.pages:
            self._routes[path] = _READ_METHODS
        if handlers.events is not None:
            self._routes[_EVENTS_PATH] = _READ_METHODS

    @classmethod
    def from_config(cls, ops: OpsConfig, handlers: OpsHandlers,
                    env: Mapping[str, str] = os.environ, **kwargs: Any) -> OpsServer:
        """A server on ``[ops] http_host``/``http_port`` with the token from
        :func:`load_ops_token` (``SecretsError`` if a configured token is unreadable/empty)."""
        found = load_ops_token(env)
        token, source = found if found is not None else (None, "")
        return cls(handlers, host=ops.http_host, port=ops.http_port, token=token,
                   token_source=source, **kwargs)

    def __repr__(self) -> str:  # never the token
        return (f"OpsServer(host={self._host!r}, port={self._port or self._requested_port}, "
                f"token={'set' if self._token is not None else 'none'})")

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int | None:
        """The bound port once :meth:`serve` has started, else None."""
        return self._port

    @property
    def active_connections(self) -> int:
        return self._active

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Listen, report the bound port through ``task_status``, serve until cancelled."""
        try:
            listeners = await trio.open_tcp_listeners(self._requested_port, host=self._host)
        except OSError as exc:
            log.error("ops http: cannot listen on %s port %d: %s", self._host,
                      self._requested_port, exc)
            raise
        self._port = int(listeners[0].socket.getsockname()[1])
        if self._token is not None:
            auth = f"POST endpoints need the bearer token from {self._token_source}"
        else:
            auth = (f"POST /kill, /flatten and /hardstop/reset are disabled (403): "
                    f"{HOW_TO_CONFIGURE_TOKEN}")
        log.info("ops http: listening on http://%s:%d (%s)",
                 f"[{self._host}]" if ":" in self._host else self._host, self._port, auth)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(trio.serve_listeners, self._connection, listeners,
                                            handler_nursery=nursery))
                task_status.started(self._port)
        finally:
            log.info("ops http: stopped")

    # -- one connection ---------------------------------------------------------------------

    async def _connection(self, stream: trio.SocketStream) -> None:
        peer = _peer(stream)
        if self._active >= self._max_connections:
            log.warning("ops http: %d connections open, refusing %s with 503",
                        self._active, peer)
            with trio.move_on_after(self._send_timeout_s):
                try:
                    await stream.send_all(_BUSY_RESPONSE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            await trio.aclose_forcefully(stream)
            return
        self._active += 1
        try:
            await self._serve_connection(stream, peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, _Closed):
            pass
        except Exception:  # a bug here must cost one connection, never the engine
            log.exception("ops http: internal error on the connection from %s", peer)
        finally:
            self._active -= 1
            await trio.aclose_forcefully(stream)

    async def _serve_connection(self, stream: trio.SocketStream, peer: str) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_header_bytes)
        while True:
            response: _Response | _Stream | None = None
            head = False
            with trio.CancelScope(deadline=trio.current_time() + self._idle_timeout_s) as scope:
                try:
                    response, head = await self._one_request(conn, stream, scope, peer)
                except h11.RemoteProtocolError as exc:
                    status = exc.error_status_hint if exc.error_status_hint in _REASONS else 400
                    what = _describe(exc)
                    log.warning("ops http: bad request from %s: %s (%d)", peer, what, status)
                    response = _error(status, f"bad request: {what}", close=True)
            if scope.cancelled_caught:
                if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                    return  # idle keep-alive connection: just close it
                if isinstance(response, _Stream) and self._handlers.events is not None:
                    self._handlers.events.unsubscribe(response.client)
                log.warning("ops http: request from %s not received within %.1f s; closing",
                            peer, self._request_timeout_s)
                response = _error(408, "request not received in time", close=True)
            if response is None:
                return
            if isinstance(response, _Stream):
                await self._stream_events(conn, stream, response.client, peer)
                return
            await self._send(conn, stream, response, head)
            if response.close or conn.our_state is not h11.DONE:
                await self._linger(stream)
                return
            if conn.their_state is not h11.DONE:
                return  # h11 decided the connection ends here (MUST_CLOSE, HTTP/1.0, ...)
            conn.start_next_cycle()

    async def _receive(self, conn: h11.Connection, stream: trio.SocketStream,
                       scope: trio.CancelScope) -> None:
        data = await stream.receive_some(_RECV_BYTES)
        if data:
            # the request has started: it must now complete within request_timeout_s
            scope.deadline = min(scope.deadline,
                                 trio.current_time() + self._request_timeout_s)
        conn.receive_data(data)

    async def _next_event(self, conn: h11.Connection, stream: trio.SocketStream,
                          scope: trio.CancelScope) -> object:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                await self._receive(conn, stream, scope)
                continue
            return event

    async def _one_request(self, conn: h11.Connection, stream: trio.SocketStream,
                           scope: trio.CancelScope, peer: str
                           ) -> tuple[_Response | _Stream | None, bool]:
        """Read one request, answer it; ``(None, _)`` when the peer closed between requests."""
        if conn.trailing_data[0]:
            scope.deadline = min(scope.deadline,
                                 trio.current_time() + self._request_timeout_s)
        event = await self._next_event(conn, stream, scope)
        if isinstance(event, h11.ConnectionClosed):
            return None, False
        if not isinstance(event, h11.Request):
            raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
        method = event.method.decode("latin-1")
        target = event.target.decode("latin-1")
        head = method == "HEAD"
        shown = _clip(f"{method} {target.split('?', 1)[0]}")  # for logs: never the query
        if event.http_version not in (b"1.0", b"1.1"):
            raise h11.RemoteProtocolError(
                f"HTTP/{event.http_version.decode('latin-1')} is not supported",
                error_status_hint=505)
        # h11 bounds only an incomplete head; a complete one that arrived in one read is
        # measured here
        head_size = len(event.method) + len(event.target) + 12 + sum(
            len(k) + len(v) + 4 for k, v in event.headers)
        if head_size > self._max_header_bytes:
            raise h11.RemoteProtocolError(
                f"request head over {self._max_header_bytes} bytes", error_status_hint=431)
        host = next((v for k, v in event.headers if k == b"host"), None)
        if host is not None and not _host_is_loopback(host):
            log.warning("ops http: %s from %s refused: Host header %r is not loopback",
                        shown, peer, _clip(host.decode("latin-1")))
            return _error(403, "Host header must name a loopback address", close=True), head
        length = next((v for k, v in event.headers if k == b"content-length"), None)
        if length is not None and int(length) > self._max_body_bytes:
            log.warning("ops http: %s from %s: body of %s bytes refused (413)",
                        shown, peer, _clip(length.decode("latin-1")))
            return _error(413, f"request body larger than {self._max_body_bytes} bytes",
                          close=True), head
        if conn.they_are_waiting_for_100_continue:
            await self._send_raw(stream, conn.send(
                h11.InformationalResponse(status_code=100, headers=[])) or b"")
        body = await self._read_body(conn, stream, scope)
        if body is None:
            log.warning("ops http: %s from %s: body over %d bytes refused (413)",
                        shown, peer, self._max_body_bytes)
            return _error(413, f"request body larger than {self._max_body_bytes} bytes",
                          close=True), head
        response = self._route(method, target, event.headers, body, peer)
        if isinstance(response, _Stream):
            log.info("ops http: %s from %s -> event stream", shown, peer)
            return response, head
        level = logging.DEBUG if response.status < 400 else logging.INFO
        log.log(level, "ops http: %s from %s -> %d", shown, peer, response.status)
        return response, head

    async def _read_body(self, conn: h11.Connection, stream: trio.SocketStream,
                         scope: trio.CancelScope) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(conn, stream, scope)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._max_body_bytes:
                    return None
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} in body")

    # -- routing ----------------------------------------------------------------------------

    def _route(self, method: str, target: str, headers: Sequence[tuple[bytes, bytes]],
               body: bytes, peer: str) -> _Response | _Stream:
        path = target.split("?", 1)[0]
        allowed = self._routes.get(path)
        if allowed is None:
            return _error(404, f"no such endpoint {_clip(path)!r}; endpoints: "
                               + ", ".join(f"{'/'.join(m)} {p}" for p, m in self._routes.items()))
        if method not in allowed:
            return _error(405, f"{path} allows {', '.join(allowed)}, not {_clip(method)}",
                          headers=(("allow", ", ".join(allowed)),))
        if method == "POST":
            refused = self._authorize(method, path, headers, peer)
            if refused is not None:
                return refused
        hub = self._handlers.events
        if path == _EVENTS_PATH and hub is not None and method == "GET":
            client = hub.subscribe()
            if client is None:
                log.warning("ops http: %d dashboard streams open, refusing %s with 503",
                            hub.max_clients, peer)
                return _error(503, f"too many dashboard clients (at most {hub.max_clients}); "
                                   f"close another dashboard tab")
            return _Stream(client)
        try:
            return self._dispatch(path, body, peer)
        except Exception:
            log.exception("ops http: the %s handler raised", path)
            return _error(500, f"internal error handling {path} (see the engine log)")

    def _authorize(self, method: str, path: str, headers: Sequence[tuple[bytes, bytes]],
                   peer: str) -> _Response | None:
        if self._token is None:
            log.warning("ops http: %s %s from %s refused: no ops token configured",
                        method, path, peer)
            return _error(403, f"{method} {path} is disabled: no ops token; "
                               f"{HOW_TO_CONFIGURE_TOKEN}")
        challenge = (("www-authenticate", 'Bearer realm="engine-ops"'),)
        value = next((v for k, v in headers if k == b"authorization"), None)
        if value is None:
            log.warning("ops http: %s %s from %s refused: no Authorization header",
                        method, path, peer)
            return _error(401, "missing 'Authorization: Bearer <token>'", headers=challenge)
        scheme, _, presented = value.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(presented.strip(),
                                                                   self._token):
            log.warning("ops http: %s %s from %s refused: wrong bearer token",
                        method, path, peer)
            return _error(401, "wrong token", headers=challenge)
        return None

    def _dispatch(self, path: str, body: bytes, peer: str) -> _Response:
        h = self._handlers
        page = h.pages.get(path)
        if page is not None:
            return _Response(200, page[1], content_type=page[0], headers=PAGE_HEADERS)
        if path == _EVENTS_PATH:  # HEAD: the headers a GET would get, no subscription
            return _Response(200, b"", content_type=sse.CONTENT_TYPE)
        if path == "/health":
            healthy, detail = h.health()
            report: dict[str, Any] = {"healthy": bool(healthy)}
            report.update((k, v) for k, v in detail.items() if k != "healthy")
            return _json(200 if healthy else 503, report)
        if path == "/metrics":
            return _Response(200, bytes(h.metrics()), content_type=METRICS_CONTENT_TYPE)
        if path == "/status":
            return _json(200, h.status())
        if path == "/kill":
            reason = _kill_reason(body)
            if isinstance(reason, _Response):
                return reason
            log.warning("ops http: kill switch requested by %s: %s", peer, reason)
            return _json(200, h.kill(reason))
        if path == "/hardstop/reset":
            log.warning("ops http: hard-stop reset requested by %s", peer)
            return _json(200, h.reset_hard_stop())
        if path == "/flatten":
            if h.flatten is None:
                return _error(501, "this engine has no flatten handler")
            log.warning("ops http: flatten of every position requested by %s", peer)
            return _json(200, h.flatten())
        raise AssertionError(f"unrouted path {path}")  # _ROUTES and this function disagree

    # -- sending ----------------------------------------------------------------------------

    async def _send_raw(self, stream: trio.SocketStream, data: bytes) -> None:
        with trio.move_on_after(self._send_timeout_s) as cs:
            await stream.send_all(data)
        if cs.cancelled_caught:
            log.warning("ops http: response not sent within %.1f s; dropping the connection",
                        self._send_timeout_s)
            raise _Closed

    async def _send(self, conn: h11.Connection, stream: trio.SocketStream, resp: _Response,
                    head: bool) -> None:
        headers = [
            ("content-type", resp.content_type),
            ("content-length", str(len(resp.body))),
            ("cache-control", "no-store"),
            *resp.headers,
        ]
        if resp.close:
            headers.append(("connection", "close"))
        try:
            data = conn.send(h11.Response(status_code=resp.status, headers=headers,
                                          reason=_REASONS.get(resp.status, b""))) or b""
            if not head:
                data += conn.send(h11.Data(data=resp.body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            # h11 cannot send a response in this state (e.g. a 408 before the request line
            # completed): send it by hand, the connection is closed after it anyway
            data = _raw_response(resp)
        await self._send_raw(stream, data)

    async def _stream_events(self, conn: h11.Connection, stream: trio.SocketStream,
                             client: sse.SseClient, peer: str) -> None:
        """Send ``client``'s frames until the peer goes away or stops reading; then forget it.

        The response has no length (chunked on HTTP/1.1) and ends the connection. A second
        task watches the socket for the peer's close, so a closed tab is cleaned up at once
        even while nothing is being published."""
        hub = self._handlers.events
        assert hub is not None
        why = "closed by the client"
        try:
            head = conn.send(h11.Response(status_code=200, reason=b"OK", headers=[
                ("content-type", sse.CONTENT_TYPE), ("cache-control", "no-store"),
                ("x-accel-buffering", "no"), ("connection", "close")])) or b""
            head += conn.send(h11.Data(data=f"retry: {sse.RETRY_MS}\n\n".encode())) or b""
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_close, stream, nursery.cancel_scope)
                try:
                    await self._send_raw(stream, head)
                    while True:
                        chunk = await client.next_chunk(self._keepalive_s)
                        await self._send_raw(stream, conn.send(h11.Data(data=chunk)) or b"")
                except _Closed:
                    why = f"not reading (a send did not complete in {self._send_timeout_s:g} s)"
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()
        finally:
            hub.unsubscribe(client)
            log.info("ops http: event stream to %s ended, %s (%d frames sent, %d events "
                     "dropped, %d snapshots coalesced)", peer, why, client.sent_frames,
                     client.dropped, client.coalesced)

    @staticmethod
    async def _watch_close(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        """Cancel ``scope`` when the peer closes (what it sends meanwhile is discarded)."""
        try:
            while await stream.receive_some(_RECV_BYTES):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def _linger(self, stream: trio.SocketStream) -> None:
        """Close after an error without resetting the connection under the client: stop
        sending, then drain what it still sends (bounded) so it can read our response."""
        try:
            await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        with trio.move_on_after(min(2.0, self._request_timeout_s)):
            drained = 0
            while drained <= 4 * self._max_body_bytes:
                try:
                    data = await stream.receive_some(_RECV_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                drained += len(data)


def _kill_reason(body: bytes) -> str | _Response:
    """The reason from an empty body or ``{"reason": "..."}``; a 400 response otherwise."""
    if not body.strip():
        return "ops http /kill"
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        return _error(400, f'body must be empty or JSON {{"reason": "..."}}: {exc}')
    if not isinstance(obj, dict) or set(obj) - {"reason"}:
        return _error(400, 'body must be a JSON object with only a "reason" key')
    reason = obj.get("reason", "ops http /kill")
    if not isinstance(reason, str) or not reason.strip():
        return _error(400, '"reason" must be a non-empty string')
    if len(reason) > MAX_REASON_CHARS or not reason.isprintable():
        return _error(400, f'"reason" must be printable and at most {MAX_REASON_CHARS} '
                           f"characters")
    return reason.strip()
