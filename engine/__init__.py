"""engine: a Trio trading engine for Hyperliquid HIP-3 stale-liquidity strategies."""

__version__ = "0.1.0"
