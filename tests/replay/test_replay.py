"""Replay: deterministic, no look-ahead, CLI errors, and the simulator's recording command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import main
from engine.io.frames import iter_records
from engine.replay.driver import Replay, ReplayError

from .helpers import KINDS, default_cfg, out_bytes, out_records, ts


def _span(data: Path) -> tuple[float, float]:
    times = [r.wall_ns / 1e6 for r in iter_records(data) if r.kind == "in"]
    return times[0], times[-1]


@pytest.mark.parametrize("mode", ["observe", "paper"])
def test_same_data_and_config_give_byte_identical_outputs(sim_recording: Path, tmp_path: Path,
                                                          mode: str) -> None:
    cfg = default_cfg()
    s1 = Replay(cfg, sim_recording, tmp_path / "a", mode=mode).run()
    Replay(cfg, sim_recording, tmp_path / "b", mode=mode).run()
    a, b = out_bytes(tmp_path / "a"), out_bytes(tmp_path / "b")
    assert a == b
    assert s1.frames > 1000 and any(n.startswith("signals_") for n in a)
    if mode == "paper":
        assert any(n.startswith("trades_") for n in a)


def test_the_cli_in_another_process_and_hash_seed_gives_the_same_bytes(
        sim_recording: Path, tmp_path: Path) -> None:
    Replay(default_cfg(), sim_recording, tmp_path / "a", mode="paper").run()
    env = dict(os.environ, PYTHONHASHSEED="12345")
    proc = subprocess.run([sys.executable, "-m", "engine", "replay", "--data",
                           str(sim_recording), "--out", str(tmp_path / "b"), "--mode", "paper",
                           "--quiet"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "signals" in proc.stdout and "edge retention @ 1000 ms" in proc.stdout
    assert out_bytes(tmp_path / "a") == out_bytes(tmp_path / "b")


_FULL: dict[str, dict[str, list[dict]]] = {}


def _full(mode: str, data: Path, base: Path) -> dict[str, list[dict]]:
    if mode not in _FULL:
        out = base / f"full-{mode}"
        Replay(default_cfg(), data, out, mode=mode).run()
        _FULL[mode] = out_records(out)
    return _FULL[mode]


@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(frac=st.floats(0.02, 0.98), mode=st.sampled_from(["observe", "paper"]))
def test_no_look_ahead_truncated_data_gives_the_prefix_of_the_full_replay(
        sim_recording: Path, tmp_path_factory: pytest.TempPathFactory, frac: float,
        mode: str) -> None:
    base = tmp_path_factory.mktemp("la")
    full = _full(mode, sim_recording, tmp_path_factory.getbasetemp())
    lo, hi = _span(sim_recording)
    cut = lo + frac * (hi - lo)
    out = base / "cut"
    Replay(default_cfg(), sim_recording, out, mode=mode, to_ms=cut).run()
    got = out_records(out)
    for kind in KINDS:
        mine = [r for r in got[kind] if r.get("miss_reason") != "end_of_data"]
        assert all(ts(kind, r) <= cut for r in mine), kind
        want = [r for r in full[kind] if ts(kind, r) <= cut]
        assert mine == want, (kind, cut)
    # what the cut run could not finish is only what the full run finished after the cut
    ends = {(r["signal_id"], r["offset_ms"]) for r in got["followups"]
            if r.get("miss_reason") == "end_of_data"}
    later = {(r["signal_id"], r["offset_ms"]) for r in full["followups"]
             if ts("followups", r) > cut}
    assert ends <= later


def test_from_and_to_select_the_window(sim_recording: Path, tmp_path: Path) -> None:
    lo, hi = _span(sim_recording)
    st = Replay(default_cfg(), sim_recording, tmp_path / "w", mode="observe",
                from_ms=lo + 5000, to_ms=lo + 10000).run()
    assert st.first_ms is not None and st.last_ms is not None
    assert lo + 5000 <= st.first_ms and st.last_ms <= lo + 10000
    assert 0 < st.frames < sum(1 for r in iter_records(sim_recording) if r.kind == "in")


def test_replay_refuses_an_out_dir_with_records(sim_recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "signals_2026-01-05.jsonl").write_text("{}\n")
    with pytest.raises(ReplayError, match="already holds records"):
        Replay(default_cfg(), sim_recording, out).run()


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            sim_recording: Path) -> None:
    assert main(["replay", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no frame recording" in err and "Traceback" not in err
    assert main(["replay", "--data", str(sim_recording), "--from", "yesterday"]) == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err


def test_sim_record_command_writes_a_replayable_recording(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    out = tmp_path / "rec"
    assert main(["sim", "record", "--out", str(out), "--seconds", "5", "--markets", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    kinds = [r.kind for r in iter_records(out)]
    assert kinds[:4] == ["run", "info", "info", "conn"] and kinds.count("in") > 50
    assert main(["sim", "record", "--out", str(out)]) == 2  # never appends to a recording
    assert "already holds a recording" in capsys.readouterr().err
    assert main(["replay", "--data", str(out), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert "replayed" in capsys.readouterr().out


def test_paper_fills_come_at_the_configured_latency_after_the_send(sim_recording: Path,
                                                                  tmp_path: Path) -> None:
    cfg = default_cfg(ENGINE__PAPER__LATENCY_MS="250")
    Replay(cfg, sim_recording, tmp_path / "p", mode="paper").run()
    got = out_records(tmp_path / "p")
    sent = {o["cloid"]: o["sent_ms"] for o in got["orders"] if o.get("sent_ms") is not None}
    fills = got["fills"]
    assert fills
    assert all(f["time_ms"] - sent[f["cloid"]] == pytest.approx(250.0) for f in fills)


def test_time_stops_fire_on_the_timer_between_frames(sim_recording: Path,
                                                     tmp_path: Path) -> None:
    """Positions held by nothing but the time stop close at hold > time_stop_ms, within one
    housekeeping period (100 ms) plus the paper latency: the replayed trading timer fires
    at its due times even when no frame arrives."""
    cfg = default_cfg(ENGINE__EXITS__QUICK_PROFIT_BPS="0", ENGINE__EXITS__EDGE_EVAP_ENABLED="false",
                      ENGINE__EXITS__ORACLE_EXIT_ENABLED="false",
                      ENGINE__EXITS__TRAILING_STOP="false",
                      ENGINE__EXITS__TIME_DECAY_ENABLED="false",
                      ENGINE__EXITS__MIN_LOSS_EXIT_BPS="100000",
                      ENGINE__EXITS__EXIT_THRESHOLD_BPS="100000",
                      ENGINE__EXITS__MIN_HOLD_MS="100000",
                      ENGINE__EXITS__TIME_STOP_MS="4000", ENGINE__EXITS__DECAY_START_MS="0")
    Replay(cfg, sim_recording, tmp_path / "t", mode="paper").run()
    trades = out_records(tmp_path / "t")["trades"]
    stops = [t for t in trades if t["exit_reason"] == "time_stop"]
    assert stops, {t["exit_reason"] for t in trades}
    for t in stops:
        assert 4000 < t["hold_ms"] <= 4000 + 100 + 150 + 1e-6, t["hold_ms"]


def test_the_simulator_recording_is_reproducible(tmp_path: Path) -> None:
    from engine.sim.record import record

    record(tmp_path / "a", seconds=5.0, seed=9, n_markets=4)
    record(tmp_path / "b", seconds=5.0, seed=9, n_markets=4)
    assert out_bytes(tmp_path / "a") == out_bytes(tmp_path / "b")


def test_the_progress_bar_writes_to_stderr_as_it_is_when_made(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the stderr of the module's first import (under pytest's capture that one is
    closed later, and a replay CLI run in another test failed on it)."""
    import io

    from engine.replay.cli import ProgressBar

    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    assert ProgressBar().out is now
