"""The funding core shows its open orders in the order machine's words (``fsm.order``, as the
Hyperliquid orders): in the snapshot behind ``/status`` and ``python -m engine status``, in
each ``order`` record, and as ``engine_orders_by_state``."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

from engine.cli import format_status
from engine.core.funding_core import FundingCore
from engine.core.neutral import OrderAck, OrderFill, PlaceOrder
from engine.funding_app import symbol_rows
from fsm import order as ofsm

sys.path.insert(0, str(Path(__file__).parent))
from test_funding_core import CFG, PERPS, SPOTS, T0, H, market, of  # noqa: E402

SYM = "BTCUSDT"


def opened() -> tuple[FundingCore, PlaceOrder, int]:
    core = FundingCore(CFG, SPOTS, PERPS, now_ms=T0)
    t = T0 + H - 5 * 60_000  # inside the pre-event window
    out: list[object] = []
    for tick in market(t, 0.001, T0 + H):
        out += core.on_market(tick.event, t)
    (place,) = [i for i in out if isinstance(i, PlaceOrder)]
    return core, place, t


def test_open_orders_carry_their_order_state_everywhere() -> None:
    core, place, t = opened()
    (rec,) = of(core.drain_records(), "order")
    assert rec["client_id"] == place.client_id and rec["state"] == ofsm.SENT
    (row,) = core.snapshot()["symbols"][SYM]["orders"]
    assert (row["client_id"], row["leg"], row["role"], row["state"]) == (
        place.client_id, "perp", "open", ofsm.SENT)
    assert core.order_counts() == {ofsm.SENT: 1}
    core.on_order_event(OrderAck("bybit", SYM, place.client_id, "o1", t), t)
    assert core.snapshot()["symbols"][SYM]["orders"][0]["state"] == ofsm.RESTING
    lines = format_status({"strategy": "funding", "funding": {
        "symbols": symbol_rows(core.snapshot())}})
    assert any(f"order {place.client_id} perp open sell {place.qty} filled 0 RESTING" in ln
               for ln in lines), lines
    fill = OrderFill("bybit", SYM, place.kind, place.client_id, "o1", "t1", place.side,
                     float(place.qty), 60_000.0, 0.0, False, t)
    out = core.on_order_event(fill, t)
    (hedge,) = [i for i in out if isinstance(i, PlaceOrder)]
    rows = {r["client_id"]: r for r in core.snapshot()["symbols"][SYM]["orders"]}
    assert set(rows) == {hedge.client_id}  # the filled perp order is over: not open
    assert rows[hedge.client_id]["state"] == ofsm.SENT and rows[hedge.client_id]["leg"] == "spot"
    assert core.order_counts() == {ofsm.FILLED: 1, ofsm.SENT: 1}
    assert Decimal(core.intents[SYM].orders[place.client_id].filled) == place.qty


def test_offline_orders_are_new_then_unknown_after_a_disconnect() -> None:
    core, place, t = opened()
    core.disconnect(t + 1)
    assert core.snapshot()["symbols"][SYM]["orders"][0]["state"] == ofsm.UNKNOWN
    out = core.reconnect(t + 2)
    assert [i.client_id for i in out if isinstance(i, PlaceOrder)] == [place.client_id]
    assert core.order_counts() == {ofsm.UNKNOWN: 1}


def test_a_refused_cancel_is_recorded_as_the_cancels_and_leaves_the_order_open() -> None:
    from engine.core.neutral import OrderReject, OrderRequest, RejectReason
    core, place, t = opened()
    core.on_order_event(OrderAck("bybit", SYM, place.client_id, "o1", t), t)
    core.drain_records()
    refused = OrderReject("bybit", SYM, place.client_id, RejectReason.RATE_LIMITED,
                          "10006 too many visits", t + 1, OrderRequest.CANCEL)
    core.on_order_event(refused, t + 1)
    (rec,) = of(core.drain_records(), "reject")
    assert rec["request"] == "cancel" and rec["reason"] == "rate_limited"
    (row,) = core.snapshot()["symbols"][SYM]["orders"]
    assert row["client_id"] == place.client_id and row["state"] == ofsm.RESTING
