"""The one depth walk both paper venues fill by (``engine/core/depth.py``): its rules, and, on
random books, the same result as each venue's own walk before they shared it (kept verbatim
below as oracles)."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.depth import floor_to_lot, walk_depth

D = Decimal


def old_hyperliquid_walk(levels: list[tuple[float, float]], is_buy: bool, limit: float,
                         want: Decimal, decimals: int) -> list[tuple[float, Decimal]]:
    """``engine/venues/paper.py`` ``_walk`` before (with its ``_floor``)."""
    def floor(x: Decimal) -> Decimal:
        return x.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR)

    if want <= 0:
        return []
    out: list[tuple[float, Decimal]] = []
    left = want
    for px, sz in levels:
        if left <= 0:
            break
        if (is_buy and px > limit) or (not is_buy and px < limit):
            break
        if sz <= 0:
            continue
        take = floor(min(left, Decimal(repr(sz))))
        if take <= 0:
            continue
        out.append((px, take))
        left -= take
    return out


def old_two_leg_walk(levels: list[list[float]], is_buy: bool, limit: Decimal | None,
                     want: Decimal, lot: Decimal) -> list[tuple[float, Decimal]]:
    """``engine/core/paper_two_leg.py`` ``_take``'s loop before (without the fills)."""
    def within(px: float) -> bool:
        assert limit is not None
        return px <= float(limit) if is_buy else px >= float(limit)

    out: list[tuple[float, Decimal]] = []
    for px, size in levels:
        if want <= 0:
            break
        if size <= 0:
            continue
        if limit is not None and not within(px):
            break
        avail = (Decimal(repr(size)) / lot).to_integral_value(rounding="ROUND_DOWN") * lot
        take = min(want, avail)
        if take <= 0:
            continue
        out.append((px, take))
        want -= take
    return out


@st.composite
def books(draw: st.DrawFn) -> tuple[bool, list[tuple[float, float]]]:
    is_buy = draw(st.booleans())
    n = draw(st.integers(0, 6))
    steps = draw(st.lists(st.integers(1, 50), min_size=n, max_size=n))
    sizes = draw(st.lists(st.one_of(st.just(0.0), st.floats(0.0, 5.0, allow_nan=False),
                                    st.sampled_from([0.001, 0.01, 0.015, 1.0, 2.5])),
                          min_size=n, max_size=n))
    px, levels = 100.0, []
    for step, size in zip(steps, sizes, strict=True):
        px = px + step * 0.25 if is_buy else px - step * 0.25  # best first: worse each level
        levels.append((px, size))
    return is_buy, levels


@settings(max_examples=400, deadline=None)
@given(book=books(), decimals=st.integers(0, 4), want_lots=st.integers(0, 800),
       limit_off=st.one_of(st.none(), st.integers(-4, 60)))
def test_the_shared_walk_is_each_venues_old_walk(book: tuple[bool, list[tuple[float, float]]],
                                                 decimals: int, want_lots: int,
                                                 limit_off: int | None) -> None:
    is_buy, levels = book
    lot = Decimal(1).scaleb(-decimals)
    want = want_lots * lot
    limit = None if limit_off is None else (100.0 + limit_off * 0.25 if is_buy
                                            else 100.0 - limit_off * 0.25)
    got = [(levels[i][0], q) for i, q in walk_depth(levels, is_buy, limit, want, lot)]
    if limit is not None:
        assert got == old_hyperliquid_walk(levels, is_buy, limit, want, decimals)
    two_leg_limit = None if limit is None else Decimal(repr(limit))
    assert got == old_two_leg_walk([list(lv) for lv in levels], is_buy, two_leg_limit, want,
                                   lot)
    assert sum((q for _, q in got), D(0)) <= want
    assert all(q > 0 and q % lot == 0 for _, q in got)


def test_walks_best_first_up_to_the_limit_each_level_down_to_the_lot() -> None:
    asks = [(100.0, 0.5), (100.5, 0.0), (101.0, 0.019), (101.5, 0.004), (102.0, 3.0)]
    lot = D("0.01")
    assert walk_depth(asks, True, 101.5, D("2"), lot) == [(0, D("0.5")), (2, D("0.01"))]
    assert walk_depth(asks, True, None, D("2"), lot) == [
        (0, D("0.5")), (2, D("0.01")), (4, D("1.49"))]  # a market order: any price
    assert walk_depth(asks, True, 100.0, D("0.2"), lot) == [(0, D("0.2"))]
    assert walk_depth(asks, True, 99.0, D("2"), lot) == []  # nothing within the limit
    assert walk_depth(asks, True, None, D("0"), lot) == []
    bids = [(99.0, 1.0), (98.0, 1.0)]
    assert walk_depth(bids, False, 98.5, D("5"), lot) == [(0, D("1.00"))]


def test_floor_to_lot() -> None:
    assert floor_to_lot(D("1.239"), D("0.01")) == D("1.23")
    assert floor_to_lot(D("0.0099"), D("0.01")) == 0
    assert floor_to_lot(D("7"), D("2.5")) == D("5")
