"""One engine per records directory: an exclusive ``flock`` on ``<records dir>/engine.lock``.

The lock file holds the owner's pid (for the operator's message). The lock itself is the kernel's
``flock`` on the open file, so it is released when the owner exits in any way (a kill -9
included): a stale lock file never blocks a start. A second engine on the same directory —
another process, or a second app in the same process — gets :class:`DirLockedError` naming the
owner's pid.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "engine.lock"


class DirLockedError(Exception):
    """The records directory is held by another engine (``pid``: its pid, when readable)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "an unknown process"
        super().__init__(f"records dir {path.parent} is in use by another engine ({who}, lock "
                         f"file {path})")
        self.path = path
        self.pid = pid


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 64, 0)
    except OSError:
        return None
    try:
        return int(raw.decode("ascii", "replace").split()[0])
    except (ValueError, IndexError):
        return None


class DirLock:
    """Hold ``<dir>/engine.lock`` for the life of a run (:meth:`acquire` … :meth:`release`)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and write our pid; raise :class:`DirLockedError` when it is held
        (``OSError`` when the file cannot be opened at all)."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DirLockedError(self.path, pid) from None
        except OSError:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; its pid is only read while it is locked)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)
