"""``python -m engine check``: the go/no-go preflight. Owns the checks, their one-line report and
the verdict (where the kill and request files live is :mod:`engine.ops.paths`).

Each check prints ``[PASS|INFO|WARN|FAIL] name: detail``; the verdict comes last: ``GO`` (exit
0), ``NO-GO: <failed checks>`` (exit 1) when any check failed, else ``CONDITIONAL: <warnings>``
(exit 2) when any warned. ``INFO`` is an optional part that is not configured: it never changes
the verdict, so a clean set-up can say GO. Checks, in order:

* ``config``: the config loads strictly (``engine.cli.load`` semantics), ``[venue] network``
  included; trade mode needs a resolved network, and ``mainnet`` needs ``[trading] allow_live``.
  A broken config is NO-GO at once: nothing else runs and nothing connects.
* ``credentials`` (agent key; trade mode only, else "not needed"), ``ops token`` (absent: INFO,
  POST /kill disabled), ``webhook`` (absent: INFO; present but unreadable/empty: FAIL). Only the
  agent ADDRESS and the credential SOURCES are shown; every known secret value is also
  redacted from every printed line.
* ``data dir``: the records dir exists or is created, a probe file can be written, free space
  (< 100 MiB FAIL, < 1 GiB WARN). ``records lock``: WARN (with its pid) when an engine holds
  the directory's ``engine.lock``: a start now would refuse with exit 2.
* ``venue``: the embedded simulator is started when ``[sim] enabled``; then one market discovery
  through the info endpoint (``perpDexs`` + ``meta(dex)``) with a timeout. ``network`` (trade
  mode, when the URLs do not already say which venue it is): the venue found must be the
  configured network (the simulator for ``sim``, never the simulator otherwise). ``account``
  (trade mode): ``clearinghouseState`` for ``[account] address`` with the ``dex`` parameter.
* ``clock``: the system time is plausible (year >= 2025) and, when the venue sent an HTTP ``Date``
  header, close to the venue's. ``Date`` has a 1 s resolution, so the skew is bounded from the
  request's send/receive times: the venue's clock was in ``[D, D + 1)`` at some instant between
  send and receive, so the local clock is off by at least the distance from 0 to the interval
  ``(t_send - D - 1, t_recv - D]``. The thresholds (> 2 s FAIL, > 0.5 s WARN) apply to that
  lower bound: rounding never raises a false alarm, and a skew beyond a threshold + 1 s + the
  round trip is always reported. The embedded simulator shares this host's clock and sends no
  ``Date``. (The running engine repeats a clock check at every reconciliation, against
  ``clearinghouseState.time``: docs/runbook.md "Clock skew".)
* ``hard stop``: a latch in the journal not reset: WARN (PASS when a ``RESET_HARD_STOP``
  request waits in the state dir). ``kill file`` present, ``kill env`` (``ENGINE_KILL``) set:
  WARN; the engine stops at start while either is on.
* A config with ``[funding]`` (the funding/basis strategy on Bybit) gets the Bybit checks of
  :mod:`engine.ops.check_bybit` instead of ``config``, ``credentials``, ``venue``, ``clock`` and
  ``hard stop`` above (same report, verdict and exit codes; ``instruments`` and ``account`` are
  its own lines, ``hard stop`` reads the funding records' breaker latch); ops token, webhook,
  data dir, records lock, kill file and tests are shared.
* ``property tests`` (``--tests property``, the default): ``python -m pytest <tests> -q -x -p
  no:cacheprovider -m "property and not slow"`` — the Hypothesis tests only (tests/conftest.py
  marks them ``property``), well under a minute; ``all tests`` (``--tests all``): the whole
  default suite (a few minutes). In a subprocess with a timeout, its environment stripped of
  secrets and ``ENGINE__*`` overrides.

:func:`run_check` is synchronous (it calls ``trio.run``); :func:`run_check_async` is the same
inside a running Trio loop.
"""

from __future__ import annotations

import email.utils
import importlib.resources
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, Final, TextIO

import attrs
import httpx
import trio

import engine
from engine.config import ConfigError, EngineConfig, load_config
from engine.io.journal import load_journal
from engine.ops.paths import (
    KILL_ENV,
    RESET_FILE,
    kill_env_set,
    kill_file_path,
    resolve_state_dir,
)
from engine.secrets import (
    AGENT_KEY_ENV,
    CREDENTIAL_NAME,
    CREDENTIALS_DIRECTORY_ENV,
    SecretsError,
    load_credential,
)
from engine.startup import StartupError, check_records_dir
from engine.venues.bybit.keys import KEY_CREDENTIAL as BYBIT_KEY_CREDENTIAL
from engine.venues.bybit.keys import KEY_ENV as BYBIT_KEY_ENV
from engine.venues.bybit.keys import SECRET_CREDENTIAL as BYBIT_SECRET_CREDENTIAL
from engine.venues.bybit.keys import SECRET_ENV as BYBIT_SECRET_ENV
from engine.venues.hyperliquid.execution import ReconcileError, parse_account_value, parse_positions
from engine.venues.hyperliquid.info import DiscoveryError, InfoClient, InfoError, discover
from engine.venues.hyperliquid.keys import load_signer
from engine.venues.hyperliquid.network import (
    NetworkError,
    check_discovered,
    needs_discovery_check,
    network_of,
    probe_simulator,
    unresolved_message,
)
from engine.venues.hyperliquid.signing import Signer

EXIT_GO: Final = 0
EXIT_NO_GO: Final = 1
EXIT_CONDITIONAL: Final = 2

PASS: Final = "PASS"
INFO: Final = "INFO"
WARN: Final = "WARN"
FAIL: Final = "FAIL"

OPS_TOKEN_CREDENTIAL: Final = "ops_token"
OPS_TOKEN_ENV: Final = "ENGINE_OPS_TOKEN"
WEBHOOK_CREDENTIAL: Final = "webhook_url"
WEBHOOK_ENV: Final = "ENGINE_WEBHOOK_URL"

MIB: Final = 1024 * 1024
FREE_FAIL_BYTES: Final = 100 * MIB
FREE_WARN_BYTES: Final = 1024 * MIB
SKEW_FAIL_S: Final = 2.0
SKEW_WARN_S: Final = 0.5
MIN_YEAR: Final = 2025
DEFAULT_TESTS_TIMEOUT_S: Final = 600.0
TEST_SCOPES: Final = ("property", "all")
#: pytest's exit code when the selection is empty
_PYTEST_NO_TESTS: Final = 5
_MIN_SECRET_LEN: Final = 6
_SECRET_ENV_VARS: Final = (AGENT_KEY_ENV, OPS_TOKEN_ENV, WEBHOOK_ENV, BYBIT_KEY_ENV,
                           BYBIT_SECRET_ENV)
_SECRET_CREDENTIALS: Final = (CREDENTIAL_NAME, OPS_TOKEN_CREDENTIAL, WEBHOOK_CREDENTIAL,
                              BYBIT_KEY_CREDENTIAL, BYBIT_SECRET_CREDENTIAL)
_SUMMARY_RE: Final = re.compile(r"(?:\d+ [a-z]+(?:, \d+ [a-z]+)*|no tests ran) in \d")
_FAILED_RE: Final = re.compile(r"(?:FAILED|ERROR) [^\s:]+\.py(?:::[^\s]+)?")


# ------------------------------------------------------------------------ pure assessments


@attrs.frozen
class CheckResult:
    """One printed line: ``[status] name: detail``."""

    status: str
    name: str
    detail: str

    def line(self) -> str:
        return f"[{self.status}] {self.name}: {self.detail}"


def verdict(results: list[CheckResult]) -> tuple[int, str]:
    """(exit code, verdict line): any FAIL → NO-GO; else any WARN → CONDITIONAL; else GO
    (INFO lines never count)."""
    failed = [r.name for r in results if r.status == FAIL]
    if failed:
        return EXIT_NO_GO, f"NO-GO: {', '.join(failed)}"
    warned = [r.name for r in results if r.status == WARN]
    if warned:
        return EXIT_CONDITIONAL, f"CONDITIONAL: {', '.join(warned)}"
    return EXIT_GO, "GO"


def _fmt_bytes(n: float) -> str:
    if n >= 1024 * MIB:
        return f"{n / (1024 * MIB):.1f} GiB"
    return f"{n / MIB:.0f} MiB"


def assess_free_space(free_bytes: int) -> tuple[str, str]:
    """(status, text) for the free space of the data dir's file system."""
    text = f"{_fmt_bytes(free_bytes)} free"
    if free_bytes < FREE_FAIL_BYTES:
        return FAIL, f"only {text} (< {_fmt_bytes(FREE_FAIL_BYTES)})"
    if free_bytes < FREE_WARN_BYTES:
        return WARN, f"only {text} (< {_fmt_bytes(FREE_WARN_BYTES)})"
    return PASS, text


def skew_bounds(t_send: float, t_recv: float, date_s: float) -> tuple[float, float]:
    """The interval ``(lo, hi]`` of possible ``local - venue`` clock offsets (seconds), given a
    request sent at local ``t_send``, answered by local ``t_recv`` with a ``Date`` header of
    ``date_s`` (1 s resolution: the venue's clock read ``[date_s, date_s + 1)``)."""
    return t_send - date_s - 1.0, t_recv - date_s


def assess_skew(t_send: float, t_recv: float, date_s: float) -> tuple[str, str]:
    """(status, text) for the clock skew against one ``Date`` header (see module docstring)."""
    lo, hi = skew_bounds(t_send, t_recv, date_s)
    least = 0.0 if lo <= 0.0 <= hi else min(abs(lo), abs(hi))
    mid = (lo + hi) / 2
    text = (f"local clock {'ahead of' if mid >= 0 else 'behind'} the venue by ~{abs(mid):.1f} s "
            f"(at least {least:.2f} s; Date header resolution 1 s, round trip "
            f"{(t_recv - t_send) * 1000:.0f} ms)")
    if least > SKEW_FAIL_S:
        return FAIL, f"{text} > {SKEW_FAIL_S:g} s: fix NTP (timedatectl status)"
    if least > SKEW_WARN_S:
        return WARN, f"{text} > {SKEW_WARN_S:g} s: check NTP (timedatectl status)"
    return PASS, text


def assess_local_time(now_s: float) -> tuple[str, str]:
    """(status, text) for the plausibility of the system time (year >= :data:`MIN_YEAR`)."""
    year = time.gmtime(now_s).tm_year
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s))
    if year < MIN_YEAR:
        return FAIL, f"system time {stamp} is implausible (year < {MIN_YEAR}): fix the clock"
    return PASS, f"system time {stamp}"


def pytest_summary(output: str) -> str:
    """Pytest's final summary (``3 passed in 0.5s``) without its ``=`` framing; only that line
    is ever echoed (other output is arbitrary text)."""
    for line in reversed(output.splitlines()):
        text = line.strip().strip("=").strip()
        if _SUMMARY_RE.match(text):
            return text[:200]
    return "no pytest summary line"


def default_tests_path() -> Path | None:
    """The repository's ``tests/`` next to the installed ``engine`` package, if this is a
    checkout (the directory above the package holds ``pyproject.toml`` and ``tests/``)."""
    root = Path(engine.__file__).resolve().parent.parent
    tests = root / "tests"
    if tests.is_dir() and (root / "pyproject.toml").is_file():
        return tests
    return None


# ------------------------------------------------------------------------ the report


class _Report:
    """Prints each result at once, with every known secret value redacted."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.results: list[CheckResult] = []
        self._secrets: set[str] = set()

    def add_secret(self, value: str | None) -> None:
        if value is None:
            return
        v = value.strip()
        variants = {v, v.lower(), v.upper()}
        if v[:2] in ("0x", "0X"):
            variants.add(v[2:])
            variants.add(v[2:].lower())
        self._secrets.update(s for s in variants if len(s) >= _MIN_SECRET_LEN)

    def redact(self, text: str) -> str:
        for s in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(s, "<redacted>")
        return text

    def emit(self, status: str, name: str, detail: str) -> None:
        r = CheckResult(status, name, self.redact(" ".join(detail.split())))
        self.results.append(r)
        self.out.write(r.line() + "\n")
        self.out.flush()

    def finish(self) -> int:
        code, line = verdict(self.results)
        self.out.write(line + "\n")
        self.out.flush()
        return code


def _collect_secrets(report: _Report, env: Mapping[str, str]) -> None:
    """Register every secret value the environment or credentials directory could hold."""
    for name in _SECRET_ENV_VARS:
        report.add_secret(env.get(name))
    cred_dir = env.get(CREDENTIALS_DIRECTORY_ENV)
    if not cred_dir:
        return
    for name in _SECRET_CREDENTIALS:
        try:
            report.add_secret((Path(cred_dir) / name).read_text("utf-8"))
        except (OSError, UnicodeDecodeError):
            continue


# ------------------------------------------------------------------------ the checks


def _load(config_path: str | None, mode: str | None, env: Mapping[str, str]) -> EngineConfig:
    """``engine.cli.load`` with an explicit environment (same override path for ``mode``)."""
    e = dict(env)
    if mode is not None:
        e["ENGINE__MODE"] = mode
    if config_path is None:
        text = (importlib.resources.files("engine") / "defaults" / "sim.toml").read_text("utf-8")
        return load_config(None, env=e, defaults=text)
    return load_config(config_path, env=e)


def _check_config(report: _Report, cfg: EngineConfig, config_path: str | None) -> None:
    source = config_path if config_path is not None else "embedded default config"
    where = ("embedded simulator" if cfg.sim.enabled else cfg.venue.info_url)
    what = f"mode {cfg.mode}, dex {cfg.venue.dex}, venue {where}"
    if cfg.mode == "trade":
        net = network_of(cfg)
        if net is None:
            report.emit(FAIL, "config", f"{source} ({what}): "
                        + unresolved_message(cfg.venue.ws_url, cfg.venue.info_url))
            return
        what += f"; network {net.name}"
        if net.needs_allow_live:
            if not cfg.trading.allow_live:
                report.emit(FAIL, "config", f"{source} ({what}): trade mode refuses Hyperliquid "
                                            "mainnet unless [trading] allow_live = true")
                return
            what += "; LIVE trading on Hyperliquid mainnet"
    report.emit(PASS, "config", f"{source} valid ({what})")


def _check_credentials(report: _Report, cfg: EngineConfig,
                       env: Mapping[str, str]) -> Signer | None:
    if cfg.mode != "trade":
        report.emit(PASS, "credentials", f"agent key not needed in {cfg.mode} mode")
        return None
    try:
        signer = load_signer(env)
    except SecretsError as exc:
        report.emit(FAIL, "credentials", str(exc))
        return None
    account = cfg.account.address
    if not account:
        report.emit(FAIL, "credentials", f"agent {signer.address} loaded, but [account] address "
                                         "(the master account) is not set")
    elif account.lower() == signer.address.lower():
        report.emit(WARN, "credentials", f"the agent key's address {signer.address} equals "
                                         "[account] address: use an API wallet approved by the "
                                         "master account, not the master key itself")
    else:
        report.emit(PASS, "credentials", f"agent {signer.address} signs for account {account}")
    return signer


def _check_optional_secret(report: _Report, name: str, credential: str, env_var: str,
                           env: Mapping[str, str], absent: str) -> None:
    try:
        found = load_credential(credential, env_var, env)
    except SecretsError as exc:
        report.emit(FAIL, name, str(exc))
        return
    if found is None:
        report.emit(INFO, name, f"not configured (optional): {absent} (set "
                                f"${CREDENTIALS_DIRECTORY_ENV}/{credential} or {env_var})")
        return
    value, source = found
    report.add_secret(value)
    report.emit(PASS, name, f"present ({source})")


def _check_ops_secrets(report: _Report, cfg: EngineConfig, env: Mapping[str, str]) -> None:
    if cfg.ops.http_enabled:
        _check_optional_secret(report, "ops token", OPS_TOKEN_CREDENTIAL, OPS_TOKEN_ENV, env,
                               "POST /kill and /hardstop/reset disabled")
    else:
        report.emit(PASS, "ops token", "ops HTTP disabled ([ops] http_enabled = false)")
    if cfg.notify.enabled:
        _check_optional_secret(report, "webhook", WEBHOOK_CREDENTIAL, WEBHOOK_ENV, env,
                               "no notifications will be sent")
    else:
        report.emit(PASS, "webhook", "notifications disabled ([notify] enabled = false)")


def _check_data_dir(report: _Report, cfg: EngineConfig) -> None:
    d = Path(cfg.records.dir)
    existed = d.is_dir()
    try:
        check_records_dir(d)
    except StartupError as exc:
        report.emit(FAIL, "data dir", str(exc))
        return
    try:
        free = shutil.disk_usage(d).free
    except OSError as exc:
        report.emit(FAIL, "data dir", f"{d}: cannot read free space: {exc.strerror}")
        return
    status, text = assess_free_space(free)
    created = "" if existed else " (created)"
    report.emit(status, "data dir", f"{d.resolve()}{created} writable, {text}")
    _check_lock(report, d)


def _check_lock(report: _Report, d: Path) -> None:
    """Another engine holding the records dir (``engine.lock``): a start now would exit 2."""
    from engine.io.dirlock import DirLock, DirLockedError

    lock = DirLock(d)
    try:
        lock.acquire()
    except DirLockedError as exc:
        report.emit(WARN, "records lock", f"{exc}: a second engine on this directory would "
                                          "refuse to start (exit 2)")
        return
    except OSError as exc:
        report.emit(FAIL, "records lock", f"cannot create {lock.path}: {exc.strerror}")
        return
    lock.release()
    report.emit(PASS, "records lock", f"{lock.path.name} free: no engine runs on this directory")


@attrs.define
class _Sample:
    """Timing and ``Date`` header of one info response."""

    t_send: float
    t_recv: float
    date: str | None


class _TimingTransport(httpx.AsyncBaseTransport):
    """Wraps the default transport and records each response's timing and ``Date`` header."""

    def __init__(self, samples: list[_Sample]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._samples = samples

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        t_send = time.time()
        response = await self._inner.handle_async_request(request)
        self._samples.append(_Sample(t_send, time.time(), response.headers.get("date")))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _check_clock(report: _Report, samples: list[_Sample], sim: bool) -> None:
    status, text = assess_local_time(time.time())
    if status == FAIL:
        report.emit(FAIL, "clock", text)
        return
    dated = [s for s in samples if s.date]
    if not dated:
        if sim:
            report.emit(PASS, "clock", f"{text}; the embedded simulator shares this host's clock")
        elif samples:
            report.emit(WARN, "clock", f"{text}; the venue sent no Date header: skew not "
                                       "measured")
        else:
            report.emit(WARN, "clock", f"{text}; venue unreachable: skew not measured")
        return
    best = min(dated, key=lambda s: s.t_recv - s.t_send)
    assert best.date is not None
    try:
        date_s = email.utils.parsedate_to_datetime(best.date).timestamp()
    except (TypeError, ValueError):
        report.emit(WARN, "clock", f"{text}; the venue's Date header {best.date[:40]!r} is not "
                                   "an HTTP date: skew not measured")
        return
    skew_status, skew_text = assess_skew(best.t_send, best.t_recv, date_s)
    report.emit(skew_status, "clock", f"{text}; {skew_text}")


async def _check_account(report: _Report, cfg: EngineConfig, info_url: str,
                         samples: list[_Sample]) -> None:
    user, dex = cfg.account.address, cfg.venue.dex
    if not user:
        report.emit(FAIL, "account", "[account] address is not set: nothing to query")
        return
    state: Any = None
    main: Any = None
    error: str | None = None
    with trio.move_on_after(cfg.venue.info_timeout_s + 5.0) as scope:
        try:
            async with InfoClient(info_url, cfg.venue.info_timeout_s,
                                  transport=_TimingTransport(samples)) as client:
                state = await client.request(
                    {"type": "clearinghouseState", "user": user, "dex": dex})
                try:  # the main dex, where the free collateral sits (protocol doc §9, P22)
                    main = await client.request({"type": "clearinghouseState", "user": user})
                except InfoError as exc:
                    main = f"failed: {exc}"
        except InfoError as exc:
            error = str(exc)
    if scope.cancelled_caught:
        error = f"clearinghouseState timed out after {cfg.venue.info_timeout_s + 5.0:.0f} s"
    if error is not None:
        report.emit(FAIL, "account", f"clearinghouseState for {user} on dex {dex!r} failed: "
                                     f"{error}")
        return
    try:
        positions = parse_positions(state, dex)
    except ReconcileError as exc:
        report.emit(FAIL, "account", f"malformed clearinghouseState for {user}: {exc}")
        return
    value = parse_account_value(state)
    if value is None:
        report.emit(FAIL, "account", f"clearinghouseState for {user} on dex {dex!r} has no "
                                     "numeric marginSummary.accountValue")
        return
    main_value = parse_account_value(main)
    text = f"{user} on dex {dex!r}: {len(positions)} open position(s)"
    fallback = cfg.breakers.equity_usd
    if main_value is not None and main_value + value > 0:
        report.emit(PASS, "account", f"{text}; usable equity ${main_value + value:,.2f} "
                                     f"(main dex ${main_value:,.2f} + dex {dex!r} "
                                     f"${value:,.2f}): the circuit breakers' basis")
        return
    no_main = main if isinstance(main, str) else "has no numeric marginSummary.accountValue"
    why = (f"the main dex's clearinghouseState {no_main}" if main_value is None else
           f"usable equity is ${main_value + value:,.2f} (main dex ${main_value:,.2f} + dex "
           f"{dex!r} ${value:,.2f})")
    then = (f"the daily-loss and drawdown breakers will measure against [breakers] equity_usd "
            f"= {fallback:g} USD" if fallback > 0 else
            "the daily-loss and drawdown breakers have no basis and new entries will be "
            "refused: fund the account or set [breakers] equity_usd")
    report.emit(WARN, "account", f"{text}; the venue cannot tell the equity: {why}; {then}")


async def _check_venue(report: _Report, cfg: EngineConfig, signer: Signer | None,
                       samples: list[_Sample]) -> None:
    """Start the simulator when configured, discover the markets, query the account."""
    async with trio.open_nursery() as nursery:
        info_url = cfg.venue.info_url
        if cfg.sim.enabled:
            from engine.sim.server import SimExchange

            s = cfg.sim
            accounts: dict[str, Any] = {}
            if cfg.mode == "trade" and signer is not None and cfg.account.address:
                master = cfg.account.address.lower()
                agent = signer.address.lower()
                accounts = {"accounts": {master: 10_000.0},
                            "agents": {agent: master} if agent != master else {}}
            try:
                sim = SimExchange(seed=s.seed, n_markets=s.markets, host=s.host, port=s.port,
                                  **accounts)
                port = await nursery.start(sim.serve)
            except (OSError, ValueError) as exc:
                why = getattr(exc, "strerror", None) or str(exc)
                report.emit(FAIL, "venue", f"cannot start the embedded simulator on "
                                           f"{s.host}:{s.port}: {why}")
                return
            info_url = f"http://{s.host}:{port}/info"
        await _discover(report, cfg, info_url, samples)
        if cfg.mode == "trade" and report.results[-1].status == PASS:
            await _check_network(report, cfg, info_url)
        if cfg.mode == "trade" and report.results[-1].status == PASS:
            await _check_account(report, cfg, info_url, samples)
        nursery.cancel_scope.cancel()


async def _check_network(report: _Report, cfg: EngineConfig, info_url: str) -> None:
    """Trade mode: the venue discovered must be the configured network (the engine's start
    refuses the same mismatch)."""
    v = cfg.venue
    net = network_of(cfg)
    if net is None or not needs_discovery_check(v.ws_url, v.info_url, cfg.sim.enabled):
        return
    is_sim = await probe_simulator(info_url, v.info_timeout_s)
    try:
        check_discovered(net, is_sim, info_url)
    except NetworkError as exc:
        report.emit(FAIL, "network", str(exc))
        return
    report.emit(PASS, "network", f"{net.name}: the venue at {info_url} "
                                 f"{'is' if is_sim else 'is not'} the engine's simulator")


async def _discover(report: _Report, cfg: EngineConfig, info_url: str,
                    samples: list[_Sample]) -> None:
    v = cfg.venue
    limit = 2 * v.info_timeout_s + 5.0
    where = "embedded simulator" if cfg.sim.enabled else info_url
    with trio.move_on_after(limit) as scope:
        try:
            disc = await discover(info_url, v.dex, v.markets, v.info_timeout_s,
                                  transport=_TimingTransport(samples))
        except DiscoveryError as exc:
            report.emit(FAIL, "venue", f"market discovery on {where} failed: {exc}")
            return
        except InfoError as exc:
            report.emit(FAIL, "venue", f"venue unreachable at {where}: {exc}")
            return
    if scope.cancelled_caught:
        report.emit(FAIL, "venue", f"market discovery on {where} timed out after {limit:.0f} s")
        return
    configured = "configured" if v.markets else "listed"
    report.emit(PASS, "venue", f"{len(disc.markets)} {configured} markets on dex {disc.dex!r} "
                               f"(perpDexs index {disc.dex_index}) at {where}")


def _check_hard_stop(report: _Report, cfg: EngineConfig, env: Mapping[str, str]) -> None:
    if cfg.mode == "observe":
        report.emit(PASS, "hard stop", "not used in observe mode")
        return
    d = Path(cfg.records.dir)
    reset = resolve_state_dir(cfg, env) / RESET_FILE
    journal = load_journal(d, time.time() * 1000.0)
    latch = journal.hard_stop
    damaged = journal.stats.torn_lines + journal.stats.malformed_lines
    note = f"; {damaged} torn/malformed journal line(s) skipped (logged)" if damaged else ""
    if latch is None:
        report.emit(PASS, "hard stop", f"not latched (journal in {d}){note}")
        return
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(latch.since_ms / 1000.0))
    what = f"latched since {since} ({latch.reason}{': ' + latch.detail if latch.detail else ''})"
    if reset.exists():
        report.emit(PASS, "hard stop", f"{what}; a reset is pending ({reset}): released at the "
                                       f"next start{note}")
        return
    report.emit(WARN, "hard stop", f"{what}: no new entries until `python -m engine "
                                   f"reset-hard-stop`{note}")


def _check_kill_file(report: _Report, cfg: EngineConfig, env: Mapping[str, str]) -> None:
    path = kill_file_path(cfg, env)
    if path.exists():
        report.emit(WARN, "kill file", f"trading will not start while {path} exists (the engine "
                                       "stops at start; `python -m engine kill --clear`)")
    else:
        report.emit(PASS, "kill file", f"{path} absent")
    if kill_env_set(env):
        report.emit(WARN, "kill env", f"{KILL_ENV} is set: trading will not start (the engine "
                                      "stops at start)")


def _test_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without secrets, credentials and ``ENGINE__*`` config overrides."""
    drop = {*_SECRET_ENV_VARS, CREDENTIALS_DIRECTORY_ENV}
    return {k: v for k, v in env.items()
            if k not in drop and not k.upper().startswith("ENGINE__")}


def tests_check_name(scope: str) -> str:
    """The check's name for a ``--tests`` scope."""
    return "property tests" if scope == "property" else "all tests"


async def _check_tests(report: _Report, run_tests: bool, tests_path: str | None,
                       env: Mapping[str, str], timeout_s: float,
                       scope: str = "property") -> None:
    if scope not in TEST_SCOPES:
        raise ValueError(f"tests scope must be one of {TEST_SCOPES}, got {scope!r}")
    name = tests_check_name(scope)
    if not run_tests:
        report.emit(WARN, name, "skipped (--skip-tests)")
        return
    path = Path(tests_path) if tests_path is not None else default_tests_path()
    if path is None:
        report.emit(WARN, name, "test suite not found (no tests/ next to the installed "
                                "package; pass --tests-path)")
        return
    if not path.exists():
        report.emit(FAIL, name, f"{path} does not exist")
        return
    path = path.resolve()
    select = ["-m", "property and not slow"] if scope == "property" else []
    cmd = [sys.executable, "-m", "pytest", str(path), "-q", "-x", "-p", "no:cacheprovider",
           *select]
    cwd = path.parent if path.is_dir() else path.parent.parent
    shown = (f"{Path(sys.executable).name} -m pytest {path} -q -x"
             + (" -m 'property and not slow'" if select else ""))
    t0 = trio.current_time()
    result: subprocess.CompletedProcess[bytes] | None = None
    with trio.move_on_after(timeout_s):
        result = await trio.run_process(cmd, capture_stdout=True, stderr=subprocess.STDOUT,
                                        check=False, env=_test_env(env), cwd=str(cwd))
    took = trio.current_time() - t0
    if result is None:
        report.emit(FAIL, name, f"timed out after {timeout_s:.0f} s ({shown})")
        return
    output = result.stdout.decode("utf-8", "replace")
    summary = pytest_summary(output)
    if result.returncode == 0:
        report.emit(PASS, name, f"{summary} ({took:.0f} s)")
        return
    if result.returncode == _PYTEST_NO_TESTS:
        report.emit(FAIL, name, f"no {name} selected in {path}: {summary} (run `{shown}`)")
        return
    # Only the node id of pytest's short summary ("FAILED tests/x.py::test_y - message"): the
    # message and captured logs are arbitrary text, never echoed.
    failed = [m[0] for m in map(_FAILED_RE.match, output.splitlines()) if m is not None]
    extra = f"; {failed[0][:200]}" if failed else ""
    report.emit(FAIL, name, f"exit {result.returncode}: {summary}{extra} "
                            f"(run `{shown}` for details)")


# ------------------------------------------------------------------------ entry points


async def run_check_async(config_path: str | None, *, mode: str | None, run_tests: bool,
                          tests_path: str | None, out: TextIO, env: Mapping[str, str],
                          tests_timeout_s: float = DEFAULT_TESTS_TIMEOUT_S,
                          tests: str = "property") -> int:
    """:func:`run_check` inside a running Trio loop."""
    report = _Report(out)
    _collect_secrets(report, env)
    try:
        cfg = _load(config_path, mode, env)
    except ConfigError as exc:
        report.emit(FAIL, "config", str(exc))
        return report.finish()
    if cfg.funding is not None:  # the funding/basis strategy on Bybit (engine.ops.check_bybit)
        if await _run_bybit_checks(report, cfg, config_path, env):
            await _check_tests(report, run_tests, tests_path, env, tests_timeout_s, tests)
        return report.finish()
    _check_config(report, cfg, config_path)
    if report.results[-1].status == FAIL:
        return report.finish()
    signer = _check_credentials(report, cfg, env)
    _check_ops_secrets(report, cfg, env)
    _check_data_dir(report, cfg)
    samples: list[_Sample] = []
    await _check_venue(report, cfg, signer, samples)
    _check_clock(report, samples, cfg.sim.enabled)
    _check_hard_stop(report, cfg, env)
    _check_kill_file(report, cfg, env)
    await _check_tests(report, run_tests, tests_path, env, tests_timeout_s, tests)
    return report.finish()


async def _run_bybit_checks(report: _Report, cfg: EngineConfig, config_path: str | None,
                            env: Mapping[str, str]) -> bool:
    """The checks of a ``[funding]`` config (Bybit): see :mod:`engine.ops.check_bybit`. False
    when the config failed (then nothing else ran)."""
    from engine.ops import check_bybit

    source = config_path if config_path is not None else "embedded default config"
    if not check_bybit.check_config(report, cfg, source):
        return False
    creds = check_bybit.check_credentials(report, cfg, env)
    _check_ops_secrets(report, cfg, env)
    _check_data_dir(report, cfg)
    await check_bybit.check_venue(report, cfg, creds)
    check_bybit.check_latch(report, cfg, env)
    _check_kill_file(report, cfg, env)
    return True


def run_check(config_path: str | None, *, mode: str | None, run_tests: bool,
              tests_path: str | None, out: TextIO, env: Mapping[str, str],
              tests_timeout_s: float = DEFAULT_TESTS_TIMEOUT_S, tests: str = "property") -> int:
    """Run every check, print one line each and the verdict to ``out``; return 0 GO, 1 NO-GO,
    2 CONDITIONAL. ``config_path`` None: the embedded default config; ``mode`` overrides the
    config's mode; ``env`` supplies overrides and credentials (the CLI passes ``os.environ``).
    ``tests``: ``property`` (the Hypothesis tests) or ``all`` (the whole default suite).
    Must not be called from inside a Trio loop (use :func:`run_check_async` there)."""
    return trio.run(partial(run_check_async, config_path, mode=mode, run_tests=run_tests,
                            tests_path=tests_path, out=out, env=env,
                            tests_timeout_s=tests_timeout_s, tests=tests))
