"""Operations end to end: the real engine with its ops service against the real simulator —
systemd notify (READY/WATCHDOG/STOPPING) over a fake NOTIFY_SOCKET, the loopback ops endpoint,
POST /kill, and webhook notifications to a local HTTP server; no secret in any log line."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trio

from engine.trading_app import TradingApp

from .harness import PAPER_HOLDING, records, running, wait_for

PAPER = {**PAPER_HOLDING, "ops": {"health_max_data_age_s": 1.5, "kill_flat_timeout_s": 10.0}}

TOKEN = "test-ops-token-5b0c1f0e9d"
HOOK_PATH = "/api/webhooks/123/SECRETwebhookTOKENvalue"


class FakeNotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.path = path
        self.messages: list[tuple[float, str]] = []

    async def bind(self) -> None:
        await self.sock.bind(str(self.path))

    async def run(self) -> None:
        while True:
            data = await self.sock.recv(65536)
            for line in data.decode().splitlines():
                self.messages.append((trio.current_time(), line))

    def times(self, line: str) -> list[float]:
        return [t for t, m in self.messages if m == line]


class Webhook:
    """A local HTTP server that records every POST body (Discord-compatible JSON)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.port = 0

    async def serve(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._conn, listeners)

    async def _conn(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = b""
        target = b""
        with trio.move_on_after(10):
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                    continue
                if isinstance(ev, h11.Request):
                    target = ev.target
                elif isinstance(ev, h11.Data):
                    body += ev.data
                elif isinstance(ev, h11.EndOfMessage):
                    self.paths.append(target.decode())
                    self.bodies.append(json.loads(body))
                    await stream.send_all(conn.send(h11.Response(
                        status_code=204, headers=[("content-length", "0")])))
                    await stream.send_all(conn.send(h11.EndOfMessage()))
                    conn.start_next_cycle()
                    body = b""
                elif isinstance(ev, h11.ConnectionClosed):
                    return


async def _get(url: str, **kw: Any) -> httpx.Response:
    return await trio.to_thread.run_sync(lambda: httpx.get(url, timeout=5.0, **kw))


async def _post(url: str, **kw: Any) -> httpx.Response:
    return await trio.to_thread.run_sync(lambda: httpx.post(url, timeout=5.0, **kw))


async def test_ready_then_watchdog_only_while_healthy(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNotifySocket(tmp_path / "notify.sock")
    await fake.bind()
    monkeypatch.setenv("NOTIFY_SOCKET", str(fake.path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # WATCHDOG=1 every 0.2 s while healthy
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fake.run)
        async with running(tmp_path, config=PAPER, app_cls=TradingApp) as (sim, app):
            await wait_for(lambda: fake.times("READY=1") != [], 15, "READY=1")
            assert len(fake.times("READY=1")) == 1
            assert app.is_ready()  # READY=1 is only sent once the engine is READY
            await wait_for(lambda: len(fake.times("WATCHDOG=1")) >= 3, 5, "watchdog pings")
            # the simulator stalls one market: its data ages past the health bound
            sim.stall("xyz:GOLD", "both")
            await wait_for(lambda: app.ops.last_health is not None
                           and not app.ops.last_health.healthy, 10, "unhealthy")
            await trio.sleep(0.3)
            stalled_at = trio.current_time()
            await trio.sleep(1.0)
            assert [t for t in fake.times("WATCHDOG=1") if t > stalled_at] == []
            r = await _get(f"http://127.0.0.1:{app.ops.http_port}/health")
            assert r.status_code == 503 and any("xyz:GOLD" in p or "data" in p
                                                for p in r.json()["problems"])
            sim.unstall("xyz:GOLD")
            resumed = trio.current_time()
            await wait_for(lambda: [t for t in fake.times("WATCHDOG=1") if t > resumed] != [],
                           10, "watchdog pings after recovery")
        assert any(m.startswith("STOPPING=1") for _, m in fake.messages)
        nursery.cancel_scope.cancel()


async def test_ops_endpoint_kill_and_notifications(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    hook = Webhook()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(hook.serve)
        monkeypatch.setenv("ENGINE_OPS_TOKEN", TOKEN)
        monkeypatch.setenv("ENGINE_WEBHOOK_URL", f"http://127.0.0.1:{port}{HOOK_PATH}")
        async with running(tmp_path, config=PAPER, sim={"aligned": True},
                           app_cls=TradingApp) as (sim, app):
            await wait_for(lambda: app.is_ready(), 15, "READY")
            base = f"http://127.0.0.1:{app.ops.http_port}"
            await wait_for(lambda: app.ops.health().healthy, 10, "healthy")
            r = await _get(base + "/health")
            assert r.status_code == 200 and r.json()["healthy"] is True
            metrics = (await _get(base + "/metrics")).text
            assert "engine_ready 1" in metrics and 'engine_frames_total{channel="bbo"}' in metrics
            status = (await _get(base + "/status")).json()
            assert status["mode"] == "paper" and status["ready"] is True
            sim.force_dislocation("xyz:TSLA", "sell", 40, lag_ms=1200)
            await wait_for(lambda: app.trading.open_positions() >= 1, 10, "an open position")
            status = (await _get(base + "/status")).json()
            assert status["positions"] and status["entries"] >= 1
            metrics = (await _get(base + "/metrics")).text
            assert "engine_decision_to_order_sent_seconds_count" in metrics
            # the operator's status command reads the same endpoint
            env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE__")}
            env.update({"ENGINE__OPS__HTTP_PORT": str(app.ops.http_port),
                        "ENGINE__RECORDS__DIR": str(tmp_path / "data")})
            with trio.fail_after(60):
                r = await trio.run_process([sys.executable, "-m", "engine", "status", "--json"],
                                           env=env, capture_stdout=True, check=False)
            assert r.returncode == 0, r.stdout
            assert json.loads(r.stdout)["positions"]
            # the daily job (the service runs it at [report] run_at_utc): report + webhook
            day = dt.datetime.fromtimestamp(app.clock() / 1000, dt.UTC).date()
            await app.ops.run_daily(day)
            assert (tmp_path / "data" / "reports" / f"report_{day}.md").exists()
            await wait_for(lambda: any("Daily report" in json.dumps(b) for b in hook.bodies),
                           10, "the daily report notification")
            # a day without records: no report, a warning, no notification
            empty = day - dt.timedelta(days=30)
            await app.ops.run_daily(empty)
            assert not (tmp_path / "data" / "reports" / f"report_{empty}.md").exists()
            assert any(f"daily report for {empty}: no records" in r.getMessage()
                       for r in caplog.records)
            assert not any(f"Daily report {empty}" in json.dumps(b) for b in hook.bodies)
            # kill needs the token
            assert (await _post(base + "/kill")).status_code == 401
            bad = await _post(base + "/kill", headers={"Authorization": "Bearer wrong"})
            assert bad.status_code == 401
            ok = await _post(base + "/kill", headers={"Authorization": f"Bearer {TOKEN}"},
                             json={"reason": "test says stop"})
            assert ok.status_code == 200, ok.text
            await wait_for(lambda: getattr(app, "returned", None) is not None, 20,
                           "the engine to stop after POST /kill")
            assert app.returned == 0 and app.trading.flat() and app.trading.killed
            assert (tmp_path / "data" / "KILL").exists()  # a restart will not trade
        await wait_for(lambda: any("stopping" in json.dumps(b) for b in hook.bodies), 10,
                       "the kill notification at the webhook")
        nursery.cancel_scope.cancel()
    assert all(p == HOOK_PATH for p in hook.paths)
    trades = records(tmp_path, "trades")
    assert trades and trades[-1]["exit_reason"] == "kill"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert TOKEN not in text and "SECRETwebhookTOKENvalue" not in text


async def test_status_command_when_no_engine_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE__")}
    env["ENGINE__OPS__HTTP_PORT"] = "1"  # nothing listens there
    with trio.fail_after(60):
        r = await trio.run_process([sys.executable, "-m", "engine", "status"], env=env,
                                   capture_stdout=True, check=False)
    assert r.returncode == 3 and b"not running" in r.stdout


async def test_a_dead_webhook_never_delays_an_order(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The webhook accepts connections and never answers; notifications pile up (a flood of
    them, plus the kill switch's): entries and exits still go out at once."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    held: list[trio.SocketStream] = []

    async def black_hole(stream: trio.SocketStream) -> None:
        held.append(stream)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, black_hole, listeners)
        monkeypatch.setenv("ENGINE_WEBHOOK_URL", f"http://127.0.0.1:{port}/hook")
        async with running(tmp_path, config=PAPER, sim={"aligned": True},
                           app_cls=TradingApp) as (sim, app):
            await wait_for(lambda: app.is_ready(), 15, "READY")
            for i in range(500):  # far more than the queue holds
                app.ops.notifier.notify("test", f"flood {i}", "x", level="error")
            await wait_for(lambda: held != [], 10, "the sender stuck on the dead webhook")
            hist = app.ops.metrics.decision_to_order_sent
            sim.force_dislocation("xyz:TSLA", "sell", 40, lag_ms=1200)
            await wait_for(lambda: app.trading.open_positions() >= 1, 10, "an open position")
            assert hist.count >= 1
            assert hist.sum / hist.count < 0.05  # decision → sent stays sub-50 ms
            assert app.ops.notifier.stats.dropped > 0  # bounded queue, not unbounded memory
        assert app.returned == 0 and app.trading.flat()  # the kill path did not wait on it
        nursery.cancel_scope.cancel()
