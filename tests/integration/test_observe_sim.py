"""Observe mode end to end: real engine, real simulator, real loopback WebSockets."""

from __future__ import annotations

from pathlib import Path

import trio

from engine.core import gates as g

from .harness import assert_followups_complete, records, running, wait_for

# Relaxed filters make a forced dislocation produce exactly one deterministic signal.
RELAXED = {"detector": {"min_consecutive_moves": 0, "oracle_direction_filter": False,
                        "min_edge_above_baseline_bps": 0.0, "min_confidence": 0.0}}


def relaxed(**sections: dict) -> dict:
    out = {k: dict(v) for k, v in RELAXED.items()}
    for k, v in sections.items():
        out.setdefault(k, {}).update(v)
    return out


async def test_signals_appear_on_dislocations_and_every_signal_gets_three_followups(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as (sim, app):
        await wait_for(lambda: app.stats.signals >= 3, 20, "three signals")
        n = app.stats.signals
        await wait_for(
            lambda: app.scheduler is not None
            and app.scheduler.stats.written_captured >= 3 * 3, 10, "captured followups")
    sigs = records(tmp_path, "signals")
    assert len(sigs) >= n >= 3
    for s in sigs:
        # every seed field and the decision inputs are recorded
        for k in ("timestamp_ms", "market_key", "side", "raw_edge_bps", "net_edge_bps",
                  "oracle_px", "best_px", "best_size", "suggested_size", "signal_id",
                  "threshold_bps", "oracle_age_ms", "consecutive_moves", "spread_ewma_bps",
                  "baseline_gap_bps", "confidence", "gate_state"):
            assert k in s, k
        if s["side"] == "buy":
            assert s["best_px"] < s["oracle_px"]
        else:
            assert s["best_px"] > s["oracle_px"]
    assert_followups_complete(tmp_path)
    fus = records(tmp_path, "followups")
    assert any(f["status"] == "captured" for f in fus)
    for f in fus:
        if f["status"] == "captured":
            assert f["lateness_ms"] < 1000
            assert f["oracle_px"] is not None and f["best_px"] is not None


async def test_no_signals_when_books_are_aligned(tmp_path: Path) -> None:
    async with running(tmp_path, sim={"aligned": True}) as (sim, app):
        await wait_for(lambda: app.core is not None and app.core.markets_live() == 12, 10,
                       "all markets live")
        await wait_for(lambda: app.stats.frames_applied > 400, 20, "400 frames")
        # several oracle updates (every ~1.5 s at speed 2) have been seen
        await trio.sleep(4)
        assert app.stats.frames_applied > 400
    assert app.stats.signals == 0
    assert records(tmp_path, "signals") == []


async def test_forced_dislocation_gives_a_signal_and_followups(tmp_path: Path) -> None:
    async with running(tmp_path, config=RELAXED, sim={"aligned": True}) as (sim, app):
        await wait_for(lambda: app.core is not None and app.core.markets_live() == 12, 10,
                       "all markets live")
        sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
        await wait_for(lambda: app.stats.signals >= 1, 10, "the forced signal")
        await wait_for(lambda: app.scheduler is not None
                       and app.scheduler.stats.written_captured >= 3, 5, "three captures")
    sigs = records(tmp_path, "signals")
    gold = [s for s in sigs if s["market_key"] == "xyz:GOLD"]
    assert gold and gold[0]["side"] == "buy" and gold[0]["raw_edge_bps"] > 11
    assert {s["market_key"] for s in sigs} == {"xyz:GOLD"}
    assert_followups_complete(tmp_path)


async def test_dropped_connection_is_resubscribed_and_signals_resume(tmp_path: Path) -> None:
    async with running(tmp_path, config=RELAXED, sim={"aligned": True}) as (sim, app):
        assert app.feed is not None and app.core is not None
        await wait_for(lambda: app.core.markets_live() == 12, 10, "all markets live")
        assert sim.drop_connections() == 1
        await wait_for(lambda: app.feed.stats.reconnects >= 1, 10, "a reconnect")
        await wait_for(lambda: app.core.markets_live() == 12 and app.feed.stats.acked == 24,
                       10, "resubscribed and live again")
        before = app.stats.signals
        sim.force_dislocation("xyz:TSLA", "sell", 40, lag_ms=1200)
        await wait_for(lambda: app.stats.signals > before, 10, "a signal after the reconnect")
    assert_followups_complete(tmp_path)


async def test_stalled_stream_blocks_signals_for_that_market(tmp_path: Path) -> None:
    config = relaxed(gates={"max_ctx_age_ms": 1000.0})
    async with running(tmp_path, config=config, sim={"aligned": True}) as (sim, app):
        assert app.core is not None
        await wait_for(lambda: app.core.markets_live() == 12, 10, "all markets live")
        sim.stall("xyz:GOLD", "activeAssetCtx")
        gold = app.core.by_coin["xyz:GOLD"]
        await wait_for(lambda: gold.blocked_by == g.CTX_AGE, 10, "GOLD blocked by ctx age")
        sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
        sim.force_dislocation("xyz:TSLA", "buy", 40, lag_ms=1200)
        await wait_for(lambda: app.stats.signals >= 1, 10, "the TSLA signal")
        await trio.sleep(1.0)
        assert gold.blocked_by == g.CTX_AGE
        sim.unstall("xyz:GOLD")
        await wait_for(lambda: gold.blocked_by is None, 10, "GOLD unblocked")
    assert {s["market_key"] for s in records(tmp_path, "signals")} == {"xyz:TSLA"}


async def test_stale_stream_forces_a_reconnect(tmp_path: Path) -> None:
    # ctx arrives every ~1.5 s at simulator speed 2; 4 s of silence is a stalled stream.
    config = {"venue": {"ctx_stale_ms": 4000.0, "stale_reconnect_min_interval_s": 0.0}}
    async with running(tmp_path, config=config, sim={"aligned": True}) as (sim, app):
        assert app.feed is not None and app.core is not None
        await wait_for(lambda: app.core.markets_live() == 12, 10, "all markets live")
        sim.stall("xyz:GOLD", "both", duration_s=6)
        await wait_for(lambda: app.feed.stats.stale_reconnects >= 1, 10, "a stale reconnect")
        await wait_for(lambda: app.core.markets_live() == 12, 10, "live again")


async def test_malformed_frames_are_counted_and_skipped(tmp_path: Path) -> None:
    async with running(tmp_path, config=RELAXED, sim={"aligned": True}) as (sim, app):
        assert app.feed is not None and app.core is not None
        await wait_for(lambda: app.core.markets_live() == 12, 10, "all markets live")
        sim.inject_malformed(3, "garbage")
        sim.inject_malformed(2, "bad_shape")
        sim.inject_malformed(4, "unknown_channel")
        await wait_for(lambda: app.feed.stats.malformed >= 5, 5, "malformed counted")
        await wait_for(lambda: app.feed.stats.unknown_channel >= 4, 5, "unknown counted")
        assert app.feed.stats.reconnects == 0  # skipped, not fatal
        frames = app.stats.frames_applied
        sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
        await wait_for(lambda: app.stats.signals >= 1, 10, "a signal after the garbage")
        assert app.stats.frames_applied > frames


async def test_time_regression_is_rejected(tmp_path: Path) -> None:
    async with running(tmp_path, sim={"aligned": True}) as (sim, app):
        assert app.core is not None
        await wait_for(lambda: app.core.markets_live() == 12, 10, "all markets live")
        sim.time_regression("xyz:GOLD", back_ms=5000)
        await wait_for(lambda: app.core.time_regressions >= 1, 10, "a regression seen")
        assert app.core.by_coin["xyz:GOLD"].regressions >= 1


async def test_stop_turns_pending_followups_into_missed_and_flushes(tmp_path: Path) -> None:
    config = relaxed(followups={"offsets_ms": [300, 600, 60000]})
    async with running(tmp_path, config=config, sim={"aligned": True}) as (sim, app):
        assert app.core is not None
        await wait_for(lambda: app.core.markets_live() == 12, 10, "all markets live")
        sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
        await wait_for(lambda: app.stats.signals >= 1, 10, "a signal")
        await wait_for(lambda: app.scheduler is not None
                       and app.scheduler.stats.written_captured >= 2, 5, "two captures")
    fus = records(tmp_path, "followups")
    assert_followups_complete(tmp_path, offsets=(300, 600, 60000))
    by_offset = {f["offset_ms"]: f for f in fus}
    assert by_offset[300]["status"] == "captured"
    assert by_offset[600]["status"] == "captured"
    assert by_offset[60000]["status"] == "missed"
    assert by_offset[60000]["miss_reason"] == "shutdown"


async def test_restart_recovery_writes_missed_restart_records(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    import time

    from engine.io.records import RecordWriter

    now_ms = time.time() * 1000
    w = RecordWriter(data)
    w.write("signals", now_ms - 60_000, {
        "timestamp_ms": int(now_ms - 60_000), "signal_id": "sig_crashed", "market_key": "xyz:GOLD",
        "side": "buy", "oracle_px": 100.0, "best_px": 99.0, "raw_edge_bps": 100.0,
        "followup_offsets_ms": [300, 600, 900]})
    w.write("followups", now_ms - 59_700, {
        "signal_id": "sig_crashed", "offset_ms": 300, "status": "captured",
        "captured_at_ms": now_ms - 59_700})
    w.close()
    async with running(tmp_path, sim={"aligned": True}) as (sim, app):
        await wait_for(lambda: app.scheduler is not None, 5, "scheduler")
    fus = [f for f in records(tmp_path, "followups") if f["signal_id"] == "sig_crashed"]
    assert sorted(f["offset_ms"] for f in fus) == [300, 600, 900]
    restart = [f for f in fus if f.get("miss_reason") == "restart"]
    assert sorted(f["offset_ms"] for f in restart) == [600, 900]
