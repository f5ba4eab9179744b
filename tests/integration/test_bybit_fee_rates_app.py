"""The funding app reads the account's fee rates from the venue (the embedded simulator's
``/v5/account/fee-rate``, HMAC-signed) and uses them in its cost model and paper fees instead
of ``[funding] spot_fee_bps``/``perp_fee_bps``; a failing endpoint falls back to the config's
rates with one WARNING; ``[bybit] fee_source = "config"`` keeps the config's."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.config import load_config
from engine.core.funding_core import with_venue_fees
from engine.core.neutral import InstrumentKind
from engine.funding_app import FundingApp
from engine.replay.funding_backtest import open_recording
from engine.sim.bybit.exchange import Exchange
from engine.strategies.funding_basis import round_trip_cost_bps

ROOT = Path(__file__).resolve().parents[2]
SIM_TOML = ROOT / "config" / "bybit-sim.toml"


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "BYBIT_"))}
    env.update({"ENGINE__OPS__HTTP_PORT": "0", "ENGINE__RECORDS__DIR": str(tmp_path / "rec"),
                # config rates twice the simulator's (10 bps spot, 5.5/2 bps perp)
                "ENGINE__FUNDING__SPOT_FEE_BPS": "20", "ENGINE__FUNDING__PERP_FEE_BPS": "11"})
    env.update(extra)
    return env


async def started(tmp_path: Path, **extra: str) -> dict[str, Any]:
    """Run the paper app on the embedded simulator until its core exists; what it built."""
    app = FundingApp(load_config(SIM_TOML, env=env_for(tmp_path, **extra)), env={})
    async with trio.open_nursery() as nursery:
        async def run() -> None:
            await app.run()

        nursery.start_soon(run)
        with trio.fail_after(20):
            while app.funding is None:  # noqa: ASYNC110 - polling state the app's task sets
                await trio.sleep(0.05)
        app.request_stop("test over")
    sp, pp = app.spot["BTCUSDT"], app.perp["BTCUSDT"]
    return {"spot": (sp.taker_fee, sp.maker_fee), "perp": (pp.taker_fee, pp.maker_fee),
            "cost": round_trip_cost_bps(app.fcfg, sp, pp), "records": app.records_dir,
            "paper": (app.paper.instruments[(InstrumentKind.SPOT, "BTCUSDT")].taker_fee
                      if app.paper is not None else None)}


async def test_venue_rates_replace_the_config_rates(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.funding")
    got = await started(tmp_path)
    assert got["spot"] == pytest.approx((0.001, 0.001))
    assert got["perp"] == pytest.approx((0.00055, 0.0002))
    assert got["paper"] == pytest.approx(0.001)  # the paper venue charges the venue's rate
    # the entry threshold: 2 × (10 + 5.5) + 4 × slippage 2, not 2 × (20 + 11) + 8
    assert got["cost"] == pytest.approx(2 * 15.5 + 8)
    lines = [r.getMessage() for r in caplog.records if "fee rates" in r.getMessage()]
    assert len(lines) == 1 and "venue /v5/account/fee-rate" in lines[0]
    assert "BTCUSDT spot 10/10 bps, perp 5.5/2 bps" in lines[0]
    # recorded, so a replay builds the core with the rates the live run used
    rec = open_recording(got["records"])
    assert rec.fees is not None
    assert rec.fees["perp"]["BTCUSDT"] == pytest.approx((0.00055, 0.0002))
    cfg = load_config(SIM_TOML, env=env_for(tmp_path)).funding
    assert cfg is not None
    vcfg, sp, pp = with_venue_fees(cfg, rec.spot, rec.perp, rec.fees)
    assert round_trip_cost_bps(vcfg, sp["BTCUSDT"], pp["BTCUSDT"]) == pytest.approx(got["cost"])


async def test_a_failing_endpoint_falls_back_to_config(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Exchange, category: str, symbol: str | None) -> Any:
        raise KeyError("fee tier")  # the simulator answers retCode 10001

    monkeypatch.setattr(Exchange, "fee_rate_rows", broken)
    caplog.set_level(logging.INFO, logger="engine.funding")
    got = await started(tmp_path)
    assert got["spot"][0] == pytest.approx(0.002) and got["perp"][0] == pytest.approx(0.0011)
    assert got["cost"] == pytest.approx(2 * 31 + 8)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "fee-rate" in r.getMessage()]
    assert len(warnings) == 1 and "/v5/account/fee-rate failed" in warnings[0]
    assert "spot_fee_bps/perp_fee_bps" in warnings[0]
    assert open_recording(got["records"]).fees is None  # replay too uses the config's
    assert any("fee rates (config)" in r.getMessage() for r in caplog.records)


async def test_fee_source_config_keeps_the_config_rates(tmp_path: Path) -> None:
    got = await started(tmp_path, ENGINE__BYBIT__FEE_SOURCE="config")
    assert got["spot"][0] == pytest.approx(0.002) and got["perp"][0] == pytest.approx(0.0011)
    assert got["cost"] == pytest.approx(2 * 31 + 8)
