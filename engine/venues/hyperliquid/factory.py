"""Build the Hyperliquid venue's pieces from the config; registered as ``"hyperliquid"`` in
:mod:`engine.venues.registry` (``FACTORY``).

* :meth:`HyperliquidFactory.instruments`: the HIP-3 dex's markets (``perpDexs`` +
  ``meta(dex)``, :func:`~.info.discover`), errors mapped to the neutral
  :class:`~engine.venues.base.InstrumentsRefused` / ``InstrumentsUnreachable``;
* :meth:`HyperliquidFactory.market_data`: the :class:`~.client.HyperliquidFeed` (market data,
  and in trade mode the user streams and posts over the same connection);
* :meth:`HyperliquidFactory.book_store`: the ``l2Book`` store paper fills walk;
* :meth:`HyperliquidFactory.execution`: the :class:`~.execution.OrderExecutor` that signs and
  posts orders over that feed, and :meth:`HyperliquidFactory.dead_man` its
  ``scheduleCancel`` keeper (trade mode).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from engine.config import EngineConfig
from engine.core.types import MarketSpec
from engine.venues.base import (
    FeedOptions,
    InfoRecorder,
    InstrumentsRefused,
    InstrumentsUnreachable,
    MarketDataFeed,
    TradingVenueFactory,
)
from engine.venues.hyperliquid.client import FeedHandler, HyperliquidFeed
from engine.venues.hyperliquid.deadman import DeadManSwitch
from engine.venues.hyperliquid.execution import (
    NotSentHook,
    OrderExecutor,
    ResultHook,
    SentHook,
)
from engine.venues.hyperliquid.info import DiscoveryError, InfoError, discover
from engine.venues.hyperliquid.l2book import L2BookStore
from engine.venues.hyperliquid.nonce import NonceAllocator
from engine.venues.hyperliquid.signing import Signer

log = logging.getLogger("engine.app")  # the start-up line operators know


@attrs.define
class HyperliquidInstruments:
    """:class:`~engine.venues.base.InstrumentProvider` of the configured dex's markets."""

    cfg: EngineConfig
    info_url: str
    record: InfoRecorder | None = None

    async def discover(self) -> list[MarketSpec]:
        v = self.cfg.venue
        try:
            disc = await discover(self.info_url, v.dex, v.markets, v.info_timeout_s,
                                  record=self.record)
        except DiscoveryError as exc:
            key = ("[venue] markets (ENGINE__VENUE__MARKETS)"
                   if v.markets and "market" in str(exc)
                   else "[venue] dex (ENGINE__VENUE__DEX)")
            raise InstrumentsRefused(str(exc), key) from None
        except InfoError as exc:
            raise InstrumentsUnreachable(str(exc)) from None
        log.info("discovered %d markets on dex %r (dex index %d, asset ids %d..%d)",
                 len(disc.markets), disc.dex, disc.dex_index,
                 min(m.asset_id for m in disc.markets), max(m.asset_id for m in disc.markets))
        return disc.markets


class HyperliquidFactory:
    """The Hyperliquid venue (:class:`~engine.venues.base.VenueFactory`)."""

    name = "hyperliquid"
    simulator = "engine.sim.cli:main"  # python -m engine sim (the default venue)

    def instruments(self, cfg: EngineConfig, *, info_url: str | None = None,
                    record: InfoRecorder | None = None) -> HyperliquidInstruments:
        return HyperliquidInstruments(cfg, info_url or cfg.venue.info_url, record)

    def market_data(self, cfg: EngineConfig, symbols: Sequence[str], handler: FeedHandler,
                    options: FeedOptions) -> HyperliquidFeed:
        """The feed for ``symbols`` (coins); ``options.book_store`` an
        :class:`~.l2book.L2BookStore` to subscribe ``l2Book`` into."""
        venue = attrs.evolve(cfg.venue, ws_url=options.ws_url or cfg.venue.ws_url,
                             info_url=options.info_url or cfg.venue.info_url)
        store = options.book_store
        if store is not None and not isinstance(store, L2BookStore):
            raise TypeError(f"book_store must be an L2BookStore, got {type(store).__name__}")
        return HyperliquidFeed(venue, list(symbols), handler, user=options.account,
                               send_first_at_once=options.send_first_at_once,
                               l2book=store is not None, l2book_store=store)

    def execution(self, feed: MarketDataFeed, signer: Signer, nonces: NonceAllocator, *,
                  is_mainnet: bool, post_timeout_s: float, clock: Callable[[], float],
                  on_sent: SentHook, on_result: ResultHook, on_not_sent: NotSentHook,
                  entry_guard: Callable[[], str | None] | None = None) -> OrderExecutor:
        """Trade mode: orders signed by ``signer`` and posted over ``feed`` (a feed this
        factory built)."""
        if not isinstance(feed, HyperliquidFeed):
            raise TypeError("Hyperliquid orders go over a HyperliquidFeed, got "
                            f"{type(feed).__name__}")
        return OrderExecutor(feed, signer, nonces, is_mainnet=is_mainnet,
                             post_timeout_s=post_timeout_s, clock=clock, on_sent=on_sent,
                             on_result=on_result, on_not_sent=on_not_sent,
                             entry_guard=entry_guard)


    def book_store(self, clock: Callable[[], float]) -> L2BookStore:
        """``[paper] walk_l2book``: the ``l2Book`` levels the feed keeps for paper fills."""
        return L2BookStore(clock=clock)

    def dead_man(self, executor: OrderExecutor, dead_man_s: float, *,
                 orders: Callable[[], Iterable[Any]], connected: Callable[[], bool],
                 clock: Callable[[], float]) -> DeadManSwitch:
        """``[trading] dead_man_s``: keeps the venue's ``scheduleCancel`` armed."""
        return DeadManSwitch(executor, dead_man_s, orders=orders, connected=connected,
                             clock=clock)


FACTORY = HyperliquidFactory()

if TYPE_CHECKING:  # mypy proves the factory and its feed implement the shell's interfaces
    _factory: TradingVenueFactory = FACTORY

    def _feed_conforms(feed: HyperliquidFeed) -> MarketDataFeed:
        return feed
