"""Trading actions against the simulator, signed with the official SDK and sent as WS posts and
``POST /exchange``: every status and error variant, rounding, minimum notional, reduce-only,
IOC partial fills and book consumption, ALO, GTC resting and maker fills, cancels."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import httpx
import trio

from engine.sim import SimExchange, grid
from engine.sim.accounts import num
from engine.sim.actions import parse_signed_action

from .trader import (
    AGENT,
    AGENT_KEY,
    GOLD,
    GOLD_ID,
    MASTER,
    Trader,
    cloid,
    order_wire,
    ws_action,
    ws_ok,
)

FROZEN = {"seed": 1, "speed": 1e-3}  # virtual time barely moves: the book stays put
XYZ100_ID = 110000  # szDecimals 3, price ~25150 (5 integer digits)
TAKER = Decimal("0.0000765")


async def start(start_sim: Any, **kw: Any) -> SimExchange:
    args: dict[str, Any] = {**FROZEN, "accounts": {MASTER: 100_000.0}, "agents": {AGENT: MASTER}}
    args.update(kw)
    sim: SimExchange = await start_sim(**args)
    return sim


async def info(sim: SimExchange, body: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        r = await http.post("/info", json=body)
        assert r.status_code == 200, r.text
        return r.json()


def levels(sim: SimExchange, coin: str = GOLD) -> tuple[list[Any], list[Any]]:
    return sim.model.l2_levels(coin, depth=20)


async def test_ioc_round_trip_over_ws_and_http(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    agent = Trader(AGENT_KEY)
    ask = sim.model.bbo(GOLD).ask
    bid = sim.model.bbo(GOLD).bid
    assert ask is not None and bid is not None
    async with connect(sim) as c:
        statuses = await ws_ok(
            c, 1, agent.orders(order_wire(GOLD_ID, True, float(ask.px), 0.01, "Ioc", cl=cloid(7)))
        )
    assert statuses == [
        {"filled": {"totalSz": "0.01", "avgPx": ask.px, "oid": statuses[0]["filled"]["oid"],
                    "cloid": cloid(7)}}
    ]  # fmt: skip
    oid = statuses[0]["filled"]["oid"]
    assert isinstance(oid, int) and oid > 2**32

    state = await info(sim, {"type": "clearinghouseState", "user": MASTER, "dex": "xyz"})
    [pos] = state["assetPositions"]
    assert pos["type"] == "oneWay"
    assert pos["position"]["coin"] == GOLD and pos["position"]["szi"] == "0.01"
    assert pos["position"]["entryPx"] == num(Decimal(ask.px))
    assert pos["position"]["leverage"]["type"] == "isolated"

    # close it over HTTP with a reduce-only IOC sell at the bid
    async with httpx.AsyncClient(base_url=sim.url) as http:
        body = agent.orders(order_wire(GOLD_ID, False, float(bid.px), 0.01, "Ioc", True))
        r = await http.post("/exchange", json=body)
    assert r.status_code == 200
    result = r.json()
    assert result["status"] == "ok" and result["response"]["type"] == "order"
    [st] = result["response"]["data"]["statuses"]
    assert st["filled"]["totalSz"] == "0.01" and st["filled"]["avgPx"] == bid.px
    assert "cloid" not in st["filled"]

    state = await info(sim, {"type": "clearinghouseState", "user": MASTER, "dex": "xyz"})
    assert state["assetPositions"] == []
    assert state["marginSummary"]["accountValue"] == "0.0"
    fills = await info(sim, {"type": "userFills", "user": MASTER})
    assert [f["dir"] for f in fills] == ["Close Long", "Open Long"]  # newest first
    close, open_ = fills
    assert list(open_) == [
        "coin", "px", "sz", "side", "time", "startPosition", "dir", "closedPnl", "hash", "oid",
        "crossed", "fee", "tid", "cloid", "feeToken", "twapId",
    ]  # fmt: skip
    assert open_["crossed"] is True and close["crossed"] is True
    assert open_["side"] == "B" and close["side"] == "A"
    assert open_["startPosition"] == "0.0" and close["startPosition"] == "0.01"
    assert open_["feeToken"] == "USDC" and open_["twapId"] is None
    assert open_["tid"] != close["tid"] and open_["hash"] != close["hash"]
    assert open_["hash"].startswith("0x") and len(open_["hash"]) == 66
    expected_fee = (Decimal(ask.px) * Decimal("0.01") * TAKER).quantize(Decimal("0.000001"))
    assert Decimal(open_["fee"]) == expected_fee
    pnl = (Decimal(bid.px) - Decimal(ask.px)) * Decimal("0.01")
    assert Decimal(close["closedPnl"]) == pnl
    main = await info(sim, {"type": "clearinghouseState", "user": MASTER, "dex": ""})
    cash = Decimal(100_000) + pnl - Decimal(open_["fee"]) - Decimal(close["fee"])
    assert Decimal(main["marginSummary"]["accountValue"]) == cash
    assert Decimal(main["withdrawable"]) == cash


async def test_ioc_partial_fill_walks_and_consumes_the_book(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    _bids, asks = levels(sim)
    top, second = asks[0], asks[1]
    top_sz = Decimal(top.sz)
    async with connect(sim) as c:
        await c.subscribe({"type": "bbo", "coin": GOLD})
        await c.expect(lambda m: m["channel"] == "bbo")
        # more than the top level at the top price: a partial fill of exactly the top size
        size = float(top_sz + Decimal("0.5"))
        [st] = await ws_ok(
            c, 1, trader.orders(order_wire(GOLD_ID, True, float(top.px), size, "Ioc"))
        )
        assert st["filled"]["totalSz"] == num(top_sz)
        assert st["filled"]["avgPx"] == num(Decimal(top.px))
        # the book reflects the taking: the next level is now the best ask
        # (published while the action executed, so before the post response)
        moved = [m for m in c.seen if m["channel"] == "bbo"][-1]
        assert moved["data"]["bbo"][1]["px"] == second.px
        assert sim.model.bbo(GOLD).ask is not None
        assert sim.model.bbo(GOLD).ask.px == second.px  # type: ignore[union-attr]
        # an IOC through two levels: two fills (distinct tids, one hash), VWAP avgPx
        _bids, asks = levels(sim)
        a0, a1 = asks[0], asks[1]
        q0 = Decimal(a0.sz)
        q1 = Decimal("0.01")
        [st] = await ws_ok(
            c, 2, trader.orders(order_wire(GOLD_ID, True, float(a1.px), float(q0 + q1), "Ioc"))
        )
        assert st["filled"]["totalSz"] == num(q0 + q1)
        vwap = (Decimal(a0.px) * q0 + Decimal(a1.px) * q1) / (q0 + q1)
        assert abs(Decimal(st["filled"]["avgPx"]) - vwap) < Decimal("1e-7")
        msg = [m for m in c.seen if m["channel"] == "bbo"][-1]
        ask_now = Decimal(msg["data"]["bbo"][1]["px"])
        assert ask_now == Decimal(a1.px)  # partly consumed second level
    fills = await info(sim, {"type": "userFills", "user": MASTER})
    assert len(fills) == 3
    last_two = fills[:2]
    assert {f["px"] for f in last_two} == {num(Decimal(a0.px)), num(Decimal(a1.px))}
    assert last_two[0]["hash"] == last_two[1]["hash"]
    assert last_two[0]["tid"] != last_two[1]["tid"]
    assert last_two[0]["oid"] == last_two[1]["oid"] == st["filled"]["oid"]
    state = await info(sim, {"type": "clearinghouseState", "user": MASTER, "dex": "xyz"})
    assert state["assetPositions"][0]["position"]["szi"] == num(top_sz + q0 + q1)


async def test_ioc_without_match_and_sell_side(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    bbo = sim.model.bbo(GOLD)
    assert bbo.bid is not None and bbo.ask is not None
    below_ask = float(Decimal(bbo.ask.px) - Decimal("0.1"))
    above_bid = float(Decimal(bbo.bid.px) + Decimal("0.1"))
    async with connect(sim) as c:
        statuses = await ws_ok(
            c,
            1,
            trader.orders(
                order_wire(GOLD_ID, True, below_ask, 0.01, "Ioc"),
                order_wire(GOLD_ID, False, above_bid, 0.01, "Ioc"),
                order_wire(GOLD_ID, False, float(bbo.bid.px), 0.01, "Ioc"),
            ),
        )
    msg = f"Order could not immediately match against any resting orders. asset={GOLD_ID}"
    assert statuses[:2] == [{"error": msg}, {"error": msg}]
    assert statuses[2]["filled"]["avgPx"] == bbo.bid.px
    fills = await info(sim, {"type": "userFills", "user": MASTER})
    assert [f["dir"] for f in fills] == ["Open Short"]


async def test_price_size_and_notional_rules_in_one_batch(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    bbo = sim.model.bbo(GOLD)
    assert bbo.bid is not None
    far = float(round(Decimal(bbo.bid.px) * Decimal("0.9")))
    async with connect(sim) as c:
        statuses = await ws_ok(
            c,
            1,
            trader.orders(
                order_wire(GOLD_ID, True, 4105.55, 0.01),  # 6 significant figures
                order_wire(GOLD_ID, True, 410.555, 0.1),  # 3 decimals > 6 - szDecimals(4)
                order_wire(GOLD_ID, True, far, 0.00001),  # 5 size decimals > 4
                order_wire(GOLD_ID, True, far, 0.0),  # zero size
                order_wire(GOLD_ID, True, far, 0.002),  # ~$7.4 < $10
                order_wire(XYZ100_ID, True, 25150.5, 0.01),  # 6 sig figs
                order_wire(XYZ100_ID, True, 20001, 0.001),  # $20 notional, integer price
                order_wire(GOLD_ID, True, far, 0.01, cl=cloid(1)),  # valid, rests
                order_wire(123456, True, 10, 1),  # no such asset
            ),
        )
    assert statuses[:7] == [
        {"error": f"Price must be divisible by tick size. asset={GOLD_ID}"},
        {"error": f"Price must be divisible by tick size. asset={GOLD_ID}"},
        {"error": f"Order has invalid size. asset={GOLD_ID}"},
        {"error": f"Order has zero size. asset={GOLD_ID}"},
        {"error": f"Order must have minimum value of $10. asset={GOLD_ID}"},
        {"error": f"Price must be divisible by tick size. asset={XYZ100_ID}"},
        {"resting": {"oid": statuses[6]["resting"]["oid"]}},
    ]
    assert statuses[7] == {"resting": {"oid": statuses[7]["resting"]["oid"], "cloid": cloid(1)}}
    assert statuses[8] == {"error": "Invalid asset id. asset=123456"}
    assert statuses[7]["resting"]["oid"] > statuses[6]["resting"]["oid"] > 2**32


async def test_reduce_only_rules(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    bbo = sim.model.bbo(GOLD)
    assert bbo.bid is not None and bbo.ask is not None
    ask, bid = float(bbo.ask.px), float(bbo.bid.px)
    high = float(Decimal(bbo.ask.px) + 50)
    err = {"error": f"Reduce only order would increase position. asset={GOLD_ID}"}
    async with connect(sim) as c:
        flat = await ws_ok(c, 1, trader.orders(order_wire(GOLD_ID, False, bid, 0.01, "Ioc", True)))
        assert flat == [err]
        await ws_ok(c, 2, trader.orders(order_wire(GOLD_ID, True, ask, 0.01, "Ioc")))
        statuses = await ws_ok(
            c,
            3,
            trader.orders(
                order_wire(GOLD_ID, True, ask, 0.01, "Ioc", True),  # same direction
                order_wire(GOLD_ID, False, bid, 0.02, "Ioc", True),  # would flip
                order_wire(GOLD_ID, False, bid, 0.002, "Ioc", True),  # below $10
                order_wire(GOLD_ID, False, bid, 0.006, "Ioc", True),  # ok
                order_wire(GOLD_ID, False, bid, 0.006, "Ioc", True),  # 0.004 left: too big
                order_wire(GOLD_ID, False, high, 0.004, "Gtc", True),  # rests
            ),
        )
    assert statuses[0] == err and statuses[1] == err
    assert statuses[2] == {"error": f"Order must have minimum value of $10. asset={GOLD_ID}"}
    assert statuses[3]["filled"]["totalSz"] == "0.006"
    assert statuses[4] == err
    oid = statuses[5]["resting"]["oid"]
    state = await info(sim, {"type": "clearinghouseState", "user": MASTER, "dex": "xyz"})
    assert state["assetPositions"][0]["position"]["szi"] == "0.004"
    [oo] = await info(sim, {"type": "openOrders", "user": MASTER, "dex": "xyz"})
    assert oo["oid"] == oid and oo["reduceOnly"] is True and oo["side"] == "A"


async def test_alo_success_then_oid_in_order_updates(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    bbo = sim.model.bbo(GOLD)
    assert bbo.bid is not None and bbo.ask is not None
    async with connect(sim) as c:
        await c.subscribe({"type": "orderUpdates", "user": MASTER})
        statuses = await ws_ok(
            c,
            1,
            trader.orders(
                order_wire(GOLD_ID, True, float(bbo.ask.px), 0.01, "Alo"),
                order_wire(GOLD_ID, False, float(bbo.bid.px), 0.01, "Alo"),
                order_wire(GOLD_ID, True, float(bbo.bid.px), 0.01, "Alo", cl=cloid(5)),
            ),
        )
        text = f"bbo was {bbo.bid.px}@{bbo.ask.px}. asset={GOLD_ID}"
        assert statuses == [
            {"error": f"Post only order would have immediately matched, {text}"},
            {"error": f"Post only order would have immediately matched, {text}"},
            "success",
        ]
        upd = next(m for m in c.seen if m["channel"] == "orderUpdates")
    assert isinstance(upd["data"], list) and len(upd["data"]) == 1
    [u] = upd["data"]
    assert u["status"] == "open" and isinstance(u["statusTimestamp"], int)
    order = u["order"]
    assert list(order) == ["coin", "side", "limitPx", "sz", "oid", "timestamp", "origSz", "cloid"]
    assert order["coin"] == GOLD and order["side"] == "B" and order["cloid"] == cloid(5)
    assert order["limitPx"] == num(Decimal(bbo.bid.px)) and order["sz"] == order["origSz"] == "0.01"
    oo = await info(sim, {"type": "frontendOpenOrders", "user": MASTER, "dex": "xyz"})
    assert [(o["oid"], o["tif"], o["orderType"]) for o in oo] == [(order["oid"], "Alo", "Limit")]


async def test_gtc_rest_cancel_and_order_status(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    bbo = sim.model.bbo(GOLD)
    assert bbo.bid is not None and bbo.ask is not None
    low = float(Decimal(bbo.bid.px) - 10)
    async with connect(sim) as c:
        await c.subscribe({"type": "orderUpdates", "user": MASTER})
        a, b = await ws_ok(
            c,
            1,
            trader.orders(
                order_wire(GOLD_ID, True, low, 0.01, cl=cloid(1)),
                order_wire(GOLD_ID, True, low - 1, 0.01, "Gtc", True, cl=cloid(2)),
            ),
        )
        assert b == {"error": f"Reduce only order would increase position. asset={GOLD_ID}"}
        oid = a["resting"]["oid"]
        [c2] = await ws_ok(
            c, 2, trader.orders(order_wire(GOLD_ID, True, low - 2, 0.02, cl=cloid(3)))
        )
        oid2 = c2["resting"]["oid"]
        status = await info(sim, {"type": "orderStatus", "user": MASTER, "oid": oid})
        assert status["status"] == "order"
        assert status["order"]["status"] == "open"
        assert status["order"]["order"]["oid"] == oid
        by_cloid = await info(sim, {"type": "orderStatus", "user": MASTER, "oid": cloid(3)})
        assert by_cloid["order"]["order"]["oid"] == oid2

        assert await ws_ok(c, 3, trader.cancel(GOLD_ID, oid)) == ["success"]
        again = await ws_ok(c, 4, trader.cancel(GOLD_ID, oid))
        never = f"Order was never placed, already canceled, or filled. asset={GOLD_ID}"
        assert again == [{"error": never}]
        assert await ws_ok(c, 5, trader.cancel(XYZ100_ID, oid2)) == [{"error": f"Order was never placed, already canceled, or filled. asset={XYZ100_ID}"}]  # fmt: skip
        assert await ws_ok(c, 6, trader.cancel_by_cloid(GOLD_ID, cloid(3))) == ["success"]
        assert await ws_ok(c, 7, trader.cancel_by_cloid(GOLD_ID, cloid(3))) == [{"error": never}]
        assert await ws_ok(c, 8, trader.cancel_by_cloid(GOLD_ID, cloid(99))) == [{"error": never}]
        updates = [m for m in c.seen if m["channel"] == "orderUpdates"]
    flat = [(u["order"]["oid"], u["status"]) for m in updates for u in m["data"]]
    assert flat == [(oid, "open"), (oid2, "open"), (oid, "canceled"), (oid2, "canceled")]
    status = await info(sim, {"type": "orderStatus", "user": MASTER, "oid": oid})
    assert status["order"]["status"] == "canceled"
    assert await info(sim, {"type": "openOrders", "user": MASTER, "dex": "xyz"}) == []
    unknown = await info(sim, {"type": "orderStatus", "user": MASTER, "oid": 12345})
    assert unknown == {"status": "unknownOid"}


async def test_gtc_crossing_fills_then_rests_the_rest(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    _bids, asks = levels(sim)
    top = asks[0]
    extra = Decimal("0.05")
    size = Decimal(top.sz) + extra
    async with connect(sim) as c:
        await c.subscribe({"type": "orderUpdates", "user": MASTER})
        [st] = await ws_ok(
            c, 1, trader.orders(order_wire(GOLD_ID, True, float(top.px), float(size)))
        )
        oid = st["resting"]["oid"]
        upd = next(m for m in c.seen if m["channel"] == "orderUpdates")
    [u] = upd["data"]
    assert u["status"] == "open" and u["order"]["sz"] == num(extra)
    assert u["order"]["origSz"] == num(size)
    [open_order] = await info(sim, {"type": "openOrders", "user": MASTER, "dex": "xyz"})
    assert open_order["oid"] == oid and open_order["sz"] == num(extra)
    assert open_order["limitPx"] == num(Decimal(top.px))
    fills = await info(sim, {"type": "userFills", "user": MASTER})
    assert [f["sz"] for f in fills] == [num(Decimal(top.sz))]


async def test_resting_order_fills_as_maker_when_the_book_crosses_it(
    start_sim: Any, connect: Any
) -> None:
    sim = await start(start_sim, speed=10.0, seed=3)
    trader = Trader()
    async with connect(sim) as c:
        await c.subscribe({"type": "orderUpdates", "user": MASTER})
        await c.subscribe({"type": "userFills", "user": MASTER})
        bid = sim.model.bbo(GOLD).bid
        assert bid is not None
        [st] = await ws_ok(c, 1, trader.orders(order_wire(GOLD_ID, True, float(bid.px), 0.005)))
        oid = st["resting"]["oid"]
        # the oracle drops 1 %; once the market maker re-centres, its ask is below our bid
        sim.force_dislocation(GOLD, "sell", 100, lag_ms=800)
        msg = await c.expect(
            lambda m: m["channel"] == "userFills" and "isSnapshot" not in m["data"], wait_s=5
        )
        [fill] = msg["data"]["fills"]
        assert fill["crossed"] is False and fill["oid"] == oid
        assert fill["px"] == num(Decimal(bid.px)) and fill["sz"] == "0.005"
        expected = (Decimal(bid.px) * Decimal("0.005") * Decimal("0.0000255")).quantize(
            Decimal("0.000001")
        )
        assert Decimal(fill["fee"]) == expected
        # orderUpdates are sent just before the fills
        upd = [m for m in c.seen if m["channel"] == "orderUpdates"]
        assert [u["status"] for m in upd for u in m["data"]] == ["open", "filled"]
        assert upd[-1]["data"][0]["order"]["sz"] == "0.0"


async def test_insufficient_margin(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim, accounts={MASTER: 50.0})
    trader = Trader()
    ask = sim.model.bbo(GOLD).ask
    assert ask is not None
    async with connect(sim) as c:
        # 0.2 GOLD ~ $820 at 10x needs ~$82 of margin
        statuses = await ws_ok(
            c,
            1,
            trader.orders(
                order_wire(GOLD_ID, True, float(ask.px), 0.2, "Ioc"),
                order_wire(GOLD_ID, True, float(ask.px), 0.01, "Ioc"),
            ),
        )
    assert statuses[0] == {"error": f"Insufficient margin to place order. asset={GOLD_ID}"}
    assert "filled" in statuses[1]
    # open orders hold margin too: ~$39 for the first leaves too little for the second
    low = float(Decimal(ask.px) * Decimal("0.95")) // 1
    async with connect(sim) as c:
        statuses = await ws_ok(
            c,
            2,
            trader.orders(
                order_wire(GOLD_ID, True, low, 0.1),
                order_wire(GOLD_ID, True, low, 0.05),
                order_wire(GOLD_ID, False, low, 0.01, "Ioc", True),  # reduce-only: no margin
            ),
        )
    assert "resting" in statuses[0]
    assert statuses[1] == {"error": f"Insufficient margin to place order. asset={GOLD_ID}"}
    assert "filled" in statuses[2]


async def test_update_leverage_changes_margin(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    ask = sim.model.bbo(GOLD).ask
    assert ask is not None
    async with connect(sim) as c:
        r = await ws_action(
            c,
            1,
            trader.sign(
                {"type": "updateLeverage", "asset": GOLD_ID, "isCross": False, "leverage": 2}
            ),
        )
        assert r["payload"] == {"status": "ok", "response": {"type": "default"}}
        r = await ws_action(
            c,
            2,
            trader.sign(
                {"type": "updateLeverage", "asset": GOLD_ID, "isCross": True, "leverage": 2}
            ),
        )
        assert r["payload"]["status"] == "err"
        await ws_ok(c, 3, trader.orders(order_wire(GOLD_ID, True, float(ask.px), 0.01, "Ioc")))
    state = await info(sim, {"type": "clearinghouseState", "user": MASTER, "dex": "xyz"})
    position = state["assetPositions"][0]["position"]
    assert position["leverage"]["value"] == 2
    margin = Decimal(ask.px) * Decimal("0.01") / 2
    assert Decimal(position["marginUsed"]) == margin + Decimal(position["unrealizedPnl"])


async def test_http_exchange_errors(start_sim: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    async with httpx.AsyncClient(base_url=sim.url) as http:
        assert (await http.get("/exchange")).status_code == 405
        r = await http.post("/exchange", content=b"{nope")
        assert r.status_code == 422 and set(r.json()) == {"code", "msg", "data"}
        bad_cloid = trader.orders(order_wire(GOLD_ID, True, 4000, 0.01))
        bad_cloid["action"]["orders"][0]["c"] = "hip3_123_abcd"  # P7: not 0x + 32 hex
        r = await http.post("/exchange", json=bad_cloid)
        assert r.status_code == 422
        assert r.json()["msg"].startswith("Failed to deserialize the JSON body")
        no_nonce = trader.orders(order_wire(GOLD_ID, True, 4000, 0.01))
        del no_nonce["nonce"]
        assert (await http.post("/exchange", json=no_nonce)).status_code == 422
        float_price = trader.orders(order_wire(GOLD_ID, True, 4000, 0.01))
        float_price["action"]["orders"][0]["p"] = 4000.0
        assert (await http.post("/exchange", json=float_price)).status_code == 422
        bare_hex = trader.orders(order_wire(GOLD_ID, True, 4000, 0.01))
        bare_hex["signature"]["r"] = bare_hex["signature"]["r"][2:]  # P3
        assert (await http.post("/exchange", json=bare_hex)).status_code == 422
        raw_v = trader.orders(order_wire(GOLD_ID, True, 4000, 0.01))
        raw_v["signature"]["v"] -= 27  # P5
        r = await http.post("/exchange", json=raw_v)
        assert r.status_code == 200 and r.json()["status"] == "err"
        unsupported = trader.sign({"type": "batchModify", "modifies": []})
        r = await http.post("/exchange", json=unsupported)
        assert r.json() == {
            "status": "err",
            "response": "Simulator does not support action type 'batchModify'",
        }
        # scheduleCancel is supported (tests/sim/test_schedule_cancel.py): a past time is refused
        r = await http.post("/exchange", json=trader.sign({"type": "scheduleCancel", "time": 1}))
        assert r.json()["status"] == "err" and "too early" in r.json()["response"]


async def test_ws_parse_error_is_a_post_error(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    body = trader.orders(order_wire(GOLD_ID, True, 4000, 0.01))
    body["action"]["orders"][0]["t"] = {"limit": {"tif": "Day"}}
    async with connect(sim) as c:
        r = await ws_action(c, 5, body)
    assert r["type"] == "error" and "Day" in r["payload"]


async def test_many_orders_in_one_batch_keep_their_order(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    bid = sim.model.bbo(GOLD).bid
    assert bid is not None
    wires = [
        order_wire(GOLD_ID, True, float(Decimal(bid.px) - 20 - i), 0.01, cl=cloid(100 + i))
        for i in range(30)
    ]
    async with connect(sim) as c:
        with trio.fail_after(5):
            statuses = await ws_ok(c, 1, trader.orders(*wires))
    assert [s["resting"]["cloid"] for s in statuses] == [cloid(100 + i) for i in range(30)]
    oids = [s["resting"]["oid"] for s in statuses]
    assert oids == sorted(oids) and len(set(oids)) == 30
    oo = await info(sim, {"type": "openOrders", "user": MASTER, "dex": "xyz"})
    assert len(oo) == 30


def test_accounting_is_consistent_over_random_trades() -> None:
    """Without a server: random IOC trades, then flat. Cash moves by exactly the closed PnL minus
    the fees, fills chain their startPosition, and each order's fills add up to its totalSz."""
    sim = SimExchange(seed=5, accounts={MASTER: 100_000.0})
    sim.model.advance(0)
    trader = Trader()
    rng = random.Random(5)
    totals: dict[int, Decimal] = {}

    def send(is_buy: bool, sz: Decimal, reduce_only: bool = False) -> None:
        bbo = sim.model.bbo(GOLD)
        assert bbo.bid is not None and bbo.ask is not None
        ref = Decimal(bbo.ask.px if is_buy else bbo.bid.px) * Decimal("1.01" if is_buy else "0.99")
        px = float(grid.round_price(ref, 4, "up" if is_buy else "down"))
        body = trader.orders(order_wire(GOLD_ID, is_buy, px, float(sz), "Ioc", reduce_only))
        result = sim.trading.execute_now(parse_signed_action(body))
        assert result["status"] == "ok", result
        [st] = result["response"]["data"]["statuses"]
        if "filled" in st:
            totals[st["filled"]["oid"]] = Decimal(st["filled"]["totalSz"])

    for _ in range(40):
        send(rng.random() < 0.5, Decimal(rng.randint(30, 500)) / 10_000)
    szi = sim.trading.accounts[MASTER].szi(GOLD)
    if szi:
        send(szi < 0, abs(szi), reduce_only=True)
    acct = sim.trading.accounts[MASTER]
    assert acct.positions == {}
    pnl = sum((Decimal(f["closedPnl"]) for f in acct.fills), Decimal(0))
    fees = sum((Decimal(f["fee"]) for f in acct.fills), Decimal(0))
    assert abs(acct.cash - (Decimal(100_000) + pnl - fees)) < Decimal("0.00001")
    position = Decimal(0)
    by_oid: dict[int, Decimal] = {}
    for f in acct.fills:
        assert Decimal(f["startPosition"]) == position
        signed = Decimal(f["sz"]) if f["side"] == "B" else -Decimal(f["sz"])
        position += signed
        by_oid[f["oid"]] = by_oid.get(f["oid"], Decimal(0)) + Decimal(f["sz"])
    assert position == 0
    assert by_oid == totals
    assert len({f["tid"] for f in acct.fills}) == len(acct.fills)
