"""Fee rates from the venue (``/v5/account/fee-rate``): the parser on Bybit's documented
answer shape and on malformed ones, the simulator's HMAC-checked endpoint over loopback
(ephemeral port), and ``[bybit] fee_source`` validation."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from engine.config import ConfigError, load_config
from engine.sim.bybit.exchange import Exchange
from engine.sim.bybit.server import BybitSimServer
from engine.venues.bybit.codec import BybitApiError, CodecError, parse_fee_rates
from engine.venues.bybit.http import HttpClient
from engine.venues.bybit.rest import BybitRest
from engine.venues.bybit.signing import BybitCredentials

KEY, SECRET = "fee-key", "fee-secret"

# the shape of Bybit's documented example answer (result of GET /v5/account/fee-rate)
DOCS_RESULT = {"list": [{"symbol": "ETHUSDT", "takerFeeRate": "0.0006",
                         "makerFeeRate": "0.0001"},
                        {"symbol": "BTCUSDT", "baseCoin": "BTC", "takerFeeRate": "0.00055",
                         "makerFeeRate": "-0.00025"}]}


def test_parser_reads_the_documented_shape_as_exact_decimals() -> None:
    got = parse_fee_rates(DOCS_RESULT)
    assert got == {"ETHUSDT": (Decimal("0.0006"), Decimal("0.0001")),
                   "BTCUSDT": (Decimal("0.00055"), Decimal("-0.00025"))}


@pytest.mark.parametrize("result,needle", [
    ({}, "field 'list'"),
    ({"list": "x"}, "field 'list'"),
    ({"list": [5]}, "list[0]: not an object"),
    ({"list": [{"takerFeeRate": "0.001", "makerFeeRate": "0.001"}]}, "field 'symbol'"),
    ({"list": [{"symbol": "BTCUSDT", "makerFeeRate": "0.001"}]}, "'takerFeeRate'"),
    ({"list": [{"symbol": "BTCUSDT", "takerFeeRate": "abc", "makerFeeRate": "0"}]},
     "'takerFeeRate' is not a decimal"),
    ({"list": [{"symbol": "BTCUSDT", "takerFeeRate": "0.001", "makerFeeRate": "NaN"}]},
     "'makerFeeRate'"),
    ({"list": [{"symbol": "BTCUSDT", "takerFeeRate": "2", "makerFeeRate": "0"}]},
     "out of range"),
])
def test_malformed_answers_name_the_field(result: dict, needle: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(CodecError) as e:
        parse_fee_rates(result)
    assert needle in str(e.value)


async def test_sim_serves_its_rates_signed_and_rejects_a_bad_signature() -> None:
    ex = Exchange(now_ms=int(time.time() * 1000), taker_fee=0.0004, maker_fee=0.0001,
                  spot_fee=0.0008)
    ex.add_account(KEY, SECRET)
    ex.symbol_fees[("linear", "ETHUSDT")] = (0.0003, 0.0)
    server = BybitSimServer(ex, port=0)
    async with trio.open_nursery() as nursery:
        base = await nursery.start(server.serve)

        def rest(secret: str) -> BybitRest:
            return BybitRest(HttpClient(base, timeout_s=5.0), lambda: time.time() * 1000,
                             BybitCredentials(KEY, secret), backoff_base_s=0.01)

        good = rest(SECRET)
        linear = await good.fee_rates("linear")
        assert linear["BTCUSDT"] == (Decimal("0.0004"), Decimal("0.0001"))
        assert linear["ETHUSDT"] == (Decimal("0.0003"), Decimal("0"))
        assert await good.fee_rates("spot", "BTCUSDT") == {
            "BTCUSDT": (Decimal("0.0008"), Decimal("0.0008"))}
        # the rates answered are the rates charged
        assert ex.fee_rates("linear", "ETHUSDT") == (0.0003, 0.0)
        before = server.auth_failures
        with pytest.raises(BybitApiError) as e:
            await rest("wrong-secret").fee_rates("linear")
        assert e.value.ret_code == 10004 and server.auth_failures == before + 1
        with pytest.raises(BybitApiError):  # no keys: refused before sending
            await BybitRest(HttpClient(base), lambda: time.time() * 1000).fee_rates("spot")
        with pytest.raises(ValueError, match="category"):
            await good.fee_rates("inverse")
        nursery.cancel_scope.cancel()


def test_fee_source_config_key(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[bybit]\n")
    c = load_config(p, env={})
    assert c.bybit is not None and c.bybit.fee_source == "venue"
    p.write_text('[bybit]\nfee_source = "config"\n')
    c = load_config(p, env={})
    assert c.bybit is not None and c.bybit.fee_source == "config"
    p.write_text('[bybit]\nfee_source = "exchange"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert "fee_source must be one of venue, config" in str(e.value)
