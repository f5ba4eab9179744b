"""The router's per-frame fast path (``FrameRouter.dispatcher``) against the decoder's full path.

The dispatcher decodes bbo and activeAssetCtx frames with ``WireDecoder.raw_decode`` and calls
the handler from the message's fields; every other frame goes through ``WireDecoder.decode``.
The oracle here is what the dispatcher did before: ``WireDecoder.decode(text)`` for every frame,
then a bbo/ctx event of a subscribed coin to the handler and one of another coin counted as
``unexpected_coin``. Over arbitrary frames (valid, empty, zero, negative, non-finite and
non-numeric sides and prices, unsubscribed coins, other channels, broken JSON, plain text) the
handler must get the same calls with bit-identical values, and every counter must agree.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.config import VenueConfig
from engine.venues.hyperliquid.client import HyperliquidFeed
from engine.venues.hyperliquid.wire import BboEvent, CtxEvent, WireDecoder

from .conftest import Recorder

COINS = ["xyz:SILVER", "xyz:GOLD"]
OTHER_COIN = "xyz:CL"  # not subscribed: counted as unexpected, never handled

_special = st.sampled_from(["0", "-1", "-0.0", "1e400", "-1e400", "nan", "inf", "abc", "",
                            "1e-320", "0.0000001"])
_num = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),  # decimal strings
    st.floats(min_value=1e-9, max_value=1e9).map(repr),  # mostly valid values
    _special,
    st.floats(allow_nan=True, allow_infinity=True),  # JSON numbers (NaN/Infinity: broken JSON)
    st.integers(min_value=-5, max_value=10**20),
    st.none(),
)
_side = st.one_of(
    st.none(),
    st.fixed_dictionaries({"px": _num, "sz": _num, "n": st.integers(0, 9)}),
    st.fixed_dictionaries({"px": _num}),  # a field missing: malformed
)
_coin = st.sampled_from([*COINS, OTHER_COIN])


def _bbo(coin: str, time: Any, bid: Any, ask: Any) -> str:
    return json.dumps({"channel": "bbo", "data": {"coin": coin, "time": time, "bbo": [bid, ask]}})


def _ctx(coin: str, ctx: dict[str, Any]) -> str:
    return json.dumps({"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": ctx}})


_ctx_fields = st.fixed_dictionaries(
    {"oraclePx": _num}, optional={"markPx": _num, "funding": _num, "midPx": _num})

_frame = st.one_of(
    st.builds(_bbo, _coin, st.one_of(st.integers(0, 2**53), st.just("x")), _side, _side),
    st.builds(_ctx, _coin, _ctx_fields),
    st.builds(_ctx, _coin, st.just({})),  # no oraclePx: malformed
    st.sampled_from([
        '{"channel":"pong"}',
        '{"channel":"trades","data":[]}',
        '{"channel":"bbo","data":{"coin":"xyz:GOLD"',  # truncated
        "Websocket connection established.",
        "not json at all",
        '{"channel":"error","data":"Invalid subscription"}',
        "[1, 2]",
    ]),
)


def _bits(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """Each float as its IEEE-754 bits (so -0.0 and 0.0, or two NaNs, are told apart)."""
    return tuple(struct.pack("<d", v) if isinstance(v, float) else v for v in values)


def _reference(texts: list[str]) -> tuple[list[Any], list[Any], int, Any]:
    """The previous dispatcher: decode() then route (no fast path)."""
    dec = WireDecoder()
    bbo: list[Any] = []
    ctx: list[Any] = []
    unexpected = 0
    for text in texts:
        ev = dec.decode(text)
        if type(ev) is BboEvent:
            if ev.coin in COINS:
                bbo.append((ev.coin, ev.time_ms, ev.bid_px, ev.bid_sz, ev.ask_px, ev.ask_sz))
            else:
                unexpected += 1
        elif type(ev) is CtxEvent:
            if ev.coin in COINS:
                ctx.append((ev.coin, ev.oracle_px, ev.mark_px))
            else:
                unexpected += 1
    return bbo, ctx, unexpected, dec.stats


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frame, min_size=1, max_size=30))
@example([_bbo("xyz:GOLD", 1, {"px": p, "sz": "1", "n": 1}, {"px": "2", "sz": "1", "n": 1})
          for p in ("0", "-0.0", "1e400", "1e-320")]
         + [_bbo("xyz:GOLD", 1, {"px": "1", "sz": "1", "n": 1}, {"px": "2", "sz": z, "n": 1})
            for z in ("0", "-1", "1e400")]
         + [_ctx("xyz:GOLD", {"oraclePx": o, "markPx": k})
            for o, k in (("0", "1"), ("1e400", "1"), ("1", "0"), ("1", "1e400"), ("1", None))])
def test_fast_dispatch_gives_the_decoders_events_and_counters(texts: list[str]) -> None:
    rec = Recorder()
    feed = HyperliquidFeed(VenueConfig(), COINS, rec)
    feed.replay_connected("replay", 0.0)
    feed.replay_batch(texts, 1.0)  # the live reader's per-frame dispatch (router.dispatcher)
    bbo, ctx, unexpected, ref = _reference(texts)
    assert [_bits(c) for c in rec.bbo] == [_bits(c) for c in bbo]
    assert [_bits(c) for c in rec.ctx] == [_bits(c) for c in ctx]
    got = feed.stats
    assert got.unexpected_coin == unexpected
    for name in ("frames_total", "frames_by_channel", "malformed", "non_json",
                 "unknown_channel"):
        assert getattr(got, name) == getattr(ref, name), name


def test_the_fast_path_takes_valid_frames_and_the_full_path_the_rest() -> None:
    """Fails if the fast path rejects what it should take (or takes what it must not): the
    frames it takes never reach ``decode``."""
    calls: list[str | bytes] = []

    class Counting(WireDecoder):
        def decode(self, text: str | bytes) -> Any:
            calls.append(text)
            return super().decode(text)

    rec = Recorder()
    feed = HyperliquidFeed(VenueConfig(), COINS, rec)
    feed.router._decoder = Counting(feed.stats)
    feed.replay_connected("replay", 0.0)
    valid_bbo = _bbo("xyz:GOLD", 5, {"px": "1.5", "sz": "2", "n": 1},
                     {"px": "1.6", "sz": "3", "n": 1})
    valid_ctx = _ctx("xyz:GOLD", {"oraclePx": "1.55", "markPx": "1.56"})
    no_mark = _ctx("xyz:SILVER", {"oraclePx": "1.55"})
    empty_side = _bbo("xyz:GOLD", 6, None, {"px": "1.6", "sz": "3", "n": 1})
    zero_mark = _ctx("xyz:GOLD", {"oraclePx": "1.55", "markPx": "0"})
    zero_bid = _bbo("xyz:GOLD", 7, {"px": "0", "sz": "2", "n": 1},
                    {"px": "1.6", "sz": "3", "n": 1})
    feed.replay_batch([valid_bbo, valid_ctx, no_mark, empty_side, zero_mark, zero_bid], 1.0)
    assert calls == [empty_side, zero_mark, zero_bid]
    assert rec.bbo == [("xyz:GOLD", 5, 1.5, 2.0, 1.6, 3.0), ("xyz:GOLD", 6, None, None, 1.6, 3.0),
                       ("xyz:GOLD", 7, None, None, 1.6, 3.0)]
    assert rec.ctx == [("xyz:GOLD", 1.55, 1.56), ("xyz:SILVER", 1.55, None),
                       ("xyz:GOLD", 1.55, None)]
    assert feed.stats.frames_total == 6
