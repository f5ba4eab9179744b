"""The Trio shell of the funding/basis strategy on Bybit (``[funding]`` + ``[bybit]``).

The venue comes from the registry (``registry.account_factory("bybit")``): its instruments
(each answer recorded for replay), its sockets as one feed
(:class:`~engine.venues.bybit.feed.BybitFeed`) and its timed order lanes; start-up and close
are :func:`engine.startup.run_locked`, shared with the Hyperliquid shell.

Tasks, each owned by the root nursery:

* ``bybit-sim``   the embedded Bybit simulator when ``[sim] enabled`` (ephemeral loopback port);
* ``linear``/``spot``/``private`` one :class:`~engine.venues.bybit.ws.BybitStream` each (public
  ``tickers.{symbol}`` + ``orderbook.1.{symbol}`` on linear, ``orderbook.1.{symbol}`` on spot;
  the private ``order``/``execution``/``position``/``wallet`` in trade mode), run by the feed.
  Frames are recorded with their socket, decoded to neutral events and handed to the pure :class:`~engine.core.funding_core.FundingCore`
  synchronously in the stream's task;
* ``watch-*``     turns each stream's connection state into ``core.disconnect``/``reconnect``;
* ``sender``      (trade) sends the core's intents in order through
  :class:`~engine.venues.bybit.execution.BybitExecution`; answers go back to the core;
* ``reconcile``   (trade) every ``[funding] reconcile_interval_s``, and after every reconnect,
  reads the base coins' wallet balances and the linear positions and hands them to
  :meth:`FundingCore.reconcile` (so do the private ``position`` and ``wallet`` messages;
  confirm before believing; an unexplained balance keeps the
  app not READY and the symbol out of new entries). The reconnect's resync also fetches the
  funding paid while the private socket was down (the transaction log) and books it once;
* ``timer``       wakes the core (and the paper venue) by their ``next_wakeup_ms``, and at least
  every :data:`TICK_S` for the strategy's evaluation;
* ``writer`` / ``frames-recorder`` the JSON Lines day files (``funding_YYYY-MM-DD.jsonl``, one
  whole line per :meth:`FundingCore.drain_records` record) and the raw frame recording;
* ``summary``, ``control-files``, ``signals`` and the ops service (``/status``, metrics).

Paper mode sends intents to :class:`~engine.core.paper_two_leg.PaperTwoLeg` (fills after a
latency against the book at that later time) instead of the venue.

Restart: after every batch of records that changed something the shell journals the core's
whole state (a ``state`` record, :mod:`engine.io.funding_state`); at start the newest one's
open pairs (same mode, same venue) are rebuilt offline and resumed by the first connection as
after an outage (trade: missed trades and funding read from REST, in-flight orders re-sent
under their ids, both legs reconciled; paper: the paper venue seeded with their inventory).

Every stop (SIGINT/SIGTERM, kill file, ``POST /kill``, the run duration) is the kill switch:
no new entries, both legs of every position flattened (the perp reduce-only), records flushed,
exit 0 when flat, 1 when a position was left open. ``python -m engine flatten`` flattens and
keeps running.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import trio

from engine.clock import WallClock, trio_deadline
from engine.config import BybitConfig, EngineConfig, FundingConfig
from engine.core.funding_breakers import FundingBreakers, FundingTrip
from engine.core.funding_core import FundingCore, VenueFees, with_venue_fees
from engine.core.intents import Alert
from engine.core.neutral import (
    AmendOrder,
    BalanceUpdate,
    BookTop,
    CancelAll,
    CancelOrder,
    FundingQuote,
    FundingSettlement,
    Instrument,
    InstrumentKind,
    OrderAck,
    OrderDone,
    OrderFill,
    OrderReject,
    OrderRequest,
    PlaceOrder,
    PositionUpdate,
    RejectReason,
)
from engine.core.paper_two_leg import PaperTwoLegVenue
from engine.io.frames import K_CONN, FrameRecorder, frames_dir
from engine.io.funding_state import STATE, last_state
from engine.io.records import RecordWriter
from engine.ops.funding_latch import latched_breaker
from engine.ops.funding_metrics import FundingMetrics
from engine.ops.health import HealthInputs
from engine.ops.paths import (
    FLATTEN_FILE,
    RESET_FILE,
    consume_request,
    kill_env_set,
    kill_file_path,
    resolve_state_dir,
)
from engine.secrets import SecretsError
from engine.startup import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_RUNTIME,
    StartupError,
    begin_stop,
    close_run_files,
    run_locked,
)
from engine.venues import registry
from engine.venues.base import InstrumentsRefused, InstrumentsUnreachable
from engine.venues.bybit.codec import (
    KIND_CATEGORY,
    BybitApiError,
    BybitDecoder,
    CodecError,
    parse_wallet_balance,
)
from engine.venues.bybit.execution import BybitExecution
from engine.venues.bybit.factory import BybitVenue, LiveNotAllowed
from engine.venues.bybit.feed import BybitFeed
from engine.venues.bybit.http import HttpError
from engine.venues.bybit.ws import BybitAuthError, BybitStream

log = logging.getLogger("engine.funding")
summary_log = logging.getLogger("engine.summary")

RECORD_KIND = "funding"
VENUE = "bybit"  # the registry name of the venue this shell runs on
TICK_S = 0.25
SIM_KEY, SIM_SECRET = "sim-funding-key", "sim-funding-secret"  # simulator-only, never real
LATENCY_SAMPLES = 2000
FEE_WARN_INTERVAL_S = 3600.0  # a fee refresh that keeps failing: one WARNING this often at most
EMBEDDED_SIM = "embedded-sim"  # the journal's venue name of the embedded simulator
STATE_CHANGES = frozenset({"order", "fill", "funding", "position", "closed", "reconcile",
                           "reject", "kill", "anomaly", "connection"})
"""Record types after which the shell journals the core's whole state (a ``state`` line)."""

Intent = PlaceOrder | CancelOrder | AmendOrder | CancelAll
_MARKET = (FundingQuote, BookTop, FundingSettlement)
_ORDER = (OrderAck, OrderFill, OrderDone, OrderReject)


# -- leg latency: leg-1 fill received -> leg-2 order written to the socket -----------------------


@attrs.define
class LegLatency:
    """Leg-1 fill received (stream task, perf ns) → leg-2 order written (ms samples)."""

    pending: dict[str, int] = attrs.Factory(dict)  # leg-2 client id -> fill receive ns
    samples: deque[float] = attrs.Factory(lambda: deque(maxlen=LATENCY_SAMPLES))
    returned: deque[float] = attrs.Factory(lambda: deque(maxlen=LATENCY_SAMPLES))
    count: int = 0
    hist: Any = None  # the metrics histogram (seconds), when the ops service is up

    def expect(self, client_id: str, t0_ns: int) -> None:
        self.pending[client_id] = t0_ns
        if len(self.pending) > 1000:
            self.pending.clear()

    def written(self, client_id: str, t1_ns: int, returned_ns: int | None = None
                ) -> float | None:
        t0 = self.pending.pop(client_id, None)
        if t0 is None:
            return None
        ms = (t1_ns - t0) / 1e6
        self.samples.append(ms)
        self.returned.append(((returned_ns or t1_ns) - t0) / 1e6)
        self.count += 1
        if self.hist is not None:
            self.hist.observe(ms / 1000.0)
        return ms

    def quantiles(self) -> dict[str, float | None]:
        v = sorted(self.samples)
        if not v:
            return {"median_ms": None, "p99_ms": None, "n": 0}
        p99 = v[min(len(v) - 1, max(0, math.ceil(0.99 * len(v)) - 1))]
        return {"median_ms": round(statistics.median(v), 3), "p99_ms": round(p99, 3),
                "n": self.count}


@attrs.define
class FundingStats:
    frames: int = 0
    events: int = 0
    intents_sent: int = 0
    rejects: int = 0
    send_errors: int = 0
    disconnects: int = 0
    reconnects: int = 0
    records: int = 0
    settlements: int = 0
    decisions: int = 0
    last_market_ms: dict[str, float] = attrs.Factory(dict)


class _StreamsFeed:
    """The ops service's ``feed`` view (frames by channel, reconnect count)."""

    def __init__(self, app: FundingApp) -> None:
        self.app = app

    @property
    def stats(self) -> Any:
        a = self.app

        class _S:
            connected = a.connected()
            reconnects = a.stats.reconnects
            frames_by_channel = dict(a.frames_by_channel)
            malformed = sum(s.malformed for s in a.streams.values())
            frames_total = a.stats.frames

        return _S


class FundingApp:
    """Owns every component of one funding run (see module). ``env`` supplies the Bybit keys
    (``$CREDENTIALS_DIRECTORY`` / ``BYBIT_API_KEY``…; tests pass their own)."""

    def __init__(self, cfg: EngineConfig, *, duration_s: float | None = None,
                 env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        if cfg.funding is None:
            raise StartupError("the funding app needs a [funding] section", EXIT_CONFIG)
        self.cfg = cfg
        self.fcfg: FundingConfig = cfg.funding
        self.bcfg: BybitConfig = cfg.bybit or BybitConfig()
        self.duration_s = duration_s
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.clock = clock or WallClock()
        self.records_dir = Path(cfg.records.dir)
        self.state_dir = resolve_state_dir(cfg)
        self.kill_path = kill_file_path(cfg)
        self.stats = FundingStats()
        self.latency = LegLatency()
        self.frames_by_channel: dict[str, int] = {}
        # the ops host interface (engine/ops/service.py reads these)
        self.core: Any = None  # no Hyperliquid-style market core here
        self.feed: Any = _StreamsFeed(self)
        self.scheduler: Any = None
        self.writer: RecordWriter | None = None
        self.recorder: FrameRecorder | None = None
        self.ops: Any = None
        self.fmetrics: FundingMetrics | None = None
        self.stop_reason: str | None = None
        self.exit_code = EXIT_OK
        self.ready = trio.Event()
        # the run
        self.funding: FundingCore | None = None
        self.paper: PaperTwoLegVenue | None = None
        self.venue: BybitVenue | None = None
        self.spot: dict[str, Instrument] = {}
        self.perp: dict[str, Instrument] = {}
        self.streams: dict[str, BybitStream] = {}
        self.market_feed: BybitFeed | None = None
        self.down: set[str] = set()
        self.was_down = False
        self.down_since_ms: int | None = None  # when the first stream of an outage dropped
        self._resyncing = False
        self.reconciles = 0  # venue readings of both legs taken (trade mode)
        self.missed_settlements = 0  # funding payments found by the catch-up, booked once
        self.catchup_from_ms: int | None = None  # a failed catch-up's window start (retried)
        self.sim_server: Any = None
        self.sim_exchange: Any = None
        self.positions: dict[str, PositionUpdate] = {}
        self.balance: BalanceUpdate | None = None
        self.killed_reason: str | None = None
        # the hard stop: the first breaker that latched it (this run or an earlier one's,
        # engine.ops.funding_latch) and its text; every trip acted on (for /status)
        self.breaker_trip: str | None = None
        self.breaker_name = ""  # the tripped breaker: daily_loss, drawdown, consecutive_losses
        self.breaker_trips: list[dict[str, Any]] = []
        self._equity_placeholder = False  # the breakers measure from paper_equity until the
        # account's USDT wallet is known (trade mode whose start-up read failed)
        self._root: trio.Nursery | None = None
        self._cancel: trio.CancelScope | None = None
        self._built = False  # the start got past the build (a failed start records nothing)
        self._kill_at_start_why: str | None = None
        self._wake = trio.Event()
        # order lanes, each with its own sender task and REST connection, per (urgent, symbol):
        # urgent = reactions to order events (the hedge after a leg-1 fill, closes), else
        # entries, kill, reconnect re-sends. A hedge never waits behind another request's
        # round trip (one HTTP/1.1 connection answers one request at a time); a cancel or
        # amend follows its order on the same lane, so it never overtakes the create
        self._lanes: dict[tuple[bool, str], trio.MemorySendChannel[Intent]] = {}
        self._lane_of: dict[str, tuple[bool, str]] = {}
        self._records_dirty = False
        self._fill_t0: dict[str, int] = {}  # leg-1 order client id -> fill receive ns (batch)
        self._order_kind: dict[str, InstrumentKind] = {}
        self.restored: list[str] = []  # symbols whose pair was rebuilt from the journal
        # fee rates: what the venue stated last (None: the config's are used), the inputs of
        # with_venue_fees (the config's [funding], the instruments as discovered), whether
        # the key pair can read them, and the refresh's failures
        self.venue_fees: VenueFees | None = None
        self._fee_inputs: tuple[FundingConfig, dict[str, Instrument],
                                dict[str, Instrument]] | None = None
        self._keyed = False
        self.fee_refreshes = 0
        self.fee_refresh_failures = 0

    # ------------------------------------------------------------------ run
    async def run(self) -> int:
        cfg = self.cfg
        if cfg.mode not in ("paper", "trade"):
            raise StartupError(f"mode = {cfg.mode!r}: the funding strategy runs in paper or "
                               "trade mode (set mode or --mode)", EXIT_CONFIG)
        return await run_locked(self)

    # -- the steps of engine.startup.run_locked (records dir locked, signals watched)
    def open_run(self) -> None:
        """The ops host (its credentials), the record writer and the frame recorder."""
        from engine.ops.service import OpsService

        cfg = self.cfg
        try:
            self.ops = OpsService(self)  # the ops host interface
        except SecretsError as exc:
            raise StartupError(f"ops credentials: {exc}", EXIT_CONFIG) from None
        self.fmetrics = FundingMetrics(self.ops.metrics)
        self.latency.hist = self.fmetrics.leg_latency
        rec = cfg.records
        self.writer = RecordWriter(self.records_dir, flush_interval_ms=rec.flush_interval_ms,
                                   fsync_interval_ms=rec.fsync_interval_ms,
                                   max_pending_records=rec.max_pending_records, clock=self.clock)
        if cfg.recording.enabled:
            offset_ms = getattr(self.clock, "offset_ms", None)  # a WallClock's anchor
            self.recorder = FrameRecorder(
                frames_dir(self.records_dir), flush_interval_ms=cfg.recording.flush_interval_ms,
                level=cfg.recording.level, max_pending=cfg.recording.max_pending,
                anchor_ns=None if offset_ms is None else int(round(offset_ms * 1e6)),
                header={"mode": cfg.mode, "venue": VENUE, "strategy": "funding",
                        "symbols": self.fcfg.symbols, "sim": cfg.sim.enabled})
        self._built = False
        self._kill_at_start_why = self._kill_at_start()

    def bind_root(self, nursery: trio.Nursery, cancel: trio.CancelScope) -> None:
        self._root, self._cancel = nursery, cancel

    async def start_run(self, nursery: trio.Nursery) -> None:
        """Inside the root nursery, the ops port bound: the writer, the simulator, the venue
        and its instruments, the order lanes, the streams and the tasks; READY."""
        cfg, writer = self.cfg, self.writer
        assert writer is not None
        nursery.start_soon(writer.run, name="writer")
        if cfg.sim.enabled:
            await self._start_sim(nursery)
        await self._build()
        self._built = True
        self._restore_breaker()
        if self.recorder is not None:
            nursery.start_soon(self.recorder.run, name="frames-recorder")
        if self.paper is None:
            for sym in self.perp:  # each lane connects before the first order
                for urgent in (False, True):
                    self._lane((urgent, sym))
        await self._start_streams(nursery)
        if self.paper is None:  # entries wait for the venue's own figures
            await self.reconcile_once()
        nursery.start_soon(self._timer, name="timer")
        if self.paper is None:
            nursery.start_soon(self._reconcile_task, name="reconcile")
        nursery.start_soon(self._summary_task, name="summary")
        if self.bcfg.fee_source == "venue" and self._keyed and self.bcfg.fee_refresh_s > 0:
            nursery.start_soon(self._fee_refresh_task, name="fee-refresh")
        nursery.start_soon(self._control_task, name="control-files")
        if self.duration_s is not None:
            nursery.start_soon(self._stop_after, self.duration_s, name="duration")
        self.ready.set()
        log.info("funding %s mode on Bybit (%s): %s; records in %s", cfg.mode,
                 "embedded simulator" if cfg.sim.enabled else self.bcfg.environment,
                 ", ".join(sorted(self.perp)), self.records_dir.resolve())
        if self._kill_at_start_why is not None:
            self.request_stop(f"kill switch on at start ({self._kill_at_start_why})")

    def close_run(self) -> None:
        """Records flushed and closed (a failed start records no frames), the final line."""
        self._flush_records()
        close_run_files(self.writer, self.recorder, built=self._built)
        self._log_final()

    def _kill_at_start(self) -> str | None:
        if self.kill_path.exists():
            why = f"kill file {self.kill_path} exists"
        elif kill_env_set(self.env):
            why = "ENGINE_KILL=1 in the environment"
        else:
            return None
        log.critical("kill switch on at start (%s): no trading; remove it to trade again "
                     "(python -m engine kill --clear)", why)
        return why

    async def _start_sim(self, nursery: trio.Nursery) -> None:
        from engine.sim.bybit.cli import configure_funding
        from engine.sim.bybit.exchange import Exchange
        from engine.sim.bybit.server import BybitSimServer

        s, bs = self.cfg.sim, self.cfg.bybit_sim
        now = int(self.clock())
        ex = Exchange(seed=s.seed, now_ms=now)
        configure_funding(ex, int(bs.funding_interval_s * 1000), bs.funding_rate,
                          bs.funding_drift, now)
        ex.add_account(SIM_KEY, SIM_SECRET, usdt=bs.usdt, coins={})
        server = BybitSimServer(ex, host=s.host, port=s.port, tick_s=bs.tick_ms / 1000.0)
        base = await nursery.start(server.serve)
        self.sim_exchange, self.sim_server = ex, server
        self.bcfg = attrs.evolve(
            self.bcfg, environment="testnet", rest_url=base,
            ws_public_linear_url=f"ws{base[4:]}/v5/public/linear",
            ws_public_spot_url=f"ws{base[4:]}/v5/public/spot",
            ws_private_url=f"ws{base[4:]}/v5/private")
        self.env = {**self.env, "BYBIT_API_KEY": SIM_KEY, "BYBIT_API_SECRET": SIM_SECRET}
        log.info("embedded Bybit simulator listening on %s (seed %d, funding every %g s)", base,
                 s.seed, bs.funding_interval_s)

    async def _build(self) -> None:
        trade = self.cfg.mode == "trade"
        factory = registry.account_factory(VENUE)
        keyed = trade
        try:
            try:
                venue = factory.build(self.bcfg, self.clock, need_keys=True, env=self.env)
                keyed = True
            except SecretsError:
                if trade:
                    raise
                venue = factory.build(self.bcfg, self.clock, need_keys=False, env=self.env)
        except LiveNotAllowed as exc:
            raise StartupError(f"{exc} ([bybit] allow_live)", EXIT_CONFIG) from None
        except SecretsError as exc:
            raise StartupError(str(exc), EXIT_CONFIG) from None
        venue.time_requests(self._on_request_written)
        self.venue = venue
        provider = factory.instruments(
            attrs.evolve(self.cfg, bybit=self.bcfg), info_url=venue.urls.rest,
            record=self.recorder.info if self.recorder is not None else None)
        for attempt in range(5):
            try:
                if trade:
                    await venue.rest.sync_time()
                found = await provider.discover()
                break
            except InstrumentsRefused as exc:
                raise StartupError(str(exc), EXIT_CONFIG) from None
            except (InstrumentsUnreachable, HttpError, BybitApiError) as exc:
                if attempt == 4:
                    raise StartupError(f"Bybit at {venue.urls.rest} unreachable: {exc} (check "
                                       "[bybit] environment/rest_url and the network)") from None
                log.warning("Bybit instruments: %s; retrying", exc)
                await trio.sleep(0.5 * 2 ** attempt)
        perp = {i.symbol: i for i in found if i.kind is InstrumentKind.LINEAR_PERP}
        spot = {i.symbol: i for i in found if i.kind is InstrumentKind.SPOT}
        fees = await self._venue_fees(keyed)
        self._keyed, self.venue_fees, self._fee_inputs = keyed, fees, (self.fcfg, spot, perp)
        self.fcfg, self.spot, self.perp = with_venue_fees(self.fcfg, spot, perp, fees)
        log.info("fee rates (%s): %s", "venue /v5/account/fee-rate" if fees else "config",
                 ", ".join(f"{sym} spot {self.spot[sym].taker_fee * 1e4:g}/"
                           f"{self.spot[sym].maker_fee * 1e4:g} bps, perp "
                           f"{self.perp[sym].taker_fee * 1e4:g}/"
                           f"{self.perp[sym].maker_fee * 1e4:g} bps (taker/maker)"
                           for sym in self.fcfg.symbols))
        now = int(self.clock())
        if self.recorder is not None:  # what replay needs to build the same core (ids, fees)
            self.recorder.info({"engine": "funding_start"},
                               {"now_ms": now, **({"fees": fees} if fees else {})})
        self.funding = self._restore_from_journal(now) or FundingCore(
            self.fcfg, self.spot, self.perp, now_ms=now)
        self.funding.require_reconciled = trade
        if not trade:
            self.paper = PaperTwoLegVenue(self.spot, self.perp,
                                          latency_ms=self.cfg.paper.latency_ms,
                                          tid_prefix=f"paper{now}")
            if self.funding.intents:  # the paper venue holds what the journal says it held
                for (sym, leg), q in self.funding.inventory.items():
                    if leg == "perp" and q:
                        self.paper.perp_pos[sym] = q
                    elif leg == "spot" and q > 0:
                        self.paper.spot_bal[sym] = q
        else:
            await self._read_wallet(now)
        self._arm_breakers()

    def _arm_breakers(self) -> None:
        """The core's circuit breakers, measuring from the account's equity now (trade: the
        USDT wallet read at start; paper, or that read failed: ``[breakers] paper_equity``)."""
        core = self.funding
        assert core is not None
        equity = self.equity()
        self._equity_placeholder = self.cfg.mode == "trade" and (
            self.balance is None or not equity > 0)
        if not (math.isfinite(equity) and equity > 0):
            log.warning("circuit breakers: the USDT wallet's equity %r is no basis; they "
                        "measure against [breakers] paper_equity = %g until a wallet update",
                        equity, self.cfg.breakers.paper_equity)
            equity = self.cfg.breakers.paper_equity
        try:
            core.arm_breakers(self.cfg.breakers, equity)
        except ValueError as exc:  # a journaled state this version cannot read
            log.warning("circuit breakers: the journal's breaker state is unusable (%s); they "
                        "start afresh (a latched trip still holds: it is in the records)", exc)
            core.discard_breaker_state()
            core.arm_breakers(self.cfg.breakers, equity)

    async def _venue_fees(self, keyed: bool) -> VenueFees | None:
        """The account's fee rates of both legs from ``/v5/account/fee-rate`` (``[bybit]
        fee_source = "venue"`` and a key pair), else None: the config's rates. A failed or
        incomplete answer is one WARNING and the config's rates (never a failed start)."""
        venue = self.venue
        assert venue is not None
        if self.bcfg.fee_source != "venue":
            return None
        if not keyed:
            log.info("fee rates: no Bybit API keys in paper mode, so /v5/account/fee-rate is "
                     "not read; using [funding] spot_fee_bps/perp_fee_bps")
            return None
        try:
            if self.cfg.mode != "trade":  # trade synced the clock before instruments
                await venue.rest.sync_time()
            return await self._read_venue_fees()
        except (HttpError, BybitApiError, CodecError) as exc:
            log.warning("fee rates: Bybit /v5/account/fee-rate failed (%s); using the config's "
                        "[funding] spot_fee_bps/perp_fee_bps", exc)
            return None

    async def _read_venue_fees(self) -> VenueFees:
        """Both legs' rates of every configured symbol from ``/v5/account/fee-rate`` (raises
        HttpError, BybitApiError, CodecError: a symbol missing is a CodecError)."""
        venue = self.venue
        assert venue is not None
        symbols = self.fcfg.symbols
        out: VenueFees = {}
        for leg, category in (("spot", "spot"), ("perp", "linear")):
            got = (await venue.rest.fee_rates(category) if len(symbols) > 1
                   else await venue.rest.fee_rates(category, symbols[0]))
            missing = [sym for sym in symbols if sym not in got]
            if missing:
                raise CodecError(f"no {category} rate for {', '.join(missing)}")
            out[leg] = {sym: (float(got[sym][0]), float(got[sym][1])) for sym in symbols}
        return out

    async def _fee_refresh_task(self) -> None:
        """``[bybit] fee_refresh_s``: re-read the account's fee rates and apply a change
        (:meth:`apply_venue_fees`). A failed read keeps the last rates: one WARNING when the
        reads start failing (again at most once per :data:`FEE_WARN_INTERVAL_S` while they
        keep failing), one INFO line when they answer again."""
        interval = self.bcfg.fee_refresh_s
        last_warn: float | None = None  # trio time of the last WARNING of a failing streak
        while True:
            await trio.sleep(interval)
            try:
                with trio.fail_after(self.bcfg.http_timeout_s * 2):
                    fees = await self._read_venue_fees()
            except (HttpError, BybitApiError, CodecError, trio.TooSlowError) as exc:
                self.fee_refresh_failures += 1
                t = trio.current_time()
                if last_warn is None or t - last_warn >= FEE_WARN_INTERVAL_S:
                    last_warn = t
                    log.warning("fee rates: refreshing from Bybit /v5/account/fee-rate failed "
                                "(%s); keeping the last rates (said again at most once an "
                                "hour while it keeps failing)", exc or "timed out")
                continue
            if last_warn is not None:
                last_warn = None
                log.info("fee rates: Bybit /v5/account/fee-rate answers again")
            self.fee_refreshes += 1
            self.apply_venue_fees(fees, int(self.clock()))

    def apply_venue_fees(self, fees: VenueFees, now: int) -> bool:
        """Rates the venue stated while running: when they differ from the ones in use, new
        decisions use them (the core's cost model and hedge sizing, the paper venue's fees;
        an open pair keeps its fills' fees), one INFO line (old → new per leg) and a ``fees``
        record. True when something changed."""
        old, inputs, core = self.venue_fees, self._fee_inputs, self.funding
        if inputs is None or core is None or fees == old:
            return False
        symbols = self.fcfg.symbols
        before = {("spot", s): (self.spot[s].taker_fee, self.spot[s].maker_fee)
                  for s in symbols}
        before.update({("perp", s): (self.perp[s].taker_fee, self.perp[s].maker_fee)
                       for s in symbols})
        self.fcfg, self.spot, self.perp = with_venue_fees(*inputs, fees)
        self.venue_fees = fees
        core.set_fee_rates(self.fcfg, self.spot, self.perp)
        if self.paper is not None:  # the paper venue charges what the account would
            for s in symbols:
                self.paper.instruments[(InstrumentKind.SPOT, s)] = self.spot[s]
                self.paper.instruments[(InstrumentKind.LINEAR_PERP, s)] = self.perp[s]
        changed: list[str] = []
        parts: list[str] = []
        for (leg, s), (t0, m0) in before.items():
            t1, m1 = fees[leg][s]
            if (t0, m0) != (t1, m1):
                changed.append(f"{leg} {s}")
                parts.append(f"{s} {leg} {t0 * 1e4:g}/{m0 * 1e4:g} -> {t1 * 1e4:g}/"
                             f"{m1 * 1e4:g} bps")
        log.info("fee rates changed (venue /v5/account/fee-rate, taker/maker): %s; new "
                 "decisions use them, open pairs keep their fills' fees",
                 "; ".join(parts) or "as before")
        if self.writer is not None:
            self.writer.write(RECORD_KIND, now, {
                "type": "fees", "ts": now, "source": "venue",
                "rates": {leg: {s: list(r) for s, r in per.items()}
                          for leg, per in fees.items()},
                "previous": {leg: {s: list(before[(leg, s)]) for s in symbols}
                             for leg in ("spot", "perp")},
                "changed": changed})
        return bool(changed)

    def journal_venue(self) -> str:
        """Where this run trades, as its ``state`` records name it: a pair is rebuilt only by a
        run of the same mode on the same venue."""
        if self.cfg.sim.enabled:
            return EMBEDDED_SIM
        rest = self.venue.urls.rest if self.venue is not None else self.bcfg.rest_url
        return f"{self.bcfg.environment} {rest}"

    def _restore_from_journal(self, now: int) -> FundingCore | None:
        """The open pairs of the previous run, rebuilt from its last ``state`` record
        (:mod:`engine.io.funding_state`), offline: the first connection of every stream
        resumes them as after an outage that began at that record (trade: the trades and
        final states of their in-flight orders and the funding paid meanwhile read from REST
        first, then both legs reconciled against the venue). None: nothing to rebuild (no
        record, or the previous run ended flat), or the record is of another mode or venue
        (said in one line and alerted; the pairs are left to the operator)."""
        today = dt.datetime.fromtimestamp(now / 1000, dt.UTC).date()
        rec = last_state(self.records_dir, today)
        if rec is None:
            return None
        r = rec["core"]
        intents = r.get("intents")
        if not isinstance(intents, dict) or not intents:
            return None
        names = ", ".join(sorted(intents))
        here, there = (self.cfg.mode, self.journal_venue()), (rec.get("mode"),
                                                               rec.get("venue"))
        why = None
        if here != there:
            why = (f"written by a {there[0]} run on {there[1]}, this run is {here[0]} on "
                   f"{here[1]}")
        elif self.cfg.mode == "trade" and here[1] == EMBEDDED_SIM:
            why = "the embedded simulator starts empty in every process"
        if why is not None:
            text = (f"open pair(s) {names} in the journal of {self.records_dir.resolve()} not "
                    f"rebuilt: {why}; reconcile them by hand")
            log.error("%s", text)
            self._alert("error", "journal_not_restored", text)
            return None
        try:
            core = FundingCore.from_record(r, self.fcfg, self.spot, self.perp, now_ms=now)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise StartupError(
                f"the funding journal's last state record in {self.records_dir.resolve()} "
                f"cannot be rebuilt ({type(exc).__name__}: {exc}); its open pair(s) {names} "
                "need the operator: close them at the venue, then move the funding_*.jsonl "
                "files aside", EXIT_CONFIG) from None
        self.was_down = True  # the first connection resumes them (see _up)
        self.down_since_ms = int(r.get("now_ms") or rec.get("ts") or now)
        self.restored = sorted(core.intents)
        for sym, it in sorted(core.intents.items()):
            log.warning("rebuilt from the journal: %s %s (intent %s) spot %s perp %s; managed "
                        "again once the venue is connected", sym, it.state, it.intent_id,
                        it.pos["b"], it.pos["a"])
        return core

    async def _read_wallet(self, now: int) -> None:
        """Trade: the USDT wallet once by REST, so the daily-loss breaker measures against the
        account's equity from the start (the ``wallet`` topic only sends changes)."""
        assert self.venue is not None
        try:
            result = await self.venue.rest.get("/v5/account/wallet-balance",
                                               {"accountType": "UNIFIED"}, signed=True)
            usdt = [b for b in parse_wallet_balance(result, now) if b.coin == "USDT"]
        except (HttpError, BybitApiError, CodecError) as exc:
            log.warning("wallet-balance at start: %s; the daily-loss breaker measures against "
                        "[breakers] paper_equity = %g until the first wallet update", exc,
                        self.cfg.breakers.paper_equity)
            return
        if usdt:
            self.balance = usdt[0]

    async def _start_streams(self, nursery: trio.Nursery) -> None:
        """The venue's sockets as one feed (the private one in trade mode), each connected in
        turn before the shell goes on; a watch task per socket turns its connection state
        into ``core.disconnect``/``reconnect``."""
        venue = self.venue
        assert venue is not None

        def counted(channel: str) -> None:
            self.stats.frames += 1
            self.frames_by_channel[channel] = self.frames_by_channel.get(channel, 0) + 1

        feed = venue.market_data(
            list(self.perp), self.on_event, private=self.paper is None,
            funding_interval_ms={s: i.funding_interval_ms for s, i in self.perp.items()})
        feed.recorder = self.recorder
        feed.on_frame = counted
        self.market_feed = feed
        self.streams = feed.streams
        await nursery.start(self._run_feed, feed)
        for channel, st in feed.streams.items():
            nursery.start_soon(self._watch, channel, st, name=f"watch-{channel}")

    async def _run_feed(self, feed: Any,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await feed.run(task_status=task_status)
        except* BybitAuthError as group:
            raise StartupError(str(group.exceptions[0]), EXIT_CONFIG) from None

    # ------------------------------------------------------------------ events (hot path)
    def on_event(self, ev: Any) -> None:
        """One decoded event from a stream (synchronous, in the stream's task)."""
        core = self.funding
        if core is None:
            return
        self.stats.events += 1
        now = int(self.clock())
        if isinstance(ev, _MARKET):
            if isinstance(ev, FundingSettlement):
                self.stats.settlements += 1
                log.info("funding settlement %s: rate %.6f on %s -> %+.4f USDT", ev.symbol,
                         ev.rate, ev.position_size, ev.amount)
            else:
                key = f"{ev.symbol}:{'quote' if isinstance(ev, FundingQuote) else ev.kind.value}"
                self.stats.last_market_ms[key] = now
                if self.paper is not None:
                    if isinstance(ev, BookTop):
                        self.paper.on_book(ev)
                    else:
                        self.paper.on_quote(ev)
            self._dispatch(core.on_market(ev, now), now)
        elif isinstance(ev, _ORDER):
            t0 = 0
            if isinstance(ev, OrderFill):
                feed = self.market_feed
                rx = feed.rx_ns("private") if feed is not None else 0
                t0 = rx or time.perf_counter_ns()
            if self._order_event(ev, now, t0) and self.paper is None:
                # a hedge or close is on its lane: records, logs and the timer's wake-up
                # come after its write (the sender does them), not before
                self._records_dirty = True
                return
        elif isinstance(ev, PositionUpdate):
            self.positions[ev.symbol] = ev
            if self.paper is None:  # a reading like the REST one (confirmed the same way)
                self._dispatch(core.reconcile(ev.symbol, "perp", Decimal(repr(ev.size)),
                                              min(ev.ts_ms, now), now), now)
        elif isinstance(ev, BalanceUpdate):
            if ev.coin == "USDT":
                self.balance = ev
                fb = core.breakers
                if self._equity_placeholder and fb is not None and self.cfg.mode == "trade" \
                        and math.isfinite(ev.equity) and ev.equity > 0:
                    self._equity_placeholder = False
                    fb.rebase(ev.equity, core.net_pnl())
                    log.info("circuit breakers: measuring against the USDT wallet's equity "
                             "%.2f from now on", ev.equity)
            elif self.paper is None:
                for sym in self.perp:
                    if base_coin(sym) == ev.coin:
                        self._dispatch(core.reconcile(sym, "spot",
                                                      Decimal(repr(ev.wallet_balance)),
                                                      min(ev.ts_ms, now), now), now)
        self._flush_records()
        self._wake.set()

    def _order_event(self, ev: Any, now: int, t0_ns: int = 0) -> int:
        """Hand an order event to the core and dispatch what it returns (how many)."""
        core = self.funding
        assert core is not None
        if isinstance(ev, OrderReject):
            self.stats.rejects += 1
            what = "order" if ev.request is OrderRequest.PLACE else f"{ev.request.value} of order"
            (log.info if ev.reason is RejectReason.NOT_FOUND else log.warning)(
                "%s %s %s rejected: %s (%s)", what, ev.client_id, ev.symbol, ev.reason.value,
                ev.detail)
        out = core.on_order_event(ev, now)
        if t0_ns and isinstance(ev, OrderFill):
            kind = self._order_kind.get(ev.client_id)
            for i in out:
                if isinstance(i, PlaceOrder) and kind is not None and i.kind is not kind:
                    self.latency.expect(i.client_id, t0_ns)
        self._dispatch(out, now, urgent=True)
        return len(out)

    def _dispatch(self, intents: list[Any], now: int, urgent: bool = False) -> None:
        for i in intents:
            if isinstance(i, PlaceOrder):
                self._order_kind[i.client_id] = i.kind
                if len(self._order_kind) > 20_000:
                    self._order_kind.clear()
            if self.paper is not None:
                if isinstance(i, PlaceOrder):
                    _log_order(i)
                if isinstance(i, PlaceOrder | CancelOrder):
                    self.paper.submit(i, now)
                if isinstance(i, PlaceOrder):
                    self.latency.written(i.client_id, time.perf_counter_ns())
                    if self.funding is not None:
                        self.funding.on_sent(i.client_id, now)
                self.stats.intents_sent += 1
            else:
                cid = getattr(i, "client_id", "")
                key = (urgent, i.symbol or "*")
                if isinstance(i, PlaceOrder):
                    self._lane_of[cid] = key
                    if len(self._lane_of) > 20_000:
                        self._lane_of = {cid: key}
                elif cid:
                    key = self._lane_of.get(cid, key)
                self._lane(key).send_nowait(i)
        if intents and self.paper is not None:
            self._wake.set()

    def _lane(self, key: tuple[bool, str]) -> trio.MemorySendChannel[Intent]:
        """The send channel of lane ``key`` (made, with its sender task and connection, on
        first use)."""
        tx = self._lanes.get(key)
        if tx is None:
            venue, root = self.venue, self._root
            assert venue is not None and root is not None
            tx, rx = trio.open_memory_channel[Intent](math.inf)
            self._lanes[key] = tx
            ex = venue.order_lane(self._on_request_written)
            root.start_soon(self._sender, rx, ex,
                            name=f"sender-{key[1]}{'-urgent' if key[0] else ''}")
        return tx

    def _on_request_written(self, body: bytes, t_ns: int, returned_ns: int) -> None:
        """After the socket write of a request (measured first, parsed and recorded after;
        the signature travels in headers, never in the body)."""
        if body and self.recorder is not None:
            self.recorder.outbound([body.decode("utf-8", "replace")])
        if b'"orderLinkId"' not in body or b'"orderType"' not in body:
            return  # not an order create
        try:
            link = json.loads(body).get("orderLinkId")
        except (ValueError, AttributeError):
            return
        if isinstance(link, str):
            self.latency.written(link, t_ns, returned_ns)
            if self.funding is not None:
                self.funding.on_sent(link, int(self.clock()))

    async def _sender(self, rx: trio.MemoryReceiveChannel[Intent], ex: BybitExecution) -> None:
        """Trade mode: one lane's intents in order through the REST API (answers to the
        core); the records and logs of the events that made them are written after the
        send, off the fill-to-hedge path."""
        assert self.venue is not None
        try:
            await self.venue.warm(ex)
        except HttpError as exc:
            log.warning("bybit REST connection for orders: %s (retried on first use)", exc)
        async for i in rx:
            try:
                ans: Any
                if isinstance(i, PlaceOrder):
                    ans = await ex.place(i)
                elif isinstance(i, CancelOrder):
                    ans = await ex.cancel(i)
                elif isinstance(i, AmendOrder):
                    ans = await ex.amend(i)
                else:
                    await ex.cancel_all(i)
                    ans = None
                if self._records_dirty:
                    self._records_dirty = False
                    self._flush_records()
                    self._wake.set()
                if isinstance(i, PlaceOrder):
                    _log_order(i)
            except (HttpError, BybitApiError) as exc:
                self.stats.send_errors += 1
                log.error("sending %s %s failed: %s (left to the stream and the intent's "
                          "timers)", type(i).__name__, getattr(i, "client_id", ""), exc)
                continue
            self.stats.intents_sent += 1
            if isinstance(ans, OrderReject | OrderAck) and self.funding is not None:
                now = int(self.clock())
                self._order_event(ans, now)
                self._flush_records()

    # ------------------------------------------------------------------ time
    async def _timer(self) -> None:
        while True:
            core = self.funding
            assert core is not None
            now = self.clock()
            due = now + TICK_S * 1000.0
            for w in (core.next_wakeup_ms(),
                      self.paper.next_wakeup_ms() if self.paper is not None else None):
                if w is not None:
                    due = min(due, float(w))
            with trio.move_on_at(trio_deadline(self.clock, due)):
                await self._wake.wait()
            self._wake = trio.Event()
            self.tick(int(self.clock()))

    def tick(self, now: int) -> None:
        core = self.funding
        assert core is not None
        if self.paper is not None:
            for ev in self.paper.due(now):
                t0 = time.perf_counter_ns() if isinstance(ev, OrderFill) else 0
                if isinstance(ev, _ORDER):
                    self._order_event(ev, now, t0)
                elif isinstance(ev, _MARKET):
                    if isinstance(ev, FundingSettlement):
                        self.stats.settlements += 1
                    self._dispatch(core.on_market(ev, now), now)
        self._dispatch(core.on_tick(now), now)
        self._flush_records()  # (and acts on the breakers' trips: _on_trips)

    # ------------------------------------------------------------------ connection state
    async def _watch(self, name: str, st: BybitStream) -> None:
        while True:
            ev = st.connected
            await ev.wait()
            self._up(name)
            while st.connected is ev:  # noqa: ASYNC110 - the stream swaps the event on a drop
                await trio.sleep(0.02)
            self._down(name)

    def _down(self, name: str) -> None:
        core = self.funding
        if name in self.down or core is None:
            return
        first = not self.down
        self.down.add(name)
        if self.recorder is not None:
            self.recorder.event(K_CONN, {"event": "disconnected", "socket": name})
        self.stats.disconnects += 1
        log.warning("bybit %s stream disconnected; orders wait for the reconnect", name)
        if self.ops is not None:
            self.ops.on_disconnected(f"bybit {name}")
        if first:
            core.disconnect(int(self.clock()))
            self.was_down = True
            if self.down_since_ms is None:
                self.down_since_ms = int(self.clock())
            self._flush_records()

    def _up(self, name: str) -> None:
        core = self.funding
        self.down.discard(name)
        if self.recorder is not None and core is not None:
            self.recorder.event(K_CONN, {"event": "connected", "socket": name})
        if core is None or self.down or not self.was_down or self._resyncing:
            return
        if self.paper is None and self._root is not None:
            self._resyncing = True
            self._root.start_soon(self._resync, name="resync")
        else:
            self._resume()

    def _resume(self) -> None:
        core = self.funding
        assert core is not None
        self.was_down = False
        self.stats.reconnects += 1
        now = int(self.clock())
        if self.restored and self.stats.reconnects == 1:
            log.info("bybit streams connected; resuming the pair(s) rebuilt from the journal: "
                     "%s", ", ".join(self.restored))
        else:
            log.info("bybit streams connected again; resuming")
        self._dispatch(core.reconnect(now), now)
        self._flush_records()
        self._wake.set()

    async def _resync(self) -> None:
        """Trade mode, after a reconnect: what the private socket missed meanwhile (the trades
        and final states of every in-flight order, from REST) goes to the core first, then the
        funding paid during the outage (the transaction log's settlements since the drop,
        booked once by id: a payment the stream did deliver is not counted again); then the
        core resumes (and re-sends what is still in flight under the same ``orderLinkId``) and
        both legs are reconciled against the venue."""
        since = self.down_since_ms
        settled: list[FundingSettlement] = []
        try:
            with trio.move_on_after(self.bcfg.http_timeout_s * 2) as scope:
                missed = await self._missed_events()
            if scope.cancelled_caught:
                log.warning("resync after the reconnect timed out; resuming without it")
                missed = []
            # apart: a failed funding catch-up must not lose the orders' resync
            with trio.move_on_after(self.bcfg.http_timeout_s * 2) as scope:
                try:
                    settled = await self._missed_settlements(since)
                except (HttpError, BybitApiError, CodecError) as exc:
                    self.catchup_from_ms = since  # retried by the reconciliation task
                    log.warning("funding paid while disconnected could not be read (%s); "
                                "retried at the next reconciliation", exc)
            if scope.cancelled_caught:
                self.catchup_from_ms = since
                log.warning("reading the funding paid while disconnected timed out; retried "
                            "at the next reconciliation")
        except (HttpError, BybitApiError, CodecError) as exc:
            log.warning("resync after the reconnect failed (%s); resuming without it", exc)
            missed = []
        finally:
            self._resyncing = False
        now = int(self.clock())
        for ev in missed:
            self._order_event(ev, now)
        if missed:
            log.info("resync: %d order event(s) missed while disconnected applied", len(missed))
        self._book_missed(settled, now)
        self._flush_records()
        if self.down:
            return  # dropped again meanwhile: the next reconnect resyncs
        self.down_since_ms = None
        self._resume()
        if self._root is not None:
            self._root.start_soon(self.reconcile_once, name="reconcile-after-reconnect")

    def _book_missed(self, settled: list[FundingSettlement], now: int) -> None:
        """Hand the catch-up's payments to the core (each booked once, by id)."""
        core = self.funding
        assert core is not None
        for st in settled:
            new = not core.settlement_seen(st.settlement_id)
            self._dispatch(core.on_market(st, now), now)
            if new:
                self.missed_settlements += 1
                self.stats.settlements += 1
                log.info("funding settlement %s at %d missed while disconnected: %+.4f USDT "
                         "booked", st.symbol, st.ts_ms, st.amount)

    async def _missed_settlements(self, since_ms: int | None) -> list[FundingSettlement]:
        """The funding payments of the configured symbols since ``since_ms`` (a minute of
        margin: a payment the stream delivered just before the drop is booked once anyway)."""
        venue = self.venue
        if since_ms is None or venue is None:
            return []
        now = int(self.clock())
        rows = await venue.rest.settlements(since_ms - 60_000, now)
        return [r for r in rows if r.symbol in self.perp]

    # ------------------------------------------------------------------ reconciliation
    async def _reconcile_task(self) -> None:
        """Trade mode: both legs against the venue every ``reconcile_interval_s``."""
        while True:
            await trio.sleep(self.fcfg.reconcile_interval_s)
            if not self.down:
                await self.reconcile_once()

    async def reconcile_once(self) -> None:
        """One reading of every symbol's spot leg (the base coin's ``walletBalance``) and perp
        leg (``/v5/position/list``), handed to :meth:`FundingCore.reconcile`, which believes a
        difference only once confirmed. A failed read is not a reading (logged, skipped)."""
        core, venue = self.funding, self.venue
        if core is None or venue is None or self.paper is not None:
            return
        if self.catchup_from_ms is not None:  # a funding catch-up that failed at the reconnect
            since, self.catchup_from_ms = self.catchup_from_ms, None
            try:
                with trio.fail_after(self.bcfg.http_timeout_s * 2):
                    settled = await self._missed_settlements(since)
            except (HttpError, BybitApiError, CodecError, trio.TooSlowError) as exc:
                self.catchup_from_ms = since
                log.warning("funding paid while disconnected still unreadable (%s)",
                            exc or "timed out")
            else:
                self._book_missed(settled, int(self.clock()))
        bases = {s: base_coin(s) for s in self.perp}
        asked = int(self.clock())
        try:
            with trio.fail_after(self.bcfg.http_timeout_s * 2):
                coins = await venue.rest.wallet_coins(sorted({b for b in bases.values() if b}))
                positions = {p.symbol: p.size for p in await venue.rest.linear_positions()}
        except (HttpError, BybitApiError, CodecError, trio.TooSlowError) as exc:
            log.warning("reconciliation: reading the Bybit wallet/positions failed (%s); "
                        "skipped", exc or "timed out")
            return
        self.reconciles += 1
        now = int(self.clock())
        for sym, base in bases.items():
            out: list[Any] = []
            if base:
                out += core.reconcile(sym, "spot", coins.get(base, Decimal(0)), asked, now)
            out += core.reconcile(sym, "perp", Decimal(repr(positions.get(sym, 0.0))), asked,
                                  now)
            self._dispatch(out, now)
        self._flush_records()
        self._wake.set()

    async def _missed_events(self) -> list[Any]:
        core, venue = self.funding, self.venue
        assert core is not None and venue is not None
        out: list[Any] = []
        for sym, it in list(core.intents.items()):
            for o in it.in_flight():
                if not o.live:
                    continue  # NEW: never handed to the venue, nothing there to read
                kind = it.legs[o.leg].kind
                q = {"category": KIND_CATEGORY[kind], "symbol": sym, "orderLinkId": o.client_id}
                dec = BybitDecoder(kind)
                trades = (await venue.rest.get("/v5/execution/list", q, signed=True)).get("list")
                if trades:  # oldest first, through the same codec as the stream
                    out += dec.decode(json.dumps({"topic": "execution",
                                                  "data": list(reversed(trades))}))
                rows = (await venue.rest.get("/v5/order/realtime", q, signed=True)).get("list")
                if rows:
                    out += dec.decode(json.dumps({"topic": "order", "data": rows[:1],
                                                  "creationTime": int(self.clock())}))
        return [e for e in out if isinstance(e, _ORDER)]

    def connected(self) -> bool:
        return bool(self.streams) and not self.down and all(
            s.connected.is_set() for s in self.streams.values())

    # ------------------------------------------------------------------ records
    def _flush_records(self) -> None:
        core, writer = self.funding, self.writer
        if core is None or writer is None:
            return
        recs = core.drain_records()
        if not recs:
            self._on_trips(core.take_trips())
            return
        now = self.clock()
        changed = False
        for r in recs:
            ts = r.get("ts", now) if isinstance(r, dict) else now
            writer.write(RECORD_KIND, ts if isinstance(ts, int | float) else now, r)
            self.stats.records += 1
            self._log_record(r)
            changed = changed or (isinstance(r, dict) and r.get("type") in STATE_CHANGES)
        if changed:  # the restart journal: the whole state after what the batch changed
            writer.write(RECORD_KIND, now, {"type": STATE, "ts": int(now), "mode": self.cfg.mode,
                                            "venue": self.journal_venue(),
                                            "core": core.to_record()})
        self._on_trips(core.take_trips())  # after the records of what made them

    def _log_record(self, r: Any) -> None:
        if not isinstance(r, dict):
            return
        kind = r.get("type")
        if kind == "decision":
            action = str(r.get("action", ""))
            if action in ("open", "close", "rebalance"):
                self.stats.decisions += 1
                apr = r.get("apr")
                log.info("funding decision %s %s: %s (APR %s)", r.get("symbol"), action.upper(),
                         r.get("reason"), f"{apr:.1%}" if isinstance(apr, int | float) else "?")
        elif kind == "closed" and r.get("filled"):
            log.info("position closed %s: funding %+.4f, basis %+.4f, fees %.4f, net %+.4f USD, "
                     "hedge ratio %.4f, leg latency %s", r.get("symbol"),
                     _num(r.get("funding")), _num(r.get("basis_pnl")), _num(r.get("fees")),
                     _num(r.get("net")), _num(r.get("hedge_ratio")),
                     whole_ms_text(r.get("leg_latency_ms")))
        if kind == "closed" and r.get("fail_reason"):
            text = (f"{r.get('symbol')}: {r.get('fail_reason')}; the pair was unwound (no new "
                    f"entry in it for [funding] reentry_cooldown_s = "
                    f"{self.fcfg.reentry_cooldown_s:g} s)")
            log.warning("second leg failed: %s", text)
            self._alert("error", "leg_unwound", text)
        elif kind == "anomaly":
            text = f"{r.get('symbol')}: {r.get('detail')}"
            log.error("funding anomaly: %s", text)
            self._alert("error", "funding_anomaly", text)
        elif kind == "position":
            log.info("position %s: %s", r.get("symbol"),
                     " ".join(f"{k}={v}" for k, v in r.items() if k not in ("type", "ts",
                                                                             "symbol")))

    # ------------------------------------------------------------------ stop / kill
    def request_stop(self, reason: str) -> bool:
        """The kill switch, once: no new entries, flatten both legs, exit."""
        return begin_stop(self, reason, self._root, self._stop_task)

    def kill(self, reason: str) -> None:
        """No new entries and both legs of every position flattened (perp reduce-only)."""
        core = self.funding
        self.killed_reason = self.killed_reason or reason
        if core is None:
            return
        self._flush_records()  # what happened before the kill is logged before it
        now = int(self.clock())
        log.warning("kill: %s; flattening both legs of every position", reason)
        self._dispatch(core.kill(now), now)
        self._flush_records()
        self._wake.set()

    async def _stop_task(self, reason: str) -> None:
        log.warning("stopping: %s", reason)
        self.kill(reason)
        with trio.move_on_after(self.cfg.ops.kill_flat_timeout_s) as scope:
            while not self.flat():  # noqa: ASYNC110 - flat is the venue's answer, not an event
                await trio.sleep(0.05)
        if scope.cancelled_caught:
            log.error("positions still open %.0f s after the stop: %s; reconcile at the venue",
                      self.cfg.ops.kill_flat_timeout_s, self.open_summary())
            self.exit_code = EXIT_RUNTIME
        else:
            log.info("flat: both legs closed")
        self._flush_records()
        if self._cancel is not None:
            self._cancel.cancel()

    def stop(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def flat(self) -> bool:
        return all(abs(p["spot_qty"]) <= 0 and abs(p["perp_qty"]) <= 0 and not p["busy"]
                   for p in self.position_rows().values())

    def open_summary(self) -> str:
        rows = self.position_rows()
        return ", ".join(f"{s} spot {p['spot_qty']} perp {p['perp_qty']}"
                         for s, p in rows.items() if p["spot_qty"] or p["perp_qty"]) or "none"

    async def _stop_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self.request_stop(f"run duration of {seconds:g} s reached")

    async def _control_task(self) -> None:
        while True:
            await trio.sleep(0.5)
            if self.kill_path.exists():
                self.request_stop(f"kill switch: kill file {self.kill_path} exists")
            if consume_request(self.state_dir / FLATTEN_FILE):
                self.flatten_from_operator("flatten file")
            if consume_request(self.state_dir / RESET_FILE):
                self.reset_from_operator("reset file")

    def flatten_from_operator(self, source: str) -> dict[str, Any]:
        n = sum(1 for p in self.position_rows().values() if p["spot_qty"] or p["perp_qty"])
        self.kill(f"flatten requested ({source})")
        return {"flattening": n, "detail": "both legs of every position, perp reduce-only; "
                                           "no new entries until a restart"}

    def reset_from_operator(self, source: str) -> dict[str, Any]:
        fb = self.breakers
        halted = sorted(fb.cb.halted_markets()) if fb is not None else []
        if self.breaker_trip is None and not halted and not (fb and fb.global_trip()):
            return {"reset": False, "detail": "no breaker tripped"}
        log.warning("breaker reset by the operator (%s): %s", source,
                    self.breaker_trip or f"market_move halts of {', '.join(halted)}")
        if fb is not None:
            fb.reset()  # every breaker re-armed from now (engine.core.breakers)
        self._write_reset(source)
        self.breaker_trips = []
        if self.breaker_trip is None:
            return {"reset": True, "detail": f"market_move halts of {', '.join(halted)} "
                                             "lifted: entries there again"}
        self.breaker_trip, self.breaker_name = None, ""
        return {"reset": True, "detail": "breaker reset; entries stay off until a restart "
                                         "(the kill flattened them)"}

    # ------------------------------------------------------------------ breakers
    @property
    def breakers(self) -> FundingBreakers | None:
        """The core's circuit breakers (engine.core.funding_breakers), once armed."""
        return self.funding.breakers if self.funding is not None else None

    @property
    def peak_equity(self) -> float | None:
        fb = self.breakers
        return fb.cb.peak if fb is not None else None

    def _restore_breaker(self) -> None:
        """A trip of an earlier run still holds (engine.ops.funding_latch): no new entries this
        run, like the Hyperliquid hard stop; a reset request waiting in the state dir releases
        it now instead. The records are the truth: a journaled breaker state whose trips the
        records do not hold (reset, or older than the lookback) is re-armed."""
        now = int(self.clock())
        latch = latched_breaker(self.records_dir, dt.datetime.fromtimestamp(now / 1000,
                                                                          dt.UTC).date())
        fb = self.breakers
        if latch is None:
            if fb is not None and fb.reset_global():
                log.info("circuit breakers: the journal's tripped breakers are not latched in "
                         "the records (reset); re-armed")
            return
        detail = str(latch.get("detail") or latch.get("breaker"))
        if consume_request(self.state_dir / RESET_FILE):
            log.warning("breaker latched by an earlier run (%s) released at start by the "
                        "operator's reset request", detail)
            if fb is not None:
                fb.reset()
            self._write_reset("reset file at start")
            return
        self.breaker_trip, self.breaker_name = detail, str(latch.get("breaker") or "")
        self.breaker_trips = [{"breaker": self.breaker_name, "market": None, "detail": detail,
                               "earlier_run": True}]
        log.critical("circuit breaker latched by an earlier run: %s; no new entries (python -m "
                     "engine reset-hard-stop, then restart)", detail)
        self.kill(f"circuit breaker latched by an earlier run: {detail}")

    def _write_reset(self, source: str) -> None:
        if self.writer is not None:
            now = int(self.clock())
            self.writer.write(RECORD_KIND, now, {"type": "breaker_reset", "ts": now,
                                                 "source": source})

    def equity(self) -> float:
        """The account's equity the breakers are armed with (trade: the USDT wallet; paper,
        or before the wallet is known: ``[breakers] paper_equity``)."""
        if self.balance is not None and self.cfg.mode == "trade":
            return self.balance.equity
        return self.cfg.breakers.paper_equity

    def _on_trips(self, trips: list[FundingTrip]) -> None:
        """Act on the core's breaker trips. A breaker that latches the hard stop (daily_loss,
        drawdown, consecutive_losses): a CRITICAL line, a ``breaker`` record, the critical
        ``circuit_breaker`` alert, and (the first) the kill switch — both legs flattened, no
        new entries. ``market_move``: that symbol takes no new entry (the core refuses it), an
        ERROR line, a ``market_halt`` record (it does not latch across restarts) and the
        alert."""
        for t in trips:
            now = int(t.trip.now_ms)
            self.breaker_trips.append({"breaker": t.breaker, "market": t.market,
                                       "detail": t.detail})
            if not t.latches_hard_stop:
                log.error("circuit breaker market_move: %s", t.detail)
                self._alert("critical", "circuit_breaker", f"market_move: {t.detail}")
                if self.writer is not None:
                    self.writer.write(RECORD_KIND, now, {
                        "type": "market_halt", "ts": now, "breaker": t.breaker,
                        "symbol": t.market, "detail": t.detail})
                continue
            first = self.breaker_trip is None
            if first:
                self.breaker_trip, self.breaker_name = t.detail, t.breaker
            log.critical("circuit breaker: %s; flattening, no new entries", t.detail)
            self._alert("critical", "circuit_breaker", f"{t.breaker}: {t.detail}; both legs "
                                                       "flattened, no new entries")
            if self.writer is not None:
                self.writer.write(RECORD_KIND, now, {"type": "breaker", "ts": now,
                                                     "breaker": t.breaker, "detail": t.detail})
            if first:
                self.kill(f"circuit breaker: {t.detail}")

    def _alert(self, level: str, code: str, message: str) -> None:
        """To the dashboard's alerts and (error, critical) the webhook."""
        if self.ops is not None:
            self.ops.on_alert(Alert(level, code, message))

    def breakers_doc(self) -> dict[str, Any]:
        """``/status`` ``breakers``: the trips acted on, how close the others are, the
        thresholds and the equity the breakers measure."""
        b = self.cfg.breakers
        fb = self.breakers
        snap = fb.snapshot() if fb is not None else {}
        return {"trips": [dict(t) for t in self.breaker_trips],
                "daily_loss_pct": _num(snap.get("daily_loss_pct")),
                "drawdown_pct": _num(snap.get("drawdown_pct")),
                "consecutive_losses": int(snap.get("consecutive_losses") or 0),
                "halted_markets": list(snap.get("halted_markets") or []),
                "thresholds": {"daily_loss": b.daily_loss_pct, "drawdown": b.drawdown_pct,
                               "consecutive_losses": b.max_consecutive_losses,
                               "market_move": b.market_move_pct,
                               "market_move_window_s": b.market_move_window_s},
                "equity": snap.get("equity", self.equity()),
                "peak_equity": snap.get("peak_equity"),
                "day_start_equity": snap.get("day_start_equity"),
                "daily_pnl": snap.get("daily_pnl")}

    # ------------------------------------------------------------------ views
    def snapshot(self) -> dict[str, Any]:
        core = self.funding
        return core.snapshot() if core is not None else {}

    def position_rows(self) -> dict[str, dict[str, Any]]:
        """Per symbol: spot_qty, perp_qty, net, state, busy (intent not idle), P&L parts."""
        return symbol_rows(self.snapshot())

    def totals(self) -> dict[str, float]:
        """Closed round trips plus the open ones marked now (funding, basis, fees, net)."""
        snap = self.snapshot()
        closed = snap.get("totals") if isinstance(snap.get("totals"), Mapping) else {}
        assert isinstance(closed, Mapping)
        t = {"funding": _num(closed.get("funding")), "basis_pnl": _num(closed.get("basis")),
             "fees": _num(closed.get("fees")), "net_pnl": _num(closed.get("net")),
             "closed": _num(closed.get("closed"))}
        for r in symbol_rows(snap).values():
            if r.get("intent_id") is None:
                continue
            t["funding"] += _num(r.get("funding"))
            t["basis_pnl"] += _num(r.get("basis_pnl"))
            t["fees"] += _num(r.get("fees"))
            t["net_pnl"] += _num(r.get("net"))
        return t

    def symbols_live(self) -> int:
        now = self.clock()
        stale = self.fcfg.quote_stale_ms
        return sum(1 for s in self.perp
                   if now - self.stats.last_market_ms.get(f"{s}:quote", -math.inf) <= stale
                   and now - self.stats.last_market_ms.get(f"{s}:spot", -math.inf) <= stale)

    def summary_line(self) -> str:
        rows = self.position_rows()
        held = [r for r in rows.values() if r["spot_qty"] or r["perp_qty"]]
        hedged = sum(1 for r in held if r["hedged"])
        t = self.totals()
        lat = self.latency.quantiles()
        med = lat["median_ms"]
        return (f"funding: symbols live {self.symbols_live()}/{len(self.perp)} | positions "
                f"{len(held)} (hedged {hedged}, unhedged {len(held) - hedged}) | funding earned "
                f"{t['funding']:+.4f} USD | basis {t['basis_pnl']:+.4f} fees {t['fees']:.4f} | "
                f"net P&L {t['net_pnl']:+.4f} USD | settlements {self.stats.settlements} | "
                f"leg latency median {'?' if med is None else f'{med:.2f} ms'} | reconnects "
                f"{self.stats.reconnects}" + (f" | KILLED ({self.killed_reason})"
                                              if self.killed_reason else ""))

    async def _summary_task(self) -> None:
        interval = self.cfg.summary.interval_s
        if interval <= 0:
            return
        while True:
            await trio.sleep(interval)
            summary_log.info("%s", self.summary_line())

    def _log_final(self) -> None:
        t = self.totals()
        log.info("stopped: %d settlements, funding %+.4f USD, net P&L %+.4f USD, %d records; "
                 "records flushed to %s", self.stats.settlements, t["funding"], t["net_pnl"],
                 self.stats.records, self.records_dir.resolve())

    # ------------------------------------------------------------------ ops host interface
    def is_ready(self) -> bool:
        """Started, connected, every symbol quoted and every balance explained."""
        core = self.funding
        return (self.ready.is_set() and self.connected()
                and self.symbols_live() == len(self.perp)
                and not (core is not None and core.unreconciled))

    def ready_detail(self) -> str:
        """The READY line's subject: the spot/perp pairs traded, e.g. ``2 pairs (BTCUSDT,
        ETHUSDT)``."""
        n = len(self.perp)
        return f"{n} pair{'' if n == 1 else 's'} ({', '.join(self.perp)})"

    def health_inputs(self, loop_lag_ms: float | None, writer_errors: int) -> HealthInputs:
        now = self.clock()
        ages = [max(0.0, (now - t) / 1000.0) for t in self.stats.last_market_ms.values()]
        busy = [r for r in self.position_rows().values() if r["busy"] and not r["hedged"]]
        return HealthInputs(
            ready=self.is_ready(), mode=self.cfg.mode, markets_total=len(self.perp),
            max_market_data_age_s=max(ages) if ages else None,
            feed_connected=self.connected(),
            oldest_unresolved_order_age_s=None if not busy else 0.0,
            unresolved_order_bound_s=self.fcfg.leg_deadline_s,
            writer_pending=self.writer.pending if self.writer is not None else 0,
            writer_max_pending=self.cfg.ops.health_max_writer_pending,
            writer_errors_recent=writer_errors, hard_stop=self.breaker_trip,
            killed=self.stop_reason is not None or self.killed_reason is not None,
            event_loop_lag_ms=loop_lag_ms)

    def status_doc(self) -> dict[str, Any]:
        rows = self.position_rows()
        t = self.totals()
        held = {s: r for s, r in rows.items() if r["spot_qty"] or r["perp_qty"]}
        doc: dict[str, Any] = {
            "mode": self.cfg.mode, "venue": "bybit", "strategy": "funding",
            "ready": self.is_ready(), "stopping": self.stop_reason,
            "killed": self.stop_reason is not None or self.killed_reason is not None,
            "hard_stop": self.breaker_trip, "kill_file": str(self.kill_path),
            "kill_file_present": self.kill_path.exists(),
            "records_dir": str(self.records_dir.resolve()),
            "markets": len(self.perp), "markets_live": self.symbols_live(),
            "positions": {s: r["perp_qty"] for s, r in held.items()},
            "realized_pnl": t["net_pnl"], "unrealized_pnl": None,
            "funding": {"symbols": rows, "totals": t, "settlements": self.stats.settlements,
                        "leg_latency": self.latency.quantiles(),
                        "hedged": sum(1 for r in held.values() if r["hedged"]),
                        "unhedged": sum(1 for r in held.values() if not r["hedged"]),
                        "unreconciled": dict(self.funding.unreconciled)
                        if self.funding is not None else {},
                        "reconciles": self.reconciles,
                        "missed_settlements": self.missed_settlements},
            "breakers": self.breakers_doc(),
            "feed": {"connected": self.connected(), "reconnects": self.stats.reconnects,
                     "disconnects": self.stats.disconnects, "frames": self.stats.frames,
                     "malformed": sum(s.malformed for s in self.streams.values())},
            "orders": {"sent": self.stats.intents_sent, "rejects": self.stats.rejects,
                       "send_errors": self.stats.send_errors},
        }
        if self.positions:
            doc["venue_positions"] = {s: p.size for s, p in self.positions.items()}
        return doc

    def collect_metrics(self, m: Any) -> None:
        fm = self.fmetrics
        if fm is not None:
            fm.collect(self.position_rows(), self.totals(), self.stats.settlements,
                       self.symbols_live(), self.connected())
        self.ops.metrics.set_flags(hard_stop=self.breaker_trip is not None)
        if self.funding is not None:  # the open pairs' orders, by the same order states
            m.set_orders(self.funding.order_counts())
        tripped = {t["breaker"] for t in self.breaker_trips}
        for name in ("daily_loss", "drawdown", "consecutive_losses", "market_move"):
            m.breaker_tripped.labels(name).set(1 if name in tripped else 0)


def base_coin(symbol: str) -> str | None:
    """The base coin of a USDT spot pair (``BTCUSDT`` → ``BTC``); None for another quote."""
    return symbol[:-4] if symbol.endswith("USDT") and len(symbol) > 4 else None


def _log_order(i: PlaceOrder) -> None:
    log.info("order %s %s %s %s %s%s", i.client_id, i.symbol, i.kind.value, i.side.value, i.qty,
             " reduce-only" if i.reduce_only else "")


def whole_ms_text(ms: Any) -> str:
    """A latency the core measures in whole milliseconds of its clock: ``< 1 ms`` for 0 (the
    precise figure is the leg-latency tracker's), ``?`` when there is none."""
    if not isinstance(ms, int | float):
        return "?"
    return "< 1 ms" if ms < 1 else f"{ms:.0f} ms"


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return 0.0


def symbol_rows(snap: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Normalise :meth:`FundingCore.snapshot` to one row per symbol (see
    :meth:`FundingApp.position_rows`)."""
    syms = snap.get("symbols", snap)
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(syms, Mapping):
        return out
    for sym, r in syms.items():
        if not isinstance(r, Mapping):
            continue
        spot = _num(r.get("spot_qty", 0.0))
        perp = _num(r.get("perp_qty", 0.0))
        state = str(r.get("state") or "idle")
        row = dict(r)
        row.update({"spot_qty": spot, "perp_qty": perp, "net_qty": spot + perp, "state": state,
                    "busy": state.lower() not in ("idle", "hedged"),
                    "hedged": state.lower() == "hedged"})
        out[str(sym)] = row
    return out


async def run_funding(cfg: EngineConfig, *, duration_s: float | None = None) -> int:
    """Run the funding strategy until a stop; return an exit code."""
    return await FundingApp(cfg, duration_s=duration_s).run()


__all__ = ["FundingApp", "LegLatency", "run_funding", "symbol_rows"]
