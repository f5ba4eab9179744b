"""Benchmark: leg-1 fill received → leg-2 order written (the engine side, no network).

A script (``.venv/bin/python bench/bench_bybit_hedge.py [-n N]``); not collected by pytest.
One timed operation: decode a recorded-shape Bybit ``execution`` message for a leg-1 (perp)
fill (:class:`BybitDecoder`), hand the :class:`OrderFill` to a :class:`TwoLegIntent` in HEDGING,
and turn the hedge intent it returns into the signed ``/v5/order/create`` request bytes (body +
``X-BAPI-*`` headers). Socket writes and the venue's latency are excluded: the issue's target
(≤ 1 ms median, ≤ 5 ms p99 on loopback) includes them, so this is the engine's share.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.core.neutral import InstrumentKind, PlaceOrder, Side  # noqa: E402
from engine.core.two_leg import LegRiskConfig, LegSpec, TwoLegIntent  # noqa: E402
from engine.venues.bybit.codec import BybitDecoder  # noqa: E402
from engine.venues.bybit.execution import order_params  # noqa: E402
from engine.venues.bybit.signing import BybitCredentials, json_body  # noqa: E402

TARGET_US = 1000.0


def quantile(v: list[float], q: float) -> float:
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20_000)
    args = ap.parse_args()
    creds = BybitCredentials("CFEJUGQEQPPHGOHGHM", "VDFZSSPUTKRJMXAVMJXBHEXIPZNZJIZUBVRQ")
    dec = BybitDecoder()
    cfg = LegRiskConfig(1e12, 1e9)
    times = []
    for i in range(args.n + 500):
        it = TwoLegIntent(f"b{i}", LegSpec("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP,
                                           Side.SELL, Decimal("0.001")),
                          LegSpec("bybit", "BTCUSDT", InstrumentKind.SPOT, Side.BUY,
                                  Decimal("0.000001")), Decimal("0.010"), cfg, 60_000.0)
        (leg1,) = it.open(1_000)
        msg = json.dumps({"topic": "execution", "id": f"x{i}", "creationTime": 1, "data": [{
            "category": "linear", "symbol": "BTCUSDT", "execFee": "0.33", "execId": f"e{i}",
            "execPrice": "60000.1", "execQty": "0.010", "execType": "Trade",
            "execValue": "600.001", "feeRate": "0.00055", "isMaker": False,
            "orderId": f"o{i}", "orderLinkId": leg1.client_id, "orderType": "Market",
            "side": "Sell", "execTime": "1000", "leavesQty": "0"}]}).encode()
        t0 = time.perf_counter_ns()
        (fill,) = dec.decode(msg)
        (hedge,) = it.on_fill(fill, 1_001)
        assert isinstance(hedge, PlaceOrder)
        body = json_body(order_params(hedge))
        creds.rest_headers(1_700_000_000_000 + i, 5000, body)
        t1 = time.perf_counter_ns()
        if i >= 500:
            times.append((t1 - t0) / 1000.0)
    times.sort()
    med = statistics.median(times)
    print(f"fill decoded -> hedge order signed  median {med:.1f} us  p99 "
          f"{quantile(times, 0.99):.1f} us  target: median <= {TARGET_US:g} us -> "
          f"{'PASS' if med <= TARGET_US else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
