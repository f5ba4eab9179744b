"""Value types shared by the core, the shell and the records: markets, sides, market views."""

from __future__ import annotations

from enum import StrEnum

import attrs


class Side(StrEnum):
    """Direction of a dislocation: BUY takes an ask below the oracle, SELL hits a bid above it."""

    BUY = "buy"
    SELL = "sell"


@attrs.frozen(slots=True)
class MarketSpec:
    """A tradeable market as discovered from the venue (never hard-coded).

    ``coin`` is the venue's full name (``xyz:SILVER``) and is the ``market_key`` in records;
    ``asset_id`` = 100000 + 10000 × dex position in ``perpDexs`` + index in ``meta(dex)``.
    ``index`` is the engine's own dense index (0..n-1) used for fast lookups.
    """

    index: int
    coin: str
    asset_id: int
    sz_decimals: int
    max_leverage: int = 0
    delisted: bool = False


@attrs.define(slots=True)
class MarketView:
    """A read-only snapshot of one market's latest data, as the followup capture needs it.

    Prices/sizes are floats; an empty book side is ``None`` (never 0). Times are wall-clock
    epoch milliseconds from the injected clock. ``live`` is False until fresh bbo AND ctx have
    arrived on the current connection (it drops to False on disconnect).
    """

    coin: str
    oracle_px: float | None
    mark_px: float | None
    bid_px: float | None
    bid_sz: float | None
    ask_px: float | None
    ask_sz: float | None
    bbo_recv_ms: float | None
    ctx_recv_ms: float | None
    live: bool
