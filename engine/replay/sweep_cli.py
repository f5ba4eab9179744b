"""``python -m engine sweep --data DIR --grid KEY=V1,V2,… [--grid …] [--workers N]
[--cluster ADDRESS] [--config FILE] [--mode paper|observe] [--out DIR]`` (see
:mod:`engine.replay.sweep`). Exit codes: 0 done; 2 usage, config or grid error."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from engine.replay.driver import ReplayError
from engine.replay.sweep import SweepError, load_base, parse_grid, run_sweep, table_rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m engine sweep",
        description="Replay a recording once per parameter set of a grid; write a table "
                    "(sweep.md, sweep.csv) and, with matplotlib, a P&L heatmap and equity "
                    "curves.")
    p.add_argument("--data", required=True, help="the frame recording (see replay --help)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a config key (dotted, e.g. detector.min_edge_bps) and its values; "
                        "repeat for more keys (the cartesian product is swept)")
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: the CPU count)")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="a Dask distributed scheduler (tcp://host:8786); its workers must see "
                        "--data and --out at the same paths")
    p.add_argument("--config", default=None, help="base TOML config (default: the embedded)")
    p.add_argument("--mode", choices=("observe", "paper"), default="paper")
    p.add_argument("--out", default=None, help="output dir (default: sweep-<UTC time>)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out) if args.out else Path(
        f"sweep-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}")
    t0 = time.perf_counter()
    try:
        axes = parse_grid(args.grid)
        base = load_base(args.config)
        rows = run_sweep(base, Path(args.data), out, axes, mode=args.mode,
                         workers=args.workers, cluster=args.cluster)
    except (SweepError, ReplayError) as exc:
        print(f"engine sweep: {exc}", file=sys.stderr)
        return 2
    head, body = table_rows(rows, axes)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for r in body:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print(f"{len(rows)} replays in {time.perf_counter() - t0:.1f} s; tables in "
          f"{(out / 'sweep.md').resolve()} and sweep.csv")
    return 0
