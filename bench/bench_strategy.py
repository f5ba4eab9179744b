"""Strategy interface cost: the HIP-3 detector as a bare ObserveCore vs through DislocationStrategy.

The same decoded frames (the simulator's market model, 40 xyz markets, as in
bench_decision.py) go into twin cores: (a) a plain ``ObserveCore``'s ``on_bbo`` / ``on_ctx``
by index; (d) the strategy's indexed face, ``DislocationStrategy.on_book_top`` / ``on_oracle``
— what every Hyperliquid shell calls per frame; (b) ``DislocationStrategy.on_event`` with the
neutral BookTop / OracleUpdate built for each frame (what a venue-neutral object feed would
hand over); (c) ``on_event`` alone, events built beforehand. Timers run after each frame in
all of them. Median and p99 per frame (µs) over interleaved rounds, and the ratios to (a);
every path gives the same number of signals.
Targets: the shells' face, (d), and the object interface's own cost, (c), within 10 % of (a).

Run: python bench/bench_strategy.py [--frames 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_decision import wire_stream  # noqa: E402

from engine.config import load_config  # noqa: E402
from engine.core.core import ObserveCore  # noqa: E402
from engine.core.neutral import BookTop, InstrumentKind, OracleUpdate  # noqa: E402
from engine.core.types import MarketSpec  # noqa: E402
from engine.sim.markets import XYZ_MARKETS  # noqa: E402
from engine.strategies.dislocation import DislocationStrategy  # noqa: E402
from engine.venues.hyperliquid.wire import BboEvent, CtxEvent, WireDecoder  # noqa: E402

BASE_MS = 1_795_000_000_000.0
PERP = InstrumentKind.LINEAR_PERP


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--markets", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    stream = wire_stream(args.frames, args.markets, 1)
    decode = WireDecoder().decode
    decoded = [(vms, decode(text)) for vms, text in stream]
    frames = [(vms, ev) for vms, ev in decoded if type(ev) in (BboEvent, CtxEvent)]
    cfg = load_config(Path(__file__).resolve().parent.parent / "config" / "observe.toml", env={})
    specs = [MarketSpec(i, c.name, 110000 + i, c.sz_decimals)
             for i, c in enumerate(XYZ_MARKETS[: args.markets])]

    def new_core() -> ObserveCore:
        return ObserveCore(specs, cfg.gates, cfg.detector, cfg.sizing, cfg.followups.offsets_ms,
                           boot_id="b")

    def neutral(ev: object) -> object:
        if type(ev) is BboEvent:
            return BookTop("hyperliquid", ev.coin, PERP, ev.bid_px, ev.bid_sz or 0.0, ev.ask_px,
                           ev.ask_sz or 0.0, ev.time_ms)
        assert type(ev) is CtxEvent
        return OracleUpdate("hyperliquid", ev.coin, ev.oracle_px, ev.mark_px, 0)

    prebuilt = [(vms, neutral(ev)) for vms, ev in frames]

    def run_by_index(core: ObserveCore, on_bbo: Callable[..., object],
                     on_ctx: Callable[..., object]) -> tuple[list[float], int]:
        """Every frame by market index into ``on_bbo`` / ``on_ctx`` of ``core``, timers after."""
        idx = {m.coin: m.index for m in core.markets}
        on_timer = core.on_timer
        out: list[float] = []
        perf = time.perf_counter_ns
        for vms, ev in frames:
            now = BASE_MS + vms
            t0 = perf()
            if type(ev) is BboEvent:
                on_bbo(idx[ev.coin], ev.time_ms, ev.bid_px, ev.bid_sz, ev.ask_px, ev.ask_sz, now)
            else:
                on_ctx(idx[ev.coin], ev.oracle_px, ev.mark_px, now)  # type: ignore[union-attr]
            on_timer(now)
            out.append((perf() - t0) / 1000.0)
        return out, core.signals_total

    def run_direct() -> tuple[list[float], int]:
        core = new_core()
        return run_by_index(core, core.on_bbo, core.on_ctx)

    def new_strategy() -> DislocationStrategy:
        return DislocationStrategy.from_config(specs, cfg, boot_id="b")

    def run_indexed() -> tuple[list[float], int]:
        strat = new_strategy()
        return run_by_index(strat, strat.on_book_top, strat.on_oracle)

    def run_adapter(build: bool) -> tuple[list[float], int]:
        strat = new_strategy()
        on_event, on_timer = strat.on_event, strat.on_timer
        out: list[float] = []
        perf = time.perf_counter_ns
        src = frames if build else prebuilt
        for vms, ev in src:
            now = BASE_MS + vms
            t0 = perf()
            on_event(neutral(ev) if build else ev, now)
            on_timer(now)
            out.append((perf() - t0) / 1000.0)
        return out, strat.signals_total

    runs: dict[str, Callable[[], tuple[list[float], int]]] = {
        "direct (on_bbo/on_ctx)": run_direct,
        "strategy, indexed (the shells)": run_indexed,
        "strategy, event built per frame": lambda: run_adapter(True),
        "strategy, event prebuilt": lambda: run_adapter(False),
    }
    medians: dict[str, list[float]] = {k: [] for k in runs}
    p99s: dict[str, list[float]] = {k: [] for k in runs}
    signals: dict[str, int] = {}
    gc.collect()
    gc.freeze()
    for _ in range(args.rounds):
        for name, fn in runs.items():
            s, n_sig = fn()
            s.sort()
            medians[name].append(statistics.median(s))
            p99s[name].append(s[int(len(s) * 0.99)])
            signals[name] = n_sig
    print(f"frames: {len(frames)}  markets: {args.markets}  rounds: {args.rounds}  "
          f"signals: {sorted(set(signals.values()))}")
    base = statistics.median(medians["direct (on_bbo/on_ctx)"])
    for name in runs:
        med = statistics.median(medians[name])
        print(f"{name:34s} median {med:6.2f} us  p99 {statistics.median(p99s[name]):6.2f} us  "
              f"ratio {med / base:5.3f}")
    ratio = statistics.median(medians["strategy, indexed (the shells)"]) / base
    verdict = "PASS" if ratio <= 1.10 else "MISS"
    print(f"{verdict}: strategy's indexed face (what the shells call) <= 1.10x a bare core "
          f"frame: {ratio:.3f}x")
    ratio = statistics.median(medians["strategy, event prebuilt"]) / base
    verdict = "PASS" if ratio <= 1.10 else "MISS"
    print(f"{verdict}: strategy adapter <= 1.10x a direct frame (events prebuilt): {ratio:.3f}x")


if __name__ == "__main__":
    main()
