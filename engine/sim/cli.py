"""Command line: run the simulator until SIGINT/SIGTERM.

Prints exactly one line to stdout once bound:
``simulator listening on http://HOST:PORT (ws://HOST:PORT/ws)``; logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from engine.sim.markets import XYZ_MARKETS
from engine.sim.server import SimExchange


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="engine.sim", description="Local Hyperliquid HIP-3 (xyz dex) exchange simulator."
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 = ephemeral (default)")
    p.add_argument("--seed", type=int, default=1, help="market model seed (default 1)")
    p.add_argument(
        "--markets",
        type=int,
        default=len(XYZ_MARKETS),
        help=f"number of xyz markets, first N in meta order (1-{len(XYZ_MARKETS)})",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="firehose bbo frames/s on top of the model (0 = off)",
    )
    p.add_argument("--aligned", action="store_true", help="books never dislocate from the oracle")
    p.add_argument(
        "--dex-position",
        type=int,
        default=1,
        help="index of xyz in perpDexs (K>1 lists K-1 dummy dexes first)",
    )
    p.add_argument("--log-level", default="WARNING", help="stderr log level (default WARNING)")
    return p


async def _run(sim: SimExchange, host: str) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve)
            print(
                f"simulator listening on http://{host}:{port} (ws://{host}:{port}/ws)", flush=True
            )
            async for _sig in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not 1 <= args.markets <= len(XYZ_MARKETS):
        print(f"error: --markets must be between 1 and {len(XYZ_MARKETS)}", file=sys.stderr)
        return 2
    if args.dex_position < 1:
        print("error: --dex-position must be >= 1", file=sys.stderr)
        return 2
    if args.rate < 0 or args.port < 0:
        print("error: --rate and --port must be >= 0", file=sys.stderr)
        return 2
    sim = SimExchange(
        host=args.host,
        port=args.port,
        seed=args.seed,
        n_markets=args.markets,
        rate=args.rate,
        aligned=args.aligned,
        dex_position=args.dex_position,
    )
    try:
        trio.run(_run, sim, args.host)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
