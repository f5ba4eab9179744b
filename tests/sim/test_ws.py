"""The WebSocket at ``/ws`` seen through trio-websocket: greeting, acks and error strings,
ping/pong, exact bbo / activeAssetCtx shapes, snapshots, post round trips, idle close."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from engine.sim import SimExchange, grid
from engine.sim.markets import XYZ_MARKETS

SZD = {m.name: m.sz_decimals for m in XYZ_MARKETS}
GOLD = {"type": "bbo", "coin": "xyz:GOLD"}
GOLD_CTX = {"type": "activeAssetCtx", "coin": "xyz:GOLD"}
ADDR = "0x0116a3d95994bcc7d6a84380ed6256fbb32cd25d"


def check_bbo_shape(msg: dict[str, Any]) -> None:
    assert set(msg) == {"channel", "data"} and msg["channel"] == "bbo"
    data = msg["data"]
    assert list(data) == ["coin", "time", "bbo"]
    assert isinstance(data["time"], int) and data["time"] > 1_600_000_000_000
    szd = SZD[data["coin"]]
    assert isinstance(data["bbo"], list) and len(data["bbo"]) == 2
    for side in data["bbo"]:
        if side is None:
            continue
        assert list(side) == ["px", "sz", "n"]
        assert isinstance(side["px"], str) and grid.is_valid_price(side["px"], szd)
        assert isinstance(side["sz"], str) and grid.is_valid_size(side["sz"], szd)
        assert isinstance(side["n"], int) and not isinstance(side["n"], bool)
    bid, ask = data["bbo"]
    if bid is not None and ask is not None:
        assert float(bid["px"]) < float(ask["px"])


def check_ctx_shape(msg: dict[str, Any]) -> None:
    assert set(msg) == {"channel", "data"} and msg["channel"] == "activeAssetCtx"
    assert list(msg["data"]) == ["coin", "ctx"]
    ctx = msg["data"]["ctx"]
    assert list(ctx) == [
        "funding",
        "openInterest",
        "prevDayPx",
        "dayNtlVlm",
        "premium",
        "oraclePx",
        "markPx",
        "midPx",
        "impactPxs",
        "dayBaseVlm",
    ]
    for key, value in ctx.items():
        if key in ("midPx", "premium", "impactPxs") and value is None:
            continue
        if key == "impactPxs":
            assert isinstance(value, list) and len(value) == 2
            assert all(isinstance(v, str) for v in value)
        else:
            assert isinstance(value, str), key
            float(value)


async def test_greeting_ack_and_snapshots(sim: SimExchange, connect: Any) -> None:
    async with connect(sim) as c:
        await c.send({"method": "subscribe", "subscription": GOLD})
        ack = await c.recv()
        assert ack == {
            "channel": "subscriptionResponse",
            "data": {"method": "subscribe", "subscription": GOLD},
        }
        snap = await c.recv()
        check_bbo_shape(snap)
        assert snap["data"]["coin"] == "xyz:GOLD"
        await c.send({"method": "subscribe", "subscription": GOLD_CTX})
        assert (await c.recv())["channel"] == "subscriptionResponse"
        ctx = await c.expect(lambda m: m["channel"] == "activeAssetCtx")
        check_ctx_shape(ctx)
        assert ctx["data"]["coin"] == "xyz:GOLD"


async def test_streams_have_exact_shapes_and_monotonic_time(start_sim: Any, connect: Any) -> None:
    sim = await start_sim(seed=2, speed=8.0)
    coins = ["xyz:GOLD", "xyz:SILVER", "xyz:TSLA", "xyz:EUR"]
    async with connect(sim) as c:
        for coin in coins:
            await c.subscribe({"type": "bbo", "coin": coin})
            await c.subscribe({"type": "activeAssetCtx", "coin": coin})
        msgs = await c.collect(1.0)
    last: dict[str, int] = {}
    n_bbo = n_ctx = 0
    for m in msgs:
        if m["channel"] == "bbo":
            n_bbo += 1
            check_bbo_shape(m)
            coin, t = m["data"]["coin"], m["data"]["time"]
            assert t >= last.get(coin, 0)
            last[coin] = t
        elif m["channel"] == "activeAssetCtx":
            n_ctx += 1
            check_ctx_shape(m)
    assert n_bbo > 20 and n_ctx >= 4 * 2  # snapshot + at least one oracle update per coin


async def test_duplicate_invalid_and_unsubscribe_errors(sim: SimExchange, connect: Any) -> None:
    async with connect(sim) as c:
        await c.subscribe(GOLD)
        await c.send({"method": "subscribe", "subscription": GOLD})
        err = await c.expect(lambda m: m["channel"] == "error")
        assert err == {
            "channel": "error",
            "data": 'Already subscribed: {"type":"bbo","coin":"xyz:GOLD"}',
        }
        await c.send({"method": "subscribe", "subscription": {"type": "bbo", "coin": "xyz:NOPE"}})
        err = await c.expect(lambda m: m["channel"] == "error")
        assert err["data"] == 'Invalid subscription {"type":"bbo","coin":"xyz:NOPE"}'
        await c.send(
            {"method": "subscribe", "subscription": {"coin": "xyz:GOLD", "type": "candles"}}
        )
        err = await c.expect(lambda m: m["channel"] == "error")
        assert err["data"] == 'Invalid subscription {"type":"candles","coin":"xyz:GOLD"}'
        await c.send({"method": "subscribe", "subscription": {"type": "bbo", "coin": "BTC"}})
        err = await c.expect(lambda m: m["channel"] == "error")
        assert err["data"].startswith("Invalid subscription ")

        await c.send({"method": "unsubscribe", "subscription": GOLD})
        ack = await c.expect(lambda m: m["channel"] == "subscriptionResponse")
        assert ack["data"] == {"method": "unsubscribe", "subscription": GOLD}
        await c.send({"method": "unsubscribe", "subscription": GOLD})
        err = await c.expect(lambda m: m["channel"] == "error")
        assert err["data"] == 'Already unsubscribed: {"type":"bbo","coin":"xyz:GOLD"}'
        # after unsubscribing no more GOLD bbo frames arrive
        later = await c.collect(0.8)
        assert not [m for m in later if m["channel"] == "bbo"]
        # and subscribing again works
        await c.subscribe(GOLD)


async def test_ping_pong_and_protocol_ping(sim: SimExchange, connect: Any) -> None:
    async with connect(sim) as c:
        await c.send({"method": "ping"})
        assert await c.recv_text() == '{"channel":"pong"}'
        with trio.fail_after(2):
            await c.ws.ping(b"abc")  # returns when the Pong frame arrives


@pytest.mark.parametrize(
    "text",
    [
        "nonsense",
        '{"method":"subscribe"}',
        '{"method":"subscribe","subscription":"bbo"}',
        '{"method":"dance"}',
        "[1,2,3]",
        '{"method":"post","request":{"type":"info","payload":{"type":"meta"}}}',
    ],
)
async def test_unparseable_requests(sim: SimExchange, connect: Any, text: str) -> None:
    async with connect(sim) as c:
        await c.send(text)
        err = await c.recv()
        assert err == {
            "channel": "error",
            "data": f"Error parsing JSON into valid websocket request: {text}",
        }


async def test_post_info_round_trip(sim: SimExchange, connect: Any) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        rest_meta = (await http.post("/info", json={"type": "meta", "dex": "xyz"})).json()
    async with connect(sim) as c:
        await c.send(
            {
                "method": "post",
                "id": 7,
                "request": {"type": "info", "payload": {"type": "meta", "dex": "xyz"}},
            }
        )
        resp = await c.expect(lambda m: m["channel"] == "post")
        assert resp == {
            "channel": "post",
            "data": {
                "id": 7,
                "response": {"type": "info", "payload": {"type": "meta", "data": rest_meta}},
            },
        }
        await c.send(
            {
                "method": "post",
                "id": 8,
                "request": {"type": "info", "payload": {"type": "l2Book", "coin": "xyz:SILVER"}},
            }
        )
        resp = await c.expect(lambda m: m["channel"] == "post")
        assert resp["data"]["id"] == 8
        payload = resp["data"]["response"]["payload"]
        assert payload["type"] == "l2Book" and payload["data"]["coin"] == "xyz:SILVER"


async def test_post_action_and_malformed_posts(sim: SimExchange, connect: Any) -> None:
    async with connect(sim) as c:
        action = {
            "action": {"type": "order", "orders": [], "grouping": "na"},
            "nonce": 1,
            "signature": {"r": "0x1", "s": "0x2", "v": 27},
        }
        await c.send({"method": "post", "id": 9, "request": {"type": "action", "payload": action}})
        resp = await c.expect(lambda m: m["channel"] == "post")
        # a signature that recovers to an unknown address (trading is tested in test_trading*)
        assert resp["data"]["id"] == 9
        assert resp["data"]["response"]["type"] == "action"
        payload = resp["data"]["response"]["payload"]
        assert payload["status"] == "err"
        assert payload["response"].startswith("L1 error: User or API Wallet 0x")
        assert payload["response"].endswith(" does not exist.")
        for i, request in enumerate(
            [
                {"type": "info", "payload": {"type": "bogus"}},
                {"type": "info", "payload": {"type": "clearinghouseState"}},
                {"type": "info"},
                {"type": "explorer", "payload": {}},
                {"type": "action", "payload": "x"},
                "not an object",
            ],
            start=10,
        ):
            await c.send({"method": "post", "id": i, "request": request})
            resp = await c.expect(lambda m: m["channel"] == "post")
            assert resp["data"]["id"] == i
            assert resp["data"]["response"]["type"] == "error"
            assert isinstance(resp["data"]["response"]["payload"], str)


async def test_other_channels(sim: SimExchange, connect: Any) -> None:
    async with connect(sim) as c:
        await c.subscribe({"type": "allMids", "dex": "xyz"})
        mids = await c.expect(lambda m: m["channel"] == "allMids")
        assert mids["data"]["dex"] == "xyz"
        assert list(mids["data"]["mids"]) == [m.name for m in XYZ_MARKETS]
        await c.subscribe({"type": "allMids"})
        main = await c.expect(lambda m: m["channel"] == "allMids" and "dex" not in m["data"])
        assert "BTC" in main["data"]["mids"]
        await c.subscribe({"type": "l2Book", "coin": "xyz:CL"})
        book = await c.expect(lambda m: m["channel"] == "l2Book")
        assert book["data"]["coin"] == "xyz:CL" and len(book["data"]["levels"]) == 2
        await c.subscribe({"type": "orderUpdates", "user": ADDR})
        await c.subscribe({"type": "userFills", "user": ADDR})
        fills = await c.expect(lambda m: m["channel"] == "userFills")
        assert fills["data"] == {"isSnapshot": True, "user": ADDR.lower(), "fills": []}
        await c.send(
            {"method": "subscribe", "subscription": {"type": "orderUpdates", "user": "0x1"}}
        )
        err = await c.expect(lambda m: m["channel"] == "error")
        assert err["data"].startswith("Invalid subscription ")


async def test_subscriptions_do_not_persist_across_connections(
    start_sim: Any, connect: Any
) -> None:
    sim = await start_sim(seed=3, speed=8.0)
    async with connect(sim) as c:
        await c.subscribe(GOLD)
    assert sim.hub.subscription_count() == 0
    async with connect(sim) as c:
        quiet = await c.collect(0.6)
        assert quiet == []  # nothing arrives without a subscription
        ack = await c.subscribe(GOLD)  # not "Already subscribed"
        assert ack["data"]["method"] == "subscribe"


async def test_idle_connection_is_closed_after_server_silence(start_sim: Any) -> None:
    sim = await start_sim(seed=1, idle_timeout_s=0.4)
    async with open_websocket_url(sim.ws_url) as ws:
        assert await ws.get_message() == "Websocket connection established."
        start = trio.current_time()
        with trio.fail_after(3), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert trio.current_time() - start >= 0.3
        assert closed.value.reason is not None and closed.value.reason.code == 1000
    assert sim.counters["idle_closes"] == 1


async def test_traffic_keeps_a_connection_open(start_sim: Any, connect: Any) -> None:
    sim = await start_sim(seed=1, idle_timeout_s=0.4, speed=4.0)
    async with connect(sim) as c:
        await c.subscribe(GOLD)
        msgs = await c.collect(1.2)  # bbo frames keep arriving, so no idle close
        assert len(msgs) > 3
    assert sim.counters["idle_closes"] == 0


async def test_many_messages_in_one_request_burst(sim: SimExchange, connect: Any) -> None:
    async with connect(sim) as c:
        subs = [{"type": "bbo", "coin": m.name} for m in XYZ_MARKETS]
        for s in subs:
            await c.send(json.dumps({"method": "subscribe", "subscription": s}))
        acks = 0
        snaps: set[str] = set()
        with trio.fail_after(3):
            while acks < len(subs) or len(snaps) < len(subs):
                m = await c.recv()
                if m["channel"] == "subscriptionResponse":
                    acks += 1
                elif m["channel"] == "bbo":
                    snaps.add(m["data"]["coin"])
        assert sim.hub.subscription_count() == 42
