"""Restart recovery of followups: find signals whose offsets never got a record.

Owns reading the recent ``signals_*.jsonl`` / ``followups_*.jsonl`` files after a restart and
deciding, for every offset of every recent signal that has no followup record yet, whether it
is already past due (a MISSED record with ``miss_reason = "restart"``, to be written) or still
in the future (to be rescheduled in the :class:`engine.core.followups.FollowupBook`). This keeps
docs/reference/design.md §4 invariant 7 across restarts: each signal gets one record per offset.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

from engine.core.followups import FollowupRecord, missed_record
from engine.io.dayfiles import day_sources
from engine.io.jsonl import ReadStats, StrPath, read_records

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


class Reschedule(NamedTuple):
    """A recovered signal whose remaining offsets are still in the future.

    The fields match :meth:`engine.core.followups.FollowupBook.schedule`; ``offsets_ms`` holds
    only the offsets that still need a record; ``prior_miss`` says one of its offsets was
    already missed.
    """

    signal_id: str
    coin: str
    side: str
    signal_ts_ms: float
    t0_oracle_px: float | None
    t0_best_px: float | None
    t0_raw_edge_bps: float | None
    offsets_ms: tuple[float, ...]
    prior_miss: bool


def _days(now_ms: float, lookback_days: int) -> list[str]:
    today = int(now_ms // DAY_MS)
    return [
        time.strftime("%Y-%m-%d", time.gmtime((today - i) * 86_400))
        for i in range(lookback_days - 1, -1, -1)
    ]


def _num(v: Any) -> float | None:
    """``v`` if it is a JSON number (ints stay ints: 1000 == 1000.0 as a dict key)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return v


def _read_day(d: Path, kind: str, day: str) -> list[dict[str, Any]]:
    """``{kind}_{day}.jsonl`` or, once retention compressed the day, its ``.jsonl.gz``; a
    file that cannot be read to its end is skipped (logged)."""
    paths, _note = day_sources(d, kind, _dt.date.fromisoformat(day))
    out: list[dict[str, Any]] = []
    for path in paths:
        rs = ReadStats()
        recs = list(read_records(path, rs))
        if rs.error is not None and not isinstance(rs.error, FileNotFoundError):
            log.warning("followup recovery: cannot read %s (%s)", path, rs.error)
            continue
        if rs.malformed:
            log.warning("%s: skipped %d undecodable line(s)", path, rs.malformed)
        out.extend(recs)
    return out


def recover_incomplete(
    records_dir: StrPath, now_ms: float, lookback_days: int = 2
) -> tuple[list[FollowupRecord], list[Reschedule]]:
    """Return ``(missed_records, reschedule_list)`` for the last ``lookback_days`` UTC days.

    Reads ``signals_{day}.jsonl`` and ``followups_{day}.jsonl`` for today (by ``now_ms``) and
    the ``lookback_days - 1`` days before. Signals without ``followup_offsets_ms`` or with
    malformed fields are skipped (counted in a WARNING). An offset is past due when
    ``signal_ts + offset <= now_ms``.
    """
    if lookback_days < 1:
        raise ValueError("lookback_days must be >= 1")
    d = Path(records_dir)
    days = _days(now_ms, lookback_days)
    done: dict[tuple[str, float], bool] = {}  # (signal_id, offset) -> was missed
    for day in days:
        for rec in _read_day(d, "followups", day):
            sid = rec.get("signal_id")
            off = _num(rec.get("offset_ms"))
            if isinstance(sid, str) and off is not None:
                done[(sid, off)] = done.get((sid, off), False) or rec.get("status") == "missed"
    missed: list[FollowupRecord] = []
    reschedule: list[Reschedule] = []
    seen: set[str] = set()
    skipped = 0
    for day in days:
        for sig in _read_day(d, "signals", day):
            sid = sig.get("signal_id")
            coin = sig.get("market_key")
            side = sig.get("side")
            ts = _num(sig.get("timestamp_ms"))
            offsets_raw = sig.get("followup_offsets_ms")
            if (
                not isinstance(sid, str)
                or not isinstance(coin, str)
                or side not in ("buy", "sell")
                or ts is None
                or not isinstance(offsets_raw, list)
            ):
                skipped += 1
                continue
            offsets = [_num(o) for o in offsets_raw]
            if any(o is None or o <= 0 for o in offsets):
                skipped += 1
                continue
            if sid in seen:
                continue
            seen.add(sid)
            t0_oracle = _num(sig.get("oracle_px"))
            t0_best = _num(sig.get("best_px"))
            t0_raw = _num(sig.get("raw_edge_bps"))
            had_miss = any(done.get((sid, o), False) for o in offsets if o is not None)
            future: list[float] = []
            for o in offsets:
                assert o is not None
                if (sid, o) in done:
                    continue
                if ts + o <= now_ms:
                    missed.append(
                        missed_record(
                            sid, coin, side, ts, o, now_ms, "restart", t0_oracle, t0_best, t0_raw
                        )
                    )
                    had_miss = True
                else:
                    future.append(o)
            if future:
                reschedule.append(
                    Reschedule(
                        sid, coin, side, ts, t0_oracle, t0_best, t0_raw, tuple(future), had_miss
                    )
                )
    if skipped:
        log.warning("followup recovery: skipped %d signal record(s) without usable fields", skipped)
    if missed or reschedule:
        log.info(
            "followup recovery: %d offset(s) missed during the restart, %d signal(s) rescheduled",
            len(missed),
            len(reschedule),
        )
    missed.sort(key=lambda r: r["due_ms"])
    return missed, reschedule
