"""The venue's price and size grid (docs/reference/hyperliquid-protocol.md §7): rounding, wire formatting and validation.

Prices: at most 5 significant figures and at most ``6 - szDecimals`` decimals; integers are
always valid. Sizes: at most ``szDecimals`` decimals. Wire strings never carry trailing zeros.
The simulator owns its own copy of these rules so it can catch the engine's formatting bugs.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Literal

MAX_PERP_DECIMALS = 6
MAX_SIG_FIGS = 5

Rounding = Literal["down", "up", "nearest"]
_MODES = {"down": ROUND_FLOOR, "up": ROUND_CEILING, "nearest": ROUND_HALF_EVEN}
_NUMBER = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]*[1-9]))?")


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """Exact-enough Decimal for a float (via its shortest repr, not its binary expansion)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def price_decimals(px: Decimal, sz_decimals: int) -> int:
    """The most decimals a price of this magnitude may carry."""
    limit = MAX_PERP_DECIMALS - sz_decimals
    if px <= 0:
        return max(0, limit)
    exponent = px.adjusted()  # 123.4 -> 2 ; 0.00123 -> -3
    if exponent >= 0:
        return max(0, min(MAX_SIG_FIGS - (exponent + 1), limit))
    return max(0, min(-exponent + MAX_SIG_FIGS - 1, limit))


def tick_size(px: Decimal, sz_decimals: int) -> Decimal:
    """The grid step at this price (1 for prices with 5 or more integer digits)."""
    return Decimal(1).scaleb(-price_decimals(px, sz_decimals))


def round_price(px: float | Decimal, sz_decimals: int, rounding: Rounding = "nearest") -> Decimal:
    """Round ``px`` onto the price grid in the given direction."""
    d = to_decimal(px)
    if d <= 0:
        raise ValueError(f"price must be positive, got {px!r}")
    quantum = Decimal(1).scaleb(-price_decimals(d, sz_decimals))
    out = d.quantize(quantum, rounding=_MODES[rounding])
    if out <= 0:  # a tiny price rounded down to zero: use the smallest grid value instead
        out = quantum
    # Rounding up can land exactly on the next power of ten (9.99996 -> 10.0000), which is an
    # exact, valid price once its trailing zeros are dropped; anything else stays in its decade.
    return out


def round_size(sz: float | Decimal, sz_decimals: int, rounding: Rounding = "down") -> Decimal:
    """Round a size onto the lot grid (``10**-szDecimals``)."""
    return to_decimal(sz).quantize(Decimal(1).scaleb(-sz_decimals), rounding=_MODES[rounding])


def fmt(value: Decimal) -> str:
    """Plain decimal notation with no trailing zeros and no exponent ('105', '0.0147')."""
    s = format(value, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s in ("", "-0"):
        s = "0"
    return s


def fmt_price(px: float | Decimal, sz_decimals: int, rounding: Rounding = "nearest") -> str:
    return fmt(round_price(px, sz_decimals, rounding))


def fmt_size(sz: float | Decimal, sz_decimals: int, rounding: Rounding = "down") -> str:
    return fmt(round_size(sz, sz_decimals, rounding))


def is_valid_price(s: str, sz_decimals: int) -> bool:
    """True when ``s`` is a wire price the venue accepts for a market with ``sz_decimals``."""
    m = _NUMBER.fullmatch(s)
    if m is None:
        return False
    int_part, frac = m.group(1), m.group(2)
    if frac is None:
        return True  # integer prices are always valid
    if len(frac) > MAX_PERP_DECIMALS - sz_decimals:
        return False
    return len((int_part + frac).lstrip("0")) <= MAX_SIG_FIGS


def is_valid_size(s: str, sz_decimals: int) -> bool:
    """True when ``s`` is a wire size with at most ``sz_decimals`` decimals, no trailing zeros."""
    m = _NUMBER.fullmatch(s)
    if m is None:
        return False
    frac = m.group(2)
    return frac is None or len(frac) <= sz_decimals
