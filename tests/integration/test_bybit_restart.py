"""The funding shell survives a crash: a trade-mode :class:`~engine.funding_app.FundingApp`
against the Bybit simulator over loopback enters a hedged pair, is cancelled without its clean
shutdown (no kill, no flatten: what ``kill -9`` leaves), and a new app on the same records dir
and the same simulator rebuilds the pair from the journal and manages it: a sign flip closes
it, the kill flattens both legs, and a pair caught mid-flight (leg 1 filled, the hedge not) is
hedged or unwound within the leg-risk budget. A paper run restarts the same way, its paper
venue holding what the journal says it held."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.config import load_config, structure_config
from engine.funding_app import FundingApp
from engine.sim.bybit.exchange import Exchange
from engine.sim.bybit.server import BybitSimServer
from tests.integration.test_bybit_run import (
    DUST,
    KEY,
    SECRET,
    SYM,
    base_config,
    now_ms,
    records,
    row,
    until,
    venue_btc,
    venue_perp,
)

ROOT = Path(__file__).resolve().parents[2]
SIM_TOML = ROOT / "config" / "bybit-sim.toml"


@asynccontextmanager
async def simulator() -> AsyncIterator[tuple[Exchange, str]]:
    ex = Exchange(seed=3, now_ms=now_ms(), funding_drift=0.0)
    ex.add_account(KEY, SECRET, usdt=100_000.0, coins={"BTC": 0.0})
    ex.set_funding(SYM, 0.001, interval_ms=3_600_000)  # 1 h, 876 % APR: a clear entry
    server = BybitSimServer(ex, tick_s=0.03)
    async with trio.open_nursery() as nursery:
        base = await nursery.start(server.serve)
        yield ex, base
        nursery.cancel_scope.cancel()


class Run:
    """One app in its own cancel scope: :meth:`crash` cancels it from outside (no kill, no
    flatten), :meth:`stop` is the operator's stop (kill switch, flatten, exit)."""

    def __init__(self, app: FundingApp) -> None:
        self.app = app
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.codes: list[int] = []

    async def _run(self) -> None:
        with self.scope:
            self.codes.append(await self.app.run())
        self.done.set()

    async def crash(self) -> None:
        self.scope.cancel()
        with trio.fail_after(10):
            await self.done.wait()

    async def stop(self) -> None:
        self.app.request_stop("test over")
        with trio.fail_after(15):
            await self.done.wait()


async def start(nursery: trio.Nursery, cfg: Any, env: dict[str, str] | None = None) -> Run:
    run = Run(FundingApp(cfg, env=env if env is not None else {"BYBIT_API_KEY": KEY,
                                                                 "BYBIT_API_SECRET": SECRET}))
    nursery.start_soon(run._run)
    with trio.fail_after(10):
        await run.app.ready.wait()
    return run


def config(tmp_path: Path, base: str, **funding: Any) -> Any:
    return structure_config(base_config(tmp_path, base, **funding), "test")


async def crash_hedged(nursery: trio.Nursery, cfg: Any, ex: Exchange
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run an app until its pair is HEDGED, crash it: (its row, its intent's record)."""
    first = await start(nursery, cfg)
    await until(lambda: row(first.app)["hedged"])
    await trio.sleep(0.3)  # the reconciliation agreed; nothing in flight
    core = first.app.funding
    assert core is not None
    before = row(first.app)
    intent = json.loads(json.dumps(core.intents[SYM].to_record()))
    await first.crash()
    assert venue_perp(ex) == pytest.approx(before["perp_qty"]) != 0  # left open at the venue
    return before, intent


async def test_restart_rebuilds_the_hedged_pair_and_a_sign_flip_closes_it(
        tmp_path: Path) -> None:
    async with simulator() as (ex, base), trio.open_nursery() as nursery:
        cfg = config(tmp_path, base)
        before, intent = await crash_hedged(nursery, cfg, ex)
        orders_before = len(ex.accounts[KEY].orders)
        second = await start(nursery, cfg)
        app = second.app
        core = app.funding
        assert core is not None and app.restored == [SYM]
        it = core.intents[SYM]
        assert it.to_record()["pos"] == intent["pos"] and it.fills.keys() == intent[
            "fills"].keys()
        await until(lambda: row(app)["hedged"] and app.is_ready())
        r = row(app)
        assert r["intent_id"] == before["intent_id"]
        assert r["perp_qty"] == before["perp_qty"] and r["spot_qty"] == before["spot_qty"]
        assert r["fees"] == pytest.approx(before["fees"])
        assert not core.unreconciled
        assert any(x["type"] == "reconcile" and x.get("restored") for x in records(app))
        await trio.sleep(0.5)
        assert len(ex.accounts[KEY].orders) == orders_before  # no second entry on top of it
        ex.set_funding(SYM, -0.0005)  # the rate flips: the rebuilt pair is closed
        await until(lambda: row(app).get("intent_id") is None)
        assert venue_perp(ex) == 0
        assert venue_btc(ex) == pytest.approx(0.0, abs=DUST)
        closed = [x for x in records(app) if x["type"] == "closed" and x.get("filled")]
        assert [c["intent_id"] for c in closed] == [before["intent_id"]]  # closed once
        assert closed[0]["fees"] > before["fees"]  # the entry's fees and the close's
        await second.stop()
        assert second.codes == [0]


async def test_restart_then_kill_flattens_both_legs_of_the_rebuilt_pair(
        tmp_path: Path) -> None:
    async with simulator() as (ex, base), trio.open_nursery() as nursery:
        cfg = config(tmp_path, base)
        await crash_hedged(nursery, cfg, ex)
        second = await start(nursery, cfg)
        await until(lambda: row(second.app)["hedged"])
        second.app.kill("test kill")
        await until(second.app.flat)
        assert venue_perp(ex) == 0
        assert venue_btc(ex) == pytest.approx(0.0, abs=DUST)
        closes = [o for o in ex.accounts[KEY].orders.values()
                  if o.category == "linear" and o.reduce_only]
        assert len(closes) == 1 and closes[0].status == "Filled"
        await second.stop()
        assert second.codes == [0]


async def test_a_spot_balance_changed_while_down_keeps_the_rebuilt_pair_unreconciled(
        tmp_path: Path) -> None:
    async with simulator() as (ex, base), trio.open_nursery() as nursery:
        cfg = config(tmp_path, base, mismatch_confirmations=2, mismatch_confirm_wait_s=0.2,
                     reconcile_interval_s=0.2)
        await crash_hedged(nursery, cfg, ex)
        ex.accounts[KEY].coins["BTC"] = 0.0  # the coin left the account while the engine was down
        second = await start(nursery, cfg)
        app = second.app
        await until(lambda: bool(app.funding is not None and app.funding.unreconciled))
        assert not app.is_ready()
        anomalies = [x for x in records(app) if x["type"] == "anomaly" and x.get("leg") == "spot"]
        await trio.sleep(0.8)  # more readings of the same figure: said once
        assert len([x for x in records(app) if x["type"] == "anomaly"
                    and x.get("leg") == "spot"]) == len(anomalies) == 1
        assert not app.is_ready()
        app.kill("test over")  # the perp leg still flattens
        await until(lambda: venue_perp(ex) == 0)
        second.scope.cancel()


async def test_an_unhedged_leg_caught_by_the_crash_is_dealt_with_after_the_restart(
        tmp_path: Path) -> None:
    async with simulator() as (ex, base), trio.open_nursery() as nursery:
        cfg = config(tmp_path, base)
        ex.faults.lag_ms = {"spot": 60_000.0}  # the hedge does not match before the crash
        first = await start(nursery, cfg)
        core = first.app.funding
        assert core is not None
        await until(lambda: SYM in core.intents and core.intents[SYM].state == "hedging"
                    and core.intents[SYM].pos["a"] != 0)
        iid = core.intents[SYM].intent_id
        await first.crash()
        assert venue_perp(ex) != 0
        ex.faults.lag_ms = {}
        second = await start(nursery, cfg)
        app = second.app
        assert app.restored == [SYM]
        # hedged or unwound, never left unhedged
        await until(lambda: row(app)["hedged"] or row(app).get("intent_id") != iid, limit_s=12)
        if row(app).get("intent_id") == iid:
            assert venue_btc(ex) == pytest.approx(-venue_perp(ex), abs=DUST)
        else:
            await until(lambda: venue_perp(ex) == 0 or row(app)["hedged"])
            closed = [x for x in records(app) if x["type"] == "closed"
                      and x["intent_id"] == iid]
            assert closed and closed[0]["leg_risk_usd_s"] <= app.fcfg.leg_risk_budget_usd_s
        await second.stop()
        assert venue_perp(ex) == 0


async def test_a_restart_in_another_mode_does_not_rebuild_the_pair(tmp_path: Path) -> None:
    async with simulator() as (ex, base), trio.open_nursery() as nursery:
        cfg = config(tmp_path, base)
        await crash_hedged(nursery, cfg, ex)
        paper_cfg = structure_config({**base_config(tmp_path, base), "mode": "paper"}, "test")
        second = await start(nursery, paper_cfg, env={})
        assert second.app.restored == [] and not second.app.funding.intents  # type: ignore
        await second.stop()
        assert venue_perp(ex) != 0  # the other mode's pair is the operator's


def env_for(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "BYBIT_"))}
    env.update({"ENGINE__OPS__HTTP_PORT": "0", "ENGINE__RECORDS__DIR": str(tmp_path / "rec"),
                "ENGINE__RECORDS__FLUSH_INTERVAL_MS": "0"})
    return env


async def test_paper_restart_restores_the_paper_venue_and_closes_both_legs(
        tmp_path: Path) -> None:
    cfg = load_config(SIM_TOML, env=env_for(tmp_path))
    async with trio.open_nursery() as nursery:
        first = await start(nursery, cfg, env={})
        await until(lambda: all(r["hedged"] for r in first.app.position_rows().values()),
                    limit_s=20)
        held = {s: (r["spot_qty"], r["perp_qty"]) for s, r in
                first.app.position_rows().items()}
        await first.crash()
        second = await start(nursery, cfg, env={})
        app = second.app
        assert sorted(app.restored) == sorted(held)
        assert app.paper is not None
        for sym, (spot, perp) in held.items():
            assert float(app.paper.perp_pos[sym]) == pytest.approx(perp)
            assert float(app.paper.spot_bal[sym]) == pytest.approx(spot)
        await until(lambda: all(r["hedged"] for r in app.position_rows().values()))
        await second.stop()  # the kill closes both legs: only a restored balance can be sold
        assert second.codes == [0]
        assert all(not v for v in app.paper.perp_pos.values())
        closed = [x for x in records(app) if x["type"] == "closed" and x.get("filled")]
        assert len(closed) == len(held)
