"""Stateful property test of the trading core against a truthful venue model.

The venue decides each order's outcome once (how much fills, at what price, or a rejection);
Hypothesis then chooses how that truth is *delivered*: post responses of every variant (or
none: timeouts), orderUpdates, fills split, duplicated and reordered, orderStatus replies to the
core's queries, disconnects, timers, market frames, kills and hard-stop resets.

Invariants checked after every step (docs/reference/design.md §4):
1. at most one live reduce-only (flatten) order per market;
2. every market's position equals the signed sum of the distinct fills delivered so far;
3. no new-risk order is created while the hard stop is latched, the core is not READY, or the
   kill switch is on;
4. per-market and total notional limits hold at the moment an entry is created, counting
   pending orders;
5. at the end, once the venue has said everything it knows, no order is left UNKNOWN or live.
"""

from __future__ import annotations

import random
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.core.intents import CancelOrder, PlaceOrder, QueryOrder, Record
from engine.core.orders import CloidFactory, Order
from engine.io.journal import load_journal, restore
from engine.io.records import RecordWriter
from fsm import order as ofsm
from fsm import position as pfsm

from .helpers import T0, make_ready, make_trading

COINS = ("xyz:GOLD", "xyz:TSLA")
LIMITS = {"trading": {"max_notional_per_market": 60.0, "max_total_notional": 100.0,
                      "max_concurrent_positions": 2, "action_budget": 50,
                      "unknown_timeout_ms": 1e12, "pending_timeout_ms": 4000.0,
                      "max_flatten_failures": 2, "flatten_retry_ms": 200.0,
                      "reject_burst_limit": 2}}
NO_MATCH = "Order could not immediately match against any resting orders. asset=110000"


class Truth:
    """What the venue knows about one order: decided once, delivered many ways."""

    def __init__(self, order: Order, filled: float, px: float, outcome: str) -> None:
        self.order = order
        self.filled = filled  # total size that filled at the venue
        self.px = px
        self.outcome = outcome  # "filled" | "nomatch" | "rejected" | "never"
        self.fills: list[tuple[str, float]] = []  # (tid, size) still to deliver
        self.delivered: list[tuple[str, float]] = []
        self.responded = False


class TradingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core, self.cfg = make_trading(LIMITS, coins=COINS)
        self.now = T0
        self.px = [100.0, 100.0]
        self.server_t = 10
        make_ready(self.core, self.now)
        self.truths: dict[str, Truth] = {}
        self.new_orders: list[Order] = []  # PlaceOrder intents not yet "sent"
        self.ledger = [0.0, 0.0]  # signed sum of delivered distinct fills per market
        self.tid_n = 0
        self.queries: list[str] = []
        self.rng = random.Random(0)
        self.flags_before = (False, True, False)
        self.skewed_before = False  # the clock-skew gate before the step (clock_steps)
        self.journal: list[Record] = []
        self.restarts = 0
        self.tmpdirs: list[str] = []

    # ------------------------------------------------------------- plumbing
    def _step_begin(self) -> None:
        c = self.core
        self.flags_before = (c.hard_stop.latched, c.is_ready(), c.killed)
        self.skewed_before = c.clock_skewed

    def _collect(self) -> None:
        latched, ready, killed = self.flags_before
        for intent in self.core.drain():
            if isinstance(intent, PlaceOrder):
                o = intent.order
                if not o.reduce_only:
                    # invariant 3: checked against the state before the step that created it
                    assert not latched and ready and not killed, (self.flags_before, o)
                    assert not self.skewed_before, o  # no entry while the clock is off
                    self._check_limits_at_entry(o)
                self.new_orders.append(o)
            elif isinstance(intent, QueryOrder):
                self.queries.append(intent.cloid)
            elif isinstance(intent, Record):
                self.journal.append(intent)
            elif isinstance(intent, CancelOrder):
                pass
        self._step_begin()

    def _check_limits_at_entry(self, o: Order) -> None:
        c = self.core
        tc = self.cfg.trading
        per_market = 0.0
        total = 0.0
        for p in c.book.positions:
            mark = c.obs.markets[p.idx].mark_px or 0.0
            n = abs(p.effective) * mark
            total += n
            if p.idx == o.idx:
                per_market += n
        for q in c.orders.active():
            if not q.reduce_only:
                total += q.remaining * q.px
                if q.idx == o.idx:
                    per_market += q.remaining * q.px
        assert per_market <= tc.max_notional_per_market + 1e-6
        assert total <= tc.max_total_notional + 1e-6

    def _frames(self, idx: int) -> None:
        self.server_t += 1
        px = self.px[idx]
        self.core.on_bbo(idx, self.server_t, px * 0.9999, 5.0, px * 1.0001, 5.0, self.now)

    # ---------------------------------------------------------------- rules
    @rule(idx=st.integers(0, 1),
          move_bps=st.one_of(st.integers(12, 60), st.integers(-60, -12), st.integers(-60, 60)),
          catch_up=st.booleans(), dt=st.integers(1, 900))
    def oracle_moves(self, idx: int, move_bps: int, catch_up: bool, dt: int) -> None:
        """The oracle moves; the book either stays (a dislocation) or catches up."""
        self.now += dt
        new = round(self.px[idx] * (1 + move_bps / 1e4), 2)
        self.core.on_ctx(idx, new, new, self.now)
        if catch_up:
            self.px[idx] = new
            self._frames(idx)
        self._collect()

    @rule(idx=st.integers(0, 1), dt=st.integers(1, 500))
    def book_frame(self, idx: int, dt: int) -> None:
        self.now += dt
        self._frames(idx)
        self._collect()

    @precondition(lambda self: self.new_orders)
    @rule(data=st.data(), outcome=st.sampled_from(["full", "partial", "nomatch", "reject",
                                                    "benign_reject", "send_fail"]))
    def send(self, data: st.DataObject, outcome: str) -> None:
        """The shell writes a pending order; the venue decides its outcome once."""
        o = self.new_orders.pop(data.draw(st.integers(0, len(self.new_orders) - 1)))
        self.now += 1
        if o.state != ofsm.NEW:
            self._collect()
            return
        if outcome == "send_fail":
            self.core.on_send_failed(o.cloid, self.now, "disconnected")
            self._collect()
            return
        self.core.on_sent(o.cloid, self.now)
        if outcome == "full":
            t = Truth(o, o.sz, o.px, "filled")
        elif outcome == "partial":
            t = Truth(o, max(0.01, round(o.sz / 2, 2)), o.px, "filled")
        elif outcome == "nomatch":
            t = Truth(o, 0.0, o.px, "nomatch")
        else:
            t = Truth(o, 0.0, o.px, "rejected" if outcome == "reject" else "benign")
        if t.filled > 0:
            # the venue fills in lot multiples (szDecimals 2): split into 1-3 such parts
            lots = round(t.filled * 100)
            k = min(data.draw(st.integers(1, 3)), lots)
            cuts = sorted(data.draw(st.lists(st.integers(1, lots - 1), min_size=k - 1,
                                             max_size=k - 1, unique=True))) if k > 1 else []
            bounds = [0, *cuts, lots]
            for a, b in zip(bounds, bounds[1:], strict=False):
                self.tid_n += 1
                t.fills.append((f"T{self.tid_n}", (b - a) / 100))
        self.truths[o.cloid] = t
        self._collect()

    def _status_obj(self, t: Truth) -> object:
        o = t.order
        if t.outcome == "filled":
            return {"filled": {"totalSz": f"{t.filled:g}", "avgPx": f"{t.px:g}",
                               "oid": 10**11 + int(o.cloid[-8:], 16)}}
        if t.outcome == "nomatch":
            return {"error": NO_MATCH}
        if t.outcome == "benign":
            return {"error": "Order must have minimum value of $10. asset=110000"}
        return {"error": "Insufficient margin to place order. asset=110000"}

    @precondition(lambda self: any(not t.responded for t in self.truths.values()))
    @rule(data=st.data(), variant=st.sampled_from(["status", "status", "timeout",
                                                    "transport", "waiting", "action_err"]))
    def respond(self, data: st.DataObject, variant: str) -> None:
        pending = [t for t in self.truths.values() if not t.responded]
        t = pending[data.draw(st.integers(0, len(pending) - 1))]
        t.responded = True
        self.now += data.draw(st.integers(1, 300))
        cloid = t.order.cloid
        if variant == "status":
            self.core.on_post_result(cloid, self._status_obj(t), self.now)
        elif variant == "timeout":
            self.core.on_post_result(cloid, None, self.now)
        elif variant == "transport":
            self.core.on_post_result(cloid, {"type": "error", "payload": "boom"}, self.now)
        elif variant == "waiting":
            self.core.on_post_result(cloid, "waitingForFill", self.now)
        elif variant == "action_err" and t.outcome in ("rejected", "benign"):
            # an action-level error means nothing was applied: only consistent with no fill
            self.core.on_post_result(cloid, {"status": "err", "response": "L1 error"}, self.now)
        else:
            self.core.on_post_result(cloid, self._status_obj(t), self.now)
        self._collect()

    @precondition(lambda self: any(t.fills for t in self.truths.values()))
    @rule(data=st.data(), duplicate=st.booleans())
    def deliver_fill(self, data: st.DataObject, duplicate: bool) -> None:
        """userFills: any order's next fill part, in any order, possibly twice."""
        with_fills = [t for t in self.truths.values() if t.fills]
        t = with_fills[data.draw(st.integers(0, len(with_fills) - 1))]
        tid, sz = t.fills.pop(data.draw(st.integers(0, len(t.fills) - 1)))
        o = t.order
        self.now += 1
        for _ in range(2 if duplicate else 1):
            self.core.on_fill(tid, o.cloid, o.coin, o.is_buy, t.px, sz, sz * t.px * 1e-4,
                              self.now, self.now)
        t.delivered.append((tid, sz))
        self.ledger[o.idx] += sz if o.is_buy else -sz
        self._collect()

    @precondition(lambda self: any(t.responded or not t.fills for t in self.truths.values()))
    @rule(data=st.data())
    def order_update(self, data: st.DataObject) -> None:
        """orderUpdates: the terminal status of some order (possibly again)."""
        ts = list(self.truths.values())
        t = ts[data.draw(st.integers(0, len(ts) - 1))]
        o = t.order
        status = {"filled": "filled", "nomatch": "canceled", "rejected": "perpMarginRejected",
                  "benign": "minTradeNtlRejected"}[t.outcome]
        if status == "filled" and t.filled < o.sz:
            status = "canceled"  # an IOC remainder that found nothing
        rem = o.sz - t.filled
        self.now += 1
        self.core.on_order_update(o.cloid, None, status, f"{rem:g}", o.sz_wire, self.now)
        self._collect()

    @precondition(lambda self: self.queries)
    @rule()
    def answer_query(self) -> None:
        cloid = self.queries.pop(0)
        t = self.truths.get(cloid)
        if t is None:
            reply: object = {"status": "unknownOid"}
        else:
            o = t.order
            status = {"filled": "filled", "nomatch": "canceled", "rejected": "rejected",
                      "benign": "minTradeNtlRejected"}[t.outcome]
            if status == "filled" and t.filled < o.sz:
                status = "canceled"
            reply = {"status": "order", "order": {"order": {
                "coin": o.coin, "side": "B" if o.is_buy else "A", "limitPx": o.px_wire,
                "sz": f"{o.sz - t.filled:g}", "oid": 1, "timestamp": 0, "origSz": o.sz_wire,
                "cloid": o.cloid}, "status": status, "statusTimestamp": 0}}
        self.now += 1
        self.core.on_order_status(cloid, reply, self.now)
        self._collect()

    @rule(dt=st.integers(1, 6000))
    def timer(self, dt: int) -> None:
        self.now += dt
        self.core.on_timer(self.now)
        self._collect()

    @rule()
    def disconnect_and_reconnect(self) -> None:
        self.now += 5
        self.core.on_disconnect(self.now)
        self._collect()
        self.now += 100
        for i in range(len(COINS)):
            self._frames(i)
            self.core.on_ctx(i, self.px[i], self.px[i], self.now)
        self.core.set_ready("user_channels", True)
        self._collect()

    @precondition(lambda self: self.restarts < 2)
    @rule()
    def crash_and_restart_from_journal(self) -> None:
        """The process dies; a new core is rebuilt from the journal and reconciled."""
        d = tempfile.mkdtemp(prefix="journal-")
        self.tmpdirs.append(d)
        w = RecordWriter(d, clock=lambda: self.now)
        for r in self.journal:
            w.write(r.kind, r.ts_ms, r.record)
        w.close()
        self.restarts += 1
        self.now += 2000
        core, _ = make_trading(LIMITS, coins=COINS)
        core.cloids = CloidFactory(bytes([2 + self.restarts]) * 8)
        restore(core, load_journal(d, self.now), self.now)
        self.core = core
        self.new_orders = []  # never written to the socket: they died with the process
        self.queries = []
        for i in range(len(COINS)):
            self._frames(i)
            core.on_ctx(i, self.px[i], self.px[i], self.now)
        core.set_ready("user_channels", True)
        venue: dict[str, float] = {}
        for t in self.truths.values():
            o = t.order
            done = sum(sz for _, sz in t.delivered) + sum(sz for _, sz in t.fills)
            venue[o.coin] = venue.get(o.coin, 0.0) + (done if o.is_buy else -done)
        core.on_reconcile(venue, [], self.now)
        self._step_begin()
        self._collect()

    @rule(step_ms=st.one_of(st.just(0), st.integers(-30_000, 30_000)),
          rtt_ms=st.integers(0, 3000))
    def clock_steps(self, step_ms: int, rtt_ms: int) -> None:
        """A reconciliation's clock sample: the venue's clock is ``step_ms`` off ours."""
        sent = self.now
        self.now += rtt_ms
        self.core.on_clock_sample(sent, self.now, sent + rtt_ms / 2 - step_ms, self.now)
        c = self.core
        assert c.clock_skew_least_ms is not None
        assert c.clock_skew_least_ms <= abs(step_ms) + 1e-9  # never more skew than there is
        assert c.clock_skewed == (c.clock_skew_least_ms > self.cfg.trading.max_clock_skew_ms)
        self._collect()

    @precondition(lambda self: self.core.entries_sent >= 2)
    @rule()
    def kill(self) -> None:
        self.now += 1
        self.core.kill(self.now, "test")
        self._collect()

    @precondition(lambda self: self.core.hard_stop.latched)
    @rule()
    def reset_hard_stop(self) -> None:
        self.core.reset_hard_stop(self.now)
        self._collect()

    # ------------------------------------------------------------ invariants
    @invariant()
    def one_live_flatten_per_market(self) -> None:
        live: dict[int, int] = {}
        for o in self.core.orders.active():
            if o.reduce_only:
                live[o.idx] = live.get(o.idx, 0) + 1
        assert all(n <= 1 for n in live.values()), live

    @invariant()
    def derived_indexes_equal_a_scan(self) -> None:
        """The O(1) views the entry gates read (exposed / active markets, live orders per
        market, UNKNOWN count, pending notional) always equal a scan of positions and orders."""
        c = self.core
        ps = c.book.positions
        assert c._exposed == {p.idx for p in ps if p.has_exposure}
        assert c._active == {p.idx for p in ps if p.has_exposure or pfsm.entry_live(p.state)}
        live = [o for o in c.orders.by_cloid.values() if o.state in ofsm.ACTIVE_STATES]
        assert {o.cloid for o in live} == set(c.orders.live)
        assert c.orders.unknown_count == sum(1 for o in live if o.state == ofsm.UNKNOWN)
        assert c.is_ready() == (all(c.ready.values())
                                and not any(o.state == ofsm.UNKNOWN for o in live))
        for p in ps:
            mine = [o for o in live if o.idx == p.idx]
            assert c.orders.active_for(p.idx) == [o for o in c.orders.live.values()
                                                  if o.idx == p.idx]
            assert c.orders.pending_for(p.idx) == sum(o.remaining * o.px for o in mine
                                                      if not o.reduce_only)
        pending = sum(o.remaining * o.px for o in live if not o.reduce_only)
        assert abs(c.orders.pending_total - pending) <= 1e-9 * max(1.0, pending)

    @invariant()
    def position_is_sum_of_distinct_fills(self) -> None:
        for p in self.core.book.positions:
            assert abs(p.size - self.ledger[p.idx]) < 1e-9, (p.coin, p.size, self.ledger)

    def teardown(self) -> None:
        """Let the venue say everything it knows; nothing may stay UNKNOWN or live."""
        try:
            self._teardown()
        finally:
            for d in self.tmpdirs:
                shutil.rmtree(d, ignore_errors=True)

    def _teardown(self) -> None:
        for _ in range(200):
            progressed = False
            for t in self.truths.values():
                if not getattr(t, "final_update", False) and t.responded:
                    t.final_update = True  # type: ignore[attr-defined]
                    o = t.order
                    status = {"filled": "filled", "nomatch": "canceled",
                              "rejected": "perpMarginRejected",
                              "benign": "minTradeNtlRejected"}[t.outcome]
                    if status == "filled" and t.filled < o.sz:
                        status = "canceled"
                    self.now += 1
                    self.core.on_order_update(o.cloid, None, status, f"{o.sz - t.filled:g}",
                                              o.sz_wire, self.now)
                    progressed = True
                if not t.responded:
                    t.responded = True
                    self.now += 1
                    self.core.on_post_result(t.order.cloid, self._status_obj(t), self.now)
                    progressed = True
                while t.fills:
                    tid, sz = t.fills.pop()
                    o = t.order
                    self.core.on_fill(tid, o.cloid, o.coin, o.is_buy, t.px, sz, 0.0,
                                      self.now, self.now)
                    self.ledger[o.idx] += sz if o.is_buy else -sz
                    progressed = True
            while self.queries:
                self.answer_query()
                progressed = True
            self.now += 1000
            self.core.on_timer(self.now)
            self._collect()
            for o in list(self.new_orders):
                self.new_orders.remove(o)
                if o.state == ofsm.NEW:
                    self.core.on_sent(o.cloid, self.now)
                    if o.reduce_only:  # the venue fills flattens: the market must end flat
                        t = Truth(o, o.sz, o.px, "filled")
                        self.tid_n += 1
                        t.fills.append((f"T{self.tid_n}", o.sz))
                    else:
                        t = Truth(o, 0.0, o.px, "nomatch")
                    self.truths[o.cloid] = t
                    progressed = True
            busy = not self.core.flat() or any(True for _ in self.core.orders.active())
            if not progressed and not self.queries and not busy:
                break
        for o in self.core.orders.by_cloid.values():
            assert o.state in ofsm.TERMINAL_STATES, o
        self.position_is_sum_of_distinct_fills()
        # flat, or dust the venue refused to flatten (below its $10 minimum; alerted)
        for p in self.core.book.positions:
            assert not p.has_exposure or (
                p.dust_size is not None and abs(p.dust_size - p.effective) < 1e-9), (
                p.coin, p.effective, p.dust_size)


TradingMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_trading_core_stateful = TradingMachine.TestCase


class LongTradingMachine(TradingMachine):
    """The same machine for the marked long run (issue: at least 10,000 examples)."""


LongTradingMachine.TestCase.settings = settings(
    max_examples=10_000, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_trading_core_stateful_long = pytest.mark.slow(LongTradingMachine.TestCase)
