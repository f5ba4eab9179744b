"""The end-of-replay summary, computed from the records the replay wrote (signals, followups,
trades): signals, trades, P&L, win rate, max drawdown and edge retention at each offset.

The record files are read as streams into running aggregates (counts, sums, peak and drawdown);
only what the summary reports per item is held: the equity curve (one point per trade) and one
retention ratio per captured followup (8 bytes each, for the median). A day of records is never
loaded into memory as dicts."""

from __future__ import annotations

import logging
import math
import statistics
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from engine.io.jsonl import ReadStats, read_records

log = logging.getLogger(__name__)


@attrs.define
class OffsetRetention:
    offset_ms: int
    captured: int
    missed: int
    median_retention: float | None  # median of raw edge at the offset / edge at the signal
    mean_retention: float | None


@attrs.define
class ReplaySummary:
    signals: int
    trades: int
    wins: int
    losses: int
    pnl: float
    max_drawdown: float
    offsets: list[OffsetRetention]
    equity: list[tuple[float, float]] = attrs.Factory(list)  # (exit time ms, cumulative P&L)

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.trades if self.trades else None

    @property
    def pnl_per_trade(self) -> float | None:
        return self.pnl / self.trades if self.trades else None

    def as_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["win_rate"] = self.win_rate
        d["pnl_per_trade"] = self.pnl_per_trade
        return d

    def lines(self) -> list[str]:
        wr = "-" if self.win_rate is None else f"{100 * self.win_rate:.1f} %"
        out = [f"signals {self.signals} | trades {self.trades} (wins {self.wins}, losses "
               f"{self.losses}, win rate {wr}) | P&L {self.pnl:+.4f} USD | max drawdown "
               f"{self.max_drawdown:.4f} USD"]
        for o in self.offsets:
            med = "-" if o.median_retention is None else f"{100 * o.median_retention:.1f} %"
            mean = "-" if o.mean_retention is None else f"{100 * o.mean_retention:.1f} %"
            out.append(f"  edge retention @ {o.offset_ms} ms: median {med}, mean {mean} "
                       f"(captured {o.captured}, missed {o.missed})")
        return out


def _records(out_dir: Path, kind: str) -> Iterator[dict[str, Any]]:
    """The records of ``kind`` in day order, as a stream (as :func:`engine.io.jsonl.read_jsonl`
    reads each file: a torn tail ignored, an undecodable line skipped and logged)."""
    for p in sorted(out_dir.glob(f"{kind}_*.jsonl")):
        st = ReadStats()
        try:
            yield from read_records(p, st, strict=True)
        except FileNotFoundError:
            continue
        if st.malformed:
            log.warning("%s: skipped %d undecodable line(s)", p, st.malformed)


def summarize(out_dir: Path) -> ReplaySummary:
    signals = sum(1 for _ in _records(out_dir, "signals"))
    n = wins = losses = 0
    peak = total = dd = 0.0
    nets = array("d")  # (for math.fsum: the exact sum)
    equity: list[tuple[float, float]] = []
    for t in _records(out_dir, "trades"):
        x = float(t.get("net_pnl") or 0.0)
        n += 1
        wins += x > 0
        losses += x < 0
        nets.append(x)
        total += x
        peak = max(peak, total)
        dd = max(dd, peak - total)
        equity.append((float(t.get("exit_time_ms") or t.get("ts_ms") or 0.0), total))
    by_off: dict[int, tuple[array[float], list[int]]] = {}
    for r in _records(out_dir, "followups"):
        off = int(r.get("offset_ms") or 0)
        got = by_off.get(off)
        if got is None:
            got = by_off[off] = (array("d"), [0, 0])
        ratios, counts = got
        if r.get("status") != "captured":
            counts[1] += 1
            continue
        counts[0] += 1
        raw, t0 = r.get("raw_edge_bps"), r.get("t0_raw_edge_bps")
        if isinstance(raw, int | float) and isinstance(t0, int | float) and t0 > 0:
            ratios.append(raw / t0)
    offsets = [OffsetRetention(off, c[0], c[1],
                               statistics.median(rs) if rs else None,
                               math.fsum(rs) / len(rs) if rs else None)
               for off, (rs, c) in sorted(by_off.items())]
    return ReplaySummary(signals, n, wins, losses, math.fsum(nets), dd, offsets, equity)
