"""FundingCore over the paper venue (the backtest loop drives both on a replay clock): enter in
the pre-event window, hedge, receive funding at the settlement, close on a sign flip, with P&L
split into funding, basis and fees; kill flattens both legs (perp reduce-only); a lagging second
leg is unwound within the budget; disconnect/reconnect; restart from the journal record."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.config import FundingConfig
from engine.core.funding_core import FundingCore
from engine.core.neutral import (
    BookTop,
    FundingQuote,
    Instrument,
    InstrumentKind,
    PlaceOrder,
)
from engine.replay.funding_backtest import FundingBacktest, Tick
from fsm import two_leg as fsm

H = 3_600_000
SPOT_K, PERP_K = InstrumentKind.SPOT, InstrumentKind.LINEAR_PERP
SPOT = Instrument("bybit", "BTCUSDT", SPOT_K, Decimal("0.01"), Decimal("0.000001"),
                  Decimal("0.000011"), Decimal("5"), taker_fee=0.001, maker_fee=0.001)
PERP = Instrument("bybit", "BTCUSDT", PERP_K, Decimal("0.1"), Decimal("0.001"),
                  Decimal("0.001"), Decimal("5"), funding_interval_ms=H,
                  taker_fee=0.00055, maker_fee=0.0002)
SPOTS, PERPS = {"BTCUSDT": SPOT}, {"BTCUSDT": PERP}
T0 = 1_700_000_000_000 - 1_700_000_000_000 % H  # a settlement slot
CFG = FundingConfig(symbols=["BTCUSDT"], min_expected_apr=0.1, exit_apr=0.05,
                    pre_event_open_minutes=10, expected_hold_hours=24, notional_usd=1000,
                    quote_stale_ms=5_000, leg_risk_budget_usd_s=3000, leg_deadline_s=5)


def market(t: int, rate: float, next_ms: int, px: float = 60_000.0, size: float = 5.0
           ) -> list[Tick]:
    return [
        Tick(t, FundingQuote("bybit", "BTCUSDT", rate, next_ms, H, px, px, px - 0.5, px + 0.5,
                             t)),
        Tick(t, BookTop("bybit", "BTCUSDT", SPOT_K, px - 0.5, size, px + 0.5, size, t)),
        Tick(t, BookTop("bybit", "BTCUSDT", PERP_K, px - 0.5, size, px + 0.5, size, t)),
    ]


def stream(t_from: int, t_to: int, rate_at: Any, px_at: Any = lambda t: 60_000.0,
           step: int = 1_000) -> list[Tick]:
    out: list[Tick] = []
    for t in range(t_from, t_to + 1, step):
        nxt = (t // H + 1) * H
        out += market(t, rate_at(t), nxt, px_at(t))
    return out


def of(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == kind]


def test_enter_hold_receive_funding_close_on_flip_with_pnl_parts() -> None:
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    flip = T0 + H + 20 * 60_000
    ticks = stream(T0 + 40 * 60_000, T0 + H + 30 * 60_000,
                   lambda t: 0.001 if t < flip else -0.0005,
                   lambda t: 60_000.0 + (t - T0) / 60_000)  # prices drift up 1 USDT/min
    recs = bt.run(ticks, end_ms=T0 + 2 * H)
    for r in recs:
        json.dumps(r)  # each record is one JSON line
    opens = [r for r in of(recs, "decision") if r["action"] == "open"]
    assert len(opens) == 1
    # the pre-event window: 10 minutes before the settlement at T0 + H, not earlier
    assert T0 + H - 10 * 60_000 <= opens[0]["ts"] < T0 + H
    (funding,) = [r for r in of(recs, "funding") if r["applied"]]
    assert funding["settled_ms"] == T0 + H and funding["amount"] > 0
    (closed,) = of(recs, "closed")
    assert closed["filled"] and closed["closed_ms"] >= flip
    assert [r["reason"] for r in of(recs, "decision") if r["action"] == "close"] == [
        "funding sign flipped"]
    fills = of(recs, "fill")
    assert len(fills) == 4
    for f in fills:  # market orders pay half the 1 USDT spread (+ the drift meanwhile)
        assert f["slippage_bps"] == pytest.approx(0.5 / f["price"] * 1e4, abs=0.05)
    assert closed["fees"] == pytest.approx(sum(f["fee"] for f in fills))
    assert closed["fees_spot"] == pytest.approx(sum(f["fee"] for f in fills if f["leg"] == "spot"))
    cash = sum(-f["qty"] * f["price"] * (1 if f["side"] == "buy" else -1) for f in fills)
    # the spot buy's fee was kept in BTC: it is in the fees (at the fill price), not the basis;
    # the sub-lot BTC it left behind is valued at the mid
    fee_coin = sum(f["fee_base"] * f["price"] for f in fills)
    assert fee_coin > 0
    mid_at_close = 60_000.0 + (closed["closed_ms"] - T0) / 60_000
    assert closed["basis_pnl"] == pytest.approx(
        cash + fee_coin + closed["residual_spot"] * mid_at_close, abs=1e-6)
    assert closed["funding"] == pytest.approx(funding["amount"])
    assert closed["net"] == pytest.approx(closed["funding"] + closed["basis_pnl"] - closed["fees"])
    # the spot buy was sized up by its BTC fee: what arrived matches the perp to a spot lot
    assert closed["hedge_ratio"] == pytest.approx(1.0, abs=float(SPOT.lot_size) / 0.016)
    # the perp leg fills first (after the latency); the spot order leaves at that moment
    perp_open = next(f for f in fills if f["leg"] == "perp")
    spot_order = next(r for r in of(recs, "order") if r["kind"] == "spot")
    assert closed["leg_latency_ms"] == spot_order["ts"] - perp_open["ts"] == 0
    hold = closed["closed_ms"] - closed["opened_ms"]
    assert closed["hold_ms"] == hold
    assert closed["net_apr"] == pytest.approx(
        closed["net"] / closed["entry_notional"] * 365 * 24 * H / hold)
    # the venue holds what the books say: the sub-lot BTC the buy's fee left, nothing more
    assert bt.venue.perp_pos["BTCUSDT"] == 0
    assert 0 <= bt.venue.spot_bal["BTCUSDT"] < SPOT.lot_size
    assert float(bt.venue.spot_bal["BTCUSDT"]) == pytest.approx(closed["residual_spot"], abs=1e-15)
    snap = bt.core.snapshot()
    assert snap["symbols"]["BTCUSDT"]["state"] == fsm.IDLE
    assert snap["totals"]["closed"] == 1
    assert snap["totals"]["net"] == pytest.approx(closed["net"])


def held(bt: FundingBacktest, until: int) -> None:
    for tick in stream(T0 + 55 * 60_000, until, lambda t: 0.001):
        bt.feed(tick)


def test_snapshot_while_held_shows_both_legs_and_pnl_parts() -> None:
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    held(bt, T0 + 58 * 60_000)
    s = bt.core.snapshot()["symbols"]["BTCUSDT"]
    assert s["state"] == fsm.HEDGED
    # the spot leg holds what arrived after its BTC fee; the buy was sized up for it
    assert s["spot_qty"] > 0 and abs(s["perp_qty"] + s["spot_qty"]) < float(SPOT.lot_size)
    assert abs(s["net_delta"]) < float(SPOT.lot_size) and s["exposure_usd"] < 0.06
    assert s["apr"] == pytest.approx(0.001 * 24 * 365)
    assert s["rate"] == 0.001 and s["next_funding_ms"] == T0 + H
    assert s["basis_bps"] == pytest.approx(0.0) and s["leg_risk_usd_s"] > 0
    assert s["fees"] > 0 and s["funding"] == 0
    assert s["net"] == pytest.approx(s["funding"] + s["basis_pnl"] - s["fees"])
    json.dumps(bt.core.snapshot())
    line = bt.core.summary_line()
    assert line.startswith("funding: BTCUSDT hedged apr 876.0% spot ") and "closed 0" in line


def test_kill_flattens_both_legs_perp_reduce_only_and_stops_opening() -> None:
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    held(bt, T0 + 56 * 60_000)
    t = bt.now
    out = bt.core.kill(t)
    assert {(i.kind, i.reduce_only) for i in out if isinstance(i, PlaceOrder)} == {
        (PERP_K, True), (SPOT_K, False)}
    bt.send(out, t)
    bt.run(stream(t + 1_000, T0 + 59 * 60_000, lambda _t: 0.001))
    assert bt.venue.perp_pos["BTCUSDT"] == 0 and 0 <= bt.venue.spot_bal["BTCUSDT"] < (
        SPOT.lot_size)  # only the sub-lot rest of the buy's BTC fee
    (closed,) = of(bt.records, "closed")
    assert closed["filled"] and closed["fail_reason"] is None
    assert not [r for r in of(bt.records, "decision")
                if r["action"] == "open" and r["ts"] > t]
    assert bt.core.kill(bt.now) == []  # nothing left to flatten


def test_a_lagging_second_leg_is_unwound_within_the_budget() -> None:
    cfg = attrs.evolve(CFG, leg_risk_budget_usd_s=1500.0, leg_deadline_s=3.0,
                       leg_unwind_reserve_s=1.0)
    bt = FundingBacktest(cfg, SPOTS, PERPS, start_ms=T0, latency_ms=40,
                         extra_latency_ms={SPOT_K: 60_000.0})
    seen: list[float] = []
    for tick in stream(T0 + 55 * 60_000, T0 + 55 * 60_000 + 30_000, lambda t: 0.001, step=200):
        bt.feed(tick)
        for it in bt.core.intents.values():
            seen.append(it.risk_usd_s)
    (closed,) = of(bt.records, "closed")  # one: no re-entry during the cooldown
    assert closed["fail_reason"] in ("leg-risk budget", "hard deadline")
    assert max(seen) <= cfg.leg_risk_budget_usd_s
    assert bt.venue.perp_pos["BTCUSDT"] == 0 and bt.venue.spot_bal.get("BTCUSDT", 0) == 0
    skips = [r for r in of(bt.records, "decision") if r["ts"] > closed["ts"]]
    assert skips and all("cooling down" in r["reason"] for r in skips)
    assert bt.core.next_wakeup_ms() is not None
    assert bt.core.cooldown_until["BTCUSDT"] == closed["ts"] + cfg.reentry_cooldown_s * 1000


def test_disconnected_nothing_is_sent_and_reconnect_resends_under_the_same_ids() -> None:
    core = FundingCore(CFG, SPOTS, PERPS, now_ms=T0)
    t = T0 + 55 * 60_000
    core.disconnect(t)
    for tick in market(t, 0.001, T0 + H):
        assert core.on_market(tick.event, t) == []
    assert [r["reason"] for r in of(core.drain_records(), "decision")][-1] == "venue disconnected"
    out = core.reconnect(t + 100)
    assert out == []  # nothing was deferred: no decision was taken while offline
    out = core.on_tick(t + 100)
    (p,) = out
    assert isinstance(p, PlaceOrder) and p.kind is PERP_K
    core.disconnect(t + 200)
    again = core.reconnect(t + 300)
    assert [i.client_id for i in again] == [p.client_id]  # re-sent, same id: idempotent


def test_restart_from_the_record_continues_to_the_same_close() -> None:
    flip = T0 + H + 5 * 60_000
    ticks = stream(T0 + 55 * 60_000, T0 + H + 10 * 60_000,
                   lambda t: 0.001 if t < flip else -0.0005)
    cut = T0 + 58 * 60_000
    whole = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    whole.run(ticks)
    a = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    a.run([t for t in ticks if t.ts <= cut], end_ms=cut)
    assert a.core.intents["BTCUSDT"].state == fsm.HEDGED
    rec = json.loads(json.dumps(a.core.to_record()))
    restored = FundingCore.from_record(rec, CFG, SPOTS, PERPS, now_ms=cut)
    before, after = a.core.snapshot()["symbols"]["BTCUSDT"], restored.snapshot()["symbols"][
        "BTCUSDT"]
    for key in ("state", "spot_qty", "perp_qty", "funding", "fees", "apr", "intent_id"):
        assert after[key] == before[key], key
    assert after["basis_pnl"] is None  # no price known yet after the restart: none invented
    assert restored.snapshot()["connected"] is False
    a.core = restored
    a.send(restored.reconnect(cut), cut)
    a.run([t for t in ticks if t.ts > cut])
    (c1,) = of(whole.records, "closed")
    (c2,) = of(a.records, "closed")
    assert c1 == c2


def test_a_budget_below_the_unwind_reserve_is_refused_naming_the_keys() -> None:
    cfg = attrs.evolve(CFG, leg_risk_budget_usd_s=500.0, notional_usd=1000.0,
                       leg_unwind_reserve_s=1.0)
    with pytest.raises(ValueError, match="leg_risk_budget_usd_s .* notional_usd × "
                                         "leg_unwind_reserve_s"):
        FundingCore(cfg, SPOTS, PERPS, now_ms=T0)


def test_hold_across_events_off_wakes_at_the_settlement_and_closes_after_it() -> None:
    cfg = attrs.evolve(CFG, hold_across_events=False, spot_fee_bps=0.0, perp_fee_bps=0.0,
                       slippage_bps=0.0, margin_bps=0.0, quote_stale_ms=3_600_000.0)
    bt = FundingBacktest(cfg, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    for tick in market(T0 + 55 * 60_000, 0.004, T0 + H):  # one quote, no more ticks
        bt.feed(tick)
    bt.advance(T0 + 56 * 60_000, inclusive=True)
    assert bt.core.intents["BTCUSDT"].state == fsm.HEDGED
    assert bt.core.next_wakeup_ms() == T0 + H  # the settlement it was opened for
    bt.run([], end_ms=T0 + H + 1_000)
    (closed,) = of(bt.records, "closed")
    assert closed["settlements"] == 1 and closed["funding"] > 0
    assert [r["reason"] for r in of(bt.records, "decision") if r["action"] == "close"] == [
        "settlement collected (hold_across_events off)"]


def test_the_pre_event_window_opening_is_a_wakeup() -> None:
    cfg = attrs.evolve(CFG, quote_stale_ms=3_600_000.0)
    core = FundingCore(cfg, SPOTS, PERPS, now_ms=T0)
    t = T0 + 30 * 60_000
    for tick in market(t, 0.001, T0 + H):
        assert core.on_market(tick.event, t) == []
    assert core.next_wakeup_ms() == T0 + H - 10 * 60_000
    out = core.on_tick(T0 + H - 10 * 60_000)
    assert len(out) == 1 and isinstance(out[0], PlaceOrder)


def test_a_fill_for_an_unknown_order_is_an_anomaly_record() -> None:
    from engine.core.neutral import OrderFill, Side
    core = FundingCore(CFG, SPOTS, PERPS, now_ms=T0)
    f = OrderFill("bybit", "BTCUSDT", PERP_K, "nope", "1", "t1", Side.BUY, 0.001, 60_000.0,
                  0.0, False, T0)
    assert core.on_order_event(f, T0) == []
    (a,) = of(core.drain_records(), "anomaly")
    assert "unknown order nope" in a["detail"]


@settings(max_examples=25, deadline=None)
@given(rates=st.lists(st.sampled_from([0.002, 0.001, 0.0003, -0.0005]), min_size=3,
                      max_size=8),
       latency=st.sampled_from([0, 40, 400]), lag=st.sampled_from([0.0, 2_000.0, 60_000.0]),
       drift=st.floats(-30, 30))
def test_accounting_identities_hold_whatever_happens(rates: list[float], latency: int,
                                                     lag: float, drift: float) -> None:
    """Every closed record: net = funding + basis − fees, basis = the fills' cash flows, fees =
    the fills' fees, funding = the applied settlements; the venue is flat after each; the
    unhedged risk never passes the budget."""
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=latency,
                         extra_latency_ms={SPOT_K: lag})
    step = 20 * 60_000

    def rate_at(t: int) -> float:
        return rates[min((t - T0) // step, len(rates) - 1)]

    ticks = stream(T0 + 50 * 60_000, T0 + 50 * 60_000 + len(rates) * step, rate_at,
                   lambda t: 60_000.0 + drift * (t - T0) / 60_000, step=5_000)
    worst = 0.0
    for tick in ticks:
        bt.feed(tick)
        for it in bt.core.intents.values():
            worst = max(worst, it.risk_usd_s)
    bt.run([], end_ms=ticks[-1].ts + 120_000)
    assert worst <= CFG.leg_risk_budget_usd_s
    by_intent: dict[str, list[dict[str, Any]]] = {}
    for r in bt.records:
        if "intent_id" in r:
            by_intent.setdefault(r["intent_id"], []).append(r)
    for iid, rs in by_intent.items():
        closed = [r for r in rs if r["type"] == "closed"]
        if not closed or not closed[0]["filled"]:
            continue
        c = closed[0]
        fs = [r for r in rs if r["type"] == "fill"]
        assert c["fees"] == pytest.approx(sum(f["fee"] for f in fs))
        cash = sum(-f["qty"] * f["price"] * (1 if f["side"] == "buy" else -1) for f in fs)
        # a fee kept in BTC is in the fees, not the basis; its sub-lot rest is held at the mid
        fee_coin = sum(f["fee_base"] * f["price"] for f in fs)
        mid = 60_000.0 + drift * (c["closed_ms"] - T0) / 60_000
        assert c["basis_pnl"] == pytest.approx(cash + fee_coin + c["residual_spot"] * mid,
                                               abs=1e-5)
        assert c["funding"] == pytest.approx(sum(r["amount"] for r in rs if r["type"] ==
                                                 "funding"))
        assert c["net"] == pytest.approx(c["funding"] + c["basis_pnl"] - c["fees"])
        # the spot leg is Σ fills less the BTC the buys' fees kept: flat but for a sub-lot rest
        spot = sum(f["qty"] - f["fee_base"] if f["side"] == "buy" else -f["qty"]
                   for f in fs if f["leg"] == "spot")
        perp = sum(f["qty"] * (1 if f["side"] == "buy" else -1) for f in fs if f["leg"] == "perp")
        assert spot == pytest.approx(c["residual_spot"], abs=1e-12), iid
        assert abs(spot) < float(SPOT.lot_size) and perp == pytest.approx(0, abs=1e-9), iid
    if not bt.core.intents:
        assert bt.venue.perp_pos.get("BTCUSDT", 0) == 0


def test_a_second_symbol_cannot_open_past_the_total_while_the_first_is_in_flight() -> None:
    eth_s = attrs.evolve(SPOT, symbol="ETHUSDT")
    eth_p = attrs.evolve(PERP, symbol="ETHUSDT")
    cfg = attrs.evolve(CFG, symbols=["BTCUSDT", "ETHUSDT"], notional_usd=1000.0,
                       max_total_notional_usd=1000.0)
    core = FundingCore(cfg, {"BTCUSDT": SPOT, "ETHUSDT": eth_s},
                       {"BTCUSDT": PERP, "ETHUSDT": eth_p}, now_ms=T0)
    t = T0 + 55 * 60_000
    placed: list[PlaceOrder] = []
    for sym in ("BTCUSDT", "ETHUSDT"):
        for tick in market(t, 0.001, T0 + H):
            ev = attrs.evolve(tick.event, symbol=sym)
            placed += [i for i in core.on_market(ev, t) if isinstance(i, PlaceOrder)]
    assert [p.symbol for p in placed] == ["BTCUSDT"]  # BTC is only in LEG1 here
    (opened,) = [r for r in of(core.drain_records(), "decision") if r["action"] == "open"]
    assert opened["symbol"] == "BTCUSDT"
    assert core.used_notional() == pytest.approx(float(placed[0].qty) * 60_000.0)


def test_late_answers_of_a_closed_round_trip_are_quiet_but_a_late_fill_is_an_anomaly() -> None:
    from engine.core.neutral import OrderFill, OrderReject, RejectReason, Side
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    held(bt, T0 + 56 * 60_000)
    t = bt.now
    bt.send(bt.core.kill(t), t)
    bt.run([], end_ms=t + 1_000)
    assert of(bt.records, "closed") and not bt.core.intents
    cid = of(bt.records, "order")[0]["client_id"]
    late = OrderReject("bybit", "BTCUSDT", cid, RejectReason.NOT_FOUND, "too late", t + 2_000)
    assert bt.core.on_order_event(late, t + 2_000) == []
    assert of(bt.core.drain_records(), "anomaly") == []
    fill = OrderFill("bybit", "BTCUSDT", PERP_K, cid, "o", "late-1", Side.SELL, 0.001,
                     60_000.0, 0.0, False, t + 2_000)
    bt.core.on_order_event(fill, t + 2_000)
    (a,) = of(bt.core.drain_records(), "anomaly")
    assert "round trip already closed" in a["detail"] and "reconcile" in a["detail"]


def test_negative_funding_sells_owned_spot_and_buys_it_back() -> None:
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40,
                         spot_balances={"BTCUSDT": 0.05})
    flip = T0 + H + 5 * 60_000
    bt.run(stream(T0 + 55 * 60_000, T0 + H + 10 * 60_000,
                  lambda t: -0.001 if t < flip else 0.0005))
    (opened,) = [r for r in of(bt.records, "decision") if r["action"] == "open"]
    assert opened["direction"] == -1
    fills = of(bt.records, "fill")
    assert [(f["leg"], f["role"], f["side"]) for f in fills] == [
        ("perp", "open", "buy"), ("spot", "hedge", "sell"), ("perp", "close", "sell"),
        ("spot", "close", "buy")]
    (funding,) = [r for r in of(bt.records, "funding") if r["applied"]]
    assert funding["position_size"] > 0 and funding["amount"] > 0  # a long receives at -rate
    (closed,) = of(bt.records, "closed")
    assert closed["direction"] == -1 and closed["entry_notional"] > 0
    assert float(bt.venue.spot_bal["BTCUSDT"]) == pytest.approx(0.05)  # inventory restored
    assert bt.venue.perp_pos["BTCUSDT"] == 0


def test_negative_funding_without_inventory_is_never_traded() -> None:
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    bt.run(stream(T0 + 55 * 60_000, T0 + 59 * 60_000, lambda t: -0.001))
    assert not of(bt.records, "order")
    assert {r["reason"] for r in of(bt.records, "decision")} >= {
        "negative funding and no spot inventory"}


def test_a_held_pair_closes_when_the_apr_falls_below_exit_apr() -> None:
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    low = T0 + H + 5 * 60_000
    bt.run(stream(T0 + 55 * 60_000, T0 + H + 10 * 60_000,
                  lambda t: 0.001 if t < low else 0.000004))  # 3.5 % APR < exit_apr 5 %
    closes = [r for r in of(bt.records, "decision") if r["action"] == "close"]
    assert [r["reason"] for r in closes] == ["APR below exit_apr"] and closes[0]["ts"] >= low
    assert of(bt.records, "closed")[0]["filled"]


op_st = st.tuples(st.integers(0, 60 * 60_000),
                  st.sampled_from(["kill", "disconnect", "restart", "reject_spot",
                                   "reject_perp"]),
                  st.integers(200, 20_000))


@settings(max_examples=30, deadline=None)
# found by this test (2026-12-08): the unwind closed the fast perp leg at once while the
# lagging, half-filling spot leg sold in pieces for 12 s: 3,202 USD·s against a 3,000 budget
# (an unwind now closes the perp only as the spot's closes fill)
@example(ops=[(5001, "reject_spot", 200)], partial=0.5, lag=1500.0, rates=[0.002, 0.002])
@given(ops=st.lists(op_st, max_size=5), partial=st.sampled_from([1.0, 0.5]),
       lag=st.sampled_from([0.0, 1_500.0]), rates=st.lists(
           st.sampled_from([0.002, 0.0003, -0.0005]), min_size=2, max_size=4))
def test_faults_disconnects_and_restarts_keep_the_books_straight(
        ops: list[tuple[int, str, int]], partial: float, lag: float, rates: list[float]) -> None:
    """Whatever happens (rejects, partial fills, a lagging leg, disconnects, restarts from the
    journal, kill): the core's legs are the venue's positions (Σ fills), every closed round trip
    is flat and its P&L parts add up, and the connected unhedged risk stays in the budget."""
    from engine.core.neutral import RejectReason

    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40,
                         extra_latency_ms={SPOT_K: lag})
    bt.venue.partial_ratio = partial
    step = 20 * 60_000
    start = T0 + 50 * 60_000

    def rate_at(t: int) -> float:
        return rates[min((t - start) // step, len(rates) - 1)]

    ticks = stream(start, start + 60 * 60_000, rate_at, step=5_000)
    plan = sorted((start + at, name, dur) for at, name, dur in ops)
    worst = 0.0
    back_at: int | None = None
    for tick in ticks:
        while plan and plan[0][0] <= tick.ts:
            at, name, dur = plan.pop(0)
            if name == "kill":
                bt.advance(at, inclusive=True)
                bt.send(bt.core.kill(at), at)
            elif name == "disconnect" and not bt.offline:
                bt.disconnect(at)
                back_at = at + dur
            elif name == "restart":
                bt.restart(at)
            elif name == "reject_spot":
                bt.venue.reject_next(SPOT_K, 1, RejectReason.RATE_LIMITED)
            elif name == "reject_perp":
                bt.venue.reject_next(PERP_K, 1, RejectReason.INSUFFICIENT_BALANCE)
        if back_at is not None and back_at <= tick.ts:
            bt.reconnect(back_at)
            back_at = None
        bt.feed(tick)
        for it in bt.core.intents.values():
            worst = max(worst, it.risk_usd_s)
    if bt.offline:
        bt.reconnect(bt.now)
    bt.send(bt.core.kill(bt.now), bt.now)
    bt.run([], end_ms=bt.now + 60_000)
    assert worst <= CFG.leg_risk_budget_usd_s
    # the core's books are the venue's truth
    for sym, it in bt.core.intents.items():
        assert it.pos["a"] == bt.venue.perp_pos.get(sym, 0), sym
    closed = [c for c in of(bt.records, "closed") if c["filled"]]
    if not bt.core.intents:
        # flat, but for spot dust below the instrument's minimum notional (untradable)
        assert bt.venue.perp_pos.get("BTCUSDT", 0) == 0
        assert float(bt.venue.spot_bal.get("BTCUSDT", 0)) == pytest.approx(
            sum(c["residual_spot"] for c in closed), abs=1e-12)
    assert not [r for r in bt.records if r["type"] == "anomaly"]
    for c in closed:
        assert c["residual_perp"] == 0
        assert abs(c["residual_spot"]) * 60_000.0 < float(SPOT.min_notional) * 1.01
        assert c["net"] == pytest.approx(c["funding"] + c["basis_pnl"] - c["fees"])


def test_partial_fills_never_send_a_leg_below_the_instruments_minimum() -> None:
    """Halving partial fills shrink the hedge remainder below spot's 5 USDT minimum notional:
    the intent stops there (hedged within what can trade) instead of sending orders the venue
    must refuse until it unwinds, and the close leaves only untradable dust."""
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    bt.venue.partial_ratio = 0.5
    flip = T0 + H + 5 * 60_000
    bt.run(stream(T0 + 55 * 60_000, T0 + H + 10 * 60_000,
                  lambda t: 0.001 if t < flip else -0.0005))
    spot_orders = [r for r in of(bt.records, "order") if r["kind"] == "spot"
                   and r["op"] == "place"]
    assert spot_orders and all(float(r["qty"]) * 60_000 >= 5 for r in spot_orders)
    assert not of(bt.records, "reject") and not of(bt.records, "anomaly")
    (closed,) = of(bt.records, "closed")
    assert closed["fail_reason"] is None and closed["settlements"] == 1
    assert 0 < abs(closed["residual_spot"]) * 60_000 < 5  # dust, counted in the basis P&L
    ratio = closed["hedge_ratio"]
    unhedged_usd = (1 - ratio) * closed["entry_notional"] / ratio  # perp not matched by spot
    assert 0 <= unhedged_usd < float(SPOT.min_notional) * 1.01


def test_a_perp_position_changed_at_the_venue_is_reconciled_and_rebalanced() -> None:
    """An ADL takes 0.004 of the short perp: the venue's position stream says so, the pair
    takes it as the truth and sells the spot it no longer hedges; later closes stay flat."""
    from engine.core.neutral import PositionUpdate
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    held(bt, T0 + 56 * 60_000)
    it = bt.core.intents["BTCUSDT"]
    qty = -it.pos["a"]
    t = bt.now
    # too soon after the last fill: the update may predate it
    early = PositionUpdate("bybit", "BTCUSDT", -float(qty) + 0.004, 60_000.0, t - 59_000)
    assert bt.core.on_position(early, t) == []
    bt.venue.perp_pos["BTCUSDT"] += Decimal("0.004")  # the exchange's ADL
    ev = PositionUpdate("bybit", "BTCUSDT", float(bt.venue.perp_pos["BTCUSDT"]), 60_000.0, t)
    out = bt.core.on_position(ev, t)
    (p,) = out
    assert isinstance(p, PlaceOrder) and p.kind is SPOT_K and p.side.value == "sell"
    # what the spot leg holds beyond the 0.012 still hedged (it holds 0.016 less its BTC fee)
    assert p.qty == (it.pos["b"] - Decimal("0.012")).quantize(SPOT.lot_size, "ROUND_DOWN")
    bt.send(out, t)
    recs = bt.core.drain_records()
    (rec,) = of(recs, "reconcile")
    assert rec["diff"] == "0.004"
    assert [r["reason"] for r in of(recs, "decision")] == ["net delta beyond rebalance_band_bps"]
    flip = t + 60_000
    bt.run(stream(t + 1_000, t + 120_000, lambda x: 0.001 if x < flip else -0.0005))
    assert bt.venue.perp_pos["BTCUSDT"] == 0 and 0 <= bt.venue.spot_bal["BTCUSDT"] < (
        SPOT.lot_size)
    (closed,) = of(bt.records, "closed")
    assert closed["residual_spot"] == float(bt.venue.spot_bal["BTCUSDT"])
    assert closed["residual_perp"] == 0


def test_a_perp_position_without_a_pair_is_an_anomaly() -> None:
    from engine.core.neutral import PositionUpdate
    core = FundingCore(CFG, SPOTS, PERPS, now_ms=T0)
    assert core.on_position(PositionUpdate("bybit", "BTCUSDT", -0.01, 60_000.0, T0), T0) == []
    (a,) = of(core.drain_records(), "anomaly")
    assert "no pair" in a["detail"]


def test_a_long_hedged_hold_does_not_use_up_the_leg_risk_budget() -> None:
    """The residual a hedged pair keeps (dust below spot's minimum) is not leg risk: counted
    over a long hold it would leave no budget, and the next rebalance would unwind at once."""
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    bt.venue.partial_ratio = 0.5  # leaves an untradable residual unhedged
    bt.run(stream(T0 + 55 * 60_000, T0 + H + 50 * 60_000, lambda t: 0.001, step=10_000))
    it = bt.core.intents["BTCUSDT"]
    assert it.state == fsm.HEDGED and it.net != 0
    assert it.risk_usd_s < 100  # only the seconds of legging, not the hour held


@pytest.mark.parametrize("ev", [
    FundingQuote("bybit", "BTCUSDT", float("nan"), T0 + H, H, 60_000.0, 60_000.0, 59_999.5,
                 60_000.5, T0),
    FundingQuote("bybit", "BTCUSDT", 0.001, T0 + H, H, 0.0, 60_000.0, None, None, T0),
    FundingQuote("bybit", "BTCUSDT", 0.001, T0 + H, H, 60_000.0, 60_000.0, 60_001.0,
                 60_000.0, T0),
    BookTop("bybit", "BTCUSDT", SPOT_K, 60_001.0, 1.0, 60_000.0, 1.0, T0),
    BookTop("bybit", "BTCUSDT", SPOT_K, float("inf"), 1.0, None, 0.0, T0),
    BookTop("bybit", "BTCUSDT", SPOT_K, 59_999.0, -1.0, 60_000.0, 1.0, T0),
], ids=["nan-rate", "no-mark", "crossed-quote", "crossed-book", "inf-price", "neg-size"])
def test_bad_market_input_is_never_applied_and_never_silent(
        ev: Any, caplog: pytest.LogCaptureFixture) -> None:
    core = FundingCore(CFG, SPOTS, PERPS, now_ms=T0)
    t = T0 + 55 * 60_000
    assert core.on_market(ev, t) == []
    (r,) = of(core.drain_records(), "bad_input")
    assert r["event"] == type(ev).__name__ and r["reason"]
    assert any("ignored" in m.message for m in caplog.records)
    assert not core.strategy.quotes and not core.strategy.spot_books
    core.on_market(ev, t + 1)  # the same again: recorded, logged once a minute
    assert len(of(core.drain_records(), "bad_input")) == 1
    assert sum("ignored" in m.message for m in caplog.records) == 1


def test_a_fill_with_no_usable_numbers_is_recorded_not_booked() -> None:
    from engine.core.neutral import OrderFill, Side
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    held(bt, T0 + 56 * 60_000)
    it = bt.core.intents["BTCUSDT"]
    cid = next(iter(it.orders))
    before = dict(it.pos)
    bad = OrderFill("bybit", "BTCUSDT", PERP_K, cid, "o", "x1", Side.SELL, float("nan"),
                    60_000.0, 0.0, False, bt.now)
    assert bt.core.on_order_event(bad, bt.now) == []
    assert it.pos == before
    assert of(bt.core.drain_records(), "bad_input")[0]["event"] == "OrderFill"


def test_a_settlement_arriving_after_its_round_trip_closed_still_counts() -> None:
    """Bybit's funding execution may come after the close the strategy made at the settlement
    time: it belongs to the round trip that held the position then, and to the totals."""
    from engine.core.neutral import FundingSettlement
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    held(bt, T0 + 56 * 60_000)
    opened = bt.core.ledgers["BTCUSDT"].opened_ms
    t = bt.now
    bt.send(bt.core.kill(t), t)
    bt.run([], end_ms=t + 1_000)
    (closed,) = of(bt.records, "closed")
    net_before = bt.core.totals["net"]
    ev = FundingSettlement("bybit", "BTCUSDT", 0.001, -0.016, 0.96, t - 10)
    bt.core.on_market(ev, t + 2_000)
    (f,) = of(bt.core.drain_records(), "funding")
    assert f["applied"] and f["late"] and f["intent_id"] == closed["intent_id"]
    assert bt.core.totals["net"] == pytest.approx(net_before + 0.96)
    # one settled before that round trip opened belongs to none of it
    bt.core.on_market(attrs.evolve(ev, ts_ms=opened - 1), t + 3_000)
    (g,) = of(bt.core.drain_records(), "funding")
    assert not g["applied"]


def test_leg_latency_is_fill_received_to_hedge_written() -> None:
    """The issue's figure: leg-1 fill received → leg-2 order written (``on_sent``)."""
    from engine.core.neutral import OrderFill, Side
    core = FundingCore(CFG, SPOTS, PERPS, now_ms=T0)
    t = T0 + 55 * 60_000
    out: list[Any] = []
    for tick in market(t, 0.001, T0 + H):
        out += core.on_market(tick.event, t)
    (p,) = out
    fill = OrderFill("bybit", "BTCUSDT", PERP_K, p.client_id, "o1", "t1", Side.SELL,
                     float(p.qty), 59_999.5, 0.0, False, t + 30)  # venue time
    (hedge,) = core.on_order_event(fill, t + 45)  # received 15 ms later
    core.on_sent(hedge.client_id, t + 46)  # written 1 ms after
    led = core.ledgers["BTCUSDT"]
    assert led.leg_latency_ms() == 1


def test_a_restored_pair_outside_the_configured_symbols_is_flagged_and_kill_flattens_it() -> None:
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=40)
    held(bt, T0 + 56 * 60_000)
    rec = json.loads(json.dumps(bt.core.to_record()))
    other = attrs.evolve(CFG, symbols=["ETHUSDT"])
    core = FundingCore.from_record(rec, other, SPOTS, PERPS, now_ms=bt.now)
    (a,) = of(core.drain_records(), "anomaly")
    assert "no longer in [funding] symbols" in a["detail"]
    core.reconnect(bt.now)
    out = core.kill(bt.now)
    assert {(i.kind, i.reduce_only) for i in out if isinstance(i, PlaceOrder)} == {
        (PERP_K, True), (SPOT_K, False)}
