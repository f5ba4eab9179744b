"""Run the real engine (ObserveApp) against the real simulator over loopback WebSockets."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from engine.app import ObserveApp
from engine.config import structure_config
from engine.io.jsonl import read_jsonl
from engine.sim.server import SimExchange

BASE_TOML = """
mode = "observe"
[venue]
ws_url = "ws://127.0.0.1:{port}/ws"
info_url = "http://127.0.0.1:{port}/info"
network = "sim"
dex = "xyz"
reconnect_base_s = 0.05
reconnect_max_s = 0.5
reconnect_jitter_s = 0.05
ping_idle_s = 5
pong_timeout_s = 5
ctx_stale_ms = 0
[records]
dir = "{dir}"
fsync_interval_ms = 200
[followups]
offsets_ms = [300, 600, 900]
[summary]
interval_s = 0
[detector]
session_aware = false
[ops]
http_port = 0
"""


PAPER_HOLDING: dict[str, Any] = {
    "mode": "paper",
    "detector": {"min_consecutive_moves": 0, "oracle_direction_filter": False,
                 "min_edge_above_baseline_bps": 0.0, "min_confidence": 0.0},
    "paper": {"latency_ms": 50.0},
    # positions stay open until something other than an exit rule closes them
    "exits": {"quick_profit_bps": 0.0, "edge_evap_enabled": False, "oracle_exit_enabled": False,
              "min_hold_ms": 60_000.0, "time_stop_ms": 120_000.0},
    "ops": {"kill_flat_timeout_s": 10.0},
}
"""Paper mode that enters on forced dislocations and holds: for stop/kill/ops tests."""


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


@asynccontextmanager
async def running(
    tmp_path: Path, *, config: dict[str, Any] | None = None, sim: dict[str, Any] | None = None,
    app_cls: type[ObserveApp] = ObserveApp,
) -> AsyncIterator[tuple[SimExchange, Any]]:
    """Start a simulator and the engine; stop the engine cleanly on exit.

    ``config`` is deep-merged over the harness's base configuration, e.g.
    ``{"gates": {"max_ctx_age_ms": 1000}}``.
    """
    sim_kwargs: dict[str, Any] = {"seed": 7, "n_markets": 12, "speed": 2.0}
    sim_kwargs.update(sim or {})
    exchange = SimExchange(**sim_kwargs)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(exchange.serve)
        data = tomllib.loads(BASE_TOML.format(port=port, dir=tmp_path / "data"))
        _merge(data, config or {})
        cfg = structure_config(data, "test harness")
        app = app_cls(cfg)
        finished = trio.Event()

        async def run_app() -> None:
            app.returned = await app.run()
            finished.set()

        nursery.start_soon(run_app)
        with trio.fail_after(10):
            await app.ready.wait()
        try:
            yield exchange, app
        finally:
            if not finished.is_set():
                # the same path as SIGTERM / the kill file: STOPPING=1, kill, flatten, exit
                app.request_stop("test harness stop")
            with trio.fail_after(30):
                await finished.wait()
            nursery.cancel_scope.cancel()


async def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
    """Poll ``cond`` (state owned by other tasks) until true or ``timeout`` s have passed."""
    with trio.move_on_after(timeout):
        while not cond():  # noqa: ASYNC110 - polling another component's state on purpose
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def records(tmp_path: Path, kind: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in sorted((tmp_path / "data").glob(f"{kind}_*.jsonl")):
        out.extend(read_jsonl(p))
    return out


def assert_followups_complete(tmp_path: Path, offsets: tuple[int, ...] = (300, 600, 900)) -> None:
    """Every signal has exactly one followup record per offset (captured or missed)."""
    sigs = records(tmp_path, "signals")
    fus = records(tmp_path, "followups")
    by_sig: dict[str, list[dict[str, Any]]] = {}
    for f in fus:
        by_sig.setdefault(f["signal_id"], []).append(f)
    for s in sigs:
        got = sorted(f["offset_ms"] for f in by_sig.get(s["signal_id"], []))
        assert got == list(offsets), (s["signal_id"], got)
        for f in by_sig[s["signal_id"]]:
            assert f["status"] in ("captured", "missed")
            assert (f["status"] == "missed") == (f["miss_reason"] is not None)
    assert set(by_sig) <= {s["signal_id"] for s in sigs}
