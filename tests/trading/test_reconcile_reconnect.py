"""Issue 9, items 2, 3, 5 and 10 in the trading core (engine/core/trading.py):

* a transient all-zero ``clearinghouseState`` never wipes a position: a mismatch is adopted
  only once seen ``mismatch_confirmations`` times over ``mismatch_confirm_wait_s``, and the
  position stays managed (exits, time stop, kill flatten) until then; an answer that a
  position our own fills opened is gone needs a closing fill (``userFills``: ``QueryFills`` /
  ``on_fills_answer``) or ``unfilled_close_confirmations`` answers over
  ``unfilled_close_wait_s``;
* a flatten that could not leave the process because the connection was down, or that the
  venue never saw (``unknownOid``), is retried once the connection is back and never counts
  toward the flatten-failure latch; venue-rejected and unfilled flattens still do;
* READY after a mismatch: no entry while the venue reports a position or an open order the book
  cannot explain; after a reconnect READY waits for a fresh reconciliation;
* an ``unknownOid`` answer before the order's ``expiresAfter`` (plus a grace) is not taken as
  dead: the entry stays UNKNOWN and blocks entries until it expires or resolves.
"""

from __future__ import annotations

import itertools
from typing import Any

from engine.core.intents import Alert, CancelOrder, PlaceOrder, QueryFills, RequestReconcile
from engine.core.orders import Order
from engine.core.positions import Fill
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore
from fsm import order as ofsm
from fsm import position as pfsm

from .helpers import T0, make_ready, make_trading

COINS = ("xyz:GOLD", "xyz:TSLA")
GOLD, TSLA = 0, 1
NO_MATCH = "Order could not immediately match against any resting orders. asset=110000"
# positions stay open until the time stop (or something else) closes them
HOLD: dict[str, Any] = {
    "mode": "trade",
    "exits": {"quick_profit_bps": 0.0, "edge_evap_enabled": False, "oracle_exit_enabled": False,
              "min_hold_ms": 60_000.0, "time_stop_ms": 20_000.0, "decay_start_ms": 0.0},
    "trading": {"max_total_notional": 10_000.0, "max_concurrent_positions": 8,
                "flatten_retry_ms": 0.0},
}


def trade_core(**trading: Any) -> TradingCore:
    extra = {**HOLD, "trading": {**HOLD["trading"], **trading}}
    core, _ = make_trading(extra, coins=COINS)
    make_ready(core, equity=10_000.0)
    return core


def placed(core: TradingCore) -> list[Order]:
    return [it.order for it in core.drain() if isinstance(it, PlaceOrder)]


def requests(out: list[Any]) -> list[RequestReconcile]:
    return [it for it in out if isinstance(it, RequestReconcile)]


_ORACLES = itertools.count()


def signal(core: TradingCore, idx: int, now: float) -> None:
    """A buy signal on ``idx``: the oracle jumps while the book stays at 99.99/100.01 (a new
    oracle value each time: the detector signals once per oracle value and side)."""
    core.on_ctx(idx, 100.3 + 0.01 * next(_ORACLES), 100.3, now)


def enter(core: TradingCore, idx: int, now: float) -> Order:
    signal(core, idx, now)
    [o] = placed(core)
    assert o.purpose == "entry" and o.idx == idx
    return o


def fill(core: TradingCore, o: Order, now: float, tid: str) -> None:
    core.on_sent(o.cloid, now)
    core.on_post_result(o.cloid, {"filled": {"totalSz": o.sz_wire, "avgPx": o.px_wire,
                                             "oid": 7}}, now + 1)
    core.on_fill(tid, o.cloid, o.coin, o.is_buy, o.px, o.sz, 0.0, now + 2, now + 2)


def open_position(core: TradingCore, idx: int, now: float) -> float:
    o = enter(core, idx, now)
    fill(core, o, now, f"T{idx}-{now}")
    core.drain()
    p = core.book.positions[idx]
    assert p.state == pfsm.OPEN and p.has_exposure
    return p.effective


def reconnect(core: TradingCore, now: float) -> None:
    """The feed is back: market frames for every market, user channels acknowledged."""
    for i in range(len(COINS)):
        core.on_bbo(i, 1, 99.99, 100.0, 100.01, 100.0, now)
        core.on_ctx(i, 100.0, 100.0, now)
    core.set_ready("user_channels", True)


# ---------------------------------------------------------------- item 2: transient empty


def test_a_transient_all_zero_answer_does_not_wipe_the_position() -> None:
    core = trade_core()
    size = open_position(core, GOLD, T0 + 10)
    # the venue answers all zeros twice in a row, 200 ms apart (a confirming re-query)
    core.on_reconcile({}, [], T0 + 1000)
    core.on_reconcile({}, [], T0 + 1200)
    p = core.book.positions[GOLD]
    assert p.effective == size and not core.hard_stop.latched
    assert not [f for f in core.book.fills if f.synthetic]
    # the venue is right again within the wait: nothing was adopted, the market is explained
    core.on_reconcile({"xyz:GOLD": size}, [], T0 + 4000)
    assert core.unexplained == {} and p.effective == size and not core.hard_stop.latched


def test_the_confirming_query_waits_for_the_transient_to_pass() -> None:
    core = trade_core(mismatch_confirm_wait_s=5.0)
    size = open_position(core, GOLD, T0 + 10)
    core.on_reconcile({}, [], T0 + 1000)
    # no immediate re-query (it would meet the same transient): a re-check after a second,
    # which can clear the market but not confirm the mismatch
    assert requests(core.drain()) == []
    core.on_housekeeping(T0 + 1999)
    assert requests(core.drain()) == []
    core.on_housekeeping(T0 + 2000)
    assert len(requests(core.drain())) == 1
    core.on_housekeeping(T0 + 2100)
    assert requests(core.drain()) == []  # asked once
    for t in (T0 + 2000, T0 + 3000, T0 + 4000, T0 + 5000, T0 + 5999):
        core.on_reconcile({}, [], t)  # the transient outlasts several re-checks
        assert core.book.positions[GOLD].effective == size and not core.hard_stop.latched
    core.on_reconcile({"xyz:GOLD": size}, [], T0 + 6500)
    assert core.unexplained == {} and not core.hard_stop.latched


def test_a_snapshot_older_than_our_fill_is_cleared_by_the_next_recheck() -> None:
    core = trade_core(mismatch_confirm_wait_s=10.0)
    size = open_position(core, GOLD, T0 + 10)
    core.on_reconcile({}, [], T0 + 20)  # taken before the fill, answered after it
    assert "xyz:GOLD" in core.unexplained
    core.on_housekeeping(T0 + 1020)
    assert len(requests(core.drain())) == 1
    core.on_reconcile({"xyz:GOLD": size}, [], T0 + 1030)
    assert core.unexplained == {}
    enter(core, TSLA, T0 + 1040)  # entries again after ~1 s, not after the whole wait


def test_a_mismatch_is_adopted_only_after_the_wait() -> None:
    # the venue holds more than our fills explain (no claim that a fill closed anything):
    # the general rule
    core = trade_core(mismatch_confirm_wait_s=5.0, mismatch_confirmations=2)
    size = open_position(core, GOLD, T0 + 10)
    more = {"xyz:GOLD": 2 * size}
    core.on_reconcile(more, [], T0 + 1000)
    core.on_reconcile(more, [], T0 + 3000)
    core.on_reconcile(more, [], T0 + 5999)
    assert core.book.positions[GOLD].effective == size and not core.hard_stop.latched
    core.on_reconcile(more, [], T0 + 6000)  # seen 4 times over 5 s: the venue is right
    p = core.book.positions[GOLD]
    assert p.effective == 2 * size and core.hard_stop.reason == "reconciliation_mismatch"
    assert "adopted" in core.unexplained["xyz:GOLD"]
    out = core.drain()
    assert not [it for it in out if isinstance(it, QueryFills)]
    # the latch flattens what was adopted; while that flatten is in flight the verdict stands
    [flat] = [it.order for it in out if isinstance(it, PlaceOrder)]
    assert flat.reduce_only and flat.reason == "hard_stop" and flat.sz == 2 * size
    core.on_reconcile(more, [], T0 + 6100)
    assert "adopted" in core.unexplained["xyz:GOLD"]


# ------------------------- item 2: "gone" needs a closing fill (or the long unfilled window)


def fills_queries(core: TradingCore) -> list[QueryFills]:
    return [it for it in core.drain() if isinstance(it, QueryFills)]


def test_two_empty_answers_10_s_apart_do_not_declare_our_filled_position_gone() -> None:
    # the false latch seen in trade mode: two empty answers further apart than
    # mismatch_confirm_wait_s (10 s) adopted "0" for a position our own fills opened
    core = trade_core()
    size = open_position(core, GOLD, T0 + 10)
    core.on_reconcile({}, [], T0 + 1000)
    assert fills_queries(core) == []  # a snapshot older than our fill is cleared by ...
    core.on_reconcile({}, [], T0 + 2000)
    [q] = fills_queries(core)  # ... the re-check; it persists: the second source is asked
    assert q.coins == ("xyz:GOLD",)
    core.on_reconcile({}, [], T0 + 12_500)  # 11.5 s after the first
    p = core.book.positions[GOLD]
    assert p.effective == size and not core.hard_stop.latched
    assert not [f for f in core.book.fills if f.synthetic]
    assert "no closing fill seen" in core.unexplained["xyz:GOLD"]
    [q] = fills_queries(core)  # asked again once the general wait is over
    # the venue's fills: our entry (already applied) and an older foreign fill (history)
    entry = core.book.fills[-1]
    history = Fill("H1", None, "xyz:GOLD", False, 99.0, 5.0, 0.0, T0 - 60_000)
    core.on_fills_answer([entry, history], T0 + 12_600)
    assert p.effective == size and not core.hard_stop.latched  # history rebuilds nothing
    alerts = [it for it in core.drain() if isinstance(it, Alert)]
    assert [a.code for a in alerts] == ["no_closing_fill"]
    # still managed: the time stop (20 s) flattens it while the venue keeps saying "flat"
    core.on_reconcile({}, [], T0 + 19_000)
    core.drain()
    core.on_housekeeping(T0 + 21_000)
    [flat] = placed(core)
    assert flat.reduce_only and flat.reason == "time_stop"
    # the transient ends: the venue held it all along and fills the flatten
    core.on_reconcile({"xyz:GOLD": size}, [], T0 + 20_500)
    fill(core, flat, T0 + 21_010, "T-close")
    core.on_reconcile({}, [], T0 + 22_000)
    assert core.unexplained == {} and not core.hard_stop.latched and core.flat()


def test_a_fill_the_venue_reported_but_whose_userfills_are_late_is_not_declared_gone() -> None:
    # found by the long stateful run: the post response said "filled", the fills had not
    # arrived, and a long all-zero state adopted "0" after the general wait (a false latch)
    core = trade_core()
    o = enter(core, GOLD, T0 + 10)
    core.on_sent(o.cloid, T0 + 10)
    core.on_post_result(o.cloid, {"filled": {"totalSz": o.sz_wire, "avgPx": o.px_wire,
                                             "oid": 7}}, T0 + 11)
    p = core.book.positions[GOLD]
    assert p.size == 0 and p.effective == o.sz  # the venue's word, fills on their way
    core.drain()
    core.on_reconcile({}, [], T0 + 1000)
    core.on_reconcile({}, [], T0 + 2000)
    [_] = fills_queries(core)
    core.on_reconcile({}, [], T0 + 11_500)
    assert p.effective == o.sz and not core.hard_stop.latched
    # the userFills answer brings the fill the stream has not delivered yet
    core.on_fills_answer([Fill("T-late", o.cloid, o.coin, o.is_buy, o.px, o.sz, 0.0,
                               T0 + 12)], T0 + 11_600)
    assert p.size == o.sz and not p.unconfirmed and not core.hard_stop.latched


def test_a_closing_fill_in_userfills_changes_the_book() -> None:
    core = trade_core()
    size = open_position(core, GOLD, T0 + 10)
    core.on_reconcile({}, [], T0 + 1000)
    core.on_reconcile({}, [], T0 + 2000)
    [_] = fills_queries(core)
    # a liquidation the stream never delivered (e.g. lost across a reconnect's snapshot)
    liq = Fill("L1", None, "xyz:GOLD", False, 95.0, size, 0.01, T0 + 500)
    core.on_fills_answer([liq], T0 + 1100)
    p = core.book.positions[GOLD]
    assert not p.has_exposure  # the venue's own record of the fill: believed at once
    assert core.hard_stop.reason == "foreign_fill"  # not ours: the operator must look
    core.on_housekeeping(T0 + 1200)  # a reconciliation is asked to judge the market again
    assert [it for it in core.drain() if isinstance(it, RequestReconcile)]
    core.on_reconcile({}, [], T0 + 1300)
    assert core.unexplained == {}
    assert all(e.reason != "reconciliation_mismatch" for e in core.hard_stop.history)


def test_without_a_closing_fill_the_venue_is_believed_only_after_the_long_window() -> None:
    core = trade_core(unfilled_close_wait_s=60.0, unfilled_close_confirmations=4)
    open_position(core, GOLD, T0 + 10)
    for t in (T0 + 1000, T0 + 21_000, T0 + 41_000, T0 + 60_999):
        core.on_reconcile({}, [], t)  # four answers, but not yet 60 s
        assert core.book.positions[GOLD].has_exposure and not core.hard_stop.latched
    core.drain()
    core.on_reconcile({}, [], T0 + 61_000)
    p = core.book.positions[GOLD]
    assert not p.has_exposure and core.hard_stop.reason == "reconciliation_mismatch"
    assert "no closing fill seen in 60 s" in (core.hard_stop.detail or "")


def test_enough_time_but_too_few_answers_is_not_confirmation() -> None:
    core = trade_core(unfilled_close_wait_s=60.0, unfilled_close_confirmations=4)
    open_position(core, GOLD, T0 + 10)
    for t in (T0 + 1000, T0 + 70_000, T0 + 80_000):
        core.on_reconcile({}, [], t)
    assert core.book.positions[GOLD].has_exposure and not core.hard_stop.latched


def test_userfills_is_asked_at_most_once_per_general_wait() -> None:
    core = trade_core(mismatch_confirm_wait_s=10.0)
    open_position(core, GOLD, T0 + 10)
    asked = []
    for t in range(1000, 31_000, 1000):  # re-checks every second for 30 s
        core.on_reconcile({}, [], T0 + t)
        if fills_queries(core):
            asked.append(t)
    assert asked == [2000, 12_000, 22_000]


def test_a_changing_venue_figure_restarts_the_confirmation() -> None:
    core = trade_core(mismatch_confirm_wait_s=5.0)
    size = open_position(core, GOLD, T0 + 10)
    core.on_reconcile({}, [], T0 + 1000)
    core.on_reconcile({"xyz:GOLD": size / 2}, [], T0 + 6500)  # another figure: seen once
    assert core.book.positions[GOLD].effective == size and not core.hard_stop.latched


def test_the_position_stays_managed_until_the_mismatch_is_confirmed() -> None:
    core = trade_core(mismatch_confirm_wait_s=30.0)
    open_position(core, GOLD, T0 + 10)
    tsla = open_position(core, TSLA, T0 + 15_000)
    # the venue reports both markets flat, again and again, for longer than a transient
    for t in (T0 + 16_000, T0 + 18_000, T0 + 20_000):
        core.on_reconcile({}, [], t)
    assert set(core.unexplained) == {"xyz:GOLD", "xyz:TSLA"}
    # the time stop (20 s) still closes GOLD while the mismatch waits for confirmation
    core.on_housekeeping(T0 + 21_000)
    [flat] = placed(core)
    assert flat.reduce_only and flat.reason == "time_stop" and flat.idx == GOLD
    # ... and the kill switch flattens TSLA (GOLD's flatten is live: no second one)
    core.kill(T0 + 21_400, "test")
    flattens = [o for o in placed(core) if o.reduce_only]
    assert [(o.idx, o.reason) for o in flattens] == [(TSLA, "kill")]
    assert core.book.positions[TSLA].effective == tsla and not core.hard_stop.latched


# ------------------------------------------------------ item 3: reconnect during an exit


def test_a_flatten_not_sent_because_the_socket_was_down_is_retried_and_not_counted() -> None:
    core = trade_core(max_flatten_failures=1)
    open_position(core, GOLD, T0 + 10)
    core.on_housekeeping(T0 + 21_000)  # the time stop
    [f1] = placed(core)
    core.on_disconnect(T0 + 21_001)  # the socket died before the frame was written
    core.on_send_failed(f1.cloid, T0 + 21_002, "not sent: connection ended")
    assert f1.state == ofsm.EXPIRED
    assert not core.hard_stop.latched and core.book.positions[GOLD].flatten_failures == 0
    for t in (T0 + 21_100, T0 + 21_200):  # still down: nothing is created meanwhile
        core.on_housekeeping(t)
        assert placed(core) == []
    reconnect(core, T0 + 21_300)
    core.on_housekeeping(T0 + 21_400)
    [f2] = placed(core)
    assert f2.reduce_only and f2.idx == GOLD and f2.cloid != f1.cloid


def test_a_kill_while_disconnected_flattens_once_the_connection_is_back() -> None:
    core = trade_core(max_flatten_failures=1)
    open_position(core, GOLD, T0 + 10)
    core.on_disconnect(T0 + 100)
    core.flatten_all(T0 + 200, "operator")  # one-shot: must not be lost
    assert placed(core) == [] and core.flatten_deferred == {GOLD: "operator"}
    reconnect(core, T0 + 300)
    core.on_housekeeping(T0 + 400)
    [f] = placed(core)
    assert f.reduce_only and f.reason == "operator" and core.flatten_deferred == {}


def test_a_flatten_lost_in_a_reconnect_and_unknown_to_the_venue_is_not_a_failure() -> None:
    core = trade_core(max_flatten_failures=1, unknown_oid_grace_ms=2000.0)
    open_position(core, GOLD, T0 + 10)
    core.on_housekeeping(T0 + 21_000)
    [f1] = placed(core)
    core.on_sent(f1.cloid, T0 + 21_001)
    core.on_disconnect(T0 + 21_002)  # written, but the connection dropped: UNKNOWN
    assert f1.state == ofsm.UNKNOWN
    reconnect(core, T0 + 21_100)
    core.on_order_status(f1.cloid, {"status": "unknownOid"}, T0 + 22_000)  # too early
    assert f1.state == ofsm.UNKNOWN
    core.on_order_status(f1.cloid, {"status": "unknownOid"}, T0 + 23_100)
    assert f1.state == ofsm.EXPIRED
    assert not core.hard_stop.latched and core.book.positions[GOLD].flatten_failures == 0
    core.on_housekeeping(T0 + 23_200)
    flattens = [o for o in placed(core) if o.reduce_only]
    assert len(flattens) == 1 and flattens[0].cloid != f1.cloid


def test_venue_rejected_and_unfilled_flattens_still_count() -> None:
    core = trade_core(max_flatten_failures=2)
    open_position(core, GOLD, T0 + 10)
    core.on_housekeeping(T0 + 21_000)
    [f1] = placed(core)
    core.on_sent(f1.cloid, T0 + 21_001)
    core.on_post_result(f1.cloid, {"error": NO_MATCH}, T0 + 21_002)  # left unfilled
    assert core.book.positions[GOLD].flatten_failures == 1 and not core.hard_stop.latched
    core.on_housekeeping(T0 + 22_000)
    [f2] = placed(core)
    core.on_sent(f2.cloid, T0 + 22_001)
    core.on_post_result(f2.cloid, {"error": "Insufficient margin to place order. asset=1"},
                        T0 + 22_002)  # rejected
    assert core.hard_stop.reason == "flatten_failures"


# ---------------------------------------------------------- item 5: READY after a mismatch


def test_after_a_reconnect_ready_waits_for_a_fresh_reconciliation() -> None:
    core = trade_core()
    core.on_disconnect(T0 + 100)
    reconnect(core, T0 + 200)
    assert not core.is_ready()
    signal(core, GOLD, T0 + 300)
    assert placed(core) == [] and core.skips["not_ready"] == 1
    core.on_reconcile({}, [], T0 + 400)
    assert core.is_ready()
    enter(core, TSLA, T0 + 500)


def test_paper_is_ready_again_once_market_data_is_back() -> None:
    core, _ = make_trading({"trading": HOLD["trading"]}, coins=COINS)
    make_ready(core)
    core.on_disconnect(T0 + 100)
    assert not core.is_ready()
    for i in range(len(COINS)):  # the paper feed has no user channels to acknowledge
        core.on_bbo(i, 1, 99.99, 100.0, 100.01, 100.0, T0 + 200)
        core.on_ctx(i, 100.0, 100.0, T0 + 200)
    assert core.is_ready()


def test_no_entry_while_the_venue_reports_a_position_the_book_does_not_know() -> None:
    core = trade_core(mismatch_confirm_wait_s=5.0)
    core.on_reconcile({"xyz:TSLA": 0.3}, [], T0 + 100)
    assert "xyz:TSLA" in core.unexplained
    signal(core, GOLD, T0 + 200)  # another market: still no entry
    signal(core, TSLA, T0 + 210)
    assert placed(core) == [] and core.skips["not_ready"] == 2
    core.on_reconcile({"xyz:TSLA": 0.3}, [], T0 + 5100)  # confirmed: adopted, latched
    assert core.book.positions[TSLA].effective == 0.3 and core.hard_stop.latched
    [flat] = placed(core)  # the hard stop flattens what was adopted; the book says no match
    core.on_sent(flat.cloid, T0 + 5101)
    core.on_post_result(flat.cloid, {"error": NO_MATCH}, T0 + 5102)
    core.reset_hard_stop(T0 + 5200)
    core.drain()
    signal(core, GOLD, T0 + 5400)  # adopted, not yet confirmed: no entry
    assert not [o for o in placed(core) if not o.reduce_only]
    assert core.skips["not_ready"] == 3
    core.on_reconcile({"xyz:TSLA": 0.3}, [], T0 + 5500)  # the venue agrees with the book
    assert core.unexplained == {}
    enter(core, GOLD, T0 + 5700)


def test_no_entry_while_an_open_order_the_book_does_not_know_is_at_the_venue() -> None:
    core = trade_core()
    orphan = {"coin": "xyz:GOLD", "oid": 4242, "side": "B", "limitPx": "90", "sz": "1"}
    core.on_reconcile({}, [orphan], T0 + 100)
    out = core.drain()
    assert [it.oid for it in out if isinstance(it, CancelOrder)] == [4242]
    signal(core, TSLA, T0 + 200)
    assert placed(core) == [] and core.skips["not_ready"] == 1
    core.on_reconcile({}, [orphan], T0 + 1100)  # still there: canceled again, alerted once
    out = core.drain()
    assert [it.oid for it in out if isinstance(it, CancelOrder)] == [4242]
    assert not [it for it in out if getattr(it, "code", None) == "orphan_order"]
    core.on_reconcile({}, [], T0 + 1500)  # canceled: gone at the venue
    assert core.unexplained == {}
    enter(core, TSLA, T0 + 1600)


# ------------------------------------------- item 10: unknownOid before expiresAfter


def test_unknown_oid_before_expires_after_keeps_the_entry_unknown() -> None:
    core = trade_core(expires_after_ms=5000.0, unknown_oid_grace_ms=2000.0)
    o = enter(core, GOLD, T0 + 100)
    assert o.expires_after_ms == int(T0 + 100 + 5000)
    core.on_sent(o.cloid, T0 + 101)
    core.on_post_result(o.cloid, None, T0 + 1101)  # no answer: UNKNOWN
    core.on_order_status(o.cloid, {"status": "unknownOid"}, T0 + 1500)
    assert o.state == ofsm.UNKNOWN and not core.is_ready()
    assert core.book.positions[GOLD].state == pfsm.OPENING
    signal(core, GOLD, T0 + 1700)  # another signal in that market: refused
    assert placed(core) == [] and core.skips["not_ready"] == 1
    # it did execute after all: the late fill finds its order
    core.on_fill("late", o.cloid, o.coin, o.is_buy, o.px, o.sz, 0.0, T0 + 2000, T0 + 2000)
    core.on_order_update(o.cloid, 7, "filled", "0", o.sz_wire, T0 + 2001)
    assert o.state == ofsm.FILLED and core.book.positions[GOLD].effective == o.sz
    assert not [a for a in core.drain() if getattr(a, "code", None) == "foreign_fill"]


def test_unknown_oid_after_expires_after_is_final() -> None:
    core = trade_core(expires_after_ms=5000.0, unknown_oid_grace_ms=2000.0)
    o = enter(core, GOLD, T0 + 100)
    core.on_sent(o.cloid, T0 + 101)
    core.on_post_result(o.cloid, None, T0 + 1101)
    core.on_order_status(o.cloid, {"status": "unknownOid"}, T0 + 7099)
    assert o.state == ofsm.UNKNOWN
    core.on_order_status(o.cloid, {"status": "unknownOid"}, T0 + 7100)
    assert o.state == ofsm.EXPIRED and core.is_ready()
    assert core.book.positions[GOLD].state == pfsm.FLAT
