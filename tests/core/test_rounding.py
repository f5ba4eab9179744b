"""Price/size rules and IOC rounding (docs/reference/hyperliquid-protocol.md §7; predecessor D3/L20, #16, #28, #31, #43)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.venues.hyperliquid import rounding as R
from engine.venues.hyperliquid.rounding import IocOrderPx, Reject

# --- the doc's examples ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("px", "sz_decimals", "ok"),
    [
        ("1234.5", 0, True),
        ("1234.56", 0, False),
        ("0.001234", 0, True),
        ("0.0012345", 0, False),
        ("0.01234", 1, True),
        ("0.012345", 1, False),
        ("123456", 0, True),
        ("123456", 6, True),  # integers are always valid
        ("12345.6", 0, False),
        ("12345", 0, True),
        ("1.5", 6, False),  # 6 − 6 = 0 decimals
        ("105.00", 4, True),  # trailing zeros are not digits that count
        ("0", 0, False),
        ("-1", 0, False),
    ],
)
def test_price_rule_examples(px: str, sz_decimals: int, ok: bool) -> None:
    assert R.is_valid_price(px, sz_decimals) is ok


@pytest.mark.parametrize(
    ("sz", "sz_decimals", "ok"),
    [("1.001", 3, True), ("1.0001", 3, False), ("0.0024", 4, True), ("0.00245", 4, False)],
)
def test_size_rule_examples(sz: str, sz_decimals: int, ok: bool) -> None:
    assert R.is_valid_size(sz, sz_decimals) is ok


def test_spot_allows_eight_price_decimals() -> None:
    assert R.is_valid_price("0.00001234", 0, R.SPOT_MAX_DECIMALS)
    assert not R.is_valid_price("0.00001234", 0)


# --- IOC direction: predecessor D3 / L20 ----------------------------------------------------


def test_buy_12345_68_stays_marketable() -> None:
    """BOT ceiled then truncated to 5 sig figs: a buy at 12345.68 became 12345 (below the ask)."""
    assert R.ioc_price(12345.68, True, 2) == "12346"
    assert R.ioc_price("12345.68", True, 2) == "12346"
    assert R.ioc_price(12345.68, False, 2) == "12345"


@pytest.mark.parametrize(
    ("px", "sz_decimals", "buy", "sell"),
    [
        ("1234.56", 0, "1234.6", "1234.5"),
        ("99999.5", 0, "100000", "99999"),
        ("9999.95", 0, "10000", "9999.9"),  # rounding up crosses the decade: still valid
        ("0.0012345", 0, "0.001235", "0.001234"),
        ("0.012345", 1, "0.01235", "0.01234"),
        ("4999.123", 4, "4999.2", "4999.1"),  # GOLD-like: 2 price decimals, 5 sig figs win
        ("0.0000001", 0, "0.000001", None),  # below the smallest valid price
        ("123456.7", 0, "123457", "123456"),
        ("105", 2, "105", "105"),
    ],
)
def test_ioc_price_table(px: str, sz_decimals: int, buy: str, sell: str | None) -> None:
    assert R.ioc_price(px, True, sz_decimals) == buy
    assert R.ioc_price(px, False, sz_decimals) == sell


def test_float_inputs_are_read_by_their_repr() -> None:
    assert R.ioc_price(0.3, False, 0) == "0.3"  # not 0.29999 from the binary value
    assert R.ioc_price(2.675, True, 2) == "2.675"


# --- sizes: #16 (25-digit sizes), #31 (PLATINUM zero size), #43 (GOLD szDecimals 4) ------------


def test_25_digit_sizes_are_floored_to_the_lot() -> None:
    assert R.size_wire("0.1234567890123456789012345", 4) == "0.1234"
    assert R.size_wire(1 / 3, 4) == "0.3333"
    assert R.size_wire(Decimal(1) / Decimal(7), 2) == "0.14"


def test_gold_sz_decimals_4_does_not_round_to_zero() -> None:
    """#43/P11: a $12 GOLD order at 4999 is 0.0024 with the real szDecimals 4 (it was 0 at 2)."""
    sz = Decimal(12) / Decimal(4999)
    assert R.size_wire(sz, 4) == "0.0024"
    assert R.floor_size(sz, 2) is None  # the predecessor's fallback szDecimals
    got = R.prepare_ioc(True, "4999", sz, 4)
    assert got == IocOrderPx("4999", "0.0024", Decimal("11.9976"))


def test_platinum_zero_size_is_no_order() -> None:
    """#31/P12: a size under one lot is "Order has zero size" → never sent."""
    assert R.floor_size("0.00009", 4) is None
    assert R.floor_size(0, 4) is None
    assert R.prepare_ioc(True, "1000", "0.00009", 4) is Reject.ZERO_SIZE


def test_min_notional_is_checked_at_the_sent_price() -> None:
    """#28/P13/P14: $10 minimum at the rounded price actually sent."""
    assert R.prepare_ioc(True, "4999", "0.002", 4) is Reject.BELOW_MIN_NOTIONAL  # $9.998
    # raw 100.05 × 0.09998 = 10.003 but the sell goes out at 100.0 → $9.998
    assert R.meets_min_notional("100.05", "0.09998")
    assert R.prepare_ioc(False, "100.05", "0.09998", 5) is Reject.BELOW_MIN_NOTIONAL
    # a buy rounded up can lift it over the line: sent at 100.1 → $10.008
    got = R.prepare_ioc(True, "100.05", "0.09998", 5)
    assert isinstance(got, IocOrderPx) and got.px == "100.1" and got.notional >= 10
    assert R.prepare_ioc(True, "100", "0.1", 4) == IocOrderPx("100", "0.1", Decimal("10.0"))


def test_min_size_for_notional() -> None:
    assert R.min_size_for_notional("4999", 4) == Decimal("0.0021")
    assert R.meets_min_notional("4999", R.min_size_for_notional("4999", 4))
    assert R.min_size_for_notional("3", 0) == Decimal(4)


def test_sell_below_smallest_price_is_rejected() -> None:
    assert R.prepare_ioc(False, "0.0000001", "1000000000", 0) is Reject.NO_VALID_PRICE


# --- slippage-capped IOC limit ---------------------------------------------------------------


def test_slippage_limit_price() -> None:
    assert R.slippage_limit_price("100", True, "0.005", 2) == "100.5"
    assert R.slippage_limit_price("100", False, "0.005", 2) == "99.5"
    assert R.slippage_limit_price("12345", True, "0.0001", 2) == "12347"  # 12346.2345 → up
    assert R.slippage_limit_price("12345", False, "0.0001", 2) == "12343"  # 12343.7655 → down
    # capped by the worst acceptable price, still marketable
    assert R.slippage_limit_price("100", True, "0.05", 2, worst_px="101") == "101"
    assert R.slippage_limit_price("100", True, "0.05", 2, worst_px="100.004") == "100"
    assert R.slippage_limit_price("100", False, "0.05", 2, worst_px="99.5") == "99.5"
    # worst price on the wrong side of the book: no marketable price exists
    assert R.slippage_limit_price("100", True, "0.05", 2, worst_px="99") is None
    assert R.slippage_limit_price("100", False, "0.05", 2, worst_px="101") is None
    with pytest.raises(ValueError):
        R.slippage_limit_price("100", True, "1.5", 2)


def test_wire_strings_are_canonical() -> None:
    assert R.decimal_to_wire(Decimal("1.050")) == "1.05"
    assert R.decimal_to_wire(Decimal("1E+2")) == "100"
    assert R.decimal_to_wire(Decimal("-0.0")) == "0"
    with pytest.raises(ValueError):
        R.decimal_to_wire(Decimal("0.123456789"))
    with pytest.raises(ValueError):
        R.to_decimal(float("nan"))
    with pytest.raises(TypeError):
        R.to_decimal(True)


# --- properties -------------------------------------------------------------------------------

SZ_DEC = st.integers(0, 6)
# positive decimals from 1e-8 up to ~1e8, any digit count up to 12
PRICES = st.builds(
    lambda m, e: Decimal(m).scaleb(e), st.integers(1, 10**12 - 1), st.integers(-20, -4)
)


def finest_step(sz_decimals: int) -> Decimal:
    return Decimal(1).scaleb(-(6 - sz_decimals))


def valid_between(lo: Decimal, hi: Decimal, sz_decimals: int, limit: int = 3000) -> list[Decimal]:
    """Brute force: every valid price in [lo, hi] on the finest possible grid 10^-(6−szDec)."""
    step = finest_step(sz_decimals)
    start = (lo / step).to_integral_value(rounding="ROUND_CEILING")
    stop = (hi / step).to_integral_value(rounding="ROUND_FLOOR")
    assume(stop - start <= limit)
    out = []
    k = start
    while k <= stop:
        v = k * step
        if v > 0 and R.is_valid_price(v, sz_decimals):
            out.append(v)
        k += 1
    return out


def canonical(s: str) -> bool:
    return R.decimal_to_wire(Decimal(s)) == s and "E" not in s.upper()


@given(PRICES, SZ_DEC)
def test_round_up_is_valid_and_not_below(px: Decimal, sz_decimals: int) -> None:
    up = R.round_price_up(px, sz_decimals)
    assert R.is_valid_price(up, sz_decimals)
    assert up >= px
    wire = R.ioc_price(px, True, sz_decimals)
    assert wire is not None and canonical(wire) and Decimal(wire) == up


@given(PRICES, SZ_DEC)
def test_round_down_is_valid_and_not_above(px: Decimal, sz_decimals: int) -> None:
    down = R.round_price_down(px, sz_decimals)
    if down is None:
        assert px < finest_step(sz_decimals)
        return
    assert R.is_valid_price(down, sz_decimals)
    assert down <= px
    wire = R.ioc_price(px, False, sz_decimals)
    assert wire is not None and canonical(wire) and Decimal(wire) == down


@given(PRICES, SZ_DEC)
def test_round_up_is_the_nearest_valid_above(px: Decimal, sz_decimals: int) -> None:
    up = R.round_price_up(px, sz_decimals)
    between = valid_between(px, up, sz_decimals)
    assert between == [up]  # nothing valid in [px, up)


@given(PRICES, SZ_DEC)
def test_round_down_is_the_nearest_valid_below(px: Decimal, sz_decimals: int) -> None:
    down = R.round_price_down(px, sz_decimals)
    lo = down if down is not None else finest_step(sz_decimals) / 2
    between = valid_between(lo, px, sz_decimals)
    assert between == ([down] if down is not None else [])  # nothing valid in (down, px]


@given(PRICES, SZ_DEC)
def test_valid_prices_are_fixed_points(px: Decimal, sz_decimals: int) -> None:
    if R.is_valid_price(px, sz_decimals):
        assert R.round_price_up(px, sz_decimals) == px == R.round_price_down(px, sz_decimals)
    else:
        assert R.round_price_up(px, sz_decimals) > px
        d = R.round_price_down(px, sz_decimals)
        assert d is None or d < px


@given(
    st.booleans(),
    PRICES,
    st.builds(lambda m, e: Decimal(m).scaleb(e), st.integers(0, 10**9), st.integers(-12, 0)),
    SZ_DEC,
)
def test_prepare_ioc_outputs_obey_every_rule(
    is_buy: bool, px: Decimal, sz: Decimal, sz_decimals: int
) -> None:
    got = R.prepare_ioc(is_buy, px, sz, sz_decimals)
    if isinstance(got, Reject):
        if got is Reject.ZERO_SIZE:
            assert sz < Decimal(1).scaleb(-sz_decimals)
        return
    assert canonical(got.px) and canonical(got.sz)
    assert R.is_valid_price(got.px, sz_decimals) and R.is_valid_size(got.sz, sz_decimals)
    p, s = Decimal(got.px), Decimal(got.sz)
    assert (p >= px) if is_buy else (p <= px)
    assert s <= sz and sz - s < Decimal(1).scaleb(-sz_decimals)
    assert got.notional == p * s >= 10


@given(
    st.booleans(),
    PRICES,
    st.decimals(min_value=0, max_value="0.2", places=4),
    SZ_DEC,
    st.none() | st.decimals(min_value="0.5", max_value="1.5", places=3),
)
def test_slippage_price_is_marketable_capped_and_valid(
    is_buy: bool, best: Decimal, slip: Decimal, sz_decimals: int, worst_factor: Decimal | None
) -> None:
    best = R.round_price_up(best, sz_decimals)  # book prices are valid prices
    worst = None if worst_factor is None else best * worst_factor
    got = R.slippage_limit_price(best, is_buy, slip, sz_decimals, worst_px=worst)
    if got is None:
        assert worst is not None and ((worst < best) if is_buy else (worst > best))
        return
    p = Decimal(got)
    assert canonical(got) and R.is_valid_price(p, sz_decimals)
    if is_buy:
        assert p >= best
        assert worst is None or p <= worst
        if worst is None:
            assert p == R.round_price_up(best * (1 + slip), sz_decimals)
    else:
        assert p <= best
        assert worst is None or p >= worst
        if worst is None:
            target = best * (1 - slip)
            down = R.round_price_down(target, sz_decimals)
            assert p == (down if down is not None else R.round_price_up(target, sz_decimals))
