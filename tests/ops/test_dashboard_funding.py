"""The dashboard's funding/basis part, built from a real :class:`FundingCore` driven by the
funding backtest (the same core and paper venue the app runs): one row per symbol with the
pair's state, legs, P&L parts, rate/APR, next funding, hedge ratio and leg latency; the open
pairs' orders with their fsm.order state words; the header P&L taken from the core's own
figures; and a Hyperliquid app's snapshot without any of it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine.config import load_config
from engine.funding_app import FundingApp
from engine.ops.dashboard import (
    Dashboard,
    funding_doc,
    funding_mode,
    funding_order_rows,
    funding_pnl,
    funding_round_trip_rows,
    funding_rows,
)
from engine.replay.funding_backtest import FundingBacktest
from fsm import two_leg as fsm

from ..core.test_funding_core import CFG, PERPS, SPOTS, T0, H, held, stream
from ..integration.bybit_helpers import SIM_TOML
from .test_dashboard_unit import _App


def hedged_backtest() -> FundingBacktest:
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    held(bt, T0 + 58 * 60_000)
    return bt


def test_a_hedged_pair_row_has_both_legs_pnl_parts_rate_and_ledger_figures() -> None:
    bt = hedged_backtest()
    (row,) = funding_rows(bt.core, bt.now)
    s = bt.core.snapshot()["symbols"]["BTCUSDT"]
    led = bt.core.ledgers["BTCUSDT"]
    assert row["symbol"] == "BTCUSDT" and row["state"] == fsm.HEDGED == "hedged"
    assert row["intent_id"] == led.intent_id
    assert row["perp_qty"] == s["perp_qty"] < 0 < row["spot_qty"] == s["spot_qty"]
    assert row["net_delta"] == pytest.approx(row["spot_qty"] + row["perp_qty"])
    # the P&L parts are the core's, not computed again
    for key, src in (("funding", "funding"), ("basis_pnl", "basis_pnl"), ("fees", "fees"),
                     ("net", "net")):
        assert row[key] == s[src]
    assert row["net"] == pytest.approx(row["funding"] + row["basis_pnl"] - row["fees"])
    assert row["rate"] == 0.001 and row["apr"] == pytest.approx(0.001 * 24 * 365)
    assert row["next_funding_ms"] == T0 + H
    assert row["next_funding_in_ms"] == T0 + H - bt.now
    assert row["hedge_ratio"] == pytest.approx(led.hedge_ratio())
    assert row["hedge_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert row["leg_latency_ms"] == led.leg_latency_ms() == 0
    assert row["held_ms"] == bt.now - led.opened_ms
    assert row["leg_risk_usd_s"] == s["leg_risk_usd_s"] and row["open_orders"] == 0
    assert funding_order_rows(bt.core) == []  # hedged: every order is over
    json.dumps(row)


def test_an_idle_symbol_has_no_ledger_figures() -> None:
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    (row,) = funding_rows(bt.core, bt.now)
    assert row["state"] == "idle" and row["perp_qty"] == row["spot_qty"] == 0.0
    assert row["hedge_ratio"] is None and row["leg_latency_ms"] is None
    assert row["rate"] is None and row["next_funding_in_ms"] is None and row["net"] is None
    assert funding_pnl(bt.core) == (0.0, 0.0)
    assert funding_rows(None, 0.0) == [] and funding_order_rows(None) == []
    assert funding_pnl(None) == (None, None)


def test_orders_in_flight_are_listed_with_their_state_words() -> None:
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    for tick in stream(T0 + 55 * 60_000, T0 + 56 * 60_000, lambda t: 0.001):
        bt.feed(tick)
        if bt.core.intents:  # the entry was sent; its first leg is not filled yet
            break
    (row,) = funding_rows(bt.core, bt.now)
    assert row["state"] == fsm.LEG1
    orders = funding_order_rows(bt.core)
    assert orders and row["open_orders"] == len(orders)
    (it,) = bt.core.intents.values()
    assert {o["client_id"] for o in orders} == {o.client_id for o in it.in_flight()}
    o = orders[0]
    assert o["symbol"] == "BTCUSDT" and o["leg"] in ("perp", "spot") and o["role"]
    assert o["side"] in ("buy", "sell") and o["state"] in ("new", "sent", "resting")
    assert float(o["qty"]) > 0 and float(o["filled"]) == 0


def test_the_pnl_is_the_cores_closed_plus_open_net() -> None:
    bt = hedged_backtest()
    realised, unrealised = funding_pnl(bt.core)
    assert realised == bt.core.totals["net"] == 0.0
    assert unrealised == pytest.approx(bt.core.open_net())
    assert realised + unrealised == pytest.approx(bt.core.net_pnl())
    # closed round trips: realised
    for tick in stream(T0 + 58 * 60_000, T0 + H + 30 * 60_000,
                       lambda t: 0.001 if t < T0 + H + 20 * 60_000 else -0.0005):
        bt.feed(tick)
    assert bt.core.totals["closed"] == 1
    realised, unrealised = funding_pnl(bt.core)
    assert realised == pytest.approx(bt.core.totals["net"]) and unrealised == 0.0


def funding_app(tmp_path: Path, bt: FundingBacktest) -> FundingApp:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "BYBIT_"))}
    env.update({"ENGINE__RECORDS__DIR": str(tmp_path / "rec"),
                "ENGINE__OPS__HTTP_PORT": "0", "ENGINE__FUNDING__SYMBOLS": '["BTCUSDT"]'})
    app = FundingApp(load_config(SIM_TOML, env=env), env={}, clock=lambda: float(bt.now))
    app.funding = bt.core  # the backtest's core stands in for the run's
    return app


def test_the_snapshot_of_a_funding_app_carries_the_pairs_orders_and_pnl(tmp_path: Path) -> None:
    bt = hedged_backtest()
    app = funding_app(tmp_path, bt)
    assert funding_mode(app)
    status = {"mode": "paper", "breakers": {"daily_pnl": -1.5, "equity": 100_000.0}}
    d = Dashboard(app, lambda: status, lambda: b"")
    snap = d.snapshot()
    msgspec.json.encode(snap)
    part = snap["funding"]
    assert [r["symbol"] for r in part["symbols"]] == ["BTCUSDT"]
    assert part["symbols"][0]["state"] == "hedged" and part["orders"] == []
    assert part["totals"] == app.totals() and part["closed"] == 0
    assert set(part["leg_latency"]) == set(app.latency.quantiles())
    assert part["settlements"] == 0 and part["killed"] is False
    pnl = snap["pnl"]
    assert pnl["realised_usd"] == 0.0
    assert pnl["unrealised_usd"] == pytest.approx(bt.core.open_net())
    assert pnl["total_usd"] == pytest.approx(app.totals()["net_pnl"])
    assert pnl["today_usd"] == -1.5 and pnl["equity_usd"] == 100_000.0 and pnl["trades"] == 0
    # the Hyperliquid parts are there, empty
    assert snap["markets"] == [] and snap["positions"] == [] and snap["orders"] == []
    # the equity curve samples the same total
    d._sample_equity()
    assert d.equity[-1][1] == pytest.approx(pnl["total_usd"])


def test_a_funding_app_before_its_core_is_built(tmp_path: Path) -> None:
    bt = hedged_backtest()
    app = funding_app(tmp_path, bt)
    app.funding = None
    d = Dashboard(app, lambda: {"mode": "paper"}, lambda: b"")
    snap = d.snapshot()
    assert snap["funding"]["symbols"] == [] and snap["funding"]["totals"] == {}
    assert snap["pnl"]["realised_usd"] is None and snap["pnl"]["total_usd"] is None
    d._sample_equity()
    assert not d.equity
    assert funding_doc(app, 0.0)["orders"] == []


def test_a_hyperliquid_snapshot_has_no_funding_part() -> None:
    d = Dashboard(_App(), lambda: {"mode": "observe"}, lambda: b"")  # a Hyperliquid app
    snap: dict[str, Any] = d.snapshot()
    assert not funding_mode(d.app) and "funding" not in snap
    assert set(snap) == {"t_ms", "status", "markets", "positions", "orders", "pnl",
                         "equity_last", "latency", "dashboard"}


class _BrokenCore:
    ledgers: dict[str, Any] = {}
    totals = {"net": 0.0}

    def snapshot(self) -> dict[str, Any]:
        raise RuntimeError("display bug")

    def open_net(self) -> float:
        raise RuntimeError("display bug")


def test_a_failing_funding_core_is_logged_and_counted_never_raised(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = funding_app(tmp_path, hedged_backtest())
    app.funding = _BrokenCore()  # type: ignore[assignment]
    d = Dashboard(app, lambda: {"mode": "paper"}, lambda: b"")
    d._publish_snapshot()
    d._sample_equity()
    assert d.snapshot_errors == 2 and d.snapshots == 0 and not d.equity
    assert sum("dashboard:" in r.message for r in caplog.records) == 2


def test_closed_round_trips_are_listed_newest_first_with_their_closed_record_figures(
        tmp_path: Path) -> None:
    bt = hedged_backtest()
    assert funding_round_trip_rows(bt.core) == []
    t = bt.now
    bt.send(bt.core.kill(t), t)
    bt.run([], end_ms=t + 1_000)
    (closed,) = [r for r in bt.records if r["type"] == "closed"]
    (row,) = funding_round_trip_rows(bt.core)
    assert row["symbol"] == "BTCUSDT" and row["intent_id"] == closed["intent_id"]
    for key in ("direction", "opened_ms", "closed_ms", "hold_ms", "entry_notional", "funding",
                "settlements", "basis_pnl", "fees", "net", "net_apr", "hedge_ratio"):
        assert row[key] == closed[key], key
    assert row["net"] == pytest.approx(row["funding"] + row["basis_pnl"] - row["fees"])
    assert funding_doc(funding_app(tmp_path, bt), bt.now)["round_trips"] == [row]
    json.dumps(row)
    # bounded, newest first
    many = [dict(row, intent_id=f"i{k}") for k in range(60)]
    bt.core.round_trips.extend(many)
    rows = funding_round_trip_rows(bt.core)
    assert len(rows) == 20 and rows[0]["intent_id"] == "i59" and rows[-1]["intent_id"] == "i40"
    assert len(bt.core.round_trips) == 50
