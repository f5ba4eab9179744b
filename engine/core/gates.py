"""Market-data risk gates, evaluated per market before the detector; the first block wins.

Order (fail closed, prerequisites first so bad data never reaches the spread EWMA — the
predecessor's review P0-2):

1. ``halt``            market halted (delisted, configured, or by a circuit breaker)
2. ``no_data``         fresh bbo and ctx not both received on the current connection
3. ``bbo_age``         now − bbo receive time > ``max_bbo_age_ms`` (0 = off)
4. ``ctx_age``         now − ctx receive time > ``max_ctx_age_ms`` (receipt, not price change: BUG-002)
5. ``time_regression`` a bbo with an older server time arrived within ``time_regression_block_ms``
6. ``book_invalid``    a side is empty (null) — never treated as price 0
7. ``book_crossed``    bid ≥ ask (crossed or locked)
8. ``mark_missing``    no mark price (fail closed: P28)
9. ``mark_mid_divergence`` |mark − mid| / mid > ``max_mark_mid_bps`` (0 = off)
10. ``spread_shock``   spread > ``spread_shock_multiple`` × the market's own spread EWMA

The spread EWMA (time constant ``spread_ewma_tau_ms``, per market — the predecessor's was global
across markets, L2) is updated only when gates 1–9 pass, after the shock comparison.
"""

from __future__ import annotations

from math import exp

from engine.config import GatesConfig
from engine.core.market import MarketState

HALT = "halt"
NO_DATA = "no_data"
BBO_AGE = "bbo_age"
CTX_AGE = "ctx_age"
TIME_REGRESSION = "time_regression"
BOOK_INVALID = "book_invalid"
BOOK_CROSSED = "book_crossed"
MARK_MISSING = "mark_missing"
MARK_MID = "mark_mid_divergence"
SPREAD_SHOCK = "spread_shock"

GATE_ORDER = (HALT, NO_DATA, BBO_AGE, CTX_AGE, TIME_REGRESSION, BOOK_INVALID, BOOK_CROSSED,
              MARK_MISSING, MARK_MID, SPREAD_SHOCK)


def check_gates(m: MarketState, now_ms: float, cfg: GatesConfig) -> str | None:
    """Return the first blocking gate's name, or None when every gate passes."""
    if m.halted is not None:
        return HALT
    if not (m.fresh_bbo and m.fresh_ctx):
        return NO_DATA
    if cfg.max_bbo_age_ms and now_ms - m.bbo_recv_ms > cfg.max_bbo_age_ms:  # type: ignore[operator]
        return BBO_AGE
    if cfg.max_ctx_age_ms and now_ms - m.ctx_recv_ms > cfg.max_ctx_age_ms:  # type: ignore[operator]
        return CTX_AGE
    if now_ms < m.regression_until_ms:
        return TIME_REGRESSION
    bid = m.bid_px
    ask = m.ask_px
    if bid is None or ask is None:
        return BOOK_INVALID
    if bid >= ask:
        return BOOK_CROSSED
    mark = m.mark_px
    if mark is None:
        return MARK_MISSING
    mid = (bid + ask) * 0.5
    if cfg.max_mark_mid_bps and abs(mark - mid) / mid * 1e4 > cfg.max_mark_mid_bps:
        return MARK_MID
    spread_bps = (ask - bid) / mid * 1e4
    ewma = m.spread_ewma
    prev = ewma.value
    # ewma.update(spread_bps, now_ms), inline (the same operations: one call less per frame)
    if prev is None:
        ewma.value = spread_bps
    else:
        dt = now_ms - ewma.last_ms
        if dt > 0:
            ewma.value = prev + (1.0 - exp(-dt / ewma.tau_ms)) * (spread_bps - prev)
    ewma.last_ms = now_ms
    ewma.samples += 1
    if cfg.spread_shock_multiple and prev is not None and prev > 0:
        if spread_bps > cfg.spread_shock_multiple * prev:
            return SPREAD_SHOCK
    return None


def describe_gate(m: MarketState, gate: str, now_ms: float, cfg: GatesConfig) -> str:
    """Human-readable detail for a block (only computed on pass↔block transitions)."""
    if gate == HALT:
        return f"reason={m.halted}"
    if gate == NO_DATA:
        return f"fresh_bbo={m.fresh_bbo} fresh_ctx={m.fresh_ctx}"
    if gate == BBO_AGE and m.bbo_recv_ms is not None:
        return f"bbo_age_ms={now_ms - m.bbo_recv_ms:.0f} max={cfg.max_bbo_age_ms:.0f}"
    if gate == CTX_AGE and m.ctx_recv_ms is not None:
        return f"ctx_age_ms={now_ms - m.ctx_recv_ms:.0f} max={cfg.max_ctx_age_ms:.0f}"
    if gate == TIME_REGRESSION:
        return f"regressions={m.regressions} blocked_for_ms={m.regression_until_ms - now_ms:.0f}"
    if gate in (BOOK_INVALID, BOOK_CROSSED):
        return f"bid={m.bid_px} ask={m.ask_px}"
    if gate == MARK_MISSING:
        return "markPx unknown"
    if gate == MARK_MID and m.bid_px and m.ask_px and m.mark_px:
        mid = (m.bid_px + m.ask_px) / 2
        return f"mark_mid_bps={abs(m.mark_px - mid) / mid * 1e4:.1f} max={cfg.max_mark_mid_bps}"
    if gate == SPREAD_SHOCK and m.bid_px and m.ask_px:
        mid = (m.bid_px + m.ask_px) / 2
        spread = (m.ask_px - m.bid_px) / mid * 1e4
        return (f"spread_bps={spread:.1f} ewma_bps={m.spread_ewma.value or 0:.1f} "
                f"multiple={cfg.spread_shock_multiple}")
    return ""
