"""The Bybit factory: testnet/mainnet URLs with overrides, mainnet refused without
allow_live, keys only from the environment/credentials, a working venue over loopback."""

from __future__ import annotations

import time
from decimal import Decimal

import attrs
import pytest
import trio

from engine.config import BybitConfig
from engine.core.neutral import AmendOrder, InstrumentKind, OrderAck, PlaceOrder, Side
from engine.secrets import SecretsError
from engine.sim.bybit.exchange import Exchange
from engine.sim.bybit.server import BybitSimServer
from engine.venues.bybit import urls
from engine.venues.bybit.execution import new_order_link_id
from engine.venues.bybit.factory import LiveNotAllowed, build_venue, resolve_urls


def test_urls_per_environment() -> None:
    assert resolve_urls(BybitConfig()) == urls.TESTNET
    assert resolve_urls(BybitConfig(environment="mainnet", allow_live=True)) == urls.MAINNET
    cfg = attrs.evolve(BybitConfig(), rest_url="http://127.0.0.1:1")
    assert resolve_urls(cfg).rest == "http://127.0.0.1:1"
    assert resolve_urls(cfg).ws_private == urls.TESTNET.ws_private
    unsafe = BybitConfig(environment="mainnet", allow_live=True)
    object.__setattr__(unsafe, "allow_live", False)  # past the load-time check: factory checks too
    with pytest.raises(LiveNotAllowed):
        resolve_urls(unsafe)
    with pytest.raises(ValueError):
        urls.for_environment("prod")


def test_keys_are_required_for_trading() -> None:
    with pytest.raises(SecretsError):
        build_venue(BybitConfig(), time.time, env={})
    v = build_venue(BybitConfig(), time.time, need_keys=False, env={})
    assert v.credentials is None


async def test_venue_over_loopback_amends_an_order(nursery: trio.Nursery) -> None:
    ex = Exchange(seed=2, now_ms=int(time.time() * 1000))
    ex.add_account("fk", "fs")
    base = await nursery.start(BybitSimServer(ex).serve)
    loc = urls.local(base)
    cfg = BybitConfig(rest_url=loc.rest, ws_public_linear_url=loc.ws_public_linear,
                      ws_public_spot_url=loc.ws_public_spot, ws_private_url=loc.ws_private)
    v = build_venue(cfg, lambda: time.time() * 1000,
                    env={"BYBIT_API_KEY": "fk", "BYBIT_API_SECRET": "fs"})
    await v.rest.sync_time()
    link = new_order_link_id("a")
    ack = await v.execution.place(PlaceOrder("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP,
                                             Side.BUY, Decimal("0.010"), link,
                                             price=Decimal("1000.0")))
    assert isinstance(ack, OrderAck)
    amended = await v.execution.amend(AmendOrder("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP,
                                                 link, price=Decimal("1001.5")))
    assert isinstance(amended, OrderAck)
    (o,) = ex.accounts["fk"].orders.values()
    assert o.price == 1001.5 and o.link_id == link
    got: list[object] = []
    st = v.stream("linear", ["tickers.BTCUSDT"], got.append)
    nursery.start_soon(st.run)
    with trio.fail_after(5):
        while not got:  # noqa: ASYNC110 - waiting for the stream task
            await trio.sleep(0.02)
