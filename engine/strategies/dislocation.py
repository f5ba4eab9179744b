"""The HIP-3 stale-liquidity (dislocation) detector as a strategy plug-in.

:class:`DislocationStrategy` *is* the observe core (:class:`~engine.core.core.ObserveCore`:
market state, gates, detector, sizing) with the plug-in's face, so there is one implementation
and the hot path pays nothing for the interface:

- :class:`~engine.strategies.base.IndexedStrategy` — ``on_book_top`` is the core's ``on_bbo``
  and ``on_oracle`` its ``on_ctx`` (the same functions, not wrappers); this is what the live
  Hyperliquid shells call per frame (``CoreHandler`` in observe, ``TradingCore`` in paper and
  trade) and what replay runs;
- :class:`~engine.strategies.base.Strategy` — ``on_event`` takes the neutral objects
  (:class:`~engine.core.neutral.BookTop` → ``on_book_top``, ``ts_ms`` the venue's book time,
  an empty side ``None``; :class:`~engine.core.neutral.OracleUpdate` → ``on_oracle``); events
  of another venue or an unknown symbol are ignored. It costs one dict lookup and a call per
  event (``bench/bench_strategy.py`` measures both faces against the core's own methods);
- ``on_timer`` / ``next_timer_ms`` are the core's quote-lag windows.

Its intents are :class:`~engine.core.detector.Signal` s, which
:class:`~engine.core.trading.TradingCore` takes (paper, trade) and the observe shell records.
"""

from __future__ import annotations

from engine.config import DetectorConfig, EngineConfig, GatesConfig, SizingConfig
from engine.core.core import ObserveCore
from engine.core.detector import Signal
from engine.core.neutral import BookTop, OracleUpdate
from engine.core.types import MarketSpec

_NONE: tuple[Signal, ...] = ()

NAME = "hip3_dislocation"


class DislocationStrategy(ObserveCore):
    """Book tops and oracle updates in, dislocation signals out (see the module docstring)."""

    name = NAME

    def __init__(self, markets: list[MarketSpec], gates: GatesConfig, detector: DetectorConfig,
                 sizing: SizingConfig, followup_offsets_ms: list[int], *,
                 mode: str = "observe", boot_id: str | None = None,
                 venue: str = "hyperliquid") -> None:
        super().__init__(markets, gates, detector, sizing, followup_offsets_ms, mode=mode,
                         boot_id=boot_id)
        self.venue = venue
        self.symbols: tuple[str, ...] = tuple(m.coin for m in self.markets)
        self._index: dict[str, int] = {c: i for i, c in enumerate(self.symbols)}

    @classmethod
    def from_config(cls, markets: list[MarketSpec], cfg: EngineConfig, *,
                    boot_id: str | None = None, venue: str = "hyperliquid"
                    ) -> DislocationStrategy:
        """The strategy a shell of ``cfg.mode`` runs over ``markets`` (``[gates]``,
        ``[detector]``, ``[sizing]``, the followup offsets its signals carry)."""
        return cls(markets, cfg.gates, cfg.detector, cfg.sizing, cfg.followups.offsets_ms,
                   mode=cfg.mode, boot_id=boot_id, venue=venue)

    # the indexed face: the core's own methods
    on_book_top = ObserveCore.on_bbo
    on_oracle = ObserveCore.on_ctx

    def instrument_index(self, symbol: str) -> int | None:
        """The index of ``symbol`` (``None``: not one of this strategy's instruments)."""
        return self._index.get(symbol)

    def on_event(self, event: object, now_ms: float) -> tuple[Signal, ...]:
        if type(event) is BookTop:
            idx = self._index.get(event.symbol)
            if idx is None or event.venue != self.venue:
                return _NONE
            bid, ask = event.bid, event.ask
            sig = self.on_bbo(idx, event.ts_ms, bid, None if bid is None else event.bid_size,
                              ask, None if ask is None else event.ask_size, now_ms)
        elif type(event) is OracleUpdate:
            idx = self._index.get(event.symbol)
            if idx is None or event.venue != self.venue:
                return _NONE
            sig = self.on_ctx(idx, event.oracle_px, event.mark_px, now_ms)
        else:
            return _NONE
        return _NONE if sig is None else (sig,)
