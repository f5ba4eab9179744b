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
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from engine.clock import WallClock
from engine.config import EngineConfig
from engine.core.core import GateTransition, ObserveCore, Signal
from engine.core.followups import FollowupBook
from engine.core.gates import NO_DATA
from engine.core.types import MarketSpec
from engine.followups import FollowupScheduler
from engine.io.followup_recovery import recover_incomplete
from engine.io.records import RecordWriter
from engine.venues.hyperliquid.client import HyperliquidFeed
from engine.venues.hyperliquid.info import DiscoveryError, InfoError, discover

log = logging.getLogger("engine.app")
signal_log = logging.getLogger("engine.signal")
gate_log = logging.getLogger("engine.gates")
summary_log = logging.getLogger("engine.summary")

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2


class StartupError(Exception):
    """The engine cannot start (bad markets, unwritable data dir, venue unreachable)."""

    def __init__(self, message: str, exit_code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@attrs.define
class RunStats:
    """Shell-level counters for the summary line and the tests."""

    frames_applied: int = 0
    unknown_coin_frames: int = 0
    signals: int = 0
    started_ms: float = 0.0


class CoreHandler:
    """Feed handler: routes decoded frames into the core with one receive time per batch."""

    def __init__(self, core: ObserveCore, clock: Callable[[], float],
                 on_signal: Callable[[Signal], None], timer: DetectorTimer,
                 stats: RunStats) -> None:
        self.core = core
        self.clock = clock
        self.on_signal = on_signal
        self.timer = timer
        self.stats = stats
        self.index = {m.coin: m.index for m in core.markets}
        self._now: float | None = None

    def _batch_now(self) -> float:
        now = self._now
        if now is None:
            now = self._now = self.clock()
        return now

    def on_bbo(self, coin: str, time_ms: int, bid_px: float | None, bid_sz: float | None,
               ask_px: float | None, ask_sz: float | None) -> None:
        idx = self.index.get(coin)
        if idx is None:
            self.stats.unknown_coin_frames += 1
            return
        self.stats.frames_applied += 1
        sig = self.core.on_bbo(idx, time_ms, bid_px, bid_sz, ask_px, ask_sz, self._batch_now())
        if sig is not None:
            self.on_signal(sig)

    def on_ctx(self, coin: str, oracle_px: float, mark_px: float | None) -> None:
        idx = self.index.get(coin)
        if idx is None:
            self.stats.unknown_coin_frames += 1
            return
        self.stats.frames_applied += 1
        sig = self.core.on_ctx(idx, oracle_px, mark_px, self._batch_now())
        if sig is not None:
            self.on_signal(sig)

    def on_connected(self) -> None:
        log.info("feed connected; subscribing %d markets", len(self.index))

    def on_disconnected(self, reason: str) -> None:
        self.core.on_disconnect(self.clock())
        log_gate_events(self.core.drain_events())

    def on_subscribed(self, sub_type: str, coin: str | None) -> None:
        return None

    def on_batch_end(self) -> None:
        self._now = None
        if self.core.events:
            log_gate_events(self.core.drain_events())
        self.timer.poke()


class DetectorTimer:
    """Calls ``core.on_timer`` when a quote-lag window opens, so quiet markets are still seen."""

    def __init__(self, core: ObserveCore, clock: Callable[[], float],
                 on_signal: Callable[[Signal], None]) -> None:
        self.core = core
        self.clock = clock
        self.on_signal = on_signal
        self._scope: trio.CancelScope | None = None
        self.wakeups = 0

    def _deadline(self, due_ms: float) -> float:
        return trio.current_time() + max(0.0, due_ms - self.clock()) / 1000.0

    def poke(self) -> None:
        """Pull the wake-up earlier if the core now has an earlier timer (cheap, no await)."""
        scope = self._scope
        if scope is None:
            return
        due = self.core.next_timer_ms()
        if due is None:
            return
        deadline = self._deadline(due)
        if deadline < scope.deadline:
            scope.deadline = deadline

    async def run(self) -> None:
        core = self.core
        while True:
            due = core.next_timer_ms()
            with trio.CancelScope() as scope:
                scope.deadline = self._deadline(due) if due is not None else math.inf
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            self.wakeups += 1
            for sig in core.on_timer(self.clock()):
                self.on_signal(sig)
            if core.events:
                log_gate_events(core.drain_events())


def log_gate_events(events: list[GateTransition]) -> None:
    """Log gate pass↔block transitions (data-availability ones at DEBUG: the feed logs those)."""
    for ev in events:
        if ev.gate == NO_DATA or (ev.gate is None and ev.previous == NO_DATA):
            gate_log.debug("%s gate %s -> %s", ev.coin, ev.previous, ev.gate)
        elif ev.gate is not None:
            gate_log.warning("gate block started: market=%s gate=%s %s", ev.coin, ev.gate,
                             ev.detail)
        else:
            gate_log.info("gate block ended: market=%s gate=%s after %.0f ms", ev.coin,
                          ev.previous, ev.blocked_for_ms)


def check_records_dir(path: Path) -> None:
    """Create the data directory and prove it is writable before anything connects."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"ok\n")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"records dir {path} is not writable: {exc.strerror} (errno {exc.errno}); "
            "fix its ownership/permissions or set [records] dir", EXIT_CONFIG) from None


async def discover_markets(cfg: EngineConfig, info_url: str,
                           attempts: int = 5) -> list[MarketSpec]:
    """Discover the dex's markets; retry transport failures, fail fast on config mismatches."""
    delay = 1.0
    for attempt in range(1, attempts + 1):
        try:
            disc = await discover(info_url, cfg.venue.dex, cfg.venue.markets,
                                  cfg.venue.info_timeout_s)
        except DiscoveryError as exc:
            raise StartupError(f"market discovery failed: {exc}", EXIT_CONFIG) from None
        except InfoError as exc:
            if attempt == attempts:
                raise StartupError(f"venue info endpoint unreachable at {info_url}: {exc}",
                                   EXIT_RUNTIME) from None
            log.warning("info request failed (%s); retrying in %.0f s (%d/%d)", exc, delay,
                        attempt, attempts)
            await trio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        log.info("discovered %d markets on dex %r (dex index %d, asset ids %d..%d)",
                 len(disc.markets), disc.dex, disc.dex_index,
                 min(m.asset_id for m in disc.markets), max(m.asset_id for m in disc.markets))
        return disc.markets
    raise AssertionError("unreachable")


class ObserveApp:
    """Owns every component of one observe run (built in :meth:`run`)."""

    def __init__(self, cfg: EngineConfig, *, duration_s: float | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.cfg = cfg
        self.duration_s = duration_s
        self.clock = clock or WallClock()
        self.stats = RunStats()
        self.records_dir = Path(cfg.records.dir)
        self.core: ObserveCore | None = None
        self.writer: RecordWriter | None = None
        self.scheduler: FollowupScheduler | None = None
        self.feed: HyperliquidFeed | None = None
        self.timer: DetectorTimer | None = None
        self.sim: Any = None
        self.ws_url = cfg.venue.ws_url
        self.info_url = cfg.venue.info_url
        self.ready = trio.Event()
        self._cancel: trio.CancelScope | None = None

    # ------------------------------------------------------------ signals
    def handle_signal(self, sig: Signal) -> None:
        assert self.writer is not None and self.scheduler is not None
        f = sig.fields
        self.stats.signals += 1
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
            f["confidence"], f["trigger"], f["signal_id"])

    def stop(self) -> None:
        """Request an orderly stop (used by tests and the signal handler)."""
        if self._cancel is not None:
            self._cancel.cancel()

    # ---------------------------------------------------------------- run
    def preflight(self) -> None:
        """Checks that must pass before any connection (raise StartupError)."""

    async def run(self) -> int:
        cfg = self.cfg
        self.preflight()
        check_records_dir(self.records_dir)
        rec = cfg.records
        writer = RecordWriter(self.records_dir, flush_interval_ms=rec.flush_interval_ms,
                              fsync_interval_ms=rec.fsync_interval_ms,
                              max_pending_records=rec.max_pending_records, clock=self.clock)
        self.writer = writer
        try:
            with trio.CancelScope() as cancel:
                self._cancel = cancel
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._signal_task, nursery.cancel_scope,
                                       name="signals")
                    if cfg.sim.enabled:
                        await self._start_sim(nursery)
                    markets = await discover_markets(cfg, self.info_url)
                    self._build(markets, writer)
                    # Long-lived startup objects leave the GC's generations: fewer, shorter
                    # full collections on the hot path.
                    gc.collect()
                    gc.freeze()
                    self._start_tasks(nursery, writer)
                    if self.duration_s is not None:
                        nursery.start_soon(self._stop_after, self.duration_s, name="duration")
                    self.ready.set()
        finally:
            self._before_close()
            if self.scheduler is not None:
                self.scheduler.shutdown(self.clock())
            writer.close()
            self._log_final()
        return EXIT_OK

    def _before_close(self) -> None:
        """Last synchronous work before followups are closed and files flushed."""

    def _start_tasks(self, nursery: trio.Nursery, writer: RecordWriter) -> None:
        assert self.scheduler and self.feed and self.timer
        nursery.start_soon(writer.run, name="writer")
        nursery.start_soon(self.scheduler.run, name="followups")
        nursery.start_soon(self.timer.run, name="detector-timer")
        nursery.start_soon(self.feed.run, name="feed")
        nursery.start_soon(self._summary_task, name="summary")

    async def graceful_stop(self) -> None:
        """Stop: observe mode has nothing to unwind, so cancel at once."""
        self.stop()

    def _build(self, markets: list[MarketSpec], writer: RecordWriter) -> None:
        cfg = self.cfg
        self.stats.started_ms = self.clock()
        core = ObserveCore(markets, cfg.gates, cfg.detector, cfg.sizing,
                           cfg.followups.offsets_ms, mode=cfg.mode)
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
        handler = CoreHandler(core, self.clock, self.handle_signal, self.timer, self.stats)
        venue = attrs.evolve(cfg.venue, ws_url=self.ws_url, info_url=self.info_url)
        self.feed = HyperliquidFeed(venue, [m.coin for m in markets], handler)

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

    async def _signal_task(self, scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("received %s: stopping (pending followups become MISSED)",
                         signal.Signals(signum).name)
                with trio.move_on_after(30):
                    await self.graceful_stop()
                scope.cancel()
                return

    async def _stop_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        log.info("run duration of %.0f s reached: stopping", seconds)
        await self.graceful_stop()

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
        )

    async def _summary_task(self) -> None:
        interval = self.cfg.summary.interval_s
        if interval <= 0:
            return
        last_frames = self.stats.frames_applied
        last_t = trio.current_time()
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            frames = self.stats.frames_applied
            rate = (frames - last_frames) / max(now - last_t, 1e-9)
            last_frames, last_t = frames, now
            summary_log.info("%s", self.summary_line(rate))

    def _log_final(self) -> None:
        if self.scheduler is None or self.writer is None:
            return
        st = self.scheduler.stats
        log.info("stopped: %d signals, %d followups captured, %d missed; records flushed to %s",
                 self.stats.signals, st.written_captured, st.written_missed,
                 self.records_dir.resolve())


async def run_observe(cfg: EngineConfig, *, duration_s: float | None = None) -> int:
    """Run observe mode until cancelled, SIGINT/SIGTERM or ``duration_s``; return an exit code."""
    app = ObserveApp(cfg, duration_s=duration_s)
    return await app.run()
