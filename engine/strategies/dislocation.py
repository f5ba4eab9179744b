"""The HIP-3 stale-liquidity (dislocation) detector as a :class:`~engine.strategies.base.Strategy`.

A thin adapter, not a second implementation: each neutral event is handed to the existing
:class:`~engine.core.core.ObserveCore` (gates, detector, sizing), whose signals are the
intents. :class:`~engine.core.neutral.BookTop` → ``on_bbo`` (``ts_ms`` is the venue's book
time; an empty side is ``None``), :class:`~engine.core.neutral.OracleUpdate` → ``on_ctx``; the
quote-lag timers are the core's. Events of another venue or an unknown symbol are ignored. The
adapter adds one dict lookup and a call per event (``bench/bench_strategy.py`` measures it
against calling the core directly).
"""

from __future__ import annotations

from engine.core.core import ObserveCore
from engine.core.detector import Signal
from engine.core.neutral import BookTop, OracleUpdate

_NONE: tuple[Signal, ...] = ()


class DislocationStrategy:
    """Events in (book tops, oracle updates), dislocation signals out, over ``core``."""

    __slots__ = ("core", "venue", "name", "_index")

    def __init__(self, core: ObserveCore, venue: str = "hyperliquid") -> None:
        self.core = core
        self.venue = venue
        self.name = "hip3_dislocation"
        self._index: dict[str, int] = {m.coin: m.index for m in core.markets}

    def on_event(self, event: object, now_ms: float) -> tuple[Signal, ...]:
        if type(event) is BookTop:
            idx = self._index.get(event.symbol)
            if idx is None or event.venue != self.venue:
                return _NONE
            bid, ask = event.bid, event.ask
            sig = self.core.on_bbo(idx, event.ts_ms, bid, None if bid is None else event.bid_size,
                                   ask, None if ask is None else event.ask_size, now_ms)
        elif type(event) is OracleUpdate:
            idx = self._index.get(event.symbol)
            if idx is None or event.venue != self.venue:
                return _NONE
            sig = self.core.on_ctx(idx, event.oracle_px, event.mark_px, now_ms)
        else:
            return _NONE
        return _NONE if sig is None else (sig,)

    def on_timer(self, now_ms: float) -> list[Signal]:
        return self.core.on_timer(now_ms)

    def next_timer_ms(self) -> float | None:
        return self.core.next_timer_ms()
