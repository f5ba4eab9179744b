"""Run every benchmark in bench/ one after another (each as a subprocess) and summarise them.

Every ``bench/bench_*.py`` is run with this interpreter, its stdout streamed through, its stderr
kept aside (shown only when a bench produced no verdict). Then a table lists one row per target:
PASS / MISS, or INFO for a bench without a target (bench_decode), or ERROR when a bench crashed or
timed out. Benches not known here are run without arguments and their ``PASS``/``MISS`` lines
are picked up as they are.

Run: .venv/bin/python bench/run_all.py [--only NAME ...] [--skip NAME ...] [--rss-duration 20]
     [--rate 50000]
Exit code: 0 when every target passed, 1 otherwise. Benchmarks are not tests: nothing here is
collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ORDER = ["bench_decision", "bench_decode", "bench_followups", "bench_throughput", "bench_rss"]

Row = tuple[str, str, str]  # (target, verdict, figure)


def _find(pattern: str, text: str) -> re.Match[str] | None:
    return re.search(pattern, text, re.MULTILINE)


def parse_decision(out: str) -> list[Row]:
    m = _find(r"median ([\d.]+) us .*p99 ([\d.]+) us", out)
    v = _find(r"target: median <= 15 us -> (\w+)", out)
    if not v:
        return []
    fig = f"median {m.group(1)} us, p99 {m.group(2)} us" if m else ""
    return [("frame -> decision <= 15 us median", "PASS" if v.group(1) == "OK" else "MISS", fig)]


def parse_decode(out: str) -> list[Row]:
    """The fast-path feed rows: the best wall-clock frames/s of the rounds (a ceiling), and
    the median CPU per frame with its frames per CPU-second (the load-independent figure to
    compare two trees by: the wall-clock one falls whenever the machine is busy)."""
    rows = re.findall(
        r"\[fast path\s*\] HyperliquidFeed, no-op handler :\s*([\d.]+) frames/s, "
        r"\s*([\d.]+) us CPU/frame(?:, \s*[\d.]+ frames/CPU-s, on CPU\s*(\d+)%)?",
        out,
    )
    if not rows:
        return []
    best = max(rows, key=lambda r: float(r[0]))
    cpu = statistics.median(float(r[1]) for r in rows)
    fig = f"{float(best[0]):,.0f} frames/s"
    if best[2]:
        fig += f" (on CPU {best[2]} %)"
    fig += f"; CPU {cpu:.2f} us/frame = {1e6 / cpu:,.0f} frames/CPU-s (median of {len(rows)})"
    return [("(no target) feed + decode ceiling, no-op handler", "INFO", fig)]


def parse_info(out: str) -> list[Row]:
    """``INFO: <what>, <figures>`` lines (benches without a target)."""
    return [
        (f"(no target) {m.group(1).strip()}", "INFO", m.group(2).strip())
        for m in re.finditer(r"^INFO: ([^,]*), (.*)$", out, re.MULTILINE)
    ]


def parse_followups(out: str) -> list[Row]:
    rows: list[Row] = []
    g = _find(r"growth ([\d.]+) MB \(target <= 100\)", out)
    if g:
        rows.append(
            (
                "100k pending followups: RSS growth <= 100 MB",
                "PASS" if float(g.group(1)) <= 100 else "MISS",
                f"{g.group(1)} MB",
            )
        )
    lat = _find(r"lateness ms\s*: p50 ([\d.]+)\s+p99 ([\d.]+)\s+max ([\d.]+)", out)
    if lat:
        rows.append(
            (
                "100k pending followups: capture lateness p99 <= 5 ms",
                "PASS" if float(lat.group(2)) <= 5 else "MISS",
                f"p50 {lat.group(1)} p99 {lat.group(2)} max {lat.group(3)} ms",
            )
        )
    return rows


def parse_target_figure(out: str) -> list[Row]:
    """``PASS|MISS: <target> (<figures>)`` lines (figures without parentheses), other
    ``PASS|MISS: <text>`` lines as :func:`parse_generic` reads them, and ``INFO: <what>,
    <figures>`` lines, in output order."""
    rows: list[Row] = []
    for m in re.finditer(r"^(?:(PASS|MISS): (.*)|INFO: ([^,]*), (.*))$", out, re.MULTILINE):
        if m.group(1) is None:
            rows.append((f"(no target) {m.group(3).strip()}", "INFO", m.group(4).strip()))
            continue
        tf = re.fullmatch(r"(.+?) \(([^()]*)\)", m.group(2).strip())
        if tf is None:
            rows.append((m.group(2).strip(), m.group(1), ""))
        else:
            rows.append((tf.group(1), m.group(1), tf.group(2)))
    return rows


def parse_generic(out: str) -> list[Row]:
    return [
        (m.group(2).strip(), m.group(1), "")
        for m in re.finditer(r"^(PASS|MISS): (.*)$", out, re.MULTILINE)
    ]


def parse_throughput(out: str) -> list[Row]:
    rows = []
    for m in re.finditer(
        r"^(PASS|MISS): keeps up with ([\d,]+) frames/s.*?\(engine ([\d,]+)/s\)", out, re.MULTILINE
    ):
        rows.append(
            (
                f">= 50k frames/s, one connection, 40 markets, no growing backlog "
                f"(run at {m.group(2)}/s)",
                m.group(1),
                f"engine {m.group(3)} frames/s",
            )
        )
    cpu = _find(r"engine CPU\s*:\s*([\d.]+) % of one core, ([\d.]+) us/frame", out)
    if rows and cpu:
        t, v, f = rows[-1]
        rows[-1] = (t, v, f + f", {cpu.group(1)} % CPU, {cpu.group(2)} us/frame")
    return rows


def parse_rss(out: str) -> list[Row]:
    m = _find(r"^(PASS|MISS): steady observe RSS <= 150 MB \(max ([\d.]+) MB", out)
    if not m:
        return []
    s = _find(r"RSS slope, last half : ([+-][\d.]+) MB/min", out)
    return [
        (
            "steady observe RSS <= 150 MB",
            m.group(1),
            f"max {m.group(2)} MB" + (f", slope {s.group(1)} MB/min" if s else ""),
        )
    ]


def parse_bybit_hedge_loopback(out: str) -> list[Row]:
    m = _find(r"^(PASS|MISS): (leg-1 fill -> leg-2 order written median <= [\d.]+ ms, "
              r"p99 <= [\d.]+ ms) \(median ([\d.]+) ms, p99 ([\d.]+) ms\)", out)
    if not m:
        return []
    n = _find(r"n=(\d+) median", out)
    load = _find(r"\(load average ([\d.]+) on (\d+) cores\)", out)
    figure = f"median {m.group(3)} ms, p99 {m.group(4)} ms"
    if n:
        figure += f", n={n.group(1)}"
    if load:
        figure += f" (load {load.group(1)} on {load.group(2)} cores)"
    return [(f"bybit loopback: {m.group(2)}", m.group(1), figure)]


PARSERS: dict[str, Callable[[str], list[Row]]] = {
    "bench_decision": parse_decision,
    "bench_decode": parse_decode,
    "bench_followups": parse_followups,
    "bench_throughput": parse_throughput,
    "bench_rss": parse_rss,
    "bench_entry_core": parse_info,
    "bench_bybit_hedge_loopback": parse_bybit_hedge_loopback,
    "bench_bybit_signing": parse_target_figure,
    "bench_recording": parse_target_figure,
    "bench_replay": parse_target_figure,
    "bench_replay_vs_nautilus": parse_target_figure,
}


def bench_args(name: str, args: argparse.Namespace) -> list[str]:
    return {
        "bench_decode": ["--rounds", "3"],
        "bench_throughput": ["--rate", args.rate],
        "bench_rss": ["--duration", str(args.rss_duration)],
        "bench_recording": ["--trade-path"],
    }.get(name, [])


# benches also run with other arguments, as an extra row group labelled name[label]
VARIANTS: dict[str, list[tuple[str, list[str]]]] = {
    "bench_trade_path": [("busy-poll", ["--busy-poll-us", "1000000"])],
}


def run_one(name: str, extra: list[str], timeout: float) -> tuple[int | None, str, str, float]:
    """Run bench/NAME.py; stream stdout; return (exit code or None on timeout, out, err, s)."""
    cmd = [sys.executable, str(BENCH_DIR / f"{name}.py"), *extra]
    load = os.getloadavg()[0]
    print(f"\n=== {name} {' '.join(extra)} (load average {load:.2f})", flush=True)
    t0 = time.monotonic()
    out_lines: list[str] = []
    with tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(
            cmd, cwd=BENCH_DIR.parent, stdout=subprocess.PIPE, stderr=err, text=True
        )
        assert p.stdout is not None
        try:
            for line in p.stdout:
                out_lines.append(line)
                print(line, end="", flush=True)
                if time.monotonic() - t0 > timeout:
                    raise subprocess.TimeoutExpired(cmd, timeout)
            rc: int | None = p.wait(max(1.0, timeout - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            rc = None
        err.seek(0)
        err_text = err.read()
    return rc, "".join(out_lines), err_text, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="bench names to run (default all)")
    ap.add_argument("--skip", nargs="*", default=[], help="bench names to skip")
    ap.add_argument(
        "--rss-duration",
        type=float,
        default=20.0,
        help="bench_rss engine run, seconds (default 20)",
    )
    ap.add_argument("--rate", default="50000", help="bench_throughput --rate (default 50000)")
    ap.add_argument("--timeout", type=float, default=600.0, help="per bench, seconds")
    args = ap.parse_args()

    found = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    names = [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]
    if args.only:
        names = [n for n in names if n in args.only]
    names = [n for n in names if n not in args.skip]

    table: list[tuple[str, str, str, str, float]] = []
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    runs = []
    for name in names:
        runs.append((name, name, bench_args(name, args)))
        for label, extra in VARIANTS.get(name, []):
            runs.append((f"{name}[{label}]", name, bench_args(name, args) + extra))
    for shown, name, extra in runs:
        rc, out, err, secs = run_one(name, extra, args.timeout)
        rows = PARSERS.get(name, parse_generic)(out) or parse_generic(out)
        if rc is None:
            rows = [("(timed out)", "ERROR", f"after {args.timeout:.0f} s")]
        elif not rows:
            rows = [("(no verdict line)", "ERROR", f"exit code {rc}")]
            tail = "\n".join(err.strip().splitlines()[-20:])
            if tail:
                print(f"--- {name} stderr (last lines) ---\n{tail}")
        for target, verdict, fig in rows:
            table.append((shown, target, verdict, fig, secs))

    print(
        f"\n=== summary (started {started}, {len(names)} benches, {os.cpu_count()} cores, "
        f"load average now {os.getloadavg()[0]:.2f}) ==="
    )
    w_name = max([len(r[0]) for r in table] + [5])
    w_tgt = max([len(r[1]) for r in table] + [6])
    print(f"{'bench':{w_name}}  {'target':{w_tgt}}  {'result':6}  figure")
    for name, target, verdict, fig, _secs in table:
        print(f"{name:{w_name}}  {target:{w_tgt}}  {verdict:6}  {fig}")
    bad = [r for r in table if r[2] in ("MISS", "ERROR")]
    print(f"{len(table) - len(bad)} of {len(table)} rows PASS/INFO; {len(bad)} MISS/ERROR")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
