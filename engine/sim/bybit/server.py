"""The Bybit simulator's network side: REST v5 and the three WebSocket paths on one port.

A connection whose request head asks for ``Upgrade: websocket`` goes to wsproto
(``/v5/public/linear``, ``/v5/public/spot``, ``/v5/private``); any other is HTTP/1.1 keep-alive
served by h11. Public sockets get a snapshot on subscribe and then ticker deltas (only changed
keys) and ``orderbook.1`` snapshots every tick; the private socket must ``auth`` first and gets
``order``/``execution``/``position``/``wallet`` for its key. ``{"op":"ping"}`` is answered in
each channel's shape. ``GET /v5/execution/list`` answers an account's recent trades (what a
client missed while its private socket was down), ``GET /v5/account/transaction-log`` its
funding payments (``SETTLEMENT`` rows), ``GET /v5/account/wallet-balance`` and
``GET /v5/position/list`` what it holds, ``GET /v5/account/fee-rate`` its fee rates per
category/symbol. ``POST /sim/control`` sets fault knobs, funding and fee rates (loopback tooling); ``{"disconnect": true}``
there, or :meth:`BybitSimServer.drop_connections`, cuts every socket (the disconnect fault);
``{"clock_offset_ms": N}`` moves the venue's clock N ms away from the host's (a skewed venue
clock: ``/v5/market/time``, every timestamp check and the exchange's own time follow it).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from engine.sim.bybit import wire
from engine.sim.bybit.exchange import Exchange, OrderError

log = logging.getLogger("engine.sim.bybit")

WS_PATHS = {"/v5/public/linear": "linear", "/v5/public/spot": "spot", "/v5/private": "private"}
PRIVATE_TOPICS = ("order", "execution", "position", "wallet")
_RECV = 65536


class WsClient:
    def __init__(self, conn_id: str, channel: str, stream: trio.SocketStream,
                 ws: WSConnection) -> None:
        self.conn_id = conn_id
        self.channel = channel
        self.stream = stream
        self.ws = ws
        self.topics: set[str] = set()
        self.key: str | None = None
        self.send_lock = trio.Lock()
        self.closed = False
        self.last_ticker: dict[str, dict[str, Any]] = {}

    async def send_text(self, text: str) -> None:
        await self.send_event(TextMessage(data=text))

    async def send_event(self, event: Any) -> None:
        """Every write goes through the lock: one writer per socket at a time."""
        if self.closed:
            return
        async with self.send_lock:
            try:
                await self.stream.send_all(self.ws.send(event))
            except (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
                self.closed = True


class BybitSimServer:
    """Serve ``exchange`` on ``host:port`` (0 = ephemeral). ``clock`` returns epoch ms."""

    def __init__(self, exchange: Exchange, host: str = "127.0.0.1", port: int = 0,
                 tick_s: float = 0.1, clock: Callable[[], float] | None = None) -> None:
        self.exchange = exchange
        self.host = host
        self.port = port
        self.tick_s = tick_s
        self.clock = clock or (lambda: time.time() * 1000.0)
        self.clients: list[WsClient] = []
        self._conn_ids = itertools.count(1)
        self.requests = 0
        self.auth_failures = 0
        self._streams: set[trio.SocketStream] = set()
        self.drop_requested = False  # POST /sim/control {"disconnect": true}
        self.drops = 0
        self.clock_offset_ms = 0.0  # POST /sim/control {"clock_offset_ms": N}: a skewed venue

    def now(self) -> int:
        return int(self.clock() + self.clock_offset_ms)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def serve(self, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ticker)
            task_status.started(self.base_url)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def drop_connections(self) -> None:
        """Cut every connection abruptly (the disconnect fault)."""
        self.drops += 1
        for stream in list(self._streams):
            await trio.aclose_forcefully(stream)
        for c in self.clients:
            c.closed = True

    # -- the clock --------------------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self.tick_s)
            self.exchange.step(self.now())
            await self.publish()

    async def publish(self) -> None:
        """Public ticks and every queued private message."""
        now = self.now()
        ex = self.exchange
        for c in list(self.clients):
            if c.closed:
                self.clients.remove(c)
                continue
            if c.channel == "private":
                continue
            for topic in sorted(c.topics):
                await self._push_public(c, topic, now, snapshot=False)
        while ex.outbox:
            key, topic, data = ex.outbox.popleft()
            msg = wire.dumps({"id": f"{key}-{now}", "topic": topic, "creationTime": now,
                              "data": [data]})
            for c in self.clients:
                if c.channel == "private" and c.key == key and topic in c.topics:
                    await c.send_text(msg)

    async def _push_public(self, c: WsClient, topic: str, now: int, snapshot: bool) -> None:
        kind, _, symbol = topic.rpartition(".")
        ex = self.exchange
        if kind == "tickers":
            data = ex.ticker(symbol, c.channel)
            if c.channel == "spot" or snapshot:
                c.last_ticker[symbol] = data
                await c.send_text(wire.dumps({"topic": topic, "type": "snapshot", "data": data,
                                              "cs": now, "ts": now}))
                return
            prev = c.last_ticker.get(symbol, {})
            delta = {k: v for k, v in data.items() if prev.get(k) != v}
            c.last_ticker[symbol] = data
            if delta:
                delta["symbol"] = symbol
                await c.send_text(wire.dumps({"topic": topic, "type": "delta", "data": delta,
                                              "cs": now, "ts": now}))
        elif kind == "orderbook.1":
            data = ex.book1(symbol, c.channel)
            data["u"] = now
            data["seq"] = now
            await c.send_text(wire.dumps({"topic": topic, "ts": now, "type": "snapshot",
                                          "data": data, "cts": now}))

    # -- connections ------------------------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        self._streams.add(stream)
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                data = await stream.receive_some(_RECV)
                if not data:
                    return
                head += data
                if len(head) > 65536:
                    return
            if b"upgrade: websocket" in head.split(b"\r\n\r\n")[0].lower():
                await self._serve_ws(stream, head)
            else:
                await self._serve_http(stream, head)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._streams.discard(stream)
            await trio.aclose_forcefully(stream)

    async def _serve_http(self, stream: trio.SocketStream, first: bytes) -> None:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(first)
        while True:
            req: h11.Request | None = None
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(_RECV)
                    conn.receive_data(data)
                    if not data and conn.their_state is not h11.DONE:
                        return
                    continue
                if isinstance(event, h11.Request):
                    req = event
                elif isinstance(event, h11.Data):
                    body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
            assert req is not None
            headers = {k.decode().lower(): v.decode() for k, v in req.headers}
            status, out, extra = self._route(req.method.decode(), req.target.decode(), headers,
                                             body)
            if self.exchange.faults.drop_next_answer > 0 and not req.target.startswith(b"/sim/"):
                self.exchange.faults.drop_next_answer -= 1
                await self.publish()
                return  # executed, answer lost: the connection closes without a response
            hdrs = [("Content-Type", "application/json"), ("Content-Length", str(len(out))),
                    *extra.items()]
            await stream.send_all(conn.send(h11.Response(status_code=status, headers=hdrs))
                                  + conn.send(h11.Data(data=out)) + conn.send(h11.EndOfMessage()))
            await self.publish()  # private results of this request go out now
            if self.drop_requested:  # answered first, then every socket (this one too) cut
                self.drop_requested = False
                await self.drop_connections()
                return
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    def _route(self, method: str, target: str, headers: dict[str, str],
               body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Answer one request; a malformed one is a ``10001`` answer, never a crash."""
        self.requests += 1
        try:
            return self._route_checked(method, target, headers, body)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.info("bybit sim: bad request %s %s: %s", method, target, exc)
            return 200, wire.envelope(self.now(), code=wire.PARAM_ERROR,
                                      msg=f"params error: {type(exc).__name__}"), {}

    def _route_checked(self, method: str, target: str, headers: dict[str, str],
                       body: bytes) -> tuple[int, bytes, dict[str, str]]:
        now = self.now()
        ex = self.exchange
        u = urlsplit(target)
        path, query = u.path, u.query
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        if path == "/sim/control" and method == "POST":
            return 200, self._control(json.loads(body or b"{}"), now), {}
        if ex.faults.rate_limit_next > 0:
            ex.faults.rate_limit_next -= 1
            reset = now + 200
            return 200, wire.envelope(now, code=wire.RATE_LIMIT, msg="Too many visits!"), {
                "X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0",
                "X-Bapi-Limit-Reset-Timestamp": str(reset)}
        if method == "POST":
            try:
                params = json.loads(body or b"{}")
            except json.JSONDecodeError:
                return 200, wire.envelope(now, code=wire.PARAM_ERROR, msg="body not JSON"), {}
            if not isinstance(params, dict):
                return 200, wire.envelope(now, code=wire.PARAM_ERROR, msg="body not an object"), {}
        failing = ex.faults.fail_path_next.get(path, 0)
        if failing > 0:
            ex.faults.fail_path_next[path] = failing - 1
            return 200, wire.envelope(now, code=wire.SERVER_ERROR, msg="Server error"), {}
        public = path.startswith("/v5/market/")
        key = None
        if not public:
            payload = query if method == "GET" else body.decode()
            try:
                key = wire.verify_rest(headers, payload, ex.secrets, now)
            except wire.AuthFailure as exc:
                self.auth_failures += 1
                return 200, wire.envelope(now, code=exc.code, msg=exc.msg), {}
        try:
            result = self._dispatch(method, path, params, key, now)
        except OrderError as exc:
            return 200, wire.envelope(now, code=exc.code, msg=exc.msg), {}
        if result is None:
            return 404, wire.envelope(now, code=wire.PARAM_ERROR, msg=f"no route {path}"), {}
        return 200, wire.envelope(now, result), {"X-Bapi-Limit-Status": "9"}

    def _dispatch(self, method: str, path: str, p: dict[str, Any], key: str | None,
                  now: int) -> dict[str, Any] | None:
        ex = self.exchange
        if path == "/v5/market/time":
            return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}
        if path == "/v5/market/instruments-info":
            return {"category": p.get("category"),
                    "list": ex.instruments(str(p.get("category")), p.get("symbol")),
                    "nextPageCursor": ""}
        if path == "/v5/market/tickers":
            syms = [p["symbol"]] if p.get("symbol") else list(ex.markets)
            return {"category": p.get("category"),
                    "list": [ex.ticker(sy, str(p.get("category"))) for sy in syms]}
        if path == "/v5/market/funding/history":
            if p.get("startTime") and not p.get("endTime"):
                raise OrderError(wire.PARAM_ERROR, "endTime is required with startTime")
            m = ex.markets.get(str(p.get("symbol")))
            if m is None:
                raise OrderError(wire.PARAM_ERROR, "symbol invalid")
            lo = int(p.get("startTime") or 0)
            hi = int(p.get("endTime") or now)
            hist = [(t, r) for t, r in m.history if lo <= t <= hi][-int(p.get("limit") or 200):]
            return {"category": "linear", "list": [
                {"symbol": m.spec.symbol, "fundingRate": wire.s(r, 10),
                 "fundingRateTimestamp": str(t)} for t, r in reversed(hist)]}
        assert key is not None
        if path == "/v5/order/create" and method == "POST":
            o = ex.create(key, p, now)
            return {"orderId": o.order_id, "orderLinkId": o.link_id}
        if path == "/v5/order/cancel" and method == "POST":
            o = ex.cancel(key, p, now)
            return {"orderId": o.order_id, "orderLinkId": o.link_id}
        if path == "/v5/order/amend" and method == "POST":
            o = ex.amend(key, p, now)
            return {"orderId": o.order_id, "orderLinkId": o.link_id}
        if path == "/v5/order/cancel-all" and method == "POST":
            done = ex.cancel_all(key, p, now)
            return {"list": [{"orderId": o.order_id, "orderLinkId": o.link_id} for o in done],
                    "success": "1"}
        if path == "/v5/order/realtime":
            acct = ex.accounts[key]
            rows = [ex.order_row(o) for o in acct.orders.values()
                    if o.category == p.get("category")
                    and p.get("symbol") in (None, o.symbol)
                    and p.get("orderLinkId") in (None, o.link_id)
                    and (p.get("orderLinkId") or o.status in ("New", "PartiallyFilled"))]
            return {"category": p.get("category"), "list": rows, "nextPageCursor": ""}
        if path == "/v5/execution/list":
            acct = ex.accounts[key]
            rows = [e for e in reversed(acct.executions)
                    if e["category"] == p.get("category")
                    and p.get("symbol") in (None, e["symbol"])
                    and p.get("orderLinkId") in (None, e["orderLinkId"])
                    and p.get("orderId") in (None, e["orderId"])][:int(p.get("limit") or 50)]
            return {"category": p.get("category"), "list": rows, "nextPageCursor": ""}
        if path == "/v5/position/list":
            acct = ex.accounts[key]
            rows = [ex.position_row(acct, sy, now) for sy in acct.positions
                    if p.get("symbol") in (None, sy)]
            if ex.faults.flat_positions_next > 0:  # a transient all-flat answer
                ex.faults.flat_positions_next -= 1
                rows = [{**r, "side": "", "size": "0", "positionValue": "0"} for r in rows]
            return {"category": "linear", "list": rows, "nextPageCursor": ""}
        if path == "/v5/account/wallet-balance":
            f = ex.faults
            skew: dict[str, float] = {}
            if f.wallet_skew and f.wallet_skew_answers != 0:
                skew = f.wallet_skew
                if f.wallet_skew_answers is not None:
                    f.wallet_skew_answers -= 1
            row = ex.wallet_row(ex.accounts[key], skew)
            if p.get("coin"):
                wanted = set(str(p["coin"]).split(","))
                row["coin"] = [c for c in row["coin"] if c["coin"] in wanted]
            return {"list": [row]}
        if path == "/v5/account/fee-rate":
            category = p.get("category")
            if category not in ("spot", "linear"):
                raise OrderError(wire.PARAM_ERROR, "category invalid")
            if p.get("symbol") and p["symbol"] not in ex.markets:
                raise OrderError(wire.PARAM_ERROR, "symbol invalid")
            return {"list": ex.fee_rate_rows(str(category), p.get("symbol"))}
        if path == "/v5/account/transaction-log":
            return self._transaction_log(ex.accounts[key].transactions, p)
        return None

    @staticmethod
    def _transaction_log(rows: Any, p: dict[str, Any]) -> dict[str, Any]:
        """Newest first, filtered by category/currency/type/time, ``limit`` ≤ 50 a page with
        a cursor (the offset), like Bybit's."""
        if not p.get("category") or not p.get("currency"):
            raise OrderError(wire.PARAM_ERROR, "category and currency are required")
        limit = int(p.get("limit") or 20)
        if not 1 <= limit <= 50:
            raise OrderError(wire.PARAM_ERROR, "limit must be within [1, 50]")
        lo = int(p.get("startTime") or 0)
        hi = int(p.get("endTime") or 2**62)
        match = [r for r in reversed(rows) if r["category"] == p["category"]
                 and r["currency"] == p["currency"] and p.get("type") in (None, r["type"])
                 and lo <= int(r["transactionTime"]) <= hi]
        start = int(p.get("cursor") or 0)
        page = match[start:start + limit]
        more = start + limit < len(match)
        return {"list": page, "nextPageCursor": str(start + limit) if more else ""}

    def _control(self, c: dict[str, Any], now: int) -> bytes:
        f = self.exchange.faults
        for name in ("reject_next", "reject_code", "reject_category", "partial_fill_ratio",
                     "partial_fill_category", "partial_fill_orders",
                     "rate_limit_next", "order_rate_per_s", "drop_next_answer",
                     "wallet_skew_answers", "flat_positions_next"):
            if name in c:
                setattr(f, name, c[name])
        if "fail_path_next" in c:
            f.fail_path_next = {str(k): int(v) for k, v in c["fail_path_next"].items()}
        if "wallet_skew" in c:
            f.wallet_skew = {str(k): float(v) for k, v in c["wallet_skew"].items()}
        if c.get("disconnect"):
            self.drop_requested = True
        if "clock_offset_ms" in c:
            offset = c["clock_offset_ms"]
            if isinstance(offset, bool) or not isinstance(offset, int | float):
                raise ValueError("clock_offset_ms must be a number of milliseconds")
            self.clock_offset_ms = float(offset)
        if "lag_ms" in c:
            f.lag_ms = {str(k): float(v) for k, v in c["lag_ms"].items()}
        if "fee_rates" in c:  # {"linear": {"BTCUSDT": [taker, maker]}, ...}: the symbol's own
            for category, per in c["fee_rates"].items():
                if category not in ("spot", "linear"):
                    raise ValueError("fee_rates: category must be spot or linear")
                for sym, (taker, maker) in per.items():
                    self.exchange.symbol_fees[(category, str(sym))] = (float(taker), float(maker))
        if "funding" in c:
            for sym, spec in c["funding"].items():
                self.exchange.set_funding(sym, float(spec["rate"]), spec.get("next_funding_ms"),
                                          spec.get("interval_ms"))
        return wire.envelope(self.now(), {"faults": vars(f),
                                          "clock_offset_ms": self.clock_offset_ms})

    # -- websocket --------------------------------------------------------------------------------

    async def _serve_ws(self, stream: trio.SocketStream, first: bytes) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(first)
        client: WsClient | None = None
        while True:
            for event in ws.events():
                if isinstance(event, Request):
                    channel = WS_PATHS.get(urlsplit(event.target).path)
                    if channel is None:
                        await stream.send_all(ws.send(RejectConnection(status_code=404)))
                        return
                    await stream.send_all(ws.send(AcceptConnection()))
                    client = WsClient(f"sim-{next(self._conn_ids)}", channel, stream, ws)
                    self.clients.append(client)
                elif isinstance(event, TextMessage) and client is not None:
                    await self._on_text(client, str(event.data))
                elif isinstance(event, Ping) and client is not None:
                    await client.send_event(event.response())
                elif isinstance(event, CloseConnection):
                    if client is not None:
                        await client.send_event(event.response())
                        client.closed = True
                    return
            data = await stream.receive_some(_RECV)
            if not data:
                if client is not None:
                    client.closed = True
                return
            try:
                ws.receive_data(data)
            except RemoteProtocolError:
                return

    async def _on_text(self, c: WsClient, text: str) -> None:
        try:
            await self._on_text_checked(c, text)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            await c.send_text(wire.op_reply("", False, f"error:{type(exc).__name__}", c.conn_id,
                                            None, c.channel == "private"))

    async def _on_text_checked(self, c: WsClient, text: str) -> None:
        now = self.now()
        private = c.channel == "private"
        try:
            msg = json.loads(text)
            op = msg["op"]
        except (json.JSONDecodeError, KeyError, TypeError):
            await c.send_text(wire.op_reply("", False, f"Failed to decode incoming data:{text[:40]}",
                                            c.conn_id, None, private))
            return
        if not isinstance(msg, dict):
            raise TypeError("message is not an object")
        req_id = msg.get("req_id")
        if op == "ping":
            await c.send_text(wire.op_reply("ping", True, "pong" if not private else str(now),
                                            c.conn_id, req_id, private))
            return
        if op == "auth":
            if not private:
                await c.send_text(wire.op_reply("auth", False, "auth on a public channel",
                                                c.conn_id, req_id, private))
                return
            try:
                c.key = wire.verify_ws_auth(msg.get("args"), self.exchange.secrets, now)
            except wire.AuthFailure as exc:
                self.auth_failures += 1
                await c.send_text(wire.op_reply("auth", False, exc.msg, c.conn_id, req_id,
                                                private))
                return
            await c.send_text(wire.op_reply("auth", True, "", c.conn_id, req_id, private))
            return
        if op in ("subscribe", "unsubscribe"):
            args = msg.get("args") or []
            if not isinstance(args, list) or not all(isinstance(t, str) for t in args):
                raise TypeError("args must be a list of topics")
            bad = [t for t in args if not self._topic_ok(c, t)]
            if private and c.key is None:
                bad = list(args)
            if op == "subscribe" and not bad:
                already = [t for t in args if t in c.topics]
                if already:
                    await c.send_text(wire.op_reply(
                        "subscribe", False, f"error:already subscribed,topic:{already[0]}",
                        c.conn_id, req_id, private))
                    return
            if bad:
                await c.send_text(wire.op_reply(op, False, f"error:handler not found,topic:{bad[0]}",
                                                c.conn_id, req_id, private))
                return
            await c.send_text(wire.op_reply(op, True, "", c.conn_id, req_id, private))
            if op == "unsubscribe":
                c.topics.difference_update(args)
                return
            c.topics.update(args)
            if not private:
                for t in args:
                    await self._push_public(c, t, now, snapshot=True)
            return
        await c.send_text(wire.op_reply(str(op), False, "error:invalid op", c.conn_id, req_id,
                                        private))

    def _topic_ok(self, c: WsClient, topic: str) -> bool:
        if c.channel == "private":
            return topic in PRIVATE_TOPICS
        kind, _, symbol = topic.rpartition(".")
        if symbol not in self.exchange.markets:
            return False
        return kind in ("tickers", "orderbook.1")
