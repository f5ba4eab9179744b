"""Risk gates: each blocks, fail-closed order, EWMA protection, transition-only events."""

from __future__ import annotations

from engine.core import gates as g

from .helpers import T0, make_core

LOOSE = ("[detector]\nsession_aware=false\nmin_consecutive_moves=0\noracle_direction_filter=false\n"
         "min_quote_lag_ms=0\nmin_confidence=0\nmin_edge_above_baseline_bps=0\n")


def _ready(core, t=T0, bid=99.99, ask=100.01, oracle=100.0, mark=100.0):
    core.on_bbo(0, 1, bid, 100.0, ask, 100.0, t)
    core.on_ctx(0, oracle, mark, t)


def test_no_data_until_bbo_and_ctx() -> None:
    core = make_core(LOOSE)
    core.on_bbo(0, 1, 99.99, 1, 100.01, 1, T0)
    assert core.markets[0].blocked_by == g.NO_DATA
    core.on_ctx(0, 100.0, 100.0, T0)
    assert core.markets[0].blocked_by is None


def test_ctx_age_blocks_and_recovers() -> None:
    core = make_core(LOOSE + "[gates]\nmax_ctx_age_ms = 8000\n")
    _ready(core)
    core.on_bbo(0, 2, 99.99, 100.0, 100.01, 100.0, T0 + 8001)
    assert core.markets[0].blocked_by == g.CTX_AGE
    core.on_ctx(0, 100.0, 100.0, T0 + 8002)
    assert core.markets[0].blocked_by is None
    ev = core.drain_events()
    assert [e.gate for e in ev] == [None, g.CTX_AGE, None]
    assert "ctx_age_ms=8001" in ev[1].detail
    assert ev[2].blocked_for_ms == 1


def test_stale_ctx_blocks_signal() -> None:
    core = make_core(LOOSE)
    _ready(core)
    # Oracle far above the ask but the ctx is 9 s old when the bbo arrives: no signal.
    core.on_ctx(0, 100.5, 100.5, T0 + 1)
    assert core.on_bbo(0, 3, 99.99, 100.0, 100.01, 100.0, T0 + 9002) is None


def test_bbo_age_gate_when_enabled() -> None:
    core = make_core(LOOSE + "[gates]\nmax_bbo_age_ms = 2000\n")
    _ready(core)
    assert core.on_ctx(0, 100.5, 100.5, T0 + 2001) is None
    assert core.markets[0].blocked_by == g.BBO_AGE


def test_null_side_and_crossed_book_block() -> None:
    core = make_core(LOOSE)
    _ready(core)
    assert core.on_bbo(0, 2, None, None, 100.01, 1.0, T0 + 1) is None
    assert core.markets[0].blocked_by == g.BOOK_INVALID
    assert core.on_bbo(0, 3, 100.02, 1.0, 100.01, 1.0, T0 + 2) is None
    assert core.markets[0].blocked_by == g.BOOK_CROSSED
    assert core.on_bbo(0, 4, 100.01, 1.0, 100.01, 1.0, T0 + 3) is None  # locked
    assert core.markets[0].blocked_by == g.BOOK_CROSSED


def test_mark_missing_fails_closed() -> None:
    core = make_core(LOOSE)
    core.on_bbo(0, 1, 99.99, 100.0, 100.01, 100.0, T0)
    assert core.on_ctx(0, 100.5, None, T0) is None
    assert core.markets[0].blocked_by == g.MARK_MISSING


def test_mark_mid_divergence() -> None:
    core = make_core(LOOSE + "[gates]\nmax_mark_mid_bps = 50\n")
    _ready(core, mark=100.6)  # 60 bps from mid 100
    assert core.markets[0].blocked_by == g.MARK_MID


def test_time_regression_rejects_old_frame_and_blocks_temporarily() -> None:
    core = make_core(LOOSE + "[gates]\ntime_regression_block_ms = 2000\n")
    core.on_bbo(0, 5000, 99.99, 100.0, 100.01, 100.0, T0)
    core.on_ctx(0, 100.0, 100.0, T0)
    core.on_bbo(0, 4000, 90.0, 100.0, 90.01, 100.0, T0 + 10)  # older server time
    m = core.markets[0]
    assert m.bid_px == 99.99  # regressing data never overwrites newer data
    assert m.blocked_by == g.TIME_REGRESSION
    core.on_bbo(0, 5001, 99.99, 100.0, 100.01, 100.0, T0 + 2011)
    assert m.blocked_by is None
    assert core.time_regressions == 1


def test_spread_shock_blocks_and_ewma_untouched_by_bad_data() -> None:
    core = make_core(LOOSE + "[gates]\nspread_shock_multiple = 6\nspread_ewma_tau_ms = 30000\n")
    _ready(core)  # spread 2 bps
    m = core.markets[0]
    before = m.spread_ewma.value
    samples = m.spread_ewma.samples
    # Crossed/empty books are prerequisites: they must not feed the EWMA (review P0-2, L23).
    core.on_bbo(0, 2, None, None, 100.01, 1.0, T0 + 100)
    core.on_bbo(0, 3, 100.5, 1.0, 100.01, 1.0, T0 + 200)
    assert m.spread_ewma.value == before and m.spread_ewma.samples == samples
    # A 20 bps spread is > 6x the 2 bps EWMA.
    core.on_bbo(0, 4, 99.9, 100.0, 100.1, 100.0, T0 + 300)
    assert m.blocked_by == g.SPREAD_SHOCK


def test_spread_ewma_is_per_market() -> None:
    core = make_core(LOOSE, coins=("xyz:A", "xyz:B"))
    core.on_bbo(0, 1, 99.0, 1.0, 101.0, 1.0, T0)  # 200 bps spread in A
    core.on_ctx(0, 100.0, 100.0, T0)
    core.on_bbo(1, 1, 99.99, 1.0, 100.01, 1.0, T0)
    core.on_ctx(1, 100.0, 100.0, T0)
    assert core.markets[0].spread_ewma.value != core.markets[1].spread_ewma.value


def test_halt_and_resume() -> None:
    core = make_core(LOOSE)
    _ready(core)
    core.halt("xyz:SILVER", "circuit_breaker", T0 + 1)
    assert core.markets[0].blocked_by == g.HALT
    assert core.on_ctx(0, 101.0, 101.0, T0 + 2) is None
    core.resume("xyz:SILVER", T0 + 3)
    assert core.markets[0].blocked_by is None


def test_configured_halt_and_delisted() -> None:
    core = make_core(LOOSE + "[gates]\nhalted_markets = ['xyz:SILVER']\n")
    _ready(core)
    assert core.markets[0].blocked_by == g.HALT


def test_disconnect_makes_markets_not_live_until_fresh_data() -> None:
    core = make_core(LOOSE)
    _ready(core)
    core.on_disconnect(T0 + 1)
    assert core.markets[0].blocked_by == g.NO_DATA
    assert core.on_ctx(0, 101.0, 101.0, T0 + 2) is None  # ctx alone is not enough
    sig = core.on_bbo(0, 1, 99.99, 100.0, 100.01, 100.0, T0 + 3)  # server time may restart
    assert sig is not None and core.markets[0].blocked_by is None


def test_transitions_only_logged_on_change() -> None:
    core = make_core(LOOSE)
    _ready(core)
    core.drain_events()
    for i in range(50):
        core.on_bbo(0, 10 + i, 99.99, 100.0, 100.01, 100.0, T0 + i)
    assert core.drain_events() == []
