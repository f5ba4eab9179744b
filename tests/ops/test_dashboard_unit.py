"""The dashboard's pure parts: SSE queues (coalescing, dropping, the cap), latency percentiles
from a Prometheus exposition, the record writer's tap, and the publisher's hooks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from engine.io.records import RecordWriter
from engine.ops.dashboard import Dashboard, latency_table, parse_buckets, quantile
from engine.ops.metrics import EngineMetrics
from engine.ops.sse import KEEPALIVE, SseHub, sse_frame


def test_sse_frame_shape_and_bad_names() -> None:
    assert sse_frame("snapshot", {"a": [1, "x\ny"]}) == \
        b'event: snapshot\ndata: {"a":[1,"x\\ny"]}\n\n'
    for bad in ("", "a\nb", "a:b", "a\rb"):
        with pytest.raises(ValueError):
            sse_frame(bad, {})


def test_snapshots_coalesce_and_events_drop_oldest_with_counters() -> None:
    hub = SseHub(max_clients=2, max_queued_events=3)
    c = hub.subscribe()
    assert c is not None
    for i in range(5):
        hub.publish_snapshot(sse_frame("snapshot", {"i": i}))
    assert c.coalesced == 4 and hub.stats.coalesced == 4
    for i in range(7):
        hub.publish_event(sse_frame("e", {"i": i}))
    assert len(c.events) == 3 and c.dropped == 4 and hub.stats.dropped == 4
    chunk = c.take()
    # the page is told how many it lost, then the newest events in order, then the snapshot
    assert chunk == (sse_frame("dropped", {"dropped": 4}) + sse_frame("e", {"i": 4})
                     + sse_frame("e", {"i": 5}) + sse_frame("e", {"i": 6})
                     + sse_frame("snapshot", {"i": 4}))
    assert c.take() == b"" and c.pending == 0


def test_client_cap_and_unsubscribe() -> None:
    hub = SseHub(max_clients=1, greeting=lambda: [sse_frame("hello", {})])
    a = hub.subscribe()
    assert a is not None and a.take() == sse_frame("hello", {})
    assert hub.subscribe() is None and hub.stats.refused == 1
    hub.unsubscribe(a)
    hub.unsubscribe(a)  # twice is harmless
    assert hub.stats.disconnected == 1 and hub.stats.connected == 0
    hub.publish_event(sse_frame("e", {}))  # nobody: nothing queued anywhere
    assert a.pending == 0
    assert hub.subscribe() is not None


async def test_next_chunk_waits_then_keeps_alive() -> None:
    hub = SseHub()
    c = hub.subscribe()
    assert c is not None
    assert await c.next_chunk(0.05) == KEEPALIVE

    async def later() -> None:
        await trio.sleep(0.05)
        hub.publish_event(sse_frame("e", {"x": 1}))

    async with trio.open_nursery() as n:
        n.start_soon(later)
        assert await c.next_chunk(10.0) == sse_frame("e", {"x": 1})


def _exposition(values: list[float], buckets: tuple[float, ...]) -> str:
    reg = CollectorRegistry()
    h = Histogram("engine_frame_to_decision_seconds", "x", registry=reg, buckets=buckets)
    for v in values:
        h.observe(v)
    return generate_latest(reg).decode()


def test_percentiles_from_prometheus_client_and_the_engine_registry() -> None:
    buckets = (0.001, 0.002, 0.005, 0.01)
    values = [0.0015] * 50 + [0.004] * 40 + [0.02] * 10
    b = parse_buckets(_exposition(values, buckets), ["engine_frame_to_decision_seconds"])
    per = b["engine_frame_to_decision_seconds"]
    assert per[math.inf] == 100 and per[0.001] == 0 and per[0.002] == 50
    assert quantile(per, 0.5) == pytest.approx(0.002)
    assert quantile(per, 0.7) == pytest.approx(0.002 + 0.003 * 20 / 40)
    assert quantile(per, 0.99) == pytest.approx(0.01)  # in +Inf: the largest finite bound
    # the engine's own registry renders the same format
    m = EngineMetrics(version="t", mode="paper")
    for v in values:
        m.frame_to_decision.observe(v)
    text = m.registry.render().decode()
    table = latency_table(parse_buckets(text, ["engine_frame_to_decision_seconds"]))
    row = table["engine_frame_to_decision_seconds"]
    assert row["count"] == 100 and 1.0 < row["p50_ms"] < 5.0


def test_window_percentiles_only_count_recent_observations() -> None:
    buckets = (0.001, 0.01, 0.1)
    old = parse_buckets(_exposition([0.0005] * 100, buckets), ["engine_frame_to_decision_seconds"])
    now = parse_buckets(_exposition([0.0005] * 100 + [0.05] * 10, buckets),
                        ["engine_frame_to_decision_seconds"])
    row = latency_table(now, old)["engine_frame_to_decision_seconds"]
    assert row["count"] == 110 and row["window_count"] == 10
    assert row["p50_ms"] < 1.0 and row["window_p50_ms"] > 10.0


def test_quantile_without_data_and_junk_lines() -> None:
    assert quantile({}, 0.5) is None
    assert quantile({0.1: 0.0, math.inf: 0.0}, 0.5) is None
    junk = ('engine_frame_to_decision_seconds_bucket{le="oops"} 3\n'
            'engine_frame_to_decision_seconds_bucket{le="0.1"} NaN\n'
            'garbage line\n'
            'engine_frame_to_decision_seconds_bucket{le="0.1"} 2\n')
    assert parse_buckets(junk, ["engine_frame_to_decision_seconds"]) == {
        "engine_frame_to_decision_seconds": {0.1: 2.0}}


@given(st.lists(st.floats(min_value=0.0, max_value=20.0), min_size=1, max_size=200),
       st.floats(min_value=0.0, max_value=1.0), st.floats(min_value=0.0, max_value=1.0))
def test_quantile_is_monotonic_and_bounded(values: list[float], q1: float, q2: float) -> None:
    bounds = (0.001, 0.01, 0.1, 1.0, 10.0)
    cum: dict[float, float] = {b: float(sum(v <= b for v in values)) for b in bounds}
    cum[math.inf] = float(len(values))
    lo, hi = sorted((q1, q2))
    a, b = quantile(cum, lo), quantile(cum, hi)
    assert a is not None and b is not None
    assert 0.0 <= a <= b <= bounds[-1]


def test_writer_tap_sees_write_and_write_many(tmp_path: Path) -> None:
    w = RecordWriter(tmp_path)
    seen: list[tuple[str, object]] = []
    w.tap = lambda kind, ts, rec: seen.append((kind, rec))
    w.write("signals", 1.0, {"a": 1})
    w.write_many("followups", 2.0, [{"b": 1}, {"b": 2}])
    w.write("signals", 3.0, {"bad": object()})  # not encodable: not written, not tapped
    w.close()
    assert seen == [("signals", {"a": 1}), ("followups", {"b": 1}), ("followups", {"b": 2})]


class _App:
    def __init__(self) -> None:
        self.core = None
        self.trading = None
        self.cfg = None

    def clock(self) -> float:
        return 1.0


def test_dashboard_remembers_recent_records_but_queues_only_for_connected_pages() -> None:
    d = Dashboard(_App(), lambda: {"mode": "observe"}, lambda: b"")
    for i in range(60):
        d.on_record("signals", float(i), {"signal_id": f"s{i}"})
    d.on_record("frames", 0.0, {"x": 1})  # not a dashboard kind
    assert len(d.recent["signals"]) == 50 and not d._pending
    client = d.hub.subscribe()
    assert client is not None
    hello = client.take().decode()
    assert hello.startswith("event: hello\n") and '"signal_id":"s59"' in hello
    assert '"signal_id":"s9"' not in hello  # only the last 50
    assert "event: snapshot" in hello  # the first page gets a snapshot at once
    d.on_record("signals", 61.0, {"signal_id": "s61", "secret_extra": 1})
    d._flush_events()
    frame = client.take().decode()
    assert frame == 'event: signal\ndata: {"signal_id":"s61"}\n\n'
