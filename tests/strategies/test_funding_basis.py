"""The funding/basis strategy's decisions, property-tested: APR from the venue's own interval,
entry only when expected funding beats both legs' costs + margin, the pre-event window,
hold_across_events, negative funding only with spot inventory, the basis guard, rebalance
outside the band, and close on sign flip / low APR / kill."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import FundingConfig
from engine.core.neutral import BookTop, FundingQuote, Instrument, InstrumentKind
from engine.strategies.funding_basis import (
    YEAR_MS,
    Action,
    FundingBasisStrategy,
    Holding,
    MarketView,
    decide_entry,
    decide_held,
    funding_apr,
    net_delta_bps,
    round_trip_cost_bps,
    settlements_within,
)

H = 3_600_000
NOW = 1_700_000_000_000
SPOT = Instrument("bybit", "BTCUSDT", InstrumentKind.SPOT, Decimal("0.1"), Decimal("0.000001"),
                  Decimal("0.000011"), Decimal("5"))
PERP = Instrument("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP, Decimal("0.1"),
                  Decimal("0.001"), Decimal("0.001"), Decimal("5"), funding_interval_ms=8 * H)


def quote(rate: float, to_event_ms: int, interval_ms: int = 8 * H, px: float = 60_000.0,
          basis_bps: float = 0.0, ts: int = NOW) -> FundingQuote:
    perp = px * (1 + basis_bps / 1e4)
    return FundingQuote("bybit", "BTCUSDT", rate, NOW + to_event_ms, interval_ms, perp, px,
                        perp - 0.5, perp + 0.5, ts)


def book(px: float = 60_000.0, ts: int = NOW) -> BookTop:
    return BookTop("bybit", "BTCUSDT", InstrumentKind.SPOT, px - 0.5, 1.0, px + 0.5, 1.0, ts)


def view(q: FundingQuote | None, spot: BookTop | None = None, inventory: float = 0.0
         ) -> MarketView:
    return MarketView(q, spot if spot is not None else book(), None, SPOT, PERP, inventory)


cfg_st = st.builds(
    lambda **kw: FundingConfig(exit_apr=0.0, **kw),
    min_expected_apr=st.floats(0.0, 0.3),
    expected_hold_hours=st.floats(0.5, 200),
    pre_event_open_minutes=st.sampled_from([0.0, 15.0, 60.0, 480.0]),
    hold_across_events=st.booleans(),
    negative_funding=st.sampled_from(["spot_inventory", "off"]),
    max_basis_bps=st.floats(0, 100),
    spot_fee_bps=st.floats(0, 12), perp_fee_bps=st.floats(0, 8),
    slippage_bps=st.floats(0, 5), margin_bps=st.floats(0, 5),
    notional_usd=st.floats(10, 100_000), max_total_notional_usd=st.floats(10, 200_000),
)
rate_st = st.floats(-0.004, 0.004).filter(lambda r: r != 0)
interval_st = st.sampled_from([1 * H, 2 * H, 4 * H, 8 * H])


def test_apr_uses_the_venues_interval() -> None:
    assert funding_apr(0.0001, 8 * H) == pytest.approx(0.0001 * 3 * 365)
    assert funding_apr(0.0001, 1 * H) == pytest.approx(8 * funding_apr(0.0001, 8 * H))  # type: ignore[operator]
    assert funding_apr(0.0001, 0) is None
    assert YEAR_MS == 365 * 24 * H


def test_a_one_hour_symbol_opens_where_an_8h_assumption_would_not() -> None:
    """0.00005 per hour is 43.8 % APR; read as 8-hourly it would be 5.5 %, below 10 %."""
    cfg = FundingConfig(min_expected_apr=0.10, pre_event_open_minutes=0,
                        expected_hold_hours=120)  # 120 hourly settlements beat 41 bps costs
    d1 = decide_entry("BTCUSDT", view(quote(0.00005, 30 * 60_000, 1 * H)), NOW, cfg, 0.0)
    d8 = decide_entry("BTCUSDT", view(quote(0.00005, 30 * 60_000, 8 * H)), NOW, cfg, 0.0)
    assert d1.action is Action.OPEN and d1.apr == pytest.approx(0.438)
    assert d8.action is Action.SKIP and "APR" in d8.reason


def test_unknown_interval_never_assumes_8h() -> None:
    perp = attrs.evolve(PERP, funding_interval_ms=0)
    v = MarketView(quote(0.001, 60_000, 0), book(), None, SPOT, perp)
    d = decide_entry("BTCUSDT", v, NOW, FundingConfig(), 0.0)
    assert d.action is Action.SKIP and d.reason == "funding interval unknown"


@settings(max_examples=600, deadline=None)
@given(cfg=cfg_st, rate=rate_st, interval=interval_st,
       to_event=st.integers(-60_000, 9 * H), basis=st.floats(-40, 40),
       inventory=st.floats(0, 5), used=st.floats(0, 20_000))
def test_entry_properties(cfg: FundingConfig, rate: float, interval: int, to_event: int,
                          basis: float, inventory: float, used: float) -> None:
    q = quote(rate, to_event, interval, basis_bps=basis)
    d = decide_entry("BTCUSDT", view(q, inventory=inventory), NOW, cfg, used)
    if d.action is not Action.OPEN:
        assert d.action is Action.SKIP and d.qty == 0
        return
    # the pre-event window and the future event
    assert 0 < to_event
    if cfg.pre_event_open_minutes > 0:
        assert to_event <= cfg.pre_event_open_minutes * 60_000
    # APR from the given interval, above the threshold
    assert abs(rate) * YEAR_MS / interval >= cfg.min_expected_apr
    # direction, negative funding only from inventory
    assert d.direction == (1 if rate > 0 else -1)
    if rate < 0:
        assert cfg.negative_funding == "spot_inventory" and float(d.qty) <= inventory + 1e-12
    # the basis guard
    assert abs(basis) <= cfg.max_basis_bps + 1e-6
    # both legs tradable, same base qty on the coarser lot, within the notional budget
    assert d.qty % PERP.lot_size == 0 and d.qty >= PERP.min_qty
    notional = float(d.qty) * 60_000.0
    assert notional <= min(cfg.notional_usd, cfg.max_total_notional_usd - used) + 1e-6
    # expected funding over the expected hold beats both legs' fees + slippage + margin
    hold = cfg.expected_hold_hours * H if cfg.hold_across_events else to_event
    n = 0
    t = NOW + to_event
    while t <= NOW + hold:
        n, t = n + 1, t + interval
    assert n >= 1
    gain = abs(rate) * notional * n
    spot_fee = max(cfg.spot_fee_bps, SPOT.taker_fee * 1e4)  # the venue's rate when higher
    perp_fee = max(cfg.perp_fee_bps, PERP.taker_fee * 1e4)
    cost = notional * (2 * (spot_fee + perp_fee) + 4 * cfg.slippage_bps
                       + cfg.margin_bps) / 1e4
    assert d.expected_gain == pytest.approx(gain) and d.expected_cost == pytest.approx(cost)
    assert gain > cost


def test_hold_across_events_off_counts_one_settlement_and_closes_after_it() -> None:
    cfg = FundingConfig(hold_across_events=False, pre_event_open_minutes=0,
                        min_expected_apr=0.01, exit_apr=0.0, spot_fee_bps=0.0, perp_fee_bps=0.0,
                        slippage_bps=0.0, margin_bps=0.0)
    free = MarketView(quote(0.0001, H, 8 * H), book(), None, attrs.evolve(SPOT, taker_fee=0.0),
                      attrs.evolve(PERP, taker_fee=0.0))  # no fees at all: one event pays
    d = decide_entry("BTCUSDT", free, NOW, cfg, 0.0)
    assert d.action is Action.OPEN
    assert d.expected_gain == pytest.approx(0.0001 * float(d.qty) * 60_000.0)  # one event
    h = Holding("BTCUSDT", 1, float(d.qty), -float(d.qty), NOW, NOW + H)
    before = decide_held(h, view(quote(0.0001, H, ts=NOW + H - 1), book(ts=NOW + H - 1)),
                         NOW + H - 1, cfg)
    after = decide_held(h, view(quote(0.0001, 8 * H, ts=NOW + H + 1), book(ts=NOW + H + 1)),
                        NOW + H + 1, cfg)
    assert before.action is Action.HOLD and after.action is Action.CLOSE
    on = attrs.evolve(cfg, hold_across_events=True)
    assert decide_held(h, view(quote(0.0001, 8 * H, ts=NOW + H + 1), book(ts=NOW + H + 1)),
                       NOW + H + 1, on).action is Action.HOLD


def test_pre_event_window_is_enforced() -> None:
    cfg = FundingConfig(pre_event_open_minutes=15, min_expected_apr=0.01, exit_apr=0.0,
                        expected_hold_hours=72)
    far = decide_entry("BTCUSDT", view(quote(0.001, 16 * 60_000)), NOW, cfg, 0.0)
    near = decide_entry("BTCUSDT", view(quote(0.001, 14 * 60_000)), NOW, cfg, 0.0)
    assert far.action is Action.SKIP and far.reason == "outside the pre-event window"
    assert near.action is Action.OPEN


def test_negative_funding_needs_inventory_or_is_off() -> None:
    cfg = FundingConfig(pre_event_open_minutes=0, expected_hold_hours=72)
    q = quote(-0.001, H)
    assert decide_entry("BTCUSDT", view(q, inventory=0.0), NOW, cfg, 0.0).action is Action.SKIP
    d = decide_entry("BTCUSDT", view(q, inventory=0.01), NOW, cfg, 0.0)
    assert d.action is Action.OPEN and d.direction == -1 and d.qty == Decimal("0.010")
    off = attrs.evolve(cfg, negative_funding="off")
    assert decide_entry("BTCUSDT", view(q, inventory=1.0), NOW, off, 0.0).reason == (
        "negative funding not traded")


def test_stale_or_missing_data_never_opens() -> None:
    cfg = FundingConfig(pre_event_open_minutes=0, expected_hold_hours=72)
    assert decide_entry("BTCUSDT", view(None), NOW, cfg, 0.0).action is Action.SKIP
    old = quote(0.001, H, ts=NOW - 20_000)
    assert decide_entry("BTCUSDT", view(old), NOW, cfg, 0.0).reason == "quote or spot book stale"


@settings(max_examples=300, deadline=None)
@given(rate=rate_st, direction=st.sampled_from([1, -1]), spot=st.floats(0.001, 10),
       drift=st.floats(-0.5, 0.5), killed=st.booleans())
def test_held_properties(rate: float, direction: int, spot: float, drift: float,
                         killed: bool) -> None:
    cfg = FundingConfig(exit_apr=0.02)
    s = spot * direction
    h = Holding("BTCUSDT", direction, s, -s * (1 + drift), NOW - H, NOW + H)
    d = decide_held(h, view(quote(rate, H)), NOW, cfg, killed)
    apr = abs(rate) * YEAR_MS / (8 * H)
    if killed:
        assert d.action is Action.CLOSE and d.reason == "killed"
    elif rate * direction < 0:
        assert d.action is Action.CLOSE and d.reason == "funding sign flipped"
    elif apr < cfg.exit_apr:
        assert d.action is Action.CLOSE
    elif net_delta_bps(h) > cfg.rebalance_band_bps and d.action is Action.REBALANCE:
        after = attrs.evolve(h, perp_qty=h.perp_qty + d.perp_delta)
        assert abs(after.spot_qty + after.perp_qty) < float(PERP.lot_size) + 1e-12
        assert abs(after.spot_qty + after.perp_qty) < abs(h.spot_qty + h.perp_qty)
    else:
        assert d.action in (Action.HOLD, Action.REBALANCE)
        if d.action is Action.HOLD and net_delta_bps(h) > cfg.rebalance_band_bps:
            assert abs(h.spot_qty + h.perp_qty) < float(PERP.lot_size)  # below one lot


def test_the_instruments_own_fee_counts_when_above_the_configured_one() -> None:
    """A config written for a cheaper fee tier must not let through an entry the venue's fees
    make unprofitable: 30 bps of funding over one settlement vs 0.1 % taker on each spot fill."""
    cfg = FundingConfig(pre_event_open_minutes=0, hold_across_events=False, spot_fee_bps=0.0,
                        perp_fee_bps=0.0, slippage_bps=0.0, margin_bps=0.0,
                        min_expected_apr=0.01, exit_apr=0.0)
    cheap = decide_entry("BTCUSDT", view(quote(0.003, H)), NOW, cfg, 0.0)
    assert cheap.action is Action.OPEN  # the instruments' default taker 5.5 bps: 22 < 30 bps
    dear = MarketView(quote(0.003, H), book(), None, attrs.evolve(SPOT, taker_fee=0.001),
                      attrs.evolve(PERP, taker_fee=0.0006))
    d = decide_entry("BTCUSDT", dear, NOW, cfg, 0.0)
    assert d.action is Action.SKIP and d.reason == "expected funding does not beat costs"
    assert d.expected_cost == pytest.approx(float(cheap.qty) * 60_000 * 2 * (10 + 6) / 1e4)


def test_settlements_within() -> None:
    assert settlements_within(NOW, NOW + H, 8 * H, 0.5 * H) == 0
    assert settlements_within(NOW, NOW + H, 8 * H, H) == 1
    assert settlements_within(NOW, NOW + H, 8 * H, 17 * H) == 3
    assert settlements_within(NOW, NOW - 1, 8 * H, 17 * H) == 0
    assert round_trip_cost_bps(FundingConfig()) == pytest.approx(2 * 15.5 + 8)


def test_strategy_object_tracks_events_and_budget() -> None:
    cfg = FundingConfig(symbols=["BTCUSDT"], pre_event_open_minutes=0, notional_usd=3000,
                        max_total_notional_usd=5000, expected_hold_hours=72)
    s = FundingBasisStrategy(cfg, {"BTCUSDT": SPOT}, {"BTCUSDT": PERP})
    assert s.evaluate(NOW)[0].reason == "no quote or spot book yet"
    s.on_quote(quote(0.001, H))
    s.on_book(book())
    (d,) = s.evaluate(NOW)
    assert d.action is Action.OPEN and float(d.qty) * 60_000 <= 3000
    s.holdings["BTCUSDT"] = Holding("BTCUSDT", 1, float(d.qty), -float(d.qty), NOW, NOW + H)
    assert s.evaluate(NOW)[0].action is Action.HOLD
    s.killed = True
    assert s.evaluate(NOW)[0].action is Action.CLOSE
