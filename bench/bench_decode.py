"""Micro-benchmarks for the Hyperliquid feed hot path (run: .venv/bin/python bench/bench_decode.py).

1. Median ns per ``WireDecoder.decode`` of a ``bbo`` and an ``activeAssetCtx`` frame (and, for
   reference, the bare msgspec typed decode of the same text).
2. Frames/s the client reaches reading a pre-generated stream from a local raw TCP sender (a
   separate process speaking WebSocket server framing via wsproto, loopback only):
   a. ``WsConnection.receive_batch`` + ``WireDecoder.decode`` (transport + decode);
   b. the full ``HyperliquidFeed`` dispatching to a no-op handler (transport + decode + dispatch).

   Each row gives the wall-clock frames/s, the CPU µs per frame (``process_time``), the frames
   per CPU-second (1 / CPU per frame: the ceiling of one core) and the share of the window this
   process was on a CPU. On a shared machine the wall-clock figure falls whenever the process
   (or the sender) is descheduled while the CPU per frame stays put: an on-CPU share well
   under 100 % means the wall-clock figure measured the machine's load, not the code. Compare
   two trees by the CPU per frame (bench/README.md, "bench_decode").
"""

from __future__ import annotations

import argparse
import functools
import random
import socket
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COINS = [f"xyz:C{i:02d}" for i in range(40)]

BBO = (
    '{"channel":"bbo","data":{"coin":"xyz:SILVER","time":1769594065851,'
    '"bbo":[{"px":"112.88","sz":"3.1","n":2},{"px":"112.95","sz":"0.8","n":1}]}}'
)
CTX = (
    '{"channel":"activeAssetCtx","data":{"coin":"xyz:SILVER","ctx":{'
    '"funding":"0.0000125","openInterest":"1234.5","prevDayPx":"110.1","dayNtlVlm":"2500000.0",'
    '"premium":"0.0003","oraclePx":"112.90","markPx":"112.91","midPx":"112.915",'
    '"impactPxs":["112.85","112.99"],"dayBaseVlm":"22000.0"}}}'
)


def gen_frames(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    out = []
    t = 1769594065851
    for i in range(n):
        coin = COINS[i % len(COINS)]
        px = 100 + rng.random()
        t += 1
        if rng.random() < 0.8:
            out.append(
                f'{{"channel":"bbo","data":{{"coin":"{coin}","time":{t},"bbo":'
                f'[{{"px":"{px:.2f}","sz":"{rng.random() * 10:.3f}","n":2}},'
                f'{{"px":"{px + 0.05:.2f}","sz":"{rng.random() * 10:.3f}","n":1}}]}}}}'
            )
        else:
            out.append(
                f'{{"channel":"activeAssetCtx","data":{{"coin":"{coin}","ctx":{{'
                f'"funding":"0.0000125","openInterest":"1234.5","prevDayPx":"110.1",'
                f'"dayNtlVlm":"2500000.0","premium":"0.0003","oraclePx":"{px:.3f}",'
                f'"markPx":"{px + 0.01:.3f}","midPx":"{px + 0.02:.3f}",'
                f'"impactPxs":["{px - 0.05:.2f}","{px + 0.05:.2f}"],"dayBaseVlm":"22000.0"}}}}}}'
            )
    return out


# ---------------------------------------------------------------- sender process


def sender(n: int) -> None:
    import wsproto
    from wsproto.connection import ConnectionType
    from wsproto.events import AcceptConnection, Message, Request

    proto = wsproto.WSConnection(ConnectionType.SERVER)
    # pre-generate the framed stream (server frames are unmasked)
    frames = gen_frames(n)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    print(srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    while True:
        data = conn.recv(65536)
        if not data:
            return
        proto.receive_data(data)
        if any(isinstance(ev, Request) for ev in proto.events()):
            break
    accept = proto.send(AcceptConnection())
    blob = b"".join(proto.send(Message(data=f)) for f in frames)
    conn.sendall(accept)
    conn.sendall(blob)
    try:  # wait for the client to close
        while conn.recv(65536):
            pass
    except OSError:
        pass


def start_sender(n: int) -> tuple[subprocess.Popen[str], int]:
    p = subprocess.Popen(
        [sys.executable, __file__, "--sender", str(n)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    port = int(p.stdout.readline())
    return p, port


# ---------------------------------------------------------------- benchmarks


def bench_decode() -> None:
    import msgspec

    from engine.venues.hyperliquid import wire

    dec = wire.WireDecoder()
    raw = msgspec.json.Decoder(wire._WireMsg, strict=False).decode  # noqa: SLF001
    for name, text in (("bbo", BBO), ("activeAssetCtx", CTX)):
        fns: list[tuple[str, Callable[[str], object]]] = [
            ("WireDecoder.decode", dec.decode),
            ("msgspec typed decode", raw),
        ]
        for label, fn in fns:
            n = 100_000
            runs = timeit.repeat(functools.partial(fn, text), number=n, repeat=9)
            med = statistics.median(runs) / n * 1e9
            print(f"  {name:15s} {label:22s} median {med:7.0f} ns/frame")


async def _bench_raw(n: int, fast_path: bool) -> tuple[float, float, int, float]:
    from engine.venues.hyperliquid import wire, ws

    p, port = start_sender(n)
    try:
        conn = await ws.connect(f"ws://127.0.0.1:{port}/ws", 10, fast_path=fast_path)
        dec = wire.WireDecoder()
        decode = dec.decode
        got = 0
        batches = 0
        first = await conn.receive_batch()
        t0, c0 = time.perf_counter(), time.process_time()
        for text in first:
            decode(text)
        got += len(first)
        while got < n:
            batch = await conn.receive_batch()
            batches += 1
            for text in batch:
                decode(text)
            got += len(batch)
        t1, c1 = time.perf_counter(), time.process_time()
        await conn.aclose()
        assert dec.stats.malformed == 0
        frames = got - len(first)
        return frames / (t1 - t0), (c1 - c0) / frames * 1e6, batches, (c1 - c0) / (t1 - t0)
    finally:
        p.wait(10)


class _CountingHandler:
    def __init__(self, n: int) -> None:
        import trio

        self.n = n
        self.count = 0
        self.t0: float | None = None
        self.c0 = 0.0
        self.done = trio.Event()

    def on_bbo(
        self,
        coin: str,
        time_ms: int,
        bid_px: float | None,
        bid_sz: float | None,
        ask_px: float | None,
        ask_sz: float | None,
    ) -> None:
        self.count += 1

    def on_ctx(self, coin: str, oracle_px: float, mark_px: float | None) -> None:
        self.count += 1

    def on_connected(self) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass

    def on_subscribed(self, sub_type: str, coin: str | None) -> None:
        pass

    def on_batch_end(self) -> None:
        if self.t0 is None:
            self.t0, self.c0 = time.perf_counter(), time.process_time()
            self.first = self.count
        if self.count >= self.n:
            self.t1, self.c1 = time.perf_counter(), time.process_time()
            self.done.set()


async def _bench_feed(n: int, fast_path: bool) -> tuple[float, float, float]:
    import trio

    from engine.config import VenueConfig
    from engine.net import ws
    from engine.venues.hyperliquid.client import HyperliquidFeed

    p, port = start_sender(n)
    try:
        h = _CountingHandler(n)
        cfg = VenueConfig(ws_url=f"ws://127.0.0.1:{port}/ws", ctx_stale_ms=0)
        connector = functools.partial(ws.connect, fast_path=fast_path)
        feed = HyperliquidFeed(cfg, COINS, h, connector=connector)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed.run)
            await h.done.wait()
            nursery.cancel_scope.cancel()
        assert feed.stats.malformed == 0 and feed.stats.unexpected_coin == 0
        assert h.t0 is not None
        frames = h.count - h.first
        wall = h.t1 - h.t0
        return frames / wall, (h.c1 - h.c0) / frames * 1e6, (h.c1 - h.c0) / wall
    finally:
        p.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sender", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--frames", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.sender:
        sender(args.sender)
        return
    import trio

    print("decode (median of 9 x 100k calls):")
    bench_decode()
    print(f"stream of {args.frames} frames (80% bbo / 20% ctx, 40 markets) over loopback:")
    for fast in (True, False):
        mode = "fast path   " if fast else "wsproto only"
        for _ in range(args.rounds):
            fps, cpu_us, batches, on_cpu = trio.run(_bench_raw, args.frames, fast)
            print(
                f"  [{mode}] ws.receive_batch + decode      : {fps:8.0f} frames/s, "
                f"{cpu_us:5.2f} us CPU/frame, {1e6 / cpu_us:8.0f} frames/CPU-s, "
                f"on CPU {on_cpu:4.0%}, {args.frames / max(batches, 1):.0f} frames/batch"
            )
        for _ in range(args.rounds):
            fps, cpu_us, on_cpu = trio.run(_bench_feed, args.frames, fast)
            print(
                f"  [{mode}] HyperliquidFeed, no-op handler : {fps:8.0f} frames/s, "
                f"{cpu_us:5.2f} us CPU/frame, {1e6 / cpu_us:8.0f} frames/CPU-s, "
                f"on CPU {on_cpu:4.0%}"
            )


if __name__ == "__main__":
    main()
