"""Benchmark: the cost of recording a metric on the hot path, and of one scrape.

Owns nothing in the engine; it is a script (``.venv/bin/python bench/bench_metrics.py``) that
prints ns per ``Counter.inc``, ``Gauge.set``, ``Histogram.observe``, labelled child lookup
(``family.labels(...)`` of an existing child) and the time of ``Registry.render()`` for an
:class:`engine.ops.metrics.EngineMetrics` populated like a 40-market engine (2 streams and 10
gates per market, positions, every latency histogram filled).

Targets: a hot-path observation (inc, observe, child lookup + inc) < 1000 ns (median of
``--repeat`` rounds); one render of the 40-market registry < 50 ms.

Side by side, the same operations on ``prometheus_client`` (the standard library: a
``CollectorRegistry`` with the same metrics, buckets and 40-market children, rendered with
``generate_latest``), and the ratio prometheus_client / hand-written per row. Context for the
ratio: every hot-path observation (signal counter, decision/send/ack histograms, order
counters) runs after the order's frame was written (``engine/trading_app.py``
``flush_signals``, ``engine/ops/service.py`` ``on_order_record``), a few per order; frame
counts, stream ages, positions and the rest are read at scrape time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.ops.metrics import LATENCY_BUCKETS, EngineMetrics  # noqa: E402

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


def prometheus_forty_markets() -> tuple[Any, dict[str, Any]]:
    """The same metric set, children and observations on ``prometheus_client``."""
    import prometheus_client as pc

    r = pc.CollectorRegistry()
    frames = pc.Counter("engine_frames", "frames", ["channel"], registry=r)
    fills = pc.Counter("engine_fills", "fills", registry=r)
    ready = pc.Gauge("engine_ready", "ready", registry=r)
    ages = pc.Gauge("engine_stream_age_seconds", "age", ["market", "stream"], registry=r)
    gates = pc.Gauge("engine_gate_blocked", "gate", ["market", "gate"], registry=r)
    signals = pc.Counter("engine_signals", "signals", ["market", "side"], registry=r)
    size = pc.Gauge("engine_position_size", "size", ["market"], registry=r)
    notional = pc.Gauge("engine_position_notional_usd", "notional", ["market"], registry=r)
    orders = pc.Gauge("engine_orders_by_state", "orders", ["state"], registry=r)
    orders_total = pc.Counter("engine_orders", "orders", ["kind", "result"], registry=r)
    breakers = pc.Gauge("engine_breaker_tripped", "breaker", ["breaker"], registry=r)
    hists = [pc.Histogram(f"engine_h{i}_seconds", "latency", buckets=LATENCY_BUCKETS,
                          registry=r) for i in range(5)]
    for i in range(40):
        coin = f"xyz:M{i:02d}"
        for stream in ("bbo", "ctx"):
            ages.labels(coin, stream).set(0.1 * i)
        for gate in GATES:
            gates.labels(coin, gate).set(i % 2)
        for side in ("buy", "sell"):
            signals.labels(coin, side).inc(i)
        size.labels(coin).set(i * 0.5)
        notional.labels(coin).set(i * 50.0)
    for channel in ("bbo", "activeAssetCtx", "orderUpdates", "userFills", "post", "pong"):
        frames.labels(channel).inc(1000)
    for st in ("new", "sent", "resting", "partial", "unknown", "filled", "canceled", "rejected",
               "expired"):
        orders.labels(st).set(3)
    for kind in ("entry", "flatten", "cancel", "query"):
        for result in ("sent", "filled", "rejected", "error"):
            orders_total.labels(kind, result).inc()
    for b in ("daily_loss", "drawdown", "consecutive_losses"):
        breakers.labels(b).set(0)
    for h in hists:
        for k in range(1000):
            h.observe(1e-5 * (1 + k % 400))
    return r, {"frames": frames, "fills": fills, "ready": ready, "hist": hists[0],
               "ages": ages, "render": lambda: pc.generate_latest(r)}


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
    _, pm = prometheus_forty_markets()
    pf, pr, ph, pfr, pa = pm["fills"], pm["ready"], pm["hist"], pm["frames"], pm["ages"]
    pfr.labels("bbo")
    prom = {
        "Counter.inc": per_call_ns(lambda: pf.inc(), args.n, args.repeat),
        "Gauge.set": per_call_ns(lambda: pr.set(1), args.n, args.repeat),
        "Histogram.observe": per_call_ns(lambda: ph.observe(1.23e-5), args.n, args.repeat),
        "labels(1) lookup": per_call_ns(lambda: pfr.labels("bbo"), args.n, args.repeat),
        "labels(1).inc": per_call_ns(lambda: pfr.labels("bbo").inc(), args.n, args.repeat),
        "labels(2) lookup": per_call_ns(lambda: pa.labels("xyz:M17", "bbo"), args.n,
                                        args.repeat),
    }
    print(f"{'':20s}  {'hand-written':>12s}  {'prometheus_client':>17s}  ratio")
    for name, ns in results.items():
        print(f"{name:20s}: {ns:9.1f} ns  {prom[name]:14.1f} ns  {prom[name] / max(ns, 1e-9):5.1f}x")

    renders = []
    size = 0
    for _ in range(max(5, args.repeat)):
        t0 = time.perf_counter()
        size = len(m.registry.render())
        renders.append((time.perf_counter() - t0) * 1000.0)
    render_ms = statistics.median(renders)
    lines = m.registry.render().count(b"\n")
    print(f"render, 40 markets  : {render_ms:7.3f} ms median ({size:,} bytes, {lines:,} lines)")
    prenders = []
    for _ in range(max(5, args.repeat)):
        t0 = time.perf_counter()
        psize = len(pm["render"]())
        prenders.append((time.perf_counter() - t0) * 1000.0)
    prender_ms = statistics.median(prenders)
    print(f"prometheus_client   : {prender_ms:7.3f} ms median ({psize:,} bytes)  "
          f"{prender_ms / max(render_ms, 1e-9):5.1f}x")
    pworst = max(prom["Counter.inc"], prom["Histogram.observe"], prom["labels(1).inc"])
    print(f"prometheus_client worst of inc/observe/labels().inc: {pworst:.0f} ns "
          f"(hand-written {max(results['Counter.inc'], results['Histogram.observe'], results['labels(1).inc']):.0f} ns)")

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
