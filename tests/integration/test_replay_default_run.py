"""The issue's integration check (slow: a real minute): record 60 s of the default run
(``python -m engine run``: paper on the embedded simulator, recording on by default), replay it
twice — byte-identical outputs — and in observe mode reproduce the live signals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.replay.driver import Replay

from ..replay.helpers import default_cfg, out_bytes, out_records
from .test_replay_faithful import match_signals


@pytest.mark.slow
def test_sixty_seconds_of_the_default_run_replay_twice_identically(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ENGINE_") and k not in ("STATE_DIRECTORY", "NOTIFY_SOCKET")}
    env.update(ENGINE__RECORDS__DIR=str(tmp_path / "data"), ENGINE__OPS__HTTP_PORT="0",
               ENGINE__MODE="observe")
    proc = subprocess.run([sys.executable, "-m", "engine", "run", "--duration", "60"], env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    live = out_records(tmp_path / "data")["signals"]
    assert live
    cfg = default_cfg(ENGINE__MODE="observe")
    for name in ("a", "b"):
        Replay(cfg, tmp_path / "data", tmp_path / name, mode="observe").run()
    assert out_bytes(tmp_path / "a") == out_bytes(tmp_path / "b")
    matched, unmatched, extra = match_signals(live, out_records(tmp_path / "a")["signals"])
    assert matched >= 0.99 * len(live), (unmatched, extra)
    for name in ("pa", "pb"):
        Replay(cfg, tmp_path / "data", tmp_path / name, mode="paper").run()
    assert out_bytes(tmp_path / "pa") == out_bytes(tmp_path / "pb")
