"""Throughput: the real engine (``ObserveApp``) against a firehose simulator in another process.

The simulator runs as a separate process (``python -m engine.sim --port 0 --markets 40
--rate R --seed 1``, loopback only): on top of its market model it re-publishes each market's
current bbo at an aggregate ``R`` frames/s, in 1 ms batches, over the engine's one WebSocket
connection. The engine runs in this process exactly as ``python -m engine run`` would (config
structured like tests/integration/harness.py; records into a temporary directory; summary off):
feed → wsproto fast path → msgspec decode → CoreHandler → ObserveCore (gates, detector) →
signal records and followups.

After a warm-up the script measures a window and reports:

* frames/s applied by the engine (``RunStats.frames_applied`` delta / window time);
* the simulator's own send rate (``frames_sent`` bbo + activeAssetCtx delta, ``GET /sim/stats``),
  its firehose production backlog and its user-space outbox at the start and end of the window;
* the kernel queues of the connection, sampled every ``--sample-ms`` from ``/proc/net/tcp``:
  the engine socket's ``rx_queue`` (received, not yet read by the engine) and the simulator
  socket's ``tx_queue`` (not yet sent or not yet acknowledged; loopback delayed ACKs keep a few
  tens of KiB here even when nothing is waiting): max, last, and whether they grow. Reading
  ``/proc/net/tcp`` costs 5-10 ms of kernel time per read on this VM, so a small sampler
  *process* (this script with ``--sampler``) does it; the engine process only finds its socket
  once, before the window;
* the age of the newest applied bbo (wall clock now − its venue ``time``, which the firehose
  stamps with the simulator's wall clock): a direct end-to-end backlog measure in ms;
* engine process CPU (``getrusage``) per applied frame and as a share of one core; the
  simulator process's CPU (``/proc/<pid>/stat``); the CPU every other process on the machine
  used during the window (``/proc/stat`` minus those three), flagged above 25 % of a core;
* event-loop lag (lateness of the engine-process sampler's own 100 ms sleeps), garbage
  collector pauses (``gc.callbacks``), signals, malformed frames, reconnects.

Target (issue figure): the engine keeps up with >= 50,000 frames/s over one connection with 40
markets and no growing backlog. PASS when, over the window: the simulator delivered >= 98 % of
the requested rate (otherwise the run cannot show anything and is a MISS of the set-up), the
engine applied >= 98 % of what the simulator sent, the kernel queue depth (engine rx + sim tx)
did not grow (mean of the last third <= mean of the first third + 256 KiB, max <= 8 MiB), the
simulator's outbox at the end is <= 1 MiB, the newest applied bbo is <= 100 ms old at the end,
and there was no reconnect, slow-client drop or malformed frame.

Run: .venv/bin/python bench/bench_throughput.py [--rate 50000[,60000,80000]] [--window 10]
     [--warmup 3] [--profile]   (--profile: cProfile over the window; figures are then not
     representative, the profile is the output)
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import logging
import math
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from simproc import observe_config, start_sim, stop_process  # noqa: E402

from engine.app import ObserveApp  # noqa: E402
from engine.config import structure_config  # noqa: E402

HOST = "127.0.0.1"  # loopback only
TARGET_FPS = 50_000
KiB = 1024
MiB = 1024 * 1024


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process in seconds (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds spent by the whole machine, every core, not idle (from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------- /proc/net/tcp


def _own_socket_inodes() -> set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def tcp_rows() -> list[tuple[int, int, int, int, int, str]]:
    """(local port, remote port, state, tx_queue, rx_queue, inode) of every IPv4/IPv6 socket."""
    rows = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    p = line.split()
                    tx, rx = p[4].split(":")
                    rows.append(
                        (
                            int(p[1].rsplit(":", 1)[1], 16),
                            int(p[2].rsplit(":", 1)[1], 16),
                            int(p[3], 16),
                            int(tx, 16),
                            int(rx, 16),
                            p[9],
                        )
                    )
        except FileNotFoundError:
            continue
    return rows


def find_engine_port(sim_port: int) -> int:
    """Local port of this process's one established connection to the simulator's port."""
    mine = _own_socket_inodes()
    ports = [r[0] for r in tcp_rows() if r[1] == sim_port and r[2] == 1 and r[5] in mine]
    if len(ports) != 1:
        raise RuntimeError(f"expected one engine connection to port {sim_port}, found {ports}")
    return ports[0]


def run_sampler(sim_port: int, engine_port: int, period_ms: float, duration_s: float) -> None:
    """Sampler process: print ``monotonic rx tx`` every ``period_ms`` for ``duration_s``."""
    period = period_ms / 1000.0
    t_end = time.monotonic() + duration_s
    nxt = time.monotonic()
    while True:
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        if now > t_end:
            return
        q = queue_depths(sim_port, engine_port)
        if q is not None:
            print(f"{now:.6f} {q[0]} {q[1]}", flush=True)


def start_sampler(
    sim_port: int, engine_port: int, period_ms: float, duration_s: float, out: Path
) -> subprocess.Popen[bytes]:
    with open(out, "wb") as f:
        return subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--sampler",
                str(sim_port),
                str(engine_port),
                "--sample-ms",
                str(period_ms),
                "--window",
                str(duration_s),
            ],
            stdout=f,
        )


def read_samples(out: Path, t0: float, t1: float) -> list[tuple[float, int, int]]:
    rows = []
    for line in out.read_text().splitlines():
        t, rx, tx = line.split()
        if t0 <= float(t) <= t1:
            rows.append((float(t), int(rx), int(tx)))
    return rows


def queue_depths(sim_port: int, engine_port: int) -> tuple[int, int] | None:
    """(engine socket rx_queue, simulator socket tx_queue) in bytes, or None if gone."""
    rx = tx = None
    for lport, rport, _st, txq, rxq, _inode in tcp_rows():
        if lport == engine_port and rport == sim_port:
            rx = rxq
        elif lport == sim_port and rport == engine_port:
            tx = txq
    if rx is None or tx is None:
        return None
    return rx, tx


# ---------------------------------------------------------------- figures


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y)."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / den if den else 0.0


def thirds(vals: list[float]) -> tuple[float, float]:
    k = max(1, len(vals) // 3)
    return sum(vals[:k]) / k, sum(vals[-k:]) / k


def quantile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return math.nan
    return sorted_vals[min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))]


def sim_frames(st: dict[str, Any]) -> int:
    fs = st["frames_sent"]
    return int(fs["bbo"]) + int(fs["activeAssetCtx"])


# ---------------------------------------------------------------- the run


async def measure(
    args: argparse.Namespace, rate: float, sim_port: int, sim_pid: int, tmp: Path
) -> dict[str, Any]:
    data = tomllib.loads(observe_config(sim_port, tmp / "records"))
    cfg = structure_config(data, "bench_throughput")
    app = ObserveApp(cfg)
    res: dict[str, Any] = {}
    async with (
        trio.open_nursery() as nursery,
        httpx.AsyncClient(base_url=f"http://{HOST}:{sim_port}", timeout=10.0) as http,
    ):

        async def sim_stats() -> tuple[float, dict[str, Any]]:
            r = await http.get("/sim/stats")
            r.raise_for_status()
            return time.perf_counter(), r.json()

        finished = trio.Event()

        async def run_app() -> None:
            await app.run()
            finished.set()

        nursery.start_soon(run_app)
        with trio.fail_after(20):
            await app.ready.wait()
            assert app.feed is not None and app.core is not None
            while not app.feed.all_acked:  # noqa: ASYNC110 - polling another task's state
                await trio.sleep(0.01)
        feed, core, stats = app.feed, app.core, app.stats
        engine_port = find_engine_port(sim_port)
        await trio.sleep(args.warmup)

        ages: list[float] = []  # wall ms now - venue time of the newest applied bbo
        loop_lag: list[float] = []
        sim_series: list[tuple[float, dict[str, Any]]] = []
        markets = core.markets
        qfile = tmp / "queues.txt"
        qproc = start_sampler(sim_port, engine_port, args.sample_ms, args.window + 5.0, qfile)

        async def sampler() -> None:
            period = args.sample_ms / 1000.0
            nxt = trio.current_time()
            while True:
                nxt += period
                await trio.sleep_until(nxt)
                loop_lag.append((trio.current_time() - nxt) * 1000.0)
                ages.append(time.time() * 1000.0 - max(m.bbo_time_ms for m in markets))

        async def sim_poller() -> None:
            while True:
                await trio.sleep(1.0)
                sim_series.append(await sim_stats())

        t0s, st0 = await sim_stats()
        f0, cpu0, simcpu0 = stats.frames_applied, self_cpu_s(), proc_cpu_s(sim_pid)
        busy0, qcpu0 = machine_busy_s(), proc_cpu_s(qproc.pid)
        sig0, mal0, rec0, bat0 = (
            stats.signals,
            feed.stats.malformed,
            feed.stats.reconnects,
            feed.stats.batches,
        )
        gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        gc_start = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_start[0] = time.perf_counter()
            else:
                gc_pauses[info["generation"]].append((time.perf_counter() - gc_start[0]) * 1e3)

        gc.callbacks.append(on_gc)
        t0, m0 = time.perf_counter(), time.monotonic()
        prof = cProfile.Profile() if args.profile else None
        try:
            async with trio.open_nursery() as inner:
                inner.start_soon(sampler)
                inner.start_soon(sim_poller)
                if prof is not None:
                    prof.enable()
                await trio.sleep(args.window)
                if prof is not None:
                    prof.disable()
                inner.cancel_scope.cancel()
            t1, m1 = time.perf_counter(), time.monotonic()
            gc.callbacks.remove(on_gc)
            f1, cpu1, simcpu1 = stats.frames_applied, self_cpu_s(), proc_cpu_s(sim_pid)
            busy1, qcpu1 = machine_busy_s(), proc_cpu_s(qproc.pid)
            t1s, st1 = await sim_stats()
        finally:
            stop_process(qproc)
        dt = t1 - t0
        res.update(
            rate=rate,
            window_s=dt,
            frames=f1 - f0,
            engine_fps=(f1 - f0) / dt,
            cpu_s=cpu1 - cpu0,
            sim_cpu_s=simcpu1 - simcpu0,
            other_cpu_s=(busy1 - busy0) - (cpu1 - cpu0) - (simcpu1 - simcpu0) - (qcpu1 - qcpu0),
            signals=stats.signals - sig0,
            malformed=feed.stats.malformed - mal0,
            malformed_total=feed.stats.malformed,
            reconnects=feed.stats.reconnects - rec0,
            batches=feed.stats.batches - bat0,
            unknown=stats.unknown_coin_frames,
            sim_fps=(sim_frames(st1) - sim_frames(st0)) / (t1s - t0s),
            sim_firehose_fps=(
                st1["firehose"]["frames_delivered"] - st0["firehose"]["frames_delivered"]
            )
            / (t1s - t0s),
            sim_bytes_per_s=(st1["bytes_sent"] - st0["bytes_sent"]) / (t1s - t0s),
            sim_start=st0,
            sim_end=st1,
            sim_series=sim_series,
            samples=read_samples(qfile, m0, m1),
            ages=ages,
            loop_lag=loop_lag,
            gc=gc_pauses,
            profile=prof,
        )
        app.stop()
        with trio.fail_after(15):
            await finished.wait()
        nursery.cancel_scope.cancel()
    return res


def report(res: dict[str, Any], args: argparse.Namespace) -> bool:
    rate = res["rate"]
    s0, s1 = res["sim_start"], res["sim_end"]
    fh0, fh1 = s0["firehose"], s1["firehose"]
    smp = res["samples"]
    rx = [float(r) for _, r, _ in smp]
    tx = [float(t) for _, _, t in smp]
    depth = [r + t for r, t in zip(rx, tx, strict=True)]
    ages = res["ages"]
    t_first = smp[0][0] if smp else 0.0
    depth_slope = slope([(t - t_first, d) for (t, *_), d in zip(smp, depth, strict=True)])
    d_first, d_last = thirds(depth) if depth else (math.nan, math.nan)
    lag = sorted(res["loop_lag"])
    frames = max(res["frames"], 1)
    outbox0 = s0["outbox_pending_bytes"]
    outbox1 = s1["outbox_pending_bytes"]
    conn0, conn1 = s0["connections"], s1["connections"]
    drops = conn1["slow_client_drops"] - conn0["slow_client_drops"]
    print(
        f"--- rate {rate:,.0f} frames/s requested, {s1['markets']} markets, "
        f"window {res['window_s']:.1f} s after {args.warmup:g} s warm-up"
        f"{' (cProfile ON: figures not representative)' if args.profile else ''}"
    )
    print(
        f"engine applied       : {res['engine_fps']:10,.0f} frames/s ({res['frames']:,} frames, "
        f"{res['batches']:,} socket reads, {res['frames'] / max(res['batches'], 1):.0f} "
        f"frames/read)"
    )
    print(
        f"simulator sent       : {res['sim_fps']:10,.0f} frames/s (firehose "
        f"{res['sim_firehose_fps']:,.0f}/s, {res['sim_bytes_per_s'] / 1e6:.2f} MB/s, "
        f"{res['sim_bytes_per_s'] / max(res['sim_fps'], 1):.0f} B/frame)"
    )
    print(f"engine / sim         : {res['engine_fps'] / max(res['sim_fps'], 1) * 100:6.2f} %")
    print(
        f"sim firehose backlog : start {fh0['backlog_frames']} frames ({fh0['lag_ms']} ms), "
        f"end {fh1['backlog_frames']} frames ({fh1['lag_ms']} ms), "
        f"max since sim start {fh1['max_backlog_frames']}"
    )
    print(
        f"sim outbox (user)    : start {outbox0 / KiB:.1f} KiB, end {outbox1 / KiB:.1f} KiB, "
        f"max of 1 s polls "
        f"{max([st['outbox_pending_bytes'] for _, st in res['sim_series']] or [0]) / KiB:.1f}"
        f" KiB"
    )
    if smp:
        print(
            f"engine rx_queue      : max {max(rx) / KiB:8.1f} KiB, last {rx[-1] / KiB:8.1f} KiB, "
            f"mean {sum(rx) / len(rx) / KiB:.1f} KiB ({len(smp)} samples every "
            f"{args.sample_ms:g} ms)"
        )
        print(
            f"sim tx_queue         : max {max(tx) / KiB:8.1f} KiB, last {tx[-1] / KiB:8.1f} KiB, "
            f"mean {sum(tx) / len(tx) / KiB:.1f} KiB"
        )
        print(
            f"queue depth (rx+tx)  : first third mean {d_first / KiB:.1f} KiB, last third mean "
            f"{d_last / KiB:.1f} KiB, slope {depth_slope / KiB:+.1f} KiB/s"
        )
    else:
        print("engine rx_queue      : no samples (connection not found in /proc/net/tcp)")
    if ages:
        sa = sorted(ages)
        print(
            f"newest bbo age       : p50 {quantile(sa, 0.5):.1f} ms, p99 {quantile(sa, 0.99):.1f}"
            f" ms, max {sa[-1]:.1f} ms, last {ages[-1]:.1f} ms (wall now - venue time)"
        )
    print(
        f"engine CPU           : {res['cpu_s'] / res['window_s'] * 100:5.1f} % of one core, "
        f"{res['cpu_s'] / frames * 1e6:.2f} us/frame"
    )
    print(f"simulator CPU        : {res['sim_cpu_s'] / res['window_s'] * 100:5.1f} % of one core")
    other = res["other_cpu_s"] / res["window_s"] * 100
    print(
        f"other processes CPU  : {other:5.1f} % of one core (machine total minus engine, simulator "
        f"and queue sampler; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f})"
    )
    if other > 25:
        print("  NOTE: other load on the machine during the window: figures may be disturbed")
    if lag:
        print(
            f"event-loop lag       : p50 {quantile(lag, 0.5):.2f} ms, p99 "
            f"{quantile(lag, 0.99):.2f} ms, max {lag[-1]:.2f} ms"
        )
    gcp = res["gc"]
    print(
        "gc pauses (window)   : "
        + ", ".join(f"gen{g} {len(v)}x max {max(v, default=0.0):.2f} ms" for g, v in gcp.items())
    )
    print(
        f"signals {res['signals']} | malformed {res['malformed']} (total "
        f"{res['malformed_total']}) | reconnects {res['reconnects']} | slow-client drops "
        f"{drops} | unknown-coin frames {res['unknown']}"
    )
    if res["profile"] is not None:
        buf = io.StringIO()
        pstats.Stats(res["profile"], stream=buf).sort_stats("tottime").print_stats(args.top)
        print(buf.getvalue())

    checks = {
        f"sim delivered >= 98% of {rate:,.0f}/s": res["sim_fps"] >= 0.98 * rate,
        "engine applied >= 98% of sim sent": res["engine_fps"] >= 0.98 * res["sim_fps"],
        "queue depth not growing": bool(smp)
        and d_last <= d_first + 256 * KiB
        and max(depth) <= 8 * MiB,
        "sim outbox at end <= 1 MiB": outbox1 <= MiB,
        "newest bbo <= 100 ms old at end": bool(ages) and ages[-1] <= 100.0,
        "no reconnect/drop/malformed": res["reconnects"] == 0
        and drops == 0
        and res["malformed"] == 0,
    }
    for name, ok in checks.items():
        print(f"  check {'ok  ' if ok else 'FAIL'} {name}")
    ok = all(checks.values())
    verdict = "PASS" if ok else "MISS"
    print(
        f"{verdict}: keeps up with {rate:,.0f} frames/s over one connection, "
        f"{s1['markets']} markets, no growing backlog (engine {res['engine_fps']:,.0f}/s)"
        + ("" if rate >= TARGET_FPS else f" [below the {TARGET_FPS:,}/s target rate]")
    )
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rate",
        default=str(TARGET_FPS),
        help="firehose frames/s; a comma-separated list runs each in turn",
    )
    ap.add_argument("--markets", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--sample-ms", type=float, default=100.0)
    ap.add_argument("--profile", action="store_true", help="cProfile the engine over the window")
    ap.add_argument("--top", type=int, default=25, help="profile rows to print")
    ap.add_argument("--sampler", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sampler:
        run_sampler(args.sampler[0], args.sampler[1], args.sample_ms, args.window)
        return 0
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    rates = [float(r) for r in args.rate.split(",") if r.strip()]
    all_ok = True
    for rate in rates:
        sim, port = start_sim(args.markets, rate, args.seed)
        try:
            with tempfile.TemporaryDirectory(prefix="bench_throughput_") as tmp:
                res = trio.run(measure, args, rate, port, sim.pid, Path(tmp))
        finally:
            stop_process(sim)
        all_ok &= report(res, args)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
