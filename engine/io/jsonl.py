"""Crash-safe JSON Lines files: the single-writer appender and the one tolerant reader.

Owns the on-disk line discipline of every record file (docs/reference/design.md §4 invariant 6, §5):

* a file only ever grows by whole lines, each written with one ``os.write`` on an
  ``O_APPEND`` descriptor;
* a torn last line (a kill mid-write) is repaired when the file is opened: the fragment is
  appended to ``<path>.torn`` (followed by a newline, so several quarantined fragments stay
  separable), fsynced there, and the record file is truncated back to its last newline;
* a failed or short write is undone (the file is truncated back to its size before the call)
  and the error is raised, so a failed write never leaves a partial line behind.

Lines are ``msgspec.json.encode(record) + b"\\n"`` (:func:`encode_line`).
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import msgspec

log = logging.getLogger(__name__)

_NL = b"\n"
_TAIL_CHUNK = 64 * 1024
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

StrPath = str | os.PathLike[str]


def encode_line(record: Any) -> bytes:
    """One JSON Lines line: the msgspec JSON encoding of ``record`` plus ``\\n``."""
    return _encoder.encode(record) + _NL


def torn_path(path: StrPath) -> Path:
    """Where the torn fragments of ``path`` are quarantined: ``<path>.torn``."""
    p = Path(path)
    return p.with_name(p.name + ".torn")


def _last_newline_end(fd: int, size: int) -> int:
    """Offset just past the last ``\\n`` in the first ``size`` bytes of ``fd`` (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        i = chunk.rfind(_NL)
        if i >= 0:
            return start + i + 1
        end = start
    return 0


def repair_torn_tail(path: StrPath) -> int:
    """Quarantine a torn last line of ``path`` into ``<path>.torn``; return the bytes moved.

    Returns 0 (and touches nothing) when the file is missing, empty or ends with a newline.
    The fragment is made durable in ``.torn`` before the record file is truncated, so a crash
    during the repair can at worst duplicate a fragment in ``.torn``, never lose it.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == _NL:
            return 0
        keep = _last_newline_end(fd, size)
        fragment = os.pread(fd, size - keep, keep)
        tfd = os.open(torn_path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            data = fragment + _NL
            view = memoryview(data)
            while view:
                n = os.write(tfd, view)
                view = view[n:]
            os.fsync(tfd)
        finally:
            os.close(tfd)
        os.ftruncate(fd, keep)
        os.fsync(fd)
    finally:
        os.close(fd)
    log.warning(
        "repaired torn last line of %s: quarantined %d bytes into %s",
        path,
        len(fragment),
        torn_path(path),
    )
    return len(fragment)


class JsonlAppender:
    """Single-writer, append-only JSON Lines file that never keeps a partial line.

    ``JsonlAppender(path)`` creates the parent directories, repairs a torn last line (see
    :func:`repair_torn_tail`) and opens the file ``O_WRONLY | O_APPEND | O_CREAT``. Only one
    appender may write a given file at a time (the size before each write is known).
    """

    __slots__ = ("path", "quarantined_bytes", "_fd", "_size", "_needs_truncate")

    def __init__(self, path: StrPath) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.quarantined_bytes = repair_torn_tail(self.path)
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        self._size = os.fstat(self._fd).st_size
        self._needs_truncate = False

    @property
    def size(self) -> int:
        """The file size after the last successful append (complete lines only)."""
        return self._size

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _require_fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"append to closed JsonlAppender({self.path})")
        return self._fd

    def append(self, data: bytes) -> None:
        """Append one or more complete lines (``data`` must end with ``\\n``) in one ``os.write``.

        On ``OSError`` or a short write the file is truncated back to its size before the call
        and ``OSError`` is raised (a short write raises with ``errno`` ENOSPC).
        """
        fd = self._require_fd()
        if not data:
            return
        if not data.endswith(_NL):
            raise ValueError("JsonlAppender.append needs complete lines (ending with b'\\n')")
        if self._needs_truncate:
            os.ftruncate(fd, self._size)  # a previous undo failed: retry it first
            self._needs_truncate = False
        try:
            n = os.write(fd, data)
        except OSError:
            self._undo(fd)
            raise
        if n != len(data):
            self._undo(fd)
            raise OSError(
                errno.ENOSPC,
                f"short write ({n} of {len(data)} bytes); undone",
                str(self.path),
            )
        self._size += n

    def _undo(self, fd: int) -> None:
        """Cut the file back to its size before the failed write."""
        try:
            os.ftruncate(fd, self._size)
        except OSError as exc:
            self._needs_truncate = True
            log.error(
                "cannot truncate %s back to %d bytes after a failed write (errno %s): %s",
                self.path,
                self._size,
                exc.errno,
                exc.strerror,
            )

    def fileno(self) -> int:
        return self._require_fd()

    def fsync(self) -> None:
        """Make the appended lines durable (``os.fsync``)."""
        os.fsync(self._require_fd())

    def detach(self) -> int:
        """Give up the descriptor without closing it (the caller now owns it)."""
        fd = self._require_fd()
        self._fd = None
        return fd

    def close(self) -> None:
        """Close the descriptor (idempotent). Does not fsync."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@attrs.define
class ReadStats:
    """What :func:`read_records` saw in one file (each caller decides what to report)."""

    lines: int = 0  # complete, non-blank lines
    records: int = 0  # of them, JSON objects (the records yielded)
    malformed: int = 0  # of them, not a JSON object (undecodable, or another JSON value)
    torn_tail: bytes | None = None  # a last line without its newline: not a record
    error: BaseException | None = None  # the read stopped here; the records before it came


def read_records(path: StrPath, stats: ReadStats | None = None, *,
                 strict: bool = False) -> Iterator[dict[str, Any]]:
    """The one JSON Lines reader: every complete JSON-object line of ``path`` in order, read as
    a stream (a ``.gz`` name is decompressed on the fly).

    Blank lines are skipped; a torn last line (no trailing newline) and complete lines that
    are not a JSON object are skipped and counted in ``stats``. A file that cannot be opened
    or read, or a ``.gz`` that is truncated or corrupt, ends the read: with ``strict`` the
    error is raised, else it is kept in ``stats.error`` (the records before it were yielded).
    """
    st = stats if stats is not None else ReadStats()
    opener: Any = gzip.open if os.fspath(path).endswith(".gz") else open
    decode = _decoder.decode
    try:
        with opener(path, "rb") as f:
            for line in f:
                if line[-1:] != _NL:
                    st.torn_tail = line
                    break
                if not line.strip():
                    continue
                st.lines += 1
                try:
                    obj = decode(line)
                except msgspec.DecodeError:
                    st.malformed += 1
                    continue
                if isinstance(obj, dict):
                    st.records += 1
                    yield obj
                else:
                    st.malformed += 1
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        if strict:
            raise
        st.error = exc


def read_jsonl(path: StrPath) -> list[dict[str, Any]]:
    """Every complete JSON object line of ``path``, in order (:func:`read_records`).

    A torn last line (no trailing newline) is ignored. A complete line that is not a JSON
    object is skipped and logged (it cannot come from :class:`JsonlAppender`). A missing file
    reads as ``[]``; any other read error is raised.
    """
    st = ReadStats()
    try:
        out = list(read_records(path, st, strict=True))
    except FileNotFoundError:
        return []
    if st.malformed:
        log.warning("%s: skipped %d undecodable line(s)", path, st.malformed)
    return out
