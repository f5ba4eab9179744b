"""The funding strategy's circuit breakers: :class:`~engine.core.breakers.CircuitBreakers` (the
same class, thresholds and latching as the Hyperliquid core) fed with a funding run's P&L.

Pure and synchronous, the time passed in; :class:`~engine.core.funding_core.FundingCore` owns
one (:meth:`FundingCore.arm_breakers`) and the shell only reacts to the trips it hands over
(:meth:`FundingCore.take_trips`). What the breakers are told:

* **equity** = the account's equity when the breakers were armed (trade: the USDT wallet;
  paper: ``[breakers] paper_equity``) + the change of the run's net P&L since then (funding +
  basis − fees; closed round trips plus the open pairs marked at the mids), at every
  housekeeping tick (:meth:`FundingBreakers.on_marks`) — ``drawdown`` is measured on it, and
  ``daily_loss`` against its value at the start of the UTC day;
* **unrealised** = the open pairs' net P&L at the mids (a pair with a held leg that has no
  price yet counts 0: never invented);
* **a closed trade** = each closed round trip's net P&L (:meth:`FundingBreakers.on_closed`), so
  ``max_consecutive_losses`` counts losing round trips; a funding payment booked after its
  round trip closed is realised P&L but no trade (:meth:`CircuitBreakers.on_realised`);
* **prices** = the perpetuals' mids, for ``market_move`` (that symbol takes no new entry).

The trips' texts are in the funding shell's words (:attr:`FundingTrip.detail`): the operator
reads them in the ``breaker`` record, ``hard_stop`` in ``/status`` and the alert.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from engine.config import BreakersConfig
from engine.core.breakers import (
    CONSECUTIVE_LOSSES,
    DAILY_LOSS,
    DRAWDOWN,
    GLOBAL_BREAKERS,
    MARKET_MOVE,
    CircuitBreakers,
    Trip,
)

STATE_VERSION = 1


@attrs.frozen
class FundingTrip:
    """One breaker that fired, with its text for the funding operator."""

    trip: Trip
    detail: str

    @property
    def breaker(self) -> str:
        return self.trip.breaker

    @property
    def market(self) -> str | None:
        return self.trip.market

    @property
    def latches_hard_stop(self) -> bool:
        return self.trip.latches_hard_stop

    def to_dict(self) -> dict[str, Any]:
        return {"breaker": self.breaker, "market": self.market, "detail": self.detail,
                "value": self.trip.value, "threshold": self.trip.threshold,
                "now_ms": self.trip.now_ms}


class FundingBreakers:
    """The breakers of one funding run (see the module docstring)."""

    def __init__(self, cfg: BreakersConfig, account_equity: float, net_pnl: float,
                 state: Any = None) -> None:
        """``account_equity`` (> 0) is the account's equity now and ``net_pnl`` the run's net
        P&L now (closed + open, so a restored run's earlier P&L is not counted twice).
        ``state`` (:meth:`to_state` of an earlier run) keeps today's realised P&L and the
        losing streak; the equity basis is this account's, now (``CircuitBreakers.rebase``);
        a ``market_move`` halt of the earlier run is not kept (its price window is gone)."""
        self.cfg = cfg
        self.base = account_equity - net_pnl
        if state is not None:
            if not isinstance(state, dict) or state.get("v") != STATE_VERSION:
                raise ValueError(f"unsupported funding breaker state {state!r:.80}")
            self.cb = CircuitBreakers.from_state(cfg, state.get("breakers"))
            self.cb.rebase(account_equity)
            self.cb.reset(MARKET_MOVE)
        else:
            self.cb = CircuitBreakers(cfg, account_equity)

    # ------------------------------------------------------------------ inputs
    def equity(self, net_pnl: float) -> float:
        """The breakers' equity for the run's net P&L ``net_pnl``."""
        return self.base + net_pnl

    def rebase(self, account_equity: float, net_pnl: float) -> None:
        """The account's own equity arrived after the breakers were armed on a placeholder
        (trade mode whose start-up wallet read failed): measure from it from now on."""
        self.base = account_equity - net_pnl
        self.cb.rebase(account_equity)

    def on_marks(self, closed_net: float, open_net: float,
                 perp_mids: list[tuple[str, float]], now_ms: int) -> list[FundingTrip]:
        """The housekeeping tick: the open pairs' net P&L and the equity, then the perp mids."""
        trips = self.cb.on_marks(open_net, self.equity(closed_net + open_net), now_ms)
        if self.cfg.market_move_pct > 0 and perp_mids:
            trips += self.cb.on_prices(perp_mids, now_ms)
        return self._words(trips)

    def on_closed(self, net: float, open_net: float, now_ms: int) -> list[FundingTrip]:
        """A round trip closed with net P&L ``net``; ``open_net`` is what is still open."""
        return self._words(self.cb.on_trade_closed(net, now_ms, unrealised=open_net),
                           last_pnl=net)

    def on_late_funding(self, amount: float, open_net: float, now_ms: int
                        ) -> list[FundingTrip]:
        """A funding payment booked after its round trip closed (realised, not a trade)."""
        return self._words(self.cb.on_realised(amount, now_ms, unrealised=open_net))

    # ------------------------------------------------------------------ command
    def reset(self, breaker: str | None = None) -> list[Trip]:
        """Clear the matching trips (None: all), each re-armed from now."""
        return self.cb.reset(breaker)

    def reset_global(self) -> list[Trip]:
        """Clear every trip that latches the hard stop (the halts of markets stay)."""
        out: list[Trip] = []
        for name in sorted(GLOBAL_BREAKERS):
            out += self.cb.reset(name)
        return out

    # ------------------------------------------------------------ introspection
    def is_halted(self, symbol: str) -> bool:
        return self.cb.is_halted(symbol)

    def global_trip(self) -> Trip | None:
        """The oldest trip that latches the hard stop (None: none)."""
        return next((t for t in self.cb.tripped() if t.latches_hard_stop), None)

    def tripped(self) -> list[FundingTrip]:
        return self._words(self.cb.tripped())

    def snapshot(self) -> dict[str, Any]:
        return self.cb.snapshot()

    def to_state(self) -> dict[str, Any]:
        return {"v": STATE_VERSION, "breakers": self.cb.to_state()}

    # ---------------------------------------------------------------- internals
    def _words(self, trips: list[Trip], last_pnl: float | None = None) -> list[FundingTrip]:
        return [FundingTrip(t, self.describe(t, last_pnl)) for t in trips]

    def describe(self, t: Trip, last_pnl: float | None = None) -> str:
        """The trip in the funding shell's words (the figures as measured at the trip)."""
        cb = self.cb
        if t.breaker == DAILY_LOSS:
            base = cb.daily_base()
            loss = t.value * base / 100.0
            return (f"daily loss {loss:.2f} USD (closed today {cb.realised_today:+.2f}, open "
                    f"pairs {cb.unrealised:+.2f}) = {t.value:.4f} % >= {t.threshold:g} % of "
                    f"day-start equity {base:.2f}")
        if t.breaker == DRAWDOWN:
            return (f"drawdown {t.value:.4f} % >= {t.threshold:g} %: equity {cb.equity:.2f} "
                    f"USD below its peak {cb.peak:.2f}")
        if t.breaker == CONSECUTIVE_LOSSES:
            last = (f"; the last {last_pnl:+.4f} USD"
                    if last_pnl is not None and math.isfinite(last_pnl) else "")
            trips = "round trip" if t.value == 1 else "round trips"
            return (f"consecutive losses: {t.value:g} losing {trips} in a row "
                    f"(threshold {t.threshold:g}){last}")
        return t.detail


__all__ = ["FundingBreakers", "FundingTrip"]
