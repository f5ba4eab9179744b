"""The Bybit codec's accounting facts, on recorded messages (fixtures/README.md names each):
a spot buy's fee is in the coin bought (``fee_base``), a sell's in USDT; funding payments carry
their id (stream ``execId`` = transaction log ``tradeId``); wallet and position answers."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from engine.core.neutral import FundingSettlement, InstrumentKind, OrderDone, OrderFill, Side
from engine.venues.bybit.codec import (
    BybitDecoder,
    CodecError,
    parse_envelope,
    parse_position_list,
    parse_settlements,
    parse_wallet_coins,
)

FIX = Path(__file__).parent / "fixtures"


def raw(name: str) -> bytes:
    return (FIX / name).read_bytes()


def obj(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads(raw(name))


def test_a_recorded_spot_buy_pays_its_fee_in_btc() -> None:
    """Mainnet, 2023-11-12: 0.000306 BTC bought at 32635, fee 0.000000306 BTC (0.1 %); the
    execution message names no fee coin — the side does."""
    (f,) = BybitDecoder(InstrumentKind.SPOT).decode(
        raw("arbwatch_ws_execution_spot_buy_btcusdt.json"))
    assert isinstance(f, OrderFill) and f.kind is InstrumentKind.SPOT and f.side is Side.BUY
    assert f.qty == 0.000306 and f.price == 32635.0
    assert f.fee_base == 0.000000306  # kept from the coin bought: 0.000305694 BTC arrived
    assert f.fee == pytest.approx(0.000000306 * 32635.0)  # its USDT value at the fill price
    assert f.client_id == "1552132392821724673" and f.trade_id == "2100000000047469164"


def test_the_recorded_orders_name_the_fee_coin_of_each_side() -> None:
    buy, sell = (obj(f"arbwatch_ws_order_spot_{s}_btcusdt.json")["data"][0]
                 for s in ("buy", "sell"))
    assert (buy["side"], buy["feeCurrency"]) == ("Buy", "BTC")
    assert Decimal(buy["cumExecFee"]) == Decimal(buy["cumExecQty"]) * Decimal("0.001")
    assert (sell["side"], sell["feeCurrency"]) == ("Sell", "USDT")
    assert Decimal(sell["cumExecFee"]) == Decimal(sell["cumExecValue"]) * Decimal("0.001")
    (done,) = BybitDecoder(InstrumentKind.SPOT).decode(
        raw("arbwatch_ws_order_spot_buy_btcusdt.json"))
    assert isinstance(done, OrderDone) and done.canceled and done.filled_qty == 0.000306


@pytest.mark.parametrize("currency, side, fee_base, fee", [
    ("BTC", "Buy", 0.000000306, 0.000000306 * 32635.0),   # named: the coin bought
    ("USDT", "Sell", 0.0, 0.000000306),                    # named: the quote coin
    (None, "Sell", 0.0, 0.000000306),                      # unnamed sell: quote coin
    ("MNT", "Buy", 0.0, 0.0),                              # a third coin: neither leg
])
def test_the_fee_coin_decides_where_the_fee_goes(currency: str | None, side: str,
                                                 fee_base: float, fee: float) -> None:
    m = obj("arbwatch_ws_execution_spot_buy_btcusdt.json")
    m["data"][0]["side"] = side
    if currency is not None:
        m["data"][0]["feeCurrency"] = currency
    (f,) = BybitDecoder(InstrumentKind.SPOT).decode(json.dumps(m))
    assert f.fee_base == fee_base and f.fee == pytest.approx(fee)


def test_a_linear_fill_keeps_its_usdt_fee() -> None:
    (f,) = BybitDecoder().decode(raw("docs_ws_execution_linear.json"))
    assert f.fee == 26.3725275 and f.fee_base == 0.0


def test_a_funding_execution_carries_its_exec_id() -> None:
    m = obj("docs_ws_execution_linear.json")
    m["data"][0].update(execType="Funding", execFee="-1.5", feeRate="0.0001", side="Sell")
    (s,) = BybitDecoder().decode(json.dumps(m))
    assert isinstance(s, FundingSettlement)
    assert s.settlement_id == "0ab1bdf7-4219-438b-b30a-32ec863018f7" and s.amount == 1.5


def test_transaction_log_settlements_from_the_docs_example() -> None:
    result = parse_envelope(200, raw("docs_rest_transaction_log.json"))
    (s,) = parse_settlements(result)  # the two TRADE rows are not funding
    assert (s.symbol, s.position_size, s.rate, s.ts_ms) == ("XRPUSDT", 100.0, 0.0001,
                                                            1672128000000)
    # a long paid 100 × 0.3676 × 0.0001 at a positive rate: the wallet's change
    assert s.amount == pytest.approx(-100 * 0.3676 * 0.0001)
    assert s.settlement_id == "534c0003-4bf7-486f-aa02-78cee36825e4"
    bad = {"list": [{"type": "SETTLEMENT", "category": "linear", "symbol": "X", "side": "Up"}]}
    with pytest.raises(CodecError):
        parse_settlements(bad)


def test_wallet_coins_and_position_list_from_recorded_shapes() -> None:
    wallet = obj("docs_ws_wallet.json")["data"][0]
    coins = parse_wallet_coins({"list": [wallet]})
    assert coins and all(isinstance(v, Decimal) for v in coins.values())
    for c in wallet["coin"]:
        assert coins[c["coin"]] == Decimal(c["walletBalance"] or "0")
    pos = obj("docs_ws_position.json")["data"]
    rows = parse_position_list({"list": pos}, 123)
    assert [r.symbol for r in rows] == [p["symbol"] for p in pos]
    for r, p in zip(rows, pos, strict=True):
        assert r.size == float(p["size"]) * (-1 if p["side"] == "Sell" else 1)
