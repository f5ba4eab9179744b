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
from urllib.parse import urlparse

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
from engine.config import EngineConfig, VenueConfig
from engine.core.core import ObserveCore, Signal
from engine.core.followups import FollowupBook
from engine.core.intents import (
    Alert,
    CancelOrder,
    Intent,
    PlaceOrder,
    QueryOrder,
    Record,
    RequestReconcile,
)
from engine.core.orders import CloidFactory
from engine.core.trading import TradingCore
from engine.core.types import MarketSpec
from engine.followups import FollowupScheduler
from engine.io.followup_recovery import recover_incomplete
from engine.io.journal import load_journal, restore
from engine.io.records import RecordWriter
from engine.secrets import SecretsError, load_agent_key
from engine.venues.hyperliquid.client import HyperliquidFeed, PostFailure
from engine.venues.hyperliquid.execution import NotSent, OrderExecutor, ReconcileError
from engine.venues.hyperliquid.nonce import NonceAllocator
from engine.venues.hyperliquid.signing import Signer
from engine.venues.hyperliquid.wire import OrderUpdate, UserFill
from engine.venues.paper import PaperVenue

log = logging.getLogger("engine.trading")
alert_log = logging.getLogger("engine.alert")

HOUSEKEEPING_MS = 100.0
RESET_FILE = "RESET_HARD_STOP"
"""Created by ``python -m engine reset-hard-stop`` in the records dir; consumed by the engine."""
_ALERT_LEVELS = {"warning": logging.WARNING, "error": logging.ERROR,
                 "critical": logging.CRITICAL}


class TradingHandler(CoreHandler):
    """Feed handler for the trading core: frames in, intents executed after each batch."""

    def __init__(self, app: TradingApp, trading: TradingCore, clock: Callable[[], float],
                 stats: RunStats) -> None:
        self.app = app
        self.trading = trading
        self.core = trading.obs
        self.clock = clock
        self.stats = stats
        self.index = {m.coin: m.index for m in trading.obs.markets}
        self._now: float | None = None

    def on_bbo(self, coin: str, time_ms: int, bid_px: float | None, bid_sz: float | None,
               ask_px: float | None, ask_sz: float | None) -> None:
        idx = self.index.get(coin)
        if idx is None:
            self.stats.unknown_coin_frames += 1
            return
        self.stats.frames_applied += 1
        now = self._batch_now()
        self.trading.on_bbo(idx, time_ms, bid_px, bid_sz, ask_px, ask_sz, now)
        if self.trading.out:  # an order (or record) right now: send before the next frame
            self.app.execute(now)

    def on_ctx(self, coin: str, oracle_px: float, mark_px: float | None) -> None:
        idx = self.index.get(coin)
        if idx is None:
            self.stats.unknown_coin_frames += 1
            return
        self.stats.frames_applied += 1
        now = self._batch_now()
        self.trading.on_ctx(idx, oracle_px, mark_px, now)
        if self.trading.out:
            self.app.execute(now)

    def on_order_updates(self, updates: list[OrderUpdate]) -> None:
        now = self._batch_now()
        for u in updates:
            self.trading.on_order_update(u.cloid, u.oid, u.status, u.sz, u.orig_sz, now)

    def on_user_fills(self, fills: list[UserFill], is_snapshot: bool) -> None:
        now = self._batch_now()
        for f in fills:
            self.trading.on_fill(str(f.tid), f.cloid, f.coin, f.side == "B", float(f.px),
                                 float(f.sz), float(f.fee), f.time, now, snapshot=is_snapshot)

    def on_user_channels_acked(self, acked: bool) -> None:
        self.trading.set_ready("user_channels", acked)
        if acked:
            self.app.request_reconcile()

    def on_disconnected(self, reason: str) -> None:
        self.trading.on_disconnect(self.clock())
        log_gate_events(self.core.drain_events())
        self.app.execute(self.clock())
        self.app.flush_signals()

    def on_batch_end(self) -> None:
        now = self._batch_now()
        self._now = None
        if self.core.events:
            log_gate_events(self.core.drain_events())
        self.app.execute(now)
        self.app.flush_signals()
        self.app.timer_poke()


class LiveBackend:
    """Trade mode: orders signed and sent over the venue WebSocket; answers fed to the core."""

    def __init__(self, app: TradingApp, trading: TradingCore, user: str) -> None:
        self.app = app
        self.trading = trading
        self.executor: OrderExecutor
        self.user = user
        self._querying: set[str] = set()

    def dispatch(self, intents: Iterable[Intent], now_ms: float) -> list[Intent]:
        rest: list[Intent] = []
        for it in intents:
            if isinstance(it, PlaceOrder):
                try:
                    self.executor.submit([it.order])
                except NotSent as exc:
                    self.trading.on_send_failed(it.order.cloid, now_ms, str(exc))
            elif isinstance(it, CancelOrder):
                self.app.spawn(self._cancel, it)
            elif isinstance(it, QueryOrder):
                if it.cloid not in self._querying:
                    self._querying.add(it.cloid)
                    self.app.spawn(self._query, it)
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

    # executor hooks (called from the feed's tasks)
    def on_sent(self, cloids: list[str]) -> None:
        now = self.app.clock()
        for c in cloids:
            self.trading.on_sent(c, now)
        self.app.execute(now)

    def on_result(self, cloid: str, status: object) -> None:
        now = self.app.clock()
        self.trading.on_post_result(cloid, status, now)
        self.app.execute(now)

    def on_not_sent(self, cloids: list[str], reason: str) -> None:
        now = self.app.clock()
        for c in cloids:
            self.trading.on_send_failed(c, now, reason)
        self.app.execute(now)


def is_real_mainnet(cfg: EngineConfig) -> bool:
    """The real Hyperliquid mainnet (not the simulator, not testnet)."""
    if cfg.sim.enabled:
        return False
    host = urlparse(cfg.venue.ws_url).hostname or ""
    return host.endswith("hyperliquid.xyz") and "testnet" not in host


class TradingApp(ObserveApp):
    """Paper (and, with a live backend, trade) mode on top of the observe shell."""

    def __init__(self, cfg: EngineConfig, *, duration_s: float | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(cfg, duration_s=duration_s, clock=clock)
        self.trading: TradingCore | None = None
        self.paper: PaperVenue | None = None
        self.backend: PaperVenue | LiveBackend | None = None
        self.signer: Signer | None = None
        self._nursery: trio.Nursery | None = None
        self._next_reset_check: float = 0.0
        self._pending_signals: list[Signal] = []
        self._reconcile_wakeup = trio.Event()
        self._timer_scope: trio.CancelScope | None = None
        self._flat: trio.Event | None = None
        self.alerts: list[Alert] = []

    # ------------------------------------------------------------ preflight
    def preflight(self) -> None:
        cfg = self.cfg
        if cfg.mode != "trade":
            return
        if not cfg.account.address:
            raise StartupError("trade mode needs [account] address (the master account whose "
                               "positions and fills are queried)", EXIT_CONFIG)
        if is_real_mainnet(cfg) and not cfg.trading.allow_live:
            raise StartupError("trade mode refuses Hyperliquid mainnet unless [trading] "
                               "allow_live = true", EXIT_CONFIG)
        try:
            self.signer = load_agent_key()
        except SecretsError as exc:
            raise StartupError(str(exc), EXIT_CONFIG) from None
        if self.signer.address.lower() == cfg.account.address.lower():
            log.warning("the agent key's address equals [account] address: use an API wallet "
                        "approved by the master account, not the master key itself")
        log.info("trade mode: agent %s signs for account %s", self.signer.address,
                 cfg.account.address)

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
        self._reconcile_wakeup.set()

    # ------------------------------------------------------------ build
    def _build(self, markets: list[MarketSpec], writer: RecordWriter) -> None:
        cfg = self.cfg
        if cfg.mode not in ("paper", "trade"):
            raise StartupError(f"TradingApp cannot run mode {cfg.mode!r}", EXIT_CONFIG)
        self.stats.started_ms = self.clock()
        core = ObserveCore(markets, cfg.gates, cfg.detector, cfg.sizing,
                           cfg.followups.offsets_ms, mode=cfg.mode)
        self.core = core
        trading = TradingCore(core, cfg, cloids=CloidFactory())
        # Signal records, followups and the log line run after the order left (execute()).
        trading.on_signal_hook = self._pending_signals.append
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
        handler = TradingHandler(self, trading, self.clock, self.stats)
        self.timer = None
        self._handler = handler
        coins = [m.coin for m in markets]
        if cfg.mode == "paper":
            self.paper = PaperVenue(trading, cfg.paper.latency_ms, cfg.paper.taker_fee_bps,
                                    tid_prefix=f"paper-{core.boot_id}")
            self.backend = self.paper
            # Paper has no user channels to ack; reconcile against the paper venue's own book.
            self.paper.seed_positions({p.coin: p.effective for p in trading.book.positions})
            trading.set_ready("user_channels", True)
            trading.on_reconcile(self.paper.positions(), self.paper.open_orders(), now)
            self.feed = HyperliquidFeed(self._venue_cfg(), coins, handler)
        else:
            assert self.signer is not None
            user = cfg.account.address.lower()
            self.feed = HyperliquidFeed(self._venue_cfg(), coins, handler, user=user)
            live = LiveBackend(self, trading, user)
            executor = OrderExecutor(self.feed, self.signer, NonceAllocator(),
                                     is_mainnet=cfg.sim.enabled or "testnet" not in self.ws_url,
                                     post_timeout_s=cfg.venue.post_timeout_s,
                                     clock=self.clock, on_sent=live.on_sent,
                                     on_result=live.on_result, on_not_sent=live.on_not_sent)
            live.executor = executor
            self.backend = live
            self.executor = executor
        self.execute(now)
        self.check_reset_file(now)

    def _venue_cfg(self) -> VenueConfig:
        return attrs.evolve(self.cfg.venue, ws_url=self.ws_url, info_url=self.info_url)

    def _start_tasks(self, nursery: trio.Nursery, writer: RecordWriter) -> None:
        assert self.scheduler and self.feed
        self._nursery = nursery
        if self.cfg.mode == "trade":
            nursery.start_soon(self._reconcile_task, name="reconcile")
        nursery.start_soon(writer.run, name="writer")
        nursery.start_soon(self.scheduler.run, name="followups")
        nursery.start_soon(self._timer_task, name="trading-timer")
        nursery.start_soon(self.feed.run, name="feed")
        nursery.start_soon(self._summary_task, name="summary")

    # ------------------------------------------------------------ intents
    def execute(self, now_ms: float) -> None:
        """Run the core's intents to completion (venue-bound ones go to the backend)."""
        trading, backend, writer = self.trading, self.backend, self.writer
        assert trading is not None and backend is not None and writer is not None
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

    def _before_close(self) -> None:
        if self.writer is not None and self.scheduler is not None:
            self.flush_signals()

    def flush_signals(self) -> None:
        """Signal records, followup scheduling and log lines, once the batch's orders left."""
        if self._pending_signals:
            # the core's hook holds this very list: empty it in place, never replace it
            pending = self._pending_signals[:]
            self._pending_signals.clear()
            for sig in pending:
                self.handle_signal(sig)

    def _handle(self, it: Intent, now_ms: float) -> None:
        assert self.writer is not None and self.trading is not None
        if isinstance(it, Record):
            self.writer.write(it.kind, it.ts_ms, it.record)
        elif isinstance(it, Alert):
            self.alerts.append(it)
            if len(self.alerts) > 1000:
                del self.alerts[:500]
            alert_log.log(_ALERT_LEVELS.get(it.level, logging.WARNING), "%s: %s", it.code,
                          it.message)
        elif isinstance(it, RequestReconcile):
            if self.paper is not None:
                self.trading.on_reconcile(self.paper.positions(), self.paper.open_orders(),
                                          now_ms)
            else:
                self.request_reconcile()

    # ------------------------------------------------------------ timers
    def timer_poke(self) -> None:
        scope = self._timer_scope
        if scope is None:
            return
        deadline = self._deadline(self._next_due())
        if deadline < scope.deadline:
            scope.deadline = deadline

    def _next_due(self) -> float:
        assert self.trading is not None and self.backend is not None
        dues = [self.clock() + HOUSEKEEPING_MS]
        d = self.trading.obs.next_timer_ms()
        if d is not None:
            dues.append(d)
        d = self.backend.next_due_ms()
        if d is not None:
            dues.append(d)
        return min(dues)

    def _deadline(self, due_ms: float) -> float:
        return trio.current_time() + max(0.0, due_ms - self.clock()) / 1000.0

    async def _reconcile_task(self) -> None:
        """Positions and open orders from the venue (with the dex parameter) vs ours."""
        trading = self.trading
        assert trading is not None
        user = self.cfg.account.address.lower()
        interval = self.cfg.trading.reconcile_interval_s
        while True:
            with trio.move_on_after(interval):
                await self._reconcile_wakeup.wait()
            self._reconcile_wakeup = trio.Event()
            if self.feed is None or not self.feed.connected:
                continue
            try:
                positions, open_orders = await self.executor.reconcile_snapshot(
                    user, self.cfg.venue.dex)
            except (ReconcileError, PostFailure) as exc:
                log.warning("reconciliation failed: %s; retrying", exc)
                await trio.sleep(1.0)
                self._reconcile_wakeup.set()
                continue
            now = self.clock()
            first = not trading.ready["reconciled"]
            trading.on_reconcile(positions, open_orders, now)
            if first:
                log.info("reconciled with the venue: %d position(s), %d open order(s)",
                         sum(1 for v in positions.values() if v), len(open_orders))
            self.execute(now)

    async def _timer_task(self) -> None:
        trading, paper = self.trading, self.backend
        assert trading is not None and paper is not None
        while True:
            with trio.CancelScope() as scope:
                scope.deadline = self._deadline(self._next_due())
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            now = self.clock()
            if now >= self._next_reset_check:
                self._next_reset_check = now + 1000.0
                self.check_reset_file(now)
            paper.on_timer(now)
            trading.on_timer(now)
            if trading.obs.events:
                log_gate_events(trading.obs.drain_events())
            self.execute(now)
            self.flush_signals()

    def check_reset_file(self, now_ms: float) -> None:
        """The explicit operator reset of the hard stop (see ``python -m engine
        reset-hard-stop``): consume the request file, reset the latch, journal it."""
        trading = self.trading
        path = self.records_dir / RESET_FILE
        if trading is None or not path.exists():
            return
        try:
            path.unlink()
        except OSError as exc:
            log.error("cannot remove %s (%s): hard stop not reset", path, exc.strerror)
            return
        reason = trading.reset_hard_stop(now_ms)
        if reason is None:
            log.warning("hard stop reset requested, but it was not latched")
        else:
            log.warning("hard stop reset by the operator (was: %s)", reason)
        self.execute(now_ms)

    # ------------------------------------------------------------ stop
    async def graceful_stop(self) -> None:
        """Kill switch on: no new entries, flatten everything reduce-only; wait for flat."""
        trading = self.trading
        if trading is None:
            self.stop()
            return
        now = self.clock()
        self._flat = trio.Event()
        trading.kill(now, "graceful stop", level="warning")
        self.execute(now)
        with trio.move_on_after(15):
            await self._flat.wait()
        if not trading.flat():
            log.critical("stopping with open positions: %s",
                         {p.coin: p.effective for p in trading.book.positions if p.has_exposure})
        self.stop()

    def summary_line(self, frames_per_s: float) -> str:
        base = super().summary_line(frames_per_s)
        t = self.trading
        if t is None:
            return base
        pnl = sum(p.realized_pnl - p.fees for p in t.book.positions)
        hs = f"LATCHED({t.hard_stop.reason})" if t.hard_stop.latched else "off"
        return (f"{base} | {t.mode}: entries {t.entries_sent} positions {t.open_positions()} "
                f"trades {len(t.trades)} pnl {pnl:+.4f} hard stop {hs}")


async def run_trading(cfg: EngineConfig, *, duration_s: float | None = None) -> int:
    app = TradingApp(cfg, duration_s=duration_s)
    return await app.run()

