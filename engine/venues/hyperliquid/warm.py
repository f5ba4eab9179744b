"""Shadow-core warm-up: keeps the trading core's code warm while the feed busy-polls.

Owns :class:`CoreWarmer`. It builds its own strategy
(:class:`~engine.strategies.dislocation.DislocationStrategy`) and
:class:`~engine.core.trading.TradingCore` (the live engine's ``EngineConfig`` and market list,
its own :class:`~engine.core.orders.CloidFactory`, boot id and clock; no mutable object is
shared with the live cores) and, on every :meth:`CoreWarmer.warm` call, runs one synthetic entry
cycle on that *shadow* through the same methods the feed handler calls:

1. one market of the shadow (rotating over the usable markets) gets ``min_consecutive_moves
   − 1`` oracle moves with the book following (bbo, then ctx; never an edge; with no pre-move a
   ctx and a bbo re-centre the book instead), then an ``activeAssetCtx`` jump past the far side
   of the book (and, when ``min_quote_lag_ms`` > 0, the same ctx again once the quote-lag
   window opened, after a fresh bbo when ``max_bbo_age_ms`` requires one): a signal;
2. ``TradingCore.on_ctx`` runs the executor gates, sizing and rounding, the ``Order`` goes into
   the ``OrderBook``; :meth:`TradingCore.take_orders` takes it;
3. ``on_sent`` and an IOC no-match post result (``EXPIRED``, a benign outcome) resolve it
   without a fill: the market is FLAT again;
4. the quote-lag timers, every intent (records, alerts), the gate transitions and the terminal
   order are drained and dropped: nothing reaches a writer, a logger or a metric.

Per market the direction alternates (buy, sell, buy, sell) over a 4-phase price ladder that
returns to its start, and consecutive triggers of one side differ, so the detector's
per-oracle-value dedup passes and prices stay bounded; the shadow's clock advances per cycle
far enough for the action budget. Every price is on the venue's grid for the market's
``szDecimals``, around ``2 × 10^szDecimals`` (one lot ≈ $2), and the jump is sized from the
configuration (fees, overrides, session and short multipliers, adaptive threshold, baseline
edge) so the real detector and gates produce a signal.

Construction verifies every ladder (one market per ``szDecimals``, its 4 phases). A cycle that
produces no order or leaves the market not FLAT (hard stop latched, kill, a gate refusal,
anything) rebuilds the shadow (counted in ``rebuilds``; ~1 ms) and verifies it on that market.
A configuration the synthetic cycle cannot trade with, a rebuilt shadow that fails its
verification, a second rebuild within ``REBUILD_MIN_CYCLES`` cycles, or any exception disables
the warmer with one WARNING line (the reason names the executor skips, detector rejects and
blocked gates), after which :meth:`CoreWarmer.warm` is a no-op. It never raises.

What the shadow does share with the live engine is what the warm-up is for: the code objects,
the classes, the frozen configuration, and the interpreter's caches — including
``engine.venues.hyperliquid.rounding``'s memo of valid prices (a pure function's cache; the
shadow adds a few dozen keys to it).
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Sequence
from typing import Final

import attrs

from engine.config import EngineConfig
from engine.core.orders import ENTRY, CloidFactory
from engine.core.types import MarketSpec
from engine.strategies.dislocation import DislocationStrategy
from engine.venues.hyperliquid.order_events import IOC_NO_MATCH_PREFIX
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore
from engine.venues.hyperliquid.rounding import PERP_MAX_DECIMALS
from fsm import order as ofsm
from fsm import position as pfsm

log = logging.getLogger("engine.warm")

SHADOW_T0_MS: Final = 1_800_000_000_000.0  # the shadow clock's start (epoch ms, arbitrary)
SHADOW_BOOT: Final = b"shad0wWU"  # the shadow's cloid prefix (8 bytes; never sent anywhere)
SHADOW_BOOT_ID: Final = "shadow"
# the post result of an IOC that found nothing to match: EXPIRED, benign (no reject burst)
NO_MATCH_STATUS: Final = {"error": IOC_NO_MATCH_PREFIX + " against any resting orders."}
FRAME_GAP_MS: Final = 0.05  # synthetic time between two frames of one cycle
DEDUP_STEP: Final = 2  # price units between consecutive triggers of one side (dedup)
MAX_SZ_DECIMALS: Final = 5  # markets with more are not used (their grid has no room)
REBUILD_MIN_CYCLES: Final = 1000  # a rebuild sooner than this after the previous one disables

# One step of a cycle: (ms after the cycle start, is_bbo, bid or oracle, ask or mark)
Step = tuple[float, bool, float, float]


@attrs.frozen(slots=True)
class WarmerStats:
    """What the warmer did so far (for the summary / metrics)."""

    cycles: int  # synthetic entry cycles that produced and resolved their order
    rebuilds: int  # shadows rebuilt because a cycle produced no order / did not end FLAT
    disabled: bool
    reason: str | None  # why it is disabled (None while enabled)


@attrs.frozen(slots=True)
class _Geometry:
    """The price ladder in units of 1 bp of the market's base price."""

    moves: int  # oracle moves per cycle in the signal's direction (the jump is the last)
    move: int  # one pre-move (≥ oracle_min_move_bps, ≤ the half spread)
    half_spread: int
    jump: int  # the oracle's jump past the far side of the book (raw edge ≥ the threshold)
    lag_ms: float  # min_quote_lag_ms: the trigger ctx comes this long after the jump
    refresh_bbo: bool  # a bbo right before the trigger (max_bbo_age_ms is short next to lag)
    step_ms: float  # shadow clock advance per cycle


def _geometry(cfg: EngineConfig) -> _Geometry:
    """Size the ladder from the configuration so the real gates and detector pass."""
    det = cfg.detector
    moves = max(1, det.min_consecutive_moves)
    if moves > 16:
        raise ValueError(f"min_consecutive_moves {moves} exceeds what the oracle tracker keeps")
    fee = det.taker_fee_bps + det.slippage_bps + det.min_edge_bps
    sess = sess_lo = 1.0
    if det.session_aware:
        sess = max([1.0, *(w.threshold_mult for w in det.sessions)])
        sess_lo = min([1.0, *(w.threshold_mult for w in det.sessions)])
    short = det.short_threshold_mult if det.short_side_throttle else 1.0
    move = max(1, math.ceil(det.oracle_min_move_bps * 1.1) + 1)
    half = move + 1
    lag = det.min_quote_lag_ms
    if det.max_quote_lag_ms and lag > det.max_quote_lag_ms:
        raise ValueError("min_quote_lag_ms > max_quote_lag_ms: no signal can fire")
    needs_moves = det.oracle_direction_filter or det.min_consecutive_moves or (
        det.min_oracle_change_bps > 0)
    if needs_moves and lag + moves * 0.1 >= det.oracle_window_ms:
        raise ValueError(f"oracle_window_ms {det.oracle_window_ms:g} ends before the quote-lag "
                         f"window ({lag:g} ms) opens: no move counts at the trigger")
    max_bbo_age = cfg.gates.max_bbo_age_ms
    refresh = bool(lag > 2 * FRAME_GAP_MS and max_bbo_age
                   and moves * 0.1 + lag + 1.0 > 0.5 * max_bbo_age)
    # The oracle–mid baseline absorbs the dislocation in proportion to the time it was
    # sampled (a bbo refreshed inside the quote-lag window samples it ``lag`` ms long): the
    # edge above the baseline must still pass min_edge_above_baseline_bps.
    absorbed = 0.0
    if det.min_edge_above_baseline_bps:
        absorbed = 1.0 - math.exp(-((lag if refresh else 0.0) + 1.0) / det.baseline_tau_ms)
        if absorbed > 0.5:
            raise ValueError(f"baseline_tau_ms {det.baseline_tau_ms:g} absorbs a dislocation "
                             f"held {lag:g} ms (max_bbo_age_ms {max_bbo_age:g}) before it "
                             f"can pass min_edge_above_baseline_bps")
    if moves < 3 and det.min_confidence:
        # the confidence score (detector): edge 0.30 (the jump makes it 1), velocity 0.20 (1
        # when min_oracle_change_bps is set: the jump is > 4× it), consecutive moves 0.20 ×
        # min(n, 3)/3, book 0.15 (1), spread 0.15 × f(spread / threshold); up to 3 moves
        # when the configured minimum needs them
        thr_lo = min([fee, *det.threshold_overrides.values()]) * sess_lo * min(short, 1.0)
        r = 2.0 * half * 1.05 / thr_lo if thr_lo > 0 else 0.0
        spread_f = 0.5 if thr_lo <= 0 else 1.0 if r <= 1.0 else 0.0 if r >= 3.0 else (3 - r) / 2
        vel_f = 1.0 if det.min_oracle_change_bps > 0 else 0.0
        fixed = 0.30 + 0.20 * vel_f + 0.15 + 0.15 * spread_f
        if fixed + 0.20 * moves / 3.0 < det.min_confidence + 0.01:
            moves = 3
    for _ in range(50):
        half = move + 1
        base = max([fee, *det.threshold_overrides.values()])
        if det.adaptive_threshold:
            base = max(base, 2.2 * half * det.spread_threshold_multiplier)
        thr = base * sess * max(short, 1.0)
        # edge factor 1 in the confidence score, the baseline filter, the velocity filter
        # (+ 2 moves: the oracle–mid baseline may hold about one pre-move's gap)
        raw = max(3.0 * thr + det.min_edge_above_baseline_bps + det.min_oracle_change_bps
                  + 5.0 + 2.0 * move, 4.2 * det.min_oracle_change_bps)
        raw = (raw + absorbed * (half + DEDUP_STEP + 2.0)) / (1.0 - absorbed)
        if raw >= 5_000.0:
            raise ValueError(f"thresholds need a {raw:.0f} bps jump: not a usable warm-up")
        pre = (moves - 1) * move
        jump = math.ceil((half + DEDUP_STEP + raw * (1.0 + pre / 1e4)) / (1.0 - raw / 1e4)) + 1
        top = pre + jump + DEDUP_STEP  # highest level of the ladder
        # a pre-move at the top of the ladder must still count as a move
        if move / (1e4 + top) * 1e4 >= det.oracle_min_move_bps * 1.02:
            break
        move += 1
    else:
        raise ValueError("no price ladder satisfies oracle_min_move_bps")
    spread_bps = 2.0 * half * 1.05
    if det.max_entry_spread_bps and spread_bps > det.max_entry_spread_bps:
        raise ValueError(f"max_entry_spread_bps {det.max_entry_spread_bps:g} is below the "
                         f"{spread_bps:.1f} bps spread the oracle moves need")
    tc = cfg.trading
    span = moves * 0.1 + lag + 1.0
    step = max(span, tc.action_budget_interval_ms / tc.action_budget * 1.01 + 0.01)
    return _Geometry(moves, move, half, jump, lag, refresh, step)


def _ladder(g: _Geometry, sz_decimals: int) -> tuple[tuple[Step, ...], ...]:
    """The 4 phases (buy, sell, buy, sell) of one ``szDecimals``: each ends where the next
    starts; buy triggers alternate between two oracle values, and so do sell triggers."""
    p0 = 2.0 * 10.0**sz_decimals
    unit = p0 / 1e4
    decimals = max(0, 4 - sz_decimals)

    def px(n: int) -> float:
        return round(p0 + n * unit, decimals)

    pre = (g.moves - 1) * g.move
    top = pre + g.jump
    starts = (0, top, -DEDUP_STEP, top - DEDUP_STEP)
    jumps = (g.jump, g.jump + DEDUP_STEP, g.jump, g.jump - DEDUP_STEP)
    h = g.half_spread
    phases = []
    for ph in range(4):
        sign = 1 if ph % 2 == 0 else -1
        s = starts[ph]
        steps: list[Step] = []
        if g.moves == 1:
            # re-centre the book on the oracle (else the first pre-move does); the mark first,
            # so the bbo passes a mark–mid gate and samples the baseline long before the jump
            steps.append((0.0, False, px(s), px(s)))
            steps.append((FRAME_GAP_MS, True, px(s - h), px(s + h)))
        c = s
        for j in range(1, g.moves):
            c = s + sign * j * g.move
            steps.append((j * 0.1 - FRAME_GAP_MS, True, px(c - h), px(c + h)))
            steps.append((j * 0.1, False, px(c), px(c)))
        oracle = px(c + sign * jumps[ph])
        t = g.moves * 0.1
        steps.append((t, False, oracle, px(c)))  # the jump (mark stays at the mid)
        if g.lag_ms:
            if g.refresh_bbo:  # still inside the quote-lag window: no signal yet
                steps.append((t + g.lag_ms - FRAME_GAP_MS, True, px(c - h), px(c + h)))
            steps.append((t + g.lag_ms, False, oracle, px(c)))  # quote-lag window open
        phases.append(tuple(steps))
    for ph in range(4):  # the ladder is closed: every phase starts where the previous ended
        assert phases[ph][-1][2] == px(starts[(ph + 1) % 4]), "ladder not closed"
    return tuple(phases)


class _Shadow:
    """One shadow core pair, ready (every market live, user channels, reconciled)."""

    __slots__ = ("strategy", "core", "server_time")

    def __init__(self, cfg: EngineConfig, specs: list[MarketSpec], g: _Geometry,
                 sizes: dict[int, float], now_ms: float) -> None:
        self.strategy = DislocationStrategy.from_config(specs, cfg, boot_id=SHADOW_BOOT_ID)
        self.core = TradingCore(self.strategy, cfg, cloids=CloidFactory(SHADOW_BOOT))
        self.server_time = 0
        core = self.core
        for spec in specs:
            szd = min(max(spec.sz_decimals, 0), PERP_MAX_DECIMALS)
            p0 = 2.0 * 10.0**szd
            unit = p0 / 1e4
            decimals = max(0, 4 - szd)
            bid = round(p0 - g.half_spread * unit, decimals)
            ask = round(p0 + g.half_spread * unit, decimals)
            sz = sizes.get(spec.sz_decimals, 1.0)
            self.server_time += 1
            core.on_bbo(spec.index, self.server_time, bid, sz, ask, sz, now_ms)
            core.on_ctx(spec.index, p0, p0, now_ms)
        core.set_ready("user_channels", True)
        core.on_reconcile({}, [], now_ms)
        # a live trade-mode core enters only once the venue told it the account's equity;
        # the shadow has no venue: it measures against its placeholder basis, silently
        core.equity_source = "venue" if cfg.mode == "trade" else core.equity_source
        core.equity_known = True
        core.drain()
        self.strategy.drain_events()


class CoreWarmer:
    """A shadow trading core and its synthetic entry cycle (see the module docstring).

    ``CoreWarmer(cfg, specs)`` with the live engine's configuration and market list; pass
    :meth:`warm` as (part of) the feed's spin hook. Building it costs 1–3 ms (every market of
    the shadow gets a bbo and a ctx, then 4 verification cycles per ``szDecimals``); it never
    raises: a configuration the cycle cannot produce an order with leaves it disabled with one
    WARNING line (``stats().reason``).
    """

    def __init__(self, cfg: EngineConfig, specs: Sequence[MarketSpec]) -> None:
        self.cycles = 0
        self.rebuilds = 0
        self.reason: str | None = None
        self._cfg = cfg
        self._specs = list(specs)
        self._shadow: _Shadow | None = None
        self._t = SHADOW_T0_MS
        self._rot = 0
        self._usable: list[int] = []
        self._phase: list[int] = []
        self._plans: dict[int, tuple[tuple[Step, ...], ...]] = {}
        self._sizes: dict[int, float] = {}
        self._step_ms = 0.0
        self._g: _Geometry | None = None
        self._last_idx = 0
        self._rebuilt_at = 0
        self._counts0: tuple[dict[str, int], dict[str, int]] = ({}, {})
        try:
            if any(s.index != i for i, s in enumerate(self._specs)):
                self._disable("the market specs are not indexed 0..n-1 in order")
                return
            g = _geometry(cfg)
            self._step_ms = g.step_ms
            halted = set(cfg.gates.halted_markets)
            self._usable = [s.index for s in self._specs
                            if not s.delisted and s.coin not in halted
                            and 0 <= s.sz_decimals <= MAX_SZ_DECIMALS]
            if not self._usable:
                self._disable("no usable market (every market halted, delisted or with more "
                              f"than {MAX_SZ_DECIMALS} szDecimals)")
                return
            sz_cfg = cfg.sizing
            for szd in {self._specs[i].sz_decimals for i in self._usable}:
                self._plans[szd] = _ladder(g, szd)
                p0 = 2.0 * 10.0**szd
                notional = 2.0 * max(sz_cfg.normal_book_notional, sz_cfg.min_book_notional, 1.0)
                self._sizes[szd] = round(math.ceil(notional / p0 * 10**szd) / 10**szd, szd)
            self._g = g
            self._build()
            # verify every ladder: one market per szDecimals, its 4 phases (buy, sell, and the
            # second value of each for the dedup)
            first: dict[int, int] = {}
            for i in self._usable:
                first.setdefault(self._specs[i].sz_decimals, i)
            for i in first.values():
                if not self._verify(i):
                    return
        except Exception as exc:  # noqa: BLE001 - the live engine must never be affected
            self._disable_exc(exc)

    # ------------------------------------------------------------------ public
    @property
    def enabled(self) -> bool:
        return self._shadow is not None

    @property
    def shadow_core(self) -> TradingCore | None:
        """The shadow trading core (None once disabled): for inspection only, never drive it."""
        return None if self._shadow is None else self._shadow.core

    def stats(self) -> WarmerStats:
        return WarmerStats(self.cycles, self.rebuilds, self._shadow is None, self.reason)

    def warm(self) -> None:
        """Run one synthetic entry cycle on the shadow (a no-op once disabled). Never raises."""
        if self._shadow is None:
            return
        try:
            if not self._cycle():
                self._rebuild()
        except Exception as exc:  # noqa: BLE001 - the live engine must never be affected
            self._disable_exc(exc)

    # --------------------------------------------------------------- internals
    def _build(self) -> None:
        g = self._g
        assert g is not None
        self._shadow = None
        self._t += self._step_ms
        self._shadow = _Shadow(self._cfg, self._specs, g, self._sizes, self._t)
        self._phase = [0] * len(self._specs)

    def _rebuild(self) -> None:
        """A cycle failed: a fresh shadow, verified on the market that failed (all 4 phases);
        a second failure soon after the previous rebuild disables the warmer instead."""
        why = self._why()
        if self.rebuilds and self.cycles - self._rebuilt_at < REBUILD_MIN_CYCLES:
            self._disable(f"the shadow needed another rebuild {self.cycles - self._rebuilt_at} "
                          f"cycles after the previous one: {why}")
            return
        self.rebuilds += 1
        self._build()
        self._rebuilt_at = self.cycles
        self._verify(self._last_idx, f" (after a rebuild; before it: {why})")

    def _verify(self, idx: int, note: str = "") -> bool:
        """Four cycles on market ``idx`` (buy, sell, buy, sell); disable on a failure."""
        for _ in range(4):
            if not self._cycle(idx):
                side = "buy" if self._phase[idx] % 2 == 1 else "sell"
                self._disable(f"the synthetic cycle produced no order ({side} on "
                              f"{self._specs[idx].coin}): {self._why()}{note}")
                return False
        return True

    def _cycle(self, idx: int | None = None) -> bool:
        """One entry cycle (on the next market in turn, or ``idx``); False when it did not
        produce exactly one entry order that ended EXPIRED with the market FLAT."""
        sh = self._shadow
        assert sh is not None
        core = sh.core
        if core.hard_stop.latched or core.killed or not core.is_ready():
            return False
        if idx is None:
            usable = self._usable
            rot = self._rot
            idx = usable[rot]
            self._rot = rot + 1 if rot + 1 < len(usable) else 0
        self._last_idx = idx
        obs = sh.strategy
        self._counts0 = (core.skips.copy(), obs.detector.rejects.copy())  # for _why()
        szd = self._specs[idx].sz_decimals
        phase = self._phase[idx]
        self._phase[idx] = (phase + 1) & 3
        sz = self._sizes[szd]
        t0 = self._t = self._t + self._step_ms
        now = t0
        for dt, is_bbo, a, b in self._plans[szd][phase]:
            now = t0 + dt
            if is_bbo:
                st = sh.server_time = sh.server_time + 1
                core.on_bbo(idx, st, a, sz, b, sz, now)
            else:
                core.on_ctx(idx, a, b, now)
        orders = core.take_orders()
        ok = len(orders) == 1
        for it in orders:  # resolve whatever came out: nothing may stay live in the shadow
            o = it.order
            now += FRAME_GAP_MS
            core.on_sent(o.cloid, now)
            now += FRAME_GAP_MS
            core.on_post_result(o.cloid, NO_MATCH_STATUS, now)
            ok = ok and o.idx == idx and o.purpose == ENTRY and o.state == ofsm.EXPIRED
        if obs.next_timer_ms() is not None:
            obs.on_timer(now)  # the quote-lag timers of this cycle (dedup: no signal)
        core.drain()
        obs.drain_events()
        core.orders.prune(0)
        p = core.book.positions[idx]
        ok = ok and p.state == pfsm.FLAT and not p.has_exposure and not core.orders.live
        if ok:
            self.cycles += 1
        return ok

    def _why(self) -> str:
        """What the last cycle ran into: the executor skips and detector rejects it added,
        the markets blocked by a gate now, the hard stop."""
        sh = self._shadow
        if sh is None:
            return "no shadow"
        core = sh.core
        skips0, rejects0 = self._counts0
        skips = {k: v - skips0.get(k, 0) for k, v in core.skips.items() if v - skips0.get(k, 0)}
        rejects = {k: v - rejects0.get(k, 0) for k, v in sh.strategy.detector.rejects.items()
                   if v - rejects0.get(k, 0)}
        gates = {k: v for k, v in sh.strategy.gate_counts().items() if v}
        state = "killed" if core.killed else "ready" if core.is_ready() else "not ready"
        return (f"executor skips {skips}, detector rejects {rejects}, blocked gates {gates}, "
                f"hard stop {core.hard_stop.reason!r}, {state}")

    def _disable(self, reason: str) -> None:
        self._shadow = None
        self._plans = {}
        if self.reason is None:
            self.reason = reason
            log.warning("core warm-up disabled (the live engine is not affected): %s", reason)

    def _disable_exc(self, exc: Exception) -> None:
        where = ""
        tb = traceback.extract_tb(exc.__traceback__)
        if tb:
            last = tb[-1]
            where = f" at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"
        self._disable(f"{type(exc).__name__}: {exc}{where}")
