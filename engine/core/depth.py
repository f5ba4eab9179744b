"""Walking an order book's depth: the one pure function both paper venues fill by.

The Hyperliquid paper venue (``engine/venues/paper.py``, lot = ``10^-szDecimals``) and the
two-leg paper venue (``engine/core/paper_two_leg.py``, lot = the instrument's ``lot_size``)
take liquidity the same way: the same-side levels best first, each at its own price, up to a
limit price (none for a market order), each level's size down to the lot, until the wanted
quantity is taken. What each venue does with the result (fees in its venue's coin and
rounding, the liquidity it remembers as taken, the order events) stays with that venue.

Pure: no state, no clock; sizes are exact Decimals (a float size is read by its shortest
repr, as both venues did).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_FLOOR, Decimal


def floor_to_lot(x: Decimal, lot: Decimal) -> Decimal:
    """``x`` down to a whole number of ``lot`` (``lot`` > 0)."""
    return (x / lot).to_integral_value(rounding=ROUND_FLOOR) * lot


def _dec(x: float | Decimal) -> Decimal:
    return x if isinstance(x, Decimal) else Decimal(repr(x))


def walk_depth(levels: Sequence[Sequence[float]], is_buy: bool, limit: float | None,
               want: Decimal, lot: Decimal) -> list[tuple[int, Decimal]]:
    """What an order for ``want`` takes from ``levels`` (``(price, size)`` of the side it
    takes, best first): ``(level index, size taken)`` per level touched, in order.

    A buy takes levels priced at or below ``limit``, a sell at or above (``None``: any price,
    a market order); the walk stops at the first level beyond it. Each level gives
    ``min(what is still wanted, its size)`` down to ``lot``; an empty level, or one with less
    than a lot, is skipped. Nothing is taken for ``want`` <= 0."""
    out: list[tuple[int, Decimal]] = []
    left = want
    for i, lvl in enumerate(levels):
        if left <= 0:
            break
        px, size = lvl[0], lvl[1]
        if limit is not None and (px > limit if is_buy else px < limit):
            break
        if size <= 0:
            continue
        take = floor_to_lot(min(left, _dec(size)), lot)
        if take <= 0:
            continue
        out.append((i, take))
        left -= take
    return out
