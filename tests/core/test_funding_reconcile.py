"""FundingCore against the venue's own figures: the spot leg against the wallet's coin balance,
the perp leg against the position list, believed only once confirmed (a transient answer never
wipes a leg; an unexplained balance stops new entries in the symbol); funding payments booked
once by id, whichever way they arrive."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from engine.core.neutral import FundingSettlement, PlaceOrder
from engine.replay.funding_backtest import FundingBacktest
from fsm import two_leg as fsm

sys.path.insert(0, str(Path(__file__).parent))
from test_funding_core import CFG, PERPS, SPOTS, T0, H, held, stream  # noqa: E402

CONFIRM = attrs.evolve(CFG, mismatch_confirmations=2, mismatch_confirm_wait_s=2.0)


def of(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == kind]


def hedged(start_btc: float = 0.0) -> FundingBacktest:
    bt = FundingBacktest(CONFIRM, SPOTS, PERPS, start_ms=T0, latency_ms=40,
                         spot_balances={"BTCUSDT": start_btc} if start_btc else None)
    held(bt, T0 + 56 * 60_000)
    assert bt.core.intents["BTCUSDT"].state == fsm.HEDGED
    bt.core.drain_records()
    return bt


def wallet(bt: FundingBacktest, skew: str = "0") -> Decimal:
    return bt.venue.spot_bal.get("BTCUSDT", Decimal(0)) + Decimal(skew)


def perp(bt: FundingBacktest, skew: str = "0") -> Decimal:
    return bt.venue.perp_pos.get("BTCUSDT", Decimal(0)) + Decimal(skew)


def test_the_books_match_the_venue_to_the_satoshi() -> None:
    bt = hedged(start_btc=0.3)  # coin held before the run: the baseline, not the leg
    core, t = bt.core, bt.now + 3_000
    assert core.reconcile("BTCUSDT", "spot", wallet(bt), t, t) == []
    assert core.reconcile("BTCUSDT", "perp", perp(bt), t, t) == []
    recs = core.drain_records()
    assert [Decimal(r["baseline"]) for r in of(recs, "reconcile")] == [Decimal("0.3"), 0]
    assert not of(recs, "reconcile_suspect") and not core.unreconciled
    for dt in (10_000, 20_000):  # later readings agree: nothing to say
        assert core.reconcile("BTCUSDT", "spot", wallet(bt), t + dt, t + dt) == []
    assert core.drain_records() == []


def test_a_transient_wallet_answer_never_wipes_the_spot_leg() -> None:
    bt = hedged()
    core, t = bt.core, bt.now + 3_000
    core.reconcile("BTCUSDT", "spot", wallet(bt), t, t)
    it = core.intents["BTCUSDT"]
    leg = it.pos["b"]
    # one all-zero answer, then the truth again: suspected, never believed
    core.reconcile("BTCUSDT", "spot", Decimal(0), t + 1_000, t + 1_000)
    core.reconcile("BTCUSDT", "spot", wallet(bt), t + 9_000, t + 9_000)
    recs = core.drain_records()
    assert len(of(recs, "reconcile_suspect")) == 1 and not of(recs, "anomaly")
    assert it.pos["b"] == leg and not core.unreconciled
    # seen twice but within the wait: still not believed
    core.reconcile("BTCUSDT", "spot", Decimal(0), t + 10_000, t + 10_000)
    core.reconcile("BTCUSDT", "spot", Decimal(0), t + 11_000, t + 11_000)
    assert not core.unreconciled and it.pos["b"] == leg


def test_an_unexplained_spot_balance_stops_new_entries_until_it_matches_again() -> None:
    bt = hedged()
    core, t = bt.core, bt.now + 3_000
    core.reconcile("BTCUSDT", "spot", wallet(bt), t, t)
    short = wallet(bt, "-0.004")  # 0.004 BTC left the account
    core.reconcile("BTCUSDT", "spot", short, t + 1_000, t + 1_000)
    assert not core.unreconciled
    core.reconcile("BTCUSDT", "spot", short, t + 7_000, t + 7_000)
    reason = core.unreconciled["BTCUSDT"]
    assert "spot BTCUSDT balance" in reason and "-0.004" in reason
    (a,) = of(core.drain_records(), "anomaly")
    assert a["leg"] == "spot" and a["detail"] == reason
    assert core.snapshot()["symbols"]["BTCUSDT"]["unreconciled"] == reason
    leg = core.intents["BTCUSDT"].pos["b"]
    assert leg == wallet(bt)  # the leg is not wiped: the books still say what was bought
    # the pair closes on the flip as usual; the flat symbol then takes no new entry
    flip = bt.now + 20_000
    bt.run(stream(bt.now + 1_000, bt.now + 60_000, lambda x: 0.001 if x < flip else -0.0005))
    assert "BTCUSDT" not in core.intents
    bt.run(stream(bt.now + 1_000, bt.now + 30_000, lambda _x: 0.001))
    assert "BTCUSDT" not in core.intents and not [
        r for r in of(bt.records, "decision") if r["ts"] > flip and r["action"] == "open"]
    assert any(r["reason"] == "venue balance unexplained (reconciliation)"
               for r in of(bt.records, "decision"))
    # the coin comes back: the next matching reading clears it and entries resume
    bt.venue.spot_bal["BTCUSDT"] -= Decimal("0.004")  # (the venue's own view, now short)
    now = bt.now + 5_000
    core.reconcile("BTCUSDT", "spot", wallet(bt, "0.004"), now, now)
    assert "BTCUSDT" not in core.unreconciled
    assert of(core.drain_records(), "reconcile")[-1]["resolved"] == reason


def test_a_coin_transfer_while_flat_moves_the_baseline() -> None:
    bt = FundingBacktest(CONFIRM, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    core = bt.core
    core.reconcile("BTCUSDT", "spot", Decimal("0.5"), T0, T0)
    core.reconcile("BTCUSDT", "spot", Decimal("0.2"), T0 + 1_000, T0 + 1_000)
    core.reconcile("BTCUSDT", "spot", Decimal("0.2"), T0 + 7_000, T0 + 7_000)
    assert not core.unreconciled and core.baseline[("BTCUSDT", "spot")] == Decimal("0.2")
    assert core.strategy.inventory["BTCUSDT"] == 0.5  # from the matching first reading
    core.reconcile("BTCUSDT", "spot", Decimal("0.2"), T0 + 8_000, T0 + 8_000)
    assert core.strategy.inventory["BTCUSDT"] == 0.2


def test_a_confirmed_perp_change_of_a_hedged_pair_is_adopted_and_rebalanced() -> None:
    bt = hedged()
    core, t = bt.core, bt.now + 200  # (within quote_stale_ms: the strategy can act)
    core.reconcile("BTCUSDT", "perp", perp(bt), t, t)
    bt.venue.perp_pos["BTCUSDT"] += Decimal("0.004")  # an ADL
    assert core.reconcile("BTCUSDT", "perp", perp(bt), t + 500, t + 500) == []
    out = core.reconcile("BTCUSDT", "perp", perp(bt), t + 2_500, t + 2_500)
    (p,) = out
    assert isinstance(p, PlaceOrder) and p.kind.value == "spot" and p.side.value == "sell"
    recs = core.drain_records()
    assert of(recs, "reconcile")[-1]["diff"] == "0.004" and not core.unreconciled


def test_a_transient_flat_position_answer_is_not_believed() -> None:
    bt = hedged()
    core, t = bt.core, bt.now + 3_000
    core.reconcile("BTCUSDT", "perp", perp(bt), t, t)
    leg = core.intents["BTCUSDT"].pos["a"]
    core.reconcile("BTCUSDT", "perp", Decimal(0), t + 1_000, t + 1_000)
    core.reconcile("BTCUSDT", "perp", perp(bt), t + 7_000, t + 7_000)
    assert core.intents["BTCUSDT"].pos["a"] == leg and not core.unreconciled


def test_a_perp_position_with_no_pair_is_unexplained() -> None:
    bt = FundingBacktest(CONFIRM, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    core = bt.core
    for dt in (0, 6_000):
        core.reconcile("BTCUSDT", "perp", Decimal("-0.01"), T0 + dt, T0 + dt)
    assert "perp position" in core.unreconciled["BTCUSDT"]
    bt.run(stream(T0 + 55 * 60_000, T0 + 57 * 60_000, lambda _t: 0.001))
    assert "BTCUSDT" not in core.intents  # no entry on top of a position nobody explains


def test_a_reading_asked_around_a_fill_or_with_orders_in_flight_is_skipped() -> None:
    bt = FundingBacktest(CONFIRM, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    core = bt.core
    core.reconcile("BTCUSDT", "spot", Decimal(0), T0, T0)
    held(bt, T0 + 56 * 60_000)
    it = core.intents["BTCUSDT"]
    last_fill = max(r["ts"] for r in of(bt.records, "fill"))
    core.drain_records()
    # asked before the hedge's fill arrived: the wallet may not show it yet
    for dt in (0, 6_000):
        core.reconcile("BTCUSDT", "spot", Decimal(0), last_fill - 500, last_fill + dt)
    assert not core.unreconciled and core.drain_records() == []
    close = it.close(bt.now)  # orders in flight: no reading is compared
    assert close
    core.reconcile("BTCUSDT", "spot", Decimal(0), bt.now + 10_000, bt.now + 10_000)
    assert core.drain_records() == [] and not core.unreconciled


def test_a_funding_payment_seen_twice_is_booked_once() -> None:
    bt = hedged()
    core, t = bt.core, T0 + H
    pos = float(core.intents["BTCUSDT"].pos["a"])
    st = FundingSettlement("bybit", "BTCUSDT", 0.001, pos, 0.96, t, settlement_id="fund-7")
    core.on_market(st, t)  # the stream
    core.on_market(st, t + 5_000)  # the catch-up after a reconnect
    core.on_market(attrs.evolve(st, settlement_id="fund-8", ts_ms=t + H), t + H)
    led = core.ledgers["BTCUSDT"]
    assert led.funding == 0.96 * 2 and led.settlements == 2
    recs = of(core.drain_records(), "funding")
    assert [(r["applied"], r.get("duplicate", False)) for r in recs] == [
        (True, False), (False, True), (True, False)]
    assert core.settlement_seen("fund-7") and not core.settlement_seen("fund-9")
    # journaled: a restart still knows it
    from engine.core.funding_core import FundingCore
    again = FundingCore.from_record(core.to_record(), CONFIRM, SPOTS, PERPS, now_ms=t + H)
    again.on_market(st, t + H + 1)
    assert again.ledgers["BTCUSDT"].funding == 0.96 * 2


def test_trade_mode_enters_only_once_both_legs_agreed_with_the_venue() -> None:
    bt = FundingBacktest(CONFIRM, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    core = bt.core
    core.require_reconciled = True
    t = T0 + 55 * 60_000
    bt.run(stream(t, t + 5_000, lambda _t: 0.001))
    assert "BTCUSDT" not in core.intents
    assert any(r["reason"] == "venue balances not reconciled yet"
               for r in of(bt.records, "decision"))
    core.reconcile("BTCUSDT", "spot", Decimal("0.1"), bt.now, bt.now)
    bt.run(stream(bt.now + 1_000, bt.now + 3_000, lambda _t: 0.001))
    assert "BTCUSDT" not in core.intents  # the perp leg is not read yet
    core.reconcile("BTCUSDT", "perp", Decimal("-0.002"), bt.now, bt.now)  # pending: waits
    bt.run(stream(bt.now + 1_000, bt.now + 3_000, lambda _t: 0.001))
    assert "BTCUSDT" not in core.intents
    core.reconcile("BTCUSDT", "perp", Decimal(0), bt.now, bt.now)  # the truth: flat
    bt.run(stream(bt.now + 1_000, bt.now + 3_000, lambda _t: 0.001))
    assert core.intents["BTCUSDT"].state == fsm.HEDGED
