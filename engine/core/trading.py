"""The trading core (paper and trade modes): signals → gated IOC entries → exits → flat.

Pure and synchronous like the strategy it takes: the HIP-3 dislocation plug-in
(:class:`~engine.strategies.dislocation.DislocationStrategy`), whose ``on_book_top`` /
``on_oracle`` / ``on_timer`` intents (signals) it turns into orders. Every method takes
``now_ms`` and appends intents (:mod:`engine.core.intents`) to ``self.out`` for the shell to
execute. It owns our order
book (cloids, per-order FSM), positions from fills (deduplicated by tid, per-market position
FSM), the executor gates, exits, UNKNOWN resolution, reconciliation and the hard stop.

Executor gates, in this documented order (the first that fails names the skip reason):

1. ``hard_stop``            the latch is set (only reduce-only orders go out)
2. ``killed``               the kill switch is on
3. ``not_ready``            market data for every market, user channels acked, reconciled
                            (after the last reconnect, in trade mode), no order in UNKNOWN,
                            and no market's venue exposure unexplained (``unexplained``)
   ``clock_skew``           the local clock is off the venue's by more than
                            ``max_clock_skew_ms`` (trade mode; :meth:`TradingCore.on_clock_sample`)
4. ``notional_market``      |position| × mark + pending entry notional + this order >
                            ``max_notional_per_market`` (mark unknown: ``no_mark``, fail closed)
5. ``notional_total``       the same summed over every market > ``max_total_notional``
6. ``max_positions``        markets with exposure or a pending entry ≥ ``max_concurrent_positions``
7. ``flatten_in_progress``  a flatten of this market is live
8. ``already_positioned``   this market has exposure (one position per market, no pyramiding)
9. ``pending_order``        an entry of this market is pending
10. ``action_budget``       more than ``action_budget`` new orders in ``action_budget_interval_ms``
11. ``rounding``            no valid price/size at the instrument's minimum notional at the
                            price it is sent at (its :class:`~engine.core.neutral.OrderRounding`)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from engine.config import EngineConfig
from engine.core.bounded import RecentList
from engine.core.breakers import CircuitBreakers, PriceTicks, Trip
from engine.core.core import Signal
from engine.core.exits import evaluate_exit, exit_reference_px, open_exit_state
from engine.core.intents import (
    Alert,
    CancelOrder,
    Intent,
    PlaceOrder,
    QueryFills,
    QueryOrder,
    Record,
    RequestReconcile,
)
from engine.core.neutral import OrderReport, OrderRounding, RejectReason
from engine.core.orders import ENTRY, FLATTEN, CloidFactory, Order, OrderBook
from engine.core.positions import EPS, Fill, Position, PositionBook
from engine.core.risk import ActionBudget, HardStop, RejectBurst, is_benign
from engine.strategies.dislocation import DislocationStrategy
from fsm import order as ofsm
from fsm import position as pfsm

log = logging.getLogger("engine.trading")

GATES = ("hard_stop", "killed", "not_ready", "clock_skew", "no_mark", "notional_market", "notional_total",
         "max_positions", "flatten_in_progress", "already_positioned", "pending_order",
         "action_budget", "rounding", "equity_unknown")

READY_FLAGS = ("market_data", "user_channels", "reconciled")
BREAKER_TICK_MS = 100.0  # marks, unrealised P&L and paper equity go to the breakers this often
KEEP_TERMINAL_ORDERS = 2000  # recent terminal orders kept to recognise late venue messages
KEEP_TRADES = 1000  # closed trades kept in TradingCore.trades (the most recent; see bounded.py)
ZERO_USD = 0.005  # an account value below half a cent is "zero" (the venue's empty state, P23)
SUSPECT_LOG_INTERVAL_MS = 60_000.0  # episode-start WARNING lines at most this often
RECHECK_MS = 1000.0  # an unexplained market is re-checked this often (a match clears it)


class _Created:
    """Stands in ``TradingCore.out`` for an order's ``created`` journal record: built by
    :meth:`TradingCore.drain`, i.e. after the shell sent the order (the record's content is
    fixed at creation: :meth:`Order.created_record`)."""

    __slots__ = ("order", "edge_bps", "oracle_px")

    def __init__(self, order: Order, edge_bps: object = None, oracle_px: object = None) -> None:
        self.order = order
        self.edge_bps = edge_bps
        self.oracle_px = oracle_px

    def build(self) -> Record:
        o = self.order
        rec: dict[str, Any] = {"event": "created", **o.created_record()}
        if o.purpose == ENTRY:
            rec["entry_edge_bps"] = self.edge_bps
            rec["entry_oracle_px"] = self.oracle_px
        rec["ts_ms"] = o.created_ms
        return Record("orders", o.created_ms, rec)


class TradingCore:
    """Observe core + order management + positions + exits + risk.

    The entry gates read, in O(1): ``orders.unknown_count`` / ``pending_total`` /
    ``pending_for`` (kept by the :class:`OrderBook`), ``_exposed`` (markets with exposure) and
    ``_active`` (markets with exposure or a live entry: the ``max_positions`` count). The two
    sets are updated by :meth:`_touch` wherever this class changes a position's state or
    exposure, and rebuilt by :meth:`resync` (on reconciliation and whenever a READY flag is set,
    so a journal restore, which changes positions directly, is always followed by one).
    """

    def __init__(self, strategy: DislocationStrategy, cfg: EngineConfig, *,
                 rules: Sequence[OrderRounding], cloids: CloidFactory | None = None) -> None:
        if len(rules) != len(strategy.markets):
            raise ValueError(f"{len(rules)} rounding rules for {len(strategy.markets)} markets")
        # the strategy plug-in whose intents (signals) this core takes; it also holds the
        # market state (books, oracle, marks, halts) every exit and mark reads
        self.strategy = strategy
        # each market's instrument rule: every price and size is rounded through it
        self.rules: tuple[OrderRounding, ...] = tuple(rules)
        self.cfg = cfg
        self.tcfg = cfg.trading
        self.xcfg = cfg.exits
        self.mode = cfg.mode
        self.orders = OrderBook()
        coins = [m.coin for m in strategy.markets]
        self.book = PositionBook(coins)
        self.cloids = cloids or CloidFactory()
        self.hard_stop = HardStop()
        self.rejects = RejectBurst(self.tcfg.reject_burst_limit, self.tcfg.reject_burst_window_ms)
        self.budget = ActionBudget(self.tcfg.action_budget, self.tcfg.action_budget_interval_ms)
        self.killed = False
        self.ready: dict[str, bool] = dict.fromkeys(READY_FLAGS, False)
        self.out: list[Intent | _Created] = []
        # PlaceOrder intents of ``out`` not yet taken by take_orders()/drain()
        self.new_orders: list[PlaceOrder] = []
        self._taken: set[int] = set()  # ids of PlaceOrders in ``out`` already taken
        self._exposed: set[int] = set()
        self._active: set[int] = set()
        # markets with exposure or a position state other than FLAT: the ones the exit checks
        # (per frame and at housekeeping) look at; kept by _touch like the two above
        self._watch: set[int] = set()
        self.skips: dict[str, int] = dict.fromkeys(GATES, 0)
        self.signals_seen = 0
        self.entries_sent = 0
        self.flattens_sent = 0
        # the last KEEP_TRADES closed trades (``trades.total``: all of this run) and the sum
        # of their net P&L: bounded however long the process runs
        self.trades: RecentList[dict[str, Any]] = RecentList(KEEP_TRADES)
        self.trades_net_pnl = 0.0
        self.on_signal_hook: Callable[[Signal], None] | None = None
        # Circuit breakers. Paper: equity = paper_equity + P&L. Trade: the account's usable
        # equity (main-dex + dex accountValue, see on_account_values); until the first one
        # arrives there is no basis ("unknown": no new entries) unless [breakers] equity_usd
        # is configured; the first real value rebases the breakers (unless restored from this
        # mode and account: then the journaled peak is kept).
        fallback = cfg.breakers.equity_usd
        self.breakers = CircuitBreakers(
            cfg.breakers, fallback if cfg.mode == "trade" and fallback > 0
            else cfg.breakers.paper_equity)
        self.equity_known = cfg.mode != "trade"
        self.equity_source = "paper" if cfg.mode != "trade" else "unknown"  # venue | config
        self.breakers_restored = False  # set by the journal restore (same mode and account)
        self._last_main_value: float | None = None  # last main-dex accountValue used
        self._suspect_reads = 0  # episodes of all-zero account answers held back (P23)
        self._suspect_since: float | None = None  # the current episode's first answer
        self._suspect_n = 0  # answers in the current episode
        self._suspect_flat_since: float | None = None  # ... since the account holds nothing
        self._suspect_flat_n = 0
        self._suspect_logged_ms: float | None = None
        self._suspect_unexplained = False  # the flat part of the episode: fills disagree
        self._suspect_unexplained_logged = False
        # (venue equity, realised net P&L then) at the last plausible account answer
        self._equity_ref: tuple[float, float] | None = None
        # repeating alert conditions raised once per state change: (code, key) -> repeats
        self._alert_states: dict[tuple[str, str], int] = {}
        self._alert_counts: dict[tuple[str, str], int] = {}  # (code, key) -> times raised
        self._next_breaker_tick = 0.0
        # _equity_parts: the realised sum and the positions with size as of the book's
        # ``changes`` count (recomputed after a fill)
        self._equity_changes = -1
        self._equity_realised = 0.0
        self._equity_sized: list[Position] = []
        # the tick's market-move prices (every market with a mark, not halted), given to the
        # breakers as changes: on_ctx, _halt_changed and resync tell it what may have changed
        markets = strategy.markets

        def tick_entry(i: int) -> tuple[str, float | None]:
            m = markets[i]
            return m.coin, (m.mark_px if m.halted is None else None)

        self._price_ticks = PriceTicks(len(markets), tick_entry)
        # local minus venue clock (trade mode, from reconciliation): entries stop while off by
        # more than [trading] max_clock_skew_ms
        self.clock_skewed = False
        self.clock_offset_ms: float | None = None  # best estimate (midpoint of the bounds)
        self.clock_skew_least_ms: float | None = None  # the skew is at least this
        # Reconciliation (docs/state-machines.md "Reconciliation"): markets whose venue
        # position or open orders the book cannot explain (coin -> why); no entry goes out
        # while any is listed. A mismatch is adopted only once seen mismatch_confirmations
        # times over at least mismatch_confirm_wait_s (idx -> (venue size, first seen ms,
        # our size then)); an answer that a position of ours closed, with no closing
        # fill seen, needs the longer unfilled_close_* window (idx -> when userFills was
        # last asked for that market: the second source).
        self.unexplained: dict[str, str] = {}
        self._mismatch_seen: dict[int, tuple[float, float, float]] = {}
        self._fills_asked: dict[int, float] = {}
        self._reconcile_due_ms: float | None = None
        # Disconnects seen: a reconciliation snapshot taken across one is stale (the shell
        # compares this before and after its query).
        self.link_epoch = 0
        # Flattens wanted while the connection was down, or that never reached the venue
        # (idx -> reason): retried once it is back, without counting as failed flattens.
        self.flatten_deferred: dict[int, str] = {}
        self.resync()

    # ------------------------------------------------------------------ helpers
    def drain(self) -> list[Intent]:
        """Take every pending intent (``created`` records are built now; orders already
        taken by :meth:`take_orders` are not returned again)."""
        out = self.out
        self.out = []
        self.new_orders = []
        taken = self._taken
        if taken:
            self._taken = set()
            return [it.build() if type(it) is _Created else it  # type: ignore[misc]
                    for it in out if id(it) not in taken]
        return [it.build() if type(it) is _Created else it for it in out]  # type: ignore[misc]

    def take_orders(self) -> list[PlaceOrder]:
        """Take only the new :class:`PlaceOrder` intents (O(1)), leaving everything else
        (records, alerts, …) in order for the next :meth:`drain`: the shell sends orders
        first."""
        orders = self.new_orders
        if orders:
            self.new_orders = []
            self._taken.update(id(it) for it in orders)
        return orders

    def _place(self, order: Order) -> None:
        it = PlaceOrder(order)
        self.out.append(it)
        self.new_orders.append(it)

    def _touch(self, p: Position) -> None:
        """Keep ``_exposed`` / ``_active`` right for ``p`` after its state or exposure changed."""
        i = p.idx
        if p.has_exposure:
            self._exposed.add(i)
            self._active.add(i)
            self._watch.add(i)
        else:
            self._exposed.discard(i)
            if pfsm.entry_live(p.state):
                self._active.add(i)
            else:
                self._active.discard(i)
            if p.state != pfsm.FLAT:
                self._watch.add(i)
            else:
                self._watch.discard(i)

    def resync(self) -> None:
        """Rebuild ``_exposed`` / ``_active`` from the positions (after direct changes, e.g. a
        journal restore; the order book keeps its own index through ``OrderBook.add``)."""
        self._exposed.clear()
        self._active.clear()
        self._watch.clear()
        # (a restore may have halted markets): the next tick looks at every market
        self._price_ticks.all_changed()
        for p in self.book.positions:
            self._touch(p)

    def _record(self, kind: str, now_ms: float, rec: dict[str, Any]) -> None:
        rec["ts_ms"] = now_ms
        self.out.append(Record(kind, now_ms, rec))

    def _alert(self, level: str, code: str, message: str) -> None:
        self.out.append(Alert(level, code, message))

    def _alert_state(self, level: str, code: str, key: str, message: str) -> None:
        """A condition that repeats while it holds (every housekeeping tick, every
        reconciliation): alerted once when it starts, counted while it lasts, reported with the
        count by :meth:`_alert_clear` when it ends (issue 9 item 7: no alert storms)."""
        k = (code, key)
        repeats = self._alert_states.get(k)
        if repeats is not None:
            self._alert_states[k] = repeats + 1
            return
        self._alert_states[k] = 0
        n = self._alert_counts[k] = self._alert_counts.get(k, 0) + 1
        self._alert(level, code, message if n == 1 else f"{message} (occurrence {n})")

    def _alert_clear(self, code: str, key: str, message: str) -> None:
        """End a condition raised by :meth:`_alert_state` (no-op when it is not raised)."""
        repeats = self._alert_states.pop((code, key), None)
        if repeats is not None:
            self._alert("info", f"{code}_cleared",
                        f"{message} (condition seen {repeats + 1} time(s) while it lasted)")

    def alert_states(self) -> dict[str, int]:
        """Raised repeating conditions (``code`` or ``code:key``) -> occurrences so far."""
        return {(f"{c}:{k}" if k else c): n + 1 for (c, k), n in self._alert_states.items()}

    # ------------------------------------------------------------ circuit breakers
    def _trips(self, trips: list[Trip], now_ms: float, why: str) -> None:
        """Act on breaker trips: alert, journal the breaker state, halt a market or latch."""
        if not trips:
            return
        for t in trips:
            self._alert("critical", "circuit_breaker", f"circuit breaker {t.breaker}: {t.detail}")
            if t.market is not None and t.market in self.strategy.by_coin:
                self.strategy.halt(t.market, "circuit_breaker", now_ms)
                self._halt_changed(t.market)
        self._breaker_record(now_ms, why)
        for t in trips:
            if t.latches_hard_stop:
                self._latch(t.breaker, now_ms, t.detail)

    def _breaker_record(self, now_ms: float, why: str) -> None:
        """The breakers' whole state, journaled when it changes meaningfully (restored at
        start: tripped breakers stay tripped across restarts, today's losses keep counting)."""
        self._record("positions", now_ms, {"event": "breakers", "why": why,
                                           "state": self.breakers.to_state(),
                                           "mode": self.mode, "account": self.account_key(),
                                           "equity_source": self.equity_source})

    def account_key(self) -> str:
        """Whose equity the breakers measure (a journaled state from another is rebased)."""
        return self.cfg.account.address.lower() if self.mode == "trade" else ""

    def _equity_parts(self) -> tuple[float, float]:
        """(realised net P&L of the run, unrealised P&L at the marks). Unrealised counts only
        exposure confirmed by fills, at its fills' average price: a venue-reported fill whose
        ``userFills`` have not arrived has no entry price yet (issue 9 item 4)."""
        book = self.book
        if book.changes != self._equity_changes:
            # a fill was applied since the last call (positions change only then: the
            # book's counter): the realised sum and the positions with size, in market order
            realised = 0.0
            sized: list[Position] = []
            for p in book.positions:
                realised += p.realized_pnl - p.fees
                if p.size:
                    sized.append(p)
            self._equity_realised = realised
            self._equity_sized = sized
            self._equity_changes = book.changes
        unrealised = 0.0
        markets = self.strategy.markets
        for p in self._equity_sized:  # (the terms of the scan of every position, in order)
            mark = markets[p.idx].mark_px
            if mark is not None:
                unrealised += p.unrealized(mark)
        return self._equity_realised, unrealised

    def _breakers_tick(self, now_ms: float) -> None:
        """Housekeeping (every ~100 ms): marks for the market-move breaker, unrealised P&L and
        (paper) equity. Off the per-frame path: a 1-minute breaker needs no per-frame work."""
        cb = self.breakers
        trips: list[Trip] = self._price_ticks.tick(cb, now_ms)
        realised, unrealised = self._equity_parts()
        # on_unrealized, then on_equity (paper; trade on the configured fallback): O(1) when
        # neither changed since the last tick (CircuitBreakers.on_marks)
        if self.mode != "trade":
            equity: float | None = self.cfg.breakers.paper_equity + realised + unrealised
        elif self.equity_source == "config":
            equity = self.cfg.breakers.equity_usd + realised + unrealised
        else:
            equity = None
        trips += cb.on_marks(unrealised, equity, now_ms)
        if trips:
            self._trips(trips, now_ms, "tick")

    def _halt_changed(self, coin: str) -> None:
        """A market was halted or resumed: the next tick gives the breakers its price again."""
        m = self.strategy.by_coin.get(coin)
        if m is not None:
            self._price_ticks.changed(m.index)

    def on_account_values(self, main_usd: float | None, dex_usd: float | None,
                          now_ms: float) -> None:
        """Trade mode, after each reconciliation: ``marginSummary.accountValue`` of the main
        dex (``clearinghouseState`` without ``dex``) and of the trading dex (with it), ``None``
        when unreadable. With DEX abstraction the dex holds only the isolated margin in use ($0
        when flat) and the free collateral stays on the main dex, so the usable equity is their
        sum (protocol doc §9 notes, P22).

        An answer that looks like the venue's empty state (P23) is *suspect*: the main dex at
        ~0, the dex at ~0 while fills say we hold a position, or a total ≤ 0 once the venue has
        told a real value. A suspect answer is used only once it is confirmed — see
        :meth:`_suspect_confirmed`: such answers, and no other, persisted ``[breakers]
        equity_confirm_s`` over at least ``equity_confirm_reads`` answers *while the account
        holds nothing* (no position, no order in flight, no unexplained market) — and over at
        least ``equity_unexplained_confirm_s`` when the fills do not explain the drop (the last
        plausible venue equity plus the realised P&L of the fills since is not in drawdown:
        the fills are the second source; the venue's empty state can outlast 10 s). While
        something is held it is never used: collateral cannot vanish while the position holds
        margin, and a real loss of the position shows in its fills and the reconciliation
        (which adopts a liquidation and latches). So a stuck main-dex 0 next to an open
        position cannot fake a 95 % drawdown, and a real wipe-out (flat, all zero, persisting)
        is fed to the breakers as equity 0 and trips the drawdown breaker.
        """
        if main_usd is None or dex_usd is None:
            which = "the main dex" if main_usd is None else f"dex {self.cfg.venue.dex!r}"
            self._equity_unknown(now_ms, f"no readable account value for {which}")
            return
        total = main_usd + dex_usd
        if not math.isfinite(total):
            self._equity_unknown(now_ms, f"the venue reports account values main dex "
                                         f"{main_usd!r} + dex {self.cfg.venue.dex!r} {dex_usd!r}")
            return
        if not total > 0 and self.equity_source != "venue":  # no basis, transient or not
            self._equity_unknown(now_ms, f"the venue reports usable equity "
                                         f"{total!r} (main dex {main_usd!r} + dex "
                                         f"{self.cfg.venue.dex!r} {dex_usd!r})")
            return
        suspect = (main_usd <= ZERO_USD or not total > 0
                   or (dex_usd <= ZERO_USD and any(p.size for p in self.book.positions)))
        if not suspect:
            self._suspect_end(now_ms)
            self._equity_ref = (total, self._equity_parts()[0])
        elif not self._suspect_confirmed(main_usd, dex_usd, now_ms):
            return
        self._last_main_value = main_usd
        if total > 0:
            self.on_account_value(total, now_ms)
            return
        # a confirmed total ≤ 0 of an account the venue reported real equity for: a wipe-out
        # (or everything withdrawn). The breakers must see it: equity 0 is a 100 % drawdown.
        log.error("account value main %.2f + dex %.2f USD persisted %.0f s while the account "
                  "holds nothing: the breakers measure a usable equity of %.2f USD",
                  main_usd, dex_usd, (now_ms - (self._suspect_flat_since or now_ms)) / 1000.0,
                  total)
        self._trips(self.breakers.on_equity(total, now_ms, unrealised=self._equity_parts()[1]),
                    now_ms, "equity")

    def _holds_something(self) -> str | None:
        """What the account holds that needs collateral (None: nothing): a position, an order
        in flight (it may fill) or a market whose venue exposure the book cannot explain."""
        for p in self.book.positions:
            if p.size or p.has_exposure:
                return f"a position in {p.coin}"
        if self.orders.live:
            return "an order in flight"
        if self.unexplained:
            return f"unexplained exposure in {', '.join(sorted(self.unexplained))}"
        return None

    def _suspect_confirmed(self, main_usd: float, dex_usd: float, now_ms: float) -> bool:
        """Count one suspect answer (see :meth:`on_account_values`); True once confirmed.

        One WARNING line when an episode starts (rate-limited across episodes: a venue that
        flaps between answers logs once a minute, with the count), and — if the answer
        outlasts the confirmation while something is held — one WARNING line and one
        ``equity_stuck`` alert naming it, cleared (info) by the next plausible answer."""
        bc = self.cfg.breakers
        confirm_ms = bc.equity_confirm_s * 1000.0
        need = bc.equity_confirm_reads
        if self._suspect_since is None:
            self._suspect_since = now_ms
            self._suspect_n = 0
            self._suspect_flat_since = None
            self._suspect_flat_n = 0
            self._suspect_unexplained_logged = False
            self._suspect_reads += 1
            if (self._suspect_logged_ms is None
                    or now_ms - self._suspect_logged_ms >= SUSPECT_LOG_INTERVAL_MS):
                self._suspect_logged_ms = now_ms
                log.warning("account value main %.2f + dex %.2f USD looks like the venue's "
                            "transient empty state (P23): not used unless such answers persist "
                            "%.0f s over %d answers while the account holds nothing "
                            "(episode %d)", main_usd, dex_usd, confirm_ms / 1000.0, need,
                            self._suspect_reads)
        self._suspect_n += 1
        held = self._holds_something()
        if held is not None:
            self._suspect_flat_since = None
            self._suspect_flat_n = 0
            lasted = now_ms - self._suspect_since
            if lasted >= confirm_ms and self._suspect_n >= need \
                    and ("equity_stuck", "") not in self._alert_states:
                msg = (f"the venue's account value looks stuck: main dex {main_usd:.2f} + dex "
                       f"{dex_usd:.2f} USD for {lasted / 1000.0:.0f} s over {self._suspect_n} "
                       f"answers while the account holds {held} (collateral cannot vanish "
                       f"while a position holds margin): not used; the breakers keep "
                       f"{self.breakers.equity:.2f} USD and the daily-loss breaker still "
                       f"measures the fills")
                log.warning("%s", msg)
                self._alert_state("warning", "equity_stuck", "", msg)
            return False
        if self._suspect_flat_since is None:
            self._suspect_flat_since = now_ms
            explained = self._fill_explained_equity()
            if explained is not None and main_usd + dex_usd < explained * (
                    1.0 - bc.drawdown_pct / 100.0):
                self._suspect_unexplained = True
                if not self._suspect_unexplained_logged:  # once per episode
                    self._suspect_unexplained_logged = True
                    log.warning("account value main %.2f + dex %.2f USD while the account holds "
                                "nothing: the fills since the last plausible answer explain "
                                "%.2f USD (no drawdown); believed only if such answers "
                                "persist %.0f s over %d answers (a transfer, or the venue's "
                                "empty state)", main_usd, dex_usd, explained,
                                max(confirm_ms, bc.equity_unexplained_confirm_s * 1000.0)
                                / 1000.0, need)
            else:
                self._suspect_unexplained = False
        self._suspect_flat_n += 1
        if self._suspect_unexplained:
            confirm_ms = max(confirm_ms, bc.equity_unexplained_confirm_s * 1000.0)
        return (now_ms - self._suspect_flat_since >= confirm_ms
                and self._suspect_flat_n >= need)

    def _fill_explained_equity(self) -> float | None:
        """The last plausible venue equity plus the realised net P&L of the fills since
        (flat: no unrealised part), or None before the venue told one."""
        ref = self._equity_ref
        if ref is None:
            return None
        return ref[0] + (self._equity_parts()[0] - ref[1])

    def _suspect_end(self, now_ms: float) -> None:
        """A plausible answer: the suspect episode (if any) is over."""
        if self._suspect_since is None:
            return
        self._alert_clear("equity_stuck", "",
                          f"the venue's account value is plausible again after "
                          f"{(now_ms - self._suspect_since) / 1000.0:.0f} s")
        self._suspect_since = None
        self._suspect_flat_since = None

    def on_account_value(self, equity_usd: float, now_ms: float) -> None:
        """Trade mode: the account's usable equity. A value ≤ 0 (or not finite) is no basis
        for percentages: see :meth:`_equity_unknown`. The first real value rebases the
        breakers unless they were restored from this mode and account."""
        if not (equity_usd > 0 and math.isfinite(equity_usd)):
            self._equity_unknown(now_ms, f"the venue reports usable equity {equity_usd!r}")
            return
        if self.equity_source != "venue":
            was = self.equity_source
            self.equity_source = "venue"
            self.equity_known = True
            if not self.breakers_restored:
                self.breakers.rebase(equity_usd)
                self._breaker_record(now_ms, "rebase")
            log.info("usable equity %.2f USD from the venue is the circuit breakers' basis "
                     "(was: %s; peak %.2f USD)", equity_usd, was, self.breakers.peak)
            self._alert_clear("equity_unknown", "",
                              f"usable equity known: {equity_usd:.2f} USD from the venue")
        self._trips(self.breakers.on_equity(equity_usd, now_ms,
                                            unrealised=self._equity_parts()[1]),
                    now_ms, "equity")

    def _equity_unknown(self, now_ms: float, why: str) -> None:
        """The venue cannot tell the equity: keep the last venue value if there is one, else
        fall back to ``[breakers] equity_usd`` (plus the run's P&L), else refuse new entries
        (gate ``equity_unknown``): never measure against a paper constant."""
        fallback = self.cfg.breakers.equity_usd
        if self.equity_source == "venue":
            what = (f"the breakers keep the last usable equity {self.breakers.equity:.2f} USD "
                    f"until the venue reports it again")
        elif fallback > 0:
            if self.equity_source != "config":
                self.equity_source = "config"
                self.equity_known = True
                self.breakers_restored = False  # a later venue value rebases
                self.breakers.rebase(fallback)
                self._breaker_record(now_ms, "fallback")
            what = (f"daily-loss and drawdown breakers measure against [breakers] equity_usd "
                    f"= {fallback:g} USD plus this run's P&L")
        else:
            what = ("the daily-loss and drawdown breakers have no basis: new entries are "
                    "refused until the venue reports it (or set [breakers] equity_usd)")
        self._alert_state("warning", "equity_unknown", "", f"{why}: {what}")

    def _trade_closed(self, trade: dict[str, Any], now_ms: float) -> None:
        pnl = trade.get("net_pnl")
        if isinstance(pnl, int | float):
            self.trades_net_pnl += pnl
            trips = self.breakers.on_trade_closed(float(pnl), now_ms,
                                                  unrealised=self._equity_parts()[1])
            self._breaker_record(now_ms, "trade")
            self._trips(trips, now_ms, "trade")

    def _latch(self, reason: str, now_ms: float, detail: str) -> None:
        if reason == "reject_burst":
            self.breakers.on_reject_burst(detail, now_ms, count=len(self.rejects.times),
                                          limit=self.tcfg.reject_burst_limit)
        if self.hard_stop.trigger(reason, now_ms, detail):
            self._alert("critical", "hard_stop", f"hard stop latched: {reason}: {detail}")
            self._record("positions", now_ms, {"event": "hard_stop", "reason": reason,
                                               "detail": detail})
            for p in self.book.positions:
                if p.has_exposure:
                    self._maybe_flatten(p, now_ms, "hard_stop")

    def entries_blocked(self) -> str | None:
        """Why no entry may be signed right now — ``"hard_stop"`` or ``"killed"`` — else None.
        O(1): the executor asks it right before it signs queued orders (a latch raised by a
        later frame of the same socket read stops entries queued by an earlier one)."""
        if self.hard_stop.latched:
            return "hard_stop"
        if self.killed:
            return "killed"
        if self.clock_skewed:
            return "clock_skew"
        return None

    def on_clock_sample(self, sent_ms: float, received_ms: float, venue_ms: float,
                        now_ms: float) -> None:
        """The venue reported its clock ``venue_ms`` in an answer to a request sent at local
        ``sent_ms`` and received at ``received_ms``: the venue's clock read that value at some
        instant in between, so local − venue lies in ``[sent − venue, received − venue]``.
        The skew is at least the distance from 0 to that interval; beyond
        ``max_clock_skew_ms`` no new entry goes out (exits and flattens do) until a later
        sample is back within the bound. Alerts once per change."""
        lo, hi = sent_ms - venue_ms, received_ms - venue_ms
        least = 0.0 if lo <= 0.0 <= hi else min(abs(lo), abs(hi))
        self.clock_offset_ms = (lo + hi) / 2
        self.clock_skew_least_ms = least
        bound = self.tcfg.max_clock_skew_ms
        skewed = least > bound
        if skewed == self.clock_skewed:
            return
        self.clock_skewed = skewed
        side = "ahead of" if lo + hi >= 0 else "behind"
        what = (f"local clock {side} the venue's by ~{abs(lo + hi) / 2:.0f} ms (at least "
                f"{least:.0f} ms; bound [trading] max_clock_skew_ms = {bound:g})")
        if skewed:
            self._alert("error", "clock_skew", f"{what}: no new entries until it is back "
                                               f"within the bound; fix time sync (NTP)")
        else:
            self._alert("warning", "clock_skew_cleared", f"{what}: entries allowed again")
        self._record("positions", now_ms, {"event": "clock_skew", "skewed": skewed,
                                           "offset_ms": self.clock_offset_ms,
                                           "least_ms": least, "bound_ms": bound})

    def is_ready(self) -> bool:
        return all(self.ready.values()) and not self.orders.unknown_count

    def set_ready(self, flag: str, value: bool) -> None:
        if flag not in self.ready:
            raise ValueError(f"unknown READY flag {flag!r}")
        self.ready[flag] = value
        if value:
            self.resync()

    # ------------------------------------------------------------- market data
    def on_bbo(self, idx: int, time_ms: int, bid_px: float | None, bid_sz: float | None,
               ask_px: float | None, ask_sz: float | None, now_ms: float) -> None:
        sig = self.strategy.on_book_top(idx, time_ms, bid_px, bid_sz, ask_px, ask_sz, now_ms)
        if sig is not None or idx in self._watch or not self.ready["market_data"]:
            self._after_market(idx, sig, now_ms)  # (else it has nothing to do)

    def on_ctx(self, idx: int, oracle_px: float, mark_px: float | None, now_ms: float) -> None:
        m = self.strategy.markets[idx]
        before = m.mark_px
        sig = self.strategy.on_oracle(idx, oracle_px, mark_px, now_ms)
        if m.mark_px != before:
            self._price_ticks.changed(idx)
        self._after_market(idx, sig, now_ms)

    def _after_market(self, idx: int, sig: Signal | None, now_ms: float) -> None:
        if idx in self._watch:  # exposure or not FLAT (see _touch)
            self._check_exit(self.book.positions[idx], now_ms)
        if sig is not None:
            self.on_signal(sig, now_ms)
        if not self.ready["market_data"] and self.strategy.markets_live() == len(self.strategy.markets):
            self.ready["market_data"] = True

    def on_timer(self, now_ms: float) -> None:
        for sig in self.strategy.on_timer(now_ms):
            self.on_signal(sig, now_ms)
        self.on_housekeeping(now_ms)

    def on_housekeeping(self, now_ms: float) -> None:
        """Backup exit checks, UNKNOWN queries and bounds, pending timeouts, flatten retries."""
        if len(self.orders.by_cloid) - len(self.orders.live) > 2 * KEEP_TERMINAL_ORDERS:
            self.orders.prune(KEEP_TERMINAL_ORDERS)
            self.book.forget_cloids(self.orders.by_cloid)  # their fill sums: bounded too
        if self._watch:
            # in market order, as a scan of every position would visit them; an exit check
            # only changes the position it checks, so the snapshot misses none
            positions = self.book.positions
            for i in sorted(self._watch):
                p = positions[i]
                if p.has_exposure or p.state != pfsm.FLAT:
                    self._check_exit(p, now_ms)
        if self.flatten_deferred and not self.link_down():
            for idx, reason in list(self.flatten_deferred.items()):
                del self.flatten_deferred[idx]
                p = self.book.positions[idx]
                if p.has_exposure:
                    self._maybe_flatten(p, now_ms, reason)
        due = self._reconcile_due_ms
        if due is not None and now_ms >= due:
            self._reconcile_due_ms = None
            self.out.append(RequestReconcile("confirm: " + "; ".join(
                f"{c} {w}" for c, w in self.unexplained.items())))
        if now_ms >= self._next_breaker_tick:
            self._next_breaker_tick = now_ms + BREAKER_TICK_MS
            self._breakers_tick(now_ms)
        tc = self.tcfg
        for o in self.orders.active() if self.orders.live else ():  # (a snapshot of them)
            # Our orders are IOC: anything still live this long after sending (no answer,
            # or an acceptance with no outcome since: P19) is resolved by cloid.
            if o.state in (ofsm.SENT, ofsm.RESTING, ofsm.PARTIAL) and o.sent_ms is not None \
                    and now_ms - o.sent_ms > tc.pending_timeout_ms:
                self._order_event(o, ofsm.LOSE_CONTACT, now_ms, "pending timeout")
            if o.state == ofsm.UNKNOWN:
                since = o.unknown_since_ms if o.unknown_since_ms is not None else now_ms
                if now_ms - since > tc.unknown_timeout_ms:
                    self._latch("unresolved_unknown", now_ms,
                                f"order {o.cloid} on {o.coin} unresolved for "
                                f"{(now_ms - since) / 1000:.0f} s")
                if o.next_query_ms is None or o.next_query_ms <= now_ms:
                    o.next_query_ms = now_ms + tc.unknown_query_interval_ms
                    self.out.append(QueryOrder(o.coin, o.cloid))

    def on_disconnect(self, now_ms: float) -> None:
        """Pending posts are lost with the connection: their orders become UNKNOWN. Trade
        mode: READY waits for a reconciliation taken after the reconnect."""
        self.strategy.on_disconnect(now_ms)
        self.ready["market_data"] = False
        self.link_epoch += 1
        if self.mode == "trade":
            self.ready["user_channels"] = False
            self.ready["reconciled"] = False
        # (paper: no user channels to re-acknowledge and an in-process venue: READY is back
        # with the market data)
        for o in list(self.orders.active()):
            if o.state == ofsm.SENT:
                self._order_event(o, ofsm.LOSE_CONTACT, now_ms, "disconnected")

    # ------------------------------------------------------------------ entries
    def on_signal(self, sig: Signal, now_ms: float) -> None:
        """Gate and (maybe) enter; the signal record carries the executor's verdict."""
        self.signals_seen += 1
        reason = self._entry(sig, now_ms)
        # the record (sig.fields) is built after the orders left; the verdict is its last field
        sig.executor_verdict = reason or "order_created"
        if reason is not None:
            self.skips[reason] += 1
        if self.on_signal_hook is not None:
            self.on_signal_hook(sig)

    def _entry(self, sig: Signal, now_ms: float) -> str | None:
        m = self.strategy.by_coin[sig.market_key]
        p = self.book.positions[m.index]
        tc = self.tcfg
        if self.hard_stop.latched:
            return "hard_stop"
        if self.killed:
            return "killed"
        if not self.is_ready() or self.unexplained:
            return "not_ready"
        if self.clock_skewed:
            return "clock_skew"
        if self.equity_source == "unknown":
            return "equity_unknown"  # trade mode: no basis for the loss breakers yet
        is_buy = sig.side == "buy"
        rule = self.rules[p.idx]
        px_wire = rule.ioc_limit_price(sig.best_px, is_buy, tc.entry_slippage_bps / 1e4)
        if px_wire is None:
            return "rounding"
        px = float(px_wire)
        mark = m.mark_px
        if mark is None:
            return "no_mark"
        size = float(sig.suggested_size)
        used_market = abs(p.effective) * mark + self.orders.pending_for(p.idx)
        room = tc.max_notional_per_market - used_market
        if size * px > room:
            size = room / px
        if size * px < rule.min_notional:
            return "notional_market"
        total = self._total_notional()
        if total is None:
            return "no_mark"
        if total + size * px > tc.max_total_notional:
            size = (tc.max_total_notional - total) / px
            if size * px < rule.min_notional:
                return "notional_total"
        if len(self._active) >= tc.max_concurrent_positions:
            return "max_positions"
        state = p.state
        if state in pfsm.FLATTEN_LIVE_STATES:
            return "flatten_in_progress"
        if p.has_exposure:
            return "already_positioned"
        if state not in pfsm.ENTRY_ALLOWED_STATES:
            return "pending_order"
        if not self.budget.available(now_ms):
            return "action_budget"
        prepared = rule.ioc_wire(is_buy, px_wire, size)
        if type(prepared) is not tuple:
            return "rounding"
        self.budget.consume(now_ms)
        order = Order(self.cloids.next(), m.coin, m.index, m.spec.asset_id, is_buy,
                      prepared[0], prepared[1], False, ENTRY, now_ms,
                      signal_id=sig.signal_id, decision_px=sig.best_px,
                      expires_after_ms=int(now_ms + tc.expires_after_ms)
                      if tc.expires_after_ms else None)
        self.orders.add(order)
        p.state = pfsm.next_position_state(state, pfsm.SUBMIT_ENTRY, False)  # no exposure
        self._touch(p)
        p.entry_cloid = order.cloid
        p.entry_signal_id = order.signal_id
        p.entry_decision_px = sig.best_px
        p.entry_edge_bps = sig.raw_edge_bps
        self.entries_sent += 1
        self._place(order)
        self.out.append(_Created(order, sig.raw_edge_bps, sig.oracle_px))
        return None

    def _market_notional(self, p: Position, mark: float) -> float:
        """|position| × mark + pending entry notional of the market (the gate inlines it)."""
        return abs(p.effective) * mark + self.orders.pending_for(p.idx)

    def _total_notional(self) -> float | None:
        """Exposure at mark over every market plus the pending entry notional (None: a market
        with exposure has no mark)."""
        total = 0.0
        positions = self.book.positions
        markets = self.strategy.markets
        for i in self._exposed:
            mark = markets[i].mark_px
            if mark is None:
                return None
            total += abs(positions[i].effective) * mark
        return total + self.orders.pending_total

    # -------------------------------------------------------------------- exits
    def _check_exit(self, p: Position, now_ms: float) -> None:
        if not p.has_exposure:
            if self._alert_states:  # a flatten condition ends with the exposure
                self._alert_clear("flatten_no_price", p.coin, f"{p.coin}: flat")
                self._alert_clear("flatten_rounding", p.coin, f"{p.coin}: flat")
            return
        m = self.strategy.markets[p.idx]
        if self.hard_stop.latched:
            self._maybe_flatten(p, now_ms, "hard_stop")
            return
        if self.killed:
            self._maybe_flatten(p, now_ms, "kill")
            return
        if p.exit_state is None:
            return
        reason = evaluate_exit(p.exit_state, m, now_ms, self.xcfg)
        if reason is not None:
            self._maybe_flatten(p, now_ms, reason)

    def link_down(self) -> bool:
        """Trade mode without a live venue connection (user channels not acknowledged): an
        order now could not leave the process."""
        return self.mode == "trade" and not self.ready["user_channels"]

    def _maybe_flatten(self, p: Position, now_ms: float, reason: str) -> None:
        if not pfsm.can_submit_flatten(p.state) or now_ms < p.next_flatten_ms:
            return
        if p.dust_size is not None and abs(p.effective - p.dust_size) <= EPS:
            return  # the venue refuses orders this small; retrying cannot help
        if self.link_down():
            # it could not be sent: flatten as soon as the connection is back (housekeeping)
            self.flatten_deferred.setdefault(p.idx, reason)
            return
        m = self.strategy.markets[p.idx]
        # Positions are sums of lot multiples: round to the lot so float residue
        # (0.49 - 0.16 - 0.32 = 0.00999...) neither floors to zero nor leaves dust.
        size = round(abs(p.effective), m.spec.sz_decimals)
        if size <= EPS:
            return
        closing_long = p.effective > 0
        is_buy = not closing_long
        ref = m.bid_px if closing_long else m.ask_px
        if ref is None:
            ref = m.mark_px
        if ref is None:  # retried every housekeeping tick: alerted once until a price comes
            self._alert_state("error", "flatten_no_price", p.coin,
                              f"{p.coin}: no price to flatten at (retrying on every tick)")
            return
        self._alert_clear("flatten_no_price", p.coin, f"{p.coin}: a price to flatten at")
        slip = self.xcfg.flatten_slippage_bps / 1e4
        rule = self.rules[p.idx]
        px_wire = rule.ioc_limit_price(ref, is_buy, slip)
        sz_wire = rule.lot_size_wire(size)
        if px_wire is None or sz_wire is None:
            self._alert_state("error", "flatten_rounding", p.coin,
                              f"{p.coin}: cannot round flatten of {size} at {ref}")
            return
        if not is_buy:
            # the $10 minimum is judged at the reference price, not at the slipped limit: a
            # position worth ≥ $10 at the bid gets a limit (≤ bid) that keeps it ≥ $10
            px_wire = rule.min_notional_sell_px(px_wire, sz_wire, ref)
        self._alert_clear("flatten_rounding", p.coin, f"{p.coin}: flatten rounds again")
        order = Order(self.cloids.next(), p.coin, p.idx, m.spec.asset_id, is_buy, px_wire,
                      sz_wire, True, FLATTEN, now_ms, reason=reason,
                      decision_px=exit_reference_px(p.exit_state, m) if p.exit_state else ref)
        self.orders.add(order)
        p.state = pfsm.next_position_state(p.state, pfsm.SUBMIT_FLATTEN, p.has_exposure)
        self._touch(p)
        p.flatten_cloid = order.cloid
        if p.exit_reason is None:
            p.exit_reason = reason
        self.flattens_sent += 1
        self._place(order)
        self.out.append(_Created(order))

    def _flatten_ref_px(self, p: Position, default: float) -> float:
        """The reference price a flatten of ``p`` is judged at (dust, the $10 minimum): the
        touch it would trade against (bid to close a long, ask to close a short), else the
        mark, else ``default``."""
        m = self.strategy.markets[p.idx]
        ref = m.bid_px if p.effective > 0 else m.ask_px
        if ref is None:
            ref = m.mark_px
        return default if ref is None else ref

    # ------------------------------------------------------- order lifecycle
    def on_sent(self, cloid: str, now_ms: float) -> None:
        """The shell wrote the order's post frame to the socket."""
        o = self.orders.get(cloid)
        if o is None:
            return
        o.sent_ms = now_ms
        self._order_event(o, ofsm.TRANSMIT, now_ms, "sent")

    def on_send_failed(self, cloid: str, now_ms: float, why: str, *,
                       link_down: bool = False) -> None:
        """The order never reached the socket (disconnected, signing failure): abandon it.

        ``link_down``: the shell saw no live connection when the send failed. A flatten not
        sent for that reason (or while :meth:`link_down`) is no failed flatten: it is retried
        once the connection is back and does not count toward ``max_flatten_failures``."""
        o = self.orders.get(cloid)
        if o is None:
            return
        if o.state == ofsm.NEW:
            self._order_event(o, ofsm.ABANDON, now_ms, why,
                              reached_venue=not (link_down or self.link_down()))
        else:
            self._order_event(o, ofsm.LOSE_CONTACT, now_ms, why)

    def find_order(self, cloid: str | None, venue_order_id: int | None = None) -> Order | None:
        """Our order with ``cloid``, else the one the venue knows as ``venue_order_id``."""
        o = self.orders.get(cloid)
        if o is None and venue_order_id is not None:
            o = self.orders.by_oid.get(venue_order_id)
        return o

    def on_order_report(self, o: Order, r: OrderReport, now_ms: float) -> None:
        """What the venue said about ``o``, in neutral words (a venue adapter builds ``r``:
        e.g. ``engine/venues/hyperliquid/order_events.py``).

        Applied in this order: the venue's order id, a warning for a status the adapter did
        not recognise, the venue's cumulative filled size (merged with ``max``), the refusal's
        text and reason, then the order event. ``event`` None says nothing about the state
        (still unknown: the next query asks again). ``resolve_not_found`` in trade mode before
        :meth:`unknown_oid_deadline` keeps the order UNKNOWN (the venue may not know it
        *yet*); after it, the order never reached the venue (a flatten is retried without
        counting as failed)."""
        if r.venue_order_id is not None:
            self.orders.set_oid(o, r.venue_order_id)
        if r.unrecognized:
            self._alert("warning", "unknown_status", f"order {o.cloid}: unknown status {r.why!r}")
        if r.filled_qty is not None:
            self._venue_filled(o, r.filled_qty, r.avg_px, now_ms)
        if r.message is not None:
            o.message = r.message
            o.reject_reason = r.reason
        event = r.event
        if event is None:
            return
        if event == ofsm.RESOLVE_NOT_FOUND:
            if self.mode == "trade" and now_ms < self.unknown_oid_deadline(o):
                # the venue does not know it *yet*: before its expiry (plus a grace for
                # clocks and queues) it may still execute; it stays UNKNOWN (entries wait).
                # (The paper venue's answer is final: it never answers for orders in flight.)
                return
            self._order_event(o, event, now_ms, r.why, reached_venue=False)
            return
        self._order_event(o, event, now_ms, r.why)

    def unknown_oid_deadline(self, o: Order) -> float:
        """From when a "not found" answer proves ``o`` dead: its expiry (or,
        without one, when it was sent) plus ``[trading] unknown_oid_grace_ms``."""
        if o.expires_after_ms is not None:
            base = float(o.expires_after_ms)
        else:
            base = o.sent_ms if o.sent_ms is not None else o.created_ms
        return base + self.tcfg.unknown_oid_grace_ms

    def _venue_filled(self, o: Order, filled: float | None, avg_px: float | None,
                      now_ms: float) -> None:
        if filled is None or filled <= o.venue_filled:
            return
        self.orders.set_venue_filled(o, filled)
        if avg_px is not None:
            o.avg_px = avg_px
        # Journal the growth even when the order's state does not change (PARTIAL → PARTIAL),
        # so a restart restores the unconfirmed exposure.
        self._record("orders", now_ms, {"event": "venue_filled", "why": "venue", **o.record()})
        p = self.book.positions[o.idx]
        self.book.set_venue_filled(p, o.cloid, o.is_buy, filled)
        self._exposure_changed(p, now_ms, o.avg_px or o.px, o)

    def _order_event(self, o: Order, event: str, now_ms: float, why: str, *,
                     reached_venue: bool = True) -> None:
        prev, became_terminal = self.orders.apply(o, event, now_ms)
        if o.state == prev and not became_terminal:
            return
        self._record("orders", now_ms, {"event": event, "why": why, **o.record()})
        if not became_terminal:
            return
        p = self.book.positions[o.idx]
        failures_before = p.flatten_failures
        if o.state == ofsm.REJECTED and o.message and not is_benign(o.reject_reason):
            if self.rejects.record(now_ms):
                self._latch("reject_burst", now_ms,
                            f"more than {self.tcfg.reject_burst_limit} rejects within "
                            f"{self.tcfg.reject_burst_window_ms / 1000:.0f} s; last: {o.message}")
        if o.purpose == ENTRY:
            p.state = pfsm.next_position_state(p.state, pfsm.ENTRY_DONE, p.has_exposure)
            if p.entry_cloid == o.cloid:
                p.entry_cloid = None
            if not p.has_exposure:
                p.entry_signal_id = None
                p.entry_decision_px = None
                p.entry_edge_bps = None
        else:
            p.state = pfsm.next_position_state(p.state, pfsm.FLATTEN_DONE, p.has_exposure)
            if p.flatten_cloid == o.cloid:
                p.flatten_cloid = None
            if (p.has_exposure and o.message
                    and o.reject_reason is RejectReason.BELOW_MIN_NOTIONAL
                    and abs(p.effective) * self._flatten_ref_px(p, o.px)
                    < self.rules[p.idx].min_notional):
                # Dust: the venue's $10 minimum refuses a reduce-only order this small.
                p.dust_size = p.effective
                self._alert("error", "dust_position",
                            f"{p.coin}: {p.effective:+g} left is below the venue's minimum "
                            f"order value and cannot be flattened by a reduce-only order; "
                            f"close it by hand (no further automatic attempts)")
            elif p.has_exposure and not reached_venue:
                # not sent while the connection was down, or unknown to the venue: nothing
                # was refused or left unfilled; retry once connected, no failure counted
                self.flatten_deferred.setdefault(p.idx, o.reason or "retry")
            elif p.has_exposure:
                p.flatten_failures += 1
                # exponential backoff: a venue refusing every flatten must not see a storm
                delay = self.tcfg.flatten_retry_ms * 2 ** min(p.flatten_failures - 1, 6)
                p.next_flatten_ms = now_ms + min(delay, 30_000.0)
                self._alert("warning", "flatten_incomplete",
                            f"{p.coin}: flatten {o.cloid} ended {o.state} with "
                            f"{p.effective:+g} left ({p.flatten_failures} so far)")
                if p.flatten_failures >= self.tcfg.max_flatten_failures:
                    self._latch("flatten_failures", now_ms,
                                f"{p.coin}: {p.flatten_failures} flattens failed")
            else:
                p.flatten_failures = 0
        self._touch(p)
        rec: dict[str, Any] = {"event": f"{o.purpose}_done", "market_key": p.coin,
                               "state": p.state, "size": p.effective}
        if o.purpose == FLATTEN:
            # a restart counts only these (not a flatten that never reached the venue, dust)
            rec["failure"] = p.flatten_failures > failures_before
        self._record("positions", now_ms, rec)

    # -------------------------------------------------------------------- fills
    def on_fill(self, tid: str, cloid: str | None, coin: str, is_buy: bool, px: float, sz: float,
                fee: float, time_ms: float, now_ms: float, *, snapshot: bool = False) -> None:
        """A fill from userFills (streaming) or the paper venue; deduplicated by ``tid``."""
        p = self.book.by_coin.get(coin)
        if p is None:
            return
        if snapshot and (cloid is None or cloid not in self.orders.by_cloid):
            # History from earlier sessions never rebuilds positions (P17); remember the tids.
            # Fills of orders this run knows (e.g. restored UNKNOWN ones) are applied: tid
            # dedup makes that safe.
            self.book.seen_tids.add(tid)
            return
        f = Fill(tid, cloid, coin, is_buy, px, sz, fee, time_ms)
        applied, trade = self.book.apply_fill(p, f)
        if not applied:
            return
        self._record("fills", now_ms, f.record())
        o = self.orders.get(cloid)
        if trade is not None:
            self.trades.append(trade)
            self._record("trades", now_ms, trade)
            self._trade_closed(trade, now_ms)
        self._exposure_changed(p, now_ms, px, o)
        if o is None:
            self._alert("error", "foreign_fill",
                        f"fill {tid} on {coin} for an order this engine did not place")
            self._latch("foreign_fill", now_ms, f"fill {tid} on {coin} cloid {cloid}")

    def on_fills_answer(self, fills: Sequence[Fill], now_ms: float) -> None:
        """The venue's ``userFills`` answer to a :class:`QueryFills` (any order).

        Fills of orders this run knows are applied as from the stream (deduplicated by
        ``tid``: one the stream lost is recovered). A fill of an order this run did not
        place is applied (a foreign fill: the hard stop latches) only on a market whose
        reconciliation says our position closed, and only when it is not older than that
        position's opening fill; older history never rebuilds positions (P17). A market asked
        about whose answer shows no new fill keeps its position: the unfilled-close window
        of :meth:`on_reconcile` decides."""
        asked = {self.book.positions[i].coin for i in self._fills_asked}
        changed: set[str] = set()
        for f in fills:
            p = self.book.by_coin.get(f.coin)
            if p is None or f.tid in self.book.seen_tids:
                continue
            foreign = f.cloid is None or f.cloid not in self.orders.by_cloid
            fresh = (p.coin in asked and p.trade_open_ms is not None and bool(p.size)
                     and f.time_ms >= p.trade_open_ms)
            before = p.effective
            self.on_fill(f.tid, f.cloid, f.coin, f.is_buy, f.px, f.sz, f.fee, f.time_ms,
                         now_ms, snapshot=foreign and not fresh)
            if p.effective != before:
                changed.add(p.coin)
        for coin in sorted(asked - changed):
            self._alert_state("warning", "no_closing_fill", coin,
                              f"{coin}: the venue's fills show nothing closing the position "
                              f"reconciliation says is gone; it stays in the book and managed")
        if changed and (self._reconcile_due_ms is None or now_ms < self._reconcile_due_ms):
            self._reconcile_due_ms = now_ms  # judge the market again with the fills applied

    def _forget_mismatch(self, p: Position) -> None:
        p.mismatches = 0
        self._mismatch_seen.pop(p.idx, None)
        if self._fills_asked.pop(p.idx, None) is not None:
            self._alert_clear("no_closing_fill", p.coin,
                              f"{p.coin}: the venue's positions and the book agree again")

    def _exposure_changed(self, p: Position, now_ms: float, px: float, o: Order | None) -> None:
        has = p.has_exposure
        prev_state = p.state
        p.state = pfsm.next_position_state(p.state, pfsm.FILL, has)
        if has and p.exit_state is None:
            m = self.strategy.markets[p.idx]
            direction = 1 if p.effective > 0 else -1
            p.entry_ms = now_ms
            p.exit_state = open_exit_state(direction, p.avg_px if p.size else px, now_ms,
                                           p.entry_edge_bps, m)
        elif has and p.exit_state is not None and p.size:
            p.exit_state.entry_px = p.avg_px
        if p.dust_size is not None and abs(p.effective - p.dust_size) > EPS:
            p.dust_size = None  # the exposure changed: flattening may work again
        if not has:
            p.exit_state = None
            p.entry_ms = None
            p.flatten_failures = 0
            p.dust_size = None
        self._touch(p)
        if p.state != prev_state:
            self._record("positions", now_ms, {"event": "fill", "market_key": p.coin,
                                               "state": p.state, "size": p.effective})

    # ------------------------------------------------------------ reconciliation
    def on_reconcile(self, venue_positions: dict[str, float], venue_open: list[dict[str, Any]],
                     now_ms: float) -> None:
        """Compare the venue's positions and open orders with ours.

        ``venue_positions`` maps coin → signed size (absent = flat). A difference must be seen
        ``mismatch_confirmations`` times in a row, the same venue figure each time, over at
        least ``mismatch_confirm_wait_s`` (a transient all-zero answer must not wipe a
        position: P23, L-sync), with no order of that market in flight; then the venue's
        figure is adopted as a synthetic reconciliation fill and the hard stop latches. Until
        then the book is unchanged, so the position stays managed (exits, time stop, kill
        flatten), and a confirming reconciliation is requested for when the wait is over.

        An answer that a position of ours (backed by our fills, or by the venue's report that
        our order filled while its fills are on their way) is *smaller or gone* (the shape of
        the venue's empty answers) is a claim that fills closed it. Fills are the venue's
        own record: a fill the stream delivers, or that a ``userFills`` query
        (:class:`QueryFills`, answered through :meth:`on_fills_answer`) shows, changes the
        book as fills always do. Without one, the answer is adopted only after
        ``unfilled_close_confirmations`` answers over ``unfilled_close_wait_s`` (each the
        longer of it and the general rule's).

        A market with an unconfirmed or just adopted mismatch, or with an open order this run
        did not place, is listed in :attr:`unexplained` (no entry goes out while any market
        is) until a reconciliation finds it in agreement.
        """
        tc = self.tcfg
        wait_ms = tc.mismatch_confirm_wait_s * 1000.0
        unexplained: dict[str, str] = {}
        due: float | None = None
        ask_fills: list[str] = []
        for p in self.book.positions:
            if any(o.state in ofsm.LIVE_STATES or o.state == ofsm.NEW
                   for o in self.orders.active_for(p.idx)):
                # in flight: nothing can be judged now (an earlier verdict stands)
                self._forget_mismatch(p)
                if p.coin in self.unexplained:
                    unexplained[p.coin] = self.unexplained[p.coin]
                    at = now_ms + RECHECK_MS
                    due = at if due is None else min(due, at)
                continue
            venue = venue_positions.get(p.coin, 0.0)
            ours = p.effective
            if _same_size(venue, ours):
                self._forget_mismatch(p)
                continue
            close = _claims_close(ours, venue)
            need_n, need_ms = tc.mismatch_confirmations, wait_ms
            if close:
                need_n = max(need_n, tc.unfilled_close_confirmations)
                need_ms = max(need_ms, tc.unfilled_close_wait_s * 1000.0)
            seen = self._mismatch_seen.get(p.idx)
            if seen is None or not _same_size(seen[0], venue) or not _same_size(seen[2], ours):
                seen = (venue, now_ms, ours)
                self._mismatch_seen[p.idx] = seen
                p.mismatches = 1
                if close:
                    self._alert("warning", "reconcile_mismatch",
                                f"{p.coin}: venue {venue:+g} vs ours {ours:+g}, but no fill "
                                f"closing it has been seen: the venue's fills are asked if "
                                f"it persists; without one it is adopted only after {need_n} answers over "
                                f"{need_ms / 1000.0:g} s (the position stays managed; no "
                                f"entries meanwhile)")
                else:
                    self._alert("warning", "reconcile_mismatch",
                                f"{p.coin}: venue {venue:+g} vs ours {ours:+g}; confirming over "
                                f"{need_ms / 1000.0:g} s before adopting (the position "
                                f"stays managed; no entries meanwhile)")
            else:
                p.mismatches += 1
            if close and p.mismatches >= 2:
                # from the second answer on (the re-check a second later clears a snapshot
                # taken before our own fill arrived, with no query and no alert)
                asked = self._fills_asked.get(p.idx)
                if asked is None or now_ms - asked >= max(wait_ms, RECHECK_MS):
                    self._fills_asked[p.idx] = now_ms
                    ask_fills.append(p.coin)
            if p.mismatches < need_n or now_ms - seen[1] < need_ms:
                unexplained[p.coin] = (f"venue {venue:+g} vs ours {ours:+g} (unconfirmed"
                                       + ("; no closing fill seen)" if close else ")"))
                # re-checked soon (a snapshot older than our last fill clears at once); only
                # an answer after the wait can confirm
                at = min(now_ms + RECHECK_MS, max(now_ms, seen[1] + need_ms))
                due = at if due is None else min(due, at)
                continue
            self._forget_mismatch(p)
            delta = venue - ours
            m = self.strategy.markets[p.idx]
            px = m.mark_px or m.oracle_px or p.avg_px or 0.0
            tid = f"recon:{p.coin}:{int(now_ms)}:{self.book.fills.total}"
            fill = Fill(tid, None, p.coin, delta > 0, px, abs(delta), 0.0, now_ms, synthetic=True)
            _, trade = self.book.apply_fill(p, fill)
            self._record("fills", now_ms, fill.record())
            if trade is not None:
                trade["exit_reason"] = trade["exit_reason"] or "reconciliation"
                self.trades.append(trade)
                self._record("trades", now_ms, trade)
                self._trade_closed(trade, now_ms)
            self._exposure_changed(p, now_ms, px, None)
            # adopted: explained once a later reconciliation agrees (asked for at once)
            unexplained[p.coin] = f"adopted the venue's {venue:+g} (was {ours:+g})"
            due = now_ms
            self._latch("reconciliation_mismatch", now_ms,
                        f"{p.coin}: venue {venue:+g} vs ours {ours:+g}; adopted the venue's"
                        + (f" (no closing fill seen in {need_ms / 1000.0:g} s)" if close
                           else ""))
        if ask_fills:
            self.out.append(QueryFills(tuple(ask_fills), "reconciliation says closed: "
                                       + ", ".join(ask_fills)))
        known = {o.oid for o in self.orders.by_cloid.values() if o.oid is not None}
        known_cloids = set(self.orders.by_cloid)
        for vo in venue_open:
            oid = vo.get("oid")
            cloid = vo.get("cloid")
            if cloid in known_cloids or oid in known:
                continue
            coin = vo.get("coin")
            om = self.strategy.by_coin.get(coin) if isinstance(coin, str) else None
            if om is None or not isinstance(oid, int):
                continue
            why = f"open order {oid} not placed by this run"
            if self.unexplained.get(om.coin) != why:  # once per orphan, not every re-check
                self._alert("warning", "orphan_order",
                            f"open order {oid} on {coin} not placed by this run: canceling")
            self.out.append(CancelOrder(om.coin, om.spec.asset_id, None, oid))
            unexplained.setdefault(om.coin, why)
            at = now_ms + RECHECK_MS
            due = at if due is None else min(due, at)
        for coin in self.unexplained:
            if coin not in unexplained:
                self._alert("warning", "reconcile_explained",
                            f"{coin}: the venue agrees with the book again "
                            f"(was: {self.unexplained[coin]})")
        self.unexplained = unexplained
        if due is not None and (self._reconcile_due_ms is None or due < self._reconcile_due_ms):
            self._reconcile_due_ms = due
        self.ready["reconciled"] = True
        self.resync()

    # ------------------------------------------------------------ kill / reset
    def kill(self, now_ms: float, why: str, level: str = "critical") -> None:
        """Stop new entries, cancel open orders, flatten every position reduce-only."""
        if not self.killed:
            self.killed = True
            self._alert(level, "kill", f"kill switch: {why}")
        for o in list(self.orders.active()):
            if not o.reduce_only and o.state in (ofsm.RESTING, ofsm.PARTIAL):
                self.out.append(CancelOrder(o.coin, o.asset_id, o.cloid, o.oid))
        for p in self.book.positions:
            if p.has_exposure:
                self._maybe_flatten(p, now_ms, "kill")

    def flatten_all(self, now_ms: float, why: str) -> int:
        """Operator flatten: every position with exposure gets a reduce-only flatten now
        (one live flatten per market still holds); entries stay allowed. Returns how many."""
        n = 0
        for p in self.book.positions:
            if p.has_exposure:
                n += 1
                self._maybe_flatten(p, now_ms, "operator")
        if n:
            self._alert("warning", "operator_flatten", f"{why}: {n} position(s)")
        return n

    def reset_hard_stop(self, now_ms: float) -> str | None:
        """The operator's reset: the hard stop latch and every tripped circuit breaker (a
        market halted by the market-move breaker trades again)."""
        cleared = self.breakers.reset()
        for t in cleared:
            if t.market is not None and t.market in self.strategy.by_coin:
                m = self.strategy.by_coin[t.market]
                if m.halted == "circuit_breaker":
                    self.strategy.resume(t.market, now_ms)
        if cleared:
            self._price_ticks.all_changed()  # halts were lifted
            self._alert("warning", "breakers_reset",
                        "circuit breakers reset: " + ", ".join(
                            t.breaker + (f" ({t.market})" if t.market else "") for t in cleared))
            self._breaker_record(now_ms, "reset")
        reason = self.hard_stop.reset()
        if reason is not None:
            self._alert("warning", "hard_stop_reset", f"hard stop reset (was: {reason})")
            self._record("positions", now_ms, {"event": "hard_stop_reset", "reason": reason})
        elif cleared:
            reason = "circuit breakers"
        return reason

    # ------------------------------------------------------------- introspection
    def open_positions(self) -> int:
        return sum(1 for p in self.book.positions if p.has_exposure)

    def flat(self) -> bool:
        return all(not p.has_exposure for p in self.book.positions)


def _claims_close(ours: float, venue: float) -> bool:
    """The venue's figure says fills closed (part of) a position of ours — every exposure in
    the book is the venue's own word: its fills, its report that our order filled (fills on
    their way), or a figure adopted from it: smaller than ours, zero, or of the other sign."""
    if abs(ours) <= EPS:
        return False
    return venue * ours <= 0.0 or abs(venue) < abs(ours)


def _same_size(a: float, b: float) -> bool:
    return abs(a - b) <= max(1e-9, 1e-6 * abs(a))


def _f(value: object) -> float | None:
    if value is None:
        return None
    try:
        return float(str(value))
    except ValueError:
        return None
