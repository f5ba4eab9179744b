"""``SimExchange``: the local venue on one port (``POST /info`` and the WebSocket at ``/ws``),
driving the market model in virtual time (virtual 0 = server start), plus fault knobs, stats
(``GET /sim/stats``) and remote control (``POST /sim/control``).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
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
from engine.sim.ws import WsSession
from engine.sim.wsapi import WsApi

log = logging.getLogger("engine.sim")

_decoder = msgspec.json.Decoder()


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
    ) -> None:
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
        self.model = MarketModel(seed, n_markets, params or ModelParams(aligned=aligned))
        if aligned:
            self.model.set_aligned(True)
        self.counters: Counter[str] = Counter()
        self.info = InfoService(self.model, dex_position)
        self.hub = Hub(self.model, self.info, self._now_epoch_ms, self.counters)
        self.api = WsApi(self.hub, self.info, lambda: self.ack_delay_ms)
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

    @staticmethod
    def _now_epoch_ms() -> int:
        return int(time.time() * 1000)

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
        self._model_events += len(events)
        for ev in events:
            payload = ev.payload
            if isinstance(payload, Bbo):
                hub.publish_bbo(ev.coin, epoch0 + ev.time_ms, payload)
            else:
                hub.publish_ctx(ev.coin, payload)

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
            await serve_http(stream, self._route, self._websocket)
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

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
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

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        sessions = [s for s in self.hub.sessions if not s.closed]
        c = self.counters
        channels = (
            "bbo", "activeAssetCtx", "l2Book", "allMids", "userFills", "subscriptionResponse",
            "error", "pong", "post", "greeting", "malformed",
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
        }
