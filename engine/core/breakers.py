"""Circuit breakers (pure, injected clock): daily loss, drawdown, losing streak, market move.

This module owns the breaker *decisions*; the caller acts on them. Every input takes ``now_ms``
(epoch ms, the shell's :class:`engine.clock.WallClock`) and returns the list of :class:`Trip`\\ s
it caused (usually empty). A breaker trips once and stays tripped (latched), across UTC-day
rollovers and restarts (:meth:`CircuitBreakers.to_state`), until :meth:`CircuitBreakers.reset`
— the explicit operator command. A threshold of 0 in :class:`engine.config.BreakersConfig`
disables a breaker.

Breakers (``Trip.breaker``) and what they measure:

``daily_loss``
    ``loss = −(sum of today's closed-trade net P&L + unrealised)`` — the day's mark-to-market
    loss — as a percentage of the day-start equity. Closed trades count from the UTC day in
    which they closed; the unrealised P&L is the latest total given (all open positions, from
    their entry — positions live seconds to minutes, so what they made or lost before
    midnight counts today). The trading core gives only exposure *confirmed by fills*, at the
    fills' price (a venue-reported fill without its ``userFills`` has no entry price: it
    counts 0, neither gain nor loss), and gives it fresh with every check (a closed trade, an
    equity), not only at its housekeeping tick — so a trade closed in one market is judged
    with the other markets' P&L at that instant, never with the closed position's own loss
    counted a second time from the last tick.

    Why an unrealised gain offsets a realised loss (it did not before, issue 9 invariant 7):
    the breaker is there to stop a *losing* day, and an account whose confirmed P&L today is
    ≥ 0 is not losing — latching it (a hard stop that flattens the gain away) stops a
    profitable account. The gain is not trusted blindly: it is marked every tick, so once it
    fades the loss shows at that tick and the breaker trips then, at the same threshold; and
    the drawdown breaker watches the venue's own equity independently.
    The day-start equity is the first equity seen in the
    UTC day; if another input opens the day first, the last equity known (carried over) is
    used. Should it be ≤ 0 (an empty account at midnight), the peak equity is the base.
``drawdown``
    ``(peak − equity) / peak`` where peak is the highest equity seen (seeded by the starting
    equity).
``consecutive_losses``
    the trailing run of closed trades with net P&L < 0. A trade with P&L ≥ 0 ends the run — a
    break-even (exactly 0, e.g. a scratch) is not a loss.
``market_move``
    for one market: the latest price against the lowest and highest price within the trailing
    ``market_move_window_s`` (inclusive: a price exactly the window old still counts): up move
    ``px / low − 1``, down move ``1 − px / high``. Only this market is halted (no new entries);
    the global breakers mean "latch the hard stop". O(1) amortised per price: a monotonic
    deque of the window's minimum and maximum per market.
``reject_burst``
    decided by :class:`engine.core.risk.RejectBurst` in the trading core; it is only named here
    so every breaker shows in the same place.

"Fires at its threshold and not below": a value fires when ``value ≥ threshold·(1 − 1e-9)``, so
a 2 % loss computed with float rounding (1.9999999999 %) still fires and 1.999 % does not.

Reset re-arms a breaker *from the moment of the reset* — otherwise a condition that still holds
would re-trip at once and the command would be useless: ``daily_loss`` starts a fresh day
segment (realised loss 0, base = current equity; the unrealised P&L keeps counting),
``drawdown`` sets the peak to the current equity, ``consecutive_losses`` zeroes the run,
``market_move`` forgets the market's price window, ``reject_burst`` just clears.

Bad input (a non-finite number, a price ≤ 0, an empty market name) is ignored, counted in
``snapshot()["bad_inputs"]`` and logged at WARNING at most once a minute per kind and market;
it never raises on the hot path. A malformed persisted state or an unknown breaker name in
``reset`` raises :class:`ValueError`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from engine.config import BreakersConfig

log = logging.getLogger("engine.breakers")

DAILY_LOSS = "daily_loss"
DRAWDOWN = "drawdown"
CONSECUTIVE_LOSSES = "consecutive_losses"
MARKET_MOVE = "market_move"
REJECT_BURST = "reject_burst"
BREAKERS = (DAILY_LOSS, DRAWDOWN, CONSECUTIVE_LOSSES, MARKET_MOVE, REJECT_BURST)
GLOBAL_BREAKERS = frozenset({DAILY_LOSS, DRAWDOWN, CONSECUTIVE_LOSSES, REJECT_BURST})

REL_TOL = 1e-9
DAY_MS = 86_400_000
BAD_INPUT_LOG_INTERVAL_MS = 60_000.0
STATE_VERSION = 1


def reached(value: float, threshold: float) -> bool:
    """True when ``value`` is at or above ``threshold`` (enabled: > 0) within ``REL_TOL``."""
    return threshold > 0 and value >= threshold * (1.0 - REL_TOL)


def utc_day(now_ms: float) -> int:
    """Days since the epoch (UTC) of the instant ``now_ms``."""
    return int(now_ms // DAY_MS)


@attrs.frozen
class Trip:
    """One breaker that fired. ``market`` is set for ``market_move`` only."""

    breaker: str
    market: str | None
    value: float
    threshold: float
    detail: str
    now_ms: float

    @property
    def latches_hard_stop(self) -> bool:
        """Global breakers latch the hard stop; ``market_move`` halts only its market."""
        return self.breaker in GLOBAL_BREAKERS

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Trip:
        if not isinstance(d, dict):
            raise ValueError(f"breaker trip must be an object, got {type(d).__name__}")
        try:
            breaker, market, detail = d["breaker"], d["market"], d["detail"]
            value = _finite(d["value"], "trip value")
            threshold = _finite(d["threshold"], "trip threshold")
            now_ms = _finite(d["now_ms"], "trip now_ms")
        except KeyError as e:
            raise ValueError(f"breaker trip is missing {e.args[0]!r}") from None
        if breaker not in BREAKERS:
            raise ValueError(f"unknown breaker {breaker!r} in trip")
        if breaker == MARKET_MOVE:
            if not isinstance(market, str) or not market:
                raise ValueError(f"market_move trip needs a market name, got {market!r}")
        elif market is not None:
            raise ValueError(f"global breaker {breaker!r} trip has a market {market!r}")
        if not isinstance(detail, str):
            raise ValueError(f"trip detail must be a string, got {detail!r}")
        return cls(breaker, market, value, threshold, detail, now_ms)


def _finite(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {v!r}")
    return float(v)


class _Window:
    """Trailing-window min and max of one market's prices (monotonic deques of (t, px))."""

    __slots__ = ("lows", "highs", "last_ms", "last_px", "last_threshold")

    def __init__(self) -> None:
        self.lows: deque[tuple[float, float]] = deque()  # px increasing from the front
        self.highs: deque[tuple[float, float]] = deque()  # px decreasing from the front
        self.last_ms = -math.inf
        self.last_px = math.nan  # the newest price pushed (NaN: none), and the threshold it
        self.last_threshold = math.nan  # was checked against without a trip

    def repeat(self, now_ms: float, window_ms: float) -> None:
        """:meth:`push` of the newest price again (``last_px``), without the min/max: the
        deques hold prices strictly monotonic from the front, so that push pops exactly the
        newest entry of each and appends ``(now_ms, px)`` in its place, then expires."""
        lows, highs = self.lows, self.highs
        entry = (now_ms, self.last_px)
        lows[-1] = entry
        highs[-1] = entry
        while now_ms - lows[0][0] > window_ms:
            lows.popleft()
        while now_ms - highs[0][0] > window_ms:
            highs.popleft()

    def push(self, px: float, now_ms: float, window_ms: float) -> tuple[float, float]:
        """Add a price; return (lowest, highest) within ``window_ms`` of ``now_ms`` (inclusive)."""
        lows, highs = self.lows, self.highs
        while lows and lows[-1][1] >= px:
            lows.pop()
        lows.append((now_ms, px))
        while highs and highs[-1][1] <= px:
            highs.pop()
        highs.append((now_ms, px))
        # The newest entry is never expired, so neither deque empties here.
        while now_ms - lows[0][0] > window_ms:
            lows.popleft()
        while now_ms - highs[0][0] > window_ms:
            highs.popleft()
        return lows[0][1], highs[0][1]


class CircuitBreakers:
    """The breakers of one account. Not thread-safe; call from the core only."""

    def __init__(self, cfg: BreakersConfig, start_equity: float) -> None:
        start = _finite(start_equity, "starting equity")
        if start <= 0:
            raise ValueError(f"starting equity must be > 0, got {start_equity!r}")
        self.cfg = cfg
        self.window_ms = cfg.market_move_window_s * 1000.0
        self.equity = start
        self.peak = start
        self.day: int | None = None
        self.day_start_equity = start
        self.realised_today = 0.0
        self.unrealised = 0.0
        self.consecutive_losses = 0
        self.last_ms = -math.inf
        self.trips: dict[tuple[str, str | None], Trip] = {}
        self.halted: set[str] = set()
        self.windows: dict[str, _Window] = {}
        self.bad_inputs: dict[str, int] = {}
        self._bad_logged: dict[tuple[str, str], float] = {}
        # on_prices_changed: markets whose window is re-stamped at every tick without being
        # touched (a deferred _Window.repeat at _quiet_ms; see _materialize)
        self._quiet: set[str] = set()
        self._quiet_ms = -math.inf
        # bumped whenever a window changes outside on_prices_changed in a way its caller must
        # hear about (it then passes every market again: PriceTicks)
        self.sparse_epoch = 0
        # on_marks: its inputs and the state it left the last time it tripped nothing (see
        # _quiet_marks); None: the next call checks
        self._marks_key: tuple[Any, ...] | None = None
        self._trip_changes = 0  # trips added or cleared so far

    # ------------------------------------------------------------------ inputs
    def on_equity(self, equity_usd: float, now_ms: float,
                  unrealised: float | None = None) -> list[Trip]:
        """The account value (trade: the venue's; paper: paper equity + P&L − fees), and the
        current unrealised P&L when the caller has it (see :meth:`on_unrealized`)."""
        if not self._good_time(now_ms, "equity") or not self._good(equity_usd, "equity", "equity"):
            return []
        self._fresh_unrealised(unrealised)
        self.equity = equity_usd
        self._roll(now_ms)
        if equity_usd > self.peak:
            self.peak = equity_usd
        return self._check(now_ms)

    def rebase(self, equity_usd: float) -> None:
        """Measure from ``equity_usd`` from now on: the equity, the peak and the day's starting
        equity all become it (the basis was not this account's equity: a placeholder, a
        configured fallback, or a journaled state from another mode or account). Tripped
        breakers stay tripped; today's realised P&L and the loss run are kept."""
        start = _finite(equity_usd, "equity")
        if start <= 0:
            raise ValueError(f"equity to rebase on must be > 0, got {equity_usd!r}")
        self.equity = self.peak = self.day_start_equity = start

    def on_trade_closed(self, pnl_usd: float, now_ms: float,
                        unrealised: float | None = None) -> list[Trip]:
        """Net P&L (after fees) of a closed trade, and the unrealised P&L of what is still
        open right after it (the closed position no longer in it) when the caller has it."""
        if not self._good_time(now_ms, "trade") or not self._good(pnl_usd, "trade", "pnl"):
            return []
        self._fresh_unrealised(unrealised)
        self._roll(now_ms)
        self.realised_today += pnl_usd
        self.consecutive_losses = self.consecutive_losses + 1 if pnl_usd < 0 else 0
        return self._check(now_ms, last_pnl=pnl_usd)

    def on_realised(self, pnl_usd: float, now_ms: float,
                    unrealised: float | None = None) -> list[Trip]:
        """Realised P&L that is not a closed trade (e.g. a funding payment booked after the
        round trip it was paid to had closed): it counts in today's realised P&L like a trade's
        and leaves the losing streak as it is (it is no trade: neither a loss nor a win)."""
        if not self._good_time(now_ms, "realised") or not self._good(pnl_usd, "realised",
                                                                     "pnl"):
            return []
        self._fresh_unrealised(unrealised)
        self._roll(now_ms)
        self.realised_today += pnl_usd
        return self._check(now_ms)

    def on_unrealized(self, usd: float, now_ms: float) -> list[Trip]:
        """The current total unrealised P&L of all open positions (replaces the previous one)."""
        if not self._good_time(now_ms, "unrealised") or not self._good(usd, "unrealised", "usd"):
            return []
        self._roll(now_ms)
        self.unrealised = usd
        return self._check(now_ms)

    def on_marks(self, unrealised: float, equity: float | None, now_ms: float) -> list[Trip]:
        """The housekeeping tick: :meth:`on_unrealized` of ``unrealised``, then (``equity``
        not None) :meth:`on_equity` of ``equity``, at ``now_ms`` — the same trips and the same
        state afterwards.

        When nothing the checks read changed since the previous call that tripped nothing —
        the same two inputs, no other input or reset in between (the equity, peak, day-start
        equity, today's realised P&L, the unrealised P&L, the loss run, the trips and the
        config are all as that call left them) and the same UTC day — the checks would give
        what they gave then (nothing), so only the clock moves on (``last_ms``) and both
        values are stored again (a tick of an account with nothing open is O(1))."""
        if self._marks_key is not None and self._quiet_marks(unrealised, equity, now_ms):
            return []
        trips = self.on_unrealized(unrealised, now_ms)
        if equity is not None:
            trips += self.on_equity(equity, now_ms)
        finite = (math.isfinite(now_ms) and math.isfinite(unrealised)
                  and (equity is None or math.isfinite(equity)))
        # (a bad input is ignored, so nothing was checked, and counted at every call: never
        # a shortcut for it)
        self._marks_key = self._marks_state(unrealised, equity) if finite and not trips \
            else None
        return trips

    def _marks_state(self, unrealised: float, equity: float | None) -> tuple[Any, ...]:
        return (unrealised, equity, self.equity, self.peak, self.day_start_equity,
                self.realised_today, self.unrealised, self.consecutive_losses, self.day,
                self._trip_changes, len(self.trips), self.cfg)

    def _quiet_marks(self, unrealised: float, equity: float | None, now_ms: float) -> bool:
        """:meth:`on_marks` without the checks, when that is exact (see there)."""
        if not math.isfinite(now_ms):
            return False
        last = now_ms if now_ms > self.last_ms else self.last_ms
        if utc_day(last) != self.day or self._marks_key != self._marks_state(unrealised, equity):
            return False
        # what on_unrealized and on_equity would change without a trip: the clock and the
        # two values (equal to the stored ones, but e.g. -0.0 and 0.0 are equal and differ)
        self.last_ms = last
        self.unrealised = unrealised
        if equity is not None:
            self.equity = equity
        return True

    def _fresh_unrealised(self, usd: float | None) -> None:
        """Take the caller's current unrealised P&L before a check (ignored: None, or bad)."""
        if usd is not None and self._good(usd, "unrealised", "usd"):
            self.unrealised = usd

    def on_prices(self, prices: list[tuple[str, float]], now_ms: float) -> list[Trip]:
        """:meth:`on_price` of each ``(market, price)`` in order at one time (the housekeeping
        tick), the trips in that order: the same calls, with the checks that do not depend on
        the market done once and a repeated price's fast path inline."""
        threshold = self.cfg.market_move_pct
        if threshold <= 0:
            return []
        if self._quiet:
            self._end_sparse()
        if not math.isfinite(now_ms):
            trips: list[Trip] = []
            for market, px in prices:
                trips += self.on_price(market, px, now_ms)
            return trips
        trips = []
        halted = self.halted
        windows = self.windows
        window_ms = self.window_ms
        for market, px in prices:
            if market in halted:
                continue
            w = windows.get(market)
            if w is not None and px == w.last_px and now_ms >= w.last_ms \
                    and threshold == w.last_threshold and market:
                w.last_ms = now_ms
                w.repeat(now_ms, window_ms)
                continue
            t = self.on_price(market, px, now_ms)
            if t:
                trips += t
        return trips

    def on_prices_changed(self, changed: list[tuple[str, float | None]],
                          now_ms: float) -> tuple[list[Trip], list[str]]:
        """The housekeeping tick's :meth:`on_prices`, told only what changed (O(changes)).

        The caller keeps the tick's list ``P`` of ``(market, price)`` (in market order) and
        passes, in that order, each market whose entry changed since its previous call of this
        method (its price now, or ``None``: no longer in ``P``), plus the markets the previous
        call returned as *loud*. Trips and every later observable state are those of
        ``on_prices(P, now_ms)``: there, a market whose price is unchanged takes the repeat fast
        path, which only re-stamps its window's newest entry and expires; here such a market is
        *quiet*: that re-stamp is deferred to when the window is next read or changed (one
        re-stamp at the latest tick's time equals one per tick, see :meth:`_Window.repeat`).
        Returns the trips and the loud markets: those ``on_prices`` would check again even at
        an unchanged price (e.g. a bad price, counted at every tick). ``now_ms`` must be finite
        and not before the previous call's (the caller uses :meth:`on_prices` otherwise).
        """
        threshold = self.cfg.market_move_pct
        if threshold <= 0:
            return [], []
        quiet = self._quiet
        if changed and quiet:
            for market, _ in changed:
                if market in quiet:
                    self._materialize(market)
                    quiet.discard(market)
        self._quiet_ms = now_ms  # every quiet window is now re-stamped at this tick
        trips: list[Trip] = []
        loud: list[str] = []
        halted = self.halted
        windows = self.windows
        for market, px in changed:
            if px is None or market in halted:
                continue
            w = windows.get(market)
            if w is not None and px == w.last_px and now_ms >= w.last_ms \
                    and threshold == w.last_threshold and market:
                w.last_ms = now_ms
                w.repeat(now_ms, self.window_ms)
            else:
                t = self.on_price(market, px, now_ms)
                if t:
                    trips += t
                w = windows.get(market)
            if w is not None and px == w.last_px and w.last_ms == now_ms \
                    and threshold == w.last_threshold and market and market not in halted:
                quiet.add(market)  # on_prices would fast-path it at the next tick
            elif market not in halted:
                loud.append(market)
        return trips, loud

    def _materialize(self, market: str) -> None:
        """Apply the deferred re-stamp of a quiet market's window (at ``_quiet_ms``); the
        market stays quiet (a later re-stamp at a later tick composes with this one)."""
        w = self.windows.get(market)
        if w is not None and w.last_ms < self._quiet_ms:
            w.last_ms = self._quiet_ms
            w.repeat(self._quiet_ms, self.window_ms)

    def materialize(self) -> None:
        """Apply every deferred re-stamp (:meth:`on_prices_changed`): the windows are then
        exactly those of the per-tick :meth:`on_prices` (for inspection; changes nothing
        observable)."""
        for market in self._quiet:
            self._materialize(market)

    def _end_sparse(self, market: str | None = None) -> None:
        """A window of a quiet market (``None``: of every one) is about to change outside
        :meth:`on_prices_changed`: re-stamp, forget it as quiet, tell the caller."""
        for m in [market] if market is not None else list(self._quiet):
            self._materialize(m)
            self._quiet.discard(m)
        self.sparse_epoch += 1

    def on_price(self, market: str, px: float, now_ms: float) -> list[Trip]:
        """A mark/oracle price of ``market``; may halt that market (``market_move``)."""
        if market in self._quiet:
            self._end_sparse(market)
        threshold = self.cfg.market_move_pct
        if threshold <= 0 or market in self.halted:
            return []
        if not self._good_time(now_ms, "price"):
            return []
        if not market:
            self._bad("price", "market", market, now_ms)
            return []
        w = self.windows.get(market)
        if w is not None and px == w.last_px and now_ms >= w.last_ms \
                and threshold == w.last_threshold:
            # The same price again (a quiet market at each housekeeping tick): the window's
            # prices are then a subset of those at the last check, which did not trip, so
            # the move can only be smaller: no trip. Only the window moves on.
            w.last_ms = now_ms
            w.repeat(now_ms, self.window_ms)
            return []
        if not (math.isfinite(px) and px > 0):
            self._bad("price", market, px, now_ms)
            return []
        if w is None:
            w = self.windows[market] = _Window()
        if now_ms < w.last_ms:
            # The shell's clock never regresses; if it ever did, measure from the latest time
            # so the window stays ordered (and say so).
            self._bad("price_time_regression", market, now_ms, w.last_ms)
            now_ms = w.last_ms
        w.last_ms = now_ms
        low, high = w.push(px, now_ms, self.window_ms)
        w.last_px = px
        w.last_threshold = threshold
        if px == low and px == high:
            return []
        up = (px / low - 1.0) * 100.0
        down = (1.0 - px / high) * 100.0
        if up >= down:
            move, ref, direction = up, low, "up"
        else:
            move, ref, direction = down, high, "down"
        if not reached(move, threshold):
            return []
        self.halted.add(market)
        del self.windows[market]
        detail = (f"{market} moved {direction} {move:.3f} % within "
                  f"{self.cfg.market_move_window_s:g} s: {ref:.6g} -> {px:.6g} "
                  f"(threshold {threshold:g} %); no new entries in {market}")
        return self._trip(MARKET_MOVE, market, move, threshold, detail, now_ms)

    def on_reject_burst(self, detail: str, now_ms: float, *, count: int = 0,
                        limit: int = 0) -> list[Trip]:
        """The core's RejectBurst fired; name it as the ``reject_burst`` breaker."""
        if not self._good_time(now_ms, "reject_burst"):
            return []
        self._roll(now_ms)
        text = f"order reject/error burst: {detail}" if detail else "order reject/error burst"
        if count or limit:
            text += f" ({count} rejects, limit {limit})"
        return self._trip(REJECT_BURST, None, float(count), float(limit), text, now_ms)

    # ------------------------------------------------------------------ command
    def reset(self, breaker: str | None = None, market: str | None = None) -> list[Trip]:
        """Clear the active trips matching ``breaker`` and ``market`` (None matches any).

        Each cleared breaker is re-armed from now (see the module docstring). Returns the trips
        that were cleared (empty: nothing matched). An unknown breaker name, or a market with a
        global breaker, raises :class:`ValueError`.
        """
        if breaker is not None and breaker not in BREAKERS:
            raise ValueError(f"unknown breaker {breaker!r}; one of {', '.join(BREAKERS)}")
        if market is not None and breaker not in (None, MARKET_MOVE):
            raise ValueError(f"breaker {breaker!r} is global; it takes no market")
        cleared = [t for key, t in self.trips.items()
                   if (breaker is None or key[0] == breaker)
                   and (market is None or key[1] == market)]
        for t in cleared:
            del self.trips[(t.breaker, t.market)]
            self._trip_changes += 1
            if t.breaker == DAILY_LOSS:
                self.realised_today = 0.0
                self.day_start_equity = self.equity
            elif t.breaker == DRAWDOWN:
                self.peak = self.equity
            elif t.breaker == CONSECUTIVE_LOSSES:
                self.consecutive_losses = 0
            elif t.breaker == MARKET_MOVE and t.market is not None:
                self.halted.discard(t.market)
                self.windows.pop(t.market, None)
                self._quiet.discard(t.market)
                self.sparse_epoch += 1  # a market the breakers skipped is back
        return cleared

    # ------------------------------------------------------------ introspection
    def tripped(self) -> list[Trip]:
        """Active (latched) trips, oldest first."""
        return sorted(self.trips.values(), key=lambda t: t.now_ms)

    def halted_markets(self) -> frozenset[str]:
        return frozenset(self.halted)

    def is_halted(self, market: str) -> bool:
        return market in self.halted

    def any_global_tripped(self) -> bool:
        return any(b in GLOBAL_BREAKERS for b, _ in self.trips)

    def daily_loss_usd(self) -> float:
        return -(self.realised_today + self.unrealised)

    def daily_base(self) -> float:
        return self.day_start_equity if self.day_start_equity > 0 else self.peak

    def daily_loss_pct(self) -> float:
        return self.daily_loss_usd() / self.daily_base() * 100.0

    def drawdown_pct(self) -> float:
        return (self.peak - self.equity) / self.peak * 100.0

    def snapshot(self) -> dict[str, Any]:
        """Everything /status shows."""
        cfg = self.cfg
        return {
            "equity": self.equity,
            "peak_equity": self.peak,
            "day": None if self.day is None else _day_iso(self.day),
            "day_start_equity": self.day_start_equity,
            "realised_today": self.realised_today,
            "unrealised": self.unrealised,
            "daily_pnl": self.realised_today + self.unrealised,
            "daily_loss_usd": self.daily_loss_usd(),
            "daily_loss_pct": self.daily_loss_pct(),
            "drawdown_pct": self.drawdown_pct(),
            "consecutive_losses": self.consecutive_losses,
            "halted_markets": sorted(self.halted),
            "trips": [t.to_dict() for t in self.tripped()],
            "thresholds": {
                DAILY_LOSS: cfg.daily_loss_pct,
                DRAWDOWN: cfg.drawdown_pct,
                CONSECUTIVE_LOSSES: cfg.max_consecutive_losses,
                MARKET_MOVE: cfg.market_move_pct,
                "market_move_window_s": cfg.market_move_window_s,
            },
            "bad_inputs": dict(self.bad_inputs),
        }

    # ------------------------------------------------------------ persistence
    def to_state(self) -> dict[str, Any]:
        """Plain JSON-able dict for the journal (price windows are not kept: they re-fill)."""
        return {
            "v": STATE_VERSION,
            "equity": self.equity,
            "peak": self.peak,
            "day": self.day,
            "day_start_equity": self.day_start_equity,
            "realised_today": self.realised_today,
            "unrealised": self.unrealised,
            "consecutive_losses": self.consecutive_losses,
            "last_ms": self.last_ms if math.isfinite(self.last_ms) else None,
            "trips": [t.to_dict() for t in self.tripped()],
        }

    @classmethod
    def from_state(cls, cfg: BreakersConfig, state: Any) -> CircuitBreakers:
        """Rebuild from :meth:`to_state`; a malformed state raises :class:`ValueError`."""
        if not isinstance(state, dict):
            raise ValueError(f"breaker state must be an object, got {type(state).__name__}")
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported breaker state version {state.get('v')!r}")
        try:
            peak = _finite(state["peak"], "peak")
            cb = cls(cfg, peak)
            cb.equity = _finite(state["equity"], "equity")
            day = state["day"]
            if day is not None and (isinstance(day, bool) or not isinstance(day, int)):
                raise ValueError(f"day must be an integer or null, got {day!r}")
            cb.day = day
            cb.day_start_equity = _finite(state["day_start_equity"], "day_start_equity")
            cb.realised_today = _finite(state["realised_today"], "realised_today")
            cb.unrealised = _finite(state["unrealised"], "unrealised")
            run = state["consecutive_losses"]
            if isinstance(run, bool) or not isinstance(run, int) or run < 0:
                raise ValueError(f"consecutive_losses must be an integer >= 0, got {run!r}")
            cb.consecutive_losses = run
            last = state["last_ms"]
            cb.last_ms = -math.inf if last is None else _finite(last, "last_ms")
            trips = state["trips"]
        except KeyError as e:
            raise ValueError(f"breaker state is missing {e.args[0]!r}") from None
        if not isinstance(trips, list):
            raise ValueError("breaker state 'trips' must be a list")
        for raw in trips:
            t = Trip.from_dict(raw)
            cb.trips[(t.breaker, t.market)] = t
            if t.market is not None:
                cb.halted.add(t.market)
        return cb

    # ---------------------------------------------------------------- internals
    def _roll(self, now_ms: float) -> None:
        """Advance the clock; open a new UTC day (first equity seen, else the last known)."""
        if now_ms > self.last_ms:
            self.last_ms = now_ms
        day = utc_day(self.last_ms)
        if self.day is None or day > self.day:
            self.day = day
            self.realised_today = 0.0
            self.day_start_equity = self.equity

    def _check(self, now_ms: float, last_pnl: float | None = None) -> list[Trip]:
        cfg = self.cfg
        trips = self.trips
        out: list[Trip] = []
        if (DAILY_LOSS, None) not in trips:
            pct = self.daily_loss_pct()
            if reached(pct, cfg.daily_loss_pct):
                out += self._trip(
                    DAILY_LOSS, None, pct, cfg.daily_loss_pct,
                    f"daily loss {self.daily_loss_usd():.2f} USD = {pct:.3f} % of day-start "
                    f"equity {self.daily_base():.2f} USD (threshold {cfg.daily_loss_pct:g} %; "
                    f"realised today {self.realised_today:+.2f}, unrealised "
                    f"{self.unrealised:+.2f})", now_ms)
        if (DRAWDOWN, None) not in trips:
            dd = self.drawdown_pct()
            if reached(dd, cfg.drawdown_pct):
                out += self._trip(
                    DRAWDOWN, None, dd, cfg.drawdown_pct,
                    f"equity {self.equity:.2f} USD is {dd:.3f} % below the peak "
                    f"{self.peak:.2f} USD (threshold {cfg.drawdown_pct:g} %)", now_ms)
        run = self.consecutive_losses
        if (CONSECUTIVE_LOSSES, None) not in trips and reached(run, cfg.max_consecutive_losses):
            last = f"; last trade {last_pnl:+.2f} USD" if last_pnl is not None else ""
            out += self._trip(
                CONSECUTIVE_LOSSES, None, float(run), float(cfg.max_consecutive_losses),
                f"{run} consecutive losing trades (threshold {cfg.max_consecutive_losses})"
                f"{last}", now_ms)
        return out

    def _trip(self, breaker: str, market: str | None, value: float, threshold: float,
              detail: str, now_ms: float) -> list[Trip]:
        key = (breaker, market)
        if key in self.trips:
            return []
        t = Trip(breaker, market, value, threshold, detail, now_ms)
        self.trips[key] = t
        self._trip_changes += 1
        return [t]

    def _good_time(self, now_ms: float, kind: str) -> bool:
        if math.isfinite(now_ms):
            return True
        self._bad(kind, "now_ms", now_ms, self.last_ms)
        return False

    def _good(self, value: float, kind: str, field: str) -> bool:
        if math.isfinite(value):
            return True
        self._bad(kind, field, value, self.last_ms)
        return False

    def _bad(self, kind: str, field: str, value: object, now_ms: float) -> None:
        """Count a bad input; log it at most once a minute per (kind, field)."""
        n = self.bad_inputs[kind] = self.bad_inputs.get(kind, 0) + 1
        t = now_ms if math.isfinite(now_ms) else 0.0
        last = self._bad_logged.get((kind, field))
        if last is not None and 0 <= t - last < BAD_INPUT_LOG_INTERVAL_MS:
            return
        self._bad_logged[(kind, field)] = t
        log.warning("circuit breakers: ignored bad %s input: %s=%r (%d bad %s inputs so far)",
                    kind, field, value, n, kind)


class PriceTicks:
    """The caller's side of :meth:`CircuitBreakers.on_prices_changed` for markets ``0..n-1``.

    ``entry(i)`` gives market ``i``'s name and its price in the tick's list, or ``None`` when
    it is not in the list. The owner calls :meth:`changed` whenever that answer may have
    changed (or :meth:`all_changed`); :meth:`tick` then gives exactly what ``on_prices`` of
    the whole list would, passing only the changed markets and those the breakers keep
    checking. New breakers, a change the breakers report (``sparse_epoch``), a clock that is
    not finite or goes back: every market is passed again (the whole list, for the clock).
    """

    def __init__(self, n: int, entry: Callable[[int], tuple[str, float | None]]) -> None:
        self.n = n
        self.entry = entry
        self.dirty: set[int] = set(range(n))
        self._index: dict[str, int] = {}
        self._cb: CircuitBreakers | None = None
        self._epoch = -1
        self._last_ms = -math.inf

    def changed(self, i: int) -> None:
        self.dirty.add(i)

    def all_changed(self) -> None:
        self.dirty.update(range(self.n))

    def tick(self, cb: CircuitBreakers, now_ms: float) -> list[Trip]:
        if cb is not self._cb or cb.sparse_epoch != self._epoch:
            self._cb = cb
            self.all_changed()
        entry = self.entry
        dirty = self.dirty
        if not math.isfinite(now_ms) or now_ms < self._last_ms:
            self.all_changed()
            prices: list[tuple[str, float]] = []
            for i in range(self.n):
                market, px = entry(i)
                if px is not None:
                    prices.append((market, px))
            trips = cb.on_prices(prices, now_ms)
            self._epoch = cb.sparse_epoch
            return trips
        self._last_ms = now_ms
        changed: list[tuple[str, float | None]] = []
        if dirty:
            index = self._index
            for i in sorted(dirty):
                e = entry(i)
                index[e[0]] = i
                changed.append(e)
            dirty.clear()
        trips, loud = cb.on_prices_changed(changed, now_ms)
        self._epoch = cb.sparse_epoch
        for market in loud:
            dirty.add(self._index[market])
        return trips


def _day_iso(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).date().isoformat()
