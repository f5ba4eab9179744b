"""Moved to :mod:`engine.net.ratelog` (shared by the venue adapters); the Hyperliquid modules
still import these names from here."""

from __future__ import annotations

from engine.net.ratelog import EXCERPT_CHARS, RateLimitedLog, excerpt

__all__ = ["EXCERPT_CHARS", "RateLimitedLog", "excerpt"]
