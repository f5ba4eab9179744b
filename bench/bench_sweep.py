"""Benchmark: sweep scaling, 1 vs 2 worker processes (printed figures, not a test).

Records ``--minutes`` of the simulator's 40 markets, then sweeps a 3x2 grid
(``detector.min_edge_bps`` x ``exits.time_stop_ms``) in paper mode with ``--workers 1`` and
``--workers 2``; prints both wall times and the speed-up (target: >= 1.8x on a 2-core machine).
A loaded machine lowers the speed-up: label figures as such.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from engine.replay.sweep import load_base, parse_grid, run_sweep
from engine.sim.record import record


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    args = ap.parse_args()
    axes = parse_grid(["detector.min_edge_bps=3,5,8", "exits.time_stop_ms=5000,20000"])
    base = load_base(None)
    print("NOTE: on a shared, loaded machine the speed-up is a lower bound")
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "rec"
        record(data, seconds=args.minutes * 60.0, seed=1, n_markets=40)
        took = {}
        for w in (1, 2):
            t0 = time.perf_counter()
            run_sweep(base, data, Path(d) / f"w{w}", axes, workers=w)
            took[w] = time.perf_counter() - t0
            print(f"workers {w}: {took[w]:.2f} s for 6 replays of {args.minutes:g} min")
        sp = took[1] / took[2]
        print(f"{'PASS' if sp >= 1.8 else 'MISS'}: sweep speed-up 2 vs 1 workers: {sp:.2f}x "
              "(target >= 1.8x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
