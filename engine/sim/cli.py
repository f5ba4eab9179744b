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
from engine.sim.trading import DEFAULT_MAKER_FEE, DEFAULT_TAKER_FEE


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
    p.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="ADDRESS=USDC",
        help="create a master account with a USDC balance (repeatable)",
    )
    p.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="AGENT=MASTER",
        help="approve an API wallet to sign for an account (repeatable)",
    )
    p.add_argument(
        "--testnet",
        action="store_true",
        help="verify signatures with the testnet phantom-agent source 'b' (default mainnet 'a')",
    )
    p.add_argument(
        "--match-latency-ms",
        type=float,
        default=0.0,
        help="virtual ms before an action executes against the book (default 0)",
    )
    p.add_argument(
        "--taker-fee",
        type=float,
        default=DEFAULT_TAKER_FEE,
        help=f"taker fee rate of every market (default {DEFAULT_TAKER_FEE})",
    )
    p.add_argument(
        "--maker-fee",
        type=float,
        default=DEFAULT_MAKER_FEE,
        help=f"maker fee rate of every market (default {DEFAULT_MAKER_FEE})",
    )
    p.add_argument(
        "--server-time-offset-ms",
        type=int,
        default=0,
        help="report server times this many ms off this host's clock (default 0; change it "
        "at runtime with POST /sim/control step_server_time)",
    )
    faults = p.add_argument_group("trading faults (docs/simulator.md)")
    faults.add_argument(
        "--user-stream-delay-ms",
        type=float,
        default=0.0,
        help="orderUpdates/userFills go out this long after the post response (default 0)",
    )
    faults.add_argument(
        "--empty-clearinghouse-every-s",
        type=float,
        default=0.0,
        metavar="PERIOD",
        help="every PERIOD s, clearinghouseState answers all zeros for a while (default off)",
    )
    faults.add_argument(
        "--empty-clearinghouse-s",
        type=float,
        default=3.0,
        metavar="LENGTH",
        help="length of each all-zero window (default 3)",
    )
    faults.add_argument(
        "--drop-on-reduce-only",
        type=int,
        default=0,
        metavar="N",
        help="the next N reduce-only order posts cut their WebSocket before any answer",
    )
    faults.add_argument(
        "--drop-executes",
        action="store_true",
        help="with --drop-on-reduce-only: execute the order before cutting (default: never)",
    )
    faults.add_argument(
        "--unknown-oid-ms",
        type=float,
        default=0.0,
        help="orderStatus says unknownOid for orders younger than this (default 0 = off)",
    )
    p.add_argument("--log-level", default="WARNING", help="stderr log level (default WARNING)")
    return p


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        left, sep, right = item.partition("=")
        if not sep or not left or not right:
            raise ValueError(f"{what} must look like {what.upper()}=VALUE, got {item!r}")
        out.append((left, right))
    return out


def _apply_faults(sim: SimExchange, args: argparse.Namespace) -> None:
    """The trading fault flags (raises ValueError for out-of-range values)."""
    sim.delay_user_streams_ms = args.user_stream_delay_ms
    sim.unknown_oid_for_ms = args.unknown_oid_ms
    sim.drop_on_reduce_only(args.drop_on_reduce_only, args.drop_executes)


async def _run(sim: SimExchange, host: str, every_s: float = 0.0, length_s: float = 0.0) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve)
            if every_s > 0:
                sim.empty_clearinghouse_every(every_s, length_s)
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
    if args.rate < 0 or args.port < 0 or args.match_latency_ms < 0:
        print("error: --rate, --port and --match-latency-ms must be >= 0", file=sys.stderr)
        return 2
    try:
        accounts = {addr: float(bal) for addr, bal in _pairs(args.account, "account")}
        agents = dict(_pairs(args.agent, "agent"))
        sim = SimExchange(
            host=args.host,
            port=args.port,
            seed=args.seed,
            n_markets=args.markets,
            rate=args.rate,
            aligned=args.aligned,
            dex_position=args.dex_position,
            accounts=accounts,
            agents=agents,
            is_mainnet=not args.testnet,
            match_latency_ms=args.match_latency_ms,
            taker_fee=args.taker_fee,
            maker_fee=args.maker_fee,
        )
        sim.server_time_offset_ms = args.server_time_offset_ms
        _apply_faults(sim, args)
        if args.empty_clearinghouse_every_s and not (
            0 < args.empty_clearinghouse_s < args.empty_clearinghouse_every_s
        ):
            raise ValueError("--empty-clearinghouse-s must be > 0 and below the period")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(
            _run, sim, args.host, args.empty_clearinghouse_every_s, args.empty_clearinghouse_s
        )
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
