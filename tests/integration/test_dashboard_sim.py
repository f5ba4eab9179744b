"""The dashboard stream of a real paper engine against the real simulator (in process, over
loopback): the markets it trades, a forced dislocation's signal and orders pushed as they
happen, the open position with entry, mark, unrealised P&L and exit-rule state, and
``POST /flatten`` closing it through the same path as ``python -m engine flatten``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from engine.trading_app import TradingApp

from ..ops.sse_reader import SseReader
from .harness import PAPER_HOLDING, running, wait_for

TOKEN = "dash-sim-token-3c2b1a"  # noqa: S105 (test value)


async def _post(url: str, **kw: Any) -> httpx.Response:
    return await trio.to_thread.run_sync(lambda: httpx.post(url, timeout=5.0, **kw))


async def test_dashboard_stream_shows_markets_signals_positions_and_flattens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_OPS_TOKEN", TOKEN)
    async with running(tmp_path, config=PAPER_HOLDING, sim={"aligned": True},
                       app_cls=TradingApp) as (sim, app):
        await wait_for(lambda: app.trading is not None and app.trading.is_ready(), 10, "READY")
        port = app.ops.http_port
        r = await SseReader.open(port)
        assert r.status == 200
        with trio.fail_after(10):
            _, hello = await r.event("hello")
            _, snap = await r.event("snapshot")
        assert set(hello["recent"]) == {"signal", "followup", "order", "trade", "alert"}
        coins = {m["coin"] for m in snap["markets"]}
        assert coins == {m.coin for m in app.core.markets} and len(coins) == 12
        assert snap["status"]["mode"] == "paper" and snap["positions"] == []
        row = next(m for m in snap["markets"] if m["coin"] == "xyz:TSLA")
        assert row["oracle"] and row["bid"] and row["ask"] and row["gate"] is None

        sim.force_dislocation("xyz:TSLA", "sell", 40, lag_ms=1200)
        with trio.fail_after(15):
            _, sig = await r.event("signal")
            while sig["market_key"] != "xyz:TSLA":
                _, sig = await r.event("signal")
        assert sig["side"] == "sell" and sig["raw_edge_bps"] > 0 and sig["signal_id"]
        with trio.fail_after(15):
            _, order = await r.event("order")
        assert order["market_key"] == "xyz:TSLA" and order["purpose"] == "entry"
        await wait_for(lambda: app.trading.open_positions() >= 1, 10, "an open position")
        with trio.fail_after(10):
            while True:
                _, snap = await r.event("snapshot")
                if snap["positions"]:
                    break
        (pos,) = snap["positions"]
        p = app.trading.book.by_coin["xyz:TSLA"]
        assert pos["coin"] == "xyz:TSLA" and pos["size"] < 0
        assert pos["size"] == pytest.approx(p.effective)
        assert pos["entry_px"] == pytest.approx(p.avg_px)
        assert pos["mark"] is not None and pos["unrealised_usd"] is not None
        assert pos["held_ms"] >= 0 and pos["time_stop_in_ms"] <= 120_000
        assert pos["signal_id"] == sig["signal_id"]

        refused = await _post(f"http://127.0.0.1:{port}/flatten")
        assert refused.status_code == 401 and app.trading.open_positions() == 1
        ok = await _post(f"http://127.0.0.1:{port}/flatten",
                         headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json() == {"flattening": 1}
        with trio.fail_after(15):
            _, trade = await r.event("trade")
        assert trade["market_key"] == "xyz:TSLA" and trade["exit_reason"] == "operator"
        await wait_for(lambda: app.trading.flat(), 10, "flat")
        assert not app.trading.killed and app.stop_reason is None
        status = await trio.to_thread.run_sync(
            lambda: httpx.get(f"http://127.0.0.1:{port}/status", timeout=5.0).json())
        assert status["dashboard"]["connected"] == 1
        await r.aclose()
        await wait_for(lambda: not app.ops.dashboard.hub.clients, 10, "the stream cleaned up")


async def test_dashboard_stream_in_observe_mode_has_markets_and_no_trading_fields(
        tmp_path: Path) -> None:
    async with running(tmp_path, config={"detector": PAPER_HOLDING["detector"]},
                       sim={"aligned": True}) as (sim, app):
        await wait_for(lambda: app.core is not None and app.core.markets_live() == 12, 10,
                       "all markets live")
        r = await SseReader.open(app.ops.http_port)
        with trio.fail_after(10):
            await r.event("hello")
            _, snap = await r.event("snapshot")
        assert {m["coin"] for m in snap["markets"]} == {m.coin for m in app.core.markets}
        assert snap["status"]["mode"] == "observe"
        assert snap["positions"] == [] and snap["orders"] == []
        assert snap["pnl"]["realised_usd"] is None and snap["equity_last"] is None
        sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
        with trio.fail_after(15):
            _, sig = await r.event("signal")
            while sig["market_key"] != "xyz:GOLD":
                _, sig = await r.event("signal")
        assert sig["side"] == "buy"
        ok = await _post(f"http://127.0.0.1:{app.ops.http_port}/flatten")
        assert ok.status_code == 403  # no token configured: refused, saying how to configure
        await r.aclose()
