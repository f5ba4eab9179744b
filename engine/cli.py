"""Command line: ``python -m engine [run|sim] ...``; with no arguments, observe on the simulator.

Exit codes (stable, scripted by operators): 0 clean stop; 1 runtime failure (venue unreachable,
unexpected error); 2 configuration or usage error (reported before any connection is made).
"""

from __future__ import annotations

import argparse
import importlib.resources
import logging
import sys
from functools import partial

import trio

from engine.app import EXIT_CONFIG, EXIT_RUNTIME, StartupError, run_observe
from engine.config import ConfigError, EngineConfig, load_config
from engine.logs import setup_logging

log = logging.getLogger("engine.cli")


def embedded_default_config() -> str:
    """The TOML text of the embedded default (observe on the built-in simulator)."""
    return (importlib.resources.files("engine") / "defaults" / "sim.toml").read_text("utf-8")


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the engine (default: observe on the embedded simulator)",
                       description="Run the engine. Without --config, observe mode runs against "
                                   "the embedded exchange simulator (no network).")
    p.add_argument("--config", help="TOML config file (e.g. config/observe.toml)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop cleanly after this many seconds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="Hyperliquid HIP-3 stale-liquidity engine. With no command: observe mode on "
                    "the embedded simulator.")
    sub = parser.add_subparsers(dest="command")
    _run_parser(sub)
    sub.add_parser("sim", help="run the local exchange simulator", add_help=False)
    return parser


def load(path: str | None) -> EngineConfig:
    if path is None:
        return load_config(None, defaults=embedded_default_config())
    return load_config(path)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sim":
        from engine.sim.cli import main as sim_main

        return sim_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    config_path = getattr(args, "config", None)
    duration = getattr(args, "duration", None)
    try:
        cfg = load(config_path)
    except ConfigError as exc:
        print(f"engine: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(cfg.log.level)
    if cfg.mode in ("paper", "trade"):
        from engine.trading_app import run_trading

        runner = partial(run_trading, cfg, duration_s=duration)
    else:
        runner = partial(run_observe, cfg, duration_s=duration)
    try:
        return trio.run(runner)
    except StartupError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0
    except Exception:
        log.exception("engine stopped by an unexpected error")
        return EXIT_RUNTIME


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
