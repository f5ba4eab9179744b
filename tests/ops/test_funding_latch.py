"""The funding app's breaker latch read back from its records (engine/ops/funding_latch.py)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any

from engine.ops.funding_latch import latched_breaker

TODAY = dt.date(2026, 12, 7)


def write(d: Path, day: dt.date, recs: list[dict[str, Any]], *, gz: bool = False,
          torn: str = "") -> None:
    text = "".join(json.dumps(r) + "\n" for r in recs) + torn
    p = d / f"funding_{day.isoformat()}.jsonl"
    if gz:
        with gzip.open(p.with_name(p.name + ".gz"), "wt") as f:
            f.write(text)
    else:
        p.write_text(text)


TRIP = {"type": "breaker", "ts": 1, "breaker": "daily_loss", "detail": "daily loss 3 USD"}
RESET = {"type": "breaker_reset", "ts": 2, "source": "reset file"}


def test_no_records_no_latch(tmp_path: Path) -> None:
    assert latched_breaker(tmp_path, TODAY) is None
    write(tmp_path, TODAY, [{"type": "decision"}, {"type": "kill"}])
    assert latched_breaker(tmp_path, TODAY) is None


def test_the_newest_of_trip_and_reset_decides(tmp_path: Path) -> None:
    write(tmp_path, TODAY, [TRIP])
    assert latched_breaker(tmp_path, TODAY) == TRIP
    write(tmp_path, TODAY, [TRIP, {"type": "fill"}, RESET])
    assert latched_breaker(tmp_path, TODAY) is None
    dd = {**TRIP, "breaker": "drawdown", "ts": 3}
    write(tmp_path, TODAY, [TRIP, RESET, dd])
    assert latched_breaker(tmp_path, TODAY) == dd


def test_earlier_days_and_compressed_days_count_within_the_lookback(tmp_path: Path) -> None:
    write(tmp_path, TODAY - dt.timedelta(days=3), [TRIP], gz=True)
    write(tmp_path, TODAY - dt.timedelta(days=1), [{"type": "decision"}])
    assert latched_breaker(tmp_path, TODAY) == TRIP
    assert latched_breaker(tmp_path, TODAY, lookback_days=2) is None  # older than the lookback
    write(tmp_path, TODAY, [RESET])  # a reset today releases yesterday's trip
    assert latched_breaker(tmp_path, TODAY) is None


def test_torn_and_malformed_lines_are_skipped_not_fatal(tmp_path: Path) -> None:
    p = tmp_path / f"funding_{TODAY.isoformat()}.jsonl"
    p.write_text(json.dumps(TRIP) + "\nnot json\n[1, 2]\n" + '{"type": "breaker_re')
    assert latched_breaker(tmp_path, TODAY) == TRIP  # the torn reset never completed
