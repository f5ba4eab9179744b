"""The records directory lock: one holder at a time, the owner's pid, gone with its owner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.io.dirlock import DirLock, DirLockedError


def test_second_holder_is_refused_with_the_owners_pid(tmp_path: Path) -> None:
    a, b = DirLock(tmp_path), DirLock(tmp_path)
    a.acquire()
    assert a.path.read_text() == f"{os.getpid()}\n"
    with pytest.raises(DirLockedError) as e:
        b.acquire()
    assert e.value.pid == os.getpid() and f"pid {os.getpid()}" in str(e.value)
    assert not b.held
    a.release()
    b.acquire()  # free once released
    assert b.held
    b.release()


def test_a_stale_lock_file_does_not_block(tmp_path: Path) -> None:
    (tmp_path / "engine.lock").write_text("999999\n")  # left by a killed engine: not locked
    lock = DirLock(tmp_path)
    lock.acquire()
    assert lock.path.read_text() == f"{os.getpid()}\n"
    lock.release()


def test_lock_dies_with_its_owner(tmp_path: Path) -> None:
    code = ("import sys, os; from engine.io.dirlock import DirLock; "
            f"DirLock(__import__('pathlib').Path({str(tmp_path)!r})).acquire(); "
            "print(os.getpid(), flush=True); sys.stdin.read(); os._exit(0)")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        pid = int(p.stdout.readline())
        with pytest.raises(DirLockedError) as e:
            DirLock(tmp_path).acquire()
        assert e.value.pid == pid
    finally:
        p.kill()  # no release: the kernel drops the flock with the process
        p.wait()
    lock = DirLock(tmp_path)
    lock.acquire()
    lock.release()
