"""Command line: ``python -m engine sim --venue bybit [options]``; runs until SIGINT/SIGTERM.

Prints one line to stdout once bound:
``bybit simulator listening on http://HOST:PORT (ws://HOST:PORT/v5/public/linear, /v5/public/spot,
/v5/private)``. Accounts are ``--account KEY:SECRET[:USDT]`` (simulator-only keys; never use a
real key pair here).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from engine.sim.bybit.exchange import Exchange
from engine.sim.bybit.server import BybitSimServer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="engine sim --venue bybit",
                                description="Local Bybit v5 exchange simulator.")
    p.add_argument("--venue", choices=["bybit"], default="bybit", help=argparse.SUPPRESS)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 = ephemeral (default)")
    p.add_argument("--seed", type=int, default=1, help="market model seed (default 1)")
    p.add_argument("--tick-ms", type=float, default=100.0, help="public push period (ms)")
    p.add_argument("--funding-interval-min", type=int, default=480,
                   help="funding interval of every perpetual in minutes (default 480)")
    p.add_argument("--funding-interval-s", type=float, default=None,
                   help="funding interval in seconds, a multiple of 60 (overrides "
                        "--funding-interval-min; short intervals let a demo see settlements)")
    p.add_argument("--funding-rate", type=float, default=None,
                   help="initial funding rate of every perpetual (default: the market's own)")
    p.add_argument("--funding-drift", type=float, default=None,
                   help="std. dev. of the funding rate's random walk per tick")
    p.add_argument("--account", action="append", default=[], metavar="KEY:SECRET[:USDT]",
                   help="an account (repeatable); default sim-key:sim-secret:100000")
    return p


def configure_funding(ex: Exchange, interval_ms: int, rate: float | None,
                      drift: float | None, now_ms: int) -> None:
    """Every perpetual settles every ``interval_ms`` (slots from 00:00 UTC), starting at
    ``rate`` when given; ``drift`` sets the rate's random walk (0: constant)."""
    for m in ex.markets.values():
        m.spec.interval_ms = interval_ms
        m.next_funding_ms = ex.next_slot(now_ms, interval_ms)
        if rate is not None:
            m.funding_rate = rate
    if drift is not None:
        ex.funding_drift = drift


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import time

    ex = Exchange(seed=args.seed, now_ms=int(time.time() * 1000))
    interval_ms = (int(args.funding_interval_s * 1000) if args.funding_interval_s
                   else args.funding_interval_min * 60_000)
    if interval_ms < 60_000 or interval_ms % 60_000:
        print("--funding-interval-s/--funding-interval-min: a whole number of minutes (>= 1); "
              "instruments-info states fundingInterval in minutes", file=sys.stderr)
        return 2
    configure_funding(ex, interval_ms, args.funding_rate, args.funding_drift,
                      int(time.time() * 1000))
    accounts = args.account or ["sim-key:sim-secret:100000"]
    for spec in accounts:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            print(f"--account {spec!r}: expected KEY:SECRET[:USDT]", file=sys.stderr)
            return 2
        usdt = float(parts[2]) if len(parts) == 3 else 100_000.0
        ex.add_account(parts[0], parts[1], usdt=usdt, coins={"BTC": 1.0, "ETH": 10.0})
    server = BybitSimServer(ex, host=args.host, port=args.port, tick_s=args.tick_ms / 1000.0)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(server.serve)
            ws = "ws" + url[4:]
            print(f"bybit simulator listening on {url} ({ws}/v5/public/linear, /v5/public/spot,"
                  f" /v5/private)", flush=True)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(run)
    return 0
