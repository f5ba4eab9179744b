"""Trace the frame → order path of trade mode: which engine files it passes, in order.

Not a timing run: a profiler hook (``sys.setprofile``) records every Python call made from the
moment the feed's socket read returns one ``activeAssetCtx`` frame that dislocates one market
until the order's post is handed to the socket, on the real ``TradingApp`` (core, handler,
``LiveBackend``, ``OrderExecutor``, ``HyperliquidFeed``) over an in-memory connection.

Prints the engine files in the order the path first enters them (the first is the feed's
reader, where the read returned), how many times the path *enters* each file from another one
(a call whose caller is in another file; the reader counts once), and the sequence of file
entries. docs/architecture.md quotes its output before and after issue 11's
split::

    python bench/trace_order_path.py            # this checkout
    PYTHONPATH=/path/to/other/checkout python bench/trace_order_path.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import trio

from engine.config import structure_config
from engine.core.types import MarketSpec
from engine.io.records import RecordWriter
from engine.trading_app import TradingApp

KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
MASTER = "0x1111111111111111111111111111111111111111"
COINS = ("xyz:AAA", "xyz:BBB", "xyz:CCC")
ENGINE = Path(__import__("engine").__file__).resolve().parent
ROOT = ENGINE.parent


def bbo(coin: str, t: int) -> dict[str, Any]:
    return {"channel": "bbo", "data": {"coin": coin, "time": t, "bbo": [
        {"px": "99.99", "sz": "100", "n": 1}, {"px": "100.01", "sz": "100", "n": 1}]}}


def ctx(coin: str, oracle: str) -> dict[str, Any]:
    return {"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": {
        "funding": "0", "openInterest": "1", "prevDayPx": "100", "dayNtlVlm": "1",
        "premium": None, "oraclePx": oracle, "markPx": oracle, "midPx": None,
        "impactPxs": None, "dayBaseVlm": "1"}}}


class Tracer:
    def __init__(self) -> None:
        self.entries: list[str] = []  # file entered (caller in another file), in order
        self.calls: dict[str, int] = {}
        self.on = False

    @staticmethod
    def _file(frame: FrameType | None) -> str | None:
        if frame is None:
            return None
        f = frame.f_code.co_filename
        try:
            rel = Path(f).resolve().relative_to(ROOT)
        except ValueError:
            return None
        top = rel.parts[0]
        return str(rel) if top in ("engine", "fsm") else None

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event != "call":
            return
        f = self._file(frame)
        if f is None:
            return
        self.calls[f] = self.calls.get(f, 0) + 1
        caller = frame.f_back
        while caller is not None and self._file(caller) is None and \
                "trio" in caller.f_code.co_filename:
            caller = caller.f_back
        if self._file(caller) != f:
            self.entries.append(f)


class Conn:
    """In-memory connection; the armed read starts the trace, the first post write ends it."""

    def __init__(self, url: str, tracer: Tracer) -> None:
        self.url = url
        self.tracer = tracer
        self.armed = False
        self.sent: list[str] = []
        self._tx, self._rx = trio.open_memory_channel[list[str]](100)

    def push(self, *frames: dict[str, Any]) -> None:
        self._tx.send_nowait([json.dumps(f) for f in frames])

    async def receive_batch(self) -> list[str]:
        batch = await self._rx.receive()
        if self.armed:
            self.armed = False
            reader = Tracer._file(sys._getframe(1))  # the feed's reader: where the path starts
            if reader is not None:
                self.tracer.entries.append(reader)
                self.tracer.calls[reader] = 0
            self.tracer.on = True
            sys.setprofile(self.tracer)
        return batch

    async def send_text(self, text: str) -> None:
        await self.send_texts([text])

    async def send_texts(self, texts: list[str]) -> None:
        if self.tracer.on and any('"method":"post"' in t for t in texts):
            sys.setprofile(None)
            self.tracer.on = False
        self.sent.extend(texts)
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        return None


async def trace(tmp: Path) -> Tracer:
    os.environ["ENGINE_AGENT_KEY"] = KEY
    os.environ.pop("CREDENTIALS_DIRECTORY", None)
    cfg = structure_config({
        "mode": "trade",
        "venue": {"ws_url": "ws://127.0.0.1:9/ws", "info_url": "http://127.0.0.1:9/info",
                  "network": "sim", "dex": "xyz", "ctx_stale_ms": 0.0, "bbo_stale_ms": 0.0,
                  "post_timeout_s": 5.0},
        "records": {"dir": str(tmp / "data")},
        "account": {"address": MASTER},
        "detector": {"session_aware": False, "min_consecutive_moves": 0,
                     "oracle_direction_filter": False, "min_edge_above_baseline_bps": 0.0,
                     "min_confidence": 0.0, "min_quote_lag_ms": 0.0},
        "trading": {"max_total_notional": 10_000.0, "reconcile_interval_s": 3600.0},
    }, "trace")
    app = TradingApp(cfg)
    app.preflight()
    writer = RecordWriter(tmp / "data")
    app.writer = writer
    app.build([MarketSpec(i, c, 110_000 + i, 2) for i, c in enumerate(COINS)], writer)
    tracer = Tracer()
    conns: list[Conn] = []

    async def connect(url: str, timeout: float) -> Conn:  # noqa: ASYNC109
        conns.append(Conn(url, tracer))
        return conns[-1]

    feed, trading = app.feed, app.trading
    assert feed is not None and trading is not None
    feed._connector = connect  # type: ignore[attr-defined]
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(feed.run)
            await feed.wait_connected()  # type: ignore[attr-defined]
            conn = conns[0]
            conn.push(*[bbo(c, 1) for c in COINS], *[ctx(c, "100.0") for c in COINS])
            while not trading.ready["market_data"]:  # noqa: ASYNC110 - polling the core
                await trio.sleep(0.001)
            trading.set_ready("user_channels", True)
            trading.on_reconcile({}, [], app.clock())
            trading.on_account_values(10_000.0, 0.0, app.clock())
            app.execute(app.clock())
            assert trading.is_ready()
            conn.armed = True
            conn.push(ctx(COINS[0], "100.3"))  # one frame, one dislocation, one order
            while not any('"method":"post"' in t for t in conn.sent):  # noqa: ASYNC110
                await trio.sleep(0.001)
            n.cancel_scope.cancel()
    writer.close()
    return tracer


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tracer = trio.run(trace, Path(d))
    order: list[str] = list(dict.fromkeys(tracer.entries))
    per_file = {f: tracer.entries.count(f) for f in order}
    print(f"engine: {ENGINE}")
    print(f"files on the frame -> order path: {len(order)}")
    for f in order:
        print(f"  {f:48s} entered {per_file[f]:2d}x  calls {tracer.calls[f]:4d}")
    client = "engine/venues/hyperliquid/client.py"
    print(f"entries into {client}: {per_file.get(client, 0)}")
    reentered = sum(1 for f in order if per_file[f] > 1)
    print(f"files entered more than once: {reentered}")
    print("entry sequence: " + " > ".join(Path(f).stem for f in tracer.entries))


if __name__ == "__main__":
    main()
