"""The funding shell's accounting against the Bybit simulator over loopback (trade mode):
funding paid while the private socket was down is fetched after the reconnect and booked
exactly once; both legs are reconciled against the venue's wallet and position list on a
schedule and after every reconnect, believing a difference only once confirmed — a transient
answer changes nothing, an unexplained balance keeps the app not READY and the symbol out of
new entries until the venue agrees again."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import trio

sys.path.insert(0, str(Path(__file__).parent))
from test_bybit_run import (  # noqa: E402
    KEY,
    SYM,
    now_ms,
    records,
    row,
    running,
    until,
    venue_btc,
    venue_perp,
)

from engine.sim.bybit.exchange import Exchange  # noqa: E402


def paid_to_us(ex: Exchange) -> list[float]:
    """What the simulator's transaction log says each settlement paid the account."""
    return [float(t["funding"]) for t in ex.accounts[KEY].transactions
            if t["type"] == "SETTLEMENT" and t["symbol"] == SYM]


def funding_records(app: Any) -> list[dict[str, Any]]:
    return [r for r in records(app) if r["type"] == "funding"]


async def test_funding_settled_during_an_outage_is_booked_once_after_the_reconnect(
        tmp_path: Path) -> None:
    async with running(tmp_path, reconcile_interval_s=3600.0) as (ex, server, app):
        await until(lambda: row(app)["hedged"])
        # one settlement the stream delivers, before any outage
        ex.set_funding(SYM, 0.001, next_funding_ms=now_ms() + 150)
        await until(lambda: app.stats.settlements >= 1)
        await until(lambda: len(paid_to_us(ex)) == 1)
        for st in app.streams.values():
            st.reconnect_base_s = st.reconnect_max_s = 1.5  # stay away across the next one
        await server.drop_connections()
        await until(lambda: app.stats.disconnects >= 1)
        ex.set_funding(SYM, 0.001, next_funding_ms=now_ms() + 100)  # settles while we are away
        await until(lambda: len(paid_to_us(ex)) == 2, limit_s=3)
        assert app.stats.reconnects == 0  # the payment's execution went to nobody
        await until(lambda: app.stats.reconnects >= 1 and app.connected(), limit_s=8)
        await until(lambda: app.missed_settlements >= 1)
        paid = paid_to_us(ex)
        assert paid[0] > 0 and paid[1] > 0  # the short receives at a positive rate
        # funding earned is what the venue paid: both payments, each counted once (the first
        # is in the catch-up's window too, and is not booked again)
        assert float(row(app)["funding"]) == pytest.approx(sum(paid), abs=1e-9)
        assert app.missed_settlements == 1 and app.stats.settlements == 2
        applied = [r for r in funding_records(app) if r["applied"]]
        ids = [r["settlement_id"] for r in applied]
        assert len(ids) == 2 and len(set(ids)) == 2
        assert ids == [t["tradeId"] for t in ex.accounts[KEY].transactions]
        assert [r for r in funding_records(app) if r.get("duplicate")]  # seen, refused
        # the reconnect also reconciled both legs, though the schedule is an hour away
        await until(lambda: app.reconciles >= 1)
        # a second outage without a settlement books nothing more
        await server.drop_connections()
        await until(lambda: app.stats.reconnects >= 2 and app.connected(), limit_s=8)
        await until(lambda: app.reconciles >= 2)
        assert float(row(app)["funding"]) == pytest.approx(sum(paid), abs=1e-9)
        assert app.missed_settlements == 1
        # closed: the round trip's funding is the venue's, once
        ex.set_funding(SYM, -0.0005)
        await until(lambda: row(app).get("intent_id") is None)
        (closed,) = [r for r in records(app) if r["type"] == "closed" and r.get("filled")]
        assert closed["funding"] == pytest.approx(sum(paid), abs=1e-9)
        assert closed["settlements"] == 2


async def test_a_transient_wallet_or_position_answer_changes_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, reconcile_interval_s=0.2,
                       mismatch_confirm_wait_s=0.6) as (ex, _server, app):
        core = app.funding
        assert core is not None
        await until(lambda: row(app)["hedged"])
        # readings asked within RECONCILE_GRACE_MS of a fill are skipped: be past that
        await until(lambda: now_ms() > core._last_fill_rx[SYM] + 2_500, limit_s=10)
        legs = (row(app)["spot_qty"], row(app)["perp_qty"])
        suspects = len([r for r in records(app) if r["type"] == "reconcile_suspect"])
        ex.faults.wallet_skew, ex.faults.wallet_skew_answers = {"BTC": -0.009}, 1
        ex.faults.flat_positions_next = 1  # one answer says both legs are gone
        start = app.reconciles
        await until(lambda: app.reconciles >= start + 6, limit_s=10)
        recs = records(app)
        assert len([r for r in recs if r["type"] == "reconcile_suspect"]) >= suspects + 1
        assert not [r for r in recs if r["type"] == "anomaly"]
        assert (row(app)["spot_qty"], row(app)["perp_qty"]) == legs and row(app)["hedged"]
        assert not core.unreconciled and app.is_ready()


async def test_an_unexplained_wallet_balance_keeps_the_app_not_ready(tmp_path: Path) -> None:
    async with running(tmp_path, reconcile_interval_s=0.2,
                       mismatch_confirm_wait_s=0.5) as (ex, _server, app):
        core = app.funding
        assert core is not None
        await until(lambda: row(app)["hedged"])
        await until(lambda: ("BTCUSDT", "spot") in core.baseline, limit_s=10)
        await until(lambda: app.is_ready())
        ex.faults.wallet_skew, ex.faults.wallet_skew_answers = {"BTC": -0.004}, None
        await until(lambda: SYM in core.unreconciled, limit_s=10)
        assert not app.is_ready()
        assert app.ops is not None
        doc = app.ops.status()
        assert "spot BTCUSDT balance" in doc["funding"]["unreconciled"][SYM]
        assert doc["ready"] is False
        await trio.sleep(0.6)  # more readings of the same figure: said once
        (a,) = [r for r in records(app) if r["type"] == "anomaly"]
        assert a["leg"] == "spot" and "-0.004" in a["detail"]
        # the legs are not wiped by what the wallet says: the books keep what was traded
        assert row(app)["spot_qty"] == pytest.approx(venue_btc(ex), abs=1e-12)
        assert row(app)["hedged"]
        # the venue agrees again: reconciled, READY
        ex.faults.wallet_skew = {}
        await until(lambda: SYM not in core.unreconciled, limit_s=10)
        await until(lambda: app.is_ready())
        assert any(r["type"] == "reconcile" and r.get("resolved") for r in records(app))


async def test_a_perp_position_nobody_explains_stops_entries_until_it_is_gone(
        tmp_path: Path) -> None:
    def setup(ex: Exchange) -> None:  # a short perp the engine did not open
        ex.create(KEY, {"category": "linear", "symbol": SYM, "side": "Sell",
                        "orderType": "Market", "qty": "0.005"}, now_ms())
        ex.outbox.clear()

    async with running(tmp_path, setup, reconcile_interval_s=0.2,
                       mismatch_confirm_wait_s=0.5) as (ex, _server, app):
        core = app.funding
        assert core is not None
        await until(lambda: SYM in core.unreconciled, limit_s=10)
        assert "perp position" in core.unreconciled[SYM] and not app.is_ready()
        await trio.sleep(1.0)  # an attractive rate all along
        assert SYM not in core.intents
        assert not [r for r in records(app) if r["type"] == "decision"
                    and r["action"] == "open"]
        assert venue_perp(ex) == pytest.approx(-0.005)  # never traded away by the engine
        # the operator closes it at the venue: reconciled, and the strategy enters
        ex.create(KEY, {"category": "linear", "symbol": SYM, "side": "Buy",
                        "orderType": "Market", "qty": "0.005", "reduceOnly": True}, now_ms())
        await until(lambda: SYM not in core.unreconciled, limit_s=10)
        await until(lambda: row(app)["hedged"], limit_s=10)
        assert app.is_ready()


async def test_a_failed_funding_catch_up_is_retried_by_the_reconciliation(
        tmp_path: Path) -> None:
    async with running(tmp_path, reconcile_interval_s=0.3) as (ex, server, app):
        await until(lambda: row(app)["hedged"])
        for st in app.streams.values():
            st.reconnect_base_s = st.reconnect_max_s = 1.5
        await server.drop_connections()
        await until(lambda: app.stats.disconnects >= 1)
        ex.set_funding(SYM, 0.001, next_funding_ms=now_ms() + 100)
        await until(lambda: len(paid_to_us(ex)) == 1, limit_s=3)
        ex.faults.fail_path_next = {"/v5/account/transaction-log": 1}  # the resync's read
        await until(lambda: app.stats.reconnects >= 1 and app.connected(), limit_s=8)
        assert ex.faults.fail_path_next["/v5/account/transaction-log"] == 0
        await until(lambda: app.missed_settlements == 1, limit_s=5)  # the next reconciliation
        assert float(row(app)["funding"]) == pytest.approx(sum(paid_to_us(ex)), abs=1e-9)
        assert app.catchup_from_ms is None


async def test_a_perp_position_changed_at_the_venue_is_adopted_once_confirmed(
        tmp_path: Path) -> None:
    """An ADL takes 0.004 of the short perp: the private stream's position message and the
    next position list agree, so the pair takes the venue's size and sells the spot it no
    longer hedges."""
    async with running(tmp_path, reconcile_interval_s=0.3,
                       mismatch_confirm_wait_s=0.5) as (ex, _server, app):
        core = app.funding
        assert core is not None
        await until(lambda: row(app)["hedged"])
        await until(lambda: now_ms() > core._last_fill_rx[SYM] + 2_500, limit_s=10)
        acct = ex.accounts[KEY]
        acct.positions[SYM][0] = round(acct.positions[SYM][0] + 0.004, 12)  # the venue's ADL
        ex._position(acct, SYM, now_ms())  # published on the private stream
        await until(lambda: row(app)["perp_qty"] == pytest.approx(venue_perp(ex)), limit_s=10)
        await until(lambda: row(app)["hedged"] and venue_btc(ex) == pytest.approx(
            -venue_perp(ex), abs=1e-5), limit_s=10)
        recs = records(app)
        assert any(r["type"] == "reconcile" and r.get("diff") == "0.004" for r in recs)
        assert [r for r in recs if r["type"] == "reconcile_suspect" and r["leg"] == "perp"]
        assert not core.unreconciled and app.is_ready()
