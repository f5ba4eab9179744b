"""systemd service notifications (``sd_notify``) and the watchdog loop: owns ``NOTIFY_SOCKET``.

With ``Type=notify`` systemd considers the service started only when it sends ``READY=1``,
and with ``WatchdogSec=`` it restarts the service unless ``WATCHDOG=1`` arrives at least every
``WATCHDOG_USEC``. The engine sends:

- ``READY=1`` once, when it is READY (data for every market, user channels acked, reconciled);
- ``WATCHDOG=1`` every half watchdog period, **only while healthy** (:mod:`engine.ops.health`),
  so a wedged engine (stale data, unresolved orders, failing writer, stuck loop) is restarted;
- ``STOPPING=1`` when a graceful stop begins; ``STATUS=`` lines describing the state;
  ``EXTEND_TIMEOUT_USEC=`` when a start or stop needs longer than configured.

The protocol: newline-separated ``KEY=value`` assignments in one datagram on an ``AF_UNIX``
``SOCK_DGRAM`` socket named by ``NOTIFY_SOCKET`` (a filesystem path, or an abstract socket
written with a leading ``@``). Without ``NOTIFY_SOCKET`` every call is a no-op. Sending is a
synchronous non-blocking ``sendto`` that never raises into the engine: an ``OSError`` is
counted, and logged at WARNING the first time.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Callable, Mapping
from typing import Final

import trio

from engine.logs import redact
from engine.ops.health import HealthReport

log = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV: Final = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV: Final = "WATCHDOG_USEC"
WATCHDOG_PID_ENV: Final = "WATCHDOG_PID"


def _one_line(text: str) -> str:
    """A value for one ``KEY=value`` line (newlines would start a new assignment), with
    secrets redacted: ``STATUS=`` is visible to every user through ``systemctl status``."""
    return redact(" ".join(text.splitlines()).strip())


def parse_notify_address(value: str) -> str | bytes:
    """The ``sendto`` address for a ``NOTIFY_SOCKET`` value; raise ``ValueError`` if unusable.

    ``/path`` → the path; ``@name`` → the abstract socket ``\\0name`` (Linux).
    """
    if value.startswith("@"):
        if len(value) < 2:
            raise ValueError("abstract socket name is empty")
        return b"\0" + value[1:].encode("utf-8")
    if value.startswith("/"):
        if len(value.encode("utf-8")) > 107:
            raise ValueError("socket path longer than 107 bytes")
        return value
    raise ValueError("not an absolute path or an @abstract name (vsock: etc. unsupported)")


class SdNotifier:
    """Sends sd_notify messages to ``address``; a disabled notifier (``address=None``) does
    nothing. Build it with :meth:`from_env`."""

    def __init__(self, address: str | bytes | None) -> None:
        self._address = address
        self._sock: socket.socket | None = None
        self.sent = 0
        self.errors = 0
        self._error_logged = False
        self._ready_sent = False
        if address is not None:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            except OSError as exc:
                self._sock = None
                self._failed(exc)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> SdNotifier:
        """From ``NOTIFY_SOCKET``; disabled when unset, or (logged at WARNING) unusable."""
        raw = env.get(NOTIFY_SOCKET_ENV)
        if not raw:
            return cls(None)
        try:
            address = parse_notify_address(raw)
        except ValueError as exc:
            log.warning("%s=%r is unusable (%s): systemd notifications disabled",
                        NOTIFY_SOCKET_ENV, raw, exc)
            return cls(None)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def ready_sent(self) -> bool:
        return self._ready_sent

    def _failed(self, exc: OSError) -> None:
        self.errors += 1
        if not self._error_logged:
            self._error_logged = True
            log.warning("systemd notification failed (%s: %s); further failures are counted, "
                        "not logged", type(exc).__name__, exc.strerror or exc)

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram; ``True`` if it left the process."""
        if self._address is None or not assignments:
            return False
        if self._sock is None:
            self.errors += 1
            return False
        data = "\n".join(assignments).encode("utf-8", "replace")
        try:
            self._sock.sendto(data, self._address)
        except OSError as exc:
            self._failed(exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        """``READY=1`` (with ``STATUS=``), sent once; later calls only update the status."""
        if self._ready_sent:
            return self.status(status) if status else False
        fields = ["READY=1"] + ([f"STATUS={_one_line(status)}"] if status else [])
        ok = self.send(*fields)
        self._ready_sent = ok or not self.enabled
        return ok

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def extend_timeout(self, usec: int) -> bool:
        """Ask for ``usec`` more microseconds for the current start/stop (``usec`` > 0)."""
        if isinstance(usec, bool) or not isinstance(usec, int) or usec <= 0:
            log.warning("extend_timeout(%r) ignored: need a positive integer of microseconds",
                        usec)
            return False
        return self.send(f"EXTEND_TIMEOUT_USEC={usec}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(env: Mapping[str, str] = os.environ) -> float | None:
    """Half the systemd watchdog timeout (``WATCHDOG_USEC``), in seconds; ``None`` when the
    watchdog is off, meant for another process (``WATCHDOG_PID``), or malformed (logged)."""
    raw = env.get(WATCHDOG_USEC_ENV)
    if not raw:
        return None
    pid = env.get(WATCHDOG_PID_ENV)
    if pid:
        try:
            if int(pid) != os.getpid():
                log.info("%s=%s is not this process (%d): watchdog not ours", WATCHDOG_PID_ENV,
                         pid, os.getpid())
                return None
        except ValueError:
            log.warning("%s=%r is not a pid: watchdog disabled", WATCHDOG_PID_ENV, pid)
            return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("%s=%r is not an integer: watchdog disabled", WATCHDOG_USEC_ENV, raw)
        return None
    if usec <= 0:
        log.warning("%s=%r is not positive: watchdog disabled", WATCHDOG_USEC_ENV, raw)
        return None
    return usec / 1e6 / 2


async def send_ready(notifier: SdNotifier, status: str, retry_s: float = 1.0) -> None:
    """``READY=1``, retried every ``retry_s`` until it leaves the process (a full socket
    buffer must not leave systemd waiting for a READY that was sent once and lost, until its
    start timeout kills a healthy engine). Returns at once when notifications are off."""
    while notifier.enabled and not notifier.ready(status):  # noqa: ASYNC110 - a retry, not a wait
        await trio.sleep(retry_s)


async def run_watchdog(notifier: SdNotifier, is_healthy: Callable[[], HealthReport],
                       interval_s: float, *,
                       on_unhealthy_change: Callable[[HealthReport], None] | None = None,
                       ) -> None:
    """Every ``interval_s``: evaluate ``is_healthy()``; send ``WATCHDOG=1`` only if healthy.

    Start it once the engine is READY (after :meth:`SdNotifier.ready`): health starts as
    "healthy", so an unhealthy first report is a loss. A change healthy → unhealthy is logged at
    WARNING with the problems, unhealthy → healthy at INFO, and each calls
    ``on_unhealthy_change(report)``. ``STATUS=`` follows the report's summary whenever it
    changes. Runs until cancelled; an exception from ``is_healthy`` or the callback propagates.
    """
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"watchdog interval must be a positive number of seconds, "
                         f"got {interval_s!r}")
    was_healthy = True
    last_problems: tuple[str, ...] = ()
    last_status: str | None = None
    while True:
        report = is_healthy()
        if report.healthy:
            notifier.watchdog()
        if report.healthy != was_healthy:
            if report.healthy:
                log.info("health regained; watchdog resumed (problems were: %s)",
                         "; ".join(last_problems) or "none")
            else:
                log.warning("health lost; watchdog paused (systemd restarts the engine if this "
                            "lasts): %s", "; ".join(report.problems))
            was_healthy = report.healthy
            if on_unhealthy_change is not None:
                on_unhealthy_change(report)
        if not report.healthy:
            last_problems = report.problems
        status = report.summary()
        if status != last_status:
            notifier.status(status)
            last_status = status
        await trio.sleep(interval_s)
