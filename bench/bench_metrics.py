"""Benchmark: the cost of recording a metric on the hot path, and of one scrape.

Owns nothing in the engine; it is a script (``.venv/bin/python bench/bench_metrics.py``) that
prints ns per ``Counter.inc``, ``Gauge.set``, ``Histogram.observe``, labelled child lookup
(``family.labels(...)`` of an existing child) and the time of ``Registry.render()`` for an
:class:`engine.ops.metrics.EngineMetrics` populated like a 40-market engine (2 streams and 10
gates per market, positions, every latency histogram filled).

Targets: a hot-path observation (inc, observe, child lookup + inc) < 1000 ns (median of
``--repeat`` rounds); one render of the 40-market registry < 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.ops.metrics import EngineMetrics  # noqa: E402

OBSERVE_TARGET_NS = 1000.0
RENDER_TARGET_MS = 50.0
GATES = ("halt", "no_data", "bbo_age", "ctx_age", "time_regression", "empty_side", "crossed",
         "missing_mark", "mark_mid_divergence", "spread_shock")


def per_call_ns(fn: Callable[[], object], n: int, repeat: int) -> float:
    """Median over ``repeat`` rounds of the time per call of ``fn``, a lambda wrapping the
    statement measured, minus an empty lambda's call (so: the cost of the statement itself)."""
    def empty() -> None:
        return None

    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        t1 = time.perf_counter_ns()
        for _ in range(n):
            empty()
        t2 = time.perf_counter_ns()
        rounds.append(max(0.0, ((t1 - t0) - (t2 - t1)) / n))
    return statistics.median(rounds)


def forty_markets() -> EngineMetrics:
    m = EngineMetrics(version="0.1.0", mode="trade")
    for i in range(40):
        coin = f"xyz:M{i:02d}"
        for stream in ("bbo", "ctx"):
            m.stream_age.labels(coin, stream).set(0.1 * i)
        for gate in GATES:
            m.gate_blocked.labels(coin, gate).set(i % 2)
        for side in ("buy", "sell"):
            m.signals.labels(coin, side).inc(i)
        m.set_position(coin, i * 0.5, i * 50.0)
    for channel in ("bbo", "activeAssetCtx", "orderUpdates", "userFills", "post", "pong"):
        m.frames.labels(channel).inc(1000)
    m.set_orders({s: 3 for s in ("new", "sent", "resting", "partial", "unknown", "filled",
                                 "canceled", "rejected", "expired")})
    for kind in ("entry", "flatten", "cancel", "query"):
        for result in ("sent", "filled", "rejected", "error"):
            m.orders_total.labels(kind, result).inc()
    for b in ("daily_loss", "drawdown", "consecutive_losses"):
        m.breaker_tripped.labels(b).set(0)
    for h in (m.frame_to_decision, m.decision_to_order_sent, m.order_sent_to_ack,
              m.exit_trigger_to_flatten_sent, m.event_loop_lag):
        for k in range(1000):
            h.observe(1e-5 * (1 + k % 400))
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200_000, help="calls per round (default 200000)")
    ap.add_argument("--repeat", type=int, default=7, help="rounds (default 7)")
    args = ap.parse_args()

    m = forty_markets()
    fills = m.fills
    ready = m.ready
    hist = m.frame_to_decision
    frames = m.frames
    ages = m.stream_age
    frames.labels("bbo")

    results = {
        "Counter.inc": per_call_ns(lambda: fills.inc(), args.n, args.repeat),
        "Gauge.set": per_call_ns(lambda: ready.set(1), args.n, args.repeat),
        "Histogram.observe": per_call_ns(lambda: hist.observe(1.23e-5), args.n, args.repeat),
        "labels(1) lookup": per_call_ns(lambda: frames.labels("bbo"), args.n, args.repeat),
        "labels(1).inc": per_call_ns(lambda: frames.labels("bbo").inc(), args.n, args.repeat),
        "labels(2) lookup": per_call_ns(lambda: ages.labels("xyz:M17", "bbo"), args.n,
                                        args.repeat),
    }
    for name, ns in results.items():
        print(f"{name:20s}: {ns:7.1f} ns/call")

    renders = []
    size = 0
    for _ in range(max(5, args.repeat)):
        t0 = time.perf_counter()
        size = len(m.registry.render())
        renders.append((time.perf_counter() - t0) * 1000.0)
    render_ms = statistics.median(renders)
    lines = m.registry.render().count(b"\n")
    print(f"render, 40 markets  : {render_ms:7.3f} ms median ({size:,} bytes, {lines:,} lines)")

    worst = max(results["Counter.inc"], results["Histogram.observe"], results["labels(1).inc"])
    ok = worst < OBSERVE_TARGET_NS
    print(f"{'PASS' if ok else 'MISS'}: hot-path metric observation < {OBSERVE_TARGET_NS:.0f} ns "
          f"(worst of inc/observe/labels().inc: {worst:.0f} ns)")
    ok_render = render_ms < RENDER_TARGET_MS
    print(f"{'PASS' if ok_render else 'MISS'}: render of a 40-market registry < "
          f"{RENDER_TARGET_MS:.0f} ms ({render_ms:.2f} ms)")
    return 0 if ok and ok_render else 1


if __name__ == "__main__":
    sys.exit(main())
