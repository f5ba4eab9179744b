"""A test client for ``text/event-stream`` over a raw trio socket (h11 client side): parses the
response head, de-chunks the body and splits it into (event, data) frames."""

from __future__ import annotations

import json
from typing import Any

import h11
import trio


class SseReader:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""  # the non-stream answer (e.g. a 503)
        self._buf = b""
        self.raw = b""  # every de-chunked byte received (framing checks)
        self.ended = False

    @classmethod
    async def open(cls, port: int, path: str = "/events") -> SseReader:
        r = cls(await trio.open_tcp_stream("127.0.0.1", port))
        data = r.conn.send(h11.Request(method="GET", target=path,
                                       headers=[("host", f"127.0.0.1:{port}"),
                                                ("accept", "text/event-stream")])) or b""
        data += r.conn.send(h11.EndOfMessage()) or b""
        await r.stream.send_all(data)
        with trio.fail_after(10):
            while True:
                ev = await r._event()
                if isinstance(ev, h11.Response):
                    r.status = ev.status_code
                    r.headers = {k.decode(): v.decode() for k, v in ev.headers}
                    break
        if r.status != 200:
            with trio.fail_after(10):
                while not r.ended:
                    ev = await r._event()
                    if isinstance(ev, h11.Data):
                        r.body += bytes(ev.data)
        return r

    async def _event(self) -> object:
        while True:
            ev = self.conn.next_event()
            if ev is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
                continue
            if isinstance(ev, h11.EndOfMessage | h11.ConnectionClosed):
                self.ended = True
            return ev

    async def frame(self) -> tuple[str | None, list[str]]:
        """The next frame: (event name or None for comment/retry-only frames, its lines)."""
        while b"\n\n" not in self._buf:
            if self.ended:
                raise EOFError("stream ended")
            ev = await self._event()
            if isinstance(ev, h11.Data):
                self._buf += bytes(ev.data)
                self.raw += bytes(ev.data)
        block, self._buf = self._buf.split(b"\n\n", 1)
        lines = block.decode().split("\n")
        name = next((ln[len("event: "):] for ln in lines if ln.startswith("event: ")), None)
        return name, lines

    async def event(self, wanted: str | None = None) -> tuple[str, Any]:
        """The next named event (``wanted`` only, when given) and its JSON data."""
        while True:
            name, lines = await self.frame()
            if name is None or (wanted is not None and name != wanted):
                continue
            data = [ln[len("data: "):] for ln in lines if ln.startswith("data: ")]
            assert len(data) == 1, lines
            return name, json.loads(data[0])

    async def aclose(self) -> None:
        await self.stream.aclose()
