"""User streams of HyperliquidFeed (orderUpdates, userFills) against the fake server.

Covers: the subscriptions (master account, resubscribed on reconnect), READY keyed on the two
acks and never on data (P1/BUG-001), orderUpdates always an array (P2) with per-element
failures counted, userFills with an optional ``isSnapshot`` (P15/P16), and handlers that lack
the optional methods.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio

from engine.venues.hyperliquid.client import HyperliquidFeed
from engine.venues.hyperliquid.wire import OrderUpdate, UserFill, WireDecoder

from .conftest import UserRecorder, order_update, poll_until, user_fill

MASTER = "0x0116A3D95994BCC7D6A84380ED6256FBB32CD25D"
MASTER_LC = MASTER.lower()
COINS = ["xyz:SILVER", "xyz:GOLD"]


def user_feed(make_feed: Any, **kw: Any) -> tuple[HyperliquidFeed, UserRecorder]:
    rec = UserRecorder()
    feed, _ = make_feed(COINS, handler=rec, feed_kwargs={"user": MASTER, **kw})
    return feed, rec


def not_user(sub: dict[str, Any]) -> bool:
    return "user" not in sub


# ---------------------------------------------------------------- subscriptions and READY


async def test_user_subscriptions_sent_with_the_master_address(fake_hl, make_feed) -> None:
    feed, rec = user_feed(make_feed)
    conn = await fake_hl.wait_connections(1)
    await poll_until(lambda: feed.all_acked)
    users = [s for s in conn.subscriptions if "user" in s]
    assert users == [
        {"type": "orderUpdates", "user": MASTER_LC},
        {"type": "userFills", "user": MASTER_LC},
    ]
    assert sum(1 for s in conn.subscriptions if "coin" in s) == 4
    assert feed.stats.subscriptions == 6 and feed.stats.acked == 6
    assert rec.user_acked == [True] and feed.user_channels_acked and feed.stats.user_acked
    assert ("orderUpdates", None) in rec.subscribed and ("userFills", None) in rec.subscribed


async def test_ready_is_keyed_on_both_acks_never_on_data(fake_hl, make_feed, caplog) -> None:
    fake_hl.ack_filter = not_user
    feed, rec = user_feed(make_feed)
    conn = await fake_hl.wait_connections(1)
    await conn.wait_for(lambda c: len(c.subscriptions) == 6)
    await poll_until(lambda: feed.stats.acked == 4)
    # data before any user ack (an active account) does not make the channels ready
    await conn.send({"channel": "orderUpdates", "data": [order_update()]})
    await conn.send({"channel": "userFills", "data": {"user": MASTER_LC, "fills": []}})
    await poll_until(lambda: len(rec.user_fills) == 1)
    assert rec.user_acked == [] and not feed.user_channels_acked
    await conn.ack({"type": "orderUpdates", "user": MASTER_LC})
    await trio.sleep(0.05)
    assert rec.user_acked == [] and not feed.user_channels_acked  # one of two is not enough
    # P1: a response with the type at data.type is not an ack
    await conn.send({"channel": "subscriptionResponse", "data": {"type": "userFills"}})
    await poll_until(lambda: feed.stats.malformed == 1)
    assert rec.user_acked == []
    # the ack is case-insensitive on the address and needs no data at all (idle account)
    await conn.ack({"type": "userFills", "user": MASTER})
    await poll_until(lambda: rec.user_acked == [True])
    assert feed.user_channels_acked and feed.all_acked


async def test_acks_reset_on_reconnect_and_resubscribed(fake_hl, make_feed) -> None:
    feed, rec = user_feed(make_feed)
    conn1 = await fake_hl.wait_connections(1)
    await poll_until(lambda: rec.user_acked == [True])
    fake_hl.ack_filter = not_user  # the second connection withholds the user acks at first
    await conn1.drop()
    conn2 = await fake_hl.wait_connections(2)
    await conn2.wait_for(lambda c: len(c.subscriptions) == 6)
    await poll_until(lambda: rec.user_acked == [True, False])
    assert not feed.user_channels_acked and not feed.stats.user_acked
    # ack order: False comes before on_disconnected
    i_false = rec.calls.index(("user_acked", False))
    assert rec.calls[i_false + 1][0] == "disconnected"
    assert [s for s in conn2.subscriptions if "user" in s] == [
        {"type": "orderUpdates", "user": MASTER_LC},
        {"type": "userFills", "user": MASTER_LC},
    ]
    for s in [s for s in conn2.subscriptions if "user" in s]:
        await conn2.ack(s)
    await poll_until(lambda: rec.user_acked == [True, False, True])
    assert feed.user_channels_acked


async def test_unsubscribe_ack_of_a_user_channel_drops_ready(fake_hl, make_feed) -> None:
    feed, rec = user_feed(make_feed)
    conn = await fake_hl.wait_connections(1)
    await poll_until(lambda: rec.user_acked == [True])
    await conn.ack({"type": "userFills", "user": MASTER_LC}, method="unsubscribe")
    await poll_until(lambda: rec.user_acked == [True, False])
    assert not feed.user_channels_acked and not feed.all_acked


async def test_ack_for_another_user_is_not_ours(fake_hl, make_feed) -> None:
    fake_hl.ack_filter = not_user
    feed, rec = user_feed(make_feed)
    conn = await fake_hl.wait_connections(1)
    await poll_until(lambda: feed.stats.acked == 4)
    other = "0x" + "ab" * 20
    await conn.ack({"type": "orderUpdates", "user": other})
    await conn.ack({"type": "userFills", "user": other})
    await poll_until(lambda: feed.stats.unexpected_ack == 2)
    assert rec.user_acked == [] and not feed.user_channels_acked


async def test_user_must_be_an_address(make_feed) -> None:
    with pytest.raises(ValueError, match="not an address"):
        make_feed(COINS, start=False, feed_kwargs={"user": "0x1234"})


async def test_no_user_no_user_subscriptions(fake_hl, make_feed) -> None:
    feed, rec = make_feed(COINS)
    conn = await fake_hl.wait_connections(1)
    await poll_until(lambda: feed.all_acked)
    assert all("user" not in s for s in conn.subscriptions)
    assert not feed.user_channels_acked
    await conn.send({"channel": "orderUpdates", "data": [order_update()]})
    await poll_until(lambda: feed.stats.user_unsubscribed == 1)


# ---------------------------------------------------------------- orderUpdates


async def test_order_updates_array_decoded_in_order(fake_hl, make_feed) -> None:
    feed, rec = user_feed(make_feed)
    conn = await fake_hl.wait_connections(1)
    await poll_until(lambda: feed.user_channels_acked)
    a = order_update("0x" + "11" * 16, "open", sz="0.2", orig_sz="0.2", oid=1)
    b = order_update(None, "canceled", sz="0.05", orig_sz="0.2", oid=2, side="A")
    b["order"]["reduceOnly"] = True
    b["order"]["extraField"] = {"x": 1}  # extra fields are accepted
    await conn.send({"channel": "orderUpdates", "data": [a, b]})
    await poll_until(lambda: len(rec.order_updates) == 1)
    u1, u2 = rec.order_updates[0]
    assert u1 == OrderUpdate(
        coin="xyz:SILVER",
        side="B",
        sz="0.2",
        orig_sz="0.2",
        oid=1,
        status="open",
        cloid="0x" + "11" * 16,
        limit_px="105",
        timestamp=1769339470600,
        status_timestamp=1769339470600,
        reduce_only=False,
    )
    assert u1.is_buy and not u2.is_buy
    assert u2.cloid is None and u2.reduce_only and u2.sz == "0.05" and u2.status == "canceled"
    assert feed.stats.order_update_frames == 1 and feed.stats.order_updates == 2


async def test_empty_order_updates_array_is_valid(fake_hl, make_feed) -> None:
    feed, rec = user_feed(make_feed)
    conn = await fake_hl.wait_connections(1)
    await poll_until(lambda: feed.user_channels_acked)
    await conn.send({"channel": "orderUpdates", "data": []})
    await poll_until(lambda: len(rec.order_updates) == 1)
    assert rec.order_updates == [[]]
    assert feed.stats.malformed == 0 and feed.stats.bad_elements == 0


async def test_bad_order_update_elements_counted_rest_kept(fake_hl, make_feed, caplog) -> None:
    feed, rec = user_feed(make_feed)
    conn = await fake_hl.wait_connections(1)
    await poll_until(lambda: feed.user_channels_acked)
    good1 = order_update("0x" + "22" * 16, "filled", oid=10)
    no_oid = order_update(oid=11)
    del no_oid["order"]["oid"]
    bad_sz = order_update(oid=12, sz="lots")
    str_oid = order_update(oid=13)
    str_oid["order"]["oid"] = "13"
    bad_side = order_update(oid=14, side="S")
    good2 = order_update("0x" + "33" * 16, "iocCancelRejected", oid=15, sz="0.2")
    with caplog.at_level(logging.WARNING):
        await conn.send(
            {
                "channel": "orderUpdates",
                "data": [good1, no_oid, 7, bad_sz, str_oid, bad_side, {}, good2],
            }
        )
        await poll_until(lambda: len(rec.order_updates) == 1)
    assert [u.oid for u in rec.order_updates[0]] == [10, 15]
    assert feed.stats.bad_elements == 6 and feed.stats.malformed == 0
    assert "orderUpdates element skipped" in caplog.text


async def test_order_updates_as_one_object_is_malformed(fake_hl, make_feed) -> None:
    """P2: the predecessor parsed one object; data is an array, an object is malformed."""
    feed, rec = user_feed(make_feed)
    conn = await fake_hl.wait_connections(1)
    await poll_until(lambda: feed.user_channels_acked)
    await conn.send({"channel": "orderUpdates", "data": order_update()})
    await poll_until(lambda: feed.stats.malformed == 1)
    assert rec.order_updates == []


# ---------------------------------------------------------------- userFills


async def test_user_fills_snapshot_then_streaming_without_the_flag(fake_hl, make_feed) -> None:
    feed, rec = user_feed(make_feed)
    conn = await fake_hl.wait_connections(1)
    await poll_until(lambda: feed.user_channels_acked)
    snap = {"isSnapshot": True, "user": MASTER_LC, "fills": [user_fill(1), user_fill(2)]}
    await conn.send({"channel": "userFills", "data": snap})
    # the predecessor's real streaming message: no isSnapshot key, extra fields
    streaming = {"user": MASTER_LC, "fills": [user_fill(3, builderFee="0.01", newKey=[1, 2])]}
    await conn.send({"channel": "userFills", "data": streaming})
    explicit = {"isSnapshot": False, "user": MASTER_LC, "fills": [user_fill(4)]}
    await conn.send({"channel": "userFills", "data": explicit})
    await poll_until(lambda: len(rec.user_fills) == 3)
    (f_snap, is_snap), (f_stream, s2), (f_exp, s3) = rec.user_fills
    assert is_snap is True and s2 is False and s3 is False
    assert [f.tid for f in f_snap] == [1, 2]
    f = f_stream[0]
    assert f == UserFill(
        coin="xyz:SILVER",
        px="112.89",
        sz="2.7",
        side="B",
        time=1769594065851,
        oid=304587174168,
        tid=3,
        fee="0.023317",
        cloid="0xd2ed5e997c5a4cb9946d84c35f0b737c",
        crossed=True,
        dir="Close Short",
        closed_pnl="-0.02673",
        start_position="-6.66",
        hash="0x403b2645eccc82d441b4043434c1a3020115002b87cfa1a6e403d198abc05cbe",
        fee_token="USDC",
        twap_id=None,
        builder_fee="0.01",
    )
    assert f.is_buy
    st = feed.stats
    assert st.user_fill_frames == 3 and st.user_fills == 4 and st.user_snapshots == 1


async def test_bad_fills_counted_rest_kept(fake_hl, make_feed) -> None:
    feed, rec = user_feed(make_feed)
    conn = await fake_hl.wait_connections(1)
    await poll_until(lambda: feed.user_channels_acked)
    no_tid = user_fill(1)
    del no_tid["tid"]
    fills = [
        user_fill(10),
        no_tid,
        user_fill(2, px="0"),
        user_fill(3, sz="-1"),
        user_fill(4, side="buy"),
        user_fill(5, fee="free"),
        user_fill(6, px=112.89),  # a JSON number, not the wire string
        user_fill(11, fee="-0.001", cloid=None),  # a rebate; no cloid
    ]
    await conn.send({"channel": "userFills", "data": {"user": MASTER_LC, "fills": fills}})
    await poll_until(lambda: len(rec.user_fills) == 1)
    assert [f.tid for f in rec.user_fills[0][0]] == [10, 11]
    assert rec.user_fills[0][0][1].cloid is None
    assert feed.stats.bad_elements == 6


async def test_fills_of_another_user_are_dropped(fake_hl, make_feed, caplog) -> None:
    feed, rec = user_feed(make_feed)
    conn = await fake_hl.wait_connections(1)
    await poll_until(lambda: feed.user_channels_acked)
    with caplog.at_level(logging.ERROR):
        await conn.send(
            {"channel": "userFills", "data": {"user": "0x" + "99" * 20, "fills": [user_fill()]}}
        )
        await poll_until(lambda: feed.stats.user_mismatch == 1)
    assert rec.user_fills == [] and "another user" in caplog.text
    # the address comparison is case-insensitive
    await conn.send({"channel": "userFills", "data": {"user": MASTER, "fills": [user_fill()]}})
    await poll_until(lambda: len(rec.user_fills) == 1)


async def test_user_fills_as_a_single_fill_is_malformed(fake_hl, make_feed) -> None:
    """P15: data is {user, fills: [...]}, not one fill."""
    feed, rec = user_feed(make_feed)
    conn = await fake_hl.wait_connections(1)
    await poll_until(lambda: feed.user_channels_acked)
    await conn.send({"channel": "userFills", "data": user_fill()})
    await poll_until(lambda: feed.stats.malformed == 1)
    assert rec.user_fills == []


# ---------------------------------------------------------------- handlers without the methods


async def test_handler_without_user_methods_still_works(fake_hl, make_feed, frames) -> None:
    feed, rec = make_feed(COINS, feed_kwargs={"user": MASTER})
    conn = await fake_hl.wait_connections(1)
    await poll_until(lambda: feed.all_acked)
    assert feed.user_channels_acked
    await conn.send({"channel": "orderUpdates", "data": [order_update()]})
    await conn.send({"channel": "userFills", "data": {"user": MASTER_LC, "fills": [user_fill()]}})
    await conn.send(frames.bbo("xyz:SILVER", ("112.88", "3.1"), ("112.95", "0.8")))
    await poll_until(lambda: len(rec.bbo) == 1)
    assert feed.stats.user_unhandled == 2
    await conn.drop()
    await fake_hl.wait_connections(2)
    await poll_until(lambda: len(rec.disconnected) == 1)


# ---------------------------------------------------------------- decoder unit checks


def test_decoder_user_channels_counted_per_channel() -> None:
    dec = WireDecoder()
    dec.decode(json.dumps({"channel": "orderUpdates", "data": []}))
    dec.decode(json.dumps({"channel": "userFills", "data": {"fills": []}}))
    assert dec.stats.frames_by_channel["orderUpdates"] == 1
    assert dec.stats.frames_by_channel["userFills"] == 1
    assert dec.stats.unknown_channel == 0


def test_decoder_snapshot_flag_optional_default_false() -> None:
    dec = WireDecoder()
    ev = dec.decode(json.dumps({"channel": "userFills", "data": {"fills": [user_fill()]}}))
    assert ev is not None and ev.is_snapshot is False and ev.user is None  # type: ignore[union-attr]
    ev = dec.decode(json.dumps({"channel": "userFills", "data": {"isSnapshot": True, "fills": []}}))
    assert ev is not None and ev.is_snapshot is True  # type: ignore[union-attr]
