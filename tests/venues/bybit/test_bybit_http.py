"""The Bybit HTTP client writes a request on a free connection before any other task runs
(the fill → hedge path: no schedule point before the socket write), and still serialises
requests on a busy one."""

from __future__ import annotations

from typing import Any

import h11
import trio

from engine.venues.bybit.http import HttpClient

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


class _Stream(trio.abc.Stream):
    """Records each write synchronously (before it checkpoints) and answers each request."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.answers = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.events.append(f"write {bytes(data).split(b' ')[1].decode()}")
        self.answers += 1
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self.answers:  # noqa: ASYNC110 - a fake socket waiting for its request
            await trio.sleep(0.001)
        self.answers -= 1
        self.events.append("answer")
        return ANSWER

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def _client(events: list[str]) -> HttpClient:
    c = HttpClient("http://127.0.0.1:9")
    c._stream = _Stream(events)  # an open connection (as after warm-up)
    c._conn = h11.Connection(h11.CLIENT)
    return c


async def test_a_free_connection_is_written_before_other_tasks_run() -> None:
    events: list[str] = []
    c = _client(events)

    async def other() -> None:
        events.append("other task")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)  # runnable now: would run first at any schedule point
        resp = await c.request("POST", "/v5/order/create", {}, b"{}")
    assert resp.status == 200
    assert events[0] == "write /v5/order/create" and "other task" in events


async def test_requests_on_one_connection_still_go_one_at_a_time() -> None:
    events: list[str] = []
    c = _client(events)
    got: list[Any] = []

    async def req(path: str) -> None:
        got.append((await c.request("GET", path)).status)

    async with trio.open_nursery() as nursery:
        for p in ("/a", "/b", "/c"):
            nursery.start_soon(req, p)
    assert got == [200, 200, 200]
    # one at a time: each write is answered before the next request is written
    assert events[1::2] == ["answer"] * 3
    assert sorted(events[0::2]) == ["write /a", "write /b", "write /c"]
