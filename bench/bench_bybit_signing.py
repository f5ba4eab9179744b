"""Benchmark: sign one Bybit v5 order (REST ``/v5/order/create``), target median ≤ 10 µs.

A script (``.venv/bin/python bench/bench_bybit_signing.py [-n N]``) that prints its figures;
not collected by pytest. One timed operation is what the adapter does per order: build the
create body from a neutral :class:`PlaceOrder` (:func:`order_params` + :func:`json_body`) and
compute the ``X-BAPI-*`` headers (:meth:`BybitCredentials.rest_headers`, HMAC-SHA256 over
timestamp + key + recv_window + body). Also timed alone: the HMAC of that body
(:meth:`BybitCredentials.sign_rest`), and pybit's ``generate_signature`` on the same string when
pybit is installed (the test extra), after checking both give the same signature.

Reported: median and p99 µs (each iteration timed with ``perf_counter_ns``, GC on), then one
verdict line that bench/run_all.py reads, ``PASS|MISS: HMAC signing of one order median <= 10 us
(...)``, judged on the whole per-order work (body + signed headers, which contains the HMAC).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.core.neutral import InstrumentKind, PlaceOrder, Side  # noqa: E402
from engine.venues.bybit.execution import order_params  # noqa: E402
from engine.venues.bybit.signing import BybitCredentials, json_body  # noqa: E402

TARGET_US = 10.0
KEY, SECRET = "CFEJUGQEQPPHGOHGHM", "VDFZSSPUTKRJMXAVMJXBHEXIPZNZJIZUBVRQ"  # pybit's dummy pair
TS0 = 1_765_000_000_000


def quantile(vals: list[float], q: float) -> float:
    return vals[min(len(vals) - 1, max(0, math.ceil(q * len(vals)) - 1))]


def run(fn: Callable[[int], Any], n: int, warmup: int) -> list[float]:
    for i in range(warmup):
        fn(i)
    out = []
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn(i)
        out.append((clock() - t0) / 1000.0)
    out.sort()
    return out


def report(name: str, times: list[float]) -> tuple[float, float]:
    med, p99 = statistics.median(times), quantile(times, 0.99)
    print(f"{name:<34} median {med:.2f} us  p99 {p99:.2f} us")
    return med, p99


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50_000)
    ap.add_argument("--warmup", type=int, default=2_000)
    args = ap.parse_args()
    creds = BybitCredentials(KEY, SECRET)
    intents = [PlaceOrder("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP,
                          Side.BUY if i % 2 else Side.SELL, Decimal("0.001") * (1 + i % 7),
                          f"bench-{i}", price=Decimal("60000.1") + i % 13)
               for i in range(1024)]
    bodies = [json_body(order_params(x)) for x in intents]

    def sign_only(i: int) -> str:
        return creds.sign_rest(TS0 + i, 5000, bodies[i & 1023])

    def order(i: int) -> dict[str, str]:
        return creds.rest_headers(TS0 + i, 5000, json_body(order_params(intents[i & 1023])))

    hmac_med, _ = report("HMAC of one order body", run(sign_only, args.n, args.warmup))
    med, p99 = report("order body + signed headers", run(order, args.n, args.warmup))
    try:
        from pybit._http_manager import generate_signature
    except ImportError:
        print("pybit not installed: no reference timing")
    else:
        s = f"{TS0}{KEY}5000{bodies[0].decode()}"
        assert generate_signature(False, SECRET, s) == creds.sign_rest(TS0, 5000, bodies[0])
        texts = [f"{TS0 + i}{KEY}5000{bodies[i & 1023].decode()}" for i in range(1024)]
        report("pybit generate_signature",
               run(lambda i: generate_signature(False, SECRET, texts[i & 1023]), args.n,
                   args.warmup))
    ok = med <= TARGET_US
    print(f"{'PASS' if ok else 'MISS'}: HMAC signing of one order median <= {TARGET_US:g} us "
          f"(body + signed headers median {med:.2f} us, p99 {p99:.2f} us; "
          f"HMAC alone {hmac_med:.2f} us)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
