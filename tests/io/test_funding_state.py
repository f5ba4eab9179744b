"""The funding restart journal's reader (:func:`engine.io.funding_state.last_state`): the newest
complete ``state`` line wins, a torn last line (a kill mid-write) is not a record, an earlier
day is read when today has none, a compressed day counts, and no funding files means no
state."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

from engine.io.funding_state import last_state

DAY = dt.date(2026, 12, 7)


def line(rec: dict[str, object]) -> str:
    return json.dumps(rec) + "\n"


def state(n: int) -> dict[str, object]:
    return {"type": "state", "ts": n, "mode": "trade", "venue": "v", "core": {"seq": n}}


def test_the_newest_complete_state_line_wins(tmp_path: Path) -> None:
    p = tmp_path / f"funding_{DAY}.jsonl"
    p.write_text(line(state(1)) + line({"type": "fill", "ts": 2}) + line(state(3))
                 + line({"type": "decision", "ts": 4}) + json.dumps(state(5))[:30])
    got = last_state(tmp_path, DAY)
    assert got is not None and got["core"] == {"seq": 3}


def test_a_state_line_without_a_core_is_not_a_state(tmp_path: Path) -> None:
    p = tmp_path / f"funding_{DAY}.jsonl"
    p.write_text(line(state(1)) + line({"type": "state", "ts": 2, "core": "?"}))
    got = last_state(tmp_path, DAY)
    assert got is not None and got["core"] == {"seq": 1}


def test_an_earlier_day_is_read_when_today_has_none(tmp_path: Path) -> None:
    before = DAY - dt.timedelta(days=2)
    with gzip.open(tmp_path / f"funding_{before}.jsonl.gz", "wt") as f:
        f.write(line(state(7)))
    (tmp_path / f"funding_{DAY}.jsonl").write_text(line({"type": "decision", "ts": 9}))
    got = last_state(tmp_path, DAY)
    assert got is not None and got["core"] == {"seq": 7}
    assert last_state(tmp_path, DAY, lookback_days=1) is None


def test_no_funding_files_no_state(tmp_path: Path) -> None:
    (tmp_path / f"events_{DAY}.jsonl").write_text(line(state(1)))
    assert last_state(tmp_path, DAY) is None
