"""The funding app's restart journal: the last ``state`` record of its own funding day files.

The funding shell writes, after every batch of records that changed something (an order, a
fill, a settlement, a position change, a round trip closed, a reconciliation, the kill), one
``{"type": "state", "ts": …, "mode": …, "environment": …, "core": {…}}`` line to
``funding_YYYY-MM-DD.jsonl``: ``core`` is :meth:`engine.core.funding_core.FundingCore.to_record`
(every open pair's intent with its orders and fills per leg, the ledgers with fees and funding
booked, the reconciliation baseline and inventory). It comes after the batch's own records, so
the newest complete state line is the whole state as of the last flush.

:func:`last_state` finds it: the newest day, over today and the previous ``lookback_days`` UTC
days, holding a state record; in it the last one. Torn or unreadable lines are skipped (the
reader counts them, as every reader of the day files does); a records dir without funding files
has no state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from engine.io.dayfiles import day_sources
from engine.io.jsonl import read_records

KIND: Final = "funding"
STATE: Final = "state"
LOOKBACK_DAYS: Final = 30


def newest_record(records_dir: Path, today: dt.date, match: Callable[[dict[str, Any]], bool],
                  lookback_days: int = LOOKBACK_DAYS) -> dict[str, Any] | None:
    """The newest funding record that ``match`` accepts: today's day files first, then each day
    before, up to ``lookback_days`` back (None: there is none)."""
    for back in range(lookback_days + 1):
        paths, _note = day_sources(Path(records_dir), KIND, today - dt.timedelta(days=back))
        last: dict[str, Any] | None = None
        for p in paths:
            for r in read_records(p):
                if match(r):
                    last = r
        if last is not None:
            return last
    return None


def last_state(records_dir: Path, today: dt.date,
               lookback_days: int = LOOKBACK_DAYS) -> dict[str, Any] | None:
    """The newest ``state`` record of the funding day files (None: there is none)."""
    return newest_record(
        records_dir, today,
        lambda r: r.get("type") == STATE and isinstance(r.get("core"), dict), lookback_days)
