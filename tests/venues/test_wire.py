"""Wire codec: decode of the exact doc shapes (docs/reference/hyperliquid-protocol.md §2–§4), skipping and encoders."""

from __future__ import annotations

import json
import logging

import attrs
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.net.ratelog import RateLimitedLog, excerpt
from engine.venues.hyperliquid.wire import (
    PONG,
    BboEvent,
    CtxEvent,
    ErrorEvent,
    PostEvent,
    SubAckEvent,
    WireDecoder,
    encode_ping,
    encode_post,
    encode_subscribe,
    encode_unsubscribe,
    subscription,
)

# verbatim from docs/reference/hyperliquid-protocol.md
DOC_BBO = (
    '{"channel":"bbo","data":{"coin":"xyz:SILVER","time":1769594065851,'
    '"bbo":[{"px":"112.88","sz":"3.1","n":2},{"px":"112.95","sz":"0.8","n":1}]}}'
)
DOC_CTX = (
    '{"channel":"activeAssetCtx","data":{"coin":"xyz:SILVER","ctx":{'
    '"funding":"0.0000125","openInterest":"1234.5","prevDayPx":"110.1","dayNtlVlm":"2500000.0",'
    '"premium":"0.0003","oraclePx":"112.90","markPx":"112.91","midPx":"112.915",'
    '"impactPxs":["112.85","112.99"],"dayBaseVlm":"22000.0"}}}'
)
DOC_ACK = (
    '{"channel":"subscriptionResponse","data":{"method":"subscribe",'
    '"subscription":{"type":"trades","coin":"SOL"}}}'
)
DOC_POST_INFO = (
    '{"channel":"post","data":{"id":7,"response":{"type":"info","payload":{"type":"l2Book",'
    '"data":{"coin":"ETH","time":1700000000000,"levels":[[{"px":"3007.1","sz":"2.7954","n":1}],'
    '[{"px":"3040.1","sz":"3.9499","n":1}]]}}}}}'
)
DOC_POST_ACTION = (
    '{"channel":"post","data":{"id":8,"response":{"type":"action","payload":{"status":"ok",'
    '"response":{"type":"order","data":{"statuses":[{"filled":{"totalSz":"0.2","avgPx":"104.63",'
    '"oid":302228651101}}]}}}}}}'
)
DOC_POST_ACTION_ERR = (
    '{"channel":"post","data":{"id":9,"response":{"type":"action","payload":{"status":"err",'
    '"response":"L1 error: User or API Wallet 0xcd9de27135a4e0826525509178e97d592f24ef5a does '
    'not exist."}}}}'
)
DOC_POST_ERROR = (
    '{"channel":"post","data":{"id":10,"response":{"type":"error",'
    '"payload":"<string mirroring the HTTP status and description>"}}}'
)


@pytest.fixture
def dec() -> WireDecoder:
    return WireDecoder()


def bbo(bid: object, ask: object) -> str:
    return json.dumps(
        {"channel": "bbo", "data": {"coin": "xyz:GOLD", "time": 1, "bbo": [bid, ask]}}
    )


def ctx(**fields: object) -> str:
    return json.dumps({"channel": "activeAssetCtx", "data": {"coin": "xyz:GOLD", "ctx": fields}})


def test_doc_bbo(dec: WireDecoder) -> None:
    assert dec.decode(DOC_BBO) == BboEvent("xyz:SILVER", 1769594065851, 112.88, 3.1, 112.95, 0.8)
    assert dec.decode(DOC_BBO.encode()) == dec.decode(DOC_BBO)  # bytes accepted too
    assert dec.stats.frames_by_channel["bbo"] == 3 and dec.stats.frames_total == 3


def test_bbo_null_and_nonpositive_sides_are_none_never_zero(dec: WireDecoder) -> None:
    lv = {"px": "2000.5", "sz": "0.25", "n": 3}
    assert dec.decode(bbo(None, lv)) == BboEvent("xyz:GOLD", 1, None, None, 2000.5, 0.25)
    assert dec.decode(bbo(lv, None)) == BboEvent("xyz:GOLD", 1, 2000.5, 0.25, None, None)
    assert dec.decode(bbo(None, None)) == BboEvent("xyz:GOLD", 1, None, None, None, None)
    zero_px = {"px": "0", "sz": "1", "n": 1}
    zero_sz = {"px": "5", "sz": "0.0", "n": 1}
    neg = {"px": "-1", "sz": "1", "n": 1}
    assert dec.decode(bbo(zero_px, zero_sz)) == BboEvent("xyz:GOLD", 1, None, None, None, None)
    assert dec.decode(bbo(neg, lv)) == BboEvent("xyz:GOLD", 1, None, None, 2000.5, 0.25)
    assert dec.stats.malformed == 0


@pytest.mark.parametrize(
    "text",
    [
        bbo({"px": "NaN", "sz": "1", "n": 1}, None),
        bbo(None, {"px": "1", "sz": "inf", "n": 1}),
        bbo({"px": "abc", "sz": "1", "n": 1}, None),
        bbo({"px": "1e400", "sz": "1", "n": 1}, None),
        bbo({"sz": "1", "n": 1}, None),
        json.dumps({"channel": "bbo", "data": {"coin": "x", "time": 1, "bbo": [None]}}),
        json.dumps({"channel": "bbo", "data": {"coin": "x", "time": 1, "bbo": {"bid": []}}}),
        json.dumps({"channel": "bbo", "data": None}),
        json.dumps({"channel": "bbo"}),
        ctx(oraclePx="NaN", markPx="1"),
        ctx(oraclePx="0", markPx="1"),
        ctx(oraclePx="-3", markPx="1"),
        ctx(oraclePx=None, markPx="1"),
        ctx(markPx="1"),
        ctx(oraclePx="1", markPx="inf"),
        json.dumps({"channel": "subscriptionResponse", "data": {"type": "bbo"}}),  # P1
        json.dumps(
            {
                "channel": "subscriptionResponse",
                "data": {"method": "subscribed", "subscription": {"type": "bbo", "coin": "x"}},
            }
        ),
        json.dumps({"channel": "post", "data": {"id": "x", "response": {"type": "info"}}}),
        json.dumps({"channel": "post", "data": {"response": {"type": "info"}}}),
        "[1, 2, 3]",
        '{"data": 1}',
        '{"channel": 5}',
        '{"channel":"bbo","data":{"coin":"xyz:GOLD","time":17,"bbo":[{"px":',  # truncated
        '  {"channel":"activeAssetCtx","data":{"coin":"xyz:GOLD","ctx":{"oraclePx":Infinity}}}',
        "[",
    ],
)
def test_malformed_counted_not_raised(dec: WireDecoder, text: str, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert dec.decode(text) is None
    assert dec.stats.malformed == 1 and dec.stats.unknown_channel == 0 and dec.stats.non_json == 0
    assert "malformed frame skipped" in caplog.text


def test_doc_ctx_and_nullable_fields(dec: WireDecoder) -> None:
    assert dec.decode(DOC_CTX) == CtxEvent("xyz:SILVER", 112.90, 112.91)
    nulls = ctx(oraclePx="2000", markPx="2001", midPx=None, premium=None, impactPxs=None)
    assert dec.decode(nulls) == CtxEvent("xyz:GOLD", 2000.0, 2001.0)
    assert dec.decode(ctx(oraclePx="2000", markPx=None)) == CtxEvent("xyz:GOLD", 2000.0, None)
    assert dec.decode(ctx(oraclePx="2000")) == CtxEvent("xyz:GOLD", 2000.0, None)
    assert dec.decode(ctx(oraclePx="2000", markPx="0")) == CtxEvent("xyz:GOLD", 2000.0, None)
    extra = ctx(oraclePx="2000", markPx="2001", somethingNew={"a": [1]}, funding="x")
    assert dec.decode(extra) == CtxEvent("xyz:GOLD", 2000.0, 2001.0)
    assert dec.stats.malformed == 0


def test_subscription_response(dec: WireDecoder) -> None:
    assert dec.decode(DOC_ACK) == SubAckEvent("subscribe", "trades", "SOL")
    unsub = DOC_ACK.replace('"subscribe"', '"unsubscribe"')
    assert dec.decode(unsub) == SubAckEvent("unsubscribe", "trades", "SOL")
    user = (
        '{"channel":"subscriptionResponse","data":{"method":"subscribe",'
        '"subscription":{"type":"orderUpdates","user":"0xabc"}}}'
    )
    assert dec.decode(user) == SubAckEvent("subscribe", "orderUpdates", None, "0xabc")


def test_pong(dec: WireDecoder) -> None:
    assert dec.decode('{"channel":"pong"}') is PONG
    assert dec.stats.frames_by_channel["pong"] == 1


def test_post_responses(dec: WireDecoder) -> None:
    info = dec.decode(DOC_POST_INFO)
    assert isinstance(info, PostEvent) and info.id == 7 and info.response_type == "info"
    assert info.payload["data"]["coin"] == "ETH"
    assert info.response == {"type": "info", "payload": info.payload}
    action = dec.decode(DOC_POST_ACTION)
    assert isinstance(action, PostEvent) and action.id == 8 and action.response_type == "action"
    assert action.payload["response"]["data"]["statuses"][0]["filled"]["oid"] == 302228651101
    err = dec.decode(DOC_POST_ACTION_ERR)
    assert isinstance(err, PostEvent) and err.payload["status"] == "err"
    assert err.payload["response"].startswith("L1 error: User or API Wallet")
    terr = dec.decode(DOC_POST_ERROR)
    assert isinstance(terr, PostEvent) and terr.response_type == "error"
    assert terr.payload.startswith("<string mirroring")


def test_error_channel(dec: WireDecoder) -> None:
    text = json.dumps({"channel": "error", "data": 'Invalid subscription {"type":"bbo"}'})
    assert dec.decode(text) == ErrorEvent('Invalid subscription {"type":"bbo"}')
    assert dec.decode('{"channel":"error","data":{"x":1}}') == ErrorEvent('{"x":1}')
    assert dec.stats.frames_by_channel["error"] == 2


def test_greeting_and_non_json(dec: WireDecoder, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert dec.decode("Websocket connection established.") is None
    assert dec.stats.non_json == 1 and caplog.text == ""  # the greeting is expected: no warning
    with caplog.at_level(logging.WARNING):
        assert dec.decode("<html>502 Bad Gateway</html>") is None
        assert dec.decode("") is None
    assert dec.stats.non_json == 3 and dec.stats.malformed == 0
    assert "non-JSON" in caplog.text


def test_unknown_channels_counted_per_name_logged_once(dec: WireDecoder, caplog) -> None:
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert dec.decode('{"channel":"l2Book","data":{"coin":"x"}}') is None
        assert dec.decode('{"channel":"user","data":{"fills":[]}}') is None
    assert dec.stats.unknown_channel == 4
    assert dec.stats.unknown_by_channel == {"l2Book": 3, "user": 1}
    assert caplog.text.count("l2Book") == 1 and caplog.text.count("'user'") == 1
    assert dec.stats.malformed == 0


def test_unknown_channel_names_are_bounded(dec: WireDecoder) -> None:
    for i in range(500):
        dec.decode(json.dumps({"channel": f"c{i}", "data": 1}))
    assert dec.stats.unknown_channel == 500
    assert len(dec.stats.unknown_by_channel) <= 65
    assert sum(dec.stats.unknown_by_channel.values()) == 500


def test_malformed_logging_is_rate_limited_and_truncated(caplog) -> None:
    t = [0.0]
    dec = WireDecoder(
        rlog=RateLimitedLog(logging.getLogger("t"), interval_s=10, burst=2, clock=lambda: t[0])
    )
    long_bad = '{"channel":"bbo","data":"' + "x" * 5000 + '"}'
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            dec.decode(long_bad)
        t[0] = 11.0
        dec.decode(long_bad)
    assert dec.stats.malformed == 51
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "48 similar lines suppressed" in lines[2]
    assert all(len(line) < 600 for line in lines)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_decode_never_raises_on_arbitrary_input(data: str | bytes) -> None:
    dec = WireDecoder()
    dec.decode(data)
    s = dec.stats
    assert s.frames_total == 1


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers()
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        ["bbo", "activeAssetCtx", "subscriptionResponse", "pong", "post", "error", "zzz"]
    ),
    json_values,
)
def test_decode_never_raises_on_arbitrary_json_per_channel(channel: str, data: object) -> None:
    dec = WireDecoder()
    ev = dec.decode(json.dumps({"channel": channel, "data": data}))
    s = dec.stats
    assert (ev is not None) + s.malformed + s.unknown_channel == 1
    if isinstance(ev, BboEvent):
        for px, sz in ((ev.bid_px, ev.bid_sz), (ev.ask_px, ev.ask_sz)):
            assert (px is None) == (sz is None)
            assert px is None or (px > 0 and sz is not None and sz > 0)
    if isinstance(ev, CtxEvent):
        assert ev.oracle_px > 0 and ev.oracle_px != float("inf")


def test_encoders() -> None:
    sub = subscription("bbo", "xyz:SILVER")
    assert json.loads(encode_subscribe(sub)) == {
        "method": "subscribe",
        "subscription": {"type": "bbo", "coin": "xyz:SILVER"},
    }
    assert (
        encode_subscribe(sub)
        == '{"method":"subscribe","subscription":{"type":"bbo","coin":"xyz:SILVER"}}'
    )
    assert json.loads(encode_unsubscribe(subscription("allMids", dex="xyz"))) == {
        "method": "unsubscribe",
        "subscription": {"type": "allMids", "dex": "xyz"},
    }
    assert encode_ping() == '{"method":"ping"}'
    req = {
        "type": "action",
        "payload": {"action": {"type": "order", "orders": [], "grouping": "na"}, "nonce": 1},
    }
    text = encode_post(7, req)
    assert text.startswith('{"method":"post","id":7,"request":{"type":"action"')
    assert '"action":{"type":"order","orders":[],"grouping":"na"}' in text  # key order kept (P30)
    assert msgspec.json.decode(text)["request"] == req


def test_excerpt() -> None:
    assert excerpt("abc") == "'abc'"
    assert excerpt("x" * 300).endswith("...(+100 chars)")
    assert excerpt(b"\xff" * 3) == repr("\ufffd" * 3)


# --- replay hands over the recorded ASCII payloads as bytes: the same events, counts, logs

_BYTES_FRAMES = [
    '{"channel":"bbo","data":{"coin":"xyz:A","time":5,"bbo":[{"px":"1.5","sz":"2","n":1},'
    '{"px":"1.6","sz":"3","n":1}]}}',
    '{"channel":"bbo","data":{"coin":"xyz:A","time":5,"bbo":[null,{"px":"0","sz":"3","n":1}]}}',
    '{"channel":"bbo","data":{"coin":"xyz:A","time":5,"bbo":[{"px":"nan","sz":"2","n":1},null]}}',
    '{"channel":"activeAssetCtx","data":{"coin":"xyz:A","ctx":{"oraclePx":"2.5","markPx":"2.4"}}}',
    '{"channel":"activeAssetCtx","data":{"coin":"xyz:A","ctx":{"oraclePx":"-1"}}}',
    '{"channel":"pong"}', '{"channel":"nope","data":1}', '{"channel":"bbo","data":{', '[1,2]',
    'Websocket connection established.', '\x1c{"channel":"pong"}\x1c', ' hello ',
    '{"channel":"error","data":"' + "x" * 500 + '"}',
    '{"channel":"bbo","data":{"coin":"xyz:A","time":5,"bbo":[{"px":"' + "9" * 400 + '"}]}}',
]


@pytest.mark.parametrize("text", _BYTES_FRAMES)
def test_ascii_bytes_decode_exactly_as_their_str(text: str, caplog) -> None:
    caplog.set_level("DEBUG")
    a, b = WireDecoder(), WireDecoder()
    ev_s = a.decode(text)
    logs_s = [r.getMessage() for r in caplog.records]
    caplog.clear()
    ev_b = b.decode(text.encode())
    logs_b = [r.getMessage() for r in caplog.records]
    assert ev_b == ev_s
    assert attrs.asdict(b.stats) == attrs.asdict(a.stats)
    assert logs_b == logs_s
