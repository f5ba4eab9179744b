"""Builders for trading-core tests: a TradingCore over one or more markets with a ready state."""

from __future__ import annotations

from typing import Any

from engine.config import EngineConfig, structure_config
from engine.core.intents import PlaceOrder
from engine.core.orders import CloidFactory
from engine.core.types import MarketSpec
from engine.strategies.dislocation import DislocationStrategy
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore

T0 = 1_800_000_000_000.0

RELAXED: dict[str, Any] = {
    "mode": "paper",
    "detector": {"session_aware": False, "min_consecutive_moves": 0,
                 "oracle_direction_filter": False, "min_edge_above_baseline_bps": 0.0,
                 "min_confidence": 0.0, "min_quote_lag_ms": 0.0},
}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def make_trading(extra: dict[str, Any] | None = None,
                 coins: tuple[str, ...] = ("xyz:GOLD",), sz_decimals: int = 2
                 ) -> tuple[TradingCore, EngineConfig]:
    cfg = structure_config(merge(RELAXED, extra or {}), "test")
    specs = [MarketSpec(i, c, 110000 + i, sz_decimals) for i, c in enumerate(coins)]
    obs = DislocationStrategy(specs, cfg.gates, cfg.detector, cfg.sizing, cfg.followups.offsets_ms,
                      mode=cfg.mode, boot_id="t")
    core = TradingCore(obs, cfg, cloids=CloidFactory(b"\x01" * 8))
    return core, cfg


def make_ready(core: TradingCore, now: float = T0, px: float = 100.0,
               equity: float | None = None) -> None:
    """Market data for every market, user channels acked, reconciled flat; in trade mode with
    ``equity`` also the account's usable equity (main dex ``equity``, dex 0), without which no
    entry goes out (gate ``equity_unknown``)."""
    for i in range(len(core.strategy.markets)):
        core.on_bbo(i, 1, px - 0.01, 100.0, px + 0.01, 100.0, now)
        core.on_ctx(i, px, px, now)
    core.set_ready("user_channels", True)
    core.on_reconcile({}, [], now)
    if core.mode == "trade" and equity is not None:
        core.on_account_values(equity, 0.0, now)
    assert core.is_ready()
    core.drain()


def placed(core: TradingCore) -> list[PlaceOrder]:
    return [i for i in core.out if isinstance(i, PlaceOrder)]
