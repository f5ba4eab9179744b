"""The stale-liquidity (oracle dislocation) detector: raw edge, threshold, filters, size.

Decision surface of the predecessor (docs/reference/predecessor-semantics.md §1.2–§1.7), evaluated per market in
wall-clock time:

* raw edge: BUY ``(oracle − ask)/oracle·1e4`` when the ask is below the oracle; SELL
  ``(bid − oracle)/oracle·1e4`` when the bid is above it. A valid (uncrossed) book can only have
  one of the two positive, so the rule is symmetric by construction.
* threshold: per-market override, or fees + slippage + min edge; with adaptive thresholds
  ``max(override, spread_ewma·k)`` or ``max(fees, spread_ewma·k)``; × session multiplier; SELL ×
  short multiplier when throttled. Pass when ``raw ≥ threshold``; net edge = raw − threshold.
* filters (all must pass): dedup per oracle value and side, max entry spread, oracle direction,
  oracle velocity, consecutive moves, quote-lag window [min, max] ms since the oracle changed,
  edge above the oracle–mid baseline, liquidity, confidence, non-zero rounded size.

Every input of the decision is kept in the :class:`Signal` so it can be recorded; the record
itself is built lazily (see :class:`Signal`).
"""

from __future__ import annotations

import math
from math import exp
from typing import Any

from engine.config import DetectorConfig, GatesConfig, SizingConfig
from engine.core.market import MarketState
from engine.core.oracle import DOWN, UP
from engine.core.sizing import suggested_size

# Reasons a positive raw edge did not become a signal (counted for operators).
R_DEDUP = "dedup_oracle"
R_SPREAD = "entry_spread"
R_THRESHOLD = "threshold"
R_DIRECTION = "oracle_direction"
R_VELOCITY = "oracle_velocity"
R_CONSECUTIVE = "consecutive_moves"
R_LAG_MIN = "quote_lag_min"
R_LAG_MAX = "quote_lag_max"
R_BASELINE = "baseline"
R_LIQUIDITY = "liquidity"
R_CONFIDENCE = "confidence"
R_SIZE = "size_zero"

REJECT_REASONS = (R_DEDUP, R_SPREAD, R_THRESHOLD, R_DIRECTION, R_VELOCITY, R_CONSECUTIVE,
                  R_LAG_MIN, R_LAG_MAX, R_BASELINE, R_LIQUIDITY, R_CONFIDENCE, R_SIZE)


def strength_of(net_edge_bps: float) -> str:
    """Predecessor's strength buckets on the excess over the threshold."""
    if net_edge_bps < 5.0:
        return "weak"
    if net_edge_bps < 15.0:
        return "medium"
    return "strong"


class SignalContext:
    """What every signal record of one core shares: run identity and configuration (read when
    a record is built; the configuration objects are frozen)."""

    __slots__ = ("boot_id", "mode", "gates", "detector", "fee_total", "followup_offsets_ms")

    def __init__(self, boot_id: str, mode: str, gates: GatesConfig, detector: DetectorConfig,
                 followup_offsets_ms: list[int]) -> None:
        self.boot_id = boot_id
        self.mode = mode
        self.gates = gates
        self.detector = detector
        self.fee_total = detector.taker_fee_bps + detector.slippage_bps + detector.min_edge_bps
        self.followup_offsets_ms = followup_offsets_ms


class Signal:
    """A detected dislocation with every decision input (see docs/data-formats.md).

    The values a trading decision needs are plain attributes (``market_key``, ``side``,
    ``timestamp_ms``, ``raw_edge_bps``, ``oracle_px``, ``best_px``, ``best_size``,
    ``suggested_size``, and ``signal_id``, formatted on first use). The full record,
    :attr:`fields`, is built on first access from a snapshot taken at detection (the detector's
    values and the market's book, mark and receive times at that instant), so it is the same
    record whenever it is built: the hot path pays for a tuple, not a ~70-entry dict, and the
    shell builds the record after the orders left. ``executor_verdict`` (set by the trading
    core) is the record's last field.
    """

    __slots__ = ("market_key", "side", "timestamp_ms", "raw_edge_bps", "oracle_px", "best_px",
                 "best_size", "suggested_size", "_seq", "_ctx", "_snap", "_fields", "_id",
                 "_verdict")

    def __init__(self, market_key: str, side: str, timestamp_ms: int, raw_edge_bps: float,
                 oracle_px: float, best_px: float, best_size: float, suggested_size: float,
                 seq: int, ctx: SignalContext | None, snap: tuple[Any, ...]) -> None:
        self.market_key = market_key
        self.side = side
        self.timestamp_ms = timestamp_ms
        self.raw_edge_bps = raw_edge_bps
        self.oracle_px = oracle_px
        self.best_px = best_px
        self.best_size = best_size
        self.suggested_size = suggested_size
        self._seq = seq
        self._ctx = ctx
        self._snap = snap
        self._fields: dict[str, Any] | None = None
        self._id: str | None = None
        self._verdict: str | None = None

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Signal:
        """A signal around an already built record (replay, tests)."""
        sig = cls(str(fields["market_key"]), str(fields["side"]), int(fields["timestamp_ms"]),
                  fields["raw_edge_bps"], fields["oracle_px"], fields["best_px"],
                  fields["best_size"], fields["suggested_size"], 0, None, ())
        sig._id = str(fields["signal_id"])
        sig._fields = fields
        return sig

    @property
    def signal_id(self) -> str:
        """``sig_<market>_<side>_<timestamp_ms>_<boot id>-<seq>``."""
        s = self._id
        if s is None:
            ctx = self._ctx
            assert ctx is not None
            s = self._id = (f"sig_{self.market_key}_{self.side}_{self.timestamp_ms}_"
                            f"{ctx.boot_id}-{self._seq}")
        return s

    @property
    def executor_verdict(self) -> str | None:
        f = self._fields
        return self._verdict if f is None else f.get("executor_verdict")

    @executor_verdict.setter
    def executor_verdict(self, value: str) -> None:
        f = self._fields
        if f is None:
            self._verdict = value
        else:
            f["executor_verdict"] = value

    @property
    def fields(self) -> dict[str, Any]:
        """The signal record (built once, on first access; the same dict afterwards)."""
        f = self._fields
        if f is None:
            f = self._fields = self._record()
            self._snap = ()  # the record holds every value now
        return f

    def _record(self) -> dict[str, Any]:
        ctx = self._ctx
        assert ctx is not None
        (now_ms, trigger, asset_id, mark, bid, bid_sz, ask, ask_sz, bbo_time, bbo_recv, ctx_recv,
         d) = self._snap
        (_is_sell, raw, total, base, source, adaptive, override, session, short, oracle_age,
         velocity, consecutive, spread_bps, ewma_val, gap, samples, warm, edge_above, lf,
         book_notional, confidence, parts, oracle, best_px, best_sz, size) = d
        g = ctx.gates
        cfg = ctx.detector
        net = raw - total
        rec: dict[str, Any] = {
            "timestamp_ms": self.timestamp_ms,
            "market_key": self.market_key,
            "side": self.side,
            "raw_edge_bps": raw,
            "net_edge_bps": net,
            "oracle_px": oracle,
            "best_px": best_px,
            "best_size": best_sz,
            "suggested_size": size,
            "signal_id": self.signal_id,
            "asset_id": asset_id,
            "mode": ctx.mode,
            "trigger": trigger,
            "mark_px": mark,
            "bid_px": bid,
            "bid_sz": bid_sz,
            "ask_px": ask,
            "ask_sz": ask_sz,
            "mid_px": (bid + ask) * 0.5 if bid is not None and ask is not None else None,
            "bbo_server_time_ms": bbo_time,
            "gate_bbo_age_ms": now_ms - bbo_recv if bbo_recv is not None else None,
            "gate_ctx_age_ms": now_ms - ctx_recv if ctx_recv is not None else None,
            "gate_max_bbo_age_ms": g.max_bbo_age_ms,
            "gate_max_ctx_age_ms": g.max_ctx_age_ms,
            "gate_mark_mid_bps": mark_mid_bps(mark, bid, ask),
            "gate_max_mark_mid_bps": g.max_mark_mid_bps,
            "gate_spread_shock_multiple": g.spread_shock_multiple,
            "gate_state": "pass",
            "followup_offsets_ms": ctx.followup_offsets_ms,
            "strength": strength_of(net),
            "suggested_notional": size * best_px,
            "threshold_bps": total,
            "threshold_base_bps": base,
            "threshold_source": source,
            "threshold_fee_total_bps": ctx.fee_total,
            "threshold_taker_fee_bps": cfg.taker_fee_bps,
            "threshold_slippage_bps": cfg.slippage_bps,
            "threshold_min_edge_bps": cfg.min_edge_bps,
            "threshold_override_bps": override,
            "threshold_adaptive_bps": adaptive,
            "threshold_session_mult": session[1],
            "threshold_short_mult": short,
            "session": session[0],
            "session_size_mult": session[2],
            "oracle_age_ms": oracle_age,
            "oracle_velocity_bps": velocity,
            "consecutive_moves": consecutive,
            "spread_bps": spread_bps,
            "spread_ewma_bps": ewma_val,
            "baseline_gap_bps": gap,
            "baseline_samples": samples,
            "baseline_warm": warm,
            "edge_above_baseline_bps": edge_above,
            "liquidity_factor": lf,
            "book_notional": book_notional,
            "confidence": confidence,
            "confidence_edge": parts[0],
            "confidence_velocity": parts[1],
            "confidence_consecutive": parts[2],
            "confidence_book": parts[3],
            "confidence_spread": parts[4],
        }
        if self._verdict is not None:
            rec["executor_verdict"] = self._verdict
        return rec

    def __repr__(self) -> str:
        return (f"Signal({self.market_key} {self.side} raw={self.raw_edge_bps:.2f} "
                f"thr={self.fields['threshold_bps']:.2f} id={self.signal_id})")


def mark_mid_bps(mark: float | None, bid: float | None, ask: float | None) -> float | None:
    """|mark − mid| / mid in bps (None when a price is missing or the mid is not usable)."""
    if mark is None or bid is None or ask is None:
        return None
    mid = (bid + ask) * 0.5
    if mid <= 0 or not math.isfinite(mid):
        return None
    return abs(mark - mid) / mid * 1e4


class Thresholds:
    """Threshold arithmetic of §1.3 (kept separate so it can be tested on its own)."""

    __slots__ = ("cfg", "fee_total")

    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.fee_total = cfg.taker_fee_bps + cfg.slippage_bps + cfg.min_edge_bps

    def base(self, coin: str, spread_ewma_bps: float | None) -> tuple[float, str, float | None]:
        """(base threshold before session/short multipliers, its source, adaptive value)."""
        cfg = self.cfg
        override = cfg.threshold_overrides.get(coin)
        adaptive: float | None = None
        if cfg.adaptive_threshold and spread_ewma_bps is not None:
            adaptive = spread_ewma_bps * cfg.spread_threshold_multiplier
        if override is not None:
            if adaptive is not None and adaptive > override:
                return adaptive, "adaptive", adaptive
            return override, "override", adaptive
        if adaptive is not None and adaptive > self.fee_total:
            return adaptive, "adaptive", adaptive
        return self.fee_total, "fees", adaptive

    def total(self, base: float, is_sell: bool, session_mult: float) -> tuple[float, float]:
        """(final threshold, short multiplier applied)."""
        short = self.cfg.short_threshold_mult if (is_sell and self.cfg.short_side_throttle) else 1.0
        return base * session_mult * short, short


Decision = tuple[Any, ...]
"""What :meth:`Detector.evaluate` returns for a signal (read by :meth:`Signal._record`):
``(is_sell, raw, threshold, base, source, adaptive, override, session, short_mult, oracle_age,
velocity, consecutive, spread_bps, spread_ewma, baseline_gap, baseline_samples, baseline_warm,
edge_above_baseline, liquidity_factor, book_notional, confidence, confidence_parts, oracle,
best_px, best_size, size)``."""


class Detector:
    """Evaluates one market at one instant; holds config-derived constants and reject counters.

    The threshold (:class:`Thresholds`), the liquidity factor and the confidence score
    (:mod:`engine.core.sizing`) are computed inline here, with the same operations in the same
    order as those reference functions (tests/core/test_signal_record.py checks every recorded
    value against them): one function call costs as much as the arithmetic, and on this path
    the code that runs is the cost.
    """

    def __init__(self, cfg: DetectorConfig, sizing: SizingConfig) -> None:
        self.cfg = cfg
        self.sizing = sizing
        self.thresholds = Thresholds(cfg)
        self.rejects: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)

    def evaluate(
        self,
        m: MarketState,
        now_ms: float,
        session: tuple[str, float, float],
    ) -> Decision | None:
        """Return the decision values of a signal (:data:`Decision`), or None. Gates must
        already have passed.

        Also advances the oracle–mid baseline EWMA *after* the evaluation (no self-contamination),
        whether or not a signal fired.
        """
        oracle = m.oracle_px
        bid = m.bid_px
        ask = m.ask_px
        if oracle is None or bid is None or ask is None or oracle <= 0:
            return None
        mid = (bid + ask) * 0.5
        result: Decision | None = None
        if ask < oracle:
            result = self._side(m, now_ms, session, False, (oracle - ask) / oracle * 1e4, ask,
                                m.ask_sz or 0.0, mid)
        elif bid > oracle:
            result = self._side(m, now_ms, session, True, (bid - oracle) / oracle * 1e4, bid,
                                m.bid_sz or 0.0, mid)
        # m.baseline.update((oracle - mid) / oracle * 1e4, now_ms), inline (the same
        # operations: one call less per frame)
        bl = m.baseline
        x = (oracle - mid) / oracle * 1e4
        v = bl.value
        if v is None:
            bl.value = x
        else:
            dt = now_ms - bl.last_ms
            if dt > 0:
                bl.value = v + (1.0 - exp(-dt / bl.tau_ms)) * (x - v)
        bl.last_ms = now_ms
        bl.samples += 1
        return result

    def _side(
        self,
        m: MarketState,
        now_ms: float,
        session: tuple[str, float, float],
        is_sell: bool,
        raw: float,
        best_px: float,
        best_sz: float,
        mid: float,
    ) -> Decision | None:
        cfg = self.cfg
        rejects = self.rejects
        oracle = m.oracle_px
        assert oracle is not None
        # Dedup: one signal per oracle value and side.
        last = m.last_signal_oracle_sell if is_sell else m.last_signal_oracle_buy
        if last is not None and last == oracle:
            rejects[R_DEDUP] += 1
            return None
        spread_bps = (m.ask_px - m.bid_px) / mid * 1e4  # type: ignore[operator]
        if cfg.max_entry_spread_bps and spread_bps > cfg.max_entry_spread_bps:
            rejects[R_SPREAD] += 1
            return None
        # threshold: Thresholds.base + Thresholds.total
        ewma_val = m.spread_ewma.value
        fee_total = self.thresholds.fee_total
        override = cfg.threshold_overrides.get(m.coin)
        adaptive: float | None = None
        if cfg.adaptive_threshold and ewma_val is not None:
            adaptive = ewma_val * cfg.spread_threshold_multiplier
        if override is not None:
            if adaptive is not None and adaptive > override:
                base, source = adaptive, "adaptive"
            else:
                base, source = override, "override"
        elif adaptive is not None and adaptive > fee_total:
            base, source = adaptive, "adaptive"
        else:
            base, source = fee_total, "fees"
        short = cfg.short_threshold_mult if (is_sell and cfg.short_side_throttle) else 1.0
        total = base * session[1] * short
        if raw < total:
            rejects[R_THRESHOLD] += 1
            return None
        tracker = m.tracker
        consecutive = tracker.consecutive(DOWN if is_sell else UP, now_ms)
        if cfg.oracle_direction_filter and consecutive <= 0:
            rejects[R_DIRECTION] += 1
            return None
        # OracleTracker.velocity_bps
        velocity = tracker.last_change_bps
        if not (velocity and now_ms - tracker.last_move_ms <= tracker.window_ms):
            velocity = 0.0
        min_velocity = cfg.min_oracle_change_bps
        if min_velocity and velocity < min_velocity:
            rejects[R_VELOCITY] += 1
            return None
        if consecutive < cfg.min_consecutive_moves:
            rejects[R_CONSECUTIVE] += 1
            return None
        oracle_age: float | None = None
        if m.oracle_changed_ms is not None:
            oracle_age = now_ms - m.oracle_changed_ms
            if cfg.min_quote_lag_ms and oracle_age < cfg.min_quote_lag_ms:
                rejects[R_LAG_MIN] += 1
                return None
            if cfg.max_quote_lag_ms and oracle_age > cfg.max_quote_lag_ms:
                rejects[R_LAG_MAX] += 1
                return None
        baseline = m.baseline
        gap = baseline.value
        samples = baseline.samples
        warm = gap is not None and samples >= cfg.baseline_min_samples
        if warm:
            assert gap is not None
            edge_above = raw - (max(0.0, -gap) if is_sell else max(0.0, gap))
        else:
            edge_above = raw
        if cfg.min_edge_above_baseline_bps and edge_above < cfg.min_edge_above_baseline_bps:
            rejects[R_BASELINE] += 1
            return None
        sz = self.sizing
        book_notional = best_sz * best_px
        # sizing.liquidity_factor
        lo = sz.min_book_notional
        hi = sz.normal_book_notional
        if book_notional <= lo:
            rejects[R_LIQUIDITY] += 1
            return None
        lf = 1.0 if book_notional >= hi else (book_notional - lo) / (hi - lo)
        # sizing.confidence_parts + confidence_score (cost = the threshold)
        if total > 0:
            x = (raw - total) / (2.0 * total)
            edge_f = 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
        else:
            edge_f = 1.0
        if min_velocity <= 0 or velocity <= min_velocity:
            vel_f = 0.0
        else:
            x = (velocity - min_velocity) / (3.0 * min_velocity)
            vel_f = 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
        cons_f = (consecutive if consecutive < 3 else 3) / 3.0
        if ewma_val is None or total <= 0:
            spread_f = 0.5
        else:
            r = ewma_val / total
            spread_f = 1.0 if r <= 1.0 else 0.0 if r >= 3.0 else (3.0 - r) / 2.0
        x = 0.30 * edge_f + 0.20 * vel_f + 0.20 * cons_f + 0.15 * lf + 0.15 * spread_f
        confidence = 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
        if cfg.min_confidence and confidence < cfg.min_confidence:
            rejects[R_CONFIDENCE] += 1
            return None
        size = suggested_size(best_sz, best_px, m.spec.sz_decimals, lf, confidence, session[2],
                              sz.sizing_alpha, sz.confidence_sizing, sz.max_notional,
                              sz.min_order_notional)
        if size <= 0.0:
            rejects[R_SIZE] += 1
            return None
        if is_sell:
            m.last_signal_oracle_sell = oracle
        else:
            m.last_signal_oracle_buy = oracle
        return (is_sell, raw, total, base, source, adaptive, override, session, short, oracle_age,
                velocity, consecutive, spread_bps, ewma_val, gap, samples, warm, edge_above, lf,
                book_notional, confidence, (edge_f, vel_f, cons_f, lf, spread_f), oracle, best_px,
                best_sz, size)
