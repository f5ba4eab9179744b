"""The core and the order/position machines speak no venue dialect (issue 11 part 1).

Hyperliquid's status words, reject texts and ``orderStatus`` shapes live in its adapter
(``engine/venues/hyperliquid/order_events.py``); the core consumes neutral
:class:`~engine.core.neutral.OrderReport` objects. The scan below fails if one of the venue's
words comes back into ``engine/core`` or ``fsm``; the other tests drive the plain
:class:`~engine.core.trading.TradingCore` (no adapter anywhere, a tick/lot rounding rule)
with reports another venue could send, and check the behaviour the Hyperliquid words used to drive: benign rejects do not
count toward a burst, a refusal for the minimum value is dust, "not found" resolves UNKNOWN.
"""

from __future__ import annotations

import ast
import itertools
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.config import structure_config
from engine.core.intents import Alert, PlaceOrder
from engine.core.neutral import OrderReport, RejectReason, TickLotRounding
from engine.core.orders import CloidFactory, Order
from engine.core.trading import TradingCore
from engine.core.types import MarketSpec
from engine.strategies.dislocation import DislocationStrategy
from fsm import order as ofsm

ROOT = Path(__file__).resolve().parents[2]
NEUTRAL_DIRS = (ROOT / "engine" / "core", ROOT / "fsm")

# Words only Hyperliquid says: its status vocabulary and answer shapes, its reject texts.
HYPERLIQUID_WORDS = (
    "orderStatus",
    "orderUpdates",
    "unknownOid",
    "iocCancelRejected",
    "minTradeNtl",
    "reduceOnlyRejected",
    "waitingForFill",
    "totalSz",
    "avgPx",
    "origSz",
    "could not immediately match",
    "Insufficient margin",
    "must have minimum value",
    '"minimum value"',
    "Reduce only order would",
    "Order has zero size",
)
_WORDS = re.compile("|".join(re.escape(w) for w in HYPERLIQUID_WORDS), re.IGNORECASE)


def _sources() -> list[Path]:
    files = sorted(p for d in NEUTRAL_DIRS for p in d.rglob("*.py"))
    assert len(files) > 10  # the scan sees the packages
    return files


def test_core_and_fsm_contain_no_hyperliquid_words() -> None:
    hits = [f"{p.relative_to(ROOT)}:{n}: {m.group(0)!r}"
            for p in _sources()
            for n, line in enumerate(p.read_text().splitlines(), 1)
            for m in [_WORDS.search(line)] if m]
    assert not hits, "venue dialect in the neutral core:\n" + "\n".join(hits)


def test_core_and_fsm_import_no_venue() -> None:
    bad = []
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{p.relative_to(ROOT)}: {n}" for n in names if n.startswith("engine.venues")]
    assert not bad


# -- the plain core driven by neutral reports -----------------------------------------------------

T0 = 1_800_000_000_000.0
_CFG: dict[str, Any] = {
    "mode": "trade",
    "detector": {"session_aware": False, "min_consecutive_moves": 0,
                 "oracle_direction_filter": False, "min_edge_above_baseline_bps": 0.0,
                 "min_confidence": 0.0, "min_quote_lag_ms": 0.0},
    "trading": {"max_total_notional": 10_000.0, "max_concurrent_positions": 8,
                "reject_burst_limit": 1, "flatten_retry_ms": 0.0},
}
_ORACLES = itertools.count()


def _core() -> TradingCore:
    cfg = structure_config(_CFG, "test")
    specs = [MarketSpec(0, "xyz:GOLD", 110000, 2)]
    obs = DislocationStrategy(specs, cfg.gates, cfg.detector, cfg.sizing, cfg.followups.offsets_ms,
                      mode=cfg.mode, boot_id="t")
    core = TradingCore(obs, cfg, rules=[TickLotRounding(Decimal("0.01"), Decimal("0.01"),
                                                        min_notional_d=Decimal(10))],
                       cloids=CloidFactory(b"\x03" * 8))
    core.on_bbo(0, 1, 99.99, 100.0, 100.01, 100.0, T0)
    core.on_ctx(0, 100.0, 100.0, T0)
    core.set_ready("user_channels", True)
    core.on_reconcile({}, [], T0)
    core.on_account_values(10_000.0, 0.0, T0)
    assert core.is_ready()
    core.drain()
    return core


def _entry(core: TradingCore, now: float) -> Order:
    core.on_ctx(0, 100.3 + 0.01 * next(_ORACLES), 100.3, now)
    [o] = [it.order for it in core.drain() if isinstance(it, PlaceOrder)]
    core.on_sent(o.cloid, now)
    return o


@pytest.mark.parametrize(
    ("reason", "counted"),
    [(RejectReason.INSUFFICIENT_BALANCE, True), (RejectReason.VENUE_ERROR, True),
     (RejectReason.NO_LIQUIDITY, False), (RejectReason.REDUCE_ONLY, False),
     (RejectReason.BELOW_MIN_NOTIONAL, False), (RejectReason.ZERO_SIZE, False)],
)
def test_only_non_benign_reasons_count_toward_a_reject_burst(reason: RejectReason,
                                                             counted: bool) -> None:
    core = _core()
    for k in range(2):
        o = _entry(core, T0 + 1000 * (k + 1))
        core.on_order_report(o, OrderReport(ofsm.REJECT, "error", reason=reason,
                                            message="venue text"), T0 + 1000 * (k + 1) + 1)
        assert o.state == ofsm.REJECTED and o.reject_reason is reason
    assert len(core.rejects.times) == (2 if counted else 0)
    assert (core.hard_stop.reason == "reject_burst") is counted


def test_a_refusal_for_the_minimum_value_leaves_dust() -> None:
    core = _core()
    core.on_fill("f1", None, "xyz:GOLD", True, 99.99, 0.09, 0.0, T0 + 1, T0 + 1)  # foreign: flatten
    [f] = [it.order for it in core.drain() if isinstance(it, PlaceOrder)]
    core.on_sent(f.cloid, T0 + 2)
    core.on_order_report(f, OrderReport(ofsm.REJECT, "error",
                                        reason=RejectReason.BELOW_MIN_NOTIONAL,
                                        message="below the minimum"), T0 + 3)
    assert any(isinstance(a, Alert) and a.code == "dust_position" for a in core.drain())
    assert core.book.positions[0].dust_size is not None


def test_reports_resolve_an_unknown_order() -> None:
    core = _core()
    o = _entry(core, T0 + 1000)
    core.on_order_report(o, OrderReport(ofsm.LOSE_CONTACT, "timeout"), T0 + 1001)
    assert o.state == ofsm.UNKNOWN
    core.on_order_report(o, OrderReport(None, "query", venue_order_id=42), T0 + 1002)
    assert o.state == ofsm.UNKNOWN and o.oid == 42  # no news about the state: ask again
    assert core.find_order(None, 42) is o
    # "not found" before the order could have expired at the venue: still unknown
    core.on_order_report(o, OrderReport(ofsm.RESOLVE_NOT_FOUND, "query"), T0 + 1003)
    assert o.state == ofsm.UNKNOWN
    late = core.unknown_oid_deadline(o) + 1
    core.on_order_report(o, OrderReport(ofsm.RESOLVE_NOT_FOUND, "query"), late)
    assert o.state == ofsm.EXPIRED


def test_an_unrecognized_status_is_applied_fail_safe_and_warned() -> None:
    core = _core()
    o = _entry(core, T0 + 1000)
    core.on_order_report(o, OrderReport(ofsm.CANCEL_CONFIRMED, "brandNew", venue_order_id=3,
                                        filled_qty=0.0, unrecognized=True), T0 + 1001)
    assert o.state == ofsm.CANCELED
    assert [a.message for a in core.drain() if isinstance(a, Alert) and a.code == "unknown_status"] \
        == [f"order {o.cloid}: unknown status 'brandNew'"]
