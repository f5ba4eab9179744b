"""Steady-observe memory: RSS of the engine process over a run against the simulator.

Two processes, loopback only: the simulator (``python -m engine.sim --port 0 --markets 40
--seed 1``, its normal model rate unless ``--rate`` adds a firehose) and the engine exactly as an
operator runs it (``python -m engine run --config <tmp toml> --duration D``, records into a
temporary directory, INFO logging to a file, summary every 10 s). Only the ENGINE process is
measured: ``VmRSS`` (and ``VmHWM``, the kernel's peak) from ``/proc/<pid>/status`` every
``--interval`` seconds.

Reported: RSS after start-up (first sample once every subscription is
acknowledged), max, ``VmHWM``, end (last sample before exit), and the least-squares slope over
the last half of the run (MB/min); the engine's own frame rate and signal/followup counts from
its summary and final log lines.

Target (issue figure): steady observe with 40 markets, RSS <= 150 MB (max over the run).

Run: .venv/bin/python bench/bench_rss.py [--duration 60] [--rate 0] [--markets 40]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simproc import ROOT, observe_config, start_sim, stop_process  # noqa: E402

TARGET_MB = 150.0

def status_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) in MB, or None once the process is gone."""
    rss = hwm = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024.0
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        return None
    if rss is None or hwm is None:  # a zombie has no Vm* lines
        return None
    return rss, hwm


def slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / den if den else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="engine run, seconds")
    ap.add_argument("--interval", type=float, default=1.0, help="RSS sample period, seconds")
    ap.add_argument("--markets", type=int, default=40)
    ap.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="simulator firehose frames/s on top of the model (0: normal rate)",
    )
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_rss_") as tmp_s:
        tmp = Path(tmp_s)
        sim, port = start_sim(args.markets, args.rate, args.seed)
        engine: subprocess.Popen[str] | None = None
        try:
            cfg = tmp / "engine.toml"
            cfg.write_text(observe_config(port, tmp / "records", summary_s=10, log_level="INFO"))
            log_path = tmp / "engine.log"
            with open(log_path, "w") as log_f:
                engine = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "engine",
                        "run",
                        "--config",
                        str(cfg),
                        "--duration",
                        str(args.duration),
                    ],
                    cwd=ROOT,
                    stdout=log_f,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            samples: list[tuple[float, float]] = []  # (s since start, RSS MB)
            hwm = 0.0
            ready_at: float | None = None
            t_start = time.monotonic()
            deadline = t_start + args.duration + 60.0
            nxt = t_start
            while engine.poll() is None and time.monotonic() < deadline:
                if ready_at is None and "subscriptions acknowledged" in log_path.read_text():
                    ready_at = time.monotonic() - t_start
                st = status_mb(engine.pid)
                if st is not None:
                    samples.append((time.monotonic() - t_start, st[0]))
                    hwm = max(hwm, st[1])
                nxt += args.interval
                time.sleep(max(0.0, nxt - time.monotonic()))
            if engine.poll() is None:
                print(f"engine did not stop within {args.duration + 60:.0f} s; terminating")
            stop_process(engine)
            rc = engine.returncode
        finally:
            if engine is not None:
                stop_process(engine)
            stop_process(sim)
        log_text = log_path.read_text()

    if not samples:
        print("no RSS samples (engine exited at once?)\n" + log_text[-2000:])
        print(f"MISS: steady observe RSS <= {TARGET_MB:.0f} MB (no measurement)")
        return 1
    after = [s for s in samples if ready_at is not None and s[0] >= ready_at]
    start_rss = after[0] if after else samples[0]
    peak = max(samples, key=lambda s: s[1])
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    slope_mb_min = slope(half) * 60.0
    rates = [float(x.replace(",", "")) for x in re.findall(r"frames ([\d,.]+)/s", log_text)]
    final = re.findall(r"stopped: .*", log_text)
    warnings = len(re.findall(r" (WARNING|ERROR) ", log_text))
    print(
        f"engine: python -m engine run --duration {args.duration:g}, {args.markets} markets, "
        f"simulator rate {'model only' if not args.rate else f'model + {args.rate:,.0f}/s'}"
        f"; exit code {rc}; {len(samples)} samples every {args.interval:g} s"
    )
    print(
        f"RSS after start-up   : {start_rss[1]:7.1f} MB (t={start_rss[0]:.1f} s, subscriptions "
        f"acknowledged at {'?' if ready_at is None else f'{ready_at:.1f} s'})"
    )
    print(f"RSS max              : {peak[1]:7.1f} MB (t={peak[0]:.1f} s); VmHWM {hwm:.1f} MB")
    print(f"RSS end              : {samples[-1][1]:7.1f} MB (t={samples[-1][0]:.1f} s)")
    print(
        f"RSS slope, last half : {slope_mb_min:+.3f} MB/min over {len(half)} samples "
        f"(growth after start-up {samples[-1][1] - start_rss[1]:+.1f} MB)"
    )
    if rates:
        print(
            f"engine frames/s      : {', '.join(f'{r:,.0f}' for r in rates)} "
            f"(its 10 s summary lines)"
        )
    print(
        f"engine final line    : {final[-1] if final else '(none)'}; "
        f"{warnings} WARNING/ERROR log lines"
    )
    ok = peak[1] <= TARGET_MB and hwm <= TARGET_MB and rc == 0
    print(
        f"{'PASS' if ok else 'MISS'}: steady observe RSS <= {TARGET_MB:.0f} MB "
        f"(max {max(peak[1], hwm):.1f} MB{'' if rc == 0 else f', engine exit code {rc}'})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
