"""The start-up both shells share, and its failure vocabulary (shared with ``engine check``,
``engine.ops.check``): the documented exit codes, :class:`StartupError`, the records-dir
writability probe and lock, and :func:`run_locked` — the one start-up and close sequence of
:class:`engine.app.ObserveApp` (observe, paper, trade on Hyperliquid) and
:class:`engine.funding_app.FundingApp` (funding/basis on Bybit).

It sits below the shells and ``engine.ops`` (it imports neither: the ops host is built by the
app's own :meth:`LockedApp.open_run`), so that ``engine.ops`` never imports ``engine.app``
(docs/architecture.md, "Layers"); ``engine.app`` re-exports the names its callers import.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import trio

from engine.io.dirlock import DirLock, DirLockedError

log = logging.getLogger("engine.app")

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2


class StartupError(Exception):
    """The engine cannot start (bad markets, unwritable data dir, venue unreachable)."""

    def __init__(self, message: str, exit_code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def check_records_dir(path: Path) -> None:
    """Create the data directory and prove it is writable before anything connects."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"ok\n")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"records dir {path} is not writable: {exc.strerror} (errno {exc.errno}); "
            "fix its ownership/permissions or set [records] dir", EXIT_CONFIG) from None


def lock_records_dir(path: Path) -> DirLock:
    """Take the records dir's lock for this run (one engine per directory)."""
    lock = DirLock(path)
    try:
        lock.acquire()
    except DirLockedError as exc:
        raise StartupError(f"{exc}: stop that engine first, or give this run its own [records] "
                           "dir (ENGINE__RECORDS__DIR)", EXIT_CONFIG) from None
    except OSError as exc:
        raise StartupError(f"cannot create the lock file {lock.path}: {exc.strerror}; fix the "
                           "permissions of [records] dir", EXIT_CONFIG) from None
    return lock


def sole_startup_error(group: BaseExceptionGroup[BaseException]) -> StartupError | None:
    """The :class:`StartupError` a nursery wrapped, when that (and cancellations it caused)
    is all the group holds; else None (a real crash keeps its traceback)."""
    found: StartupError | None = None
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            inner = sole_startup_error(exc)
            if inner is None:
                return None
            found = found or inner
        elif isinstance(exc, StartupError):
            found = found or exc
        elif not isinstance(exc, trio.Cancelled):
            return None
    return found


def probe_tcp_port(host: str, port: int) -> OSError | None:
    """Whether ``host:port`` can be bound for listening (with ``SO_REUSEADDR``, as the ops
    server binds it): None when free, else the bind error (e.g. address in use)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return exc
    for family, kind, proto, _canon, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind(addr)
                s.listen(1)
            except OSError as exc:
                return exc
    return None


def begin_stop(app: Any, reason: str, root: trio.Nursery | None,
               stop_task: Callable[[str], Awaitable[None]]) -> bool:
    """The shells' ``request_stop``: start the graceful stop once, in the root nursery.

    ``app`` has ``stop_reason`` (None until a stop starts) and ``ops`` (told
    ``on_stop(reason)`` when present); ``root`` is the run's root nursery (None before
    ``bind_root``) and ``stop_task(reason)`` the shell's stop coroutine, started there. False
    when a stop is already under way or the run has no root yet (nothing to stop)."""
    if app.stop_reason is not None or root is None:
        return False
    app.stop_reason = reason
    if app.ops is not None:
        app.ops.on_stop(reason)
    root.start_soon(stop_task, reason, name="stop")
    return True


def close_run_files(writer: Any, recorder: Any, *, built: bool) -> None:
    """The shells' ``close_run`` for their files: the record writer flushed and closed, then
    the frame recorder closed (a run that never finished building records no frames: what
    it holds is discarded first)."""
    if writer is not None:
        writer.close()
    if recorder is not None:
        if not built:
            recorder.discard()
        recorder.close()


class OpsTasks(Protocol):
    """The ops service as the start-up drives it (:class:`engine.ops.service.OpsService`)."""

    async def start(self, nursery: trio.Nursery) -> None: ...

    async def close(self) -> None: ...


class LockedApp(Protocol):
    """What :func:`run_locked` needs from a shell.

    ``open_run()`` builds the ops host, the record writer and the frame recorder (it may raise
    :class:`StartupError`: nothing is running yet); ``start_run(nursery)`` does the rest of the
    start inside the root nursery (simulator, discovery, tasks); ``close_run()`` is the
    synchronous end (flush and close the writer and recorder, the final log line), run
    whatever happened once ``open_run()`` succeeded. ``bind_root`` hands the shell its root
    nursery and cancel scope (``request_stop`` starts the stop task there, ``stop`` cancels
    it); ``request_stop``/``stop`` are what SIGINT/SIGTERM call."""

    cfg: Any  # an EngineConfig ([ops] http_host, http_port, http_enabled)
    records_dir: Path
    exit_code: int

    @property
    def ops(self) -> OpsTasks | None: ...

    def open_run(self) -> None: ...

    async def start_run(self, nursery: trio.Nursery) -> None: ...

    def close_run(self) -> None: ...

    def bind_root(self, nursery: trio.Nursery, cancel: trio.CancelScope) -> None: ...

    def request_stop(self, reason: str) -> bool: ...

    def stop(self) -> None: ...


async def run_locked(app: LockedApp) -> int:
    """Run ``app`` the way every shell runs, returning its exit code:

    1. the records dir is created and probed (exit 2), then locked: one engine per
       directory (exit 2 naming the other engine's pid);
    2. ``app.open_run()``: the ops host (its credentials: exit 2), writer and recorder;
    3. the root cancel scope and nursery: the ``signals`` task (SIGINT/SIGTERM →
       ``request_stop``, a second one → ``stop``), then the ops tasks with the ops port
       bound (exit 2 when it is taken) before anything reads or writes the records, then
       ``app.start_run(nursery)``;
    4. a :class:`StartupError` raised inside the nursery is unwrapped from Trio's group (one
       line for the operator); any other error keeps its traceback;
    5. always ``app.close_run()``, the ops host closed, the lock released.
    """
    check_records_dir(app.records_dir)
    lock = lock_records_dir(app.records_dir)
    try:
        app.open_run()
        try:
            with trio.CancelScope() as cancel:
                async with trio.open_nursery() as nursery:
                    app.bind_root(nursery, cancel)
                    nursery.start_soon(stop_on_signals, app, name="signals")
                    await start_ops(app, nursery)
                    await app.start_run(nursery)
        except BaseExceptionGroup as group:
            err = sole_startup_error(group)
            if err is None:
                raise
            raise err from None
        finally:
            app.close_run()
            if app.ops is not None:
                await app.ops.close()
    finally:
        lock.release()
    return app.exit_code


async def start_ops(app: LockedApp, nursery: trio.Nursery) -> None:
    """Start the ops tasks (``[ops]``): a taken port is one line naming the key (exit 2)."""
    ops = app.ops
    assert ops is not None
    o = app.cfg.ops

    def refused(exc: OSError) -> StartupError:
        return StartupError(
            f"ops endpoint cannot listen on {o.http_host}:{o.http_port}: "
            f"{exc.strerror or exc} (another engine or process holds it?); set [ops] "
            "http_port (ENGINE__OPS__HTTP_PORT) to a free port, 0 for any free port, or "
            "[ops] http_enabled = false", EXIT_CONFIG)

    if o.http_enabled and o.http_port:
        busy = probe_tcp_port(o.http_host, o.http_port)
        if busy is not None:  # the common case, reported as one line
            raise refused(busy)
    try:
        await ops.start(nursery)
    except OSError as exc:  # taken between the probe and the bind
        raise refused(exc) from None


async def stop_on_signals(app: LockedApp) -> None:
    """SIGINT/SIGTERM: ``request_stop``; a second one while stopping: ``stop`` at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not app.request_stop(f"received {name}"):
                log.warning("received %s again: stopping now without waiting", name)
                app.stop()
                return
