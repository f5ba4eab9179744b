"""Liquidity-based sizing and the confidence score (docs/reference/predecessor-semantics.md §1.7, with L4 fixed).

Formulas (all pure):

* liquidity factor ``LF``: 0 if book notional ≤ min, 1 if ≥ normal, linear in between;
* confidence = .30·edge_f + .20·vel_f + .20·cons_f + .15·book_f + .15·spread_f, clamped to [0, 1];
* size = book_size · sizing_alpha · LF · (0.5 + 0.5·confidence if confidence sizing) · session
  size multiplier, then clamped to [min_order_notional, 0.99·max_notional] / price, then rounded
  to the lot (10^-szDecimals) — flooring, or ceiling when flooring would fall under the minimum.

Unlike the predecessor (L4) the session multiplier is applied *before* the minimum-notional boost,
so a session can never push an order under the exchange's $10 minimum. Notional is measured at
the side price the order would be sent at (ask for a buy, bid for a sell), not at the mid.
"""

from __future__ import annotations

import math

EXCHANGE_MIN_NOTIONAL = 10.0


def liquidity_factor(book_notional: float, min_notional: float, normal_notional: float) -> float:
    """0 at or below ``min_notional``, 1 at or above ``normal_notional``, linear in between."""
    if book_notional <= min_notional:
        return 0.0
    if book_notional >= normal_notional:
        return 1.0
    return (book_notional - min_notional) / (normal_notional - min_notional)


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def confidence_parts(
    raw_edge_bps: float,
    cost_bps: float,
    velocity_bps: float,
    min_velocity_bps: float,
    consecutive: int,
    liq_factor: float,
    spread_ewma_bps: float | None,
) -> tuple[float, float, float, float, float]:
    """The five confidence factors (edge, velocity, consecutive, book, spread), each in [0, 1]."""
    edge_f = _clamp01((raw_edge_bps - cost_bps) / (2.0 * cost_bps)) if cost_bps > 0 else 1.0
    if min_velocity_bps <= 0 or velocity_bps <= min_velocity_bps:
        vel_f = 0.0
    else:
        vel_f = _clamp01((velocity_bps - min_velocity_bps) / (3.0 * min_velocity_bps))
    cons_f = min(consecutive, 3) / 3.0
    book_f = liq_factor
    if spread_ewma_bps is None or cost_bps <= 0:
        spread_f = 0.5
    else:
        r = spread_ewma_bps / cost_bps
        spread_f = 1.0 if r <= 1.0 else 0.0 if r >= 3.0 else (3.0 - r) / 2.0
    return edge_f, vel_f, cons_f, book_f, spread_f


def confidence_score(parts: tuple[float, float, float, float, float]) -> float:
    """Weighted sum of the factors, clamped to [0, 1]."""
    edge_f, vel_f, cons_f, book_f, spread_f = parts
    return _clamp01(0.30 * edge_f + 0.20 * vel_f + 0.20 * cons_f + 0.15 * book_f + 0.15 * spread_f)


def round_size_to_lot(size: float, sz_decimals: int, px: float, min_notional: float,
                      max_size: float) -> float:
    """Floor ``size`` to the lot; ceil instead if flooring drops notional under ``min_notional``.

    Returns 0.0 when no lot-multiple satisfies both the minimum notional and ``max_size``.
    """
    lot = 10.0 ** -sz_decimals
    # A tiny epsilon absorbs binary float error such as 0.3/0.1 = 2.9999999999999996.
    floored = math.floor(size / lot + 1e-9) * lot
    if floored * px >= min_notional and floored > 0:
        return round(floored, sz_decimals)
    ceiled = math.ceil(size / lot - 1e-9) * lot
    if ceiled * px >= min_notional and ceiled <= max_size + 1e-12 and ceiled > 0:
        return round(ceiled, sz_decimals)
    return 0.0


def suggested_size(
    book_size: float,
    px: float,
    sz_decimals: int,
    liq_factor: float,
    confidence: float,
    session_size_mult: float,
    sizing_alpha: float,
    confidence_sizing: bool,
    max_notional: float,
    min_order_notional: float,
) -> float:
    """Size for a taker order against ``book_size`` at ``px`` (0.0 means: do not trade)."""
    if liq_factor <= 0.0 or px <= 0.0:
        return 0.0
    conf_mult = 0.5 + 0.5 * confidence if confidence_sizing else 1.0
    size = book_size * sizing_alpha * liq_factor * conf_mult * session_size_mult
    max_size = max_notional * 0.99 / px
    floor_notional = max(min_order_notional, EXCHANGE_MIN_NOTIONAL)
    min_size = floor_notional / px
    if size > max_size:
        size = max_size
    if size < min_size:
        size = min_size
    if size > max_size:
        return 0.0
    return round_size_to_lot(size, sz_decimals, px, floor_notional, max_size)
