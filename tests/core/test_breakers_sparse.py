"""The housekeeping tick's market-move check told only what changed is ``on_prices`` of the
whole list, observably.

``TradingCore`` used to call ``CircuitBreakers.on_prices`` with every market's mark at each
housekeeping tick (every ~100 ms: O(markets) per tick, mostly re-stamping quiet windows). It
now gives the breakers only the markets whose mark or halt changed, through
:class:`PriceTicks` and :meth:`CircuitBreakers.on_prices_changed`, which defers the re-stamps.
Oracle: a second ``CircuitBreakers`` driven the old way (``on_prices`` of the whole list at each
tick), through the same random sequences of price changes (bad ones too), markets leaving and
joining the list, ticks (repeated times, regressions, a non-finite time), direct ``on_price``
calls and resets. Trips, snapshot, halted markets and — once the deferred re-stamps are applied —
every window must match after every step.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import BreakersConfig
from engine.core.breakers import CircuitBreakers, PriceTicks

T0 = 1_767_000_000_000.0
MARKETS = ["A", "B", "C", ""]

PRICE = st.one_of(st.none(), st.sampled_from([100.0, 100.0, 101.0, 99.0, 103.0, 97.0, 110.0,
                                              90.0, math.nan, -1.0, math.inf]))
STEP = st.one_of(
    st.tuples(st.just("px"), st.integers(0, len(MARKETS) - 1), PRICE),
    st.tuples(st.just("tick"), st.just(0),
              st.sampled_from([0.0, 100.0, 100.0, 100.0, 250.0, 1000.0, 5000.0, -50.0,
                               math.nan])),
    st.tuples(st.just("on_price"), st.integers(0, len(MARKETS) - 1),
              st.sampled_from([100.0, 102.0, 95.0, math.nan])),
    st.tuples(st.just("reset"), st.integers(-1, len(MARKETS) - 1), st.just(None)),
)


def _windows(cb: CircuitBreakers) -> dict[str, tuple[object, ...]]:
    return {k: (list(w.lows), list(w.highs), w.last_ms, w.last_px)
            for k, w in cb.windows.items()}


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@settings(max_examples=500, deadline=None)
@given(st.lists(STEP, max_size=120), st.sampled_from([2.0, 5.0, 10.0]),
       st.sampled_from([0.3, 1.0, 60.0]))
def test_sparse_ticks_equal_whole_list_ticks(steps: list[tuple[str, int, object]],
                                             pct: float, window_s: float) -> None:
    cfg = BreakersConfig(market_move_pct=pct, market_move_window_s=window_s)
    old = CircuitBreakers(cfg, 10_000.0)
    new = CircuitBreakers(cfg, 10_000.0)
    prices: list[float | None] = [None] * len(MARKETS)
    ticks = PriceTicks(len(MARKETS), lambda i: (MARKETS[i], prices[i]))
    now = T0
    for kind, i, arg in steps:
        if kind == "px":
            prices[i] = arg  # type: ignore[assignment]
            ticks.changed(i)
        elif kind == "tick":
            now = now + arg if math.isfinite(arg) else arg  # type: ignore[operator]
            want = old.on_prices([(m, px) for m, px in zip(MARKETS, prices, strict=True)
                                  if px is not None], now)
            got = ticks.tick(new, now)
            assert [t.to_dict() for t in got] == [t.to_dict() for t in want]
            if not math.isfinite(now):
                now = T0 + 10_000_000.0
        elif kind == "on_price":
            at = now + 10.0 if math.isfinite(now) else now
            assert ([t.to_dict() for t in new.on_price(MARKETS[i], arg, at)]  # type: ignore[arg-type]
                    == [t.to_dict() for t in old.on_price(MARKETS[i], arg, at)])  # type: ignore[arg-type]
        else:
            market = None if i < 0 else MARKETS[i] or None
            assert ([t.to_dict() for t in new.reset("market_move", market)]
                    == [t.to_dict() for t in old.reset("market_move", market)])
        assert new.snapshot() == old.snapshot()
        assert new.halted == old.halted
        new.materialize()
        got_w, want_w = _windows(new), _windows(old)
        assert got_w.keys() == want_w.keys()
        for k in want_w:
            assert got_w[k][:3] == want_w[k][:3], k
            assert _same(got_w[k][3], want_w[k][3]), k  # type: ignore[arg-type]


def test_quiet_market_is_only_restamped_later() -> None:
    """The point of the change: an unchanged market is not re-checked at each tick, yet its
    window's newest entry carries the latest tick's time (so it is not expired too early)."""
    cfg = BreakersConfig(market_move_pct=5.0, market_move_window_s=1.0)
    cb = CircuitBreakers(cfg, 10_000.0)
    prices: list[float | None] = [100.0, 200.0]
    seen: list[int] = []

    def entry(i: int) -> tuple[str, float | None]:
        seen.append(i)
        return ("A", "B")[i], prices[i]

    ticks = PriceTicks(2, entry)
    ticks.tick(cb, T0)
    assert sorted(seen) == [0, 1]
    seen.clear()
    for k in range(1, 30):
        assert ticks.tick(cb, T0 + 100.0 * k) == []
    assert seen == []  # nothing changed: no market was looked at
    prices[0] = 104.0  # +4 % against a price 2.9 s old but re-stamped at every tick
    ticks.changed(0)
    assert ticks.tick(cb, T0 + 3000.0) == []
    assert seen == [0]
    cb.materialize()
    assert list(cb.windows["B"].lows) == [(T0 + 3000.0, 200.0)]
    prices[0] = 110.0  # +10 % from 100 (re-stamped at 3000, still in the window): trips
    ticks.changed(0)
    trips = ticks.tick(cb, T0 + 3100.0)
    assert [t.market for t in trips] == ["A"]


def test_new_breakers_or_a_reset_pass_every_market_again() -> None:
    cfg = BreakersConfig(market_move_pct=5.0, market_move_window_s=60.0)
    prices: list[float | None] = [100.0]
    seen: list[int] = []

    def entry(i: int) -> tuple[str, float | None]:
        seen.append(i)
        return "A", prices[i]

    ticks = PriceTicks(1, entry)
    cb = CircuitBreakers(cfg, 10_000.0)
    ticks.tick(cb, T0)
    prices[0] = 120.0
    ticks.changed(0)
    assert [t.market for t in ticks.tick(cb, T0 + 100.0)] == ["A"]
    seen.clear()
    ticks.tick(cb, T0 + 200.0)
    assert seen == []  # halted by the breaker: skipped, as on_prices skips it
    cb.reset("market_move", "A")
    ticks.tick(cb, T0 + 300.0)
    assert seen == [0]  # back in: checked again
    assert "A" in cb.windows
    seen.clear()
    other = CircuitBreakers(cfg, 10_000.0)  # e.g. restored from the journal
    ticks.tick(other, T0 + 400.0)
    assert seen == [0] and "A" in other.windows
