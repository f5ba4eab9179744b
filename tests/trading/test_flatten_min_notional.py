"""Issue 9 item 6: dust and the venue's $10 minimum are judged at the reference price (the
touch a flatten trades against, else the mark), never at the flatten's slipped limit price.

A long worth 10.03 USD at the bid is flattenable: its reduce-only sell goes out at a limit
that keeps ``px × sz ≥ $10`` and stays at or below the bid. A venue refusal for the minimum is
dust only when the position is below $10 at the reference price.
"""

from __future__ import annotations

from decimal import Decimal

from engine.core.intents import Alert, PlaceOrder
from engine.core.orders import FLATTEN, Order
from engine.venues.hyperliquid import rounding

from .helpers import T0, make_ready, make_trading


def _flattens(out: list[object]) -> list[Order]:
    return [i.order for i in out if isinstance(i, PlaceOrder) and i.order.purpose == FLATTEN]


def _long_of(size: float, bid: float) -> tuple[object, Order]:
    """A ready core holding a foreign long of ``size`` (hard stop latched: it flattens)."""
    core, _ = make_trading()
    make_ready(core, px=bid + 0.01)  # bid = ``bid``, ask = bid + 0.02
    core.on_fill("f1", None, "xyz:GOLD", True, bid, size, 0.0, T0, T0)
    orders = _flattens(core.drain())
    assert len(orders) == 1
    return core, orders[0]


def test_a_10_03_usd_long_is_flattened_at_a_limit_meeting_the_minimum() -> None:
    # 0.1 at a bid of 100.30 = 10.03 USD; 50 bps below the bid would be 99.798 → 9.98 USD
    core, o = _long_of(0.1, 100.30)
    assert not o.is_buy and o.reduce_only
    notional = Decimal(o.px_wire) * Decimal(o.sz_wire)
    assert notional >= 10, (o.px_wire, o.sz_wire)
    assert Decimal(o.px_wire) <= Decimal("100.30")  # still marketable against the bid
    assert rounding.is_valid_price(o.px_wire, 2)


def test_a_larger_long_keeps_the_full_flatten_slippage() -> None:
    core, o = _long_of(1.0, 100.30)
    # 100.30 × (1 − 0.005) = 99.7985 → rounded down to the grid
    assert o.px_wire == "99.798"


def test_below_ten_at_the_bid_keeps_the_slipped_limit() -> None:
    # 0.09 × 100.30 = 9.03 USD: no valid limit ≤ bid meets $10; the venue decides (dust)
    core, o = _long_of(0.09, 100.30)
    assert o.px_wire == "99.798"


def test_a_minimum_value_refusal_is_dust_only_below_ten_at_the_reference_price() -> None:
    # sent while the position was worth < $10 at the bid ...
    core, o = _long_of(0.1, 99.00)
    assert Decimal(o.px_wire) * Decimal(o.sz_wire) < 10
    p = core.book.positions[0]
    core.on_sent(o.cloid, T0 + 2)
    # ... the market rose: 0.1 at a bid of 100.30 is 10.03 USD when the refusal arrives
    core.on_bbo(0, 2, 100.30, 100.0, 100.32, 100.0, T0 + 3)
    core.drain()
    core.on_post_result(o.cloid, {"error": "Order must have minimum value of $10. asset=110000"},
                        T0 + 4)
    out = core.drain()
    assert not any(isinstance(a, Alert) and a.code == "dust_position" for a in out)
    assert p.dust_size is None and p.flatten_failures == 1
    # the retry goes out (after its backoff) at a limit meeting the minimum
    core.on_housekeeping(T0 + 4 + 5_000)
    retry = _flattens(core.drain())
    assert len(retry) == 1
    assert Decimal(retry[0].px_wire) * Decimal(retry[0].sz_wire) >= 10
    assert Decimal(retry[0].px_wire) <= Decimal("100.30")


def test_a_minimum_value_refusal_below_ten_at_the_bid_is_dust() -> None:
    core, o = _long_of(0.09, 100.30)
    p = core.book.positions[0]
    core.on_sent(o.cloid, T0 + 2)
    core.on_post_result(o.cloid, {"error": "Order must have minimum value of $10. asset=110000"},
                        T0 + 3)
    out = core.drain()
    assert any(isinstance(a, Alert) and a.code == "dust_position" for a in out)
    assert p.dust_size is not None


def test_min_notional_sell_px_is_exact_on_the_grid() -> None:
    # 10 / 0.3 = 33.333… → the smallest valid price above it is 33.334 (szDecimals 2)
    assert rounding.min_notional_sell_px("33.2", "0.3", 33.5, 2) == "33.334"
    assert Decimal("33.334") * Decimal("0.3") >= 10
    # the cap (the bid) below what the minimum needs: unchanged
    assert rounding.min_notional_sell_px("33.2", "0.3", 33.3, 2) == "33.2"
    # already above the minimum: unchanged
    assert rounding.min_notional_sell_px("99.798", "1", 100.3, 2) == "99.798"
