"""The paper venue's ledger of liquidity taken per displayed quote, kept per market.

It used to be one dict over every market, rebuilt whole (a scan of every entry) at each
execution once it held more than 4096 entries, i.e. at every execution of a long replay (100
min of 40 markets reach it). Now each market has its own dict and a count of all entries
decides the same pruning of the trading market's stale quotes. Oracle: the previous code, kept
verbatim below on a subclass. Both venues, each with its own core, get the same random quotes
(including quote times that go back to an earlier quote's, as after a reconnect, where a stale
entry still matches) and orders; the pruning bound is lowered so pruning happens all the time.
After every order the fills, executions, the venue's positions and the ledger's content must be
the same.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.venues.paper as paper_mod
from engine.core.market import MarketState
from engine.core.orders import ENTRY, Order
from engine.venues.hyperliquid.rounding import to_decimal
from engine.venues.paper import _ZERO, SOURCE_TOP, PaperVenue, _Book, _floor, _walk

from .helpers import T0, make_ready, make_trading

COINS = ("xyz:GOLD", "xyz:SILVER", "xyz:CL")


class OldTakenVenue(PaperVenue):
    """``_match`` and ``_book`` as they were: one dict keyed (coin, is_buy, quote time, px)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._taken = {}  # type: ignore[assignment]

    def _match(self, o: Order, cap: Decimal,
               now_ms: float) -> tuple[list[tuple[float, Decimal]], str]:
        m = self._market(o)
        dec = m.spec.sz_decimals
        book = self._book(o, m, now_ms)
        if book is None:
            return [], SOURCE_TOP
        full = _walk(book, o.is_buy, o.px, cap, dec)
        if not full or self._partial_ratio >= 1.0:
            taken = full
        else:
            total = sum((sz for _, sz in full), _ZERO)
            want = _floor(total * to_decimal(self._partial_ratio), dec)
            taken = _walk(book, o.is_buy, o.px, want, dec) if want > 0 else []
        for px, sz in taken:
            key = (o.coin, o.is_buy, m.bbo_time_ms, px)
            self._taken[key] = self._taken.get(key, _ZERO) + sz  # type: ignore[index,call-overload]
        return taken, book.source

    def _book(self, o: Order, m: MarketState, now_ms: float) -> _Book | None:
        px, sz = (m.ask_px, m.ask_sz) if o.is_buy else (m.bid_px, m.bid_sz)
        if px is None or sz is None:
            return None
        shown = [(px, sz)]
        source = SOURCE_TOP
        if self.levels is not None:
            got = self.levels(o.coin)
            if got is None:
                self._fallback(o.coin, now_ms)
            else:
                source = paper_mod.SOURCE_L2
                self.stats.l2_walks += 1
                if o.is_buy:
                    shown.extend(lv for lv in got[1] if lv[0] > px)
                else:
                    shown.extend(lv for lv in got[0] if lv[0] < px)
        taken: Any = self._taken
        if len(taken) > paper_mod.TAKEN_PRUNE_AT:
            self._taken = {k: v for k, v in taken.items()
                           if k[0] != o.coin or k[2] >= m.bbo_time_ms}
        levels = []
        for lpx, lsz in shown:
            avail = to_decimal(lsz) - self._taken.get(  # type: ignore[call-overload]
                (o.coin, o.is_buy, m.bbo_time_ms, lpx), _ZERO)
            if avail > 0:
                levels.append((lpx, float(avail)))
        return _Book(levels, source)


def _depth(core: Any) -> Any:
    def levels(coin: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]] | None:
        m = core.strategy.by_coin[coin]
        if m.ask_px is None or m.bid_px is None:
            return None
        return ([(m.bid_px - 0.01, 0.4), (m.bid_px - 0.02, 0.7)],
                [(m.ask_px + 0.01, 0.4), (m.ask_px + 0.02, 0.7)])
    return levels


QUOTE = st.tuples(st.just("quote"), st.integers(0, len(COINS) - 1),
                  st.sampled_from(["next", "next", "next", "same", "back"]),
                  st.sampled_from([99.99, 100.0, 100.01]), st.sampled_from([0.2, 0.5, 1.3]))
ORDER = st.tuples(st.just("order"), st.integers(0, len(COINS) - 1), st.booleans(),
                  st.sampled_from(["0.10", "0.30", "0.55", "1.20"]), st.sampled_from([0, 1, 2]))
STEP = st.one_of(QUOTE, ORDER, ORDER)


def _ledger(v: PaperVenue) -> dict[tuple[Any, ...], Decimal]:
    if isinstance(v, OldTakenVenue):
        return dict(v._taken)  # type: ignore[arg-type]
    flat = {}
    for coin, mine in v._taken.items():
        for k, sz in mine.items():
            flat[(coin, *k)] = sz
    assert v._taken_n == len(flat)
    return flat


def _seen(v: PaperVenue) -> tuple[Any, ...]:
    return ([(f.tid, f.coin, f.is_buy, f.px, f.sz, f.fee) for f in v.fills],
            [(e.cloid, e.filled_sz, e.avg_px, e.levels, e.source) for e in v.executions],
            v.positions(), _ledger(v))


@pytest.mark.parametrize("depth", [False, True], ids=["top", "l2"])
@settings(max_examples=150, deadline=None)
@given(steps=st.lists(STEP, max_size=60), bound=st.sampled_from([0, 3, 8]))
def test_per_market_ledger_equals_the_single_dict(depth: bool, steps: list[tuple[Any, ...]],
                                                  bound: int) -> None:
    venues = []
    for cls in (PaperVenue, OldTakenVenue):
        core, _ = make_trading(coins=COINS)
        make_ready(core)
        venues.append(cls(core, 0.0, 0.9, tid_prefix="t",
                          levels=_depth(core) if depth else None))
    times = [[1] for _ in COINS]  # each market's quote times so far
    now = T0
    n = 0
    saved = paper_mod.TAKEN_PRUNE_AT
    paper_mod.TAKEN_PRUNE_AT = bound
    try:
        for step in steps:
            now += 1.0
            if step[0] == "quote":
                _, i, how, px, sz = step
                hist = times[i]
                t = hist[-1] + 1 if how == "next" else hist[-1] if how == "same" else hist[0]
                hist.append(t)
                for v in venues:
                    m = v.core.strategy.markets[i]
                    m.bbo_time_ms = t
                    m.bid_px, m.bid_sz, m.ask_px, m.ask_sz = px - 0.02, sz, px, sz
                continue
            _, i, is_buy, size, ticks = step
            n += 1
            for v in venues:
                m = v.core.strategy.markets[i]
                limit = (m.ask_px + 0.01 * ticks) if is_buy else (m.bid_px - 0.01 * ticks)
                o = Order(f"0x{n:032x}", COINS[i], i, m.spec.asset_id, is_buy, f"{limit:.2f}",
                          size, False, ENTRY, now)
                v.submit(o, now)
                assert v.on_timer(now) == 1
            assert _seen(venues[0]) == _seen(venues[1])
    finally:
        paper_mod.TAKEN_PRUNE_AT = saved
    assert venues[0].stats.executed == n
