"""The Trio shell of the trading modes (paper now; trade uses the same core and lifecycle).

Extends :class:`engine.app.ObserveApp`: the same feed, detector, followups and records, with
the :class:`engine.core.trading.TradingCore` in the hot path. Market frames go to the trading
core synchronously; after each socket batch its intents are executed: records to the writer
(the journal: ``orders``, ``fills``, ``positions``, ``trades``), alerts to the log, orders to
the execution backend. In paper mode the backend is :class:`engine.venues.paper.PaperVenue`,
which fills IOC orders at decision time + latency against the book at that later time.

One timer task wakes the core for quote-lag windows, paper executions and housekeeping (exit
backup, UNKNOWN resolution, pending timeouts). A graceful stop (SIGINT/SIGTERM) turns the kill
switch on — no new entries, every position flattened reduce-only — and waits (bounded) for flat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import trio

from engine.app import (
    EXIT_CONFIG,
    CoreHandler,
    ObserveApp,
    RunStats,
    StartupError,
    log_gate_events,
)
from engine.clock import trio_deadline
from engine.config import EngineConfig
from engine.core.core import Signal
from engine.core.followups import FollowupBook
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
from engine.core.orders import CloidFactory
from engine.core.positions import Fill
from engine.core.types import MarketSpec
from engine.deadline import DeadlineSleeper
from engine.display import fmt_px, fmt_sz, fmt_usd
from engine.followups import FollowupScheduler
from engine.io.followup_recovery import recover_incomplete
from engine.io.journal import load_journal, restore
from engine.io.records import RecordWriter
from engine.ops.paths import FLATTEN_FILE, RESET_FILE, consume_request
from engine.secrets import SecretsError
from engine.strategies.dislocation import DislocationStrategy
from engine.venues.base import BatchContext, ExecutionBackend, TradingVenueFactory
from engine.venues.hyperliquid.deadman import DeadManSwitch
from engine.venues.hyperliquid.execution import NotSent, OrderExecutor, ReconcileError
from engine.venues.hyperliquid.keys import load_signer
from engine.venues.hyperliquid.network import (
    Network,
    NetworkError,
    check_discovered,
    needs_discovery_check,
    network_of,
    probe_simulator,
    unresolved_message,
)
from engine.venues.hyperliquid.nonce import LEASE_MS as NONCE_LEASE_MS
from engine.venues.hyperliquid.nonce import NonceAllocator, NonceStore, NonceStoreError
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore
from engine.venues.hyperliquid.posts import PostFailure
from engine.venues.hyperliquid.signing import Signer
from engine.venues.hyperliquid.warm import CoreWarmer
from engine.venues.hyperliquid.wire import OrderUpdate, UserFill
from engine.venues.paper import PaperVenue
from engine.venues.registry import trading_factory

log = logging.getLogger("engine.trading")
alert_log = logging.getLogger("engine.alert")
order_log = logging.getLogger("engine.orders")

HOUSEKEEPING_MS = 100.0
NONCE_FILE_PREFIX = "NONCE_"  # + agent address: the nonce high-water mark in the state dir
CLOCK_RECHECK_S = 5.0  # reconciliation (and clock) interval while the clock is off the venue's
_ALERT_LEVELS = {"warning": logging.WARNING, "error": logging.ERROR,
                 "critical": logging.CRITICAL}


class TradingHandler(CoreHandler):
    """Feed handler for the trading core: frames in, orders out at once, the rest after.

    Order of work for one socket read (the order path):

    1. each frame goes to the core; the orders it creates go to the backend at once
       (``execute(send_only=True)``). In trade mode the feed writes the first orders of a read
       right after their frame, and coalesces later ones into one signed action written when
       the read is done (or once the oldest waited ``send_coalesce_s``);
    2. everything else — journal records, alerts, gate-transition logs, signal records,
       followups, signal log lines, the timer poke — is *bookkeeping*: it runs at the end of
       the read, or, when orders of this read still wait for their write, right after that
       write (:meth:`LiveBackend.after_write`), so no order waits for it.
    """

    def __init__(self, app: TradingApp, trading: TradingCore, clock: Callable[[], float],
                 stats: RunStats, batch: BatchContext | None = None) -> None:
        self.app = app
        self.trading = trading
        self.core = trading.strategy
        self.clock = clock
        self.stats = stats
        self.index = {m.coin: m.index for m in trading.strategy.markets}
        self.batch = batch if batch is not None else BatchContext()
        # a deadline of the trading timer may have moved since the last poke (a quote-lag
        # window opened by a ctx frame; any execute(): an order sent to the paper venue, from
        # a read or not): the next read's bookkeeping pokes
        self.poke = True

    @property
    def in_batch(self) -> bool:
        """The feed is dispatching a socket read (its ``on_batch_end`` is still to come)."""
        return self.batch.now is not None

    def on_bbo(self, coin: str, time_ms: int, bid_px: float | None, bid_sz: float | None,
               ask_px: float | None, ask_sz: float | None) -> None:
        idx = self.index.get(coin)
        if idx is None:
            self.stats.unknown_coin_frames += 1
            return
        self.stats.frames_applied += 1
        batch = self.batch
        now = batch.now
        if now is None:
            now = batch.now = self.clock()
        trading = self.trading
        trading.on_bbo(idx, time_ms, bid_px, bid_sz, ask_px, ask_sz, now)
        if trading.new_orders:  # an order right now: send it before the next frame
            self.app.execute(now, send_only=True)

    def on_ctx(self, coin: str, oracle_px: float, mark_px: float | None) -> None:
        idx = self.index.get(coin)
        if idx is None:
            self.stats.unknown_coin_frames += 1
            return
        self.stats.frames_applied += 1
        now = self._batch_now()
        self.poke = True
        self.trading.on_ctx(idx, oracle_px, mark_px, now)
        if self.trading.new_orders:
            self.app.execute(now, send_only=True)

    def on_order_updates(self, updates: list[OrderUpdate]) -> None:
        now = self._batch_now()
        self.poke = True
        for u in updates:
            self.trading.on_order_update(u.cloid, u.oid, u.status, u.sz, u.orig_sz, now)

    def on_user_fills(self, fills: list[UserFill], is_snapshot: bool) -> None:
        now = self._batch_now()
        self.poke = True
        for f in fills:
            self.trading.on_fill(str(f.tid), f.cloid, f.coin, f.side == "B", float(f.px),
                                 float(f.sz), float(f.fee), f.time, now, snapshot=is_snapshot)

    def on_user_channels_acked(self, acked: bool) -> None:
        self.trading.set_ready("user_channels", acked)
        if acked:
            self.app.request_reconcile()

    def on_disconnected(self, reason: str) -> None:
        self.batch.now = None  # a read cut short by the disconnect has no batch end
        self.poke = True
        self.trading.on_disconnect(self.clock())
        log_gate_events(self.core.drain_events())
        self.app.execute(self.clock())
        self.app.flush_signals()

    def on_batch_end(self) -> None:
        batch = self.batch  # self._batch_now(), inline (once per read)
        now = batch.now
        if now is None:
            now = self.clock()
        batch.now = None
        if self.trading.new_orders:  # e.g. a flatten after a post answer of this read
            self.app.execute(now, send_only=True)
        backend = self.app.backend
        assert backend is not None
        if backend.defer_bookkeeping():
            # the feed writes this read's last orders right after this call: the
            # bookkeeping runs after that write (LiveBackend.after_write)
            return
        self.bookkeeping(now)

    def bookkeeping(self, now: float) -> None:
        """Everything of a socket read that is not an order (see the class docstring)."""
        if self.core.events:
            log_gate_events(self.core.drain_events())
        app = self.app
        if self.trading.out or app.has_queued_work():
            app.execute(now)
            app.flush_signals()
        # else (most reads: no intent, no signal): both would find nothing to do
        if self.poke:
            # (else no deadline moved since the last poke or wake: the poke, which only
            # pulls the wake-up earlier, would leave it where it is)
            self.poke = False
            app.timer_poke()


class LiveBackend:
    """Trade mode: orders signed and sent over the venue WebSocket; answers fed to the core.

    ``batch`` is the feed handler's batch context (is a read being dispatched?) and
    ``bookkeeping`` its end-of-read bookkeeping, run here when it was deferred to the write."""

    def __init__(self, app: TradingApp, trading: TradingCore, user: str, batch: BatchContext,
                 bookkeeping: Callable[[float], None]) -> None:
        self.app = app
        self.trading = trading
        self.executor: OrderExecutor
        self.user = user
        self.batch = batch
        self._bookkeeping = bookkeeping
        self._querying: set[str] = set()
        self._querying_fills = False  # one userFills query at a time
        # the feed handler deferred a read's bookkeeping until its orders are written
        self.bookkeeping_due = False

    def defer_bookkeeping(self) -> bool:
        """At a read's end: orders of the read still queued for the write (the feed writes
        them right after the batch end), so the bookkeeping waits for that write."""
        if self.executor.queued:
            self.bookkeeping_due = True
            return True
        return False

    def dispatch(self, intents: Iterable[Intent], now_ms: float) -> list[Intent]:
        rest: list[Intent] = []
        for it in intents:
            if isinstance(it, PlaceOrder):
                try:
                    self.executor.submit([it.order])
                except NotSent as exc:
                    self.trading.on_send_failed(it.order.cloid, now_ms, str(exc),
                                                link_down=not self.executor.connected)
            elif isinstance(it, CancelOrder):
                self.app.spawn(self._cancel, it)
            elif isinstance(it, QueryOrder):
                if it.cloid not in self._querying:
                    self._querying.add(it.cloid)
                    self.app.spawn(self._query, it)
            elif isinstance(it, QueryFills):
                if not self._querying_fills:
                    self._querying_fills = True
                    self.app.spawn(self._query_fills, it)
            else:
                rest.append(it)
        return rest

    def next_due_ms(self) -> float | None:
        return None

    def on_timer(self, now_ms: float) -> None:
        return None

    async def _cancel(self, it: CancelOrder) -> None:
        try:
            status = await self.executor.cancel(it.asset_id, oid=it.oid, cloid=it.cloid)
        except PostFailure as exc:
            log.warning("cancel %s on %s failed: %s", it.cloid or it.oid, it.coin, exc)
            return
        log.info("cancel %s on %s: %s", it.cloid or it.oid, it.coin, status)

    async def _query(self, it: QueryOrder) -> None:
        try:
            reply = await self.executor.order_status(self.user, it.cloid)
        except PostFailure as exc:
            log.warning("orderStatus %s failed: %s", it.cloid, exc)
            return
        finally:
            self._querying.discard(it.cloid)
        if reply is not None:
            now = self.app.clock()
            self.trading.on_order_status(it.cloid, reply, now)
            self.app.execute(now)

    async def _query_fills(self, it: QueryFills) -> None:
        """``userFills`` for the core's second source (a reconciliation said a position of
        ``it.coins`` closed): its answer goes to ``on_fills_answer``; none (logged by the
        executor) leaves the core's unfilled-close window to decide."""
        try:
            fills = await self.executor.user_fills(self.user)
        finally:
            self._querying_fills = False
        if fills is None:
            return
        now = self.app.clock()
        self.trading.on_fills_answer(
            [Fill(str(f.tid), f.cloid, f.coin, f.is_buy, float(f.px), float(f.sz), float(f.fee),
                  float(f.time)) for f in fills], now)
        log.info("userFills for %s: %d fill(s) in the answer", ", ".join(it.coins), len(fills))
        self.app.execute(now)

    # executor hooks (called from the feed's tasks)
    def on_sent(self, cloids: list[str]) -> None:
        now = self.app.clock()
        for c in cloids:
            self.trading.on_sent(c, now)
        self.after_write(now)

    def on_result(self, cloid: str, status: object) -> None:
        now = self.app.clock()
        self.trading.on_post_result(cloid, status, now)
        self.after_write(now)

    def on_not_sent(self, cloids: list[str], reason: str) -> None:
        now = self.app.clock()
        link_down = not self.executor.connected
        for c in cloids:
            self.trading.on_send_failed(c, now, reason, link_down=link_down)
        self.after_write(now)

    def after_write(self, now: float) -> None:
        """After a write (or an answer, or a failed send): while the feed is still dispatching
        a read, only new orders go out (its batch end does the rest); otherwise the intents
        run, plus the read's bookkeeping when the handler deferred it to this point."""
        if self.batch.now is not None:  # the feed is still dispatching a read
            if self.trading.new_orders:
                self.app.execute(now, send_only=True)
            return
        if self.bookkeeping_due:
            self.bookkeeping_due = False
            self._bookkeeping(now)
        else:
            self.app.execute(now)


IOC_NOT_FILLED = "IOC not filled at its limit: no liquidity there, a normal outcome"
_IOC_NO_MATCH = ("could not immediately match", "iocCancelRejected")


def _log_order(rec: dict[str, Any], sz_decimals: int | None = None) -> None:
    """One line per order state change (journald fields CLOID, MARKET, SIDE, REASON); price and
    size at the market's precision. An IOC the venue could not match is a normal outcome: it
    is said so, not shown as the venue's error text."""
    if not order_log.isEnabledFor(logging.INFO):
        return  # (the arguments alone cost more than the record write)
    reason = rec.get("reason") or rec.get("why") or rec.get("purpose")
    message = rec.get("message")
    if message and rec.get("event") == "expire" and any(m in str(message)
                                                        for m in _IOC_NO_MATCH):
        message = IOC_NOT_FILLED
    order_log.info("order %s %s %s %s %s@%s %s -> %s%s", rec.get("cloid"), rec.get("purpose"),
                   rec.get("market_key"), rec.get("side"), fmt_sz(rec.get("sz"), sz_decimals),
                   fmt_px(rec.get("px"), sz_decimals), rec.get("event"), rec.get("state"),
                   f" ({message})" if message else "",
                   extra={"cloid": rec.get("cloid"), "market": rec.get("market_key"),
                          "side": rec.get("side"), "reason": reason})


def _log_trade(rec: dict[str, Any], sz_decimals: int | None = None) -> None:
    if not order_log.isEnabledFor(logging.INFO):
        return
    order_log.info("trade closed %s %s size %s entry %s exit %s net %s (%s)",
                   rec.get("market_key"), rec.get("direction"),
                   fmt_sz(rec.get("size"), sz_decimals),
                   fmt_px(rec.get("entry_avg_px"), sz_decimals),
                   fmt_px(rec.get("exit_avg_px"), sz_decimals),
                   fmt_usd(rec.get("net_pnl") or 0.0), rec.get("exit_reason"),
                   extra={"market": rec.get("market_key"), "reason": rec.get("exit_reason"),
                          "signal_id": rec.get("entry_signal_id")})


def is_real_mainnet(cfg: EngineConfig) -> bool:
    """The real Hyperliquid mainnet: the network that needs ``[trading] allow_live`` (an
    unresolved network counts too: trade mode refuses it anyway)."""
    net = network_of(cfg)
    return net is None or net.needs_allow_live


class TradingApp(ObserveApp):
    """Paper (and, with a live backend, trade) mode on top of the observe shell."""

    handler: TradingHandler  # set in build, before any use
    venue: TradingVenueFactory  # the registry's factory for venue_name (paper/trade parts)

    def __init__(self, cfg: EngineConfig, *, duration_s: float | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(cfg, duration_s=duration_s, clock=clock)
        self.venue = trading_factory(self.venue_name)
        self.trading: TradingCore | None = None
        self.paper: PaperVenue | None = None
        self.warmer: CoreWarmer | None = None  # trade mode with [venue] busy_poll_us
        self.trading_handler: TradingHandler | None = None  # set in build
        self.backend: ExecutionBackend | None = None
        self.signer: Signer | None = None
        self.deadman: DeadManSwitch | None = None  # trade mode, [trading] dead_man_s > 0
        self._nursery: trio.Nursery | None = None
        self._pending_signals: list[Signal] = []
        self._decision_latencies: list[float] = []
        self._reconcile_sleeper = DeadlineSleeper()
        self._timer_sleeper = DeadlineSleeper()
        self._flat: trio.Event | None = None
        self.alerts: list[Alert] = []
        self.network: Network | None = None  # trade mode: set by preflight
        self.nonces: NonceAllocator | None = None  # trade mode: set by build

    # ------------------------------------------------------------ preflight
    def preflight(self) -> None:
        cfg = self.cfg
        if cfg.mode != "trade":
            return
        if not cfg.account.address:
            raise StartupError("trade mode needs [account] address (the master account whose "
                               "positions and fills are queried)", EXIT_CONFIG)
        try:
            net = network_of(cfg)
        except NetworkError as exc:
            raise StartupError(str(exc), EXIT_CONFIG) from None
        if net is None:
            raise StartupError(unresolved_message(cfg.venue.ws_url, cfg.venue.info_url),
                               EXIT_CONFIG)
        if net.needs_allow_live and not cfg.trading.allow_live:
            raise StartupError("trade mode refuses Hyperliquid mainnet ([venue] network = "
                               "\"mainnet\") unless [trading] allow_live = true", EXIT_CONFIG)
        self.network = net
        log.info("trade mode on network %s (signing chain %s)", net.name,
                 "mainnet" if net.signs_mainnet else "testnet")
        try:
            self.signer = load_signer()
        except SecretsError as exc:
            raise StartupError(str(exc), EXIT_CONFIG) from None
        if self.signer.address.lower() == cfg.account.address.lower():
            log.warning("the agent key's address equals [account] address: use an API wallet "
                        "approved by the master account, not the master key itself")
        log.info("trade mode: agent %s signs for account %s", self.signer.address,
                 cfg.account.address)

    async def verify_venue(self) -> None:
        """Trade mode: the venue found at the URLs must be the network configured (the
        simulator for ``sim``, never the simulator otherwise); before any connection signs."""
        cfg = self.cfg
        if cfg.mode != "trade" or self.network is None:
            return
        if not needs_discovery_check(self.ws_url, self.info_url, cfg.sim.enabled):
            return
        is_sim = await probe_simulator(self.info_url, cfg.venue.info_timeout_s)
        try:
            check_discovered(self.network, is_sim, self.info_url)
        except NetworkError as exc:
            raise StartupError(str(exc), EXIT_CONFIG) from None

    def sim_accounts(self) -> dict[str, Any]:
        if self.cfg.mode != "trade" or self.signer is None:
            return {}
        master = self.cfg.account.address.lower()
        return {"accounts": {master: 10_000.0},
                "agents": {self.signer.address.lower(): master}}

    def spawn(self, fn: Any, *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    def request_reconcile(self) -> None:
        self._reconcile_sleeper.wake()

    # ------------------------------------------------------------ build
    def build(self, markets: list[MarketSpec], writer: RecordWriter) -> None:
        cfg = self.cfg
        if cfg.mode not in ("paper", "trade"):
            raise StartupError(f"TradingApp cannot run mode {cfg.mode!r}", EXIT_CONFIG)
        self.stats.started_ms = self.clock()
        core = DislocationStrategy.from_config(markets, cfg, boot_id=self.boot_id)
        self.core = core
        trading = TradingCore(core, cfg, cloids=CloidFactory(self.cloid_boot))
        # Signal records, followups and the log line run after the order left (execute()).
        trading.on_signal_hook = self._on_core_signal
        self.trading = trading
        fu = cfg.followups
        book = FollowupBook(max_ctx_age_ms=fu.max_ctx_age_ms, max_bbo_age_ms=fu.max_bbo_age_ms,
                            max_pending=fu.max_pending)
        self.scheduler = FollowupScheduler(book, writer, core.view, self.clock)
        now = self.clock()
        missed, reschedule = recover_incomplete(self.records_dir, now)
        self.scheduler.restore(missed, reschedule)
        journal = load_journal(self.records_dir, now)
        report = restore(trading, journal, now)
        if report is not None and any(p.has_exposure for p in trading.book.positions):
            log.warning("journal: restored %s", report)
        handler = TradingHandler(self, trading, self.clock, self.stats, self.batch)
        self.timer = None
        self.handler = handler
        self.trading_handler = handler
        coins = [m.coin for m in markets]
        venue = self.venue
        if cfg.mode == "paper":
            # [paper] walk_l2book: the feed keeps l2Book levels; paper IOCs walk them
            l2book = venue.book_store(self.clock) if cfg.paper.walk_l2book else None
            self.paper = PaperVenue(trading, cfg.paper.latency_ms, cfg.paper.taker_fee_bps,
                                    tid_prefix=f"paper-{core.boot_id}",
                                    levels=l2book.levels if l2book is not None else None)
            self.backend = self.paper
            # Paper has no user channels to ack; reconcile against the paper venue's own book.
            self.paper.seed_positions({p.coin: p.effective for p in trading.book.positions})
            trading.set_ready("user_channels", True)
            trading.on_reconcile(self.paper.positions(), self.paper.open_orders(), now)
            self.feed = venue.market_data(cfg, coins, handler,
                                          self._feed_options(book_store=l2book))
        else:
            assert self.signer is not None
            user = cfg.account.address.lower()
            feed = self.feed = venue.market_data(
                cfg, coins, handler,
                self._feed_options(account=user,
                                   send_first_at_once=cfg.venue.send_first_at_once))
            live = LiveBackend(self, trading, user, self.batch, handler.bookkeeping)
            self.nonces = self._nonce_allocator(now)
            executor: OrderExecutor = venue.execution(
                feed, self.signer, self.nonces, is_mainnet=self._network().signs_mainnet,
                post_timeout_s=cfg.venue.post_timeout_s, clock=self.clock,
                on_sent=live.on_sent, on_result=live.on_result, on_not_sent=live.on_not_sent,
                entry_guard=trading.entries_blocked)
            live.executor = executor
            if cfg.trading.dead_man_s > 0:
                self.deadman = venue.dead_man(executor, cfg.trading.dead_man_s,
                                              orders=trading.orders.active,
                                              connected=lambda: feed.connected,
                                              clock=self.clock)
            if cfg.venue.busy_poll_us > 0:
                # while the reader spins, keep the entry path cached: a shadow core's synthetic
                # entry (same code, its own state) and a dummy order signed and dropped
                self.warmer = CoreWarmer(cfg, markets)
                warm_core, warm_order = self.warmer.warm, executor.warm

                def spin_hook() -> None:
                    warm_core()
                    warm_order()

                self.feed.spin_hook = spin_hook
            self.backend = live
            self.executor = executor
        self.execute(now)
        self.check_reset_file(now)

    def _nonce_allocator(self, now_ms: float) -> NonceAllocator:
        """The agent's nonce allocator, continuing above the high-water mark persisted in the
        state dir (``NONCE_<agent>``): a restart in the same millisecond, or after the wall
        clock stepped back, never reuses a nonce."""
        assert self.signer is not None
        store = NonceStore(self.state_dir / f"{NONCE_FILE_PREFIX}{self.signer.address.lower()}")
        try:
            return NonceAllocator(store=store, now_ms=int(now_ms))
        except NonceStoreError as exc:
            raise StartupError(f"{exc}: restore it, or remove it only if this agent signed "
                               f"nothing in the last day (a lower mark could reuse a nonce)",
                               EXIT_CONFIG) from None

    async def _nonce_lease_task(self) -> None:
        """Keep the persisted nonce high-water mark ``LEASE_MS`` ahead (written in a worker
        thread: no file I/O on the order path or the event loop)."""
        nonces = self.nonces
        assert nonces is not None and nonces.store is not None
        store = nonces.store
        while True:
            target = nonces.renew_target(int(self.clock()))
            if target is not None:
                try:
                    saved = await trio.to_thread.run_sync(store.save, target)
                except NonceStoreError as exc:
                    log.error("%s; retrying (orders past the mark write it themselves)", exc)
                else:
                    nonces.reserved_to(saved)
            await trio.sleep(NONCE_LEASE_MS / 4000.0)

    def _network(self) -> Network:
        net = self.network if self.network is not None else network_of(self.cfg)
        if net is None:  # preflight refuses this; never guess a signing chain
            raise StartupError(unresolved_message(self.cfg.venue.ws_url,
                                                  self.cfg.venue.info_url), EXIT_CONFIG)
        return net

    def _start_tasks(self, nursery: trio.Nursery, writer: RecordWriter) -> None:
        assert self.scheduler and self.feed
        self._nursery = nursery
        if self.cfg.mode == "trade":
            nursery.start_soon(self._reconcile_task, name="reconcile")
            nursery.start_soon(self._nonce_lease_task, name="nonce-lease")
            if self.deadman is not None:
                nursery.start_soon(self.deadman.run, name="dead-man")
        nursery.start_soon(writer.run, name="writer")
        nursery.start_soon(self.scheduler.run, name="followups")
        nursery.start_soon(self._timer_task, name="trading-timer")
        nursery.start_soon(self.feed.run, name="feed")
        nursery.start_soon(self._summary_task, name="summary")

    # ------------------------------------------------------------ intents
    def execute(self, now_ms: float, *, send_only: bool = False) -> None:
        """Run the core's intents to completion (venue-bound ones go to the backend).

        ``send_only`` (the order path, right after a frame created orders): only the
        :class:`PlaceOrder` intents go to the backend now; records, alerts and the rest stay
        queued in the core, in order, for the next full ``execute`` (after the write).
        """
        trading, backend, writer = self.trading, self.backend, self.writer
        assert trading is not None and backend is not None and writer is not None
        th = self.trading_handler
        if th is not None:
            th.poke = True
        if send_only:
            orders = trading.take_orders()
            if orders:
                for it in backend.dispatch(orders, now_ms):
                    self._handle(it, now_ms)
            return
        for _ in range(100):
            if not trading.out:
                break
            for it in backend.dispatch(trading.drain(), now_ms):
                self._handle(it, now_ms)
        else:
            log.error("intent loop did not settle after 100 rounds (%d pending)",
                      len(trading.out))
        if self._flat is not None and trading.flat() and not any(True for _ in
                                                                trading.orders.active()):
            self._flat.set()

    def before_close(self) -> None:
        if self.writer is not None and self.scheduler is not None:
            if self.trading is not None and self.backend is not None:
                self.execute(self.clock())  # records still queued in the core reach the disk
            self.flush_signals()

    def has_queued_work(self) -> bool:
        """Signals, decision latencies or a flatten wait for the next :meth:`execute`."""
        return bool(self._pending_signals or self._decision_latencies or self._flat is not None)

    def flush_signals(self) -> None:
        """Signal records, followup scheduling and log lines, once the batch's orders left."""
        if self._pending_signals:
            # the core's hook holds this very list: empty it in place, never replace it
            pending = self._pending_signals[:]
            self._pending_signals.clear()
            for sig in pending:
                self.handle_signal(sig)
        if self._decision_latencies:
            if self.ops is not None:
                hist = self.ops.metrics.frame_to_decision
                for seconds in self._decision_latencies:
                    hist.observe(seconds)
            self._decision_latencies.clear()

    def _on_core_signal(self, sig: Signal) -> None:
        """The core decided on a signal (hot path: one clock read for the frame → decision
        latency, observed in :meth:`flush_signals` after the orders left)."""
        self._pending_signals.append(sig)
        t0 = self.batch.now
        if t0 is not None:
            self._decision_latencies.append(max(0.0, self.clock() - t0) / 1000.0)

    def _handle(self, it: Intent, now_ms: float) -> None:
        assert self.writer is not None and self.trading is not None
        if isinstance(it, Record):
            self.writer.write(it.kind, it.ts_ms, it.record)
            if it.kind == "orders":
                _log_order(it.record, self._sz_decimals(it.record.get("market_key")))
                if self.ops is not None:
                    self.ops.on_order_record(it.record)
            elif it.kind == "trades":
                _log_trade(it.record, self._sz_decimals(it.record.get("market_key")))
        elif isinstance(it, Alert):
            self.alerts.append(it)
            if len(self.alerts) > 1000:
                del self.alerts[:500]
            alert_log.log(_ALERT_LEVELS.get(it.level, logging.WARNING), "%s: %s", it.code,
                          it.message, extra={"reason": it.code})
            if self.ops is not None:
                self.ops.on_alert(it)
        elif isinstance(it, RequestReconcile):
            if self.paper is not None:
                self.trading.on_reconcile(self.paper.positions(), self.paper.open_orders(),
                                          now_ms)
            else:
                self.request_reconcile()

    def _sz_decimals(self, coin: Any) -> int | None:
        """The market's szDecimals (display precision), None when unknown."""
        m = self.trading.strategy.by_coin.get(coin) if self.trading is not None else None
        return m.spec.sz_decimals if m is not None else None

    # ------------------------------------------------------------ timers
    def timer_poke(self) -> None:
        sleeper = self._timer_sleeper
        if not sleeper.sleeping:
            return
        sleeper.pull_in(self._deadline(self.next_due()))

    def next_due(self) -> float:
        """When the trading timer must wake next (engine ms): the next housekeeping, the
        strategy's next timer or the backend's next due work, whichever is first (the live
        timer task sleeps until it; replay fires :meth:`timer_fire` then)."""
        assert self.trading is not None and self.backend is not None
        due = self.clock() + HOUSEKEEPING_MS  # the min of the three, as min() picks it
        d = self.trading.strategy.next_timer_ms()
        if d is not None and d < due:
            due = d
        d = self.backend.next_due_ms()
        if d is not None and d < due:
            due = d
        return due

    def _deadline(self, due_ms: float) -> float:
        return trio_deadline(self.clock, due_ms)

    async def _reconcile_task(self) -> None:
        """Positions and open orders from the venue (with the dex parameter) vs ours."""
        trading = self.trading
        assert trading is not None
        user = self.cfg.account.address.lower()
        interval = self.cfg.trading.reconcile_interval_s
        clock_unmeasured_logged = False
        while True:
            # while the clock is off the venue's, measure again soon: entries wait for it
            wait = min(interval, CLOCK_RECHECK_S) if trading.clock_skewed else interval
            await self._reconcile_sleeper.sleep_for(wait)
            if self.feed is None or not self.feed.connected:
                continue
            epoch = trading.link_epoch
            try:
                positions, open_orders = await self.executor.reconcile_snapshot(
                    user, self.cfg.venue.dex)
            except (ReconcileError, PostFailure) as exc:
                log.warning("reconciliation failed: %s; retrying", exc)
                await trio.sleep(1.0)
                self._reconcile_sleeper.wake()
                continue
            if trading.link_epoch != epoch:
                # the connection dropped meanwhile: READY waits for a snapshot taken after
                # the reconnect (the user channels' ack asks for one)
                log.info("reconciliation snapshot spans a reconnect: discarded")
                continue
            if self.deadman is not None:
                self.deadman.venue_open_orders = len(open_orders)
            now = self.clock()
            first = not trading.ready["reconciled"]
            sample = self.executor.last_clock_sample
            if sample is not None:
                trading.on_clock_sample(*sample, now)
            elif not clock_unmeasured_logged:
                clock_unmeasured_logged = True
                log.warning("the venue's clearinghouseState carries no time: the local clock "
                            "is not checked against the venue's at runtime (only by `check`)")
            trading.on_reconcile(positions, open_orders, now)
            trading.on_account_values(self.executor.last_main_value,
                                      self.executor.last_account_value, now)
            if first:
                log.info("reconciled with the venue: %d position(s), %d open order(s)",
                         sum(1 for v in positions.values() if v), len(open_orders))
            self.execute(now)

    async def _timer_task(self) -> None:
        assert self.trading is not None and self.backend is not None
        sleeper = self._timer_sleeper
        while True:
            await sleeper.sleep_until(self._deadline(self.next_due()))
            self.timer_fire(self.clock())

    def timer_fire(self, now: float) -> None:
        """One wake-up of the trading timer (live task and replay). Its caller computes the
        next deadline right after (``_next_due``), so no read needs to poke for what this
        wake changed."""
        trading, backend = self.trading, self.backend
        assert trading is not None and backend is not None
        backend.on_timer(now)
        trading.on_timer(now)
        if trading.strategy.events:
            log_gate_events(trading.strategy.drain_events())
        if trading.out or self.has_queued_work():
            self.execute(now)
            self.flush_signals()
        # (else, most wakes: both would find nothing to do)
        th = self.trading_handler
        if th is not None:
            th.poke = False

    def poll_control_files(self) -> None:
        super().poll_control_files()
        now = self.clock()
        self.check_reset_file(now)
        self.check_flatten_file(now)

    def _consume(self, name: str, what: str) -> bool:
        path = self.state_dir / name
        try:
            return consume_request(path)
        except OSError as exc:
            log.error("cannot remove %s (%s): %s not done", path, exc.strerror, what)
            return False

    def check_reset_file(self, now_ms: float) -> None:
        """The explicit operator reset of the hard stop (see ``python -m engine
        reset-hard-stop``): consume the request file, reset the latch, journal it."""
        if self.trading is None or not self._consume(RESET_FILE, "hard stop reset"):
            return
        self.reset_hard_stop(now_ms, "reset-hard-stop request file")

    def reset_hard_stop(self, now_ms: float, source: str) -> str | None:
        """Release the hard stop latch (operator command); returns the reason it held."""
        trading = self.trading
        if trading is None:
            return None
        reason = trading.reset_hard_stop(now_ms)
        if reason is None:
            log.warning("hard stop reset requested (%s), but it was not latched", source)
        else:
            log.warning("hard stop reset by the operator via %s (was: %s)", source, reason)
        self.execute(now_ms)
        return reason

    def check_flatten_file(self, now_ms: float) -> None:
        """``python -m engine flatten``: flatten every position now, reduce-only."""
        if self.trading is None or not self._consume(FLATTEN_FILE, "flatten"):
            return
        self.flatten_all(now_ms, "operator flatten request")

    def flatten_all(self, now_ms: float, why: str) -> int:
        """Flatten every open position reduce-only (entries stay allowed); returns how many."""
        trading = self.trading
        if trading is None:
            return 0
        n = trading.flatten_all(now_ms, why)
        log.warning("%s: flattening %d position(s)", why, n)
        self.execute(now_ms)
        return n

    # ------------------------------------------------------------ stop
    async def graceful_stop(self, reason: str = "graceful stop") -> None:
        """Kill switch on: no new entries, cancel open orders, flatten everything reduce-only;
        wait (bounded by ``[ops] kill_flat_timeout_s``) until the venue confirms flat.

        Flat is only believed once the engine is READY (market data, user channels acked,
        reconciled), so a kill at start waits for reconciliation before it can say "flat".
        Exits 0 when flat; 1 when positions are left open (systemd restarts a failed unit, and
        the kill file, if that was the trigger, makes the next start try again).
        """
        trading = self.trading
        if trading is None:
            self.stop()
            return
        now = self.clock()
        self._flat = trio.Event()
        trading.kill(now, reason, level="warning")
        self.execute(now)
        with trio.move_on_after(self.cfg.ops.kill_flat_timeout_s):
            while True:
                await self._flat.wait()
                if trading.is_ready() and not trading.unexplained and trading.flat() \
                        and not any(True for _ in trading.orders.active()):
                    break
                self._flat = trio.Event()
                await trio.sleep(0.05)
                self.execute(self.clock())
        if not trading.flat() or not trading.is_ready() or trading.unexplained:
            self.exit_code = 1
            log.critical("stopping with open (or unconfirmed) positions after %.0f s: %s",
                         self.cfg.ops.kill_flat_timeout_s,
                         ", ".join(f"{p.coin} {fmt_sz(p.effective, self._sz_decimals(p.coin))}"
                                   for p in trading.book.positions if p.has_exposure) or "none")
        else:
            log.warning("flat and stopped (%s)", reason)
        self._log_breakers_at_stop()
        if self.deadman is not None:
            await self.deadman.settle()
        self.stop()

    def _log_breakers_at_stop(self) -> None:
        """One line for the operator: did a breaker trip, on what equity, with what P&L."""
        t = self.trading
        if t is None:
            return
        cb = t.breakers
        pnl = t.trades_net_pnl
        tripped = ", ".join(f"{tr.breaker}: {tr.detail}" for tr in cb.tripped())
        log.log(logging.WARNING if tripped else logging.INFO,
                "circuit breakers at stop: %s; equity %.2f USD (%s), peak %.2f USD; %d trade(s), "
                "net P&L %+.4f USD", tripped or "none tripped", cb.equity, t.equity_source,
                cb.peak, t.trades.total, pnl)

    # ------------------------------------------------------------ ops views
    def is_ready(self) -> bool:
        """READY for the operator: the core's flags, and no exposure the venue reports that
        the book cannot explain (``unexplained`` in ``/status``)."""
        return (self.trading is not None and self.trading.is_ready()
                and not self.trading.unexplained)

    def _oldest_unresolved_s(self) -> float | None:
        trading = self.trading
        if trading is None:
            return None
        since = [o.unknown_since_ms for o in trading.orders.unknown()
                 if o.unknown_since_ms is not None]
        return None if not since else max(0.0, (self.clock() - min(since)) / 1000.0)

    def _hard_stop_reason(self) -> str | None:
        t = self.trading
        if t is None or not t.hard_stop.latched:
            return None
        return f"{t.hard_stop.reason}: {t.hard_stop.detail}"

    def unrealized_pnl(self) -> float:
        """Unrealised P&L (USD) of the positions confirmed by fills, at the mark."""
        t = self.trading
        if t is None:
            return 0.0
        total = 0.0
        for p in t.book.positions:
            if not p.size:
                continue  # only exposure confirmed by fills has an entry price
            mark = t.strategy.markets[p.idx].mark_px
            if mark is not None:
                total += p.unrealized(mark)
        return total

    def status_doc(self) -> dict[str, Any]:
        doc = super().status_doc()
        t = self.trading
        if t is None:
            return doc
        doc.update({
            "positions": {p.coin: p.effective for p in t.book.positions if p.has_exposure},
            "entries": t.entries_sent, "flattens": t.flattens_sent, "trades": t.trades.total,
            "realized_pnl": round(sum(p.realized_pnl - p.fees for p in t.book.positions), 6),
            "unrealized_pnl": round(self.unrealized_pnl(), 6),
            "orders_active": sum(1 for _ in t.orders.active()),
            "orders_unknown": len(t.orders.unknown()),
            "ready_flags": dict(t.ready), "skips": {k: v for k, v in t.skips.items() if v},
            "unexplained": dict(t.unexplained),
            "killed": t.killed or self.stop_reason is not None,
            "equity_source": t.equity_source, "alert_states": t.alert_states()})
        doc["position_details"] = self._position_details()
        doc["pnl_unit"] = "USD"
        breakers = getattr(t, "breakers", None)
        if breakers is not None:
            doc["breakers"] = breakers.snapshot()
        if t.clock_offset_ms is not None:
            doc["clock"] = {"offset_ms": round(t.clock_offset_ms, 1),
                            "least_skew_ms": round(t.clock_skew_least_ms or 0.0, 1),
                            "skewed": t.clock_skewed}
        if self.deadman is not None:
            doc["dead_man"] = self.deadman.snapshot()
        if self.warmer is not None and "busy_poll" in doc:
            doc["busy_poll"]["core_warmer"] = attrs.asdict(self.warmer.stats())
        return doc

    def _position_details(self) -> dict[str, dict[str, Any]]:
        """Per open position: signed size, entry (average) price, mark, unrealised P&L (USD)
        and the market's szDecimals (the display precision of ``status``)."""
        t = self.trading
        out: dict[str, dict[str, Any]] = {}
        if t is None:
            return out
        for p in t.book.positions:
            if not p.has_exposure:
                continue
            m = t.strategy.markets[p.idx]
            mark = m.mark_px
            out[p.coin] = {
                "size": p.effective, "entry_px": p.avg_px if p.size else None,
                "mark_px": mark, "sz_decimals": m.spec.sz_decimals,
                "unrealized_pnl_usd": (None if mark is None or not p.size
                                       else round((mark - p.avg_px) * p.effective, 6))}
        return out

    def collect_metrics(self, m: Any) -> None:
        t = self.trading
        if t is None:
            return
        counts: dict[str, int] = {}
        for o in t.orders.by_cloid.values():
            counts[o.state] = counts.get(o.state, 0) + 1
        m.set_orders(counts)
        for p in t.book.positions:
            mark = t.strategy.markets[p.idx].mark_px or 0.0
            m.set_position(p.coin, p.effective, p.effective * mark)
        m.realized_pnl.set(sum(p.realized_pnl - p.fees for p in t.book.positions))
        m.fees.set(sum(p.fees for p in t.book.positions))
        m.unrealized_pnl.set(self.unrealized_pnl())
        m.fills.value = t.book.seen_tids.total
        m.set_flags(hard_stop=t.hard_stop.latched)
        breakers = getattr(t, "breakers", None)
        if breakers is not None:
            tripped = {tr.breaker for tr in breakers.tripped()}
            for name in ("daily_loss", "drawdown", "consecutive_losses", "market_move",
                         "reject_burst"):
                m.breaker_tripped.labels(name).set(1 if name in tripped else 0)

    def reset_from_operator(self, source: str) -> dict[str, Any]:
        """``POST /hardstop/reset``: the same as ``python -m engine reset-hard-stop``."""
        was = self.reset_hard_stop(self.clock(), source)
        return {"reset": was is not None, "was": was}

    def flatten_from_operator(self, source: str) -> dict[str, Any]:
        """``POST /flatten``: the same as ``python -m engine flatten`` (entries stay allowed)."""
        n = self.flatten_all(self.clock(), f"operator flatten via {source}")
        return {"flattening": n}

    def summary_line(self, frames_per_s: float) -> str:
        base = super().summary_line(frames_per_s)
        t = self.trading
        if t is None:
            return base
        pnl = sum(p.realized_pnl - p.fees for p in t.book.positions)
        hs = f"LATCHED({t.hard_stop.reason})" if t.hard_stop.latched else "off"
        line = (f"{base} | {t.mode}: entries {t.entries_sent} positions {t.open_positions()} "
                f"trades {t.trades.total} pnl {fmt_usd(pnl)} hard stop {hs}")
        cb = t.breakers
        tripped = ",".join(tr.breaker for tr in cb.tripped()) or "none tripped"
        line += (f" | breakers: {tripped}, equity {cb.equity:.2f} USD ({t.equity_source}) "
                 f"peak {cb.peak:.2f} USD")
        if self.warmer is not None:
            ws = self.warmer.stats()
            line += (f" | core warm-up: cycles {ws.cycles} rebuilds {ws.rebuilds}"
                     + (f" DISABLED ({ws.reason})" if ws.disabled else ""))
        return line

    def final_trading_summary(self) -> str:
        """The trading part of the ``stopped:`` line: entries, trades, P&L, open positions."""
        t = self.trading
        if t is None:
            return ""
        pnl = sum(p.realized_pnl - p.fees for p in t.book.positions)
        fees = sum(p.fees for p in t.book.positions)
        return (f"; {t.mode}: {t.entries_sent} entries, {t.trades.total} trades, P&L "
                f"{fmt_usd(pnl)} after {fmt_usd(fees, signed=False)} fees, "
                f"{t.open_positions()} position(s) open")


async def run_trading(cfg: EngineConfig, *, duration_s: float | None = None) -> int:
    app = TradingApp(cfg, duration_s=duration_s)
    return await app.run()

