"""Benchmark: market-data frame in → signed order frame out, over loopback.

Owns nothing in the engine; it is a script (``.venv/bin/python bench/bench_order_path.py``) that
prints its figures and one ``PASS``/``MISS`` line per target.

Two processes. The **server** is this file run with ``--server`` in a subprocess: a minimal
WebSocket server (blocking socket + wsproto, no Trio) that accepts one connection, acks every
subscription, then drives the measurement. All timestamps are taken by the server with
``time.perf_counter_ns`` on one clock: ``t_out`` right before the ``sendall`` of a ``bbo``
frame whose ``time`` field carries a sequence number, ``t_in`` right after the ``recv`` that
completed a ``post`` frame. The client encodes the sequence number in each order's cloid, so
the server knows which bbo frame caused which order: latency = ``t_in − t_out``. Every post is
answered at once (an IOC ``filled`` status per order) so nothing stays in flight.

The **client** is this process: the real :class:`HyperliquidFeed` (wsproto client, fast path)
and a feed handler that, on each bbo frame, builds an ``engine.core.orders.Order`` (slippage
limit price from the frame's ask via ``engine.venues.hyperliquid.rounding``, realistic size, cloid, expiry)
and calls :meth:`OrderExecutor.submit`, the synchronous send path the trading shell uses from
inside a frame callback. The executor takes a nonce, signs (SDK test key) and the feed writes
the post frame.

Measured:

1. single: one bbo frame at a time (idle client, 1 ms apart); median and p99 of frame out →
   order frame in (targets: median ≤ 250 µs, p99 ≤ 1 ms);
2. burst: 40 bbo frames for 40 markets in ONE server write; each triggers an order; the delay
   until the LAST order frame arrives (target: median ≤ 2 ms; p99 also shown), the first order's
   delay, and how many actions and socket writes the burst took.

The client's first order of a socket read is written right after its own frame; later ones are
coalesced (the feed's ``send_coalesce_s``, default 2 ms) into one action per flush. The first signature is
checked by the server with the official SDK (``recover_agent_or_user_from_l1_action``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# public test key of the official SDK's test-suite (not a secret)
KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
N_MARKETS = 40
SZ_DECIMALS = 2
TARGET_SINGLE_MEDIAN_US = 250.0
TARGET_SINGLE_P99_US = 1000.0
TARGET_BURST_LAST_US = 2000.0


def quantile(sorted_vals: list[float], q: float) -> float:
    return sorted_vals[min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))]


def coins() -> list[str]:
    return [f"xyz:M{i:02d}" for i in range(N_MARKETS)]


# =========================================================================== server process


class _Server:
    """One blocking WebSocket connection, driven step by step (no threads, no Trio)."""

    def __init__(self, sock: socket.socket) -> None:
        from wsproto import ConnectionType, WSConnection

        self.sock = sock
        self.ws = WSConnection(ConnectionType.SERVER)
        self.partial: list[str] = []
        self.t_out: dict[int, int] = {}  # seq -> ns before the sendall that carried it
        self.arrivals: dict[int, int] = {}  # seq -> ns after the recv that completed its post
        self.posts: list[tuple[int, int, list[int]]] = []  # (t_in, post id, seqs)
        self.recvs_with_posts = 0
        self.first_payload: dict[str, Any] | None = None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def text(self, obj: Any) -> bytes:
        from wsproto.events import TextMessage

        return self.ws.send(TextMessage(data=obj if isinstance(obj, str) else json.dumps(obj)))

    def pump(self, timeout: float | None) -> list[str]:
        """One recv (blocking up to ``timeout``): complete text messages; posts answered."""
        from wsproto.events import (
            AcceptConnection,
            CloseConnection,
            Ping,
            Request,
            TextMessage,
        )

        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 18)
        except TimeoutError:
            return []
        t_in = time.perf_counter_ns()
        if not data:
            raise EOFError
        self.ws.receive_data(data)
        out: list[str] = []
        answers: list[bytes] = []
        had_post = False
        for ev in self.ws.events():
            if isinstance(ev, Request):
                self.send(self.ws.send(AcceptConnection()))
            elif isinstance(ev, Ping):
                self.send(self.ws.send(ev.response()))
            elif isinstance(ev, CloseConnection):
                raise EOFError
            elif isinstance(ev, TextMessage):
                self.partial.append(ev.data)
                if not ev.message_finished:
                    continue
                msg = "".join(self.partial)
                self.partial.clear()
                out.append(msg)
                m = json.loads(msg)
                if m.get("method") == "post":
                    had_post = True
                    answers.append(self._answer_post(m, t_in))
                elif m.get("method") == "subscribe":
                    answers.append(
                        self.text(
                            {
                                "channel": "subscriptionResponse",
                                "data": {"method": "subscribe", "subscription": m["subscription"]},
                            }
                        )
                    )
        if had_post:
            self.recvs_with_posts += 1
        if answers:
            self.send(b"".join(answers))
        return out

    def _answer_post(self, m: dict[str, Any], t_in: int) -> bytes:
        payload = m["request"]["payload"]
        if self.first_payload is None:
            self.first_payload = payload
        orders = payload["action"]["orders"]
        seqs = [int(o["c"], 16) for o in orders]
        for s in seqs:
            self.arrivals.setdefault(s, t_in)
        self.posts.append((t_in, m["id"], seqs))
        statuses = [
            {"filled": {"totalSz": o["s"], "avgPx": o["p"], "oid": 1000 + i}}
            for i, o in enumerate(orders)
        ]
        return self.text(
            {
                "channel": "post",
                "data": {
                    "id": m["id"],
                    "response": {
                        "type": "action",
                        "payload": {
                            "status": "ok",
                            "response": {"type": "order", "data": {"statuses": statuses}},
                        },
                    },
                },
            }
        )

    def bbo(self, coin: str, seq: int, ask: str) -> bytes:
        # hand-built (the engine's encoder is not used here); "time" carries the sequence
        return self.text(
            f'{{"channel":"bbo","data":{{"coin":"{coin}","time":{seq},"bbo":'
            f'[{{"px":"112.88","sz":"3.1","n":2}},{{"px":"{ask}","sz":"0.8","n":1}}]}}}}'
        )

    def wait_for(self, seqs: list[int], timeout_s: float = 5.0) -> None:
        end = time.monotonic() + timeout_s
        while any(s not in self.arrivals for s in seqs):
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no order for seq(s) {[s for s in seqs if s not in self.arrivals][:5]}"
                )
            self.pump(left)

    def idle(self, seconds: float) -> None:
        """Serve whatever arrives (answers, pings) for ``seconds``."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.pump(left)


def server_main(args: argparse.Namespace) -> int:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    print(lsock.getsockname()[1], flush=True)
    lsock.settimeout(30)
    sock, _ = lsock.accept()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    srv = _Server(sock)
    markets = coins()
    # handshake + subscriptions (2 per market), then let the client settle
    end = time.monotonic() + 10
    subs = 0
    while subs < 2 * N_MARKETS and time.monotonic() < end:
        subs += sum('"subscribe"' in m for m in srv.pump(1.0))
    srv.idle(0.3)
    seq = 1
    asks = ["112.95", "112.96"]

    def one(i: int) -> int:
        nonlocal seq
        s = seq
        seq += 1
        frame = srv.bbo(markets[i % N_MARKETS], s, asks[i & 1])
        srv.t_out[s] = time.perf_counter_ns()
        srv.send(frame)
        srv.wait_for([s])
        return s

    # 1. single frames
    single: list[float] = []
    for i in range(args.warmup + args.singles):
        s = one(i)
        if i >= args.warmup:
            single.append((srv.arrivals[s] - srv.t_out[s]) / 1000.0)
        srv.idle(args.gap_ms / 1000.0)

    # 2. bursts: 40 frames, one write
    burst_last: list[float] = []
    burst_first: list[float] = []
    actions: list[int] = []
    recvs: list[int] = []
    for r in range(args.burst_warmup + args.bursts):
        seqs = list(range(seq, seq + N_MARKETS))
        seq += N_MARKETS
        frames = b"".join(srv.bbo(markets[k], s, asks[(r + k) & 1]) for k, s in enumerate(seqs))
        n_posts0 = len(srv.posts)
        recvs0 = srv.recvs_with_posts
        t_out = time.perf_counter_ns()
        for s in seqs:
            srv.t_out[s] = t_out
        srv.send(frames)
        srv.wait_for(seqs)
        if r >= args.burst_warmup:
            arr = [srv.arrivals[s] for s in seqs]
            burst_last.append((max(arr) - t_out) / 1000.0)
            burst_first.append((min(arr) - t_out) / 1000.0)
            actions.append(len(srv.posts) - n_posts0)
            recvs.append(srv.recvs_with_posts - recvs0)
        srv.idle(args.burst_gap_ms / 1000.0)

    verified = None
    if srv.first_payload is not None:
        from hyperliquid.utils import signing as sdk

        p = srv.first_payload
        verified = sdk.recover_agent_or_user_from_l1_action(
            p["action"],
            p["signature"],
            p.get("vaultAddress"),
            p["nonce"],
            p.get("expiresAfter"),
            True,
        )
    result = {
        "single_us": single,
        "burst_last_us": burst_last,
        "burst_first_us": burst_first,
        "burst_actions": actions,
        "burst_recvs": recvs,
        "recovered": verified,
        "example_post_bytes": len(json.dumps(srv.first_payload)) if srv.first_payload else 0,
    }
    print(json.dumps(result), flush=True)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
    return 0


# =========================================================================== client process


def client_main(args: argparse.Namespace) -> int:
    import trio

    from engine.clock import WallClock
    from engine.config import VenueConfig
    from engine.core.orders import ENTRY, Order
    from engine.venues.hyperliquid import rounding
    from engine.venues.hyperliquid.client import HyperliquidFeed
    from engine.venues.hyperliquid.execution import OrderExecutor
    from engine.venues.hyperliquid.nonce import NonceAllocator
    from engine.venues.hyperliquid.signing import Signer

    proc = subprocess.Popen(
        [sys.executable, __file__, "--server", *_server_args(args)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    markets = coins()
    index = {c: i for i, c in enumerate(markets)}
    clock = WallClock()
    signer = Signer.from_hex(KEY)
    counters = {"sent": 0, "results": 0, "not_sent": 0, "orders": 0}
    not_sent: list[str] = []

    cfg = VenueConfig(
        ws_url=f"ws://127.0.0.1:{port}/ws",
        connect_timeout_s=5.0,
        ping_idle_s=120.0,
        pong_timeout_s=60.0,
        reconnect_base_s=5.0,
        reconnect_jitter_s=0.0,
        ctx_stale_ms=0.0,
        bbo_stale_ms=0.0,
        post_timeout_s=5.0,
    )

    class Handler:
        """On each bbo: an IOC buy at ask + 5 bps, through the executor's sync send path."""

        def __init__(self) -> None:
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
            if ask_px is None:
                return
            idx = index[coin]
            px = rounding.slippage_limit_price(ask_px, True, 0.0005, SZ_DECIMALS)
            if px is None:
                return
            now = clock()
            order = Order(
                f"0x{time_ms:032x}",
                coin,
                idx,
                110000 + idx,
                True,
                px,
                "0.89",
                False,
                ENTRY,
                now,
                expires_after_ms=int(now) + 5000,
            )
            counters["orders"] += 1
            executor.submit([order])

        def on_ctx(self, coin: str, oracle_px: float, mark_px: float | None) -> None:
            return None

        def on_connected(self) -> None:
            return None

        def on_disconnected(self, reason: str) -> None:
            self.done.set()

        def on_subscribed(self, sub_type: str, coin: str | None) -> None:
            return None

        def on_batch_end(self) -> None:
            return None

    def on_sent(cloids: list[str]) -> None:
        counters["sent"] += len(cloids)

    def on_result(cloid: str, status: object) -> None:
        counters["results"] += 1

    def on_not_sent(cloids: list[str], reason: str) -> None:
        counters["not_sent"] += len(cloids)
        not_sent.append(reason)

    handler = Handler()
    feed = HyperliquidFeed(cfg, markets, handler, send_coalesce_s=args.coalesce_us / 1e6)
    executor = OrderExecutor(
        feed,
        signer,
        NonceAllocator(),
        is_mainnet=True,
        post_timeout_s=5.0,
        clock=clock,
        on_sent=on_sent,
        on_result=on_result,
        on_not_sent=on_not_sent,
    )

    async def run() -> None:
        async with trio.open_nursery() as n:
            n.start_soon(feed.run)
            with trio.fail_after(args.timeout):
                await handler.done.wait()
            n.cancel_scope.cancel()

    trio.run(run)
    out, _ = proc.communicate(timeout=30)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        print("ERROR: the server produced no result", file=sys.stderr)
        return 1
    res = json.loads(lines[-1])
    return report(res, counters, not_sent, feed.stats, signer.address, args)


def _server_args(args: argparse.Namespace) -> list[str]:
    return [
        "--singles",
        str(args.singles),
        "--warmup",
        str(args.warmup),
        "--bursts",
        str(args.bursts),
        "--burst-warmup",
        str(args.burst_warmup),
        "--gap-ms",
        str(args.gap_ms),
        "--burst-gap-ms",
        str(args.burst_gap_ms),
    ]


def report(
    res: dict[str, Any],
    counters: dict[str, int],
    not_sent: list[str],
    fstats: Any,
    agent: str,
    args: argparse.Namespace,
) -> int:
    single = sorted(res["single_us"])
    last = sorted(res["burst_last_us"])
    first = sorted(res["burst_first_us"])
    load = os.getloadavg()
    print(
        f"cpus: {os.cpu_count()}; load: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"coalesce window {args.coalesce_us:.0f} µs; post frame ~{res['example_post_bytes']} B"
    )
    print(
        f"signature check (server, official SDK): recovered {res['recovered']} "
        f"({'OK' if res['recovered'] == agent else 'MISMATCH'})"
    )
    print(
        f"single: {len(single)} frames  median {statistics.median(single):7.1f} µs  "
        f"p90 {quantile(single, 0.90):7.1f}  p99 {quantile(single, 0.99):7.1f}  "
        f"max {single[-1]:7.1f}"
    )
    print(
        f"burst : {len(last)} bursts of {N_MARKETS}  last order median "
        f"{statistics.median(last):7.1f} µs  p99 {quantile(last, 0.99):7.1f}  max {last[-1]:7.1f}"
    )
    print(
        f"        first order median {statistics.median(first):7.1f} µs  "
        f"p99 {quantile(first, 0.99):7.1f}"
    )
    acts = res["burst_actions"]
    recvs = res["burst_recvs"]
    print(
        f"        actions per burst: median {statistics.median(acts):.0f} "
        f"(min {min(acts)}, max {max(acts)}); server recvs carrying posts: median "
        f"{statistics.median(recvs):.0f} (max {max(recvs)})"
    )
    print(
        f"client: orders {counters['orders']}, sent {counters['sent']}, results "
        f"{counters['results']}, not sent {counters['not_sent']}; post writes "
        f"{fstats.post_writes}, posts {fstats.posts_sent}"
    )
    if not_sent:
        print(f"not sent (first): {not_sent[0]}")
    ok = True
    med = statistics.median(single)
    p99 = quantile(single, 0.99)
    blast = statistics.median(last)
    for label, value, target in (
        ("single frame->order median", med, TARGET_SINGLE_MEDIAN_US),
        ("single frame->order p99", p99, TARGET_SINGLE_P99_US),
        ("burst of 40: last order out, median", blast, TARGET_BURST_LAST_US),
    ):
        verdict = "PASS" if value <= target else "MISS"
        ok = ok and verdict == "PASS"
        print(f"{verdict}: {label} {value:.1f} µs vs target <= {target:.0f} µs")
    if res["recovered"] != agent or counters["not_sent"]:
        print("MISS: signature or sending problem (see above)")
        ok = False
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--singles", type=int, default=2000, help="timed single frames")
    ap.add_argument("--warmup", type=int, default=200, help="untimed single frames first")
    ap.add_argument("--bursts", type=int, default=300, help="timed bursts of 40 frames")
    ap.add_argument("--burst-warmup", type=int, default=20)
    ap.add_argument("--gap-ms", type=float, default=1.0, help="pause between single frames")
    ap.add_argument("--burst-gap-ms", type=float, default=5.0, help="pause between bursts")
    ap.add_argument(
        "--coalesce-us",
        type=float,
        default=2000.0,
        help="client: how long later orders of one read may wait to be batched (the feed's "
        "default SEND_COALESCE_S)",
    )
    ap.add_argument("--timeout", type=float, default=300.0, help="client: give up after (s)")
    args = ap.parse_args()
    if args.server:
        return server_main(args)
    return client_main(args)


if __name__ == "__main__":
    sys.exit(main())
