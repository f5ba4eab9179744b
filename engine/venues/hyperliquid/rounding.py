"""Hyperliquid price/size rules and IOC rounding (hyperliquid-protocol.md §7), wire strings.

The venue's rule behind the neutral :class:`~engine.core.neutral.OrderRounding` interface is
:class:`HyperliquidRounding` (one per asset); the trading core rounds only through it.

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
import math
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

    ZERO_SIZE = "zero_size"  # size floors to 0 lots (the venue refuses a zero size, P12)
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


def min_notional_sell_px(px_wire: str, sz_wire: str, cap_px: Number, sz_decimals: int) -> str:
    """A sell IOC limit whose notional meets the $10 minimum when the reference price allows.

    A reduce-only sell's limit sits below the bid by the flatten slippage, so a position worth
    just over $10 at the bid (10.03 USD) would be sent below $10 and refused by the venue. When
    ``px_wire × sz_wire`` is under the minimum, the limit is raised to the smallest valid price
    with ``px × sz ≥ $10``, provided that price is still ≤ ``cap_px`` (the bid: the order stays
    marketable); otherwise ``px_wire`` is returned unchanged (the position is dust at the
    reference price). Perps; exact arithmetic off the common path.
    """
    if float(px_wire) * float(sz_wire) > 10.000_001:  # clearly above: the common case
        return px_wire
    if meets_min_notional(px_wire, sz_wire):
        return px_wire
    sz = to_decimal(sz_wire)
    if sz <= 0:
        return px_wire
    need = round_price_up(_CTX.divide(EXCHANGE_MIN_NOTIONAL, sz), sz_decimals)
    if need > to_decimal(cap_px):
        return px_wire
    return decimal_to_wire(need)


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


# --- float fast path (the order path) ----------------------------------------------------------
#
# The entry and flatten paths start from floats (book prices, sizes) and need wire strings. The
# Decimal functions above cost ~4-5 µs a call; these give the same answers with float and int
# arithmetic. Like :func:`to_decimal` they read a float as its shortest ``repr``:
#
# * a size floored to the lot is the ``repr``'s digits truncated: exact integer arithmetic;
# * a slippage-capped price is found with floats (``best × (1 ± slip)`` scaled to the tick), and
#   only trusted when the scaled value is at least ``_MARGIN`` (relative) away from a grid point
#   and from a decade boundary, while float error is below 1e-15 relative. On a grid point (a
#   round price times a round slippage) the decision is made exactly with the ``repr``s' integer
#   digits; next to a power of ten, or outside the ranges below, the Decimal function decides.
#
# Tests prove equality with the Decimal functions (Hypothesis over prices, slippages, sizes,
# szDecimals, and prices built on the grid).

_MARGIN: Final = 1e-11
_FAST_MAX: Final = 1e12  # scaled prices below this: float error < 1e-3 ≪ margin × value
_POW10_F: Final = tuple(float(10**i) for i in range(PERP_MAX_DECIMALS + 1))
_POW10_I: Final = tuple(10**i for i in range(40))
_log10 = math.log10
_floor = math.floor


def _grid_wire(n: int, k: int) -> str:
    """The canonical wire string of ``n × 10^-k`` (``n > 0``, ``k ≥ 0``)."""
    s = str(n)
    if not k:
        return s
    if len(s) <= k:
        s = "0" * (k + 1 - len(s)) + s
    s = s[:-k] + "." + s[-k:]
    s = s.rstrip("0")
    return s[:-1] if s[-1] == "." else s


def _repr_parts(x: float) -> tuple[int, int] | None:
    """``(m, e)`` with ``repr(x) == m × 10^e`` exactly, for a finite ``x ≥ 0``; else None."""
    s = repr(x)
    e = 0
    i = s.find("e")
    if i >= 0:
        e = int(s[i + 1 :])
        s = s[:i]
    dot = s.find(".")
    if dot >= 0:
        e -= len(s) - dot - 1
        s = s[:dot] + s[dot + 1 :]
    if not s.isdigit():
        return None  # "-…", "nan", "inf"
    return int(s), e


def _scaled_floor(m: int, e: int, k: int) -> tuple[int, bool]:
    """``(floor(m × 10^(e+k)), exact)``."""
    x = e + k
    if x >= 0:
        return m * _POW10_I[x] if x < 40 else m * 10**x, True
    q, r = divmod(m, _POW10_I[-x] if -x < 40 else 10**-x)
    return q, r == 0


def _fast_grid_px(best: float, is_buy: bool, slip: float, sz_decimals: int) -> str | None:
    """The valid perp price ≥ (buy) or ≤ (sell) ``best × (1 ± slip)`` as a wire string, or
    None when this path cannot decide it (the caller asks Decimal)."""
    t = best * (1.0 + slip) if is_buy else best * (1.0 - slip)
    if not 1e-6 <= t < _FAST_MAX:
        return None
    a = _floor(_log10(t))
    r = t / 10.0**a
    if not 1.0 + _MARGIN < r < 10.0 - 10 * _MARGIN:
        return None  # next to a power of ten: the decade (hence the tick) is uncertain
    k = 4 - a
    pd = PERP_MAX_DECIMALS - sz_decimals
    if pd < k:
        k = pd
    if k < 0:
        k = 0
    q = t * _POW10_F[k]
    fl = _floor(q)
    fr = q - fl
    margin = _MARGIN * q
    if margin < fr < 1.0 - margin:
        n = fl + 1 if is_buy else fl
    else:
        # on or next to a grid point: decide with the exact digits of the two reprs
        bp = _repr_parts(best)
        sp = _repr_parts(slip)
        if bp is None or sp is None:
            return None
        sm, se = sp
        one = _POW10_I[-se] if -40 < se <= 0 else None
        if one is None:
            return None
        n, exact = _scaled_floor(bp[0] * (one + sm if is_buy else one - sm), bp[1] + se, k)
        if is_buy and not exact:
            n += 1
    if n <= 0:
        return None
    return _grid_wire(n, k)


def ioc_limit_price(best_px: float, is_buy: bool, slippage: float, sz_decimals: int) -> str | None:
    """:func:`slippage_limit_price` (perps, no ``worst_px``) for float inputs, without Decimal
    in the common case; the same result for every input (it falls back to that function)."""
    if (
        type(best_px) is float
        and type(slippage) is float
        and 0.0 < best_px
        and 0.0 <= slippage < 1.0
        and type(sz_decimals) is int
        and 0 <= sz_decimals <= PERP_MAX_DECIMALS
    ):
        w = _fast_grid_px(best_px, is_buy, slippage, sz_decimals)
        if w is not None:
            return w
    return slippage_limit_price(best_px, is_buy, slippage, sz_decimals)


def _wire_int(px_wire: str) -> tuple[int, int] | None:
    """``(n, k)`` with ``px_wire == n × 10^-k`` for a plain decimal string, else None."""
    dot = px_wire.find(".")
    digits = px_wire if dot < 0 else px_wire[:dot] + px_wire[dot + 1 :]
    if not digits.isdigit() or not digits.isascii():
        return None
    return int(digits), (0 if dot < 0 else len(px_wire) - dot - 1)


def _valid_grid(n: int, k: int, sz_decimals: int) -> bool:
    """``n × 10^-k`` (k ≥ 0) is a valid perp price: an integer > 0, or ≤ 5 sig figs and ≤
    ``6 − szDecimals`` decimals (trailing zeros do not count)."""
    if n <= 0:
        return False
    while k and n % 10 == 0:
        n //= 10
        k -= 1
    return not k or (k <= PERP_MAX_DECIMALS - sz_decimals and n < 100_000)


# (price string, szDecimals) -> (n, k, canonical string) of a valid price, or None: a memo of a
# pure function (prices repeat), cleared when it grows past _PX_MEMO_MAX entries
_PX_MEMO: dict[tuple[str, int], tuple[int, int, str] | None] = {}
_PX_MEMO_MAX: Final = 4096


def _valid_px(px_wire: str, sz_decimals: int) -> tuple[int, int, str] | None:
    key = (px_wire, sz_decimals)
    hit = _PX_MEMO.get(key, False)
    if hit is not False:
        return hit  # type: ignore[return-value]
    nk = _wire_int(px_wire)
    out = None
    if nk is not None and _valid_grid(nk[0], nk[1], sz_decimals):
        n, k = nk
        while k and n % 10 == 0:
            n //= 10
            k -= 1
        out = (n, k, _grid_wire(n, k))
    if len(_PX_MEMO) >= _PX_MEMO_MAX:
        _PX_MEMO.clear()
    _PX_MEMO[key] = out
    return out


def _lots(sz: float, sz_decimals: int) -> int | None:
    """``sz`` (read as its repr, like :func:`to_decimal`) floored to whole lots of
    ``10^-szDecimals`` (a valid perp szDecimals); None when this path cannot tell."""
    if type(sz) is not float or not 0.0 <= sz < 1e15:
        return None
    scale = _POW10_F[sz_decimals]
    q = sz * scale
    fl = _floor(q)
    fr = q - fl
    margin = _MARGIN * q
    if margin < fr < 1.0 - margin:
        return fl  # clearly between two lots: float error (< 1e-15 relative) cannot matter
    n = fl if fr <= margin else fl + 1
    if n < 10**15 and n / scale == sz:
        # sz is the float nearest n lots; n × 10^-szd has ≤ 15 digits, so it is sz's repr
        return n
    parts = _repr_parts(sz)
    if parts is None:
        return None
    return _scaled_floor(parts[0], parts[1], sz_decimals)[0]


def _perp_sz_decimals(sz_decimals: object) -> bool:
    return type(sz_decimals) is int and 0 <= sz_decimals <= PERP_MAX_DECIMALS


def ioc_wire(
    is_buy: bool, px_wire: str, sz: float, sz_decimals: int
) -> tuple[str, str] | Reject:
    """``(p, s)``: the wire strings :func:`prepare_ioc` gives (perps, $10 minimum), or its
    :class:`Reject`, without Decimal when ``px_wire`` is already a valid price (e.g. from
    :func:`ioc_limit_price`) and ``sz`` a float; any other input gets :func:`prepare_ioc`'s
    answer (or exception)."""
    if type(px_wire) is str and _perp_sz_decimals(sz_decimals):
        px = _valid_px(px_wire, sz_decimals)
        lots = _lots(sz, sz_decimals)
        if px is not None and lots is not None:
            if lots <= 0:
                return Reject.ZERO_SIZE
            n, k, canonical = px
            # px × sz ≥ $10, exactly: n × lots × 10^-(k + szDecimals) ≥ 10
            if n * lots < 10 * _POW10_I[k + sz_decimals]:
                return Reject.BELOW_MIN_NOTIONAL
            return canonical, _grid_wire(lots, sz_decimals)
    r = prepare_ioc(is_buy, px_wire, sz, sz_decimals)
    return r if isinstance(r, Reject) else (r.px, r.sz)


def lot_size_wire(sz: float, sz_decimals: int) -> str | None:
    """:func:`size_wire` for a float size without Decimal (the same result for every input)."""
    lots = _lots(sz, sz_decimals) if _perp_sz_decimals(sz_decimals) else None
    if lots is None:
        return size_wire(sz, sz_decimals)
    return _grid_wire(lots, sz_decimals) if lots > 0 else None


class HyperliquidRounding:
    """Hyperliquid's rule for one perp (``szDecimals``) as the instrument's
    :class:`~engine.core.neutral.OrderRounding`: the functions above, bound to the asset.

    The trading core rounds through this object (``TradingCore.rules``) and so knows no
    significant figures or ``szDecimals``; the answers are the module functions' own."""

    __slots__ = ("sz_decimals", "min_notional")

    def __init__(self, sz_decimals: int) -> None:
        self.sz_decimals = sz_decimals
        self.min_notional = float(EXCHANGE_MIN_NOTIONAL)

    def ioc_limit_price(self, best_px: float, is_buy: bool, slippage: float) -> str | None:
        return ioc_limit_price(best_px, is_buy, slippage, self.sz_decimals)

    def ioc_wire(self, is_buy: bool, px_wire: str, sz: float) -> tuple[str, str] | Reject:
        return ioc_wire(is_buy, px_wire, sz, self.sz_decimals)

    def lot_size_wire(self, sz: float) -> str | None:
        return lot_size_wire(sz, self.sz_decimals)

    def min_notional_sell_px(self, px_wire: str, sz_wire: str, cap_px: float) -> str:
        return min_notional_sell_px(px_wire, sz_wire, cap_px, self.sz_decimals)

    def __repr__(self) -> str:
        return f"HyperliquidRounding(sz_decimals={self.sz_decimals})"
