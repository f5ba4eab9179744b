"""The trading core's order-path contract (engine/core/trading.py).

* ``take_orders`` hands the shell the new PlaceOrder intents alone, in O(1), leaving records
  and alerts queued in order; ``drain`` never returns a taken order again;
* the ``created`` journal record is built at ``drain`` (after the send) yet holds exactly what
  it held when it was built at creation (NEW, nothing sent), in the same key order;
* the entry gates read O(1) indexes that a journal restore (which changes positions directly)
  cannot leave stale once a READY flag is set or a reconciliation ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.core.intents import PlaceOrder, Record
from engine.io.journal import load_journal, restore
from engine.io.records import RecordWriter
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore
from fsm import order as ofsm

from .helpers import T0, make_ready, make_trading

COINS = ("xyz:GOLD", "xyz:TSLA", "xyz:NVDA")
WIDE = {"trading": {"max_total_notional": 10_000.0, "max_concurrent_positions": 8}}


def dislocate(core: TradingCore, idx: int, now: float, oracle: float = 100.3) -> None:
    """The oracle jumps while the book stays at 99.99/100.01: a buy signal."""
    core.on_ctx(idx, oracle, oracle, now)


def expected_created(o: Any, edge: float | None, oracle: float | None) -> dict[str, Any]:
    """The record the core used to build at creation time (before this change)."""
    rec: dict[str, Any] = {"event": "created", "cloid": o.cloid, "market_key": o.coin,
                           "asset_id": o.asset_id, "side": "buy" if o.is_buy else "sell",
                           "px": o.px_wire, "sz": o.sz_wire, "reduce_only": o.reduce_only,
                           "purpose": o.purpose, "state": ofsm.NEW, "oid": None,
                           "venue_filled": 0.0, "avg_px": None, "created_ms": o.created_ms,
                           "sent_ms": None, "signal_id": o.signal_id, "reason": o.reason,
                           "message": None, "decision_px": o.decision_px,
                           "expires_after_ms": o.expires_after_ms}
    if o.purpose == "entry":
        rec["entry_edge_bps"] = edge
        rec["entry_oracle_px"] = oracle
    rec["ts_ms"] = o.created_ms
    return rec


def test_take_orders_leaves_the_rest_in_order_and_drain_skips_taken_orders() -> None:
    core, _ = make_trading(WIDE, coins=COINS)
    make_ready(core)
    dislocate(core, 0, T0 + 1)
    dislocate(core, 1, T0 + 2)
    assert len(core.new_orders) == 2
    taken = core.take_orders()
    assert [type(it) for it in taken] == [PlaceOrder, PlaceOrder]
    assert core.take_orders() == [] and core.new_orders == []
    for it in taken:  # the shell wrote them
        core.on_sent(it.order.cloid, T0 + 3)
    out = core.drain()
    assert not any(isinstance(it, PlaceOrder) for it in out)
    events = [(it.record["cloid"], it.record["event"]) for it in out
              if isinstance(it, Record) and it.kind == "orders"]
    c0, c1 = (it.order.cloid for it in taken)
    # per order: created (built now) strictly before sent, in creation order
    assert events == [(c0, "created"), (c1, "created"), (c0, ofsm.TRANSMIT),
                      (c1, ofsm.TRANSMIT)]
    assert core.drain() == []


def test_untaken_orders_are_drained_once() -> None:
    core, _ = make_trading(WIDE, coins=COINS)
    make_ready(core)
    dislocate(core, 0, T0 + 1)
    out = core.drain()
    assert sum(isinstance(it, PlaceOrder) for it in out) == 1
    assert core.new_orders == [] and core.take_orders() == []


def test_created_record_is_the_creation_snapshot_even_when_built_later() -> None:
    core, _ = make_trading(WIDE, coins=COINS)
    make_ready(core)
    dislocate(core, 0, T0 + 1)
    sig_edge_oracle = None
    (po,) = core.take_orders()
    o = po.order
    # the order moves on before the record is built (sent, answered, filled)
    core.on_sent(o.cloid, T0 + 2)
    core.on_post_result(o.cloid, {"filled": {"totalSz": o.sz_wire, "avgPx": o.px_wire,
                                             "oid": 77}}, T0 + 3)
    assert o.state == ofsm.FILLED and o.oid == 77 and o.sent_ms == T0 + 2
    recs = [it for it in core.drain() if isinstance(it, Record) and it.kind == "orders"]
    created = recs[0]
    assert created.ts_ms == T0 + 1
    for r in recs:
        if r.record["event"] == "created":
            sig_edge_oracle = (r.record["entry_edge_bps"], r.record["entry_oracle_px"])
    assert sig_edge_oracle is not None and sig_edge_oracle[1] == 100.3
    want = expected_created(o, *sig_edge_oracle)
    assert created.record == want and list(created.record) == list(want)


def test_flatten_created_record_has_no_entry_fields() -> None:
    core, _ = make_trading(WIDE, coins=COINS)
    make_ready(core)
    dislocate(core, 0, T0 + 1)
    (po,) = core.take_orders()
    o = po.order
    core.on_sent(o.cloid, T0 + 2)
    core.on_fill("T1", o.cloid, o.coin, True, o.px, o.sz, 0.0, T0 + 3, T0 + 3)
    core.drain()
    core.kill(T0 + 4, "test")
    (fl,) = core.take_orders()
    assert fl.order.reduce_only
    created = [it.record for it in core.drain() if isinstance(it, Record)
               and it.record.get("event") == "created"]
    want = expected_created(fl.order, None, None)
    assert created == [want] and list(created[0]) == list(want)


def test_restore_then_ready_rebuilds_the_gate_indexes(tmp_path: Path) -> None:
    """A journal restore writes positions directly; setting a READY flag (or reconciling)
    rebuilds the exposure/active sets the entry gates read."""
    core, _ = make_trading(WIDE, coins=COINS)
    make_ready(core)
    dislocate(core, 0, T0 + 1)
    (po,) = core.take_orders()
    o = po.order
    core.on_sent(o.cloid, T0 + 2)
    core.on_fill("T1", o.cloid, o.coin, True, o.px, o.sz, 0.0, T0 + 3, T0 + 3)
    w = RecordWriter(tmp_path, clock=lambda: T0)
    for it in core.drain():
        if isinstance(it, Record):
            w.write(it.kind, it.ts_ms, it.record)
    w.close()
    fresh, _ = make_trading(WIDE, coins=COINS)
    restore(fresh, load_journal(tmp_path, T0 + 10), T0 + 10)
    assert fresh.book.positions[0].has_exposure
    fresh.set_ready("user_channels", True)
    assert fresh._exposed == {0} and fresh._active == {0}
    total = fresh._total_notional()
    assert total is None  # the restored market has no mark yet: fail closed ("no_mark")
    fresh.on_ctx(0, 100.0, 100.0, T0 + 11)
    # the restored entry is UNKNOWN (never answered): its size still counts as pending
    (unknown,) = fresh.orders.unknown()
    assert fresh._total_notional() == (abs(fresh.book.positions[0].effective) * 100.0
                                       + unknown.remaining * unknown.px)
