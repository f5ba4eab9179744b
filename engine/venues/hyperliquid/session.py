"""One connection of the Hyperliquid feed: :class:`Session` (its socket, its cancel scope, why
it ended, its receive and keep-alive times), the :data:`Connector` that opens a socket, and
:func:`reconnect_delay`, the pause before the next attempt (:func:`engine.backoff.backoff_delay`,
the engine's one exponential back-off).

The reconnect loop that uses them is :meth:`.client.HyperliquidFeed.run`.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from engine.backoff import backoff_delay
from engine.config import VenueConfig
from engine.net import ws

Connector = Callable[[str, float], Awaitable[ws.WsConnection]]

#: the largest exponent of the reconnect back-off (``base · 2**32`` is beyond any cap)
MAX_BACKOFF_EXPONENT = 32


def reconnect_delay(cfg: VenueConfig, attempt: int, rng: random.Random) -> float:
    """Seconds before reconnect ``attempt`` (1 = the first after a disconnect):
    ``min(reconnect_max_s, reconnect_base_s · 2**(attempt-1)) + U(0, reconnect_jitter_s)``.

    The jitter takes one draw of ``rng`` (none when ``reconnect_jitter_s`` is 0), so a seeded
    ``rng`` gives the same delays as ``rng.uniform(0, jitter)`` did before the shared helper.
    """
    exp = min(max(attempt - 1, 0), MAX_BACKOFF_EXPONENT)
    return backoff_delay(exp, cfg.reconnect_base_s, cfg.reconnect_max_s,
                         cfg.reconnect_jitter_s, rng.random)


class Session:
    """State of one connection; ``end()`` records the first reason and cancels the session.

    ``conn`` is None in replay (a recorded connection has no socket)."""

    __slots__ = ("conn", "scope", "reason", "started", "last_rx", "ping_sent_at", "all_acked_at")

    def __init__(self, conn: Any, now: float) -> None:
        self.conn: ws.WsConnection = conn
        self.scope: trio.CancelScope | None = None
        self.reason: str | None = None
        self.started = now
        self.last_rx = now
        self.ping_sent_at: float | None = None
        self.all_acked_at: float | None = None

    def end(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()
