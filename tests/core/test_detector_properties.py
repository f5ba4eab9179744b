"""Hypothesis properties of the detector: crossed side only, buy/sell symmetry, monotone threshold."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.config import DetectorConfig, SizingConfig
from engine.core.core import ObserveCore

from .helpers import T0, make_core

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# One scenario: a series of oracle steps (multiplicative, in bps) each followed by some bbo frames
# whose prices are expressed relative to the oracle, with time gaps in ms.
step = st.tuples(
    st.floats(min_value=-80, max_value=80, allow_nan=False),  # oracle step bps
    st.integers(min_value=0, max_value=4000),  # ms since previous event
    st.lists(
        st.tuples(
            st.floats(min_value=-60, max_value=60, allow_nan=False),  # edge bps (+ = crossed)
            st.floats(min_value=1, max_value=50, allow_nan=False),  # spread bps
            st.floats(min_value=10, max_value=50_000, allow_nan=False),  # book notional $
            st.integers(min_value=0, max_value=900),  # ms after previous frame
        ),
        min_size=0,
        max_size=4,
    ),
)
scenario = st.lists(step, min_size=1, max_size=12)

FAST = ("[detector]\nsession_aware=false\nbaseline_min_samples=1000000\n")


def run(core: ObserveCore, sc, mirror: bool, start_px: float = 100.0):
    """Drive ``core`` through ``sc``; with ``mirror`` every price move is reflected (sell side)."""
    sigs = []
    t = T0
    oracle = start_px
    server_t = 0
    core.on_bbo(0, server_t, start_px * 0.9999, 100.0, start_px * 1.0001, 100.0, t)
    core.on_ctx(0, oracle, oracle, t)
    for step_bps, gap, frames in sc:
        t += gap
        d = step_bps / 1e4
        oracle = oracle * (1 - d) if mirror else oracle * (1 + d)
        s = core.on_ctx(0, oracle, oracle, t)
        if s:
            sigs.append(s)
        for edge_bps, spread_bps, notional, fgap in frames:
            t += fgap
            sigs.extend(core.on_timer(t))
            e = edge_bps / 1e4
            r = 1 - spread_bps / 1e4  # bid = ask * r for a buy-side book
            if not mirror:
                ask = oracle * (1 - e)
                bid = ask * r
            else:
                bid = oracle * (1 + e)
                ask = bid / r
            server_t += 1
            s = core.on_bbo(0, server_t, bid, notional / bid, ask, notional / ask, t)
            if s:
                sigs.append(s)
    sigs.extend(core.on_timer(t + 10_000))
    return sigs


@SETTINGS
@given(scenario)
def test_no_signal_without_a_crossed_side(sc) -> None:
    core = make_core("[detector]\nsession_aware=false\n")
    for mirror in (False, True):
        for s in run(core, sc, mirror):
            f = s.fields
            if f["side"] == "buy":
                assert f["ask_px"] < f["oracle_px"] and f["best_px"] == f["ask_px"]
            else:
                assert f["bid_px"] > f["oracle_px"] and f["best_px"] == f["bid_px"]
            assert f["raw_edge_bps"] >= f["threshold_bps"] > 0
            assert f["suggested_size"] > 0
            assert f["suggested_size"] * f["best_px"] >= 10.0


state = st.tuples(
    st.floats(min_value=1.0, max_value=2_000.0),  # oracle price (a lot stays under $50)
    st.one_of(st.integers(2, 5), st.integers(0, 5)),  # qualifying oracle moves in the run
    st.floats(min_value=0.5, max_value=60.0),  # size of each move, bps
    st.one_of(st.floats(15.0, 120.0), st.floats(-10.0, 120.0)),  # dislocation (edge) bps
    st.floats(min_value=0.5, max_value=30.0),  # spread bps
    st.one_of(st.floats(500.0, 60_000.0), st.floats(30.0, 60_000.0)),  # book notional $
    st.one_of(st.integers(30, 700), st.integers(0, 900)),  # ms since the last oracle change
)


def drive_state(core: ObserveCore, st_, sell: bool):
    """Oracle run of n moves of d bps (up for buy, down for sell), then one bbo frame."""
    oracle, n, d_bps, e_bps, spread_bps, notional, age = st_
    d, e, r = d_bps / 1e4, e_bps / 1e4, 1 - spread_bps / 1e4
    px = oracle
    path = [px]
    for _ in range(n):
        px = px / (1 - d) if sell else px / (1 + d)
        path.append(px)
    path.reverse()  # from the oldest to the current oracle
    t = T0
    for p in path:
        t += 3000
        core.on_ctx(0, p, p, t)
    o = path[-1]
    if sell:
        bid = o * (1 + e)
        ask = bid / r
    else:
        ask = o * (1 - e)
        bid = ask * r
    sigs = []
    s = core.on_bbo(0, 1, bid, notional / bid, ask, notional / ask, t + age)
    if s:
        sigs.append(s)
    sigs.extend(core.on_timer(t + age))
    return sigs


@SETTINGS
@given(state)
def test_buy_sell_symmetry(st_) -> None:
    # size = notional / px, then book notional = size × px: exactly at the minimum book
    # notional the float round trip lands on either side of the bound depending on the side
    assume(abs(st_[5] - SizingConfig().min_book_notional) > 1e-6)
    # a move exactly at oracle_min_move_bps: the up path's change rounds to 1.9999... (not a
    # qualifying move) and the down path's to 2.0000... (found by Hypothesis: 2.0 bps moves)
    assume(abs(st_[2] - DetectorConfig().oracle_min_move_bps) > 1e-6)
    buys = drive_state(make_core(FAST), st_, sell=False)
    sells = drive_state(make_core(FAST), st_, sell=True)
    for s in buys + sells:
        f = s.fields
        # Guard against floating-point ties exactly at a decision boundary.
        assume(abs(f["raw_edge_bps"] - f["threshold_bps"]) > 1e-6)
        assume(abs(f["confidence"] - 0.25) > 1e-6)
        assume(abs(f["oracle_velocity_bps"] - 2.0) > 1e-6)
    assert all(s.side == "buy" for s in buys)
    assert all(s.side == "sell" for s in sells)
    assert len(buys) == len(sells)
    for b, s in zip(buys, sells, strict=True):
        for k in ("raw_edge_bps", "threshold_bps", "consecutive_moves", "oracle_age_ms",
                  "confidence", "liquidity_factor", "oracle_velocity_bps"):
            assert abs(b.fields[k] - s.fields[k]) < 1e-6, k


@SETTINGS
@given(scenario, st.floats(min_value=0, max_value=40), st.floats(min_value=0, max_value=40))
def test_threshold_monotonicity(sc, extra_a, extra_b) -> None:
    lo, hi = sorted((extra_a, extra_b))
    base = "[detector]\nsession_aware=false\nmin_confidence=0\nmin_edge_bps={}\n"
    low = run(make_core(base.format(5 + lo)), sc, mirror=False)
    high = run(make_core(base.format(5 + hi)), sc, mirror=False)
    # Every (side, oracle value) that signals under the higher threshold also signals under the
    # lower one, and the recorded threshold is never lower.
    low_keys = {(s.side, s.fields["oracle_px"]) for s in low}
    for s in high:
        assume(abs(s.fields["raw_edge_bps"] - s.fields["threshold_bps"]) > 1e-6)
        assert (s.side, s.fields["oracle_px"]) in low_keys
    assert len(high) <= len(low)
