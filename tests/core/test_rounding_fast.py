"""The float fast path of IOC rounding equals the Decimal oracle
(engine/venues/hyperliquid/rounding.py).

``ioc_limit_price`` / ``ioc_wire`` / ``lot_size_wire`` must give exactly what
``slippage_limit_price`` / ``prepare_ioc`` / ``size_wire`` give (same string, same Reject, same
exception type) for every input: Hypothesis over the venue's rules (5 significant figures,
≤ 6 − szDecimals decimals, lot floor, buy up / sell down), with prices and sizes drawn both at
random and ON the grid (where float error would matter most), next to powers of ten, and junk.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.venues.hyperliquid import rounding as R
from engine.venues.hyperliquid.rounding import Reject

SZD = st.integers(0, 6)
SLIPS_BPS = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0, 8.0, 10.0, 25.0, 50.0, 100.0, 500.0]),
    st.floats(0.0, 2000.0, allow_nan=False),
)


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        r = fn(*args)
    except (ValueError, TypeError, ArithmeticError) as exc:
        return ("raises", type(exc))
    if isinstance(r, R.IocOrderPx):
        return (r.px, r.sz)
    return r


@st.composite
def grid_prices(draw: st.DrawFn) -> float:
    """A price exactly on some decimal grid (a venue price, a round number, …)."""
    digits = draw(st.integers(1, 99_999))
    exp = draw(st.integers(-8, 6))
    return float(Decimal(digits).scaleb(exp))


PRICES = st.one_of(
    st.floats(1e-7, 1e9, allow_nan=False, allow_infinity=False),
    grid_prices(),
    # next to a power of ten, where the tick changes
    st.builds(lambda e, d: 10.0**e * (1 + d), st.integers(-6, 8), st.floats(-1e-9, 1e-9)),
)


@settings(max_examples=1500, deadline=None)
@given(best=PRICES, is_buy=st.booleans(), slip_bps=SLIPS_BPS, szd=SZD)
@example(best=12345.68, is_buy=True, slip_bps=0.0, szd=2)  # predecessor D3/L20
@example(best=100.0, is_buy=True, slip_bps=5.0, szd=2)  # 100.05: exactly on the grid
@example(best=99.95, is_buy=True, slip_bps=5.0, szd=2)  # lands next to 100
@example(best=0.3, is_buy=False, slip_bps=0.0, szd=1)
@example(best=1e-6, is_buy=False, slip_bps=50.0, szd=0)  # below the smallest valid price
@example(best=10001.0, is_buy=True, slip_bps=3.568215991905609e-20, szd=0)  # digits ≥ 10^40
def test_ioc_limit_price_equals_decimal(best: float, is_buy: bool, slip_bps: float,
                                        szd: int) -> None:
    slip = slip_bps / 1e4
    assert _outcome(R.ioc_limit_price, best, is_buy, slip, szd) == _outcome(
        R.slippage_limit_price, best, is_buy, slip, szd)


SIZES = st.one_of(
    st.floats(0.0, 1e7, allow_nan=False),
    st.builds(lambda x, d: round(x, d), st.floats(0.0, 1e5), st.integers(0, 6)),  # lot multiples
    st.builds(lambda n, d: n / 10**d, st.integers(0, 10**9), st.integers(0, 6)),
    st.sampled_from([0.0, -0.0, 0.3, 0.1 + 0.2, 1e-12, 1e-300, 9.999999999999999]),
)


@settings(max_examples=1500, deadline=None)
@given(best=PRICES, is_buy=st.booleans(), slip_bps=SLIPS_BPS, szd=SZD, sz=SIZES)
@example(best=100.01, is_buy=True, slip_bps=5.0, szd=2, sz=0.99)
@example(best=100.01, is_buy=True, slip_bps=5.0, szd=2, sz=0.09)  # $9: below the minimum
@example(best=100.01, is_buy=True, slip_bps=5.0, szd=2, sz=0.001)  # zero lots
@example(best=2.0, is_buy=False, slip_bps=0.0, szd=1, sz=0.1 + 0.2)  # 0.30000000000000004
def test_ioc_wire_equals_prepare_ioc(best: float, is_buy: bool, slip_bps: float, szd: int,
                                     sz: float) -> None:
    px = R.slippage_limit_price(best, is_buy, slip_bps / 1e4, szd)
    if px is None:
        return
    assert _outcome(R.ioc_wire, is_buy, px, sz, szd) == _outcome(
        R.prepare_ioc, is_buy, px, sz, szd)


@settings(max_examples=500, deadline=None)
@given(px=st.one_of(st.text(max_size=12), st.sampled_from(
    ["100.50", "0100.5", ".5", "5.", "1e2", "100", "0", "0.0", "-1", "1_000", "１２",
     "12345.6", "123456", "0.0000001", "1." + "0" * 50])),
    sz=st.one_of(SIZES, st.sampled_from([math.nan, math.inf, -1.0])), szd=SZD,
    is_buy=st.booleans())
def test_ioc_wire_junk_prices_and_sizes_behave_like_prepare_ioc(px: str, sz: float, szd: int,
                                                                is_buy: bool) -> None:
    assert _outcome(R.ioc_wire, is_buy, px, sz, szd) == _outcome(
        R.prepare_ioc, is_buy, px, sz, szd)


@settings(max_examples=1000, deadline=None)
@given(sz=st.one_of(SIZES, st.sampled_from([math.nan, -1.0, 1e20])), szd=SZD)
def test_lot_size_wire_equals_size_wire(sz: float, szd: int) -> None:
    assert _outcome(R.lot_size_wire, sz, szd) == _outcome(R.size_wire, sz, szd)


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        ((0.0, True, 0.001, 2), ValueError),  # price must be > 0
        ((-5.0, True, 0.001, 2), ValueError),
        ((100.0, True, 1.0, 2), ValueError),  # slippage in [0, 1)
        ((100.0, True, -0.1, 2), ValueError),
        ((math.nan, True, 0.001, 2), ValueError),
        ((100.0, True, 0.001, 9), ValueError),  # szDecimals outside 0..6
    ],
)
def test_ioc_limit_price_refuses_what_the_oracle_refuses(args: tuple[Any, ...],
                                                         kind: type[Exception]) -> None:
    with pytest.raises(kind):
        R.slippage_limit_price(*args)
    with pytest.raises(kind):
        R.ioc_limit_price(*args)


def test_incidents_through_the_fast_path() -> None:
    """The predecessor's rounding incidents hold on the order path too."""
    assert R.ioc_limit_price(12345.68, True, 0.0, 2) == "12346"  # never back through the ask
    assert R.ioc_limit_price(12345.68, False, 0.0, 2) == "12345"
    assert R.ioc_wire(True, "100.1", 0.09, 2) is Reject.BELOW_MIN_NOTIONAL  # checked at the
    assert R.ioc_wire(True, "100.1", 0.1, 2) == ("100.1", "0.1")  # sent price: $10.01
    assert R.ioc_wire(True, "100.1", 0.009, 2) is Reject.ZERO_SIZE
    assert R.ioc_wire(False, "105.00", 1.0, 2) == ("105", "1")  # canonical, never "105.00"
    assert R.lot_size_wire(0.49 - 0.16 - 0.32, 2) == R.size_wire(0.49 - 0.16 - 0.32, 2)
