"""The daily report: every figure of one UTC day's records, as data and as Markdown (+ PNGs).

Owns reading a day's record files (``{kind}_YYYY-MM-DD.jsonl`` or its ``.jsonl.gz``, the same
choice as retention when both exist: :func:`engine.io.dayfiles.day_sources`), the figures
(:func:`build_report` → :class:`DayReport`), their Markdown (:func:`render_markdown`) and the
atomic report files (:func:`write_report`: ``report_YYYY-MM-DD.md`` and, when matplotlib
imports, PNG plots next to it, their time axes fitted to the data: :func:`time_axis`). A day
without any record raises :class:`NoDataError` and writes nothing.

Pure file reading and computation: no Trio, no wall clock (the service calls
:func:`write_report` through ``trio.to_thread.run_sync``). A malformed line, a torn last line
or a record without a field a figure needs never stops the report: it is skipped, counted per
file and shown in the report's "Input files" table. Every figure is defined in
docs/reports.md.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import logging
import math
import os
import statistics
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from engine.io.dayfiles import day_sources
from engine.io.jsonl import ReadStats, read_records

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
KINDS = ("signals", "followups", "orders", "fills", "trades", "positions")
SIDES = ("buy", "sell")
# order journal events that are the venue's answer to a sent order (docs/state-machines.md)
VENUE_ANSWERS = frozenset({"ack_resting", "fill_partial", "fill_complete", "cancel_confirmed",
                           "reject", "expire", "venue_filled"})


# ---------------------------------------------------------------------------------- the data


@attrs.frozen
class FileStat:
    """What was read for one record kind, and what had to be skipped."""

    kind: str
    files: tuple[str, ...] = ()
    records: int = 0  # records used
    malformed: int = 0  # complete lines that are not a JSON object
    torn: int = 0  # an incomplete last line (no newline)
    invalid: int = 0  # JSON objects without a field the figures need (skipped)
    bad_values: int = 0  # fields with a wrong type (treated as unknown)
    quarantined: int = 0  # lines in the day's ``.torn`` file (fragments cut off by the writer)
    errors: tuple[str, ...] = ()
    note: str | None = None

    @property
    def skipped(self) -> int:
        return self.malformed + self.torn + self.invalid


@attrs.frozen
class Percentiles:
    """Nearest-rank percentiles of ``n`` values (None when n = 0)."""

    n: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


@attrs.frozen
class MarketSignals:
    market: str
    signals: int
    buy: int
    sell: int
    median_raw_edge_bps: float | None


@attrs.frozen
class SignalStats:
    total: int
    by_side: dict[str, int]
    by_market: tuple[MarketSignals, ...]
    by_hour: tuple[int, ...]  # 24 counts, UTC hours
    by_hour_side: dict[str, tuple[int, ...]]
    by_market_hour: dict[str, tuple[int, ...]]
    times_ms: tuple[float, ...] = ()  # every valid signal's timestamp_ms, in file order


@attrs.frozen
class OffsetStats:
    """Followups at one offset (definitions in docs/reports.md)."""

    offset_ms: int
    records: int
    captured: int
    missed: int
    miss_reasons: dict[str, int]
    edge_n: int  # captured with numeric raw_edge_bps and t0_raw_edge_bps
    median_raw_edge_bps: float | None
    mean_raw_edge_bps: float | None
    median_t0_raw_edge_bps: float | None
    mean_t0_raw_edge_bps: float | None
    retention_n: int  # of edge_n, t0 > 0
    retention_excluded: int  # of edge_n, t0 <= 0
    median_retention: float | None
    mean_retention: float | None
    shrinking_share: float | None  # of edge_n: raw < t0
    converge_n: int  # captured with a side and numeric oracle/market moves
    market_toward_share: float | None
    oracle_toward_share: float | None
    median_market_toward_bps: float | None
    median_oracle_toward_bps: float | None
    lateness: Percentiles  # captured records


@attrs.frozen
class FollowupStats:
    records: int
    captured: int
    missed: int
    offsets: tuple[OffsetStats, ...]
    retention_by_market: dict[str, dict[int, float | None]]  # market → offset → median
    lateness: Percentiles  # every captured record of the day


@attrs.frozen
class MarketTrades:
    market: str
    trades: int
    wins: int
    losses: int
    gross_pnl: float
    fees: float
    net_pnl: float


@attrs.frozen
class ExitReasonStats:
    reason: str
    trades: int
    wins: int
    net_pnl: float


@attrs.frozen
class TradeStats:
    count: int
    wins: int
    losses: int
    breakeven: int
    win_rate: float | None
    gross_pnl: float
    fees: float
    net_pnl: float
    by_market: tuple[MarketTrades, ...]
    exit_reasons: tuple[ExitReasonStats, ...]
    mean_hold_ms: float | None
    median_hold_ms: float | None
    slippage_n: int
    mean_slippage_bps: float | None
    median_slippage_bps: float | None
    cumulative_pnl: tuple[tuple[float, float], ...]  # (exit time ms, cumulative net P&L)
    # every trade by exit time (docs/reports.md "Trade by trade")
    by_trade: tuple[TradePoint, ...] = ()
    drawdown: Drawdown | None = None
    markets: tuple[MarketSummary, ...] = ()  # the per-market table (signals joined in)


@attrs.frozen
class TradePoint:
    """One trade of the trade-by-trade table and scatter."""

    exit_ms: float  # exit_time_ms (else ts_ms); inf when neither is a number
    market: str
    direction: str
    entry_edge_bps: float | None
    net_pnl: float
    exit_reason: str


@attrs.frozen
class Drawdown:
    """Drawdown of the cumulative net P&L, starting from 0 before the first trade.

    ``series``: (exit time, peak so far − cumulative net) per trade; ``max_usd`` the largest,
    from the peak at ``peak_ms`` (None: the 0 before the first trade) to ``trough_ms``."""

    series: tuple[tuple[float, float], ...]
    max_usd: float
    peak_ms: float | None
    trough_ms: float | None


@attrs.frozen
class MarketSummary:
    """One row of the per-market table."""

    market: str
    signals: int
    trades: int
    wins: int
    win_rate: float | None
    net_pnl: float
    fees: float
    max_drawdown: float
    median_entry_edge_bps: float | None


@attrs.frozen
class TimeAxis:
    """A time axis that fits the data: ``x = (t_ms - origin_ms) / unit_ms``, limits ``lo``..
    ``hi`` (docs/reports.md "Plots")."""

    origin_ms: float
    unit_ms: float
    lo: float
    hi: float
    label: str

    def x(self, t_ms: float) -> float:
        return (t_ms - self.origin_ms) / self.unit_ms


@attrs.frozen
class OrderStats:
    orders: int  # distinct cloids
    by_purpose: dict[str, int]
    final_states: dict[str, int]  # last state seen today per cloid
    decision_to_sent_ms: Percentiles
    ack_ms: Percentiles


@attrs.frozen
class FillStats:
    fills: int
    synthetic: int
    fees: float
    notional: float


@attrs.frozen
class PositionStats:
    events: dict[str, int]
    hard_stops: tuple[tuple[float | None, str], ...]  # (ts_ms, reason)
    hard_stop_resets: int


@attrs.frozen
class DayReport:
    """Every figure of one UTC day (see docs/reports.md for the definitions)."""

    day: dt.date
    records_dir: str
    files: tuple[FileStat, ...]
    signals: SignalStats
    followups: FollowupStats
    trades: TradeStats
    orders: OrderStats
    fills: FillStats
    positions: PositionStats

    def file(self, kind: str) -> FileStat:
        return next(f for f in self.files if f.kind == kind)

    @property
    def has_data(self) -> bool:
        """Any record, skipped line or quarantined fragment of the day in any file."""
        return any(f.records or f.skipped or f.quarantined or f.errors for f in self.files)


EXIT_NO_DATA = 3
"""``python -m engine report``'s exit code for a day without any record (nothing written)."""


class NoDataError(Exception):
    """The day has no record of any kind: no report is written (docs/reports.md)."""


@attrs.frozen
class Plots:
    """PNG files written next to the report (names), or why there are none."""

    files: tuple[str, ...] = ()
    note: str = ""


# ---------------------------------------------------------------------------------- helpers


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    x = float(v)
    return x if math.isfinite(x) else None


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _mean(xs: Sequence[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def percentiles(xs: Sequence[float]) -> Percentiles:
    """Nearest-rank p50/p90/p99: the ``ceil(p/100·n)``-th smallest value (always observed)."""
    if not xs:
        return Percentiles(0, None, None, None, None)
    s = sorted(xs)
    n = len(s)

    def rank(p: float) -> float:
        return s[max(1, math.ceil(p / 100.0 * n)) - 1]

    return Percentiles(n, rank(50), rank(90), rank(99), s[-1])


@attrs.define
class _Acc:
    """Per-file counters while reading."""

    kind: str
    files: list[str] = attrs.Factory(list)
    records: int = 0
    malformed: int = 0
    torn: int = 0
    invalid: int = 0
    bad_values: int = 0
    quarantined: int = 0
    errors: list[str] = attrs.Factory(list)
    note: str | None = None

    def num(self, rec: dict[str, Any], key: str, *, needed: bool = False) -> float | None:
        """``rec[key]`` as a finite number; a wrong type (or a missing value that ``needed``)
        counts as a bad value and reads as None."""
        v = rec.get(key)
        if v is None:
            if needed:
                self.bad_values += 1
            return None
        x = _num(v)
        if x is None:
            self.bad_values += 1
        return x

    def text(self, rec: dict[str, Any], key: str) -> str | None:
        v = rec.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            self.bad_values += 1
            return None
        return v

    def freeze(self) -> FileStat:
        return FileStat(self.kind, tuple(self.files), self.records, self.malformed, self.torn,
                        self.invalid, self.bad_values, self.quarantined, tuple(self.errors),
                        self.note)


def _read(records_dir: Path, kind: str, day: dt.date) -> tuple[list[dict[str, Any]], _Acc]:
    acc = _Acc(kind)
    paths, note = day_sources(records_dir, kind, day)
    acc.note = note
    torn = records_dir / f"{kind}_{day.isoformat()}.jsonl.torn"
    if torn.is_file():
        try:
            with open(torn, "rb") as f:
                acc.quarantined = sum(1 for line in f if line.strip())
        except OSError as exc:
            acc.errors.append(f"{torn.name}: cannot read ({exc.strerror or exc})")
    out: list[dict[str, Any]] = []
    for p in paths:
        acc.files.append(p.name)
        rs = ReadStats()
        out.extend(read_records(p, rs))
        acc.malformed += rs.malformed
        if rs.torn_tail is not None:
            acc.torn += 1
        err = rs.error
        if isinstance(err, EOFError | gzip.BadGzipFile | zlib.error):
            acc.errors.append(f"{p.name}: incomplete or corrupt gzip ({err}); read up to there")
            log.warning("report: %s is an incomplete or corrupt gzip file: %s", p, err)
        elif isinstance(err, OSError):
            acc.errors.append(f"{p.name}: cannot read ({err.strerror or err})")
            log.warning("report: cannot read %s: %s", p, err)
    return out, acc


# ---------------------------------------------------------------------------------- figures


def _signals(recs: list[dict[str, Any]], acc: _Acc, day_ms: int) -> SignalStats:
    hours = [0] * 24
    hour_side = {s: [0] * 24 for s in SIDES}
    by_side = dict.fromkeys(SIDES, 0)
    markets: dict[str, dict[str, Any]] = {}
    times: list[float] = []
    for r in recs:
        market, side = r.get("market_key"), r.get("side")
        ts = _num(r.get("timestamp_ms"))
        if (not isinstance(market, str) or side not in SIDES or ts is None
                or not day_ms <= ts < day_ms + DAY_MS):
            acc.invalid += 1
            continue
        acc.records += 1
        times.append(ts)
        h = int((ts - day_ms) // HOUR_MS)
        hours[h] += 1
        hour_side[side][h] += 1
        by_side[side] += 1
        m = markets.setdefault(market, {"buy": 0, "sell": 0, "edges": [], "hours": [0] * 24})
        m[side] += 1
        m["hours"][h] += 1
        edge = acc.num(r, "raw_edge_bps", needed=True)
        if edge is not None:
            m["edges"].append(edge)
    by_market = tuple(
        MarketSignals(k, v["buy"] + v["sell"], v["buy"], v["sell"], _median(v["edges"]))
        for k, v in sorted(markets.items(), key=lambda kv: (-(kv[1]["buy"] + kv[1]["sell"]),
                                                            kv[0])))
    return SignalStats(acc.records, by_side, by_market, tuple(hours),
                       {s: tuple(v) for s, v in hour_side.items()},
                       {k: tuple(v["hours"]) for k, v in sorted(markets.items())},
                       tuple(times))


@attrs.define
class _OffAcc:
    records: int = 0
    captured: int = 0
    missed: int = 0
    reasons: Counter[str] = attrs.Factory(Counter)
    raw: list[float] = attrs.Factory(list)
    t0: list[float] = attrs.Factory(list)
    ratios: list[float] = attrs.Factory(list)
    excluded: int = 0
    shrinking: int = 0
    conv_n: int = 0
    market_toward: int = 0
    oracle_toward: int = 0
    market_bps: list[float] = attrs.Factory(list)
    oracle_bps: list[float] = attrs.Factory(list)
    lateness: list[float] = attrs.Factory(list)


def _followups(recs: list[dict[str, Any]], acc: _Acc) -> FollowupStats:
    offs: dict[int, _OffAcc] = {}
    by_market: dict[str, dict[int, list[float]]] = {}
    for r in recs:
        off = _num(r.get("offset_ms"))
        status = r.get("status")
        if off is None or status not in ("captured", "missed"):
            acc.invalid += 1
            continue
        acc.records += 1
        o = offs.setdefault(int(off), _OffAcc())
        o.records += 1
        if status == "missed":
            o.missed += 1
            reason = r.get("miss_reason")
            o.reasons[reason if isinstance(reason, str) and reason else "unknown"] += 1
            continue
        o.captured += 1
        late = acc.num(r, "lateness_ms", needed=True)
        if late is not None:
            o.lateness.append(late)
        raw = acc.num(r, "raw_edge_bps", needed=True)
        t0 = acc.num(r, "t0_raw_edge_bps", needed=True)
        if raw is not None and t0 is not None:
            o.raw.append(raw)
            o.t0.append(t0)
            if raw < t0:
                o.shrinking += 1
            if t0 > 0:
                o.ratios.append(raw / t0)
                market = r.get("market_key")
                if isinstance(market, str):
                    by_market.setdefault(market, {}).setdefault(int(off), []).append(raw / t0)
            else:
                o.excluded += 1
        side = r.get("side")
        om = acc.num(r, "oracle_moved_bps", needed=True)
        mm = acc.num(r, "market_moved_bps", needed=True)
        if side not in SIDES:
            acc.bad_values += 1
        elif om is not None and mm is not None:
            s = 1.0 if side == "buy" else -1.0
            o.conv_n += 1
            o.market_bps.append(s * mm)
            o.oracle_bps.append(-s * om)
            o.market_toward += s * mm > 0
            o.oracle_toward += -s * om > 0
    stats = tuple(
        OffsetStats(
            off, o.records, o.captured, o.missed, dict(sorted(o.reasons.items())), len(o.raw),
            _median(o.raw), _mean(o.raw), _median(o.t0), _mean(o.t0), len(o.ratios), o.excluded,
            _median(o.ratios), _mean(o.ratios), _share(o.shrinking, len(o.raw)), o.conv_n,
            _share(o.market_toward, o.conv_n), _share(o.oracle_toward, o.conv_n),
            _median(o.market_bps), _median(o.oracle_bps), percentiles(o.lateness))
        for off, o in sorted(offs.items()))
    offsets = [s.offset_ms for s in stats]
    rbm = {m: {off: _median(v.get(off, [])) for off in offsets}
           for m, v in sorted(by_market.items())}
    all_late = [x for o in offs.values() for x in o.lateness]
    return FollowupStats(sum(s.records for s in stats), sum(s.captured for s in stats),
                         sum(s.missed for s in stats), stats, rbm, percentiles(all_late))


def _trades(recs: list[dict[str, Any]], acc: _Acc) -> TradeStats:
    rows: list[tuple[float, int, str, str, float, float, float]] = []
    points: list[tuple[float, int, TradePoint]] = []
    holds: list[float] = []
    slips: list[float] = []
    for i, r in enumerate(recs):
        net = _num(r.get("net_pnl"))
        if net is None:
            acc.invalid += 1
            continue
        acc.records += 1
        market = acc.text(r, "market_key") or "?"
        reason = acc.text(r, "exit_reason") or "(none)"
        gross = acc.num(r, "gross_pnl", needed=True)
        fees = acc.num(r, "fees", needed=True)
        hold = acc.num(r, "hold_ms")
        if hold is not None:
            holds.append(hold)
        slip = acc.num(r, "entry_slippage_bps")
        if slip is not None:
            slips.append(slip)
        t = acc.num(r, "exit_time_ms")
        if t is None:
            t = acc.num(r, "ts_ms")
        rows.append((t if t is not None else math.inf, i, market, reason, net,
                     gross or 0.0, fees or 0.0))
        direction = acc.text(r, "direction") or "?"
        points.append((rows[-1][0], i, TradePoint(rows[-1][0], market, direction,
                                                  acc.num(r, "entry_edge_bps"), net, reason)))
    wins = sum(1 for row in rows if row[4] > 0)
    losses = sum(1 for row in rows if row[4] < 0)
    mk: dict[str, list[tuple[float, int, str, str, float, float, float]]] = {}
    rs: dict[str, list[tuple[float, int, str, str, float, float, float]]] = {}
    for row in rows:
        mk.setdefault(row[2], []).append(row)
        rs.setdefault(row[3], []).append(row)
    by_market = tuple(
        MarketTrades(m, len(v), sum(1 for x in v if x[4] > 0), sum(1 for x in v if x[4] < 0),
                     math.fsum(x[5] for x in v), math.fsum(x[6] for x in v),
                     math.fsum(x[4] for x in v))
        for m, v in sorted(mk.items()))
    reasons = tuple(
        ExitReasonStats(k, len(v), sum(1 for x in v if x[4] > 0), math.fsum(x[4] for x in v))
        for k, v in sorted(rs.items(), key=lambda kv: (-len(kv[1]), kv[0])))
    cum: list[tuple[float, float]] = []
    total = 0.0
    for row in sorted(rows):
        total += row[4]
        cum.append((row[0], total))
    return TradeStats(
        len(rows), wins, losses, len(rows) - wins - losses, _share(wins, len(rows)),
        math.fsum(x[5] for x in rows), math.fsum(x[6] for x in rows),
        math.fsum(x[4] for x in rows), by_market, reasons, _mean(holds), _median(holds),
        len(slips), _mean(slips), _median(slips), tuple(cum),
        tuple(p for _, _, p in sorted(points, key=lambda x: (x[0], x[1]))), drawdown(cum))


def drawdown(cum: Sequence[tuple[float, float]]) -> Drawdown | None:
    """The :class:`Drawdown` of a cumulative net P&L series (None when there is no trade)."""
    if not cum:
        return None
    peak, peak_ms = 0.0, None
    best, best_peak, best_trough = 0.0, None, None
    series: list[tuple[float, float]] = []
    for ts, v in cum:
        if v > peak:
            peak, peak_ms = v, ts
        dd = peak - v
        series.append((ts, dd))
        if dd > best:
            best, best_peak, best_trough = dd, peak_ms, ts
    return Drawdown(tuple(series), best, best_peak, best_trough)


def market_summaries(sig: SignalStats, trades: TradeStats) -> tuple[MarketSummary, ...]:
    """Per market (every market with a signal or a trade, by name): signals, trades, wins, win
    rate, net P&L, fees, max drawdown of its own cumulative net P&L, median entry edge."""
    signals = {m.market: m.signals for m in sig.by_market}
    per: dict[str, list[TradePoint]] = {}
    for p in trades.by_trade:
        per.setdefault(p.market, []).append(p)
    fees = {m.market: m.fees for m in trades.by_market}
    out = []
    for market in sorted(set(signals) | set(per)):
        pts = per.get(market, [])
        total, cum = 0.0, []
        for p in pts:
            total += p.net_pnl
            cum.append((p.exit_ms, total))
        dd = drawdown(cum)
        wins = sum(1 for p in pts if p.net_pnl > 0)
        out.append(MarketSummary(
            market, signals.get(market, 0), len(pts), wins, _share(wins, len(pts)),
            math.fsum(p.net_pnl for p in pts), fees.get(market, 0.0),
            dd.max_usd if dd is not None else 0.0,
            _median([p.entry_edge_bps for p in pts if p.entry_edge_bps is not None])))
    return tuple(out)


def time_axis(times_ms: Sequence[float], day_ms: float) -> TimeAxis:
    """An axis that fits ``times_ms`` (docs/reports.md "Plots"): seconds after the first
    time's whole second when the data spans ≤ 2 min, minutes after its whole minute when
    ≤ 2 h, else UTC hours of the day, whole hours around the data. Seconds and minutes are
    padded by 5 % of the span (at least one unit) on each side. No finite time: the whole
    day in UTC hours."""
    ts = [t for t in times_ms if math.isfinite(t)]
    if not ts:
        return TimeAxis(day_ms, HOUR_MS, 0.0, 24.0, "UTC hour")
    t0, t1 = min(ts), max(ts)
    span = t1 - t0
    if span > 2 * HOUR_MS:
        lo = math.floor((t0 - day_ms) / HOUR_MS)
        hi = max(math.ceil((t1 - day_ms) / HOUR_MS), lo + 1)
        return TimeAxis(day_ms, HOUR_MS, float(max(lo, 0)), float(min(hi, 24)), "UTC hour")
    unit = 1000.0 if span <= 120_000 else 60_000.0
    origin = math.floor(t0 / unit) * unit
    pad = max(0.05 * span, unit)
    stamp = dt.datetime.fromtimestamp(origin / 1000.0, dt.UTC)
    label = (f"seconds after {stamp:%H:%M:%S} UTC" if unit == 1000.0
             else f"minutes after {stamp:%H:%M} UTC")
    return TimeAxis(origin, unit, (t0 - pad - origin) / unit, (t1 + pad - origin) / unit, label)


@attrs.define
class _Ord:
    purpose: str | None = None
    state: str | None = None
    created_ms: float | None = None
    sent_ms: float | None = None
    ack_ms: float | None = None
    lost: bool = False


def _orders(recs: list[dict[str, Any]], acc: _Acc) -> OrderStats:
    orders: dict[str, _Ord] = {}
    for r in recs:
        cloid, event = r.get("cloid"), r.get("event")
        if not isinstance(cloid, str) or not isinstance(event, str):
            acc.invalid += 1
            continue
        acc.records += 1
        o = orders.setdefault(cloid, _Ord())
        purpose, state = acc.text(r, "purpose"), acc.text(r, "state")
        if o.purpose is None:
            o.purpose = purpose
        if state is not None:
            o.state = state
        if o.created_ms is None:
            o.created_ms = acc.num(r, "created_ms")
        if o.sent_ms is None:
            o.sent_ms = acc.num(r, "sent_ms")
        if o.ack_ms is not None or o.sent_ms is None or o.lost:
            continue
        if event == "lose_contact":
            o.lost = True
        elif event in VENUE_ANSWERS and r.get("why") != "orderStatus":
            ts = acc.num(r, "ts_ms", needed=True)
            if ts is not None:
                o.ack_ms = ts - o.sent_ms
    d2s = [o.sent_ms - o.created_ms for o in orders.values()
           if o.sent_ms is not None and o.created_ms is not None]
    acks = [o.ack_ms for o in orders.values() if o.ack_ms is not None]
    purposes = Counter(o.purpose or "unknown" for o in orders.values())
    states = Counter(o.state or "unknown" for o in orders.values())
    return OrderStats(len(orders), dict(sorted(purposes.items())), dict(sorted(states.items())),
                      percentiles(d2s), percentiles(acks))


def _fills(recs: list[dict[str, Any]], acc: _Acc) -> FillStats:
    n = synthetic = 0
    fees: list[float] = []
    notional: list[float] = []
    for r in recs:
        tid = r.get("tid")
        if isinstance(tid, bool) or not isinstance(tid, str | int):
            acc.invalid += 1
            continue
        acc.records += 1
        n += 1
        synthetic += r.get("synthetic") is True
        fee = acc.num(r, "fee", needed=True)
        if fee is not None:
            fees.append(fee)
        px, sz = acc.num(r, "px", needed=True), acc.num(r, "sz", needed=True)
        if px is not None and sz is not None:
            notional.append(abs(px * sz))
    return FillStats(n, synthetic, math.fsum(fees), math.fsum(notional))


def _positions(recs: list[dict[str, Any]], acc: _Acc) -> PositionStats:
    events: Counter[str] = Counter()
    stops: list[tuple[float | None, str]] = []
    resets = 0
    for r in recs:
        ev = r.get("event")
        if not isinstance(ev, str):
            acc.invalid += 1
            continue
        acc.records += 1
        events[ev] += 1
        if ev == "hard_stop":
            stops.append((acc.num(r, "ts_ms"), acc.text(r, "reason") or "unknown"))
        elif ev == "hard_stop_reset":
            resets += 1
    return PositionStats(dict(sorted(events.items())), tuple(stops), resets)


def build_report(records_dir: Path, day: dt.date) -> DayReport:
    """Read ``day``'s record files in ``records_dir`` and compute every figure.

    Raises ``FileNotFoundError`` when ``records_dir`` is not a directory; a day without files
    gives a report of zeros (its "Input files" table says so).
    """
    records_dir = Path(records_dir)
    if not records_dir.is_dir():
        raise FileNotFoundError(f"records dir {records_dir} does not exist or is not a directory")
    day_ms = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
    read = {k: _read(records_dir, k, day) for k in KINDS}
    sig = _signals(*read["signals"], day_ms)
    fol = _followups(*read["followups"])
    trd = _trades(*read["trades"])
    ords = _orders(*read["orders"])
    fls = _fills(*read["fills"])
    pos = _positions(*read["positions"])
    trd = attrs.evolve(trd, markets=market_summaries(sig, trd))
    files = tuple(read[k][1].freeze() for k in KINDS)
    for f in files:
        if f.skipped or f.bad_values or f.errors:
            log.warning("report %s: %s: skipped %d malformed, %d torn and %d invalid record(s); "
                        "%d bad value(s)%s", day, f.kind, f.malformed, f.torn, f.invalid,
                        f.bad_values, "".join(f"; {e}" for e in f.errors))
    return DayReport(day, str(records_dir), files, sig, fol, trd, ords, fls, pos)


# ---------------------------------------------------------------------------------- Markdown


def _f(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f} %"


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def _hms(ms: float) -> str:
    if not math.isfinite(ms):
        return "?"
    t = dt.datetime.fromtimestamp(ms / 1000.0, dt.UTC)
    return t.strftime("%H:%M:%S")


def _window(rep: DayReport) -> str:
    ts = [t for t in (*rep.signals.times_ms, *(p.exit_ms for p in rep.trades.by_trade))
          if math.isfinite(t)]
    if not ts:
        return "n/a"
    return f"{_hms(min(ts))} – {_hms(max(ts))} ({(max(ts) - min(ts)) / 1000.0:.0f} s)"


def render_markdown(rep: DayReport, plots: Plots | None = None) -> str:
    """The report as Markdown (deterministic: the same report gives the same text)."""
    day = rep.day.isoformat()
    s, fu, t, o = rep.signals, rep.followups, rep.trades, rep.orders
    skipped = sum(f.skipped for f in rep.files)
    md = [f"# Daily report {day} (UTC)", "",
          f"Records: `{rep.records_dir}`. Definitions of every figure: docs/reports.md.", ""]
    md += ["## Summary", ""]
    md += _table(("figure", "value"), [
        ("signals", s.total),
        ("followup records", f"{fu.records} ({fu.captured} captured, {fu.missed} missed)"),
        ("trades", f"{t.count} (win rate {_pct(t.win_rate)})"),
        ("net P&L (USDC)", _f(t.net_pnl, 4)),
        ("max drawdown (USDC)", _f(t.drawdown.max_usd if t.drawdown else None, 4)),
        ("lines/records skipped", skipped),
        ("data from / to (UTC)", _window(rep)),
    ])

    md += ["## Input files", ""]
    md += _table(("kind", "files", "records", "malformed", "torn", "invalid", "bad values",
                  "quarantined (.torn)", "notes"),
                 [(f.kind, ", ".join(f.files) or "(none)", f.records, f.malformed, f.torn,
                   f.invalid, f.bad_values, f.quarantined,
                   "; ".join([*([f.note] if f.note else []), *f.errors]) or "")
                  for f in rep.files])

    md += ["## Signals", "", f"{s.total} signals: {s.by_side['buy']} buy, "
           f"{s.by_side['sell']} sell.", "", "### By market", ""]
    md += _table(("market", "signals", "buy", "sell", "median raw edge (bps)"),
                 [(m.market, m.signals, m.buy, m.sell, _f(m.median_raw_edge_bps))
                  for m in s.by_market])
    md += ["### By UTC hour", ""]
    md += _table(("hour", "signals", "buy", "sell"),
                 [(f"{h:02d}", s.by_hour[h], s.by_hour_side["buy"][h], s.by_hour_side["sell"][h])
                  for h in range(24) if s.by_hour[h]])
    hours = [h for h in range(24) if s.by_hour[h]]
    if hours:
        md += ["### By market and UTC hour", ""]
        md += _table(("market", *(f"{h:02d}" for h in hours)),
                     [(m, *(v[h] for h in hours)) for m, v in s.by_market_hour.items()])

    md += ["## Followups", "", f"{fu.records} records: {fu.captured} captured, {fu.missed} missed.",
           "", "### Edge at each offset", ""]
    md += _table(("offset (ms)", "records", "captured", "missed", "with edges",
                  "median raw edge (bps)", "mean raw edge (bps)", "median t0 edge (bps)",
                  "mean t0 edge (bps)"),
                 [(x.offset_ms, x.records, x.captured, x.missed, x.edge_n,
                   _f(x.median_raw_edge_bps), _f(x.mean_raw_edge_bps),
                   _f(x.median_t0_raw_edge_bps), _f(x.mean_t0_raw_edge_bps))
                  for x in fu.offsets])
    md += ["### Edge retention, shrinking edges, convergence", ""]
    md += _table(("offset (ms)", "retention n", "excluded (t0 ≤ 0)", "edge retention (median)",
                  "edge retention (mean)", "shrinking edges", "convergence n",
                  "market moved toward oracle", "oracle moved toward market",
                  "median market move toward (bps)", "median oracle move toward (bps)"),
                 [(x.offset_ms, x.retention_n, x.retention_excluded, _pct(x.median_retention),
                   _pct(x.mean_retention), _pct(x.shrinking_share), x.converge_n,
                   _pct(x.market_toward_share), _pct(x.oracle_toward_share),
                   _f(x.median_market_toward_bps), _f(x.median_oracle_toward_bps))
                  for x in fu.offsets])
    reasons = sorted({r for x in fu.offsets for r in x.miss_reasons})
    if reasons:
        md += ["### Missed by reason", ""]
        md += _table(("offset (ms)", *reasons),
                     [(x.offset_ms, *(x.miss_reasons.get(r, 0) for r in reasons))
                      for x in fu.offsets])
    if fu.retention_by_market:
        md += ["### Edge retention by market (median)", ""]
        offs = [x.offset_ms for x in fu.offsets]
        md += _table(("market", *(f"{x} ms" for x in offs)),
                     [(m, *(_pct(v.get(x)) for x in offs))
                      for m, v in fu.retention_by_market.items()])

    md += ["## Trades", ""]
    md += _table(("figure", "value"), [
        ("trades", t.count),
        ("wins / losses / breakeven", f"{t.wins} / {t.losses} / {t.breakeven}"),
        ("win rate", _pct(t.win_rate)),
        ("gross P&L (USDC)", _f(t.gross_pnl, 4)),
        ("fees (USDC)", _f(t.fees, 4)),
        ("net P&L (USDC)", _f(t.net_pnl, 4)),
        ("mean hold (s)", _f(None if t.mean_hold_ms is None else t.mean_hold_ms / 1000, 3)),
        ("median hold (s)", _f(None if t.median_hold_ms is None else t.median_hold_ms / 1000,
                               3)),
        ("entry slippage mean / median (bps)",
         f"{_f(t.mean_slippage_bps)} / {_f(t.median_slippage_bps)} (n = {t.slippage_n})"),
    ])
    if t.by_market:
        md += ["### Trades by market", ""]
        md += _table(("market", "trades", "wins", "losses", "gross (USDC)", "fees (USDC)",
                      "net (USDC)"),
                     [(m.market, m.trades, m.wins, m.losses, _f(m.gross_pnl, 4), _f(m.fees, 4),
                       _f(m.net_pnl, 4)) for m in t.by_market])
        md += ["### Exit reasons", ""]
        md += _table(("exit reason", "trades", "wins", "net (USDC)"),
                     [(r.reason, r.trades, r.wins, _f(r.net_pnl, 4)) for r in t.exit_reasons])
        md += ["### Cumulative net P&L", ""]
        md += _table(("exit (UTC)", "cumulative net (USDC)"),
                     [(_hms(ts), _f(v, 4)) for ts, v in t.cumulative_pnl])
    if t.drawdown is not None:
        d = t.drawdown
        md += ["### Drawdown", ""]
        md += _table(("figure", "value"), [
            ("max drawdown (USDC)", _f(d.max_usd, 4)),
            ("from the peak at (UTC)", "start (0)" if d.peak_ms is None else _hms(d.peak_ms)),
            ("to the trough at (UTC)", "n/a" if d.trough_ms is None else _hms(d.trough_ms)),
        ])
        md += _table(("exit (UTC)", "drawdown (USDC)"),
                     [(_hms(ts), _f(v, 4)) for ts, v in d.series])
    if t.by_trade:
        md += ["### Trade by trade", ""]
        md += _table(("exit (UTC)", "market", "direction", "entry edge (bps)", "net (USDC)",
                      "exit reason"),
                     [(_hms(x.exit_ms), x.market, x.direction, _f(x.entry_edge_bps),
                       _f(x.net_pnl, 4), x.exit_reason) for x in t.by_trade])
    if t.markets:
        md += ["## Per market", ""]
        md += _table(("market", "signals", "trades", "wins", "win rate", "net (USDC)",
                      "fees (USDC)", "max drawdown (USDC)", "median entry edge (bps)"),
                     [(m.market, m.signals, m.trades, m.wins, _pct(m.win_rate),
                       _f(m.net_pnl, 4), _f(m.fees, 4), _f(m.max_drawdown, 4),
                       _f(m.median_entry_edge_bps)) for m in t.markets])

    f = rep.fills
    md += ["## Fills", "", f"{f.fills} fills ({f.synthetic} synthetic), fees {_f(f.fees, 4)} "
           f"USDC, notional {_f(f.notional, 2)} USDC.", ""]

    md += ["## Orders and latency", "",
           f"{o.orders} orders (" + ", ".join(f"{k} {v}" for k, v in o.by_purpose.items())
           + "); last state today: " + (", ".join(f"{k} {v}" for k, v in o.final_states.items())
                                        or "none") + ".", ""]
    md += _table(("latency (ms)", "n", "p50", "p90", "p99", "max"),
                 [(name, p.n, _f(p.p50, 1), _f(p.p90, 1), _f(p.p99, 1), _f(p.max, 1))
                  for name, p in (("decision → sent", o.decision_to_sent_ms),
                                  ("sent → venue answer (ack)", o.ack_ms),
                                  ("followup lateness", fu.lateness))])

    p = rep.positions
    md += ["## Positions and hard stop", "",
           "Events: " + (", ".join(f"{k} {v}" for k, v in p.events.items()) or "none") + ".",
           ""]
    for ts, reason in p.hard_stops:
        md.append(f"- hard stop latched at {_hms(ts) if ts is not None else '?'} UTC: {reason}")
    if p.hard_stops or p.hard_stop_resets:
        md += [f"- hard stop resets: {p.hard_stop_resets}", ""]

    md += ["## Plots", ""]
    if plots is None:
        md += ["plots: not generated", ""]
    else:
        if plots.note:
            md += [f"plots: {plots.note}", ""]
        md += [f"![{name}]({name})" for name in plots.files]
        if plots.files:
            md.append("")
    return "\n".join(md)


# ---------------------------------------------------------------------------------- files


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a fsynced temp file and a rename (then fsync the dir)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def figures(rep: DayReport) -> list[tuple[str, Any]]:
    """The report's matplotlib figures as ``(file name, Figure)`` (raises ImportError without
    matplotlib). Time axes fit the data (:func:`time_axis`); the list is in docs/reports.md."""
    from matplotlib.figure import Figure

    day = rep.day.isoformat()
    day_ms = dt.datetime(rep.day.year, rep.day.month, rep.day.day, tzinfo=dt.UTC).timestamp() * 1000
    out: list[tuple[str, Any]] = []
    sig = rep.signals
    fig = Figure(figsize=(8, 3.5))
    ax = fig.add_subplot()
    axis = time_axis(sig.times_ms, day_ms)
    if axis.unit_ms == HOUR_MS:
        hours = range(int(axis.lo), int(axis.hi))
        buy = [sig.by_hour_side["buy"][h] for h in hours]
        ax.bar([h + 0.5 for h in hours], buy, width=0.9, label="buy")
        ax.bar([h + 0.5 for h in hours], [sig.by_hour_side["sell"][h] for h in hours],
               width=0.9, bottom=buy, label="sell")
        ax.set(title=f"Signals per UTC hour, {day}", ylabel="signals")
        ax.legend()
    else:
        xs = [axis.x(t) for t in sig.times_ms]
        edges = [float(math.floor(axis.lo)) + i for i in range(int(math.ceil(axis.hi)
                                                                  - math.floor(axis.lo)) + 1)]
        ax.hist(xs, bins=edges if len(edges) > 1 else 1)
        per = "second" if axis.unit_ms == 1000.0 else "minute"
        ax.set(title=f"Signals per {per}, {day}", ylabel="signals")
    ax.set(xlabel=axis.label, xlim=(axis.lo, axis.hi))
    out.append((f"report_{day}_signals.png", fig))

    offs = [x for x in rep.followups.offsets if x.median_retention is not None]
    if offs:
        fig = Figure(figsize=(6, 3.5))
        ax = fig.add_subplot()
        xs = [x.offset_ms / 1000 for x in offs]
        ax.plot(xs, [100 * (x.median_retention or 0.0) for x in offs], marker="o",
                label="median edge retention")
        ax.plot(xs, [100 * (x.shrinking_share or 0.0) for x in offs], marker="s",
                label="shrinking edges")
        ax.set(title=f"Edge retention by offset, {day}", xlabel="offset (s)", ylabel="%")
        ax.legend()
        out.append((f"report_{day}_edge_retention.png", fig))

    t = rep.trades
    cum = [(ts, v) for ts, v in t.cumulative_pnl if math.isfinite(ts)]
    if cum:
        axis = time_axis([ts for ts, _ in cum], day_ms)
        xs = [axis.lo, *(axis.x(ts) for ts, _ in cum), axis.hi]
        fig = Figure(figsize=(8, 3.5))
        ax = fig.add_subplot()
        ax.step(xs, [0.0, *(v for _, v in cum), cum[-1][1]], where="post")
        ax.axhline(0.0, linewidth=0.5, color="grey")
        ax.set(title=f"Cumulative net P&L, {day}", xlabel=axis.label, ylabel="USDC",
               xlim=(axis.lo, axis.hi))
        out.append((f"report_{day}_cumulative_pnl.png", fig))
        dd = [(ts, v) for ts, v in (t.drawdown.series if t.drawdown else ()) if math.isfinite(ts)]
        fig = Figure(figsize=(8, 3))
        ax = fig.add_subplot()
        ax.fill_between(xs, [0.0, *(-v for _, v in dd), -dd[-1][1]], step="post", alpha=0.5,
                        color="tab:red")
        ax.axhline(0.0, linewidth=0.5, color="grey")
        ax.set(title=f"Drawdown from the peak of cumulative net P&L, {day}",
               xlabel=axis.label, ylabel="USDC", xlim=(axis.lo, axis.hi))
        out.append((f"report_{day}_drawdown.png", fig))
    if t.markets:
        fig = Figure(figsize=(max(4.0, 0.6 * len(t.markets) + 2), 3.5))
        ax = fig.add_subplot()
        names = [m.market for m in t.markets]
        nets = [m.net_pnl for m in t.markets]
        ax.bar(names, nets, color=["tab:green" if v >= 0 else "tab:red" for v in nets])
        for i, m in enumerate(t.markets):
            ax.annotate(f"{m.trades} tr / {m.signals} sig", (i, nets[i]), ha="center",
                        va="bottom", fontsize=7)
        ax.axhline(0.0, linewidth=0.5, color="grey")
        ax.set(title=f"Net P&L per market, {day}", ylabel="USDC")
        ax.tick_params(axis="x", labelrotation=45)
        out.append((f"report_{day}_per_market.png", fig))
    pts = [(p.entry_edge_bps, p.net_pnl) for p in t.by_trade if p.entry_edge_bps is not None]
    if pts:
        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
        ax.scatter([e for e, _ in pts], [v for _, v in pts])
        ax.axhline(0.0, linewidth=0.5, color="grey")
        ax.set(title=f"Trades: edge at entry vs net P&L, {day}",
               xlabel="edge at entry (bps)", ylabel="net P&L (USDC)")
        out.append((f"report_{day}_trades_edge_vs_pnl.png", fig))
    return out


def make_plots(rep: DayReport, out_dir: Path) -> Plots:
    """Write the PNG plots of ``rep`` (:func:`figures`) into ``out_dir`` when matplotlib
    imports. Never raises for a missing or failing matplotlib."""
    day = rep.day.isoformat()
    try:
        figs = figures(rep)
    except ImportError:
        return Plots((), "matplotlib not installed (install the `report` extra for PNG plots)")
    except (ValueError, RuntimeError, TypeError) as exc:
        log.warning("report %s: plotting failed: %s", day, exc)
        return Plots((), f"plotting failed: {exc}")
    made: list[str] = []
    try:
        for name, fig in figs:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
            _atomic_write(out_dir / name, buf.getvalue())
            made.append(name)
    except (ValueError, RuntimeError, TypeError) as exc:
        log.warning("report %s: plotting failed: %s", day, exc)
        return Plots(tuple(made), f"plotting failed: {exc}")
    return Plots(tuple(made))


def write_report(records_dir: Path, day: dt.date, out_dir: Path) -> Path:
    """Build the report of ``day`` and write ``out_dir/report_YYYY-MM-DD.md`` atomically (with
    PNG plots next to it when matplotlib is installed); return the Markdown path.

    Raises ``OSError`` (``FileNotFoundError`` for a missing records dir) when it cannot read
    the records dir or write the output, and :class:`NoDataError` (nothing written) when the
    day has no record of any kind.
    """
    from engine.ops.funding_report import build_funding_day, render_funding

    rep = build_report(Path(records_dir), day)
    fund = build_funding_day(Path(records_dir), day)  # issue 11: the funding/basis strategy
    if not rep.has_data and fund is None:
        raise NoDataError(f"no records for {day.isoformat()} in {records_dir}: no report "
                          "written")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = make_plots(rep, out_dir)
    path = out_dir / f"report_{day.isoformat()}.md"
    text = render_markdown(rep, plots)
    if fund is not None:
        text = text.rstrip("\n") + "\n\n" + "\n".join(render_funding(fund))
    _atomic_write(path, text.encode("utf-8"))
    log.info("report %s written: %s (%d signals, %d trades, %d skipped line(s))", day, path,
             rep.signals.total, rep.trades.count, sum(f.skipped for f in rep.files))
    return path
