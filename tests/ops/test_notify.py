"""Webhook notifier: delivery, retries, rate limits, dead webhooks, queue bound, secrets, limits.

Every network test talks to a real HTTP/1.1 server (trio + h11) on 127.0.0.1 with an ephemeral
port, started and stopped by the test.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import statistics
import time
from collections import deque
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import h11
import pytest
import trio

from engine.config import NotifyConfig
from engine.ops.notify import (
    KIND_CIRCUIT_BREAKER,
    KIND_DAILY_REPORT,
    KIND_HARD_STOP,
    KIND_KILL,
    KIND_RECONNECT_STORM,
    LEVEL_COLORS,
    MAX_CONTENT,
    MAX_DESCRIPTION,
    MAX_EMBED_TOTAL,
    MAX_FIELD_NAME,
    MAX_FIELD_VALUE,
    MAX_FIELDS,
    MAX_TITLE,
    Notification,
    Notifier,
    ReconnectStormDetector,
    build_payload,
    truncate,
    utf16_len,
)
from engine.secrets import SecretsError

TOKEN = "s3cr3tT0k3n-QwErTy_0123456789abcdef"
WEBHOOK_PATH = f"/api/webhooks/1234567890/{TOKEN}"
T_WALL = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z


def cfg(**kw: Any) -> NotifyConfig:
    base: dict[str, Any] = dict(username="engine-test", queue_size=50, max_attempts=3,
                                backoff_base_s=0.01, backoff_max_s=1.0, timeout_s=2.0)
    base.update(kw)
    return NotifyConfig(**base)


# --------------------------------------------------------------------------------------------
# a local webhook


@attrs.frozen
class Reply:
    status: int = 204
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    hang: bool = False  # accept the request and never answer


@attrs.frozen
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.perf_counter()

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookServer:
    """HTTP/1.1 server (h11 on a Trio stream) answering from a script, then ``default``."""

    def __init__(self, *script: Reply, default: Reply = Reply()) -> None:
        self.script: deque[Reply] = deque(script)
        self.default = default
        self.received: list[Received] = []
        self.port = 0
        self._changed = trio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}?wait=true"

    async def start(self, nursery: trio.Nursery) -> WebhookServer:
        listeners = await nursery.start(partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1"))
        self.port = listeners[0].socket.getsockname()[1]
        return self

    async def wait_for(self, n: int, limit_s: float = 10.0) -> None:
        with trio.fail_after(limit_s):
            while len(self.received) < n:
                self._changed = trio.Event()
                await self._changed.wait()

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                assert request is not None
                self.received.append(Received(
                    path=request.target.decode(),
                    headers={k.decode().lower(): v.decode() for k, v in request.headers},
                    body=body, at=time.perf_counter()))
                self._changed.set()
                reply = self.script.popleft() if self.script else self.default
                if reply.hang:
                    await trio.sleep_forever()
                headers = [*reply.headers, ("Content-Length", str(len(reply.body)))]
                if reply.body:
                    headers.append(("Content-Type", "application/json"))
                for event in (h11.Response(status_code=reply.status, headers=headers),
                              h11.Data(data=reply.body), h11.EndOfMessage()):
                    await stream.send_all(conn.send(event) or b"")
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return


def dead_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything, including httpx/httpcore debug lines (another test may have raised them)."""
    for name in ("", "httpx", "httpcore", "engine"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_no_secret(text: str) -> None:
    assert TOKEN not in text
    assert "/api/webhooks" not in text
    assert "wait=true" not in text


# --------------------------------------------------------------------------------------------
# delivery


async def test_messages_arrive_in_order_with_discord_shape(
        nursery: trio.Nursery, logs: pytest.LogCaptureFixture) -> None:
    server = await WebhookServer().start(nursery)
    notifier = Notifier(cfg(), server.url, wall_clock=lambda: T_WALL)
    assert notifier.notify(KIND_CIRCUIT_BREAKER, "breaker open", "3 rejects in 10 s",
                           level="error", fields={"market": "xyz:GOLD", "rejects": "3"})
    assert notifier.notify(KIND_RECONNECT_STORM, "reconnect storm", "5 reconnects in 300 s")
    assert notifier.notify(KIND_DAILY_REPORT, "daily report 2026-01-01", "pnl +12.3",
                           level="info")
    nursery.start_soon(notifier.run)
    await server.wait_for(3)

    bodies = [r.json() for r in server.received]
    assert [b["embeds"][0]["title"] for b in bodies] == [
        "breaker open", "reconnect storm", "daily report 2026-01-01"]
    first = bodies[0]
    assert first["username"] == "engine-test"
    assert first["content"] == "**[ERROR] circuit_breaker**: breaker open"
    assert first["allowed_mentions"] == {"parse": []}
    embed = first["embeds"][0]
    assert embed["description"] == "3 rejects in 10 s"
    assert embed["color"] == LEVEL_COLORS["error"]
    assert embed["fields"] == [{"name": "market", "value": "xyz:GOLD", "inline": True},
                               {"name": "rejects", "value": "3", "inline": True}]
    assert datetime.fromisoformat(embed["timestamp"]).timestamp() == T_WALL
    assert bodies[1]["embeds"][0]["color"] == LEVEL_COLORS["warning"]
    assert bodies[2]["embeds"][0]["color"] == LEVEL_COLORS["info"]
    assert "fields" not in bodies[1]["embeds"][0]
    for r in server.received:
        assert r.path == f"{WEBHOOK_PATH}?wait=true"
        assert r.headers["content-type"] == "application/json"
    assert await notifier.drain(10.0) == 0  # waits until the sender is idle
    assert notifier.stats == attrs.evolve(notifier.stats, sent=3, failed=0, dropped=0,
                                          retries=0, queued=0)
    assert "notifications on: webhook 127.0.0.1" in logs.text
    assert_no_secret(logs.text)


async def test_critical_and_normal_items_keep_their_order(nursery: trio.Nursery) -> None:
    server = await WebhookServer().start(nursery)
    notifier = Notifier(cfg(), server.url)
    for kind, title in [(KIND_DAILY_REPORT, "n1"), (KIND_KILL, "K"), (KIND_CIRCUIT_BREAKER, "n2"),
                        (KIND_HARD_STOP, "H"), (KIND_RECONNECT_STORM, "n3")]:
        assert notifier.notify(kind, title, "")
    nursery.start_soon(notifier.run)
    await server.wait_for(5)
    assert [r.json()["embeds"][0]["title"] for r in server.received] == [
        "n1", "K", "n2", "H", "n3"]
    # an empty message leaves the description out rather than sending ""
    assert "description" not in server.received[0].json()["embeds"][0]


async def test_500_then_200_is_retried_and_delivered_once(nursery: trio.Nursery) -> None:
    server = await WebhookServer(Reply(500, body=b'{"message": "oops"}')).start(nursery)
    notifier = Notifier(cfg(), server.url)
    notifier.notify(KIND_KILL, "killed", "kill switch on")
    nursery.start_soon(notifier.run)
    await server.wait_for(2)
    await trio.sleep(0.2)  # nothing else may arrive
    assert len(server.received) == 2
    assert server.received[0].body == server.received[1].body
    assert notifier.stats.sent == 1
    assert notifier.stats.retries == 1
    assert notifier.stats.failed == 0


async def test_5xx_gives_up_after_max_attempts(
        nursery: trio.Nursery, logs: pytest.LogCaptureFixture) -> None:
    server = await WebhookServer(default=Reply(503)).start(nursery)
    notifier = Notifier(cfg(max_attempts=3), server.url)
    notifier.notify(KIND_CIRCUIT_BREAKER, "breaker", "x")
    nursery.start_soon(notifier.run)
    assert await notifier.drain(10.0) == 0  # waits until the sender is idle
    await trio.sleep(0.2)
    assert len(server.received) == 3
    assert (notifier.stats.sent, notifier.stats.retries) == (0, 2)
    assert "not delivered after 3 attempts (last: HTTP 503)" in logs.text
    assert_no_secret(logs.text)


@pytest.mark.parametrize("reply", [
    Reply(429, headers=(("Retry-After", "0.4"),)),
    Reply(429, body=b'{"message": "You are being rate limited.", "retry_after": 0.4, '
                    b'"global": false}'),
], ids=["header", "json"])
async def test_429_retry_after_is_honoured(nursery: trio.Nursery, reply: Reply) -> None:
    server = await WebhookServer(reply).start(nursery)
    # the backoff alone would retry after 5-10 ms
    notifier = Notifier(cfg(backoff_base_s=0.01), server.url)
    notifier.notify(KIND_HARD_STOP, "hard stop", "latched")
    nursery.start_soon(notifier.run)
    await server.wait_for(2)
    gap = server.received[1].at - server.received[0].at
    assert gap >= 0.35, gap
    assert gap < 5.0, gap
    assert await notifier.drain(10.0) == 0  # waits until the sender is idle
    assert notifier.stats.retries == 1


async def test_429_longer_than_backoff_max_is_capped(
        nursery: trio.Nursery, logs: pytest.LogCaptureFixture) -> None:
    server = await WebhookServer(Reply(429, headers=(("Retry-After", "3600"),))).start(nursery)
    notifier = Notifier(cfg(backoff_max_s=0.2), server.url)
    notifier.notify(KIND_DAILY_REPORT, "report", "x")
    nursery.start_soon(notifier.run)
    await server.wait_for(2, limit_s=5)
    assert "rate limited for 3600.0 s; retrying after 0.2 s" in logs.text


async def test_400_is_dropped_after_one_attempt_and_never_leaks_the_url(
        nursery: trio.Nursery, logs: pytest.LogCaptureFixture) -> None:
    # a server that echoes the token in its error must not get it into our logs either
    echo = json.dumps({"code": 50027, "message": f"Invalid Webhook Token {TOKEN}"}).encode()
    server = await WebhookServer(Reply(400, body=echo)).start(nursery)
    notifier = Notifier(cfg(), server.url)
    notifier.notify(KIND_CIRCUIT_BREAKER, "first", "rejected")
    notifier.notify(KIND_CIRCUIT_BREAKER, "second", "accepted")
    nursery.start_soon(notifier.run)
    await server.wait_for(2)
    assert await notifier.drain(10.0) == 0  # waits until the sender is idle
    await trio.sleep(0.1)
    assert [r.json()["embeds"][0]["title"] for r in server.received] == ["first", "second"]
    assert (notifier.stats.failed, notifier.stats.retries) == (1, 0)
    errors = [r.getMessage() for r in logs.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "webhook 127.0.0.1: HTTP 400 (code=50027, message=Invalid Webhook Token <redacted>)" \
        in errors[0]
    assert_no_secret(logs.text)
    assert TOKEN not in repr(notifier)


async def test_an_unexpected_error_drops_the_item_not_the_sender(
        nursery: trio.Nursery, logs: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = await WebhookServer().start(nursery)
    notifier = Notifier(cfg(), server.url)
    real_post = Notifier._post
    calls = 0

    async def buggy_post(self: Notifier, transport: Any, body: bytes) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError(f"bug while posting to {server.url}")
        return await real_post(self, transport, body)

    monkeypatch.setattr(Notifier, "_post", buggy_post)
    notifier.notify(KIND_CIRCUIT_BREAKER, "first", "")
    notifier.notify(KIND_CIRCUIT_BREAKER, "second", "")
    nursery.start_soon(notifier.run)
    await server.wait_for(1)
    assert await notifier.drain(5.0) == 0
    assert [r.json()["embeds"][0]["title"] for r in server.received] == ["second"]
    assert (notifier.stats.sent, notifier.stats.failed) == (1, 1)
    assert "unexpected RuntimeError delivering circuit_breaker notification" in logs.text
    assert_no_secret(logs.text)


# --------------------------------------------------------------------------------------------
# a dead webhook never delays trading


async def _trading_path(notifier: Notifier, duration_s: float) -> tuple[float, list[float]]:
    """Stands for the order path: every 1 ms 'send an order' and notify. Returns the largest
    gap between two iterations and every notify() duration (seconds)."""
    max_gap = 0.0
    notify_s: list[float] = []
    end = time.perf_counter() + duration_s
    last = time.perf_counter()
    i = 0
    while last < end:
        await trio.sleep(0.001)
        now = time.perf_counter()
        max_gap = max(max_gap, now - last)
        last = now
        i += 1
        t0 = time.perf_counter()
        notifier.notify(KIND_KILL if i % 10 == 0 else KIND_CIRCUIT_BREAKER, f"order {i}", "x")
        notify_s.append(time.perf_counter() - t0)
    return max_gap, notify_s


async def _assert_never_delays(notifier: Notifier, sender_stuck: trio.Event | None) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(notifier.run)
        if sender_stuck is not None:
            with trio.fail_after(5):
                await sender_stuck.wait()
        max_gap, notify_s = await _trading_path(notifier, 1.0)
        nursery.cancel_scope.cancel()
    # unloaded this is ~1-10 ms; a sender blocking the loop would stall it for a whole
    # request timeout (500 ms for the silent webhook) or its whole backoff chain (the dead
    # port: 100 attempts x 20-50 ms). 300 ms catches both and leaves room for a 2-core machine
    # under load (111 ms was seen with other suites running).
    assert max_gap < 0.3, f"trading path stalled {max_gap * 1000:.1f} ms"
    assert statistics.median(notify_s) < 100e-6, statistics.median(notify_s)
    assert max(notify_s) < 0.02, max(notify_s)
    assert notifier.stats.sent == 0
    assert notifier.stats.queued <= notifier.cfg.queue_size
    assert notifier.stats.dropped > 0


async def test_dead_port_never_delays_the_trading_path(logs: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{dead_port()}{WEBHOOK_PATH}"
    notifier = Notifier(cfg(queue_size=20, max_attempts=100, backoff_base_s=0.02,
                            backoff_max_s=0.05), url)
    await _assert_never_delays(notifier, None)
    assert notifier.stats.retries >= 5  # the sender kept failing and retrying meanwhile
    assert "ConnectError" in logs.text
    assert_no_secret(logs.text)


async def test_silent_webhook_never_delays_the_trading_path(
        nursery: trio.Nursery, logs: pytest.LogCaptureFixture) -> None:
    server = await WebhookServer(default=Reply(hang=True)).start(nursery)
    notifier = Notifier(cfg(queue_size=20, timeout_s=0.5, max_attempts=100), server.url)
    notifier.notify(KIND_HARD_STOP, "first", "x")
    stuck = trio.Event()

    async def watch() -> None:
        await server.wait_for(1)
        stuck.set()

    nursery.start_soon(watch)
    await _assert_never_delays(notifier, stuck)
    assert len(server.received) >= 2  # timed out and retried while trading went on
    assert "ReadTimeout after 0.5 s" in logs.text
    assert_no_secret(logs.text)


# --------------------------------------------------------------------------------------------
# the queue


async def test_queue_bound_drops_oldest_non_critical_and_keeps_critical(
        nursery: trio.Nursery, logs: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(cfg(queue_size=3), "https://discord.com" + WEBHOOK_PATH)
    assert notifier.notify(KIND_KILL, "K1", "")
    assert notifier.notify(KIND_CIRCUIT_BREAKER, "a", "")
    assert notifier.notify(KIND_CIRCUIT_BREAKER, "b", "")
    assert notifier.notify(KIND_CIRCUIT_BREAKER, "c", "")  # drops a
    assert notifier.notify(KIND_HARD_STOP, "H1", "")  # drops b
    assert notifier.notify(KIND_KILL, "K2", "")  # drops c
    assert notifier.stats.queued == 3
    assert not notifier.notify(KIND_DAILY_REPORT, "d", "")  # all critical: the new one goes
    assert not notifier.notify(KIND_KILL, "K3", "")
    assert notifier.stats.dropped == 5
    assert notifier.stats.queued == 3
    warnings = [r for r in logs.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert_no_secret(logs.text)

    # deliver what is kept, in order; then a new burst warns once more
    server = await WebhookServer().start(nursery)
    notifier._url = server.url  # same secret path, local server
    nursery.start_soon(notifier.run)
    await server.wait_for(3)
    assert [r.json()["embeds"][0]["title"] for r in server.received] == ["K1", "H1", "K2"]
    assert await notifier.drain(10.0) == 0  # waits until the sender is idle
    assert notifier.notify(KIND_CIRCUIT_BREAKER, "after", "")
    assert "1 dropped" not in logs.text
    assert "5 dropped in the last burst" in logs.text


async def test_queue_is_bounded_under_a_flood() -> None:
    notifier = Notifier(cfg(queue_size=10), "https://discord.com" + WEBHOOK_PATH)
    for i in range(1000):
        notifier.notify(KIND_KILL if i < 3 else KIND_CIRCUIT_BREAKER, f"m{i}", "")
    assert notifier.stats.queued == 10
    assert notifier.stats.dropped == 990
    kept = [notifier._pop() for _ in range(10)]
    titles = [item.title for item in kept if item is not None]
    assert titles == ["m0", "m1", "m2", *[f"m{i}" for i in range(993, 1000)]]


# --------------------------------------------------------------------------------------------
# stop and drain


async def test_cancel_mid_request_stops_promptly_and_drain_delivers_the_kill(
        nursery: trio.Nursery) -> None:
    server = await WebhookServer(Reply(hang=True)).start(nursery)
    notifier = Notifier(cfg(timeout_s=30.0), server.url)
    notifier.notify(KIND_KILL, "killed", "kill switch on; flattening")
    async with trio.open_nursery() as inner:
        inner.start_soon(notifier.run)
        await server.wait_for(1)
        t0 = time.perf_counter()
        inner.cancel_scope.cancel()
    assert time.perf_counter() - t0 < 1.0
    assert notifier.stats.queued == 1  # the in-flight kill message was kept

    with trio.CancelScope() as shutdown:
        shutdown.cancel()  # as on engine shutdown: drain is shielded and bounded
        left = await notifier.drain(5.0)
    assert left == 0
    assert len(server.received) == 2
    assert server.received[1].json()["embeds"][0]["title"] == "killed"
    assert notifier.stats.sent == 1


async def test_drain_waits_for_a_running_sender(nursery: trio.Nursery) -> None:
    server = await WebhookServer().start(nursery)
    notifier = Notifier(cfg(), server.url)
    nursery.start_soon(notifier.run)
    for i in range(5):
        notifier.notify(KIND_CIRCUIT_BREAKER, f"m{i}", "")
    assert await notifier.drain(5.0) == 0
    assert len(server.received) == 5
    assert notifier.stats.sent == 5


async def test_drain_is_bounded_when_the_webhook_is_dead(
        logs: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{dead_port()}{WEBHOOK_PATH}"
    notifier = Notifier(cfg(max_attempts=1000, backoff_base_s=0.05), url)
    notifier.notify(KIND_KILL, "killed", "")
    notifier.notify(KIND_DAILY_REPORT, "report", "")
    t0 = time.perf_counter()
    left = await notifier.drain(0.3)
    assert time.perf_counter() - t0 < 2.0
    assert left == 2
    assert "2 not delivered within the 0.3 s drain bound (webhook 127.0.0.1)" in logs.text
    assert_no_secret(logs.text)


# --------------------------------------------------------------------------------------------
# disabled, config, bad input


async def test_disabled_notifier_discards_and_says_so_once(
        nursery: trio.Nursery, logs: pytest.LogCaptureFixture) -> None:
    server = await WebhookServer().start(nursery)
    for notifier in (Notifier(cfg(enabled=False), server.url), Notifier(cfg(), None)):
        assert not notifier.enabled
        assert not notifier.notify(KIND_KILL, "killed", "x")
        assert notifier.stats.queued == 0
        with trio.fail_after(1):
            await notifier.run()  # returns at once
        assert await notifier.drain(1.0) == 0
    await trio.sleep(0.1)
    assert server.received == []
    off = [r for r in logs.records if "notifications are off" in r.getMessage()]
    assert [r.levelno for r in off] == [logging.INFO, logging.INFO]
    assert "disabled in [notify]" in off[0].getMessage()
    assert "ENGINE_WEBHOOK_URL" in off[1].getMessage()
    assert_no_secret(logs.text)


async def test_from_config_reads_the_credential_without_logging_it(
        tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    url = "https://discord.com" + WEBHOOK_PATH
    n = Notifier.from_config(cfg(), {"ENGINE_WEBHOOK_URL": f"  {url}\n"})
    assert n.enabled and n.host == "discord.com"
    assert "webhook discord.com (URL from environment variable ENGINE_WEBHOOK_URL)" in logs.text

    (tmp_path / "webhook_url").write_text(url + "\n")
    n = Notifier.from_config(cfg(), {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert n.enabled
    assert "URL from $CREDENTIALS_DIRECTORY/webhook_url" in logs.text

    assert not Notifier.from_config(cfg(), {}).enabled
    for bad in (f"ftp://discord.com{WEBHOOK_PATH}", f"discord.com{WEBHOOK_PATH}",
                f"https://discord.com:99999{WEBHOOK_PATH}", "   "):
        with pytest.raises(SecretsError) as err:
            Notifier.from_config(cfg(), {"ENGINE_WEBHOOK_URL": bad})
        assert "ENGINE_WEBHOOK_URL" in str(err.value)
        assert TOKEN not in str(err.value)
        with pytest.raises(ValueError) as verr:
            Notifier(cfg(), bad)
        assert TOKEN not in str(verr.value)
    assert_no_secret(logs.text)


async def test_bad_input_is_logged_once_and_never_raises(
        nursery: trio.Nursery, logs: pytest.LogCaptureFixture) -> None:
    server = await WebhookServer().start(nursery)
    notifier = Notifier(cfg(repeat_window_s=0.0), server.url)
    assert notifier.notify(KIND_CIRCUIT_BREAKER, "t", "m", level="loud")
    assert notifier.notify(KIND_CIRCUIT_BREAKER, "t", "m", level="loud")
    assert notifier.notify(KIND_CIRCUIT_BREAKER, 42, None, fields={"n": 1.5})  # type: ignore[arg-type, dict-item]
    assert notifier.notify(KIND_CIRCUIT_BREAKER, "t", "m", fields=["x"])  # type: ignore[arg-type]
    nursery.start_soon(notifier.run)
    await server.wait_for(4)
    bodies = [r.json()["embeds"][0] for r in server.received]
    assert bodies[0]["color"] == LEVEL_COLORS["warning"]
    assert (bodies[2]["title"], bodies[2]["description"]) == ("42", "None")
    assert bodies[2]["fields"] == [{"name": "n", "value": "1.5", "inline": True}]
    assert "fields" not in bodies[3]
    level_warnings = [r for r in logs.records if "unknown level 'loud'" in r.getMessage()]
    assert len(level_warnings) == 1 and level_warnings[0].levelno == logging.WARNING
    assert "fields must be a mapping, got list" in logs.text


# --------------------------------------------------------------------------------------------
# Discord limits


def _item(title: str = "t", message: str = "m", fields: tuple[tuple[str, str], ...] = (),
          kind: str = KIND_DAILY_REPORT, level: str = "info") -> Notification:
    return Notification(kind=kind, title=title, message=message, level=level, fields=fields,
                        ts=T_WALL, seq=1)


def _embed_total(embed: dict[str, Any]) -> int:
    total = utf16_len(embed["title"]) + utf16_len(embed.get("description", ""))
    total += sum(utf16_len(f["name"]) + utf16_len(f["value"]) for f in embed.get("fields", []))
    return total + utf16_len(embed.get("footer", {}).get("text", ""))


def test_truncate() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) == "ab…"
    assert truncate("", 5) == ""
    cut = truncate("😀" * 10, 6)  # each emoji is 2 UTF-16 units: never split one
    assert cut == "😀😀…"
    assert utf16_len(cut) <= 6


def test_payload_respects_every_discord_limit() -> None:
    fields = tuple((f"name{i}" * 100, "v" * 5000) for i in range(40))
    payload = build_payload(_item("T" * 1000, "D" * 10000, fields), "u" * 200)
    embed = payload["embeds"][0]  # type: ignore[index]
    assert len(payload["content"]) <= MAX_CONTENT  # type: ignore[arg-type]
    assert len(payload["username"]) <= 80  # type: ignore[arg-type]
    assert len(embed["title"]) == MAX_TITLE and embed["title"].endswith("…")
    assert len(embed["description"]) <= MAX_DESCRIPTION
    assert embed["description"].endswith("…")
    assert len(embed["fields"]) <= MAX_FIELDS
    for f in embed["fields"]:
        assert len(f["name"]) <= MAX_FIELD_NAME and len(f["value"]) <= MAX_FIELD_VALUE
        assert f["value"].endswith("…")
    assert _embed_total(embed) <= MAX_EMBED_TOTAL
    assert "more field(s) omitted" in embed["footer"]["text"]


def test_payload_limits_count_utf16_and_fill_empty_values() -> None:
    payload = build_payload(_item("", "😀" * 3000, (("", ""),), kind=KIND_KILL), "")
    embed = payload["embeds"][0]  # type: ignore[index]
    assert utf16_len(embed["description"]) <= MAX_DESCRIPTION
    embed["description"].encode("utf-8")  # no lone surrogate
    assert embed["title"] == KIND_KILL  # an empty title falls back to the kind
    assert embed["fields"] == [{"name": "-", "value": "-", "inline": True}]
    assert payload["username"] == "-"
    short = build_payload(_item("x", "y", tuple((str(i), "v") for i in range(30))), "u")
    assert len(short["embeds"][0]["fields"]) == MAX_FIELDS  # type: ignore[index]


async def test_truncated_payload_is_delivered(nursery: trio.Nursery) -> None:
    server = await WebhookServer().start(nursery)
    notifier = Notifier(cfg(), server.url)
    notifier.notify(KIND_DAILY_REPORT, "R" * 300, "line\n" * 2000,
                    fields={f"k{i}": "v" * 2000 for i in range(30)})
    nursery.start_soon(notifier.run)
    await server.wait_for(1)
    embed = server.received[0].json()["embeds"][0]
    assert len(embed["title"]) == MAX_TITLE
    assert len(embed["fields"]) <= MAX_FIELDS
    assert _embed_total(embed) <= MAX_EMBED_TOTAL


# --------------------------------------------------------------------------------------------
# backoff and reconnect storms


def test_backoff_doubles_with_jitter_up_to_the_max() -> None:
    notifier = Notifier(cfg(backoff_base_s=1.0, backoff_max_s=10.0), None,
                        rng=random.Random(7))
    for attempt, nominal in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        delays = {notifier.backoff_s(attempt) for _ in range(50)}
        assert all(nominal / 2 <= d <= nominal for d in delays), (attempt, delays)
        assert len(delays) > 1  # jittered


def test_reconnect_storm_is_one_notification_per_storm() -> None:
    det = ReconnectStormDetector(count=3, window_s=10.0)
    assert [det.on_reconnect(t) for t in (0.0, 1.0)] == [False, False]
    assert det.on_reconnect(2.0)
    assert det.storming
    # the storm goes on: reconnects every 5 s keep the window busy, no second notification
    assert not any(det.on_reconnect(2.0 + 5 * k) for k in range(1, 20))
    # the window clears (nothing for 10 s); a new storm notifies again
    assert not det.on_reconnect(200.0)
    assert not det.storming
    assert not det.on_reconnect(201.0)
    assert det.on_reconnect(202.0)
    # slow reconnects never make a storm
    slow = ReconnectStormDetector.from_config(cfg(reconnect_storm_count=3,
                                                  reconnect_storm_window_s=10.0))
    assert not any(slow.on_reconnect(6.0 * k) for k in range(50))
    with pytest.raises(ValueError):
        ReconnectStormDetector(0, 10.0)
    with pytest.raises(ValueError):
        ReconnectStormDetector(3, 0.0)


# --------------------------------------------------------------------------------------------
# repeats (issue 9 item 7)


def test_repeats_within_the_window_are_held_back_and_counted() -> None:
    """The same kind and title again within ``repeat_window_s`` never reaches the webhook
    queue; the next one after the window says how many were held back. Hard stop, kill and
    circuit-breaker trips (each latches) always go."""
    now = [T_WALL]
    notifier = Notifier(cfg(queue_size=1000, repeat_window_s=60.0),
                        "https://discord.com" + WEBHOOK_PATH, wall_clock=lambda: now[0])
    for i in range(500):  # a condition re-raised every housekeeping tick for 50 s
        notifier.notify("flatten_no_price", "flatten no price", f"tick {i}", level="error")
        now[0] += 0.1
    assert notifier.queued == 1 and notifier.stats.suppressed == 499
    assert notifier.notify("flatten_rounding", "flatten rounding", "")  # its own key
    assert notifier.notify(KIND_CIRCUIT_BREAKER, "circuit breaker", "drawdown")
    assert notifier.notify(KIND_CIRCUIT_BREAKER, "circuit breaker", "daily_loss")  # latches
    assert notifier.notify(KIND_HARD_STOP, "hard stop", "a")
    assert notifier.notify(KIND_HARD_STOP, "hard stop", "b")  # critical: never held back
    now[0] += 11.0  # 61 s after the first
    assert notifier.notify("flatten_no_price", "flatten no price", "again", level="error")
    items = [notifier._pop() for _ in range(notifier.queued)]
    msgs = [it.message for it in items if it is not None and it.kind == "flatten_no_price"]
    assert msgs == ["tick 0", "again (+499 more like this held back in the last 60 s)"]
    assert notifier.stats.suppressed == 499


def test_repeat_window_zero_sends_every_one() -> None:
    notifier = Notifier(cfg(repeat_window_s=0.0), "https://discord.com" + WEBHOOK_PATH)
    for _ in range(5):
        assert notifier.notify(KIND_CIRCUIT_BREAKER, "t", "m")
    assert notifier.queued == 5 and notifier.stats.suppressed == 0
