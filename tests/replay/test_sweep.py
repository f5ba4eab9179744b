"""Sweeps: grid parsing and errors; a 3x2 grid on the process pool and on a real local Dask
cluster (started by the test) gives identical results, each equal to a plain replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main
from engine.replay.driver import Replay
from engine.replay.summary import summarize
from engine.replay.sweep import (
    SweepError,
    apply_params,
    check_params,
    load_base,
    param_sets,
    parse_grid,
    run_sweep,
)

from .helpers import default_cfg

GRID = ["detector.min_edge_bps=3,5,8", "exits.time_stop_ms=5000,20000"]


def test_grid_is_the_cartesian_product_in_order() -> None:
    axes = parse_grid(GRID)
    sets = param_sets(axes)
    assert len(sets) == 6
    assert sets[0] == {"detector.min_edge_bps": 3, "exits.time_stop_ms": 5000}
    assert sets[1] == {"detector.min_edge_bps": 3, "exits.time_stop_ms": 20000}
    assert apply_params({"detector": {"x": 1}}, sets[0])["detector"] == {
        "x": 1, "min_edge_bps": 3}


@pytest.mark.parametrize("spec, msg", [
    ("detector.min_edge_bps", "KEY=V1,V2"),
    ("=1,2", "KEY=V1,V2"),
    ("detector..x=1", "malformed key"),
])
def test_bad_grid_specs_are_refused(spec: str, msg: str) -> None:
    with pytest.raises(SweepError, match=msg):
        parse_grid([spec])


def test_an_unknown_key_or_bad_value_is_named_before_any_replay() -> None:
    base = load_base(None)
    with pytest.raises(SweepError, match="min_edge_bpz"):
        check_params(base, param_sets(parse_grid(["detector.min_edge_bpz=1"])))
    with pytest.raises(SweepError, match="min_edge_bps"):
        check_params(base, param_sets(parse_grid(["detector.min_edge_bps=-1"])))




def test_pool_and_local_dask_cluster_give_identical_results(sim_recording: Path,
                                                            tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    base = load_base(None)
    axes = parse_grid(GRID)
    pool = run_sweep(base, sim_recording, tmp_path / "pool", axes, workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1",
                                  scheduler_port=0) as cluster:
        dask = run_sweep(base, sim_recording, tmp_path / "dask", axes,
                         cluster=cluster.scheduler_address)
    assert pool == dask
    assert (tmp_path / "pool" / "sweep.csv").read_bytes() == \
        (tmp_path / "dask" / "sweep.csv").read_bytes()
    # the grid matters (a higher threshold: fewer signals), and each row is a plain replay
    assert pool[0]["signals"] > pool[-1]["signals"] > 0
    one = tmp_path / "one"
    Replay(default_cfg(ENGINE__DETECTOR__MIN_EDGE_BPS="8", ENGINE__EXITS__TIME_STOP_MS="20000"),
           sim_recording, one, mode="paper").run()
    s = summarize(one)
    assert (s.signals, s.trades, s.pnl) == (pool[-1]["signals"], pool[-1]["trades"],
                                           pool[-1]["pnl"])
    md = (tmp_path / "pool" / "sweep.md").read_text()
    assert md.count("\n") == 2 + 6 and "retention_1000ms" in md


def test_cli_sweep_and_its_errors(sim_recording: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--data", str(sim_recording), "--grid",
                 "detector.min_edge_bps=5,8", "--workers", "1", "--out",
                 str(tmp_path / "s")]) == 0
    assert "2 replays" in capsys.readouterr().out
    assert main(["sweep", "--data", str(sim_recording), "--grid", "nope.key=1",
                 "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err
    with pytest.raises(SweepError, match="cannot reach the Dask scheduler"):
        run_sweep(load_base(None), sim_recording, tmp_path / "u",
                  parse_grid(["detector.min_edge_bps=1"]), cluster="tcp://127.0.0.1:1",
                  cluster_timeout_s=0.5)


def test_plots_with_the_report_extra(sim_recording: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rows = run_sweep(load_base(None), sim_recording, tmp_path / "p", parse_grid(GRID),
                     workers=1)
    heat, equity = tmp_path / "p" / "sweep_heatmap.png", tmp_path / "p" / "sweep_equity.png"
    assert heat.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and equity.stat().st_size > 1000
    assert any(r["equity"] for r in rows)
