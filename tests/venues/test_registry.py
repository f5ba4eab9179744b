"""The venue registry and the neutral interfaces (engine/venues/base.py, registry.py): every
venue registers a factory under its name, the neutral modules import no venue, the shell's
missing parts are refused with one line, and the Bybit factory's instrument provider works
over loopback against the Bybit simulator."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import trio

from engine.config import BybitConfig, EngineConfig, FundingConfig
from engine.core.neutral import InstrumentKind
from engine.sim.bybit.exchange import Exchange
from engine.sim.bybit.server import BybitSimServer
from engine.venues import registry
from engine.venues.bybit import urls
from engine.venues.hyperliquid.client import HyperliquidFeed
from engine.venues.hyperliquid.l2book import L2BookStore


def test_both_venues_are_registered_under_their_names() -> None:
    assert {"hyperliquid", "bybit"} <= set(registry.names())
    for name in ("hyperliquid", "bybit"):
        assert registry.factory(name).name == name
    assert registry.trading_factory("hyperliquid").name == "hyperliquid"


def test_unknown_and_unsupported_venues_are_one_line_errors() -> None:
    with pytest.raises(registry.UnknownVenue, match="unknown venue 'kraken'; known: .*bybit"):
        registry.factory("kraken")
    # Bybit has three streams, not the shell's one feed yet: said so, naming what is missing
    with pytest.raises(registry.VenueNotSupported, match="'bybit'.*market_data"):
        registry.shell_factory("bybit")


def test_neutral_modules_import_no_venue() -> None:
    code = ("import sys, engine.venues.base, engine.venues.registry; "
            "print(sorted(m for m in sys.modules if m.startswith(('engine.venues.hyperliquid', "
            "'engine.venues.bybit', 'engine.venues.paper', 'engine.sim'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_hyperliquid_factory_builds_the_feed_the_shell_asked_for() -> None:
    from engine.venues.base import FeedOptions

    f = registry.trading_factory("hyperliquid")
    cfg = EngineConfig()
    store = f.book_store(lambda: 0.0)
    assert isinstance(store, L2BookStore)
    feed = f.market_data(cfg, ["xyz:GOLD", "xyz:SILVER"], object(),
                         FeedOptions(ws_url="ws://127.0.0.1:9/ws", book_store=store,
                                     send_first_at_once=False))
    assert isinstance(feed, HyperliquidFeed)
    assert feed.cfg.ws_url == "ws://127.0.0.1:9/ws" and feed.l2book is store
    assert feed.send_first_at_once is False and feed.user is None
    assert ("l2Book", "xyz:GOLD") in feed.subs.keys
    with pytest.raises(TypeError, match="L2BookStore"):
        f.market_data(cfg, ["xyz:GOLD"], object(), FeedOptions(book_store={}))


async def test_bybit_instruments_over_loopback(nursery: trio.Nursery) -> None:
    ex = Exchange(seed=3, now_ms=int(time.time() * 1000))
    base = await nursery.start(BybitSimServer(ex).serve)
    loc = urls.local(base)
    cfg = EngineConfig(bybit=BybitConfig(rest_url=loc.rest),
                       funding=FundingConfig(symbols=["BTCUSDT"]))
    provider = registry.factory("bybit").instruments(cfg)
    with trio.fail_after(10):
        got = await provider.discover()
    kinds = {(i.symbol, i.kind) for i in got}
    assert kinds == {("BTCUSDT", InstrumentKind.SPOT), ("BTCUSDT", InstrumentKind.LINEAR_PERP)}
    perp = next(i for i in got if i.kind is InstrumentKind.LINEAR_PERP)
    assert perp.venue == "bybit" and perp.funding_interval_ms > 0


def test_each_venue_names_its_simulator() -> None:
    from engine.sim import cli as hl_sim
    from engine.sim.bybit import cli as bybit_sim

    assert registry.simulator_main("hyperliquid") is hl_sim.main
    assert registry.simulator_main("bybit") is bybit_sim.main
