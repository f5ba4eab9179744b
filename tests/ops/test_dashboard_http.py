"""The dashboard's HTTP side over real loopback sockets: the page and its assets, the
``/events`` server-sent events stream (content type, framing, keep-alives), its bounds (a
client that never reads loses only its own frames and is dropped; the client cap; a closed
client is cleaned up) and ``POST /flatten`` behind the bearer token."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
import trio

from engine.ops.dashboard import ASSETS, load_pages
from engine.ops.http import OpsHandlers, OpsServer
from engine.ops.sse import SseHub, sse_frame

from .sse_reader import SseReader

TOKEN = "dash-token-9f8e7d"  # noqa: S105 (test value)


@attrs.define
class Fake:
    flattens: int = 0
    kills: list[str] = attrs.Factory(list)

    def flatten(self) -> Mapping[str, Any]:
        self.flattens += 1
        return {"flattening": 2}

    def kill(self, reason: str) -> Mapping[str, Any]:
        self.kills.append(reason)
        return {"killed": True}


async def start(nursery: trio.Nursery, hub: SseHub | None = None, *, flatten: bool = True,
                token: str | None = TOKEN, **kw: Any) -> tuple[int, Fake, SseHub]:
    fake = Fake()
    hub = hub if hub is not None else SseHub()
    handlers = OpsHandlers(health=lambda: (True, {}), metrics=lambda: b"",
                           status=lambda: {"mode": "paper"}, kill=fake.kill,
                           reset_hard_stop=lambda: {"reset": False},
                           flatten=fake.flatten if flatten else None,
                           pages=load_pages(), events=hub)
    server = OpsServer(handlers, token=token, **kw)
    port = await nursery.start(server.serve)
    return port, fake, hub


async def request(port: int, method: str, path: str, headers: dict[str, str] | None = None
                  ) -> tuple[int, dict[str, str], bytes]:
    import httpx

    def go() -> httpx.Response:
        return httpx.request(method, f"http://127.0.0.1:{port}{path}", headers=headers,
                             timeout=5.0)

    r = await trio.to_thread.run_sync(go)
    return r.status_code, dict(r.headers), r.content


async def wait_until(cond: Any, what: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    with trio.move_on_after(timeout):
        while not cond():  # noqa: ASYNC110 - another task's state
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out waiting for {what}")


# -- the page ---------------------------------------------------------------------------------


async def test_page_and_assets_are_served_with_relative_urls_only(nursery: trio.Nursery
                                                                  ) -> None:
    port, _, _ = await start(nursery)
    status, headers, body = await request(port, "GET", "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    html = body.decode()
    assert 'src="dashboard.js"' in html and 'href="dashboard.css"' in html
    for path, (_, ctype) in ASSETS.items():
        status, headers, body = await request(port, "GET", path)
        assert status == 200 and headers["content-type"] == ctype and body
        text = body.decode()
        # no CDN, no absolute host: it must work through an SSH tunnel on any local port
        assert not re.search(r"(https?:)?//[a-z0-9]", text, re.IGNORECASE), path
    js = (await request(port, "GET", "/dashboard.js"))[2].decode()
    assert 'new EventSource("events")' in js
    for action in ('"flatten"', '"kill"', '"hardstop/reset"'):
        assert f"act({action}" in js
    assert "window.confirm(" in js


def test_package_data_ships_every_static_file() -> None:
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = cfg["tool"]["setuptools"]["package-data"]["engine"]
    static = root / "engine" / "ops" / "static"
    files = sorted(p.name for p in static.iterdir())
    assert {name for name, _ in ASSETS.values()} <= set(files)
    for name in files:
        assert any(Path("ops/static", name).match(p) for p in patterns), (name, patterns)


# -- the stream -------------------------------------------------------------------------------


async def test_events_content_type_and_framing(nursery: trio.Nursery) -> None:
    hub = SseHub(greeting=lambda: [sse_frame("hello", {"recent": {}})])
    port, _, _ = await start(nursery, hub)
    r = await SseReader.open(port)
    assert r.status == 200
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.headers
    name, lines = await r.frame()
    assert name is None and lines == ["retry: 2000"]
    assert await r.event() == ("hello", {"recent": {}})
    hub.publish_event(sse_frame("signal", {"signal_id": "s1", "px": 1.5}))
    hub.publish_snapshot(sse_frame("snapshot", {"n": 1}))
    assert await r.event() == ("signal", {"signal_id": "s1", "px": 1.5})
    assert await r.event() == ("snapshot", {"n": 1})
    # exact bytes of a frame: event line, one data line, blank line
    assert b'event: signal\ndata: {"signal_id":"s1","px":1.5}\n\n' in r.raw
    assert len(hub.clients) == 1
    await r.aclose()
    await wait_until(lambda: not hub.clients, "the closed client to be forgotten")


async def test_keepalive_comment_while_nothing_is_published(nursery: trio.Nursery) -> None:
    port, _, hub = await start(nursery, keepalive_s=0.2)
    r = await SseReader.open(port)
    await r.frame()  # retry
    with trio.fail_after(5):
        name, lines = await r.frame()
    assert name is None and lines == [": keep-alive"]
    await r.aclose()


async def test_head_events_does_not_subscribe(nursery: trio.Nursery) -> None:
    port, _, hub = await start(nursery)
    status, headers, body = await request(port, "HEAD", "/events")
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert body == b"" and not hub.clients and hub.stats.disconnected == 0


async def test_client_cap_refuses_with_503_and_a_closed_tab_frees_its_slot(
        nursery: trio.Nursery) -> None:
    hub = SseHub(max_clients=2)
    port, _, _ = await start(nursery, hub)
    a = await SseReader.open(port)
    b = await SseReader.open(port)
    c = await SseReader.open(port)
    assert (a.status, b.status, c.status) == (200, 200, 503)
    assert "too many dashboard clients" in json.loads(c.body)["error"]
    assert hub.stats.refused == 1 and len(hub.clients) == 2
    # nothing is published: the close alone must clean the client up
    await a.aclose()
    await wait_until(lambda: len(hub.clients) == 1, "a closed client to be removed")
    assert hub.stats.disconnected == 1
    d = await SseReader.open(port)
    assert d.status == 200
    for r in (b, c, d):
        await r.aclose()


async def test_a_client_that_never_reads_is_bounded_then_dropped(nursery: trio.Nursery) -> None:
    """A stuck browser: its queue never exceeds the bound (oldest events dropped, counted),
    publishing never waits for it, another client keeps getting every frame it can, and the
    stuck one is disconnected after the send timeout and forgotten."""
    hub = SseHub(max_clients=4, max_queued_events=16)
    port, _, _ = await start(nursery, hub, send_timeout_s=1.0)
    stuck_sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stuck_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await stuck_sock.connect(("127.0.0.1", port))
    await stuck_sock.send(b"GET /events HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    await wait_until(lambda: len(hub.clients) == 1, "the stuck client to subscribe")
    (stuck,) = hub.clients
    reader = await SseReader.open(port)
    assert len(hub.clients) == 2
    got: list[int] = []

    async def read_all() -> None:
        while True:
            name, data = await reader.event("tick")
            got.append(data["i"])
            if data["i"] == 299:
                return

    blob = "x" * 32_000
    max_pending = 0
    async with trio.open_nursery() as n:
        n.start_soon(read_all)
        for i in range(300):
            hub.publish_event(sse_frame("tick", {"i": i, "pad": blob}))  # synchronous
            max_pending = max(max_pending, stuck.pending)
            await trio.sleep(0.005)
    assert max_pending <= 16
    assert stuck.dropped > 0 and hub.stats.dropped >= stuck.dropped
    assert got[-1] == 299 and got == sorted(got)  # in order; oldest dropped if any
    await wait_until(lambda: stuck not in hub.clients, "the stuck client to be dropped",
                     timeout=15)
    assert len(hub.clients) == 1 and hub.stats.disconnected == 1
    stuck_sock.close()
    await reader.aclose()


# -- POST /flatten ----------------------------------------------------------------------------


async def test_flatten_needs_the_token(nursery: trio.Nursery) -> None:
    port, fake, _ = await start(nursery)
    status, headers, body = await request(port, "POST", "/flatten")
    assert status == 401 and "www-authenticate" in headers and fake.flattens == 0
    status, _, _ = await request(port, "POST", "/flatten",
                                 {"authorization": "Bearer wrong-token"})
    assert status == 401 and fake.flattens == 0
    status, _, body = await request(port, "POST", "/flatten",
                                    {"authorization": f"Bearer {TOKEN}"})
    assert status == 200 and json.loads(body) == {"flattening": 2} and fake.flattens == 1
    status, headers, _ = await request(port, "GET", "/flatten")
    assert status == 405 and headers["allow"] == "POST"


@pytest.mark.parametrize("token", [None, TOKEN])
async def test_flatten_without_a_token_configured_or_handler(nursery: trio.Nursery,
                                                           token: str | None) -> None:
    port, fake, _ = await start(nursery, flatten=token is None, token=token)
    status, _, body = await request(port, "POST", "/flatten",
                                    {"authorization": f"Bearer {TOKEN}"})
    if token is None:
        assert status == 403 and "no ops token" in json.loads(body)["error"]
    else:
        assert status == 501  # no handler: said so, never a crash
    assert fake.flattens == 0
