"""Strategy → two-leg intent → Bybit adapter → Bybit simulator, over loopback: enter on a
funding opportunity, hedge, receive funding at a settlement, close on a sign flip; a lagging
spot leg is unwound within the leg-risk budget; kill flattens both legs (reduce-only perp).

The glue here (``Shell``) is the minimum a venue-neutral shell must do: feed neutral events to
the strategy and the intent, send the intents the intent returns, and wake it by
``next_wakeup_ms``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import trio

from engine.config import FundingConfig
from engine.core.neutral import (
    BookTop,
    CancelOrder,
    FundingQuote,
    FundingSettlement,
    InstrumentKind,
    OrderDone,
    OrderFill,
    OrderReject,
    PlaceOrder,
    Side,
)
from engine.core.two_leg import LEG_A, LEG_B, LegRiskConfig, LegSpec, TwoLegIntent
from engine.sim.bybit.exchange import Exchange
from engine.sim.bybit.server import BybitSimServer
from engine.strategies.funding_basis import Action, FundingBasisStrategy, Holding
from engine.venues.bybit import urls
from engine.venues.bybit.codec import BybitDecoder
from engine.venues.bybit.execution import BybitExecution
from engine.venues.bybit.http import HttpClient
from engine.venues.bybit.rest import BybitRest
from engine.venues.bybit.signing import BybitCredentials
from engine.venues.bybit.ws import BybitStream
from fsm import two_leg as fsm

KEY, SECRET = "k2", "s2"


def now_ms() -> float:
    return time.time() * 1000.0


class Shell:
    def __init__(self, base: str, nursery: trio.Nursery) -> None:
        self.urls = urls.local(base)
        self.nursery = nursery
        self.creds = BybitCredentials(KEY, SECRET)
        self.rest = BybitRest(HttpClient(self.urls.rest), now_ms, self.creds)
        self.execution = BybitExecution(self.rest, now_ms)
        self.intent: TwoLegIntent | None = None
        self.settlements: list[FundingSettlement] = []
        self.strategy: FundingBasisStrategy | None = None
        self.wake = trio.Event()

    async def start(self, cfg: FundingConfig) -> None:
        perp = {i.symbol: i for i in await self.rest.instruments_info("linear")}
        spot = {i.symbol: i for i in await self.rest.instruments_info("spot")}
        self.strategy = FundingBasisStrategy(cfg, spot, perp)
        for url, topics, kind, creds in [
            (self.urls.ws_public_linear, ["tickers.BTCUSDT"], InstrumentKind.LINEAR_PERP, None),
            (self.urls.ws_public_spot, ["orderbook.1.BTCUSDT"], InstrumentKind.SPOT, None),
            (self.urls.ws_private, ["order", "execution"], InstrumentKind.LINEAR_PERP,
             self.creds)]:
            st = BybitStream(url, topics, BybitDecoder(kind), self.on_event, now_ms, creds,
                             reconnect_base_s=0.05)
            await self.nursery.start(st.run)
        self.nursery.start_soon(self.ticker)

    def on_event(self, ev: Any) -> None:
        s = self.strategy
        assert s is not None
        if isinstance(ev, FundingQuote):
            s.on_quote(ev)
        elif isinstance(ev, BookTop):
            s.on_book(ev)
        elif isinstance(ev, FundingSettlement):
            self.settlements.append(ev)
        elif self.intent is not None:
            now = int(now_ms())
            if isinstance(ev, OrderFill):
                out = self.intent.on_fill(ev, now)
            elif isinstance(ev, OrderDone):
                out = self.intent.on_done(ev, now)
            elif isinstance(ev, OrderReject):
                out = self.intent.on_reject(ev, now)
            else:
                return
            self.nursery.start_soon(self.send, out)
        self.wake.set()

    async def send(self, intents: list[PlaceOrder | CancelOrder]) -> None:
        for i in intents:
            if isinstance(i, PlaceOrder):
                ans = await self.execution.place(i)
            else:
                ans = await self.execution.cancel(i)
            if isinstance(ans, OrderReject) and self.intent is not None:
                await self.send(self.intent.on_reject(ans, int(now_ms())))

    async def ticker(self) -> None:
        while True:
            wake = self.intent.next_wakeup_ms() if self.intent is not None else None
            delay = 0.05 if wake is None else max(0.0, (wake - now_ms()) / 1000.0)
            with trio.move_on_after(min(delay, 0.05)):
                await self.wake.wait()
            self.wake = trio.Event()
            if self.intent is not None:
                await self.send(self.intent.on_tick(int(now_ms())))

    def holding(self) -> Holding | None:
        it = self.intent
        if it is None or it.state == fsm.IDLE:
            return None
        return Holding("BTCUSDT", 1, float(it.pos[LEG_B]), float(it.pos[LEG_A]), 0,
                       2**62)

    async def open_from_strategy(self, cfg: FundingConfig) -> Any:
        assert self.strategy is not None
        with trio.fail_after(5):
            while True:
                (d,) = self.strategy.evaluate(int(now_ms()))
                if d.action is Action.OPEN:
                    break
                await trio.sleep(0.02)
        q = self.strategy.quotes["BTCUSDT"]
        self.intent = TwoLegIntent(
            "e2e", LegSpec("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP, Side.SELL,
                           self.strategy.perp_instruments["BTCUSDT"].lot_size),
            # the simulator keeps a spot buy's 0.1 % fee in BTC, like Bybit: the buy is sized up
            LegSpec("bybit", "BTCUSDT", InstrumentKind.SPOT, Side.BUY, Decimal("0.001"),
                    buy_fee_base_rate=Decimal("0.001")),
            d.qty, LegRiskConfig.from_funding(cfg), q.mark)
        await self.send(self.intent.open(int(now_ms())))
        return d


@pytest.fixture
async def sim(nursery: trio.Nursery) -> AsyncIterator[tuple[Exchange, str]]:
    ex = Exchange(seed=5, now_ms=int(now_ms()))
    ex.add_account(KEY, SECRET, usdt=100_000.0, coins={"BTC": 0.0})
    server = BybitSimServer(ex, tick_s=0.03)
    base = await nursery.start(server.serve)
    yield ex, base


async def until(cond: Any) -> None:
    with trio.fail_after(8.0):
        while not cond():  # noqa: ASYNC110 - polling state other tasks change
            await trio.sleep(0.02)


CFG = FundingConfig(symbols=["BTCUSDT"], pre_event_open_minutes=0, min_expected_apr=0.05,
                    exit_apr=0.01, expected_hold_hours=24, notional_usd=600,
                    leg_risk_budget_usd_s=600.0, leg_deadline_s=2.0, leg_unwind_reserve_s=0.5)


async def test_enter_hedge_receive_funding_close_on_flip(sim: tuple[Exchange, str],
                                                         nursery: trio.Nursery) -> None:
    ex, base = sim
    ex.set_funding("BTCUSDT", 0.001, interval_ms=3_600_000)  # 1 h, 876 % APR: clear entry
    shell = Shell(base, nursery)
    await shell.start(CFG)
    d = await shell.open_from_strategy(CFG)
    assert d.direction == 1
    it = shell.intent
    assert it is not None
    await until(lambda: it.state == fsm.HEDGED)
    # the spot leg is what arrived after the BTC fee, and that is what the venue holds
    assert it.pos[LEG_A] == -d.qty and 0 < d.qty - it.pos[LEG_B] < Decimal("0.001")
    assert ex.accounts[KEY].coins["BTC"] == pytest.approx(float(it.pos[LEG_B]), abs=1e-12)
    assert ex.accounts[KEY].positions["BTCUSDT"][0] == pytest.approx(-float(d.qty))
    # a settlement while held: the short perp receives funding
    ex.set_funding("BTCUSDT", 0.001, next_funding_ms=int(now_ms()) + 100)
    await until(lambda: bool(shell.settlements))
    assert shell.settlements[0].amount > 0
    # the rate flips: the strategy closes, the intent flattens both legs
    ex.set_funding("BTCUSDT", -0.0005)
    assert shell.strategy is not None
    h = shell.holding()
    assert h is not None
    shell.strategy.holdings["BTCUSDT"] = h
    with trio.fail_after(5):
        while True:
            (dd,) = shell.strategy.evaluate(int(now_ms()))
            if dd.action is Action.CLOSE:
                break
            await trio.sleep(0.02)
    assert dd.reason == "funding sign flipped"
    await shell.send(it.close(int(now_ms())))
    await until(lambda: it.state == fsm.IDLE)
    assert ex.accounts[KEY].positions["BTCUSDT"][0] == 0
    # sold all it held down to the leg's lot: the rest is the dust the intent also books
    assert ex.accounts[KEY].coins["BTC"] == pytest.approx(float(it.pos[LEG_B]), abs=1e-12)
    assert 0 <= it.pos[LEG_B] < Decimal("0.001")
    assert not it.anomalies


async def test_lagging_spot_leg_is_unwound_within_the_budget(sim: tuple[Exchange, str],
                                                             nursery: trio.Nursery) -> None:
    ex, base = sim
    ex.set_funding("BTCUSDT", 0.001, interval_ms=3_600_000)
    ex.faults.lag_ms = {"spot": 60_000.0}  # the second leg never matches in time
    shell = Shell(base, nursery)
    await shell.start(CFG)
    await shell.open_from_strategy(CFG)
    it = shell.intent
    assert it is not None
    await until(lambda: (fsm.HEDGING, fsm.HEDGE_FAIL, fsm.UNWINDING) in it.transitions)
    await until(lambda: it.state == fsm.IDLE)  # hedge canceled, perp bought back
    assert it.risk_usd_s <= CFG.leg_risk_budget_usd_s
    assert it.fail_reason in ("leg-risk budget", "hard deadline")
    assert ex.accounts[KEY].positions["BTCUSDT"][0] == 0


async def test_kill_flattens_both_legs_reduce_only(sim: tuple[Exchange, str],
                                                   nursery: trio.Nursery) -> None:
    ex, base = sim
    ex.set_funding("BTCUSDT", 0.001, interval_ms=3_600_000)
    shell = Shell(base, nursery)
    await shell.start(CFG)
    await shell.open_from_strategy(CFG)
    it = shell.intent
    assert it is not None
    await until(lambda: it.state == fsm.HEDGED)
    await shell.send(it.close(int(now_ms())))
    await until(lambda: it.state == fsm.IDLE)
    perp_closes = [o for o in ex.accounts[KEY].orders.values()
                   if o.category == "linear" and o.reduce_only]
    assert len(perp_closes) == 1 and perp_closes[0].status == "Filled"
    assert ex.accounts[KEY].positions["BTCUSDT"][0] == 0
    assert ex.accounts[KEY].coins["BTC"] == pytest.approx(float(it.pos[LEG_B]), abs=1e-12)
    assert 0 <= it.pos[LEG_B] < Decimal("0.001")
