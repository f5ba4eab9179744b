"""FollowupScheduler (Trio shell): real-time captures, early wake-up, shutdown -> MISSED."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from engine.core.followups import FollowupBook
from engine.core.types import MarketView
from engine.followups import FollowupScheduler, Reservoir
from engine.io.followup_recovery import Reschedule
from engine.io.jsonl import read_jsonl
from engine.io.records import RecordWriter

# generous: the capture must never be early, and on a loaded CI box a few ms late is normal
SLACK_MS = 40.0


def wall_ms() -> float:
    return time.time() * 1000.0


class Sink:
    """Collects what the scheduler writes, with the wall time it was written."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, dict[str, Any], float]] = []

    def write(self, kind: str, ts_ms: float, record: Any) -> None:
        self.rows.append((kind, ts_ms, record, wall_ms()))

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for _, _, r, _ in self.rows]


def read_all(d: Path) -> list[dict[str, Any]]:
    return [r for p in sorted(d.glob("followups_*.jsonl")) for r in read_jsonl(p)]


def live_view(coin: str) -> MarketView:
    now = wall_ms()
    return MarketView(coin, 100.0, 100.0, 99.9, 5.0, 100.1, 7.0, now, now, True)


async def test_captures_at_the_right_offsets_in_real_time() -> None:
    sink = Sink()
    book = FollowupBook()
    sched = FollowupScheduler(book, sink, live_view, wall_ms)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.run)
        await trio.sleep(0.01)
        t0 = wall_ms()
        assert sched.schedule("sig", "xyz:A", "buy", t0, 100.0, 100.1, 5.0, (50, 100, 150))
        await trio.sleep(0.25)
        nursery.cancel_scope.cancel()
    assert [r["offset_ms"] for r in sink.records] == [50, 100, 150]
    for kind, ts, rec, written in sink.rows:
        assert kind == "followups"
        assert rec["status"] == "captured"
        assert ts == rec["captured_at_ms"]
        assert rec["captured_at_ms"] >= rec["due_ms"]  # never early
        assert rec["lateness_ms"] < SLACK_MS
        assert written - rec["due_ms"] < SLACK_MS
    st = sched.stats
    assert st.written_captured == 3 and st.written_missed == 0 and st.pending == 0
    assert st.lateness.count == 3 and st.lateness.max < SLACK_MS


async def test_wakes_early_for_an_earlier_schedule() -> None:
    sink = Sink()
    sched = FollowupScheduler(FollowupBook(), sink, live_view, wall_ms)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.run)
        t0 = wall_ms()
        sched.schedule("late", "xyz:A", "buy", t0, 100.0, 100.1, 5.0, (400,))
        await trio.sleep(0.02)  # the task now sleeps until t0 + 400
        t1 = wall_ms()
        sched.schedule("soon", "xyz:A", "sell", t1, 100.0, 99.9, 5.0, (50,))
        await trio.sleep(0.15)
        assert [r["signal_id"] for r in sink.records] == ["soon"]
        soon = sink.records[0]
        assert soon["due_ms"] <= soon["captured_at_ms"] < soon["due_ms"] + SLACK_MS
        await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    assert [r["signal_id"] for r in sink.records] == ["soon", "late"]
    assert sched.stats.wakeups <= 4  # no polling


async def test_cancellation_writes_every_pending_offset_as_missed_shutdown() -> None:
    sink = Sink()
    sched = FollowupScheduler(FollowupBook(), sink, live_view, wall_ms)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.run)
        t0 = wall_ms()
        sched.schedule("a", "xyz:A", "buy", t0, 100.0, 100.1, 5.0, (30, 10_000, 20_000))
        sched.schedule("b", "xyz:B", "sell", t0, 100.0, 99.9, 5.0, (10_000,))
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    got = [(r["signal_id"], r["offset_ms"], r["status"], r["miss_reason"]) for r in sink.records]
    assert got == [  # each signal's remaining offsets together, signals by next due time
        ("a", 30, "captured", None),
        ("a", 10_000, "missed", "shutdown"),
        ("a", 20_000, "missed", "shutdown"),
        ("b", 10_000, "missed", "shutdown"),
    ]
    assert sched.stats.missed_by_reason == {"shutdown": 3}
    assert sched.shutdown() == 0  # idempotent
    # a signal arriving after shutdown still gets its records, at once
    sched.schedule("c", "xyz:A", "buy", wall_ms(), 100.0, 100.1, 5.0, (1000, 3000))
    assert [r["miss_reason"] for r in sink.records[-2:]] == ["shutdown", "shutdown"]


async def test_misses_from_market_state_are_written(autojump_clock: trio.testing.MockClock) -> None:
    sink = Sink()
    clock = lambda: 1.7e12 + trio.current_time() * 1000.0  # noqa: E731
    views: dict[str, MarketView | None] = {"xyz:A": None}
    sched = FollowupScheduler(FollowupBook(), sink, views.get, clock)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.run)
        sched.schedule("a", "xyz:A", "buy", clock(), 100.0, 100.1, 5.0, (1000, 2000))
        await trio.sleep(1.5)
        views["xyz:A"] = MarketView("xyz:A", 100.0, 100.0, 99.0, 1.0, 101.0, 1.0, 0, 0, False)
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert [r["miss_reason"] for r in sink.records] == ["no_data", "disconnected"]
    assert sched.stats.missed_by_reason == {"no_data": 1, "disconnected": 1}


async def test_large_batch_is_chunked_with_checkpoints() -> None:
    events: list[str] = []
    all_written = trio.Event()

    class MarkingSink(Sink):
        def write(self, kind: str, ts_ms: float, record: Any) -> None:
            events.append("w")
            super().write(kind, ts_ms, record)
            if len(self.rows) == 95:
                all_written.set()

    sink = MarkingSink()
    sched = FollowupScheduler(FollowupBook(), sink, live_view, wall_ms, batch_limit=10)

    async def other_task() -> None:  # a busy task, like the market-data hot path
        while len(sink.records) < 95:
            await trio.lowlevel.checkpoint()
            events.append("o")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.run)
        t = wall_ms()
        for i in range(95):
            sched.schedule(f"s{i}", "xyz:A", "buy", t, 100.0, 100.1, 5.0, (30,))
        nursery.start_soon(other_task)
        with trio.fail_after(5):
            await all_written.wait()
        nursery.cancel_scope.cancel()
    assert len(sink.records) == 95
    seq = "".join(events).replace("o", "")  # the writes, in order ...
    assert seq == "w" * 95
    runs = [r for r in "".join(events).split("o") if r]
    # ... in chunks of 10 with a checkpoint between them (Trio may run two chunks back to back
    # when it reverses a batch, so only "several runs" is deterministic)
    assert len(runs) >= 3
    assert all(len(r) % 10 == 0 for r in runs[:-1])


async def test_with_real_record_writer(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path, clock=wall_ms)
    sched = FollowupScheduler(FollowupBook(), writer, live_view, wall_ms)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        nursery.start_soon(sched.run)
        t0 = wall_ms()
        for i in range(20):
            sched.schedule(
                f"s{i}", "xyz:A", "buy" if i % 2 else "sell", t0, 100.0, 100.1, 5.0, (30, 60)
            )
        await trio.sleep(0.15)
        sched.schedule("late", "xyz:A", "buy", wall_ms(), 100.0, 100.1, 5.0, (60_000,))
        nursery.cancel_scope.cancel()
    writer.close()  # the scheduler's shutdown records landed after the writer task ended
    recs = read_all(tmp_path)
    assert len(recs) == 41
    assert sum(r["status"] == "captured" for r in recs) == 40
    assert recs[-1]["signal_id"] == "late" and recs[-1]["miss_reason"] == "shutdown"
    assert writer.stats.records_written == {"followups": 41}


async def test_restore_writes_restart_misses_and_reschedules() -> None:
    sink = Sink()
    sched = FollowupScheduler(FollowupBook(), sink, live_view, wall_ms)
    t0 = wall_ms()
    missed = [
        {"signal_id": "x", "captured_at_ms": t0, "status": "missed", "miss_reason": "restart"}
    ]
    sched.restore(missed, [Reschedule("y", "xyz:A", "buy", t0, 100.0, 100.1, 5.0, (40,), True)])
    assert sink.records == missed
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.run)
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert [r["signal_id"] for r in sink.records] == ["x", "y"]
    assert sched.book.signals_missed == 1


async def test_refused_schedules_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    sched = FollowupScheduler(FollowupBook(max_pending=1), sink, live_view, wall_ms)
    with caplog.at_level(logging.WARNING):
        assert sched.schedule("a", "c", "buy", wall_ms(), 1.0, 1.0, 1.0, (1000,))
        assert not sched.schedule("b", "c", "buy", wall_ms(), 1.0, 1.0, 1.0, (1000, 3000))
    assert sched.stats.refused == 1
    assert "refused 1" in caplog.text
    # Never silence: the refused signal still gets one MISSED "overflow" record per offset.
    refused = [r for r in sink.records if r["signal_id"] == "b"]
    assert [(r["offset_ms"], r["status"], r["miss_reason"]) for r in refused] == [
        (1000, "missed", "overflow"), (3000, "missed", "overflow")]


def test_reservoir_is_bounded() -> None:
    r = Reservoir(size=100)
    assert r.quantile(0.5) is None
    r.extend([float(i) for i in range(1000)])
    r.add(5000.0)
    assert len(r) == 100 and r.count == 1001 and r.max == 5000.0
    assert r.quantile(0.0) == 901.0 and r.quantile(1.0) == 5000.0
    assert r.quantile(0.5) == 950.0
