"""Exit rules, hand-computed (docs/reference/predecessor-semantics.md §4.4–§4.7 with L3/L13 fixed)."""

from __future__ import annotations

import pytest

from engine.config import ExitsConfig
from engine.core import exits as x
from engine.core.market import MarketState
from engine.core.types import MarketSpec

T = 1_800_000_000_000.0


def market(bid: float, ask: float, oracle: float) -> MarketState:
    m = MarketState(MarketSpec(0, "xyz:A", 110000, 2), 2.0, 30_000.0, 30_000.0, 300_000.0)
    m.bid_px, m.ask_px, m.oracle_px = bid, ask, oracle
    m.bid_sz = m.ask_sz = 10.0
    return m


def long_state(m: MarketState, entry_px: float = 100.0, edge: float | None = 20.0) -> x.ExitState:
    return x.open_exit_state(+1, entry_px, T, edge, m)


CFG = ExitsConfig()


def test_time_stop_strictly_after_threshold() -> None:
    m = market(99.0, 101.0, 100.0)
    st = long_state(m)
    off = ExitsConfig(quick_profit_bps=0, edge_evap_enabled=False, oracle_exit_enabled=False)
    assert x.evaluate_exit(st, m, T + 20_000, off) != x.TIME_STOP
    assert x.evaluate_exit(st, m, T + 20_001, off) == x.TIME_STOP


def test_quick_profit_after_min_hold() -> None:
    m = market(100.04, 100.06, 100.2)  # bid 4 bps above a 100 entry
    st = long_state(m)
    assert x.evaluate_exit(st, m, T + 499, CFG) is None
    assert x.evaluate_exit(st, m, T + 500, CFG) == x.QUICK_PROFIT


def test_edge_evaporation_regardless_of_pnl() -> None:
    # long entered at 100; the ask has caught up to 1 bp below the oracle; bid under entry.
    m = market(99.90, 99.99, 100.0)
    st = long_state(m)
    assert x.evaluate_exit(st, m, T + 600, CFG) == x.EDGE_EVAPORATED
    cfg = ExitsConfig(edge_evap_enabled=False, min_hold_ms=1500)
    assert x.evaluate_exit(st, m, T + 600, cfg) is None


def test_mark_regression_threshold_scaling_and_decay() -> None:
    cfg = ExitsConfig(quick_profit_bps=0, edge_evap_enabled=False, oracle_exit_enabled=False,
                      min_loss_exit_bps=0)
    # entry edge 60 bps -> base = max(25, 30) = 30 bps; no decay before 3 s
    m = market(99.75, 99.80, 100.0)  # bid 25 bps under the oracle: inside 30 -> exit
    st = long_state(m, entry_px=99.0, edge=60.0)
    assert x.evaluate_exit(st, m, T + 1499, cfg) is None  # min hold
    assert x.evaluate_exit(st, m, T + 1500, cfg) == x.MARK_REGRESSION
    m2 = market(99.65, 99.70, 100.0)  # 35 bps under: outside 30
    assert x.evaluate_exit(st, m2, T + 1500, cfg) is None
    # decay is relative to the configured time stop (L3): at 20 s the factor is the floor 0.4
    assert x.decay_factor(20_000, cfg) == pytest.approx(0.4)
    assert x.decay_factor(11_500, cfg) == pytest.approx(1 - 0.6 * (8_500 / 17_000))
    assert x.decay_factor(3_000, cfg) == 1.0


def test_mark_regression_skips_small_losses() -> None:
    cfg = ExitsConfig(quick_profit_bps=0, edge_evap_enabled=False, oracle_exit_enabled=False)
    m = market(99.95, 100.0, 100.0)  # converged; exit PnL (99.95-100)/100 = -5 bps
    st = long_state(m, entry_px=100.0)
    assert x.evaluate_exit(st, m, T + 2000, cfg) is None
    m2 = market(99.80, 99.85, 100.0)  # -20 bps: a real loss, cut it
    assert x.evaluate_exit(st, m2, T + 2000, cfg) == x.MARK_REGRESSION


def test_short_side_mirrors() -> None:
    m = market(99.94, 99.96, 99.8)  # short entered at 100: ask 4 bps below entry
    st = x.open_exit_state(-1, 100.0, T, 20.0, m)
    assert x.evaluate_exit(st, m, T + 500, CFG) == x.QUICK_PROFIT


def test_trailing_stop_activation_and_trail() -> None:
    cfg = ExitsConfig(quick_profit_bps=0, edge_evap_enabled=False, min_hold_ms=1e9,
                      time_stop_ms=2e9, decay_start_ms=0)
    m = market(99.0, 99.01, 100.0)
    st = long_state(m)
    m.oracle_px = 100.06  # +6 bps: activates (>= 5)
    assert x.evaluate_exit(st, m, T + 10, cfg) is None and st.trail_active
    m.oracle_px = 100.04  # pnl 4, best 6: 2 < 3
    assert x.evaluate_exit(st, m, T + 20, cfg) is None
    m.oracle_px = 100.03  # pnl 3, best 6: trail 3 -> exit
    assert x.evaluate_exit(st, m, T + 30, cfg) == x.TRAILING_STOP


def test_oracle_reversal_and_catchup_use_deltas_from_entry() -> None:
    cfg = ExitsConfig(quick_profit_bps=0, edge_evap_enabled=False, min_hold_ms=1e9,
                      trailing_stop=False, time_stop_ms=2e9)
    m = market(99.0, 99.01, 100.0)
    tr = m.tracker
    tr.record(99.0, T - 9000)
    tr.record(99.5, T - 6000)  # up
    tr.record(100.0, T - 3000)  # up: entry with 2 moves with us (#39: no instant exit)
    st = long_state(m)
    assert (st.base_moves_with, st.base_moves_against) == (2, 0)
    assert x.evaluate_exit(st, m, T, cfg) is None
    tr.record(99.8, T + 3000)
    assert x.evaluate_exit(st, m, T + 3000, cfg) is None  # one against
    tr.record(99.6, T + 6000)
    assert x.evaluate_exit(st, m, T + 6000, cfg) == x.ORACLE_REVERSAL
    # catch-up: three more moves with us after entry
    m2 = market(99.0, 99.01, 100.0)
    m2.tracker.record(100.0, T - 1)
    st2 = long_state(m2)
    for i, px in enumerate((100.1, 100.2, 100.3)):
        m2.tracker.record(px, T + 1000 * (i + 1))
    assert x.evaluate_exit(st2, m2, T + 3000, cfg) == x.ORACLE_CATCHUP
