"""Benchmark: sign one IOC order, engine signer vs the official SDK, on the same inputs.

Owns nothing in the engine; it is a script (``.venv/bin/python bench/bench_signing.py``) that
prints its figures. One timed operation is what the engine will do per order: build the order
action (:func:`ioc_order_action`, canonical strings validated), hash it, sign it and build the
post payload dict (:meth:`Signer.payload`). The SDK side does the same with
``order_request_to_order_wire`` + ``order_wires_to_order_action`` + ``sign_l1_action`` + the
payload dict. Inputs vary per iteration (nonce, side, cloid); cloids are precomputed (making
them is not signing). Both sides are checked to produce the same signature first.

The engine's order path (``OrderExecutor``) no longer builds the dicts: it assembles the
action's msgpack and JSON from fragments (:func:`ioc_order_fragment`,
:func:`ioc_action_fragments`) and signs with :meth:`Signer.payload_json`, whose text is
checked to decode to the very payload the SDK builds (same action, nonce and signature). Both
are timed: "engine signer" (dict path) and "engine order path" (fragments + payload JSON).

Reported: median and p99 µs per order (each iteration timed on its own with
``perf_counter_ns``; GC left on, as in the engine), the keccak backend, and PASS/MISS against
the target (median ≤ 40 µs) for each engine path.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eth_account  # noqa: E402
from hyperliquid.utils import signing as sdk  # noqa: E402
from hyperliquid.utils.types import Cloid  # noqa: E402

from engine.venues.hyperliquid import signing as S  # noqa: E402

TARGET_US = 40.0
# public test key of the SDK's own test-suite (not a secret)
KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
ASSET = 110026
NONCE0 = 1_769_339_470_576


def quantile(sorted_vals: list[float], q: float) -> float:
    return sorted_vals[min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))]


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", type=int, default=20_000, help="timed engine orders")
    ap.add_argument("--sdk-orders", type=int, default=2_000, help="timed SDK orders")
    args = ap.parse_args()

    signer = S.Signer.from_hex(KEY)
    wallet = eth_account.Account.from_key(KEY)
    cloids = [S.cloid_from_bytes(os.urandom(16)) for _ in range(1024)]
    sdk_cloids = [Cloid(c) for c in cloids]
    px, sz = ("105.5", "104.5"), "0.2"
    px_f, sz_f = (105.5, 104.5), 0.2

    def ours(i: int) -> dict[str, Any]:
        action = S.ioc_order_action(ASSET, i & 1 == 0, px[i & 1], sz, cloid=cloids[i & 1023])
        return signer.payload(action, NONCE0 + i)

    def fragments(i: int) -> str:
        frag = S.ioc_order_fragment(ASSET, i & 1 == 0, px[i & 1], sz, False, cloids[i & 1023])
        assert frag is not None
        return signer.payload_json(S.ioc_action_fragments([frag]), NONCE0 + i)

    def theirs(i: int) -> dict[str, Any]:
        wire = sdk.order_request_to_order_wire(
            {
                "coin": "xyz:SILVER",
                "is_buy": i & 1 == 0,
                "sz": sz_f,
                "limit_px": px_f[i & 1],
                "order_type": {"limit": {"tif": "Ioc"}},
                "reduce_only": False,
                "cloid": sdk_cloids[i & 1023],
            },
            ASSET,
        )
        action = sdk.order_wires_to_order_action([wire])
        sig = sdk.sign_l1_action(wallet, action, None, NONCE0 + i, None, True)
        return {"action": action, "nonce": NONCE0 + i, "signature": sig}

    for i in range(4):  # same inputs → same bytes and signature
        a, b = ours(i), theirs(i)
        assert a == b, (a, b)
        assert json.loads(fragments(i)) == b, (fragments(i), b)

    ours_us = run(ours, args.orders, warmup=2_000)
    frag_us = run(fragments, args.orders, warmup=2_000)
    theirs_us = run(theirs, args.sdk_orders, warmup=200)

    med, p99 = statistics.median(ours_us), quantile(ours_us, 0.99)
    fmed, fp99 = statistics.median(frag_us), quantile(frag_us, 0.99)
    smed, sp99 = statistics.median(theirs_us), quantile(theirs_us, 0.99)
    print(f"keccak backend: {S.KECCAK_BACKEND}; cpus: {os.cpu_count()}; load: {os.getloadavg()}")
    print(f"engine signer: {args.orders} orders  median {med:7.1f} µs  p99 {p99:7.1f} µs")
    print(f"engine order path (fragments): {args.orders} orders  median {fmed:7.1f} µs  "
          f"p99 {fp99:7.1f} µs")
    print(f"official SDK : {args.sdk_orders} orders  median {smed:7.1f} µs  p99 {sp99:7.1f} µs")
    print(f"speed-up (median): {smed / med:.1f}x")
    ok = True
    for label, value in (("signer", med), ("order path", fmed)):
        verdict = "PASS" if value <= TARGET_US else "MISS"
        ok = ok and verdict == "PASS"
        print(f"{verdict}: {label} median {value:.1f} µs vs target ≤ {TARGET_US:.0f} µs")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
