"""The two-leg paper venue: fills after the latency against the book then, depth walked where
given else the top's size, fees per fill from the instrument, IOC/limit/post-only semantics,
rejects below the instrument's minimums, reduce-only and spot-balance checks, and funding
settled at ``nextFundingTime`` on the position held then."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.neutral import (
    BookTop,
    CancelOrder,
    FundingQuote,
    FundingSettlement,
    Instrument,
    InstrumentKind,
    OrderAck,
    OrderDone,
    OrderFill,
    OrderReject,
    OrderRequest,
    PlaceOrder,
    RejectReason,
    Side,
)
from engine.core.paper_two_leg import PaperTwoLegVenue

SPOT_K, PERP_K = InstrumentKind.SPOT, InstrumentKind.LINEAR_PERP
SPOT = Instrument("bybit", "BTCUSDT", SPOT_K, Decimal("0.01"), Decimal("0.000001"),
                  Decimal("0.000011"), Decimal("5"), taker_fee=0.001, maker_fee=0.0008)
PERP = Instrument("bybit", "BTCUSDT", PERP_K, Decimal("0.1"), Decimal("0.001"),
                  Decimal("0.001"), Decimal("5"), funding_interval_ms=8 * 3_600_000,
                  taker_fee=0.00055, maker_fee=0.0002)
T0 = 1_700_000_000_000


def venue(**kw: object) -> PaperTwoLegVenue:
    return PaperTwoLegVenue({"BTCUSDT": SPOT}, {"BTCUSDT": PERP}, tid_prefix="boot1",
                            **kw)  # type: ignore[arg-type]


def test_a_per_run_trade_id_prefix_is_required() -> None:
    with pytest.raises(ValueError, match="tid_prefix must be a non-empty per-run string"):
        PaperTwoLegVenue({"BTCUSDT": SPOT}, {"BTCUSDT": PERP}, tid_prefix="")
    v = venue(latency_ms=0)
    v.on_book(top(PERP_K, 59_990.0, 60_000.0))
    v.submit(order(PERP_K, Side.BUY, "0.001", "c1"), T0)
    assert fills(v.due(T0))[0].trade_id == "boot1-t1"


def top(kind: InstrumentKind, bid: float, ask: float, size: float = 1.0, ts: int = T0) -> BookTop:
    return BookTop("bybit", "BTCUSDT", kind, bid, size, ask, size, ts)


def order(kind: InstrumentKind, side: Side, qty: str, cid: str, price: str | None = None,
          **kw: bool) -> PlaceOrder:
    return PlaceOrder("bybit", "BTCUSDT", kind, side, Decimal(qty), cid,
                      price=Decimal(price) if price is not None else None, **kw)


def fills(evs: list[object]) -> list[OrderFill]:
    return [e for e in evs if isinstance(e, OrderFill)]


def rejects(evs: list[object]) -> list[OrderReject]:
    return [e for e in evs if isinstance(e, OrderReject)]


def test_fills_after_the_latency_against_the_book_then_never_the_touch_at_submit() -> None:
    v = venue(latency_ms=80)
    v.on_book(top(PERP_K, 59_999.9, 60_000.0))
    v.submit(order(PERP_K, Side.BUY, "0.01", "c1"), T0)
    assert v.next_wakeup_ms() == T0 + 80
    assert v.due(T0 + 79) == []  # nothing before it arrives
    v.on_book(top(PERP_K, 60_049.9, 60_050.0, ts=T0 + 50))  # the market moved meanwhile
    evs = v.due(T0 + 80)
    (f,) = fills(evs)
    assert f.price == 60_050.0 and f.ts_ms == T0 + 80
    assert isinstance(evs[0], OrderAck) and isinstance(evs[-1], OrderDone)
    assert f.fee == pytest.approx(0.01 * 60_050.0 * PERP.taker_fee)


def test_depth_is_walked_level_by_level_where_given() -> None:
    v = venue(latency_ms=0)
    bids = [(59_990.0, 1.0)]
    asks = [(60_000.0, 0.004), (60_001.0, 0.003), (60_005.0, 1.0)]
    v.on_book(top(PERP_K, 59_990.0, 60_000.0, 0.004), (bids, asks))
    v.submit(order(PERP_K, Side.BUY, "0.010", "c1"), T0)
    fs = fills(v.due(T0))
    assert [(f.price, f.qty) for f in fs] == [(60_000.0, 0.004), (60_001.0, 0.003),
                                              (60_005.0, 0.003)]
    assert sum(f.fee for f in fs) == pytest.approx(
        (0.004 * 60_000 + 0.003 * 60_001 + 0.003 * 60_005) * PERP.taker_fee)
    assert v.perp_pos["BTCUSDT"] == Decimal("0.010")


def test_top_of_book_only_fills_the_displayed_size_and_cancels_the_rest() -> None:
    v = venue(latency_ms=0)
    v.on_book(top(PERP_K, 59_999.9, 60_000.0, size=0.004))
    v.submit(order(PERP_K, Side.SELL, "0.010", "c1"), T0)
    evs = v.due(T0)
    assert [f.qty for f in fills(evs)] == [0.004]
    done = evs[-1]
    assert isinstance(done, OrderDone) and done.canceled and done.filled_qty == 0.004


def test_two_orders_cannot_take_the_same_displayed_size() -> None:
    v = venue(latency_ms=0)
    v.on_book(top(PERP_K, 59_999.9, 60_000.0, size=0.005))
    v.submit(order(PERP_K, Side.BUY, "0.004", "c1"), T0)
    v.submit(order(PERP_K, Side.BUY, "0.004", "c2"), T0)
    evs = v.due(T0)
    assert [(f.client_id, f.qty) for f in fills(evs)] == [("c1", 0.004), ("c2", 0.001)]
    v.on_book(top(PERP_K, 59_999.9, 60_000.0, size=0.005, ts=T0 + 1))  # a fresh book
    v.submit(order(PERP_K, Side.BUY, "0.004", "c3"), T0 + 1)
    assert [f.qty for f in fills(v.due(T0 + 1))] == [0.004]


def test_ioc_limit_stops_at_its_price_and_nothing_matched_is_a_no_liquidity_reject() -> None:
    v = venue(latency_ms=0)
    v.on_book(top(PERP_K, 59_990.0, 60_000.0), ([(59_990.0, 1.0)],
                                               [(60_000.0, 0.002), (60_010.0, 1.0)]))
    v.submit(order(PERP_K, Side.BUY, "0.005", "c1", "60005.0", ioc=True), T0)
    evs = v.due(T0)
    assert [f.qty for f in fills(evs)] == [0.002]
    assert isinstance(evs[-1], OrderDone) and evs[-1].canceled
    v.submit(order(PERP_K, Side.BUY, "0.005", "c2", "59000.0", ioc=True), T0)
    (r,) = rejects(v.due(T0))
    assert r.reason is RejectReason.NO_LIQUIDITY


def test_a_limit_rests_fills_as_maker_when_crossed_and_cancels() -> None:
    v = venue(latency_ms=10)
    v.on_book(top(SPOT_K, 59_990.0, 60_000.0, size=1.0))
    v.submit(order(SPOT_K, Side.BUY, "0.002", "c1", "59995.00"), T0)
    evs = v.due(T0 + 10)
    assert [type(e) for e in evs] == [OrderAck] and v.open_orders() == ["c1"]
    v.on_book(top(SPOT_K, 59_980.0, 59_994.0, size=0.001, ts=T0 + 20))  # crosses our bid
    assert v.next_wakeup_ms() == T0 + 20
    (f,) = fills(v.due(T0 + 20))
    assert f.is_maker and f.price == 59_995.0 and f.qty == 0.001
    assert f.fee == pytest.approx(0.001 * 59_995.0 * SPOT.maker_fee)
    v.submit(CancelOrder("bybit", "BTCUSDT", SPOT_K, "c1"), T0 + 30)
    (done,) = v.due(T0 + 40)
    assert isinstance(done, OrderDone) and done.canceled and done.filled_qty == 0.001
    v.submit(CancelOrder("bybit", "BTCUSDT", SPOT_K, "c1"), T0 + 50)
    (r,) = v.due(T0 + 60)
    assert isinstance(r, OrderReject) and r.reason is RejectReason.NOT_FOUND
    assert r.request is OrderRequest.CANCEL


def test_post_only_that_would_take_is_rejected() -> None:
    v = venue(latency_ms=0)
    v.on_book(top(SPOT_K, 59_990.0, 60_000.0))
    v.submit(order(SPOT_K, Side.BUY, "0.001", "c1", "60000.00", post_only=True), T0)
    (r,) = v.due(T0)
    assert isinstance(r, OrderReject) and r.reason is RejectReason.POST_ONLY_WOULD_TAKE


@pytest.mark.parametrize(("kind", "qty", "price", "reason"), [
    (PERP_K, "0.0005", None, RejectReason.INVALID_QTY),  # below min_qty
    (PERP_K, "0.0015", None, RejectReason.INVALID_QTY),  # off the lot
    (SPOT_K, "0.00005", None, RejectReason.INVALID_QTY),  # notional 3 USDT < 5
    (SPOT_K, "0.001", "60000.005", RejectReason.INVALID_PRICE),  # off the tick
])
def test_rejects_below_the_instruments_rules(kind: InstrumentKind, qty: str, price: str | None,
                                             reason: RejectReason) -> None:
    v = venue(latency_ms=0, spot_balances={"BTCUSDT": 1.0})
    v.on_book(top(kind, 59_990.0, 60_000.0))
    v.submit(order(kind, Side.BUY, qty, "c1", price), T0)
    (r,) = v.due(T0)
    assert isinstance(r, OrderReject) and r.reason is reason


def test_reduce_only_spot_balance_and_duplicate_ids() -> None:
    v = venue(latency_ms=0)
    v.on_book(top(PERP_K, 59_990.0, 60_000.0))
    v.on_book(top(SPOT_K, 59_990.0, 60_000.0))
    v.submit(order(PERP_K, Side.BUY, "0.002", "ro1", reduce_only=True), T0)  # no position
    v.submit(order(SPOT_K, Side.SELL, "0.002", "s1"), T0)  # no coin held
    r1, r2 = rejects(v.due(T0))
    assert r1.reason is RejectReason.REDUCE_ONLY and r2.reason is RejectReason.INSUFFICIENT_BALANCE
    v.submit(order(PERP_K, Side.SELL, "0.002", "o1"), T0)
    v.submit(order(PERP_K, Side.SELL, "0.002", "o1"), T0)
    evs = v.due(T0)
    assert rejects(evs)[0].reason is RejectReason.DUPLICATE_CLIENT_ID
    assert v.perp_pos["BTCUSDT"] == Decimal("-0.002")
    v.submit(order(PERP_K, Side.SELL, "0.001", "ro2", reduce_only=True), T0)  # would grow
    assert rejects(v.due(T0))[0].reason is RejectReason.REDUCE_ONLY
    v.submit(order(PERP_K, Side.BUY, "0.005", "ro3", reduce_only=True), T0)  # clipped
    assert [f.qty for f in fills(v.due(T0))] == [0.002]
    assert v.perp_pos["BTCUSDT"] == 0


def test_the_second_leg_can_lag_and_faults_can_reject() -> None:
    v = venue(latency_ms=10, extra_latency_ms={SPOT_K: 500.0})
    v.on_book(top(PERP_K, 59_990.0, 60_000.0))
    v.on_book(top(SPOT_K, 59_990.0, 60_000.0))
    v.submit(order(SPOT_K, Side.BUY, "0.001", "s1"), T0)
    assert v.next_wakeup_ms() == T0 + 510
    v.reject_next(PERP_K, 1, RejectReason.RATE_LIMITED)
    v.submit(order(PERP_K, Side.SELL, "0.001", "p1"), T0)
    (r,) = v.due(T0 + 10)
    assert isinstance(r, OrderReject) and r.reason is RejectReason.RATE_LIMITED
    assert fills(v.due(T0 + 510))[0].client_id == "s1"


def quote(rate: float, next_ms: int, ts: int, mark: float = 60_000.0) -> FundingQuote:
    return FundingQuote("bybit", "BTCUSDT", rate, next_ms, 8 * 3_600_000, mark, mark,
                        mark - 0.1, mark + 0.1, ts)


def test_funding_settles_at_next_funding_time_on_the_position_held_then() -> None:
    v = venue(latency_ms=0)
    v.on_book(top(PERP_K, 59_990.0, 60_000.0, size=5.0))
    v.submit(order(PERP_K, Side.SELL, "0.100", "p1"), T0)
    v.due(T0)
    t1 = T0 + 3_600_000
    v.on_quote(quote(0.0001, t1, T0, mark=61_000.0))
    assert v.next_wakeup_ms() == t1
    assert v.due(t1 - 1) == []
    # an order arriving exactly at the settlement does not count for it
    v.submit(order(PERP_K, Side.BUY, "0.050", "p2"), t1)
    evs = v.due(t1)
    st_ = evs[0]
    assert isinstance(st_, FundingSettlement) and st_.ts_ms == t1
    assert st_.position_size == pytest.approx(-0.1)
    assert st_.amount == pytest.approx(0.1 * 61_000.0 * 0.0001)  # a short receives
    assert v.due(t1 + 10) == []  # settled once
    # a quote that already points past an unsettled time settles it with its own rate
    t2 = t1 + 8 * 3_600_000
    v.on_quote(quote(-0.0002, t2, t1 + 5))
    v.on_quote(quote(0.0003, t2 + 8 * 3_600_000, t2 + 2))
    (s2,) = v.due(t2 + 2)
    assert isinstance(s2, FundingSettlement) and s2.rate == -0.0002 and s2.ts_ms == t2
    assert s2.amount == pytest.approx(-0.05 * 60_000.0 * 0.0002)  # the short pays


def test_no_settlement_when_flat() -> None:
    v = venue(latency_ms=0)
    v.on_quote(quote(0.0001, T0 + 10, T0))
    assert v.due(T0 + 10) == [] and v.settlements == []


levels_st = st.lists(st.tuples(st.integers(1, 50), st.integers(1, 5_000)), min_size=0,
                     max_size=6)


@settings(max_examples=300, deadline=None)
@given(asks=levels_st, bids=levels_st, qty=st.integers(1, 20_000),
       limit=st.one_of(st.none(), st.integers(-10, 60)), side=st.sampled_from(list(Side)),
       depth=st.booleans())
def test_fills_never_exceed_what_is_displayed_within_the_limit(
        asks: list[tuple[int, int]], bids: list[tuple[int, int]], qty: int, limit: int | None,
        side: Side, depth: bool) -> None:
    base = 60_000.0
    ask_lv = sorted({base + a: s / 1000 for a, s in asks}.items())
    bid_lv = sorted({base - 1 - b: s / 1000 for b, s in bids}.items(), reverse=True)
    v = venue(latency_ms=0)
    t = BookTop("bybit", "BTCUSDT", PERP_K, bid_lv[0][0] if bid_lv else None,
                bid_lv[0][1] if bid_lv else 0.0, ask_lv[0][0] if ask_lv else None,
                ask_lv[0][1] if ask_lv else 0.0, T0)
    v.on_book(t, (bid_lv, ask_lv) if depth else None)
    px = None if limit is None else f"{base + (limit if side is Side.BUY else -limit):.1f}"
    v.submit(order(PERP_K, side, f"{qty / 1000:.3f}", "c1", px, ioc=True), T0)
    evs = v.due(T0)
    fs = fills(evs)
    book = ask_lv if side is Side.BUY else bid_lv
    usable = dict(book if depth else book[:1])
    got: dict[float, float] = {}
    for f in fs:
        assert f.price in usable
        if px is not None:
            assert f.price <= float(px) if side is Side.BUY else f.price >= float(px)
        got[f.price] = got.get(f.price, 0.0) + f.qty
        assert f.fee == pytest.approx(f.qty * f.price * PERP.taker_fee)
    for p, q in got.items():
        assert q <= usable[p] + 1e-9
    total = sum(f.qty for f in fs)
    assert total <= qty / 1000 + 1e-9
    assert float(v.perp_pos.get("BTCUSDT", 0)) == pytest.approx(total * side.sign)
    # walked in price order: best first
    prices = [f.price for f in fs]
    assert prices == sorted(prices, reverse=side is Side.SELL)
    if not fs:
        assert isinstance(evs[-1], OrderReject) and evs[-1].reason is RejectReason.NO_LIQUIDITY


def test_a_partial_fill_is_at_least_one_lot() -> None:
    v = venue(latency_ms=0)
    v.partial_ratio = 0.5
    v.on_book(top(PERP_K, 59_990.0, 60_000.0, size=5.0))
    v.submit(order(PERP_K, Side.BUY, "0.001", "c1"), T0)  # half a lot would round to nothing
    assert [f.qty for f in fills(v.due(T0))] == [0.001]
    v.submit(order(PERP_K, Side.BUY, "0.010", "c2"), T0)
    evs = v.due(T0)
    assert [f.qty for f in fills(evs)] == [0.005]
    assert isinstance(evs[-1], OrderDone) and evs[-1].canceled
