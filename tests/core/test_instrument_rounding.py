"""Rounding is the instrument's rule (issue 11 part 1): the trading core rounds every order
through its market's :class:`~engine.core.neutral.OrderRounding`.

Hyperliquid's rule (5 significant figures, ``szDecimals``) is
``engine.venues.hyperliquid.rounding.HyperliquidRounding``, the module functions bound to an
asset (their numbers are pinned by ``test_rounding*.py``); a tick/lot venue's rule is
:class:`~engine.core.neutral.TickLotRounding`, which an :class:`Instrument` hands out.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.config import structure_config
from engine.core.intents import PlaceOrder
from engine.core.neutral import Instrument, InstrumentKind, TickLotRounding, TickRefusal
from engine.core.orders import CloidFactory, Order
from engine.core.trading import TradingCore
from engine.core.types import MarketSpec
from engine.strategies.dislocation import DislocationStrategy
from engine.venues.hyperliquid import rounding as hl
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore

T0 = 1_800_000_000_000.0
_CFG: dict[str, Any] = {
    "mode": "paper",
    "detector": {"session_aware": False, "min_consecutive_moves": 0,
                 "oracle_direction_filter": False, "min_edge_above_baseline_bps": 0.0,
                 "min_confidence": 0.0, "min_quote_lag_ms": 0.0},
}
_ORACLES = itertools.count()
PERP = Instrument("bybit", "GOLDUSDT", InstrumentKind.LINEAR_PERP, tick_size=Decimal("0.5"),
                  lot_size=Decimal("0.1"), min_qty=Decimal("0.1"), min_notional=Decimal(5))


def _entry(core: TradingCore) -> Order:
    core.on_bbo(0, 1, 99.99, 100.0, 100.01, 100.0, T0)
    core.on_ctx(0, 100.0, 100.0, T0)
    core.set_ready("user_channels", True)
    core.on_reconcile({}, [], T0)
    core.drain()
    core.on_ctx(0, 100.3 + 0.01 * next(_ORACLES), 100.3, T0 + 10)  # a buy signal
    [o] = [it.order for it in core.drain() if isinstance(it, PlaceOrder)]
    return o


def _observe() -> tuple[DislocationStrategy, Any]:
    cfg = structure_config(_CFG, "test")
    obs = DislocationStrategy([MarketSpec(0, "xyz:GOLD", 110000, 2)], cfg.gates, cfg.detector,
                      cfg.sizing, cfg.followups.offsets_ms, mode=cfg.mode, boot_id="t")
    return obs, cfg


def test_the_core_rounds_with_the_instruments_rule() -> None:
    obs, cfg = _observe()
    core = TradingCore(obs, cfg, rules=[PERP.rounding()], cloids=CloidFactory(b"\x04" * 8))
    o = _entry(core)
    # best ask 100.01 plus the entry slippage, up to the 0.5 tick; the size on the 0.1 lot
    slip = Decimal(repr(cfg.trading.entry_slippage_bps / 1e4))
    want = (Decimal("100.01") * (1 + slip) / Decimal("0.5")).to_integral_value("ROUND_CEILING")
    assert Decimal(o.px_wire) == want * Decimal("0.5") and Decimal(o.px_wire) % Decimal("0.5") == 0
    assert Decimal(o.sz_wire) % Decimal("0.1") == 0 and Decimal(o.sz_wire) > 0
    obs2, _ = _observe()
    hl_core = HyperliquidTradingCore(obs2, cfg, cloids=CloidFactory(b"\x04" * 8))
    o2 = _entry(hl_core)
    assert o2.px_wire == hl.ioc_limit_price(100.01, True, cfg.trading.entry_slippage_bps / 1e4, 2)
    assert o2.px_wire != o.px_wire  # Hyperliquid's grid, not the tick


def test_a_core_needs_one_rule_per_market() -> None:
    obs, cfg = _observe()
    try:
        TradingCore(obs, cfg, rules=[])
    except ValueError as e:
        assert "0 rounding rules for 1 markets" in str(e)
    else:
        raise AssertionError("a core without its markets' rules was built")


def test_tick_lot_rounding() -> None:
    r = PERP.rounding()
    assert r == TickLotRounding(Decimal("0.5"), Decimal("0.1"), Decimal("0.1"), Decimal(5))
    assert r.min_notional == 5.0
    assert r.ioc_limit_price(100.01, True, 0.0) == "100.5"  # buy: up to the tick
    assert r.ioc_limit_price(100.49, False, 0.0) == "100"  # sell: down
    assert r.ioc_limit_price(100.0, False, 0.01) == "99"
    assert r.ioc_wire(True, "100.5", 0.129) == ("100.5", "0.1")
    assert r.ioc_wire(True, "100.5", 0.09) is TickRefusal.ZERO_SIZE
    assert r.ioc_wire(True, "10", 0.4) is TickRefusal.BELOW_MIN_NOTIONAL  # 4 < 5
    assert r.lot_size_wire(0.35) == "0.3" and r.lot_size_wire(0.05) is None
    assert r.min_notional_sell_px("10", "0.4", 13.0) == "12.5"  # 12.5 × 0.4 = 5
    assert r.min_notional_sell_px("10", "0.4", 12.0) == "10"  # not above the cap: unchanged


@given(st.floats(0.01, 1e5), st.booleans(), st.sampled_from([0.0, 0.001, 0.005, 0.02]),
       st.floats(0.0, 1e3), st.integers(0, 5))
def test_hyperliquid_rule_is_the_module_functions(best: float, is_buy: bool, slip: float,
                                                  sz: float, szd: int) -> None:
    r = hl.HyperliquidRounding(szd)
    assert r.min_notional == float(hl.EXCHANGE_MIN_NOTIONAL)
    px = r.ioc_limit_price(best, is_buy, slip)
    assert px == hl.ioc_limit_price(best, is_buy, slip, szd)
    assert r.lot_size_wire(sz) == hl.lot_size_wire(sz, szd)
    if px is not None:
        assert r.ioc_wire(is_buy, px, sz) == hl.ioc_wire(is_buy, px, sz, szd)
        lot = r.lot_size_wire(sz)
        if lot is not None and not is_buy:
            assert r.min_notional_sell_px(px, lot, best) == hl.min_notional_sell_px(
                px, lot, best, szd)
