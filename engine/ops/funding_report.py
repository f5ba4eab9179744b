"""The funding/basis section of the daily report, from ``funding_YYYY-MM-DD.jsonl`` (the records
:meth:`engine.core.funding_core.FundingCore.drain_records` gives and the funding app writes).

Figures of the UTC day: funding received (every settlement applied to a perp leg that day,
open positions included), and for the round trips closed that day: funding earned, basis P&L,
fees, net, net APR (notional × time weighted: ``Σ net / Σ(entry notional × hold) × year``),
hedge ratio, leg latency (leg-1 first fill → leg-2 first order; median and p99), unwinds
(a second leg that failed), per symbol; plus kills and breaker trips. A malformed line is
skipped and counted, never fatal.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from pathlib import Path
from typing import Any

import attrs

from engine.ops.report import _read

YEAR_MS = 365 * 24 * 3_600_000
KIND = "funding"


@attrs.frozen
class SymbolDay:
    symbol: str
    closed: int
    funding: float
    basis: float
    fees: float
    net: float


@attrs.frozen
class FundingDay:
    records: int
    skipped: int
    settlements: int
    funding_received: float
    closed: int
    unwound: int
    funding: float
    basis: float
    fees: float
    net: float
    net_apr: float | None
    hedge_ratio: float | None
    leg_latency_median_ms: float | None
    leg_latency_p99_ms: float | None
    kills: int
    breaker_trips: tuple[str, ...]
    symbols: tuple[SymbolDay, ...]


def _f(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def build_funding_day(records_dir: Path, day: dt.date) -> FundingDay | None:
    """The day's funding figures, or None when there is no funding record that day."""
    recs, acc = _read(Path(records_dir), KIND, day)
    if not recs and not acc.files:
        return None
    settlements, received = 0, 0.0
    closed = unwound = kills = 0
    funding = basis = fees = net = 0.0
    weight = 0.0
    ratios: list[float] = []
    lat: list[float] = []
    trips: list[str] = []
    per: dict[str, list[float]] = {}
    bad = 0
    for r in recs:
        t = r.get("type")
        if t == "funding" and r.get("applied"):
            amount = _f(r.get("amount"))
            if amount is None:
                bad += 1
                continue
            settlements += 1
            received += amount
        elif t == "closed":
            if not r.get("filled"):
                continue
            vals = [_f(r.get(k)) for k in ("funding", "basis_pnl", "fees", "net")]
            if any(v is None for v in vals):
                bad += 1
                continue
            fu, ba, fe, ne = (v or 0.0 for v in vals)
            closed += 1
            funding, basis, fees, net = funding + fu, basis + ba, fees + fe, net + ne
            notional, hold = _f(r.get("entry_notional")), _f(r.get("hold_ms"))
            if notional and hold:
                weight += notional * hold
            ratio, leg = _f(r.get("hedge_ratio")), _f(r.get("leg_latency_ms"))
            if ratio is not None:
                ratios.append(ratio)
            if leg is not None:
                lat.append(leg)
            if r.get("fail_reason"):
                unwound += 1
            s = per.setdefault(str(r.get("symbol")), [0, 0.0, 0.0, 0.0, 0.0])
            s[0] += 1
            s[1] += fu
            s[2] += ba
            s[3] += fe
            s[4] += ne
        elif t == "kill":
            kills += 1
        elif t == "breaker":
            trips.append(str(r.get("detail") or r.get("breaker")))
    lat.sort()
    return FundingDay(
        records=len(recs), skipped=acc.malformed + acc.torn + bad, settlements=settlements,
        funding_received=received, closed=closed, unwound=unwound, funding=funding,
        basis=basis, fees=fees, net=net,
        net_apr=net / weight * YEAR_MS if weight > 0 else None,
        hedge_ratio=statistics.fmean(ratios) if ratios else None,
        leg_latency_median_ms=statistics.median(lat) if lat else None,
        leg_latency_p99_ms=lat[min(len(lat) - 1, max(0, math.ceil(0.99 * len(lat)) - 1))]
        if lat else None,
        kills=kills, breaker_trips=tuple(trips),
        symbols=tuple(SymbolDay(k, int(v[0]), v[1], v[2], v[3], v[4])
                      for k, v in sorted(per.items())))


def _usd(x: float) -> str:
    return f"{x:+.4f} USD"


def render_funding(fd: FundingDay) -> list[str]:
    """The report's "Funding / basis" section (Markdown lines)."""
    def opt(x: float | None, fmt: str) -> str:
        return "n/a" if x is None else format(x, fmt)

    md = ["## Funding / basis (Bybit)", "",
          f"- funding received: {_usd(fd.funding_received)} over {fd.settlements} "
          "settlement(s) (open positions included)",
          f"- round trips closed: {fd.closed} ({fd.unwound} unwound after a failed second "
          "leg)",
          f"- funding earned: {_usd(fd.funding)}; basis P&L: {_usd(fd.basis)}; fees: "
          f"{fd.fees:.4f} USD; net: {_usd(fd.net)}",
          f"- net APR: {opt(None if fd.net_apr is None else fd.net_apr * 100, '.2f')} %",
          f"- hedge ratio: {opt(fd.hedge_ratio, '.4f')}",
          f"- leg latency (leg-1 fill -> leg-2 order): median "
          f"{opt(fd.leg_latency_median_ms, '.1f')} ms, p99 {opt(fd.leg_latency_p99_ms, '.1f')}"
          " ms",
          f"- kills: {fd.kills}; breaker trips: "
          f"{'; '.join(fd.breaker_trips) if fd.breaker_trips else 'none'}",
          f"- records: {fd.records} ({fd.skipped} skipped)", ""]
    if fd.symbols:
        md += ["| symbol | closed | funding | basis | fees | net |",
               "|---|---|---|---|---|---|"]
        md += [f"| {s.symbol} | {s.closed} | {s.funding:+.4f} | {s.basis:+.4f} | "
               f"{s.fees:.4f} | {s.net:+.4f} |" for s in fd.symbols]
        md.append("")
    return md
