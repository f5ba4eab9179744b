"""Local Hyperliquid HIP-3 exchange simulator: an independent venue (own wire format, own model)
for testing the engine. It never imports from the rest of ``engine`` or from ``fsm``.
"""

from __future__ import annotations

from engine.sim.model import Bbo, Ctx, Event, Level, MarketModel, ModelParams
from engine.sim.server import SimExchange

__all__ = ["Bbo", "Ctx", "Event", "Level", "MarketModel", "ModelParams", "SimExchange"]
