"""The simulated venue's market catalogue: the xyz dex (meta order of docs/reference/hyperliquid-protocol.md §13.4), a small
main dex, and the dummy dexes that can be listed before xyz in ``perpDexs``.

Reference prices are plausible levels, not quotes. ``szDecimals`` follow the deployer practice of
a $1-10 minimum size increment (GOLD and PLATINUM use 4, as observed on the venue).
"""

from __future__ import annotations

from dataclasses import dataclass

XYZ_DEX = "xyz"
XYZ_FULL_NAME = "XYZ"


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """Static parameters of one simulated perp market."""

    name: str  # full coin name, e.g. "xyz:GOLD" (bare, e.g. "BTC", on the main dex)
    ref_px: float  # starting oracle price
    sz_decimals: int
    max_leverage: int
    half_spread_bps: float  # market maker half-spread around its centre
    vol_bps: float  # sigma of the oracle innovation per oracle update, in bps
    # Persistent offset of the market maker's centre from the oracle ("structural spread").
    offset_bps: float = 0.0
    oi_cap_usd: float = 25_000_000.0  # streaming OI cap listed in perpDexs

    @property
    def base(self) -> str:
        return self.name.split(":", 1)[-1]


def _m(
    base: str,
    ref_px: float,
    szd: int,
    lev: int,
    hs: float,
    vol: float,
    offset: float = 0.0,
    cap: float = 25_000_000.0,
) -> MarketSpec:
    return MarketSpec(f"{XYZ_DEX}:{base}", ref_px, szd, lev, hs, vol, offset, cap)


# Index = position in meta(dex="xyz").universe; asset id = 110000 + index when xyz is dex 1.
XYZ_MARKETS: tuple[MarketSpec, ...] = (
    _m("XYZ100", 25_150.0, 3, 25, 2.0, 7.0, cap=100_000_000.0),  # 0
    _m("TSLA", 431.20, 2, 10, 4.0, 16.0, cap=50_000_000.0),  # 1
    _m("NVDA", 186.40, 2, 10, 3.0, 13.0, cap=50_000_000.0),  # 2
    _m("GOLD", 4_105.5, 4, 20, 2.5, 6.0, cap=75_000_000.0),  # 3
    _m("HOOD", 121.30, 2, 10, 6.0, 18.0),  # 4
    _m("INTC", 37.42, 1, 10, 5.0, 14.0),  # 5
    _m("PLTR", 176.80, 2, 10, 5.0, 17.0),  # 6
    _m("COIN", 262.10, 2, 10, 5.0, 18.0),  # 7
    _m("META", 648.90, 2, 10, 3.5, 11.0),  # 8
    _m("AAPL", 271.50, 2, 10, 3.0, 9.0, cap=50_000_000.0),  # 9
    _m("MSFT", 482.30, 2, 10, 3.0, 9.0),  # 10
    _m("ORCL", 201.70, 2, 10, 5.0, 15.0),  # 11
    _m("GOOGL", 312.40, 2, 10, 3.5, 10.0),  # 12
    _m("AMZN", 229.80, 2, 10, 3.5, 11.0),  # 13
    _m("AMD", 214.60, 2, 10, 4.5, 16.0),  # 14
    _m("MU", 241.90, 2, 10, 5.0, 17.0),  # 15
    _m("SNDK", 228.40, 2, 10, 7.0, 20.0),  # 16
    _m("MSTR", 171.30, 2, 10, 6.0, 19.0),  # 17
    _m("CRCL", 81.25, 1, 10, 7.0, 20.0),  # 18
    _m("NFLX", 109.60, 2, 10, 4.0, 12.0),  # 19
    _m("COST", 905.40, 2, 10, 3.5, 8.0),  # 20
    _m("LLY", 1_046.0, 3, 10, 4.0, 10.0),  # 21
    _m("SKHX", 382.50, 2, 10, 7.5, 16.0, offset=18.0),  # 22
    _m("TSM", 291.20, 2, 10, 3.5, 12.0),  # 23
    _m("JPY", 155.42, 2, 50, 2.0, 4.0),  # 24
    _m("EUR", 1.1684, 0, 50, 2.0, 3.0),  # 25
    _m("SILVER", 112.90, 2, 20, 3.0, 12.0, cap=50_000_000.0),  # 26
    _m("RIVN", 17.36, 1, 10, 8.0, 20.0),  # 27
    _m("BABA", 160.20, 2, 10, 5.0, 14.0),  # 28
    _m("CL", 61.48, 1, 20, 3.5, 11.0),  # 29
    _m("COPPER", 5.218, 0, 20, 4.0, 9.0),  # 30
    _m("NATGAS", 3.812, 0, 20, 6.0, 17.0),  # 31
    _m("URANIUM", 80.15, 1, 10, 7.0, 12.0),  # 32
    _m("ALUMINIUM", 2_851.0, 3, 20, 5.0, 8.0),  # 33
    _m("SMSN", 70.35, 1, 10, 7.0, 13.0, offset=-24.0),  # 34
    _m("PLATINUM", 1_552.0, 4, 20, 4.0, 10.0),  # 35
    _m("USAR", 15.22, 1, 10, 8.0, 20.0),  # 36
    _m("CRWV", 90.40, 1, 10, 8.0, 20.0),  # 37
    _m("URNM", 55.18, 1, 10, 6.5, 12.0, offset=14.0),  # 38
    _m("PALLADIUM", 1_448.0, 3, 20, 5.0, 11.0),  # 39
    _m("DXY", 99.12, 1, 25, 2.0, 3.5),  # 40
    _m("GME", 23.14, 1, 10, 8.0, 19.0),  # 41
)

# A small main dex ("" / no dex): perpDexs element 0 is null for it; no xyz coins appear here.
MAIN_MARKETS: tuple[MarketSpec, ...] = (
    MarketSpec("BTC", 97_250.0, 5, 40, 0.5, 4.0, oi_cap_usd=0.0),
    MarketSpec("ETH", 3_420.5, 4, 25, 0.6, 5.0, oi_cap_usd=0.0),
    MarketSpec("SOL", 182.35, 2, 20, 1.0, 7.0, oi_cap_usd=0.0),
    MarketSpec("HYPE", 34.871, 2, 10, 1.5, 9.0, oi_cap_usd=0.0),
)

# Builder dexes that can be listed before xyz (constructor option dex_position) so that clients
# which hard-code the 110000 offset are caught. Each has one market.
DUMMY_DEX_NAMES: tuple[str, ...] = ("abc", "qrs", "flx", "vntl", "hyna", "km", "cash", "felix")


def dummy_market(dex: str) -> MarketSpec:
    return MarketSpec(f"{dex}:TEST", 10.0, 1, 10, 5.0, 10.0, oi_cap_usd=1_000_000.0)


def dummy_dex_names(count: int) -> list[str]:
    """``count`` distinct dummy dex names (generated past the fixed list)."""
    names = list(DUMMY_DEX_NAMES[:count])
    i = 0
    while len(names) < count:
        names.append(f"d{i:02d}")
        i += 1
    return names


def xyz_markets(n: int) -> tuple[MarketSpec, ...]:
    """The first ``n`` xyz markets in meta order."""
    if not 1 <= n <= len(XYZ_MARKETS):
        raise ValueError(f"markets must be between 1 and {len(XYZ_MARKETS)}, got {n}")
    return XYZ_MARKETS[:n]
