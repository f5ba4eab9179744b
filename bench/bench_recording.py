"""Benchmark: what frame recording costs (printed figures, not a test).

1. **Hot-path cost** — the feed calls ``FrameRecorder.inbound(texts)`` once per socket read
   (one ``time.monotonic_ns()`` and one list append): median ns per call and per frame, for
   reads of 1 and of 40 frames (target: ≤ 1 µs per frame, median).
2. **Writer cost** (off the hot path, in the recorder task and a worker thread): encoding +
   zstd compression + write, per frame, for the simulator's frames of 40 markets.
3. **Recorded size per day** for 40 markets at the simulator's rate: a 60 s simulator
   recording (``engine.sim.record``) scaled to 24 h.
4. With ``--trade-path``: ``bench/bench_trade_path.py`` run with recording off, on, off, on
   (interleaved, in one run), printing each run's entry median line.

``.venv/bin/python bench/bench_recording.py [--trade-path]``. On a loaded machine label the
figures as such.
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trade-path", action="store_true",
                    help="also run bench_trade_path.py with recording off/on/off/on")
    ap.add_argument("--cycles", type=int, default=200)
    args = ap.parse_args()
    print("NOTE: figures from whatever machine runs this; on a shared, loaded machine they "
          "are upper bounds")
    for n in (1, 40):
        per_call, per_frame = hot_path(n)
        verdict = "PASS" if per_frame <= 1000 else "MISS"
        print(f"{verdict}: recording hot path, inbound() of a {n}-frame read: median "
              f"{per_call:.1f} ns per read, {per_frame:.1f} ns per frame (target <= 1 µs)")
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "rec"
        record(data, seconds=60.0, seed=1, n_markets=40)
        size = sum(p.stat().st_size for p in data.glob("frames_*.zst"))
        n = sum(1 for r in iter_records(data) if r.kind == "in")
        ns, _ = writer_cost(data)
        print(f"writer (recorder task + thread): {ns:,.0f} ns per frame to encode, compress "
              f"and write ({n:,} simulator frames)")
        print(f"recorded size, 40 markets at the simulator's rate: {size:,} bytes per minute "
              f"({n:,} frames) -> {size * 1440 / 1e6:,.1f} MB per day")
    if args.trade_path:
        bench = Path(__file__).with_name("bench_trade_path.py")
        for mode in ("off", "on", "off", "on"):
            proc = subprocess.run([sys.executable, str(bench), "--recording", mode,
                                   "--cycles", str(args.cycles), "--bursts", "10"],
                                  capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("entry (")]
            print(f"bench_trade_path recording {mode:3s}: {lines[0] if lines else proc.stdout[-300:]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
