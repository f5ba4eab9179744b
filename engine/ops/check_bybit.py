"""``python -m engine check`` for the funding/basis strategy on Bybit (a config with
``[funding]``): the Bybit checks and their one-line results. The report, the verdict, the exit
codes and the checks shared with Hyperliquid (ops secrets, data dir, records lock, kill file,
tests) are :mod:`engine.ops.check`'s. Checks, in order:

* ``config``: the funding app runs in paper or trade mode; ``[bybit] environment = "mainnet"``
  needs ``allow_live`` (the config load refuses it already), and so does any ``[bybit] *_url``
  override that points at a Bybit mainnet host while the environment says testnet. NO-GO at
  once: nothing connects.
* ``credentials``: trade mode needs the key pair (``$CREDENTIALS_DIRECTORY/bybit_api_key`` and
  ``bybit_api_secret``, else ``BYBIT_API_KEY`` / ``BYBIT_API_SECRET``); only the SOURCES are
  shown, and both values are redacted from every printed line. On the embedded simulator the
  check, like the run, uses the simulator's own account. Paper mode needs no key.
* ``venue``: the embedded Bybit simulator is started when ``[sim] enabled``; then
  ``GET /v5/market/time`` (REST reachable, round trip).
* ``clock``: the system time is plausible and the offset to the venue's clock (``timeNano`` of
  that answer against the mid-point of the round trip, ± half the round trip) fits Bybit's
  window for a signed request: ``server - recv_window <= timestamp < server + 1000 ms``. FAIL
  when the offset surely leaves it (this host's clock would have every signed request refused
  with ``10002``; the engine corrects by its measured offset, but fix NTP), WARN when it may use
  more than half of that margin.
* ``instruments``: ``instruments-info`` of every ``[funding] symbols`` in ``spot`` and
  ``linear``: listed, ``status`` Trading, the perpetual's ``fundingInterval`` read (the strategy's
  APR is computed from it, never from an assumed 8 h).
* ``account`` (trade mode): the time is synced as the engine does at start, then one signed
  read-only ``GET /v5/account/wallet-balance``: proof the key pair and its permissions work.
  Bybit's ``retCode`` is named with what to change (unknown key, bad secret, timestamp, missing
  permission, IP whitelist). WARN when the account's equity is 0 or below ``[funding]
  max_total_notional_usd``.
* ``fees`` (with keys and ``[funding]``): the account's taker/maker rates of both legs from the
  signed ``GET /v5/account/fee-rate``; WARN when ``[funding] spot_fee_bps``/``perp_fee_bps``
  differ from the venue's taker rates (which of the two the engine uses: ``[bybit]
  fee_source``), or when the rates cannot be read (the engine then falls back to the config's).

* ``hard stop``: a breaker trip of an earlier run that still holds (the funding records, see
  :mod:`engine.ops.funding_latch`): WARN, no new entries at the next start; PASS when a
  ``reset-hard-stop`` request waits in the state dir (released at the next start).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol

import trio

from engine.config import BybitConfig, EngineConfig
from engine.ops.check import FAIL, PASS, WARN, assess_local_time
from engine.secrets import SecretsError, load_credential
from engine.venues.bybit.codec import (
    BybitApiError,
    CodecError,
    parse_instruments,
    parse_server_time_ms,
)
from engine.venues.bybit.factory import LiveNotAllowed, resolve_urls
from engine.venues.bybit.http import HttpClient, HttpError
from engine.venues.bybit.keys import (
    HOW_TO_PROVIDE,
    KEY_CREDENTIAL,
    KEY_ENV,
    SECRET_CREDENTIAL,
    SECRET_ENV,
)
from engine.venues.bybit.rest import BybitRest
from engine.venues.bybit.signing import BybitCredentials

#: Bybit accepts a signed request whose timestamp is below the server's time + this
AHEAD_LIMIT_MS: Final = 1000.0
#: the simulator-only account the check's embedded simulator holds (never a real key)
SIM_KEY, SIM_SECRET = "sim-check-key", "sim-check-secret"
#: ``retCode`` of a signed call -> what to change
KEY_HINTS: Final[Mapping[int, str]] = {
    10002: "the request's timestamp fell outside recv_window even after a time sync: fix NTP "
           "(timedatectl status) or raise [bybit] recv_window_ms",
    10003: "Bybit does not know this API key: check it is a key of this environment (testnet "
           "keys are created on testnet.bybit.com)",
    10004: "signature mismatch: the API secret does not belong to the key",
    10005: "permission denied: the key needs read permission (and trade for trade mode)",
    10010: "the key is bound to other IP addresses: add this host's address to its whitelist",
    33004: "the API key has expired: create a new one",
}


class Reporter(Protocol):
    """What :mod:`engine.ops.check`'s report offers: ``emit`` a line, register a secret."""

    def emit(self, status: str, name: str, detail: str) -> None: ...

    def add_secret(self, value: str | None) -> None: ...


# ------------------------------------------------------------------------ pure assessments


def assess_clock_offset(offset_ms: float, rtt_ms: float, recv_window_ms: int
                        ) -> tuple[str, str]:
    """(status, text) for ``offset_ms = local - venue`` measured within ± ``rtt_ms / 2``.
    A signed request stamped by the local clock is accepted while ``-recv_window <= offset <
    1000`` (see module): FAIL when the offset is surely outside, WARN when it may use more than
    half of the margin on its side."""
    half = rtt_ms / 2.0
    lo, hi = offset_ms - half, offset_ms + half
    word = "ahead of" if offset_ms >= 0 else "behind"
    text = (f"local clock {word} Bybit by {abs(offset_ms):.0f} ms (± {half:.0f} ms, round trip "
            f"{rtt_ms:.0f} ms); a signed request is accepted from {recv_window_ms} ms behind "
            f"to {AHEAD_LIMIT_MS:.0f} ms ahead ([bybit] recv_window_ms)")
    if lo >= AHEAD_LIMIT_MS or hi < -recv_window_ms:
        return FAIL, (f"{text}: outside the window; every signed request would be refused "
                      "(10002) without the engine's time sync: fix NTP (timedatectl status)")
    if hi > AHEAD_LIMIT_MS / 2 or lo < -recv_window_ms / 2:
        return WARN, f"{text}: more than half of the margin used; check NTP (timedatectl status)"
    return PASS, text


def describe_instruments(symbols: list[str], spot: Mapping[str, Mapping[str, Any]],
                         linear: Mapping[str, Mapping[str, Any]]) -> tuple[str, str]:
    """(status, text) for the instruments-info items found per symbol and category (each item
    as Bybit sent it). FAIL names every symbol not listed or not ``Trading``, and every
    perpetual without a readable ``fundingInterval``."""
    problems: list[str] = []
    parts: list[str] = []
    for sym in symbols:
        s, p = spot.get(sym), linear.get(sym)
        bad = [f"{sym} {cat} not listed" for cat, item in (("spot", s), ("linear", p))
               if item is None]
        bad += [f"{sym} {cat} status {item.get('status')!r}"
                for cat, item in (("spot", s), ("linear", p))
                if item is not None and item.get("status") != "Trading"]
        interval_ms = 0
        if p is not None:
            try:
                (inst,) = parse_instruments({"category": "linear", "list": [p]})
                interval_ms = inst.funding_interval_ms
            except (CodecError, ValueError):
                interval_ms = 0
            if interval_ms <= 0:
                bad.append(f"{sym} linear has no usable fundingInterval "
                           f"({p.get('fundingInterval')!r})")
        problems.extend(bad)
        if not bad:
            parts.append(f"{sym} (spot and linear Trading, funding every "
                         f"{interval_ms // 60_000} min)")
    if problems:
        return FAIL, (f"{'; '.join(problems)}: fix [funding] symbols (each must trade as spot "
                      "and as a USDT perpetual)")
    return PASS, ", ".join(parts)


def describe_wallet(result: Mapping[str, Any], need_usd: float = 0.0) -> tuple[str, str]:
    """(status, text) for a ``wallet-balance`` result: WARN when the account holds nothing, or
    less than ``need_usd`` (``[funding] max_total_notional_usd``: the spot legs are bought with
    it, so an entry beyond it is refused and its pair unwound)."""
    rows = result.get("list")
    row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], Mapping) else {}
    kind = row.get("accountType", "?")
    try:
        equity = float(row.get("totalEquity") or 0.0)
    except (TypeError, ValueError):
        equity = 0.0
    text = f"signed wallet-balance read works ({kind} account, total equity {equity:,.2f} USD)"
    if equity <= 0:
        return WARN, (f"{text}: the account holds nothing; fund it before trading (the "
                      "daily-loss breaker measures against this equity)")
    if equity < need_usd:
        return WARN, (f"{text} < [funding] max_total_notional_usd = {need_usd:,.0f}: entries "
                      "past the balance will be refused (insufficient_balance) and unwound; "
                      "fund the account or lower the limit")
    return PASS, text


# ------------------------------------------------------------------------ the checks


def check_config(report: Reporter, cfg: EngineConfig, source: str) -> bool:
    """The ``config`` line; False when it failed (nothing else may run)."""
    b = cfg.bybit or BybitConfig()
    f = cfg.funding
    symbols = ", ".join(f.symbols) if f is not None else "-"
    where = "embedded Bybit simulator" if cfg.sim.enabled else f"Bybit {b.environment}"
    what = f"mode {cfg.mode}, funding/basis on {where}, symbols {symbols}"
    if cfg.mode not in ("paper", "trade"):
        report.emit(FAIL, "config", f"{source} ({what}): the funding strategy runs in paper or "
                                    "trade mode (set mode or --mode)")
        return False
    if not cfg.sim.enabled:
        try:
            resolve_urls(b)  # mainnet, or a mainnet URL override, without allow_live
        except LiveNotAllowed as exc:
            report.emit(FAIL, "config", f"{source} ({what}): {exc}")
            return False
        if b.environment == "mainnet":
            what += "; LIVE trading on Bybit mainnet ([bybit] allow_live = true)"
    report.emit(PASS, "config", f"{source} valid ({what})")
    return True


def check_credentials(report: Reporter, cfg: EngineConfig,
                      env: Mapping[str, str]) -> BybitCredentials | None:
    if cfg.mode != "trade":
        report.emit(PASS, "credentials", f"Bybit API keys not needed in {cfg.mode} mode "
                                         "(public market data only)")
        return None
    if cfg.sim.enabled:
        report.emit(PASS, "credentials", "the embedded simulator's own account (no real key "
                                         "is used or read)")
        return BybitCredentials(SIM_KEY, SIM_SECRET)
    try:
        key = load_credential(KEY_CREDENTIAL, KEY_ENV, env)
        secret = load_credential(SECRET_CREDENTIAL, SECRET_ENV, env)
    except SecretsError as exc:
        report.emit(FAIL, "credentials", str(exc))
        return None
    for found in (key, secret):
        if found is not None:
            report.add_secret(found[0])
    missing = [n for n, v in ((KEY_ENV, key), (SECRET_ENV, secret)) if v is None]
    if key is None or secret is None:
        report.emit(FAIL, "credentials", f"no Bybit {' and '.join(missing)} found; "
                                         f"{HOW_TO_PROVIDE}")
        return None
    try:
        creds = BybitCredentials(key[0].strip(), secret[0].strip())
    except (ValueError, UnicodeEncodeError):
        report.emit(FAIL, "credentials", f"the Bybit key pair (key from {key[1]}, secret from "
                                         f"{secret[1]}) is empty or not ASCII")
        return None
    report.emit(PASS, "credentials", f"Bybit API key pair present (key from {key[1]}, secret "
                                     f"from {secret[1]}); values never shown")
    return creds


async def check_venue(report: Reporter, cfg: EngineConfig,
                      creds: BybitCredentials | None) -> None:
    """Start the embedded simulator when configured; then venue, clock, instruments, account."""
    b = cfg.bybit or BybitConfig()
    async with trio.open_nursery() as nursery:
        if cfg.sim.enabled:
            base = await _start_sim(report, cfg, nursery)
            if base is None:
                report.emit(WARN, "clock", "venue unreachable: offset not measured")
                return
            where = "embedded Bybit simulator"
        else:
            base = resolve_urls(b).rest
            where = f"Bybit {b.environment} REST at {base}"
        http = HttpClient(base, timeout_s=b.http_timeout_s)
        rest = BybitRest(http, lambda: time.time() * 1000.0, creds,
                         recv_window_ms=b.recv_window_ms, max_retries=0)
        try:
            if await _check_time(report, cfg, rest, where):
                await _check_instruments(report, cfg, rest)
                if creds is not None:
                    need = cfg.funding.max_total_notional_usd if cfg.funding else 0.0
                    await _check_account(report, rest, need)
                    if cfg.funding is not None:
                        await _check_fees(report, cfg, rest)
        finally:
            await http.aclose()
            nursery.cancel_scope.cancel()


async def _start_sim(report: Reporter, cfg: EngineConfig, nursery: trio.Nursery) -> str | None:
    from engine.sim.bybit.cli import configure_funding
    from engine.sim.bybit.exchange import Exchange
    from engine.sim.bybit.server import BybitSimServer

    s, bs = cfg.sim, cfg.bybit_sim
    now = int(time.time() * 1000)
    ex = Exchange(seed=s.seed, now_ms=now)
    configure_funding(ex, int(bs.funding_interval_s * 1000), bs.funding_rate, bs.funding_drift,
                      now)
    ex.add_account(SIM_KEY, SIM_SECRET, usdt=bs.usdt, coins={})
    server = BybitSimServer(ex, host=s.host, port=s.port, tick_s=bs.tick_ms / 1000.0)
    try:
        base: str = await nursery.start(server.serve)
    except OSError as exc:
        report.emit(FAIL, "venue", f"cannot start the embedded Bybit simulator on "
                                   f"{s.host}:{s.port}: {exc.strerror or exc}")
        return None
    return base


async def _check_time(report: Reporter, cfg: EngineConfig, rest: BybitRest, where: str) -> bool:
    b = cfg.bybit or BybitConfig()
    limit = 2 * b.http_timeout_s + 5.0
    server_ms: int | None = None
    error: str | None = None
    t0 = t1 = 0.0
    with trio.move_on_after(limit) as scope:
        try:
            t0 = time.time() * 1000.0
            result = await rest.get("/v5/market/time", {})
            t1 = time.time() * 1000.0
            server_ms = parse_server_time_ms(result)
        except (HttpError, BybitApiError, CodecError, ValueError, TypeError) as exc:
            error = str(exc) or type(exc).__name__
    if scope.cancelled_caught:
        error = f"no answer within {limit:.0f} s"
    local_status, local_text = assess_local_time(time.time())
    if server_ms is None:
        report.emit(FAIL, "venue", f"{where} unreachable: GET /v5/market/time failed: {error} "
                                   "(check [bybit] environment / rest_url and the network)")
        report.emit(local_status if local_status == FAIL else WARN, "clock",
                    f"{local_text}; venue unreachable: offset not measured")
        return False
    rtt = t1 - t0
    report.emit(PASS, "venue", f"{where} reachable (GET /v5/market/time, round trip "
                               f"{rtt:.0f} ms)")
    if local_status == FAIL:
        report.emit(FAIL, "clock", local_text)
        return True
    status, text = assess_clock_offset((t0 + t1) / 2.0 - server_ms, rtt, b.recv_window_ms)
    report.emit(status, "clock", f"{local_text}; {text}")
    return True


async def _check_instruments(report: Reporter, cfg: EngineConfig, rest: BybitRest) -> None:
    symbols = list(cfg.funding.symbols) if cfg.funding is not None else []
    found: dict[str, dict[str, Mapping[str, Any]]] = {"spot": {}, "linear": {}}
    try:
        for category in ("spot", "linear"):
            for sym in symbols:
                result = await rest.get("/v5/market/instruments-info",
                                        {"category": category, "symbol": sym})
                items = result.get("list")
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, Mapping) and item.get("symbol") == sym:
                        found[category][sym] = item
    except (HttpError, BybitApiError, CodecError) as exc:
        report.emit(FAIL, "instruments", f"instruments-info failed: {exc}")
        return
    status, text = describe_instruments(symbols, found["spot"], found["linear"])
    report.emit(status, "instruments", text)


async def _check_account(report: Reporter, rest: BybitRest, need_usd: float) -> None:
    try:
        await rest.sync_time()
        result = await rest.get("/v5/account/wallet-balance", {"accountType": "UNIFIED"},
                                signed=True)
    except BybitApiError as exc:
        hint = KEY_HINTS.get(exc.ret_code, "check the key pair and its permissions")
        report.emit(FAIL, "account", f"signed GET /v5/account/wallet-balance refused: retCode "
                                     f"{exc.ret_code} ({exc.ret_msg[:120]}): {hint}")
        return
    except (HttpError, CodecError) as exc:
        report.emit(FAIL, "account", f"signed GET /v5/account/wallet-balance failed: {exc}")
        return
    status, text = describe_wallet(result, need_usd)
    report.emit(status, "account", text)


def describe_fees(cfg: EngineConfig, spot: Mapping[str, tuple[Any, Any]],
                  perp: Mapping[str, tuple[Any, Any]]) -> tuple[str, str]:
    """(status, text) for the venue's (taker, maker) rates per symbol of each leg against
    ``[funding] spot_fee_bps``/``perp_fee_bps``: WARN naming each differing or missing rate."""
    assert cfg.funding is not None
    f = cfg.funding
    source = (cfg.bybit or BybitConfig()).fee_source
    rates, diffs = [], []
    for sym in f.symbols:
        for leg, got, conf in (("spot", spot, f.spot_fee_bps), ("perp", perp, f.perp_fee_bps)):
            if sym not in got:
                diffs.append(f"{sym} {leg}: no venue rate")
                continue
            taker, maker = (float(x) * 1e4 for x in got[sym])
            rates.append(f"{sym} {leg} {taker:g}/{maker:g}")
            if abs(taker - conf) > 1e-6:
                diffs.append(f"{sym} {leg} taker {taker:g} bps vs config {conf:g}")
    text = f"venue fee rates (taker/maker bps): {', '.join(rates) or 'none'}"
    if not diffs:
        return PASS, f"{text}; [funding] spot_fee_bps/perp_fee_bps agree"
    used = ("the venue's are used ([bybit] fee_source = \"venue\")" if source == "venue"
            else "the config's are used ([bybit] fee_source = \"config\")")
    return WARN, f"{text}; config differs: {'; '.join(diffs)}; {used}"


async def _check_fees(report: Reporter, cfg: EngineConfig, rest: BybitRest) -> None:
    try:
        spot = await rest.fee_rates("spot")
        perp = await rest.fee_rates("linear")
    except BybitApiError as exc:
        report.emit(WARN, "fees", f"signed GET /v5/account/fee-rate refused: retCode "
                                  f"{exc.ret_code} ({exc.ret_msg[:120]}); the engine would use "
                                  "[funding] spot_fee_bps/perp_fee_bps")
        return
    except (HttpError, CodecError) as exc:
        report.emit(WARN, "fees", f"signed GET /v5/account/fee-rate failed: {exc}; the engine "
                                  "would use [funding] spot_fee_bps/perp_fee_bps")
        return
    status, text = describe_fees(cfg, spot, perp)
    report.emit(status, "fees", text)


def check_latch(report: Reporter, cfg: EngineConfig, env: Mapping[str, str]) -> None:
    from engine.ops.funding_latch import latched_breaker
    from engine.ops.paths import RESET_FILE, resolve_state_dir

    d = Path(cfg.records.dir)
    latch = latched_breaker(d, dt.datetime.now(dt.UTC).date())
    if latch is None:
        report.emit(PASS, "hard stop", f"no breaker trip holds (funding records in {d})")
        return
    ts = latch.get("ts")
    since = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts / 1000.0))
             if isinstance(ts, int | float) else "?")
    what = f"{latch.get('breaker')} tripped {since} ({latch.get('detail')})"
    reset = resolve_state_dir(cfg, env) / RESET_FILE
    if reset.exists():
        report.emit(PASS, "hard stop", f"{what}; a reset is pending ({reset}): released at the "
                                       "next start")
        return
    report.emit(WARN, "hard stop", f"{what}: no new entries until `python -m engine "
                                   "reset-hard-stop`")
