"""The Bybit codec on recorded Bybit v5 messages (tests/venues/bybit/fixtures/README.md names
each source): ticker snapshot + delta merging, books with the update-id rule, private topics to
neutral events, REST envelopes, instruments-info and funding history; bad input never raises."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.neutral import (
    BalanceUpdate,
    BookTop,
    FundingQuote,
    InstrumentKind,
    OrderAck,
    OrderDone,
    OrderFill,
    OrderReject,
    OrderRequest,
    PositionUpdate,
    RejectReason,
    Side,
)
from engine.venues.bybit.codec import (
    BookGap,
    BybitApiError,
    BybitDecoder,
    CodecError,
    Malformed,
    OpReply,
    parse_envelope,
    parse_funding_history,
    parse_instruments,
    parse_server_time_ms,
)

FIX = Path(__file__).parent / "fixtures"


def raw(name: str) -> bytes:
    return (FIX / name).read_bytes()


def obj(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads(raw(name))


def test_every_fixture_is_named_in_the_readme() -> None:
    readme = (FIX / "README.md").read_text()
    for f in FIX.glob("*.json"):
        assert f.name.split("_")[0] + "_" in readme, f.name


def test_linear_ticker_snapshot_gives_a_funding_quote() -> None:
    (q,) = BybitDecoder().decode(raw("docs_ws_ticker_linear_snapshot.json"))
    assert isinstance(q, FundingQuote)
    assert q.symbol == "BTCUSDT" and q.rate == -0.005 and q.next_funding_ms == 1760342400000
    assert q.interval_ms == 8 * 3_600_000  # fundingIntervalHour "8"
    assert (q.mark, q.index, q.bid, q.ask) == (66666.60, 115418.19, 66666.60, 66666.70)
    assert q.ts_ms == 1760325052630


def test_real_delta_merges_into_the_snapshot_key_by_key() -> None:
    dec = BybitDecoder()
    dec.decode(raw("docs_ws_ticker_linear_snapshot.json"))
    (q,) = dec.decode(raw("capture_ws_ticker_delta_btcusdt.json"))
    assert (q.mark, q.index) == (86716.30, 86756.70)  # from the delta
    assert q.rate == -0.005 and q.bid == 66666.60  # unchanged keys kept
    assert q.ts_ms == 1790134712383


def test_delta_before_snapshot_is_never_read_as_zero() -> None:
    dec = BybitDecoder()
    assert dec.decode(raw("capture_ws_ticker_delta_btcusdt.json")) == []  # no rate known yet


def test_interval_from_instruments_when_ticker_lacks_it() -> None:
    dec = BybitDecoder()
    snap = obj("docs_ws_ticker_linear_snapshot.json")
    del snap["data"]["fundingIntervalHour"]
    dec.tickers.set_funding_interval("BTCUSDT", 240 * 60_000)
    (q,) = dec.decode(json.dumps(snap))
    assert q.interval_ms == 4 * 3_600_000


def test_spot_ticker_carries_no_book() -> None:
    assert BybitDecoder(InstrumentKind.SPOT).decode(raw("docs_ws_ticker_spot_snapshot.json")) == []


def test_book_snapshot_then_gap_then_sequence() -> None:
    dec = BybitDecoder()
    (top,) = dec.decode(raw("capture_ws_orderbook50_snapshot_btcusdt.json"))
    assert isinstance(top, BookTop)
    assert (top.bid, top.bid_size, top.ask, top.ask_size) == (86723.40, 0.194, 86723.50, 5.959)
    snap = obj("capture_ws_orderbook50_snapshot_btcusdt.json")
    delta = {"topic": snap["topic"], "type": "delta", "ts": snap["ts"] + 20,
             "data": {"s": "BTCUSDT", "b": [["86723.40", "0"]], "a": [["86723.45", "1"]],
                      "u": snap["data"]["u"] + 1, "seq": 1}}
    (top2,) = dec.decode(json.dumps(delta))
    assert (top2.bid, top2.ask, top2.ask_size) == (86723.30, 86723.45, 1.0)
    delta["data"]["u"] += 5  # a gap
    (gap,) = dec.decode(json.dumps(delta))
    assert isinstance(gap, BookGap) and gap.topic == "orderbook.50.BTCUSDT"


def test_docs_delta_without_snapshot_is_a_gap() -> None:
    (gap,) = BybitDecoder().decode(raw("docs_ws_orderbook50_delta.json"))
    assert isinstance(gap, BookGap) and gap.got_u == 177400507


def test_spot_level1_book_is_spot_kind() -> None:
    snap = obj("capture_ws_orderbook50_snapshot_btcusdt.json")
    snap["topic"] = "orderbook.1.BTCUSDT"
    (top,) = BybitDecoder(InstrumentKind.SPOT).decode(json.dumps(snap))
    assert top.kind is InstrumentKind.SPOT and top.mid == pytest.approx(86723.45)


def test_op_replies() -> None:
    for name, op, ok in [("capture_ws_subscribe_ack_linear.json", "subscribe", True),
                         ("capture_ws_pong_linear.json", "ping", True),
                         ("docs_ws_pong_private.json", "pong", True),
                         ("docs_ws_auth_ok.json", "auth", True),
                         ("docs_ws_subscribe_ack_spot.json", "subscribe", True),
                         ("capture_ws_subscribe_error_unknown.json", "subscribe", False),
                         ("capture_ws_subscribe_error_already.json", "subscribe", False)]:
        (r,) = BybitDecoder().decode(raw(name))
        assert isinstance(r, OpReply) and (r.op, r.success) == (op, ok), name
    (err,) = BybitDecoder().decode(raw("capture_ws_subscribe_error_unknown.json"))
    assert "handler not found" in err.ret_msg and err.req_id == "e1"


def test_execution_to_fill() -> None:
    (f,) = BybitDecoder().decode(raw("docs_ws_execution_linear.json"))
    assert isinstance(f, OrderFill)
    assert (f.symbol, f.kind, f.side, f.qty, f.price, f.fee) == (
        "BTCUSDT", InstrumentKind.LINEAR_PERP, Side.SELL, 0.5, 95900.1, 26.3725275)
    assert f.trade_id == "0ab1bdf7-4219-438b-b30a-32ec863018f7" and f.is_maker is False


def test_funding_execution_to_settlement() -> None:
    m = obj("docs_ws_execution_linear.json")
    m["data"][0].update(execType="Funding", execFee="-1.5", feeRate="0.0001", side="Sell")
    (s,) = BybitDecoder().decode(json.dumps(m))
    assert s.amount == 1.5 and s.position_size == -0.5 and s.rate == 0.0001


def test_order_topic_statuses() -> None:
    dec = BybitDecoder()
    m = obj("docs_ws_order_option.json")
    (done,) = dec.decode(json.dumps(m))
    assert isinstance(done, OrderDone) and done.filled_qty == 1.0 and not done.canceled
    for status, cls in [("New", OrderAck), ("PartiallyFilled", OrderAck),
                        ("Cancelled", OrderDone), ("Rejected", OrderReject)]:
        m["data"][0].update(orderStatus=status, orderLinkId="L1",
                            rejectReason="EC_PostOnlyWillTakeLiquidity")
        (e,) = dec.decode(json.dumps(m))
        assert isinstance(e, cls) and e.client_id == "L1", status
    assert e.reason is RejectReason.POST_ONLY_WOULD_TAKE
    assert e.request is OrderRequest.PLACE  # an order update refusing the order itself
    m["data"][0]["orderStatus"] = "Exploded"
    (bad,) = dec.decode(json.dumps(m))
    assert isinstance(bad, Malformed) and "Exploded" in bad.reason


def test_position_and_wallet() -> None:
    (p,) = BybitDecoder().decode(raw("docs_ws_position.json"))
    assert isinstance(p, PositionUpdate) and p.symbol == "BTCUSDT" and p.size == 0.0
    w = BybitDecoder().decode(raw("docs_ws_wallet.json"))
    assert w and all(isinstance(b, BalanceUpdate) for b in w)
    assert w[0].coin == "BTC" and w[0].wallet_balance == 0.00102964


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_garbage_never_raises(data: bytes) -> None:
    for item in BybitDecoder().decode(data):
        assert isinstance(item, Malformed | OpReply)


@pytest.mark.parametrize("text", [
    '{"topic":"tickers.BTCUSDT","data":{}}', '{"topic":"orderbook.1.X","data":{"u":"x"}}',
    '{"topic":"execution","data":[{"category":"linear","execType":"Trade"}]}',
    '{"topic":"nope.1"}', '[1,2]', '{"foo":1}', '{"topic":7}'])
def test_malformed_messages_are_reported(text: str) -> None:
    out = BybitDecoder().decode(text)
    assert len(out) == 1 and isinstance(out[0], Malformed)


def test_rest_envelopes() -> None:
    assert parse_envelope(200, raw("docs_rest_order_create.json"))["orderLinkId"] == (
        "spot-test-postonly")
    assert parse_envelope(200, raw("ccxt_rest_amend_ok.json"))["orderId"] == "2088690093937486080"
    assert parse_server_time_ms(parse_envelope(200, raw("docs_rest_server_time.json"))) == (
        1688639403423)
    with pytest.raises(BybitApiError) as e:
        parse_envelope(200, b'{"retCode":110072,"retMsg":"OrderLinkedID is duplicate"}')
    assert e.value.reason is RejectReason.DUPLICATE_CLIENT_ID
    with pytest.raises(BybitApiError) as e:
        parse_envelope(403, b"access too frequent")
    assert e.value.reason is RejectReason.RATE_LIMITED
    with pytest.raises(CodecError):
        parse_envelope(502, b"<html>bad gateway</html>")


def test_instruments_info() -> None:
    (lin,) = parse_instruments(parse_envelope(200, raw("docs_rest_instruments_linear.json")))
    assert lin.kind is InstrumentKind.LINEAR_PERP and lin.funding_interval_ms == 480 * 60_000
    assert (lin.tick_size, lin.lot_size, lin.min_qty, lin.min_notional) == (
        Decimal("0.10"), Decimal("0.001"), Decimal("0.001"), Decimal("5"))
    assert lin.funding_cap == 0.00375
    (spot,) = parse_instruments(parse_envelope(200, raw("docs_rest_instruments_spot.json")))
    assert spot.kind is InstrumentKind.SPOT and spot.lot_size == Decimal("0.000001")
    assert spot.min_notional == Decimal("5") and spot.funding_interval_ms == 0
    assert lin.round_qty(0.0019) == Decimal("0.001")
    assert lin.round_price(100.07, Side.BUY) == Decimal("100.0")
    assert lin.round_price(100.01, Side.SELL) == Decimal("100.1")
    assert not lin.tradable(Decimal("0.001"), 1000.0) and lin.tradable(Decimal("0.01"), 1000.0)


def test_funding_history() -> None:
    (r,) = parse_funding_history(parse_envelope(200, raw("docs_rest_funding_history.json")))
    assert (r.symbol, r.rate, r.ts_ms) == ("ETHPERP", 0.0001, 1672041600000)


FIELDS = ["fundingRate", "nextFundingTime", "markPrice", "indexPrice", "bid1Price", "ask1Price",
          "lastPrice", "fundingIntervalHour"]


def _value(field: str, n: int) -> str:
    if field == "nextFundingTime":
        return str(1_700_000_000_000 + n)
    if field == "fundingIntervalHour":
        return str(1 + n % 8)
    return f"{n}.5"


@given(st.lists(st.dictionaries(st.sampled_from(FIELDS), st.integers(0, 10**6), max_size=5),
                max_size=30))
def test_delta_merge_equals_the_last_value_of_every_key(deltas: list[dict[str, int]]) -> None:
    snap = obj("docs_ws_ticker_linear_snapshot.json")
    dec = BybitDecoder()
    dec.decode(json.dumps(snap))
    expect = dict(snap["data"])
    for i, d in enumerate(deltas):
        data = {"symbol": "BTCUSDT", **{k: _value(k, v) for k, v in d.items()}}
        out = dec.decode(json.dumps({"topic": "tickers.BTCUSDT", "type": "delta", "data": data,
                                     "cs": i, "ts": 1_800_000_000_000 + i}))
        expect.update(data)
        (q,) = out
        assert q.rate == float(expect["fundingRate"])
        assert q.next_funding_ms == int(expect["nextFundingTime"])
        assert (q.mark, q.index) == (float(expect["markPrice"]), float(expect["indexPrice"]))
        assert (q.bid, q.ask) == (float(expect["bid1Price"]), float(expect["ask1Price"]))
        assert q.interval_ms == int(expect["fundingIntervalHour"]) * 3_600_000
        assert q.ts_ms == 1_800_000_000_000 + i
    assert dec.tickers.merged("BTCUSDT") == expect
