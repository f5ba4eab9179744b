"""``POST /info`` over HTTP/1.1 (httpx): every info type, the dex rules, dex_position, errors,
keep-alive, and the ``/sim/stats`` + ``/sim/control`` endpoints."""

from __future__ import annotations

from typing import Any

import httpx

from engine.sim import SimExchange, grid
from engine.sim.markets import XYZ_MARKETS

ADDR = "0x0116a3d95994bcc7d6a84380ed6256fbb32cd25d"
DEX_KEYS = {
    "name",
    "fullName",
    "deployer",
    "oracleUpdater",
    "feeRecipient",
    "assetToStreamingOiCap",
    "subDeployers",
    "deployerFeeScale",
    "lastDeployerFeeScaleChangeTime",
    "assetToFundingMultiplier",
    "assetToFundingInterestRate",
}
CTX_KEYS = [
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


async def info(sim: SimExchange, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sim.url) as client:
        return await client.post("/info", json=body)


async def ok(sim: SimExchange, body: Any) -> Any:
    r = await info(sim, body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


async def test_perp_dexs(sim: SimExchange) -> None:
    dexs = await ok(sim, {"type": "perpDexs"})
    assert dexs[0] is None
    assert len(dexs) == 2
    xyz = dexs[1]
    assert set(xyz) == DEX_KEYS
    assert xyz["name"] == "xyz"
    caps = [c for c, _ in xyz["assetToStreamingOiCap"]]
    assert caps == sorted(caps)  # alphabetical ...
    assert caps != [m.name for m in XYZ_MARKETS]  # ... which is not meta order
    assert caps.index("xyz:SILVER") != 26  # SILVER is 26 in meta only (the BOT's P9 trap)
    assert all(isinstance(v, str) for _, v in xyz["assetToStreamingOiCap"])
    for key in ("deployer", "oracleUpdater", "feeRecipient"):
        assert xyz[key].startswith("0x") and len(xyz[key]) == 42
    assert isinstance(xyz["deployerFeeScale"], str)


async def test_dex_position_inserts_dummy_dexes(start_sim: Any) -> None:
    sim = await start_sim(seed=1, dex_position=3)
    dexs = await ok(sim, {"type": "perpDexs"})
    assert dexs[0] is None
    assert [d["name"] for d in dexs[1:]] == ["abc", "qrs", "xyz"]
    # The SDK's rule: offset = 110000 + (i - 1) * 10000 for perpDexs index i
    assert 110000 + (dexs.index(dexs[3]) - 1) * 10000 == 130000
    abc = await ok(sim, {"type": "meta", "dex": "abc"})
    assert [u["name"] for u in abc["universe"]] == ["abc:TEST"]
    meta, ctxs = await ok(sim, {"type": "metaAndAssetCtxs", "dex": "qrs"})
    assert len(meta["universe"]) == len(ctxs) == 1
    xyz = await ok(sim, {"type": "meta", "dex": "xyz"})
    assert len(xyz["universe"]) == 42


async def test_meta_dex_rules(sim: SimExchange) -> None:
    xyz = await ok(sim, {"type": "meta", "dex": "xyz"})
    assert [u["name"] for u in xyz["universe"]] == [m.name for m in XYZ_MARKETS]
    for u, spec in zip(xyz["universe"], XYZ_MARKETS, strict=True):
        assert u == {
            "szDecimals": spec.sz_decimals,
            "name": spec.name,
            "maxLeverage": spec.max_leverage,
            "marginTableId": u["marginTableId"],
            "onlyIsolated": True,
            "marginMode": "strictIsolated",
        }
    assert {t[0] for t in xyz["marginTables"]} >= {u["marginTableId"] for u in xyz["universe"]}
    assert xyz["collateralToken"] == 0
    for body in ({"type": "meta"}, {"type": "meta", "dex": ""}):
        main = await ok(sim, body)
        names = [u["name"] for u in main["universe"]]
        assert names[:2] == ["BTC", "ETH"]
        assert not any(n.startswith("xyz:") for n in names)
        assert all("onlyIsolated" not in u for u in main["universe"])


async def test_markets_subset(start_sim: Any) -> None:
    sim = await start_sim(seed=1, n_markets=5)
    meta = await ok(sim, {"type": "meta", "dex": "xyz"})
    assert [u["name"] for u in meta["universe"]] == [m.name for m in XYZ_MARKETS[:5]]


async def test_meta_and_asset_ctxs(sim: SimExchange) -> None:
    meta, ctxs = await ok(sim, {"type": "metaAndAssetCtxs", "dex": "xyz"})
    assert len(meta["universe"]) == len(ctxs) == 42
    for u, ctx in zip(meta["universe"], ctxs, strict=True):
        assert list(ctx) == CTX_KEYS
        szd = u["szDecimals"]
        assert grid.is_valid_price(ctx["oraclePx"], szd)
        assert grid.is_valid_price(ctx["markPx"], szd)
        for key in ("funding", "openInterest", "prevDayPx", "dayNtlVlm", "dayBaseVlm"):
            assert isinstance(ctx[key], str)
    main_meta, main_ctxs = await ok(sim, {"type": "metaAndAssetCtxs"})
    assert len(main_meta["universe"]) == len(main_ctxs)
    assert not any(u["name"].startswith("xyz:") for u in main_meta["universe"])


async def test_spot_meta_all_mids_l2book(sim: SimExchange) -> None:
    assert await ok(sim, {"type": "spotMeta"}) == {"universe": [], "tokens": []}
    mids = await ok(sim, {"type": "allMids", "dex": "xyz"})
    assert list(mids) == [m.name for m in XYZ_MARKETS]
    assert all(
        grid.is_valid_price(v, XYZ_MARKETS[i].sz_decimals) for i, v in enumerate(mids.values())
    )
    main_mids = await ok(sim, {"type": "allMids"})
    assert "BTC" in main_mids and not any(k.startswith("xyz:") for k in main_mids)
    book = await ok(sim, {"type": "l2Book", "coin": "xyz:GOLD"})
    assert set(book) == {"coin", "time", "levels"} and book["coin"] == "xyz:GOLD"
    bids, asks = book["levels"]
    assert 1 <= len(bids) <= 20 and 1 <= len(asks) <= 20
    bid_px = [float(b["px"]) for b in bids]
    ask_px = [float(a["px"]) for a in asks]
    assert bid_px == sorted(bid_px, reverse=True) and len(set(bid_px)) == len(bid_px)
    assert ask_px == sorted(ask_px) and len(set(ask_px)) == len(ask_px)
    assert bid_px[0] < ask_px[0]
    for lvl in bids + asks:
        assert set(lvl) == {"px", "sz", "n"}
        assert grid.is_valid_price(lvl["px"], 4) and grid.is_valid_size(lvl["sz"], 4)
    assert await ok(sim, {"type": "l2Book", "coin": "xyz:NOPE"}) is None


async def test_user_queries(sim: SimExchange) -> None:
    state = await ok(sim, {"type": "clearinghouseState", "user": ADDR, "dex": "xyz"})
    summary = {"accountValue", "totalNtlPos", "totalRawUsd", "totalMarginUsed"}
    assert set(state["marginSummary"]) == summary
    assert set(state["crossMarginSummary"]) == summary
    assert state["withdrawable"] == "0.0"
    assert state["assetPositions"] == []
    assert isinstance(state["time"], int)
    assert await ok(sim, {"type": "clearinghouseState", "user": ADDR, "dex": ""})
    assert await ok(sim, {"type": "openOrders", "user": ADDR, "dex": "xyz"}) == []
    assert await ok(sim, {"type": "openOrders", "user": ADDR}) == []
    status = await ok(sim, {"type": "orderStatus", "user": ADDR, "oid": 1})
    assert status == {"status": "unknownOid"}


async def test_invalid_requests_get_422_json(sim: SimExchange) -> None:
    bad = [
        {"type": "bogus"},
        {"nope": 1},
        [1, 2],
        {"type": "clearinghouseState"},
        {"type": "clearinghouseState", "user": "0x123"},
        {"type": "openOrders", "user": ADDR, "dex": "nope"},
        {"type": "meta", "dex": 5},
        {"type": "l2Book"},
    ]
    async with httpx.AsyncClient(base_url=sim.url) as client:
        for body in bad:
            r = await client.post("/info", json=body)
            assert r.status_code == 422, body
            err = r.json()
            assert set(err) == {"code", "msg", "data"} and isinstance(err["msg"], str)
        r = await client.post("/info", content=b"{not json")
        assert r.status_code == 422 and "msg" in r.json()
        r = await client.post("/info", content=b"")
        assert r.status_code == 422
        assert (await client.get("/info")).status_code == 405
        assert (await client.get("/nowhere")).status_code == 404
        assert (await client.get("/ws")).status_code == 426


async def test_keep_alive_reuses_one_connection(sim: SimExchange) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as client:
        for _ in range(5):
            r = await client.post("/info", json={"type": "spotMeta"})
            assert r.status_code == 200
    assert sim.counters["tcp_connections"] == 1
    assert sim.counters["http_info"] == 5


async def test_stats_and_control(sim: SimExchange) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as client:
        stats = (await client.get("/sim/stats")).json()
        for key in ("connections", "subscriptions", "frames_sent", "firehose", "model"):
            assert key in stats
        assert stats["markets"] == 42

        async def control(body: Any) -> httpx.Response:
            return await client.post("/sim/control", json=body)

        r = await control({"action": "stall", "coin": "xyz:GOLD", "stream": "bbo"})
        assert r.json() == {"ok": True, "result": None}
        assert (await client.get("/sim/stats")).json()["stalled"] == {"xyz:GOLD": ["bbo"]}
        assert (await control({"action": "unstall", "coin": "xyz:GOLD"})).status_code == 200
        assert (await client.get("/sim/stats")).json()["stalled"] == {}
        assert (await control({"action": "set_ack_delay", "ms": 250})).status_code == 200
        assert sim.ack_delay_ms == 250
        assert (await control({"action": "set_aligned", "aligned": True})).status_code == 200
        assert sim.model.aligned is True
        r = await control(
            {"action": "force_dislocation", "coin": "xyz:TSLA", "side": "buy", "bps": 50}
        )
        assert r.status_code == 200
        r = await control({"action": "drop_connections"})
        assert r.json() == {"ok": True, "result": 0}
        r = await control({"action": "inject_malformed", "n": 2, "kind": "bad_shape"})
        assert r.json()["result"] == 0
        r = await control({"action": "time_regression", "coin": "xyz:GOLD", "back_ms": 100})
        assert r.status_code == 200
        body: Any
        for body in (
            {"action": "nope"},
            {"action": "stall", "coin": "xyz:NOPE"},
            {"action": "stall", "coin": "xyz:GOLD", "stream": "trades"},
            {"action": "inject_malformed", "kind": "weird"},
            {"action": "force_dislocation", "coin": "xyz:TSLA", "side": "buy", "bps": 500},
            {"action": "set_aligned", "aligned": "yes"},
            [],
        ):
            r = await control(body)
            assert r.status_code == 400, body
            assert r.json()["ok"] is False
        assert (await client.get("/sim/control")).status_code == 405
