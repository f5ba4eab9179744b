"""The dashboard stream of the funding app (``config/bybit-sim.toml``: paper on the embedded
Bybit simulator, in process, ephemeral ports on 127.0.0.1): a snapshot shows both pairs
hedged with their legs and P&L parts, the header P&L is the strategy's, and the dashboard's
``POST /flatten`` flattens both legs of every pair (entries stop) without stopping the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from engine.config import load_config
from engine.funding_app import FundingApp

from ..ops.sse_reader import SseReader
from .bybit_helpers import SIM_TOML, sim_env, start_app, until

TOKEN = "dash-funding-token-5e4d3c"  # noqa: S105 (test value)
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


async def _post(url: str, **kw: Any) -> httpx.Response:
    return await trio.to_thread.run_sync(lambda: httpx.post(url, timeout=5.0, **kw))


async def next_snapshot(r: SseReader, cond: Any, limit_s: float, what: str) -> dict[str, Any]:
    with trio.fail_after(limit_s):
        while True:
            _, snap = await r.event("snapshot")
            if cond(snap):
                return dict(snap)


def all_hedged(snap: dict[str, Any]) -> bool:
    rows = snap.get("funding", {}).get("symbols", [])
    return len(rows) == 2 and all(row["state"] == "hedged" for row in rows)


async def test_the_dashboard_stream_shows_the_hedged_pairs_and_flattens_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_OPS_TOKEN", TOKEN)
    cfg = load_config(SIM_TOML, env=sim_env(tmp_path, {}))
    app = FundingApp(cfg, env={})
    async with trio.open_nursery() as nursery:
        codes = start_app(nursery, app)
        await until(lambda: app.ops is not None and app.ops.http_port, 20)
        port = app.ops.http_port
        r = await SseReader.open(port)
        assert r.status == 200
        with trio.fail_after(10):
            _, hello = await r.event("hello")
        assert set(hello["recent"]) == {"signal", "followup", "order", "trade", "alert"}

        snap = await next_snapshot(r, all_hedged, 30, "both pairs hedged")
        assert snap["status"]["strategy"] == "funding" and snap["status"]["mode"] == "paper"
        assert snap["markets"] == [] and snap["positions"] == [] and snap["orders"] == []
        part = snap["funding"]
        assert [row["symbol"] for row in part["symbols"]] == SYMBOLS
        for row in part["symbols"]:
            # long spot, short perp, (nearly) delta neutral: the spot buy is sized up for its
            # base-coin fee, so what arrived matches the perp to a spot lot
            assert row["spot_qty"] > 0 > row["perp_qty"]
            assert abs(row["net_delta"]) <= 1e-3 * row["spot_qty"]
            assert row["intent_id"] and row["fees"] > 0
            assert row["basis_pnl"] is not None and row["net"] == pytest.approx(
                row["funding"] + row["basis_pnl"] - row["fees"])
            assert row["rate"] is not None and row["rate"] > 0 and row["apr"] > 0
            assert row["next_funding_ms"] > 0 and row["hedge_ratio"] == pytest.approx(1, abs=1e-3)
            assert row["leg_latency_ms"] is not None and row["leg_latency_ms"] >= 0
        # the header P&L is the strategy's: closed round trips + the open pairs at the mids
        pnl = snap["pnl"]
        assert pnl["realised_usd"] == pytest.approx(part["totals"]["net_pnl"]
                                                    - pnl["unrealised_usd"])
        assert pnl["total_usd"] == pytest.approx(part["totals"]["net_pnl"])
        assert pnl["total_usd"] == pytest.approx(snap["status"]["realized_pnl"])
        assert pnl["equity_usd"] is not None and pnl["trades"] == part["closed"]
        assert part["leg_latency"]["n"] >= 2
        # the latency panel has the funding leg latency histogram (refreshed every 2 s)
        snap = await next_snapshot(
            r, lambda s: (s["latency"].get("engine_funding_leg_latency_seconds") or {}).get(
                "count", 0) >= 2, 10, "the leg latency in the latency panel")
        row = snap["latency"]["engine_funding_leg_latency_seconds"]
        assert row["label"] == "leg-1 fill → hedge written" and row["p50_ms"] > 0

        # the dashboard's Flatten button: both legs of every pair, the engine keeps running
        refused = await _post(f"http://127.0.0.1:{port}/flatten")
        assert refused.status_code == 401
        ok = await _post(f"http://127.0.0.1:{port}/flatten",
                         headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["flattening"] == 2

        def flat(s: dict[str, Any]) -> bool:
            rows = s["funding"]["symbols"]
            return all(row["state"] == "idle" and row["perp_qty"] == 0 for row in rows)

        snap = await next_snapshot(r, flat, 20, "both pairs flat")
        assert snap["funding"]["killed"] is True and snap["funding"]["orders"] == []
        assert snap["pnl"]["trades"] == snap["funding"]["closed"] >= 2
        assert snap["pnl"]["unrealised_usd"] == 0.0
        assert app.stop_reason is None and not codes  # flatten does not stop the engine
        await r.aclose()
        await until(lambda: not app.ops.dashboard.hub.clients, 10)
        app.request_stop("test over")
    assert codes == [0]
