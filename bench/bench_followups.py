"""Benchmark: 100,000 pending followups through the real scheduler and record writer.

Owns nothing in the engine; it is a script (``.venv/bin/python bench/bench_followups.py``)
that prints its figures. Signals are scheduled quickly (``--signals`` over ``--schedule-ms``,
in bursts every ``--burst-ms``) with offsets 1000/3000/5000 ms against a fake market view of
40 live markets whose prices move every 10 ms, captured by the real
:class:`engine.followups.FollowupScheduler` under Trio and written by the real
:class:`engine.io.records.RecordWriter` into a temporary directory.

Reported: RSS growth (``VmRSS`` from ``/proc/self/status``; peak during the run minus the
baseline before the first schedule) and capture lateness p50/p99/max (exact, from every
written record). Targets: RSS growth <= 100 MB, lateness p99 <= 5 ms.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.core.followups import FollowupBook  # noqa: E402
from engine.core.types import MarketView  # noqa: E402
from engine.followups import FollowupScheduler  # noqa: E402
from engine.io.jsonl import read_jsonl  # noqa: E402
from engine.io.records import RecordWriter  # noqa: E402

OFFSETS = (1000, 3000, 5000)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return math.nan


def clock_ms() -> float:
    return time.time() * 1000.0


def quantile(sorted_vals: list[float], q: float) -> float:
    return sorted_vals[min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))]


async def bench(args: argparse.Namespace, data_dir: Path) -> dict[str, float]:
    coins = [f"xyz:M{i:02d}" for i in range(40)]
    now = clock_ms()
    views = {
        c: MarketView(c, 100.0 + i, 100.0 + i, 99.9 + i, 5.0, 100.1 + i, 7.0, now, now, True)
        for i, c in enumerate(coins)
    }
    writer = RecordWriter(
        data_dir,
        flush_interval_ms=args.flush_interval_ms,
        fsync_interval_ms=args.fsync_interval_ms,
        max_pending_records=1_000_000,
        clock=clock_ms,
    )
    book = FollowupBook(max_ctx_age_ms=8000.0, max_bbo_age_ms=0.0, max_pending=1_000_000)
    sched = FollowupScheduler(book, writer, views.get, clock_ms)
    n = args.signals
    peak = {"rss": 0.0, "pending": 0.0}
    produced = trio.Event()
    done = trio.Event()

    async def market() -> None:
        k = 0
        while True:
            await trio.sleep(0.01)
            k += 1
            t = clock_ms()
            for i, v in enumerate(views.values()):
                d = ((k + i) % 7 - 3) * 0.001
                v.oracle_px = 100.0 + i + d
                v.bid_px = 99.9 + i + d
                v.ask_px = 100.1 + i + d
                v.bbo_recv_ms = t
                v.ctx_recv_ms = t

    async def monitor() -> None:
        while True:
            peak["rss"] = max(peak["rss"], rss_mb())
            peak["pending"] = max(peak["pending"], book.pending_count)
            if produced.is_set() and not book.pending_count:
                done.set()
            await trio.sleep(0.05)

    async def producer() -> None:
        bursts = max(1, int(args.schedule_ms / args.burst_ms))
        per_burst = math.ceil(n / bursts)
        i = 0
        start = trio.current_time()
        for b in range(bursts):
            await trio.sleep_until(start + b * args.burst_ms / 1000.0)
            ts = clock_ms()
            for _ in range(per_burst):
                if i >= n:
                    break
                coin = coins[i % 40]
                side = "buy" if i & 1 else "sell"
                sched.schedule(
                    f"sig_{coin}_{side}_{int(ts)}_{i}",
                    coin,
                    side,
                    ts,
                    100.0,
                    100.1 if side == "buy" else 99.9,
                    12.5,
                    OFFSETS,
                )
                i += 1
        peak["rss"] = max(peak["rss"], rss_mb())
        peak["pending"] = max(peak["pending"], book.pending_count)
        produced.set()

    gc.collect()
    if args.gc_freeze:
        gc.freeze()  # what an app can do after start-up: long-lived objects leave GC scans
    base = rss_mb()
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        nursery.start_soon(sched.run)
        nursery.start_soon(market)
        nursery.start_soon(monitor)
        nursery.start_soon(producer)
        await done.wait()
        nursery.cancel_scope.cancel()
    wall = time.perf_counter() - t0
    writer.close()
    st = sched.stats
    return {
        "base_rss_mb": base,
        "peak_rss_mb": peak["rss"],
        "rss_growth_mb": peak["rss"] - base,
        "peak_pending_signals": peak["pending"],
        "written_captured": st.written_captured,
        "written_missed": st.written_missed,
        "wall_s": wall,
        "writer_errors": writer.stats.write_errors,
        "writer_bytes": writer.stats.bytes_written,
        "reservoir_p50": st.lateness.quantile(0.5) or math.nan,
        "reservoir_p99": st.lateness.quantile(0.99) or math.nan,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--signals", type=int, default=100_000)
    ap.add_argument("--schedule-ms", type=float, default=1000.0)
    ap.add_argument("--burst-ms", type=float, default=5.0)
    ap.add_argument("--flush-interval-ms", type=float, default=0.0)
    ap.add_argument("--fsync-interval-ms", type=float, default=1000.0)
    ap.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() after set-up (an app-level option)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_followups_") as tmp:
        data_dir = Path(tmp)
        res = trio.run(bench, args, data_dir)
        lat: list[float] = []
        count: dict[str, int] = {}
        for p in sorted(data_dir.glob("followups_*.jsonl")):
            for rec in read_jsonl(p):
                lat.append(rec["lateness_ms"])
                count[rec["status"]] = count.get(rec["status"], 0) + 1
        lat.sort()
    print(
        f"signals={args.signals} offsets={list(OFFSETS)} scheduled over "
        f"{args.schedule_ms:.0f} ms in {args.burst_ms:.0f} ms bursts; "
        f"flush_interval_ms={args.flush_interval_ms:g} fsync_interval_ms={args.fsync_interval_ms:g}"
        f"{' gc.freeze()' if args.gc_freeze else ''}"
    )
    print(f"peak pending signals : {res['peak_pending_signals']:.0f}")
    print(
        f"RSS                  : base {res['base_rss_mb']:.1f} MB, peak {res['peak_rss_mb']:.1f} MB,"
        f" growth {res['rss_growth_mb']:.1f} MB (target <= 100)"
    )
    print(f"records on disk      : {len(lat)} {count} ({res['writer_bytes'] / 1e6:.1f} MB)")
    if lat:
        print(
            f"lateness ms          : p50 {quantile(lat, 0.5):.3f}  p99 {quantile(lat, 0.99):.3f}"
            f"  max {lat[-1]:.3f} (target p99 <= 5)"
        )
    print(f"wall                 : {res['wall_s']:.2f} s; writer errors {res['writer_errors']}")
    ok = res["rss_growth_mb"] <= 100 and lat and quantile(lat, 0.99) <= 5.0
    print("RESULT               :", "PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
