"""Per-market state: latest book and oracle context, receive times, liveness and derived trackers.

Updated only by the core facade from decoded venue events; all times are wall-clock epoch ms from
the injected clock. An empty book side is ``None`` — never price 0 (the predecessor's null→0
mapping is how a missing quote could look like a huge edge).
"""

from __future__ import annotations

from engine.core.ewma import TimeEwma
from engine.core.oracle import OracleTracker
from engine.core.types import MarketSpec, MarketView


class MarketState:
    """Mutable state of one market, owned by the core."""

    __slots__ = (
        "spec", "coin", "index",
        "bid_px", "bid_sz", "ask_px", "ask_sz", "bbo_time_ms", "bbo_recv_ms",
        "oracle_px", "mark_px", "ctx_recv_ms", "oracle_changed_ms",
        "fresh_bbo", "fresh_ctx",
        "tracker", "spread_ewma", "baseline",
        "blocked_by", "blocked_since_ms", "block_detail",
        "regression_until_ms", "regressions", "halted",
        "last_signal_oracle_buy", "last_signal_oracle_sell",
        "bbo_updates", "ctx_updates",
    )

    def __init__(self, spec: MarketSpec, oracle_min_move_bps: float, oracle_window_ms: float,
                 spread_tau_ms: float, baseline_tau_ms: float) -> None:
        self.spec = spec
        self.coin = spec.coin
        self.index = spec.index
        self.bid_px: float | None = None
        self.bid_sz: float | None = None
        self.ask_px: float | None = None
        self.ask_sz: float | None = None
        self.bbo_time_ms = -1
        self.bbo_recv_ms: float | None = None
        self.oracle_px: float | None = None
        self.mark_px: float | None = None
        self.ctx_recv_ms: float | None = None
        self.oracle_changed_ms: float | None = None
        self.fresh_bbo = False
        self.fresh_ctx = False
        self.tracker = OracleTracker(oracle_min_move_bps, oracle_window_ms)
        self.spread_ewma = TimeEwma(spread_tau_ms)
        self.baseline = TimeEwma(baseline_tau_ms)
        self.blocked_by: str | None = "no_data"
        self.blocked_since_ms = 0.0
        self.block_detail = ""
        self.regression_until_ms = 0.0
        self.regressions = 0
        self.halted: str | None = "delisted" if spec.delisted else None
        self.last_signal_oracle_buy: float | None = None
        self.last_signal_oracle_sell: float | None = None
        self.bbo_updates = 0
        self.ctx_updates = 0

    @property
    def live(self) -> bool:
        """True once fresh bbo and ctx have arrived on the current connection."""
        return self.fresh_bbo and self.fresh_ctx

    def view(self) -> MarketView:
        """A snapshot for followup captures and status displays."""
        return MarketView(
            coin=self.coin,
            oracle_px=self.oracle_px,
            mark_px=self.mark_px,
            bid_px=self.bid_px,
            bid_sz=self.bid_sz,
            ask_px=self.ask_px,
            ask_sz=self.ask_sz,
            bbo_recv_ms=self.bbo_recv_ms,
            ctx_recv_ms=self.ctx_recv_ms,
            live=self.fresh_bbo and self.fresh_ctx,
        )
