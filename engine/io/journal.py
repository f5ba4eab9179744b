"""Restart recovery of the trading core from its own journal (orders, fills, positions, trades).

The :class:`~engine.core.trading.TradingCore` journals everything it decides through ``Record``
intents that the shell appends to ``{kind}_{UTC day}.jsonl`` (:mod:`engine.io.records`):

* ``orders``: the full order (:meth:`~engine.core.orders.Order.record`) on creation and on every
  state change, with ``event`` / ``why`` and ``ts_ms``;
* ``fills``: every distinct fill applied to a position (``tid``; also synthetic
  reconciliation fills);
* ``positions``: position state changes, ``entry_done`` / ``flatten_done`` with the size left
  (a flatten's ``failure``: whether it counted toward ``max_flatten_failures``),
  ``hard_stop`` (reason, detail) and ``hard_stop_reset``;
* ``trades``: closed trades.

:func:`load_journal` reads the last ``lookback_days`` UTC days (today by ``now_ms`` and the days
before: the same convention as :mod:`engine.io.followup_recovery`) into a :class:`JournalState`:
the distinct fills by tid, the merged last known state of every order, the positions events and
the hard-stop latch (for the latch, older ``positions`` day files are searched too, newest
first, until a latch or reset event is found: a latch is never forgotten by age). It also reads
the shell's ``signals`` files for the entry edge and oracle of the signals our entries came
from. Torn last lines (a kill mid-write), undecodable lines and records without the fields a
restore needs are skipped and counted, with a warning.

:func:`restore` rebuilds a *fresh* core from that state, the way the core would have been had
it never stopped (the predecessor's resync wiped the per-position metadata, #49, d1f44fd):

1. every distinct fill is re-applied through the core's position book (in journal order), so
   each position is the signed sum of its distinct fills, with the trade accounting of the open
   trade, and every tid is known (a fill delivered again is a duplicate);
2. every order is re-created with its cloid, wire strings, purpose and reduce-only flag;
   terminal ones stay terminal (late messages about them are recognised, not "foreign"), every
   other one becomes UNKNOWN: it must be resolved by cloid before new entries (the core's
   readiness gate counts UNKNOWN orders; its housekeeping sends the ``QueryOrder``);
3. an order's venue-reported cumulative fill beyond its confirmed fills is restored as
   unconfirmed exposure (exactly what the core held);
4. each market's position FSM state follows from its live orders and exposure (entry live,
   flatten live, exposure); the one-live-flatten slot is held by a restored UNKNOWN flatten;
5. the per-position metadata of an open position or live entry comes back: entry signal id,
   decision price, entry edge, entry time (when the core first learned of the exposure), the
   exit baseline (time stop and decay run from the real entry time), the exit reason and the
   flatten failure count;
6. the hard-stop latch is re-latched with its reason if the journal shows it latched and not
   reset; recent non-benign rejects are fed back to the reject-burst window.

The restore appends to ``core.out`` one ``orders`` record per order it made UNKNOWN (so the
journal shows it), a ``positions`` ``journal_restored`` summary, and an alert when something
needs an operator (unknown orders, a latched hard stop, damaged lines).

Limits: fills older than the lookback window are not replayed, so a position must not have been
open across the whole window (trades live seconds; startup reconciliation against the venue's
positions is the backstop). The entry edge is only known from the ``signals`` files (the
``orders`` record does not carry it yet); without them it restores as None.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from pathlib import Path
from typing import Any

import attrs

from engine.core.breakers import CircuitBreakers
from engine.core.exits import open_exit_state
from engine.core.intents import Alert, Record
from engine.core.orders import ENTRY, FLATTEN, Order
from engine.core.positions import EPS, Fill, Position
from engine.core.trading import TradingCore
from engine.io.dayfiles import DAY_FILE, day_sources
from engine.io.jsonl import ReadStats, StrPath, read_records
from engine.venues.hyperliquid.order_events import is_benign_reject
from fsm import order as ofsm
from fsm import position as pfsm

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
KINDS = ("orders", "fills", "positions", "trades")


# ---------------------------------------------------------------------------------- the state


@attrs.define
class JournalOrder:
    """The last known state of one order, merged over its journal records."""

    cloid: str
    coin: str
    asset_id: int | None
    is_buy: bool
    px_wire: str
    sz_wire: str
    reduce_only: bool
    purpose: str
    state: str
    created_ms: float
    last_ts_ms: float
    oid: int | None = None
    venue_filled: float = 0.0  # merged with max, like the core
    avg_px: float | None = None
    sent_ms: float | None = None
    signal_id: str | None = None
    reason: str | None = None
    message: str | None = None
    decision_px: float | None = None
    expires_after_ms: int | None = None
    entry_edge_bps: float | None = None
    entry_oracle_px: float | None = None
    first_filled_ms: float | None = None  # first record showing a venue-reported fill
    records: int = 0

    @property
    def terminal(self) -> bool:
        return self.state in ofsm.TERMINAL_STATES


@attrs.frozen
class JournalFill:
    """One distinct fill as journaled (``ts_ms``: when the core applied it)."""

    tid: str
    cloid: str | None
    coin: str
    is_buy: bool
    px: float
    sz: float
    fee: float
    time_ms: float
    synthetic: bool
    ts_ms: float


@attrs.frozen
class HardStopRecord:
    """The latch as the journal last showed it (latched and not reset)."""

    reason: str
    detail: str
    since_ms: float


@attrs.define
class JournalStats:
    """What was read, and what had to be skipped."""

    files: int = 0
    lines: int = 0
    torn_lines: int = 0  # last line without a newline: a kill mid-write
    malformed_lines: int = 0  # undecodable, not an object, or missing needed fields
    duplicate_fills: int = 0
    unreadable_files: int = 0
    older_position_files: int = 0  # read only to find the hard-stop latch


@attrs.define
class JournalState:
    """Everything :func:`restore` needs, read by :func:`load_journal`."""

    records_dir: Path
    days: list[str]
    orders: dict[str, JournalOrder] = attrs.Factory(dict)
    fills: list[JournalFill] = attrs.Factory(list)
    positions: list[dict[str, Any]] = attrs.Factory(list)
    trades: list[dict[str, Any]] = attrs.Factory(list)
    signals: dict[str, dict[str, Any]] = attrs.Factory(dict)
    hard_stop: HardStopRecord | None = None
    breakers_state: dict[str, Any] | None = None  # the latest ``breakers`` positions record
    # that record's mode, account and equity source (absent in records before issue 9)
    breakers_origin: dict[str, Any] = attrs.Factory(dict)
    stats: JournalStats = attrs.Factory(JournalStats)
    warnings: list[str] = attrs.Factory(list)

    def open_orders(self) -> list[JournalOrder]:
        """Orders whose last journal state was not terminal (restored as UNKNOWN)."""
        return [o for o in self.orders.values() if not o.terminal]

    def signed_fills(self) -> dict[str, float]:
        """The signed sum of the distinct fills per coin."""
        out: dict[str, float] = {}
        for f in self.fills:
            out[f.coin] = out.get(f.coin, 0.0) + (f.sz if f.is_buy else -f.sz)
        return out


@attrs.define
class RestoreReport:
    """What :func:`restore` did."""

    fills_applied: int = 0
    orders_restored: int = 0
    unknown_orders: list[str] = attrs.Factory(list)
    states: dict[str, str] = attrs.Factory(dict)
    hard_stop: str | None = None
    breakers: list[str] = attrs.Factory(list)  # circuit breakers still tripped
    skipped: int = 0  # records of markets this core does not trade
    warnings: list[str] = attrs.Factory(list)


# ---------------------------------------------------------------------------------- reading


def _days(now_ms: float, lookback_days: int) -> list[str]:
    today = int(now_ms // DAY_MS)
    return [time.strftime("%Y-%m-%d", time.gmtime((today - i) * 86_400))
            for i in range(lookback_days - 1, -1, -1)]


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _wire(v: Any) -> str | None:
    """A wire number string (``"0.49"``), or None."""
    if not isinstance(v, str):
        return None
    try:
        x = float(v)
    except ValueError:
        return None
    return v if x == x and x not in (float("inf"), float("-inf")) else None


def _read(path: Path, st: JournalStats, warnings: list[str]) -> list[dict[str, Any]]:
    """The JSON object lines of ``path`` (missing file: ``[]``); damage is counted. A file
    that cannot be read to its end (a truncated ``.gz``) gives no records at all."""
    rs = ReadStats()
    recs = list(read_records(path, rs))
    if isinstance(rs.error, FileNotFoundError):
        return []
    if rs.error is not None:
        st.unreadable_files += 1
        warnings.append(f"{path}: unreadable ({rs.error})")
        return []
    st.files += 1
    tail = rs.torn_tail
    if tail is not None and tail.strip():
        st.torn_lines += 1
        warnings.append(f"{path}: torn last line ({len(tail)} bytes) ignored")
    st.lines += rs.lines
    bad = rs.malformed
    if bad:
        st.malformed_lines += bad
        warnings.append(f"{path}: {bad} undecodable line(s) skipped")
    return recs


def _read_day(d: Path, kind: str, day: str, st: JournalStats,
              warnings: list[str]) -> list[dict[str, Any]]:
    """``{kind}_{day}.jsonl``, or its ``.jsonl.gz`` once retention compressed it (both forms
    after an interrupted compression are resolved without counting a line twice)."""
    paths, note = day_sources(d, kind, _dt.date.fromisoformat(day))
    if note:
        warnings.append(f"{kind}_{day}: {note}")
    out: list[dict[str, Any]] = []
    for path in paths:
        out.extend(_read(path, st, warnings))
    return out


def _parse_order(rec: dict[str, Any]) -> JournalOrder | None:
    cloid = _str(rec.get("cloid"))
    coin = _str(rec.get("market_key"))
    side = rec.get("side")
    px = _wire(rec.get("px"))
    sz = _wire(rec.get("sz"))
    ro = rec.get("reduce_only")
    purpose = rec.get("purpose")
    state = rec.get("state")
    ts = _num(rec.get("ts_ms"))
    if (cloid is None or coin is None or side not in ("buy", "sell") or px is None
            or sz is None or not isinstance(ro, bool) or purpose not in (ENTRY, FLATTEN)
            or state not in ofsm.STATES or ts is None):
        return None
    created = _num(rec.get("created_ms"))
    exp = rec.get("expires_after_ms")
    return JournalOrder(
        cloid=cloid, coin=coin, asset_id=_int(rec.get("asset_id")), is_buy=side == "buy",
        px_wire=px, sz_wire=sz, reduce_only=ro, purpose=str(purpose), state=str(state),
        created_ms=created if created is not None else ts, last_ts_ms=ts,
        oid=_int(rec.get("oid")), venue_filled=max(0.0, _num(rec.get("venue_filled")) or 0.0),
        avg_px=_num(rec.get("avg_px")), sent_ms=_num(rec.get("sent_ms")),
        signal_id=_str(rec.get("signal_id")), reason=_str(rec.get("reason")),
        message=_str(rec.get("message")), decision_px=_num(rec.get("decision_px")),
        expires_after_ms=_int(exp), entry_edge_bps=_num(rec.get("entry_edge_bps")),
        entry_oracle_px=_num(rec.get("entry_oracle_px")),
    )


def _merge_order(cur: JournalOrder, new: JournalOrder) -> None:
    """Fold a later record of the same order into ``cur`` (state: the last one)."""
    cur.state = new.state
    cur.last_ts_ms = new.last_ts_ms
    cur.venue_filled = max(cur.venue_filled, new.venue_filled)
    for name in ("oid", "asset_id", "avg_px", "sent_ms", "signal_id", "reason", "message",
                 "decision_px", "expires_after_ms", "entry_edge_bps", "entry_oracle_px"):
        value = getattr(new, name)
        if value is not None and (name != "oid" or cur.oid is None):
            setattr(cur, name, value)


def _parse_fill(rec: dict[str, Any]) -> JournalFill | None:
    tid = _str(rec.get("tid"))
    coin = _str(rec.get("market_key"))
    side = rec.get("side")
    px = _num(rec.get("px"))
    sz = _num(rec.get("sz"))
    fee = _num(rec.get("fee"))
    t = _num(rec.get("time_ms"))
    cloid = rec.get("cloid")
    if (tid is None or coin is None or side not in ("buy", "sell") or px is None or px <= 0
            or sz is None or sz <= 0 or t is None or not (cloid is None or isinstance(cloid, str))):
        return None
    ts = _num(rec.get("ts_ms"))
    return JournalFill(tid, cloid, coin, side == "buy", px, sz, fee or 0.0, t,
                       bool(rec.get("synthetic", False)), ts if ts is not None else t)


def _hard_stop_event(rec: dict[str, Any]) -> tuple[str, HardStopRecord | None] | None:
    """(event, latch) for a ``hard_stop`` / ``hard_stop_reset`` positions record."""
    ev = rec.get("event")
    if ev == "hard_stop":
        reason = _str(rec.get("reason")) or "unknown"
        ts = _num(rec.get("ts_ms")) or 0.0
        return "hard_stop", HardStopRecord(reason, _str(rec.get("detail")) or "", ts)
    if ev == "hard_stop_reset":
        return "hard_stop_reset", None
    return None


def _older_files(d: Path, kind: str, first_day: str) -> list[Path]:
    """``{kind}_{day}.jsonl`` files of days before ``first_day``, newest first."""
    out: list[tuple[str, Path]] = []
    try:
        entries = list(d.iterdir())
    except OSError:
        return []
    seen: set[str] = set()
    for p in entries:
        m = DAY_FILE.match(p.name)
        if m and m["kind"] == kind and m["day"] < first_day and m["day"] not in seen:
            seen.add(m["day"])  # one entry per day: _read_day picks the right form(s)
            out.append((m["day"], p))
    out.sort(reverse=True)
    return [p for _, p in out]


def load_journal(records_dir: StrPath, now_ms: float, lookback_days: int = 2) -> JournalState:
    """Read the trading journal of the last ``lookback_days`` UTC days (see module docstring)."""
    if lookback_days < 1:
        raise ValueError("lookback_days must be >= 1")
    d = Path(records_dir)
    days = _days(now_ms, lookback_days)
    js = JournalState(d, days)
    st, warns = js.stats, js.warnings
    malformed = {k: 0 for k in KINDS}

    for day in days:
        for rec in _read_day(d, "orders", day, st, warns):
            jo = _parse_order(rec)
            if jo is None:
                malformed["orders"] += 1
                continue
            jo.records = 1
            if jo.venue_filled > 0:
                jo.first_filled_ms = jo.last_ts_ms
            cur = js.orders.get(jo.cloid)
            if cur is None:
                js.orders[jo.cloid] = jo
                continue
            cur.records += 1
            if jo.venue_filled > 0 and cur.first_filled_ms is None:
                cur.first_filled_ms = jo.last_ts_ms
            _merge_order(cur, jo)

    seen: set[str] = set()
    for day in days:
        for rec in _read_day(d, "fills", day, st, warns):
            f = _parse_fill(rec)
            if f is None:
                malformed["fills"] += 1
                continue
            if f.tid in seen:
                st.duplicate_fills += 1
                continue
            seen.add(f.tid)
            js.fills.append(f)

    latch: tuple[str, HardStopRecord | None] | None = None
    for day in days:
        for rec in _read_day(d, "positions", day, st, warns):
            if not isinstance(rec.get("event"), str) or _num(rec.get("ts_ms")) is None:
                malformed["positions"] += 1
                continue
            js.positions.append(rec)
            if rec["event"] == "breakers" and isinstance(rec.get("state"), dict):
                js.breakers_state = rec["state"]
                js.breakers_origin = {k: rec[k] for k in ("mode", "account", "equity_source")
                                      if k in rec}
            hs = _hard_stop_event(rec)
            if hs is not None:
                latch = hs
    if latch is None:  # a latch is never forgotten by age: look further back
        for path in _older_files(d, "positions", days[0]):
            st.older_position_files += 1
            m = DAY_FILE.match(path.name)
            assert m is not None
            for rec in _read_day(d, "positions", m["day"], st, warns):
                hs = _hard_stop_event(rec)
                if hs is not None:
                    latch = hs
            if latch is not None:
                break
    if latch is not None and latch[0] == "hard_stop":
        js.hard_stop = latch[1]

    for day in days:
        js.trades.extend(_read_day(d, "trades", day, st, warns))

    wanted = {o.signal_id for o in js.orders.values()
              if o.purpose == ENTRY and o.signal_id is not None and o.entry_edge_bps is None}
    if wanted:
        for day in days:
            for rec in _read_day(d, "signals", day, st, warns):
                sid = rec.get("signal_id")
                if isinstance(sid, str) and sid in wanted:
                    js.signals[sid] = {"raw_edge_bps": _num(rec.get("raw_edge_bps")),
                                       "oracle_px": _num(rec.get("oracle_px"))}

    for kind, n in malformed.items():
        if n:
            st.malformed_lines += n
            warns.append(f"{n} {kind} record(s) without the needed fields skipped")
    for w in warns:
        log.warning("journal: %s", w)
    return js


# ---------------------------------------------------------------------------------- restoring


def _advance_cloids(core: TradingCore, cloids: list[str]) -> None:
    """Never let the core's factory hand out a restored cloid again (same boot prefix)."""
    core.cloids.advance_past(cloids)


def _position_state(entry_live: bool, flatten_live: bool, has: bool) -> str:
    if flatten_live:
        return pfsm.FLATTENING_ENTRY_LIVE if entry_live else pfsm.FLATTENING
    if entry_live:
        return pfsm.OPENING_PARTIAL if has else pfsm.OPENING
    return pfsm.OPEN if has else pfsm.FLAT


def _breakers_rebase(core: TradingCore, origin: dict[str, Any]) -> str | None:
    """Why a journaled breaker state must not be reused as is (``None``: reuse it). Its
    equity figures (peak, day start) are this account's only when the record came from the
    same mode and account and, in trade mode, measured the venue's equity (not a fallback or
    a placeholder; a record from before issue 9 does not say, so it is not trusted in trade
    mode). From another mode or account its P&L counters (today's realised loss, the losing
    streak) are not this account's either and are zeroed; tripped breakers stay tripped."""
    here = core.account_key()
    mode, account = origin.get("mode", core.mode), origin.get("account", here)
    if mode != core.mode or account != here:
        core.breakers.realised_today = 0.0
        core.breakers.unrealised = 0.0
        core.breakers.consecutive_losses = 0
        return (f"journaled in {mode} mode for account {account or '-'}, this run is "
                f"{core.mode} mode for {here or '-'}")
    source = origin.get("equity_source", "unknown")
    if core.mode == "trade" and source != "venue":
        return f"the journaled peak was measured against {source} equity, not the venue's"
    return None


def restore(core: TradingCore, state: JournalState, now_ms: float) -> RestoreReport:
    """Rebuild a fresh ``core`` from ``state`` (see module docstring); returns a summary.

    Raises ``ValueError`` if the core already holds orders or fills: restore runs once, at
    startup, before any venue event.
    """
    if core.orders.by_cloid or core.book.fills or core.book.seen_tids:
        raise ValueError("restore needs a fresh core (no orders, no fills)")
    rep = RestoreReport()
    book = core.book
    by_coin = core.strategy.by_coin
    unknown_coins: set[str] = set()

    # 1. fills, in journal order; remember which fill opened each open trade
    opening: dict[str, tuple[str | None, float] | None] = {}
    for jf in state.fills:
        p = book.by_coin.get(jf.coin)
        if p is None:
            rep.skipped += 1
            unknown_coins.add(jf.coin)
            continue
        before = p.size
        applied, _ = book.apply_fill(p, Fill(jf.tid, jf.cloid, jf.coin, jf.is_buy, jf.px, jf.sz,
                                             jf.fee, jf.time_ms, jf.synthetic))
        if not applied:
            continue
        rep.fills_applied += 1
        after = p.size
        if abs(after) <= EPS:
            opening[jf.coin] = None
        elif abs(before) <= EPS or (before > 0) != (after > 0):
            opening[jf.coin] = (jf.cloid, jf.ts_ms)

    # 2. orders: terminal ones as they ended, every other one UNKNOWN
    restored: list[Order] = []
    for jo in state.orders.values():
        m = by_coin.get(jo.coin)
        if m is None:
            rep.skipped += 1
            unknown_coins.add(jo.coin)
            if not jo.terminal:
                rep.warnings.append(f"order {jo.cloid} on untraded market {jo.coin} was "
                                    f"{jo.state}: not restored")
            continue
        o = Order(jo.cloid, jo.coin, m.index,
                  jo.asset_id if jo.asset_id is not None else m.spec.asset_id, jo.is_buy,
                  jo.px_wire, jo.sz_wire, jo.reduce_only, jo.purpose, jo.created_ms,
                  signal_id=jo.signal_id, reason=jo.reason, decision_px=jo.decision_px,
                  expires_after_ms=jo.expires_after_ms)
        o.venue_filled = jo.venue_filled
        o.avg_px = jo.avg_px
        o.sent_ms = jo.sent_ms
        o.message = jo.message
        o.changed_ms = jo.last_ts_ms
        if jo.terminal:
            o.state = jo.state
        else:
            o.state = ofsm.UNKNOWN
            o.unknown_since_ms = now_ms
            o.next_query_ms = None  # the next housekeeping asks the venue at once
            o.changed_ms = now_ms
            rep.unknown_orders.append(o.cloid)
        core.orders.add(o)
        core.orders.set_oid(o, jo.oid)
        restored.append(o)
        rep.orders_restored += 1
    _advance_cloids(core, [o.cloid for o in restored])

    # 3. venue-reported fills no fill has confirmed yet
    for o in restored:
        if o.venue_filled > book.fills_by_cloid.get(o.cloid, 0.0) + EPS:
            book.set_venue_filled(book.positions[o.idx], o.cloid, o.is_buy, o.venue_filled)

    # 4./5. per market: FSM state and metadata
    for p in book.positions:
        _restore_position(core, state, p, opening.get(p.coin), now_ms)
        rep.states[p.coin] = p.state

    # 6. circuit breakers (tripped ones stay tripped; today's losses keep counting), hard
    # stop and the reject-burst window
    if state.breakers_state is not None:
        basis = core.breakers.equity  # what this run measures against until it knows better
        try:
            core.breakers = CircuitBreakers.from_state(core.cfg.breakers, state.breakers_state)
        except ValueError as exc:
            rep.warnings.append(f"circuit breaker state unreadable ({exc}); starting fresh")
        else:
            rebase = _breakers_rebase(core, state.breakers_origin)
            if rebase is None:
                core.breakers_restored = True
            else:
                rep.warnings.append(f"circuit breaker peak and day-start equity re-based: "
                                    f"{rebase} (tripped breakers stay tripped)")
                core.breakers.rebase(basis)
            for t in core.breakers.tripped():
                rep.breakers.append(t.breaker + (f" ({t.market})" if t.market else ""))
                if t.market is not None and t.market in core.strategy.by_coin:
                    core.strategy.halt(t.market, "circuit_breaker", now_ms)
    hs = state.hard_stop
    if hs is not None:
        core.hard_stop.trigger(hs.reason, hs.since_ms, hs.detail)
        rep.hard_stop = hs.reason
    horizon = now_ms - core.tcfg.reject_burst_window_ms
    rejects = sorted(o.changed_ms for o in restored
                     if o.state == ofsm.REJECTED and o.message
                     and not is_benign_reject(o.message) and o.changed_ms >= horizon)
    for ts in rejects:
        core.rejects.record(ts)

    if unknown_coins:
        rep.warnings.append(f"journal records of markets not traded now skipped: "
                            f"{', '.join(sorted(unknown_coins))}")
    _emit(core, state, rep, restored, now_ms)
    for w in rep.warnings:
        log.warning("journal restore: %s", w)
    core.resync()  # the O(1) gate indexes follow the restored positions and orders
    return rep


def _restore_position(core: TradingCore, state: JournalState, p: Position,
                      opened: tuple[str | None, float] | None, now_ms: float) -> None:
    active = sorted(core.orders.active_for(p.idx), key=lambda o: o.created_ms)
    entries = [o for o in active if o.purpose == ENTRY]
    flattens = [o for o in active if o.purpose == FLATTEN]
    if len(entries) > 1 or len(flattens) > 1:  # the core never does this: a damaged journal
        log.warning("journal restore: %s has %d live entries and %d live flattens; all stay "
                    "UNKNOWN until resolved", p.coin, len(entries), len(flattens))
    has = p.has_exposure
    p.state = _position_state(bool(entries), bool(flattens), has)
    p.entry_cloid = entries[-1].cloid if entries else None
    p.flatten_cloid = flattens[-1].cloid if flattens else None
    if not has and not entries:
        return

    # the entry order of the open trade: the one whose fill opened it, else the live entry
    exposure_cloids = ([opened[0]] if opened is not None and opened[0] is not None else []) \
        + list(p.unconfirmed)
    entry: JournalOrder | None = None
    for c in exposure_cloids:
        jo = state.orders.get(c)
        if jo is not None and jo.purpose == ENTRY:
            entry = jo
            break
    if entry is None and entries:
        entry = state.orders.get(entries[-1].cloid)
    if entry is not None:
        p.entry_signal_id = entry.signal_id
        p.entry_decision_px = entry.decision_px
        edge = entry.entry_edge_bps
        if edge is None and entry.signal_id is not None:
            edge = state.signals.get(entry.signal_id, {}).get("raw_edge_bps")
        p.entry_edge_bps = edge
    if not has:
        return

    # when the core first learned of this exposure
    times = [opened[1]] if opened is not None else []
    for c in exposure_cloids:
        jo = state.orders.get(c)
        if jo is not None and jo.first_filled_ms is not None:
            times.append(jo.first_filled_ms)
    entry_ms = min(times) if times else now_ms
    p.entry_ms = entry_ms
    m = core.strategy.markets[p.idx]
    direction = 1 if p.effective > 0 else -1
    if p.size:
        px = p.avg_px
    else:
        jo = state.orders.get(exposure_cloids[0]) if exposure_cloids else None
        px = (jo.avg_px or float(jo.px_wire)) if jo is not None else p.avg_px
    st = open_exit_state(direction, px, entry_ms, p.entry_edge_bps, m)
    if entry is not None and entry.entry_oracle_px is not None:
        st.entry_oracle_px = entry.entry_oracle_px
    elif st.entry_oracle_px is None and entry is not None and entry.signal_id is not None:
        st.entry_oracle_px = state.signals.get(entry.signal_id, {}).get("oracle_px")
    p.exit_state = st

    first_flatten = min((o for o in state.orders.values()
                         if o.coin == p.coin and o.purpose == FLATTEN
                         and o.created_ms >= entry_ms), key=lambda o: o.created_ms, default=None)
    if first_flatten is not None:
        p.exit_reason = first_flatten.reason
    fails = [r["ts_ms"] for r in state.positions
             if r.get("market_key") == p.coin and r.get("event") == "flatten_done"
             and r["ts_ms"] >= entry_ms and abs(_num(r.get("size")) or 0.0) > EPS
             and r.get("failure", True) is not False]  # (journals before issue 9: no field)
    p.flatten_failures = len(fails)
    if fails:
        p.next_flatten_ms = max(fails) + core.tcfg.flatten_retry_ms


def _emit(core: TradingCore, state: JournalState, rep: RestoreReport, restored: list[Order],
          now_ms: float) -> None:
    for o in restored:
        if o.state == ofsm.UNKNOWN:
            core.out.append(Record("orders", now_ms, {"event": "restored", "why": "journal",
                                                      **o.record(), "ts_ms": now_ms}))
    st = state.stats
    summary = {
        "event": "journal_restored", "fills": rep.fills_applied,
        "orders": rep.orders_restored, "unknown_orders": len(rep.unknown_orders),
        "hard_stop": rep.hard_stop, "breakers": rep.breakers, "torn_lines": st.torn_lines,
        "malformed_lines": st.malformed_lines, "duplicate_fills": st.duplicate_fills,
        "positions": {p.coin: p.effective for p in core.book.positions if p.has_exposure},
        "ts_ms": now_ms,
    }
    core.out.append(Record("positions", now_ms, summary))
    problems = []
    if rep.unknown_orders:
        problems.append(f"{len(rep.unknown_orders)} order(s) UNKNOWN until resolved by cloid")
    if rep.hard_stop is not None:
        problems.append(f"hard stop still latched ({rep.hard_stop})")
    if rep.breakers:
        problems.append(f"circuit breakers still tripped ({', '.join(rep.breakers)})")
    if st.torn_lines or st.malformed_lines:
        problems.append(f"{st.torn_lines} torn and {st.malformed_lines} malformed line(s) "
                        "skipped")
    problems.extend(rep.warnings)
    if problems:
        core.out.append(Alert("warning", "journal_restored",
                              "restored from the journal: " + "; ".join(problems)))
