"""Trading fault knobs and timing: per-order rejections, partial fills, matching after the match
latency against the later book, lost and late post responses, IOC orders without orderUpdates,
transient empty clearinghouseState, venue restarts, the 100-inflight-posts limit, fees, and the
``/sim/control`` actions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from engine.sim import ModelParams, SimExchange

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

FROZEN = {"seed": 4, "speed": 1e-3}
# A real-time model whose prices only move through our own taking (sizes still change).
STILL = ModelParams(
    tick_move_prob=0.0,
    empty_side_prob=0.0,
    oracle_interval_ms=600_000,
    oracle_min_interval_ms=600_000,
    oracle_jitter_ms=0,
)


async def start(start_sim: Any, **kw: Any) -> SimExchange:
    args: dict[str, Any] = {**FROZEN, "accounts": {MASTER: 100_000.0}}
    args.update(kw)
    sim: SimExchange = await start_sim(**args)
    return sim


async def info(sim: SimExchange, body: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        r = await http.post("/info", json=body)
        assert r.status_code == 200, r.text
        return r.json()


def prices(sim: SimExchange) -> tuple[float, float]:
    bbo = sim.model.bbo(GOLD)
    assert bbo.bid is not None and bbo.ask is not None
    return float(bbo.bid.px), float(bbo.ask.px)


async def test_reject_next(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    bid, _ask = prices(sim)
    sim.reject_next(2)
    async with connect(sim) as c:
        statuses = await ws_ok(
            c, 1, trader.orders(*[order_wire(GOLD_ID, True, bid - 10 - i, 0.01) for i in range(3)])
        )
        assert (
            statuses[:2] == [{"error": f"Insufficient margin to place order. asset={GOLD_ID}"}] * 2
        )
        assert "resting" in statuses[2]
        sim.reject_next(1, "Order would increase open interest while open interest is capped")
        # (the knob appends the HIP-3 asset suffix)
        [st] = await ws_ok(c, 2, trader.orders(order_wire(GOLD_ID, True, bid - 20, 0.01)))
    capped = "Order would increase open interest while open interest is capped"
    assert st == {"error": f"{capped} asset={GOLD_ID}"}
    with pytest.raises(ValueError):
        sim.reject_next(-1)


async def test_partial_fill_ratio(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    _bid, ask = prices(sim)
    sim.partial_fill_ratio = 0.5
    async with connect(sim) as c:
        [st] = await ws_ok(c, 1, trader.orders(order_wire(GOLD_ID, True, ask, 0.03, "Ioc")))
        assert st["filled"]["totalSz"] == "0.015"
        [st] = await ws_ok(c, 2, trader.orders(order_wire(GOLD_ID, True, ask, 0.0031, "Ioc")))
        assert st["filled"]["totalSz"] == "0.0015"  # floored to the lot
        sim.partial_fill_ratio = None
        [st] = await ws_ok(c, 3, trader.orders(order_wire(GOLD_ID, True, ask, 0.03, "Ioc")))
        assert st["filled"]["totalSz"] == "0.03"
    with pytest.raises(ValueError):
        sim.partial_fill_ratio = 1.5


async def test_ioc_matches_the_book_after_the_match_latency(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim, speed=1.0, params=STILL, match_latency_ms=400)
    trader = Trader()
    _bid, ask = prices(sim)
    async with connect(sim) as c:
        body = trader.orders(order_wire(GOLD_ID, True, ask, 0.01, "Ioc"))
        await c.send({"method": "post", "id": 1, "request": {"type": "action", "payload": body}})
        t0 = trio.current_time()
        await trio.sleep(0.1)
        # someone else lifts every ask at that price before the order executes
        _taken, event = sim.model.take(GOLD, True, Decimal(repr(ask)), Decimal(1000), 100)
        assert event is not None
        resp = await c.expect(lambda m: m["channel"] == "post", wait_s=3)
        assert trio.current_time() - t0 >= 0.39
        [st] = resp["data"]["response"]["payload"]["response"]["data"]["statuses"]
        assert st == {
            "error": "Order could not immediately match against any resting orders. "
            f"asset={GOLD_ID}"
        }
        # and the other way round: not marketable when sent, marketable when executed
        new_ask = sim.model.bbo(GOLD).ask
        assert new_ask is not None and float(new_ask.px) > ask
        sim.match_latency_ms = 0
        [st] = await ws_ok(c, 2, trader.orders(order_wire(GOLD_ID, True, ask, 0.01, "Ioc")))
        assert "error" in st


async def test_drop_next_post_responses(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    bid, _ask = prices(sim)
    sim.drop_next_post_responses(1)
    async with connect(sim) as c:
        await c.subscribe({"type": "orderUpdates", "user": MASTER})
        body = trader.orders(order_wire(GOLD_ID, True, bid - 10, 0.01, cl=cloid(1)))
        await c.send({"method": "post", "id": 1, "request": {"type": "action", "payload": body}})
        upd = await c.expect(lambda m: m["channel"] == "orderUpdates")
        assert upd["data"][0]["order"]["cloid"] == cloid(1)  # it was executed ...
        assert [m for m in await c.collect(0.3) if m["channel"] == "post"] == []  # ... silently
        [st] = await ws_ok(c, 2, trader.orders(order_wire(GOLD_ID, True, bid - 11, 0.01)))
        assert "resting" in st
    sim.drop_next_post_responses(1)
    async with httpx.AsyncClient(base_url=sim.url, timeout=0.5) as http:
        body = trader.orders(order_wire(GOLD_ID, True, bid - 12, 0.01, cl=cloid(3)))
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/exchange", json=body)
        status = await http.post(
            "/info", json={"type": "orderStatus", "user": MASTER, "oid": cloid(3)}
        )
    assert status.json()["order"]["status"] == "open"
    assert sim.stats()["trading"]["dropped_responses"] == 2


async def test_delay_post_responses(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    bid, _ask = prices(sim)
    # long enough that "not delayed" (under half of it) holds on a loaded machine
    sim.delay_post_responses_ms = 1000
    async with connect(sim) as c:
        await c.subscribe({"type": "orderUpdates", "user": MASTER})
        t0 = trio.current_time()
        [st] = await ws_ok(c, 1, trader.orders(order_wire(GOLD_ID, True, bid - 10, 0.01)))
        assert trio.current_time() - t0 >= 0.99
        channels = [m["channel"] for m in c.seen if m["channel"] in ("orderUpdates", "post")]
        assert channels == ["orderUpdates", "post"]  # the stream beat the late response
        # info posts are not delayed
        t0 = trio.current_time()
        await c.send(
            {
                "method": "post",
                "id": 2,
                "request": {"type": "info", "payload": {"type": "meta", "dex": "xyz"}},
            }
        )
        await c.expect(lambda m: m["channel"] == "post" and m["data"]["id"] == 2)
        assert trio.current_time() - t0 < 0.5
    async with httpx.AsyncClient(base_url=sim.url) as http:
        t0 = trio.current_time()
        r = await http.post("/exchange", json=trader.cancel(GOLD_ID, st["resting"]["oid"]))
        assert r.json()["response"]["data"]["statuses"] == ["success"]
        assert trio.current_time() - t0 >= 0.99


async def test_omit_order_updates_for_ioc(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    bid, ask = prices(sim)
    sim.omit_order_updates_for_ioc = True
    async with connect(sim) as c:
        await c.subscribe({"type": "orderUpdates", "user": MASTER})
        await c.subscribe({"type": "userFills", "user": MASTER})
        statuses = await ws_ok(
            c,
            1,
            trader.orders(
                order_wire(GOLD_ID, True, ask, 0.01, "Ioc"),
                order_wire(GOLD_ID, True, bid - 10, 0.01),
            ),
        )
        assert "filled" in statuses[0] and "resting" in statuses[1]
        upd = [u for m in c.seen if m["channel"] == "orderUpdates" for u in m["data"]]
        assert [u["order"]["oid"] for u in upd] == [statuses[1]["resting"]["oid"]]
        fills = [m for m in c.seen if m["channel"] == "userFills" and "isSnapshot" not in m["data"]]
        assert [f["oid"] for f in fills[0]["data"]["fills"]] == [statuses[0]["filled"]["oid"]]


async def test_transient_empty_clearinghouse(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    _bid, ask = prices(sim)
    query = {"type": "clearinghouseState", "user": MASTER, "dex": "xyz"}
    async with connect(sim) as c:
        await ws_ok(c, 1, Trader().orders(order_wire(GOLD_ID, True, ask, 0.01, "Ioc")))
        sim.transient_empty_clearinghouse(2)
        await c.send({"method": "post", "id": 2, "request": {"type": "info", "payload": query}})
        resp = await c.expect(lambda m: m["channel"] == "post" and m["data"]["id"] == 2)
        empty = resp["data"]["response"]["payload"]["data"]
    assert empty["assetPositions"] == [] and empty["marginSummary"]["accountValue"] == "0.0"
    main = await info(sim, {"type": "clearinghouseState", "user": MASTER})
    assert main["marginSummary"]["accountValue"] == "0.0"  # main dex zeroed too
    assert len((await info(sim, query))["assetPositions"]) == 1


async def test_restart_drops_connections_and_keeps_state(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    bid, ask = prices(sim)
    async with connect(sim) as c:
        await ws_ok(c, 1, trader.orders(order_wire(GOLD_ID, True, ask, 0.01, "Ioc")))
        [st] = await ws_ok(c, 2, trader.orders(order_wire(GOLD_ID, True, bid - 10, 0.01)))
        stream = await trio.open_tcp_stream(sim.host, sim.port)  # an idle keep-alive client
        body = b'{"type":"perpDexs"}'
        head = f"POST /info HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        await stream.send_all(head.encode() + body)
        with trio.fail_after(2):
            assert b"200 OK" in await stream.receive_some(65536)
        assert sim.restart() == 1
        with trio.fail_after(2), pytest.raises(ConnectionClosed) as closed:
            while True:
                await c.ws.get_message()
        assert closed.value.reason is not None and closed.value.reason.code == 1006
        with trio.fail_after(2):
            assert await stream.receive_some(65536) == b""  # the HTTP connection went too
        await stream.aclose()
    async with connect(sim) as c:  # the venue is back, with its state
        [st2] = await ws_ok(c, 3, trader.cancel(GOLD_ID, st["resting"]["oid"]))
        assert st2 == "success"
    state = await info(sim, {"type": "clearinghouseState", "user": MASTER, "dex": "xyz"})
    assert state["assetPositions"][0]["position"]["szi"] == "0.01"


async def test_too_many_pending_post_requests(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim, speed=1.0, params=STILL, match_latency_ms=1000)
    trader = Trader()
    bodies = [trader.cancel(GOLD_ID, 1) for _ in range(101)]
    async with connect(sim) as c:
        for i, body in enumerate(bodies):
            await c.send(
                {"method": "post", "id": i, "request": {"type": "action", "payload": body}}
            )
        err = await c.expect(lambda m: m["channel"] == "error", wait_s=2)
        assert err["data"] == "too many pending post requests id=100"
        got = set()
        with trio.fail_after(5):
            while len(got) < 100:
                m = await c.recv()
                if m["channel"] == "post":
                    got.add(m["data"]["id"])
        assert got == set(range(100))
        sim.match_latency_ms = 0
        assert await ws_ok(c, 200, trader.cancel(GOLD_ID, 1)) == [
            {"error": f"Order was never placed, already canceled, or filled. asset={GOLD_ID}"}
        ]


async def test_per_market_fee(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    _bid, ask = prices(sim)
    sim.set_fee(GOLD, 0.0001, 0.0)
    async with connect(sim) as c:
        await ws_ok(c, 1, Trader().orders(order_wire(GOLD_ID, True, ask, 0.01, "Ioc")))
    [fill] = await info(sim, {"type": "userFills", "user": MASTER})
    expected = (Decimal(repr(ask)) * Decimal("0.01") * Decimal("0.0001")).quantize(
        Decimal("0.000001")
    )
    assert Decimal(fill["fee"]) == expected
    with pytest.raises(ValueError):
        sim.set_fee("xyz:NOPE", 0.0001, 0.0)


async def test_control_actions(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim, accounts={})
    bid, _ask = prices(sim)
    async with httpx.AsyncClient(base_url=sim.url) as http:

        async def control(body: Any) -> httpx.Response:
            return await http.post("/sim/control", json=body)

        ok_bodies: list[dict[str, Any]] = [
            {"action": "create_account", "address": MASTER, "balance": 2500},
            {"action": "approve_agent", "agent": AGENT, "master": MASTER},
            {"action": "set_fee", "coin": GOLD, "taker": 0.0001, "maker": 0.00002},
            {"action": "set_match_latency", "ms": 0},
            {"action": "reject_next", "n": 1},
            {"action": "reject_next", "n": 1, "error": "Custom."},
            {"action": "set_partial_fill_ratio", "ratio": 0.5},
            {"action": "set_partial_fill_ratio", "ratio": None},
            {"action": "drop_next_post_responses", "n": 0},
            {"action": "delay_post_responses", "ms": 0},
            {"action": "omit_order_updates_for_ioc", "enabled": False},
            {"action": "transient_empty_clearinghouse", "n": 0},
        ]
        for body in ok_bodies:
            r = await control(body)
            assert r.status_code == 200 and r.json()["ok"] is True, (body, r.text)
        r = await control({"action": "account", "address": MASTER})
        summary = r.json()["result"]
        assert summary["cash"] == "2500.0" and summary["open_orders"] == []
        assert (await control({"action": "account", "address": AGENT})).json()["result"] is None
        async with connect(sim) as c:
            statuses = await ws_ok(
                c,
                1,
                Trader(AGENT_KEY).orders(
                    *[order_wire(GOLD_ID, True, bid - 10 - i, 0.01) for i in range(3)]
                ),
            )
            assert statuses[0] == {"error": f"Insufficient margin to place order. asset={GOLD_ID}"}
            assert statuses[1] == {"error": f"Custom. asset={GOLD_ID}"}
            assert "resting" in statuses[2]
            r = await control({"action": "restart"})
            assert r.json() == {"ok": True, "result": 1}
        for body in (
            {"action": "create_account", "address": "0x12", "balance": 1},
            {"action": "create_account", "address": MASTER, "balance": -1},
            {"action": "approve_agent", "agent": AGENT, "master": "0x" + "ee" * 20},
            {"action": "approve_agent", "agent": MASTER, "master": MASTER},
            {"action": "set_fee", "coin": "xyz:NOPE", "taker": 0.0001, "maker": 0},
            {"action": "set_match_latency", "ms": -5},
            {"action": "reject_next", "n": -1},
            {"action": "reject_next", "n": 1.5},
            {"action": "set_partial_fill_ratio", "ratio": 0},
            {"action": "drop_next_post_responses", "n": "x"},
            {"action": "delay_post_responses", "ms": -1},
            {"action": "omit_order_updates_for_ioc", "enabled": "yes"},
            {"action": "transient_empty_clearinghouse"},
            {"action": "account"},
        ):
            r = await control(body)
            if body == {"action": "transient_empty_clearinghouse"}:
                assert r.status_code == 200  # n defaults to 1
                continue
            assert r.status_code == 400, body
            assert r.json()["ok"] is False
        stats = (await http.get("/sim/stats")).json()
        assert stats["trading"]["accounts"] == 1 and stats["trading"]["agents"] == 1
        assert stats["trading"]["open_orders"] == 1
        assert stats["http_exchange_requests"] == 0


async def test_http_exchange_with_agent(start_sim: Any) -> None:
    sim = await start(start_sim, agents={AGENT: MASTER})
    _bid, ask = prices(sim)
    async with httpx.AsyncClient(base_url=sim.url) as http:
        body = Trader(AGENT_KEY).orders(order_wire(GOLD_ID, True, ask, 0.01, "Ioc"))
        r = await http.post("/exchange", json=body)
        assert r.json()["response"]["data"]["statuses"][0]["filled"]["totalSz"] == "0.01"
        fills = (await http.post("/info", json={"type": "userFills", "user": MASTER})).json()
        assert len(fills) == 1
    assert sim.stats()["http_exchange_requests"] == 1


async def test_actions_posted_without_trading_state_are_answered(
    start_sim: Any, connect: Any
) -> None:
    """A fresh simulator (no accounts) still answers every action post."""
    sim = await start_sim(seed=1)
    async with connect(sim) as c:
        r = await ws_action(c, 1, Trader().orders(order_wire(GOLD_ID, True, 4000, 0.01)))
    assert r["payload"] == {
        "status": "err",
        "response": f"L1 error: User or API Wallet {MASTER} does not exist.",
    }
