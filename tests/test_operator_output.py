"""What the operator reads: numbers at the market's precision with units, IOC non-fills as a
normal outcome, gate blocks at INFO unless they last, ``status`` in words."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from engine.app import GATE_BLOCK_WARN_MS, ObserveApp, log_gate_events
from engine.cli import describe_breakers, format_status
from engine.config import EngineConfig
from engine.core.core import GateTransition, ObserveCore
from engine.core.types import MarketSpec
from engine.display import fmt_px, fmt_sz, fmt_usd
from engine.trading_app import _log_order, _log_trade


def test_prices_and_sizes_at_market_precision() -> None:
    assert fmt_px(227.98999999999998, 2) == "227.99"  # 6 - szDecimals = 4 decimals
    assert fmt_px("227.87", 2) == "227.87"
    assert fmt_px(0.00012345678, 0) == "0.000123"
    assert fmt_px(1044.3000000000002, 3) == "1044.3"
    assert fmt_sz(0.21000000000000002, 2) == "0.21"
    assert fmt_sz(-0.0, 2) == "0"
    assert fmt_px(None, 2) == "?" and fmt_sz(None, 2) == "?"
    assert fmt_usd(0.09561234) == "+0.0956 USD"
    assert fmt_usd(-0.00001) == "+0.0000 USD"  # never "-0.0000"
    assert fmt_usd(10_000, signed=False, decimals=2) == "10000.00 USD"


def _order_rec(**kw: Any) -> dict[str, Any]:
    rec = {"cloid": "0xabc", "purpose": "entry", "market_key": "xyz:SNDK", "side": "sell",
           "sz": 0.21000000000000002, "px": 227.98999999999998, "event": "fill_complete",
           "state": "filled", "message": None}
    rec.update(kw)
    return rec


def test_order_and_trade_lines_have_no_float_noise(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.orders")
    _log_order(_order_rec(), 2)
    _log_trade({"market_key": "xyz:SNDK", "direction": "short", "size": 0.21000000000000002,
                "entry_avg_px": 227.98999999999998, "exit_avg_px": 227.5, "net_pnl": 0.0956,
                "exit_reason": "quick_profit"}, 2)
    order, trade = (r.getMessage() for r in caplog.records)
    assert "sell 0.21@227.99 fill_complete -> filled" in order
    assert trade == ("trade closed xyz:SNDK short size 0.21 entry 227.99 exit 227.5 net "
                     "+0.0956 USD (quick_profit)")
    assert not re.search(r"\d\.\d{7,}", order + trade)


def test_an_ioc_that_did_not_fill_reads_as_a_normal_outcome(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.orders")
    _log_order(_order_rec(event="expire", state="expired", message="Order could not "
                          "immediately match against any resting orders. asset=110016"), 2)
    _log_order(_order_rec(event="reject", state="rejected", message="Insufficient margin"), 2)
    nofill, reject = caplog.records
    assert nofill.levelno == logging.INFO
    assert "a normal outcome" in nofill.getMessage()
    assert "could not immediately match" not in nofill.getMessage()
    assert "Insufficient margin" in reject.getMessage()  # a real reject keeps its text


def test_gate_block_is_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="engine.gates")
    log_gate_events([GateTransition("xyz:A", 1.0, "book_invalid", None, "bid=1 ask=None", 0.0),
                     GateTransition("xyz:A", 2.0, None, "book_invalid", "", 357.0)])
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]
    assert "gate block started" in caplog.records[0].getMessage()


def test_a_lasting_gate_block_is_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    cfg = EngineConfig()
    app = ObserveApp(cfg)
    markets = [MarketSpec(0, "xyz:A", 110000, 2), MarketSpec(1, "xyz:B", 110001, 2)]
    core = ObserveCore(markets, cfg.gates, cfg.detector, cfg.sizing, cfg.followups.offsets_ms)
    app.core = core
    t0 = 1_800_000_000_000.0
    for idx in (0, 1):  # data for both markets, then a one-sided book on A
        core.on_ctx(idx, 100.0, 100.0, t0)
        core.on_bbo(idx, int(t0), 99.9, 1.0, 100.1, 1.0, t0)
    core.on_bbo(0, int(t0) + 1, 99.9, 1.0, None, None, t0 + 1)
    assert core.markets[0].blocked_by == "book_invalid" and core.markets[1].blocked_by is None
    caplog.set_level(logging.INFO, logger="engine.gates")
    app.warn_lasting_gate_blocks(t0 + 1 + GATE_BLOCK_WARN_MS - 1000)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    app.warn_lasting_gate_blocks(t0 + 1 + GATE_BLOCK_WARN_MS)
    app.warn_lasting_gate_blocks(t0 + 1 + GATE_BLOCK_WARN_MS + 5000)
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1
    assert "gate block lasting: market=xyz:A gate=book_invalid blocked for 30 s" in \
        warned[0].getMessage()


STATUS = {
    "mode": "paper", "healthy": True, "ready": True, "uptime_s": 12.34, "hard_stop": None,
    "killed": False, "stopping": None, "problems": [], "markets_live": 40, "signals": 7,
    "entries": 3, "trades": 2, "realized_pnl": 0.091123, "unrealized_pnl": -0.0123456,
    "pnl_unit": "USD",
    "positions": {"xyz:SNDK": -0.21000000000000002},
    "position_details": {"xyz:SNDK": {"size": -0.21000000000000002,
                                      "entry_px": 227.98999999999998, "mark_px": 228.04,
                                      "sz_decimals": 2, "unrealized_pnl_usd": -0.0105}},
    "breakers": {"equity": 10000.09, "daily_loss_pct": 0.0, "drawdown_pct": 0.00012,
                 "consecutive_losses": 1, "halted_markets": [], "trips": [],
                 "thresholds": {"daily_loss": 2.0, "drawdown": 5.0, "consecutive_losses": 5,
                                "market_move": 10.0, "market_move_window_s": 60.0}},
}


def test_status_shows_positions_with_entry_mark_and_pnl_and_breakers_in_words() -> None:
    lines = format_status(STATUS)
    text = "\n".join(lines)
    assert "  xyz:SNDK: short 0.21 entry 227.99 mark 228.04 unrealised -0.0105 USD" in lines
    assert "P&L: realised +0.0911 USD, unrealised -0.0123 USD (after fees)" in lines
    assert ("breakers: none tripped (daily loss 0.00 % of 2.00 %, drawdown 0.00 % of 5.00 %, "
            "consecutive losses 1 of 5); equity 10000.09 USD") in lines
    assert "{" not in text and "'" not in text  # no Python dict or repr
    assert not re.search(r"\d\.\d{7,}", text)


def test_tripped_breakers_are_named() -> None:
    b = dict(STATUS["breakers"])  # type: ignore[call-overload]
    b["trips"] = [{"breaker": "daily_loss", "market": None, "detail": "loss 2.1 % >= 2 %",
                   "value": 2.1, "threshold": 2.0, "now_ms": 1.0},
                  {"breaker": "market_move", "market": "xyz:GOLD", "detail": "moved 11 %",
                   "value": 11.0, "threshold": 10.0, "now_ms": 2.0}]
    b["halted_markets"] = ["xyz:GOLD"]
    text = describe_breakers(b)
    assert text.startswith("TRIPPED — daily loss TRIPPED (loss 2.1 % >= 2 %); market move "
                           "TRIPPED on xyz:GOLD (moved 11 %)")
    assert "markets halted: xyz:GOLD" in text


def test_a_leg_latency_below_the_cores_millisecond_reads_below_one_ms() -> None:
    from engine.funding_app import whole_ms_text
    assert whole_ms_text(0) == "< 1 ms"
    assert whole_ms_text(12) == "12 ms"
    assert whole_ms_text(None) == "?"
