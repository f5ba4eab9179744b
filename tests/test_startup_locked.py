"""The start-up both shells share (``engine.startup.run_locked``): the Hyperliquid shell
(``ObserveApp`` and its trading subclass) and the Bybit funding shell (``FundingApp``) each run
through it, and the funding shell now meets every start-up failure the way the observe shell
does (tests/test_startup_failures.py): one line, exit 2, nothing written, the lock released;
SIGTERM stops it gracefully."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from engine import app as app_module
from engine import funding_app as funding_module
from engine import startup
from engine.config import EngineConfig, load_config
from engine.funding_app import FundingApp
from engine.io.dirlock import DirLock
from engine.startup import EXIT_CONFIG, StartupError

ROOT = Path(__file__).resolve().parents[1]
SIM_TOML = ROOT / "config" / "bybit-sim.toml"


def _env(records: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "BYBIT_"))}
    env.update({"ENGINE__OPS__HTTP_PORT": "0", "ENGINE__RECORDS__DIR": str(records)})
    env.update(extra)
    return env


def funding_cfg(records: Path, **extra: str) -> EngineConfig:
    return load_config(SIM_TOML, env=_env(records, **extra))


def written(records: Path) -> list[Path]:
    return sorted([*records.rglob("*.jsonl"), *records.rglob("*.zst")])


def test_both_shells_start_through_run_locked(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    seen: list[str] = []

    async def spy(app: Any) -> int:
        seen.append(type(app).__name__)
        return 0

    monkeypatch.setattr(app_module, "run_locked", spy)
    monkeypatch.setattr(funding_module, "run_locked", spy)
    trio.run(app_module.ObserveApp(load_config(None, env=_env(tmp_path / "o"))).run)
    trio.run(FundingApp(funding_cfg(tmp_path / "f"), env={}).run)
    assert seen == ["ObserveApp", "FundingApp"]
    assert app_module.lock_records_dir is startup.lock_records_dir  # re-exported, one copy


def test_funding_refuses_a_records_dir_another_engine_holds(tmp_path: Path) -> None:
    records = tmp_path / "rec"
    records.mkdir()
    other = DirLock(records)
    other.acquire()
    try:
        with pytest.raises(StartupError) as info:
            trio.run(FundingApp(funding_cfg(records), env={}).run)
    finally:
        other.release()
    assert info.value.exit_code == EXIT_CONFIG
    assert "in use by another engine" in str(info.value) and "[records] dir" in str(info.value)
    assert written(records) == []


def test_funding_with_the_ops_port_taken_is_one_line_exit_2_and_writes_nothing(
        tmp_path: Path) -> None:
    records = tmp_path / "rec"
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        app = FundingApp(funding_cfg(records, ENGINE__OPS__HTTP_PORT=str(port)), env={})
        with pytest.raises(StartupError) as info:
            trio.run(app.run)
    assert info.value.exit_code == EXIT_CONFIG
    assert f"127.0.0.1:{port}" in str(info.value) and "[ops] http_port" in str(info.value)
    assert app.venue is None  # nothing connected: the port is checked first
    assert written(records) == []
    assert (records / "engine.lock").read_text() == ""  # released


def test_funding_records_dir_that_cannot_be_made_is_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StartupError) as info:
        trio.run(FundingApp(funding_cfg(blocker / "rec"), env={}).run)
    assert info.value.exit_code == EXIT_CONFIG and "not writable" in str(info.value)


def test_funding_run_releases_the_lock_and_a_failed_start_records_no_frames(
        tmp_path: Path) -> None:
    records = tmp_path / "rec"
    cfg = funding_cfg(records, ENGINE__FUNDING__SYMBOLS='["NOPEUSDT"]')
    with pytest.raises(StartupError) as info:
        trio.run(FundingApp(cfg, env={}).run)
    assert info.value.exit_code == EXIT_CONFIG and "NOPEUSDT" in str(info.value)
    assert list(records.rglob("*.zst")) == []  # the recorder discarded its header
    assert (records / "engine.lock").read_text() == ""


def test_funding_cli_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    records = tmp_path / "rec"
    p = subprocess.Popen([sys.executable, "-m", "engine", "run", "--config", str(SIM_TOML),
                          "--duration", "60"], cwd=ROOT, env=_env(records),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not list(records.glob("funding_*.jsonl")):
            time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, out[-3000:]
    assert "stopping: received SIGTERM" in out and "Traceback" not in out
    assert (records / "engine.lock").read_text() == ""
