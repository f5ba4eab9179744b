"""The operations side of one engine run, wired to the app: owns the systemd notifier and
watchdog, the health rule's inputs, the metrics registry and its scrape-time collector, the
loopback ops endpoint, webhook notifications and the daily report + retention task.

The app calls in at a few points (all cheap and synchronous unless marked):

* :meth:`OpsService.start` (async, once the core is built) starts the tasks in the app's root
  nursery: ops HTTP, notifier, event-loop lag monitor, READY watcher (then the watchdog), daily
  job;
* :meth:`on_alert` for every core alert (hard stop, breakers, kill … become notifications);
* :meth:`on_order_record` for every order journal record (latency histograms, off the hot
  path: records are handled after the orders left);
* :meth:`on_stop` when a graceful stop starts (``STOPPING=1``, a kill notification);
* :meth:`close` (async, shielded and bounded) after the nursery ended: queued notifications are
  delivered within a few seconds.

Nothing here can stop trading: a failing collector, webhook or report is logged and counted.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from engine import __version__
from engine.logs import register_secret
from engine.ops.dashboard import Dashboard, load_pages
from engine.ops.health import HealthReport, evaluate_health
from engine.ops.host import OpsHost
from engine.ops.http import OpsHandlers, OpsServer
from engine.ops.metrics import EngineMetrics, run_loop_lag_monitor
from engine.ops.notify import (
    KIND_CIRCUIT_BREAKER,
    KIND_DAILY_REPORT,
    KIND_HARD_STOP,
    KIND_KILL,
    KIND_RECONNECT_STORM,
    Notifier,
    ReconnectStormDetector,
)
from engine.ops.paths import write_request
from engine.ops.sdnotify import SdNotifier, run_watchdog, send_ready, watchdog_interval_s
from engine.secrets import SecretsError, load_credential

if TYPE_CHECKING:
    from engine.core.intents import Alert
    from engine.ops.report import DayReport

log = logging.getLogger("engine.ops")

# alert code -> notification kind (alerts not listed notify only at level error/critical)
_ALERT_KINDS = {"hard_stop": KIND_HARD_STOP, "kill": KIND_KILL,
                "circuit_breaker": KIND_CIRCUIT_BREAKER, "hard_stop_reset": KIND_HARD_STOP}
_ACK_EVENTS = frozenset({"ack_resting", "fill_partial", "fill_complete", "reject", "expire",
                         "cancel_confirmed"})


class OpsService:
    """See the module docstring. Built by the app before any connection (config errors in
    the ops credentials exit 2 like any config error)."""

    def __init__(self, app: OpsHost, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.app = app
        self.cfg = app.cfg
        self.env = env
        self.metrics = EngineMetrics(version=__version__, mode=self.cfg.mode)
        self.metrics.registry.add_collector(self._collect)
        self.sd = SdNotifier.from_env(env)
        for name, var in (("ops_token", "ENGINE_OPS_TOKEN"), ("webhook_url",
                                                              "ENGINE_WEBHOOK_URL")):
            found = load_credential(name, var, env)  # SecretsError: the caller exits 2
            if found is not None:
                register_secret(found[0])
        self.notifier = Notifier.from_config(self.cfg.notify, env)
        self.storm = ReconnectStormDetector.from_config(self.cfg.notify)
        self.server: OpsServer | None = None
        self.dashboard: Dashboard | None = None
        if self.cfg.ops.http_enabled:
            self.dashboard = Dashboard(app, self.status, self.metrics.registry.render)
            handlers = OpsHandlers(health=self._http_health, metrics=self.metrics.registry.render,
                                   status=self.status, kill=self._http_kill,
                                   reset_hard_stop=self._http_reset, flatten=self._http_flatten,
                                   pages=load_pages(), events=self.dashboard.hub)
            self.server = OpsServer.from_config(self.cfg.ops, handlers, env=env)
        self.http_port: int | None = None
        self.loop_lag_ms: float | None = None
        self.started_wall = time.time()
        self.ready_at: float | None = None
        self.last_health: HealthReport | None = None
        self._sent_ms: dict[str, float] = {}
        self._gate_blocked: dict[str, str] = {}
        self._writer_bytes = 0
        self._writer_errors_base = 0

    # ------------------------------------------------------------ tasks
    async def start(self, nursery: trio.Nursery) -> None:
        if self.server is not None:
            self.http_port = await nursery.start(self.server.serve)
            log.info("ops endpoint on http://%s:%d (/health /metrics /status); live dashboard "
                     "at http://%s:%d/ (remote: ssh -L %d:%s:%d <host>)", self.cfg.ops.http_host,
                     self.http_port, self.cfg.ops.http_host, self.http_port, self.http_port,
                     self.cfg.ops.http_host, self.http_port)
        if self.dashboard is not None:
            if self.app.writer is not None:
                self.app.writer.tap = self.dashboard.on_record
            nursery.start_soon(self.dashboard.run, name="dashboard")
        nursery.start_soon(self.notifier.run, name="notify")
        nursery.start_soon(run_loop_lag_monitor, self.metrics.event_loop_lag,
                           self.cfg.ops.event_loop_lag_interval_ms / 1000.0, self._on_lag,
                           name="loop-lag")
        nursery.start_soon(self._ready_task, name="sd-ready")
        if self.cfg.report.daily or self.cfg.retention.enabled:
            nursery.start_soon(self._daily_task, name="daily")

    def _on_lag(self, seconds: float) -> None:
        self.loop_lag_ms = seconds * 1000.0

    async def _ready_task(self) -> None:
        """READY=1 once the app is READY; then the watchdog, fed only while healthy."""
        while not self.app.is_ready():  # noqa: ASYNC110 - READY is a conjunction of states
            await trio.sleep(0.1)
        self.ready_at = time.time()
        status = ready_status(self.cfg.mode, self.app.ready_detail())
        log.info("%s (%.1f s after start)", status, self.ready_at - self.started_wall)
        await send_ready(self.sd, status)
        interval = watchdog_interval_s(self.env)
        if interval is not None and self.sd.enabled:
            await run_watchdog(self.sd, self.health, interval,
                               on_unhealthy_change=self._health_changed)

    def _health_changed(self, report: HealthReport) -> None:
        self.metrics.healthy.set(1 if report.healthy else 0)

    async def _daily_task(self) -> None:
        """The previous UTC day's report at ``[report] run_at_utc``, then retention."""
        hh, mm = (int(x) for x in self.cfg.report.run_at_utc.split(":"))
        while True:
            now = dt.datetime.now(dt.UTC)
            due = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
            if due <= now:
                due += dt.timedelta(days=1)
            await trio.sleep((due - now).total_seconds())
            await self.run_daily(due.date() - dt.timedelta(days=1))

    async def run_daily(self, day: dt.date) -> None:
        """Report for ``day`` and retention, in worker threads (the loop never waits on disk)."""
        records = Path(self.cfg.records.dir)
        if self.cfg.report.daily:
            from engine.ops.report import NoDataError, build_report, write_report

            out_dir = Path(self.cfg.report.dir or records / "reports")
            try:
                path = await trio.to_thread.run_sync(write_report, records, day, out_dir)
                rep = await trio.to_thread.run_sync(build_report, records, day)
            except NoDataError as exc:
                log.warning("daily report for %s: %s", day, exc)
            except OSError as exc:
                log.error("daily report for %s failed: %s", day, exc)
            else:
                log.info("daily report written: %s", path)
                self.notifier.notify(KIND_DAILY_REPORT, f"Daily report {day}",
                                     _report_summary(rep), level="info")
        if self.cfg.retention.enabled:
            from engine.ops.retention import apply_retention, plan_retention

            today = dt.datetime.now(dt.UTC).date()
            plan = await trio.to_thread.run_sync(plan_retention, records, self.cfg.retention,
                                                 today)
            result = await trio.to_thread.run_sync(apply_retention, plan, False)
            (log.info if result.ok else log.error)("retention: %s", result.summary())

    async def close(self) -> None:
        """Deliver queued notifications within a bound (shielded), close the notify socket."""
        left = await self.notifier.drain(5.0)
        if left:
            log.warning("%d notification(s) not delivered at shutdown", left)
        self.sd.close()

    # ------------------------------------------------------------ events from the app
    def on_alert(self, alert: Alert) -> None:
        if self.dashboard is not None:
            self.dashboard.on_alert(alert.level, alert.code, alert.message, self.app.clock())
        kind = _ALERT_KINDS.get(alert.code)
        if kind is None and alert.level not in ("error", "critical"):
            return
        self.notifier.notify(kind or alert.code, alert.code.replace("_", " "), alert.message,
                             level=alert.level, fields={"mode": self.cfg.mode})

    def on_stop(self, reason: str) -> None:
        self.sd.stopping(f"stopping: {reason}")
        self.notifier.notify(KIND_KILL, "engine stopping", reason, level="critical",
                             fields={"mode": self.cfg.mode})

    def on_disconnected(self, reason: str) -> None:
        if self.storm.on_reconnect(time.monotonic()):
            self.notifier.notify(KIND_RECONNECT_STORM, "reconnect storm",
                                 f"{self.storm.recent} reconnects within "
                                 f"{self.cfg.notify.reconnect_storm_window_s:.0f} s; last: "
                                 f"{reason}", level="warning")

    def on_signal(self, market: str, side: str, decision_s: float | None) -> None:
        self.metrics.signals.labels(market, side).inc()
        if decision_s is not None and decision_s >= 0:
            self.metrics.frame_to_decision.observe(decision_s)

    def on_order_record(self, rec: Mapping[str, Any]) -> None:
        """Latencies from the order journal: decision → sent (entries), exit trigger → flatten
        sent (flattens), sent → first venue answer."""
        event = rec.get("event")
        cloid = rec.get("cloid")
        if not isinstance(cloid, str):
            return
        if event == "transmit":
            created, sent = rec.get("created_ms"), rec.get("sent_ms")
            if isinstance(created, int | float) and isinstance(sent, int | float):
                hist = (self.metrics.exit_trigger_to_flatten_sent
                        if rec.get("purpose") == "flatten" else self.metrics.decision_to_order_sent)
                hist.observe(max(0.0, (sent - created) / 1000.0))
                self._sent_ms[cloid] = float(sent)
                if len(self._sent_ms) > 10_000:
                    self._sent_ms.clear()
            self.metrics.orders_total.labels(str(rec.get("purpose")), "sent").inc()
        elif event in _ACK_EVENTS:
            sent_ms = self._sent_ms.pop(cloid, None)
            ts = rec.get("ts_ms")
            if sent_ms is not None and isinstance(ts, int | float):
                self.metrics.order_sent_to_ack.observe(max(0.0, (ts - sent_ms) / 1000.0))
            self.metrics.orders_total.labels(str(rec.get("purpose")), str(event)).inc()

    # ------------------------------------------------------------ health / status
    def health(self) -> HealthReport:
        ops = self.cfg.ops
        report = evaluate_health(self.app.health_inputs(self.loop_lag_ms, self._writer_errors()),
                                 ops.health_max_data_age_s)
        self.last_health = report
        return report

    def _writer_errors(self) -> int:
        """Write errors since the writer last wrote bytes successfully."""
        w = self.app.writer
        if w is None:
            return 0
        st = w.stats
        if st.bytes_written > self._writer_bytes:
            self._writer_bytes = st.bytes_written
            self._writer_errors_base = st.write_errors
        return st.write_errors - self._writer_errors_base

    def status(self) -> dict[str, Any]:
        report = self.health()
        doc = self.app.status_doc()
        doc.update({"healthy": report.healthy, "problems": list(report.problems),
                    "notes": list(report.notes),
                    "uptime_s": round(time.time() - self.started_wall, 1),
                    "version": __version__, "ops_http_port": self.http_port,
                    "notifications": {"enabled": self.notifier.enabled,
                                      "sent": self.notifier.stats.sent,
                                      "failed": self.notifier.stats.failed,
                                      "dropped": self.notifier.stats.dropped},
                    "event_loop_lag_ms": self.loop_lag_ms})
        if self.dashboard is not None:
            doc["dashboard"] = self.dashboard.hub.stats_doc()
        return doc

    def _http_health(self) -> tuple[bool, Mapping[str, Any]]:
        report = self.health()
        return report.healthy, {"healthy": report.healthy, "problems": list(report.problems),
                                "notes": list(report.notes)}

    def _http_kill(self, reason: str) -> Mapping[str, Any]:
        why = f"POST /kill: {reason}" if reason else "POST /kill"
        # the kill file keeps a restarted engine from trading until the operator clears it
        try:
            write_request(self.app.kill_path, why + "\n")
            persisted = True
        except OSError as exc:
            log.error("POST /kill: cannot write the kill file %s (%s); stopping anyway",
                      self.app.kill_path, exc.strerror)
            persisted = False
        started = self.app.request_stop(why)
        return {"killed": True, "stop_started": started, "kill_file": str(self.app.kill_path),
                "kill_file_written": persisted}

    def _http_reset(self) -> Mapping[str, Any]:
        return self.app.reset_from_operator("POST /hardstop/reset")

    def _http_flatten(self) -> Mapping[str, Any]:
        return self.app.flatten_from_operator("POST /flatten")

    # ------------------------------------------------------------ metrics
    def _collect(self) -> None:
        """Refresh the gauges from the app's state (scrape time only)."""
        app, m = self.app, self.metrics
        core, feed, sched = app.core, app.feed, app.scheduler
        now = app.clock()
        if feed is not None:
            fs = feed.stats
            for ch, n in fs.frames_by_channel.items():
                m.frames.labels(ch).value = n
            m.reconnects.value = fs.reconnects
        if core is not None:
            for mk in core.markets:
                for stream, t in (("bbo", mk.bbo_recv_ms), ("ctx", mk.ctx_recv_ms)):
                    if t is not None:
                        m.stream_age.labels(mk.coin, stream).set(max(0.0, (now - t) / 1000.0))
                prev = self._gate_blocked.get(mk.coin)
                gate = mk.blocked_by
                if prev is not None and prev != gate:
                    m.gate_blocked.labels(mk.coin, prev).set(0)
                if gate is not None:
                    m.gate_blocked.labels(mk.coin, gate).set(1)
                    self._gate_blocked[mk.coin] = gate
                else:
                    self._gate_blocked.pop(mk.coin, None)
        if sched is not None:
            st = sched.stats
            m.followups.labels("captured").value = st.written_captured
            m.followups.labels("missed").value = st.written_missed
            m.followups_pending.set(st.pending)
        ns = self.notifier.stats
        for result, n in (("sent", ns.sent), ("failed", ns.failed), ("dropped", ns.dropped)):
            m.notifications.labels(result).value = n
        app.collect_metrics(m)
        m.set_flags(ready=app.is_ready(), killed=app.stop_reason is not None)
        if self.last_health is not None:
            m.healthy.set(1 if self.last_health.healthy else 0)


def ready_status(mode: str, detail: str) -> str:
    """The READY line (logged and sent as systemd's ``STATUS=``)."""
    return f"READY: {mode} mode, {detail}"


def _report_summary(rep: DayReport) -> str:
    """One line for the webhook."""
    t = rep.trades
    win = "n/a" if t.win_rate is None else f"{t.win_rate:.0%}"
    return (f"signals {rep.signals.total}, trades {t.count} (win rate {win}), "
            f"net P&L {t.net_pnl:+.2f} USD (fees {t.fees:.2f})")


__all__ = ["OpsService", "SecretsError"]
