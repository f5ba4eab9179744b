"""Deterministic market model in virtual time: deployer oracle, lagging market maker, contexts.

``MarketModel(seed, n_markets, params).advance(t_ms)`` returns every event up to virtual time
``t_ms`` in order; the same seed gives the same sequence. All randomness comes from one
``random.Random(seed)``. Prices are published as wire strings on the venue grid (see grid.py).

Oracle: one dex-wide update every ~3 s; every market gets a new price (AR(1) moves with momentum,
capped at 1 %) and a context even when its price did not change. Market maker: re-centres on the
new oracle (plus a structural offset) after a random lag, so the old book can sit on the wrong
side of the new oracle for a while; between updates it changes sizes and occasionally a price
by one tick. In aligned mode the book re-centres at the oracle instant (its bbo ordered before
the context) and is never on the wrong side of the oracle. Takers (``take``) consume the book's
liquidity until the market maker re-quotes.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from engine.sim import grid
from engine.sim.markets import MarketSpec, xyz_markets

BPS = Decimal("0.0001")
_ONE = Decimal(1)


class Level(NamedTuple):
    """One side of the bbo: price and size as wire strings, n = order count."""

    px: str
    sz: str
    n: int


class Bbo(NamedTuple):
    bid: Level | None
    ask: Level | None


@dataclass(frozen=True, slots=True)
class Ctx:
    """A perp asset context exactly as the venue publishes it (all strings; some may be null)."""

    funding: str
    openInterest: str
    prevDayPx: str
    dayNtlVlm: str
    premium: str | None
    oraclePx: str
    markPx: str
    midPx: str | None
    impactPxs: tuple[str, str] | None
    dayBaseVlm: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "funding": self.funding,
            "openInterest": self.openInterest,
            "prevDayPx": self.prevDayPx,
            "dayNtlVlm": self.dayNtlVlm,
            "premium": self.premium,
            "oraclePx": self.oraclePx,
            "markPx": self.markPx,
            "midPx": self.midPx,
            "impactPxs": list(self.impactPxs) if self.impactPxs is not None else None,
            "dayBaseVlm": self.dayBaseVlm,
        }


EventKind = Literal["bbo", "ctx"]


class Event(NamedTuple):
    time_ms: int
    kind: EventKind
    coin: str
    payload: Bbo | Ctx


@dataclass(frozen=True, slots=True)
class ModelParams:
    """Tunable knobs of the model; defaults reproduce the venue's observed behaviour."""

    oracle_interval_ms: int = 3000
    oracle_jitter_ms: int = 300
    oracle_min_interval_ms: int = 2500
    momentum: float = 0.45  # AR(1) weight of the previous move
    zero_move_prob: float = 0.04  # chance a market's oracle does not move on an update
    max_move_bps: float = 100.0  # venue cap: 1 % per update
    mean_reversion: float = 0.002  # pull towards the reference price, per update
    # Market-maker re-centre lag: mixture of uniform (fast) and capped lognormal (slow).
    lag_fast_prob: float = 0.55
    lag_fast_min_ms: float = 20.0
    lag_fast_max_ms: float = 120.0
    lag_slow_median_ms: float = 350.0
    lag_slow_sigma: float = 0.6
    lag_cap_ms: float = 2500.0
    # Small quote changes between oracle updates.
    quote_min_ms: int = 200
    quote_max_ms: int = 600
    tick_move_prob: float = 0.15
    empty_side_prob: float = 0.002
    book_notional_min: float = 300.0
    book_notional_max: float = 20_000.0
    aligned: bool = False
    day_ms: int = 86_400_000  # dayNtlVlm/dayBaseVlm reset and prevDayPx roll at this period

    def __post_init__(self) -> None:
        if self.oracle_min_interval_ms <= 0 or self.oracle_interval_ms <= 0:
            raise ValueError("oracle intervals must be > 0")
        if not 0 <= self.lag_fast_prob <= 1:
            raise ValueError("lag_fast_prob must be within [0, 1]")
        if not 0 < self.quote_min_ms <= self.quote_max_ms:
            raise ValueError("need 0 < quote_min_ms <= quote_max_ms")
        if not 0 < self.book_notional_min <= self.book_notional_max:
            raise ValueError("need 0 < book_notional_min <= book_notional_max")
        if not 0 < self.max_move_bps <= 100:
            raise ValueError("max_move_bps must be within (0, 100]")
        if self.day_ms <= 0:
            raise ValueError("day_ms must be > 0")


class _Forced(NamedTuple):
    move_bps: float
    lag_ms: int


class _Market:
    """Mutable per-market state (internal)."""

    __slots__ = (
        "spec", "coin", "szd", "oracle", "prev_move", "center", "bid_px", "ask_px", "bid_sz",
        "ask_sz", "bid_n", "ask_n", "oracle_gen", "book_gen", "frozen_until", "funding", "oi",
        "ntl_vlm", "base_vlm", "prev_day_px", "bbo", "ctx", "book_time",
    )  # fmt: skip

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.coin = spec.name
        self.szd = spec.sz_decimals
        self.oracle = grid.round_price(spec.ref_px, self.szd)
        self.prev_move = 0.0
        self.center = self.oracle
        self.bid_px: Decimal | None = None
        self.ask_px: Decimal | None = None
        self.bid_sz = Decimal(0)
        self.ask_sz = Decimal(0)
        self.bid_n = 1
        self.ask_n = 1
        self.oracle_gen = 0
        self.book_gen = 0
        self.frozen_until = -1
        self.funding = 0.0000125
        self.oi = 0.0
        self.ntl_vlm = 0.0
        self.base_vlm = 0.0
        self.prev_day_px = grid.fmt(self.oracle)
        self.bbo = Bbo(None, None)
        self.ctx: Ctx | None = None
        self.book_time = 0


# Internal scheduled actions: (time_ms, seq, kind, market index, data)
_INIT, _ORACLE, _RECENTER, _QUOTE = 0, 1, 2, 3


class MarketModel:
    """The whole dex in virtual time. Not thread-safe; drive it from one task."""

    def __init__(self, seed: int, n_markets: int = 42, params: ModelParams | None = None) -> None:
        self.seed = seed
        self.params = params or ModelParams()
        self.aligned = self.params.aligned
        self._rng = random.Random(seed)
        self._markets = [_Market(spec) for spec in xyz_markets(n_markets)]
        self._by_coin = {m.coin: i for i, m in enumerate(self._markets)}
        self._heap: list[tuple[int, int, int, int, Any]] = []
        self._seq = 0
        self._now = -1
        self._forced: dict[int, _Forced] = {}
        self._day = 0
        self.oracle_updates = 0
        self._push(0, _INIT, -1, None)

    # ------------------------------------------------------------------ public API

    @property
    def specs(self) -> list[MarketSpec]:
        return [m.spec for m in self._markets]

    @property
    def coins(self) -> list[str]:
        return [m.coin for m in self._markets]

    @property
    def now_ms(self) -> int:
        """Virtual time of the last ``advance`` (-1 before the first)."""
        return self._now

    def index(self, coin: str) -> int:
        try:
            return self._by_coin[coin]
        except KeyError:
            raise ValueError(f"unknown coin {coin!r}") from None

    def next_time_ms(self) -> int:
        return self._heap[0][0]

    def advance(self, to_ms: int) -> list[Event]:
        """Run every scheduled action with time <= ``to_ms``; return the events, in order."""
        out: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= to_ms:
            t, _seq, kind, i, data = heapq.heappop(heap)
            if kind == _QUOTE:
                self._quote_tick(self._markets[i], t, out)
            elif kind == _RECENTER:
                gen, oracle = data
                self._recenter(self._markets[i], t, gen, oracle, out)
            elif kind == _ORACLE:
                self._oracle_tick(t, out)
            else:
                self._init(out)
        self._now = max(self._now, to_ms)
        return out

    def bbo(self, coin: str) -> Bbo:
        return self._markets[self.index(coin)].bbo

    def bbo_time_ms(self, coin: str) -> int:
        """Virtual time at which the current bbo of ``coin`` was set."""
        return self._markets[self.index(coin)].book_time

    def ctx(self, coin: str) -> Ctx:
        ctx = self._markets[self.index(coin)].ctx
        if ctx is None:
            raise RuntimeError("model not started: call advance(0) first")
        return ctx

    def mid(self, coin: str) -> str:
        """Mid on the grid when two-sided, else the oracle (used by allMids)."""
        m = self._markets[self.index(coin)]
        if m.bid_px is not None and m.ask_px is not None:
            return grid.fmt(grid.round_price((m.bid_px + m.ask_px) / 2, m.szd))
        return grid.fmt(m.oracle)

    def l2_levels(self, coin: str, depth: int = 10) -> tuple[list[Level], list[Level]]:
        """The book as l2Book levels: the bbo plus deterministic deeper levels (no randomness)."""
        m = self._markets[self.index(coin)]
        step = Decimal(str(max(m.spec.half_spread_bps, 1.0))) * BPS
        bids: list[Level] = []
        asks: list[Level] = []
        if m.bid_px is not None:
            px = m.bid_px
            for k in range(depth):
                if k:
                    nxt = grid.round_price(m.bid_px * (_ONE - step * k), m.szd, "down")
                    px = min(nxt, px - grid.tick_size(px, m.szd))
                    if px <= 0:
                        break
                sz = m.bid_sz if k == 0 else m.bid_sz * (1 + Decimal(k) / 2)
                bids.append(
                    Level(grid.fmt(px), grid.fmt_size(sz, m.szd), m.bid_n if k == 0 else 1 + k % 4)
                )
        if m.ask_px is not None:
            px = m.ask_px
            for k in range(depth):
                if k:
                    nxt = grid.round_price(m.ask_px * (_ONE + step * k), m.szd, "up")
                    px = max(nxt, px + grid.tick_size(px, m.szd))
                sz = m.ask_sz if k == 0 else m.ask_sz * (1 + Decimal(k) / 2)
                asks.append(
                    Level(grid.fmt(px), grid.fmt_size(sz, m.szd), m.ask_n if k == 0 else 1 + k % 4)
                )
        return bids, asks

    def take(
        self, coin: str, is_buy: bool, limit_px: Decimal, max_sz: Decimal, t_ms: int
    ) -> tuple[list[tuple[Decimal, Decimal]], Event | None]:
        """Trade against the book as a taker: walk the asks (``is_buy``) or bids at prices up to
        (down to) ``limit_px`` for at most ``max_sz``. Returns the ``(px, sz)`` taken per level,
        best first, and the new bbo event when the book changed.

        The consumed liquidity stays gone until the market maker re-quotes: a partially taken
        top level keeps its smaller size, an exhausted one is replaced by the next deeper level
        (or the side is left empty when all 20 levels went). No randomness is drawn, so the
        model's random sequence is unchanged.
        """
        m = self._markets[self.index(coin)]
        bids, asks = self.l2_levels(coin, depth=20)
        levels = asks if is_buy else bids
        taken: list[tuple[Decimal, Decimal]] = []
        remaining = max_sz
        left: list[tuple[Decimal, Decimal, int]] = []
        for lvl in levels:
            px = Decimal(lvl.px)
            sz = Decimal(lvl.sz)
            crosses = px <= limit_px if is_buy else px >= limit_px
            if remaining > 0 and crosses:
                q = min(sz, remaining)
                taken.append((px, q))
                remaining -= q
                sz -= q
            if sz > 0:
                left.append((px, sz, lvl.n))
        if not taken:
            return [], None
        top = left[0] if left else None
        if is_buy:
            if top is None:
                m.ask_px = None
            else:
                m.ask_px, m.ask_sz, m.ask_n = top
        elif top is None:
            m.bid_px = None
        else:
            m.bid_px, m.bid_sz, m.bid_n = top
        for px, q in taken:
            m.ntl_vlm += float(px * q)
            m.base_vlm += float(q)
        self._publish_bbo(m, max(t_ms, m.book_time))
        return taken, Event(m.book_time, "bbo", m.coin, m.bbo)

    def spec(self, coin: str) -> MarketSpec:
        return self._markets[self.index(coin)].spec

    def set_aligned(self, aligned: bool) -> None:
        """Switch aligned books on/off from the next oracle update (and book change) on."""
        self.aligned = aligned

    def force_dislocation(
        self, coin: str, side: Literal["buy", "sell"], bps: float, lag_ms: int = 1000
    ) -> None:
        """At the next oracle update move ``coin``'s oracle by ``bps`` while its MM lags.

        ``side="buy"``: the oracle jumps up, leaving the resting ask below it (a buy
        dislocation); ``"sell"``: it drops, leaving the bid above it. The book keeps its prices
        (sizes may change) for ``lag_ms`` virtual ms, then re-centres. Works in aligned mode too.
        """
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        if not 0 < bps <= self.params.max_move_bps:
            raise ValueError(f"bps must be within (0, {self.params.max_move_bps}], got {bps}")
        if lag_ms < 800:
            raise ValueError("lag_ms must be >= 800")
        self._forced[self.index(coin)] = _Forced(bps if side == "buy" else -bps, int(lag_ms))

    # ------------------------------------------------------------------ scheduling

    def _push(self, t: int, kind: int, i: int, data: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, i, data))

    def _next_oracle_interval(self) -> int:
        p = self.params
        dt = p.oracle_interval_ms + self._rng.randint(-p.oracle_jitter_ms, p.oracle_jitter_ms)
        return max(p.oracle_min_interval_ms, dt)

    def _next_quote_interval(self) -> int:
        return self._rng.randint(self.params.quote_min_ms, self.params.quote_max_ms)

    # ------------------------------------------------------------------ actions

    def _init(self, out: list[Event]) -> None:
        rng = self._rng
        for i, m in enumerate(self._markets):
            m.oi = m.spec.oi_cap_usd * rng.uniform(0.05, 0.4) / float(m.oracle)
            m.ntl_vlm = m.spec.oi_cap_usd * rng.uniform(0.02, 0.3)
            m.base_vlm = m.ntl_vlm / float(m.oracle)
            self._set_book(m, m.oracle, 0)
            out.append(Event(0, "bbo", m.coin, m.bbo))
            m.ctx = self._make_ctx(m)
            out.append(Event(0, "ctx", m.coin, m.ctx))
            self._push(self._next_quote_interval(), _QUOTE, i, None)
        self._push(self._next_oracle_interval(), _ORACLE, -1, None)

    def _oracle_tick(self, t: int, out: list[Event]) -> None:
        self.oracle_updates += 1
        aligned = self.aligned
        day = t // self.params.day_ms
        if day != self._day:
            self._day = day
            for m in self._markets:
                m.prev_day_px = grid.fmt(m.oracle)
                m.ntl_vlm = m.base_vlm = 0.0
        for i, m in enumerate(self._markets):
            move = self._draw_move(m)
            lag = self._draw_lag()
            forced = self._forced.pop(i, None)
            if forced is not None:
                move, lag = forced.move_bps, forced.lag_ms
                m.frozen_until = t + lag
            m.prev_move = move
            m.oracle = self._moved(m, move)
            m.oracle_gen += 1
            if aligned and forced is None:
                self._recenter(m, t, m.oracle_gen, m.oracle, out)
            else:
                self._push(t + lag, _RECENTER, i, (m.oracle_gen, m.oracle))
            m.ctx = self._make_ctx(m)
            out.append(Event(t, "ctx", m.coin, m.ctx))
        self._push(t + self._next_oracle_interval(), _ORACLE, -1, None)

    def _recenter(self, m: _Market, t: int, gen: int, oracle: Decimal, out: list[Event]) -> None:
        if gen <= m.book_gen:
            return  # superseded by a newer re-centre
        m.book_gen = gen
        self._set_book(m, oracle, t)
        out.append(Event(t, "bbo", m.coin, m.bbo))

    def _quote_tick(self, m: _Market, t: int, out: list[Event]) -> None:
        rng = self._rng
        p = self.params
        frozen = t < m.frozen_until
        if m.bid_px is None or m.ask_px is None:
            self._restore_sides(m)
        elif not frozen and rng.random() < p.empty_side_prob:
            if rng.random() < 0.5:
                m.bid_px = None
            else:
                m.ask_px = None
        else:
            r = rng.random()
            if r < 0.4:
                m.bid_sz, m.bid_n = self._draw_size(m, m.bid_px)
            elif r < 0.8:
                m.ask_sz, m.ask_n = self._draw_size(m, m.ask_px)
            else:
                m.bid_sz, m.bid_n = self._draw_size(m, m.bid_px)
                m.ask_sz, m.ask_n = self._draw_size(m, m.ask_px)
            if not frozen and rng.random() < p.tick_move_prob:
                self._tick_move(m, rng.random() < 0.5, rng.random() < 0.5)
        if self.aligned and not frozen:
            self._clamp_to_oracle(m)
        self._publish_bbo(m, t)
        out.append(Event(t, "bbo", m.coin, m.bbo))
        self._push(t + self._next_quote_interval(), _QUOTE, self._by_coin[m.coin], None)

    # ------------------------------------------------------------------ helpers

    def _draw_move(self, m: _Market) -> float:
        """Next oracle move in bps: AR(1) with momentum, mean reversion, capped; sometimes 0."""
        p = self.params
        rng = self._rng
        if rng.random() < p.zero_move_prob:
            return 0.0
        innovation = rng.gauss(0.0, m.spec.vol_bps)
        drift = -p.mean_reversion * math.log(float(m.oracle) / m.spec.ref_px) * 1e4
        move = p.momentum * m.prev_move + innovation + drift
        return max(-p.max_move_bps, min(p.max_move_bps, move))

    def _draw_lag(self) -> int:
        p = self.params
        rng = self._rng
        if rng.random() < p.lag_fast_prob:
            lag = rng.uniform(p.lag_fast_min_ms, p.lag_fast_max_ms)
        else:
            lag = min(
                p.lag_cap_ms, p.lag_slow_median_ms * math.exp(p.lag_slow_sigma * rng.gauss(0, 1))
            )
        return max(0, round(lag))

    def _moved(self, m: _Market, move_bps: float) -> Decimal:
        """The oracle moved by ``move_bps``, on the grid, never more than the 1 % venue cap."""
        old = m.oracle
        if move_bps == 0:
            return old
        target = old * (_ONE + Decimal(repr(move_bps)) * BPS)
        new = grid.round_price(target, m.szd)
        cap = Decimal(repr(self.params.max_move_bps)) * BPS
        if abs(new - old) > old * cap:
            new = grid.round_price(target, m.szd, "down" if new > old else "up")
        return new

    def _draw_size(self, m: _Market, px: Decimal | None) -> tuple[Decimal, int]:
        p = self.params
        rng = self._rng
        notional = math.exp(
            rng.uniform(math.log(p.book_notional_min), math.log(p.book_notional_max))
        )
        n = rng.randint(1, 6)
        ref = float(px) if px is not None else float(m.oracle)
        sz = grid.round_size(notional / ref, m.szd)
        lot = Decimal(1).scaleb(-m.szd)
        return (sz if sz >= lot else lot), n

    def _set_book(self, m: _Market, oracle: Decimal, t: int) -> None:
        """Quote a fresh two-sided book around ``oracle`` plus the structural offset."""
        m.center = oracle * (_ONE + Decimal(repr(m.spec.offset_bps)) * BPS)
        self._restore_sides(m, both=True)
        if self.aligned and t >= m.frozen_until:
            self._clamp_to_oracle(m)
        self._publish_bbo(m, t)

    def _restore_sides(self, m: _Market, both: bool = False) -> None:
        hs = Decimal(repr(m.spec.half_spread_bps)) * BPS
        if both or m.bid_px is None:
            m.bid_px = grid.round_price(m.center * (_ONE - hs), m.szd, "down")
            m.bid_sz, m.bid_n = self._draw_size(m, m.bid_px)
        if both or m.ask_px is None:
            m.ask_px = grid.round_price(m.center * (_ONE + hs), m.szd, "up")
            m.ask_sz, m.ask_n = self._draw_size(m, m.ask_px)
        if m.bid_px is not None and m.ask_px is not None and m.ask_px <= m.bid_px:
            m.ask_px = m.bid_px + grid.tick_size(m.bid_px, m.szd)

    def _tick_move(self, m: _Market, bid_side: bool, up: bool) -> None:
        if m.bid_px is None or m.ask_px is None:
            return
        if bid_side:
            tick = grid.tick_size(m.bid_px, m.szd)
            new = m.bid_px + tick if up else m.bid_px - tick
            if 0 < new < m.ask_px:
                m.bid_px = new
        else:
            tick = grid.tick_size(m.ask_px, m.szd)
            new = m.ask_px + tick if up else m.ask_px - tick
            if new > m.bid_px:
                m.ask_px = new

    def _clamp_to_oracle(self, m: _Market) -> None:
        """Aligned mode: never bid above or offer below the published oracle."""
        if m.bid_px is not None and m.bid_px > m.oracle:
            m.bid_px = m.oracle
        if m.ask_px is not None and m.ask_px < m.oracle:
            m.ask_px = m.oracle
        if m.bid_px is not None and m.ask_px is not None and m.ask_px <= m.bid_px:
            m.ask_px = m.bid_px + grid.tick_size(m.bid_px, m.szd)

    def _publish_bbo(self, m: _Market, t: int) -> None:
        bid = (
            Level(grid.fmt(m.bid_px), grid.fmt(m.bid_sz), m.bid_n) if m.bid_px is not None else None
        )
        ask = (
            Level(grid.fmt(m.ask_px), grid.fmt(m.ask_sz), m.ask_n) if m.ask_px is not None else None
        )
        m.bbo = Bbo(bid, ask)
        m.book_time = t

    def _make_ctx(self, m: _Market) -> Ctx:
        rng = self._rng
        oracle = m.oracle
        szd = m.szd
        premium_f = 0.0
        if m.bid_px is not None and m.ask_px is not None:
            mark = sorted((oracle, m.bid_px, m.ask_px))[1]
            mid = grid.round_price((m.bid_px + m.ask_px) / 2, szd)
            impact_hs = Decimal(repr(m.spec.half_spread_bps / 2)) * BPS
            impact: tuple[str, str] | None = (
                grid.fmt_price(m.bid_px * (_ONE - impact_hs), szd, "down"),
                grid.fmt_price(m.ask_px * (_ONE + impact_hs), szd, "up"),
            )
            premium_f = float((mid - oracle) / oracle)
            premium: str | None = grid.fmt(Decimal(repr(premium_f)).quantize(Decimal("1e-8")))
            mid_s: str | None = grid.fmt(mid)
        else:
            mark = oracle
            impact = None
            premium = None
            mid_s = None
        m.funding = 0.9 * m.funding + 0.1 * (0.0000125 + premium_f / 8)
        m.oi = max(0.0, m.oi * (1 + rng.gauss(0, 0.002)))
        traded = rng.uniform(0, m.spec.oi_cap_usd * 2e-5)
        m.ntl_vlm += traded
        m.base_vlm += traded / float(oracle)
        return Ctx(
            funding=grid.fmt(Decimal(repr(m.funding)).quantize(Decimal("1e-10"))),
            openInterest=grid.fmt_size(m.oi, szd),
            prevDayPx=m.prev_day_px,
            dayNtlVlm=grid.fmt(Decimal(repr(m.ntl_vlm)).quantize(Decimal("0.01"))),
            premium=premium,
            oraclePx=grid.fmt(oracle),
            markPx=grid.fmt(mark),
            midPx=mid_s,
            impactPxs=impact,
            dayBaseVlm=grid.fmt_size(m.base_vlm, szd),
        )
