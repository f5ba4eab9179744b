"""By-hand benchmark (not a test): firehose throughput to one WebSocket reader on loopback.

Starts ``python -m engine.sim --rate R`` as a subprocess, subscribes one connection to the bbo of
every market and counts frames per second, with either a raw wsproto reader on a blocking socket
(``--client wsproto``) or trio-websocket (``--client trio-websocket``). Prints the received rate
and the simulator's own firehose stats (backlog = frames behind schedule).

    .venv/bin/python tests/sim/bench_firehose.py --rate 70000 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COINS_REQUEST = {"type": "meta", "dex": "xyz"}


def start_sim(rate: float) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.sim", "--port", "0", "--rate", str(rate)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    m = re.search(r":(\d+) \(", proc.stdout.readline())
    assert m, "no listening line"
    return proc, int(m.group(1))


def http_json(port: int, path: str, body: Any | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def run_wsproto(port: int, coins: list[str], seconds: float) -> tuple[int, float, int]:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host="127.0.0.1", target="/ws")))
    accepted = False
    while not accepted:
        ws.receive_data(sock.recv(65536))
        accepted = any(isinstance(e, AcceptConnection) for e in ws.events())
    for coin in coins:
        msg = json.dumps({"method": "subscribe", "subscription": {"type": "bbo", "coin": coin}})
        sock.sendall(ws.send(TextMessage(data=msg)))
    frames = bad = 0
    parts: list[str] = []
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        try:
            data = sock.recv(262144)
        except ConnectionResetError:
            print("connection reset: the simulator dropped this reader as a slow consumer")
            break
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, TextMessage):
                # wsproto hands over partial messages when a frame spans two recv() calls
                parts.append(event.data)
                if not event.message_finished:
                    continue
                frames += 1
                if frames % 1000 == 0:  # spot-check that frames are complete JSON messages
                    try:
                        json.loads("".join(parts))
                    except ValueError:
                        bad += 1
                parts.clear()
    elapsed = time.perf_counter() - t0
    sock.close()
    return frames, elapsed, bad


def run_trio_websocket(port: int, coins: list[str], seconds: float) -> tuple[int, float, int]:
    import trio
    from trio_websocket import open_websocket_url

    result: dict[str, Any] = {}

    async def main() -> None:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
            for coin in coins:
                await ws.send_message(
                    json.dumps(
                        {"method": "subscribe", "subscription": {"type": "bbo", "coin": coin}}
                    )
                )
            frames = 0
            t0 = trio.current_time()
            with trio.move_on_after(seconds):
                while True:
                    await ws.get_message()
                    frames += 1
            result["frames"] = frames
            result["elapsed"] = trio.current_time() - t0

    trio.run(main)
    return result["frames"], result["elapsed"], 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=70_000.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--client", choices=["wsproto", "trio-websocket"], default="wsproto")
    args = p.parse_args()
    proc, port = start_sim(args.rate)
    try:
        coins = [u["name"] for u in http_json(port, "/info", COINS_REQUEST)["universe"]]
        run = run_wsproto if args.client == "wsproto" else run_trio_websocket
        frames, elapsed, bad = run(port, coins, args.seconds)
        stats = http_json(port, "/sim/stats")
        print(f"client={args.client} target={args.rate:.0f}/s markets={len(coins)}")
        print(f"received {frames} frames in {elapsed:.2f} s = {frames / elapsed:,.0f} frames/s")
        print(f"invalid JSON in spot checks: {bad}")
        print(f"simulator firehose stats: {json.dumps(stats['firehose'])}")
        print(f"model frames (bbo total incl. model): {stats['frames_sent']['bbo']}")
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
