"""The Bybit simulator's accounting, as Bybit does it: a spot buy's fee is kept in the coin
bought (``feeCurrency``), a sell's in USDT; every funding payment is also a ``SETTLEMENT`` row
of ``GET /v5/account/transaction-log`` under the execution's id; and the reconciliation fault
knobs (a wallet answer that differs, a transient all-flat position answer) touch only what
the REST answers report, never the account."""

from __future__ import annotations

import pytest

from engine.sim.bybit.exchange import DAY_MS, Exchange, OrderError
from engine.sim.bybit.server import BybitSimServer

T0 = 1_765_000_000_000 - 1_765_000_000_000 % DAY_MS + 3_600_000


def ex() -> Exchange:
    e = Exchange(seed=7, now_ms=T0)
    e.add_account("k", "s", usdt=100_000.0, coins={"BTC": 0.0})
    return e


def spot(side: str, qty: str) -> dict[str, str]:
    return {"category": "spot", "symbol": "BTCUSDT", "side": side, "orderType": "Market",
            "qty": qty, "marketUnit": "baseCoin"}


def test_a_spot_buy_pays_its_fee_in_btc_and_a_sell_in_usdt() -> None:
    e = ex()
    acct = e.accounts["k"]
    e.create("k", spot("Buy", "0.01"), T0)
    (buy,) = [d for _k, t, d in e.outbox if t == "execution"]
    px = float(buy["execPrice"])
    assert buy["feeCurrency"] == "BTC" and float(buy["execFee"]) == pytest.approx(0.01 * 0.001)
    assert acct.coins["BTC"] == pytest.approx(0.01 * 0.999, abs=1e-15)
    assert acct.coins["USDT"] == pytest.approx(100_000.0 - 0.01 * px)
    with pytest.raises(OrderError):  # the whole 0.01 never arrived
        e.create("k", spot("Sell", "0.01"), T0)
    e.outbox.clear()
    usdt = acct.coins["USDT"]
    e.create("k", spot("Sell", "0.00999"), T0)
    (sell,) = [d for _k, t, d in e.outbox if t == "execution"]
    spx = float(sell["execPrice"])
    assert sell["feeCurrency"] == "USDT"
    assert float(sell["execFee"]) == pytest.approx(0.00999 * spx * 0.001, abs=1e-8)
    assert acct.coins["BTC"] == pytest.approx(0.0, abs=1e-15)
    assert acct.coins["USDT"] == pytest.approx(usdt + 0.00999 * spx * 0.999)


def test_each_funding_payment_is_a_settlement_row_under_the_execution_id() -> None:
    e = ex()
    server = BybitSimServer(e, clock=lambda: float(T0))
    e.create("k", {"category": "linear", "symbol": "BTCUSDT", "side": "Sell",
                   "orderType": "Market", "qty": "0.1"}, T0)
    e.set_funding("BTCUSDT", 0.0005)
    m = e.markets["BTCUSDT"]
    first = m.next_funding_ms
    e.outbox.clear()
    e.step(first)
    e.step(first + m.spec.interval_ms)
    fund = [d for _k, t, d in e.outbox if t == "execution" and d["execType"] == "Funding"]
    assert len(fund) == 2
    q = {"accountType": "UNIFIED", "category": "linear", "currency": "USDT",
         "type": "SETTLEMENT", "limit": "1"}
    page1 = server._dispatch("GET", "/v5/account/transaction-log", q, "k", T0)
    assert page1 is not None and page1["nextPageCursor"]
    page2 = server._dispatch("GET", "/v5/account/transaction-log",
                             {**q, "cursor": page1["nextPageCursor"]}, "k", T0)
    assert page2 is not None and page2["nextPageCursor"] == ""
    rows = page1["list"] + page2["list"]  # newest first
    assert [r["tradeId"] for r in reversed(rows)] == [f["execId"] for f in fund]
    for r, f in zip(reversed(rows), fund, strict=True):
        assert r["funding"] == r["change"] and float(r["funding"]) == -float(f["execFee"])
        assert float(r["funding"]) > 0 and r["side"] == "Sell" and r["size"] == "0.1"
    window = server._dispatch("GET", "/v5/account/transaction-log",
                              {**q, "limit": "50", "startTime": str(first + 1)}, "k", T0)
    assert window is not None and [r["tradeId"] for r in window["list"]] == [fund[1]["execId"]]
    with pytest.raises(OrderError):  # Bybit requires the currency
        server._dispatch("GET", "/v5/account/transaction-log", {"category": "linear"}, "k", T0)


def test_wallet_skew_and_flat_positions_change_only_the_answers() -> None:
    e = ex()
    server = BybitSimServer(e, clock=lambda: float(T0))
    e.create("k", spot("Buy", "0.01"), T0)
    e.create("k", {"category": "linear", "symbol": "BTCUSDT", "side": "Sell",
                   "orderType": "Market", "qty": "0.01"}, T0)
    held = e.accounts["k"].coins["BTC"]

    def btc() -> float:
        r = server._dispatch("GET", "/v5/account/wallet-balance",
                             {"accountType": "UNIFIED", "coin": "BTC"}, "k", T0)
        assert r is not None
        (c,) = r["list"][0]["coin"]
        return float(c["walletBalance"])

    assert btc() == pytest.approx(held, abs=1e-12)
    e.faults.wallet_skew, e.faults.wallet_skew_answers = {"BTC": -0.004}, 2
    assert [btc(), btc(), btc()] == pytest.approx([held - 0.004, held - 0.004, held], abs=1e-12)
    assert e.accounts["k"].coins["BTC"] == held  # the account itself never changed
    e.faults.flat_positions_next = 1

    def size() -> str:
        r = server._dispatch("GET", "/v5/position/list", {"category": "linear"}, "k", T0)
        assert r is not None
        return str(r["list"][0]["size"])

    assert [size(), size()] == ["0", "0.01"]
    server._control({"wallet_skew": {"BTC": 0.5}, "wallet_skew_answers": None}, T0)
    assert btc() == pytest.approx(held + 0.5) and btc() == pytest.approx(held + 0.5)
