"""``python -m engine replay --data DIR [--from ISO] [--to ISO] [--config FILE]
[--mode observe|paper] [--out DIR]``: replay a frame recording, print progress and a summary.

Exit codes: 0 done; 2 usage or config error (bad time, no recording, --out not empty).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from engine.replay.driver import Replay, ReplayError, ReplayStats
from engine.replay.summary import summarize

EXIT_OK = 0
EXIT_USAGE = 2


def parse_iso_ms(text: str) -> float:
    """Epoch ms of an ISO 8601 time (UTC when no offset is given)."""
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r} (e.g. 2026-01-05T15:00:00Z)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp() * 1000.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m engine replay",
        description="Replay a frame recording through the live cores on a simulated clock; "
                    "write the same record files as live into --out and print a summary.")
    p.add_argument("--data", required=True,
                   help="the recording: a records dir (its frames/) or a frames dir")
    p.add_argument("--from", dest="t_from", default=None, metavar="ISO",
                   help="first receive time to replay (UTC unless an offset is given)")
    p.add_argument("--to", dest="t_to", default=None, metavar="ISO",
                   help="last receive time to replay")
    p.add_argument("--config", default=None, help="engine TOML config (default: the embedded)")
    p.add_argument("--mode", choices=("observe", "paper"), default=None,
                   help="observe (signals, followups) or paper (trades too); default: the "
                        "config's mode when it is one of these, else paper")
    p.add_argument("--out", default=None,
                   help="output records dir (must be empty; default: replay-<UTC time>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--log-level", default="ERROR", type=str.upper,
                   choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                   help="engine log level during the replay (default ERROR: the live run "
                        "already logged its gate and paper warnings)")
    return p


class ProgressBar:
    """One status line on stderr (redrawn in place on a terminal, else every 10 s)."""

    def __init__(self, out: TextIO | None = None, min_interval_s: float = 0.5) -> None:
        # sys.stderr now, not when the module was imported (it may have been replaced since)
        self.out = out = out if out is not None else sys.stderr
        self.tty = out.isatty()
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.min_interval = min_interval_s if self.tty else 10.0
        self.drawn = False

    def __call__(self, st: ReplayStats, frac: float) -> None:
        now = time.perf_counter()
        if frac < 1.0 and (now - self.last < self.min_interval or st.frames == 0):
            return
        self.last = now
        el = max(now - self.t0, 1e-9)
        rate = st.frames / el
        eta = el * (1.0 - frac) / frac if frac > 0 else float("nan")
        width = 30
        filled = int(width * min(1.0, frac))
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {100 * frac:5.1f}% "
                f"{st.frames:,} frames {rate:,.0f} frames/s ETA "
                f"{'?' if eta != eta else f'{eta:.0f}s'}")
        if self.tty:
            self.out.write("\r" + line)
            if frac >= 1.0:
                self.out.write("\n")
        elif el > 1.0 or frac >= 1.0:
            self.out.write(line + "\n")
        self.out.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--venue" in argv and argv[argv.index("--venue") + 1:][:1] == ["bybit"]:
        from engine.replay.funding_cli import main as funding_main  # issue 11: own parser

        return funding_main(argv)
    args = build_parser().parse_args(argv)
    from engine.cli import load
    from engine.config import ConfigError

    try:
        cfg = load(args.config)
        t_from = parse_iso_ms(args.t_from) if args.t_from else None
        t_to = parse_iso_ms(args.t_to) if args.t_to else None
    except (ConfigError, ValueError) as exc:
        print(f"engine replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from engine.replay.funding_backtest import recording_venue

    if recording_venue(Path(args.data)) == "bybit":
        print(f"engine replay: {args.data} is a recording of the Bybit funding engine: replay "
              "it with --venue bybit (python -m engine replay --venue bybit --data ...)",
              file=sys.stderr)
        return EXIT_USAGE
    mode = args.mode or (cfg.mode if cfg.mode in ("observe", "paper") else "paper")
    out = Path(args.out) if args.out else Path(
        f"replay-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    engine_log = logging.getLogger("engine")
    level = engine_log.level
    engine_log.setLevel(args.log_level)
    progress = None if args.quiet else ProgressBar()
    try:
        stats = Replay(cfg, Path(args.data), out, mode=mode, from_ms=t_from, to_ms=t_to,
                       progress=progress).run()
    except ReplayError as exc:
        print(f"engine replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        engine_log.setLevel(level)
    summary = summarize(out)
    rate = stats.frames / stats.wall_s if stats.wall_s > 0 else 0.0
    span = ((stats.last_ms or 0.0) - (stats.first_ms or 0.0)) / 1000.0
    print(f"replayed {stats.frames:,} frames in {stats.batches:,} reads ({span:,.0f} s of "
          f"data) in {stats.wall_s:.2f} s ({rate:,.0f} frames/s), mode {mode}; records in "
          f"{out.resolve()}")
    for line in summary.lines():
        print(line)
    return EXIT_OK
