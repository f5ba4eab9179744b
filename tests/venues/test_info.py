"""Info client and HIP-3 discovery (docs/reference/hyperliquid-protocol.md §6, §9; pitfalls P9, P10, P11, D4)."""

from __future__ import annotations

import functools
import json
from typing import Any

import h11
import httpx
import pytest
import trio

from engine.core.types import MarketSpec
from engine.venues.hyperliquid.info import (
    DiscoveryError,
    InfoClient,
    InfoError,
    discover,
    normalise_coin,
)

URL = "http://info.test/info"

# meta(dex="xyz") universe order (docs/reference/hyperliquid-protocol.md §13.4): SILVER is 26, RIVN 27, CL 29
XYZ = (
    "XYZ100 TSLA NVDA GOLD HOOD INTC PLTR COIN META AAPL MSFT ORCL GOOGL AMZN AMD MU SNDK MSTR "
    "CRCL NFLX COST LLY SKHX TSM JPY EUR SILVER RIVN BABA CL COPPER NATGAS URANIUM ALUMINIUM SMSN "
    "PLATINUM USAR CRWV URNM PALLADIUM DXY GME"
).split()
SZ_DECIMALS = {"GOLD": 4, "SILVER": 2, "CL": 3, "XYZ100": 4}


def universe(dex: str, names: list[str], delisted: frozenset[str] = frozenset()) -> list[dict]:
    out = []
    for n in names:
        e: dict[str, Any] = {
            "name": f"{dex}:{n}",
            "szDecimals": SZ_DECIMALS.get(n, 1),
            "maxLeverage": 10,
            "marginTableId": 10,
            "onlyIsolated": True,
            "marginMode": "strictIsolated",
        }
        if n in delisted:
            e["isDelisted"] = True
        out.append(e)
    return out


def perp_dex(name: str, coins: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "fullName": f"{name} dex",
        "deployer": "0x0000000000000000000000000000000000000001",
        "oracleUpdater": None,
        "feeRecipient": None,
        # alphabetical, NOT the meta order (P9)
        "assetToStreamingOiCap": [[f"{name}:{c}", "1000000.0"] for c in sorted(coins)],
        "subDeployers": [],
        "deployerFeeScale": "1.0",
        "lastDeployerFeeScaleChangeTime": "1970-01-01T00:00:00",
        "assetToFundingMultiplier": [],
        "assetToFundingInterestRate": [],
    }


class FakeInfo:
    """A scriptable /info endpoint for httpx.MockTransport."""

    def __init__(
        self,
        dexes: list[Any] | None = None,
        metas: dict[str, Any] | None = None,
    ) -> None:
        self.dexes: Any = (
            dexes
            if dexes is not None
            else [None, perp_dex("xyz2", ["AAA"]), perp_dex("xyz", XYZ), perp_dex("flx", ["X"])]
        )
        self.metas: dict[str, Any] = (
            metas
            if metas is not None
            else {
                "xyz": {"universe": universe("xyz", XYZ), "marginTables": [], "collateralToken": 0},
                "xyz2": {"universe": universe("xyz2", ["AAA"])},
                # the main dex: what you get WITHOUT "dex" (P11: never use its szDecimals)
                "": {"universe": [{"name": "BTC", "szDecimals": 5, "maxLeverage": 40}]},
            }
        )
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.raw: bytes | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and str(request.url) == URL
        assert request.headers["content-type"] == "application/json"
        body = json.loads(request.content)
        self.requests.append(body)
        if self.raw is not None or self.status != 200:
            return httpx.Response(self.status, content=self.raw or b'{"error":"boom"}')
        if body["type"] == "perpDexs":
            return httpx.Response(200, json=self.dexes)
        if body["type"] in ("meta", "metaAndAssetCtxs"):
            meta = self.metas.get(body.get("dex", ""), {"universe": []})
            if body["type"] == "meta":
                return httpx.Response(200, json=meta)
            ctxs = [{"oraclePx": "1.0", "markPx": "1.0"} for _ in meta["universe"]]
            return httpx.Response(200, json=[meta, ctxs])
        return httpx.Response(422, content=b"Failed to deserialize the JSON body")


async def run(fake: FakeInfo, dex: str = "xyz", markets: list[str] | None = None):
    return await discover(URL, dex, markets, 5.0, transport=httpx.MockTransport(fake))


async def test_exact_dex_match_position_2_gives_120000_plus_meta_index() -> None:
    fake = FakeInfo()
    d = await run(fake)
    assert d.dex == "xyz" and d.dex_index == 2  # "xyz2" at position 1 must not match (D4)
    by = d.by_coin()
    assert by["xyz:SILVER"].asset_id == 120026  # meta index 26, not the OI-cap order (P9)
    assert by["xyz:RIVN"].asset_id == 120027
    assert by["xyz:CL"].asset_id == 120029
    assert by["xyz:XYZ100"].asset_id == 120000
    assert [m.coin for m in d.markets] == [f"xyz:{c}" for c in XYZ]
    assert [m.index for m in d.markets] == list(range(len(XYZ)))
    assert fake.requests == [{"type": "perpDexs"}, {"type": "meta", "dex": "xyz"}]
    oi_order = [c for c, _ in fake.dexes[2]["assetToStreamingOiCap"]]
    assert oi_order.index("xyz:SILVER") != 26  # the trap really is set


async def test_dex_at_position_1_gives_110000_plus_index() -> None:
    fake = FakeInfo(dexes=[None, perp_dex("xyz", XYZ)])
    d = await run(fake, markets=["SILVER", "xyz:RIVN", "CL"])
    assert d.dex_index == 1
    assert d.markets == [
        MarketSpec(index=0, coin="xyz:SILVER", asset_id=110026, sz_decimals=2, max_leverage=10),
        MarketSpec(index=1, coin="xyz:RIVN", asset_id=110027, sz_decimals=1, max_leverage=10),
        MarketSpec(index=2, coin="xyz:CL", asset_id=110029, sz_decimals=3, max_leverage=10),
    ]


async def test_configured_order_is_engine_order_and_sz_decimals_from_meta_dex() -> None:
    d = await run(FakeInfo(), markets=["xyz:GOLD", "SILVER"])
    assert [(m.index, m.coin, m.asset_id, m.sz_decimals) for m in d.markets] == [
        (0, "xyz:GOLD", 120003, 4),  # GOLD szDecimals 4 from meta(dex) (P11)
        (1, "xyz:SILVER", 120026, 2),
    ]


async def test_substring_or_case_variant_dex_does_not_match() -> None:
    for name in ("xy", "XYZ", "yz"):
        with pytest.raises(DiscoveryError, match="not found") as ei:
            await run(FakeInfo(), dex=name)
        assert "'xyz2', 'xyz', 'flx'" in str(ei.value)  # lists the available names


async def test_dex_only_prefix_match_is_not_enough() -> None:
    fake = FakeInfo(dexes=[None, perp_dex("xyz2", ["A"]), perp_dex("xyzabc", ["B"])])
    with pytest.raises(DiscoveryError, match="'xyz' not found"):
        await run(fake)


async def test_main_dex_null_is_not_a_match_and_duplicates_refused() -> None:
    with pytest.raises(DiscoveryError, match="appears 2 times"):
        await run(FakeInfo(dexes=[None, perp_dex("xyz", XYZ), perp_dex("xyz", XYZ)]))
    with pytest.raises(DiscoveryError, match="HIP-3 dex name"):
        await run(FakeInfo(), dex="")


async def test_unknown_market_lists_available() -> None:
    with pytest.raises(DiscoveryError) as ei:
        await run(FakeInfo(), markets=["SILVER", "NOPE"])
    msg = str(ei.value)
    assert "'xyz:NOPE' is not in dex 'xyz'" in msg and "xyz:XYZ100" in msg and "(42)" in msg


async def test_case_sensitive_names_with_hint() -> None:
    with pytest.raises(DiscoveryError, match="did you mean 'xyz:SILVER'"):
        await run(FakeInfo(), markets=["silver"])


async def test_market_name_normalisation() -> None:
    assert normalise_coin("xyz", "SILVER") == "xyz:SILVER"
    assert normalise_coin("xyz", "xyz:SILVER") == "xyz:SILVER"
    assert normalise_coin("xyz", " GOLD ") == "xyz:GOLD"
    for bad in ("abc:SILVER", "xyz:", ""):
        with pytest.raises(DiscoveryError):
            normalise_coin("xyz", bad)
    with pytest.raises(DiscoveryError, match="more than once"):
        await run(FakeInfo(), markets=["SILVER", "xyz:SILVER"])


async def test_delisted_excluded_when_discovering_all_refused_when_configured() -> None:
    fake = FakeInfo()
    fake.metas["xyz"]["universe"] = universe("xyz", XYZ, delisted=frozenset({"TSLA"}))
    d = await run(fake)
    coins = [m.coin for m in d.markets]
    assert "xyz:TSLA" not in coins and len(coins) == len(XYZ) - 1
    assert d.by_coin()["xyz:NVDA"].asset_id == 120002  # ids keep the meta position
    assert [m.index for m in d.markets] == list(range(len(coins)))
    with pytest.raises(DiscoveryError, match="delisted"):
        await run(fake, markets=["SILVER", "TSLA"])


async def test_empty_universe_and_malformed_responses() -> None:
    fake = FakeInfo()
    fake.metas["xyz"] = {"universe": []}
    with pytest.raises(DiscoveryError, match="empty universe"):
        await run(fake)
    fake.metas["xyz"] = {"nothing": 1}
    with pytest.raises(DiscoveryError, match="no 'universe' list"):
        await run(fake)
    with pytest.raises(DiscoveryError, match="expected a list"):
        await run(FakeInfo(dexes={"not": "a list"}))  # type: ignore[arg-type]
    fake = FakeInfo()
    fake.metas["xyz"] = ["not", "an object"]
    with pytest.raises(DiscoveryError, match="expected an object"):
        await run(fake)


async def test_malformed_universe_entry_skipped_unless_configured(caplog) -> None:
    fake = FakeInfo()
    uni = universe("xyz", XYZ)
    uni[3]["szDecimals"] = "four"  # GOLD
    fake.metas["xyz"]["universe"] = uni
    d = await run(fake)
    assert "xyz:GOLD" not in d.by_coin() and d.by_coin()["xyz:SILVER"].asset_id == 120026
    assert "bad szDecimals" in caplog.text
    with pytest.raises(DiscoveryError, match="malformed meta entry"):
        await run(fake, markets=["GOLD"])


async def test_duplicate_universe_names_refused() -> None:
    fake = FakeInfo()
    fake.metas["xyz"]["universe"] = universe("xyz", ["A", "B", "A"])
    with pytest.raises(DiscoveryError, match="duplicate"):
        await run(fake)


async def test_http_and_transport_errors_are_info_errors() -> None:
    """Transient endpoint problems raise InfoError (the caller retries), not DiscoveryError."""
    fake = FakeInfo()
    fake.status = 500
    with pytest.raises(InfoError, match="HTTP 500") as ei:
        await run(fake)
    assert "discovery of dex 'xyz'" in str(ei.value) and not isinstance(ei.value, DiscoveryError)
    fake = FakeInfo()
    fake.raw = b"<html>not json</html>"
    with pytest.raises(InfoError, match="not JSON"):
        await run(fake)

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(InfoError, match="timed out"):
        await discover(URL, "xyz", None, 1.0, transport=httpx.MockTransport(timeout))

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(InfoError, match="failed"):
        await discover(URL, "xyz", None, 1.0, transport=httpx.MockTransport(refused))


async def test_info_client_calls() -> None:
    fake = FakeInfo()
    async with InfoClient(URL, 5.0, transport=httpx.MockTransport(fake)) as c:
        assert (await c.perp_dexs())[0] is None
        assert (await c.meta("xyz"))["universe"][26]["name"] == "xyz:SILVER"
        meta, ctxs = await c.meta_and_asset_ctxs("xyz")
        assert len(meta["universe"]) == len(ctxs) == 42
        with pytest.raises(InfoError, match="HTTP 422"):
            await c.request({"type": "bogus"})
    assert fake.requests[2] == {"type": "metaAndAssetCtxs", "dex": "xyz"}


# ---------------------------------------------------------------- real loopback HTTP (httpx on Trio)


async def _http_server(stream: trio.SocketStream, fake: FakeInfo) -> None:
    conn = h11.Connection(h11.SERVER)
    body = b""
    while True:
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
            continue
        if isinstance(ev, h11.Data):
            body += ev.data
        if isinstance(ev, h11.EndOfMessage):
            resp = fake(
                httpx.Request(
                    "POST", URL, content=body, headers={"content-type": "application/json"}
                )
            )
            data = resp.content
            await stream.send_all(
                conn.send(
                    h11.Response(
                        status_code=resp.status_code,
                        headers=[
                            ("content-length", str(len(data))),
                            ("content-type", "application/json"),
                        ],
                    )
                )
                + conn.send(h11.Data(data=data))
                + conn.send(h11.EndOfMessage())
            )
            return
        if isinstance(ev, h11.ConnectionClosed):
            return


async def test_discover_over_real_loopback_http(nursery) -> None:
    fake = FakeInfo()

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await _http_server(stream, fake)  # one request per connection
        except (trio.BrokenResourceError, h11.RemoteProtocolError):
            pass
        await stream.aclose()

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    d = await discover(f"http://127.0.0.1:{port}/info", "xyz", ["SILVER"], 5.0)
    assert d.markets[0].asset_id == 120026
