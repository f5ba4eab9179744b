"""Command line: ``python -m engine [run|sim|check|status|kill|flatten|reset-hard-stop|report|
retention] ...``; with no arguments, paper mode on the embedded simulator.

Exit codes (stable, scripted by operators; also printed by ``--help``): 0 done / clean stop;
1 runtime failure (venue unreachable, unexpected error, positions left open at a stop);
2 configuration or usage error (reported before any connection is made). ``check`` answers
0 GO / 1 NO-GO / 2 CONDITIONAL; ``status`` 0 healthy / 1 unhealthy or hard stop / 3 not running.
"""

from __future__ import annotations

import argparse
import importlib.resources
import logging
import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from engine.app import EXIT_CONFIG, EXIT_RUNTIME, StartupError, run_observe
from engine.config import ConfigError, EngineConfig, load_config
from engine.logs import setup_logging

log = logging.getLogger("engine.cli")


def embedded_default_config() -> str:
    """The TOML text of the embedded default (observe on the built-in simulator)."""
    return (importlib.resources.files("engine") / "defaults" / "sim.toml").read_text("utf-8")


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the engine (default: paper on the embedded simulator)",
                       description="Run the engine. Without --config, paper mode runs against "
                                   "the embedded exchange simulator (no network).")
    _config_arg(p)
    p.add_argument("--mode", choices=("observe", "paper", "trade"), default=None,
                   help="override the config's mode (trade refuses mainnet unless "
                        "[trading] allow_live = true)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop cleanly after this many seconds")


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="the engine's TOML config (default: the embedded one)")


EXIT_CODES_HELP = """exit codes:
  run, kill, flatten, reset-hard-stop, report:
    0 done / clean stop (flat)   1 runtime failure (or positions left open)   2 config or usage error
  check:   0 GO   1 NO-GO   2 CONDITIONAL
  status:  0 running and healthy   1 running, unhealthy or hard stop latched   3 not running
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Hyperliquid HIP-3 stale-liquidity engine. With no command: paper mode on "
                    "the embedded simulator.",
        epilog=EXIT_CODES_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _run_parser(sub)
    sub.add_parser("sim", help="run the local exchange simulator (see: sim --help)",
                   add_help=False)
    c = sub.add_parser("check", help="go/no-go check before a deploy or a start",
                       description="Check config, credentials (never shown), data dir, clock, "
                                   "the property-test suite and the venue; print each check and "
                                   "GO / NO-GO / CONDITIONAL (exit 0 / 1 / 2).")
    _config_arg(c)
    c.add_argument("--mode", choices=("observe", "paper", "trade"), default=None)
    c.add_argument("--skip-tests", action="store_true",
                   help="do not run the property-test suite (verdict at best CONDITIONAL)")
    c.add_argument("--tests", default=None, metavar="PATH",
                   help="test suite to run (default: the repository's tests/)")
    st = sub.add_parser("status", help="ask the running engine for its status",
                        description="Query the running engine's ops endpoint (/status on "
                                    "[ops] http_host:http_port). Exit 0 healthy, 1 unhealthy or "
                                    "hard stop latched, 3 not running.")
    _config_arg(st)
    st.add_argument("--json", action="store_true", help="print the raw JSON")
    k = sub.add_parser("kill", help="kill switch: stop entries, cancel, flatten, exit",
                       description="Create the kill file ([ops] kill_file in the state dir). "
                                   "A running engine sees it within 1 s: no new entries, open "
                                   "orders canceled, every position flattened reduce-only, "
                                   "records flushed, exit 0. While the file exists the engine "
                                   "does not trade. With an ops token (ENGINE_OPS_TOKEN or "
                                   "$CREDENTIALS_DIRECTORY/ops_token) it also calls POST /kill.")
    _config_arg(k)
    k.add_argument("--reason", default="operator kill (python -m engine kill)")
    k.add_argument("--clear", action="store_true",
                   help="remove the kill file so the engine may trade again")
    f = sub.add_parser("flatten", help="flatten every open position now (engine keeps running)",
                       description="Ask the running engine to flatten every position "
                                   "reduce-only (within 1 s). Entries stay allowed; use kill "
                                   "to stop trading.")
    _config_arg(f)
    r = sub.add_parser("reset-hard-stop",
                       help="release a latched hard stop (explicit operator command)",
                       description="Ask the engine to reset its hard stop: a running engine "
                                   "does so within 1 s; a stopped one at its next start (after "
                                   "journal restore).")
    _config_arg(r)
    rp = sub.add_parser("report", help="write the Markdown report of a UTC day",
                        description="Write report_YYYY-MM-DD.md (and PNG plots when matplotlib "
                                    "is installed) for a UTC day from the records.")
    _config_arg(rp)
    rp.add_argument("--day", default=None, metavar="YYYY-MM-DD",
                    help="UTC day (default: yesterday)")
    rp.add_argument("--out", default=None, help="output dir (default: [report] dir)")
    rt = sub.add_parser("retention", help="compress closed day files and delete old ones",
                        description="Apply [retention]: gzip closed UTC-day files, delete files "
                                    "older than each kind's policy.")
    _config_arg(rt)
    rt.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    return parser


def _request_file(config_path: str | None, name: str, text: str, what: str) -> int:
    from engine.ops.paths import resolve_state_dir, write_request

    cfg = load(config_path)
    path = resolve_state_dir(cfg) / name
    try:
        write_request(path, text)
    except OSError as exc:
        print(f"engine: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"{what} requested ({path}); a running engine applies it within 1 s, a stopped one "
          "at its next start")
    return 0


def reset_hard_stop(config_path: str | None) -> int:
    from engine.ops.paths import RESET_FILE

    return _request_file(config_path, RESET_FILE, "reset requested by the operator\n",
                         "hard stop reset")


def flatten(config_path: str | None) -> int:
    from engine.ops.paths import FLATTEN_FILE

    return _request_file(config_path, FLATTEN_FILE, "flatten requested by the operator\n",
                         "flatten of every position")


def _ops_url(cfg: EngineConfig, path: str) -> str:
    host = cfg.ops.http_host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{cfg.ops.http_port}{path}"


def kill(config_path: str | None, reason: str, clear: bool) -> int:
    import httpx

    from engine.ops.paths import kill_file_path, write_request
    from engine.secrets import SecretsError, load_credential

    cfg = load(config_path)
    path = kill_file_path(cfg)
    if clear:
        try:
            path.unlink()
        except FileNotFoundError:
            print(f"no kill file at {path}: nothing to clear")
            return 0
        except OSError as exc:
            print(f"engine: cannot remove {path}: {exc.strerror}", file=sys.stderr)
            return EXIT_RUNTIME
        print(f"kill file {path} removed: the engine may trade at its next start")
        return 0
    try:
        write_request(path, reason.strip() + "\n")
    except OSError as exc:
        print(f"engine: cannot write the kill file {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"kill file written: {path} (a running engine stops within 1 s; it will not trade "
          "while this file exists; clear it with: python -m engine kill --clear)")
    try:
        token = load_credential("ops_token", "ENGINE_OPS_TOKEN")
    except SecretsError as exc:
        print(f"ops token unusable ({exc}); relying on the kill file", file=sys.stderr)
        token = None
    if token is not None and cfg.ops.http_enabled:
        try:
            r = httpx.post(_ops_url(cfg, "/kill"), json={"reason": reason},
                           headers={"Authorization": f"Bearer {token[0]}"}, timeout=3.0)
            print(f"POST /kill: HTTP {r.status_code}")
        except httpx.HTTPError as exc:
            print(f"POST /kill not delivered ({type(exc).__name__}); the kill file suffices")
    return 0


def status(config_path: str | None, as_json: bool) -> int:
    import json

    import httpx

    cfg = load(config_path)
    url = _ops_url(cfg, "/status")
    if not cfg.ops.http_enabled:
        print("engine: [ops] http_enabled = false: no status endpoint to ask", file=sys.stderr)
        return 3
    try:
        r = httpx.get(url, timeout=3.0)
        data = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"engine not running (no answer at {url}: {type(exc).__name__})")
        return 3
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        for line in format_status(data):
            print(line)
    healthy = bool(data.get("healthy"))
    latched = bool(data.get("hard_stop"))
    return 0 if healthy and not latched else 1


def format_status(data: dict[str, Any]) -> list[str]:
    """Readable lines of a /status document (missing keys are shown as '?')."""
    def g(key: str) -> Any:
        return data.get(key, "?")

    lines = [f"engine {g('mode')} — {'HEALTHY' if data.get('healthy') else 'UNHEALTHY'}"
             f"{' (ready)' if data.get('ready') else ' (not ready)'} uptime {g('uptime_s')} s",
             f"hard stop: {data.get('hard_stop') or 'off'}   killed: {g('killed')}   "
             f"stopping: {data.get('stopping') or 'no'}"]
    for p in data.get("problems") or []:
        lines.append(f"  problem: {p}")
    positions = data.get("positions") or {}
    lines.append(f"positions: {len(positions)}" + "".join(
        f"\n  {k}: {v}" for k, v in sorted(positions.items())))
    for key in ("markets_live", "signals", "entries", "trades", "realized_pnl", "breakers"):
        if key in data:
            lines.append(f"{key}: {data[key]}")
    return lines


def report(config_path: str | None, day: str | None, out: str | None) -> int:
    import datetime as dt
    from pathlib import Path

    from engine.ops.report import write_report

    cfg = load(config_path)
    if day is None:
        d = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date()
    else:
        try:
            d = dt.date.fromisoformat(day)
        except ValueError:
            print(f"engine: --day must be YYYY-MM-DD, got {day!r}", file=sys.stderr)
            return EXIT_CONFIG
    records = Path(cfg.records.dir)
    out_dir = Path(out or cfg.report.dir or records / "reports")
    try:
        path = write_report(records, d, out_dir)
    except OSError as exc:
        print(f"engine: cannot write the report: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"report written: {path}")
    return 0


def retention(config_path: str | None, dry_run: bool) -> int:
    import datetime as dt
    from pathlib import Path

    from engine.ops.retention import apply_retention, plan_retention

    cfg = load(config_path)
    today = dt.datetime.now(dt.UTC).date()
    plan = plan_retention(Path(cfg.records.dir), cfg.retention, today)
    if dry_run:
        print(plan.describe())
    result = apply_retention(plan, dry_run=dry_run)
    print(result.summary())
    return 0 if result.ok else EXIT_RUNTIME


def load(path: str | None, mode: str | None = None) -> EngineConfig:
    env = dict(os.environ)
    if mode is not None:
        env["ENGINE__MODE"] = mode  # same path as any override: validated with the rest
    if path is None:
        return load_config(None, env=env, defaults=embedded_default_config())
    return load_config(path, env=env)


def _sim_venue(args: list[str]) -> tuple[str, list[str]]:
    """The ``--venue`` of ``sim`` (default ``hyperliquid``) and the other arguments."""
    venue, rest, i = "hyperliquid", [], 0
    while i < len(args):
        if args[i] == "--venue" and i + 1 < len(args):
            venue, i = args[i + 1], i + 2
            continue
        if args[i].startswith("--venue="):
            venue = args[i].split("=", 1)[1]
        else:
            rest.append(args[i])
        i += 1
    return venue, rest


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sim":  # issue 11: `sim --venue bybit|hyperliquid` (default HL)
        venue, rest = _sim_venue(argv[1:])
        if venue == "bybit":
            from engine.sim.bybit.cli import main as bybit_sim_main

            return bybit_sim_main(rest)
        if venue != "hyperliquid":
            print(f"engine sim: --venue must be hyperliquid or bybit, got {venue!r}",
                  file=sys.stderr)
            return 2
        argv = ["sim", *rest]
    if argv and argv[0] == "sim":
        from engine.sim.cli import main as sim_main

        return sim_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    config_path = getattr(args, "config", None)
    duration = getattr(args, "duration", None)
    if args.command == "check":
        from engine.ops.check import run_check

        return run_check(config_path, mode=args.mode, run_tests=not args.skip_tests,
                         tests_path=args.tests, out=sys.stdout, env=os.environ)
    commands: dict[str, Callable[[], int]] = {
        "reset-hard-stop": lambda: reset_hard_stop(config_path),
        "flatten": lambda: flatten(config_path),
        "kill": lambda: kill(config_path, args.reason, args.clear),
        "status": lambda: status(config_path, args.json),
        "report": lambda: report(config_path, args.day, args.out),
        "retention": lambda: retention(config_path, args.dry_run),
    }
    if args.command in commands:
        try:
            return commands[args.command]()
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
