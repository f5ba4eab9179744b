"""The Trio shell of observe mode: root nursery, tasks, signal handling and orderly shutdown.

Tasks (each owned by the root nursery):

* ``sim``        the embedded exchange simulator, when ``[sim] enabled`` (default run);
* ``feed``       the Hyperliquid WebSocket client; frames are decoded and handed to the core
                 synchronously in the same task (no channel hop on the hot path);
* ``detector-timer`` wakes the core when a market's quote-lag window opens;
* ``followups``  the single followup scheduler task;
* ``writer``     flush/fsync/retry loop of the JSON Lines record writer;
* ``summary``    the one-line live summary;
* ``signals``    SIGINT/SIGTERM → cancel everything.

Shutdown: cancellation reaches every task; the followup scheduler writes every pending offset as
MISSED ``shutdown``; then the writer flushes and fsyncs. Startup recovery writes MISSED
``restart`` records for followups a previous run could not finish.
"""

from __future__ import annotations

import gc
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from engine.backoff import exponential_delay
from engine.clock import WallClock, trio_deadline
from engine.config import EngineConfig
from engine.core.core import GateTransition, Signal
from engine.core.followups import FollowupBook
from engine.core.gates import HALT, NO_DATA
from engine.core.types import MarketSpec
from engine.deadline import DeadlineSleeper
from engine.followups import FollowupScheduler
from engine.io.followup_recovery import recover_incomplete
from engine.io.frames import FrameRecorder, frames_dir
from engine.io.records import RecordWriter
from engine.ops.health import HealthInputs
from engine.ops.paths import kill_env_set, kill_file_path, resolve_state_dir
from engine.startup import (  # noqa: F401 - re-exported: the shell's callers import them here
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_RUNTIME,
    StartupError,
    begin_stop,
    check_records_dir,
    close_run_files,
    lock_records_dir,
    probe_tcp_port,
    run_locked,
    sole_startup_error,
)
from engine.strategies.dislocation import DislocationStrategy
from engine.venues.base import (
    BatchContext,
    FeedOptions,
    InfoRecorder,
    InstrumentProvider,
    InstrumentsRefused,
    InstrumentsUnreachable,
    MarketDataFeed,
    VenueFactory,
)
from engine.venues.registry import shell_factory

if TYPE_CHECKING:
    from engine.ops.service import OpsService

log = logging.getLogger("engine.app")
signal_log = logging.getLogger("engine.signal")
gate_log = logging.getLogger("engine.gates")
summary_log = logging.getLogger("engine.summary")

@attrs.define
class RunStats:
    """Shell-level counters for the summary line and the tests."""

    frames_applied: int = 0
    unknown_coin_frames: int = 0
    signals: int = 0
    started_ms: float = 0.0


class CoreHandler:
    """Feed handler: hands each decoded frame to the strategy plug-in (its indexed face:
    ``on_book_top`` / ``on_oracle`` by market index) with one receive time per batch.

    ``batch`` is the explicit context of the read being dispatched (its receive time, set at
    the batch's first use and cleared at its end); the app reads it, never the handler."""

    def __init__(self, strategy: DislocationStrategy, clock: Callable[[], float],
                 on_signal: Callable[[Signal], None], timer: DetectorTimer,
                 stats: RunStats, batch: BatchContext | None = None) -> None:
        self.strategy = strategy
        self.core = strategy  # (its market state: disconnects, gate events)
        self.clock = clock
        self.on_signal = on_signal
        self.timer = timer
        self.stats = stats
        self.index = {c: i for i, c in enumerate(strategy.symbols)}
        self.batch = batch if batch is not None else BatchContext()
        self.app: Any = None  # the owning app (ops hooks); TradingHandler narrows it

    def _batch_now(self) -> float:
        b = self.batch
        now = b.now
        if now is None:
            now = b.now = self.clock()
        return now

    def on_bbo(self, coin: str, time_ms: int, bid_px: float | None, bid_sz: float | None,
               ask_px: float | None, ask_sz: float | None) -> None:
        idx = self.index.get(coin)
        if idx is None:
            self.stats.unknown_coin_frames += 1
            return
        self.stats.frames_applied += 1
        batch = self.batch  # self._batch_now(), inline
        now = batch.now
        if now is None:
            now = batch.now = self.clock()
        sig = self.strategy.on_book_top(idx, time_ms, bid_px, bid_sz, ask_px, ask_sz, now)
        if sig is not None:
            self.on_signal(sig)

    def on_ctx(self, coin: str, oracle_px: float, mark_px: float | None) -> None:
        idx = self.index.get(coin)
        if idx is None:
            self.stats.unknown_coin_frames += 1
            return
        self.stats.frames_applied += 1
        batch = self.batch  # self._batch_now(), inline
        now = batch.now
        if now is None:
            now = batch.now = self.clock()
        sig = self.strategy.on_oracle(idx, oracle_px, mark_px, now)
        if sig is not None:
            self.on_signal(sig)

    def on_connected(self) -> None:
        log.info("feed connected; subscribing %d markets", len(self.index))

    def on_disconnected(self, reason: str) -> None:
        self.core.on_disconnect(self.clock())
        log_gate_events(self.core.drain_events())
        if self.app is not None and self.app.ops is not None:
            self.app.ops.on_disconnected(reason)

    def on_subscribed(self, sub_type: str, coin: str | None) -> None:
        return None

    def on_batch_end(self) -> None:
        self.batch.now = None
        if self.core.events:
            log_gate_events(self.core.drain_events())
        self.timer.poke()


class DetectorTimer:
    """Calls the strategy's ``on_timer`` when its ``next_timer_ms`` comes (a quote-lag window
    opens), so quiet markets are still seen."""

    def __init__(self, core: DislocationStrategy, clock: Callable[[], float],
                 on_signal: Callable[[Signal], None]) -> None:
        self.core = core
        self.clock = clock
        self.on_signal = on_signal
        self._sleeper = DeadlineSleeper()
        self.wakeups = 0

    def _deadline(self, due_ms: float) -> float:
        return trio_deadline(self.clock, due_ms)

    def poke(self) -> None:
        """Pull the wake-up earlier if the core now has an earlier timer (cheap, no await)."""
        sleeper = self._sleeper
        if not sleeper.sleeping:
            return
        due = self.core.next_timer_ms()
        if due is None:
            return
        sleeper.pull_in(self._deadline(due))

    async def run(self) -> None:
        core, sleeper = self.core, self._sleeper
        while True:
            due = core.next_timer_ms()
            await sleeper.sleep_until(self._deadline(due) if due is not None else math.inf)
            self.fire(self.clock())

    def fire(self, now_ms: float) -> None:
        """One wake-up: the core's due quote-lag windows (live task and replay)."""
        core = self.core
        self.wakeups += 1
        for sig in core.on_timer(now_ms):
            self.on_signal(sig)
        if core.events:
            log_gate_events(core.drain_events())


#: a gate block is routine (INFO) until it has lasted this long; then one WARNING
GATE_BLOCK_WARN_MS = 30_000.0


def log_gate_events(events: list[GateTransition]) -> None:
    """Log gate pass↔block transitions at INFO: a block of a second or two is routine on thin
    books (a block that lasts is warned about by :meth:`ObserveApp.warn_lasting_gate_blocks`);
    data-availability ones at DEBUG: the feed logs those."""
    for ev in events:
        if ev.gate == NO_DATA or (ev.gate is None and ev.previous == NO_DATA):
            gate_log.debug("%s gate %s -> %s", ev.coin, ev.previous, ev.gate)
        elif ev.gate is not None:
            gate_log.info("gate block started: market=%s gate=%s %s", ev.coin, ev.gate,
                          ev.detail)
        else:
            gate_log.info("gate block ended: market=%s gate=%s after %.0f ms", ev.coin,
                          ev.previous, ev.blocked_for_ms)


async def discover_markets(cfg: EngineConfig, instruments: InstrumentProvider[MarketSpec],
                           info_url: str, attempts: int = 5) -> list[MarketSpec]:
    """The venue's instruments (:class:`~engine.venues.base.InstrumentProvider`); retry
    transport failures, fail fast on config mismatches (``info_url``: for the message)."""
    for attempt in range(1, attempts + 1):
        delay = exponential_delay(attempt - 1, 1.0, 30.0)
        try:
            return list(await instruments.discover())
        except InstrumentsRefused as exc:
            raise StartupError(f"market discovery failed: {exc}; check {exc.config_key}",
                               EXIT_CONFIG) from None
        except InstrumentsUnreachable as exc:
            if attempt == attempts:
                where = ("the embedded simulator" if cfg.sim.enabled
                         else "[venue] info_url (ENGINE__VENUE__INFO_URL) and the network")
                raise StartupError(f"venue info endpoint unreachable at {info_url} after "
                                   f"{attempts} attempts: {exc}; check {where}",
                                   EXIT_RUNTIME) from None
            log.warning("info request failed (%s); retrying in %.0f s (%d/%d)", exc, delay,
                        attempt, attempts)
            await trio.sleep(delay)
    raise AssertionError("unreachable")


class ObserveApp:
    """Owns every component of one observe run (built in :meth:`run`).

    The venue's pieces come from its factory in :mod:`engine.venues.registry`
    (``venue_name``): the instruments at start, the market-data feed in :meth:`build`."""

    venue_name = "hyperliquid"

    def __init__(self, cfg: EngineConfig, *, duration_s: float | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.cfg = cfg
        self.duration_s = duration_s
        self.clock = clock or WallClock()
        self.stats = RunStats()
        self.records_dir = Path(cfg.records.dir)
        self.core: DislocationStrategy | None = None  # the strategy plug-in
        self.writer: RecordWriter | None = None
        self.scheduler: FollowupScheduler | None = None
        self.venue: VenueFactory = shell_factory(self.venue_name)
        self.feed: MarketDataFeed | None = None
        self.timer: DetectorTimer | None = None
        self.sim: Any = None
        self.ws_url = cfg.venue.ws_url
        self.info_url = cfg.venue.info_url
        self.ready = trio.Event()
        self._cancel: trio.CancelScope | None = None
        self._root: trio.Nursery | None = None
        self._built = False  # the start got past the build (a failed start records nothing)
        self.state_dir = resolve_state_dir(cfg)
        self.kill_path = kill_file_path(cfg)
        self.kill_at_start: str | None = None
        self.stop_reason: str | None = None
        self.exit_code = EXIT_OK
        self.ops: OpsService | None = None
        self.batch = BatchContext()  # the frame batch being dispatched (the handler's)
        self.handler: CoreHandler | None = None
        self._lasting_blocks: set[tuple[str, float]] = set()
        self.recorder: FrameRecorder | None = None  # [recording]
        # replay: fixed run identity (signal ids, cloids) so outputs are byte-identical
        self.boot_id: str | None = None
        self.cloid_boot: bytes | None = None

    # ------------------------------------------------------------ signals
    def handle_signal(self, sig: Signal) -> None:
        assert self.writer is not None and self.scheduler is not None
        f = sig.fields
        self.stats.signals += 1
        if self.ops is not None:
            t0 = self.batch.now
            self.ops.on_signal(f["market_key"], f["side"],
                               None if t0 is None else (self.clock() - t0) / 1000.0)
        self.writer.write("signals", f["timestamp_ms"], f)
        self.scheduler.schedule(sig.signal_id, f["market_key"], f["side"], f["timestamp_ms"],
                                f["oracle_px"], f["best_px"], f["raw_edge_bps"],
                                self.cfg.followups.offsets_ms)
        signal_log.info(
            "signal %s %s raw=%.2fbps thr=%.2fbps net=%.2fbps oracle=%s best=%s size=%s "
            "age=%sms conf=%.2f trigger=%s id=%s",
            f["market_key"], f["side"], f["raw_edge_bps"], f["threshold_bps"], f["net_edge_bps"],
            f["oracle_px"], f["best_px"], f["suggested_size"],
            "?" if f["oracle_age_ms"] is None else f"{f['oracle_age_ms']:.0f}",
            f["confidence"], f["trigger"], f["signal_id"],
            extra={"market": f["market_key"], "side": f["side"], "signal_id": f["signal_id"]})

    def stop(self) -> None:
        """Cancel every task now (the last step of a stop; tests use it to simulate a crash)."""
        if self._cancel is not None:
            self._cancel.cancel()

    def request_stop(self, reason: str) -> bool:
        """Start the graceful stop (kill switch semantics) once; later requests are ignored.

        Every stop path comes here: SIGTERM/SIGINT, the kill file, ``POST /kill``, the run
        duration. Returns False when a stop was already under way.
        """
        return begin_stop(self, reason, self._root, self._stop_task)

    async def _stop_task(self, reason: str) -> None:
        log.warning("stopping: %s", reason)
        with trio.move_on_after(self.cfg.ops.kill_flat_timeout_s + 15.0):
            await self.graceful_stop(reason)
        self.stop()

    def kill_requested(self) -> str | None:
        """Why the engine must not trade (kill file present / ENGINE_KILL=1), or None."""
        if self.kill_path.exists():
            return f"kill file {self.kill_path} exists"
        return None

    # ---------------------------------------------------------------- run
    def preflight(self) -> None:
        """Checks that must pass before any connection (raise StartupError)."""

    async def verify_venue(self) -> None:
        """Checks of the venue itself before discovery (raise StartupError); trading only."""

    def _warn_split_state(self) -> None:
        """Under systemd the kill file is in $STATE_DIRECTORY; an operator's shell command
        (no $STATE_DIRECTORY) looks in [records] dir: they must be the same directory."""
        state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        if not state or self.cfg.ops.state_dir:
            return
        try:
            same = Path(state).resolve() == self.records_dir.resolve()
        except OSError:
            same = False
        if not same:
            log.warning("kill file and request files are in $STATE_DIRECTORY (%s) but [records] "
                        "dir is %s: commands run from a shell (kill, flatten, reset-hard-stop) "
                        "would look in the records dir; set [records] dir or [ops] state_dir "
                        "to %s in the config file", state, self.records_dir, state)

    def _check_kill_at_start(self) -> None:
        why = self.kill_requested()
        if why is None and kill_env_set():
            why = "ENGINE_KILL=1 in the environment"
        if why is not None:
            self.kill_at_start = why
            log.critical("kill switch on at start (%s): no trading; open positions are "
                         "flattened and the engine exits. Remove it to trade again "
                         "(python -m engine kill --clear).", why)

    async def run(self) -> int:
        self._warn_split_state()
        self._check_kill_at_start()
        self.preflight()
        return await run_locked(self)

    # -- the steps of engine.startup.run_locked (records dir locked, signals watched)
    def open_run(self) -> None:
        """The ops host (its credentials), the record writer and the frame recorder."""
        from engine.ops.service import OpsService, SecretsError

        cfg = self.cfg
        try:
            self.ops = OpsService(self)
        except SecretsError as exc:
            raise StartupError(f"ops credentials: {exc}", EXIT_CONFIG) from None
        rec = cfg.records
        self.writer = RecordWriter(self.records_dir, flush_interval_ms=rec.flush_interval_ms,
                                   fsync_interval_ms=rec.fsync_interval_ms,
                                   max_pending_records=rec.max_pending_records,
                                   clock=self.clock)
        self.recorder = self._make_recorder()
        self._built = False

    def bind_root(self, nursery: trio.Nursery, cancel: trio.CancelScope) -> None:
        self._root, self._cancel = nursery, cancel

    async def start_run(self, nursery: trio.Nursery) -> None:
        """Inside the root nursery, the ops port bound: simulator, discovery, the build,
        the tasks; READY."""
        cfg, writer = self.cfg, self.writer
        assert writer is not None
        if cfg.sim.enabled:
            await self._start_sim(nursery)
        await self.verify_venue()
        markets = await discover_markets(
            cfg, self.venue.instruments(cfg, info_url=self.info_url,
                                        record=self._info_recorder()),
            self.info_url)
        self.build(markets, writer)
        self._built = True
        if self.recorder is not None:
            # started once the start has succeeded: a failed start (unknown market,
            # unreachable venue) writes no frames file either
            nursery.start_soon(self.recorder.run, name="frames-recorder")
        if self.feed is not None:
            self.feed.recorder = self.recorder
            self.feed.wall_clock = lambda: self.clock() / 1000.0
        # Long-lived startup objects leave the GC's generations: fewer, shorter
        # full collections on the hot path.
        gc.collect()
        gc.freeze()
        self._start_tasks(nursery, writer)
        if self.duration_s is not None:
            nursery.start_soon(self._stop_after, self.duration_s, name="duration")
        nursery.start_soon(self._control_task, name="control-files")
        self.ready.set()
        if self.kill_at_start is not None:
            self.request_stop(f"kill switch on at start ({self.kill_at_start})")

    def close_run(self) -> None:
        """Followups MISSED ``shutdown``, records flushed and closed, the final line."""
        self.before_close()
        if self.scheduler is not None:
            self.scheduler.shutdown(self.clock())
        close_run_files(self.writer, self.recorder, built=self._built)
        self._log_final()

    def before_close(self) -> None:
        """Last synchronous work before followups are closed and files flushed (the end of
        :meth:`run`, and of a replay)."""

    def _info_recorder(self) -> InfoRecorder | None:
        return self.recorder.info if self.recorder is not None else None

    def _feed_options(self, **options: Any) -> FeedOptions:
        """The shell's endpoints (the embedded simulator's when it runs) plus ``options``."""
        return FeedOptions(ws_url=self.ws_url, info_url=self.info_url, **options)

    def _make_recorder(self) -> FrameRecorder | None:
        """``[recording] enabled``: the frame recorder (``<records dir>/frames/``)."""
        rc = self.cfg.recording
        if not rc.enabled:
            return None
        offset_ms = getattr(self.clock, "offset_ms", None)  # a WallClock's anchor
        anchor = None if offset_ms is None else int(round(offset_ms * 1e6))
        cfg = self.cfg
        return FrameRecorder(frames_dir(self.records_dir), flush_interval_ms=rc.flush_interval_ms,
                             level=rc.level, anchor_ns=anchor, max_pending=rc.max_pending,
                             header={"mode": cfg.mode, "dex": cfg.venue.dex,
                                     "markets": cfg.venue.markets,
                                     "sim": cfg.sim.enabled})

    def _start_tasks(self, nursery: trio.Nursery, writer: RecordWriter) -> None:
        assert self.scheduler and self.feed and self.timer
        nursery.start_soon(writer.run, name="writer")
        nursery.start_soon(self.scheduler.run, name="followups")
        nursery.start_soon(self.timer.run, name="detector-timer")
        nursery.start_soon(self.feed.run, name="feed")
        nursery.start_soon(self._summary_task, name="summary")

    async def graceful_stop(self, reason: str = "stop requested") -> None:
        """Stop: observe mode has nothing to unwind, so cancel at once."""
        self.stop()

    async def _control_task(self) -> None:
        """Poll the operator's control files once a second (kill file; trading: requests)."""
        while True:
            await trio.sleep(1.0)
            self.poll_control_files()

    def poll_control_files(self) -> None:
        why = self.kill_requested()
        if why is not None:
            self.request_stop(f"kill switch: {why}")
        self.warn_lasting_gate_blocks(self.clock())

    def warn_lasting_gate_blocks(self, now_ms: float) -> None:
        """One WARNING per gate block that has lasted :data:`GATE_BLOCK_WARN_MS` (configured
        halts and missing data excepted: those are reported elsewhere)."""
        core = self.core
        if core is None:
            return
        current: set[tuple[str, float]] = set()
        for m in core.markets:
            gate = m.blocked_by
            if gate is None or gate in (NO_DATA, HALT):
                continue
            key = (m.coin, m.blocked_since_ms)
            current.add(key)
            lasted = now_ms - m.blocked_since_ms
            if lasted >= GATE_BLOCK_WARN_MS and key not in self._lasting_blocks:
                self._lasting_blocks.add(key)
                gate_log.warning("gate block lasting: market=%s gate=%s blocked for %.0f s %s",
                                 m.coin, gate, lasted / 1000.0, m.block_detail,
                                 extra={"market": m.coin, "reason": gate})
        self._lasting_blocks &= current

    def build(self, markets: list[MarketSpec], writer: RecordWriter) -> None:
        """Build the run's synchronous parts over the discovered ``markets``: the strategy, the
        followup scheduler (recovering a previous run's incomplete followups), the feed
        handler and the market-data feed. :meth:`run` calls it; replay calls it with its own
        clock and writer and then drives the same objects without Trio tasks."""
        cfg = self.cfg
        self.stats.started_ms = self.clock()
        core = DislocationStrategy.from_config(markets, cfg, boot_id=self.boot_id)
        self.core = core
        fu = cfg.followups
        book = FollowupBook(max_ctx_age_ms=fu.max_ctx_age_ms, max_bbo_age_ms=fu.max_bbo_age_ms,
                            max_pending=fu.max_pending)
        self.scheduler = FollowupScheduler(book, writer, core.view, self.clock)
        missed, reschedule = recover_incomplete(self.records_dir, self.clock())
        if missed or reschedule:
            log.warning("recovery: %d followup offset(s) from a previous run written as MISSED "
                        "(restart); %d signal(s) rescheduled", len(missed), len(reschedule))
        self.scheduler.restore(missed, reschedule)
        self.timer = DetectorTimer(core, self.clock, self.handle_signal)
        handler = CoreHandler(core, self.clock, self.handle_signal, self.timer, self.stats,
                              self.batch)
        handler.app = self
        self.handler = handler
        self.feed = self.venue.market_data(cfg, [m.coin for m in markets], handler,
                                           self._feed_options())

    async def _start_sim(self, nursery: trio.Nursery) -> None:
        from engine.sim.server import SimExchange

        s = self.cfg.sim
        sim = SimExchange(seed=s.seed, n_markets=s.markets, host=s.host, port=s.port,
                          **self.sim_accounts())
        port = await nursery.start(sim.serve)
        self.sim = sim
        self.info_url = f"http://{s.host}:{port}/info"
        self.ws_url = f"ws://{s.host}:{port}/ws"
        log.info("embedded simulator listening on http://%s:%d (seed %d, %d markets)", s.host,
                 port, s.seed, s.markets)

    def sim_accounts(self) -> dict[str, Any]:
        """Extra simulator arguments (trade mode funds the account and approves the agent)."""
        return {}

    async def _stop_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self.request_stop(f"run duration of {seconds:.0f} s reached")

    # ------------------------------------------------------------ ops views
    def is_ready(self) -> bool:
        """Observe: connected, and data for every market not halted."""
        core, feed = self.core, self.feed
        if core is None or feed is None or not feed.stats.connected:
            return False
        return all(m.fresh_bbo and m.fresh_ctx for m in core.markets if m.halted is None)

    def ready_detail(self) -> str:
        """The READY line's subject: the number of markets traded (observed)."""
        return f"{len(self.core.markets) if self.core is not None else 0} markets"

    def _data_age_s(self, now_ms: float) -> float | None:
        """The oldest of the per-market freshest-frame ages (markets not halted)."""
        core = self.core
        if core is None:
            return None
        worst: float | None = None
        for m in core.markets:
            if m.halted is not None:
                continue
            times = [t for t in (m.bbo_recv_ms, m.ctx_recv_ms) if t is not None]
            if not times:
                return None
            age = max(0.0, (now_ms - max(times)) / 1000.0)
            worst = age if worst is None or age > worst else worst
        return worst

    def health_inputs(self, loop_lag_ms: float | None, writer_errors: int) -> HealthInputs:
        core, feed, writer = self.core, self.feed, self.writer
        return HealthInputs(
            ready=self.is_ready(), mode=self.cfg.mode,
            markets_total=len(core.markets) if core is not None else 0,
            max_market_data_age_s=self._data_age_s(self.clock()),
            feed_connected=feed is not None and feed.stats.connected,
            oldest_unresolved_order_age_s=self._oldest_unresolved_s(),
            unresolved_order_bound_s=self.cfg.trading.unknown_timeout_ms / 1000.0,
            writer_pending=writer.pending if writer is not None else 0,
            writer_max_pending=self.cfg.ops.health_max_writer_pending,
            writer_errors_recent=writer_errors, hard_stop=self._hard_stop_reason(),
            killed=self.stop_reason is not None, event_loop_lag_ms=loop_lag_ms)

    def _oldest_unresolved_s(self) -> float | None:
        return None

    def _hard_stop_reason(self) -> str | None:
        return None

    def status_doc(self) -> dict[str, Any]:
        """The app's part of ``/status`` (the ops service adds health and uptime)."""
        core, feed, sched = self.core, self.feed, self.scheduler
        doc: dict[str, Any] = {
            "mode": self.cfg.mode, "ready": self.is_ready(), "stopping": self.stop_reason,
            "killed": self.stop_reason is not None, "hard_stop": self._hard_stop_reason(),
            "kill_file": str(self.kill_path), "kill_file_present": self.kill_path.exists(),
            "signals": self.stats.signals, "records_dir": str(self.records_dir.resolve())}
        if core is not None:
            doc["markets"] = len(core.markets)
            doc["markets_live"] = core.markets_live()
            doc["markets_passing"] = core.markets_passing()
            doc["gates_blocking"] = {m.coin: m.blocked_by for m in core.markets
                                     if m.blocked_by is not None}
        if feed is not None:
            fs = feed.stats
            doc["feed"] = {"connected": fs.connected, "reconnects": fs.reconnects,
                           "malformed": fs.malformed, "frames": fs.frames_total}
            if self.cfg.venue.busy_poll_us > 0:
                bp = feed.busy_poll_stats
                doc["busy_poll"] = {"busy_poll_us": self.cfg.venue.busy_poll_us,
                                    "spins": bp.busy_polls, "kernel_waits": bp.busy_poll_timeouts,
                                    "warm_ups": bp.spin_hooks,
                                    "warm_up_hook": feed.spin_hook is not None}
        if sched is not None:
            st = sched.stats
            doc["followups"] = {"pending": st.pending, "captured": st.written_captured,
                                "missed": st.written_missed}
        rec = self.recorder
        if rec is not None:
            rs = rec.stats
            doc["recording"] = {"dir": str(rec.dir.resolve()), "frames_in": rs.frames_in,
                                "frames_out": rs.frames_out, "bytes": rec.bytes_written,
                                "dropped": rs.dropped, "write_errors": rs.write_errors}
        return doc

    def collect_metrics(self, m: Any) -> None:
        """Mode-specific gauges at scrape time (trading: orders, positions, P&L)."""

    def reset_from_operator(self, source: str) -> dict[str, Any]:
        """``POST /hardstop/reset``: observe mode has no hard stop."""
        return {"reset": False, "detail": f"{self.cfg.mode} mode has no hard stop"}

    def flatten_from_operator(self, source: str) -> dict[str, Any]:
        """``POST /flatten``: observe mode has no positions."""
        return {"flattening": 0, "detail": f"{self.cfg.mode} mode has no positions"}

    def summary_line(self, frames_per_s: float) -> str:
        core, feed, sched, writer = self.core, self.feed, self.scheduler, self.writer
        assert core and feed and sched and writer
        fs = feed.stats
        st = sched.stats
        return (
            f"markets live {core.markets_live()}/{len(core.markets)} "
            f"passing {core.markets_passing()} | frames {frames_per_s:,.0f}/s | "
            f"signals {self.stats.signals} | followups pending {st.pending_offsets} "
            f"written {st.written_captured + st.written_missed} "
            f"(missed {st.written_missed}) | reconnects {fs.reconnects} "
            f"malformed {fs.malformed} | data {self.records_dir.resolve()}"
        ) + self._busy_poll_summary()

    def _busy_poll_summary(self) -> str:
        feed = self.feed
        if self.cfg.venue.busy_poll_us <= 0 or feed is None:
            return ""
        bp = feed.busy_poll_stats
        hook = "on" if feed.spin_hook is not None else "off"
        return (f" | busy-poll: spins {bp.busy_polls} kernel waits {bp.busy_poll_timeouts} "
                f"warm-ups {bp.spin_hooks} ({hook})")

    async def _summary_task(self) -> None:
        interval = self.cfg.summary.interval_s
        if interval <= 0:
            return
        last_frames = self.stats.frames_applied
        last_t = self.clock()
        while True:
            await trio.sleep(interval)
            now = self.clock()
            frames = self.stats.frames_applied
            rate = (frames - last_frames) / max((now - last_t) / 1000.0, 1e-9)
            last_frames, last_t = frames, now
            summary_log.info("%s", self.summary_line(rate))

    def _log_final(self) -> None:
        if self.scheduler is None or self.writer is None:
            return
        st = self.scheduler.stats
        log.info("stopped: %d signals, %d followups captured, %d missed%s; records flushed to %s",
                 self.stats.signals, st.written_captured, st.written_missed,
                 self.final_trading_summary(), self.records_dir.resolve())

    def final_trading_summary(self) -> str:
        """The trading part of the ``stopped:`` line (observe mode: none)."""
        return ""


async def run_observe(cfg: EngineConfig, *, duration_s: float | None = None) -> int:
    """Run observe mode until cancelled, SIGINT/SIGTERM or ``duration_s``; return an exit code."""
    app = ObserveApp(cfg, duration_s=duration_s)
    return await app.run()
