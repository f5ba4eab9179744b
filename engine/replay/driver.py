"""The replay driver: a frame recording through the live apps' synchronous code paths.

What runs is the live shell minus its Trio tasks: :class:`engine.app.ObserveApp` (observe) or
:class:`engine.trading_app.TradingApp` (paper) is built by its own ``build`` — the same
strategy plug-in (``DislocationStrategy``), ``TradingCore``, state machines, followup scheduler and ``PaperVenue`` — with a
:class:`~engine.replay.clock.SimClock` as its injected clock. Runs of recorded socket reads
go through :meth:`HyperliquidFeed.replay_reads` (one call per run): for each read the timers
due up to its receive time, then the live reader's own per-frame dispatch (decode → handler →
core), then the handler's ``on_batch_end`` — what :meth:`HyperliquidFeed.replay_batch` does with
one read; recorded connection events go through the
feed's own session start/end. The timer tasks of the live shell become
:class:`~engine.replay.clock.Timers` sources, each calling the same method the live task calls
when it wakes: the trading timer (``TradingApp.timer_fire``: paper executions at decision time +
``[paper] latency_ms`` against the recorded book of that moment, time stops and exits, order
timeouts, housekeeping every 100 ms after the last wake, pulled earlier after each read exactly
as ``timer_poke`` does), the detector's quote-lag windows (``DetectorTimer.fire``, observe) and
the followup offsets (``FollowupScheduler.capture_once``).

Order: before a read received at ``t`` every timer due at or before ``t`` fires, in due order
(ties: trading timer, detector, followups); the clock is set to each due time, then to ``t``.
Nothing ever reads a record ahead of the clock, so a replay of data cut at ``T`` is the prefix
up to ``T`` of the full replay (tests/replay/test_properties.py). At the end the clock runs to
``--to`` (or the last record) firing what is due, and pending followups are written as MISSED
``end_of_data``.

The recording's discovery answers (``info`` records: ``perpDexs``, ``meta``) give the markets
through the live discovery's own parsing. Records of later engine runs in the same recording
(another ``run`` header) are replayed as a reconnect of the same engine.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from engine.app import ObserveApp
from engine.config import EngineConfig
from engine.io.frames import (
    K_CONN,
    K_IN,
    K_INFO,
    K_RUN,
    BatchItem,
    FrameRecord,
    FramesError,
    day_files,
    decode_json,
    iter_batches,
    iter_records,
)
from engine.io.records import RecordWriter
from engine.replay.clock import SimClock, Timers
from engine.trading_app import TradingApp  # with the module: a replay's time is the replay's
from engine.venues.hyperliquid.info import DiscoveryError, discovery_from_answers

log = logging.getLogger("engine.replay")

#: the garbage collector's first generation threshold during a replay (see :meth:`Replay.run`)
GC_GEN0_THRESHOLD = 50_000

RECORD_KINDS = ("signals", "followups", "orders", "fills", "positions", "trades")


class ReplayError(Exception):
    """The replay cannot run (no recording, no discovery answers, unusable --out)."""


@attrs.define
class ReplayStats:
    records: int = 0
    batches: int = 0
    frames: int = 0
    connects: int = 0
    disconnects: int = 0
    runs: int = 0
    first_ms: float | None = None
    last_ms: float | None = None
    wall_s: float = 0.0
    timers: dict[str, int] = attrs.Factory(dict)


Progress = Callable[[ReplayStats, float], None]  # (stats, fraction done 0..1)


def replay_config(cfg: EngineConfig, out_dir: Path, mode: str) -> EngineConfig:
    """The config a replay runs with: records to ``out_dir``, no recording, the ops state
    (kill and request files) in ``out_dir`` too — never a live engine's. ``[sim]`` and the
    venue keys stay as they are (the config must stay valid as a whole); replay never starts
    a simulator or connects: it does not run the app's ``run()``."""
    return attrs.evolve(
        cfg, mode=mode,
        records=attrs.evolve(cfg.records, dir=str(out_dir), flush_interval_ms=1000.0,
                             fsync_interval_ms=0.0),
        recording=attrs.evolve(cfg.recording, enabled=False),
        ops=attrs.evolve(cfg.ops, state_dir=str(out_dir), http_enabled=False),
        summary=attrs.evolve(cfg.summary, interval_s=0.0))


def find_discovery(data_dir: Path) -> tuple[Any, Any]:
    """The first recorded ``perpDexs`` and ``meta`` answers of the recording."""
    perp: Any = None
    meta: Any = None
    for rec in iter_records(data_dir):
        if rec.kind != K_INFO:
            if rec.kind == K_IN and perp is not None and meta is not None:
                break
            continue
        doc = decode_json(rec.payload)
        req = doc.get("request") or {}
        if req.get("type") == "perpDexs" and perp is None:
            perp = doc.get("response")
        elif req.get("type") == "meta" and meta is None:
            meta = doc.get("response")
        if perp is not None and meta is not None:
            break
    if perp is None or meta is None:
        raise ReplayError(f"the recording in {data_dir} has no discovery answers (perpDexs and "
                          "meta info records): it cannot say which markets were traded")
    return perp, meta


class Replay:
    """One replay run (see the module docstring); :meth:`run` returns the stats."""

    def __init__(self, cfg: EngineConfig, data_dir: Path, out_dir: Path, *,
                 mode: str = "observe", from_ms: float | None = None,
                 to_ms: float | None = None, progress: Progress | None = None) -> None:
        if mode not in ("observe", "paper"):
            raise ReplayError(f"replay mode must be observe or paper, got {mode!r}")
        self.data_dir = Path(data_dir)
        self.out_dir = Path(out_dir)
        self.cfg = replay_config(cfg, self.out_dir, mode)
        self.mode = mode
        self.from_ns = None if from_ms is None else int(from_ms * 1_000_000)
        self.to_ns = None if to_ms is None else int(to_ms * 1_000_000)
        self.progress = progress
        self.clock = SimClock()
        self.stats = ReplayStats()
        self.app: ObserveApp | None = None
        self._read = [0]  # compressed bytes read so far
        self._identity = b""  # the first run header: the replay's ids derive from it

    # ------------------------------------------------------------ setup
    def _check_out(self) -> None:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReplayError(f"--out {self.out_dir}: {exc.strerror}") from None
        used = sorted(p.name for p in self.out_dir.iterdir()
                      if p.name.endswith((".jsonl", ".jsonl.gz")))
        if used:
            raise ReplayError(f"--out {self.out_dir} already holds records ({used[0]}, ...): "
                              "give an empty directory (the replay's records must not mix "
                              "with other runs)")

    def _build(self, t0_ms: float) -> tuple[ObserveApp, Timers]:
        cfg = self.cfg
        perp, meta = find_discovery(self.data_dir)
        try:
            disc = discovery_from_answers(cfg.venue.dex, cfg.venue.markets, perp, meta)
        except DiscoveryError as exc:
            raise ReplayError(f"market discovery from the recording failed: {exc}") from None
        self.clock.set(t0_ms)
        app: ObserveApp
        if self.mode == "paper":
            app = TradingApp(cfg, clock=self.clock)
        else:
            app = ObserveApp(cfg, clock=self.clock)
        writer = RecordWriter(self.out_dir, flush_interval_ms=1000.0, fsync_interval_ms=0.0,
                              clock=self.clock, idle_close_ms=float("inf"))
        app.writer = writer
        ident = hashlib.sha256(b"engine replay\0" + self._identity).digest()
        app.boot_id = ident[:3].hex()
        app.cloid_boot = ident[3:11]
        app.build(disc.markets, writer)
        assert app.feed is not None
        app.feed.wall_clock = lambda: self.clock() / 1000.0
        self.app = app
        timers = Timers(self.clock)
        if self.mode == "paper":
            self._add_trading_timer(app, timers)
        else:
            det = app.timer
            assert det is not None and app.core is not None
            timers.add("detector", app.core.next_timer_ms, det.fire, heap=app.core.timer_heap)
        sched = app.scheduler
        assert sched is not None
        limit = sched.batch_limit

        def followups(now: float) -> None:
            while sched.capture_once(now) >= limit:
                pass

        timers.add("followups", sched.book.next_due_ms, followups, heap=sched.book.heap)
        return app, timers

    def _add_trading_timer(self, app: Any, timers: Timers) -> None:
        """The trading timer task: due at ``next_due()`` after each wake, pulled earlier by
        ``timer_poke`` after each read (the live task's deadline, in engine time)."""
        state = {"due": app.next_due()}

        def fire(now: float) -> None:
            app.timer_fire(now)
            state["due"] = app.next_due()

        def poke() -> None:
            d = app.next_due()
            if d < state["due"]:
                state["due"] = d

        app.timer_poke = poke  # the handler's bookkeeping pokes after each read
        timers.add("trading", lambda: state["due"], fire)

    # ------------------------------------------------------------ run
    def _batches(self) -> Iterator[tuple[list[BatchItem], int]]:
        return iter_batches(self.data_dir, from_ns=self.from_ns, to_ns=self.to_ns,
                            progress=self._read)

    def run(self) -> ReplayStats:
        """Replay everything; raises :class:`ReplayError` (one line for the operator).

        While it runs, the garbage collector's first generation threshold is at least
        :data:`GC_GEN0_THRESHOLD` (restored after): a zstd frame's records (thousands of
        tuples and lists alive until the frame is replayed) would otherwise be traversed and
        promoted by a collection every 700 allocations; the objects are freed by reference
        counting as before, only cycles wait longer. No output depends on it."""
        old = gc.get_threshold()
        gc.set_threshold(max(old[0], GC_GEN0_THRESHOLD), *old[1:])
        try:
            return self._run()
        except FramesError as exc:
            raise ReplayError(str(exc)) from None
        finally:
            gc.set_threshold(*old)

    def _run(self) -> ReplayStats:
        t_start = time.perf_counter()
        self._check_out()
        chunks = self._batches()
        found = self._first_event(chunks)
        if found is None:
            raise ReplayError(f"no frames in {self.data_dir} within the requested time range")
        first, rest, n_rest = found
        st = self.stats
        st.first_ms = first[2] / 1e6
        app, timers = self._build(st.first_ms)
        feed = app.feed
        assert feed is not None and app.writer is not None
        clock = self.clock
        advance = timers.advance
        reads = feed.replay_reads
        before = timers.advancer()
        total = self._size()
        next_progress = 0
        control = self._control
        progress = self.progress
        read = self._read
        held: BatchItem | None = None  # the last read of the previous zstd frame
        n_batches = n_frames = 0
        last_ms = st.last_ms
        items: list[BatchItem] | None = rest
        n = n_rest
        # One list of items per zstd frame; a socket read (K_IN records of one batch number:
        # one item within a zstd frame) can continue in the next zstd frame, so the last item
        # of a zstd frame is held until the next one shows it complete. Runs of complete
        # reads go to the feed in one call (each read: the timers due up to its receive
        # time, then its frames); every other record on its own, in order.
        while items is not None:
            if held is not None:
                if items and items[0][0] == K_IN and items[0][1] == held[1]:
                    held[3].extend(items[0][3])  # the same read, continued
                    items = items[1:]
                if items:  # complete: the next item is another record
                    n_frames += reads([held], 0, 1, before)
                    n_batches += 1
                    last_ms = held[2] / 1e6
                    held = None
            end = len(items)
            if end and items[-1][0] == K_IN:
                end -= 1
                held = items[end]
            i = 0
            while i < end:
                j = i
                while j < end and items[j][0] == K_IN:
                    j += 1
                if j > i:
                    n_frames += reads(items, i, j, before)
                    n_batches += j - i
                    last_ms = items[j - 1][2] / 1e6
                if j < end:
                    st.last_ms = last_ms
                    control(feed, advance, FrameRecord._make(items[j]))
                    last_ms = st.last_ms
                i = j + 1
            st.records += n
            if progress is not None and st.records >= next_progress:
                next_progress = st.records + 20_000
                st.batches, st.frames, st.last_ms = n_batches, n_frames, last_ms
                progress(st, read[0] / total if total else 0.0)
            items, n = next(chunks, (None, 0))
        if held is not None:
            n_frames += reads([held], 0, 1, before)
            n_batches += 1
            last_ms = held[2] / 1e6
        st.batches, st.frames, st.last_ms = n_batches, n_frames, last_ms
        end_ms = st.last_ms if st.last_ms is not None else st.first_ms
        if self.to_ns is not None:
            end_ms = max(end_ms, self.to_ns / 1e6)
        advance(end_ms)
        self._finish(app, clock())
        st.timers = dict(timers.fired)
        st.wall_s = time.perf_counter() - t_start
        if progress is not None:
            progress(st, 1.0)
        return st

    def _first_event(self, chunks: Iterator[tuple[list[BatchItem], int]]
                     ) -> tuple[BatchItem, list[BatchItem], int] | None:
        """The first item that drives the clock (info and run headers only configure), the
        rest of its chunk from it on, and how many records that rest holds."""
        for items, n in chunks:
            for i, it in enumerate(items):
                if it[0] in (K_IN, K_CONN):
                    return it, items[i:], n - i  # the items before it are single records
                if it[0] == K_RUN:
                    self.stats.runs += 1
                    if not self._identity:
                        self._identity = it[4]
        return None

    def _control(self, feed: Any, advance: Callable[[float], None], rec: FrameRecord) -> None:
        st = self.stats
        t_ms = rec.wall_ns / 1e6
        if rec.kind == K_CONN:
            advance(t_ms)
            st.last_ms = t_ms
            doc = decode_json(rec.payload)
            if doc.get("event") == "connected":
                st.connects += 1
                feed.replay_connected(str(doc.get("url", "")), t_ms / 1000.0)
            else:
                st.disconnects += 1
                feed.replay_disconnected(str(doc.get("reason", "disconnected")), t_ms / 1000.0)
        elif rec.kind == K_RUN:
            st.runs += 1
            if st.runs > 1 and feed.connected:
                advance(t_ms)
                feed.replay_disconnected("engine restarted (recording)", t_ms / 1000.0)

    def _finish(self, app: Any, now: float) -> None:
        app.before_close()
        sched = app.scheduler
        if sched is not None:
            sched.shutdown(now, reason="end_of_data")
        app.writer.close()

    def _size(self) -> int:
        try:
            return sum(p.stat().st_size for p in day_files(self.data_dir))
        except OSError:
            return 0


def run_replay(cfg: EngineConfig, data_dir: Path, out_dir: Path, **kw: Any) -> ReplayStats:
    """Convenience wrapper: one replay, its stats (raises :class:`ReplayError`)."""
    return Replay(cfg, data_dir, out_dir, **kw).run()
