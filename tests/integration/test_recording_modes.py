"""Recording is on in every live mode: paper and trade record frames too; trade mode's
outbound orders are recorded without their signatures, and its user streams and post answers
as inbound frames; a trade recording replays in paper mode."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from engine.io.frames import frames_dir, iter_records
from engine.replay.driver import Replay
from engine.trading_app import TradingApp

from .harness import PAPER_HOLDING, running, wait_for
from .test_trade_sim import KEY, SIM, TRADE, ready


async def test_paper_mode_records_frames(tmp_path: Path) -> None:
    async with running(tmp_path, config=PAPER_HOLDING, app_cls=TradingApp) as (sim, app):
        await wait_for(lambda: app.stats.frames_applied > 200, 10, "frames")
        await wait_for(lambda: app.status_doc()["recording"]["frames_in"] > 100, 10,
                       "recorded frames in /status")
        assert app.status_doc()["recording"]["dropped"] == 0
    kinds = {r.kind for r in iter_records(frames_dir(tmp_path / "data"))}
    assert {"run", "info", "conn", "in", "out"} <= kinds


async def test_recording_off_writes_no_frames(tmp_path: Path) -> None:
    cfg = {**PAPER_HOLDING, "recording": {"enabled": False}}
    async with running(tmp_path, config=cfg, app_cls=TradingApp) as (sim, app):
        await wait_for(lambda: app.stats.frames_applied > 50, 10, "frames")
    assert not frames_dir(tmp_path / "data").exists()


async def test_trade_mode_records_orders_without_signatures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_AGENT_KEY", KEY)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    async with running(tmp_path, config=TRADE, sim=SIM, app_cls=TradingApp) as (sim, app):
        await ready(app)
        sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
        await wait_for(lambda: len(app.trading.trades) >= 1, 15, "a closed trade")
    recs = list(iter_records(frames_dir(tmp_path / "data")))
    outs = [r.payload for r in recs if r.kind == "out"]
    orders = [msgspec.json.decode(p) for p in outs if b'"type":"order"' in p]
    assert orders, "the order actions are recorded"
    assert all(b"signature" not in p for p in outs)
    assert all("nonce" in o["request"]["payload"] for o in orders)
    ins = b"\n".join(r.payload for r in recs if r.kind == "in")
    assert b'"channel":"userFills"' in ins and b'"channel":"post"' in ins
    st = Replay(app.cfg, tmp_path / "data", tmp_path / "replay", mode="paper").run()
    assert st.frames > 0
