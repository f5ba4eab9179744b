"""Record retention: gzip closed UTC-day files, delete the ones beyond each kind's policy.

Owns what happens to ``{kind}_{YYYY-MM-DD}.jsonl`` files in the records dir once their UTC day
has ended (see docs/reports.md, "Retention"):

* :func:`plan_retention` looks at the records dir (never below it, never through a symlink)
  and returns a :class:`RetentionPlan`: one :class:`RetentionAction` per file to compress or
  delete, with its reason, plus the files it leaves alone on purpose (``.torn`` quarantine
  files, the positions file holding an unreset hard-stop latch, names that look like day files
  but are not). Today's files, future days and unrelated names are never in a plan.
* :func:`apply_retention` carries a plan out (or, with ``dry_run``, only says what it would
  do) under an exclusive ``flock`` on the records dir, re-checking every file first.

Compression is crash-safe: ``x.jsonl`` is gzipped into ``x.jsonl.gz.tmp``, fsynced, verified
by decompressing it completely and comparing the content hash, renamed to ``x.jsonl.gz`` (the
directory fsynced), and only then is ``x.jsonl`` unlinked. At no point are both forms missing.
When both forms exist (a crash between the rename and the unlink, or a late record appended to
a day that was already compressed), :func:`compare_pair` decides from the content: identical →
the ``.jsonl`` is removed; the ``.gz`` truncated or corrupt → it is redone from the ``.jsonl``;
the ``.jsonl`` extends the ``.gz`` → redone from the ``.jsonl``; otherwise the ``.gz`` content
followed by the ``.jsonl`` lines. :func:`day_sources` gives readers (the daily report) the same
answer, so a day is never counted twice. Both, and the day-file naming, live in
:mod:`engine.io.dayfiles` (below ``engine.ops``, so ``engine.io`` never imports ops).
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import gzip
import hashlib
import logging
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import attrs
import msgspec

from engine.config import RetentionConfig
from engine.io.dayfiles import (  # noqa: F401 - DAY_FILE, PairState, day_sources re-exported
    DAY_FILE,
    IncompleteGzipError,
    PairState,
    compare_pair,
    day_sources,
    iter_gz,
)
from engine.io.dayfiles import digest as _digest
from engine.io.dayfiles import iter_plain as _iter_plain
from engine.io.jsonl import repair_torn_tail

log = logging.getLogger(__name__)

TORN_FILE = re.compile(r"^[a-z_]+_\d{4}-\d{2}-\d{2}\.jsonl\.torn$")
TMP_FILE = re.compile(r"^(?P<kind>[a-z_]+)_(?P<day>\d{4}-\d{2}-\d{2})\.jsonl\.gz\.tmp$")
KNOWN_KINDS = ("signals", "followups", "orders", "fills", "positions", "trades", "frames")
# frame recordings (engine/io/frames.py): ``frames/frames_YYYY-MM-DD.zst``, already compressed,
# so only deleted (kind ``frames``)
FRAMES_FILE = re.compile(r"^frames_(?P<day>\d{4}-\d{2}-\d{2})\.zst$")
# The journal restore (engine/io/journal.py) and the followup recovery
# (engine/io/followup_recovery.py) read today's and yesterday's files.
RESTORE_LOOKBACK_DAYS = 2
RESTORE_KINDS = ("signals", "followups", "orders", "fills", "positions", "trades")
DEFAULT_GRACE_S = 600.0

ActionName = Literal["compress", "finish_compress", "delete", "remove_temp"]


class RetentionError(Exception):
    """An action could not be carried out (the files are left as they were)."""


# ------------------------------------------------------------------------------ value types


@attrs.frozen
class RetentionAction:
    """One change to one file: ``compress`` / ``finish_compress`` (path = the ``.jsonl``),
    ``delete`` (either form) or ``remove_temp`` (a leftover ``.gz.tmp`` of ours)."""

    action: ActionName
    path: Path
    kind: str
    day: dt.date
    reason: str

    def describe(self) -> str:
        return f"{self.action} {self.path.name}: {self.reason}"


@attrs.frozen
class SkippedFile:
    """A file the plan leaves alone on purpose, and why (reported, never touched)."""

    path: Path
    reason: str


@attrs.frozen
class RetentionPlan:
    """What :func:`apply_retention` would do; ``errors`` make it refuse to do anything."""

    records_dir: Path
    today: dt.date
    actions: tuple[RetentionAction, ...] = ()
    skipped: tuple[SkippedFile, ...] = ()
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    disabled: bool = False

    def describe(self) -> str:
        """A readable multi-line listing of the plan."""
        lines = [f"retention plan for {self.records_dir} (today {self.today.isoformat()} UTC): "
                 f"{len(self.actions)} action(s)"]
        if self.disabled:
            lines.append("  retention is disabled ([retention] enabled = false)")
        lines += [f"  ERROR: {e}" for e in self.errors]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  {a.describe()}" for a in self.actions]
        lines += [f"  leave {s.path.name}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


@attrs.frozen
class ActionOutcome:
    action: RetentionAction
    detail: str


@attrs.frozen
class RetentionResult:
    """What :func:`apply_retention` did (or, dry-run, would do)."""

    dry_run: bool
    done: tuple[ActionOutcome, ...] = ()
    failed: tuple[ActionOutcome, ...] = ()
    refused: tuple[str, ...] = ()
    skipped: tuple[SkippedFile, ...] = ()
    warnings: tuple[str, ...] = ()
    bytes_freed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.refused

    def summary(self) -> str:
        if self.dry_run:
            head = f"retention (dry run: nothing changed): {len(self.done)} action(s) planned"
        else:
            head = (f"retention: {len(self.done)} done, {len(self.failed)} failed, "
                    f"{self.bytes_freed} bytes freed")
        lines = [head]
        lines += [f"  REFUSED: {r}" for r in self.refused]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  {o.action.path.name}: {o.detail}" for o in self.done]
        lines += [f"  FAILED {o.action.path.name}: {o.detail}" for o in self.failed]
        lines += [f"  left alone {s.path.name}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


# ------------------------------------------------------------------------------ file helpers


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _iter_gz(path: Path) -> Iterator[bytes]:
    """The decompressed content of ``path`` in chunks; raises :class:`RetentionError` when the
    file is truncated or corrupt."""
    try:
        yield from iter_gz(path)
    except IncompleteGzipError as exc:
        raise RetentionError(str(exc)) from exc


# ------------------------------------------------------------------------------ planning


@attrs.define
class _Group:
    kind: str
    day: dt.date
    jsonl: Path | None = None
    gz: Path | None = None


def _restore_errors(cfg: RetentionConfig) -> list[str]:
    """Policies that would delete files the restart recovery reads (today and yesterday)."""
    errors = []
    for kind in RESTORE_KINDS:
        n = cfg.days.get(kind, cfg.default_days)
        if n < RESTORE_LOOKBACK_DAYS - 1:
            errors.append(f"days.{kind} = {n} would delete files the restart recovery reads "
                          f"(it needs the last {RESTORE_LOOKBACK_DAYS} UTC days): use >= "
                          f"{RESTORE_LOOKBACK_DAYS - 1}")
    return errors


_HS = msgspec.json.Decoder()


def _last_latch_event(path: Path) -> str | None:
    """The last ``hard_stop`` / ``hard_stop_reset`` event in a positions file (either form)."""
    last: str | None = None
    opener: Callable[..., Any] = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for line in f:
            if b"hard_stop" not in line or not line.endswith(b"\n"):
                continue
            try:
                rec = _HS.decode(line)
            except msgspec.DecodeError:
                continue
            if isinstance(rec, dict) and rec.get("event") in ("hard_stop", "hard_stop_reset"):
                last = rec["event"]
    return last


def _latch_day(groups: dict[tuple[str, dt.date], _Group], today: dt.date,
               warnings: list[str]) -> dt.date | None:
    """The day of the newest positions file whose last latch event is an unreset hard stop.

    Mirrors the journal restore: the newest file with a latch event decides."""
    days = sorted((g.day for (k, _), g in groups.items() if k == "positions" and g.day <= today),
                  reverse=True)
    for day in days:
        g = groups[("positions", day)]
        for p in (g.jsonl, g.gz):
            if p is None:
                continue
            try:
                ev = _last_latch_event(p)
            except (OSError, EOFError, zlib.error) as exc:
                warnings.append(f"cannot read {p.name} to look for a hard-stop latch: {exc}; "
                                "it is kept")
                return day
            if ev is not None:
                return day if ev == "hard_stop" else None
    return None


def plan_retention(records_dir: Path, cfg: RetentionConfig, today: dt.date, *,
                   grace_s: float = DEFAULT_GRACE_S, now: float | None = None) -> RetentionPlan:
    """Plan retention of ``records_dir`` for UTC ``today`` under ``cfg`` (changes nothing).

    Day ``D`` of kind ``k`` is deleted (both forms) when ``D < today − N`` with ``N =
    cfg.days.get(k, cfg.default_days)``; otherwise, when ``D < today`` and
    ``cfg.compress_closed_days``, its ``.jsonl`` is compressed — unless it was modified within
    ``grace_s`` seconds of ``now`` (epoch seconds, default the wall clock): the writer may still
    append a late record to a day that just ended.
    """
    records_dir = Path(records_dir)
    if not cfg.enabled:
        return RetentionPlan(records_dir, today, disabled=True)
    errors = _restore_errors(cfg)
    warnings = [f"[retention] days.{k}: not a record kind this engine writes "
                f"({', '.join(KNOWN_KINDS)}): a typo?"
                for k in sorted(cfg.days) if k not in KNOWN_KINDS]
    now_s = time.time() if now is None else now
    try:
        entries = list(os.scandir(records_dir))
    except OSError as exc:
        return RetentionPlan(records_dir, today, errors=(
            f"cannot list the records dir {records_dir}: {exc.strerror or exc}",))
    skipped: list[SkippedFile] = []
    actions: list[RetentionAction] = []
    groups: dict[tuple[str, dt.date], _Group] = {}
    for e in sorted(entries, key=lambda e: e.name):
        path = records_dir / e.name
        m = DAY_FILE.match(e.name)
        if TORN_FILE.match(e.name):
            skipped.append(SkippedFile(path, "torn fragments quarantined by the record writer: "
                                             "inspect them; never touched by retention"))
            continue
        tm = TMP_FILE.match(e.name)
        mm = m or tm
        if mm is None:
            continue  # not ours: operator files, reports/, ...
        if not e.is_file(follow_symlinks=False):
            skipped.append(SkippedFile(path, "named like a day file but not a regular file "
                                             "(symlink or directory): left alone"))
            continue
        try:
            day = dt.date.fromisoformat(mm["day"])
        except ValueError:
            skipped.append(SkippedFile(path, f"{mm['day']} is not a valid date: left alone"))
            continue
        if m is None:
            actions.append(RetentionAction("remove_temp", path, mm["kind"], day,
                                           "leftover of an interrupted compression"))
            continue
        g = groups.setdefault((m["kind"], day), _Group(m["kind"], day))
        if m["gz"]:
            g.gz = path
        else:
            g.jsonl = path

    latch_day: dt.date | None = None
    if any(k == "positions" and d < today for k, d in groups):
        latch_day = _latch_day(groups, today, warnings)

    for (kind, day), g in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        paths = [p for p in (g.jsonl, g.gz) if p is not None]
        if day >= today:
            if day > today:
                skipped += [SkippedFile(p, f"day {day} is after today ({today}): clock wrong? "
                                           "left alone") for p in paths]
            continue
        if kind == "positions" and day == latch_day:
            skipped += [SkippedFile(p, "holds the last hard-stop latch (never reset): kept as is "
                                       "so the journal restore re-latches it") for p in paths]
            continue
        n = cfg.days.get(kind, cfg.default_days)
        cutoff = today - dt.timedelta(days=n)
        if day < cutoff:
            for p in paths:
                actions.append(RetentionAction(
                    "delete", p, kind, day, f"{kind} are kept {n} day(s): {day} < {cutoff}"))
            continue
        if not cfg.compress_closed_days or g.jsonl is None:
            continue
        try:
            age = now_s - g.jsonl.stat().st_mtime
        except OSError as exc:
            warnings.append(f"cannot stat {g.jsonl.name}: {exc.strerror or exc}")
            continue
        if age < grace_s:
            skipped.append(SkippedFile(g.jsonl, f"modified {age:.0f} s ago (< {grace_s:.0f} s): "
                                                "may still receive late records; compressed "
                                                "on a later run"))
            continue
        if g.gz is not None:
            actions.append(RetentionAction(
                "finish_compress", g.jsonl, kind, day,
                "both .jsonl and .jsonl.gz exist (interrupted compression or late records): "
                "verify the .gz, then remove the .jsonl or redo the .gz"))
        else:
            actions.append(RetentionAction("compress", g.jsonl, kind, day,
                                           f"day {day} is closed"))
    _plan_frames(records_dir, cfg, today, actions, skipped)
    return RetentionPlan(records_dir, today, tuple(actions), tuple(skipped), tuple(warnings),
                         tuple(errors))


def _plan_frames(records_dir: Path, cfg: RetentionConfig, today: dt.date,
                 actions: list[RetentionAction], skipped: list[SkippedFile]) -> None:
    """Kind ``frames``: delete ``frames/frames_D.zst`` when ``D < today - days.frames``."""
    fdir = records_dir / "frames"
    if fdir.is_symlink() or not fdir.is_dir():
        return
    n = cfg.days.get("frames", cfg.default_days)
    cutoff = today - dt.timedelta(days=n)
    for e in sorted(os.scandir(fdir), key=lambda e: e.name):
        m = FRAMES_FILE.match(e.name)
        if m is None:
            continue
        path = fdir / e.name
        if not e.is_file(follow_symlinks=False):
            skipped.append(SkippedFile(path, "named like a frames file but not a regular file: "
                                             "left alone"))
            continue
        try:
            day = dt.date.fromisoformat(m["day"])
        except ValueError:
            continue
        if day < cutoff:
            actions.append(RetentionAction("delete", path, "frames", day,
                                           f"frames are kept {n} day(s): {day} < {cutoff}"))


# ------------------------------------------------------------------------------ applying


def _gz_path(jsonl: Path) -> Path:
    return jsonl.with_name(jsonl.name + ".gz")


def _tmp_path(jsonl: Path) -> Path:
    return jsonl.with_name(jsonl.name + ".gz.tmp")


def _write_gz(sources: list[Callable[[], Iterator[bytes]]], jsonl: Path) -> None:
    """Gzip the concatenated ``sources`` into ``jsonl``'s ``.gz`` via a fsynced, verified temp
    file and an atomic rename. The ``.jsonl`` must not change meanwhile."""
    gz, tmp = _gz_path(jsonl), _tmp_path(jsonl)
    before = jsonl.stat()
    h = hashlib.sha256()
    n = 0
    try:
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as z:
                for src in sources:
                    for chunk in src():
                        h.update(chunk)
                        n += len(chunk)
                        z.write(chunk)
            raw.flush()
            os.fsync(raw.fileno())
        after = jsonl.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise RetentionError(f"{jsonl.name} changed while it was being compressed: "
                                 "left as is (retried on a later run)")
        hv, nv, _ = _digest(_iter_gz(tmp))
        if (hv, nv) != (h.hexdigest(), n):
            raise RetentionError(f"verification of {tmp.name} failed (content differs)")
        os.replace(tmp, gz)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(jsonl.parent)


def _unlink(path: Path) -> int:
    size = path.stat().st_size
    path.unlink()
    _fsync_dir(path.parent)
    return size


def _ends_with_newline(path: Path) -> bool:
    size = path.stat().st_size
    if size == 0:
        return True
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1) == b"\n"


def _apply_one(a: RetentionAction, dry_run: bool) -> tuple[str, int]:
    """Carry out one action; return (what was done, bytes freed)."""
    p = a.path
    if a.action == "delete":
        if not p.is_file():
            return "already gone", 0
        if dry_run:
            return f"would delete ({p.stat().st_size} bytes)", 0
        return "deleted", _unlink(p)
    if a.action == "remove_temp":
        if not p.is_file():
            return "already gone", 0
        if dry_run:
            return "would remove the leftover temp file", 0
        return "removed the leftover temp file", _unlink(p)
    # compress / finish_compress: decided again from what is on disk now
    if not p.is_file():
        return "the .jsonl is gone: nothing to do", 0
    torn = not _ends_with_newline(p)
    gz = _gz_path(p)
    pre = "quarantine its torn last line into .torn, then " if torn else ""
    if dry_run:
        if gz.is_file():
            return f"would {pre}verify {gz.name} and finish the compression", 0
        return f"would {pre}compress to {gz.name}", 0
    if torn:
        repair_torn_tail(p)
    size = p.stat().st_size
    if not gz.is_file():
        _write_gz([lambda: _iter_plain(p)], p)
        freed = size - gz.stat().st_size
        _unlink(p)
        return f"compressed to {gz.name}", freed
    st = compare_pair(gz, p)
    if st.state == "same":
        return f"{gz.name} verified ({st.detail}): removed the .jsonl", _unlink(p)
    old_gz = gz.stat().st_size
    if st.state == "merge":
        # read the old .gz completely into the new temp before it is replaced
        _write_gz([lambda: _iter_gz(gz), lambda: _iter_plain(p)], p)
    else:
        _write_gz([lambda: _iter_plain(p)], p)
    freed = size + old_gz - gz.stat().st_size
    _unlink(p)
    return f"{gz.name} redone ({st.state}: {st.detail}); removed the .jsonl", freed


def apply_retention(plan: RetentionPlan, dry_run: bool) -> RetentionResult:
    """Carry out ``plan`` (``dry_run``: change nothing, say what would be done).

    Refuses a plan with errors, and a run while another process holds the records dir's
    retention lock. A failing action is logged and reported; the others still run.
    """
    skipped, warns = plan.skipped, plan.warnings
    if plan.errors:
        for e in plan.errors:
            log.error("retention refused: %s", e)
        return RetentionResult(dry_run, refused=plan.errors, skipped=skipped, warnings=warns)
    if plan.disabled or not plan.actions:
        return RetentionResult(dry_run, skipped=skipped, warnings=warns)
    lock_fd: int | None = None
    if not dry_run:
        try:
            lock_fd = os.open(plan.records_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if lock_fd is not None:
                os.close(lock_fd)
            busy = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
            msg = ("another retention run holds the lock on the records dir" if busy
                   else f"cannot lock the records dir {plan.records_dir}: {exc.strerror or exc}")
            log.error("retention refused: %s", msg)
            return RetentionResult(dry_run, refused=(msg,), skipped=skipped, warnings=warns)
    done: list[ActionOutcome] = []
    failed: list[ActionOutcome] = []
    freed = 0
    try:
        for a in plan.actions:
            try:
                detail, n = _apply_one(a, dry_run)
            except (OSError, RetentionError) as exc:
                msg = str(exc) if isinstance(exc, RetentionError) else (
                    f"{exc.strerror or exc} (errno {exc.errno})")
                log.error("retention: %s %s failed: %s", a.action, a.path, msg)
                failed.append(ActionOutcome(a, msg))
                continue
            freed += n
            done.append(ActionOutcome(a, detail))
            if not dry_run:
                log.info("retention: %s: %s", a.path.name, detail)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # releases the flock
    return RetentionResult(dry_run, tuple(done), tuple(failed), (), skipped, warns, freed)
