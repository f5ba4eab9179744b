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
    p.add_argument("--mode", choices=("observe", "paper", "trade"), default=None,
                   help="override the config's mode (trade refuses mainnet unless "
                        "[trading] allow_live = true)")
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
    r = sub.add_parser("reset-hard-stop",
                       help="release a latched hard stop (explicit operator command)",
                       description="Ask the engine that writes to the config's records dir to "
                                   "reset its hard stop: a running engine does so within 1 s; "
                                   "a stopped one at its next start (after journal restore).")
    r.add_argument("--config", help="the engine's TOML config (default: the embedded one)")
    return parser


def reset_hard_stop(config_path: str | None) -> int:
    from pathlib import Path

    from engine.trading_app import RESET_FILE

    cfg = load(config_path)
    d = Path(cfg.records.dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
        (d / RESET_FILE).write_text("reset requested by the operator\n", "utf-8")
    except OSError as exc:
        print(f"engine: cannot write {d / RESET_FILE}: {exc.strerror}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"hard stop reset requested ({d / RESET_FILE}); a running engine applies it within "
          "1 s, a stopped one at its next start")
    return 0


def load(path: str | None, mode: str | None = None) -> EngineConfig:
    import os

    env = dict(os.environ)
    if mode is not None:
        env["ENGINE__MODE"] = mode  # same path as any override: validated with the rest
    if path is None:
        return load_config(None, env=env, defaults=embedded_default_config())
    return load_config(path, env=env)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sim":
        from engine.sim.cli import main as sim_main

        return sim_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    config_path = getattr(args, "config", None)
    duration = getattr(args, "duration", None)
    if args.command == "reset-hard-stop":
        try:
            return reset_hard_stop(config_path)
        except ConfigError as exc:
            print(f"engine: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        cfg = load(config_path, getattr(args, "mode", None))
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
