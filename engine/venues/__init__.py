"""Venue adapters (wire codecs, connections, discovery, execution), one package per venue.

:mod:`engine.venues.base` holds the venue-neutral interfaces the shell drives
(``MarketDataFeed``, ``ExecutionBackend``, ``InstrumentProvider``, ``BatchContext``) and
:mod:`engine.venues.registry` maps a venue name to its factory. :mod:`engine.venues.paper` is
the paper execution backend (fills against the recorded book, any venue).
"""
