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

Implementations: :class:`engine.strategies.dislocation.DislocationStrategy` (the HIP-3
stale-liquidity detector, a thin adapter over :class:`~engine.core.core.ObserveCore`) and
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
