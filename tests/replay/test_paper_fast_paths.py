"""The paper path's fast paths change no output byte.

A paper replay with the shortcuts the trading core and its feed handler take (the watched
markets ``_watch`` instead of a scan of every position, per frame and at housekeeping, and no
after-frame step for a frame of an unwatched market without a signal; the
market-move prices of the housekeeping tick given to the breakers as changes; no intent loop or
signal flush for a read that left nothing to do) is compared with a replay of the same
recording through the previous code, kept verbatim below as the oracle (each method as it was,
installed on subclasses): every record file must be byte-identical. Configurations: the
default, market-move breakers tight enough to halt markets one after another, and a paper
latency below the housekeeping period (the fills then depend on the timer poke).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import engine.trading_app as trading_app
from engine.core import trading as trading_mod
from engine.core.breakers import CircuitBreakers, Trip
from engine.core.core import Signal
from engine.core.intents import QueryOrder, RequestReconcile
from engine.core.trading import KEEP_TERMINAL_ORDERS, TradingCore
from engine.replay.driver import Replay
from engine.sim.record import record
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore
from fsm import order as ofsm
from fsm import position as pfsm
from tests.replay.helpers import default_cfg, out_bytes

TIGHT = {"ENGINE__BREAKERS__MARKET_MOVE_PCT": "1.0",
         "ENGINE__BREAKERS__MARKET_MOVE_WINDOW_S": "60"}


class _WholeList:
    """The tick's prices as before: ``on_prices`` of every market with a mark, not halted."""

    def __init__(self, core: TradingCore) -> None:
        self.core = core

    def changed(self, i: int) -> None:
        return None

    def all_changed(self) -> None:
        return None

    def tick(self, cb: CircuitBreakers, now_ms: float) -> list[Trip]:
        return cb.on_prices([(m.coin, m.mark_px) for m in self.core.strategy.markets
                             if m.mark_px is not None and m.halted is None], now_ms)


class OldTradingCore(HyperliquidTradingCore):
    """Per frame and at housekeeping: the scan of every position, as it was."""

    def __init__(self, *a: object, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self._price_ticks = _WholeList(self)  # type: ignore[assignment]

    def on_bbo(self, idx: int, time_ms: int, bid_px: float | None, bid_sz: float | None,
               ask_px: float | None, ask_sz: float | None, now_ms: float) -> None:
        sig = self.strategy.on_bbo(idx, time_ms, bid_px, bid_sz, ask_px, ask_sz, now_ms)
        self._after_market(idx, sig, now_ms)

    def _after_market(self, idx: int, sig: Signal | None, now_ms: float) -> None:
        p = self.book.positions[idx]
        if p.state != pfsm.FLAT or p.has_exposure:
            self._check_exit(p, now_ms)
        if sig is not None:
            self.on_signal(sig, now_ms)
        if not self.ready["market_data"] and self.strategy.markets_live() == len(self.strategy.markets):
            self.ready["market_data"] = True

    def on_housekeeping(self, now_ms: float) -> None:
        if len(self.orders.by_cloid) - len(self.orders.live) > 2 * KEEP_TERMINAL_ORDERS:
            self.orders.prune(KEEP_TERMINAL_ORDERS)
        for p in self.book.positions:
            if p.has_exposure or p.state != pfsm.FLAT:
                self._check_exit(p, now_ms)
        if self.flatten_deferred and not self.link_down():
            for idx, reason in list(self.flatten_deferred.items()):
                del self.flatten_deferred[idx]
                p = self.book.positions[idx]
                if p.has_exposure:
                    self._maybe_flatten(p, now_ms, reason)
        due = self._reconcile_due_ms
        if due is not None and now_ms >= due:
            self._reconcile_due_ms = None
            self.out.append(RequestReconcile("confirm: " + "; ".join(
                f"{c} {w}" for c, w in self.unexplained.items())))
        if now_ms >= self._next_breaker_tick:
            self._next_breaker_tick = now_ms + trading_mod.BREAKER_TICK_MS
            self._breakers_tick(now_ms)
        tc = self.tcfg
        for o in list(self.orders.active()):
            if o.state in (ofsm.SENT, ofsm.RESTING, ofsm.PARTIAL) and o.sent_ms is not None \
                    and now_ms - o.sent_ms > tc.pending_timeout_ms:
                self._order_event(o, ofsm.LOSE_CONTACT, now_ms, "pending timeout")
            if o.state == ofsm.UNKNOWN:
                since = o.unknown_since_ms if o.unknown_since_ms is not None else now_ms
                if now_ms - since > tc.unknown_timeout_ms:
                    self._latch("unresolved_unknown", now_ms,
                                f"order {o.cloid} on {o.coin} unresolved for "
                                f"{(now_ms - since) / 1000:.0f} s")
                if o.next_query_ms is None or o.next_query_ms <= now_ms:
                    o.next_query_ms = now_ms + tc.unknown_query_interval_ms
                    self.out.append(QueryOrder(o.coin, o.cloid))


class OldTradingHandler(trading_app.TradingHandler):
    """The read's bookkeeping as it was: the intent loop and the signal flush every time."""

    def bookkeeping(self, now: float) -> None:
        if self.core.events:
            trading_app.log_gate_events(self.core.drain_events())
        self.app.execute(now)
        self.app.flush_signals()
        self.app.timer_poke()


class CheckedTradingCore(HyperliquidTradingCore):
    """The new code, checking at every frame and tick that ``_watch`` equals the scan."""

    checks = 0

    def _check_watch(self) -> None:
        assert self._watch == {p.idx for p in self.book.positions
                               if p.has_exposure or p.state != pfsm.FLAT}
        CheckedTradingCore.checks += 1

    def on_bbo(self, idx: int, time_ms: int, bid_px: float | None, bid_sz: float | None,
               ask_px: float | None, ask_sz: float | None, now_ms: float) -> None:
        self._check_watch()
        super().on_bbo(idx, time_ms, bid_px, bid_sz, ask_px, ask_sz, now_ms)

    def on_housekeeping(self, now_ms: float) -> None:
        self._check_watch()
        super().on_housekeeping(now_ms)
        self._check_watch()


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("paperrec")
    record(d, seconds=150.0, seed=5, n_markets=40)
    return d


FAST = {"ENGINE__PAPER__LATENCY_MS": "40"}  # fills due before the next housekeeping wake


@pytest.mark.parametrize("env", [{}, TIGHT, FAST], ids=["default", "market_move", "latency"])
def test_paper_replay_bytes_equal_the_old_paths(recording: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                env: dict[str, str]) -> None:
    cfg = default_cfg(**env)
    with monkeypatch.context() as mp:
        mp.setattr(trading_app, "TradingCore", CheckedTradingCore)
        CheckedTradingCore.checks = 0
        Replay(cfg, recording, tmp_path / "new", mode="paper").run()
        assert CheckedTradingCore.checks > 10_000
    with monkeypatch.context() as mp:
        mp.setattr(trading_app, "TradingCore", OldTradingCore)
        mp.setattr(trading_app, "TradingHandler", OldTradingHandler)
        old = Replay(cfg, recording, tmp_path / "old", mode="paper")
        old.run()
        assert isinstance(old.app.trading, OldTradingCore)  # type: ignore[union-attr]
    got, want = out_bytes(tmp_path / "new"), out_bytes(tmp_path / "old")
    assert got.keys() == want.keys()
    assert any(name.startswith("trades_") and data for name, data in want.items())
    if env is TIGHT:
        assert b'"why":"tick"' in want[next(n for n in want if n.startswith("positions_"))]
    for name in want:
        assert got[name] == want[name], name
