"""Who may trade: signer recovery (unknown signers, wrong network source, re-serialised hashes),
API wallets, vaults, nonces and expiry; then the user streams and the user info queries."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import trio
from hyperliquid.utils.signing import get_timestamp_ms

from engine.sim import SimExchange

from .trader import (
    AGENT,
    AGENT_KEY,
    GOLD,
    GOLD_ID,
    MASTER,
    STRANGER,
    STRANGER_KEY,
    Trader,
    cloid,
    order_wire,
    ws_action,
    ws_ok,
)

FROZEN = {"seed": 2, "speed": 1e-3}
OTHER = "0x" + "ab" * 20
DAY_MS = 86_400_000


async def start(start_sim: Any, **kw: Any) -> SimExchange:
    args: dict[str, Any] = {
        **FROZEN,
        "accounts": {MASTER: 100_000.0, OTHER: 5_000.0},
        "agents": {AGENT: MASTER},
    }
    args.update(kw)
    sim: SimExchange = await start_sim(**args)
    return sim


async def info(sim: SimExchange, body: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        r = await http.post("/info", json=body)
        assert r.status_code == 200, r.text
        return r.json()


def far_bid(sim: SimExchange) -> float:
    bid = sim.model.bbo(GOLD).bid
    assert bid is not None
    return float(round(float(bid.px) * 0.95))


def unknown(address: str) -> dict[str, Any]:
    return {"status": "err", "response": f"L1 error: User or API Wallet {address} does not exist."}


async def test_unknown_signer_over_ws_and_http(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    stranger = Trader(STRANGER_KEY)
    body = stranger.orders(order_wire(GOLD_ID, True, far_bid(sim), 0.01))
    async with connect(sim) as c:
        r = await ws_action(c, 1, body)
    assert r == {"type": "action", "payload": unknown(STRANGER)}
    async with httpx.AsyncClient(base_url=sim.url) as http:
        r2 = await http.post("/exchange", json=stranger.orders(order_wire(GOLD_ID, True, 4000, 1)))
    assert r2.status_code == 200 and r2.json() == unknown(STRANGER)
    assert sim.stats()["trading"]["unknown_signer"] == 2


async def test_network_source_must_match(start_sim: Any, connect: Any) -> None:
    mainnet = await start(start_sim)
    testnet = await start(start_sim, is_mainnet=False)
    body = Trader(is_mainnet=False).orders(order_wire(GOLD_ID, True, far_bid(mainnet), 0.01))
    async with connect(mainnet) as c:
        r = await ws_action(c, 1, body)
    text = r["payload"]["response"]
    assert r["payload"]["status"] == "err" and "User or API Wallet 0x" in text
    assert MASTER not in text  # signed with source "b": recovers to a random address
    async with connect(testnet) as c:
        [st] = await ws_ok(c, 1, body)
    assert "resting" in st


async def test_venue_hashes_what_it_parsed(start_sim: Any, connect: Any) -> None:
    """P4/P7: trailing zeros and upper-case cloids are normalised before hashing."""
    sim = await start(start_sim)
    trader = Trader()
    px = far_bid(sim)
    zeros = order_wire(GOLD_ID, True, px, 0.01)
    zeros["p"] = f"{px:.1f}"  # "3899.0": hashed and sent as is
    upper = order_wire(GOLD_ID, True, px, 0.01, cl=cloid(0xABC))
    upper["c"] = upper["c"].upper().replace("0X", "0x")
    reordered = order_wire(GOLD_ID, True, px, 0.01)
    reordered = {k: reordered[k] for k in ("b", "a", "p", "s", "r", "t")}
    async with connect(sim) as c:
        for i, wire in enumerate((zeros, upper, reordered), start=1):
            r = await ws_action(c, i, trader.orders(wire))
            assert r["payload"]["status"] == "err", wire
            assert "does not exist." in r["payload"]["response"]
            assert MASTER not in r["payload"]["response"]
        # the same orders hashed in canonical form are fine, whatever the JSON key order
        ok = trader.orders(order_wire(GOLD_ID, True, px, 0.01, cl=cloid(0xABC)))
        ok["action"]["orders"][0] = {k: ok["action"]["orders"][0][k] for k in "cbaprst"}
        [st] = await ws_ok(c, 9, ok)
    assert st["resting"]["cloid"] == cloid(0xABC)


async def test_agent_and_master_sign_for_the_master(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    px = far_bid(sim)
    async with connect(sim) as c:
        [a] = await ws_ok(c, 1, Trader(AGENT_KEY).orders(order_wire(GOLD_ID, True, px, 0.01)))
        [b] = await ws_ok(c, 2, Trader().orders(order_wire(GOLD_ID, True, px - 1, 0.01)))
    orders = await info(sim, {"type": "openOrders", "user": MASTER, "dex": "xyz"})
    assert {o["oid"] for o in orders} == {a["resting"]["oid"], b["resting"]["oid"]}
    # the agent address has no state of its own (docs/reference/hyperliquid-protocol.md §8.5 pitfall)
    assert await info(sim, {"type": "openOrders", "user": AGENT, "dex": "xyz"}) == []


async def test_vault_address(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    px = far_bid(sim)
    trader = Trader()
    async with connect(sim) as c:
        r = await ws_action(
            c, 1, trader.orders(order_wire(GOLD_ID, True, px, 0.01), vault="0x" + "cd" * 20)
        )
        assert r["payload"] == {
            "status": "err",
            "response": f"Vault or sub-account 0x{'cd' * 20} does not exist.",
        }
        [st] = await ws_ok(c, 2, trader.orders(order_wire(GOLD_ID, True, px, 0.01), vault=OTHER))
    [o] = await info(sim, {"type": "openOrders", "user": OTHER, "dex": "xyz"})
    assert o["oid"] == st["resting"]["oid"]


async def test_nonce_rules(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    agent = Trader(AGENT_KEY)
    now = get_timestamp_ms()

    def cancel(t: Trader, nonce: int | None = None, **kw: Any) -> dict[str, Any]:
        return t.cancel(GOLD_ID, 1, nonce=nonce, **kw)

    async with connect(sim) as c:

        async def status(pid: int, body: dict[str, Any]) -> dict[str, Any]:
            payload: dict[str, Any] = (await ws_action(c, pid, body))["payload"]
            return payload

        assert (await status(1, cancel(trader, now)))["status"] == "ok"
        dup = await status(2, cancel(trader, now))
        assert dup == {"status": "err", "response": "Invalid nonce: duplicate nonce"}
        # nonces are per signer: the agent may use the same value
        assert (await status(3, cancel(agent, now)))["status"] == "ok"
        old = await status(4, cancel(trader, now - 2 * DAY_MS - 60_000))
        assert old["status"] == "err" and old["response"].startswith("Invalid nonce: ")
        assert "too old" in old["response"]
        future = await status(5, cancel(trader, now + DAY_MS + 60_000))
        assert future["status"] == "err" and "too far in the future" in future["response"]
        # a slightly older nonce is fine while fewer than 100 are stored
        assert (await status(6, cancel(trader, now - 10_000)))["status"] == "ok"
        # fill the set to 100 (pipelined), then anything <= its smallest element is too low
        base = now + 1
        for i in range(98):
            body = cancel(trader, base + i)
            await c.send(
                {"method": "post", "id": 100 + i, "request": {"type": "action", "payload": body}}
            )
        with trio.fail_after(5):
            got = 0
            while got < 98:
                m = await c.recv()
                if m["channel"] == "post" and m["data"]["id"] >= 100:
                    assert m["data"]["response"]["payload"]["status"] == "ok"
                    got += 1
        trader.last_nonce = base + 97  # later automatic nonces continue above the batch
        low = await status(7, cancel(trader, now - 20_000))
        assert low["status"] == "err" and "too low" in low["response"]
        assert (await status(8, cancel(trader))).get("status") == "ok"
        # expiresAfter: in the past rejected (nonce not consumed), in the future fine
        expired_nonce = trader.next_nonce()
        expired = await status(9, cancel(trader, expired_nonce, expires_after=now - 1))
        assert expired["status"] == "err" and expired["response"].startswith("Action expired")
        assert (await status(10, cancel(trader, expired_nonce)))["status"] == "ok"
        fine = await status(11, cancel(trader, expires_after=now + 60_000))
        assert fine["status"] == "ok"
    assert sim.stats()["trading"]["nonce_rejections"] == 4


async def test_user_streams(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    bbo = sim.model.bbo(GOLD)
    assert bbo.ask is not None
    ask = float(bbo.ask.px)
    async with connect(sim) as c:
        # history before anyone listens
        await ws_ok(c, 1, trader.orders(order_wire(GOLD_ID, True, ask, 0.01, "Ioc", cl=cloid(1))))
    async with connect(sim) as c:
        await c.subscribe({"type": "orderUpdates", "user": MASTER})
        await c.subscribe({"type": "userEvents", "user": MASTER})
        await c.subscribe({"type": "userFills", "user": MASTER})
        snap = await c.expect(lambda m: m["channel"] == "userFills")
        assert snap["data"]["isSnapshot"] is True and snap["data"]["user"] == MASTER
        assert [f["cloid"] for f in snap["data"]["fills"]] == [cloid(1)]
        # one user per connection for orderUpdates and userEvents
        for kind in ("orderUpdates", "userEvents"):
            await c.send({"method": "subscribe", "subscription": {"type": kind, "user": OTHER}})
            err = await c.expect(lambda m: m["channel"] == "error")
            assert err["data"].startswith(f"Only one user per connection is supported for {kind}")
        await c.subscribe({"type": "userFills", "user": OTHER})  # allowed

        statuses = await ws_ok(
            c,
            2,
            trader.orders(
                order_wire(GOLD_ID, True, ask, 0.01, "Ioc", cl=cloid(2)),
                order_wire(GOLD_ID, True, ask - 100, 0.01, cl=cloid(3)),
            ),
        )
        st = statuses[0]
        msgs = [m for m in c.seen if m["channel"] in ("orderUpdates", "userFills", "user")]
    streamed = [m for m in msgs if m["channel"] != "userFills" or "isSnapshot" not in m["data"]]
    assert [m["channel"] for m in streamed] == ["orderUpdates", "userFills", "user"]
    upd, fills, user = streamed
    assert [(u["status"], u["order"]["cloid"]) for u in upd["data"]] == [
        ("filled", cloid(2)),
        ("open", cloid(3)),
    ]
    assert upd["data"][0]["order"]["sz"] == "0.0" and upd["data"][0]["order"]["origSz"] == "0.01"
    assert list(fills["data"]) == ["user", "fills"] and fills["data"]["user"] == MASTER
    assert [f["oid"] for f in fills["data"]["fills"]] == [st["filled"]["oid"]]
    assert user["data"] == {"fills": fills["data"]["fills"]}


async def test_user_info_queries(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    trader = Trader()
    bbo = sim.model.bbo(GOLD)
    assert bbo.ask is not None
    async with connect(sim) as c:
        await ws_ok(c, 1, trader.orders(order_wire(GOLD_ID, True, float(bbo.ask.px), 0.01, "Ioc")))
        await ws_ok(c, 2, trader.orders(order_wire(GOLD_ID, True, far_bid(sim), 0.01)))
    keys = {"marginSummary", "crossMarginSummary", "crossMaintenanceMarginUsed", "withdrawable"}
    xyz = await info(sim, {"type": "clearinghouseState", "user": MASTER, "dex": "xyz"})
    assert set(xyz) == keys | {"assetPositions", "time"}
    [p] = xyz["assetPositions"]
    assert set(p["position"]) == {
        "coin", "szi", "leverage", "entryPx", "positionValue", "unrealizedPnl", "returnOnEquity",
        "liquidationPx", "marginUsed", "maxLeverage", "cumFunding",
    }  # fmt: skip
    assert float(xyz["marginSummary"]["accountValue"]) > 0
    for main_body in (
        {"type": "clearinghouseState", "user": MASTER},
        {"type": "clearinghouseState", "user": MASTER, "dex": ""},
    ):
        main = await info(sim, main_body)
        assert main["assetPositions"] == []  # xyz positions are invisible without dex
        assert 99_000 < float(main["marginSummary"]["accountValue"]) < 100_000
        assert main["withdrawable"] == main["marginSummary"]["accountValue"]
    assert await info(sim, {"type": "openOrders", "user": MASTER}) == []
    [oo] = await info(sim, {"type": "openOrders", "user": MASTER, "dex": "xyz"})
    assert list(oo) == ["coin", "side", "limitPx", "sz", "oid", "timestamp", "origSz"]
    [fo] = await info(sim, {"type": "frontendOpenOrders", "user": MASTER, "dex": "xyz"})
    for key in ("orderType", "tif", "triggerPx", "isTrigger", "reduceOnly", "origSz"):
        assert key in fo
    limits = await info(sim, {"type": "userRateLimit", "user": MASTER})
    assert set(limits) == {"cumVlm", "nRequestsUsed", "nRequestsCap"}
    assert limits["nRequestsUsed"] == 2 and limits["nRequestsCap"] == 10_000 + int(
        float(limits["cumVlm"])
    )
    fees = await info(sim, {"type": "userFees", "user": MASTER})
    assert fees["userCrossRate"] == "0.00045" and "feeSchedule" in fees
    stranger = await info(sim, {"type": "clearinghouseState", "user": STRANGER, "dex": "xyz"})
    assert stranger["assetPositions"] == [] and stranger["withdrawable"] == "0.0"
    assert await info(sim, {"type": "userFills", "user": STRANGER}) == []
    status = await info(sim, {"type": "orderStatus", "user": STRANGER, "oid": oo["oid"]})
    assert status == {"status": "unknownOid"}


def test_the_sdk_is_imported_only_when_a_signature_is_checked() -> None:
    code = (
        "import sys, trio\n"
        "from engine.sim import SimExchange\n"
        "sim = SimExchange(seed=1, accounts={'0x' + '11' * 20: 10.0})\n"
        "loaded = [m for m in ('hyperliquid', 'eth_account') if m in sys.modules]\n"
        "print(','.join(loaded) or 'none')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "none"
