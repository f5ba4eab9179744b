"""Frame → decision: decode + market state + gates + detector, per frame (median, p99 in µs).

Replays a realistic wire stream (the simulator's market model for 40 xyz markets: bbo flow,
oracle updates every ~3 s with lagging market makers) through the engine's real code path:
``WireDecoder.decode`` → ``CoreHandler.on_bbo/on_ctx`` → ``DislocationStrategy`` (gates, detector) →
signal record construction. Record writing and followup scheduling are replaced by counters so
this measures the decision alone; I/O is measured by bench_followups.py and bench_throughput.py.

Run: python bench/bench_decision.py [--frames 200000]
Target (issue 2): ≤ 15 µs median on the 2-core machine.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.app import CoreHandler, DetectorTimer, RunStats  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.core.detector import Signal  # noqa: E402
from engine.core.types import MarketSpec  # noqa: E402
from engine.sim import frames  # noqa: E402
from engine.sim.markets import XYZ_MARKETS  # noqa: E402
from engine.sim.model import MarketModel, ModelParams  # noqa: E402
from engine.strategies.dislocation import DislocationStrategy  # noqa: E402
from engine.venues.hyperliquid.wire import BboEvent, CtxEvent, WireDecoder  # noqa: E402


def wire_stream(n_frames: int, n_markets: int, seed: int) -> list[tuple[int, bytes]]:
    """(virtual ms, raw frame text) from the simulator's model, densified to n_frames."""
    model = MarketModel(seed, n_markets, ModelParams())
    out: list[tuple[int, bytes]] = []
    t = 0
    while len(out) < n_frames:
        t += 1000
        for ev in model.advance(t):
            if ev.kind == "bbo":
                out.append((ev.time_ms, frames.bbo_payload(ev.coin, ev.time_ms, ev.payload)))
            elif ev.kind == "ctx":
                out.append((ev.time_ms, frames.ctx_payload(ev.coin, ev.payload)))
    return out[:n_frames]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--markets", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    stream = wire_stream(args.frames, args.markets, args.seed)
    cfg = load_config(Path(__file__).resolve().parent.parent / "config" / "observe.toml", env={})
    specs = [MarketSpec(i, c.name, 110000 + i, c.sz_decimals)
             for i, c in enumerate(XYZ_MARKETS[: args.markets])]
    core = DislocationStrategy.from_config(specs, cfg)  # what the observe shell runs
    signals = 0

    def on_signal(sig: Signal) -> None:
        nonlocal signals
        signals += 1
        sig.fields  # noqa: B018 - the record is built on first access: observe mode writes it

    base_ms = 1_795_000_000_000.0
    now = [base_ms]
    clock = lambda: now[0]  # noqa: E731 - the injected clock follows the stream's time
    timer = DetectorTimer(core, clock, on_signal)
    handler = CoreHandler(core, clock, on_signal, timer, RunStats())
    decode = WireDecoder().decode
    on_bbo, on_ctx = handler.on_bbo, handler.on_ctx

    def step(text: bytes) -> None:
        ev = decode(text)
        t = type(ev)
        if t is BboEvent:
            on_bbo(ev.coin, ev.time_ms, ev.bid_px, ev.bid_sz, ev.ask_px, ev.ask_sz)  # type: ignore[union-attr]
        elif t is CtxEvent:
            on_ctx(ev.coin, ev.oracle_px, ev.mark_px)  # type: ignore[union-attr]

    gc.collect()
    gc.freeze()
    samples: list[float] = []
    perf = time.perf_counter_ns
    t_all = perf()
    for vms, text in stream:
        now[0] = base_ms + vms
        handler.batch.now = None  # one receive time per frame here (a batch of one)
        t0 = perf()
        step(text)
        for sig in core.on_timer(now[0]):
            on_signal(sig)
        samples.append((perf() - t0) / 1000.0)
    total_s = (perf() - t_all) / 1e9
    samples.sort()
    n = len(samples)
    print(f"frames: {n}  markets: {args.markets}  signals: {signals}")
    print(f"frame -> decision: median {statistics.median(samples):.2f} us  "
          f"p90 {samples[int(n * 0.90)]:.2f} us  p99 {samples[int(n * 0.99)]:.2f} us  "
          f"max {samples[-1]:.1f} us")
    print(f"throughput of the decision loop alone: {n / total_s:,.0f} frames/s")
    print(f"target: median <= 15 us -> {'OK' if statistics.median(samples) <= 15 else 'MISSED'}")


if __name__ == "__main__":
    main()
