"""``SimExchange``: the local venue on one port (``POST /info``, ``POST /exchange`` and the
WebSocket at ``/ws``), driving the market model in virtual time (virtual 0 = server start) and
executing signed trading actions for its accounts (see trading.py), plus fault knobs, stats
(``GET /sim/stats``) and remote control (``POST /sim/control``).
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import msgspec
import trio
from wsproto import WSConnection

from engine.sim import control, frames
from engine.sim.faults import MALFORMED_KINDS, malformed_payload
from engine.sim.firehose import Firehose
from engine.sim.http import WS_PATH, json_error, serve_http
from engine.sim.hub import Hub
from engine.sim.info import InfoError, InfoService
from engine.sim.model import Bbo, Event, MarketModel, ModelParams
from engine.sim.trading import DEFAULT_MAKER_FEE, DEFAULT_TAKER_FEE, ERR_MARGIN, Trading
from engine.sim.ws import WsSession
from engine.sim.wsapi import WsApi

log = logging.getLogger("engine.sim")

_decoder = msgspec.json.Decoder()
# The TCP connection the current task serves (so /sim/control restart can answer its caller).
_current_tcp: contextvars.ContextVar[trio.CancelScope | None] = contextvars.ContextVar(
    "engine_sim_current_tcp", default=None
)


class SimExchange:
    """A Hyperliquid-compatible exchange simulator for the xyz HIP-3 dex.

    Construct, then run ``await nursery.start(sim.serve)`` (returns the bound port). Fault
    methods may be called at any time from Trio code (or via ``POST /sim/control``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 1,
        n_markets: int = 42,
        rate: float = 0.0,
        aligned: bool = False,
        dex_position: int = 1,
        params: ModelParams | None = None,
        speed: float = 1.0,
        idle_timeout_s: float = 60.0,
        ack_delay_ms: float = 0.0,
        greeting: bool = True,
        l2_interval_s: float = 0.5,
        max_outbox_bytes: int = 32 * 1024 * 1024,
        accounts: Mapping[str, float] | None = None,
        agents: Mapping[str, str] | None = None,
        is_mainnet: bool = True,
        match_latency_ms: float = 0.0,
        taker_fee: float = DEFAULT_TAKER_FEE,
        maker_fee: float = DEFAULT_MAKER_FEE,
    ) -> None:
        """Market-data options as before; trading: ``accounts`` maps master addresses to USDC
        balances, ``agents`` API-wallet addresses to their master, ``is_mainnet`` picks the
        phantom-agent source ("a"; False: "b"), ``match_latency_ms`` (virtual ms) is the delay
        before an action executes, against the book of that later moment, and ``taker_fee`` /
        ``maker_fee`` the default per-market fee rates (fractions; see ``set_fee``)."""
        if speed <= 0:
            raise ValueError("speed must be > 0")
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.host = host
        self.port = 0
        self.seed = seed
        self.rate = rate
        self.speed = speed
        self.idle_timeout_s = idle_timeout_s
        self.ack_delay_ms = ack_delay_ms
        self.greeting = greeting
        self.l2_interval_s = l2_interval_s
        self.max_outbox_bytes = max_outbox_bytes
        self._requested_port = port
        # added to every wall-clock time the simulator reports (step_server_time)
        self._server_time_offset_ms = 0
        self.model = MarketModel(seed, n_markets, params or ModelParams(aligned=aligned))
        if aligned:
            self.model.set_aligned(True)
        self.counters: Counter[str] = Counter()
        if match_latency_ms < 0:
            raise ValueError("match_latency_ms must be >= 0")
        self.info = InfoService(self.model, dex_position, now_ms=self._now_epoch_ms)
        self.hub = Hub(self.model, self.info, self._now_epoch_ms, self.counters)
        self.trading = Trading(
            self.model,
            dex_position,
            now_ms=self._now_epoch_ms,
            virtual_ms=lambda: int(self.virtual_now_ms()),
            sync_model=self._sync_model,
            publish_bbo=self._publish_bbo_event,
            publish_user=self.hub.publish_user,
            speed=speed,
            is_mainnet=is_mainnet,
            match_latency_ms=match_latency_ms,
            taker_fee=taker_fee,
            maker_fee=maker_fee,
        )
        self.info.users = self.trading
        self.hub.user_fills = self.trading.user_fills
        self.api = WsApi(self.hub, self.info, lambda: self.ack_delay_ms, self.trading)
        for address, balance in (accounts or {}).items():
            self.trading.create_account(address, balance)
        for agent, master in (agents or {}).items():
            self.trading.approve_agent(agent, master)
        self._tcp_scopes: set[trio.CancelScope] = set()
        self.firehose: Firehose | None = None
        self._conn_ids = itertools.count(1)
        self._t0 = 0.0
        self._started = False
        self._model_events = 0
        self._model_lag_ms = 0.0
        self._max_model_lag_ms = 0.0

    # ------------------------------------------------------------------ time

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{WS_PATH}"

    def virtual_now_ms(self) -> float:
        """Virtual milliseconds since the server started."""
        if not self._started:
            return 0.0
        return (trio.current_time() - self._t0) * 1000.0 * self.speed

    def _virtual_epoch_ms(self) -> int:
        return self.hub.epoch0_ms + int(self.virtual_now_ms())

    def _now_epoch_ms(self) -> int:
        """The simulator's wall clock: this host's, stepped by ``server_time_offset_ms``."""
        return int(time.time() * 1000) + self._server_time_offset_ms

    @property
    def server_time_offset_ms(self) -> int:
        """How far the simulator's reported server time is from this host's clock (ms)."""
        return self._server_time_offset_ms

    @server_time_offset_ms.setter
    def server_time_offset_ms(self, ms: int) -> None:
        if isinstance(ms, bool) or not isinstance(ms, int | float) or ms != ms:
            raise TypeError("server_time_offset_ms must be a number of ms")
        self._server_time_offset_ms = int(ms)

    def step_server_time(self, ms: int) -> int:
        """Step the reported server time by ``ms`` (negative: back); returns the new offset.
        From now on every wall-clock time the simulator reports moves with it —
        ``clearinghouseState``/``l2Book`` ``time``, fill and order timestamps — and its nonce
        window is judged against it; the bbo ``time`` (the book's virtual time) does not."""
        self.server_time_offset_ms = self._server_time_offset_ms + int(ms)
        return self._server_time_offset_ms

    # ------------------------------------------------------------------ serving

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report the port through ``task_status``, and serve until cancelled."""
        listeners = await trio.open_tcp_listeners(self._requested_port, host=self.host)
        if self._requested_port == 0 and len(listeners) > 1:
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        self.port = listeners[0].socket.getsockname()[1]
        self._t0 = trio.current_time()
        self.hub.epoch0_ms = self._now_epoch_ms()
        self._started = True
        self._dispatch(self.model.advance(0))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drive_model)
            nursery.start_soon(self._periodic)
            nursery.start_soon(self.trading.run)
            nursery.start_soon(self.trading.deliver_late)
            nursery.start_soon(self.trading.schedule.run)
            if self.rate > 0:
                self.firehose = Firehose(
                    self.hub, self.model, self.rate, self._virtual_epoch_ms, self.counters
                )
                nursery.start_soon(self.firehose.run)
            await nursery.start(trio.serve_listeners, self._handle_tcp, listeners)
            log.info("simulator listening on %s (%s)", self.url, self.ws_url)
            task_status.started(self.port)

    async def _drive_model(self) -> None:
        model = self.model
        while True:
            t_next = model.next_time_ms()
            await trio.sleep_until(self._t0 + t_next / 1000.0 / self.speed)
            now = self.virtual_now_ms()
            self._model_lag_ms = max(0.0, now - t_next)
            self._max_model_lag_ms = max(self._max_model_lag_ms, self._model_lag_ms)
            self._dispatch(model.advance(max(t_next, int(now))))

    def _dispatch(self, events: list[Event]) -> None:
        hub = self.hub
        epoch0 = hub.epoch0_ms
        resting = self.trading.resting
        self._model_events += len(events)
        touched: set[str] = set()
        for ev in events:
            payload = ev.payload
            if isinstance(payload, Bbo):
                hub.publish_bbo(ev.coin, epoch0 + ev.time_ms, payload)
                if resting and ev.coin in resting:
                    touched.add(ev.coin)
            else:
                hub.publish_ctx(ev.coin, payload)
        for coin in touched:
            self.trading.check_resting(coin)

    def _publish_bbo_event(self, ev: Event) -> None:
        """A book change caused by trading (not by the model's schedule)."""
        if isinstance(ev.payload, Bbo):
            self._model_events += 1
            self.hub.publish_bbo(ev.coin, self.hub.epoch0_ms + ev.time_ms, ev.payload)

    def _sync_model(self) -> None:
        """Bring the model up to the current virtual time (before executing an action)."""
        if self._started:
            self._dispatch(self.model.advance(int(self.virtual_now_ms())))

    async def _periodic(self) -> None:
        """l2Book pushes (on change, at most every ``l2_interval_s``) and allMids."""
        last_books: dict[str, Any] = {}
        while True:
            await trio.sleep(self.l2_interval_s)
            for coin in self.hub.subscribed_names("l2Book"):
                bbo = self.model.bbo(coin)
                if last_books.get(coin) is not bbo:
                    last_books[coin] = bbo
                    self.hub.publish_l2(coin)
            for dex in self.hub.subscribed_names("allMids"):
                self.hub.publish_mids(dex)

    async def _handle_tcp(self, stream: trio.SocketStream) -> None:
        self.counters["tcp_connections"] += 1
        try:
            with trio.CancelScope() as scope:
                self._tcp_scopes.add(scope)
                _current_tcp.set(scope)
                try:
                    await serve_http(stream, self._route, self._websocket)
                finally:
                    self._tcp_scopes.discard(scope)
        finally:
            await trio.aclose_forcefully(stream)

    async def _websocket(
        self, stream: trio.SocketStream, ws: WSConnection, handshake: bytes, trailing: bytes
    ) -> None:
        session = WsSession(
            next(self._conn_ids),
            stream,
            ws,
            self.api.handle_text,
            self.counters,
            idle_timeout_s=self.idle_timeout_s,
            max_outbox_bytes=self.max_outbox_bytes,
        )
        self.hub.add(session)
        self.counters["connections_total"] += 1
        try:
            await session.run(handshake, trailing, greeting=self.greeting)
        finally:
            self.hub.remove(session)

    async def _route(self, method: str, path: str, body: bytes) -> tuple[int, bytes] | None:
        if path == "/exchange":
            if method != "POST":
                return json_error(405, "use POST /exchange")
            self.counters["http_exchange"] += 1
            try:
                request = _decoder.decode(body)
            except msgspec.DecodeError as exc:
                return json_error(422, f"Failed to parse the request body as JSON: {exc}")
            outcome = await self.trading.submit(request)
            if outcome.parse_error is not None:
                return json_error(422, outcome.parse_error)
            if outcome.dropped:
                return None
            if outcome.delay_s > 0:
                await trio.sleep(outcome.delay_s)
            return 200, frames.encode(outcome.payload)
        if path == "/info":
            if method != "POST":
                return json_error(405, "use POST /info")
            self.counters["http_info"] += 1
            try:
                result = self.info.handle(_decoder.decode(body))
            except msgspec.DecodeError as exc:
                return json_error(422, f"Failed to parse the request body as JSON: {exc}")
            except InfoError as exc:
                return json_error(422, str(exc))
            return 200, frames.encode(result)
        if path == WS_PATH:
            return json_error(426, "WebSocket upgrade required")
        if path == "/sim/stats":
            if method != "GET":
                return json_error(405, "use GET /sim/stats")
            return 200, frames.encode(self.stats())
        if path == "/sim/control":
            if method != "POST":
                return json_error(405, "use POST /sim/control")
            try:
                result = control.apply(self, _decoder.decode(body))
            except msgspec.DecodeError as exc:
                return json_error(400, f"invalid JSON: {exc}")
            except (ValueError, TypeError) as exc:
                return 400, frames.encode({"ok": False, "error": str(exc)})
            return 200, frames.encode({"ok": True, "result": result})
        return json_error(404, f"no route for {method} {path}")

    # ------------------------------------------------------------------ faults

    def _check_coin(self, coin: str) -> None:
        self.model.index(coin)  # raises ValueError for unknown coins

    def drop_connections(self) -> int:
        """Abruptly reset every WebSocket connection (TCP RST, no Close frame); return count."""
        sessions = [s for s in self.hub.sessions if not s.closed]
        for s in sessions:
            s.drop()
        self.counters["dropped_connections"] += len(sessions)
        return len(sessions)

    def stall(self, coin: str, stream: str = "both", duration_s: float | None = None) -> None:
        """Stop sending ``coin``'s stream(s) to all clients (the model keeps running)."""
        self._check_coin(coin)
        until = None if duration_s is None else trio.current_time() + duration_s
        self.hub.stalls.stall(coin, stream, until)

    def unstall(self, coin: str) -> None:
        self._check_coin(coin)
        self.hub.stalls.unstall(coin)

    def inject_malformed(self, n: int = 1, kind: str = "garbage") -> int:
        """Send ``n`` broken frames of ``kind`` to every connection; return the connection count."""
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"kind must be one of {', '.join(MALFORMED_KINDS)}; got {kind!r}")
        if n < 0:
            raise ValueError("n must be >= 0")
        sessions = [s for s in self.hub.sessions if not s.closed]
        for s in sessions:
            coins = [sub.coin for sub in s.subs.values() if sub.type == "bbo"]
            coin = coins[0] if coins else self.model.coins[0]
            frame = frames.text_frame(malformed_payload(kind, coin))
            for _ in range(n):
                s.send_frame(frame)
            self.counters["malformed"] += n
        return len(sessions)

    def time_regression(self, coin: str, back_ms: int = 5000) -> None:
        """The next bbo for ``coin`` carries a ``time`` ``back_ms`` before the previous one."""
        self._check_coin(coin)
        if back_ms <= 0:
            raise ValueError("back_ms must be > 0")
        self.hub.time_regression(coin, int(back_ms))

    def set_aligned(self, aligned: bool) -> None:
        """Switch the model to aligned books (no oracle/book dislocation) from now on."""
        self.model.set_aligned(bool(aligned))

    def force_dislocation(self, coin: str, side: str, bps: float, lag_ms: int = 1000) -> None:
        """At the next oracle update move ``coin``'s oracle by ``bps`` (``side`` "buy": up, so
        the ask sits below it; "sell": down) while its market maker lags ``lag_ms`` (>= 800)."""
        if side == "buy":
            self.model.force_dislocation(coin, "buy", float(bps), int(lag_ms))
        elif side == "sell":
            self.model.force_dislocation(coin, "sell", float(bps), int(lag_ms))
        else:
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")

    # ------------------------------------------------------------------ trading

    def create_account(self, address: str, balance: float = 0.0) -> None:
        """Create master account ``address`` holding ``balance`` USDC (or reset its balance)."""
        self.trading.create_account(address, balance)

    def approve_agent(self, agent: str, master: str) -> None:
        """Approve API wallet ``agent`` to sign for the existing account ``master``."""
        self.trading.approve_agent(agent, master)

    def set_fee(self, coin: str, taker: float, maker: float) -> None:
        """Fee rates (fractions: 0.0000765 = 0.765 bp) charged on ``coin``'s fills."""
        self.trading.set_fee(coin, taker, maker)

    def account_summary(self, address: str) -> dict[str, Any] | None:
        """Free USDC, positions and open order ids of an account (None if unknown)."""
        acct = self.trading.account(address)
        if acct is None:
            return None
        return {
            "address": acct.address,
            "cash": str(acct.cash),
            "positions": {
                c: {"szi": str(p.szi), "entryPx": str(p.entry_px), "margin": str(p.margin)}
                for c, p in acct.positions.items()
            },
            "open_orders": [o.oid for o in acct.open_orders()],
            "fills": len(acct.fills),
        }

    @property
    def match_latency_ms(self) -> float:
        """Virtual ms between an action's arrival and its execution against the book."""
        return self.trading.match_latency_ms

    @match_latency_ms.setter
    def match_latency_ms(self, ms: float) -> None:
        if ms < 0:
            raise ValueError("match_latency_ms must be >= 0")
        self.trading.match_latency_ms = float(ms)

    def reject_next(self, n: int = 1, error: str = ERR_MARGIN) -> None:
        """The next ``n`` orders fail with ``{"error": error + " asset=<id>"}``."""
        self.trading.reject_next(n, error)

    @property
    def partial_fill_ratio(self) -> float | None:
        """Taking orders get at most this share of their size (floored to the lot)."""
        return self.trading.partial_fill_ratio

    @partial_fill_ratio.setter
    def partial_fill_ratio(self, ratio: float | None) -> None:
        self.trading.set_partial_fill_ratio(ratio)

    def drop_next_post_responses(self, n: int = 1) -> None:
        """Execute the next ``n`` actions (WS post or /exchange) but never answer them."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self.trading.drop_responses += n

    @property
    def delay_post_responses_ms(self) -> float:
        """Extra delay before each action response (after execution), in real ms."""
        return self.trading.response_delay_ms

    @delay_post_responses_ms.setter
    def delay_post_responses_ms(self, ms: float) -> None:
        if ms < 0:
            raise ValueError("delay must be >= 0")
        self.trading.response_delay_ms = float(ms)

    @property
    def omit_order_updates_for_ioc(self) -> bool:
        """IOC orders produce no orderUpdates (fills and post responses still come; P19)."""
        return self.trading.omit_ioc_order_updates

    @omit_order_updates_for_ioc.setter
    def omit_order_updates_for_ioc(self, enabled: bool) -> None:
        self.trading.omit_ioc_order_updates = bool(enabled)

    def transient_empty_clearinghouse(self, n: int = 1) -> None:
        """The next ``n`` clearinghouseState answers are all zeros, whoever asks (P23)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self.trading.empty_clearinghouse_answers += n

    @property
    def delay_user_streams_ms(self) -> float:
        """orderUpdates/userFills/userEvents of an action go out this long after its post
        response (in separate socket reads); 0 = with the execution, before the response."""
        return self.trading.faults.user_stream_delay_ms

    @delay_user_streams_ms.setter
    def delay_user_streams_ms(self, ms: float) -> None:
        self.trading.faults.set_user_stream_delay(ms)

    def empty_clearinghouse_for(self, seconds: float) -> None:
        """Every clearinghouseState answer is all zeros from now for ``seconds`` (P23)."""
        self.trading.faults.empty_clearinghouse_for(seconds, self._now_epoch_ms())

    def empty_clearinghouse_every(self, period_s: float, length_s: float) -> None:
        """From ``period_s`` after now, every ``period_s``: ``length_s`` of all-zero
        clearinghouseState answers (``period_s`` 0 switches it off)."""
        self.trading.faults.empty_clearinghouse_every(period_s, length_s, self._now_epoch_ms())

    def drop_on_reduce_only(self, n: int = 1, execute: bool = False) -> None:
        """The next ``n`` WebSocket order actions carrying a reduce-only order (a flatten)
        cut their connection before any answer: unexecuted, or executed when ``execute``."""
        self.trading.faults.set_drop_on_reduce_only(n, execute)

    @property
    def unknown_oid_for_ms(self) -> float:
        """orderStatus answers ``unknownOid`` for orders younger than this (0 = off)."""
        return self.trading.faults.unknown_oid_ms

    @unknown_oid_for_ms.setter
    def unknown_oid_for_ms(self, ms: float) -> None:
        self.trading.faults.set_unknown_oid(ms)

    def restart(self) -> int:
        """Like a venue node restart: reset every connection (WebSocket and HTTP) while accounts,
        orders and positions stay; unanswered posts are never answered. Returns the number of
        WebSocket connections dropped. (The HTTP connection that asked through /sim/control
        keeps its answer.)"""
        dropped = self.drop_connections()
        current = _current_tcp.get()
        for scope in list(self._tcp_scopes):
            if scope is not current:
                scope.cancel()
        self.counters["restarts"] += 1
        return dropped

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        sessions = [s for s in self.hub.sessions if not s.closed]
        c = self.counters
        channels = (
            "bbo", "activeAssetCtx", "l2Book", "allMids", "userFills", "orderUpdates", "user",
            "subscriptionResponse", "error", "pong", "post", "greeting", "malformed",
        )  # fmt: skip
        now = trio.current_time() if self._started else 0.0
        return {
            "seed": self.seed,
            "markets": len(self.model.coins),
            "aligned": self.model.aligned,
            "speed": self.speed,
            "uptime_s": round(now - self._t0, 3) if self._started else 0.0,
            "virtual_ms": int(self.virtual_now_ms()),
            "connections": {
                "open": len(sessions),
                "total": c["connections_total"],
                "dropped": c["dropped_connections"],
                "idle_closed": c["idle_closes"],
                "slow_client_drops": c["slow_client_drops"],
            },
            "subscriptions": self.hub.subscription_count(),
            "frames_sent": {ch: c[ch] for ch in channels},
            "firehose_frames": c["firehose"],
            "bytes_sent": sum(s.bytes_sent for s in sessions),
            "outbox_pending_bytes": sum(s.pending_bytes for s in sessions),
            "http_info_requests": c["http_info"],
            "http_exchange_requests": c["http_exchange"],
            "trading": self.trading.stats(),
            "tcp_connections": c["tcp_connections"],
            "firehose": self.firehose.stats() if self.firehose is not None else None,
            "model": {
                "events": self._model_events,
                "oracle_updates": self.model.oracle_updates,
                "lag_ms": round(self._model_lag_ms, 3),
                "max_lag_ms": round(self._max_model_lag_ms, 3),
            },
            "stalled": self.hub.stalls.active(now),
            "ack_delay_ms": self.ack_delay_ms,
            "server_time_offset_ms": self._server_time_offset_ms,
        }
