"""Strategies are plug-ins behind one interface (engine/strategies/base.py): events in, intents
out, injected clock. The HIP-3 dislocation detector (a thin adapter over ObserveCore) and the
funding/basis strategy are its two implementations.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import FundingConfig
from engine.core.detector import Signal
from engine.core.neutral import BookTop, FundingQuote, Instrument, InstrumentKind, OracleUpdate
from engine.strategies.base import Strategy
from engine.strategies.dislocation import DislocationStrategy
from engine.strategies.funding_basis import Action, FundingBasisStrategy
from tests.core.helpers import T0, make_core

COINS = ("xyz:GOLD", "xyz:SILVER")
RELAXED = """
[detector]
session_aware = false
min_consecutive_moves = 0
oracle_direction_filter = false
min_edge_above_baseline_bps = 0.0
min_confidence = 0.0
min_quote_lag_ms = 40.0
"""


def _sig(s: Signal) -> dict[str, Any]:
    return dict(s.fields)


# one frame: (bbo?, market, a, b, dt) — bbo: bid = 100 + a, ask = bid + b; ctx: oracle 100 + a
_FRAMES = st.lists(
    st.tuples(st.booleans(), st.integers(0, 1), st.floats(-2.0, 2.0), st.floats(0.01, 0.5),
              st.floats(0.0, 80.0)),
    min_size=1, max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(_FRAMES)
def test_the_dislocation_strategy_is_the_observe_core(frames: list[Any]) -> None:
    """The same frames through the adapter and straight into a twin core give the same
    signals, timers and market state."""
    direct = make_core(RELAXED, coins=COINS)
    strat = DislocationStrategy(make_core(RELAXED, coins=COINS))
    assert isinstance(strat, Strategy)
    now, server = T0, 0
    for is_bbo, idx, a, b, dt in frames:
        now += dt
        due = direct.next_timer_ms()
        assert strat.next_timer_ms() == due
        if due is not None and due <= now:
            want = [_sig(s) for s in direct.on_timer(now)]
            assert [_sig(s) for s in strat.on_timer(now)] == want
        if is_bbo:
            server += 1
            bid = round(100 + a, 2)
            ask = round(bid + b, 2)
            got = strat.on_event(BookTop("hyperliquid", COINS[idx], InstrumentKind.LINEAR_PERP,
                                         bid, 5.0, ask, 5.0, server), now)
            sig = direct.on_bbo(idx, server, bid, 5.0, ask, 5.0, now)
        else:
            oracle = round(100 + a, 3)
            got = strat.on_event(OracleUpdate("hyperliquid", COINS[idx], oracle, oracle, server),
                                 now)
            sig = direct.on_ctx(idx, oracle, oracle, now)
        assert [_sig(s) for s in got] == ([] if sig is None else [_sig(sig)])
    assert strat.core.signals_total == direct.signals_total
    assert strat.core.evaluations == direct.evaluations


def test_a_dislocation_comes_out_as_a_signal_intent() -> None:
    strat = DislocationStrategy(make_core(RELAXED, coins=COINS))
    book = BookTop("hyperliquid", "xyz:GOLD", InstrumentKind.LINEAR_PERP, 99.99, 5.0, 100.01,
                   5.0, 1)
    assert strat.on_event(book, T0) == ()
    assert strat.on_event(OracleUpdate("hyperliquid", "xyz:GOLD", 100.0, 100.0, 1), T0 + 1) == ()
    # the oracle jumps, the book stays: once the quote-lag window opens the ask is stale
    assert strat.on_event(OracleUpdate("hyperliquid", "xyz:GOLD", 100.6, 100.6, 2),
                          T0 + 2) == ()
    got: list[Signal] = []
    while (due := strat.next_timer_ms()) is not None:
        got += strat.on_timer(due)
    [sig] = got
    assert sig.market_key == "xyz:GOLD" and sig.side == "buy" and sig.best_px == 100.01


def test_the_dislocation_strategy_ignores_what_is_not_its_own() -> None:
    strat = DislocationStrategy(make_core(RELAXED, coins=COINS))
    other = BookTop("bybit", "xyz:GOLD", InstrumentKind.LINEAR_PERP, 99.0, 1.0, 99.5, 1.0, 1)
    unknown = OracleUpdate("hyperliquid", "xyz:COPPER", 1.0, 1.0, 1)
    for ev in (other, unknown, "noise", None):
        assert list(strat.on_event(ev, T0)) == []
    assert strat.core.evaluations == 0
    # an empty side reaches the core as no price and no size
    strat.on_event(BookTop("hyperliquid", "xyz:GOLD", InstrumentKind.LINEAR_PERP, None, 3.0,
                           100.0, 1.0, 1), T0)
    m = strat.core.markets[0]
    assert m.bid_px is None and m.bid_sz is None and m.ask_px == 100.0


H = 3_600_000
NOW = 1_700_000_000_000
SPOT = Instrument("bybit", "BTCUSDT", InstrumentKind.SPOT, Decimal("0.1"), Decimal("0.000001"),
                  Decimal("0.000011"), Decimal("5"))
PERP = Instrument("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP, Decimal("0.1"),
                  Decimal("0.001"), Decimal("0.001"), Decimal("5"), funding_interval_ms=8 * H)


def _quote(rate: float, next_ms: int, ts: int = NOW) -> FundingQuote:
    return FundingQuote("bybit", "BTCUSDT", rate, next_ms, 8 * H, 60_000.0, 60_000.0,
                        59_999.5, 60_000.5, ts)


def _spot(ts: int) -> BookTop:
    return BookTop("bybit", "BTCUSDT", InstrumentKind.SPOT, 59_999.5, 1.0, 60_000.5, 1.0, ts)


def test_the_funding_strategy_behind_the_interface() -> None:
    cfg = FundingConfig(symbols=["BTCUSDT"], pre_event_open_minutes=30, notional_usd=3000,
                        max_total_notional_usd=5000, expected_hold_hours=72)
    s = FundingBasisStrategy(cfg, {"BTCUSDT": SPOT}, {"BTCUSDT": PERP})
    assert isinstance(s, Strategy) and s.name == "funding_basis"
    assert s.on_event("noise", NOW) == [] and s.next_timer_ms() is None
    (d,) = s.on_event(_quote(0.001, NOW + H), NOW)
    assert d.reason == "no quote or spot book yet"
    # an hour before the settlement: outside the 30-minute pre-event window
    (d,) = s.on_event(_spot(NOW), NOW)
    assert d.action is Action.SKIP and d.reason == "outside the pre-event window"
    assert d == s.evaluate(NOW)[0]
    # the window opens at settlement - 30 min: the timer wakes the strategy then
    opens = NOW + H - 30 * 60_000
    assert s.next_timer_ms() == opens
    for ev in (_quote(0.001, NOW + H, opens - 5), _spot(opens - 5)):  # fresh, still outside
        assert s.on_event(ev, opens - 5)[0].action is Action.SKIP
    assert s.next_timer_ms() == opens
    (d,) = s.on_timer(opens)
    assert d.action is Action.OPEN
    assert s.next_timer_ms() == NOW + H  # then the settlement itself
    # a symbol the strategy does not trade: state kept, no decision
    eth = FundingQuote("bybit", "ETHUSDT", 0.001, NOW + H, 8 * H, 1.0, 1.0, 1.0, 1.0, NOW)
    assert s.on_event(eth, opens) == [] and "ETHUSDT" in s.quotes
