"""The market-move breaker's repeated-price fast path is the old per-push code, observably.

``CircuitBreakers.on_price`` skips the min/max and move check when a market's price equals the
last one it checked (a quiet market at every housekeeping tick). Oracle: the previous
``on_price``, verbatim below, driven by the same random sequences of prices, times (including
regressions and non-finite values) and resets; trips, snapshot, bad-input counts and the
window deques must match after every step.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import BreakersConfig
from engine.core.breakers import MARKET_MOVE, CircuitBreakers, Trip, _Window, reached

T0 = 1_767_000_000_000.0


class OldBreakers(CircuitBreakers):
    """``on_price`` as it was before the fast path (the oracle)."""

    def on_price(self, market: str, px: float, now_ms: float) -> list[Trip]:
        threshold = self.cfg.market_move_pct
        if threshold <= 0 or market in self.halted:
            return []
        if not self._good_time(now_ms, "price"):
            return []
        if not market:
            self._bad("price", "market", market, now_ms)
            return []
        if not (math.isfinite(px) and px > 0):
            self._bad("price", market, px, now_ms)
            return []
        w = self.windows.get(market)
        if w is None:
            w = self.windows[market] = _Window()
        if now_ms < w.last_ms:
            self._bad("price_time_regression", market, now_ms, w.last_ms)
            now_ms = w.last_ms
        w.last_ms = now_ms
        low, high = w.push(px, now_ms, self.window_ms)
        if px == low and px == high:
            return []
        up = (px / low - 1.0) * 100.0
        down = (1.0 - px / high) * 100.0
        if up >= down:
            move, ref, direction = up, low, "up"
        else:
            move, ref, direction = down, high, "down"
        if not reached(move, threshold):
            return []
        self.halted.add(market)
        del self.windows[market]
        detail = (f"{market} moved {direction} {move:.3f} % within "
                  f"{self.cfg.market_move_window_s:g} s: {ref:.6g} -> {px:.6g} "
                  f"(threshold {threshold:g} %); no new entries in {market}")
        return self._trip(MARKET_MOVE, market, move, threshold, detail, now_ms)


PRICES = st.sampled_from([100.0, 100.0, 101.0, 99.0, 103.0, 97.0, 110.0, 90.0, math.nan,
                          -1.0, math.inf])
STEP = st.one_of(
    st.tuples(st.just("px"), st.sampled_from(["A", "B", ""]), PRICES,
              st.sampled_from([0.0, 100.0, 100.0, 250.0, 1000.0, 5000.0, -50.0, math.nan])),
    st.tuples(st.just("reset"), st.sampled_from(["A", "B"]), st.just(0.0), st.just(0.0)),
)


def _windows(cb: CircuitBreakers) -> dict[str, tuple[list[tuple[float, float]], ...]]:
    return {k: (list(w.lows), list(w.highs), [w.last_ms]) for k, w in cb.windows.items()}


@settings(max_examples=400, deadline=None)
@given(st.lists(STEP, max_size=80), st.sampled_from([3.0, 5.0, 10.0]),
       st.sampled_from([1.0, 2.0, 60.0]))
def test_on_price_matches_the_old_code(steps: list[tuple[str, str, float, float]],
                                       pct: float, window_s: float) -> None:
    cfg = BreakersConfig(market_move_pct=pct, market_move_window_s=window_s)
    new, old = CircuitBreakers(cfg, 10_000.0), OldBreakers(cfg, 10_000.0)
    t = T0
    for op, market, px, dt in steps:
        if op == "reset":
            assert ([x.to_dict() for x in new.reset(MARKET_MOVE, market)]
                    == [x.to_dict() for x in old.reset(MARKET_MOVE, market)])
            continue
        now = t + dt if math.isfinite(dt) else dt
        if math.isfinite(now):
            t = max(t, now)
        got = [x.to_dict() for x in new.on_price(market, px, now)]
        want = [x.to_dict() for x in old.on_price(market, px, now)]
        assert got == want
        assert _windows(new) == _windows(old)
        assert new.snapshot() == old.snapshot()


def test_a_quiet_market_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pushes of an unchanged price skip the min/max push (fails on the old code, which
    pushed every time), the window still moves on, and a later jump still trips."""
    pushes: list[float] = []
    orig = _Window.push

    def counting(self: _Window, px: float, now_ms: float, window_ms: float
                 ) -> tuple[float, float]:
        pushes.append(px)
        return orig(self, px, now_ms, window_ms)

    monkeypatch.setattr(_Window, "push", counting)
    cb = CircuitBreakers(BreakersConfig(market_move_pct=5.0, market_move_window_s=1.0), 1e4)
    cb.on_price("A", 100.0, T0)
    cb.on_price("A", 102.0, T0 + 100)
    for i in range(2, 30):
        assert cb.on_price("A", 102.0, T0 + 100 * i) == []
    assert pushes == [100.0, 102.0]
    w = cb.windows["A"]
    assert list(w.lows) == list(w.highs) == [(T0 + 2900, 102.0)]
    assert cb.on_price("A", 120.0, T0 + 3000) != []


TICK = st.lists(st.tuples(st.sampled_from(["A", "B", "C", ""]), PRICES), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(TICK, st.sampled_from([0.0, 100.0, 1000.0, -50.0, math.nan]),
                          st.booleans()), max_size=40),
       st.sampled_from([0.0, 3.0, 10.0]), st.sampled_from([1.0, 60.0]))
def test_on_prices_is_on_price_of_each(ticks: list[tuple[list[tuple[str, float]], float, bool]],
                                       pct: float, window_s: float) -> None:
    """The housekeeping tick's batch call equals the old per-market calls (the oracle)."""
    cfg = BreakersConfig(market_move_pct=pct, market_move_window_s=window_s)
    new, old = CircuitBreakers(cfg, 10_000.0), OldBreakers(cfg, 10_000.0)
    t = T0
    for prices, dt, reset in ticks:
        if reset:
            new.reset(MARKET_MOVE, "A")
            old.reset(MARKET_MOVE, "A")
        now = t + dt if math.isfinite(dt) else dt
        if math.isfinite(now):
            t = max(t, now)
        want: list[Trip] = []
        for market, px in prices:
            want += old.on_price(market, px, now)
        got = new.on_prices(list(prices), now)
        assert [x.to_dict() for x in got] == [x.to_dict() for x in want]
        assert _windows(new) == _windows(old)
        assert new.snapshot() == old.snapshot()
