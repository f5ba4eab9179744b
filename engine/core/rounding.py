"""Venue price/size rules and IOC rounding (protocol doc §7): owns the canonical wire strings.

Rules (perps; ``max_decimals`` is 6, 8 for spot):

* price: an integer is always valid; otherwise at most 5 significant figures and at most
  ``max_decimals - szDecimals`` decimals. Inside one decade ``[10^a, 10^(a+1))`` the valid prices
  are exactly the multiples of ``tick = 10^-max(0, min(4 - a, max_decimals - szDecimals))``, so
  the nearest valid price in a direction is a ceiling/floor to that tick (a ceiling that reaches
  ``10^(a+1)`` lands on a power of ten, which is valid).
* size: at most ``szDecimals`` decimals; sizes are floored to the lot and a zero size is no order.
* wire strings: plain decimal notation, no exponent, no trailing zeros (``105``, never ``105.00``
  or ``1.05E+2``): the string is hashed as sent (pitfall P4).

IOC taker rounding: a BUY limit rounds UP and a SELL limit rounds DOWN, so the order stays
marketable. The rounding is one step onto the valid grid: there is no second sig-fig truncation
that could pull a buy back through the ask (predecessor D3/L20: a buy at 12345.68 is 12346, never
12345). The $10 minimum notional is checked at the rounded price the order is sent at.

Arithmetic is :class:`decimal.Decimal` in a private context (no float error, no dependence on the
thread's decimal context). A float input is read through its shortest ``repr`` (``0.3`` is 0.3,
not 0.29999…), so callers with exact venue strings should pass them as ``str`` or ``Decimal``.
"""

from __future__ import annotations

import enum
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from typing import Final

import attrs

PERP_MAX_DECIMALS: Final = 6
SPOT_MAX_DECIMALS: Final = 8
MAX_SIG_FIGS: Final = 5
EXCHANGE_MIN_NOTIONAL: Final = Decimal(10)

# Exact arithmetic: wide enough for any price × size we can meet; errors trap instead of rounding.
_CTX: Final = Context(prec=60, traps=[InvalidOperation, DivisionByZero, Overflow])
_ONE: Final = Decimal(1)
_ZERO: Final = Decimal(0)

Number = Decimal | str | int | float


class Reject(enum.Enum):
    """Why :func:`prepare_ioc` produced no order (all are "don't send", none is an error)."""

    ZERO_SIZE = "zero_size"  # size floors to 0 lots ("Order has zero size", P12)
    NO_VALID_PRICE = "no_valid_price"  # a sell below the smallest valid price
    BELOW_MIN_NOTIONAL = "below_min_notional"  # px × sz < $10 at the sent price (P13)


@attrs.frozen(slots=True)
class IocOrderPx:
    """A rounded IOC order: wire strings for ``p``/``s`` and the notional at the sent price."""

    px: str
    sz: str
    notional: Decimal


def to_decimal(x: Number) -> Decimal:
    """``x`` as a finite Decimal (floats via their shortest repr); bools and non-finite refused."""
    if isinstance(x, Decimal):
        d = x
    elif isinstance(x, bool):
        raise TypeError("a bool is not a number here")
    elif isinstance(x, int | str):
        try:
            d = Decimal(x)
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {x!r}") from None
    elif isinstance(x, float):
        d = Decimal(repr(x))
    else:
        raise TypeError(f"unsupported number type {type(x).__name__}")
    if not d.is_finite():
        raise ValueError(f"not a finite number: {x!r}")
    return d


def decimal_to_wire(d: Decimal, max_decimals: int = 8) -> str:
    """Canonical wire string of ``d``: plain notation, no trailing zeros, ``-0`` → ``0``.

    Raises ``ValueError`` when ``d`` is not finite or needs more than ``max_decimals`` decimals
    (8 is the precision of the SDK's ``float_to_wire``; anything finer would be lost).
    """
    if not d.is_finite():
        raise ValueError(f"not a finite number: {d!r}")
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
        dot = s.find(".")
        if dot >= 0 and len(s) - dot - 1 > max_decimals:
            raise ValueError(f"{s} has more than {max_decimals} decimals")
    if s == "-0":
        return "0"
    return s


def price_decimals(sz_decimals: int, max_decimals: int = PERP_MAX_DECIMALS) -> int:
    """Maximum price decimals for an asset: ``max_decimals - szDecimals``."""
    if not 0 <= sz_decimals <= max_decimals:
        raise ValueError(f"szDecimals {sz_decimals} outside 0..{max_decimals}")
    return max_decimals - sz_decimals


def price_tick(px: Decimal, sz_decimals: int, max_decimals: int = PERP_MAX_DECIMALS) -> Decimal:
    """The grid step of valid prices in ``px``'s decade (``px > 0``)."""
    decimals = min(MAX_SIG_FIGS - 1 - px.adjusted(), price_decimals(sz_decimals, max_decimals))
    return Decimal(1).scaleb(-decimals) if decimals > 0 else _ONE


def _shape(d: Decimal) -> tuple[int, int]:
    """(significant figures, decimals) of a finite ``d`` with trailing zeros ignored."""
    _, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    n = len(digits)
    while n > 1 and exp < 0 and digits[n - 1] == 0:
        n -= 1
        exp += 1
    return n, max(0, -exp)


def is_valid_price(px: Number, sz_decimals: int, max_decimals: int = PERP_MAX_DECIMALS) -> bool:
    """True when ``px > 0`` is an integer or has ≤ 5 sig figs and ≤ max_decimals − szDecimals."""
    d = to_decimal(px)
    if d <= 0:
        return False
    sig, decimals = _shape(d)
    if decimals == 0:
        return True
    return sig <= MAX_SIG_FIGS and decimals <= price_decimals(sz_decimals, max_decimals)


def is_valid_size(sz: Number, sz_decimals: int) -> bool:
    """True when ``sz > 0`` has at most ``szDecimals`` decimals."""
    d = to_decimal(sz)
    return d > 0 and _shape(d)[1] <= sz_decimals


def round_price_up(px: Number, sz_decimals: int, max_decimals: int = PERP_MAX_DECIMALS) -> Decimal:
    """The smallest valid price ≥ ``px`` (``px > 0``)."""
    d = to_decimal(px)
    if d <= 0:
        raise ValueError(f"price must be > 0, got {d}")
    tick = price_tick(d, sz_decimals, max_decimals)
    return d.quantize(tick, rounding=ROUND_CEILING, context=_CTX)


def round_price_down(
    px: Number, sz_decimals: int, max_decimals: int = PERP_MAX_DECIMALS
) -> Decimal | None:
    """The largest valid price ≤ ``px``, or ``None`` when ``px`` is below the smallest one."""
    d = to_decimal(px)
    if d <= 0:
        raise ValueError(f"price must be > 0, got {d}")
    tick = price_tick(d, sz_decimals, max_decimals)
    r = d.quantize(tick, rounding=ROUND_FLOOR, context=_CTX)
    return r if r > 0 else None


def ioc_price(
    px: Number, is_buy: bool, sz_decimals: int, max_decimals: int = PERP_MAX_DECIMALS
) -> str | None:
    """IOC taker limit as a wire string: buy rounds up, sell rounds down (stays marketable)."""
    r = (
        round_price_up(px, sz_decimals, max_decimals)
        if is_buy
        else round_price_down(px, sz_decimals, max_decimals)
    )
    return None if r is None else decimal_to_wire(r)


def floor_size(sz: Number, sz_decimals: int) -> Decimal | None:
    """``sz`` floored to the lot ``10^-szDecimals``; ``None`` when that is zero (P12)."""
    d = to_decimal(sz)
    if d < 0:
        raise ValueError(f"size must be ≥ 0, got {d}")
    if not 0 <= sz_decimals <= SPOT_MAX_DECIMALS:
        raise ValueError(f"szDecimals {sz_decimals} out of range")
    r = d.quantize(Decimal(1).scaleb(-sz_decimals), rounding=ROUND_FLOOR, context=_CTX)
    return r if r > 0 else None


def size_wire(sz: Number, sz_decimals: int) -> str | None:
    """:func:`floor_size` as a wire string (``None`` for a zero size)."""
    r = floor_size(sz, sz_decimals)
    return None if r is None else decimal_to_wire(r)


def min_size_for_notional(
    px: Number, sz_decimals: int, min_notional: Number = EXCHANGE_MIN_NOTIONAL
) -> Decimal:
    """The smallest lot-multiple size whose notional at ``px`` is ≥ ``min_notional``."""
    p = to_decimal(px)
    if p <= 0:
        raise ValueError(f"price must be > 0, got {p}")
    raw = _CTX.divide(to_decimal(min_notional), p)
    lot = Decimal(1).scaleb(-sz_decimals)
    r = raw.quantize(lot, rounding=ROUND_CEILING, context=_CTX)
    return r if r > 0 else lot


def meets_min_notional(
    px: Number, sz: Number, min_notional: Number = EXCHANGE_MIN_NOTIONAL
) -> bool:
    """``px × sz ≥ min_notional``, exactly; pass the price the order is sent at (P13/P14)."""
    return _CTX.multiply(to_decimal(px), to_decimal(sz)) >= to_decimal(min_notional)


def prepare_ioc(
    is_buy: bool,
    px: Number,
    sz: Number,
    sz_decimals: int,
    *,
    min_notional: Number = EXCHANGE_MIN_NOTIONAL,
    max_decimals: int = PERP_MAX_DECIMALS,
) -> IocOrderPx | Reject:
    """Round an IOC taker order for the wire, or say why it must not be sent.

    Price: buy up / sell down (:func:`ioc_price`); size: floored to the lot; the notional is
    checked at the rounded price, i.e. the price actually sent.
    """
    p = (
        round_price_up(px, sz_decimals, max_decimals)
        if is_buy
        else round_price_down(px, sz_decimals, max_decimals)
    )
    if p is None:
        return Reject.NO_VALID_PRICE
    s = floor_size(sz, sz_decimals)
    if s is None:
        return Reject.ZERO_SIZE
    notional = _CTX.multiply(p, s)
    if notional < to_decimal(min_notional):
        return Reject.BELOW_MIN_NOTIONAL
    return IocOrderPx(decimal_to_wire(p), decimal_to_wire(s), notional)


def slippage_limit_price(
    best_px: Number,
    is_buy: bool,
    slippage: Number,
    sz_decimals: int,
    *,
    worst_px: Number | None = None,
    max_decimals: int = PERP_MAX_DECIMALS,
) -> str | None:
    """A slippage-capped, marketable IOC limit as a wire string, or ``None`` if impossible.

    Buy: ``min(best_ask × (1 + slippage), worst_px)`` rounded UP; if rounding up would pass
    ``worst_px`` (the highest acceptable price) the largest valid price ≤ ``worst_px`` is used.
    Sell: ``max(best_bid × (1 − slippage), worst_px)`` rounded DOWN, symmetric (``worst_px`` is
    then the lowest acceptable price). ``None`` when no valid price is both marketable (≥ the
    ask for a buy, ≤ the bid for a sell) and within ``worst_px``.
    """
    best = to_decimal(best_px)
    slip = to_decimal(slippage)
    if best <= 0:
        raise ValueError(f"best price must be > 0, got {best}")
    if slip < 0 or slip >= 1:
        raise ValueError(f"slippage must be in [0, 1), got {slip}")
    worst = None if worst_px is None else to_decimal(worst_px)
    r: Decimal | None
    if is_buy:
        target = _CTX.multiply(best, _ONE + slip)
        if worst is not None:
            if worst < best:
                return None
            target = min(target, worst)
        r = round_price_up(target, sz_decimals, max_decimals)
        if worst is not None and r > worst:
            r = round_price_down(worst, sz_decimals, max_decimals)
        if r is None or r < best:
            return None
    else:
        target = _CTX.multiply(best, _ONE - slip)
        if worst is not None:
            if worst > best:
                return None
            target = max(target, worst)
        # below the smallest valid price, the smallest valid price is the best we can do
        r = round_price_down(target, sz_decimals, max_decimals) or round_price_up(
            target, sz_decimals, max_decimals
        )
        if worst is not None and r < worst:
            r = round_price_up(worst, sz_decimals, max_decimals)
        if r > best:
            return None
    return decimal_to_wire(r)
