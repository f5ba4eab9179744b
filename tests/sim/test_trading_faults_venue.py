"""The simulator's issue-9 venue faults (engine/sim/faults.py ``TradingFaults``): user streams
delivered after the post response, all-zero ``clearinghouseState`` for a time window (once or
periodically), a connection cut when a reduce-only order arrives, and ``unknownOid`` for fresh
orders; their ``/sim/control`` actions and ``python -m engine sim`` flags."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from engine.sim import SimExchange
from engine.sim.cli import _apply_faults, build_parser, main

from .trader import GOLD, GOLD_ID, MASTER, Trader, cloid, order_wire, ws_ok

FROZEN = {"seed": 4, "speed": 1e-3}
QUERY = {"type": "clearinghouseState", "user": MASTER, "dex": "xyz"}


async def start(start_sim: Any, **kw: Any) -> SimExchange:
    sim: SimExchange = await start_sim(**{**FROZEN, "accounts": {MASTER: 100_000.0}, **kw})
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


async def test_user_streams_arrive_after_the_post_response(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    _bid, ask = prices(sim)
    sim.delay_user_streams_ms = 250
    async with connect(sim) as c:
        await c.subscribe({"type": "orderUpdates", "user": MASTER})
        await c.subscribe({"type": "userFills", "user": MASTER})
        await c.expect(lambda m: m["channel"] == "userFills")  # the snapshot
        t0 = trio.current_time()
        [st] = await ws_ok(c, 1, Trader().orders(order_wire(GOLD_ID, True, ask, 0.01, "Ioc")))
        assert "filled" in st  # the response already says filled ...
        t_post = trio.current_time()
        upd = await c.expect(lambda m: m["channel"] == "orderUpdates")
        t_upd = trio.current_time()
        fills = await c.expect(lambda m: m["channel"] == "userFills")
    assert t_post - t0 < 0.2  # ... at once; the streams only after the delay
    assert t_upd - t_post >= 0.2
    assert upd["data"][0]["order"]["oid"] == st["filled"]["oid"]
    assert fills["data"]["fills"][0]["oid"] == st["filled"]["oid"]
    assert sim.stats()["trading"]["delayed_stream_messages"] == 3  # with userEvents
    with pytest.raises(ValueError):
        sim.delay_user_streams_ms = -1


async def test_empty_clearinghouse_for_a_window(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    _bid, ask = prices(sim)
    async with connect(sim) as c:
        await ws_ok(c, 1, Trader().orders(order_wire(GOLD_ID, True, ask, 0.01, "Ioc")))
    sim.empty_clearinghouse_for(0.4)
    for _ in range(3):  # every answer inside the window, however many
        state = await info(sim, QUERY)
        assert state["assetPositions"] == [] and state["marginSummary"]["accountValue"] == "0.0"
    await trio.sleep(0.45)
    assert len((await info(sim, QUERY))["assetPositions"]) == 1
    assert sim.stats()["trading"]["empty_clearinghouse_answers"] == 3


def test_empty_clearinghouse_every_period_schedule() -> None:
    """The schedule itself, on explicit times: from one period after the start, every period,
    ``length`` of all-zero answers."""
    from engine.sim.faults import TradingFaults

    f = TradingFaults()
    f.empty_clearinghouse_every(0.5, 0.25, now_ms=1_000.0)
    assert [f.clearinghouse_empty(1_000.0 + t) for t in (0, 499, 500, 749, 750, 999, 1000, 1249,
                                                          1250)] == [
        False, False, True, True, False, False, True, True, False]
    f.empty_clearinghouse_every(0, 0, now_ms=2_000.0)
    assert not f.clearinghouse_empty(2_500.0)
    with pytest.raises(ValueError):
        f.empty_clearinghouse_every(1.0, 2.0, now_ms=0.0)


async def test_empty_clearinghouse_every_period(start_sim: Any, connect: Any) -> None:
    """Over loopback: the answers really go empty and come back, window after window (polled
    with bounds, so a loaded machine that answers late cannot make it fail)."""
    sim = await start(start_sim)
    _bid, ask = prices(sim)
    async with connect(sim) as c:
        await ws_ok(c, 1, Trader().orders(order_wire(GOLD_ID, True, ask, 0.01, "Ioc")))
    assert len((await info(sim, QUERY))["assetPositions"]) == 1
    sim.empty_clearinghouse_every(0.5, 0.25)
    for _window in range(2):
        with trio.fail_after(10):
            while (await info(sim, QUERY))["assetPositions"] != []:  # noqa: ASYNC110 - venue answers
                await trio.sleep(0.02)
        with trio.fail_after(10):
            while len((await info(sim, QUERY))["assetPositions"]) != 1:  # noqa: ASYNC110
                await trio.sleep(0.02)
    sim.empty_clearinghouse_every(0, 0)
    with trio.fail_after(10):
        for _ in range(20):  # off: every answer holds the position
            assert len((await info(sim, QUERY))["assetPositions"]) == 1
            await trio.sleep(0.05)
    with pytest.raises(ValueError):
        sim.empty_clearinghouse_every(1.0, 2.0)


@pytest.mark.parametrize("execute", [False, True])
async def test_drop_on_reduce_only(start_sim: Any, connect: Any, execute: bool) -> None:
    sim = await start(start_sim)
    bid, ask = prices(sim)
    trader = Trader()
    async with connect(sim) as c:
        await ws_ok(c, 1, trader.orders(order_wire(GOLD_ID, True, ask, 0.02, "Ioc")))
        sim.drop_on_reduce_only(1, execute=execute)
        # an order that is not reduce-only passes
        await ws_ok(c, 2, trader.orders(order_wire(GOLD_ID, True, bid - 10, 0.01)))
        body = trader.orders(order_wire(GOLD_ID, False, float(int(bid) - 50), 0.02, "Ioc",
                                        reduce_only=True, cl=cloid(9)))
        await c.send({"method": "post", "id": 3, "request": {"type": "action", "payload": body}})
        with trio.fail_after(3), pytest.raises(ConnectionClosed):
            while True:
                m = await c.recv()
                assert m["channel"] != "post", m  # never answered
    await trio.sleep(0.05)
    summary = sim.account_summary(MASTER)
    assert summary is not None
    assert ("xyz:GOLD" not in summary["positions"]) is execute
    status = await info(sim, {"type": "orderStatus", "user": MASTER, "oid": cloid(9)})
    assert (status["status"] == "order") is execute
    stats = sim.stats()
    assert stats["trading"]["reduce_only_drops"] == 1
    assert stats["trading"]["faults"]["drop_on_reduce_only"] == 0
    async with connect(sim) as c:  # armed once: the next flatten goes through
        body = trader.orders(order_wire(GOLD_ID, False, float(int(bid) - 50), 0.02, "Ioc",
                                        reduce_only=True))
        [st] = await ws_ok(c, 4, body)
    assert ("error" in st) is execute  # nothing left to reduce after an executed drop


async def test_unknown_oid_for_fresh_orders(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    bid, _ask = prices(sim)
    sim.unknown_oid_for_ms = 400
    async with connect(sim) as c:
        [st] = await ws_ok(c, 1, Trader().orders(order_wire(GOLD_ID, True, bid - 10, 0.01,
                                                            cl=cloid(5))))
    oid = st["resting"]["oid"]
    for ref in (cloid(5), oid):
        assert await info(sim, {"type": "orderStatus", "user": MASTER, "oid": ref}) == {
            "status": "unknownOid"}
    await trio.sleep(0.45)
    status = await info(sim, {"type": "orderStatus", "user": MASTER, "oid": cloid(5)})
    assert status["status"] == "order" and status["order"]["status"] == "open"
    assert sim.stats()["trading"]["hidden_orders"] == 2


async def test_control_actions_for_the_venue_faults(start_sim: Any) -> None:
    sim = await start(start_sim)
    async with httpx.AsyncClient(base_url=sim.url) as http:
        for body in (
            {"action": "delay_user_streams", "ms": 120},
            {"action": "empty_clearinghouse_for", "seconds": 2},
            {"action": "empty_clearinghouse_every", "period_s": 10, "length_s": 3},
            {"action": "drop_on_reduce_only", "n": 2, "execute": True},
            {"action": "unknown_oid_for", "ms": 1500},
        ):
            r = await http.post("/sim/control", json=body)
            assert r.status_code == 200 and r.json()["ok"] is True, (body, r.text)
        faults = (await http.get("/sim/stats")).json()["trading"]["faults"]
        assert faults == {"user_stream_delay_ms": 120.0, "clearinghouse_empty": True,
                          "empty_clearinghouse_every_s": 10.0, "drop_on_reduce_only": 2,
                          "drop_executes": True, "unknown_oid_ms": 1500.0}
        for body in (
            {"action": "delay_user_streams", "ms": -1},
            {"action": "empty_clearinghouse_for", "seconds": "x"},
            {"action": "empty_clearinghouse_every", "period_s": 1, "length_s": 1},
            {"action": "drop_on_reduce_only", "n": -1},
            {"action": "drop_on_reduce_only", "n": 1, "execute": "yes"},
            {"action": "unknown_oid_for", "ms": -5},
        ):
            r = await http.post("/sim/control", json=body)
            assert r.status_code == 400 and r.json()["ok"] is False, body


def test_cli_flags_set_the_venue_faults() -> None:
    args = build_parser().parse_args([
        "--user-stream-delay-ms", "80", "--drop-on-reduce-only", "2", "--drop-executes",
        "--unknown-oid-ms", "900", "--empty-clearinghouse-every-s", "20",
        "--empty-clearinghouse-s", "4"])
    sim = SimExchange(**FROZEN)
    _apply_faults(sim, args)
    f = sim.trading.faults
    assert (f.user_stream_delay_ms, f.drop_on_reduce_only, f.drop_executes, f.unknown_oid_ms) \
        == (80.0, 2, True, 900.0)
    assert (args.empty_clearinghouse_every_s, args.empty_clearinghouse_s) == (20.0, 4.0)
    assert main(["--unknown-oid-ms", "-1"]) == 2
    assert main(["--empty-clearinghouse-every-s", "2", "--empty-clearinghouse-s", "3"]) == 2
