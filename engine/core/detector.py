"""The stale-liquidity (oracle dislocation) detector: raw edge, threshold, filters, size.

Decision surface of the predecessor (predecessor-semantics §1.2–§1.7), evaluated per market in
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

Every input of the decision is returned in the :class:`Signal` so it can be recorded.
"""

from __future__ import annotations

from typing import Any

from engine.config import DetectorConfig, SizingConfig
from engine.core.market import MarketState
from engine.core.oracle import DOWN, UP
from engine.core.sizing import (
    confidence_parts,
    confidence_score,
    liquidity_factor,
    suggested_size,
)

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


class Signal:
    """A detected dislocation with every decision input (see docs/data-formats.md)."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    @property
    def signal_id(self) -> str:
        return str(self.fields["signal_id"])

    @property
    def market_key(self) -> str:
        return str(self.fields["market_key"])

    @property
    def side(self) -> str:
        return str(self.fields["side"])

    @property
    def timestamp_ms(self) -> int:
        return int(self.fields["timestamp_ms"])

    def __repr__(self) -> str:
        f = self.fields
        return (f"Signal({f['market_key']} {f['side']} raw={f['raw_edge_bps']:.2f} "
                f"thr={f['threshold_bps']:.2f} id={f['signal_id']})")


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


class Detector:
    """Evaluates one market at one instant; holds config-derived constants and reject counters."""

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
    ) -> dict[str, Any] | None:
        """Return the decision fields of a signal, or None. Gates must already have passed.

        Also advances the oracle–mid baseline EWMA *after* the evaluation (no self-contamination),
        whether or not a signal fired.
        """
        oracle = m.oracle_px
        bid = m.bid_px
        ask = m.ask_px
        if oracle is None or bid is None or ask is None or oracle <= 0:
            return None
        mid = (bid + ask) * 0.5
        result: dict[str, Any] | None = None
        if ask < oracle:
            result = self._side(m, now_ms, session, False, (oracle - ask) / oracle * 1e4, ask,
                                m.ask_sz or 0.0, mid)
        elif bid > oracle:
            result = self._side(m, now_ms, session, True, (bid - oracle) / oracle * 1e4, bid,
                                m.bid_sz or 0.0, mid)
        m.baseline.update((oracle - mid) / oracle * 1e4, now_ms)
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
    ) -> dict[str, Any] | None:
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
        ewma_val = m.spread_ewma.value
        base, source, adaptive = self.thresholds.base(m.coin, ewma_val)
        session_name, session_thr, session_size = session
        total, short = self.thresholds.total(base, is_sell, session_thr)
        if raw < total:
            rejects[R_THRESHOLD] += 1
            return None
        tracker = m.tracker
        direction = DOWN if is_sell else UP
        consecutive = tracker.consecutive(direction, now_ms)
        if cfg.oracle_direction_filter and consecutive <= 0:
            rejects[R_DIRECTION] += 1
            return None
        velocity = tracker.velocity_bps(now_ms)
        if cfg.min_oracle_change_bps and velocity < cfg.min_oracle_change_bps:
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
        warm = gap is not None and baseline.samples >= cfg.baseline_min_samples
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
        lf = liquidity_factor(book_notional, sz.min_book_notional, sz.normal_book_notional)
        if lf <= 0.0:
            rejects[R_LIQUIDITY] += 1
            return None
        parts = confidence_parts(raw, total, velocity, cfg.min_oracle_change_bps, consecutive,
                                 lf, ewma_val)
        confidence = confidence_score(parts)
        if cfg.min_confidence and confidence < cfg.min_confidence:
            rejects[R_CONFIDENCE] += 1
            return None
        size = suggested_size(best_sz, best_px, m.spec.sz_decimals, lf, confidence, session_size,
                              sz.sizing_alpha, sz.confidence_sizing, sz.max_notional,
                              sz.min_order_notional)
        if size <= 0.0:
            rejects[R_SIZE] += 1
            return None
        if is_sell:
            m.last_signal_oracle_sell = oracle
        else:
            m.last_signal_oracle_buy = oracle
        net = raw - total
        return {
            "side": "sell" if is_sell else "buy",
            "raw_edge_bps": raw,
            "net_edge_bps": net,
            "strength": strength_of(net),
            "oracle_px": oracle,
            "best_px": best_px,
            "best_size": best_sz,
            "suggested_size": size,
            "suggested_notional": size * best_px,
            "threshold_bps": total,
            "threshold_base_bps": base,
            "threshold_source": source,
            "threshold_fee_total_bps": self.thresholds.fee_total,
            "threshold_taker_fee_bps": cfg.taker_fee_bps,
            "threshold_slippage_bps": cfg.slippage_bps,
            "threshold_min_edge_bps": cfg.min_edge_bps,
            "threshold_override_bps": cfg.threshold_overrides.get(m.coin),
            "threshold_adaptive_bps": adaptive,
            "threshold_session_mult": session_thr,
            "threshold_short_mult": short,
            "session": session_name,
            "session_size_mult": session_size,
            "oracle_age_ms": oracle_age,
            "oracle_velocity_bps": velocity,
            "consecutive_moves": consecutive,
            "spread_bps": spread_bps,
            "spread_ewma_bps": ewma_val,
            "baseline_gap_bps": gap,
            "baseline_samples": baseline.samples,
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
