"""Strategies are plug-ins behind one interface (engine/strategies/base.py): events in, intents
out, injected clock. The HIP-3 dislocation detector (the observe core with the plug-in's face,
what every Hyperliquid shell runs) and the funding/basis strategy are its two implementations.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import FundingConfig
from engine.core.core import ObserveCore
from engine.core.detector import Signal
from engine.core.neutral import BookTop, FundingQuote, Instrument, InstrumentKind, OracleUpdate
from engine.core.types import MarketSpec
from engine.strategies.base import IndexedStrategy, Strategy
from engine.strategies.dislocation import DislocationStrategy
from engine.strategies.funding_basis import Action, FundingBasisStrategy
from tests.core.helpers import T0, make_core, make_strategy

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
    """The same frames as neutral events (``on_event``), by index (``on_book_top`` /
    ``on_oracle``, the shells' face) and straight into a plain observe core give the same
    signals, timers and market state."""
    direct = make_core(RELAXED, coins=COINS)
    strat = make_strategy(RELAXED, coins=COINS)
    indexed = make_strategy(RELAXED, coins=COINS)
    assert isinstance(strat, Strategy) and isinstance(strat, IndexedStrategy)
    assert strat.symbols == COINS and strat.name == "hip3_dislocation"
    now, server = T0, 0
    for is_bbo, idx, a, b, dt in frames:
        now += dt
        due = direct.next_timer_ms()
        assert strat.next_timer_ms() == due
        assert indexed.next_timer_ms() == due
        if due is not None and due <= now:
            want = [_sig(s) for s in direct.on_timer(now)]
            assert [_sig(s) for s in strat.on_timer(now)] == want
            assert [_sig(s) for s in indexed.on_timer(now)] == want
        if is_bbo:
            server += 1
            bid = round(100 + a, 2)
            ask = round(bid + b, 2)
            got = strat.on_event(BookTop("hyperliquid", COINS[idx], InstrumentKind.LINEAR_PERP,
                                         bid, 5.0, ask, 5.0, server), now)
            by_index = indexed.on_book_top(idx, server, bid, 5.0, ask, 5.0, now)
            sig = direct.on_bbo(idx, server, bid, 5.0, ask, 5.0, now)
        else:
            oracle = round(100 + a, 3)
            got = strat.on_event(OracleUpdate("hyperliquid", COINS[idx], oracle, oracle, server),
                                 now)
            by_index = indexed.on_oracle(idx, oracle, oracle, now)
            sig = direct.on_ctx(idx, oracle, oracle, now)
        want_one = [] if sig is None else [_sig(sig)]
        assert [_sig(s) for s in got] == want_one
        assert ([] if by_index is None else [_sig(by_index)]) == want_one
    for s_ in (strat, indexed):
        assert s_.signals_total == direct.signals_total
        assert s_.evaluations == direct.evaluations
        assert [m.view() for m in s_.markets] == [m.view() for m in direct.markets]


def test_a_dislocation_comes_out_as_a_signal_intent() -> None:
    strat = make_strategy(RELAXED, coins=COINS)
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
    strat = make_strategy(RELAXED, coins=COINS)
    other = BookTop("bybit", "xyz:GOLD", InstrumentKind.LINEAR_PERP, 99.0, 1.0, 99.5, 1.0, 1)
    unknown = OracleUpdate("hyperliquid", "xyz:COPPER", 1.0, 1.0, 1)
    for ev in (other, unknown, "noise", None):
        assert list(strat.on_event(ev, T0)) == []
    assert strat.evaluations == 0
    # an empty side reaches the core as no price and no size
    strat.on_event(BookTop("hyperliquid", "xyz:GOLD", InstrumentKind.LINEAR_PERP, None, 3.0,
                           100.0, 1.0, 1), T0)
    m = strat.markets[0]
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


def test_the_indexed_face_is_the_observe_cores_own_code() -> None:
    """No wrapper on the hot path: the shells' per-frame calls are the core's functions."""
    assert DislocationStrategy.on_book_top is ObserveCore.on_bbo
    assert DislocationStrategy.on_oracle is ObserveCore.on_ctx
    strat = make_strategy(RELAXED, coins=COINS)
    assert strat.instrument_index("xyz:SILVER") == 1 and strat.instrument_index("BTC") is None


def test_every_hyperliquid_shell_runs_the_strategy_plug_in(tmp_path: Any) -> None:
    """Observe hands frames to a DislocationStrategy; paper's TradingCore takes one."""
    from engine.app import CoreHandler, ObserveApp
    from engine.io.records import RecordWriter
    from engine.trading_app import TradingApp, TradingHandler
    from tests.core.helpers import make_config

    specs = [MarketSpec(i, c, 110000 + i, 2) for i, c in enumerate(COINS)]
    for mode, cls in (("observe", ObserveApp), ("paper", TradingApp)):
        cfg = attrs.evolve(make_config(RELAXED), mode=mode)
        cfg = attrs.evolve(cfg, records=attrs.evolve(cfg.records, dir=str(tmp_path / mode)),
                           ops=attrs.evolve(cfg.ops, state_dir=str(tmp_path / mode),
                                            http_enabled=False))
        app = cls(cfg)
        writer = RecordWriter(tmp_path / mode, flush_interval_ms=1000.0, fsync_interval_ms=0.0)
        app.writer = writer
        app.build(specs, writer)
        assert isinstance(app.core, DislocationStrategy) and app.core.mode == mode
        if mode == "observe":
            assert isinstance(app.handler, CoreHandler) and app.handler.strategy is app.core
        else:
            assert isinstance(app, TradingApp) and app.trading is not None
            assert isinstance(app.handler, TradingHandler)
            assert app.trading.strategy is app.core
        writer.close()
