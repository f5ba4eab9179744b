"""The observe core facade: market events in, signals and gate transitions out (pure, no I/O).

The shell calls ``on_bbo`` / ``on_ctx`` for every decoded market-data frame and ``on_timer`` when
``next_timer_ms`` is reached; each returns the signals detected at that instant. Time is always
passed in (epoch ms from the injected clock), so the same core runs live, paper and replay.

A market is evaluated on each of its own frames and once more when its quote-lag window opens
(``oracle change + min_quote_lag_ms``), so a dislocation that receives no further frame is still
seen. Gate pass↔block transitions are queued as :class:`GateTransition` for the shell to log —
no per-frame logging.
"""

from __future__ import annotations

import heapq
import os

import attrs

from engine.config import DetectorConfig, GatesConfig, SizingConfig
from engine.core.detector import Detector, Signal, SignalContext
from engine.core.gates import GATE_ORDER, HALT, check_gates, describe_gate
from engine.core.market import MarketState
from engine.core.sessions import SessionClock
from engine.core.types import MarketSpec, MarketView

TRIGGER_BBO = "bbo"
TRIGGER_CTX = "ctx"
TRIGGER_TIMER = "timer"


@attrs.frozen(slots=True)
class GateTransition:
    """A market's gate state changed: ``gate`` is the new blocking gate or None (cleared)."""

    coin: str
    now_ms: float
    gate: str | None
    previous: str | None
    detail: str
    blocked_for_ms: float


class ObserveCore:
    """Market state + gates + detector for every market of one venue."""

    def __init__(
        self,
        markets: list[MarketSpec],
        gates: GatesConfig,
        detector: DetectorConfig,
        sizing: SizingConfig,
        followup_offsets_ms: list[int],
        *,
        mode: str = "observe",
        boot_id: str | None = None,
    ) -> None:
        self.gates_cfg = gates
        self.detector_cfg = detector
        self.detector = Detector(detector, sizing)
        self.sessions = SessionClock(detector.sessions, detector.session_timezone,
                                     detector.session_aware)
        self.followup_offsets_ms = list(followup_offsets_ms)
        self.mode = mode
        self.boot_id = boot_id if boot_id is not None else os.urandom(3).hex()
        self.markets: list[MarketState] = [
            MarketState(spec, detector.oracle_min_move_bps, detector.oracle_window_ms,
                        gates.spread_ewma_tau_ms, detector.baseline_tau_ms)
            for spec in markets
        ]
        for i, spec in enumerate(markets):
            if spec.index != i:
                raise ValueError(f"market {spec.coin} has index {spec.index}, expected {i}")
        self.by_coin: dict[str, MarketState] = {m.coin: m for m in self.markets}
        for coin in gates.halted_markets:
            m = self.by_coin.get(coin)
            if m is not None:
                m.halted = "configured"
        self._timers: list[tuple[float, int]] = []
        self.events: list[GateTransition] = []
        self.signals_total = 0
        self.evaluations = 0
        self.time_regressions = 0
        self._seq = 0
        self._signal_ctx = SignalContext(self.boot_id, mode, gates, detector,
                                         self.followup_offsets_ms)

    # ------------------------------------------------------------------ events
    def on_bbo(self, idx: int, time_ms: int, bid_px: float | None, bid_sz: float | None,
               ask_px: float | None, ask_sz: float | None, now_ms: float) -> Signal | None:
        """Apply a bbo frame (``None`` side = empty) and evaluate the market."""
        m = self.markets[idx]
        if time_ms < m.bbo_time_ms:
            # Out-of-order / regressing server time: never apply older data over newer.
            m.regressions += 1
            self.time_regressions += 1
            m.regression_until_ms = now_ms + self.gates_cfg.time_regression_block_ms
            self._evaluate_gates_only(m, now_ms)
            return None
        m.bbo_time_ms = time_ms
        m.bid_px = bid_px
        m.bid_sz = bid_sz
        m.ask_px = ask_px
        m.ask_sz = ask_sz
        m.bbo_recv_ms = now_ms
        m.fresh_bbo = True
        m.bbo_updates += 1
        return self._evaluate(m, now_ms, TRIGGER_BBO)

    def on_ctx(self, idx: int, oracle_px: float, mark_px: float | None,
               now_ms: float) -> Signal | None:
        """Apply an activeAssetCtx frame and evaluate the market."""
        m = self.markets[idx]
        if m.oracle_px != oracle_px:
            m.oracle_changed_ms = now_ms
            m.oracle_px = oracle_px
            min_lag = self.detector_cfg.min_quote_lag_ms
            if min_lag:
                heapq.heappush(self._timers, (now_ms + min_lag, idx))
        m.tracker.record(oracle_px, now_ms)
        m.mark_px = mark_px
        m.ctx_recv_ms = now_ms
        m.fresh_ctx = True
        m.ctx_updates += 1
        return self._evaluate(m, now_ms, TRIGGER_CTX)

    def next_timer_ms(self) -> float | None:
        """When the shell should call :meth:`on_timer` next (None: nothing scheduled)."""
        return self._timers[0][0] if self._timers else None

    @property
    def timer_heap(self) -> list[tuple[float, int]]:
        """The quote-lag windows as a ``heapq`` list of (due, market index), for replay's
        timer check to read without a call: :meth:`next_timer_ms` is ``timer_heap[0][0]``
        (None when empty). Mutated in place only, never rebound; do not modify it."""
        return self._timers

    def on_timer(self, now_ms: float) -> list[Signal]:
        """Evaluate every market whose quote-lag window opened at or before ``now_ms``."""
        out: list[Signal] = []
        timers = self._timers
        while timers and timers[0][0] <= now_ms:
            _, idx = heapq.heappop(timers)
            sig = self._evaluate(self.markets[idx], now_ms, TRIGGER_TIMER)
            if sig is not None:
                out.append(sig)
        return out

    def on_disconnect(self, now_ms: float) -> None:
        """The feed dropped: no market is live until fresh bbo and ctx arrive again."""
        for m in self.markets:
            m.fresh_bbo = False
            m.fresh_ctx = False
            m.bbo_time_ms = -1  # a new connection may be served by another node/clock
            self._evaluate_gates_only(m, now_ms)

    def halt(self, coin: str, reason: str, now_ms: float) -> None:
        """Block a market (circuit breaker, operator, delisting) until :meth:`resume`."""
        m = self.by_coin[coin]
        m.halted = reason
        self._evaluate_gates_only(m, now_ms)

    def resume(self, coin: str, now_ms: float) -> None:
        m = self.by_coin[coin]
        m.halted = None
        self._evaluate_gates_only(m, now_ms)

    # --------------------------------------------------------------- queries
    def view(self, coin: str) -> MarketView | None:
        m = self.by_coin.get(coin)
        return None if m is None else m.view()

    def markets_live(self) -> int:
        return sum(1 for m in self.markets if m.fresh_bbo and m.fresh_ctx)

    def markets_passing(self) -> int:
        return sum(1 for m in self.markets if m.blocked_by is None)

    def drain_events(self) -> list[GateTransition]:
        ev = self.events
        self.events = []
        return ev

    def gate_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(GATE_ORDER, 0)
        for m in self.markets:
            if m.blocked_by is not None:
                counts[m.blocked_by] = counts.get(m.blocked_by, 0) + 1
        return counts

    # -------------------------------------------------------------- internals
    def _gate(self, m: MarketState, now_ms: float) -> str | None:
        gate = check_gates(m, now_ms, self.gates_cfg)
        if gate != m.blocked_by:
            self._transition(m, gate, now_ms)
        return gate

    def _transition(self, m: MarketState, gate: str | None, now_ms: float) -> None:
        prev = m.blocked_by
        detail = describe_gate(m, gate, now_ms, self.gates_cfg) if gate else ""
        self.events.append(GateTransition(m.coin, now_ms, gate, prev, detail,
                                          now_ms - m.blocked_since_ms
                                          if prev and m.blocked_since_ms else 0.0))
        m.blocked_by = gate
        m.blocked_since_ms = now_ms

    def _evaluate_gates_only(self, m: MarketState, now_ms: float) -> None:
        self._gate(m, now_ms)

    def _evaluate(self, m: MarketState, now_ms: float, trigger: str) -> Signal | None:
        """Gates, detector and — for a signal — a :class:`Signal` holding a snapshot of every
        record input (its record is built later, on first access: see :class:`Signal`)."""
        self.evaluations += 1
        gate = check_gates(m, now_ms, self.gates_cfg)
        if gate is not None or m.blocked_by is not None:
            if gate != m.blocked_by:
                self._transition(m, gate, now_ms)
            if gate is not None:
                return None
        sessions = self.sessions  # sessions.cached(now_ms), inline
        d = self.detector.evaluate(m, now_ms, sessions.cached_value
                                   if sessions.lo_ms <= now_ms < sessions.hi_ms
                                   else sessions.lookup(now_ms))
        if d is None:
            return None
        self.signals_total += 1
        seq = self._seq = self._seq + 1
        return Signal(m.coin, "sell" if d[0] else "buy", int(now_ms), d[1], d[22], d[23], d[24],
                      d[25], seq, self._signal_ctx,
                      (now_ms, trigger, m.spec.asset_id, m.mark_px, m.bid_px, m.bid_sz, m.ask_px,
                       m.ask_sz, m.bbo_time_ms, m.bbo_recv_ms, m.ctx_recv_ms, d))


__all__ = ["GateTransition", "ObserveCore", "Signal", "HALT"]
