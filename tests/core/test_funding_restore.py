"""FundingCore rebuilt from its journal record (what the funding shell writes as its ``state``
line): the open pair, its fills per leg, fees and funding booked and the reconciliation
baseline come back; the rebuilt pair is managed (a sign flip closes it once) and is believed
only once the venue agrees: a believed difference on either leg is unexplained (no new entries),
never adopted as an ADL, until a reading matches."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from engine.core.funding_core import FundingCore
from engine.core.neutral import FundingSettlement, PlaceOrder
from engine.replay.funding_backtest import FundingBacktest
from fsm import two_leg as fsm

sys.path.insert(0, str(Path(__file__).parent))
from test_funding_core import CFG, PERPS, SPOTS, T0, H, held, stream  # noqa: E402

CONFIRM = attrs.evolve(CFG, mismatch_confirmations=2, mismatch_confirm_wait_s=2.0)
SYM = "BTCUSDT"


def of(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == kind]


def hedged_with_funding(start_btc: float = 0.3) -> FundingBacktest:
    bt = FundingBacktest(CONFIRM, SPOTS, PERPS, start_ms=T0, latency_ms=40,
                         spot_balances={SYM: start_btc})
    held(bt, T0 + 56 * 60_000)
    core = bt.core
    assert core.intents[SYM].state == fsm.HEDGED
    t = bt.now + 3_000
    core.reconcile(SYM, "spot", bt.venue.spot_bal[SYM], t, t)  # the baseline: the 0.3 held
    core.reconcile(SYM, "perp", bt.venue.perp_pos[SYM], t, t)
    pos = float(core.intents[SYM].pos["a"])
    core.on_market(FundingSettlement("bybit", SYM, 0.001, pos, 0.5, t, settlement_id="f1"), t)
    core.drain_records()
    return bt


def rebuilt(bt: FundingBacktest, later_ms: int = 60_000) -> FundingCore:
    line = json.dumps(bt.core.to_record())  # one journal line
    core = FundingCore.from_record(json.loads(line), CONFIRM, SPOTS, PERPS,
                                   now_ms=bt.now + later_ms)
    core.require_reconciled = True
    return core


def test_the_rebuilt_core_is_the_core_before_the_restart() -> None:
    bt = hedged_with_funding()
    before = json.loads(json.dumps(bt.core.to_record()))
    core = rebuilt(bt)
    after = core.to_record()
    assert {k: v for k, v in after.items() if k != "now_ms"} == {
        k: v for k, v in before.items() if k != "now_ms"}
    it, led = core.intents[SYM], core.ledgers[SYM]
    assert it.state == fsm.HEDGED and not core.connected
    assert led.funding == 0.5 and led.fees == bt.core.ledgers[SYM].fees > 0
    assert core.baseline[(SYM, "spot")] == Decimal("0.3")
    assert core.inventory[(SYM, "spot")] == it.pos["b"]
    assert core.strategy.holdings[SYM].perp_qty == float(it.pos["a"])
    # new client ids continue the old run's sequence: never one the venue has seen
    assert core.id_prefix == bt.core.id_prefix and core.seq == bt.core.seq


def test_the_rebuilt_pair_agrees_with_the_venue_and_a_flip_closes_it_once() -> None:
    bt = hedged_with_funding()
    core = rebuilt(bt)
    t = core.now_ms
    assert core.reconcile(SYM, "spot", bt.venue.spot_bal[SYM], t, t) == []
    assert core.reconcile(SYM, "perp", bt.venue.perp_pos[SYM], t, t) == []
    recs = core.drain_records()
    assert [r["leg"] for r in of(recs, "reconcile") if r.get("restored")] == ["spot", "perp"]
    assert not core.unreconciled
    iid = core.intents[SYM].intent_id
    core.reconnect(t)
    bt.core = core  # the backtest drives the rebuilt core against the same paper venue
    bt.run(stream(t + 1_000, t + 20_000, lambda _t: -0.0005))  # the rate flips
    closed = [r for r in of(bt.records, "closed") if r["intent_id"] == iid]
    assert len(closed) == 1 and closed[0]["filled"]  # closed once
    assert closed[0]["funding"] == 0.5 and closed[0]["settlements"] == 1  # booked before
    closes = [r for r in of(bt.records, "order")
              if r["intent_id"] == iid and r["op"] == "place" and r["ts"] >= t]
    assert sorted(r["kind"] for r in closes) == ["linear_perp", "spot"]  # one close per leg
    assert any(r["action"] == "close" and "flipped" in r["reason"]
               for r in of(bt.records, "decision"))
    # the reversed entry the spot held allows afterwards takes a new id, never a used one
    later = {r["intent_id"] for r in of(bt.records, "order")} - {iid}
    assert all(i != iid and i.startswith(core.id_prefix) for i in later)


def test_a_perp_difference_of_a_rebuilt_pair_is_unexplained_not_adopted() -> None:
    bt = hedged_with_funding()
    core = rebuilt(bt)
    it = core.intents[SYM]
    held_perp = it.pos["a"]
    t = core.now_ms
    core.reconcile(SYM, "spot", bt.venue.spot_bal[SYM], t, t)
    for dt in (0, 3_000):  # the same smaller short twice, over the wait: believed
        core.reconcile(SYM, "perp", held_perp / 2, t + dt, t + dt)
    assert it.pos["a"] == held_perp  # not taken as an ADL: the journal may be behind
    assert "perp position" in core.unreconciled[SYM]
    anomalies = of(core.drain_records(), "anomaly")
    assert len(anomalies) == 1 and anomalies[0]["leg"] == "perp"
    core.reconcile(SYM, "perp", held_perp / 2, t + 6_000, t + 6_000)
    assert not of(core.drain_records(), "anomaly")  # said once
    core.reconnect(t + 6_000)
    out = core.on_tick(t + 7_000)
    assert not [i for i in out if isinstance(i, PlaceOrder)]  # no rebalance on a guess
    # the venue agrees again: resolved; the pair is believed from now on
    core.reconcile(SYM, "perp", held_perp, t + 8_000, t + 8_000)
    assert not core.unreconciled
    for dt in (9_000, 12_000):  # a later confirmed difference is an ADL again: adopted
        core.reconcile(SYM, "perp", held_perp / 2, t + dt, t + dt)
    assert it.pos["a"] == held_perp / 2


def test_a_spot_balance_changed_while_down_is_unexplained() -> None:
    bt = hedged_with_funding()
    core = rebuilt(bt)
    t = core.now_ms
    gone = bt.venue.spot_bal[SYM] - Decimal("0.3")  # the 0.3 held besides left the account
    for dt in (0, 3_000):
        core.reconcile(SYM, "spot", gone, t + dt, t + dt)
    assert "spot BTCUSDT balance" in core.unreconciled[SYM]


def test_an_older_record_without_the_baseline_still_rebuilds_the_pair() -> None:
    bt = hedged_with_funding()
    rec = json.loads(json.dumps(bt.core.to_record()))
    del rec["baseline"], rec["inventory"]
    core = FundingCore.from_record(rec, CONFIRM, SPOTS, PERPS, now_ms=bt.now + H)
    it = core.intents[SYM]
    assert core.inventory[(SYM, "perp")] == it.pos["a"]
    assert core.inventory[(SYM, "spot")] == it.pos["b"]
