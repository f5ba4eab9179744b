"""The delta-neutral funding/basis strategy, as pure decisions (events in, intents out).

Carry: when the perpetual's funding rate is positive, longs pay shorts, so hold spot long and
the perp short (``direction = +1``); when negative, hold the perp long and spot short, which a
spot account can only do by *selling inventory it owns* (``direction = -1``, only with
``negative_funding = "spot_inventory"`` and enough base coin; ``"off"`` never trades it).

Rules (every threshold from :class:`~engine.config.FundingConfig`):

- APR is ``|rate| × year / interval`` with the venue's own ``interval_ms`` for that symbol
  (from instruments-info or the ticker); an unknown interval means no decision, never 8 h.
- Entry (flat symbol), in order: kill → skip; quote or books missing or older than
  ``quote_stale_ms`` → skip; outside the pre-event window (``pre_event_open_minutes`` before
  ``next_funding_ms``; 0 = any time) → skip; APR < ``min_expected_apr`` → skip; negative rate
  without permission or inventory → skip; |basis| > ``max_basis_bps`` → skip; no notional left
  under ``max_total_notional_usd`` or size below either instrument's minimum → skip; expected
  funding over the expected hold ≤ both legs' round-trip fees + slippage + ``margin_bps`` →
  skip; else OPEN. A leg's fee is the larger of ``spot_fee_bps``/``perp_fee_bps`` and the
  instrument's own taker rate. The expected hold is the settlements in ``expected_hold_hours`` when
  ``hold_across_events``, else exactly the next settlement.
- Held symbol, in order: kill → CLOSE; sign flip against the held direction → CLOSE; stale
  quote → HOLD (never trade on stale data); APR < ``exit_apr`` → CLOSE; not
  ``hold_across_events`` and the settlement it was opened for has passed → CLOSE;
  |net delta| / gross > ``rebalance_band_bps`` → REBALANCE the perp by ``-net``; else HOLD.

Both legs get the same *base* quantity, rounded down to the coarser of the two lots, so the
position is delta-neutral by construction (the predecessor sized both legs by notional).
"""

from __future__ import annotations

import enum
from decimal import Decimal

import attrs

from engine.config import FundingConfig
from engine.core.neutral import BookTop, FundingQuote, Instrument, InstrumentKind

YEAR_MS = 365 * 24 * 3_600_000


class Action(enum.Enum):
    OPEN = "open"
    CLOSE = "close"
    REBALANCE = "rebalance"
    HOLD = "hold"
    SKIP = "skip"


@attrs.frozen
class Holding:
    """What we hold in one symbol (signed base quantities: + long, − short)."""

    symbol: str
    direction: int  # +1 long spot / short perp; -1 short spot (inventory sold) / long perp
    spot_qty: float
    perp_qty: float
    opened_ms: int
    target_event_ms: int  # the first settlement this position was opened for


@attrs.frozen
class MarketView:
    """What the strategy knows about one symbol right now."""

    quote: FundingQuote | None
    spot: BookTop | None
    perp: BookTop | None
    spot_instrument: Instrument
    perp_instrument: Instrument
    spot_inventory: float = 0.0  # base coin we own and may sell (negative funding)


@attrs.frozen
class Decision:
    symbol: str
    action: Action
    reason: str
    direction: int = 0
    qty: Decimal = Decimal(0)  # OPEN: base qty of each leg; REBALANCE: |perp change|
    perp_delta: float = 0.0  # REBALANCE: the signed perp change that restores neutrality
    apr: float | None = None
    expected_gain: float = 0.0
    expected_cost: float = 0.0


def funding_apr(rate: float, interval_ms: int) -> float | None:
    """Simple annualised rate (signed) for the venue's own interval; None when unknown."""
    if interval_ms <= 0:
        return None
    return rate * (YEAR_MS / interval_ms)


def settlements_within(now_ms: int, next_funding_ms: int, interval_ms: int,
                       hold_ms: float) -> int:
    """How many settlements fall in ``(now, now + hold]`` (the first at ``next_funding_ms``)."""
    if interval_ms <= 0 or next_funding_ms <= now_ms:
        return 0
    end = now_ms + hold_ms
    if next_funding_ms > end:
        return 0
    return 1 + int((end - next_funding_ms) // interval_ms)


def round_trip_cost_bps(cfg: FundingConfig, spot: Instrument | None = None,
                        perp: Instrument | None = None) -> float:
    """Open and close both legs: two fees per leg plus slippage on each of the four fills.

    Each leg's fee is the larger of the configured one and the instrument's own taker rate (the
    venue's, what the fills will actually be charged): a config written for a cheaper fee tier
    never makes an entry look better than it is."""
    spot_fee = max(cfg.spot_fee_bps, spot.taker_fee * 1e4 if spot is not None else 0.0)
    perp_fee = max(cfg.perp_fee_bps, perp.taker_fee * 1e4 if perp is not None else 0.0)
    return 2 * (spot_fee + perp_fee) + 4 * cfg.slippage_bps


def basis_bps(spot_mid: float, perp_mid: float) -> float:
    return (perp_mid - spot_mid) / spot_mid * 1e4


def net_delta_bps(h: Holding) -> float:
    """|spot + perp| / max(|spot|, |perp|) in bps (0 for an empty holding)."""
    gross = max(abs(h.spot_qty), abs(h.perp_qty))
    if gross <= 0:
        return 0.0
    return abs(h.spot_qty + h.perp_qty) / gross * 1e4


def leg_qty(notional: float, price: float, spot: Instrument, perp: Instrument) -> Decimal:
    """The base quantity both legs trade: ``notional / price`` down to the coarser lot."""
    lot = max(spot.lot_size, perp.lot_size)
    q = Decimal(repr(notional / price))
    return (q / lot).to_integral_value(rounding="ROUND_DOWN") * lot


def _fresh(view: MarketView, now_ms: int, cfg: FundingConfig) -> str | None:
    q = view.quote
    if q is None or view.spot is None:
        return "no quote or spot book yet"
    if view.spot.mid is None:
        return "spot book has an empty side"
    if now_ms - q.ts_ms > cfg.quote_stale_ms or now_ms - view.spot.ts_ms > cfg.quote_stale_ms:
        return "quote or spot book stale"
    return None


def _perp_mid(view: MarketView) -> float | None:
    if view.perp is not None and view.perp.mid is not None:
        return view.perp.mid
    q = view.quote
    if q is not None and q.bid is not None and q.ask is not None:
        return (q.bid + q.ask) / 2.0
    return None


def decide_entry(symbol: str, view: MarketView, now_ms: int, cfg: FundingConfig,
                 used_notional: float, killed: bool = False) -> Decision:
    """The decision for a flat symbol (see the module docstring for the order of checks)."""
    if killed:
        return Decision(symbol, Action.SKIP, "killed")
    stale = _fresh(view, now_ms, cfg)
    if stale is not None:
        return Decision(symbol, Action.SKIP, stale)
    q = view.quote
    assert q is not None and view.spot is not None and view.spot.mid is not None
    interval = q.interval_ms or view.perp_instrument.funding_interval_ms
    apr = funding_apr(q.rate, interval)
    if apr is None:
        return Decision(symbol, Action.SKIP, "funding interval unknown")
    to_event = q.next_funding_ms - now_ms
    if to_event <= 0:
        return Decision(symbol, Action.SKIP, "next funding time already passed", apr=apr)
    if cfg.pre_event_open_minutes > 0 and to_event > cfg.pre_event_open_minutes * 60_000:
        return Decision(symbol, Action.SKIP, "outside the pre-event window", apr=apr)
    if abs(apr) < cfg.min_expected_apr or q.rate == 0:
        return Decision(symbol, Action.SKIP, "APR below min_expected_apr", apr=apr)
    direction = 1 if q.rate > 0 else -1
    if direction < 0 and cfg.negative_funding == "off":
        return Decision(symbol, Action.SKIP, "negative funding not traded", apr=apr)
    perp_mid = _perp_mid(view)
    if perp_mid is None:
        return Decision(symbol, Action.SKIP, "no perp price", apr=apr)
    b = basis_bps(view.spot.mid, perp_mid)
    if abs(b) > cfg.max_basis_bps:
        return Decision(symbol, Action.SKIP, f"basis {b:.1f} bps beyond max_basis_bps", apr=apr)
    room = min(cfg.notional_usd, cfg.max_total_notional_usd - used_notional)
    if room <= 0:
        return Decision(symbol, Action.SKIP, "no notional left", apr=apr)
    px = max(view.spot.mid, perp_mid)
    qty = leg_qty(room, px, view.spot_instrument, view.perp_instrument)
    if direction < 0 and float(qty) > view.spot_inventory:
        lot = max(view.spot_instrument.lot_size, view.perp_instrument.lot_size)
        inv = Decimal(repr(max(view.spot_inventory, 0.0)))
        qty = (inv / lot).to_integral_value(rounding="ROUND_DOWN") * lot
        if qty <= 0:
            return Decision(symbol, Action.SKIP, "negative funding and no spot inventory",
                            apr=apr)
    if not (view.spot_instrument.tradable(qty, view.spot.mid)
            and view.perp_instrument.tradable(qty, perp_mid)):
        return Decision(symbol, Action.SKIP, "size below an instrument minimum", apr=apr)
    notional = float(qty) * view.spot.mid
    hold_ms = cfg.expected_hold_hours * 3_600_000 if cfg.hold_across_events else to_event
    n = settlements_within(now_ms, q.next_funding_ms, interval, hold_ms)
    gain = abs(q.rate) * notional * n
    cost = notional * (round_trip_cost_bps(cfg, view.spot_instrument, view.perp_instrument)
                       + cfg.margin_bps) / 1e4
    if gain <= cost:
        return Decision(symbol, Action.SKIP, "expected funding does not beat costs",
                        apr=apr, expected_gain=gain, expected_cost=cost)
    return Decision(symbol, Action.OPEN, f"{n} settlement(s) expected", direction=direction,
                    qty=qty, apr=apr, expected_gain=gain, expected_cost=cost)


def decide_held(h: Holding, view: MarketView, now_ms: int, cfg: FundingConfig,
                killed: bool = False) -> Decision:
    """The decision for a held symbol (see the module docstring for the order of checks)."""
    sym = h.symbol
    if killed:
        return Decision(sym, Action.CLOSE, "killed", direction=h.direction)
    q = view.quote
    if q is not None and q.rate * h.direction < 0:
        return Decision(sym, Action.CLOSE, "funding sign flipped", direction=h.direction)
    stale = _fresh(view, now_ms, cfg)
    if stale is not None or q is None:
        return Decision(sym, Action.HOLD, stale or "no quote", direction=h.direction)
    apr = funding_apr(q.rate, q.interval_ms or view.perp_instrument.funding_interval_ms)
    if apr is None:
        return Decision(sym, Action.HOLD, "funding interval unknown", direction=h.direction)
    if abs(apr) < cfg.exit_apr:
        return Decision(sym, Action.CLOSE, "APR below exit_apr", direction=h.direction, apr=apr)
    if not cfg.hold_across_events and now_ms >= h.target_event_ms:
        return Decision(sym, Action.CLOSE, "settlement collected (hold_across_events off)",
                        direction=h.direction, apr=apr)
    if net_delta_bps(h) > cfg.rebalance_band_bps:
        net = h.spot_qty + h.perp_qty
        lot = view.perp_instrument.lot_size
        qty = (Decimal(repr(abs(net))) / lot).to_integral_value(rounding="ROUND_DOWN") * lot
        if qty > 0:
            return Decision(sym, Action.REBALANCE, "net delta beyond rebalance_band_bps",
                            direction=h.direction, qty=qty,
                            perp_delta=-float(qty) if net > 0 else float(qty), apr=apr)
    return Decision(sym, Action.HOLD, "hold", direction=h.direction, apr=apr)


class FundingBasisStrategy:
    """The strategy's state over events: latest quote and books per symbol, holdings, kill.

    As a :class:`~engine.strategies.base.Strategy`: :meth:`on_event` takes a
    :class:`FundingQuote` or :class:`BookTop` and returns the decision for that symbol;
    :meth:`on_timer` returns one decision per symbol (:meth:`evaluate`), and
    :meth:`next_timer_ms` is the next moment a decision can change with no event (a pre-event
    window opening, a settlement). The shell keeps holdings, inventory and the kill flag
    current (:attr:`holdings`, :attr:`inventory`, :attr:`killed`)."""

    name = "funding_basis"

    def __init__(self, cfg: FundingConfig, spot: dict[str, Instrument],
                 perp: dict[str, Instrument]) -> None:
        self.cfg = cfg
        self._now_ms = 0.0  # the latest time seen (for next_timer_ms)
        self.spot_instruments = spot
        self.perp_instruments = perp
        self.quotes: dict[str, FundingQuote] = {}
        self.spot_books: dict[str, BookTop] = {}
        self.perp_books: dict[str, BookTop] = {}
        self.holdings: dict[str, Holding] = {}
        self.inventory: dict[str, float] = {}
        self.killed = False

    def on_quote(self, q: FundingQuote) -> None:
        self.quotes[q.symbol] = q

    def on_book(self, top: BookTop) -> None:
        book = self.spot_books if top.kind is InstrumentKind.SPOT else self.perp_books
        book[top.symbol] = top

    def view(self, symbol: str) -> MarketView:
        return MarketView(self.quotes.get(symbol), self.spot_books.get(symbol),
                          self.perp_books.get(symbol), self.spot_instruments[symbol],
                          self.perp_instruments[symbol], self.inventory.get(symbol, 0.0))

    def used_notional(self) -> float:
        total = 0.0
        for sym, h in self.holdings.items():
            top = self.spot_books.get(sym)
            px = top.mid if top is not None and top.mid is not None else 0.0
            total += max(abs(h.spot_qty), abs(h.perp_qty)) * px
        return total

    def evaluate(self, now_ms: int) -> list[Decision]:
        out = []
        used = self.used_notional()
        for sym in self.cfg.symbols:
            if sym not in self.spot_instruments or sym not in self.perp_instruments:
                out.append(Decision(sym, Action.SKIP, "instrument unknown"))
                continue
            h = self.holdings.get(sym)
            if h is not None:
                out.append(decide_held(h, self.view(sym), now_ms, self.cfg, self.killed))
            else:
                d = decide_entry(sym, self.view(sym), now_ms, self.cfg, used, self.killed)
                if d.action is Action.OPEN:
                    used += float(d.qty) * (self.view(sym).spot.mid or 0.0)  # type: ignore[union-attr]
                out.append(d)
        return out

    # -- the Strategy interface ------------------------------------------------------------------

    def decide(self, symbol: str, now_ms: int) -> Decision:
        """The decision for one symbol now (the notional of every holding counts as used)."""
        if symbol not in self.spot_instruments or symbol not in self.perp_instruments:
            return Decision(symbol, Action.SKIP, "instrument unknown")
        h = self.holdings.get(symbol)
        if h is not None:
            return decide_held(h, self.view(symbol), now_ms, self.cfg, self.killed)
        return decide_entry(symbol, self.view(symbol), now_ms, self.cfg, self.used_notional(),
                            self.killed)

    def on_event(self, event: object, now_ms: float) -> list[Decision]:
        """Apply a quote or book top; the decision for its symbol (other events: none)."""
        if type(event) is FundingQuote:
            self.on_quote(event)
        elif type(event) is BookTop:
            self.on_book(event)
        else:
            return []
        self._now_ms = max(self._now_ms, now_ms)
        if event.symbol not in self.cfg.symbols:
            return []
        return [self.decide(event.symbol, int(now_ms))]

    def on_timer(self, now_ms: float) -> list[Decision]:
        self._now_ms = max(self._now_ms, now_ms)
        return self.evaluate(int(now_ms))

    def next_timer_ms(self) -> float | None:
        """The earliest pre-event window opening or settlement after the latest time seen."""
        pre_ms = self.cfg.pre_event_open_minutes * 60_000.0
        due = [t for q in self.quotes.values() if q.symbol in self.cfg.symbols
               for t in (q.next_funding_ms - pre_ms, float(q.next_funding_ms))
               if t > self._now_ms]
        return min(due) if due else None
