"""The funding app's circuit-breaker latch across restarts, read back from its own records.

A trip is the ``{"type": "breaker", …}`` record the funding app writes to
``funding_YYYY-MM-DD.jsonl``; an operator's reset is a ``{"type": "breaker_reset", …}`` record.
The latch holds when the newest of the two, over today and the previous
:data:`LOOKBACK_DAYS` UTC days, is a trip (a trip older than that is forgotten: retention keeps
a kind's days for 30 by default). Unreadable or torn lines are skipped (the reader counts them);
a records dir without funding files holds no latch.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Final

from engine.io.funding_state import newest_record

TRIP: Final = "breaker"
RESET: Final = "breaker_reset"
LOOKBACK_DAYS: Final = 30


def latched_breaker(records_dir: Path, today: dt.date,
                    lookback_days: int = LOOKBACK_DAYS) -> dict[str, Any] | None:
    """The trip record that still holds (no reset after it), else None."""
    last = newest_record(records_dir, today, lambda r: r.get("type") in (TRIP, RESET),
                         lookback_days)
    return last if last is not None and last.get("type") == TRIP else None
