"""Spot fees charged in the base coin (Bybit: a spot buy's fee is taken from the coin bought).

The paper venue keeps the coin it withholds; the two-leg intent's spot leg is Σ fills less those
fees, so at every moment — opening, hedged, after the round trip — the spot inventory the
engine books equals the venue's coin balance *exactly* (Decimal), the hedge buys enough that
what arrives matches the perp, and the close never tries to sell coin the venue does not hold.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import FundingConfig
from engine.core.neutral import (
    BookTop,
    FundingQuote,
    Instrument,
    InstrumentKind,
    OrderFill,
    OrderReject,
    PlaceOrder,
    Side,
)
from engine.core.paper_two_leg import PaperTwoLegVenue
from engine.replay.funding_backtest import FundingBacktest, Tick

H = 3_600_000
SPOT_K, PERP_K = InstrumentKind.SPOT, InstrumentKind.LINEAR_PERP
T0 = 1_700_000_000_000 - 1_700_000_000_000 % H
PERP = Instrument("bybit", "BTCUSDT", PERP_K, Decimal("0.1"), Decimal("0.001"),
                  Decimal("0.001"), Decimal("5"), funding_interval_ms=H,
                  taker_fee=0.00055, maker_fee=0.0002)


def spot(fee: float, lot: str) -> Instrument:
    return Instrument("bybit", "BTCUSDT", SPOT_K, Decimal("0.01"), Decimal(lot), Decimal(lot),
                      Decimal("5"), taker_fee=fee, maker_fee=fee)


def cfg(notional: float) -> FundingConfig:
    return FundingConfig(symbols=["BTCUSDT"], min_expected_apr=0.1, exit_apr=0.05,
                         pre_event_open_minutes=10, expected_hold_hours=24,
                         notional_usd=notional, max_total_notional_usd=notional * 2,
                         quote_stale_ms=5_000, leg_risk_budget_usd_s=notional * 20,
                         leg_deadline_s=5)


def market(t: int, rate: float, px: float) -> list[Tick]:
    nxt = (t // H + 1) * H
    return [Tick(t, FundingQuote("bybit", "BTCUSDT", rate, nxt, H, px, px, px - 0.5, px + 0.5,
                                 t)),
            Tick(t, BookTop("bybit", "BTCUSDT", SPOT_K, px - 0.5, 5.0, px + 0.5, 5.0, t)),
            Tick(t, BookTop("bybit", "BTCUSDT", PERP_K, px - 0.5, 5.0, px + 0.5, 5.0, t))]


def test_a_spot_buy_pays_its_fee_in_the_coin_bought_and_a_sell_in_usdt() -> None:
    sp = spot(0.001, "0.000001")
    v = PaperTwoLegVenue({"BTCUSDT": sp}, {"BTCUSDT": PERP}, latency_ms=0, tid_prefix="t")
    v.on_book(BookTop("bybit", "BTCUSDT", SPOT_K, 59_999.0, 5.0, 60_001.0, 5.0, 0))
    v.submit(PlaceOrder("bybit", "BTCUSDT", SPOT_K, Side.BUY, Decimal("0.01"), "b1"), 0)
    (buy,) = [e for e in v.due(0) if isinstance(e, OrderFill)]
    assert buy.fee_base == 0.00001 and buy.fee == 0.00001 * 60_001.0
    assert v.spot_bal["BTCUSDT"] == Decimal("0.00999")  # 0.01 × (1 − 0.1 %)
    # the whole 0.01 cannot be sold back: the venue holds less
    v.submit(PlaceOrder("bybit", "BTCUSDT", SPOT_K, Side.SELL, Decimal("0.01"), "s1"), 0)
    (rej,) = v.due(0)
    assert isinstance(rej, OrderReject) and rej.reason.value == "insufficient_balance"
    v.submit(PlaceOrder("bybit", "BTCUSDT", SPOT_K, Side.SELL, Decimal("0.00999"), "s2"), 0)
    (sell,) = [e for e in v.due(0) if isinstance(e, OrderFill)]
    assert sell.fee_base == 0.0 and sell.fee == 0.00999 * 59_999.0 * 0.001
    assert v.spot_bal["BTCUSDT"] == 0


def _spot_fills(records: list[dict[str, Any]]) -> Decimal:
    return sum((Decimal(repr(r["qty"])) - Decimal(repr(r["fee_base"])) if r["side"] == "buy"
                else -Decimal(repr(r["qty"])) for r in records
                if r["type"] == "fill" and r["leg"] == "spot"), Decimal(0))


@settings(max_examples=60, deadline=None)
@given(fee=st.sampled_from([0.0, 0.0001, 0.00055, 0.001, 0.0018]),
       lot=st.sampled_from(["0.000001", "0.00001", "0.0001"]),
       notional=st.sampled_from([500.0, 1000.0, 3000.0]),
       px=st.floats(20_000, 90_000).map(lambda x: round(x, 1)),
       latency=st.sampled_from([0, 40, 300]),
       lag=st.sampled_from([0.0, 500.0]),
       negative=st.booleans())
def test_after_a_round_trip_the_spot_inventory_is_the_venues_balance_exactly(
        fee: float, lot: str, notional: float, px: float, latency: int, lag: float,
        negative: bool) -> None:
    sp = spot(fee, lot)
    start = Decimal("0.2") if negative else Decimal(0)
    bt = FundingBacktest(cfg(notional), {"BTCUSDT": sp}, {"BTCUSDT": PERP}, start_ms=T0,
                         latency_ms=latency, extra_latency_ms={SPOT_K: lag},
                         spot_balances={"BTCUSDT": float(start)} if negative else None)
    sign = -1 if negative else 1
    flip = T0 + H + 5 * 60_000
    hedged_seen = False
    for t in range(T0 + 55 * 60_000, T0 + H + 10 * 60_000, 2_000):
        for tick in market(t, sign * (0.001 if t < flip else -0.0005), px):
            bt.feed(tick)
        it = bt.core.intents.get("BTCUSDT")
        if it is not None and not bt.venue.in_flight():
            # what the engine books is what the venue holds, to the last satoshi
            assert bt.venue.spot_bal.get("BTCUSDT", Decimal(0)) - start == it.pos["b"]
            if it.state == "hedged":
                hedged_seen = True
                # the buy was grossed up by its fee: the hedge is short of the perp by less
                # than one spot lot (never by the fee)
                assert abs(it.net) < sp.lot_size or abs(it.net) < sp.min_qty
    bt.run([], end_ms=T0 + H + 12 * 60_000)
    assert hedged_seen
    assert not bt.core.intents
    assert not [r for r in bt.records if r["type"] in ("reject", "anomaly")]
    (closed,) = [r for r in bt.records if r["type"] == "closed"]
    held = bt.venue.spot_bal.get("BTCUSDT", Decimal(0)) - start
    assert held == _spot_fills(bt.records)  # Σ fills − base-coin fees, exactly
    assert Decimal(repr(closed["residual_spot"])) == held
    assert abs(held) < sp.lot_size  # the close sold (or bought back) all it could
    assert bt.venue.perp_pos.get("BTCUSDT", Decimal(0)) == 0
    if fee > 0:
        # every fee is in the fees, at the fill price; the basis is what the price did
        fills = [r for r in bt.records if r["type"] == "fill"]
        assert closed["fees"] == sum(f["fee"] for f in fills) or abs(
            closed["fees"] - sum(f["fee"] for f in fills)) < 1e-9
        fee_coin = sum(f["fee_base"] * f["price"] for f in fills)
        assert (fee_coin > 0) is (not negative or any(
            f["side"] == "buy" and f["leg"] == "spot" for f in fills))
