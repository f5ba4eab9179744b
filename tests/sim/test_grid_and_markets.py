"""Price/size grid rules (docs/reference/hyperliquid-protocol.md §7) and the xyz market catalogue (§13.4)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.sim import grid
from engine.sim.markets import MAIN_MARKETS, XYZ_MARKETS, xyz_markets

DOC_ORDER = (
    "XYZ100 TSLA NVDA GOLD HOOD INTC PLTR COIN META AAPL MSFT ORCL GOOGL AMZN AMD MU SNDK MSTR "
    "CRCL NFLX COST LLY SKHX TSM JPY EUR SILVER RIVN BABA CL COPPER NATGAS URANIUM ALUMINIUM SMSN "
    "PLATINUM USAR CRWV URNM PALLADIUM DXY GME"
).split()


@pytest.mark.parametrize(
    ("s", "szd", "ok"),
    [
        ("1234.5", 0, True),
        ("1234.56", 0, False),
        ("0.001234", 0, True),
        ("0.0012345", 0, False),
        ("0.01234", 1, True),
        ("0.012345", 1, False),
        ("123456", 0, True),
        ("12345.6", 0, False),
        ("105", 4, True),
        ("105.0", 2, False),  # trailing zero
        ("4105.5", 4, True),
        ("4105.55", 4, False),  # 6 sig figs
        ("1.2345", 2, True),
        ("1.23456", 1, False),
        ("0.5", 6, False),  # 6 - szDecimals = 0 decimals
        ("01.5", 0, False),
        ("-1.5", 0, False),
        ("1e3", 0, False),
        ("", 0, False),
    ],
)
def test_price_rule_examples(s: str, szd: int, ok: bool) -> None:
    assert grid.is_valid_price(s, szd) is ok


@pytest.mark.parametrize(
    ("s", "szd", "ok"),
    [("1.001", 3, True), ("1.0001", 3, False), ("3", 0, True), ("3.0", 1, False), ("0.2", 1, True)],
)
def test_size_rule_examples(s: str, szd: int, ok: bool) -> None:
    assert grid.is_valid_size(s, szd) is ok


def test_formatting_strips_trailing_zeros() -> None:
    assert grid.fmt(Decimal("105.000")) == "105"
    assert grid.fmt(Decimal("1E+2")) == "100"
    assert grid.fmt(Decimal("0.01470")) == "0.0147"
    assert grid.fmt(Decimal("-0.000")) == "0"
    assert grid.fmt_price(112.8949, 2) == "112.89"
    assert grid.fmt_price(123456.7, 0) == "123457"
    assert grid.fmt_price(9.99996, 2, "up") == "10"
    assert grid.fmt_size(2.789, 1) == "2.7"


@given(
    px=st.floats(min_value=1e-4, max_value=2e6, allow_nan=False, allow_infinity=False),
    szd=st.integers(min_value=0, max_value=5),
    mode=st.sampled_from(["down", "up", "nearest"]),
)
def test_rounded_prices_are_on_the_grid(px: float, szd: int, mode: grid.Rounding) -> None:
    rounded = grid.round_price(px, szd, mode)
    s = grid.fmt(rounded)
    assert grid.is_valid_price(s, szd), (px, szd, mode, s)
    exact = grid.to_decimal(px)
    tick = grid.tick_size(exact, szd)
    if mode == "down":
        assert rounded <= exact or rounded == tick  # tiny prices clamp to the smallest tick
    elif mode == "up":
        assert rounded >= exact
    if rounded != tick:
        assert abs(rounded - exact) <= tick


@given(sz=st.floats(min_value=0, max_value=1e7, allow_nan=False), szd=st.integers(0, 5))
def test_rounded_sizes_are_on_the_lot_grid(sz: float, szd: int) -> None:
    s = grid.fmt_size(sz, szd)
    assert grid.is_valid_size(s, szd)
    assert Decimal(s) <= grid.to_decimal(sz)


def test_catalogue_is_in_doc_meta_order() -> None:
    assert [m.name for m in XYZ_MARKETS] == [f"xyz:{b}" for b in DOC_ORDER]
    assert len(XYZ_MARKETS) == 42
    assert XYZ_MARKETS[26].name == "xyz:SILVER"
    assert XYZ_MARKETS[27].name == "xyz:RIVN"
    assert XYZ_MARKETS[29].name == "xyz:CL"
    assert [m.name for m in xyz_markets(5)] == [f"xyz:{b}" for b in DOC_ORDER[:5]]
    with pytest.raises(ValueError):
        xyz_markets(43)
    assert not any(":" in m.name for m in MAIN_MARKETS)


def test_catalogue_parameters_are_plausible() -> None:
    by_base = {m.base: m for m in XYZ_MARKETS}
    assert by_base["GOLD"].sz_decimals == 4
    assert by_base["PLATINUM"].sz_decimals == 4
    offsets = [m for m in XYZ_MARKETS if m.offset_bps]
    assert len(offsets) == 3
    for m in XYZ_MARKETS:
        assert 2 <= m.half_spread_bps <= 8, m.name
        assert m.max_leverage >= 1
        assert grid.is_valid_price(grid.fmt_price(m.ref_px, m.sz_decimals), m.sz_decimals)
        if m.offset_bps:
            assert 10 <= abs(m.offset_bps) <= 30, m.name
        if m.base in ("GOLD", "PLATINUM"):
            continue
        assert 0 <= m.sz_decimals <= 3, m.name
        lot_usd = m.ref_px * 10.0**-m.sz_decimals
        # $1-10 minimum increment; XYZ100 (~25k) cannot get there with szDecimals <= 3.
        limit = 30.0 if m.base == "XYZ100" else 10.0
        assert 1.0 <= lot_usd <= limit, (m.name, lot_usd)
    assert sum(1 for m in XYZ_MARKETS if m.sz_decimals == 4) == 2
