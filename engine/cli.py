"""Command line: ``python -m engine [run|sim|check|status|kill|flatten|reset-hard-stop|report|
retention] ...``; with no arguments, paper mode on the embedded simulator.

Exit codes (stable, scripted by operators; also printed by ``--help``): 0 done / clean stop;
1 runtime failure (venue unreachable after its retries, unexpected error, positions left open
at a stop); 2 configuration or usage error (bad config or override, unknown market or dex, ops
port in use, records dir held by another engine; reported before the feed connects and before
anything is written). Each failure is one line naming the key to change; ``--debug`` adds the
traceback of an unexpected error. ``check`` answers
0 GO / 1 NO-GO / 2 CONDITIONAL; ``status`` 0 healthy / 1 unhealthy or hard stop / 3 not running.
``report`` 3: no record of any kind for that day (nothing written).
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
from engine.venues import registry

log = logging.getLogger("engine.cli")


def embedded_default_config() -> str:
    """The TOML text of the embedded default (paper mode on the built-in simulator)."""
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
    _debug_arg(p, default=argparse.SUPPRESS)


def _debug_arg(p: argparse.ArgumentParser, default: Any = False) -> None:
    p.add_argument("--debug", action="store_true", default=default,
                   help="show the traceback of an unexpected error (operators get one line)")


def _mode_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("observe", "paper", "trade"), default=None,
                   help="the mode of the engine to address (the default records dir, where "
                        "the kill and request files live, depends on it)")


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="the engine's TOML config (default: the embedded one)")


EXIT_CODES_HELP = """exit codes:
  run, kill, flatten, reset-hard-stop, report:
    0 done / clean stop (flat)   1 runtime failure (or positions left open)   2 config or usage error
    run: 1 also when the venue is unreachable after its retries; 2 also for an unknown market or
    dex, the ops port in use, or a records dir held by another engine (engine.lock)
  check:   0 GO   1 NO-GO   2 CONDITIONAL
  status:  0 running and healthy   1 running, unhealthy or hard stop latched   3 not running
  report:  3 no record of any kind for that day (nothing written)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Hyperliquid HIP-3 stale-liquidity engine. With no command: paper mode on "
                    "the embedded simulator.",
        epilog=EXIT_CODES_HELP)
    _debug_arg(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _run_parser(sub)
    sub.add_parser("sim", help="run the local exchange simulator (see: sim --help); "
                   "`sim record --out DIR` writes a frame recording", add_help=False)
    sub.add_parser("replay", help="replay a frame recording (see: replay --help)",
                   add_help=False)
    sub.add_parser("sweep", help="one replay per parameter set of a grid (see: sweep --help)",
                   add_help=False)
    sub.add_parser("export", help="record day files to Parquet by kind and day "
                   "(see: export --help)", add_help=False)
    c = sub.add_parser("check", help="go/no-go check before a deploy or a start",
                       description="Check config, credentials (never shown), data dir, the "
                                   "venue, clock, hard stop, kill file and the tests (by "
                                   "default the property tests only, well under a minute); "
                                   "print one [PASS|INFO|WARN|FAIL] line each and GO / NO-GO / "
                                   "CONDITIONAL (exit 0 / 1 / 2). INFO (an optional part not "
                                   "configured: ops token, webhook) does not change the "
                                   "verdict.")
    _config_arg(c)
    c.add_argument("--mode", choices=("observe", "paper", "trade"), default=None)
    c.add_argument("--tests", choices=("property", "all"), default="property",
                   help="property: the Hypothesis property tests (default, well under a "
                        "minute); all: the whole default suite (a few minutes)")
    c.add_argument("--skip-tests", action="store_true",
                   help="run no tests (verdict at best CONDITIONAL)")
    c.add_argument("--tests-path", default=None, metavar="PATH",
                   help="test directory (default: the repository's tests/)")
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
    _mode_arg(k)
    k.add_argument("--reason", default="operator kill (python -m engine kill)")
    k.add_argument("--clear", action="store_true",
                   help="remove the kill file so the engine may trade again")
    f = sub.add_parser("flatten", help="flatten every open position now (engine keeps running)",
                       description="Ask the running engine to flatten every position "
                                   "reduce-only (within 1 s). Entries stay allowed; use kill "
                                   "to stop trading.")
    _config_arg(f)
    _mode_arg(f)
    r = sub.add_parser("reset-hard-stop",
                       help="release a latched hard stop (explicit operator command)",
                       description="Ask the engine to reset its hard stop: a running engine "
                                   "does so within 1 s; a stopped one at its next start (after "
                                   "journal restore).")
    _config_arg(r)
    _mode_arg(r)
    rp = sub.add_parser("report", help="write the Markdown report of a UTC day",
                        description="Write report_YYYY-MM-DD.md (and PNG plots when matplotlib "
                                    "is installed) for a UTC day from the records. Exit 3 when "
                                    "the day has no record at all (nothing is written).")
    _config_arg(rp)
    _mode_arg(rp)
    rp.add_argument("--day", default=None, metavar="YYYY-MM-DD",
                    help="UTC day (default: yesterday)")
    rp.add_argument("--out", default=None, help="output dir (default: [report] dir)")
    rt = sub.add_parser("retention", help="compress closed day files and delete old ones",
                        description="Apply [retention]: gzip closed UTC-day files, delete files "
                                    "older than each kind's policy.")
    _config_arg(rt)
    _mode_arg(rt)
    rt.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    return parser


def _request_file(config_path: str | None, name: str, text: str, what: str,
                  mode: str | None = None) -> int:
    from engine.ops.paths import resolve_state_dir, write_request

    cfg = load(config_path, mode)
    path = resolve_state_dir(cfg) / name
    try:
        write_request(path, text)
    except OSError as exc:
        print(f"engine: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"{what} requested ({path}); a running engine applies it within 1 s, a stopped one "
          "at its next start")
    return 0


def reset_hard_stop(config_path: str | None, mode: str | None = None) -> int:
    from engine.ops.paths import RESET_FILE

    return _request_file(config_path, RESET_FILE, "reset requested by the operator\n",
                         "hard stop reset", mode)


def flatten(config_path: str | None, mode: str | None = None) -> int:
    from engine.ops.paths import FLATTEN_FILE

    return _request_file(config_path, FLATTEN_FILE, "flatten requested by the operator\n",
                         "flatten of every position", mode)


def _ops_url(cfg: EngineConfig, path: str) -> str:
    host = cfg.ops.http_host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{cfg.ops.http_port}{path}"


def kill(config_path: str | None, reason: str, clear: bool, mode: str | None = None) -> int:
    import httpx

    from engine.ops.paths import kill_file_path, write_request
    from engine.secrets import SecretsError, load_credential

    cfg = load(config_path, mode)
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
    """Readable lines of a /status document (missing keys are shown as '?'): prices and sizes
    at each market's precision, P&L with its unit, breakers in words."""
    from engine.display import fmt_px, fmt_sz, fmt_usd

    def g(key: str) -> Any:
        return data.get(key, "?")

    uptime = data.get("uptime_s")
    up = f"{uptime:.0f} s" if isinstance(uptime, int | float) else "?"
    lines = [f"engine {g('mode')} — {'HEALTHY' if data.get('healthy') else 'UNHEALTHY'}"
             f"{' (ready)' if data.get('ready') else ' (not ready)'}, up {up}",
             f"hard stop: {data.get('hard_stop') or 'off'}   "
             f"killed: {'yes' if data.get('killed') else 'no'}   "
             f"stopping: {data.get('stopping') or 'no'}"]
    for p in data.get("problems") or []:
        lines.append(f"  problem: {p}")
    if data.get("strategy") == "funding":  # issue 11: pairs of two legs, not positions
        lines.extend(_funding_status_lines(data))
        if "breakers" in data:
            lines.append(f"breakers: {describe_breakers(data['breakers'])}")
        return lines
    unit = data.get("pnl_unit") or "USD"
    positions = data.get("positions") or {}
    details = data.get("position_details") or {}
    lines.append(f"positions: {len(positions)}")
    for coin in sorted(positions):
        d = details.get(coin) or {}
        size = d.get("size", positions[coin])
        dec = d.get("sz_decimals")
        side = "long" if isinstance(size, int | float) and size > 0 else "short"
        mag = abs(size) if isinstance(size, int | float) else size
        lines.append(f"  {coin}: {side} {fmt_sz(mag, dec)} entry {fmt_px(d.get('entry_px'), dec)}"
                     f" mark {fmt_px(d.get('mark_px'), dec)} unrealised "
                     + (fmt_usd(d["unrealized_pnl_usd"]) if d.get("unrealized_pnl_usd")
                        is not None else f"? {unit}"))
    if "realized_pnl" in data or "unrealized_pnl" in data:
        lines.append(f"P&L: realised {fmt_usd(data.get('realized_pnl'))}, unrealised "
                     f"{fmt_usd(data.get('unrealized_pnl'))} (after fees)")
    counts = [f"{k.replace('_', ' ')} {data[k]}" for k in
              ("markets_live", "signals", "entries", "trades") if k in data]
    if counts:
        lines.append(" | ".join(counts))
    if "breakers" in data:
        lines.append(f"breakers: {describe_breakers(data['breakers'])}")
    return lines


def _funding_status_lines(data: dict[str, Any]) -> list[str]:
    """The funding app's pairs: state, both legs, APR, P&L parts, leg risk; then the totals."""
    from engine.display import fmt_usd

    def num(x: Any, fmt: str) -> str:
        return format(x, fmt) if isinstance(x, int | float) else "?"

    def table(x: Any) -> dict[str, Any]:
        return x if isinstance(x, dict) else {}

    f = table(data.get("funding"))
    rows = table(f.get("symbols"))
    lines = [f"pairs: {len(rows)} (hedged {f.get('hedged', '?')}, unhedged "
             f"{f.get('unhedged', '?')}), live {data.get('markets_live', '?')}"]
    for sym in sorted(rows):
        r = table(rows[sym])
        apr = r.get("apr")
        lines.append(f"  {sym}: {str(r.get('state', '?')).upper()} spot "
                     f"{num(r.get('spot_qty'), '+g')} perp {num(r.get('perp_qty'), '+g')} net "
                     f"{num(r.get('net_qty'), '+g')} | APR "
                     f"{num(apr * 100 if isinstance(apr, int | float) else None, '.1f')} % | "
                     f"funding {fmt_usd(r.get('funding'))} basis {fmt_usd(r.get('basis_pnl'))} "
                     f"fees {fmt_usd(r.get('fees'), signed=False)} | leg risk "
                     f"{num(r.get('leg_risk_usd_s'), '.1f')} USD·s")
        for o in r.get("orders") or []:  # open orders, in the order machine's words
            if isinstance(o, dict):
                lines.append(f"    order {o.get('client_id', '?')} {o.get('leg', '?')} "
                             f"{o.get('role', '?')} {o.get('side', '?')} {o.get('qty', '?')} "
                             f"filled {o.get('filled', '?')} {str(o.get('state', '?')).upper()}"
                             + (" cancel sent" if o.get("cancel_sent") else ""))
    t, lat = table(f.get("totals")), table(f.get("leg_latency"))
    lines.append(f"P&L: funding {fmt_usd(t.get('funding'))}, basis {fmt_usd(t.get('basis_pnl'))}, "
                 f"fees {fmt_usd(t.get('fees'), signed=False)}, net {fmt_usd(t.get('net_pnl'))} "
                 f"| settlements {f.get('settlements', '?')} | leg latency median "
                 f"{num(lat.get('median_ms'), '.2f')} ms")
    venue = data.get("venue_positions")
    if isinstance(venue, dict) and venue:
        lines.append("venue positions (perp): " + ", ".join(f"{k} {v:+g}" if isinstance(
            v, int | float) else f"{k} {v}" for k, v in sorted(venue.items())))
    return lines


def describe_breakers(b: Any) -> str:
    """The circuit breakers in words: which are tripped and why, else how close they are."""
    if not isinstance(b, dict):
        return str(b)
    from engine.display import fmt_usd

    def pct(x: Any) -> str:
        return f"{x:.2f} %" if isinstance(x, int | float) else "?"

    trips = [t for t in b.get("trips") or [] if isinstance(t, dict)]
    raw_th = b.get("thresholds")
    th: dict[str, Any] = raw_th if isinstance(raw_th, dict) else {}
    parts: list[str] = []
    if trips:
        for t in trips:
            where = f" on {t['market']}" if t.get("market") else ""
            parts.append(f"{str(t.get('breaker', '?')).replace('_', ' ')} TRIPPED{where} "
                         f"({t.get('detail') or ''})".replace(" ()", ""))
        head = "TRIPPED — " + "; ".join(parts)
    else:
        head = "none tripped"
    near = (f"daily loss {pct(b.get('daily_loss_pct'))} of {pct(th.get('daily_loss'))}, "
            f"drawdown {pct(b.get('drawdown_pct'))} of {pct(th.get('drawdown'))}")
    if "consecutive_losses" in b or "consecutive_losses" in th:  # (older status documents)
        near += (f", consecutive losses {b.get('consecutive_losses', '?')} of "
                 f"{th.get('consecutive_losses', '?')}")
    halted = b.get("halted_markets") or []
    tail = f"; markets halted: {', '.join(map(str, halted))}" if halted else ""
    equity = b.get("equity")
    eq = f"; equity {fmt_usd(equity, signed=False, decimals=2)}" if equity is not None else ""
    return f"{head} ({near}){eq}{tail}"


def report(config_path: str | None, day: str | None, out: str | None,
           mode: str | None = None) -> int:
    import datetime as dt
    from pathlib import Path

    from engine.ops.report import EXIT_NO_DATA, NoDataError, write_report

    cfg = load(config_path, mode)
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
    except NoDataError as exc:
        print(f"engine: {exc}", file=sys.stderr)
        return EXIT_NO_DATA
    except OSError as exc:
        print(f"engine: cannot write the report: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"report written: {path}")
    return 0


def retention(config_path: str | None, dry_run: bool, mode: str | None = None) -> int:
    import datetime as dt
    from pathlib import Path

    from engine.ops.retention import apply_retention, plan_retention

    cfg = load(config_path, mode)
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
        known = registry.names()
        if venue not in known:
            choices = " or ".join([", ".join(known[:-1]), known[-1]] if len(known) > 1 else known)
            print(f"engine sim: --venue must be {choices}, got {venue!r}", file=sys.stderr)
            return 2
        if venue != registry.DEFAULT_VENUE:  # the default's simulator also records (below)
            return registry.simulator_main(venue)(rest)
        argv = ["sim", *rest]
    # issue 10: frame recordings (sim record) and replay, each with its own parser
    if argv[:2] == ["sim", "record"]:
        from engine.sim.record import main as sim_record_main

        return sim_record_main(argv[2:])
    if argv and argv[0] == "replay":
        from engine.replay.cli import main as replay_main

        return replay_main(argv[1:])
    if argv and argv[0] == "sweep":
        from engine.replay.sweep_cli import main as sweep_main

        return sweep_main(argv[1:])
    if argv and argv[0] == "export":
        from engine.io.export import main as export_main

        return export_main(argv[1:])
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
                         tests_path=args.tests_path, tests=args.tests, out=sys.stdout,
                         env=os.environ)
    commands: dict[str, Callable[[], int]] = {
        "reset-hard-stop": lambda: reset_hard_stop(config_path, args.mode),
        "flatten": lambda: flatten(config_path, args.mode),
        "kill": lambda: kill(config_path, args.reason, args.clear, args.mode),
        "status": lambda: status(config_path, args.json),
        "report": lambda: report(config_path, args.day, args.out, args.mode),
        "retention": lambda: retention(config_path, args.dry_run, args.mode),
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
    if cfg.funding is not None:  # issue 11: the funding/basis strategy on Bybit
        from engine.funding_app import run_funding

        runner = partial(run_funding, cfg, duration_s=duration)
    elif cfg.mode in ("paper", "trade"):
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
    except Exception as exc:  # noqa: BLE001 - the operator gets one line, --debug the rest
        if getattr(args, "debug", False):
            log.exception("engine stopped by an unexpected error")
        else:
            log.error("engine stopped by an unexpected error: %s (run with --debug for the "
                      "traceback)", _one_line(exc))
        return EXIT_RUNTIME


def _one_line(exc: BaseException) -> str:
    """``Type: message`` of the first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
