"""``python -m engine status`` of a real paper engine holding a position, and its stopped: line."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from engine.cli import format_status
from engine.trading_app import TradingApp

from .harness import PAPER_HOLDING, running, wait_for


async def test_status_of_a_held_position_and_the_stopped_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.app")
    async with running(tmp_path, config=PAPER_HOLDING, sim={"aligned": True},
                       app_cls=TradingApp) as (sim, app):
        await wait_for(lambda: app.trading is not None and app.trading.is_ready(), 10, "READY")
        sim.force_dislocation("xyz:TSLA", "sell", 40, lag_ms=1200)
        await wait_for(lambda: app.trading.open_positions() >= 1, 10, "an open position")
        assert app.ops is not None
        await wait_for(lambda: all(d["mark_px"] is not None for d in
                                   app.status_doc()["position_details"].values()), 5, "a mark")
        lines = format_status(app.ops.status())
    pos = [ln for ln in lines if ln.startswith("  xyz:TSLA: ")]
    assert len(pos) == 1, lines
    m = re.fullmatch(r"  xyz:TSLA: (long|short) (\S+) entry (\S+) mark (\S+) unrealised "
                     r"([+-]\d+\.\d{4}) USD", pos[0])
    assert m is not None, pos[0]
    assert all(re.fullmatch(r"\d+(\.\d+)?", g) for g in m.groups()[1:4]), pos[0]
    tsla = next(mk for mk in app.trading.strategy.markets if mk.coin == "xyz:TSLA")
    decimals = 6 - tsla.spec.sz_decimals
    for px in (m.group(3), m.group(4)):
        assert len(px.partition(".")[2]) <= decimals, (px, decimals)
    assert any(ln.startswith("P&L: realised ") and ln.endswith("USD (after fees)")
               for ln in lines), lines
    assert any(ln.startswith("breakers: none tripped (daily loss ") for ln in lines), lines
    assert "{" not in "\n".join(lines)
    stopped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopped:")]
    assert len(stopped) == 1
    assert re.search(r"paper: \d+ entries, \d+ trades, P&L [+-]\d+\.\d{4} USD after "
                     r"\d+\.\d{4} USD fees, 0 position\(s\) open", stopped[0]), stopped[0]
