"""kill -9 during recording: what was written replays without error; only the tail is lost.

The engine runs as ``python -m engine run`` (embedded simulator, paper mode, recording on by
default) and is killed with SIGKILL while it records; no shutdown code runs. The frames file
then holds the flushed zstd frames (and maybe a torn last one): the replay reads every whole
frame and finishes; the next engine start repairs the file and appends after it.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import trio

from engine.io import frames
from engine.io.frames import day_files, iter_records
from engine.replay.driver import Replay

from ..replay.helpers import default_cfg


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ENGINE_") and k not in ("STATE_DIRECTORY", "NOTIFY_SOCKET")}
    env["ENGINE__RECORDS__DIR"] = str(tmp_path / "data")
    env["ENGINE__OPS__HTTP_PORT"] = "0"
    env["ENGINE__RECORDING__FLUSH_INTERVAL_MS"] = "200"
    return env


async def _run_and_kill(tmp_path: Path, after_s: float) -> None:
    log_path = tmp_path / f"engine-{after_s}.log"
    with log_path.open("wb") as log_file:  # noqa: ASYNC230 - the child's own output file
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "engine", "run", "--duration", "60"], env=_env(tmp_path),
            stdout=log_file, stderr=log_file)
        try:
            with trio.fail_after(60):
                while b"discovered" not in log_path.read_bytes():  # noqa: ASYNC110
                    await trio.sleep(0.1)
            await trio.sleep(after_s)
            proc.send_signal(signal.SIGKILL)
            with trio.fail_after(30):
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == -signal.SIGKILL


async def test_kill_9_while_recording_then_replay_what_was_written(tmp_path: Path) -> None:
    await _run_and_kill(tmp_path, 3.0)
    fdir = frames.frames_dir(tmp_path / "data")
    (path,) = day_files(fdir)
    size_after_kill = path.stat().st_size
    assert size_after_kill > 0
    recs = list(iter_records(fdir))  # never raises, torn tail or not
    n_in = sum(1 for r in recs if r.kind == "in")
    assert n_in > 100
    assert {"run", "info", "conn", "in", "out"} <= {r.kind for r in recs}
    # simulate the worst case too: a write torn in the middle of the last frame
    whole = path.read_bytes()
    path.write_bytes(whole + whole[-40:-3])  # garbage tail: part of a frame
    stats = Replay(default_cfg(), tmp_path / "data", tmp_path / "replay", mode="paper").run()
    assert stats.frames == n_in  # every whole frame replayed, the tail only is lost
    # the next engine start repairs the file and appends cleanly after the kept frames
    await _run_and_kill(tmp_path, 1.5)
    again = list(iter_records(fdir))
    assert [r for r in again[:len(recs)]] == recs
    assert sum(1 for r in again if r.kind == "run") == 2
    contents, good, why = frames._scan(path.read_bytes())
    assert why is None or good >= size_after_kill  # only a new torn tail, after the kept data
