"""WebSocket request semantics (docs/reference/hyperliquid-protocol.md §2, §4): ping, subscribe/unsubscribe with acks and
error strings, and ``post``: info answered like ``POST /info``, actions executed like
``POST /exchange`` (answered when executed; at most 100 unanswered action posts per connection,
above which the venue's ``too many pending post requests id=<id>`` error is sent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from engine.sim import frames
from engine.sim.hub import Hub
from engine.sim.info import InfoError, InfoService
from engine.sim.subscriptions import describe, parse_subscription
from engine.sim.ws import WsSession

if TYPE_CHECKING:
    from engine.sim.trading import Trading

ACTIONS_UNSUPPORTED = "Simulator does not support trading actions yet"
MAX_INFLIGHT_POSTS = 100
SINGLE_USER_CHANNELS = ("orderUpdates", "userEvents")  # their data names no user (docs/reference/hyperliquid-protocol.md §2.2)
_PARSE_ERROR = "Error parsing JSON into valid websocket request: "

_decoder = msgspec.json.Decoder()


class WsApi:
    """Handles one client text message at a time (called by :class:`WsSession`)."""

    def __init__(
        self,
        hub: Hub,
        info: InfoService,
        ack_delay_ms: Callable[[], float],
        trading: Trading | None = None,
    ) -> None:
        self.hub = hub
        self.info = info
        self.trading = trading
        self._ack_delay_ms = ack_delay_ms
        self._coins = frozenset(hub.model.coins)
        self._dexes = frozenset(info.dexes)

    def handle_text(self, session: WsSession, text: str) -> None:
        try:
            msg = _decoder.decode(text)
        except msgspec.DecodeError:
            self._parse_error(session, text)
            return
        if not isinstance(msg, dict):
            self._parse_error(session, text)
            return
        method = msg.get("method")
        if method == "ping":
            session.send_payload(frames.PONG, "pong")
        elif method in ("subscribe", "unsubscribe"):
            raw = msg.get("subscription")
            if not isinstance(raw, dict):
                self._parse_error(session, text)
                return
            self._subscription(session, method, raw)
        elif method == "post":
            self._post(session, msg, text)
        else:
            self._parse_error(session, text)

    # ------------------------------------------------------------------ helpers

    def _parse_error(self, session: WsSession, text: str) -> None:
        session.send_payload(frames.error_payload(_PARSE_ERROR + text), "error")

    def _error(self, session: WsSession, message: str) -> None:
        session.send_payload(frames.error_payload(message), "error")

    def _subscription(self, session: WsSession, method: str, raw: dict[str, Any]) -> None:
        sub = parse_subscription(raw, self._coins, self._dexes)
        if sub is None:
            quoted = frames.encode(describe(raw)).decode()
            self._error(session, f"Invalid subscription {quoted}")
            return
        quoted = frames.encode(sub.echo).decode()
        if method == "subscribe":
            if sub.type in SINGLE_USER_CHANNELS and any(
                s.type == sub.type and s.user != sub.user for s in session.subs.values()
            ):
                self._error(
                    session, f"Only one user per connection is supported for {sub.type}: {quoted}"
                )
                return
            if not self.hub.subscribe(session, sub):
                self._error(session, f"Already subscribed: {quoted}")
                return
            ack = frames.ack_payload("subscribe", sub.echo)
            delay_ms = self._ack_delay_ms()
            if delay_ms > 0:
                # Slow-ack fault: the stream is live at once; only the ack is late.
                session.send_later(delay_ms / 1000.0, ack, "subscriptionResponse")
            else:
                session.send_payload(ack, "subscriptionResponse")
            self.hub.send_snapshot(session, sub)
        else:
            if not self.hub.unsubscribe(session, sub):
                self._error(session, f"Already unsubscribed: {quoted}")
                return
            ack = frames.ack_payload("unsubscribe", sub.echo)
            delay_ms = self._ack_delay_ms()
            if delay_ms > 0:
                session.send_later(delay_ms / 1000.0, ack, "subscriptionResponse")
            else:
                session.send_payload(ack, "subscriptionResponse")

    def _post(self, session: WsSession, msg: dict[str, Any], text: str) -> None:
        post_id = msg.get("id")
        if isinstance(post_id, bool) or not isinstance(post_id, int) or post_id < 0:
            self._parse_error(session, text)
            return
        request = msg.get("request")
        response: dict[str, Any]
        if not isinstance(request, dict):
            response = frames.post_error("missing or invalid field `request`")
        elif request.get("type") == "info":
            response = self._post_info(request.get("payload"))
        elif request.get("type") == "action":
            payload = request.get("payload")
            if not isinstance(payload, dict) or not isinstance(payload.get("action"), dict):
                response = frames.post_error("missing or invalid field `payload.action`")
            elif self.trading is None:
                response = frames.post_action_error(ACTIONS_UNSUPPORTED)
            elif session.inflight_posts >= MAX_INFLIGHT_POSTS:
                self._error(session, f"too many pending post requests id={post_id}")
                return
            elif self.trading.faults.take_reduce_only_drop(payload):
                self._drop_on_reduce_only(session, payload)
                return
            else:
                session.inflight_posts += 1
                if not session.spawn(self._action_post, session, post_id, payload):
                    session.inflight_posts -= 1
                return
        else:
            response = frames.post_error(f"unknown request type {request.get('type')!r}")
        session.send_payload(frames.post_payload(post_id, response), "post")

    def _drop_on_reduce_only(self, session: WsSession, payload: Any) -> None:
        """Fault: a reduce-only order arrived; cut this connection before answering it (the
        action executed first when ``faults.drop_executes``, else never)."""
        assert self.trading is not None
        trading = self.trading
        trading.counters["reduce_only_drops"] += 1
        if not trading.faults.drop_executes:
            session.drop()
            return

        async def execute_then_drop() -> None:
            with trio.CancelScope(shield=True):
                await trading.submit(payload)
            session.drop()

        if not session.spawn(execute_then_drop):
            session.drop()

    async def _action_post(self, session: WsSession, post_id: int, payload: Any) -> None:
        assert self.trading is not None
        try:
            outcome = await self.trading.submit(payload)
            if outcome.dropped:
                return
            response: dict[str, Any]
            if outcome.parse_error is not None:
                response = frames.post_error(outcome.parse_error)
            else:
                assert outcome.payload is not None
                response = frames.post_action_response(outcome.payload)
            if outcome.delay_s > 0:
                await trio.sleep(outcome.delay_s)
            session.send_payload(frames.post_payload(post_id, response), "post")
        finally:
            session.inflight_posts -= 1

    def _post_info(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            return frames.post_error("missing or invalid field `payload.type`")
        try:
            data = self.info.handle(payload)
        except InfoError as exc:
            return frames.post_error(f"422 Unprocessable Entity: {exc}")
        return frames.post_info_response(payload["type"], data)
