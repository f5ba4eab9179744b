"""``python -m engine check`` for the funding/basis strategy on Bybit: the real check against
the Bybit simulator over loopback (a good key, a wrong key, a wrong secret, a skewed venue clock
set through the simulator's control endpoint, an unlisted symbol, an unreachable venue), the
embedded simulator of ``config/bybit-sim.toml``, mainnet refusals before any connection, and
the secrets never printed."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.config import BybitConfig, structure_config
from engine.ops.check import EXIT_CONDITIONAL, EXIT_NO_GO, FAIL, PASS, WARN, run_check_async
from engine.ops.check_bybit import (
    assess_clock_offset,
    check_config,
    describe_instruments,
    describe_wallet,
)
from engine.sim.bybit.exchange import Exchange
from engine.sim.bybit.server import BybitSimServer
from engine.venues.bybit.codec import BybitApiError
from engine.venues.bybit.factory import live_url_overrides
from engine.venues.bybit.http import HttpClient
from engine.venues.bybit.rest import BybitRest
from engine.venues.bybit.signing import BybitCredentials
from engine.venues.bybit.urls import mainnet_host

REPO = Path(__file__).resolve().parents[2]
KEY, SECRET = "chk-key-7Hq2", "chk-secret-Vb91xQ"  # simulator-only keys
_SCRUB = ("BYBIT_API_KEY", "BYBIT_API_SECRET", "ENGINE_AGENT_KEY", "ENGINE_OPS_TOKEN",
          "ENGINE_WEBHOOK_URL", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "ENGINE_KILL")


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE__") and k not in _SCRUB}
    env["ENGINE__RECORDS__DIR"] = str(tmp_path / "data")
    env.update(extra)
    return env


def loopback_config(base: str, *, mode: str = "trade", symbols: tuple[str, ...] = ("BTCUSDT",),
                    extra: str = "", funding: str = "") -> str:
    ws = "ws" + base[4:]
    syms = ", ".join(json.dumps(s) for s in symbols)
    return (f'mode = "{mode}"\n[bybit]\nenvironment = "testnet"\nrest_url = "{base}"\n'
            f'ws_public_linear_url = "{ws}/v5/public/linear"\n'
            f'ws_public_spot_url = "{ws}/v5/public/spot"\n'
            f'ws_private_url = "{ws}/v5/private"\nhttp_timeout_s = 3\n{extra}'
            f'[funding]\nsymbols = [{syms}]\n{funding}[ops]\nhttp_port = 0\n')


async def check(tmp_path: Path, text: str | None = None, *, config: str | None = None,
                env: dict[str, str] | None = None, mode: str | None = None
                ) -> tuple[int, list[str]]:
    if text is not None:
        p = tmp_path / "engine.toml"
        p.write_text(text, "utf-8")
        config = str(p)
    out = io.StringIO()
    code = await run_check_async(config, mode=mode, run_tests=False, tests_path=None, out=out,
                                 env=base_env(tmp_path) if env is None else env)
    return code, out.getvalue().splitlines()


def line(lines: list[str], name: str) -> str:
    found = [ln for ln in lines if ln.split("] ", 1)[-1].startswith(f"{name}:")]
    assert len(found) == 1, (name, lines)
    return found[0]


def status_of(lines: list[str], name: str) -> str:
    return line(lines, name)[1:5]


def skew(clock_line: str, word: str) -> int:
    m = re.search(rf"{word} Bybit by (\d+) ms", clock_line)
    assert m is not None, clock_line
    return int(m[1])


def names(lines: list[str]) -> list[str]:
    return [ln.split("] ", 1)[1].split(":", 1)[0] for ln in lines if ln.startswith("[")]


async def start_sim(nursery: trio.Nursery) -> tuple[Exchange, BybitSimServer, str]:
    ex = Exchange(seed=5, now_ms=int(time.time() * 1000), funding_drift=0.0)
    ex.add_account(KEY, SECRET, usdt=25_000.0, coins={})
    server = BybitSimServer(ex, tick_s=0.05)
    base = await nursery.start(server.serve)
    return ex, server, base


def keyed(tmp_path: Path, key: str = KEY, secret: str = SECRET) -> dict[str, str]:
    return base_env(tmp_path, BYBIT_API_KEY=key, BYBIT_API_SECRET=secret)


# ------------------------------------------------------------------ against the simulator


async def test_trade_mode_on_loopback_passes_every_bybit_check(tmp_path: Path,
                                                               nursery: trio.Nursery) -> None:
    _ex, _server, base = await start_sim(nursery)
    code, lines = await check(tmp_path, loopback_config(base, symbols=("BTCUSDT", "ETHUSDT")),
                              env=keyed(tmp_path))
    assert names(lines) == ["config", "credentials", "ops token", "webhook", "data dir",
                            "records lock", "venue", "clock", "instruments", "account",
                            "fees", "hard stop", "kill file", "property tests"]
    for name in ("config", "credentials", "venue", "clock", "instruments", "account", "fees"):
        assert status_of(lines, name) == PASS, lines
    assert "Bybit testnet" in line(lines, "config") and "BTCUSDT, ETHUSDT" in line(lines, "config")
    assert "funding every 480 min" in line(lines, "instruments")  # the simulator's default 8 h
    assert "25,000.00 USD" in line(lines, "account")
    assert "environment variable BYBIT_API_KEY" in line(lines, "credentials")
    assert code == EXIT_CONDITIONAL and lines[-1] == "CONDITIONAL: property tests"
    text = "\n".join(lines)
    assert KEY not in text and SECRET not in text


async def test_fees_show_the_venues_rates_and_flag_config_that_differs(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    ex, _server, base = await start_sim(nursery)
    ex.symbol_fees[("linear", "BTCUSDT")] = (0.0004, 0.0001)
    code, lines = await check(tmp_path, loopback_config(base, funding="spot_fee_bps = 10\n"),
                              env=keyed(tmp_path))
    fees = line(lines, "fees")
    assert status_of(lines, "fees") == WARN, fees
    assert "BTCUSDT spot 10/10, BTCUSDT perp 4/1" in fees
    assert "BTCUSDT perp taker 4 bps vs config 5.5" in fees and "spot taker" not in fees
    assert 'fee_source = "venue"' in fees
    ex.symbol_fees.clear()
    code, lines = await check(tmp_path, loopback_config(base), env=keyed(tmp_path))
    assert status_of(lines, "fees") == PASS and "agree" in line(lines, "fees")


@pytest.mark.parametrize(("key", "secret", "code", "hint"), [
    ("chk-unknown-key", SECRET, 10003, "does not know this API key"),
    (KEY, "chk-wrong-secret-99", 10004, "secret does not belong"),
])
async def test_a_wrong_key_or_secret_is_no_go_and_never_shown(
        tmp_path: Path, nursery: trio.Nursery, key: str, secret: str, code: int,
        hint: str) -> None:
    _ex, server, base = await start_sim(nursery)
    rc, lines = await check(tmp_path, loopback_config(base), env=keyed(tmp_path, key, secret))
    assert rc == EXIT_NO_GO and lines[-1] == "NO-GO: account"
    assert status_of(lines, "credentials") == PASS  # present; only the venue can tell it is wrong
    acct = line(lines, "account")
    assert acct.startswith("[FAIL]") and f"retCode {code}" in acct and hint in acct
    assert server.auth_failures >= 1
    text = "\n".join(lines)
    assert key not in text and secret not in text


async def test_a_venue_clock_ahead_warns_and_the_key_still_works_after_the_time_sync(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    """The simulator's clock 3.5 s ahead (this host behind by 3.5 s: inside a 5 s recv_window,
    beyond half of it): WARN; the signed call passes because the check, like the engine,
    syncs its offset first."""
    _ex, server, base = await start_sim(nursery)
    server.clock_offset_ms = 3500.0
    rc, lines = await check(tmp_path, loopback_config(base), env=keyed(tmp_path))
    clock = line(lines, "clock")
    assert clock.startswith("[WARN]") and 3400 < skew(clock, "behind") < 3600, clock
    assert status_of(lines, "account") == PASS
    assert rc == EXIT_CONDITIONAL and lines[-1] == "CONDITIONAL: clock, property tests"


async def test_a_venue_clock_behind_beyond_the_window_is_no_go(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    """Set through the simulator's control endpoint: its clock 2.5 s behind this host's, so a
    request stamped by this host is 2.5 s in the venue's future (Bybit allows 1 s)."""
    _ex, server, base = await start_sim(nursery)
    http = HttpClient(base, timeout_s=3.0)
    rest = BybitRest(http, lambda: time.time() * 1000.0, BybitCredentials(KEY, SECRET))
    await rest.post("/sim/control", {"clock_offset_ms": -2500})
    assert server.clock_offset_ms == -2500.0
    await http.aclose()
    rc, lines = await check(tmp_path, loopback_config(base), env=keyed(tmp_path))
    clock = line(lines, "clock")
    assert clock.startswith("[FAIL]") and 2400 < skew(clock, "ahead of") < 2600, clock
    assert "fix NTP" in clock
    assert rc == EXIT_NO_GO and lines[-1] == "NO-GO: clock"


async def test_the_simulators_clock_knob_skews_server_time_and_the_signature_window(
        nursery: trio.Nursery) -> None:
    _ex, server, base = await start_sim(nursery)
    http = HttpClient(base, timeout_s=3.0)
    rest = BybitRest(http, lambda: time.time() * 1000.0, BybitCredentials(KEY, SECRET),
                     max_retries=0)
    with pytest.raises(BybitApiError, match="10001"):  # a bad knob is refused, not a crash
        await rest.post("/sim/control", {"clock_offset_ms": "soon"})
    await rest.post("/sim/control", {"clock_offset_ms": -3000})
    before = rest.time_resyncs
    offset = await rest.sync_time()
    assert 2500 < -offset < 3500
    rest.time_offset_ms = 0.0  # stamp by the host's clock: 3 s in the venue's future
    await rest.get("/v5/account/wallet-balance", {"accountType": "UNIFIED"}, signed=True)
    assert rest.time_resyncs == before + 1  # refused with 10002 once, then resynced
    await http.aclose()


async def test_a_symbol_the_venue_does_not_list_is_no_go(tmp_path: Path,
                                                         nursery: trio.Nursery) -> None:
    _ex, _server, base = await start_sim(nursery)
    rc, lines = await check(tmp_path, loopback_config(base, symbols=("BTCUSDT", "NOPEUSDT")),
                            env=keyed(tmp_path))
    inst = line(lines, "instruments")
    assert inst.startswith("[FAIL]") and "NOPEUSDT spot not listed" in inst
    assert "NOPEUSDT linear not listed" in inst and "[funding] symbols" in inst
    assert rc == EXIT_NO_GO


async def test_an_unreachable_venue_is_no_go_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, lines = await check(tmp_path, loopback_config(f"http://127.0.0.1:{port}"),
                            env=keyed(tmp_path))
    assert rc == EXIT_NO_GO
    venue = line(lines, "venue")
    assert venue.startswith("[FAIL]") and "unreachable" in venue and "rest_url" in venue
    assert status_of(lines, "clock") == WARN
    assert "instruments" not in names(lines) and "account" not in names(lines)


async def test_trade_mode_without_keys_is_no_go_and_names_both_sources(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    _ex, _server, base = await start_sim(nursery)
    rc, lines = await check(tmp_path, loopback_config(base))
    cred = line(lines, "credentials")
    assert cred.startswith("[FAIL]") and "BYBIT_API_KEY and BYBIT_API_SECRET" in cred
    assert "LoadCredential=bybit_api_key" in cred
    assert "account" not in names(lines)
    assert rc == EXIT_NO_GO


async def test_keys_from_the_credentials_directory_are_used_and_never_shown(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    _ex, _server, base = await start_sim(nursery)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "bybit_api_key").write_text(KEY + "\n")
    (creds / "bybit_api_secret").write_text(SECRET + "\n")
    rc, lines = await check(tmp_path, loopback_config(base),
                            env=base_env(tmp_path, CREDENTIALS_DIRECTORY=str(creds)))
    assert status_of(lines, "account") == PASS and "CREDENTIALS_DIRECTORY" in line(
        lines, "credentials")
    assert rc == EXIT_CONDITIONAL
    assert KEY not in "\n".join(lines) and SECRET not in "\n".join(lines)


async def test_paper_mode_needs_no_key_and_makes_no_signed_call(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    _ex, server, base = await start_sim(nursery)
    rc, lines = await check(tmp_path, loopback_config(base, mode="paper"))
    assert "not needed in paper mode" in line(lines, "credentials")
    assert "account" not in names(lines) and server.auth_failures == 0
    assert rc == EXIT_CONDITIONAL


# ------------------------------------------------------------------ before any connection


async def test_mainnet_without_allow_live_is_no_go_before_connecting(tmp_path: Path) -> None:
    text = ('mode = "trade"\n[bybit]\nenvironment = "mainnet"\n[funding]\n'
            'symbols = ["BTCUSDT"]\n')
    rc, lines = await check(tmp_path, text, env=keyed(tmp_path))
    assert rc == EXIT_NO_GO and len(lines) == 2 and lines[-1] == "NO-GO: config"
    assert lines[0].startswith("[FAIL] config:") and "allow_live" in lines[0]


def test_a_mainnet_url_under_a_testnet_environment_is_no_go() -> None:
    """The config step alone (no run_check: a regression must not reach for a public host)."""
    class Lines:
        def __init__(self) -> None:
            self.lines: list[tuple[str, str, str]] = []

        def emit(self, status: str, name: str, detail: str) -> None:
            self.lines.append((status, name, detail))

        def add_secret(self, value: str | None) -> None:
            pass

    cfg = structure_config({"mode": "trade", "funding": {"symbols": ["BTCUSDT"]},
                            "bybit": {"environment": "testnet",
                                      "rest_url": "https://api.bybit.com"}}, "test")
    out = Lines()
    assert check_config(out, cfg, "t.toml") is False
    ((status, name, detail),) = out.lines
    assert (status, name) == (FAIL, "config")
    assert "rest_url points at a Bybit mainnet host" in detail and "allow_live" in detail


async def test_observe_mode_is_no_go_for_the_funding_strategy(tmp_path: Path) -> None:
    rc, lines = await check(tmp_path, config=str(REPO / "config" / "bybit-sim.toml"),
                            mode="observe")
    assert rc == EXIT_NO_GO and names(lines) == ["config"] and "paper or trade" in lines[0]


def test_mainnet_hosts_and_overrides() -> None:
    assert mainnet_host("https://api.bybit.com") and mainnet_host("wss://stream.bybit.com/v5")
    assert mainnet_host("https://api.bytick.com")
    for url in ("https://api-testnet.bybit.com", "wss://stream-testnet.bybit.com/v5/private",
                "https://api-demo.bybit.com", "http://127.0.0.1:9", "https://notbybit.com"):
        assert not mainnet_host(url), url
    b = BybitConfig(environment="testnet", ws_private_url="wss://stream.bybit.com/v5/private")
    assert live_url_overrides(b) == ["ws_private_url"]
    assert live_url_overrides(BybitConfig(environment="mainnet", allow_live=True,
                                          rest_url="https://api.bybit.com")) == []


# ------------------------------------------------------------------ pure assessments


@pytest.mark.parametrize(("offset", "rtt", "status"), [
    (0.0, 2.0, PASS),
    (400.0, 100.0, PASS),      # up to 450 ahead: within half of the 1 s margin
    (480.0, 100.0, WARN),      # may be 530 ahead
    (1200.0, 100.0, FAIL),     # surely >= 1 s ahead: refused
    (950.0, 200.0, WARN),      # may be inside, may be outside: never a false FAIL
    (-2480.0, 100.0, WARN),    # may be 2.53 s behind: more than half of a 5 s window
    (-2000.0, 100.0, PASS),
    (-5200.0, 100.0, FAIL),    # surely more than recv_window behind
    (-4990.0, 100.0, WARN),
])
def test_clock_offset_against_the_signature_window(offset: float, rtt: float,
                                                   status: str) -> None:
    got, text = assess_clock_offset(offset, rtt, 5000)
    assert got == status, text
    assert ("ahead of" if offset >= 0 else "behind") in text


def test_instruments_need_both_categories_trading_and_a_funding_interval() -> None:
    def perp(sym: str, **kw: Any) -> dict[str, Any]:
        item = {"symbol": sym, "status": "Trading", "fundingInterval": 60,
                "priceFilter": {"tickSize": "0.1"},
                "lotSizeFilter": {"qtyStep": "0.001", "minOrderQty": "0.001"}}
        item.update(kw)
        return item

    spot = {"BTCUSDT": {"symbol": "BTCUSDT", "status": "Trading"},
            "ETHUSDT": {"symbol": "ETHUSDT", "status": "PreLaunch"}}
    status, text = describe_instruments(["BTCUSDT"], spot, {"BTCUSDT": perp("BTCUSDT")})
    assert status == PASS and "funding every 60 min" in text
    status, text = describe_instruments(
        ["BTCUSDT", "ETHUSDT", "SOLUSDT"], spot,
        {"BTCUSDT": perp("BTCUSDT", fundingInterval=None), "ETHUSDT": perp("ETHUSDT")})
    assert status == FAIL
    assert "BTCUSDT linear has no usable fundingInterval" in text
    assert "ETHUSDT spot status 'PreLaunch'" in text
    assert "SOLUSDT spot not listed" in text and "SOLUSDT linear not listed" in text


# ------------------------------------------------------------------ the command line


def test_cli_check_of_the_bybit_sim_config(tmp_path: Path) -> None:
    """``python -m engine check --config config/bybit-sim.toml``: the embedded Bybit simulator,
    not Hyperliquid's; CONDITIONAL (exit 2) only because the tests are skipped."""
    env = base_env(tmp_path)
    r = subprocess.run([sys.executable, "-m", "engine", "check", "--config",
                        "config/bybit-sim.toml", "--skip-tests"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    lines = r.stdout.splitlines()
    assert r.returncode == EXIT_CONDITIONAL, r.stdout + r.stderr
    assert lines[-1] == "CONDITIONAL: property tests"
    assert "embedded Bybit simulator" in line(lines, "venue")
    assert "BTCUSDT (spot and linear Trading, funding every 1 min)" in line(lines, "instruments")
    assert "perpDexs" not in r.stdout and r.stderr == ""


def test_wallet_equity_against_the_configured_notional() -> None:
    def wallet(equity: str) -> dict[str, Any]:
        return {"list": [{"accountType": "UNIFIED", "totalEquity": equity}]}

    assert describe_wallet(wallet("25000"), 5000)[0] == PASS
    status, text = describe_wallet(wallet("800"), 1000)
    assert status == WARN and "max_total_notional_usd = 1,000" in text
    assert describe_wallet(wallet("0"), 0)[0] == WARN
    assert describe_wallet({"list": []}, 0)[0] == WARN  # nothing readable: never a PASS


async def test_an_account_poorer_than_the_configured_notional_warns(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    _ex, _server, base = await start_sim(nursery)  # 25,000 USDT
    text = loopback_config(base, funding="max_total_notional_usd = 50000\n")
    rc, lines = await check(tmp_path, text, env=keyed(tmp_path))
    acct = line(lines, "account")
    assert acct.startswith("[WARN]") and "insufficient_balance" in acct
    assert rc == EXIT_CONDITIONAL and lines[-1] == "CONDITIONAL: account, property tests"


async def test_a_breaker_trip_that_still_holds_warns_and_a_pending_reset_passes(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    _ex, _server, base = await start_sim(nursery)
    records = tmp_path / "data"
    records.mkdir()
    now = int(time.time() * 1000)
    day = time.strftime("%Y-%m-%d", time.gmtime(now / 1000))
    (records / f"funding_{day}.jsonl").write_text(json.dumps(
        {"type": "breaker", "ts": now, "breaker": "drawdown", "detail": "drawdown 6 %"}) + "\n")
    rc, lines = await check(tmp_path, loopback_config(base), env=keyed(tmp_path))
    latch = line(lines, "hard stop")
    assert latch.startswith("[WARN]") and "drawdown tripped" in latch and "reset-hard-stop" in latch
    assert rc == EXIT_CONDITIONAL
    (records / "RESET_HARD_STOP").write_text("reset\n")
    rc, lines = await check(tmp_path, loopback_config(base), env=keyed(tmp_path))
    assert line(lines, "hard stop").startswith("[PASS]") and "a reset is pending" in line(
        lines, "hard stop")
