"""``[bybit] fee_refresh_s``: the funding app re-reads the account's fee rates while running. The
embedded simulator's rates are changed through its control endpoint (``POST /sim/control
{"fee_rates": …}``); the app picks the change up within the interval — the cost model, the
paper venue and the core use it for new decisions, an open pair keeps its legs' fee rate from
its entry — logs it once at INFO (old → new per leg) and writes a ``fees`` record; a refresh that
keeps failing keeps the last rates with one WARNING, not one per attempt."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from engine.config import ConfigError, load_config, structure_config
from engine.core.neutral import InstrumentKind
from engine.core.two_leg import LEG_B
from engine.funding_app import FundingApp
from engine.sim.bybit.exchange import Exchange
from tests.integration.bybit_helpers import SIM_TOML, funding_records, sim_env, until


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return sim_env(tmp_path, {"ENGINE__BYBIT__FEE_REFRESH_S": "0.2"}, **extra)


async def test_a_changed_rate_is_picked_up_within_the_interval_and_a_failure_keeps_the_last(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="engine.funding")
    app = FundingApp(load_config(SIM_TOML, env=env_for(tmp_path)), env={})
    assert app.bcfg.fee_refresh_s == 0.2
    async with trio.open_nursery() as nursery:
        async def run() -> None:
            await app.run()

        nursery.start_soon(run)
        await until(lambda: app.funding is not None and app.ready.is_set()
                    and app.position_rows()["BTCUSDT"]["hedged"])
        core = app.funding
        assert core is not None and app.paper is not None
        assert app.perp["BTCUSDT"].taker_fee == pytest.approx(0.00055)
        assert app.spot["BTCUSDT"].taker_fee == pytest.approx(0.001)
        held = core.intents["BTCUSDT"]
        assert held.legs[LEG_B].buy_fee_base_rate == Decimal("0.001")
        await trio.sleep(0.5)  # refreshes that find nothing new change nothing
        assert app.fee_refreshes >= 1 and not [r for r in funding_records(app) if r["type"] == "fees"]
        async with httpx.AsyncClient(base_url=app.bcfg.rest_url or "") as http:
            r = await http.post("/sim/control", json={"fee_rates": {
                "linear": {"BTCUSDT": [0.0004, 0.0001]}, "spot": {"BTCUSDT": [0.0008, 0.0008]}}})
            assert r.status_code == 200
        changed_at = trio.current_time()
        # (a refresh in flight may have read spot before the change and linear after it: the
        # spot change then comes with the next one)
        await until(lambda: app.perp["BTCUSDT"].taker_fee == pytest.approx(0.0004)
                    and app.spot["BTCUSDT"].taker_fee == pytest.approx(0.0008), 5.0)
        assert trio.current_time() - changed_at < 0.2 + 1.0  # within the interval (+ a read)
        # new decisions: the core's instruments and cost floor, the strategy, the paper venue
        assert core.perp["BTCUSDT"].maker_fee == pytest.approx(0.0001)
        assert core.strategy.spot_instruments["BTCUSDT"].taker_fee == pytest.approx(0.0008)
        assert core.cfg.spot_fee_bps == pytest.approx(8.0)  # the lowest venue taker rate
        assert core.cfg.perp_fee_bps == pytest.approx(4.0)  # (ETHUSDT still pays 5.5)
        assert app.paper.instruments[(InstrumentKind.LINEAR_PERP, "BTCUSDT")].taker_fee == \
            pytest.approx(0.0004)
        assert app.perp["ETHUSDT"].taker_fee == pytest.approx(0.00055)
        # the open pair keeps the fee rate of its entry
        assert core.intents.get("BTCUSDT") is held
        assert held.legs[LEG_B].buy_fee_base_rate == Decimal("0.001")
        await trio.sleep(0.5)
        lines = [x.getMessage() for x in caplog.records if "fee rates changed" in x.getMessage()]
        assert 1 <= len(lines) <= 2 and x_levels(caplog, "fee rates changed") == {logging.INFO}
        text = " | ".join(lines)  # each leg's change said once
        assert text.count("BTCUSDT perp 5.5/2 -> 4/1 bps") == 1
        assert text.count("BTCUSDT spot 10/10 -> 8/8 bps") == 1 and "ETHUSDT" not in text
        fees = [r for r in funding_records(app) if r["type"] == "fees"]
        assert len(fees) == len(lines)
        assert sorted(c for f in fees for c in f["changed"]) == ["perp BTCUSDT", "spot BTCUSDT"]
        assert fees[-1]["rates"]["perp"]["BTCUSDT"] == pytest.approx([0.0004, 0.0001])
        assert fees[0]["previous"]["perp"]["BTCUSDT"] == pytest.approx([0.00055, 0.0002])

        # the endpoint breaks: the last rates stay, one WARNING for many failed attempts
        def broken(self: Exchange, category: str, symbol: str | None) -> Any:
            raise KeyError("fee tier")

        monkeypatch.setattr(Exchange, "fee_rate_rows", broken)
        n = app.fee_refresh_failures
        await until(lambda: app.fee_refresh_failures >= n + 4, 10.0)
        warnings = [x.getMessage() for x in caplog.records if x.levelno == logging.WARNING
                    and "refreshing from Bybit /v5/account/fee-rate failed" in x.getMessage()]
        assert len(warnings) == 1 and "keeping the last rates" in warnings[0]
        assert app.perp["BTCUSDT"].taker_fee == pytest.approx(0.0004)
        monkeypatch.undo()
        await until(lambda: any("answers again" in x.getMessage() for x in caplog.records), 5.0)
        assert len([r for r in funding_records(app) if r["type"] == "fees"]) == len(fees)  # nothing new
        app.request_stop("test over")
        await until(lambda: app.stop_reason is not None and app.flat(), 15.0)
        nursery.cancel_scope.cancel()


def x_levels(caplog: pytest.LogCaptureFixture, text: str) -> set[int]:
    return {x.levelno for x in caplog.records if text in x.getMessage()}


def test_fee_refresh_s_is_validated_and_0_means_only_at_start(tmp_path: Path) -> None:
    assert structure_config({"bybit": {}}, "t").bybit.fee_refresh_s == 3600.0  # type: ignore[union-attr]
    assert structure_config({"bybit": {"fee_refresh_s": 0}}, "t").bybit.fee_refresh_s == 0  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="fee_refresh_s"):
        structure_config({"bybit": {"fee_refresh_s": -1}}, "t")
    with pytest.raises(ConfigError, match="fee_refresh_s"):
        structure_config({"bybit": {"fee_refresh_s": "hourly"}}, "t")


async def test_0_reads_the_rates_only_at_start(tmp_path: Path) -> None:
    app = FundingApp(load_config(SIM_TOML, env=env_for(
        tmp_path, ENGINE__BYBIT__FEE_REFRESH_S="0")), env={})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app.run)
        await until(lambda: app.funding is not None and app.ready.is_set())
        app.sim_exchange.symbol_fees[("linear", "BTCUSDT")] = (0.0004, 0.0001)
        await trio.sleep(0.6)
        assert app.fee_refreshes == 0
        assert app.perp["BTCUSDT"].taker_fee == pytest.approx(0.00055)
        app.request_stop("test over")
        await until(lambda: app.stop_reason is not None and app.flat(), 15.0)
        nursery.cancel_scope.cancel()
