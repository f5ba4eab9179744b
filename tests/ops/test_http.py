"""The ops HTTP server over real loopback sockets: endpoints, tokens, limits, bad input,
slow clients and a clean stop on cancellation."""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import h11
import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from engine.config import OpsConfig
from engine.ops.http import OpsHandlers, OpsServer, loopback_host
from engine.ops.metrics import EngineMetrics
from engine.secrets import SecretsError

TOKEN = "s3cr3t-ops-token-Zq8vXw"  # noqa: S105 (test value)
WRONG = "wrong-token-Kd93jf"  # noqa: S105
LOGGER = "engine.ops.http"


# -- a fake engine ----------------------------------------------------------------------------


class FakeEngine:
    def __init__(self) -> None:
        self.healthy = True
        self.kills: list[str] = []
        self.resets = 0
        self.fail_status = False
        self.metrics = EngineMetrics(version="0.1.0", mode="paper")

    def health(self) -> tuple[bool, Mapping[str, Any]]:
        if self.healthy:
            return True, {"problems": []}
        return False, {"problems": ["bbo stale for 12.0 s"]}

    def status(self) -> Mapping[str, Any]:
        if self.fail_status:
            raise RuntimeError("status exploded")
        return {"mode": "paper", "ready": True, "positions": {"xyz:GOLD": 1.5}}

    def kill(self, reason: str) -> Mapping[str, Any]:
        self.kills.append(reason)
        return {"killed": True, "reason": reason}

    def reset_hard_stop(self) -> Mapping[str, Any]:
        self.resets += 1
        return {"hard_stop": False}

    def handlers(self) -> OpsHandlers:
        return OpsHandlers(health=self.health, metrics=self.metrics.registry.render,
                           status=self.status, kill=self.kill,
                           reset_hard_stop=self.reset_hard_stop)


@attrs.frozen
class Ops:
    server: OpsServer
    port: int
    engine: FakeEngine


async def start(nursery: trio.Nursery, **kwargs: Any) -> Ops:
    engine = FakeEngine()
    kwargs.setdefault("token", TOKEN)
    server = OpsServer(engine.handlers(), **kwargs)
    port = await nursery.start(server.serve)
    assert isinstance(port, int) and port > 0 and server.port == port
    return Ops(server, port, engine)


@pytest.fixture
async def ops(nursery: trio.Nursery) -> Ops:
    return await start(nursery)


# -- clients ----------------------------------------------------------------------------------


@attrs.frozen
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A keep-alive HTTP/1.1 client on one trio socket (h11 client side)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, port: int) -> Client:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def request(self, method: str, path: str, *, body: bytes = b"",
                      headers: Sequence[tuple[str, str]] = ()) -> Resp:
        hdrs = [("host", "127.0.0.1"), *headers]
        if body or method == "POST":
            hdrs.append(("content-length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=path, headers=hdrs)) or b""
        if body:
            data += self.conn.send(h11.Data(data=body)) or b""
        data += self.conn.send(h11.EndOfMessage()) or b""
        with trio.fail_after(10):
            await self.stream.send_all(data)
            status, rheaders, parts = 0, {}, []
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    self.conn.receive_data(await self.stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    rheaders = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    parts.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    raise AssertionError(f"unexpected {event!r}")
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return Resp(status, rheaders, b"".join(parts))

    async def aclose(self) -> None:
        await self.stream.aclose()


async def request(port: int, method: str, path: str, **kwargs: Any) -> Resp:
    client = await Client.open(port)
    try:
        return await client.request(method, path, **kwargs)
    finally:
        await client.aclose()


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


async def eventually(cond: Callable[[], bool]) -> None:
    """Wait (up to 10 s) until ``cond()`` holds."""
    for _ in range(1000):
        if cond():
            return
        await trio.sleep(0.01)
    raise AssertionError("condition not reached within 10 s")


async def read_until_eof(stream: trio.SocketStream) -> bytes:
    parts = []
    with trio.fail_after(10):
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:  # a reset after the response is fine
                break
            if not data:
                break
            parts.append(data)
    return b"".join(parts)


async def raw(port: int, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection, return everything received until the server
    closes it."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await stream.send_all(data)
        return await read_until_eof(stream)
    finally:
        await stream.aclose()


def status_of(response: bytes) -> int:
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", response)
    assert m is not None, response[:200]
    return int(m.group(1))


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    out = []
    for r in caplog.records:
        out.append(r.getMessage())
        if r.exc_text:
            out.append(r.exc_text)
    return "\n".join(out)


# -- endpoints --------------------------------------------------------------------------------


async def test_health_200_when_healthy_503_with_problems_otherwise(ops: Ops) -> None:
    r = await request(ops.port, "GET", "/health")
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"healthy": True, "problems": []}
    ops.engine.healthy = False
    r = await request(ops.port, "GET", "/health")
    assert r.status == 503
    assert r.json() == {"healthy": False, "problems": ["bbo stale for 12.0 s"]}


async def test_metrics_is_prometheus_text(ops: Ops) -> None:
    ops.engine.metrics.frames.labels("bbo").inc(3)
    r = await request(ops.port, "GET", "/metrics")
    assert r.status == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(r.headers["content-length"]) == len(r.body)
    families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
    frames = families["engine_frames"].samples
    assert [(s.labels, s.value) for s in frames] == [({"channel": "bbo"}, 3.0)]
    assert families["engine_build_info"].samples[0].labels == {"version": "0.1.0",
                                                               "mode": "paper"}


async def test_status_is_json(ops: Ops) -> None:
    r = await request(ops.port, "GET", "/status?verbose=1")
    assert r.status == 200
    assert r.json() == {"mode": "paper", "ready": True, "positions": {"xyz:GOLD": 1.5}}


async def test_head_has_headers_but_no_body_and_keeps_the_connection(ops: Ops) -> None:
    client = await Client.open(ops.port)
    head = await client.request("HEAD", "/metrics")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["content-length"]) > 100
    get = await client.request("GET", "/metrics")  # same connection
    assert get.status == 200 and len(get.body) == int(head.headers["content-length"])
    await client.aclose()


async def test_unknown_path_is_404(ops: Ops) -> None:
    for path in ("/", "/nope", "/health/", "/kill/now", "/metrics.txt"):
        r = await request(ops.port, "GET", path)
        assert r.status == 404, path
        assert "/health" in r.json()["error"]


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("POST", "/health", "GET, HEAD"),
    ("DELETE", "/metrics", "GET, HEAD"),
    ("PUT", "/status", "GET, HEAD"),
    ("GET", "/kill", "POST"),
    ("GET", "/hardstop/reset", "POST"),
])
async def test_wrong_method_is_405_with_allow(ops: Ops, method: str, path: str,
                                              allow: str) -> None:
    r = await request(ops.port, method, path)
    assert r.status == 405
    assert r.headers["allow"] == allow
    assert ops.engine.kills == [] and ops.engine.resets == 0


async def test_keep_alive_serves_many_requests_on_one_connection(ops: Ops) -> None:
    client = await Client.open(ops.port)
    for path in ("/health", "/status", "/metrics", "/nope", "/health"):
        r = await client.request("GET", path)
        assert r.status in (200, 404)
    r = await client.request("POST", "/kill", headers=bearer(TOKEN))
    assert r.status == 200
    await client.aclose()


async def test_pipelined_requests_are_answered_in_order(ops: Ops) -> None:
    req = b"GET /%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    data = (req % b"health") + (req % b"nope") + (
        b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    out = await raw(ops.port, data)
    assert re.findall(rb"HTTP/1\.1 (\d{3})", out) == [b"200", b"404", b"200"]


async def test_http_1_0_is_answered_and_closed(ops: Ops) -> None:
    out = await raw(ops.port, b"GET /health HTTP/1.0\r\n\r\n")
    assert status_of(out) == 200
    assert out.endswith(b'{"healthy":true,"problems":[]}')


async def test_httpx_client_in_a_thread(ops: Ops) -> None:
    """A third-party client with its own connection pool (keep-alive) works end to end."""

    def run() -> list[int]:
        with httpx.Client(base_url=f"http://127.0.0.1:{ops.port}", trust_env=False,
                          timeout=10.0) as c:
            codes = [c.get("/health").status_code, c.get("/metrics").status_code]
            codes.append(c.post("/kill", json={"reason": "httpx"},
                                headers={"Authorization": f"Bearer {TOKEN}"}).status_code)
            return codes

    assert await trio.to_thread.run_sync(run) == [200, 200, 200]
    assert ops.engine.kills == ["httpx"]


async def test_handler_exception_is_500_and_the_server_goes_on(
        ops: Ops, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, LOGGER)
    ops.engine.fail_status = True
    client = await Client.open(ops.port)
    r = await client.request("GET", "/status")
    assert r.status == 500
    assert "status exploded" not in r.body.decode()  # details go to the log, not the client
    assert "status exploded" in log_text(caplog)
    assert (await client.request("GET", "/health")).status == 200  # same connection
    await client.aclose()


async def test_unencodable_handler_result_is_500(ops: Ops) -> None:
    ops.engine.status = lambda: {"x": object()}  # type: ignore[method-assign]
    server = OpsServer(ops.engine.handlers(), token=TOKEN)
    async with trio.open_nursery() as n:
        port = await n.start(server.serve)
        r = await request(port, "GET", "/status")
        n.cancel_scope.cancel()
    assert r.status == 500


# -- tokens -----------------------------------------------------------------------------------


async def test_kill_with_the_right_token(ops: Ops) -> None:
    r = await request(ops.port, "POST", "/kill", headers=bearer(TOKEN),
                      body=b'{"reason": "maintenance window"}')
    assert r.status == 200
    assert r.json() == {"killed": True, "reason": "maintenance window"}
    r = await request(ops.port, "POST", "/kill", headers=[("authorization", f"bearer {TOKEN}")])
    assert r.status == 200  # the scheme is case-insensitive; an empty body has a default reason
    assert ops.engine.kills == ["maintenance window", "ops http /kill"]


async def test_hardstop_reset_with_the_right_token(ops: Ops) -> None:
    r = await request(ops.port, "POST", "/hardstop/reset", headers=bearer(TOKEN))
    assert r.status == 200 and r.json() == {"hard_stop": False}
    assert ops.engine.resets == 1


@pytest.mark.parametrize("path", ["/kill", "/hardstop/reset"])
@pytest.mark.parametrize("auth", [
    None, f"Bearer {WRONG}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}",
    "Bearer", f"Token {TOKEN}", TOKEN, f"Bearer {TOKEN} {TOKEN}",
])
async def test_missing_or_wrong_token_is_401_and_never_logged(
        ops: Ops, caplog: pytest.LogCaptureFixture, path: str, auth: str | None) -> None:
    caplog.set_level(logging.DEBUG, "engine.ops")
    headers = [] if auth is None else [("authorization", auth)]
    r = await request(ops.port, "POST", path, headers=headers, body=b'{"reason": "x"}'
                      if path == "/kill" else b"")
    assert r.status == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert ops.engine.kills == [] and ops.engine.resets == 0
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert any(path in rec.getMessage() and "refused" in rec.getMessage() for rec in warnings)
    text = log_text(caplog) + r.body.decode()
    assert TOKEN not in text and WRONG not in text and TOKEN[:8] not in text


async def test_no_token_configured_is_403_with_how_to(nursery: trio.Nursery) -> None:
    ops = await start(nursery, token=None)
    for path in ("/kill", "/hardstop/reset"):
        r = await request(ops.port, "POST", path, headers=bearer("anything"))
        assert r.status == 403
        msg = r.json()["error"]
        assert "ENGINE_OPS_TOKEN" in msg and "ops_token" in msg
    assert ops.engine.kills == [] and ops.engine.resets == 0
    assert (await request(ops.port, "GET", "/health")).status == 200


@pytest.mark.parametrize("body", [
    b"not json", b"[1, 2]", b'"stop"', b'{"reason": 5}', b'{"reason": ""}',
    b'{"reasn": "typo"}', b'{"reason": "a\\nb"}', b'{"reason": "' + b"x" * 201 + b'"}',
    b"\xff\xfe",
])
async def test_kill_with_a_bad_body_is_400(ops: Ops, body: bytes) -> None:
    r = await request(ops.port, "POST", "/kill", headers=bearer(TOKEN), body=body)
    assert r.status == 400
    assert "reason" in r.json()["error"] or "JSON" in r.json()["error"]
    assert ops.engine.kills == []


async def test_expect_100_continue(ops: Ops) -> None:
    body = b'{"reason": "with expect"}'
    out = await raw(ops.port, (
        b"POST /kill HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body))
    assert re.findall(rb"HTTP/1\.1 (\d{3})", out) == [b"100", b"200"]
    assert ops.engine.kills == ["with expect"]


async def test_from_config_reads_the_token_and_never_shows_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, nursery: trio.Nursery) -> None:
    caplog.set_level(logging.DEBUG, "engine")
    (tmp_path / "ops_token").write_text(TOKEN + "\n")
    engine = FakeEngine()
    server = OpsServer.from_config(
        OpsConfig(http_port=0), engine.handlers(),
        env={"CREDENTIALS_DIRECTORY": str(tmp_path), "ENGINE_OPS_TOKEN": WRONG})
    assert TOKEN not in repr(server) and "token=set" in repr(server)
    port = await nursery.start(server.serve)
    assert (await request(port, "POST", "/kill", headers=bearer(WRONG))).status == 401
    assert (await request(port, "POST", "/kill", headers=bearer(TOKEN))).status == 200
    text = log_text(caplog)
    assert "$CREDENTIALS_DIRECTORY/ops_token" in text  # the source is named
    assert TOKEN not in text and WRONG not in text


def test_from_config_env_token_and_errors(tmp_path: Path) -> None:
    engine = FakeEngine()
    server = OpsServer.from_config(OpsConfig(), engine.handlers(),
                                   env={"ENGINE_OPS_TOKEN": f"  {TOKEN} "})
    assert "token=set" in repr(server) and TOKEN not in repr(server)
    assert "token=none" in repr(OpsServer.from_config(OpsConfig(), engine.handlers(), env={}))
    with pytest.raises(SecretsError, match="ENGINE_OPS_TOKEN is empty") as exc:
        OpsServer.from_config(OpsConfig(), engine.handlers(), env={"ENGINE_OPS_TOKEN": " "})
    (tmp_path / "ops_token").write_text("")
    with pytest.raises(SecretsError, match="empty"):
        OpsServer.from_config(OpsConfig(), engine.handlers(),
                              env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert TOKEN not in str(exc.value)


# -- binding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com",
                                  "", "127.0.0.1.nip.io"])
def test_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        OpsServer(FakeEngine().handlers(), host=host)


def test_loopback_hosts() -> None:
    assert loopback_host("localhost") == "127.0.0.1"
    assert loopback_host("127.0.0.1") == "127.0.0.1"
    assert loopback_host("127.0.0.2") == "127.0.0.2"
    assert loopback_host("::1") == "::1"


@pytest.mark.parametrize("kwargs", [{"port": -1}, {"port": 65536}, {"token": ""},
                                    {"request_timeout_s": 0}, {"max_body_bytes": 0}])
def test_bad_server_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        OpsServer(FakeEngine().handlers(), **kwargs)


async def test_port_in_use_is_an_oserror_and_logged(
        ops: Ops, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, LOGGER)
    other = OpsServer(FakeEngine().handlers(), port=ops.port)
    async with trio.open_nursery() as n:
        with pytest.raises(OSError):
            await n.start(other.serve)
    assert f"port {ops.port}" in log_text(caplog)


async def test_host_header_must_be_loopback(ops: Ops) -> None:
    for host in (b"127.0.0.1", b"localhost:9321", b"[::1]:80", b"127.0.0.1:1"):
        out = await raw(ops.port, b"GET /health HTTP/1.1\r\nHost: " + host
                        + b"\r\nConnection: close\r\n\r\n")
        assert status_of(out) == 200, host
    for host in (b"evil.example", b"evil.example:9321", b"192.168.0.1", b"[::2]:80"):
        out = await raw(ops.port, b"GET /health HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert status_of(out) == 403, host


# -- bad input --------------------------------------------------------------------------------


GARBAGE = [
    b"\x00\x01\x02\xff\xfe\r\n\r\n",
    b"NOT HTTP AT ALL\r\n\r\n",
    b"GET /health HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /health HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nbad header line\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"POST /kill HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST /kill HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"\r\n\r\n\r\n\r\n",
    b"GET  HTTP/1.1\r\n\r\n",
]


@pytest.mark.parametrize("data", GARBAGE)
async def test_garbage_gets_4xx_and_the_server_survives(
        ops: Ops, caplog: pytest.LogCaptureFixture, data: bytes) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    out = await raw(ops.port, data)
    assert 400 <= status_of(out) < 600 and status_of(out) != 500
    assert "bad request" in log_text(caplog)
    assert (await request(ops.port, "GET", "/health")).status == 200


@pytest.mark.parametrize(("auth_line", "expected"), [
    (b"Authorization: Bearer " + TOKEN.encode() + b"\x01", 401),  # h11 lets \x01 through
    (b"Authorization Bearer " + TOKEN.encode(), 400),  # h11: illegal header line b'...'
    (b"Authorization: Bearer " + TOKEN.encode() + b"\x00", 400),
    (b"Authorization: Bearer " + WRONG.encode() + b"\x7f", 401),
])
async def test_malformed_authorization_header_is_never_echoed(
        ops: Ops, caplog: pytest.LogCaptureFixture, auth_line: bytes, expected: int) -> None:
    caplog.set_level(logging.DEBUG, "engine.ops")
    out = await raw(ops.port, b"POST /kill HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Connection: close\r\n" + auth_line + b"\r\nContent-Length: 0\r\n\r\n")
    assert status_of(out) == expected
    if expected == 400:
        assert "client data not shown" in log_text(caplog)
    text = log_text(caplog) + out.decode("latin-1")
    assert TOKEN not in text and WRONG not in text and TOKEN[:8] not in text
    assert ops.engine.kills == []


async def test_random_garbage_never_crashes_the_server(ops: Ops) -> None:
    rng = random.Random(1234)
    for _ in range(30):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) + b"\r\n\r\n"
        out = await raw(ops.port, blob)
        assert out == b"" or status_of(out) in (400, 404, 405, 408, 431, 501, 505)
    assert (await request(ops.port, "GET", "/health")).status == 200
    await eventually(lambda: ops.server.active_connections == 0)  # no connection task leaks


async def test_peer_closing_mid_request_is_harmless(ops: Ops) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", ops.port)
    await stream.send_all(b"POST /kill HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nab")
    await stream.aclose()
    assert (await request(ops.port, "GET", "/health")).status == 200
    assert ops.engine.kills == []


async def test_oversized_headers_are_431(ops: Ops) -> None:
    data = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    assert status_of(await raw(ops.port, data)) == 431
    assert (await request(ops.port, "GET", "/health")).status == 200


async def test_declared_oversized_body_is_413_without_reading_it(ops: Ops) -> None:
    out = await raw(ops.port, b"POST /kill HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                    b"Content-Length: 2000000\r\n\r\n" + b"x" * 1000)
    assert status_of(out) == 413
    assert ops.engine.kills == []


async def test_chunked_body_over_the_limit_is_413(ops: Ops) -> None:
    chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
    data = (b"POST /kill HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n" + chunk * 17 + b"0\r\n\r\n")
    assert status_of(await raw(ops.port, data)) == 413
    assert ops.engine.kills == []
    # just under the limit is read (and then rejected as a bad kill body, not as too large)
    data = (b"POST /kill HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nConnection: close\r\n\r\n"
            + chunk * 16 + b"0\r\n\r\n")
    assert status_of(await raw(ops.port, data)) == 400


# -- slow clients, limits, stop ---------------------------------------------------------------


async def test_slow_client_does_not_block_others_and_gets_408(nursery: trio.Nursery) -> None:
    ops = await start(nursery, request_timeout_s=3.0)
    slow = await trio.open_tcp_stream("127.0.0.1", ops.port)
    await slow.send_all(b"GET /health HTTP/1.1\r\nHo")  # ... and nothing more
    body_slow = await trio.open_tcp_stream("127.0.0.1", ops.port)
    await body_slow.send_all(b"POST /kill HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Length: 100\r\n\r\n{\"rea")
    for _ in range(5):
        assert (await request(ops.port, "GET", "/health")).status == 200
    assert ops.server.active_connections >= 2
    with trio.move_on_after(0.05):  # the slow ones have had no answer yet
        assert await slow.receive_some(100) == b"not reached"
    assert status_of(await read_until_eof(slow)) == 408
    assert status_of(await read_until_eof(body_slow)) == 408
    assert ops.engine.kills == []


async def test_idle_keep_alive_connection_is_closed(nursery: trio.Nursery) -> None:
    ops = await start(nursery, idle_timeout_s=0.5)
    client = await Client.open(ops.port)
    assert (await client.request("GET", "/health")).status == 200
    assert await read_until_eof(client.stream) == b""  # closed quietly, no 408
    silent = await trio.open_tcp_stream("127.0.0.1", ops.port)
    assert await read_until_eof(silent) == b""


async def test_too_many_connections_get_503(nursery: trio.Nursery) -> None:
    ops = await start(nursery, max_connections=2)
    held = [await Client.open(ops.port) for _ in range(2)]
    for c in held:
        assert (await c.request("GET", "/health")).status == 200
    assert status_of(await raw(ops.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")) == 503
    await held[0].aclose()
    await eventually(lambda: ops.server.active_connections < 2)
    assert (await request(ops.port, "GET", "/health")).status == 200


async def test_cancellation_stops_the_server_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    engine = FakeEngine()
    server = OpsServer(engine.handlers(), token=TOKEN)
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            port = await n.start(server.serve)
            client = await Client.open(port)  # a keep-alive connection stays open
            assert (await client.request("GET", "/health")).status == 200
            partial = await trio.open_tcp_stream("127.0.0.1", port)
            await partial.send_all(b"GET /heal")  # and one mid-request
            await eventually(lambda: server.active_connections == 2)
            n.cancel_scope.cancel()
    assert server.active_connections == 0
    assert await read_until_eof(client.stream) == b""
    assert await read_until_eof(partial) == b""
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)
    assert "ops http: stopped" in log_text(caplog)
