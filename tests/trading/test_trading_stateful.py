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
5. at the end, once the venue has said everything it knows, no order is left UNKNOWN or live;
6. a position the venue holds is managed: the book holds it (or an order of that market is in
   flight and will tell), with exit state and a state a flatten can be submitted from (exits,
   time stop, hard stop, kill) — or the hard stop is latched and says why;
7. a loss breaker never trips while realised + unrealised P&L since the peak is ≥ 0: the
   daily loss (and, in paper mode, the drawdown) against the fill-confirmed P&L at the marks
   at that moment (checked after each fill delivered too: a gain whose fills have not arrived
   has no price and does not count), the trade-mode drawdown only once the venue's usable
   equity (main dex + dex) really fell ``drawdown_pct`` below its peak;
8. no entry while any exposure is unexplained (the venue holds what the book does not, with
   nothing in flight to explain it, or the core lists the market in ``unexplained``);
9. a market's flatten-failure count never exceeds the flattens of it that reached the venue
   since it was last flat (a flatten that never left the process is no failure);
10. no reconciliation latch: the modelled venue never changes a position behind our back.

Issue 9 rules: reconciliations (trade mode: transient answers with all-zero positions and
account values, or only the main dex's value at 0, for less than the confirmation waits, each
transient after a truthful answer; all-zero positions (account values truthful, or zero too)
for 12-50 s, over a position of ours, two answers more than ``mismatch_confirm_wait_s`` apart: a position of ours is not declared gone without a
closing fill); ``userFills`` answers to the core's ``QueryFills`` (every fill the venue made,
delivered or not, plus older foreign history); the whole all-zero state for 12-50 s while the
account holds nothing, answered every 1-3 s (no drawdown: the fills explain no loss); the main
dex's value stuck at 0 for 10-120 s
while a position is held (never a drawdown);
the venue's account values (main dex and dex; the breakers must measure their sum); the link
dropping at any step of an exit and staying down across steps (trade mode); post responses
and fills in either order with delays; ``unknownOid`` for an order the venue has not
processed yet (it must stay UNKNOWN); clock steps. ``TradeMachine`` runs every rule in trade
mode (READY after a reconnect needs a fresh reconciliation); ``Long*`` are the marked long
runs (``-m slow``, 10,000 examples each).
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.core.breakers import DAILY_LOSS, DRAWDOWN
from engine.core.intents import CancelOrder, PlaceOrder, QueryFills, QueryOrder, Record
from engine.core.orders import CloidFactory, Order
from engine.core.positions import Fill
from engine.io.journal import load_journal, restore
from engine.io.records import RecordWriter
from fsm import order as ofsm
from fsm import position as pfsm

from .helpers import T0, make_ready, make_trading, merge

COINS = ("xyz:GOLD", "xyz:TSLA")
START_EQUITY = 100.0
LIMITS = {"trading": {"max_notional_per_market": 60.0, "max_total_notional": 100.0,
                      "max_concurrent_positions": 2, "action_budget": 50,
                      "unknown_timeout_ms": 1e12, "pending_timeout_ms": 4000.0,
                      "max_flatten_failures": 2, "flatten_retry_ms": 200.0,
                      "reject_burst_limit": 2},
          # a small account: losing trades can trip the loss breakers (invariant 7 bites)
          "breakers": {"paper_equity": START_EQUITY, "daily_loss_pct": 0.1,
                       "drawdown_pct": 0.1}}
TRADE = {"mode": "trade", "trading": {"mismatch_confirm_wait_s": 10.0,
                                      "unknown_oid_grace_ms": 2000.0}}
LOSS_BREAKERS = (DAILY_LOSS, DRAWDOWN)
LEVERAGE = 10.0  # the dex holds |position| x mark / LEVERAGE as isolated margin
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

    def fee(self, sz: float) -> float:
        return sz * self.px * 1e-4

    def signed(self, sz: float) -> float:
        return sz if self.order.is_buy else -sz


class TradingMachine(RuleBasedStateMachine):
    EXTRA: dict[str, object] = {}

    def __init__(self) -> None:
        super().__init__()
        self.limits = merge(LIMITS, self.EXTRA)
        self.core, self.cfg = make_trading(self.limits, coins=COINS)
        self.trade = self.cfg.mode == "trade"
        self.link_up = True
        self.transient_until = -math.inf  # the venue answers all zeros until then
        self.transient_main_only = False  # ... or only the main dex's accountValue is 0
        self.transient_positions_only = False  # ... or only the positions are all zero
        self.fills_asked = 0  # QueryFills intents not answered yet
        # the venue's userFills also holds older history: a foreign fill before any position
        self.history = [Fill("H0", None, COINS[0], False, 90.0, 3.0, 0.0, T0 - 86_400_000.0)]
        # a new transient starts only after a truthful account answer since the last one: two
        # windows with none seen between them are, to anyone reading the answers, one window
        # longer than the confirmation waits — a venue that stays empty, not a transient
        self.truth_seen = True
        self.stuck_until = -math.inf  # the main dex's value is stuck at 0 (while a position
        # is held) until then: longer than [breakers] equity_confirm_s
        self.reached_venue = [0, 0]  # flattens per market that reached the venue (or failed
        # to send while connected): the most the core may count as failed
        self.peak_confirmed = START_EQUITY
        self.peak_venue = START_EQUITY
        self.loss_trips_before: set[tuple[str, str | None]] = set()
        self.unexplained_before: set[int] = set()
        self.now = T0
        self.px = [100.0, 100.0]
        self.server_t = 10
        make_ready(self.core, self.now)
        if self.trade:  # the first reconciliation brings the account values with it
            self._account_values(START_EQUITY, 0.0)
            self.core.drain()
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
        self.loss_trips_before = self._loss_trips()
        self.unexplained_before = self._unexplained() | {
            c.strategy.by_coin[k].index for k in c.unexplained}

    # ------------------------------------------------------------- the venue's truth
    def _venue_pos(self, idx: int) -> float:
        """The venue's position: every fill it made, delivered to us or not."""
        return sum(t.signed(t.filled) for t in self.truths.values() if t.order.idx == idx)

    def _unexplained(self) -> set[int]:
        """Markets where the venue holds what the book does not, with no order in flight."""
        out = set()
        for p in self.core.book.positions:
            if abs(self._venue_pos(p.idx) - p.effective) > 1e-9 and not any(
                    True for _ in self.core.orders.active_for(p.idx)):
                out.add(p.idx)
        return out

    def _marks(self) -> list[float]:
        return [m.mark_px or 0.0 for m in self.core.strategy.markets]

    def _equity(self, venue: bool) -> float:
        """Mark-to-market equity: fills the venue made (``venue``) or the fills delivered to
        us (the confirmed view: what the engine can know)."""
        marks = self._marks()
        eq = START_EQUITY
        for t in self.truths.values():
            parts = [sz for _, sz in t.delivered]
            if venue:
                parts += [sz for _, sz in t.fills]
            for sz in parts:
                eq += t.signed(sz) * (marks[t.order.idx] - t.px) - t.fee(sz)
        return eq

    def _loss_trips(self) -> set[tuple[str, str | None]]:
        return {k for k in self.core.breakers.trips if k[0] in LOSS_BREAKERS}

    def _check_breakers(self) -> None:
        """Invariant 7, after each step and after each fill delivered: a new loss-breaker trip
        needs a loss since the peak *at that moment*. A step may deliver several fills (the
        teardown delivers all): a trade closed at a loss before another market's gain is
        confirmed by its fills is a loss at the instant the breaker judged it — the engine
        cannot count a gain it has no fill (no price) for — so each fill is judged on its own.
        """
        confirmed, venue = self._equity(False), self._equity(True)
        for k in self._loss_trips() - self.loss_trips_before:
            event("loss breaker tripped")
            # trade mode: the drawdown breaker reads the venue's usable equity, and must have
            # seen it really fall drawdown_pct below a peak it reached (the engine samples it
            # at reconciliations, at this step's marks: never more than the model's drawdown);
            # the daily loss (and everything in paper mode) the fill-confirmed P&L
            dd = self.cfg.breakers.drawdown_pct / 100.0
            below = (venue <= self.peak_venue * (1.0 - dd) + 1e-9
                     if self.trade and k[0] == DRAWDOWN
                     else confirmed < self.peak_confirmed - 1e-9)
            assert below, (k, self.core.breakers.trips[k].detail, confirmed,
                           self.peak_confirmed, venue, self.peak_venue)
        self.peak_confirmed = max(self.peak_confirmed, confirmed)
        self.peak_venue = max(self.peak_venue, venue)
        self.loss_trips_before = self._loss_trips()

    def _collect(self) -> None:
        latched, ready, killed = self.flags_before
        for intent in self.core.drain():
            if isinstance(intent, PlaceOrder):
                o = intent.order
                if not o.reduce_only:
                    # invariant 3: checked against the state before the step that created it
                    assert not latched and ready and not killed, (self.flags_before, o)
                    assert not self.skewed_before, o  # no entry while the clock is off
                    # invariant 8: no entry while any exposure is unexplained
                    assert not self.unexplained_before, (o, self.unexplained_before)
                    self._check_limits_at_entry(o)
                self.new_orders.append(o)
            elif isinstance(intent, QueryOrder):
                self.queries.append(intent.cloid)
            elif isinstance(intent, QueryFills):
                self.fills_asked += 1
            elif isinstance(intent, Record):
                self.journal.append(intent)
            elif isinstance(intent, CancelOrder):
                pass
        self._check_breakers()
        self._step_begin()

    def _check_limits_at_entry(self, o: Order) -> None:
        c = self.core
        tc = self.cfg.trading
        per_market = 0.0
        total = 0.0
        for p in c.book.positions:
            mark = c.strategy.markets[p.idx].mark_px or 0.0
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

    @rule(idx=st.integers(0, 1), up=st.booleans(), bps=st.integers(15, 60),
          dt=st.integers(1, 900))
    def dislocation(self, idx: int, up: bool, bps: int, dt: int) -> None:
        """The oracle jumps away from a book that stays (the detector's signal, so entries,
        exits and everything after them come often enough in 50 steps)."""
        self.oracle_moves(idx, bps if up else -bps, False, dt)

    @rule(idx=st.integers(0, 1), dt=st.integers(1, 500))
    def book_frame(self, idx: int, dt: int) -> None:
        self.now += dt
        self._frames(idx)
        self._collect()

    @precondition(lambda self: self.new_orders)
    @rule(data=st.data(), outcome=st.sampled_from(["full", "full", "full", "partial",
                                                    "nomatch", "reject", "benign_reject",
                                                    "send_fail"]))
    def send(self, data: st.DataObject, outcome: str) -> None:
        """The shell writes a pending order; the venue decides its outcome once."""
        o = self.new_orders.pop(data.draw(st.integers(0, len(self.new_orders) - 1)))
        self.now += 1
        if o.state != ofsm.NEW:
            self._collect()
            return
        if not self.link_up:
            # the socket is down (trade mode): the executor raises NotSent, no live connection
            event("not sent: link down (flatten)" if o.reduce_only else "not sent: link down")
            self.core.on_send_failed(o.cloid, self.now, "not connected", link_down=True)
            self._collect()
            return
        if o.reduce_only:
            self.reached_venue[o.idx] += 1  # sent, or not sent while connected: may fail
        if outcome == "send_fail":
            self.core.on_send_failed(o.cloid, self.now, "signing failed")
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

    @precondition(lambda self: self.link_up and any(not t.responded
                                                    for t in self.truths.values()))
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

    @precondition(lambda self: self.link_up and any(t.fills for t in self.truths.values()))
    @rule(data=st.data(), duplicate=st.booleans())
    def deliver_fill(self, data: st.DataObject, duplicate: bool) -> None:
        """userFills: any order's next fill part, in any order, possibly twice."""
        with_fills = [t for t in self.truths.values() if t.fills]
        t = with_fills[data.draw(st.integers(0, len(with_fills) - 1))]
        tid, sz = t.fills.pop(data.draw(st.integers(0, len(t.fills) - 1)))
        o = t.order
        self.now += 1
        for _ in range(2 if duplicate else 1):
            self.core.on_fill(tid, o.cloid, o.coin, o.is_buy, t.px, sz, t.fee(sz),
                              self.now, self.now)
        t.delivered.append((tid, sz))
        self.ledger[o.idx] += sz if o.is_buy else -sz
        self._check_breakers()
        self._collect()

    @precondition(lambda self: self.link_up and any(t.responded or not t.fills
                                                    for t in self.truths.values()))
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

    @precondition(lambda self: self.link_up and self.queries)
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

    @precondition(lambda self: not self.trade)
    @rule()
    def disconnect_and_reconnect(self) -> None:
        """Paper: the market-data socket drops and comes back within one step."""
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
        core, _ = make_trading(self.limits, coins=COINS)
        core.cloids = CloidFactory(bytes([2 + self.restarts]) * 8)
        restore(core, load_journal(d, self.now), self.now)
        self.core = core
        self.new_orders = []  # never written to the socket: they died with the process
        self.queries = []
        self.fills_asked = 0
        for i in range(len(COINS)):
            self._frames(i)
            core.on_ctx(i, self.px[i], self.px[i], self.now)
        core.set_ready("user_channels", True)
        self.link_up = True
        venue, main, dex = self._venue_snapshot()
        core.on_reconcile(venue, [], self.now)
        if self.trade:
            self._account_values(main, dex)
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

    # ------------------------------------------------- issue 9: reconciliation, link, unknownOid
    def _venue_snapshot(self) -> tuple[dict[str, float], float, float]:
        """clearinghouseState as the venue answers it now: positions and the account values
        of the main dex and of the trading dex (its isolated margin: 0 when flat). Inside a
        transient window: all zeros."""
        transient = self.now < self.transient_until
        if transient and not (self.transient_main_only or self.transient_positions_only):
            return {}, 0.0, 0.0
        marks = self._marks()
        positions = {}
        margin = 0.0
        for i, coin in enumerate(COINS):
            v = self._venue_pos(i)
            if abs(v) > 1e-12:
                positions[coin] = v
                margin += abs(v) * marks[i] / LEVERAGE
        stuck = self.now < self.stuck_until and bool(positions)
        if transient and self.transient_positions_only:
            return {}, self._equity(True) - margin, margin
        return positions, 0.0 if transient or stuck else self._equity(True) - margin, margin

    def _account_values(self, main: float, dex: float) -> None:
        """The venue's ``accountValue`` of the main dex and of the trading dex. The breakers
        must measure their sum (usable equity), except an answer that looks like the P23
        empty state (main 0, or dex 0 while fills say we hold a position), held back."""
        c = self.core
        suspect = main == 0.0 or (dex == 0.0 and any(p.size for p in c.book.positions))
        if self.now >= self.transient_until and not (main == 0.0 and self.now < self.stuck_until):
            self.truth_seen = True
        c.on_account_values(main, dex, self.now)
        if not suspect:
            assert c.equity_source == "venue", (c.equity_source, main, dex)
            assert abs(c.breakers.equity - (main + dex)) < 1e-6, (c.breakers.equity, main, dex)

    @precondition(lambda self: self.link_up)
    @rule(dt=st.integers(1, 3000))
    def reconcile(self, dt: int) -> None:
        """A reconciliation (periodic, or asked for by the core): positions, no open orders
        (our orders are IOC), then the account values — as the shell does."""
        self.now += dt
        positions, main, dex = self._venue_snapshot()
        self.core.on_reconcile(positions, [], self.now)
        if self.core.unexplained:
            event("reconciliation leaves a market unexplained")
        if self.trade:
            self._account_values(main, dex)
        self._collect()

    @precondition(lambda self: self.trade and self.link_up and self.now >= self.transient_until
                  and self.truth_seen)
    @rule(window_ms=st.integers(500, 8000), main_only=st.booleans())
    def transient_empty_state(self, window_ms: int, main_only: bool) -> None:
        """The venue answers clearinghouseState with all-zero positions and account values
        (or only the main dex's account value is 0) for a while (P23), shorter than the
        confirmation waits; then the truth again, which is seen before the next transient."""
        self.transient_until = self.now + window_ms
        self.transient_main_only = main_only
        self.transient_positions_only = False
        self.truth_seen = False
        positions, main, dex = self._venue_snapshot()
        self.core.on_reconcile(positions, [], self.now)
        self._account_values(main, dex)
        self._collect()

    def _held_idle(self) -> bool:
        """A position backed by delivered fills, with no order of its market in flight."""
        c = self.core
        return any(p.size and not any(True for _ in c.orders.active_for(p.idx))
                   for p in c.book.positions)

    @precondition(lambda self: self.trade and self.link_up and self.now >= self.transient_until
                  and self.truth_seen and self._held_idle())
    @rule(window_ms=st.integers(12_000, 50_000), gap_ms=st.integers(10_001, 11_000),
          accounts_too=st.booleans())
    def long_empty_positions(self, window_ms: int, gap_ms: int, accounts_too: bool) -> None:
        """clearinghouseState answers all-zero positions (and, with ``accounts_too``, account
        values: the whole P23 state) for longer than ``mismatch_confirm_wait_s`` and
        ``[breakers] equity_confirm_s`` but less than ``unfilled_close_wait_s`` and
        ``equity_unexplained_confirm_s``: two answers ``gap_ms`` apart (more than the general
        wait) say "flat" while no fill closed anything. Our fill-backed positions must stay
        in the book and managed (no false latch: invariant 10), and no loss breaker may take
        the zeros for a drawdown (invariant 7); further answers may follow in the window,
        after the position was closed too."""
        event("all-zero positions over a fill-backed position, answers > 10 s apart")
        self.transient_until = self.now + window_ms
        self.transient_main_only = False
        self.transient_positions_only = not accounts_too
        self.truth_seen = False
        self.reconcile(1)
        self.reconcile(gap_ms)  # (timers may run between: the ``timer`` rule)

    def _flat_idle(self) -> bool:
        c = self.core
        return (c.flat() and not any(True for _ in c.orders.active())
                and all(abs(self._venue_pos(i)) < 1e-12 for i in range(len(COINS))))

    @precondition(lambda self: self.trade and self.link_up and self.now >= self.transient_until
                  and self.truth_seen and self._flat_idle())
    @rule(window_ms=st.integers(12_000, 50_000), every_ms=st.integers(1000, 3000))
    def long_empty_state_while_flat(self, window_ms: int, every_ms: int) -> None:
        """The whole P23 state (no positions, account values 0) for longer than ``[breakers]
        equity_confirm_s`` (over ``equity_confirm_reads`` answers) while the account holds
        nothing, answered every ``every_ms``: seen on the simulator to latch "drawdown:
        equity 0.00 USD is 100 % below the peak" on a profitable run. The fills say the
        account is not in drawdown: no loss breaker may trip (invariant 7)."""
        event("all-zero account state while flat for longer than equity_confirm_s")
        self.transient_until = self.now + window_ms
        self.transient_main_only = False
        self.transient_positions_only = False
        self.truth_seen = False
        end = self.now + min(window_ms - 1, 16_000)
        while self.now + every_ms <= end:
            self.reconcile(every_ms)

    @precondition(lambda self: self.link_up and self.fills_asked > 0)
    @rule()
    def answer_fills_query(self) -> None:
        """userFills as the venue answers it: every fill it made, delivered on the stream or
        not, plus older history. Fills the stream has not delivered yet are delivered by
        this answer (applied once, by tid)."""
        self.fills_asked -= 1
        self.now += 1
        answer = list(self.history)
        for t in self.truths.values():
            o = t.order
            for tid, sz in t.delivered + t.fills:
                answer.append(Fill(tid, o.cloid, o.coin, o.is_buy, t.px, sz, t.fee(sz),
                                   self.now))
        self.core.on_fills_answer(answer, self.now)
        applied = {f.tid for f in self.core.book.fills}
        for t in self.truths.values():
            for tid, sz in list(t.fills):
                if tid in applied:
                    event("userFills delivers a fill the stream has not")
                    t.fills.remove((tid, sz))
                    t.delivered.append((tid, sz))
                    self.ledger[t.order.idx] += t.signed(sz)
        self._check_breakers()
        self._collect()

    @precondition(lambda self: self.trade and self.link_up
                  and any(abs(self._venue_pos(i)) > 1e-12 for i in range(len(COINS))))
    @rule(duration_ms=st.integers(10_001, 120_000))
    def main_dex_stuck_at_zero(self, duration_ms: int) -> None:
        """The main dex's accountValue answers 0 for longer than [breakers] equity_confirm_s
        while the venue holds a position (the dex: its margin). Collateral cannot vanish
        under a held position: no breaker may take it for a 95 % drawdown (invariant 7)."""
        event("main dex stuck at 0 while a position is held")
        self.stuck_until = self.now + duration_ms
        self.reconcile(1)

    @precondition(lambda self: self.trade and self.link_up)
    @rule()
    def link_drops(self) -> None:
        """Trade mode: the venue socket drops (at any point of an entry or exit); it stays
        down until ``link_returns``: posts in flight and queries are lost with it."""
        self.now += 5
        if any(pfsm.flatten_live(p.state) or p.has_exposure for p in self.core.book.positions):
            event("link drops during an exit (flatten live or exposure)")
        self.link_up = False
        self.queries = []
        self.fills_asked = 0  # a userFills query in flight is lost too
        self.core.on_disconnect(self.now)
        self._collect()
        assert self.core.link_down() and not self.core.is_ready()

    def _exit_in_progress(self) -> bool:
        """A flatten not yet sent, sent and unanswered, or answered with fills to come."""
        if any(o.reduce_only for o in self.new_orders):
            return True
        return any(t.order.reduce_only and (not t.responded or t.fills)
                   for t in self.truths.values())

    @precondition(lambda self: self.trade and self.link_up and self._exit_in_progress())
    @rule()
    def link_drops_mid_exit(self) -> None:
        """The socket drops at a step of an exit: before its flatten is written, after it is
        sent, after its post response, between its fills."""
        event("link drops mid-exit")
        self.link_drops()

    @precondition(lambda self: self.trade and not self.link_up)
    @rule(dt=st.integers(50, 3000), reconcile_now=st.booleans())
    def link_returns(self, dt: int, reconcile_now: bool) -> None:
        """Reconnected: market data, the user channels' ack; READY waits for a fresh
        reconciliation (maybe during a transient), which follows at once or a step later."""
        self.now += dt
        for i in range(len(COINS)):
            self._frames(i)
            self.core.on_ctx(i, self.px[i], self.px[i], self.now)
        self.core.set_ready("user_channels", True)
        self.link_up = True
        assert not self.core.ready["reconciled"]  # a fresh reconciliation is needed
        if reconcile_now:
            positions, main, dex = self._venue_snapshot()
            self.core.on_reconcile(positions, [], self.now)
            self._account_values(main, dex)
        self._collect()

    def _queried_known_unexpired(self) -> list[str]:
        """Queried orders the venue may not know *yet*: within the grace after we sent them
        (it processes a post that quickly) and before the core's deadline for the order as
        the core knows it (a restored order carries no send time)."""
        grace = self.cfg.trading.unknown_oid_grace_ms
        out = []
        for q in self.queries:
            t = self.truths.get(q)
            o = self.core.orders.get(q)
            if t is None or o is None or t.order.sent_ms is None:
                continue
            if self.now + 1 < min(t.order.sent_ms + grace, self.core.unknown_oid_deadline(o)):
                out.append(q)
        return out

    @precondition(lambda self: self.trade and self.link_up and self._queried_known_unexpired())
    @rule(data=st.data())
    def answer_unknown_oid_not_yet(self, data: st.DataObject) -> None:
        """orderStatus says ``unknownOid`` for an order the venue has (not processed yet),
        before its expiresAfter + grace: it must stay UNKNOWN (no entry meanwhile)."""
        qs = self._queried_known_unexpired()
        cloid = qs[data.draw(st.integers(0, len(qs) - 1))]
        self.queries.remove(cloid)
        self.now += 1
        o = self.core.orders.get(cloid)
        assert o is not None
        was = o.state
        event("unknownOid before expiry")
        self.core.on_order_status(cloid, {"status": "unknownOid"}, self.now)
        assert o.state == was, (o, was)
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
    def venue_position_is_managed(self) -> None:
        """Invariant 6."""
        c = self.core
        latched = c.hard_stop.latched and bool(c.hard_stop.reason)
        for p in c.book.positions:
            venue = self._venue_pos(p.idx)
            in_flight = any(True for _ in c.orders.active_for(p.idx))
            if abs(venue - p.effective) > 1e-9 and not in_flight:
                assert latched, (p.coin, venue, p.effective, p.state, c.unexplained)
            if p.has_exposure and (p.dust_size is None
                                   or abs(p.dust_size - p.effective) > 1e-9):
                assert p.exit_state is not None, (p.coin, p.effective, p.state)
                assert (pfsm.can_submit_flatten(p.state)
                        or p.state in pfsm.FLATTEN_LIVE_STATES), (p.coin, p.state)

    @invariant()
    def no_false_reconciliation_latch(self) -> None:
        """The modelled venue never changes a position behind our back and its transients
        end before a mismatch can be confirmed: a reconciliation must never adopt one."""
        assert all(e.reason != "reconciliation_mismatch" for e in self.core.hard_stop.history), (
            self.core.hard_stop.history)

    @invariant()
    def flatten_failures_only_from_the_venue(self) -> None:
        """Invariant 9 (the core's count restarts when the market is flat: so does ours, less
        the flattens still live, each of which may yet fail once)."""
        for p in self.core.book.positions:
            assert p.flatten_failures <= self.reached_venue[p.idx], (
                p.coin, p.flatten_failures, self.reached_venue)
            if not p.has_exposure:
                self.reached_venue[p.idx] = sum(
                    1 for o in self.core.orders.active_for(p.idx) if o.reduce_only)

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
        self.transient_until = -math.inf
        while self.fills_asked and self.link_up:
            self.answer_fills_query()
        self.stuck_until = -math.inf
        if not self.link_up:
            self.link_returns(100, True)
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
                    self.core.on_fill(tid, o.cloid, o.coin, o.is_buy, t.px, sz, t.fee(sz),
                                      self.now, self.now)
                    t.delivered.append((tid, sz))
                    self.ledger[o.idx] += sz if o.is_buy else -sz
                    self._check_breakers()
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
                    if o.reduce_only:
                        self.reached_venue[o.idx] += 1  # the venue fills flattens: the market must end flat
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


class TradeMachine(TradingMachine):
    """The same rules in trade mode: the link stays down across steps, READY after a
    reconnect waits for a fresh reconciliation, transient all-zero reconciliations, the
    venue's account values feed the breakers, ``unknownOid`` is final only after expiry."""

    EXTRA = TRADE


TradeMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=80, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_trading_core_stateful_trade = TradeMachine.TestCase


class LongTradeMachine(TradeMachine):
    """Trade mode for the marked long run (at least 10,000 examples)."""


LongTradeMachine.TestCase.settings = settings(
    max_examples=10_000, stateful_step_count=80, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_trading_core_stateful_trade_long = pytest.mark.slow(LongTradeMachine.TestCase)
