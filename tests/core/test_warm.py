"""The shadow-core warm-up (engine/venues/hyperliquid/warm.py).

* every warm() runs one synthetic entry cycle on the shadow: exactly one order, resolved, the
  market FLAT again, nothing left behind (orders, timers, intents, gate events), memory flat;
* the LIVE core is unaffected: a live core driven by events with warm() calls interleaved ends
  bit-for-bit equal (every slot, float bits included) to an identical core that never saw
  warm(), and produced the same outputs (scripted and Hypothesis-generated interleavings);
* no log record while warming; an exception inside disables it with one WARNING and warm() is
  a no-op afterwards; a latched / killed shadow is rebuilt (counted); bad input (no market,
  wrong indexes, configurations no entry can pass) disables it with one WARNING, never raises.
"""

from __future__ import annotations

import collections
import logging
import tracemalloc
import types
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import EngineConfig, structure_config
from engine.core import trading as trading_mod
from engine.core.intents import PlaceOrder
from engine.core.orders import CloidFactory
from engine.core.types import MarketSpec
from engine.strategies.dislocation import DislocationStrategy
from engine.venues.hyperliquid import rounding as hl_rounding
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore
from engine.venues.hyperliquid.warm import CoreWarmer
from fsm import order as ofsm
from fsm import position as pfsm

from ..trading.helpers import merge

T0 = 1_767_000_000_000.0
NO_MATCH = {"error": "Order could not immediately match against any resting orders. asset=1"}

# A live-like trading configuration (session-aware detector, consecutive moves, quote lag: the
# defaults) and one where single frames make signals (as the trading tests use).
DEFAULT: dict[str, Any] = {"mode": "trade"}
RELAXED: dict[str, Any] = {
    "mode": "trade",
    "detector": {"session_aware": False, "min_consecutive_moves": 0,
                 "oracle_direction_filter": False, "min_edge_above_baseline_bps": 0.0,
                 "min_confidence": 0.0, "min_quote_lag_ms": 0.0},
    "exits": {"quick_profit_min_hold_ms": 0.0},
    "trading": {"max_total_notional": 10_000.0, "max_concurrent_positions": 8,
                "action_budget": 1000},
}


def config(raw: dict[str, Any]) -> EngineConfig:
    return structure_config(raw, "test")


def specs_of(n: int, szd: int | None = None) -> list[MarketSpec]:
    """``n`` markets; szDecimals 0..5 in turn unless given."""
    return [MarketSpec(i, f"xyz:M{i:02d}", 110_000 + i, (i % 6) if szd is None else szd)
            for i in range(n)]


def live_core(cfg: EngineConfig, specs: list[MarketSpec]) -> TradingCore:
    obs = DislocationStrategy(specs, cfg.gates, cfg.detector, cfg.sizing, cfg.followups.offsets_ms,
                      mode=cfg.mode, boot_id="t")
    core = TradingCore(obs, cfg, cloids=CloidFactory(b"\x01" * 8))
    for i in range(len(specs)):
        core.on_bbo(i, 1, 99.99, 100.0, 100.01, 100.0, T0)
        core.on_ctx(i, 100.0, 100.0, T0)
    core.set_ready("user_channels", True)
    core.on_reconcile({}, [], T0)
    if cfg.mode == "trade":  # as the shadow: entries need a known equity
        core.equity_source, core.equity_known = "venue", True
    assert core.is_ready()
    return core


# ----------------------------------------------------------------------- bit-for-bit snapshot
def dump(obj: Any, memo: dict[int, int] | None = None) -> Any:
    """A structural, identity-free image of ``obj``: every slot / attribute, recursively,
    floats by their bits; a shared or cyclic reference becomes ``("ref", n)`` (n = the order in
    which it was first met, so two cores built and driven alike give equal images)."""
    if memo is None:
        memo = {}
    if obj is None or isinstance(obj, bool | int | str | bytes):
        return obj
    if isinstance(obj, float):
        return ("f", obj.hex())
    if isinstance(obj, types.FunctionType | types.MethodType | types.BuiltinFunctionType):
        return ("fn", getattr(obj, "__qualname__", repr(obj)))
    if isinstance(obj, ZoneInfo):
        return ("tz", str(obj))
    key = id(obj)
    if key in memo:
        return ("ref", memo[key])
    memo[key] = len(memo)
    if isinstance(obj, list | tuple):
        return (type(obj).__name__, [dump(x, memo) for x in obj])
    if isinstance(obj, collections.deque):
        return ("deque", [dump(x, memo) for x in obj])
    if isinstance(obj, dict):
        return ("dict", [(dump(k, memo), dump(v, memo)) for k, v in obj.items()])
    if isinstance(obj, set | frozenset):
        return ("set", sorted((dump(x, memo) for x in obj), key=repr))
    fields: list[tuple[str, Any]] = []
    for cls in type(obj).__mro__:
        for name in cls.__dict__.get("__slots__", ()):
            if hasattr(obj, name):
                fields.append((name, dump(getattr(obj, name), memo)))
    for name, value in getattr(obj, "__dict__", {}).items():
        fields.append((name, dump(value, memo)))
    return (type(obj).__qualname__, fields)


def snapshot(core: TradingCore) -> Any:
    """Everything the live core holds (markets, gates, detector, positions, orders, risk,
    breakers, pending intents and events); ``_taken`` holds object ids, so it must be empty."""
    assert not core._taken
    return dump(core)


def image(intents: list[Any]) -> Any:
    return dump(intents)


# ---------------------------------------------------------------------- the live event script
class Driver:
    """Drives a live core through entries, fills, no-matches, exits and housekeeping; the same
    calls on two identical cores give identical results."""

    def __init__(self, core: TradingCore) -> None:
        self.core = core
        self.t = T0
        self.st = 1
        self.oid = 500
        self.outputs: list[Any] = []

    def _tick(self, ms: float) -> float:
        self.t += ms
        return self.t

    def step(self, k: int) -> None:
        c = self.core
        n = len(c.strategy.markets)
        i = k % n
        self.st += 1
        c.on_bbo(i, self.st, 99.99, 100.0, 100.01, 100.0, self._tick(3.0))
        c.on_ctx(i, 100.2 + 0.01 * (k % 7), 100.0, self._tick(1.0))  # a dislocation: an entry
        for it in c.take_orders():
            o = it.order
            c.on_sent(o.cloid, self._tick(0.2))
            if k % 3 == 0:  # an IOC that found nothing
                c.on_post_result(o.cloid, NO_MATCH, self._tick(0.3))
                continue
            self.oid += 1
            c.on_post_result(o.cloid, {"filled": {"totalSz": o.sz_wire, "avgPx": "100.01",
                                                  "oid": self.oid}}, self._tick(0.3))
            c.on_fill(f"f{self.oid}", o.cloid, o.coin, o.is_buy, 100.01, o.sz, 0.01, self.t,
                      self._tick(0.1))
        self.st += 1
        c.on_bbo(i, self.st, 100.15, 100.0, 100.17, 100.0, self._tick(2.0))  # quick profit
        for it in c.take_orders():
            o = it.order
            c.on_sent(o.cloid, self._tick(0.2))
            self.oid += 1
            c.on_post_result(o.cloid, {"filled": {"totalSz": o.sz_wire, "avgPx": "100.1",
                                                  "oid": self.oid}}, self._tick(0.3))
            c.on_fill(f"x{self.oid}", o.cloid, o.coin, o.is_buy, 100.1, o.sz, 0.01, self.t,
                      self._tick(0.1))
        self.st += 1
        c.on_bbo(i, self.st, 99.99, 100.0, 100.01, 100.0, self._tick(1.0))
        c.on_ctx(i, 100.0, 100.0, self._tick(1.0))
        if k % 5 == 4:
            c.on_timer(self._tick(50.0))  # housekeeping, breaker tick
        self.outputs.append(image(c.drain()))
        self.outputs.append(dump(c.strategy.drain_events()))


# ------------------------------------------------------------------------------------- tests
def test_every_warm_makes_one_order_resolves_it_and_leaves_nothing_behind() -> None:
    cfg = config(DEFAULT)
    w = CoreWarmer(cfg, specs_of(40))
    # construction verified each price ladder (6 szDecimals) over its 4 phases
    c0 = w.stats().cycles
    assert w.enabled and c0 == 6 * 4
    shadow = w.shadow_core
    assert shadow is not None
    last_t = 0.0
    for n in range(2000):
        w.warm()
        # the shadow's own clock: every cycle later than the previous one
        t = max(max(m.bbo_recv_ms or 0.0, m.ctx_recv_ms or 0.0) for m in shadow.strategy.markets)
        assert t > last_t
        last_t = t
        assert w.stats().cycles == c0 + n + 1
    s = w.stats()
    assert (s.cycles, s.rebuilds, s.disabled, s.reason) == (c0 + 2000, 0, False, None)
    assert w.shadow_core is shadow  # never rebuilt
    assert shadow.entries_sent == c0 + 2000 and shadow.flattens_sent == 0
    assert shadow.orders.by_cloid == {} and shadow.orders.live == {}  # pruned, none live
    assert shadow.orders.by_oid == {} and shadow.orders.pending_total == 0.0
    assert shadow.out == [] and shadow.new_orders == [] and shadow.strategy.events == []
    assert shadow.strategy.next_timer_ms() is None  # the quote-lag timers were consumed
    assert all(p.state == pfsm.FLAT and not p.has_exposure for p in shadow.book.positions)
    assert not shadow.hard_stop.latched and shadow.trades == []
    assert not any(shadow.skips.values())
    # every market was visited, in both directions (the ladder alternates buy / sell)
    for m in shadow.strategy.markets:
        assert m.last_signal_oracle_buy is not None and m.last_signal_oracle_sell is not None


def test_memory_stays_flat() -> None:
    w = CoreWarmer(config(DEFAULT), specs_of(40))
    c0 = w.stats().cycles
    for _ in range(400):  # every market's 4-phase ladder went round twice
        w.warm()
    tracemalloc.start()
    try:
        for _ in range(200):
            w.warm()
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(1600):
            w.warm()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert w.stats().cycles == c0 + 2200
    assert after - before < 32 * 1024, f"grew {after - before} bytes over 1600 cycles"


def test_2000_warms_leave_the_live_core_bit_for_bit_unchanged() -> None:
    cfg = config(RELAXED)
    specs = specs_of(3, szd=2)
    live, twin = live_core(cfg, specs), live_core(cfg, specs)
    w = CoreWarmer(cfg, specs)  # same configuration and market list as the live core
    assert w.enabled
    c0 = w.stats().cycles
    d_live, d_twin = Driver(live), Driver(twin)
    before = snapshot(live)
    for _ in range(500):
        w.warm()
    assert snapshot(live) == before  # nothing but warming: not one bit moved
    for k in range(30):
        d_live.step(k)
        d_twin.step(k)
        for _ in range(50):
            w.warm()
        assert snapshot(live) == snapshot(twin), f"after step {k}"
    assert w.stats().cycles == c0 + 2000 and w.stats().rebuilds == 0
    assert d_live.outputs == d_twin.outputs
    # the script really traded: entries, fills, flattens, no-matches, closed trades
    assert live.entries_sent >= 20 and live.flattens_sent >= 10 and len(live.trades) >= 10
    assert live.flat()


def test_the_shadow_shares_no_mutable_object_with_the_live_core() -> None:
    cfg = config(DEFAULT)
    specs = specs_of(8)
    live = live_core(cfg, specs)
    w = CoreWarmer(cfg, specs)
    shadow = w.shadow_core
    assert shadow is not None
    frozen = (EngineConfig, MarketSpec)

    def objects(root: Any) -> dict[int, Any]:
        seen: dict[int, Any] = {}
        stack = [root]
        while stack:
            o = stack.pop()
            if o is None or isinstance(o, bool | int | float | str | bytes | ZoneInfo) \
                    or id(o) in seen or isinstance(o, type):
                continue
            seen[id(o)] = o
            if isinstance(o, dict):
                stack.extend(o.keys())
                stack.extend(o.values())
            elif isinstance(o, list | tuple | set | frozenset | collections.deque):
                stack.extend(o)
            else:
                for cls in type(o).__mro__:
                    for name in cls.__dict__.get("__slots__", ()):
                        if hasattr(o, name):
                            stack.append(getattr(o, name))
                stack.extend(getattr(o, "__dict__", {}).values())
        return seen

    shared = set(objects(live)) & set(objects(shadow))
    live_objs = objects(live)
    mutable = []
    for k in shared:
        o = live_objs[k]
        if isinstance(o, frozen) or type(o).__module__ == "engine.config":
            continue  # the frozen configuration and market specs (same on purpose)
        if isinstance(o, tuple | frozenset):
            continue
        mutable.append(o)
    # what is left are the configuration's own containers (lists/dicts inside frozen config
    # sections, read-only by contract): nothing the cores write to
    cfg_containers = {id(x) for x in objects(cfg).values()}
    assert all(id(o) in cfg_containers for o in mutable), [type(o) for o in mutable]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.tuples(st.just("bbo"), st.integers(0, 2), st.integers(-30, 30), st.integers(1, 6)),
    st.tuples(st.just("ctx"), st.integers(0, 2), st.integers(-40, 40), st.integers(0, 1)),
    st.tuples(st.just("answer"), st.sampled_from(["fill", "nomatch", "reject", "lost"])),
    st.tuples(st.just("timer"), st.integers(1, 400)),
    st.tuples(st.just("warm"), st.integers(1, 30)),
), min_size=1, max_size=60))
def test_live_outputs_with_interleaved_warms_equal_those_of_a_core_that_never_warmed(
        events: list[tuple[Any, ...]]) -> None:
    cfg = config(RELAXED)
    specs = specs_of(3, szd=2)
    live, twin = live_core(cfg, specs), live_core(cfg, specs)
    w = CoreWarmer(cfg, specs)
    t = T0
    server = 1
    oid = 1000
    out_live: list[Any] = []
    out_twin: list[Any] = []
    for ev in events:
        if ev[0] == "warm":
            for _ in range(ev[1]):
                w.warm()
            continue
        t += float(ev[1]) if ev[0] == "timer" else 1.0
        server += 1
        oid += 1
        for core in (live, twin):
            if ev[0] == "bbo":
                _, i, off, spread = ev
                bid = round(100.0 + off * 0.01, 2)
                core.on_bbo(i, server, bid, 50.0, round(bid + spread * 0.01, 2), 50.0, t)
            elif ev[0] == "ctx":
                _, i, off, no_mark = ev
                px = round(100.0 + off * 0.01, 2)
                core.on_ctx(i, px, None if no_mark else px, t)
            elif ev[0] == "timer":
                core.on_timer(t)
            else:
                for j, o in enumerate(list(core.orders.live.values())):
                    o_oid = oid * 100 + j
                    if o.state == ofsm.NEW:
                        core.on_sent(o.cloid, t)
                    kind = ev[1]
                    if kind == "fill":
                        core.on_post_result(o.cloid, {"filled": {
                            "totalSz": o.sz_wire, "avgPx": o.px_wire, "oid": o_oid}}, t)
                        core.on_fill(f"f{o_oid}", o.cloid, o.coin, o.is_buy, o.px, o.sz, 0.01,
                                     t, t)
                    elif kind == "nomatch":
                        core.on_post_result(o.cloid, NO_MATCH, t)
                    elif kind == "reject":
                        core.on_post_result(o.cloid, {"error": "Insufficient margin"}, t)
                    else:
                        core.on_post_result(o.cloid, None, t)
            taken = [dump(it.order.record()) for it in core.take_orders()]
            (out_live if core is live else out_twin).append(
                (taken, image(core.drain()), dump(core.strategy.drain_events())))
    assert out_live == out_twin
    assert snapshot(live) == snapshot(twin)
    assert w.enabled and w.stats().rebuilds == 0


def test_no_log_record_while_warming(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    w = CoreWarmer(config(DEFAULT), specs_of(40))
    c0 = w.stats().cycles
    for _ in range(500):
        w.warm()
    assert w.stats().cycles == c0 + 500
    assert caplog.records == []


def test_an_exception_inside_disables_it_with_one_warning(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    w = CoreWarmer(config(DEFAULT), specs_of(40))
    for _ in range(10):
        w.warm()
    c1 = w.stats().cycles
    calls = 0
    real = hl_rounding.ioc_wire

    def boom(*a: Any) -> Any:
        nonlocal calls
        calls += 1
        raise RuntimeError("rounding exploded")

    monkeypatch.setattr(hl_rounding, "ioc_wire", boom)
    w.warm()  # must not raise
    assert calls == 1
    assert not w.enabled and w.shadow_core is None
    s = w.stats()
    assert s.disabled and s.cycles == c1 and s.reason is not None
    assert "RuntimeError: rounding exploded" in s.reason and "boom" in s.reason
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(caplog.records) == 1 and len(warnings) == 1
    msg = warnings[0].getMessage()
    assert warnings[0].name == "engine.warm" and "core warm-up disabled" in msg
    assert "RuntimeError: rounding exploded" in msg and "\n" not in msg  # one line
    for _ in range(100):
        w.warm()  # a no-op now
    assert calls == 1 and len(caplog.records) == 1 and w.stats() == s
    monkeypatch.setattr(hl_rounding, "ioc_wire", real)
    w.warm()
    assert w.stats() == s  # stays disabled


def test_an_exception_while_rebuilding_disables_it(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    w = CoreWarmer(config(DEFAULT), specs_of(4))
    shadow = w.shadow_core
    assert shadow is not None
    shadow.killed = True  # forces a rebuild
    monkeypatch.setattr(trading_mod.TradingCore, "set_ready",
                        lambda *a: (_ for _ in ()).throw(KeyError("ready")))
    caplog.set_level(logging.WARNING)
    w.warm()
    assert not w.enabled and w.stats().rebuilds == 1
    assert len(caplog.records) == 1 and "KeyError" in caplog.records[0].getMessage()


@pytest.mark.parametrize("how", ["hard_stop", "killed", "not_ready", "stuck_order"])
def test_a_shadow_that_cannot_enter_any_more_is_rebuilt(
        how: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    w = CoreWarmer(config(DEFAULT), specs_of(40))
    for _ in range(5):
        w.warm()
    c1 = w.stats().cycles
    old = w.shadow_core
    assert old is not None
    if how == "hard_stop":
        old.hard_stop.trigger("reject_burst", T0, "test")
    elif how == "killed":
        old.kill(T0, "test")
    elif how == "not_ready":
        old.on_disconnect(T0)
    else:  # an entry of the next market is still pending: its cycle makes no order
        nxt = w._usable[w._rot]
        p = old.book.positions[nxt]
        p.state = pfsm.OPENING
        old.resync()
    w.warm()
    new = w.shadow_core
    assert new is not None and new is not old
    s = w.stats()
    assert (s.rebuilds, s.disabled, s.cycles) == (1, False, c1 + 4)  # verified: 4 phases
    assert not new.hard_stop.latched and not new.killed and new.is_ready()
    for _ in range(100):
        w.warm()
    assert w.stats().cycles == c1 + 104 and w.stats().rebuilds == 1
    assert caplog.records == []  # a rebuild is not an error: counted, not logged


def test_a_rebuilt_shadow_that_still_makes_no_order_disables_it(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    w = CoreWarmer(config(DEFAULT), specs_of(4))
    caplog.set_level(logging.DEBUG)
    # from now on every entry is refused by the executor's rounding gate
    monkeypatch.setattr(hl_rounding, "ioc_wire", lambda *a: None)
    w.warm()
    assert not w.enabled and w.stats().rebuilds == 1
    assert len(caplog.records) == 1
    msg = caplog.records[0].getMessage()
    assert "produced no order" in msg and "'rounding': 1" in msg
    w.warm()
    assert len(caplog.records) == 1


@pytest.mark.parametrize("extra", [
    {},
    {"detector": {"session_aware": False}},
    {"detector": {"min_quote_lag_ms": 0.0}},
    {"detector": {"min_consecutive_moves": 0, "oracle_direction_filter": False}},
    {"detector": {"min_consecutive_moves": 1}},
    {"detector": {"min_consecutive_moves": 5, "oracle_min_move_bps": 10.0}},
    {"detector": {"oracle_min_move_bps": 0.0, "min_oracle_change_bps": 20.0}},
    {"detector": {"adaptive_threshold": True, "short_side_throttle": True,
                  "threshold_overrides": {"xyz:M03": 60.0}}},
    {"detector": {"max_entry_spread_bps": 15.0, "min_confidence": 0.75}},
    {"detector": {"min_confidence": 0.9, "min_oracle_change_bps": 3.0}},
    {"detector": {"baseline_min_samples": 0, "baseline_tau_ms": 50.0,
                  "min_edge_above_baseline_bps": 20.0}},
    {"gates": {"max_mark_mid_bps": 5.0, "max_bbo_age_ms": 10.0, "max_ctx_age_ms": 500.0}},
    {"gates": {"halted_markets": ["xyz:M00", "xyz:M01"]}},
    {"trading": {"action_budget": 1, "action_budget_interval_ms": 5000.0}},
    {"mode": "paper"},
])
def test_configurations_the_engine_can_trade_with_warm_without_rebuilds(
        extra: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    w = CoreWarmer(config(merge(DEFAULT, extra)), specs_of(12))
    assert w.enabled, w.stats().reason
    c0 = w.stats().cycles
    for _ in range(120):  # every market's ladder goes round 2.5 times
        w.warm()
    s = w.stats()
    assert (s.cycles - c0, s.rebuilds, s.disabled) == (120, 0, False)
    assert caplog.records == []


@pytest.mark.parametrize(("specs", "extra", "why"), [
    ([], {}, "no usable market"),
    ([MarketSpec(1, "xyz:A", 110001, 2)], {}, "not indexed 0..n-1"),
    ([MarketSpec(0, "xyz:A", 110000, 2, delisted=True)], {}, "no usable market"),
    ([MarketSpec(0, "xyz:A", 110000, 9)], {}, "no usable market"),
    (specs_of(2), {"gates": {"halted_markets": ["xyz:M00", "xyz:M01"]}}, "no usable market"),
    (specs_of(2), {"detector": {"max_entry_spread_bps": 1.0}}, "max_entry_spread_bps"),
    (specs_of(2), {"trading": {"max_notional_per_market": 5.0}}, "'notional_market'"),
    (specs_of(2), {"detector": {"threshold_overrides": {"xyz:M00": 4000.0}}}, "bps jump"),
])
def test_bad_input_disables_it_with_one_warning_and_never_raises(
        specs: list[MarketSpec], extra: dict[str, Any], why: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    w = CoreWarmer(config(merge(DEFAULT, extra)), specs)
    assert not w.enabled and w.shadow_core is None
    s = w.stats()
    assert s.disabled and s.reason is not None and why in s.reason
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.WARNING
    assert why in caplog.records[0].getMessage()
    for _ in range(5):
        w.warm()
    assert len(caplog.records) == 1 and w.stats() == s


@settings(max_examples=150, deadline=None)
@given(
    consecutive=st.integers(0, 6),
    direction=st.booleans(),
    min_move=st.floats(0.0, 15.0),
    velocity=st.floats(0.0, 40.0),
    lag=st.sampled_from([0.0, 0.5, 30.0, 200.0]),
    fees=st.floats(0.0, 30.0),
    adaptive=st.booleans(),
    short=st.booleans(),
    session=st.booleans(),
    confidence=st.floats(0.0, 0.9),
    baseline=st.floats(0.0, 30.0),
    tau=st.sampled_from([50.0, 5_000.0, 300_000.0]),
    mark_mid=st.sampled_from([0.0, 3.0, 50.0]),
    bbo_age=st.sampled_from([0.0, 5.0, 100.0]),
    szd=st.integers(0, 5),
)
def test_any_configuration_either_warms_every_cycle_or_disables_once(
        consecutive: int, direction: bool, min_move: float, velocity: float, lag: float,
        fees: float, adaptive: bool, short: bool, session: bool, confidence: float,
        baseline: float, tau: float, mark_mid: float, bbo_age: float, szd: int) -> None:
    raw = merge(DEFAULT, {
        "detector": {"min_consecutive_moves": consecutive, "oracle_direction_filter": direction,
                     "oracle_min_move_bps": min_move, "min_oracle_change_bps": velocity,
                     "min_quote_lag_ms": lag, "taker_fee_bps": fees,
                     "adaptive_threshold": adaptive, "short_side_throttle": short,
                     "session_aware": session, "min_confidence": confidence,
                     "min_edge_above_baseline_bps": baseline, "baseline_tau_ms": tau,
                     "baseline_min_samples": 3},
        "gates": {"max_mark_mid_bps": mark_mid, "max_bbo_age_ms": bbo_age},
    })
    log = logging.getLogger("engine.warm")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    h = Keep(logging.DEBUG)
    log.addHandler(h)
    try:
        w = CoreWarmer(config(raw), specs_of(6, szd=szd))
        c0 = w.stats().cycles
        for _ in range(30):
            w.warm()
    finally:
        log.removeHandler(h)
    s = w.stats()
    if w.enabled:
        assert (c0, s.cycles, s.rebuilds) == (4, 34, 0) and records == []
    else:
        assert len(records) == 1 and s.reason is not None
    # what an engine would plausibly run with must warm (not: a baseline that absorbs a
    # dislocation before the quote-lag window opens, when bbos must stay younger than it)
    absorbs = bool(bbo_age and lag > 0.1 and baseline and tau < 5 * lag)
    if min_move <= 10.0 and velocity <= 30.0 and confidence <= 0.55 and not absorbs:
        assert w.enabled, s.reason


async def test_warming_from_a_trio_task_stops_cleanly_on_cancel() -> None:
    """As the feed's spin hook: called between checkpoints; a cancel ends the loop at once
    and leaves the shadow consistent (no live order, nothing pending)."""
    w = CoreWarmer(config(DEFAULT), specs_of(40))
    calls = 0

    async def spinner() -> None:
        nonlocal calls
        while True:
            w.warm()
            calls += 1
            await trio.lowlevel.checkpoint()

    with trio.move_on_after(0.3) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(spinner)
    assert scope.cancelled_caught and calls > 10
    shadow = w.shadow_core
    assert shadow is not None and w.stats().cycles == calls + 24
    assert shadow.orders.live == {} and shadow.out == [] and shadow.new_orders == []


def test_placed_orders_never_leave_the_shadow() -> None:
    """The shadow's orders are taken and resolved inside warm(): the shadow's intents never
    hold a PlaceOrder between calls, and its cloids carry the shadow's own prefix."""
    w = CoreWarmer(config(DEFAULT), specs_of(5))
    shadow = w.shadow_core
    assert shadow is not None
    seen: list[str] = []
    real = shadow.take_orders

    def spy() -> list[PlaceOrder]:
        got = real()
        seen.extend(it.order.cloid for it in got)
        return got

    shadow.take_orders = spy  # type: ignore[method-assign]
    for _ in range(20):
        w.warm()
        assert not any(isinstance(it, PlaceOrder) for it in shadow.out)
    assert len(seen) == 20 and len(set(seen)) == 20
    assert all(c.startswith("0x" + b"shad0wWU".hex()) for c in seen)


def test_a_second_rebuild_soon_after_the_first_disables_it(
        caplog: pytest.LogCaptureFixture) -> None:
    """A shadow that keeps failing (something about the cycle, not a one-off) must not be
    rebuilt again and again (a rebuild costs about a millisecond of the spinning loop)."""
    caplog.set_level(logging.DEBUG)
    w = CoreWarmer(config(DEFAULT), specs_of(10))
    first = w.shadow_core
    assert first is not None
    first.hard_stop.trigger("test", T0, "one")
    w.warm()
    assert w.stats().rebuilds == 1 and w.enabled and caplog.records == []
    for _ in range(50):
        w.warm()
    second = w.shadow_core
    assert second is not None and second is not first
    second.hard_stop.trigger("test", T0, "two")
    w.warm()
    s = w.stats()
    assert not w.enabled and s.rebuilds == 1 and s.reason is not None
    assert "another rebuild" in s.reason and "hard stop 'test'" in s.reason
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.WARNING
