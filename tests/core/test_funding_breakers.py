"""The funding strategy's circuit breakers (engine/core/funding_breakers.py): the same
:class:`~engine.core.breakers.CircuitBreakers` as the Hyperliquid core, fed by
:class:`~engine.core.funding_core.FundingCore` with a funding run's P&L — a run of losing round
trips trips ``consecutive_losses``, an open pair's marked loss trips ``daily_loss`` (against the
day-start equity), a fall from the peak trips ``drawdown``, a perp's move halts its symbol; after
a trip the core takes no new entry (a Hypothesis property), and the state survives a restart."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import BreakersConfig
from engine.core.breakers import CircuitBreakers
from engine.core.funding_breakers import FundingBreakers
from engine.core.funding_core import FundingCore
from engine.core.neutral import BookTop, FundingQuote, InstrumentKind
from engine.replay.funding_backtest import FundingBacktest, Tick
from tests.core.test_funding_core import CFG, PERPS, SPOTS, T0, H, of

SPOT_K, PERP_K = InstrumentKind.SPOT, InstrumentKind.LINEAR_PERP
OFF = BreakersConfig(daily_loss_pct=0, drawdown_pct=0, max_consecutive_losses=0,
                     market_move_pct=0)
DAY = 86_400_000


def brk(**kw: Any) -> BreakersConfig:
    return attrs.evolve(OFF, **kw)


# ------------------------------------------------------------------ FundingBreakers alone


def test_a_run_of_losing_round_trips_trips_consecutive_losses() -> None:
    fb = FundingBreakers(brk(max_consecutive_losses=3), 10_000.0, 0.0)
    assert fb.on_closed(-1.0, 0.0, T0) == [] and fb.on_closed(-2.0, 0.0, T0 + 1) == []
    assert fb.on_closed(0.0, 0.0, T0 + 2) == []  # break-even ends the run
    assert fb.on_closed(-1.0, 0.0, T0 + 3) == [] and fb.on_closed(-1.0, 0.0, T0 + 4) == []
    (t,) = fb.on_closed(-0.5, 0.0, T0 + 5)
    assert t.breaker == "consecutive_losses" and t.latches_hard_stop
    assert t.detail == ("consecutive losses: 3 losing round trips in a row (threshold 3); "
                        "the last -0.5000 USD")
    assert fb.global_trip() is t.trip
    assert fb.on_closed(-1.0, 0.0, T0 + 6) == []  # latched: once


def test_a_marked_loss_of_the_open_pairs_trips_daily_loss_against_the_day_start_equity(
        ) -> None:
    fb = FundingBreakers(brk(daily_loss_pct=2.0), 10_000.0, 0.0)
    assert fb.on_marks(0.0, -199.0, [], T0) == []  # 1.99 % of 10,000
    (t,) = fb.on_marks(0.0, -200.0, [], T0 + 250)
    assert t.breaker == "daily_loss"
    assert t.detail == ("daily loss 200.00 USD (closed today +0.00, open pairs -200.00) = "
                        "2.0000 % >= 2 % of day-start equity 10000.00")
    assert float(t.detail.rsplit("equity ", 1)[1]) == 10_000.0  # what the ops test reads


def test_daily_loss_counts_closed_round_trips_of_the_day_and_restarts_at_midnight() -> None:
    fb = FundingBreakers(brk(daily_loss_pct=2.0), 10_000.0, 0.0)
    day0 = T0 - T0 % DAY
    assert fb.on_marks(0.0, 0.0, [], day0 + 1000) == []
    assert fb.on_closed(-150.0, 0.0, day0 + 2000) == []
    assert fb.on_marks(-150.0, 0.0, [], day0 + 3000) == []  # 1.5 %
    # the next UTC day: a fresh day (the day-start equity is 9,850), the loss run goes on
    assert fb.on_marks(-150.0, -150.0, [], day0 + DAY + 1000) == []  # 1.52 % of 9,850
    assert fb.cb.day_start_equity == pytest.approx(9_850.0)
    (t,) = fb.on_marks(-150.0, -197.0, [], day0 + DAY + 2000)  # 2.0 % of 9,850
    assert t.breaker == "daily_loss" and "day-start equity 9850.00" in t.detail


def test_drawdown_is_measured_from_the_peak_of_the_run_equity() -> None:
    fb = FundingBreakers(brk(drawdown_pct=5.0), 10_000.0, 0.0)
    assert fb.on_marks(0.0, 1_000.0, [], T0) == []  # peak 11,000
    assert fb.on_marks(400.0, 100.0, [], T0 + 1) == []  # 10,500: 4.5 % below
    (t,) = fb.on_marks(400.0, 50.0, [], T0 + 2)  # 10,450: 5 % below the peak
    assert t.breaker == "drawdown"
    assert t.detail == ("drawdown 5.0000 % >= 5 %: equity 10450.00 USD below its peak "
                        "11000.00")


def test_the_equity_is_the_account_plus_the_change_of_the_run_net() -> None:
    # a restored run that had made 30 USD before: the account's equity now includes it
    fb = FundingBreakers(brk(drawdown_pct=5.0), 5_030.0, 30.0)
    assert fb.equity(30.0) == 5_030.0 and fb.equity(20.0) == 5_020.0
    fb.rebase(6_000.0, 20.0)  # the account's own figure arrived later
    assert fb.equity(20.0) == 6_000.0 and fb.cb.peak == 6_000.0


def test_a_perp_move_halts_only_its_symbol() -> None:
    fb = FundingBreakers(brk(market_move_pct=10.0, market_move_window_s=60), 10_000.0, 0.0)
    assert fb.on_marks(0.0, 0.0, [("BTCUSDT", 100.0), ("ETHUSDT", 10.0)], T0) == []
    (t,) = fb.on_marks(0.0, 0.0, [("BTCUSDT", 111.0), ("ETHUSDT", 10.1)], T0 + 10_000)
    assert t.breaker == "market_move" and t.market == "BTCUSDT" and not t.latches_hard_stop
    assert fb.is_halted("BTCUSDT") and not fb.is_halted("ETHUSDT")
    assert fb.global_trip() is None


def test_late_funding_is_realised_pnl_but_no_trade() -> None:
    fb = FundingBreakers(brk(daily_loss_pct=2.0, max_consecutive_losses=2), 10_000.0, 0.0)
    assert fb.on_closed(-100.0, 0.0, T0) == []
    assert fb.on_late_funding(-100.0, 0.0, T0 + 1) != []  # 200 USD lost today: daily loss
    assert fb.cb.consecutive_losses == 1  # the payment is not a losing trade


def test_the_state_carries_the_streak_and_todays_loss_and_rebases_the_equity() -> None:
    cfg = brk(daily_loss_pct=2.0, max_consecutive_losses=3, market_move_pct=5.0)
    fb = FundingBreakers(cfg, 10_000.0, 0.0)
    fb.on_closed(-10.0, 0.0, T0)
    fb.on_closed(-10.0, 0.0, T0 + 1)
    fb.on_marks(-20.0, 0.0, [("BTCUSDT", 100.0)], T0 + 2)
    fb.on_marks(-20.0, 0.0, [("BTCUSDT", 120.0)], T0 + 3)  # halted
    again = FundingBreakers(cfg, 8_000.0, -20.0, state=fb.to_state())
    assert again.cb.consecutive_losses == 2 and again.cb.realised_today == -20.0
    assert again.cb.peak == again.cb.equity == 8_000.0  # this account's equity, now
    assert not again.is_halted("BTCUSDT")  # a halt of the earlier run is not kept
    (t,) = again.on_closed(-1.0, 0.0, T0 + 4)
    assert t.breaker == "consecutive_losses"
    with pytest.raises(ValueError):
        FundingBreakers(cfg, 8_000.0, 0.0, state={"v": 99})


def test_on_realised_counts_today_and_leaves_the_losing_streak() -> None:
    cb = CircuitBreakers(brk(daily_loss_pct=1.0, max_consecutive_losses=2), 1_000.0)
    cb.on_trade_closed(-1.0, T0)
    assert cb.on_realised(5.0, T0 + 1) == [] and cb.consecutive_losses == 1
    assert cb.realised_today == 4.0
    (t,) = cb.on_realised(-14.0, T0 + 2)
    assert t.breaker == "daily_loss"
    assert cb.on_realised(float("nan"), T0 + 3) == [] and cb.bad_inputs["realised"] == 1


# ------------------------------------------------------------------ through FundingCore


def ticks(t: int, rate: float, spot_px: float, perp_px: float) -> list[Tick]:
    nxt = (t // H + 1) * H
    return [
        Tick(t, FundingQuote("bybit", "BTCUSDT", rate, nxt, H, perp_px, perp_px,
                             perp_px - 0.5, perp_px + 0.5, t)),
        Tick(t, BookTop("bybit", "BTCUSDT", SPOT_K, spot_px - 0.5, 5.0, spot_px + 0.5, 5.0,
                        t)),
        Tick(t, BookTop("bybit", "BTCUSDT", PERP_K, perp_px - 0.5, 5.0, perp_px + 0.5, 5.0,
                        t)),
    ]


def armed(cfg: BreakersConfig, equity: float = 10_000.0) -> FundingBacktest:
    bt = FundingBacktest(attrs.evolve(CFG, max_basis_bps=1_000), SPOTS, PERPS, start_ms=T0,
                         latency_ms=40, tick_ms=250)
    bt.core.arm_breakers(cfg, equity)
    return bt


def hold(bt: FundingBacktest, t_from: int, t_to: int) -> list[Any]:
    """Feed a steady market (876 % APR) from ``t_from`` to ``t_to``; the trips taken."""
    trips: list[Any] = []
    for t in range(t_from, t_to + 1, 1_000):
        for tick in ticks(t, 0.001, 60_000.0, 60_000.0):
            bt.feed(tick)
        trips += bt.core.take_trips()
    return trips


def test_a_losing_round_trip_through_the_core_trips_consecutive_losses_and_stops_entries(
        ) -> None:
    bt = armed(brk(max_consecutive_losses=1))
    start = T0 + 55 * 60_000
    assert hold(bt, start, start + 20_000) == []
    assert bt.core.intents["BTCUSDT"].state == "hedged"
    t = bt.now
    # the strategy's own close: the rate flips, the pair closes at a loss (fees, spread)
    trips: list[Any] = []
    for s in range(t + 1_000, t + 20_000, 1_000):
        for tick in ticks(s, -0.0005, 60_000.0, 60_000.0):
            bt.feed(tick)
        trips += bt.core.take_trips()
    (closed,) = [r for r in of(bt.records, "closed") if r["filled"]]
    assert closed["net"] < 0
    (trip,) = trips
    assert trip.breaker == "consecutive_losses" and f"{closed['net']:+.4f}" in trip.detail
    # the rate pays 876 % APR again: the core refuses to open (even without the shell's kill)
    after = bt.now
    assert hold(bt, after + 1_000, after + 30_000) == []
    assert not [r for r in of(bt.records, "decision") if r["action"] == "open"
                and r["ts"] > after]
    assert bt.core.intents == {}
    reasons = [r["reason"] for r in of(bt.records, "decision") if r["ts"] >= trip.trip.now_ms]
    assert reasons[-1] == "circuit breaker consecutive_losses tripped: no new entries"


def test_an_open_pairs_marked_basis_loss_trips_daily_loss_at_the_tick() -> None:
    bt = armed(brk(daily_loss_pct=0.05), equity=10_000.0)  # 5 USD
    start = T0 + 55 * 60_000
    assert hold(bt, start, start + 10_000) == []
    assert bt.core.intents["BTCUSDT"].state == "hedged"
    trips: list[Any] = []
    t = bt.now
    for k in range(1, 40):  # the perp (short) rises 10 USD a second against the spot (long)
        for tick in ticks(t + k * 1_000, 0.001, 60_000.0, 60_000.0 + 10.0 * k):
            bt.feed(tick)
        trips += bt.core.take_trips()
        if trips:
            break
    (trip,) = trips
    assert trip.breaker == "daily_loss"
    fb = bt.core.breakers
    assert fb is not None and trip.trip.value >= 0.05 * (1 - 1e-9)
    assert -fb.cb.unrealised >= 5.0 * (1 - 1e-9)  # the open pair's marked net P&L at the tick
    assert bt.core.open_net() < 0 and bt.core.totals["closed"] == 0  # an open pair's mark


def test_the_journal_record_carries_the_breaker_state_to_the_next_run() -> None:
    cfg = brk(max_consecutive_losses=3)
    core = FundingCore(CFG, SPOTS, PERPS, now_ms=T0)
    fb = core.arm_breakers(cfg, 10_000.0)
    fb.on_closed(-1.0, 0.0, T0)
    fb.on_closed(-1.0, 0.0, T0 + 1)
    rec = json.loads(json.dumps(core.to_record()))  # as the journal line reads back
    again = FundingCore.from_record(rec, CFG, SPOTS, PERPS, now_ms=T0 + 10)
    assert again.to_record()["breakers"] == rec["breakers"]  # carried, not yet armed
    fb2 = again.arm_breakers(cfg, 9_000.0)
    assert fb2.cb.consecutive_losses == 2 and fb2.cb.equity == 9_000.0
    # a record of an older run (no breaker state): armed afresh
    old = {k: v for k, v in rec.items() if k != "breakers"}
    assert FundingCore.from_record(old, CFG, SPOTS, PERPS, now_ms=T0).arm_breakers(
        cfg, 1.0).cb.consecutive_losses == 0


# ------------------------------------------------------------------ property


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moves=st.lists(st.tuples(st.sampled_from([0.001, 0.002, -0.0005]),
                                st.floats(-40.0, 40.0), st.floats(-40.0, 40.0)),
                      min_size=5, max_size=40),
       loss_pct=st.sampled_from([0.001, 0.01, 0.05]),
       streak=st.sampled_from([1, 2]))
def test_no_entry_is_sent_after_a_trip(moves: list[tuple[float, float, float]],
                                       loss_pct: float, streak: int) -> None:
    """Whatever the market does, once a breaker that latches the hard stop tripped the core
    sends no order of a new round trip (only the legs of what was already open)."""
    bt = armed(brk(daily_loss_pct=loss_pct, drawdown_pct=loss_pct,
                   max_consecutive_losses=streak))
    t = T0 + 55 * 60_000
    spot = perp = 60_000.0
    tripped_at: int | None = None
    open_ids: set[str] = set()
    sent: list[tuple[int, str]] = []
    real_send = bt.send

    def send(intents: list[Any], now: int) -> None:
        sent.extend((now, getattr(i, "client_id", "")) for i in intents)
        real_send(intents, now)

    bt.send = send  # type: ignore[method-assign]
    for rate, ds, dp in moves:
        for _ in range(3):
            t += 1_000
            spot, perp = max(1_000.0, spot + ds), max(1_000.0, perp + dp)
            for tick in ticks(t, rate, spot, perp):
                bt.feed(tick)
            if tripped_at is None and any(x.latches_hard_stop for x in bt.core.take_trips()):
                tripped_at = bt.now
                open_ids = {cid for it in bt.core.intents.values() for cid in it.orders}
                open_ids |= {it.intent_id for it in bt.core.intents.values()}
    if tripped_at is None:
        return
    for now, cid in sent:
        if now > tripped_at and cid:
            assert any(cid.startswith(i) for i in open_ids), (cid, open_ids)
    assert not [r for r in of(bt.records, "decision")
                if r["action"] == "open" and r["ts"] > tripped_at]


def test_unarmed_the_core_is_what_it_was() -> None:
    core = FundingCore(CFG, SPOTS, PERPS, now_ms=T0)
    assert core.breakers is None and core.take_trips() == []
    assert core.to_record()["breakers"] is None
    assert core.open_net() == 0.0 and core.net_pnl() == 0.0
