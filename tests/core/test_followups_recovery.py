"""Restart recovery: offsets without a followup record become MISSED "restart" or are rescheduled."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.core.followups import FollowupBook
from engine.core.types import MarketView
from engine.io.followup_recovery import Reschedule, recover_incomplete
from engine.io.jsonl import encode_line

NOW = datetime(2026, 1, 21, 0, 0, 2, tzinfo=UTC).timestamp() * 1000.0  # 2 s after midnight
DAY_MS = 86_400_000


def day(ts: float) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d")


def signal(sid: str, ts: float, offsets: list[int] | None = None, **kw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "signal_id": sid,
        "market_key": "xyz:SILVER",
        "side": "buy",
        "timestamp_ms": ts,
        "oracle_px": 100.0,
        "best_px": 99.8,
        "raw_edge_bps": 20.0,
    }
    if offsets is not None:
        rec["followup_offsets_ms"] = offsets
    rec.update(kw)
    return rec


def followup(sid: str, offset: int, status: str = "captured") -> dict[str, Any]:
    return {"signal_id": sid, "offset_ms": offset, "status": status}


def append(path: Path, *recs: dict[str, Any], torn: bytes = b"") -> None:
    with path.open("ab") as f:
        for r in recs:
            f.write(encode_line(r))
        f.write(torn)


def test_missing_offsets_become_restart_misses_or_reschedules(tmp_path: Path) -> None:
    a_ts = NOW - 4000  # yesterday 23:59:58: its signal is in yesterday's file
    b_ts = NOW - 10_000
    c_ts = NOW - 500
    append(
        tmp_path / f"signals_{day(a_ts)}.jsonl",
        signal("A", a_ts, [1000, 3000, 5000]),
        signal("B", b_ts, [1000, 3000, 5000]),
        signal("legacy", b_ts),  # no followup_offsets_ms: skipped
    )
    append(
        tmp_path / f"signals_{day(c_ts)}.jsonl",
        signal("C", c_ts, [1000, 3000], side="sell"),
        torn=b'{"signal_id": "torn',  # a kill mid-write: ignored
    )
    # A's 1 s followup was written yesterday; B is complete across the two day files
    append(tmp_path / f"followups_{day(a_ts)}.jsonl", followup("A", 1000), followup("B", 1000))
    append(
        tmp_path / f"followups_{day(NOW)}.jsonl",
        followup("B", 3000, "missed"),
        followup("B", 5000),
    )
    # a 3-day-old signal outside the lookback is ignored
    old = NOW - 3 * DAY_MS
    append(tmp_path / f"signals_{day(old)}.jsonl", signal("OLD", old, [1000]))

    missed, resched = recover_incomplete(tmp_path, NOW, lookback_days=2)

    assert [(r["signal_id"], r["offset_ms"]) for r in missed] == [("A", 3000)]
    m = missed[0]
    assert m["status"] == "missed" and m["miss_reason"] == "restart"
    assert m["due_ms"] == a_ts + 3000 and m["captured_at_ms"] == NOW
    assert m["t0_oracle_px"] == 100.0 and m["t0_best_px"] == 99.8 and m["t0_raw_edge_bps"] == 20.0
    assert m["market_key"] == "xyz:SILVER" and m["side"] == "buy" and m["oracle_px"] is None

    assert resched == [
        Reschedule("A", "xyz:SILVER", "buy", a_ts, 100.0, 99.8, 20.0, (5000,), True),
        Reschedule("C", "xyz:SILVER", "sell", c_ts, 100.0, 99.8, 20.0, (1000, 3000), False),
    ]


def test_rescheduled_signals_resume_in_the_book(tmp_path: Path) -> None:
    ts = NOW - 1500
    append(tmp_path / f"signals_{day(ts)}.jsonl", signal("A", ts, [1000, 3000, 5000]))
    missed, resched = recover_incomplete(tmp_path, NOW)
    assert [r["offset_ms"] for r in missed] == [1000]
    book = FollowupBook()
    for r in resched:
        book.schedule(
            r.signal_id,
            r.coin,
            r.side,
            r.signal_ts_ms,
            r.t0_oracle_px,
            r.t0_best_px,
            r.t0_raw_edge_bps,
            r.offsets_ms,
            prior_miss=r.prior_miss,
        )
    assert book.next_due_ms() == ts + 3000
    v = MarketView("xyz:SILVER", 100.0, 100.0, 99.9, 1.0, 100.1, 1.0, ts + 5000, ts + 5000, True)
    recs = book.capture_due(ts + 3000, lambda c: v) + book.capture_due(ts + 5000, lambda c: v)
    assert [(r["offset_ms"], r["status"]) for r in recs] == [(3000, "captured"), (5000, "captured")]
    assert book.signals_missed == 1  # the restart miss is remembered by the FSM


def test_empty_dir_and_bad_lookback(tmp_path: Path) -> None:
    assert recover_incomplete(tmp_path / "nothing", NOW) == ([], [])
    with pytest.raises(ValueError):
        recover_incomplete(tmp_path, NOW, lookback_days=0)


def test_malformed_signals_are_skipped(tmp_path: Path) -> None:
    ts = NOW - 100
    append(
        tmp_path / f"signals_{day(ts)}.jsonl",
        signal("bad_side", ts, [1000], side="long"),
        signal("bad_offsets", ts, [1000, "x"]),  # type: ignore[list-item]
        signal("neg", ts, [-1]),
        signal("dup", ts, [1000]),
        signal("dup", ts, [1000]),
    )
    missed, resched = recover_incomplete(tmp_path, NOW)
    assert missed == []
    assert [r.signal_id for r in resched] == ["dup"]
