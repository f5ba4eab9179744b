"""The strategy plug-in interface: venue-neutral events in, intents out, injected clock.

A strategy is synchronous, deterministic code: the shell hands it each market event it
subscribed to (:mod:`engine.core.neutral`: :class:`~engine.core.neutral.BookTop`,
:class:`~engine.core.neutral.OracleUpdate`, :class:`~engine.core.neutral.FundingQuote`, …)
with the time it was received, and calls :meth:`Strategy.on_timer` when
:meth:`Strategy.next_timer_ms` comes; each call returns the strategy's intents at that instant
(what it wants done: a dislocation :class:`~engine.core.detector.Signal` to take, a funding
:class:`~engine.strategies.funding_basis.Decision` to open, close or rebalance). Events it does
not use it ignores (no intents). Time is only ever passed in, so the same strategy runs live,
on paper and in replay. The order and position books, breakers, kill switch, journal, paper
venue and reports sit behind the intents and serve every strategy.

A shell on a hot path resolves each instrument once (at discovery) and hands the two market
events over by instrument index instead of as objects: :class:`IndexedStrategy` is that face
(``on_book_top`` / ``on_oracle``, one intent or ``None``); for every event it must give what
:meth:`Strategy.on_event` gives for the same event as an object (tested).

Implementations: :class:`engine.strategies.dislocation.DislocationStrategy` (the HIP-3
stale-liquidity detector: the observe core, :class:`~engine.core.core.ObserveCore`, with the
plug-in's face; what the live, paper, trade and replay Hyperliquid paths run) and
:class:`engine.strategies.funding_basis.FundingBasisStrategy` (delta-neutral funding carry).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar, runtime_checkable

IntentT_co = TypeVar("IntentT_co", covariant=True)


@runtime_checkable
class Strategy(Protocol[IntentT_co]):
    """Events in, intents out, injected clock (see the module docstring)."""

    name: str

    def on_event(self, event: object, now_ms: float) -> Sequence[IntentT_co]:
        """Apply one market event received at ``now_ms``; the intents it gives rise to."""
        ...

    def on_timer(self, now_ms: float) -> Sequence[IntentT_co]:
        """Time has reached ``now_ms`` (at or after :meth:`next_timer_ms`): the intents due."""
        ...

    def next_timer_ms(self) -> float | None:
        """When :meth:`on_timer` should be called next (``None``: no timer needed)."""
        ...


@runtime_checkable
class IndexedStrategy(Strategy[IntentT_co], Protocol[IntentT_co]):
    """A :class:`Strategy` that also takes its two market events by instrument index.

    ``symbols[i]`` is instrument ``i`` (the index the shell resolved once); ``on_book_top`` is
    :class:`~engine.core.neutral.BookTop` and ``on_oracle``
    :class:`~engine.core.neutral.OracleUpdate` without building the object per frame (an empty
    book side: price and size ``None``). Each returns the one intent the event gives rise to, or
    ``None``; the same event through :meth:`Strategy.on_event` gives the same intents.
    """

    symbols: Sequence[str]

    def on_book_top(self, idx: int, ts_ms: int, bid: float | None, bid_size: float | None,
                    ask: float | None, ask_size: float | None,
                    now_ms: float) -> IntentT_co | None:
        """Instrument ``idx``'s best bid and ask at venue time ``ts_ms``, received at ``now_ms``."""
        ...

    def on_oracle(self, idx: int, oracle_px: float, mark_px: float | None,
                  now_ms: float) -> IntentT_co | None:
        """Instrument ``idx``'s oracle (index) and mark price, received at ``now_ms``."""
        ...
