"""The Bybit adapter against the Bybit simulator over loopback (ephemeral port): REST with time
sync, instruments and funding history; public and private streams; place/amend/cancel with the
orderLinkId reused on retry; auth failures; rate-limit back-off; reconnect with resubscribe."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import attrs
import pytest
import trio

from engine.core.neutral import (
    BookTop,
    CancelAll,
    CancelOrder,
    FundingQuote,
    FundingSettlement,
    InstrumentKind,
    OrderAck,
    OrderDone,
    OrderFill,
    OrderReject,
    OrderRequest,
    PlaceOrder,
    PositionUpdate,
    RejectReason,
    Side,
)
from engine.sim.bybit.exchange import Exchange
from engine.sim.bybit.server import BybitSimServer
from engine.venues.bybit import urls
from engine.venues.bybit.codec import BybitApiError, BybitDecoder
from engine.venues.bybit.execution import BybitExecution, new_order_link_id
from engine.venues.bybit.http import HttpClient, HttpError
from engine.venues.bybit.rest import BybitRest
from engine.venues.bybit.signing import BybitCredentials
from engine.venues.bybit.ws import BybitAuthError, BybitStream

KEY, SECRET = "test-key", "test-secret"


def wall_ms() -> float:
    return time.time() * 1000.0


@attrs.define
class Rig:
    server: BybitSimServer
    ex: Exchange
    urls: urls.BybitUrls
    nursery: trio.Nursery

    def rest(self, creds: BybitCredentials | None = None,
             clock: Callable[[], float] = wall_ms) -> BybitRest:
        return BybitRest(HttpClient(self.urls.rest, timeout_s=5.0), clock,
                         creds or BybitCredentials(KEY, SECRET), backoff_base_s=0.01)

    async def stream(self, url: str, topics: list[str], kind: InstrumentKind,
                     creds: BybitCredentials | None = None) -> tuple[BybitStream, list[Any]]:
        got: list[Any] = []
        st = BybitStream(url, topics, BybitDecoder(kind), got.append, wall_ms, creds,
                         ping_interval_s=0.5, pong_timeout_s=0.4, reconnect_base_s=0.05,
                         reconnect_max_s=0.2)
        await self.nursery.start(st.run)
        return st, got


@pytest.fixture
async def rig(nursery: trio.Nursery) -> AsyncIterator[Rig]:
    ex = Exchange(seed=3, now_ms=int(wall_ms()))
    ex.add_account(KEY, SECRET, usdt=100_000.0, coins={"BTC": 1.0})
    server = BybitSimServer(ex, tick_s=0.03)
    base = await nursery.start(server.serve)
    yield Rig(server, ex, urls.local(base), nursery)


async def wait_for(got: list[Any], pred: Callable[[Any], bool]) -> Any:
    with trio.fail_after(5.0):
        while True:
            for item in got:
                if pred(item):
                    return item
            await trio.sleep(0.01)


async def until(cond: Callable[[], bool]) -> None:
    with trio.fail_after(5.0):
        while not cond():  # noqa: ASYNC110 - polling a counter another task increments
            await trio.sleep(0.02)


async def test_rest_time_instruments_and_funding_history(rig: Rig) -> None:
    skewed = rig.rest(clock=lambda: wall_ms() - 60_000)  # host clock a minute slow
    offset = await skewed.sync_time()
    assert 59_000 < offset < 61_000
    lin = await skewed.instruments_info("linear")
    assert {i.symbol for i in lin} == {"BTCUSDT", "ETHUSDT"}
    assert all(i.funding_interval_ms == 8 * 3_600_000 for i in lin)
    rig.ex.set_funding("BTCUSDT", 0.0003, next_funding_ms=int(wall_ms()) + 100,
                       interval_ms=60_000)
    (btc,) = await skewed.instruments_info("linear", "BTCUSDT")
    assert btc.funding_interval_ms == 60_000  # the venue's own interval, not 8 h
    spot = await skewed.instruments_info("spot")
    assert spot[0].kind is InstrumentKind.SPOT and spot[0].lot_size == Decimal("0.000001")
    await trio.sleep(0.3)
    hist = await skewed.funding_history("BTCUSDT", start_ms=int(wall_ms()) - 10_000)
    assert hist and hist[-1].rate == 0.0003


async def test_public_streams_linear_and_spot(rig: Rig) -> None:
    _, lin = await rig.stream(rig.urls.ws_public_linear,
                              ["tickers.BTCUSDT", "orderbook.1.BTCUSDT"],
                              InstrumentKind.LINEAR_PERP)
    _, spot = await rig.stream(rig.urls.ws_public_spot, ["orderbook.1.BTCUSDT"],
                               InstrumentKind.SPOT)
    q = await wait_for(lin, lambda e: isinstance(e, FundingQuote))
    assert q.interval_ms == 8 * 3_600_000 and q.bid is not None and q.bid < q.ask
    await wait_for(lin, lambda e: isinstance(e, BookTop) and e.kind is InstrumentKind.LINEAR_PERP)
    top = await wait_for(spot, lambda e: isinstance(e, BookTop))
    assert top.kind is InstrumentKind.SPOT and top.bid < top.ask
    n = sum(isinstance(e, FundingQuote) for e in lin)
    await trio.sleep(0.3)  # deltas keep coming and merge into full quotes
    assert sum(isinstance(e, FundingQuote) for e in lin) > n


async def test_private_stream_place_fill_cancel(rig: Rig) -> None:
    creds = BybitCredentials(KEY, SECRET)
    st, priv = await rig.stream(rig.urls.ws_private, ["order", "execution", "position", "wallet"],
                                InstrumentKind.LINEAR_PERP, creds)
    await trio.sleep(0.1)  # subscription acked
    ex = BybitExecution(rig.rest(creds), wall_ms)
    intent = PlaceOrder("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP, Side.SELL,
                        Decimal("0.010"), new_order_link_id("t"))
    ack = await ex.place(intent)
    assert isinstance(ack, OrderAck) and ack.client_id == intent.client_id
    fill = await wait_for(priv, lambda e: isinstance(e, OrderFill))
    assert fill.client_id == intent.client_id and fill.side is Side.SELL and fill.fee > 0
    done = await wait_for(priv, lambda e: isinstance(e, OrderDone))
    assert done.filled_qty == pytest.approx(0.01) and not done.canceled
    pos = await wait_for(priv, lambda e: isinstance(e, PositionUpdate))
    assert pos.size == pytest.approx(-0.01)
    # a resting limit far from the market, then cancel by orderLinkId
    resting = PlaceOrder("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP, Side.BUY,
                         Decimal("0.010"), new_order_link_id("t"), price=Decimal("1000.0"))
    assert isinstance(await ex.place(resting), OrderAck)
    await wait_for(priv, lambda e: isinstance(e, OrderAck) and e.client_id == resting.client_id)
    c = await ex.cancel(CancelOrder("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP,
                                    resting.client_id))
    assert isinstance(c, OrderAck)
    gone = await wait_for(priv, lambda e: isinstance(e, OrderDone)
                          and e.client_id == resting.client_id)
    assert gone.canceled and gone.filled_qty == 0
    again = await ex.cancel(CancelOrder("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP,
                                        resting.client_id))
    assert isinstance(again, OrderReject) and again.reason is RejectReason.NOT_FOUND
    assert again.request is OrderRequest.CANCEL  # the cancel was refused, not the order
    # cancel-all
    for _ in range(2):
        await ex.place(attrs.evolve(resting, client_id=new_order_link_id("t")))
    canceled = await ex.cancel_all(CancelAll("bybit", InstrumentKind.LINEAR_PERP, "BTCUSDT"))
    assert len(canceled) == 2
    assert st.malformed == 0


async def test_spot_leg_and_post_only_and_balance_rejects(rig: Rig) -> None:
    ex = BybitExecution(rig.rest(), wall_ms)
    buy = PlaceOrder("bybit", "BTCUSDT", InstrumentKind.SPOT, Side.BUY, Decimal("0.01"),
                     new_order_link_id("s"))
    assert isinstance(await ex.place(buy), OrderAck)
    # the buy's 0.1 % fee is kept in BTC (Bybit's rule): 0.01 × 0.999 arrives
    assert rig.ex.accounts[KEY].coins["BTC"] == pytest.approx(1.00999)
    too_big = attrs.evolve(buy, qty=Decimal("100"), client_id=new_order_link_id("s"))
    rej = await ex.place(too_big)
    assert isinstance(rej, OrderReject) and rej.reason is RejectReason.INSUFFICIENT_BALANCE
    assert rej.request is OrderRequest.PLACE
    reduce = PlaceOrder("bybit", "ETHUSDT", InstrumentKind.LINEAR_PERP, Side.BUY,
                        Decimal("0.01"), new_order_link_id("s"), reduce_only=True)
    rej2 = await ex.place(reduce)
    assert isinstance(rej2, OrderReject) and "110017" in rej2.detail


async def test_order_link_id_reused_on_retry_places_one_order(rig: Rig) -> None:
    ex = BybitExecution(rig.rest(), wall_ms)
    intent = PlaceOrder("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP, Side.BUY,
                        Decimal("0.010"), new_order_link_id("r"), price=Decimal("1000.0"))
    first = await ex.place(intent)
    second = await ex.place(intent)  # the retry of an intent whose answer was "lost"
    assert isinstance(first, OrderAck) and isinstance(second, OrderAck)
    assert first.venue_order_id == second.venue_order_id
    assert len(rig.ex.accounts[KEY].orders) == 1


async def test_auth_failures(rig: Rig) -> None:
    bad = BybitCredentials(KEY, "wrong-secret")
    with pytest.raises(BybitApiError) as e:
        await rig.rest(bad).get("/v5/position/list", {"category": "linear"}, signed=True)
    assert e.value.reason is RejectReason.AUTH
    with pytest.raises(BybitApiError) as e:
        await rig.rest(BybitCredentials("nobody", SECRET)).get(
            "/v5/position/list", {"category": "linear"}, signed=True)
    assert e.value.ret_code == 10003
    st = BybitStream(rig.urls.ws_private, ["order"], BybitDecoder(), lambda e: None, wall_ms,
                     bad)
    with pytest.raises(BybitAuthError, match="refused auth"):
        await st.run()
    assert rig.server.auth_failures == 3


async def test_timestamp_outside_window_resyncs_once(rig: Rig) -> None:
    slow = rig.rest(clock=lambda: wall_ms() - 30_000)
    result = await slow.get("/v5/position/list", {"category": "linear"}, signed=True)
    assert result["category"] == "linear" and slow.time_resyncs == 1


async def test_rate_limit_answers_back_off_then_succeed(rig: Rig) -> None:
    rest = rig.rest()
    rig.ex.faults.rate_limit_next = 2
    t0 = trio.current_time()
    result = await rest.get("/v5/position/list", {"category": "linear"}, signed=True)
    assert result["category"] == "linear"
    assert rest.rate_limited == 2
    assert trio.current_time() - t0 >= 0.15  # waited for X-Bapi-Limit-Reset-Timestamp
    rig.ex.faults.rate_limit_next = 10
    with pytest.raises(BybitApiError) as e:
        await rest.get("/v5/position/list", {"category": "linear"}, signed=True)
    assert e.value.reason is RejectReason.RATE_LIMITED


async def test_reconnect_resubscribes_public_and_private(rig: Rig) -> None:
    pub, lin = await rig.stream(rig.urls.ws_public_linear, ["tickers.BTCUSDT"],
                                InstrumentKind.LINEAR_PERP)
    creds = BybitCredentials(KEY, SECRET)
    priv_st, priv = await rig.stream(rig.urls.ws_private, ["execution"],
                                     InstrumentKind.LINEAR_PERP, creds)
    await wait_for(lin, lambda e: isinstance(e, FundingQuote))
    await rig.server.drop_connections()
    await until(lambda: pub.connects >= 2 and priv_st.connects >= 2)
    lin.clear()
    await wait_for(lin, lambda e: isinstance(e, FundingQuote))  # resubscribed
    await trio.sleep(0.1)
    # private resubscribed after re-auth: a funding settlement reaches us
    ex = BybitExecution(rig.rest(creds), wall_ms)
    await ex.place(PlaceOrder("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP, Side.SELL,
                              Decimal("0.010"), new_order_link_id("f")))
    rig.ex.set_funding("BTCUSDT", 0.001, next_funding_ms=int(wall_ms()) + 50)
    s = await wait_for(priv, lambda e: isinstance(e, FundingSettlement))
    assert s.amount > 0 and s.position_size == pytest.approx(-0.01)  # short receives


async def test_silent_server_triggers_pong_timeout_reconnect(rig: Rig) -> None:
    pub, lin = await rig.stream(rig.urls.ws_public_linear, [], InstrumentKind.LINEAR_PERP)
    rig.server.clients[-1].closed = True  # the server stops writing to this socket
    await until(lambda: pub.connects >= 2)


async def test_lost_answer_retry_reuses_the_order_link_id(rig: Rig) -> None:
    """The venue executes the create but the answer is lost: the REST client retries with the
    same body, the venue answers 110072, execution finds the order by orderLinkId: one order."""
    rest = rig.rest()
    ex = BybitExecution(rest, wall_ms)
    rig.ex.faults.drop_next_answer = 1
    intent = PlaceOrder("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP, Side.BUY,
                        Decimal("0.010"), new_order_link_id("lost"), price=Decimal("1000.0"))
    ack = await ex.place(intent)
    assert isinstance(ack, OrderAck) and ack.client_id == intent.client_id
    (o,) = rig.ex.accounts[KEY].orders.values()
    assert o.link_id == intent.client_id and ack.venue_order_id == o.order_id
    assert rest.http.connects == 2  # the lost answer closed the first connection


async def test_http_timeout_and_refused_connection(nursery: trio.Nursery) -> None:
    import socket

    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    listeners = await nursery.start(trio.serve_tcp, silent, 0)
    port = listeners[0].socket.getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}", timeout_s=0.2)
    with pytest.raises(HttpError, match="no answer within"):
        await client.request("GET", "/v5/market/time")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    slept: list[float] = []

    async def fake_sleep(d: float) -> None:
        slept.append(d)

    rest = BybitRest(HttpClient(f"http://127.0.0.1:{dead}", timeout_s=1.0), wall_ms,
                     max_retries=2, backoff_base_s=0.1, sleep=fake_sleep)
    with pytest.raises(HttpError, match="connect"):
        await rest.get("/v5/market/time", {})
    assert slept == [0.1, 0.2]  # exponential back-off between attempts


async def test_book_gap_resubscribes_and_garbage_is_counted(rig: Rig) -> None:
    st, lin = await rig.stream(rig.urls.ws_public_linear, ["tickers.BTCUSDT"],
                               InstrumentKind.LINEAR_PERP)
    await wait_for(lin, lambda e: isinstance(e, FundingQuote))
    client = rig.server.clients[-1]
    snap = ('{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT",'
            '"b":[["10","1"]],"a":[["11","1"]],"u":5,"seq":1}}')
    gap = ('{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":2,"data":{"s":"BTCUSDT",'
           '"b":[],"a":[],"u":9,"seq":2}}')
    await client.send_text(snap)
    await client.send_text(gap)
    await client.send_text("not json at all")
    await until(lambda: st.resubscribes == 1 and st.malformed == 1)
    # the simulator has no orderbook.50: the resubscribe is refused, and that is logged
    await until(lambda: any("orderbook.50.BTCUSDT" in f for f in st.subscribe_failures))
    assert any(isinstance(e, BookTop) and e.bid == 10.0 for e in lin)


async def test_bad_requests_never_crash_the_simulator(rig: Rig) -> None:
    http = HttpClient(rig.urls.rest, timeout_s=5.0)
    creds = BybitCredentials(KEY, SECRET)
    for body in (b"[1,2]", b"{", b'{"category":"linear","symbol":"BTCUSDT","orderLinkId":"z",'
                 b'"qty":"abc"}'):
        ts = int(wall_ms())
        resp = await http.request("POST", "/v5/order/amend",
                                  creds.rest_headers(ts, 5000, body), body)
        assert resp.status == 200
        assert b'"retCode":10001' in resp.body or b'"retCode":110001' in resp.body
    resp = await http.request("POST", "/sim/control", {}, b"not json")
    assert b'"retCode":10001' in resp.body
    resp = await http.request("GET", "/v5/market/funding/history?symbol=BTCUSDT&limit=x")
    assert b'"retCode":10001' in resp.body
    st, lin = await rig.stream(rig.urls.ws_public_linear, [], InstrumentKind.LINEAR_PERP)
    assert st._ws is not None
    for text in ('["op"]', '{"op":"subscribe","args":"tickers.BTCUSDT"}', '{"op":"subscribe",'
                 '"args":[{"x":1}]}', '{"op":7}'):
        await st._ws.send_message(text)
    await st.subscribe(["tickers.BTCUSDT"])
    await wait_for(lin, lambda e: isinstance(e, FundingQuote))  # the server is still serving
    assert len(st.subscribe_failures) >= 3


async def test_server_errors_are_retried_then_reported(nursery: trio.Nursery) -> None:
    import h11

    answers = [502, 502, 200]

    async def flaky(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
                continue
            if isinstance(ev, h11.EndOfMessage):
                status = answers.pop(0) if answers else 503
                body = (b'{"retCode":0,"retMsg":"OK","result":{"timeSecond":"1",'
                        b'"timeNano":"1000000000"},"time":1}' if status == 200 else b"<html>")
                await stream.send_all(conn.send(h11.Response(
                    status_code=status, headers=[("Content-Length", str(len(body)))]))
                    + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                conn.start_next_cycle()

    listeners = await nursery.start(trio.serve_tcp, flaky, 0)
    port = listeners[0].socket.getsockname()[1]
    slept: list[float] = []

    async def fake_sleep(d: float) -> None:
        slept.append(d)

    rest = BybitRest(HttpClient(f"http://127.0.0.1:{port}"), wall_ms, max_retries=2,
                     backoff_base_s=0.1, sleep=fake_sleep)
    assert (await rest.get("/v5/market/time", {}))["timeSecond"] == "1"
    assert slept == [0.1, 0.2]
    from engine.venues.bybit.codec import CodecError

    with pytest.raises(CodecError, match="HTTP 503"):
        await rest.get("/v5/market/time", {})
