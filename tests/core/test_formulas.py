"""Hand-computed checks of every core formula (edge, threshold, EWMA, tracker, sizing, confidence)."""

from __future__ import annotations

import math

import pytest

from engine.config import DetectorConfig
from engine.core.detector import Thresholds, strength_of
from engine.core.ewma import TimeEwma
from engine.core.oracle import DOWN, UP, OracleTracker
from engine.core.sizing import (
    confidence_parts,
    confidence_score,
    liquidity_factor,
    round_size_to_lot,
    suggested_size,
)

from .helpers import T0, make_core


def test_raw_edge_buy_hand_computed() -> None:
    core = make_core("[detector]\nsession_aware=false\nmin_consecutive_moves=0\n"
                     "oracle_direction_filter=false\nmin_quote_lag_ms=0\nmin_confidence=0\n"
                     "min_edge_above_baseline_bps=0")
    core.on_bbo(0, 1, 99.99, 100.0, 100.01, 100.0, T0)
    sig = core.on_ctx(0, 100.2, 100.2, T0 + 1)
    assert sig is not None
    # (100.2 - 100.01) / 100.2 * 1e4 = 18.962075848...
    assert sig.fields["raw_edge_bps"] == pytest.approx(18.962075848303393, rel=1e-12)
    assert sig.fields["net_edge_bps"] == pytest.approx(18.962075848303393 - 11.0, rel=1e-12)
    assert sig.side == "buy"


def test_raw_edge_sell_hand_computed() -> None:
    core = make_core("[detector]\nsession_aware=false\nmin_consecutive_moves=0\n"
                     "oracle_direction_filter=false\nmin_quote_lag_ms=0\nmin_confidence=0\n"
                     "min_edge_above_baseline_bps=0")
    core.on_bbo(0, 1, 50.1, 100.0, 50.11, 100.0, T0)
    sig = core.on_ctx(0, 50.0, 50.0, T0 + 1)
    assert sig is not None and sig.side == "sell"
    assert sig.fields["raw_edge_bps"] == pytest.approx(20.0, rel=1e-9)  # (50.1-50)/50*1e4


def test_thresholds_combinations() -> None:
    t = Thresholds(DetectorConfig(taker_fee_bps=4, slippage_bps=2, min_edge_bps=5))
    assert t.fee_total == 11
    assert t.base("xyz:A", None) == (11, "fees", None)
    t = Thresholds(DetectorConfig(threshold_overrides={"xyz:A": 30.0}))
    assert t.base("xyz:A", 50.0) == (30.0, "override", None)  # adaptive off
    assert t.base("xyz:B", 50.0) == (11.0, "fees", None)
    t = Thresholds(DetectorConfig(adaptive_threshold=True, spread_threshold_multiplier=1.5,
                                  threshold_overrides={"xyz:A": 12.0}))
    assert t.base("xyz:B", 10.0) == (15.0, "adaptive", 15.0)  # 10*1.5 > 11
    assert t.base("xyz:B", 6.0) == (11.0, "fees", 9.0)  # 9 < 11 -> fees
    assert t.base("xyz:A", 10.0) == (15.0, "adaptive", 15.0)  # max(12, 15)
    assert t.base("xyz:A", 4.0) == (12.0, "override", 6.0)  # max(12, 6)
    t = Thresholds(DetectorConfig(short_side_throttle=True, short_threshold_mult=1.5))
    assert t.total(11.0, False, 2.0) == (22.0, 1.0)
    assert t.total(11.0, True, 2.0) == (33.0, 1.5)


def test_strength_buckets() -> None:
    assert strength_of(4.99) == "weak"
    assert strength_of(5.0) == "medium"
    assert strength_of(15.0) == "strong"


def test_time_ewma_wall_clock_constant() -> None:
    e = TimeEwma(1000.0)
    assert e.update(0.0, 0.0) == 0.0
    assert e.update(10.0, 1000.0) == pytest.approx(10 * (1 - math.exp(-1)))
    # Many samples at the same instant carry no extra weight (rate independence, L5).
    e2 = TimeEwma(1000.0)
    e2.update(0.0, 0.0)
    for _ in range(100):
        e2.update(10.0, 0.0)
    assert e2.value == 0.0
    assert e2.update(10.0, 1000.0) == pytest.approx(10 * (1 - math.exp(-1)))


def test_oracle_tracker_consecutive_and_velocity() -> None:
    tr = OracleTracker(min_move_bps=2.0, window_ms=30_000)
    tr.record(100.0, 0)
    tr.record(100.05, 3000)  # +5 bps
    assert tr.consecutive(UP, 3000) == 1
    tr.record(100.06, 6000)  # +~1 bps: neither counts nor resets, zeroes velocity
    assert tr.consecutive(UP, 6000) == 1
    assert tr.velocity_bps(6000) == 0.0
    tr.record(100.09, 9000)  # +~3 bps
    assert tr.consecutive(UP, 9000) == 2
    assert tr.velocity_bps(9000) == pytest.approx((100.09 - 100.06) / 100.06 * 1e4)
    tr.record(100.0, 12000)  # -9 bps: run flips
    assert tr.consecutive(UP, 12000) == 0
    assert tr.consecutive(DOWN, 12000) == 1
    tr.record(100.0, 13000)  # identical: no-op
    assert tr.consecutive(DOWN, 13000) == 1
    # Window: the run expires 30 s after its moves.
    assert tr.consecutive(DOWN, 12000 + 30_001) == 0
    assert tr.velocity_bps(12000 + 30_001) == 0.0


def test_liquidity_factor() -> None:
    assert liquidity_factor(50, 50, 5000) == 0.0
    assert liquidity_factor(5000, 50, 5000) == 1.0
    assert liquidity_factor(2525, 50, 5000) == pytest.approx(0.5)


def test_confidence_hand_computed() -> None:
    parts = confidence_parts(22.0, 11.0, 0.0, 0.0, 2, 0.5, 22.0)
    assert parts == pytest.approx((0.5, 0.0, 2 / 3, 0.5, 0.5))
    assert confidence_score(parts) == pytest.approx(0.15 + 0.2 * 2 / 3 + 0.075 + 0.075)
    # velocity factor when a minimum is configured: (v-min)/(3*min)
    assert confidence_parts(11, 11, 5.0, 2.0, 3, 1, None)[1] == pytest.approx(0.5)
    # spread factor: r<=1 -> 1, r>=3 -> 0, none -> 0.5
    assert confidence_parts(11, 11, 0, 0, 0, 0, 5.0)[4] == 1.0
    assert confidence_parts(11, 11, 0, 0, 0, 0, 40.0)[4] == 0.0
    assert confidence_parts(11, 11, 0, 0, 0, 0, None)[4] == 0.5


def test_suggested_size_capped_and_lot_floored() -> None:
    # book 100 @ 100, LF 1, confidence .5 -> 100*.1*1*.75 = 7.5 -> cap 50*.99/100 = .495 -> .49
    assert suggested_size(100, 100.0, 2, 1.0, 0.5, 1.0, 0.1, True, 50, 11) == 0.49


def test_suggested_size_min_boost_survives_session_multiplier() -> None:
    # L4: a session size multiplier must never push the order under the minimum notional.
    s = suggested_size(0.6, 100.0, 2, 0.01, 0.5, 0.5, 0.1, True, 50, 11)
    assert s == 0.11 and s * 100 >= 10


def test_suggested_size_zero_when_lot_too_coarse() -> None:
    # szDecimals 0 at $100: one lot is $100 > max $49.5 -> cannot trade
    assert suggested_size(100, 100.0, 0, 1.0, 1.0, 1.0, 0.1, True, 50, 11) == 0.0


def test_round_size_to_lot_ceil_when_floor_under_minimum() -> None:
    assert round_size_to_lot(0.105, 2, 100.0, 11.0, 1.0) == 0.11
    assert round_size_to_lot(0.3, 1, 100.0, 11.0, 1.0) == 0.3  # float 0.3/0.1 edge case
    assert round_size_to_lot(0.000245, 4, 45000.0, 11.0, 1.0) == 0.0003  # GOLD-like szDecimals 4
    assert round_size_to_lot(0.0001, 4, 45000.0, 11.0, 1.0) == 0.0  # $4.5 lot: never under min
