"""Kill switch paths end to end: kill file, ENGINE_KILL at start, SIGTERM, and `kill`/`flatten`
commands — each stops entries, flattens reduce-only, flushes records and exits 0."""

from __future__ import annotations

import os
import signal
import sys
import tomllib
from pathlib import Path

import trio

from engine.config import structure_config
from engine.ops.paths import FLATTEN_FILE
from engine.sim.server import SimExchange
from engine.trading_app import TradingApp

from .harness import BASE_TOML, PAPER_HOLDING, _merge, records, running, wait_for

PAPER = PAPER_HOLDING


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ENGINE_") and k not in ("STATE_DIRECTORY", "NOTIFY_SOCKET")}
    env["ENGINE__RECORDS__DIR"] = str(tmp_path / "data")
    env["ENGINE__OPS__HTTP_PORT"] = "0"
    return env


async def test_kill_file_while_running_flattens_and_exits_0(tmp_path: Path) -> None:
    async with running(tmp_path, config=PAPER, sim={"aligned": True},
                       app_cls=TradingApp) as (sim, app):
        await wait_for(lambda: app.trading is not None and app.trading.is_ready(), 10, "READY")
        sim.force_dislocation("xyz:TSLA", "sell", 40, lag_ms=1200)
        await wait_for(lambda: app.trading.open_positions() >= 1, 10, "an open position")
        env = _clean_env(tmp_path)
        with trio.fail_after(60):
            r = await trio.run_process([sys.executable, "-m", "engine", "kill", "--reason",
                                        "test kill"], env=env, capture_stdout=True,
                                       capture_stderr=True, check=False)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "data" / "KILL").read_text().strip() == "test kill"
        await wait_for(lambda: getattr(app, "returned", None) is not None, 20,
                       "the engine to stop by itself")
        assert app.returned == 0
        assert app.trading.killed and app.trading.flat()
        assert app.stop_reason is not None and "kill file" in app.stop_reason
    trades = records(tmp_path, "trades")
    assert trades and trades[-1]["exit_reason"] == "kill"
    # the flatten was reduce-only, and the records were flushed (read back from disk)
    flattens = [o for o in records(tmp_path, "orders")
                if o["event"] == "created" and o["purpose"] == "flatten"]
    assert flattens and all(o["reduce_only"] for o in flattens)


async def test_flatten_request_closes_positions_and_keeps_running(tmp_path: Path) -> None:
    async with running(tmp_path, config=PAPER, sim={"aligned": True},
                       app_cls=TradingApp) as (sim, app):
        await wait_for(lambda: app.trading is not None and app.trading.is_ready(), 10, "READY")
        sim.force_dislocation("xyz:TSLA", "sell", 40, lag_ms=1200)
        await wait_for(lambda: app.trading.open_positions() >= 1, 10, "an open position")
        with trio.fail_after(60):
            r = await trio.run_process([sys.executable, "-m", "engine", "flatten"],
                                       env=_clean_env(tmp_path), capture_stdout=True,
                                       capture_stderr=True, check=False)
        assert r.returncode == 0, r.stderr
        await wait_for(lambda: app.trading.flat() and len(app.trading.trades) >= 1, 10,
                       "flat after the flatten request")
        assert not (tmp_path / "data" / FLATTEN_FILE).exists()  # consumed
        assert not app.trading.killed and app.stop_reason is None  # still running, not killed
        assert app.trading.trades[-1]["exit_reason"] == "operator"


async def test_kill_file_at_start_flattens_restored_position_and_exits(tmp_path: Path) -> None:
    """A crash leaves a position; the next start finds the kill file: it restores the position
    from the journal, flattens it reduce-only without entering, and exits 0."""
    async with running(tmp_path, config=PAPER, sim={"aligned": True},
                       app_cls=TradingApp) as (sim, app):
        await wait_for(lambda: app.trading is not None and app.trading.is_ready(), 10, "READY")
        sim.force_dislocation("xyz:GOLD", "buy", 40, lag_ms=1200)
        await wait_for(lambda: app.trading.open_positions() >= 1, 10, "an open position")
        app.writer.flush(force=True)
        app.stop()  # crash: no flatten
        await wait_for(lambda: getattr(app, "returned", None) is not None, 10, "the crash")
    assert len(records(tmp_path, "trades")) == 0
    (tmp_path / "data" / "KILL").write_text("operator says stop\n")
    sim2 = SimExchange(seed=7, n_markets=12, speed=2.0, aligned=True)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim2.serve)
        data = tomllib.loads(BASE_TOML.format(port=port, dir=tmp_path / "data"))
        _merge(data, PAPER)
        app2 = TradingApp(structure_config(data, "test"))
        with trio.fail_after(30):
            code = await app2.run()
        nursery.cancel_scope.cancel()
    assert code == 0
    assert app2.kill_at_start is not None and app2.trading is not None
    assert app2.trading.flat() and app2.trading.entries_sent == 0
    trades = records(tmp_path, "trades")
    assert len(trades) == 1 and trades[0]["exit_reason"] == "kill"
    assert (tmp_path / "data" / "KILL").exists()  # the kill file stays until cleared


async def _run_engine_subprocess(tmp_path: Path, env: dict[str, str],
                                 stop_signal: int | None) -> tuple[int, str]:
    """Run ``python -m engine run`` (embedded simulator, paper); optionally signal it once the
    markets are discovered; return its exit code and its log."""
    cmd = [sys.executable, "-m", "engine", "run", "--duration", "60"]
    log_path = tmp_path / "engine.log"
    log_file = log_path.open("wb")  # noqa: ASYNC230 - a local file for the child's output
    try:
        proc = await trio.lowlevel.open_process(cmd, env=env, stdout=log_file, stderr=log_file)
        try:
            if stop_signal is not None:
                with trio.fail_after(60):
                    while b"discovered" not in log_path.read_bytes():  # noqa: ASYNC110
                        await trio.sleep(0.1)
                await trio.sleep(1.0)
                proc.send_signal(stop_signal)
            with trio.fail_after(60):
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    finally:
        log_file.close()
    return proc.returncode, log_path.read_text("utf-8", "replace")


async def test_sigterm_stops_cleanly_with_exit_0(tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    code, out = await _run_engine_subprocess(tmp_path, env, signal.SIGTERM)
    assert code == 0, out
    assert "stopping: received SIGTERM" in out
    assert "flat and stopped" in out


async def test_engine_kill_env_at_start_exits_0_without_trading(tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    env["ENGINE_KILL"] = "1"
    code, out = await _run_engine_subprocess(tmp_path, env, None)
    assert code == 0, out
    assert "ENGINE_KILL=1" in out and "kill switch on at start" in out
    orders = records(tmp_path, "orders")
    assert not [o for o in orders if o.get("purpose") == "entry"]
