"""Fixtures for the simulator tests: start a SimExchange on an ephemeral loopback port and talk
to it with trio-websocket (an independent third-party client)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from engine.sim import SimExchange

GREETING = "Websocket connection established."


class Client:
    """A thin JSON-speaking wrapper over a trio-websocket connection."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.seen: list[Any] = []

    async def send(self, obj: Any) -> None:
        await self.ws.send_message(obj if isinstance(obj, str) else json.dumps(obj))

    async def recv_text(self, wait_s: float = 3.0) -> str:
        with trio.fail_after(wait_s):
            msg = await self.ws.get_message()
        assert isinstance(msg, str), f"expected a text frame, got {msg!r}"
        return msg

    async def recv(self, wait_s: float = 3.0) -> Any:
        msg = json.loads(await self.recv_text(wait_s))
        self.seen.append(msg)
        return msg

    async def expect(
        self, pred: Callable[[Any], bool], wait_s: float = 3.0, what: str = "message"
    ) -> Any:
        """The first message satisfying ``pred`` (others are skipped but kept in ``seen``)."""
        with trio.fail_after(wait_s):
            while True:
                msg = await self.recv(wait_s)
                if pred(msg):
                    return msg

    async def subscribe(self, sub: dict[str, Any]) -> Any:
        await self.send({"method": "subscribe", "subscription": sub})
        return await self.expect(
            lambda m: (
                m.get("channel") == "subscriptionResponse" and m["data"]["subscription"] == sub
            ),
            what=f"ack for {sub}",
        )

    async def collect(self, seconds: float) -> list[Any]:
        """Every JSON message received during ``seconds``."""
        out: list[Any] = []
        with trio.move_on_after(seconds):
            while True:
                out.append(await self.recv(seconds + 1))
        return out


StartSim = Callable[..., Awaitable[SimExchange]]


@pytest.fixture
def start_sim(nursery: trio.Nursery) -> StartSim:
    async def start(**kwargs: Any) -> SimExchange:
        sim = SimExchange(**kwargs)
        await nursery.start(sim.serve)
        return sim

    return start


@pytest.fixture
async def sim(start_sim: StartSim) -> SimExchange:
    return await start_sim(seed=1)


@pytest.fixture
def connect() -> Callable[..., Any]:
    @asynccontextmanager
    async def _connect(sim: SimExchange, greeting: bool = True) -> AsyncIterator[Client]:
        async with open_websocket_url(sim.ws_url) as ws:
            client = Client(ws)
            if greeting:
                assert await client.recv_text() == GREETING
            yield client

    return _connect
