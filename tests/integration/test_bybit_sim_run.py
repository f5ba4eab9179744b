"""``config/bybit-sim.toml`` (paper on the embedded Bybit simulator) and
``config/bybit-testnet.toml`` (trade on testnet): the command line shows funding decisions and
hedged paper positions; records and frames are written; the testnet config loads, mainnet is
refused unless ``allow_live``, and trade mode without keys stops before any connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from engine.app import EXIT_CONFIG, StartupError
from engine.config import ConfigError, load_config
from engine.funding_app import FundingApp
from engine.io.frames import K_IN_ON, K_OUT, frames_dir, iter_records
from engine.venues.bybit.factory import resolve_urls
from tests.integration.bybit_helpers import start_app

ROOT = Path(__file__).resolve().parents[2]
SIM_TOML = ROOT / "config" / "bybit-sim.toml"
TESTNET_TOML = ROOT / "config" / "bybit-testnet.toml"


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "BYBIT_"))}
    env.update({"ENGINE__OPS__HTTP_PORT": "0", "ENGINE__RECORDS__DIR": str(tmp_path / "rec")})
    env.update(extra)
    return env


def hedged_both(app: FundingApp) -> bool:
    return app.funding is not None and sum(
        1 for r in app.position_rows().values() if r["hedged"]) == 2


async def test_paper_on_the_embedded_simulator_opens_hedged_positions(tmp_path: Path) -> None:
    cfg = load_config(SIM_TOML, env=env_for(tmp_path))
    assert cfg.mode == "paper" and cfg.sim.enabled
    app = FundingApp(cfg, env={})
    async with trio.open_nursery() as nursery:
        codes = start_app(nursery, app)
        with trio.fail_after(20):
            while not hedged_both(app):  # noqa: ASYNC110 - polling state other tasks change
                await trio.sleep(0.05)
        assert "positions 2 (hedged 2, unhedged 0)" in app.summary_line()
        # paper: nothing reached the simulator's matching engine
        assert all(not a.orders for a in app.sim_exchange.accounts.values())
        app.request_stop("test over")
    assert codes == [0]
    recs = [json.loads(x) for p in sorted(app.records_dir.glob("funding_*.jsonl"))
            for x in p.read_text().splitlines()]
    assert any(r["type"] == "decision" and r["action"] == "open" for r in recs)
    assert sum(1 for r in recs if r["type"] == "closed" and r.get("filled")) == 2  # the stop
    frames = list(iter_records(frames_dir(app.records_dir)))
    # each frame tagged with its socket (replay decodes it with that socket's decoder)
    assert any(f.kind == K_IN_ON and f.payload.startswith(b"linear {") and
               b"tickers.BTCUSDT" in f.payload for f in frames)
    assert any(f.kind == K_IN_ON and f.payload.startswith(b"spot {") for f in frames)
    assert not any(f.kind == K_OUT for f in frames)  # paper sends nothing to the venue


def test_cli_run_shows_funding_decisions_and_hedged_paper_positions(tmp_path: Path) -> None:
    env = env_for(tmp_path, ENGINE__SUMMARY__INTERVAL_S="1")
    p = subprocess.run([sys.executable, "-m", "engine", "run", "--config", str(SIM_TOML),
                        "--duration", "6"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert "embedded Bybit simulator listening on http://127.0.0.1:" in out
    assert "funding decision BTCUSDT OPEN" in out and "funding decision ETHUSDT OPEN" in out
    assert "funding: symbols live 2/2 | positions 2 (hedged 2, unhedged 0)" in out
    assert "flat: both legs closed" in out


def test_testnet_config_loads_and_names_no_keys() -> None:
    cfg = load_config(TESTNET_TOML, env={})
    assert cfg.mode == "trade" and cfg.bybit is not None and cfg.funding is not None
    assert cfg.bybit.environment == "testnet" and not cfg.bybit.allow_live
    assert resolve_urls(cfg.bybit).rest == "https://api-testnet.bybit.com"
    assert cfg.records.dir == "data/bybit-testnet/trade"
    text = TESTNET_TOML.read_text()
    assert "api_secret" not in text.replace("BYBIT_API_SECRET", "").replace("bybit_api_secret",
                                                                               "")


def test_mainnet_is_refused_unless_allow_live() -> None:
    with pytest.raises(ConfigError, match="allow_live"):
        load_config(TESTNET_TOML, env={"ENGINE__BYBIT__ENVIRONMENT": "mainnet"})
    cfg = load_config(TESTNET_TOML, env={"ENGINE__BYBIT__ENVIRONMENT": "mainnet",
                                         "ENGINE__BYBIT__ALLOW_LIVE": "true"})
    assert cfg.bybit is not None and resolve_urls(cfg.bybit).is_mainnet


async def test_trade_without_keys_stops_before_connecting(tmp_path: Path) -> None:
    cfg = load_config(TESTNET_TOML, env=env_for(tmp_path))
    app = FundingApp(cfg, env={})  # no $CREDENTIALS_DIRECTORY, no BYBIT_API_KEY
    with pytest.raises(StartupError) as info:
        await app.run()
    assert info.value.exit_code == EXIT_CONFIG
    assert "BYBIT_API_KEY" in str(info.value)
    assert app.venue is None  # nothing was built, nothing connected


def test_cli_trade_without_keys_exits_2_with_one_line(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "engine", "run", "--config", str(TESTNET_TOML)],
                       cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "BYBIT_API_KEY" in p.stderr and "Traceback" not in p.stderr


def test_bybit_sim_interval_must_be_whole_minutes() -> None:
    with pytest.raises(ConfigError, match="whole number of minutes"):
        load_config(SIM_TOML, env={"ENGINE__BYBIT_SIM__FUNDING_INTERVAL_S": "20"})
