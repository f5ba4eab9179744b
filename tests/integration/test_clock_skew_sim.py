"""Issue 9 item 9 over loopback: the trading engine checks its clock against the simulator's
at runtime (every reconciliation) and refuses new entries while they disagree by more than
``[trading] max_clock_skew_ms``; the simulator's server time is stepped with its knob."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.trading_app import TradingApp

from .harness import records, running, wait_for

KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
AGENT = "0x14791697260e4c9a71f18484c9f997b308e59325"  # address of KEY
MASTER = "0x1111111111111111111111111111111111111111"

TRADE: dict[str, Any] = {
    "mode": "trade",
    "account": {"address": MASTER},
    "sizing": {"min_order_notional": 30.0, "max_notional": 60.0},
    "detector": {"min_consecutive_moves": 0, "oracle_direction_filter": False,
                 "min_edge_above_baseline_bps": 0.0, "min_confidence": 0.0},
    "trading": {"pending_timeout_ms": 2000.0, "flatten_retry_ms": 300.0,
                "reconcile_interval_s": 0.5, "max_clock_skew_ms": 2000.0},
}
SIM: dict[str, Any] = {"aligned": True, "accounts": {MASTER: 10_000.0},
                       "agents": {AGENT: MASTER}}


@pytest.fixture(autouse=True)
def agent_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_AGENT_KEY", KEY)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


async def test_a_venue_clock_step_stops_entries_until_the_clocks_agree(tmp_path: Path) -> None:
    async with running(tmp_path, config=TRADE, sim=SIM, app_cls=TradingApp) as (sim, app):
        await wait_for(lambda: app.trading is not None and app.trading.is_ready(), 10, "READY")
        t = app.trading
        assert not t.clock_skewed and t.clock_skew_least_ms is not None
        # the venue's clock steps 10 s ahead of ours
        sim.step_server_time(10_000)
        await wait_for(lambda: t.clock_skewed, 5, "the skew seen at a reconciliation")
        assert t.clock_offset_ms is not None and t.clock_offset_ms < -9_000
        assert app.status_doc()["clock"]["skewed"] is True
        sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
        await wait_for(lambda: t.skips["clock_skew"] >= 1, 10, "an entry refused for the skew")
        assert t.entries_sent == 0
        # the venue's clock comes back: entries resume
        sim.step_server_time(-10_000)
        await wait_for(lambda: not t.clock_skewed, 8, "the clocks agree again")
        sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
        await wait_for(lambda: t.entries_sent >= 1, 10, "an entry after the skew cleared")
        await wait_for(lambda: len(t.trades) >= 1 and t.flat(), 20, "the trade closed")
    codes = [a.code for a in app.alerts]
    assert codes.count("clock_skew") == 1 and codes.count("clock_skew_cleared") == 1
    skews = [r for r in records(tmp_path, "positions") if r.get("event") == "clock_skew"]
    assert [r["skewed"] for r in skews] == [True, False]
