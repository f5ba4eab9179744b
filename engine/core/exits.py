"""Exit policy for an open position: pure rules over the position and the market's latest state.

Rules (docs/reference/predecessor-semantics.md §4.4–§4.7), evaluated on every bbo/ctx frame of a market with a
position and by a backup timer; the first rule that fires names the exit:

1. ``time_stop``       held > ``time_stop_ms``
2. ``quick_profit``    held ≥ min hold and PnL at the exit side ≥ ``quick_profit_bps``
3. ``edge_evaporated`` held ≥ min hold and the entry-side gap to the oracle ≤ threshold
4. ``trailing_stop``   oracle PnL peaked ≥ activation and fell back ≥ ``trail_bps``
5. ``oracle_reversal`` ≥ ``exit_against_moves`` oracle moves against us since entry
6. ``oracle_catchup``  ≥ ``exit_with_moves`` oracle moves with us since entry (edge consumed)
7. ``mark_regression`` after ``min_hold_ms``: the exit-side price has come back to within
   ``thr`` of the oracle (``thr`` = max(exit threshold, entry edge × scale), decaying over the
   holding time), unless that would book a loss smaller than ``min_loss_exit_bps``.

Fixes of the predecessor: the decay horizon is the configured time stop, not a constant 30 s
(L3); the oracle-exit baseline is set when the position opens from the single fill path, so
every position has one (L13); one evaluation serves all rules, so two monitors can never race
each other into duplicate flattens (BUG-004, #36).
"""

from __future__ import annotations

import attrs

from engine.config import ExitsConfig
from engine.core.market import MarketState
from engine.core.oracle import DOWN, UP

TIME_STOP = "time_stop"
QUICK_PROFIT = "quick_profit"
EDGE_EVAPORATED = "edge_evaporated"
TRAILING_STOP = "trailing_stop"
ORACLE_REVERSAL = "oracle_reversal"
ORACLE_CATCHUP = "oracle_catchup"
MARK_REGRESSION = "mark_regression"
EXIT_REASONS = (TIME_STOP, QUICK_PROFIT, EDGE_EVAPORATED, TRAILING_STOP, ORACLE_REVERSAL,
                ORACLE_CATCHUP, MARK_REGRESSION)


@attrs.define(slots=True)
class ExitState:
    """Per-position exit bookkeeping, created when the position opens (never on a resync)."""

    direction: int  # +1 long, -1 short
    entry_px: float
    entry_ms: float
    entry_edge_bps: float | None
    entry_oracle_px: float | None
    base_moves_with: int
    base_moves_against: int
    best_pnl_bps: float = 0.0
    trail_active: bool = False


def open_exit_state(direction: int, entry_px: float, entry_ms: float,
                    entry_edge_bps: float | None, m: MarketState) -> ExitState:
    """Baseline of the oracle-exit rules at entry (consecutive counts are deltas from here)."""
    with_dir = UP if direction > 0 else DOWN
    against_dir = -with_dir
    return ExitState(
        direction=direction,
        entry_px=entry_px,
        entry_ms=entry_ms,
        entry_edge_bps=entry_edge_bps,
        entry_oracle_px=m.oracle_px,
        base_moves_with=m.tracker.consecutive(with_dir, entry_ms),
        base_moves_against=m.tracker.consecutive(against_dir, entry_ms),
    )


def decay_factor(held_ms: float, cfg: ExitsConfig) -> float:
    """Linear decay of the mark-regression threshold from 1 to ``decay_min_factor``."""
    if not cfg.time_decay_enabled or held_ms <= cfg.decay_start_ms:
        return 1.0
    span = cfg.time_stop_ms - cfg.decay_start_ms
    progress = min(1.0, (held_ms - cfg.decay_start_ms) / span)
    return max(cfg.decay_min_factor, 1.0 - (1.0 - cfg.decay_min_factor) * progress)


def exit_reference_px(st: ExitState, m: MarketState) -> float | None:
    """The price a flatten crosses: the bid when closing a long, the ask when closing a short."""
    return m.bid_px if st.direction > 0 else m.ask_px


def evaluate_exit(st: ExitState, m: MarketState, now_ms: float, cfg: ExitsConfig) -> str | None:
    """Return the exit reason that fires now, or None. Updates trailing-stop bookkeeping."""
    held = now_ms - st.entry_ms
    if held > cfg.time_stop_ms:
        return TIME_STOP
    long = st.direction > 0
    bid, ask, oracle = m.bid_px, m.ask_px, m.oracle_px
    exit_px = bid if long else ask
    pnl_bps: float | None = None
    if exit_px is not None and st.entry_px > 0:
        pnl_bps = ((exit_px - st.entry_px) if long else (st.entry_px - exit_px)) / st.entry_px * 1e4
    if (cfg.quick_profit_bps and held >= cfg.quick_profit_min_hold_ms and pnl_bps is not None
            and pnl_bps >= cfg.quick_profit_bps):
        return QUICK_PROFIT
    if cfg.edge_evap_enabled and held >= cfg.edge_evap_min_hold_ms and oracle:
        entry_side = ask if long else bid
        if entry_side is not None:
            remaining = ((oracle - entry_side) if long else (entry_side - oracle)) / oracle * 1e4
            if remaining <= cfg.edge_evap_threshold_bps:
                return EDGE_EVAPORATED
    if cfg.oracle_exit_enabled and held >= cfg.oracle_min_hold_ms and oracle:
        reason = _oracle_exit(st, m, now_ms, cfg, oracle)
        if reason is not None:
            return reason
    if held < cfg.min_hold_ms or exit_px is None or not oracle:
        return None
    base = cfg.exit_threshold_bps
    if cfg.entry_edge_scaling and st.entry_edge_bps is not None:
        base = max(base, st.entry_edge_bps * cfg.entry_edge_scale)
    thr = base * decay_factor(held, cfg)
    if long:
        converged = exit_px >= oracle * (1 - thr / 1e4)
    else:
        converged = exit_px <= oracle * (1 + thr / 1e4)
    if not converged:
        return None
    if cfg.min_loss_exit_bps and pnl_bps is not None and -cfg.min_loss_exit_bps < pnl_bps < 0:
        return None  # a small loss: leave it to the oracle exits or the time stop
    return MARK_REGRESSION


def _oracle_exit(st: ExitState, m: MarketState, now_ms: float, cfg: ExitsConfig,
                 oracle: float) -> str | None:
    if cfg.trailing_stop and st.entry_oracle_px:
        move = (oracle - st.entry_oracle_px) / st.entry_oracle_px * 1e4
        pnl = move if st.direction > 0 else -move
        if pnl > st.best_pnl_bps:
            st.best_pnl_bps = pnl
        if st.best_pnl_bps >= cfg.trail_activation_bps:
            st.trail_active = True
        if st.trail_active and st.best_pnl_bps - pnl >= cfg.trail_bps:
            return TRAILING_STOP
    with_dir = UP if st.direction > 0 else DOWN
    tracker = m.tracker
    d_against = tracker.consecutive(-with_dir, now_ms) - st.base_moves_against
    d_with = tracker.consecutive(with_dir, now_ms) - st.base_moves_with
    if d_against >= cfg.exit_against_moves:
        return ORACLE_REVERSAL
    if d_with >= cfg.exit_with_moves:
        return ORACLE_CATCHUP
    return None
