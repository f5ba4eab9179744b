"""Builders shared by the core tests."""

from __future__ import annotations

from engine.config import EngineConfig, load_config
from engine.core.core import ObserveCore
from engine.core.types import MarketSpec
from engine.strategies.dislocation import DislocationStrategy

T0 = 1_767_000_000_000.0  # a fixed epoch-ms instant


def make_config(toml: str = "") -> EngineConfig:
    base = "[detector]\nsession_aware = false\n"
    return load_config(None, env={}, defaults=base + toml if "[detector]" not in toml else toml)


def make_core(toml: str = "", coins: tuple[str, ...] = ("xyz:SILVER",), sz_decimals: int = 2,
              offsets: tuple[int, ...] = (1000, 3000, 5000)) -> ObserveCore:
    cfg = make_config(toml)
    specs = [MarketSpec(i, c, 110000 + i, sz_decimals) for i, c in enumerate(coins)]
    return ObserveCore(specs, cfg.gates, cfg.detector, cfg.sizing, list(offsets), boot_id="t")


def make_strategy(toml: str = "", coins: tuple[str, ...] = ("xyz:SILVER",), sz_decimals: int = 2,
                  offsets: tuple[int, ...] = (1000, 3000, 5000)) -> DislocationStrategy:
    """:func:`make_core`'s twin as the strategy plug-in the shells run."""
    cfg = make_config(toml)
    specs = [MarketSpec(i, c, 110000 + i, sz_decimals) for i, c in enumerate(coins)]
    return DislocationStrategy(specs, cfg.gates, cfg.detector, cfg.sizing, list(offsets),
                               boot_id="t")
