"""Backtest of the funding/basis strategy: recorded Bybit frames or a funding-history CSV through
:class:`~engine.core.funding_core.FundingCore` and the paper venue, on a replay clock.

Pure and synchronous: :class:`FundingBacktest` is the loop a live shell runs, minus Trio. Time
only moves forward: before an input stamped ``t`` is applied, every wakeup of the venue and the
core due *before* ``t`` fires (venue first: its fills and settlements reach the core, then the
core's timers), the clock set to each due time; what is due *at* ``t`` fires once every input
stamped ``t`` is applied (when a later input comes, or at the end).
Nothing reads an input ahead of the clock, so a run on data cut at ``T`` writes exactly the
prefix (records stamped ``<= T``) of the full run (tests/replay/test_funding_backtest.py).

Inputs (see ``docs/data-formats.md``):

* **Frames** (JSON Lines): ``{"ts": <receive ms>, "socket": "linear" | "spot", "raw": <the
  frame, as text or as the JSON object>}``, one frame a line, in receive order. Each socket has
  its own :class:`~engine.venues.bybit.codec.BybitDecoder`. Linear ``tickers.*`` frames give the
  :class:`FundingQuote` and the perp's top of book (``bid1Price/bid1Size/ask1Price/ask1Size`` of
  the merged ticker); ``orderbook.*`` frames give a :class:`BookTop` plus the whole depth, which
  the paper venue walks. Inputs are timed by the receive time ``ts`` (what the engine knew),
  not the venue's own stamp.
* **Funding-history CSV**: the columns of Bybit's ``/v5/market/funding/history`` —
  ``symbol``, ``fundingRate``, ``fundingRateTimestamp`` (epoch ms, the settlement time) —
  plus an optional ``price`` column (the mid of both legs at that time; else the run's fixed
  ``price``). A row becomes known at its settlement time ``T``: a quote for ``T`` with the row's
  rate (what settles at ``T``), then the forecast for the next settlement ``T + interval`` (the
  instrument's interval) with the same rate — the latest known rate, never a future one. Between
  rows the last known quote and books are re-stamped every ``step_ms`` (the engine would see
  ticker updates); the books are ``price ± spread_bps/2`` with ``depth_qty`` at the top.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from engine.config import FundingConfig
from engine.core.funding_core import FundingCore, Intent, VenueFees, with_venue_fees
from engine.core.neutral import (
    BookTop,
    FundingQuote,
    FundingSettlement,
    Instrument,
    InstrumentKind,
    OrderAck,
    OrderDone,
    OrderFill,
    OrderReject,
    PlaceOrder,
)
from engine.core.paper_two_leg import Level, PaperTwoLegVenue
from engine.venues.bybit.codec import BookGap, BybitDecoder, Malformed

log = logging.getLogger(__name__)

MAX_WAKES_PER_MS = 1000
"""A wakeup that keeps asking for the same millisecond this often is a bug: stop, loudly."""


@attrs.frozen
class Tick:
    """One input at ``ts``: a market event, with the book's depth when known."""

    ts: int
    event: FundingQuote | BookTop
    levels: tuple[Sequence[Level], Sequence[Level]] | None = None


@attrs.frozen
class SocketEvent:
    """A recorded connection event: socket ``socket`` up (``connected``) or down at ``ts``."""

    ts: int
    socket: str
    connected: bool


class BacktestError(ValueError):
    """The input cannot be backtested (one line, naming what to change)."""


class FundingBacktest:
    """The replay loop (see the module docstring)."""

    def __init__(self, cfg: FundingConfig, spot: dict[str, Instrument],
                 perp: dict[str, Instrument], *, start_ms: int, latency_ms: float = 50.0,
                 extra_latency_ms: dict[InstrumentKind, float] | None = None,
                 spot_balances: dict[str, float] | None = None, tid_prefix: str = "bt",
                 core_start_ms: int | None = None, tick_ms: int | None = None) -> None:
        """``core_start_ms``: when the core was built (its client-id prefix; default
        ``start_ms``). ``tick_ms``: run the live shell's timer (:data:`LIVE_TICK_MS`) —
        venue events due and ``on_tick`` after the inputs of each millisecond (the live
        timer wakes once the stream tasks have handed over what arrived), and at least every
        ``tick_ms`` — instead of only at the core's own wakeups."""
        self.core = FundingCore(cfg, spot, perp,
                                now_ms=start_ms if core_start_ms is None else core_start_ms)
        self.venue = PaperTwoLegVenue(spot, perp, latency_ms=latency_ms,
                                      extra_latency_ms=extra_latency_ms, tid_prefix=tid_prefix,
                                      spot_balances=spot_balances)
        self.tick_ms = tick_ms
        self._last_tick = start_ms
        self._tick_due: int | None = None  # the live timer's wake after the latest event
        self.down: set[str] = set()  # sockets down (recorded connection events)
        self.was_down = False
        for sym, qty in (spot_balances or {}).items():
            self.core.strategy.inventory[sym] = qty
        self.cfg, self.spot, self.perp = cfg, spot, perp
        self.now = start_ms
        self.records: list[dict[str, Any]] = []
        self.offline = False
        self._held: list[Any] = []  # venue events not delivered while offline

    # -- the loop --------------------------------------------------------------------------------

    def send(self, intents: list[Intent], now: int) -> None:
        """What the live shell's paper dispatch does: each order and cancel to the paper
        venue, and an order's write time back to the core (its leg latency)."""
        for i in intents:
            self.venue.submit(i, now)
            if isinstance(i, PlaceOrder):
                self.core.on_sent(i.client_id, now)

    def _collect(self) -> None:
        self.records.extend(self.core.drain_records())
        # the strategy's inventory follows the venue's spot balance (negative funding)
        for sym, bal in self.venue.spot_bal.items():
            self.core.strategy.inventory[sym] = float(bal)

    def _deliver(self, events: list[Any], t: int) -> None:
        for ev in events:
            if isinstance(ev, FundingSettlement):
                self.send(self.core.on_market(ev, t), t)
            elif isinstance(ev, (OrderAck, OrderFill, OrderDone, OrderReject)):
                self.send(self.core.on_order_event(ev, t), t)

    def _fire(self, t: int) -> None:
        self.now = max(self.now, t)
        events = self.venue.due(t)
        if self.offline:
            self._held += events
        else:
            self._deliver(events, t)
        w = self.core.next_wakeup_ms()
        if self.tick_ms is not None or (w is not None and w <= t):
            self.send(self.core.on_tick(t), t)
            self._last_tick = t
            if self._tick_due is not None and self._tick_due <= t:
                self._tick_due = None
        self._collect()

    def _wakeup(self) -> int | None:
        ws = [w for w in (self.venue.next_wakeup_ms(), self.core.next_wakeup_ms())
              if w is not None]
        if self.tick_ms is not None:
            ws.append(self._last_tick + self.tick_ms)
            if self._tick_due is not None:
                ws.append(self._tick_due)
        return min(ws) if ws else None

    def advance(self, t: int, *, inclusive: bool = False) -> None:
        """Fire every wakeup due before ``t`` (or at ``t`` with ``inclusive``)."""
        same, last = 0, None
        while True:
            w = self._wakeup()
            if w is None or w > t or (w == t and not inclusive):
                return
            w = max(w, self.now)
            same = same + 1 if w == last else 0
            if same > MAX_WAKES_PER_MS:
                raise RuntimeError(f"wakeup stuck at {w}")
            last = w
            self._fire(w)

    def feed(self, tick: Tick) -> None:
        if tick.ts < self.now:
            raise BacktestError(f"input at {tick.ts} is older than the clock {self.now}: "
                                "inputs must be in time order")
        self.advance(tick.ts)
        self.now = tick.ts
        ev = tick.event
        if isinstance(ev, FundingQuote):
            self.venue.on_quote(ev)
        else:
            self.venue.on_book(ev, tick.levels)
        if not self.offline:  # the engine's market sockets are down too
            self.send(self.core.on_market(ev, tick.ts), tick.ts)
        self._collect()
        if self.tick_ms is not None:  # the live timer wakes after the events (of this ms)
            self._tick_due = tick.ts

    # -- recorded connection events: what the live shell does on each (FundingApp._down/_up)

    def socket_event(self, ev: SocketEvent) -> None:
        """Socket ``ev.socket`` went down or came back at ``ev.ts``: the first socket down
        disconnects the core; the last one back reconnects it (its re-sends go out, and the
        live timer wakes). The paper venue, like the live one, keeps its own time."""
        t = ev.ts
        if t < self.now:
            raise BacktestError(f"input at {t} is older than the clock {self.now}: "
                                "inputs must be in time order")
        self.advance(t)
        self.now = t
        if not ev.connected:
            if ev.socket in self.down:
                return
            first = not self.down
            self.down.add(ev.socket)
            if first:
                self.core.disconnect(t)
                self.was_down = True
                self._collect()
            return
        self.down.discard(ev.socket)
        if self.down or not self.was_down:
            return
        self.was_down = False
        self.send(self.core.reconnect(t), t)
        self._collect()
        if self.tick_ms is not None:
            self._tick_due = t

    # -- drills: connection loss and restart ------------------------------------------------------

    def disconnect(self, t: int) -> None:
        """The venue is unreachable from ``t``: its events wait, the core sends nothing."""
        self.advance(t, inclusive=True)
        self.core.disconnect(t)
        self.offline = True
        self._collect()

    def reconnect(self, t: int) -> None:
        """Back at ``t``: the core re-sends, then the events that waited arrive."""
        self.advance(t, inclusive=True)
        self.offline = False
        self.send(self.core.reconnect(t), t)
        held, self._held = self._held, []
        self._deliver(held, t)
        self._collect()

    def restart(self, t: int) -> None:
        """The process restarts at ``t`` from the core's journal record (a JSON round trip);
        the paper venue (the exchange) keeps its state."""
        self.advance(t, inclusive=True)
        rec = json.loads(json.dumps(self.core.to_record()))
        self._collect()
        self.core = FundingCore.from_record(rec, self.cfg, self.spot, self.perp, now_ms=t)
        for sym, bal in self.venue.spot_bal.items():
            self.core.strategy.inventory[sym] = float(bal)
        if not self.offline:
            self.send(self.core.reconnect(t), t)
            held, self._held = self._held, []
            self._deliver(held, t)
        self._collect()

    def run(self, ticks: Iterable[Tick | SocketEvent],
            end_ms: int | None = None) -> list[dict[str, Any]]:
        for tick in ticks:
            if end_ms is not None and tick.ts > end_ms:
                break
            if isinstance(tick, SocketEvent):
                self.socket_event(tick)
            else:
                self.feed(tick)
        # what is due at the last input's time (or up to end_ms) fires too
        self.advance(end_ms if end_ms is not None else self.now, inclusive=True)
        self._collect()
        return self.records

    def summary(self) -> dict[str, Any]:
        closed = [r for r in self.records if r["type"] == "closed" and r.get("filled")]
        snap = self.core.snapshot()
        return {"closed": len(closed), "totals": snap["totals"],
                "decisions": sum(1 for r in self.records if r["type"] == "decision"),
                "fills": sum(1 for r in self.records if r["type"] == "fill"),
                "settlements": sum(1 for r in self.records if r["type"] == "funding"
                                   and r.get("applied")),
                "open": {s: v for s, v in snap["symbols"].items() if v["state"] != "idle"}}


# -- inputs ------------------------------------------------------------------------------------


def ticks_from_frames(lines: Iterable[str]) -> Iterator[Tick]:
    """Recorded frames (JSON Lines, see the module) → ticks; bad lines are logged and skipped."""
    decoders = {"linear": BybitDecoder(InstrumentKind.LINEAR_PERP),
                "spot": BybitDecoder(InstrumentKind.SPOT)}
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
            ts = int(rec["ts"])
            dec = decoders[str(rec["socket"])]
            raw = rec["raw"]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("frames line %d skipped: %s", n, exc)
            continue
        text = raw if isinstance(raw, str) else json.dumps(raw)
        for ev in dec.decode(text):
            if isinstance(ev, (Malformed, BookGap)):
                log.warning("frames line %d: %s", n, ev)
            elif isinstance(ev, FundingQuote):
                yield Tick(ts, ev)
                top = ticker_book_top(dec, ev, ts)
                if top is not None:
                    yield Tick(ts, top)
            elif isinstance(ev, BookTop):
                book = _book_of(dec, ev)
                levels = None
                if book is not None:
                    levels = (sorted(book.bids.items(), reverse=True), sorted(book.asks.items()))
                yield Tick(ts, ev, levels)


def _book_of(dec: BybitDecoder, top: BookTop) -> Any:
    for topic, book in dec.books.items():
        if topic.endswith("." + top.symbol):
            return book
    return None


def ticker_book_top(dec: BybitDecoder, q: FundingQuote, ts: int) -> BookTop | None:
    """The perp's top of book with sizes from the decoder's merged linear ticker
    (``bid1Price/bid1Size/ask1Price/ask1Size``; a :class:`FundingQuote` carries no sizes): what
    a paper venue matches perp orders against when no perp ``orderbook`` is subscribed. None
    while the ticker lacks a side."""
    m = dec.tickers.merged(q.symbol) or {}
    try:
        bid, ask = float(m["bid1Price"]), float(m["ask1Price"])
        bsz, asz = float(m.get("bid1Size", 0) or 0), float(m.get("ask1Size", 0) or 0)
    except (KeyError, TypeError, ValueError):
        return None
    return BookTop(q.venue, q.symbol, InstrumentKind.LINEAR_PERP, bid, bsz, ask, asz, q.ts_ms)


@attrs.frozen
class FundingRow:
    symbol: str
    rate: float
    ts_ms: int
    price: float | None


def read_funding_csv(path: Path) -> list[FundingRow]:
    """A funding-history CSV (Bybit's field names; see the module) → rows in time order."""
    rows: list[FundingRow] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"symbol", "fundingRate", "fundingRateTimestamp"}
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise BacktestError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                                "(Bybit's funding/history fields)")
        for n, r in enumerate(reader, 2):
            try:
                price = float(r["price"]) if r.get("price") not in (None, "") else None
                rows.append(FundingRow(r["symbol"], float(r["fundingRate"]),
                                       int(float(r["fundingRateTimestamp"])), price))
            except ValueError as exc:
                raise BacktestError(f"{path}:{n}: {exc}") from None
    rows.sort(key=lambda x: (x.ts_ms, x.symbol))
    return rows


def ticks_from_funding(rows: Sequence[FundingRow], perp: dict[str, Instrument], *,
                       price: float | None = None, spread_bps: float = 2.0,
                       depth_qty: float = 10.0, step_ms: int = 60_000,
                       end_ms: int | None = None) -> Iterator[Tick]:
    """Funding rows → quotes and synthetic books (see the module): data known at each time.

    After each row the last known state is re-stamped every ``step_ms`` until the next row
    (after the last one: until ``end_ms``, default its own time), so cutting the rows at ``T``
    and passing ``end_ms=T`` gives exactly the ticks of the whole file up to ``T``."""
    if step_ms <= 0:
        raise BacktestError("step_ms must be > 0")
    last: dict[str, tuple[float, int, float]] = {}  # sym -> (rate, next ms, price)

    def books(sym: str, px: float, ts: int) -> list[Tick]:
        half = px * spread_bps / 2e4
        return [Tick(ts, BookTop("bybit", sym, kind, px - half, depth_qty, px + half,
                                 depth_qty, ts))
                for kind in (InstrumentKind.SPOT, InstrumentKind.LINEAR_PERP)]

    def quote(sym: str, rate: float, next_ms: int, px: float, ts: int) -> Tick:
        interval = perp[sym].funding_interval_ms if sym in perp else 0
        half = px * spread_bps / 2e4
        return Tick(ts, FundingQuote("bybit", sym, rate, next_ms, interval, px, px, px - half,
                                     px + half, ts))

    for i, r in enumerate(rows):
        px = r.price if r.price is not None else price
        if px is None:
            raise BacktestError(f"row for {r.symbol} at {r.ts_ms} has no price and no "
                                "fixed price was given (--price)")
        inst = perp.get(r.symbol)
        interval = inst.funding_interval_ms if inst is not None else 0
        if interval <= 0:
            raise BacktestError(f"{r.symbol}: no funding interval for the instrument")
        yield quote(r.symbol, r.rate, r.ts_ms, px, r.ts_ms)  # what settles now
        yield from books(r.symbol, px, r.ts_ms)
        last[r.symbol] = (r.rate, r.ts_ms + interval, px)
        yield quote(r.symbol, r.rate, r.ts_ms + interval, px, r.ts_ms)  # the forecast
        if i + 1 < len(rows):
            stop = rows[i + 1].ts_ms  # exclusive
        else:
            stop = (end_ms if end_ms is not None else r.ts_ms) + 1
        t = r.ts_ms + step_ms
        while t < stop:
            for sym, (rate, next_ms, lpx) in sorted(last.items()):
                yield from books(sym, lpx, t)
                yield quote(sym, rate, next_ms, lpx, t)
            t += step_ms


# -- the engine's own recordings (<records dir>/frames/, engine/io/frames.py) -----------------

LIVE_TICK_MS = 250
"""The live funding shell's timer period (``engine.funding_app.TICK_S``): it wakes after every
event and at least this often (a test keeps the two equal)."""

SOCKET_KINDS = {"linear": InstrumentKind.LINEAR_PERP, "spot": InstrumentKind.SPOT}
"""The market sockets replay decodes (the books on each); the ``private`` socket's frames are
the venue's answers to a live run's own orders, which a paper replay makes itself."""

FUNDING_START = {"engine": "funding_start"}
"""The ``info`` request under which the funding shell records when it built its core."""


@attrs.define
class FundingRecording:
    """A funding run's frame recording (``python -m engine run`` with ``[recording]``): the run
    header, the instruments and core start time it recorded, and its inputs in receive order.

    Every ``ins`` frame of a market socket goes through that socket's own
    :class:`~engine.venues.bybit.codec.BybitDecoder`, set up like the live one (the linear
    decoder knows each perp's funding interval), so replay sees the events the live core saw.
    With ``from_ms`` the frames before it still pass through the decoders (their ticker and
    book state is what a live engine had then) but give no input; ``to_ms`` ends the inputs."""

    directory: Path
    header: dict[str, Any]
    spot: dict[str, Instrument]
    perp: dict[str, Instrument]
    start_ms: int | None
    from_ms: int | None = None
    to_ms: int | None = None
    malformed: int = 0
    gaps: int = 0
    fees: VenueFees | None = None
    """The venue's fee rates the live run used (its ``funding_start`` record), else None."""

    def inputs(self) -> Iterator[Tick | SocketEvent]:
        from engine.io.frames import K_CONN, K_IN_ON, decode_json, iter_records, split_socket

        decoders: dict[str, BybitDecoder] = {}
        for name, kind in SOCKET_KINDS.items():
            dec = decoders[name] = BybitDecoder(kind)
            if kind is InstrumentKind.LINEAR_PERP:
                for sym, inst in self.perp.items():
                    dec.tickers.set_funding_interval(sym, inst.funding_interval_ms)
        lo = self.from_ms if self.from_ms is not None else -1
        to_ns = None if self.to_ms is None else self.to_ms * 1_000_000 + 999_999
        for rec in iter_records(self.directory, to_ns=to_ns):
            ts = rec.wall_ns // 1_000_000
            if rec.kind == K_IN_ON:
                socket, frame = split_socket(rec.payload)
                on = decoders.get(socket)
                if on is None:
                    continue
                for ev in on.decode(frame):
                    if isinstance(ev, BookGap):  # the live stream resubscribes the topic
                        self.gaps += 1
                        on.reset_book(ev.topic)
                    elif isinstance(ev, Malformed):
                        self.malformed += 1
                    elif isinstance(ev, FundingQuote | BookTop) and ts >= lo:
                        yield Tick(ts, ev)
            elif rec.kind == K_CONN and ts >= lo:
                obj = decode_json(rec.payload)
                if isinstance(obj, dict) and isinstance(obj.get("socket"), str):
                    yield SocketEvent(ts, obj["socket"], obj.get("event") == "connected")


def recording_venue(directory: Path) -> str | None:
    """The venue named by the first run header of the recording in ``directory`` (a records
    dir or its ``frames/``): ``"bybit"`` for the funding engine's, ``"hyperliquid"`` for a
    header without one; None when there is no readable recording."""
    from engine.io.frames import K_RUN, FramesError, decode_json, iter_records

    try:
        for rec in iter_records(directory):
            if rec.kind == K_RUN:
                obj = decode_json(rec.payload)
                venue = obj.get("venue") if isinstance(obj, dict) else None
                return str(venue) if venue else "hyperliquid"
    except (FramesError, ValueError, OSError):
        return None
    return None


def open_recording(directory: Path, *, from_ms: int | None = None,
                   to_ms: int | None = None) -> FundingRecording:
    """The recording in ``directory`` (a records dir or its ``frames/``): its first run's
    header, instruments and core start (read up to its first frame). A recording of another
    venue, or one without instruments, is a :class:`BacktestError`."""
    from engine.io.frames import K_IN_ON, K_INFO, K_RUN, FramesError, decode_json, iter_records
    from engine.venues.bybit.factory import instruments_from_info

    header: dict[str, Any] | None = None
    answers: list[tuple[Any, Any]] = []
    start: int | None = None
    fees: VenueFees | None = None
    try:
        for rec in iter_records(directory):
            if rec.kind == K_RUN and header is None:
                obj = decode_json(rec.payload)
                header = obj if isinstance(obj, dict) else {}
            elif rec.kind == K_INFO:
                obj = decode_json(rec.payload)
                if isinstance(obj, dict):
                    if obj.get("request") == FUNDING_START:
                        resp = obj.get("response")
                        if isinstance(resp, dict) and isinstance(resp.get("now_ms"), int):
                            start = resp["now_ms"]
                            fees = _recorded_fees(resp.get("fees"))
                    else:
                        answers.append((obj.get("request"), obj.get("response")))
            elif rec.kind == K_IN_ON:
                break
    except FramesError as exc:
        raise BacktestError(str(exc)) from None
    if header is None:
        raise BacktestError(f"{directory}: no run header: not an engine frame recording")
    if header.get("venue") != "bybit":
        venue = header.get("venue") or "hyperliquid"
        raise BacktestError(f"{directory}: a recording of venue {venue!r}, not bybit (replay "
                            "it without --venue bybit)")
    spot, perp = instruments_from_info(answers)
    missing = [s for s in header.get("symbols") or [] if s not in spot or s not in perp]
    if not spot or not perp or missing:
        raise BacktestError(f"{directory}: the recording holds no instruments-info for "
                            f"{', '.join(missing) or 'its symbols'} (recorded by an older "
                            "engine?)")
    return FundingRecording(directory, header, spot, perp, start, from_ms, to_ms, fees=fees)


def _recorded_fees(raw: Any) -> VenueFees | None:
    """``funding_start``'s ``fees`` (leg → symbol → [taker, maker]), None when absent or not
    that shape (a run that used the config's rates)."""
    if not isinstance(raw, dict):
        return None
    try:
        return {str(leg): {str(sym): (float(r[0]), float(r[1])) for sym, r in per.items()}
                for leg, per in raw.items()}
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        return None


def replay_recording(cfg: FundingConfig, rec: FundingRecording, *, latency_ms: float,
                     drain_ms: int = 0, spot_balances: dict[str, float] | None = None
                     ) -> tuple[FundingBacktest, list[dict[str, Any]]]:
    """``rec`` through the live shell's loop on a replay clock (:data:`LIVE_TICK_MS` timer,
    the recorded core start, so the same client ids): (the backtest, its records). The clock
    runs to ``to_ms`` (or the last input) plus ``drain_ms``."""
    symbols = [s for s in cfg.symbols if s in rec.spot and s in rec.perp]
    if symbols != list(cfg.symbols):
        gone = sorted(set(cfg.symbols) - set(symbols))
        raise BacktestError(f"[funding] symbols {', '.join(gone)} are not in the recording "
                            f"(it has {', '.join(sorted(rec.perp))})")
    inputs = rec.inputs()
    first = next(inputs, None)
    # the clock starts with the live core (before its first frame), or at the window's start
    if rec.start_ms is not None and rec.from_ms is None:
        start = rec.start_ms if first is None else min(rec.start_ms, first.ts)
    elif first is not None:
        start = first.ts
    else:
        raise BacktestError(f"{rec.directory}: no market data in the selected window")
    # as the live shell built them (the venue's fee rates when it read them)
    cfg, spot, perp = with_venue_fees(cfg, rec.spot, rec.perp, rec.fees)
    bt = FundingBacktest(cfg, spot, perp, start_ms=start, latency_ms=latency_ms,
                         spot_balances=spot_balances, core_start_ms=rec.start_ms,
                         tid_prefix=f"paper{rec.start_ms if rec.start_ms is not None else start}",
                         tick_ms=LIVE_TICK_MS)

    def all_inputs() -> Iterator[Tick | SocketEvent]:
        if first is not None:
            yield first
        yield from inputs

    last = start
    for item in all_inputs():
        last = item.ts
        if isinstance(item, SocketEvent):
            bt.socket_event(item)
        else:
            bt.feed(item)
    end = (rec.to_ms if rec.to_ms is not None else last) + drain_ms
    records = bt.run([], end_ms=max(end, bt.now))
    return bt, records
