"""The pure core: synchronous, deterministic trading decisions with an injected clock (no I/O)."""
