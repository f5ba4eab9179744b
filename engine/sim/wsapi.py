"""WebSocket request semantics (protocol doc §2, §4): ping, subscribe/unsubscribe with acks and
error strings, and ``post`` (info answered like ``POST /info``; trading actions not yet).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from engine.sim import frames
from engine.sim.hub import Hub
from engine.sim.info import InfoError, InfoService
from engine.sim.subscriptions import describe, parse_subscription
from engine.sim.ws import WsSession

ACTIONS_UNSUPPORTED = "Simulator does not support trading actions yet"
_PARSE_ERROR = "Error parsing JSON into valid websocket request: "

_decoder = msgspec.json.Decoder()


class WsApi:
    """Handles one client text message at a time (called by :class:`WsSession`)."""

    def __init__(self, hub: Hub, info: InfoService, ack_delay_ms: Callable[[], float]) -> None:
        self.hub = hub
        self.info = info
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
            else:
                response = frames.post_action_error(ACTIONS_UNSUPPORTED)
        else:
            response = frames.post_error(f"unknown request type {request.get('type')!r}")
        session.send_payload(frames.post_payload(post_id, response), "post")

    def _post_info(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            return frames.post_error("missing or invalid field `payload.type`")
        try:
            data = self.info.handle(payload)
        except InfoError as exc:
            return frames.post_error(f"422 Unprocessable Entity: {exc}")
        return frames.post_info_response(payload["type"], data)
