"""The trading timer's shortcuts change no output byte.

``TradingCore._breakers_tick`` gives the breakers the unrealised P&L and the paper equity
through :meth:`CircuitBreakers.on_marks` (no checks when neither changed) and takes them from
``_equity_parts``, which rescans the positions only after a fill (``PositionBook.changes``).
Oracle: the previous code, kept verbatim below on a subclass (the scan of every position, then
``on_unrealized`` and ``on_equity`` at every tick). A paper replay through each must write
byte-identical record files; the new run also checks at every tick that the cached parts equal
the scan. Configurations: the default, and an equity small enough that a breaker trips at a
tick (the trip path of the tick).

A wake of the trading timer runs the intent loop and the signal flush only when the core left
intents or the app queued work, and leaves no poke for the next read (its caller computes the
next deadline right after it). Oracle: the previous ``TradingApp.timer_fire`` (both every
time, the poke left set). Configurations: the default and a paper latency below the
housekeeping period (fills then due between wakes: the deadline the poke would pull in).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import engine.replay.driver as driver
import engine.trading_app as trading_app
from engine.core.breakers import Trip
from engine.replay.driver import Replay
from engine.sim.record import record
from engine.trading_app import TradingApp
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore
from tests.replay.helpers import default_cfg, out_bytes

# a 10-cent account: the sub-cent unrealised loss of an open position trips the drawdown
# breaker at a tick
TIGHT = {"ENGINE__BREAKERS__PAPER_EQUITY": "0.1"}


def _scan(core: HyperliquidTradingCore) -> tuple[float, float]:
    realised = 0.0
    unrealised = 0.0
    for p in core.book.positions:
        realised += p.realized_pnl - p.fees
        if p.size:
            mark = core.strategy.markets[p.idx].mark_px
            if mark is not None:
                unrealised += p.unrealized(mark)
    return realised, unrealised


class OldTickCore(HyperliquidTradingCore):
    """The tick as it was: the scan and both breaker calls every time."""

    def _equity_parts(self) -> tuple[float, float]:
        return _scan(self)

    def _breakers_tick(self, now_ms: float) -> None:
        cb = self.breakers
        trips: list[Trip] = self._price_ticks.tick(cb, now_ms)
        realised, unrealised = self._equity_parts()
        trips += cb.on_unrealized(unrealised, now_ms)
        if self.mode != "trade":
            trips += cb.on_equity(self.cfg.breakers.paper_equity + realised + unrealised, now_ms)
        elif self.equity_source == "config":
            trips += cb.on_equity(self.cfg.breakers.equity_usd + realised + unrealised, now_ms)
        self._trips(trips, now_ms, "tick")


class CheckedTickCore(HyperliquidTradingCore):
    """The new tick, checking that the cached equity parts equal the scan."""

    checks = 0
    sized_ticks = 0

    def _breakers_tick(self, now_ms: float) -> None:
        parts = self._equity_parts()
        assert parts == _scan(self)
        CheckedTickCore.checks += 1
        CheckedTickCore.sized_ticks += any(p.size for p in self.book.positions)
        super()._breakers_tick(now_ms)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tickrec")
    record(d, seconds=150.0, seed=7, n_markets=40)
    return d


@pytest.mark.parametrize("env", [{}, TIGHT], ids=["default", "trip_at_tick"])
def test_paper_tick_bytes_equal_the_old_tick(recording: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             env: dict[str, str]) -> None:
    cfg = default_cfg(**env)
    with monkeypatch.context() as mp:
        mp.setattr(trading_app, "TradingCore", CheckedTickCore)
        CheckedTickCore.checks = CheckedTickCore.sized_ticks = 0
        new = Replay(cfg, recording, tmp_path / "new", mode="paper")
        new.run()
        assert isinstance(new.app.trading, CheckedTickCore)  # type: ignore[union-attr]
        assert CheckedTickCore.checks > 1000
        assert CheckedTickCore.sized_ticks > 5  # ticks with an open position were checked
    with monkeypatch.context() as mp:
        mp.setattr(trading_app, "TradingCore", OldTickCore)
        old = Replay(cfg, recording, tmp_path / "old", mode="paper")
        old.run()
        assert isinstance(old.app.trading, OldTickCore)  # type: ignore[union-attr]
    got, want = out_bytes(tmp_path / "new"), out_bytes(tmp_path / "old")
    assert got.keys() == want.keys()
    assert any(name.startswith("trades_") and data for name, data in want.items())
    if env is TIGHT:
        positions = want[next(n for n in want if n.startswith("positions_"))]
        assert b'"why":"tick"' in positions and b'"hard_stop","reason":"drawdown"' in positions
    for name in want:
        assert got[name] == want[name], name


class OldTimerApp(TradingApp):
    """The wake as it was: the intent loop and the flush every time, the poke left as is."""

    def timer_fire(self, now: float) -> None:
        trading, backend = self.trading, self.backend
        assert trading is not None and backend is not None
        backend.on_timer(now)
        trading.on_timer(now)
        if trading.strategy.events:
            trading_app.log_gate_events(trading.strategy.drain_events())
        self.execute(now)
        self.flush_signals()


class CountingApp(TradingApp):
    executes = 0

    def execute(self, now_ms: float, *, send_only: bool = False) -> None:
        if not send_only:
            CountingApp.executes += 1
        super().execute(now_ms, send_only=send_only)


FAST = {"ENGINE__PAPER__LATENCY_MS": "40"}


@pytest.mark.parametrize("env", [{}, FAST], ids=["default", "latency"])
def test_paper_wake_bytes_equal_the_old_wake(recording: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             env: dict[str, str]) -> None:
    cfg = default_cfg(**env)
    runs = {}
    for name, cls in (("new", CountingApp), ("old", OldTimerApp)):
        CountingApp.executes = 0
        with monkeypatch.context() as mp:
            mp.setattr(driver, "TradingApp", cls)
            r = Replay(cfg, recording, tmp_path / name, mode="paper")
            st = r.run()
            assert type(r.app) is cls
        runs[name] = (st, CountingApp.executes)
    # the shortcut was taken: most wakes found nothing to run
    assert runs["new"][1] < runs["new"][0].timers["trading"] / 2
    assert runs["new"][0].timers == runs["old"][0].timers
    got, want = out_bytes(tmp_path / "new"), out_bytes(tmp_path / "old")
    assert got.keys() == want.keys()
    assert any(name.startswith("fills_") and data for name, data in want.items())
    for name in want:
        assert got[name] == want[name], name
