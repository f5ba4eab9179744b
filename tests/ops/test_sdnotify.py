"""sd_notify against a real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from engine.ops.health import HealthReport
from engine.ops.sdnotify import (
    SdNotifier,
    parse_notify_address,
    run_watchdog,
    send_ready,
    watchdog_interval_s,
)

HEALTHY = HealthReport(healthy=True, problems=())
SICK = HealthReport(healthy=False, problems=("market data 12.3 s old (bound 10 s)",))


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: AF_UNIX paths are limited to 107 bytes, pytest's tmp_path may not be."""
    d = Path(tempfile.mkdtemp(prefix="sdn", dir="/tmp"))
    try:
        yield d
    finally:
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET: a bound datagram socket, read without blocking."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)

    def drain(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(65536).decode("utf-8"))
            except BlockingIOError:
                return out

    async def receive(self) -> str:
        """The next datagram (exactly one must be pending once the socket is readable)."""
        with trio.fail_after(10):
            await trio.lowlevel.wait_readable(self.sock)
        got = self.drain()
        assert len(got) == 1, got
        return got[0]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fake_systemd(short_dir: Path) -> Iterator[tuple[FakeSystemd, str]]:
    path = str(short_dir / "notify")
    fake = FakeSystemd(path)
    try:
        yield fake, path
    finally:
        fake.close()


def test_disabled_without_notify_socket() -> None:
    n = SdNotifier.from_env({})
    assert not n.enabled
    assert n.ready("x") is False and n.watchdog() is False and n.stopping() is False
    assert n.status("s") is False and n.extend_timeout(10) is False
    assert (n.sent, n.errors) == (0, 0)


async def test_path_socket_receives_every_message(fake_systemd: tuple[FakeSystemd, str]) -> None:
    fake, path = fake_systemd
    n = SdNotifier.from_env({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("READY: 40 markets\nreconciled")
    assert await fake.receive() == "READY=1\nSTATUS=READY: 40 markets reconciled"
    assert n.ready("again")  # READY=1 goes out once; later calls only update the status
    assert await fake.receive() == "STATUS=again"
    assert n.watchdog()
    assert await fake.receive() == "WATCHDOG=1"
    assert n.extend_timeout(30_000_000)
    assert await fake.receive() == "EXTEND_TIMEOUT_USEC=30000000"
    assert n.stopping("flattening")
    assert await fake.receive() == "STOPPING=1\nSTATUS=flattening"
    assert (n.sent, n.errors) == (5, 0)
    n.close()


async def test_abstract_socket() -> None:
    name = f"engine-test-{secrets.token_hex(8)}"
    fake = FakeSystemd(b"\0" + name.encode())
    try:
        n = SdNotifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert n.enabled and n.ready("up")
        assert await fake.receive() == "READY=1\nSTATUS=up"
        assert n.watchdog()
        assert await fake.receive() == "WATCHDOG=1"
        n.close()
    finally:
        fake.close()


@pytest.mark.parametrize("value", ["relative/path", "@", "vsock:2:1234", "/" + "x" * 200])
def test_unusable_notify_socket_is_disabled_and_logged(
        value: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "engine.ops.sdnotify")
    n = SdNotifier.from_env({"NOTIFY_SOCKET": value})
    assert not n.enabled and n.watchdog() is False
    assert "NOTIFY_SOCKET" in caplog.text and "disabled" in caplog.text
    with pytest.raises(ValueError):
        parse_notify_address(value)


def test_send_failure_is_counted_and_logged_once(
        short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "engine.ops.sdnotify")
    n = SdNotifier.from_env({"NOTIFY_SOCKET": str(short_dir / "nobody-listens")})
    assert n.enabled
    assert n.watchdog() is False and n.status("x") is False and n.ready() is False
    assert n.errors == 3 and n.sent == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "systemd notification failed" in warnings[0].getMessage()
    assert not n.ready_sent  # a failed READY=1 is retried by the next ready()


async def test_status_never_carries_a_key(fake_systemd: tuple[FakeSystemd, str]) -> None:
    fake, path = fake_systemd
    n = SdNotifier.from_env({"NOTIFY_SOCKET": path})
    assert n.status("loaded 0x" + "ab" * 32)
    assert await fake.receive() == "STATUS=loaded <redacted>"


def test_extend_timeout_rejects_bad_values(fake_systemd: tuple[FakeSystemd, str],
                                           caplog: pytest.LogCaptureFixture) -> None:
    fake, path = fake_systemd
    n = SdNotifier.from_env({"NOTIFY_SOCKET": path})
    for bad in (0, -5, 1.5, True):
        assert n.extend_timeout(bad) is False  # type: ignore[arg-type]
    assert fake.drain() == []
    assert caplog.text.count("extend_timeout") == 4


def test_watchdog_interval() -> None:
    me = str(os.getpid())
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": me}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None


@pytest.mark.parametrize("env", [{"WATCHDOG_USEC": "soon"}, {"WATCHDOG_USEC": "0"},
                                 {"WATCHDOG_USEC": "-5"},
                                 {"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "me"}])
def test_watchdog_interval_malformed(env: dict[str, str],
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "engine.ops.sdnotify")
    assert watchdog_interval_s(env) is None
    assert "watchdog disabled" in caplog.text


class Health:
    """A switchable health source that counts evaluations."""

    def __init__(self) -> None:
        self.report = HEALTHY
        self.calls = 0
        self._target = 0
        self._reached = trio.Event()

    def __call__(self) -> HealthReport:
        self.calls += 1
        if self.calls >= self._target:
            self._reached.set()
        return self.report

    async def ticks(self, n: int) -> None:
        """Wait until ``n`` more evaluations happened. The watchdog task sends right after
        evaluating, before it sleeps, so every datagram of those ticks is already queued."""
        self._target = self.calls + n
        self._reached = trio.Event()
        with trio.fail_after(10):
            await self._reached.wait()


async def test_watchdog_only_while_healthy(fake_systemd: tuple[FakeSystemd, str],
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "engine.ops.sdnotify")
    fake, path = fake_systemd
    n = SdNotifier.from_env({"NOTIFY_SOCKET": path})
    health = Health()
    changes: list[HealthReport] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run_watchdog(n, health, 0.01,
                                                on_unhealthy_change=changes.append))
        await health.ticks(4)
        healthy_msgs = fake.drain()
        assert healthy_msgs.count("WATCHDOG=1") >= 3
        assert "STATUS=healthy" in healthy_msgs

        health.report = SICK
        await health.ticks(2)  # the evaluation in flight may still have seen HEALTHY
        transition = fake.drain()
        await health.ticks(5)
        sick_msgs = fake.drain()
        assert "WATCHDOG=1" not in sick_msgs, sick_msgs
        assert ("STATUS=unhealthy: market data 12.3 s old (bound 10 s)"
                in transition + sick_msgs)
        assert changes == [SICK]
        assert any(r.levelno == logging.WARNING and "health lost" in r.getMessage()
                   and "12.3 s old" in r.getMessage() for r in caplog.records)

        health.report = HEALTHY
        await health.ticks(4)
        resumed = fake.drain()
        assert resumed.count("WATCHDOG=1") >= 2
        assert "STATUS=healthy" in resumed
        assert changes == [SICK, HEALTHY]
        assert any(r.levelno == logging.INFO and "health regained" in r.getMessage()
                   and "12.3 s old" in r.getMessage() for r in caplog.records)
        nursery.cancel_scope.cancel()
    assert caplog.text.count("health lost") == 1


async def test_status_shows_problems_and_notes(fake_systemd: tuple[FakeSystemd, str]) -> None:
    fake, path = fake_systemd
    n = SdNotifier.from_env({"NOTIFY_SOCKET": path})
    health = Health()
    health.report = HealthReport(healthy=False, problems=("not READY (paper)",
                                                          "market data feed disconnected"),
                                 notes=("kill switch on",))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_watchdog, n, health, 0.01)
        await health.ticks(3)
        nursery.cancel_scope.cancel()
    msgs = fake.drain()
    assert msgs.count("STATUS=unhealthy: not READY (paper); market data feed disconnected; "
                      "kill switch on") == 1  # sent when it changes, not every tick
    assert "WATCHDOG=1" not in msgs


async def test_watchdog_stops_cleanly_on_cancel(fake_systemd: tuple[FakeSystemd, str]) -> None:
    fake, path = fake_systemd
    n = SdNotifier.from_env({"NOTIFY_SOCKET": path})
    health = Health()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_watchdog, n, health, 3600.0)  # parked in its sleep
            await health.ticks(1)
            nursery.cancel_scope.cancel()
    assert health.calls == 1
    assert fake.drain() == ["WATCHDOG=1", "STATUS=healthy"]


async def test_watchdog_without_notify_socket_still_reports(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "engine.ops.sdnotify")
    health = Health()
    health.report = SICK
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_watchdog, SdNotifier(None), health, 0.01)
        await health.ticks(2)
        nursery.cancel_scope.cancel()
    assert "health lost" in caplog.text


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan"), float("inf")])
async def test_watchdog_rejects_bad_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        await run_watchdog(SdNotifier(None), Health(), interval)


async def test_ready_is_retried_until_it_leaves(short_dir: Path, caplog) -> None:
    """The first READY=1 fails (nothing listens yet): it is sent again until it arrives, with
    one warning for the failures, and READY=1 arrives exactly once."""
    path = str(short_dir / "late")
    n = SdNotifier.from_env({"NOTIFY_SOCKET": path})
    fake: FakeSystemd | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_ready, n, "READY: late", 0.05)
            await trio.sleep(0.3)
            assert not n.ready_sent and n.errors >= 2
            fake = FakeSystemd(path)
        assert n.ready_sent
        assert fake.drain() == ["READY=1\nSTATUS=READY: late"]
        assert caplog.text.count("systemd notification failed") == 1
    finally:
        if fake is not None:
            fake.close()
        n.close()


async def test_send_ready_returns_at_once_without_systemd() -> None:
    n = SdNotifier.from_env({})
    with trio.fail_after(1):
        await send_ready(n, "x")
    assert not n.ready_sent
