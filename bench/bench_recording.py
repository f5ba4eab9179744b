"""Benchmark: what frame recording costs (printed figures, not a test).

1. **Hot-path cost** — the feed calls ``FrameRecorder.inbound(texts)`` once per socket read
   (one ``time.monotonic_ns()`` and one list append): median ns per call and per frame, for
   reads of 1 and of 40 frames (target: ≤ 1 µs per frame, median).
2. **Writer cost** (off the hot path, in the recorder task and a worker thread): encoding +
   zstd compression + write, per frame, for the simulator's frames of 40 markets.
3. **Recorded size per day** for 40 markets at the simulator's rate, two ways, both measured
   on ``--size-minutes`` (default 10) of simulator frames and scaled to 24 h (the simulator's
   rate is flat, so the scaling is linear; the line says it is scaled): the ``sim record``
   container (level 3, 5000-record zstd frames), and the same socket reads through the live
   :class:`FrameRecorder` (level 3) flushed once per recorded second, as its task does with
   the default ``flush_interval_ms`` of 1000 (one zstd frame per second).
4. With ``--trade-path``: ``bench/bench_trade_path.py`` run with recording off, on, off, on,
   off, on (interleaved, in one run; ``--pairs``), printing each run's entry median line and a
   verdict: the entry median is unchanged within noise when the on and off medians (each the
   median of its runs) differ by no more than the larger of the spread between runs of the
   same setting and 10 % of the off median.

Verdict lines (bench/run_all.py reads them): ``PASS|MISS: <target> (<figures>)``, and
``INFO: recorded size per day, <figures>``.

``.venv/bin/python bench/bench_recording.py [--trade-path]``. On a loaded machine label the
figures as such.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.io.frames import FrameRecorder, iter_records
from engine.sim.record import record

T0 = 1_767_625_200 * 1_000_000_000


def hot_path(frames_per_read: int, reads: int = 200_000) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        rec = FrameRecorder(Path(d), anchor_ns=T0, max_pending=reads + 10)
        texts = ['{"channel":"bbo","data":{"coin":"xyz:GOLD","time":1,"bbo":[null,null]}}'] \
            * frames_per_read
        batches = [list(texts) for _ in range(reads)]
        inbound = rec.inbound
        samples: list[float] = []
        perf = time.perf_counter_ns
        for chunk in range(0, reads, 1000):
            t0 = perf()
            for b in batches[chunk:chunk + 1000]:
                inbound(b)
            samples.append((perf() - t0) / 1000)
        rec._items.clear()
        med = statistics.median(samples)
        return med, med / frames_per_read


def writer_cost(data: Path) -> tuple[float, int]:
    texts = [r.payload.decode() for r in iter_records(data) if r.kind == "in"]
    with tempfile.TemporaryDirectory() as d:
        rec = FrameRecorder(Path(d), anchor_ns=T0)
        for i in range(0, len(texts), 4):
            rec.inbound(texts[i:i + 4])
        t0 = time.perf_counter()
        rec.close()
        took = time.perf_counter() - t0
    return took / len(texts) * 1e9, len(texts)


def live_recorder_size(data: Path) -> tuple[int, int]:
    """Bytes the live :class:`FrameRecorder` writes for the socket reads of ``data`` when it
    flushes once per recorded second (its task's default interval), and the frames."""
    with tempfile.TemporaryDirectory() as d:
        rec = FrameRecorder(Path(d), anchor_ns=T0)
        second = None
        batch: list[str] = []
        batch_id = None
        frames = 0
        for r in iter_records(data):
            if r.kind != "in":
                continue
            if r.batch != batch_id:
                if batch:
                    rec.inbound(batch)
                batch, batch_id = [], r.batch
                s = r.wall_ns // 1_000_000_000
                if s != second:
                    rec.flush()
                    second = s
            batch.append(r.payload.decode())
            frames += 1
        if batch:
            rec.inbound(batch)
        rec.close()
        return rec.bytes_written, frames


def trade_path_median(bench: Path, mode: str, cycles: int) -> tuple[float | None, str]:
    """One bench_trade_path run with ``--recording MODE``: its entry median µs and line."""
    proc = subprocess.run([sys.executable, str(bench), "--recording", mode,
                           "--cycles", str(cycles), "--bursts", "10"],
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("entry (")]
    m = re.search(r"median\s+([\d.]+) µs", lines[0]) if lines else None
    if m is None:
        return None, (proc.stdout + proc.stderr)[-300:].strip()
    return float(m.group(1)), lines[0]


def trade_path_verdict(off: list[float], on: list[float]) -> str:
    """``PASS|MISS: bench_trade_path entry median unchanged within noise with recording on
    (...)``: |median(on) - median(off)| <= max(spread within a setting, 10 % of off)."""
    m_off, m_on = statistics.median(off), statistics.median(on)
    spread = max(max(off) - min(off), max(on) - min(on))
    bound = max(spread, 0.10 * m_off)
    diff = m_on - m_off
    verdict = "PASS" if abs(diff) <= bound else "MISS"
    runs = lambda v: "/".join(f"{x:.0f}" for x in v)  # noqa: E731
    return (f"{verdict}: bench_trade_path entry median unchanged within noise with recording "
            f"on (off {m_off:.1f} µs [{runs(off)}], on {m_on:.1f} µs [{runs(on)}], "
            f"on - off {diff:+.1f} µs, bound {bound:.1f} µs: the larger of the same-setting "
            f"spread {spread:.1f} and 10 % of off)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trade-path", action="store_true",
                    help="also run bench_trade_path.py with recording off/on interleaved")
    ap.add_argument("--pairs", type=int, default=3, help="off/on pairs of --trade-path runs")
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--size-minutes", type=float, default=10.0,
                    help="simulator minutes recorded for the size per day")
    args = ap.parse_args()
    print("NOTE: figures from whatever machine runs this; on a shared, loaded machine they "
          "are upper bounds")
    for n in (1, 40):
        per_call, per_frame = hot_path(n)
        verdict = "PASS" if per_frame <= 1000 else "MISS"
        print(f"{verdict}: recording hot path <= 1 µs per frame median, {n}-frame reads "
              f"({per_call:.1f} ns per inbound call, {per_frame:.1f} ns per frame)")
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "rec"
        minutes = args.size_minutes
        record(data, seconds=minutes * 60.0, seed=1, n_markets=40)
        size = sum(p.stat().st_size for p in data.glob("frames_*.zst"))
        n = sum(1 for r in iter_records(data) if r.kind == "in")
        ns, _ = writer_cost(data)
        live, live_frames = live_recorder_size(data)
        assert live_frames == n
        per_day = 1440.0 / minutes
        print(f"writer (recorder task + thread): {ns:,.0f} ns per frame to encode, compress "
              f"and write ({n:,} simulator frames)")
        print(f"recorded size, 40 markets at the simulator's rate ({n / (minutes * 60):.0f} "
              f"frames/s), {minutes:g} min recorded: sim record {size:,} bytes, live recorder "
              f"(1 s frames) {live:,} bytes")
        print(f"INFO: recorded size per day, 40 markets at the simulator's rate: live recorder "
              f"{live * per_day / 1e6:,.0f} MB, sim record {size * per_day / 1e6:,.0f} MB "
              f"({minutes:g} min measured x {per_day:g})")
    if args.trade_path:
        bench = Path(__file__).with_name("bench_trade_path.py")
        got: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(args.pairs):
            for mode in ("off", "on"):
                med, line = trade_path_median(bench, mode, args.cycles)
                print(f"bench_trade_path recording {mode:3s}: {line}", flush=True)
                if med is not None:
                    got[mode].append(med)
        if got["off"] and got["on"]:
            print(trade_path_verdict(got["off"], got["on"]))
        else:
            print("MISS: bench_trade_path entry median unchanged within noise with recording "
                  "on (a run gave no entry median; see above)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
