"""Account-value answers (main dex and dex) against the trade-mode breakers, property-tested.

A model account with DEX abstraction (protocol doc §9, P22): free USDC on the main dex; an
open position moves its isolated margin into the dex, whose value is that margin plus the
unrealised P&L ($0 when flat); closing moves margin and P&L back. Reconciliations report the
true values, or the venue's transient all-zero state (P23), or nothing readable. Invariants:
the breakers' equity is always a true usable equity (main + dex) that was reported; the
drawdown breaker trips only once a true equity fell at least ``drawdown_pct`` below the true
peak (a loss breaker never trips while the P&L since the peak is ≥ 0), and then it does.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .helpers import T0, make_ready, make_trading

DD = 5.0
CFG = {"mode": "trade", "account": {"address": "0x" + "11" * 20},
       "breakers": {"daily_loss_pct": 2.0, "drawdown_pct": DD, "max_consecutive_losses": 0,
                    "market_move_pct": 0.0}}


class EquityMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core, _ = make_trading(CFG)
        make_ready(self.core)
        self.now = T0
        self.cash = 1000.0  # main dex
        self.margin = 0.0  # dex: isolated margin of the open position
        self.upnl = 0.0
        self.reported: list[float] = []  # true usable equities given to the core
        self.true_peak = 0.0
        self.deep_drop = False  # a reported true equity ≥ DD % below the true peak
        self.transients = 0  # consecutive transient answers (the venue's last seconds, < 10)

    def _report(self, main: float | None, dex: float | None, transient: bool = False) -> None:
        self.transients = self.transients + 1 if transient else 0
        self.now += 1000
        self.core.on_account_values(main, dex, self.now)
        self.core.drain()

    def _truth(self) -> tuple[float, float]:
        return self.cash, (self.margin + self.upnl if self.margin else 0.0)

    @precondition(lambda self: self.margin == 0.0)
    @rule(notional=st.floats(10.0, 400.0), leverage=st.sampled_from([1, 3, 10, 20]))
    def open_position(self, notional: float, leverage: int) -> None:
        self.margin = notional / leverage
        self.cash -= self.margin + notional * 0.0001  # margin to the dex, taker fee paid
        self.upnl = 0.0

    @precondition(lambda self: self.margin > 0.0)
    @rule(move=st.floats(-0.6, 0.6))
    def mark_moves(self, move: float) -> None:
        self.upnl = max(-self.margin, self.margin * move)  # isolated: at most the margin

    @precondition(lambda self: self.margin > 0.0)
    @rule()
    def close_position(self) -> None:
        self.cash += self.margin + self.upnl - 0.01
        self.margin = self.upnl = 0.0

    @rule()
    def reconcile(self) -> None:
        main, dex = self._truth()
        equity = main + dex
        self.true_peak = max(self.true_peak, equity)
        if equity <= self.true_peak * (1 - DD / 100) * (1 + 1e-9):
            self.deep_drop = True
        self.reported.append(equity)
        self._report(main, dex)

    @precondition(lambda self: self.transients < 8)
    @rule(main_too=st.booleans())
    def transient_empty_answer(self, main_too: bool) -> None:
        """P23: all zeros for a few seconds (the main dex, or both), one answer a second."""
        _, dex = self._truth()
        self._report(0.0, 0.0 if main_too else dex, transient=True)

    @rule(which=st.sampled_from(["main", "dex"]))
    def unreadable_answer(self, which: str) -> None:
        main, dex = self._truth()
        self._report(None if which == "main" else main, None if which == "dex" else dex,
                     transient=self.transients > 0)  # does not end a transient episode

    @invariant()
    def breakers_measure_a_reported_usable_equity(self) -> None:
        if self.reported:
            eq = self.core.breakers.equity
            assert any(abs(eq - r) < 1e-6 for r in self.reported), (eq, self.reported[-3:])
            assert self.core.equity_source == "venue"

    @invariant()
    def drawdown_trips_only_on_a_real_drop(self) -> None:
        tripped = {t.breaker for t in self.core.breakers.tripped()}
        assert "daily_loss" not in tripped  # no closed trades, no fill-confirmed exposure
        assert ("drawdown" in tripped) == self.deep_drop, (
            self.true_peak, self.reported[-3:], self.core.breakers.peak)


EquityMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_equity_stateful = EquityMachine.TestCase


class LongEquityMachine(EquityMachine):
    """The same machine for the marked long run (issue 9: at least 10,000 examples)."""


LongEquityMachine.TestCase.settings = settings(
    max_examples=10_000, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_equity_stateful_long = pytest.mark.slow(LongEquityMachine.TestCase)
