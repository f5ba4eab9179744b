"""Operator-facing numbers: prices and sizes at the market's own precision, money with its unit.

Only for what people read (log lines, ``python -m engine status``); records keep full values.
A Hyperliquid perp price has at most ``6 - szDecimals`` decimals and a size ``szDecimals``
(the tick rules are in :mod:`engine.venues.hyperliquid.rounding`), so a float such as
``227.98999999999998`` (a volume-weighted average) is shown as ``227.99``.
"""

from __future__ import annotations

import math
from typing import Any

from engine.venues.hyperliquid.rounding import price_decimals

USD = "USD"


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return None
    return None


def _fixed(v: float, decimals: int) -> str:
    text = f"{v:.{max(0, decimals)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def fmt_px(px: Any, sz_decimals: int | None) -> str:
    """A price at the market's precision (``?`` when absent; text that is no number as is)."""
    v = _num(px)
    if v is None:
        return "?" if px is None else str(px)
    if not math.isfinite(v):
        return str(v)
    decimals = price_decimals(min(max(sz_decimals, 0), 6)) if sz_decimals is not None else 6
    return _fixed(v, decimals)


def fmt_sz(sz: Any, sz_decimals: int | None) -> str:
    """A size at the market's size precision (``szDecimals``)."""
    v = _num(sz)
    if v is None:
        return "?" if sz is None else str(sz)
    if not math.isfinite(v):
        return str(v)
    return _fixed(v, sz_decimals if sz_decimals is not None else 8)


def fmt_usd(x: Any, *, signed: bool = True, decimals: int = 4) -> str:
    """Money with its unit: ``+0.0956 USD`` (``signed``) or ``10000.00 USD``."""
    v = _num(x)
    if v is None:
        return f"? {USD}"
    if signed:
        text = f"{v:+.{decimals}f}"
        if text.lstrip("+-").strip("0.") == "":
            text = f"{0.0:+.{decimals}f}"  # no "-0.0000"
        return f"{text} {USD}"
    return f"{v:.{decimals}f} {USD}"
