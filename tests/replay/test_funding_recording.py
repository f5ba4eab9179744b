"""Replay of the funding engine's own frame recording (``<records>/frames/``, the zstd day files
a live run writes): a paper run against the Bybit simulator over loopback — entries, a
disconnect, a settlement, a close on a sign flip — replayed through the same FundingCore and
paper venue on a replay clock makes the same decisions; a replay cut at ``T`` gives exactly the
prefix (Hypothesis over ``T``); ``--from``/``--to`` select a window; a Hyperliquid recording is
refused with one line."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import EngineConfig, load_config
from engine.funding_app import TICK_S, FundingApp
from engine.io.frames import K_CONN, K_IN_ON, FrameRecorder, iter_records, split_socket
from engine.replay.funding_backtest import (
    LIVE_TICK_MS,
    BacktestError,
    FundingRecording,
    SocketEvent,
    open_recording,
    replay_recording,
)

ROOT = Path(__file__).resolve().parents[2]
SIM_TOML = ROOT / "config" / "bybit-sim.toml"
TOLERANCE_MS = 1000  # how much later than its replay a live timer may fire on a loaded machine


def _cfg(records: Path) -> EngineConfig:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "BYBIT_"))}
    env.update({"ENGINE__OPS__HTTP_PORT": "0", "ENGINE__RECORDS__DIR": str(records),
                "ENGINE__RECORDING__FLUSH_INTERVAL_MS": "100"})
    return load_config(SIM_TOML, env=env)


async def _scenario(app: FundingApp) -> None:
    async def until(pred: Any, limit_s: float = 20.0) -> None:
        with trio.fail_after(limit_s):
            while not pred():  # noqa: ASYNC110 - polling state other tasks change
                await trio.sleep(0.02)

    rows = app.position_rows
    await until(lambda: app.funding is not None and sum(
        1 for r in rows().values() if r["hedged"]) == 2)
    await app.sim_server.drop_connections()
    await until(lambda: app.stats.disconnects >= 1)
    await until(lambda: app.stats.reconnects >= 1 and app.connected())
    now = int(time.time() * 1000)
    app.sim_exchange.set_funding("BTCUSDT", 0.001, next_funding_ms=now + 600)
    await until(lambda: app.stats.settlements >= 1)
    app.sim_exchange.set_funding("ETHUSDT", -0.001, next_funding_ms=now + 60_000)
    await until(lambda: rows()["ETHUSDT"]["state"] == "idle")
    await trio.sleep(0.5)
    app.request_stop("test over")


@cache
def recorded_run(base: Path) -> tuple[Path, EngineConfig, tuple[dict[str, Any], ...]]:
    """A live paper run on the embedded simulator (config/bybit-sim.toml), recorded: its
    records dir, config and funding records."""
    cfg = _cfg(base / "rec")
    app = FundingApp(cfg, env={})

    async def main() -> int:
        async with trio.open_nursery() as nursery:
            codes: list[int] = []

            async def run() -> None:
                codes.append(await app.run())

            nursery.start_soon(run)
            await _scenario(app)
        return codes[0]

    assert trio.run(main) == 0
    live = tuple(json.loads(x) for p in sorted(app.records_dir.glob("funding_*.jsonl"))
                 for x in p.read_text().splitlines())
    return app.records_dir, cfg, live


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory
        ) -> tuple[Path, EngineConfig, tuple[dict[str, Any], ...]]:
    return recorded_run(tmp_path_factory.mktemp("funding-rec"))


_FULL: dict[Path, list[dict[str, Any]]] = {}


def full_replay(records: Path, cfg: EngineConfig) -> list[dict[str, Any]]:
    if records not in _FULL:
        assert cfg.funding is not None
        _FULL[records] = replay_recording(cfg.funding, open_recording(records),
                                          latency_ms=cfg.paper.latency_ms)[1]
    return _FULL[records]


TIMES = ("ts", "venue_ts", "opened_ms", "closed_ms")  # when: live at or after the replay
FROM_TIMES = ("hold_ms", "net_apr", "leg_latency_ms", "leg_risk_usd_s")  # from those times


def _content(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k not in TIMES and k not in FROM_TIMES}


def _times_agree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(-1 <= a[k] - b[k] <= TOLERANCE_MS for k in TIMES if k in a)


def _market_times(records: Path) -> dict[str, list[int]]:
    """Receive ms of every market frame, per symbol (what the live shell may have seen
    between a replayed timer and its own late one)."""
    out: dict[str, list[int]] = {}
    for rec in iter_records(records):
        if rec.kind == K_IN_ON:
            _socket, frame = split_socket(rec.payload)
            for sym in ("BTCUSDT", "ETHUSDT"):
                if sym.encode() in frame:
                    out.setdefault(sym, []).append(rec.wall_ns // 1_000_000)
    return out


def test_the_recording_has_tagged_frames_instruments_start_and_connection_events(run: Any
                                                                                 ) -> None:
    records, _cfg, live = run
    rec = open_recording(records)
    assert rec.header["venue"] == "bybit" and rec.header["symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert set(rec.perp) == set(rec.spot) == {"BTCUSDT", "ETHUSDT"}
    assert rec.perp["BTCUSDT"].funding_interval_ms == 60_000  # the simulator's, as recorded
    assert rec.start_ms is not None
    first_order = next(r for r in live if r["type"] == "order")
    assert first_order["client_id"].startswith(f"fb{_b36(rec.start_ms)[-6:]}")
    sockets = {split_socket(r.payload)[0] for r in iter_records(records) if r.kind == K_IN_ON}
    assert sockets == {"linear", "spot"}  # paper: no private socket
    inputs = list(rec.inputs())
    conn = [i for i in inputs if isinstance(i, SocketEvent)]
    assert any(not c.connected for c in conn) and any(c.connected for c in conn)
    assert sum(1 for r in iter_records(records) if r.kind == K_CONN) == len(conn)


def _b36(n: int) -> str:
    from engine.core.funding_core import _b36 as b36

    return b36(n)


def _what(r: dict[str, Any]) -> tuple[Any, ...]:
    """What was decided or done, without the prices it was valued at: the decision (action,
    reason, direction, size), the order (id, side, size), the fill (order, leg, size), the
    state."""
    return tuple(r.get(k) for k in ("type", "action", "reason", "direction", "qty",
                                    "client_id", "side", "leg", "role", "state", "previous",
                                    "perp_qty", "spot_qty", "connected", "intent_id"))


def test_replay_of_a_recorded_run_makes_the_same_decisions(run: Any) -> None:
    """Record for record per symbol up to the stop's kill (not in the recording): the same
    decisions, orders, fills, positions and settlements, each at the same time or later live
    (a live timer wakes after its due time).

    The live shell's tasks (one per socket, and the timer) are scheduled in an order the
    recording cannot show when events fall in the same millisecond (the simulator sends all
    its frames of a tick at once, and a paper fill can be due in that very millisecond): a
    live timer that ran before, between or after such frames met other book or quote data
    than the replayed one. So a record may differ in the prices it was valued at (a fill's
    price, a hold's APR), never in what was decided or done (:func:`_what`), and only where a
    frame of its symbol lies between the replayed and the live time (both included), or in
    the round trip's P&L after such a fill; at most a fifth of the records."""
    records, cfg, live = run
    assert_same_decisions(live, full_replay(records, cfg), _market_times(records))


def assert_same_decisions(live: Sequence[dict[str, Any]], replayed: list[dict[str, Any]],
                          frames: dict[str, list[int]]) -> None:
    kill = next(r["ts"] for r in live if r["type"] == "kill")
    explained: list[str] = []
    total = 0
    for sym in ("BTCUSDT", "ETHUSDT"):
        want = [r for r in live if r.get("symbol") == sym and r["ts"] < kill]
        got = [r for r in replayed if r.get("symbol") == sym]
        assert len(got) >= len(want), sym
        assert [_what(r) for r in got[:len(want)]] == [_what(r) for r in want], sym
        for a, b in zip(want, got, strict=False):
            total += 1
            assert _times_agree(a, b), (sym, a, b)
            if _content(a) == _content(b):
                continue
            seen = [t for t in frames[sym] if b["ts"] <= t <= a["ts"]]
            # a round trip's P&L sums the fills: one valued differently (above) changes it
            carried = a["type"] == "closed" and any(e.startswith(f"{sym} fill") for e in
                                                    explained)
            assert seen or carried, f"unexplained difference:\n{a}\n{b}"
            explained.append(f"{sym} {a['type']} live at {a['ts']}, replayed at {b['ts']}, "
                             + (f"frame at {seen[0]}: " if seen else "after that fill: ")
                             + ", ".join(f"{k} {a[k]} / {b[k]}" for k in a
                                         if a[k] != b.get(k)))
        # the replay's extra records come after the live kill's moment
        assert all(r["ts"] >= kill - TOLERANCE_MS for r in got[len(want):]), sym
    assert len(explained) <= total // 5, explained
    # the core saw the disconnect and the reconnect at the recorded times
    conn = [r for r in live if r["type"] == "connection" and r["ts"] < kill]
    got_conn = [r for r in replayed if r["type"] == "connection"][:len(conn)]
    assert [c["connected"] for c in conn] == [False, True]
    assert [_content(r) for r in got_conn] == [_content(r) for r in conn]
    assert all(_times_agree(a, b) for a, b in zip(conn, got_conn, strict=True))
    decisions = [r for r in live if r["type"] == "decision" and r["ts"] < kill]
    assert {r["action"] for r in decisions} >= {"open", "hold", "close"}
    assert any(r["type"] == "funding" for r in live if r["ts"] < kill)


def test_the_comparison_catches_a_replay_that_is_not_the_live_run(run: Any) -> None:
    """Not vacuous: the same recording replayed with another paper latency (fills later
    than live) or without its connection events is told apart."""
    records, cfg, live = run
    assert cfg.funding is not None
    frames = _market_times(records)
    slower = replay_recording(cfg.funding, open_recording(records),
                              latency_ms=cfg.paper.latency_ms + 100)[1]
    with pytest.raises(AssertionError):
        assert_same_decisions(live, slower, frames)

    class NoConn(FundingRecording):
        def inputs(self) -> Any:
            return (i for i in super().inputs() if not isinstance(i, SocketEvent))

    base = open_recording(records)
    blind = replay_recording(cfg.funding, NoConn(base.directory, base.header, base.spot,
                                                 base.perp, base.start_ms),
                             latency_ms=cfg.paper.latency_ms)[1]
    with pytest.raises(AssertionError):
        assert_same_decisions(live, blind, frames)


def test_the_replay_is_deterministic(run: Any) -> None:
    records, cfg, _live = run
    assert cfg.funding is not None
    again = replay_recording(cfg.funding, open_recording(records),
                             latency_ms=cfg.paper.latency_ms)[1]
    assert again == full_replay(records, cfg)


def _span(records: Path) -> tuple[int, int]:
    ts = [r.wall_ns // 1_000_000 for r in iter_records(records) if r.kind == K_IN_ON]
    return ts[0], ts[-1]


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frac=st.floats(0.0, 1.0))
def test_a_replay_cut_at_t_gives_exactly_the_prefix(run: Any, frac: float) -> None:
    records, cfg, _live = run
    assert cfg.funding is not None
    lo, hi = _span(records)
    cut = int(lo + frac * (hi - lo))
    got = replay_recording(cfg.funding, open_recording(records, to_ms=cut),
                           latency_ms=cfg.paper.latency_ms)[1]
    assert all(r["ts"] <= cut for r in got)
    assert got == [r for r in full_replay(records, cfg) if r["ts"] <= cut]


def test_the_prefix_test_catches_a_replay_that_reads_ahead(run: Any) -> None:
    """The property above is not vacuous: inputs stamped one frame early (the replay acting
    on a frame before it was received) break it at some cut."""
    records, cfg, _live = run
    assert cfg.funding is not None

    class Early(FundingRecording):
        def inputs(self) -> Any:  # each input handed over at the previous input's time
            prev: int | None = None
            for item in super().inputs():
                t = item.ts if prev is None else prev
                prev = item.ts
                yield type(item)(t, *[getattr(item, f) for f in _fields(item)[1:]])

    base = open_recording(records)
    full_early = replay_recording(
        cfg.funding, Early(base.directory, base.header, base.spot, base.perp, base.start_ms),
        latency_ms=cfg.paper.latency_ms)[1]
    broken = 0
    for cut in sorted({r["ts"] for r in full_early if r["type"] in ("decision", "order")})[:10]:
        early = Early(base.directory, base.header, base.spot, base.perp, base.start_ms,
                      None, cut)
        got = replay_recording(cfg.funding, early, latency_ms=cfg.paper.latency_ms)[1]
        broken += got != [r for r in full_early if r["ts"] <= cut]
    assert broken > 0


def _fields(item: Any) -> list[str]:
    import attrs

    return [a.name for a in attrs.fields(type(item))]


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def test_cli_replays_the_recording_in_a_window(run: Any, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from engine.replay.cli import main

    records, cfg, _live = run
    lo, hi = _span(records)
    a, b = lo + (hi - lo) // 4, lo + 3 * (hi - lo) // 4
    out = tmp_path / "w.jsonl"
    rc = main(["--venue", "bybit", "--data", str(records), "--from", _iso(a), "--to", _iso(b),
               "--config", str(SIM_TOML), "--out", str(out), "--drain-s", "0"])
    assert rc == 0, capsys.readouterr().err
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert got and all(a <= r["ts"] <= b for r in got)
    assert cfg.funding is not None
    want = replay_recording(cfg.funding, open_recording(records, from_ms=a, to_ms=b),
                            latency_ms=cfg.paper.latency_ms)[1]
    assert got == want
    assert capsys.readouterr().out.startswith("funding backtest: ")


def test_cli_refuses_a_hyperliquid_recording_with_one_line(
        sim_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.replay.cli import main

    rc = main(["--venue", "bybit", "--data", str(sim_recording), "--out",
               str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "not bybit" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(BacktestError, match="no frame recording"):
        open_recording(tmp_path)


def test_from_and_to_need_a_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    from engine.replay.cli import main

    csv_path = tmp_path / "f.csv"
    csv_path.write_text("symbol,fundingRate,fundingRateTimestamp,price\n"
                        "BTCUSDT,0.0001,1700006400000,37000\n")
    rc = main(["--venue", "bybit", "--funding", str(csv_path), "--to", "2026-01-01T00:00:00Z",
               "--out", str(tmp_path / "o.jsonl")])
    assert rc == 2 and "--from/--to" in capsys.readouterr().err


def test_the_replay_timer_is_the_live_shells() -> None:
    assert LIVE_TICK_MS == int(TICK_S * 1000)


def test_socket_tagged_frames_round_trip(tmp_path: Path) -> None:
    rec = FrameRecorder(tmp_path, header={"venue": "bybit"})
    rec.inbound_on("spot", ['{"topic":"orderbook.1.BTCUSDT"}', "second frame"])
    rec.close()
    got = [split_socket(r.payload) for r in iter_records(tmp_path) if r.kind == K_IN_ON]
    assert got == [("spot", b'{"topic":"orderbook.1.BTCUSDT"}'), ("spot", b"second frame")]
    assert rec.stats.frames_in == 2


def test_the_hyperliquid_replay_points_a_bybit_recording_to_venue_bybit(
        run: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.replay.cli import main
    from engine.replay.funding_backtest import recording_venue

    records, _cfg, _live = run
    assert recording_venue(records) == "bybit"
    rc = main(["--data", str(records), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--venue bybit" in err and len(err.strip().splitlines()) == 1
    assert recording_venue(tmp_path) is None
