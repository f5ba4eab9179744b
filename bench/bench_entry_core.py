"""Benchmark: the entry path's CPU work in one process, warm and cold (no sockets, no Trio).

Owns nothing in the engine; a script (``.venv/bin/python bench/bench_entry_core.py``) that
prints ``INFO`` lines (no target: the targets are end to end, ``bench_trade_path.py``).

Why: on this VM the end-to-end figures move ±30 % between runs minutes apart (other tenants of
the host), which hides changes of 10–20 % in the engine. This bench times the same work the
engine does for an entry, in-process and interleaved, so an A/B of two trees
(``cd tree && python bench/bench_entry_core.py``) shows the engine's part alone:

* **core**: an ``activeAssetCtx`` frame through ``TradingCore.on_ctx`` (observe core: gates,
  detector, the signal; then the executor gates and the order) and ``take_orders`` — what the
  feed handler runs before the order goes to the executor; the observe core's share separately;
* **record**: building the signal record afterwards (``sig.fields``, off the order path);
* **sign**: the order's wire fragments, nonce and signed post text (``ioc_order_fragment`` →
  ``Signer.payload_json``), as ``OrderExecutor`` builds it.

Each is measured **warm** (back-to-back cycles) and **cold**: after writing ``--evict-mib``
(16) MiB, so the code and data come from memory, as they do in the engine after it idled a
few ms (the state ``bench_trade_path.py`` measures at its default 3 ms gap; 16 MiB gives cold
figures like the engine's in-process probes there, 4 MiB stays in the 32 MiB L3, 64 MiB also
thrashes the TLB and doubles them). 40 markets, the trade-path bench's detector settings; each
cycle also fills and flattens the position so the books stay small.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import structure_config  # noqa: E402
from engine.core.core import ObserveCore, Signal  # noqa: E402
from engine.core.orders import CloidFactory  # noqa: E402
from engine.core.trading import TradingCore  # noqa: E402
from engine.core.types import MarketSpec  # noqa: E402
from engine.venues.hyperliquid.signing import (  # noqa: E402
    Signer,
    ioc_action_fragments,
    ioc_order_fragment,
)

KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"  # SDK test key
N_MARKETS = 40
perf = time.perf_counter_ns


class Rig:
    """A ready trading core over 40 markets, driven like bench_trade_path's single cycles."""

    def __init__(self, evict_mib: int) -> None:
        cfg = structure_config(
            {
                "mode": "trade",
                "detector": {"session_aware": False, "min_quote_lag_ms": 0.0},
                "exits": {"quick_profit_min_hold_ms": 0.0},
                "trading": {"max_total_notional": 10_000.0, "max_concurrent_positions": 64,
                            "action_budget": 100_000},
            },
            "bench_entry_core",
        )
        specs = [MarketSpec(i, f"xyz:M{i:02d}", 110_000 + i, 2) for i in range(N_MARKETS)]
        self.obs = ObserveCore(specs, cfg.gates, cfg.detector, cfg.sizing,
                               cfg.followups.offsets_ms, mode="trade", boot_id="b3nch0")
        self.core = TradingCore(self.obs, cfg, cloids=CloidFactory(b"\x01" * 8))
        self.signals: list[Signal] = []
        self.core.on_signal_hook = self.signals.append
        self.signer = Signer.from_hex(KEY)
        self.t = 1_800_000_000_000.0
        self.server_time = 0
        self.moves = [0] * N_MARKETS
        self.oid = 1000
        self.junk = bytearray(evict_mib << 20)
        for i in range(N_MARKETS):
            self._bbo(i, 99.99, 100.01, 0.01)
            self.core.on_ctx(i, 100.0, 100.0, self._tick(0.01))
        self.core.set_ready("user_channels", True)
        self.core.on_reconcile({}, [], self.t)
        self.core.drain()

    def _tick(self, ms: float) -> float:
        self.t += ms
        return self.t

    def _bbo(self, i: int, bid: float, ask: float, gap: float = 3.0) -> None:
        self.server_time += 1
        self.core.on_bbo(i, self.server_time, bid, 100.0, ask, 100.0, self._tick(gap))

    def evict(self) -> None:
        self.junk[::64] = b"\x01" * (len(self.junk) // 64)

    def _fill(self, o: Any, px: str, tid: str) -> None:
        self.oid += 1
        c = self.core
        c.on_sent(o.cloid, self._tick(0.1))
        c.on_post_result(o.cloid, {"filled": {"totalSz": o.sz_wire, "avgPx": px,
                                              "oid": self.oid}}, self._tick(0.1))
        c.on_fill(tid, o.cloid, o.coin, o.is_buy, float(px), float(o.sz_wire), 0.004, self.t,
                  self._tick(0.1))
        c.drain()

    def cycle(self, i: int, cold: bool) -> tuple[int, int, int, int]:
        """One entry on market ``i``: (core ns, observe-core ns, record ns, sign ns)."""
        c = self.core
        self._bbo(i, 99.99, 100.01)
        c.on_ctx(i, 100.05, 100.0, self._tick(0.01))
        c.drain()
        self.moves[i] += 1
        trigger = (100.2, 100.21)[self.moves[i] & 1]  # the detector dedups per oracle value
        now = self._tick(3.0)
        obs_on_ctx = self.obs.on_ctx
        obs_ns = 0

        def timed_obs(*a: Any) -> Signal | None:
            nonlocal obs_ns
            t0 = perf()
            r = obs_on_ctx(*a)
            obs_ns = perf() - t0
            return r

        self.obs.on_ctx = timed_obs  # type: ignore[method-assign, assignment]
        if cold:
            self.evict()
        t0 = perf()
        c.on_ctx(i, trigger, 100.0, now)
        orders = c.take_orders()
        t1 = perf()
        del self.obs.on_ctx
        if len(orders) != 1:
            raise RuntimeError(f"expected one entry, got {orders} (skips {c.skips})")
        o = orders[0].order
        if cold:
            self.evict()
        t2 = perf()
        frag = ioc_order_fragment(o.asset_id, o.is_buy, o.px_wire, o.sz_wire, o.reduce_only,
                                  o.cloid)
        assert frag is not None
        nonce = int(self.t)
        text = self.signer.payload_json(ioc_action_fragments([frag]), nonce, None,
                                        o.expires_after_ms, True)
        t3 = perf()
        assert text.startswith('{"action":')
        sig = self.signals[-1]
        if cold:
            self.evict()
        t4 = perf()
        _ = sig.fields
        t5 = perf()
        self.signals.clear()
        self._fill(o, "100.01", f"e{self.oid}")
        self._bbo(i, 100.1, 100.12)  # quick profit: the flatten
        (fl,) = c.take_orders()
        self._fill(fl.order, "100.1", f"x{self.oid}")
        self._bbo(i, 99.99, 100.01)
        c.on_ctx(i, 100.0, 100.0, self._tick(0.01))
        c.drain()
        return t1 - t0, obs_ns, t5 - t4, t3 - t2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warm", type=int, default=4000, help="warm entries (after 400 unmeasured)")
    ap.add_argument("--cold", type=int, default=300, help="cold entries (caches evicted)")
    ap.add_argument("--evict-mib", type=int, default=16, help="MiB written to evict the caches")
    args = ap.parse_args()
    rig = Rig(args.evict_mib)
    for k in range(400):
        rig.cycle(k % N_MARKETS, False)
    rows: dict[str, list[tuple[int, int, int, int]]] = {"warm": [], "cold": []}
    # interleaved, so a slow phase of the machine hits both the same way
    for k in range(max(args.warm, args.cold)):
        if k < args.warm:
            rows["warm"].append(rig.cycle(k % N_MARKETS, False))
        if k < args.cold:
            rows["cold"].append(rig.cycle((k + 7) % N_MARKETS, True))
    for kind, vals in rows.items():
        core, obs, rec, sign = (statistics.median(col) / 1000.0 for col in zip(*vals, strict=True))
        print(f"INFO: {kind} entry, median µs: frame -> order taken {core:.1f} (observe core "
              f"{obs:.1f}); signed post text {sign:.1f}; signal record (after) {rec:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
