"""RecordWriter: per-day files by record time, flush/fsync policy, errors never escape."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import engine.io.jsonl as jsonl
from engine.io.jsonl import JsonlAppender, read_jsonl
from engine.io.records import RecordWriter

# 2026-01-20T23:59:59Z in epoch ms
T0 = datetime(2026, 1, 20, 23, 59, 59, tzinfo=UTC).timestamp() * 1000.0
DAY1 = "2026-01-20"
DAY2 = "2026-01-21"


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def trio_clock(base: float = T0) -> Callable[[], float]:
    """Epoch ms that follow Trio's (mock) clock."""
    return lambda: base + trio.current_time() * 1000.0


class _OsShim:
    def __init__(self, write: Any) -> None:
        self.write = write

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def enospc_write(fd: int, data: bytes) -> int:
    os.write(fd, bytes(data)[: max(1, len(data) // 3)])  # part of it reached the file
    raise OSError(errno.ENOSPC, "No space left on device")


def count_appends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    orig = JsonlAppender.append

    def counting(self: JsonlAppender, data: bytes) -> None:
        calls.append(data.count(b"\n"))
        orig(self, data)

    monkeypatch.setattr(JsonlAppender, "append", counting)
    return calls


def lines_clean(path: Path) -> bool:
    raw = path.read_bytes()
    return raw == b"" or raw.endswith(b"\n")


def test_immediate_mode_appends_at_once_one_write_per_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_appends(monkeypatch)
    w = RecordWriter(tmp_path, flush_interval_ms=0, clock=FakeClock())
    w.write("signals", T0, {"i": 1})
    w.write("signals", T0, {"i": 2})
    # on disk before any flush task ran: a process kill now loses nothing
    assert read_jsonl(tmp_path / f"signals_{DAY1}.jsonl") == [{"i": 1}, {"i": 2}]
    assert calls == [1, 1]
    assert w.stats.records_written == {"signals": 2}
    assert w.stats.bytes_written == (tmp_path / f"signals_{DAY1}.jsonl").stat().st_size
    w.close()


def test_file_day_is_the_record_time_not_the_write_time(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 3_600_000)  # it is already DAY2 when we write
    w = RecordWriter(tmp_path, clock=clock)
    w.write("followups", T0 + 500, {"k": "late for day 1"})  # 23:59:59.5 -> DAY1
    w.write("followups", T0 + 1500, {"k": "day 2"})  # 00:00:00.5 -> DAY2
    w.write("signals", T0, {"k": "s"})
    w.close()
    assert read_jsonl(tmp_path / f"followups_{DAY1}.jsonl") == [{"k": "late for day 1"}]
    assert read_jsonl(tmp_path / f"followups_{DAY2}.jsonl") == [{"k": "day 2"}]
    assert read_jsonl(tmp_path / f"signals_{DAY1}.jsonl") == [{"k": "s"}]


def test_write_many_is_one_os_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_appends(monkeypatch)
    w = RecordWriter(tmp_path, clock=FakeClock())
    w.write_many("followups", T0, [{"i": i} for i in range(5)])
    w.write_many("followups", T0, [])
    assert calls == [5]
    assert read_jsonl(tmp_path / f"followups_{DAY1}.jsonl") == [{"i": i} for i in range(5)]
    w.close()


def test_unencodable_record_is_logged_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = RecordWriter(tmp_path, clock=FakeClock())
    with caplog.at_level(logging.ERROR):
        w.write("signals", T0, {"bad": object()})
        w.write_many("signals", T0, [{"ok": 1}, {"bad": object()}, {"ok": 2}])
        w.write("signals", float("nan"), {"nan_ts": True})  # falls back to the clock's day
    assert w.stats.encode_errors == 2
    assert "cannot encode" in caplog.text
    assert read_jsonl(tmp_path / f"signals_{DAY1}.jsonl") == [
        {"ok": 1},
        {"ok": 2},
        {"nan_ts": True},
    ]
    w.close()


async def test_buffered_mode_flushes_each_interval_in_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    calls = count_appends(monkeypatch)
    w = RecordWriter(
        tmp_path, flush_interval_ms=200, fsync_interval_ms=0, clock=trio_clock(T0 - 10_000)
    )
    path = tmp_path / f"signals_{DAY1}.jsonl"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(w.run)
        await trio.sleep(0.01)
        for i in range(10):
            w.write("signals", T0, {"i": i})
        assert not path.exists() or read_jsonl(path) == []
        assert w.pending == 10
        await trio.sleep(0.25)
        assert read_jsonl(path) == [{"i": i} for i in range(10)]
        assert calls == [10]
        assert w.pending == 0
        w.write("signals", T0, {"i": 10})
        nursery.cancel_scope.cancel()
    # cancelling run() closes the writer: the buffered record is flushed
    assert read_jsonl(path)[-1] == {"i": 10}


async def test_buffer_over_max_bytes_is_written_at_once(tmp_path: Path) -> None:
    w = RecordWriter(tmp_path, flush_interval_ms=60_000, clock=FakeClock(), max_buffer_bytes=100)
    for i in range(21):
        w.write("signals", T0, {"i": i, "pad": "x" * 10})  # 26-27 bytes a line
    assert len(read_jsonl(tmp_path / f"signals_{DAY1}.jsonl")) == 20  # 5 writes of 4 lines
    assert w.pending == 1
    w.close()
    assert len(read_jsonl(tmp_path / f"signals_{DAY1}.jsonl")) == 21


async def test_fsync_every_interval_only_for_dirty_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fake_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fake_fsync)
    w = RecordWriter(tmp_path, fsync_interval_ms=1000, clock=trio_clock(T0 - 100_000))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(w.run)
        w.write("signals", T0, {"i": 1})
        w.write("orders", T0, {"i": 1})
        await trio.sleep(0.5)
        assert synced == []  # not yet an interval
        await trio.sleep(0.6)
        await trio.testing.wait_all_threads_completed()  # fsync runs in a worker thread
        assert len(synced) == 2  # both dirty files, once
        await trio.sleep(3)
        await trio.testing.wait_all_threads_completed()
        assert len(synced) == 2  # nothing new written: nothing to sync
        w.write("signals", T0, {"i": 2})
        await trio.sleep(1.1)
        await trio.testing.wait_all_threads_completed()
        assert len(synced) == 3
        nursery.cancel_scope.cancel()
    assert w.stats.fsyncs >= 3
    assert w.stats.fsync_errors == 0


async def test_enospc_keeps_records_and_retries_with_backoff(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    w = RecordWriter(
        tmp_path, fsync_interval_ms=0, clock=trio_clock(T0 - 100_000), retry_base_ms=100
    )
    path = tmp_path / f"signals_{DAY1}.jsonl"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(w.run)
        w.write("signals", T0, {"i": 0})
        monkeypatch.setattr(jsonl, "os", _OsShim(enospc_write))
        with caplog.at_level(logging.ERROR):
            for i in range(1, 4):
                w.write("signals", T0, {"i": i})  # never raises
        assert "errno 28" in caplog.text and str(path) in caplog.text
        assert w.stats.write_errors >= 1
        assert w.pending == 3
        assert lines_clean(path) and read_jsonl(path) == [{"i": 0}]
        await trio.sleep(1.0)  # retries keep failing, file stays clean
        assert w.stats.write_errors >= 3
        assert lines_clean(path) and read_jsonl(path) == [{"i": 0}]
        monkeypatch.undo()  # disk space is back
        await trio.sleep(6.0)  # within the max backoff
        assert read_jsonl(path) == [{"i": i} for i in range(4)]
        assert w.pending == 0
        w.write("signals", T0, {"i": 4})
        assert read_jsonl(path)[-1] == {"i": 4}
        nursery.cancel_scope.cancel()
    assert w.stats.records_written == {"signals": 5}


def test_unwritable_dir_is_logged_and_retried_on_later_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The predecessor's root-owned data dir: the writer logs, keeps and retries."""
    data = tmp_path / "data"
    data.write_text("a file where the directory should be")
    clock = FakeClock()
    w = RecordWriter(data, clock=clock, retry_base_ms=100)
    with caplog.at_level(logging.ERROR):
        w.write("signals", T0, {"i": 1})
        w.write("signals", T0, {"i": 2})
    assert "errno" in caplog.text and "signals_" in caplog.text
    assert w.pending == 2 and w.stats.write_errors == 1  # second write waits for the backoff
    data.unlink()
    clock.now += 150
    w.write("signals", T0, {"i": 3})  # backoff elapsed: the queue goes first, in order
    assert read_jsonl(data / f"signals_{DAY1}.jsonl") == [{"i": 1}, {"i": 2}, {"i": 3}]
    assert w.pending == 0
    w.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_dir(tmp_path: Path) -> None:  # pragma: no cover - only as non-root
    data = tmp_path / "ro"
    data.mkdir(mode=0o500)
    clock = FakeClock()
    w = RecordWriter(data, clock=clock)
    w.write("signals", T0, {"i": 1})
    assert w.pending == 1 and w.stats.write_errors == 1
    data.chmod(0o700)
    clock.now += 10_000
    w.close()
    assert read_jsonl(data / f"signals_{DAY1}.jsonl") == [{"i": 1}]


def test_bounded_retry_queue_drops_oldest_and_logs_critical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    w = RecordWriter(tmp_path, clock=clock, max_pending_records=5)
    monkeypatch.setattr(jsonl, "os", _OsShim(enospc_write))
    with caplog.at_level(logging.CRITICAL):
        for i in range(8):
            w.write("signals", T0, {"i": i})
            w.write("orders", T0, {"i": i}) if i == 7 else None
    assert w.stats.dropped == 4
    assert w.pending == 5
    assert any(r.levelno == logging.CRITICAL for r in caplog.records)
    monkeypatch.undo()
    clock.now += 60_000
    assert w.flush()
    assert read_jsonl(tmp_path / f"signals_{DAY1}.jsonl") == [{"i": i} for i in range(4, 8)]
    assert read_jsonl(tmp_path / f"orders_{DAY1}.jsonl") == [{"i": 7}]
    w.close()


async def test_keeps_at_most_two_day_files_open_per_kind(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    w = RecordWriter(tmp_path, fsync_interval_ms=500, clock=trio_clock(T0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(w.run)
        for day in range(4):
            w.write("signals", T0 + day * 86_400_000, {"day": day})
            assert len(w.open_files("signals")) <= 2
        await trio.sleep(1.0)  # retired files are fsynced and closed by the run task
        await trio.testing.wait_all_threads_completed()
        assert w.stats.files_closed == 2
        nursery.cancel_scope.cancel()
    for day in range(4):
        d = datetime.fromtimestamp((T0 + day * 86_400_000) / 1000, UTC).strftime("%Y-%m-%d")
        assert read_jsonl(tmp_path / f"signals_{d}.jsonl") == [{"day": day}]


async def test_idle_old_day_file_is_closed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    w = RecordWriter(tmp_path, fsync_interval_ms=0, idle_close_ms=5_000, clock=trio_clock(T0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(w.run)
        w.write("signals", T0, {"i": 1})  # DAY1; the clock crosses midnight a second later
        assert len(w.open_files("signals")) == 1
        await trio.sleep(7)
        assert w.open_files("signals") == []
        w.write("signals", T0 + 10_000, {"i": 2})  # DAY2 file opens
        await trio.sleep(7)
        assert len(w.open_files("signals")) == 1  # today's file stays open
        nursery.cancel_scope.cancel()


def test_close_flushes_and_later_writes_still_land(tmp_path: Path) -> None:
    w = RecordWriter(tmp_path, flush_interval_ms=1000, clock=FakeClock())
    w.write("signals", T0, {"i": 1})
    assert w.pending == 1
    w.close()
    assert w.pending == 0
    w.write("signals", T0, {"i": 2})  # after close: immediate
    w.close()
    assert read_jsonl(tmp_path / f"signals_{DAY1}.jsonl") == [{"i": 1}, {"i": 2}]
    assert w.stats.records_written == {"signals": 2}


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        RecordWriter("x", flush_interval_ms=-1)
    with pytest.raises(ValueError):
        RecordWriter("x", max_pending_records=0)


def test_large_retry_queue_is_written_in_bounded_whole_line_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    w = RecordWriter(tmp_path, clock=clock, max_buffer_bytes=50)
    monkeypatch.setattr(jsonl, "os", _OsShim(enospc_write))
    for i in range(10):
        w.write("signals", T0, {"i": i})  # 8 bytes a line, all queued
    monkeypatch.undo()
    calls = count_appends(monkeypatch)
    clock.now += 60_000
    assert w.flush()
    assert calls == [6, 4]  # at most 50 bytes per os.write, whole lines
    assert read_jsonl(tmp_path / f"signals_{DAY1}.jsonl") == [{"i": i} for i in range(10)]
    assert w.pending == 0 and w.stats.records_written == {"signals": 10}
    w.close()
