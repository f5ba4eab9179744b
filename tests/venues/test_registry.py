"""The venue registry and the neutral interfaces (engine/venues/base.py, registry.py): every
venue registers a factory under its name, the neutral modules import no venue, the shell's
missing parts are refused with one line, and the Bybit factory's instrument provider works
over loopback against the Bybit simulator."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

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
    # Bybit is a shell venue (its three sockets as one feed) and an account venue; the
    # Hyperliquid factory builds no account object: said so, naming what is missing
    assert registry.shell_factory("bybit").name == "bybit"
    assert registry.account_factory("bybit").name == "bybit"
    with pytest.raises(registry.VenueNotSupported, match="'hyperliquid'.*build"):
        registry.account_factory("hyperliquid")
    with pytest.raises(registry.VenueNotSupported, match="'bybit'.*book_store"):
        registry.trading_factory("bybit")


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


async def test_bybit_instruments_record_their_answers_and_refuse_unlisted_symbols(
        nursery: trio.Nursery) -> None:
    from engine.venues.base import InstrumentsRefused
    from engine.venues.bybit.factory import instruments_from_info

    ex = Exchange(seed=3, now_ms=int(time.time() * 1000))
    base = await nursery.start(BybitSimServer(ex).serve)
    cfg = EngineConfig(bybit=BybitConfig(rest_url=urls.local(base).rest),
                       funding=FundingConfig(symbols=["BTCUSDT"]))
    answers: list[tuple[object, object]] = []
    got = await registry.factory("bybit").instruments(
        cfg, record=lambda q, a: answers.append((q, a))).discover()
    assert [q for q, _ in answers] == [
        {"path": "/v5/market/instruments-info", "category": c, "symbol": "BTCUSDT"}
        for c in ("spot", "linear")]
    spot, perp = instruments_from_info(answers)  # what replay rebuilds from a recording
    assert [*spot.values(), *perp.values()] == got
    bad = EngineConfig(bybit=cfg.bybit, funding=FundingConfig(symbols=["BTCUSDT", "NOPEUSDT"]))
    with pytest.raises(InstrumentsRefused, match="NOPEUSDT not listed") as info:
        await registry.factory("bybit").instruments(bad).discover()
    assert info.value.config_key == "funding.symbols"


async def test_bybit_shell_feed_over_loopback_records_tagged_frames_and_replays_them(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    """shell_factory("bybit").market_data: the spot and linear sockets as one feed against
    the Bybit simulator; events to the handler, frames counted and recorded with their
    socket; the recorded payloads through replay_batch give the same events."""
    from engine.core.neutral import BookTop, FundingQuote
    from engine.io.frames import K_IN_ON, FrameRecorder, iter_records
    from engine.venues.base import FeedOptions

    ex = Exchange(seed=4, now_ms=int(time.time() * 1000))
    server = BybitSimServer(ex, tick_s=0.05)
    base = await nursery.start(server.serve)
    loc = urls.local(base)
    cfg = EngineConfig(bybit=BybitConfig(rest_url=loc.rest,
                                         ws_public_linear_url=loc.ws_public_linear,
                                         ws_public_spot_url=loc.ws_public_spot,
                                         ws_private_url=loc.ws_private))
    live: list[object] = []
    feed = registry.shell_factory("bybit").market_data(cfg, ["BTCUSDT"], live.append,
                                                        FeedOptions())
    assert list(feed.streams) == ["spot", "linear"]  # no account: no private socket
    rec = FrameRecorder(tmp_path, header={"venue": "bybit"})
    feed.recorder = rec
    with trio.fail_after(10):
        await nursery.start(feed.run)
        assert feed.connected
        while not ({type(e) for e in live} >= {FundingQuote, BookTop}  # noqa: ASYNC110
                   and len(live) >= 20):
            await trio.sleep(0.02)
    nursery.cancel_scope.cancel()
    kinds = {(type(e).__name__, getattr(e, "kind", None)) for e in live}
    assert ("BookTop", InstrumentKind.SPOT) in kinds
    assert ("BookTop", InstrumentKind.LINEAR_PERP) in kinds
    assert feed.stats.frames_total == sum(feed.stats.frames_by_channel.values()) > 0
    assert set(feed.stats.frames_by_channel) == {"spot", "linear"}
    n = len(live)  # what had arrived when the recording was closed
    rec.close()
    payloads = [r.payload.decode() for r in iter_records(tmp_path) if r.kind == K_IN_ON]
    again: list[object] = []
    offline = registry.shell_factory("bybit").market_data(cfg, ["BTCUSDT"], again.append,
                                                           FeedOptions())
    offline.replay_connected("replay", 0.0)
    assert offline.connected
    offline.replay_batch(payloads, 0.0)
    assert again[:n] == live[:n] and len(again) >= n
    # replay_reads (the driver's runs of reads): the same events, before() once per read with
    # its receive time, and the frame count returned
    runs: list[object] = []
    by_reads = registry.shell_factory("bybit").market_data(cfg, ["BTCUSDT"], runs.append,
                                                            FeedOptions())
    by_reads.replay_connected("replay", 0.0)
    items = [("i", None, (k + 1) * 1_000_000, [p]) for k, p in enumerate(payloads)]
    befores: list[float] = []
    assert by_reads.replay_reads(items, 0, len(items), befores.append) == len(payloads)
    assert runs == again and befores == [float(k + 1) for k in range(len(items))]
