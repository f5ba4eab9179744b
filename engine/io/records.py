"""The record writer: per-kind, per-UTC-day JSON Lines files that never take the engine down.

Owns where records go (``{dir}/{kind}_{YYYY-MM-DD}.jsonl``, the day chosen by the record's own
timestamp, never the flush time), when they reach the file (immediately, or buffered and
flushed every ``flush_interval_ms``), when they are made durable (fsync of dirty files every
``fsync_interval_ms`` in a worker thread; 0 disables the periodic fsync, ``close()`` still
fsyncs), and what happens when the disk says no.

A write error (ENOSPC, EACCES on a root-owned data dir, EIO, ...) is logged at ERROR with the
path and errno; the records stay in a bounded retry queue (``max_pending_records``; beyond it
the oldest are dropped, counted and logged at CRITICAL) and are retried with exponential
backoff. :meth:`RecordWriter.write` never raises into the caller. Lines are made by
:func:`engine.io.jsonl.encode_line`'s format and written with :class:`JsonlAppender`, so a
failed write never leaves a partial line behind.

``write`` is synchronous (no await, no thread hop): call it from any task. ``run()`` is the
writer task (flush, fsync, retry, close idle day files; it closes everything when cancelled);
``close()`` flushes and fsyncs everything and may be called again after late writes.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import msgspec
import trio

from engine.backoff import exponential_delay
from engine.clock import trio_deadline
from engine.deadline import DeadlineSleeper
from engine.io.jsonl import JsonlAppender, StrPath

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
MAX_OPEN_PER_KIND = 2


def _wall_clock_ms() -> float:
    return time.time() * 1000.0


@attrs.define
class WriterStats:
    """Counters of a :class:`RecordWriter` (read them; the writer updates them)."""

    records_written: dict[str, int] = attrs.Factory(dict)
    bytes_written: int = 0
    write_errors: int = 0
    dropped: int = 0
    pending: int = 0
    encode_errors: int = 0
    fsyncs: int = 0
    fsync_errors: int = 0
    files_opened: int = 0
    files_closed: int = 0


class _DayFile:
    """One ``{kind}_{day}.jsonl`` file: its appender (when open) and its queued lines."""

    __slots__ = (
        "kind",
        "day",
        "path",
        "app",
        "queue",
        "queue_bytes",
        "dirty",
        "last_write_ms",
        "failing",
        "retry_at_ms",
        "backoff_ms",
        "errors",
    )

    def __init__(self, kind: str, day: str, path: Path) -> None:
        self.kind = kind
        self.day = day
        self.path = path
        self.app: JsonlAppender | None = None
        self.queue: deque[tuple[int, bytes, int]] = deque()  # (global seq, lines, count)
        self.queue_bytes = 0
        self.dirty = False
        self.last_write_ms = 0.0
        self.failing = False
        self.retry_at_ms = 0.0
        self.backoff_ms = 0.0
        self.errors = 0


class RecordWriter:
    """Writes JSON Lines records to ``{dir}/{kind}_{YYYY-MM-DD}.jsonl`` (see module docstring).

    ``clock()`` returns wall-clock epoch milliseconds; it drives retry backoff, fsync and
    idle-close timing. ``flush_interval_ms == 0`` writes each record with its own ``os.write``
    (nothing is lost on a process kill); ``> 0`` buffers per file and the :meth:`run` task
    writes each file's buffer as one ``os.write`` of whole lines every interval (a buffer
    larger than ``max_buffer_bytes`` is written at once).
    """

    def __init__(
        self,
        dir: StrPath,
        *,
        flush_interval_ms: float = 0.0,
        fsync_interval_ms: float = 1000.0,
        max_pending_records: int = 1_000_000,
        clock: Callable[[], float] = _wall_clock_ms,
        retry_base_ms: float = 100.0,
        retry_max_ms: float = 5000.0,
        idle_close_ms: float = 60_000.0,
        max_buffer_bytes: int = 1 << 20,
    ) -> None:
        if flush_interval_ms < 0 or fsync_interval_ms < 0:
            raise ValueError("flush_interval_ms and fsync_interval_ms must be >= 0")
        if max_pending_records <= 0:
            raise ValueError("max_pending_records must be > 0")
        self.dir = Path(dir)
        self.flush_interval_ms = float(flush_interval_ms)
        self.fsync_interval_ms = float(fsync_interval_ms)
        self.max_pending_records = int(max_pending_records)
        self.retry_base_ms = float(retry_base_ms)
        self.retry_max_ms = float(retry_max_ms)
        self.idle_close_ms = float(idle_close_ms)
        self.max_buffer_bytes = int(max_buffer_bytes)
        self.stats = WriterStats()
        self._clock = clock
        self._buffered = self.flush_interval_ms > 0
        self._closed = False
        self._encoder = msgspec.json.Encoder()
        self._files: dict[tuple[str, str], _DayFile] = {}
        self._open: dict[str, list[_DayFile]] = {}
        self._retiring: list[JsonlAppender] = []
        self._seq = 0
        self._days: dict[int, str] = {}
        self._drops_unlogged = 0
        self._drop_logged_ms = -math.inf
        self._sleeper = DeadlineSleeper()
        # read-only observer of every record written (the ops dashboard's live events); it
        # must be cheap and must not raise (it runs on the write path)
        self.tap: Callable[[str, float, Any], None] | None = None

    # ------------------------------------------------------------------ write path

    def write(self, kind: str, ts_ms: float, record: Any) -> None:
        """Queue or append ``record`` to ``{kind}_{UTC day of ts_ms}.jsonl``. Never raises."""
        try:
            line = self._encoder.encode(record) + b"\n"
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            self.stats.encode_errors += 1
            log.error("cannot encode a %s record (dropped): %s", kind, exc)
            return
        if self.tap is not None:
            self.tap(kind, ts_ms, record)
        try:
            self._write_lines(kind, ts_ms, line, 1)
        except Exception:  # noqa: BLE001 - the writer must never take the engine down
            self.stats.write_errors += 1
            log.exception("unexpected error writing a %s record", kind)

    def write_many(self, kind: str, ts_ms: float, records: Sequence[Any]) -> None:
        """Like :meth:`write` for several records sharing one time ``ts_ms``, in one ``os.write``.

        The records land in order in the file of ``ts_ms``'s UTC day. Never raises.
        """
        if not records:
            return
        try:
            data = self._encoder.encode_lines(records)
        except (TypeError, ValueError, msgspec.EncodeError):
            for rec in records:  # isolate the record that cannot be encoded
                self.write(kind, ts_ms, rec)
            return
        if self.tap is not None:
            for rec in records:
                self.tap(kind, ts_ms, rec)
        try:
            self._write_lines(kind, ts_ms, data, len(records))
        except Exception:  # noqa: BLE001 - the writer must never take the engine down
            self.stats.write_errors += 1
            log.exception("unexpected error writing %d %s record(s)", len(records), kind)

    def _write_lines(self, kind: str, ts_ms: float, data: bytes, n: int) -> None:
        now = self._clock()
        day = self._day(ts_ms, now)
        f = self._files.get((kind, day))
        if f is None:
            f = _DayFile(kind, day, self.dir / f"{kind}_{day}.jsonl")
            self._files[(kind, day)] = f
        f.last_write_ms = now
        if f.queue or (self._buffered and not self._closed):
            self._enqueue(f, data, n, now)
            if f.queue_bytes >= self.max_buffer_bytes or (f.failing and now >= f.retry_at_ms):
                self._flush_file(f, now)
            return
        # immediate mode, nothing queued ahead of this line
        app = f.app if f.app is not None else self._open_file(f, now)
        if app is None:
            self._enqueue(f, data, n, now)
            return
        try:
            app.append(data)
        except OSError as exc:
            self._enqueue(f, data, n, now)
            self._on_error(f, exc, now, n)
            return
        self._written(f, n, len(data))

    def _day(self, ts_ms: float, now: float) -> str:
        try:
            d = int(ts_ms // DAY_MS)
        except (ValueError, OverflowError):
            d = int(now // DAY_MS)
        s = self._days.get(d)
        if s is None:
            try:
                s = time.strftime("%Y-%m-%d", time.gmtime(d * 86_400))
            except (OverflowError, OSError, ValueError):
                d = int(now // DAY_MS)
                s = time.strftime("%Y-%m-%d", time.gmtime(d * 86_400))
            if len(self._days) > 64:
                self._days.clear()
            self._days[d] = s
        return s

    def _enqueue(self, f: _DayFile, data: bytes, n: int, now: float) -> None:
        self._seq += 1
        f.queue.append((self._seq, data, n))
        f.queue_bytes += len(data)
        st = self.stats
        st.pending += n
        if st.pending > self.max_pending_records:
            self._drop_oldest(now)

    def _drop_oldest(self, now: float) -> None:
        st = self.stats
        while st.pending > self.max_pending_records:
            victim = min((f for f in self._files.values() if f.queue), key=lambda f: f.queue[0][0])
            _, data, n = victim.queue.popleft()
            victim.queue_bytes -= len(data)
            st.pending -= n
            st.dropped += n
            self._drops_unlogged += n
        if now - self._drop_logged_ms >= 10_000.0:
            log.critical(
                "record queue full (%d pending): dropped the %d oldest record(s) "
                "(%d dropped in total); records are being LOST",
                st.pending,
                self._drops_unlogged,
                st.dropped,
            )
            self._drop_logged_ms = now
            self._drops_unlogged = 0

    def _written(self, f: _DayFile, n: int, nbytes: int) -> None:
        st = self.stats
        rw = st.records_written
        rw[f.kind] = rw.get(f.kind, 0) + n
        st.bytes_written += nbytes
        f.dirty = True
        if f.failing:
            f.failing = False
            f.backoff_ms = 0.0
            log.warning(
                "writing to %s works again after %d error(s); %d record(s) pending",
                f.path,
                f.errors,
                st.pending,
            )
            f.errors = 0

    def _on_error(self, f: _DayFile, exc: OSError, now: float, n: int) -> None:
        self.stats.write_errors += 1
        f.errors += 1
        f.failing = True
        f.backoff_ms = exponential_delay(f.errors - 1, self.retry_base_ms, self.retry_max_ms)
        f.retry_at_ms = now + f.backoff_ms
        if f.app is not None:  # reopen on retry (re-runs the torn-line repair)
            self._close_appender(f, fsync=False)
        self._sleeper.wake()  # the run task re-plans its sleep for the retry
        log.error(
            "cannot write %d record(s) to %s (errno %s, %s): %s; %d record(s) kept for retry "
            "in %.0f ms",
            n,
            f.path,
            exc.errno,
            os.strerror(exc.errno) if exc.errno else "?",
            exc,
            self.stats.pending,
            f.backoff_ms,
        )

    def _open_file(self, f: _DayFile, now: float) -> JsonlAppender | None:
        try:
            app = JsonlAppender(f.path)
        except OSError as exc:
            self._on_error(f, exc, now, len(f.queue) or 1)
            return None
        f.app = app
        self.stats.files_opened += 1
        opened = self._open.setdefault(f.kind, [])
        opened.append(f)
        while len(opened) > MAX_OPEN_PER_KIND:
            victim = min((o for o in opened if o is not f), key=lambda o: o.last_write_ms)
            if victim.queue:
                self._flush_file(victim, now, force=True)
            self._close_appender(victim, fsync=True)
        return app

    def _close_appender(self, f: _DayFile, *, fsync: bool) -> None:
        """Detach and close ``f``'s appender.

        With ``fsync`` and a dirty file: after :meth:`close` it is fsynced here; while running
        with periodic fsync it is handed to the run task (fsync + close in a worker thread);
        with periodic fsync disabled it is just closed.
        """
        app, f.app = f.app, None
        opened = self._open.get(f.kind)
        if opened is not None and f in opened:
            opened.remove(f)
        if app is None:
            return
        dirty, f.dirty = f.dirty, False
        if fsync and dirty and self._closed:
            self._fsync_quietly(app)
        elif fsync and dirty and self.fsync_interval_ms > 0:
            self._retiring.append(app)
            self._sleeper.wake()
            return
        app.close()
        self.stats.files_closed += 1

    def _flush_file(self, f: _DayFile, now: float, *, force: bool = False) -> bool:
        """Write ``f``'s queue, whole lines per ``os.write`` (one write unless the queue is larger
        than ``max_buffer_bytes``); False if a write failed or the file is in retry backoff."""
        if not f.queue:
            return True
        if f.failing and not force and now < f.retry_at_ms:
            return False
        app = f.app if f.app is not None else self._open_file(f, now)
        if app is None:
            return False
        queue = f.queue
        limit = self.max_buffer_bytes
        while queue:
            parts: list[bytes] = []
            n = size = taken = 0
            for _, lines, count in queue:
                if parts and size + len(lines) > limit:
                    break
                parts.append(lines)
                size += len(lines)
                n += count
                taken += 1
            data = parts[0] if taken == 1 else b"".join(parts)
            try:
                app.append(data)
            except OSError as exc:
                self._on_error(f, exc, now, n)
                return False
            for _ in range(taken):
                queue.popleft()
            f.queue_bytes -= size
            self.stats.pending -= n
            self._written(f, n, size)
        return True

    def flush(self, *, force: bool = False) -> bool:
        """Write every queued record now (files in retry backoff only with ``force``).

        Returns True when nothing is left pending.
        """
        now = self._clock()
        ok = True
        for f in list(self._files.values()):
            if f.queue and not self._flush_file(f, now, force=force):
                ok = False
        return ok

    # ------------------------------------------------------------------ durability

    def _fsync_quietly(self, app: JsonlAppender) -> None:
        try:
            app.fsync()
            self.stats.fsyncs += 1
        except (OSError, ValueError) as exc:
            self.stats.fsync_errors += 1
            log.error("fsync of %s failed: %s", app.path, exc)

    async def _fsync_dirty(self) -> None:
        """fsync dirty open files (dup'd descriptors, in a worker thread) and retire old ones."""
        jobs: list[tuple[Path, int]] = []
        for f in self._files.values():
            if f.dirty and f.app is not None:
                try:
                    jobs.append((f.path, os.dup(f.app.fileno())))
                except OSError as exc:
                    self.stats.fsync_errors += 1
                    log.error("cannot dup %s for fsync: %s", f.path, exc)
                    continue
                f.dirty = False
        retiring, self._retiring = self._retiring, []
        for app in retiring:
            jobs.append((app.path, app.detach()))  # the worker thread closes it
        if not jobs:
            return
        errors = await trio.to_thread.run_sync(_fsync_and_close, jobs)
        self.stats.fsyncs += len(jobs) - len(errors)
        self.stats.fsync_errors += len(errors)
        self.stats.files_closed += len(retiring)
        for path, err in errors:
            log.error("fsync of %s failed (errno %s): %s", path, err.errno, err.strerror)

    def _close_idle(self, now: float) -> None:
        today = self._day(now, now)
        for opened in list(self._open.values()):
            for f in list(opened):
                if not f.queue and f.day != today and now - f.last_write_ms >= self.idle_close_ms:
                    self._close_appender(f, fsync=True)
        # forget day files that are closed and have nothing queued
        for key, f in list(self._files.items()):
            if f.app is None and not f.queue and f.day != today:
                del self._files[key]

    # ------------------------------------------------------------------ task / shutdown

    async def run(self) -> None:
        """The writer task: periodic flush, fsync, retry with backoff, idle close.

        Runs until cancelled; then it calls :meth:`close` (flush + fsync everything).
        """
        now = self._clock()
        next_flush = now + self.flush_interval_ms
        next_fsync = now + self.fsync_interval_ms
        next_idle = now + 1000.0
        try:
            while True:
                # a wake() during the work is not lost: the sleep below then returns at once
                now = self._clock()
                if not self._buffered or now >= next_flush:
                    for f in list(self._files.values()):
                        if f.queue:
                            self._flush_file(f, now)
                    if self._buffered:
                        next_flush = now + self.flush_interval_ms
                if self.fsync_interval_ms > 0 and now >= next_fsync:
                    await self._fsync_dirty()
                    next_fsync = self._clock() + self.fsync_interval_ms
                elif self._retiring:
                    await self._fsync_dirty()
                if now >= next_idle:
                    self._close_idle(now)
                    next_idle = now + 1000.0
                wake = next_idle
                if self._buffered:
                    wake = min(wake, next_flush)
                if self.fsync_interval_ms > 0:
                    wake = min(wake, next_fsync)
                for f in self._files.values():
                    if f.queue and f.failing:
                        wake = min(wake, f.retry_at_ms)
                await self._sleeper.sleep_until(trio_deadline(self._clock, wake))
        finally:
            self.close()

    def close(self) -> None:
        """Flush (one more attempt even in backoff), fsync and close every file.

        Later writes still work (each is appended immediately); call ``close()`` again after
        them. Records that still cannot be written stay queued and are logged.
        """
        self._closed = True
        self.flush(force=True)
        for app in self._retiring:
            self._fsync_quietly(app)
            app.close()
            self.stats.files_closed += 1
        self._retiring = []
        for f in list(self._files.values()):
            if f.app is not None:
                if f.dirty:
                    self._fsync_quietly(f.app)
                f.app.close()
                f.app = None
                f.dirty = False
                self.stats.files_closed += 1
        self._open.clear()
        if self.stats.pending:
            log.error(
                "record writer closed with %d record(s) still unwritten (kept in memory)",
                self.stats.pending,
            )

    @property
    def pending(self) -> int:
        return self.stats.pending

    def open_files(self, kind: str) -> list[Path]:
        """Paths currently open for ``kind`` (for tests and diagnostics)."""
        return [f.path for f in self._open.get(kind, [])]


def _fsync_and_close(jobs: list[tuple[Path, int]]) -> list[tuple[Path, OSError]]:
    """Worker-thread body: fsync every descriptor, then close it."""
    errors: list[tuple[Path, OSError]] = []
    for path, fd in jobs:
        try:
            os.fsync(fd)
        except OSError as exc:
            errors.append((path, exc))
        try:
            os.close(fd)
        except OSError as close_exc:
            errors.append((path, close_exc))
    return errors
