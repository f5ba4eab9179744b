"""Retention: compress closed day files, delete beyond the policy, dry run, crash recovery."""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import gzip
import hashlib
import logging
import os
from pathlib import Path

import pytest
import trio

from engine.config import RetentionConfig
from engine.io.journal import load_journal
from engine.ops import retention as ret
from engine.ops.retention import (
    apply_retention,
    compare_pair,
    day_sources,
    plan_retention,
)

TODAY = dt.date(2024, 6, 10)
NOW = dt.datetime(2024, 6, 10, 12, 0, tzinfo=dt.UTC).timestamp()
OLD = NOW - 2 * 86_400  # mtime of the fixture files: well past the grace period
CFG = RetentionConfig(days={"signals": 30, "followups": 30, "orders": 90, "trades": 90},
                      default_days=10)


def _name(kind: str, day: dt.date, gz: bool = False) -> str:
    return f"{kind}_{day.isoformat()}.jsonl" + (".gz" if gz else "")


def _content(kind: str, day: dt.date) -> bytes:
    return b"".join(b'{"kind": "%s", "day": "%s", "i": %d}\n' % (kind.encode(),
                                                                  day.isoformat().encode(), i)
                    for i in range(5))


def _write(p: Path, data: bytes, mtime: float = OLD) -> None:
    p.write_bytes(data)
    os.utime(p, (mtime, mtime))


def _snapshot(d: Path) -> dict[str, tuple[str, float, bool]]:
    out = {}
    for p in sorted(d.iterdir()):
        if p.is_symlink():
            out[p.name] = (os.readlink(p), 0.0, True)
        elif p.is_dir():
            out[p.name] = ("dir", 0.0, False)
        else:
            out[p.name] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime, False)
    return out


@pytest.fixture
def records(tmp_path: Path) -> Path:
    """100 days (today − 99 … today) of signals, trades, orders and 'misc' (default policy),
    plus files retention must leave alone."""
    d = tmp_path / "records"
    d.mkdir()
    for i in range(100):
        day = TODAY - dt.timedelta(days=i)
        for kind in ("signals", "trades", "orders", "misc"):
            _write(d / _name(kind, day), _content(kind, day))
    _write(d / "signals_2024-06-09.jsonl.torn", b'{"frag\n')
    _write(d / "KILL", b"operator\n")
    _write(d / "notes.txt", b"hello\n")
    _write(d / "signals_2024-02-30.jsonl", b"{}\n")  # not a date
    _write(d / _name("signals", TODAY + dt.timedelta(days=1)), b"{}\n")  # future
    (d / "reports").mkdir()
    outside = tmp_path / "outside.jsonl"
    _write(outside, b'{"precious": true}\n')
    (d / _name("signals", TODAY - dt.timedelta(days=60))).unlink()
    (d / _name("signals", TODAY - dt.timedelta(days=60))).symlink_to(outside)
    return d


def _by_action(plan: ret.RetentionPlan) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a in plan.actions:
        out.setdefault(a.action, set()).add(a.path.name)
    return out


def _expected(kind: str, n: int) -> tuple[set[str], set[str]]:
    """(names deleted, names compressed) for a kind kept ``n`` days, over the 100 days."""
    days = [TODAY - dt.timedelta(days=i) for i in range(1, 100)]
    cutoff = TODAY - dt.timedelta(days=n)
    return ({_name(kind, d) for d in days if d < cutoff},
            {_name(kind, d) for d in days if d >= cutoff})


def test_dry_run_changes_nothing_and_lists_the_plan(records: Path) -> None:
    before = _snapshot(records)
    plan = plan_retention(records, CFG, TODAY, now=NOW)
    assert plan.errors == () and not plan.disabled
    acts = _by_action(plan)
    sig_del, sig_cmp = _expected("signals", 30)
    trd_del, trd_cmp = _expected("trades", 90)
    ord_del, ord_cmp = _expected("orders", 90)
    misc_del, misc_cmp = _expected("misc", 10)
    symlink = _name("signals", TODAY - dt.timedelta(days=60))
    assert len(sig_del) == 69 and len(trd_del) == 9 and len(misc_del) == 89
    assert acts["delete"] == (sig_del - {symlink}) | trd_del | ord_del | misc_del
    assert acts["compress"] == sig_cmp | trd_cmp | ord_cmp | misc_cmp
    assert not any(TODAY.isoformat() in a.path.name for a in plan.actions)  # today untouched
    reasons = {s.path.name: s.reason for s in plan.skipped}
    assert "torn" in reasons["signals_2024-06-09.jsonl.torn"]
    assert "not a valid date" in reasons["signals_2024-02-30.jsonl"]
    assert "after today" in reasons["signals_2024-06-11.jsonl"]
    assert "not a regular file" in reasons[symlink]
    assert "KILL" not in reasons and "notes.txt" not in reasons
    one = next(a for a in plan.actions if a.path.name == _name("signals", TODAY
                                                                 - dt.timedelta(days=31)))
    assert one.action == "delete" and "kept 30 day(s)" in one.reason
    listing = plan.describe()
    assert "compress signals_2024-06-09.jsonl" in listing

    result = apply_retention(plan, dry_run=True)
    assert _snapshot(records) == before
    assert result.ok and result.dry_run and result.bytes_freed == 0
    assert len(result.done) == len(plan.actions)
    assert all(o.detail.startswith("would ") for o in result.done)
    assert "dry run: nothing changed" in result.summary()


def test_real_run_compresses_deletes_by_kind_and_leaves_today(records: Path) -> None:
    today_files = {p.name: p.read_bytes() for p in records.glob(f"*_{TODAY.isoformat()}.jsonl")}
    today_mtimes = {n: (records / n).stat().st_mtime for n in today_files}
    untouched = ("KILL", "notes.txt", "signals_2024-02-30.jsonl", "signals_2024-06-09.jsonl.torn",
                 "signals_2024-06-11.jsonl")
    leave = {n: (records / n).read_bytes() for n in untouched}
    plan = plan_retention(records, CFG, TODAY, now=NOW)
    result = apply_retention(plan, dry_run=False)
    assert result.ok, result.summary()
    assert result.bytes_freed > 0
    names = {p.name for p in records.iterdir()}
    for kind, keep in (("signals", 30), ("trades", 90), ("orders", 90), ("misc", 10)):
        for i in range(1, 100):
            day = TODAY - dt.timedelta(days=i)
            if kind == "signals" and i == 60:
                continue  # the symlink
            kept = day >= TODAY - dt.timedelta(days=keep)
            assert (_name(kind, day, gz=True) in names) == kept, (kind, day)
            assert _name(kind, day) not in names, (kind, day)
            if kept:
                with gzip.open(records / _name(kind, day, gz=True), "rb") as f:
                    assert f.read() == _content(kind, day)
    for n, data in today_files.items():
        assert (records / n).read_bytes() == data
        assert (records / n).stat().st_mtime == today_mtimes[n]
    for n, data in leave.items():
        assert (records / n).read_bytes() == data
    symlink = records / _name("signals", TODAY - dt.timedelta(days=60))
    assert symlink.is_symlink() and symlink.read_bytes() == b'{"precious": true}\n'
    assert not any(n.endswith(".tmp") for n in names)
    # a second plan has nothing left to do
    assert plan_retention(records, CFG, TODAY, now=NOW).actions == ()


def test_compressed_days_read_back_through_day_sources(records: Path) -> None:
    apply_retention(plan_retention(records, CFG, TODAY, now=NOW), dry_run=False)
    day = TODAY - dt.timedelta(days=3)
    paths, note = day_sources(records, "orders", day)
    assert paths == [records / _name("orders", day, gz=True)] and note is None


def _pair(d: Path, jsonl: bytes, gz: bytes, day: dt.date) -> tuple[Path, Path]:
    j, g = d / _name("signals", day), d / _name("signals", day, gz=True)
    _write(j, jsonl)
    _write(g, gz)
    return j, g


def test_crash_recovery_truncated_gz_is_redone(tmp_path: Path) -> None:
    day = TODAY - dt.timedelta(days=2)
    data = _content("signals", day)
    j, g = _pair(tmp_path, data, gzip.compress(data)[:-12], day)
    assert compare_pair(g, j).state == "gz_invalid"
    plan = plan_retention(tmp_path, CFG, TODAY, now=NOW)
    assert [(a.action, a.path) for a in plan.actions] == [("finish_compress", j)]
    result = apply_retention(plan, dry_run=False)
    assert result.ok, result.summary()
    assert not j.exists()
    with gzip.open(g, "rb") as f:
        assert f.read() == data
    assert "redone (gz_invalid" in result.done[0].detail


def test_crash_recovery_complete_gz_removes_jsonl(tmp_path: Path) -> None:
    day = TODAY - dt.timedelta(days=2)
    data = _content("signals", day)
    good = gzip.compress(data)
    j, g = _pair(tmp_path, data, good, day)
    result = apply_retention(plan_retention(tmp_path, CFG, TODAY, now=NOW), dry_run=False)
    assert result.ok and not j.exists() and g.read_bytes() == good  # the .gz is not rewritten
    assert "verified" in result.done[0].detail


def test_late_lines_after_compression_are_merged(tmp_path: Path) -> None:
    day = TODAY - dt.timedelta(days=2)
    first, late = b'{"a": 1}\n{"a": 2}\n', b'{"a": 3}\n'
    j, g = _pair(tmp_path, late, gzip.compress(first), day)
    assert compare_pair(g, j).state == "merge"
    assert day_sources(tmp_path, "signals", day)[0] == [g, j]
    assert apply_retention(plan_retention(tmp_path, CFG, TODAY, now=NOW), dry_run=False).ok
    with gzip.open(g, "rb") as f:
        assert f.read() == first + late
    assert not j.exists()
    # a .jsonl that kept growing after compressing: redone from the .jsonl
    j, g = _pair(tmp_path, first + late, gzip.compress(first), day)
    assert compare_pair(g, j).state == "jsonl_extends"
    assert apply_retention(plan_retention(tmp_path, CFG, TODAY, now=NOW), dry_run=False).ok
    with gzip.open(g, "rb") as f:
        assert f.read() == first + late


def test_failure_mid_compression_never_loses_both(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    day = TODAY - dt.timedelta(days=2)
    data = _content("signals", day)
    j = tmp_path / _name("signals", day)
    _write(j, data)

    def no_rename(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(ret.os, "replace", no_rename)
    result = apply_retention(plan_retention(tmp_path, CFG, TODAY, now=NOW), dry_run=False)
    assert not result.ok and "errno 5" in result.failed[0].detail
    assert sorted(p.name for p in tmp_path.iterdir()) == [j.name]  # temp removed, .jsonl intact
    assert j.read_bytes() == data
    monkeypatch.undo()

    # crash after the rename, before the unlink: both exist; the next run finishes the job
    real_unlink = ret._unlink

    def crash_on_unlink(p: Path) -> int:
        raise OSError(errno.EIO, "simulated crash")

    monkeypatch.setattr(ret, "_unlink", crash_on_unlink)
    assert not apply_retention(plan_retention(tmp_path, CFG, TODAY, now=NOW), dry_run=False).ok
    assert j.exists() and (tmp_path / (j.name + ".gz")).exists()
    monkeypatch.setattr(ret, "_unlink", real_unlink)
    result = apply_retention(plan_retention(tmp_path, CFG, TODAY, now=NOW), dry_run=False)
    assert result.ok and [a.action.action for a in result.done] == ["finish_compress"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [j.name + ".gz"]


def test_leftover_temp_is_removed_and_torn_tail_quarantined(tmp_path: Path) -> None:
    day = TODAY - dt.timedelta(days=3)
    _write(tmp_path / (_name("orders", day) + ".gz.tmp"), b"partial")
    j = tmp_path / _name("orders", day)
    _write(j, b'{"a": 1}\n{"a": 2}\n{"a": ')
    plan = plan_retention(tmp_path, CFG, TODAY, now=NOW)
    assert sorted(a.action for a in plan.actions) == ["compress", "remove_temp"]
    dry = apply_retention(plan, dry_run=True)
    assert any("quarantine its torn last line" in o.detail for o in dry.done)
    assert apply_retention(plan, dry_run=False).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == [j.name + ".gz", j.name + ".torn"]
    with gzip.open(tmp_path / (j.name + ".gz"), "rb") as f:
        assert f.read() == b'{"a": 1}\n{"a": 2}\n'
    assert (tmp_path / (j.name + ".torn")).read_bytes() == b'{"a": \n'


def test_recent_closed_file_waits_for_the_grace_period(tmp_path: Path) -> None:
    day = TODAY - dt.timedelta(days=1)
    j = tmp_path / _name("signals", day)
    _write(j, b"{}\n", mtime=NOW - 60)
    plan = plan_retention(tmp_path, CFG, TODAY, now=NOW)
    assert plan.actions == ()
    assert "may still receive late records" in plan.skipped[0].reason
    assert [a.action for a in plan_retention(tmp_path, CFG, TODAY, now=NOW,
                                             grace_s=30).actions] == ["compress"]


def test_unreset_hard_stop_latch_is_kept(tmp_path: Path) -> None:
    old = TODAY - dt.timedelta(days=200)
    latch = b'{"event": "hard_stop", "reason": "reject_burst", "ts_ms": 1}\n'
    _write(tmp_path / _name("positions", old), b'{"event": "fill"}\n' + latch)
    _write(tmp_path / _name("positions", old - dt.timedelta(days=1)), b'{"event": "fill"}\n')
    cfg = RetentionConfig(days={"positions": 90})
    plan = plan_retention(tmp_path, cfg, TODAY, now=NOW)
    assert [a.path.name for a in plan.actions] == [_name("positions", old - dt.timedelta(days=1))]
    assert "hard-stop latch" in plan.skipped[0].reason
    assert apply_retention(plan, dry_run=False).ok
    assert (tmp_path / _name("positions", old)).exists()
    # the journal restore still finds the latch
    now_ms = NOW * 1000
    assert load_journal(tmp_path, now_ms).hard_stop is not None
    # once a later (compressed) file resets it, the old file goes
    reset = TODAY - dt.timedelta(days=5)
    (tmp_path / _name("positions", reset, gz=True)).write_bytes(
        gzip.compress(b'{"event": "hard_stop_reset", "ts_ms": 2}\n'))
    plan = plan_retention(tmp_path, cfg, TODAY, now=NOW)
    assert [a.path.name for a in plan.actions] == [_name("positions", old)]


def test_policy_that_would_break_restore_is_refused(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    day = TODAY - dt.timedelta(days=1)
    _write(tmp_path / _name("orders", day), b"{}\n")
    cfg = RetentionConfig()
    object.__setattr__(cfg, "days", {"orders": 0})  # bypass the config validator on purpose
    plan = plan_retention(tmp_path, cfg, TODAY, now=NOW)
    assert plan.errors and "days.orders = 0" in plan.errors[0]
    with caplog.at_level(logging.ERROR, logger="engine.ops.retention"):
        result = apply_retention(plan, dry_run=False)
    assert not result.ok and result.refused == plan.errors
    assert "REFUSED" in result.summary() and "retention refused" in caplog.text
    assert (tmp_path / _name("orders", day)).read_bytes() == b"{}\n"


def test_unknown_policy_kind_warns_and_disabled_does_nothing(tmp_path: Path) -> None:
    day = TODAY - dt.timedelta(days=50)
    _write(tmp_path / _name("signals", day), b"{}\n")
    plan = plan_retention(tmp_path, RetentionConfig(days={"signal": 5}), TODAY, now=NOW)
    assert "days.signal" in plan.warnings[0] and "typo" in plan.warnings[0]
    off = plan_retention(tmp_path, RetentionConfig(enabled=False), TODAY, now=NOW)
    assert off.disabled and off.actions == ()
    assert apply_retention(off, dry_run=False).done == ()
    assert (tmp_path / _name("signals", day)).exists()
    nocompress = RetentionConfig(days={}, compress_closed_days=False, default_days=60)
    assert plan_retention(tmp_path, nocompress, TODAY, now=NOW).actions == ()


def test_concurrent_run_is_refused(tmp_path: Path) -> None:
    day = TODAY - dt.timedelta(days=50)
    _write(tmp_path / _name("signals", day), b"{}\n")
    plan = plan_retention(tmp_path, CFG, TODAY, now=NOW)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = apply_retention(plan, dry_run=False)
    finally:
        os.close(fd)
    assert result.refused and "another retention run" in result.refused[0]
    assert (tmp_path / _name("signals", day)).exists()
    assert apply_retention(plan, dry_run=False).ok


def test_missing_records_dir_is_a_plan_error(tmp_path: Path) -> None:
    plan = plan_retention(tmp_path / "nope", CFG, TODAY, now=NOW)
    assert plan.errors and "cannot list the records dir" in plan.errors[0]
    assert not apply_retention(plan, dry_run=True).ok


async def test_runs_in_a_worker_thread_from_trio(tmp_path: Path) -> None:
    day = TODAY - dt.timedelta(days=3)
    _write(tmp_path / _name("signals", day), _content("signals", day))
    with trio.fail_after(30):
        plan = await trio.to_thread.run_sync(
            lambda: plan_retention(tmp_path, CFG, TODAY, now=NOW))
        result = await trio.to_thread.run_sync(apply_retention, plan, False)
    assert result.ok and (tmp_path / _name("signals", day, gz=True)).is_file()
