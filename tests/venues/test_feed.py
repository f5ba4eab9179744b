"""HyperliquidFeed against the fake Hyperliquid server (loopback only)."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import attrs
import pytest
import trio
import trio_websocket

from engine.venues.hyperliquid.client import HyperliquidFeed
from engine.venues.hyperliquid.l2book import L2BookStore
from engine.venues.hyperliquid.posts import PostError, PostLost, PostTimeout
from engine.venues.hyperliquid.wire import L2BookEvent, WireDecoder

from .conftest import Recorder

COINS = ["xyz:SILVER", "xyz:GOLD", "xyz:CL"]


async def wait_until(pred: Any, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    with trio.fail_after(timeout):
        while not pred():  # noqa: ASYNC110 - polling the feed's observable state
            await trio.sleep(0.002)


# ---------------------------------------------------------------- connect / subscribe / dispatch


async def test_greeting_tolerated_all_subscriptions_sent_and_acked(fake_hl, make_feed) -> None:
    feed, rec = make_feed(COINS)
    conn = await fake_hl.wait_connections(1)
    await wait_until(lambda: feed.all_acked)
    expected = [{"type": t, "coin": c} for t in ("bbo", "activeAssetCtx") for c in COINS]
    assert sorted(conn.subscriptions, key=json.dumps) == sorted(expected, key=json.dumps)
    assert all(m["method"] == "subscribe" for m in conn.received)
    assert sorted(rec.subscribed) == sorted(
        (t, c) for t in ("bbo", "activeAssetCtx") for c in COINS
    )
    assert feed.stats.acked == 6 and feed.stats.subscriptions == 6
    assert feed.stats.non_json == 1  # the greeting
    assert feed.stats.malformed == 0
    assert rec.connected == 1 and feed.connected and feed.stats.connected


async def test_acks_tracked_individually(fake_hl, make_feed) -> None:
    fake_hl.auto_ack = False
    feed, rec = make_feed(["xyz:SILVER"])
    conn = await fake_hl.wait_connections(1)
    await conn.wait_for(lambda c: len(c.subscriptions) == 2)
    assert not feed.all_acked
    await conn.send(
        {
            "channel": "subscriptionResponse",
            "data": {"method": "subscribe", "subscription": {"type": "bbo", "coin": "xyz:SILVER"}},
        }
    )
    # P1: a response with the type at data.type (not data.subscription.type) is not an ack
    await conn.send({"channel": "subscriptionResponse", "data": {"type": "activeAssetCtx"}})
    await wait_until(lambda: feed.stats.malformed == 1)
    assert feed.acked == {("bbo", "xyz:SILVER")} and not feed.all_acked
    await conn.send(
        {
            "channel": "subscriptionResponse",
            "data": {
                "method": "subscribe",
                "subscription": {"type": "activeAssetCtx", "coin": "xyz:SILVER"},
            },
        }
    )
    await wait_until(lambda: feed.all_acked)
    assert rec.subscribed == [("bbo", "xyz:SILVER"), ("activeAssetCtx", "xyz:SILVER")]


async def test_bbo_and_ctx_dispatched_synchronously(fake_hl, make_feed, frames) -> None:
    feed, rec = make_feed(COINS)
    conn = await fake_hl.wait_connections(1)
    await wait_until(lambda: feed.all_acked)
    await conn.send(frames.bbo("xyz:SILVER", ("112.88", "3.1"), None, time_ms=5))
    await conn.send(frames.bbo("xyz:GOLD", ("0", "1"), ("2000.5", "0.25")))
    await conn.send(frames.ctx("xyz:SILVER", "112.90", "112.91", mid=None))
    await conn.send(frames.ctx("xyz:CL", "70.1", None))
    await wait_until(lambda: len(rec.ctx) == 2)
    assert rec.bbo == [
        ("xyz:SILVER", 5, 112.88, 3.1, None, None),
        ("xyz:GOLD", 1769594065851, None, None, 2000.5, 0.25),
    ]
    assert rec.ctx == [("xyz:SILVER", 112.90, 112.91), ("xyz:CL", 70.1, None)]
    assert rec.batches >= 1
    assert feed.stats.frames_by_channel["bbo"] == 2
    assert feed.stats.frames_by_channel["activeAssetCtx"] == 2


async def test_bad_frames_counted_and_skipped_feed_keeps_running(
    fake_hl, make_feed, frames
) -> None:
    feed, rec = make_feed(COINS)
    conn = await fake_hl.wait_connections(1)
    await wait_until(lambda: feed.all_acked)
    await conn.send("this is not json")
    await conn.send('{"channel":"bbo","data":{"coin":"xyz:SILVER","time":17,"bbo":[{"px":')
    await conn.send({"channel": "bbo", "data": {"coin": "xyz:SILVER"}})  # malformed
    await conn.send(frames.ctx("xyz:SILVER", "NaN"))  # malformed: oracle not finite
    await conn.send(frames.ctx("xyz:SILVER", "0"))  # malformed: oracle not > 0
    await conn.send({"channel": "l2Book", "data": {"coin": "xyz:SILVER", "levels": [[], []]}})
    await conn.send({"channel": "l2Book", "data": {}})
    await conn.send({"channel": "trades", "data": []})
    await conn.send(frames.bbo("xyz:NOTSUB", ("1", "1"), ("2", "1")))  # unexpected coin
    await conn.send(b"\xff\xfe not utf-8")  # binary, not UTF-8: skipped
    await conn.send(json.dumps(frames.ctx("xyz:GOLD", "2001")).encode())  # binary JSON: decoded
    await conn.send(frames.bbo("xyz:SILVER", ("112.88", "3.1"), ("112.95", "0.8")))
    await wait_until(lambda: len(rec.bbo) == 1)
    st = feed.stats
    assert st.non_json == 2  # greeting + garbage
    assert st.malformed == 4  # truncated JSON, missing fields, oracle NaN, oracle 0
    assert st.unknown_channel == 3 and st.unknown_by_channel == {"l2Book": 2, "trades": 1}
    assert st.unexpected_coin == 1
    assert rec.ctx == [("xyz:GOLD", 2001.0, 1.0)]
    assert st.connects == 1 and rec.disconnected == [] and feed.connected


async def test_error_channel_logged_and_counted(fake_hl, make_feed, caplog) -> None:
    feed, _ = make_feed(COINS)
    conn = await fake_hl.wait_connections(1)
    await wait_until(lambda: feed.all_acked)
    await conn.send({"channel": "error", "data": 'Already subscribed: {"type":"bbo"}'})
    await wait_until(lambda: feed.stats.errors == 1)
    assert "Already subscribed" in caplog.text
    assert feed.connected and feed.stats.connects == 1


async def test_protocol_ping_answered_with_pong(fake_hl, make_feed) -> None:
    feed, _ = make_feed(COINS)
    conn = await fake_hl.wait_connections(1)
    await wait_until(lambda: feed.all_acked)
    with trio.fail_after(2):
        await conn.ws.ping(b"hello")  # returns when the matching Pong frame arrives


# ---------------------------------------------------------------- keep-alive


async def test_ping_sent_after_idle_and_pong_keeps_connection(fake_hl, make_feed) -> None:
    feed, _ = make_feed(COINS, ping_idle_s=0.05, pong_timeout_s=0.2)
    conn = await fake_hl.wait_connections(1)
    await conn.wait_for(lambda c: c.pings >= 3)
    assert {"method": "ping"} in conn.received
    assert feed.stats.pings_sent >= 3
    assert len(fake_hl.connections) == 1 and feed.stats.reconnects == 0


async def test_pong_timeout_reconnects_and_resubscribes(fake_hl, make_feed) -> None:
    fake_hl.auto_pong = False
    feed, rec = make_feed(COINS, ping_idle_s=0.05, pong_timeout_s=0.1)
    first = await fake_hl.wait_connections(1)
    second = await fake_hl.wait_connections(2)
    assert first.pings == 1
    assert rec.disconnected[0] == "pong timeout"
    await second.wait_for(lambda c: len(c.subscriptions) == 6)
    assert sorted(second.subscriptions, key=json.dumps) == sorted(
        first.subscriptions, key=json.dumps
    )
    await wait_until(lambda: feed.all_acked)
    assert feed.stats.reconnects >= 1


async def test_traffic_defers_ping(fake_hl, make_feed, frames) -> None:
    feed, _ = make_feed(COINS, ping_idle_s=0.15, pong_timeout_s=0.1)
    conn = await fake_hl.wait_connections(1)
    for _ in range(20):
        await conn.send(frames.ctx("xyz:SILVER", "1.5"))
        await trio.sleep(0.02)
    assert conn.pings == 0 and feed.stats.pings_sent == 0


# ---------------------------------------------------------------- reconnect


async def test_drop_reconnects_with_backoff_and_full_resubscription(fake_hl, make_feed) -> None:
    feed, rec = make_feed(COINS, reconnect_base_s=0.05, reconnect_max_s=0.15)
    times = []
    for n in range(1, 5):
        conn = await fake_hl.wait_connections(n)
        times.append(trio.current_time())
        await conn.wait_for(lambda c: len(c.subscriptions) == 6)
        await wait_until(lambda: feed.all_acked)
        if n < 4:
            await conn.drop()
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # backoff 0.05, 0.10, 0.15 (capped); generous upper bounds for slow machines
    for gap, expected in zip(gaps, [0.05, 0.10, 0.15], strict=True):
        assert expected * 0.95 <= gap < expected + 0.5
    assert rec.connected == 4 and len(rec.disconnected) == 3
    assert all("code 1006" in r for r in rec.disconnected)
    assert feed.stats.reconnects == 3


async def test_server_close_frame_reconnects(fake_hl, make_feed) -> None:
    feed, rec = make_feed(COINS)
    conn = await fake_hl.wait_connections(1)
    await wait_until(lambda: feed.all_acked)
    await conn.close(4000, "maintenance")
    await fake_hl.wait_connections(2)
    assert "maintenance" in rec.disconnected[0] and "4000" in rec.disconnected[0]


async def test_connect_failure_retries(make_feed) -> None:
    with trio.socket.socket() as s:  # a port nobody listens on
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    feed, rec = make_feed(COINS, ws_url=f"ws://127.0.0.1:{port}/ws")
    await wait_until(lambda: feed.stats.reconnects >= 3)
    assert rec.connected == 0 and rec.disconnected == []
    assert feed.stats.last_disconnect_reason.startswith("connect failed")


def test_backoff_formula() -> None:
    from engine.config import VenueConfig

    cfg = VenueConfig(reconnect_base_s=1.0, reconnect_max_s=60.0, reconnect_jitter_s=1.0)
    feed = HyperliquidFeed(cfg, COINS, object(), rng=random.Random(7))  # type: ignore[arg-type]
    ref = random.Random(7)
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 8), (6, 32), (7, 60), (50, 60), (10**6, 60)]:
        assert feed._backoff_delay(attempt) == pytest.approx(base + ref.uniform(0.0, 1.0))


async def test_backoff_attempt_reset_after_stable_connection(fake_hl, make_feed) -> None:
    feed, _ = make_feed(
        COINS, reconnect_base_s=0.1, reconnect_max_s=10.0, feed_kwargs={"stable_after_s": 0.1}
    )
    for n in (1, 2, 3):
        conn = await fake_hl.wait_connections(n)
        await wait_until(lambda: feed.all_acked)
        await conn.drop()
    conn = await fake_hl.wait_connections(4)
    assert feed._attempt == 3
    await wait_until(lambda: feed.all_acked)
    await wait_until(lambda: feed._attempt == 0, timeout=2)
    t0 = trio.current_time()
    await conn.drop()
    await fake_hl.wait_connections(5)
    # back to the base delay (0.1 s), not the escalated 0.1 * 8: the bound sits halfway, so a
    # loaded machine has 0.3 s for the reconnect itself (it had 20 ms at a 0.02 s base)
    assert trio.current_time() - t0 < 0.1 * 4


# ---------------------------------------------------------------- staleness


async def test_stale_ctx_stream_forces_reconnect(fake_hl, make_feed, frames, caplog) -> None:
    feed, rec = make_feed(
        ["xyz:SILVER", "xyz:GOLD"], ctx_stale_ms=150.0, stale_reconnect_min_interval_s=0.0
    )
    conn = await fake_hl.wait_connections(1)
    await wait_until(lambda: feed.all_acked)
    t0 = trio.current_time()
    with trio.fail_after(3):
        while not conn.closed.is_set():  # SILVER ctx keeps flowing, GOLD's never does
            try:
                await conn.send(frames.ctx("xyz:SILVER", "30.5"))
            except trio_websocket.ConnectionClosed:
                break
            await trio.sleep(0.02)
    await fake_hl.wait_connections(2)
    assert trio.current_time() - t0 >= 0.14
    reason = rec.disconnected[0]
    assert reason.startswith("stale streams") and "activeAssetCtx:xyz:GOLD" in reason
    assert "xyz:SILVER" not in reason
    assert "stale stream" in caplog.text and "activeAssetCtx:xyz:GOLD" in caplog.text
    assert feed.stats.stale_reconnects == 1


async def test_stale_reconnects_are_rate_limited(fake_hl, make_feed, caplog) -> None:
    feed, rec = make_feed(["xyz:GOLD"], ctx_stale_ms=50.0, stale_reconnect_min_interval_s=0.5)
    await fake_hl.wait_connections(2)  # first stale reconnect after ~50 ms
    t1 = trio.current_time()
    await fake_hl.wait_connections(3)  # the next one is held back until 0.5 s after the first
    gap = trio.current_time() - t1
    assert 0.4 <= gap < 1.5
    assert feed.stats.stale_reconnects == 2
    assert caplog.text.count("waiting") == 1  # logged once while suppressed


async def test_bbo_staleness_disabled_by_default(fake_hl, make_feed, frames) -> None:
    feed, _ = make_feed(["xyz:GOLD"], ctx_stale_ms=100.0, stale_reconnect_min_interval_s=0.0)
    conn = await fake_hl.wait_connections(1)
    for _ in range(15):  # ctx flows, bbo never does (bbo_stale_ms = 0)
        await conn.send(frames.ctx("xyz:GOLD", "2000"))
        await trio.sleep(0.02)
    assert len(fake_hl.connections) == 1 and feed.stats.stale_reconnects == 0


async def test_stale_bbo_when_enabled(fake_hl, make_feed, frames) -> None:
    _, rec = make_feed(["xyz:GOLD"], bbo_stale_ms=100.0, stale_reconnect_min_interval_s=0.0)
    await fake_hl.wait_connections(2)
    assert "bbo:xyz:GOLD" in rec.disconnected[0]


# ---------------------------------------------------------------- posts


def info_response(payload_type: str, data: Any) -> dict[str, Any]:
    return {"type": "info", "payload": {"type": payload_type, "data": data}}


async def test_post_correlation_out_of_order(fake_hl, make_feed) -> None:
    feed, _ = make_feed(COINS)
    conn = await fake_hl.wait_connections(1)
    await feed.wait_connected()
    results: dict[int, Any] = {}

    async def one(i: int) -> None:
        results[i] = await feed.post({"type": "info", "payload": {"type": "l2Book", "n": i}})

    async with trio.open_nursery() as n:
        for i in range(5):
            n.start_soon(one, i)
        await conn.wait_for(lambda c: len(c.posts) == 5)
        ids = [p["id"] for p in conn.posts]
        assert len(set(ids)) == 5 and all(isinstance(x, int) for x in ids)
        for p in reversed(conn.posts):  # answer in reverse order
            await conn.answer_post(p["id"], info_response("l2Book", p["request"]["payload"]["n"]))
    for i in range(5):
        assert results[i] == info_response("l2Book", i)
    assert conn.posts[0]["method"] == "post" and list(conn.posts[0]) == ["method", "id", "request"]


async def test_post_ids_unique_and_increasing_across_reconnects(fake_hl, make_feed) -> None:
    fake_hl.post_answer = lambda msg: info_response("x", msg["id"])
    feed, _ = make_feed(COINS)
    conn = await fake_hl.wait_connections(1)
    await feed.wait_connected()
    a = (await feed.post({"type": "info", "payload": {}}))["payload"]["data"]
    b = (await feed.post({"type": "info", "payload": {}}))["payload"]["data"]
    await conn.drop()
    await fake_hl.wait_connections(2)
    await wait_until(lambda: feed.all_acked)
    c = (await feed.post({"type": "info", "payload": {}}))["payload"]["data"]
    assert a < b < c


async def test_info_returns_payload_data(fake_hl, make_feed) -> None:
    fake_hl.post_answer = lambda msg: info_response(
        msg["request"]["payload"]["type"], {"echo": msg["request"]["payload"]}
    )
    feed, _ = make_feed(COINS)
    await feed.wait_connected()
    data = await feed.info({"type": "openOrders", "user": "0xabc", "dex": "xyz"})
    assert data == {"echo": {"type": "openOrders", "user": "0xabc", "dex": "xyz"}}


async def test_post_action_response_returned(fake_hl, make_feed) -> None:
    action = {
        "type": "action",
        "payload": {
            "status": "ok",
            "response": {
                "type": "order",
                "data": {
                    "statuses": [
                        {"filled": {"totalSz": "0.2", "avgPx": "104.63", "oid": 302228651101}}
                    ]
                },
            },
        },
    }
    fake_hl.post_answer = lambda msg: action
    feed, _ = make_feed(COINS)
    await feed.wait_connected()
    assert await feed.post({"type": "action", "payload": {"action": {"type": "noop"}}}) == action


async def test_post_error_response_raises(fake_hl, make_feed) -> None:
    fake_hl.post_answer = lambda msg: {"type": "error", "payload": "400 Bad Request: bad payload"}
    feed, _ = make_feed(COINS)
    await feed.wait_connected()
    with pytest.raises(PostError, match="bad payload"):
        await feed.post({"type": "info", "payload": {"type": "x"}})
    with pytest.raises(PostError):
        await feed.info({"type": "x"})


async def test_post_lost_on_disconnect(fake_hl, make_feed) -> None:
    feed, _ = make_feed(COINS)
    conn = await fake_hl.wait_connections(1)
    await feed.wait_connected()
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await feed.post({"type": "info", "payload": {"type": "x"}}, timeout=5.0)
        except PostLost as exc:
            errors.append(exc)

    async with trio.open_nursery() as n:
        for _ in range(3):
            n.start_soon(one)
        await conn.wait_for(lambda c: len(c.posts) == 3)
        await conn.drop()
    assert len(errors) == 3 and feed.stats.posts_lost == 3


async def test_post_not_connected_is_lost(make_feed) -> None:
    feed, _ = make_feed(COINS, start=False)
    with pytest.raises(PostLost, match="not connected"):
        await feed.post({"type": "info", "payload": {}})


async def test_post_timeout_and_late_answer_counted(fake_hl, make_feed) -> None:
    feed, _ = make_feed(COINS)
    conn = await fake_hl.wait_connections(1)
    await feed.wait_connected()
    with pytest.raises(PostTimeout):
        await feed.post({"type": "info", "payload": {}}, timeout=0.05)
    assert feed.stats.post_timeouts == 1
    await conn.answer_post(conn.posts[0]["id"], info_response("x", 1))
    await wait_until(lambda: feed.stats.post_unmatched == 1)
    assert feed.connected


async def test_too_many_pending_posts_error_fails_that_post(fake_hl, make_feed) -> None:
    feed, _ = make_feed(COINS)
    conn = await fake_hl.wait_connections(1)
    await feed.wait_connected()

    async def reject() -> None:
        await conn.wait_for(lambda c: len(c.posts) == 1)
        await conn.send(
            {"channel": "error", "data": f"too many pending post requests id={conn.posts[0]['id']}"}
        )

    async with trio.open_nursery() as n:
        n.start_soon(reject)
        with pytest.raises(PostError, match="too many pending"):
            await feed.post({"type": "info", "payload": {}}, timeout=2.0)


# ---------------------------------------------------------------- shutdown


async def test_cancel_shuts_down_cleanly(fake_hl, make_feed) -> None:
    feed, rec = make_feed(COINS, start=False)
    lost: list[BaseException] = []

    async def poster() -> None:
        try:
            await feed.post({"type": "info", "payload": {}}, timeout=5)
        except PostLost as exc:
            lost.append(exc)

    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as n:
            n.start_soon(feed.run)
            conn = await fake_hl.wait_connections(1)
            await wait_until(lambda: feed.all_acked)
            outer.start_soon(poster)
            await conn.wait_for(lambda c: len(c.posts) == 1)
            n.cancel_scope.cancel()
    assert len(lost) == 1
    assert rec.disconnected == ["shutdown"]
    assert not feed.connected and not feed.stats.connected
    with trio.fail_after(2):
        await conn.closed.wait()  # the server saw the connection go away


async def test_keepalive_uses_the_injected_clock(fake_hl, make_feed) -> None:
    fake_hl.auto_pong = False
    now = [1000.0]
    feed, rec = make_feed(
        COINS, ping_idle_s=20.0, pong_timeout_s=10.0, feed_kwargs={"clock": lambda: now[0]}
    )
    conn = await fake_hl.wait_connections(1)
    await wait_until(lambda: feed.all_acked)
    await trio.sleep(0.3)  # real time passes, the injected clock does not: no ping
    assert conn.pings == 0
    now[0] += 21.0
    await conn.wait_for(lambda c: c.pings == 1, timeout=2)
    now[0] += 9.0
    await trio.sleep(0.3)
    assert len(fake_hl.connections) == 1  # 9 s < pong_timeout_s
    now[0] += 2.0
    await fake_hl.wait_connections(2, timeout=2)
    assert rec.disconnected == ["pong timeout"]
    assert feed.stats.last_connect_time == now[0]


async def test_no_coins_still_connects_for_posts(fake_hl, make_feed) -> None:
    fake_hl.post_answer = lambda msg: info_response("meta", {"universe": []})
    feed, rec = make_feed([])
    await feed.wait_connected()
    assert feed.all_acked and await feed.info({"type": "meta", "dex": "xyz"}) == {"universe": []}
    with pytest.raises(RuntimeError, match="already running"):
        await feed.run()


# ---------------------------------------------------------------- l2Book (paper depth)

DOC_L2 = (  # verbatim from docs/reference/hyperliquid-protocol.md §3.2
    '{"channel":"l2Book","data":{"coin":"xyz:SILVER","time":1769594065851,'
    '"levels":[[{"px":"112.88","sz":"3.1","n":2}],[{"px":"112.95","sz":"0.8","n":1}]]}}'
)


def l2_frame(
    coin: str,
    bids: list[tuple[str, str]],
    asks: list[tuple[str, str]],
    time_ms: int = 1769594065851,
) -> dict[str, Any]:
    def side(levels: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return [{"px": px, "sz": sz, "n": 1} for px, sz in levels]

    return {
        "channel": "l2Book",
        "data": {"coin": coin, "time": time_ms, "levels": [side(bids), side(asks)]},
    }


BIDS3 = [("112.88", "3.1"), ("112.80", "1"), ("112.70", "2.5")]
ASKS3 = [("112.95", "0.8"), ("113", "1.2"), ("113.1", "4")]


@attrs.define
class L2Recorder(Recorder):
    """A Recorder with the optional ``on_l2book``."""

    l2: list[tuple[Any, ...]] = attrs.Factory(list)

    def on_l2book(
        self,
        coin: str,
        time_ms: int,
        bids: list[tuple[float, float]],
        asks: list[tuple[float, float]],
    ) -> None:
        self.l2.append((coin, time_ms, list(bids), list(asks)))


def test_l2_decoder_doc_frame_and_disabled_by_default() -> None:
    dec = WireDecoder(l2book=True)
    ev = dec.decode(DOC_L2)
    assert ev == L2BookEvent("xyz:SILVER", 1769594065851, [(112.88, 3.1)], [(112.95, 0.8)])
    assert dec.stats.frames_by_channel["l2Book"] == 1
    empty = dec.decode(json.dumps(l2_frame("xyz:GOLD", [], [])))
    assert empty == L2BookEvent("xyz:GOLD", 1769594065851, [], [])
    off = WireDecoder()  # observe mode: l2Book is just an unknown channel
    assert off.decode(DOC_L2) is None
    assert off.stats.unknown_by_channel == {"l2Book": 1} and off.stats.malformed == 0


@pytest.mark.parametrize(
    "frame",
    [
        '{"channel":"l2Book","data":{"coin":"xyz:GOLD","time":1}}',  # no levels
        '{"channel":"l2Book","data":{"coin":"xyz:GOLD","time":1,"levels":[[]]}}',  # one side
        '{"channel":"l2Book","data":{"coin":"xyz:GOLD","time":1,"levels":[[],[],[]]}}',
        '{"channel":"l2Book","data":{"coin":"xyz:GOLD","levels":[[],[]]}}',  # no time
        '{"channel":"l2Book","data":{"coin":"xyz:GOLD","time":1,"levels":[[{"px":"abc",'
        '"sz":"1"}],[]]}}',
        '{"channel":"l2Book","data":{"coin":"xyz:GOLD","time":1,"levels":[[{"sz":"1"}],[]]}}',
        '{"channel":"l2Book","data":{"coin":"xyz:GOLD","time":1,"levels":{"bids":[]}}}',
        '{"channel":"l2Book","data":{"coin":"xyz:GOLD","time":1,"levels":[[{"px":',  # truncated
        json.dumps(l2_frame("xyz:GOLD", [("NaN", "1")], [])),
        json.dumps(l2_frame("xyz:GOLD", [("112", "1")], [("113", "0")])),  # zero size
        json.dumps(l2_frame("xyz:GOLD", [("-1", "1")], [])),
        json.dumps(l2_frame("xyz:GOLD", [], [("Infinity", "1")])),
    ],
)
def test_l2_decoder_malformed_counted_never_raises(frame: str) -> None:
    dec = WireDecoder(l2book=True)
    assert dec.decode(frame) is None
    assert dec.stats.malformed == 1 and dec.stats.l2_rejected == 0
    assert dec.stats.frames_by_channel["l2Book"] == 0 and dec.stats.unknown_channel == 0


def test_l2_decoder_rejects_crossed_and_unsorted_logged_once_per_kind(caplog) -> None:
    dec = WireDecoder(l2book=True)
    crossed = l2_frame("xyz:GOLD", [("113", "1")], [("112.9", "1")])
    locked = l2_frame("xyz:GOLD", [("113", "1")], [("113", "1")])
    unsorted_bids = l2_frame("xyz:GOLD", [("112", "1"), ("112.5", "1")], [("113", "1")])
    unsorted_asks = l2_frame("xyz:GOLD", [("112", "1")], [("113", "1"), ("113", "2")])
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            for f in (crossed, locked, unsorted_bids, unsorted_asks):
                assert dec.decode(json.dumps(f)) is None
            assert dec.decode('{"channel":"l2Book","data":{}}') is None
    assert dec.stats.l2_rejected == 12 and dec.stats.malformed == 3
    lines = [r.getMessage() for r in caplog.records]
    assert sum("(crossed)" in m for m in lines) == 1
    assert sum("(unsorted)" in m for m in lines) == 1
    assert sum("(malformed)" in m for m in lines) == 1
    assert any("best bid 113.0 >= best ask 112.9" in m for m in lines)


def test_l2_store_regression_staleness_invalidate_and_bad_input(caplog) -> None:
    now = [1_000.0]
    store = L2BookStore(max_age_ms=500.0, clock=lambda: now[0])
    bids, asks = [(99.0, 1.0)], [(101.0, 2.0)]
    assert store.levels("xyz:GOLD") is None and store.stats.missing == 1
    assert store.update("xyz:GOLD", 100, bids, asks)
    assert store.levels("xyz:GOLD") == (bids, asks)
    with caplog.at_level(logging.WARNING):
        assert not store.update("xyz:GOLD", 99, [(98.0, 1.0)], asks)  # older: refused
        assert not store.update("xyz:GOLD", 50, [(98.0, 1.0)], asks)
    assert store.stats.regressions == 2 and caplog.text.count("older than the last") == 1
    assert store.levels("xyz:GOLD") == (bids, asks)
    assert store.update("xyz:GOLD", 100, [(99.5, 1.0)], asks)  # same time: replaces
    snap = store.snapshot("xyz:GOLD")
    assert snap is not None and snap.bids == [(99.5, 1.0)] and snap.time_ms == 100
    now[0] += 500.0
    assert store.levels("xyz:GOLD") is not None  # exactly at the bound: still fresh
    now[0] += 1.0
    assert store.levels("xyz:GOLD") is None and store.stats.stale == 1
    assert store.levels_at("xyz:GOLD", 1_000.0) is not None  # pure variant
    # direct callers cannot store a bad book either
    assert not store.update("xyz:GOLD", 200, [(101.0, 1.0)], [(100.0, 1.0)])  # crossed
    assert not store.update("xyz:GOLD", 200, [(99.0, 1.0), (99.5, 1.0)], asks)  # unsorted
    assert not store.update("xyz:GOLD", 200, [(float("nan"), 1.0)], asks)
    assert store.stats.rejected == 3 and store.last_time_ms("xyz:GOLD") == 100
    store.invalidate("test")
    assert store.snapshot("xyz:GOLD") is None and store.coins() == []
    assert not store.update("xyz:GOLD", 99, bids, asks)  # the watermark survives
    assert store.update("xyz:GOLD", 101, bids, asks) and store.levels("xyz:GOLD") is not None
    with pytest.raises(ValueError):
        L2BookStore(max_age_ms=0.0)


async def test_l2book_subscribed_stored_and_dispatched(fake_hl, make_feed) -> None:
    rec = L2Recorder()
    feed, _ = make_feed(COINS, handler=rec, feed_kwargs={"l2book": True})
    conn = await fake_hl.wait_connections(1)
    await wait_until(lambda: feed.all_acked)
    expected = [{"type": t, "coin": c} for t in ("bbo", "activeAssetCtx", "l2Book") for c in COINS]
    assert sorted(conn.subscriptions, key=json.dumps) == sorted(expected, key=json.dumps)
    assert feed.stats.subscriptions == 9 and ("l2Book", "xyz:GOLD") in rec.subscribed
    store = feed.l2book
    assert store is not None
    await conn.send(l2_frame("xyz:SILVER", BIDS3, ASKS3, time_ms=10))
    await conn.send(l2_frame("xyz:SILVER", [("1", "1")], [("2", "1")], time_ms=9))  # regress
    await conn.send(l2_frame("xyz:SILVER", [("113", "1")], [("112", "1")], time_ms=11))  # crossed
    await conn.send({"channel": "l2Book", "data": {"coin": "xyz:SILVER", "time": 12}})
    await conn.send(l2_frame("xyz:NOTSUB", BIDS3, ASKS3, time_ms=12))  # unexpected coin
    await conn.send(l2_frame("xyz:GOLD", [], [("2000.5", "0.25")], time_ms=13))
    await wait_until(lambda: len(rec.l2) == 2)
    assert rec.l2[0] == (
        "xyz:SILVER", 10, [(112.88, 3.1), (112.8, 1.0), (112.7, 2.5)],
        [(112.95, 0.8), (113.0, 1.2), (113.1, 4.0)],
    )
    assert rec.l2[1] == ("xyz:GOLD", 13, [], [(2000.5, 0.25)])
    assert store.levels("xyz:SILVER") == (rec.l2[0][2], rec.l2[0][3])
    assert store.last_time_ms("xyz:SILVER") == 10 and store.stats.regressions == 1
    st = feed.stats
    assert st.l2_rejected == 1 and st.malformed == 1 and st.unexpected_coin == 1
    assert st.frames_by_channel["l2Book"] == 4  # valid frames (the regressing one included)
    assert st.connects == 1 and rec.disconnected == [] and feed.connected
    # a reconnect drops the levels (stale by definition) and resubscribes l2Book
    await conn.close()
    conn2 = await fake_hl.wait_connections(2)
    assert store.levels("xyz:SILVER") is None and store.stats.invalidations == 1
    await conn2.wait_for(lambda c: len(c.subscriptions) == 9)
    await conn2.send(l2_frame("xyz:SILVER", BIDS3, ASKS3, time_ms=20))
    await wait_until(lambda: store.levels("xyz:SILVER") is not None)


async def test_l2book_without_handler_method_only_fills_the_store(fake_hl, make_feed) -> None:
    store = L2BookStore()
    feed, rec = make_feed(["xyz:SILVER"], feed_kwargs={"l2book": True, "l2book_store": store})
    assert feed.l2book is store
    conn = await fake_hl.wait_connections(1)
    await wait_until(lambda: feed.all_acked)
    await conn.send(l2_frame("xyz:SILVER", BIDS3, ASKS3, time_ms=10))
    await conn.send(frames_bbo_silver())
    await wait_until(lambda: len(rec.bbo) == 1)
    assert store.levels("xyz:SILVER") is not None and feed.connected


def frames_bbo_silver() -> dict[str, Any]:
    return {
        "channel": "bbo",
        "data": {"coin": "xyz:SILVER", "time": 5,
                 "bbo": [{"px": "112.88", "sz": "3.1", "n": 1}, None]},
    }


async def test_l2book_off_by_default_never_subscribed_frames_ignored(fake_hl, make_feed) -> None:
    rec = L2Recorder()
    feed, _ = make_feed(["xyz:SILVER"], handler=rec)
    conn = await fake_hl.wait_connections(1)
    await wait_until(lambda: feed.all_acked)
    assert all(s["type"] != "l2Book" for s in conn.subscriptions) and feed.l2book is None
    await conn.send(l2_frame("xyz:SILVER", BIDS3, ASKS3))
    await conn.send(frames_bbo_silver())
    await wait_until(lambda: len(rec.bbo) == 1)
    assert rec.l2 == [] and feed.stats.unknown_by_channel == {"l2Book": 1}


def test_l2book_store_without_the_flag_is_refused() -> None:
    from engine.config import VenueConfig

    with pytest.raises(ValueError, match="l2book"):
        HyperliquidFeed(VenueConfig(), COINS, Recorder(), l2book_store=L2BookStore())


async def test_busy_poll_config_reaches_the_connection_and_frames_flow(
    fake_hl, make_feed, frames
) -> None:
    """``[venue] busy_poll_us`` is applied to each new connection; the feed keeps working:
    frames dispatched, pings answered, the spin passes through the scheduler."""
    feed, rec = make_feed(COINS, busy_poll_us=20_000)
    conn = await fake_hl.wait_connections(1)
    await wait_until(lambda: feed.all_acked)
    session = feed._session  # noqa: SLF001 - the live connection's setting is the point
    assert session is not None
    assert session.conn.busy_poll_s == 0.02
    for i in range(5):
        await conn.send(frames.ctx("xyz:SILVER", f"112.9{i}", None))
        await trio.sleep(0.01)
    await wait_until(lambda: len(rec.ctx) == 5)
    assert session.conn.stats.busy_polls >= 1


async def test_a_failing_spin_hook_stays_off_after_a_reconnect(
    fake_hl, make_feed, frames, nursery, caplog
) -> None:
    calls = 0

    def bad() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("warm-up broke")

    feed, rec = make_feed(COINS, start=False, busy_poll_us=200_000)
    feed.spin_hook = bad
    nursery.start_soon(feed.run)
    conn = await fake_hl.wait_connections(1)
    await wait_until(lambda: feed.all_acked)
    await wait_until(lambda: calls >= 1)  # the spin ran it (and dropped it)
    await conn.drop()
    conn2 = await fake_hl.wait_connections(2)
    await wait_until(lambda: feed.all_acked)
    assert feed.spin_hook is None  # not handed to the new connection
    await conn2.send(frames.ctx("xyz:SILVER", "112.91", None))
    await wait_until(lambda: len(rec.ctx) == 1)
    await trio.sleep(0.05)
    assert calls == 1
    assert caplog.text.count("spin hook") == 1
    stats = feed.busy_poll_stats
    assert stats.busy_polls > 0 and stats.spin_hooks == 1
