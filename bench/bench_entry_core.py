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

A third case, **cold after shadow warm**: the caches evicted as in the cold case, then one
``CoreWarmer.warm()`` (``engine/venues/hyperliquid/warm.py``: a synthetic entry cycle on a
shadow core built
from the same configuration and markets), then the real core on the real frame — the
spin-then-frame pattern of ``[venue] busy_poll_us`` (in the engine the eviction comes from idle
time, and the last warm-up ran 0–1 ms before the frame; here right before it). Its signing and
record columns stay cold (the core warmer does not sign; ``OrderExecutor.warm`` does). The
cost of ``warm()`` itself is reported back to back (as while spinning), after the eviction,
and with the default detector settings (2 oracle moves, 30 ms quote lag: two more frames and
the quote-lag timers).
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

from engine.config import structure_config  # noqa: E402
from engine.core.core import Signal  # noqa: E402
from engine.core.orders import CloidFactory  # noqa: E402
from engine.core.types import MarketSpec  # noqa: E402
from engine.strategies.dislocation import DislocationStrategy
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore  # noqa: E402
from engine.venues.hyperliquid.signing import (  # noqa: E402
    Signer,
    ioc_action_fragments,
    ioc_order_fragment,
)
from engine.venues.hyperliquid.warm import CoreWarmer  # noqa: E402

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
        self.cfg = cfg
        self.specs = specs
        self.strategy = DislocationStrategy(specs, cfg.gates, cfg.detector, cfg.sizing,
                               cfg.followups.offsets_ms, mode="trade", boot_id="b3nch0")
        self.core = TradingCore(self.strategy, cfg, cloids=CloidFactory(b"\x01" * 8))
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
        self.core.on_account_values(1_000_000.0, 0.0, self.t)  # trade mode: equity known
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

    def cycle(self, i: int, cold: bool, pre: Callable[[], None] | None = None
              ) -> tuple[int, int, int, int, int]:
        """One entry on market ``i``: (core ns, observe-core ns, record ns, sign ns, ns of
        ``pre``, which runs right before the frame, after the eviction)."""
        c = self.core
        self._bbo(i, 99.99, 100.01)
        c.on_ctx(i, 100.05, 100.0, self._tick(0.01))
        c.drain()
        self.moves[i] += 1
        trigger = (100.2, 100.21)[self.moves[i] & 1]  # the detector dedups per oracle value
        now = self._tick(3.0)
        # what TradingCore.on_ctx calls: the strategy's indexed face (ObserveCore.on_ctx)
        obs_on_ctx = self.strategy.on_oracle
        obs_ns = 0

        def timed_obs(*a: Any) -> Signal | None:
            nonlocal obs_ns
            t0 = perf()
            r = obs_on_ctx(*a)
            obs_ns = perf() - t0
            return r

        self.strategy.on_oracle = timed_obs  # type: ignore[method-assign, assignment]
        if cold:
            self.evict()
        pre_ns = 0
        if pre is not None:
            tp = perf()
            pre()
            pre_ns = perf() - tp
        t0 = perf()
        c.on_ctx(i, trigger, 100.0, now)
        orders = c.take_orders()
        t1 = perf()
        del self.strategy.on_oracle
        if obs_ns == 0:  # a silent 0.0 once hid that the probe no longer sat on the path
            raise RuntimeError("the observe core was not timed: TradingCore.on_ctx did not call "
                               "strategy.on_oracle")
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
        return t1 - t0, obs_ns, t5 - t4, t3 - t2, pre_ns


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warm", type=int, default=4000, help="warm entries (after 400 unmeasured)")
    ap.add_argument("--cold", type=int, default=300, help="cold entries (caches evicted)")
    ap.add_argument("--evict-mib", type=int, default=16, help="MiB written to evict the caches")
    ap.add_argument("--shadow", type=int, default=None,
                    help="cold-after-shadow-warm entries (default: as many as --cold)")
    args = ap.parse_args()
    n_shadow = args.cold if args.shadow is None else args.shadow
    rig = Rig(args.evict_mib)
    warmer = CoreWarmer(rig.cfg, rig.specs)  # its own cores: the rig's stay untouched
    if not warmer.enabled:
        print(f"ERROR: the core warmer is disabled: {warmer.stats().reason}")
        return 1
    for k in range(400):
        rig.cycle(k % N_MARKETS, False)
        warmer.warm()
    # warm() back to back, as while spinning (one call per ~1 ms of spin in the engine), with
    # this bench's detector settings and with the defaults (2 moves, 30 ms quote lag)
    default = CoreWarmer(structure_config({"mode": "trade"}, "defaults"), rig.specs)
    spin: dict[str, list[int]] = {"bench": [], "default": []}
    for _ in range(30):  # blocks of 100 calls of one warmer, the two interleaved
        for name, w in (("bench", warmer), ("default", default)):
            for _ in range(100):
                t0 = perf()
                w.warm()
                spin[name].append(perf() - t0)
    rows: dict[str, list[tuple[int, int, int, int, int]]] = {"warm": [], "cold": [],
                                                              "cold after shadow warm": []}
    # interleaved, so a slow phase of the machine hits every case the same way
    for k in range(max(args.warm, args.cold, n_shadow)):
        if k < args.warm:
            rows["warm"].append(rig.cycle(k % N_MARKETS, False))
        if k < args.cold:
            rows["cold"].append(rig.cycle((k + 7) % N_MARKETS, True))
        if k < n_shadow:
            rows["cold after shadow warm"].append(
                rig.cycle((k + 19) % N_MARKETS, True, warmer.warm))
    for kind, vals in rows.items():
        core, obs, rec, sign, pre = (statistics.median(col) / 1000.0
                                     for col in zip(*vals, strict=True))
        if kind == "cold after shadow warm":
            print(f"INFO: {kind} entry, median µs: frame -> order taken {core:.1f} (observe "
                  f"core {obs:.1f}); warm() right before the frame, after the eviction "
                  f"{pre:.1f}; signed post text (cold, not warmed by it) {sign:.1f}")
        else:
            print(f"INFO: {kind} entry, median µs: frame -> order taken {core:.1f} (observe "
                  f"core {obs:.1f}); signed post text {sign:.1f}; signal record (after) "
                  f"{rec:.1f}")
    for name, vals in spin.items():
        vals.sort()
        print(f"INFO: CoreWarmer.warm() back to back ({name} detector settings), µs: median "
              f"{statistics.median(vals) / 1000.0:.1f}, p90 {vals[len(vals) * 9 // 10] / 1000.0:.1f}")
    for name, w in (("bench", warmer), ("default", default)):
        s = w.stats()
        if s.disabled or s.rebuilds:
            print(f"ERROR: core warmer ({name}): {s}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
