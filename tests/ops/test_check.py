"""``python -m engine check``: verdicts and exit codes against the embedded simulator, a stub info
server (Date header skew, malformed answers), broken configs, data dirs, tests and secrets."""

from __future__ import annotations

import email.utils
import functools
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h11
import pytest
import trio

from engine.config import EngineConfig, OpsConfig, RecordsConfig
from engine.ops.check import (
    EXIT_CONDITIONAL,
    EXIT_GO,
    EXIT_NO_GO,
    FAIL,
    PASS,
    WARN,
    assess_free_space,
    assess_local_time,
    assess_skew,
    default_tests_path,
    kill_file_path,
    pytest_summary,
    resolve_state_dir,
    run_check,
    run_check_async,
)
from engine.venues.hyperliquid.signing import Signer

AGENT_KEY = "0x" + "4c" * 32  # test-only key
MASTER = "0x" + "12" * 20
OPS_TOKEN = "ops-token-Zq8v1sEcret"
WEBHOOK = "https://discord.example/api/webhooks/123/hook-Secret-Token-9"
_SCRUB = ("ENGINE_AGENT_KEY", "ENGINE_OPS_TOKEN", "ENGINE_WEBHOOK_URL", "CREDENTIALS_DIRECTORY",
          "STATE_DIRECTORY")


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The process env without engine overrides or credentials; records under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE__") and k not in _SCRUB}
    env["ENGINE__RECORDS__DIR"] = str(tmp_path / "data")
    env.update(extra)
    return env


def check(tmp_path: Path, config: str | None = None, *, mode: str | None = None,
          run_tests: bool = False, tests_path: str | None = None,
          env: dict[str, str] | None = None, **kw: Any) -> tuple[int, list[str]]:
    path = None
    if config is not None:
        p = tmp_path / "engine.toml"
        p.write_text(config, "utf-8")
        path = str(p)
    out = io.StringIO()
    code = run_check(path, mode=mode, run_tests=run_tests, tests_path=tests_path, out=out,
                     env=base_env(tmp_path) if env is None else env, **kw)
    return code, out.getvalue().splitlines()


def status_of(lines: list[str], name: str) -> str:
    found = [ln for ln in lines if ln.split("] ", 1)[-1].startswith(f"{name}:")]
    assert len(found) == 1, (name, lines)
    return found[0][1:5]


def line_of(lines: list[str], name: str) -> str:
    return next(ln for ln in lines if ln.split("] ", 1)[-1].startswith(f"{name}:"))


def write_tests(tmp_path: Path, body: str, *, marked: bool = True) -> Path:
    """A test suite in ``tmp_path/suite``; ``marked``: its tests are ``property`` tests (what
    the default ``--tests property`` selects; the repository's conftest marks Hypothesis tests)."""
    d = tmp_path / "suite"
    d.mkdir(exist_ok=True)
    head = "import pytest\n\npytestmark = pytest.mark.property\n\n" if marked else ""
    (d / ("test_trivial.py" if marked else "test_plain.py")).write_text(head + body, "utf-8")
    return d


PASSING = "def test_ok() -> None:\n    assert 1 + 1 == 2\n"


# ------------------------------------------------------------------------ broken configs


def test_bad_toml_is_no_go_and_nothing_else_runs(tmp_path: Path) -> None:
    code, lines = check(tmp_path, "mode = \n[venue\n")
    assert code == EXIT_NO_GO
    assert lines[0].startswith("[FAIL] config: ") and "not valid TOML" in lines[0]
    assert lines[1:] == ["NO-GO: config"]
    assert not (tmp_path / "data").exists()  # not even the data dir probe ran


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.setblocking(False)
    return s


def _accepted_any(s: socket.socket) -> bool:
    try:
        conn, _ = s.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def test_unknown_key_is_no_go_without_any_connection(tmp_path: Path) -> None:
    lst = _listener()
    try:
        port = lst.getsockname()[1]
        venue = (f'mode = "observe"\n[venue]\ninfo_url = "http://127.0.0.1:{port}/info"\n'
                 "info_timeout_s = 0.5\n")
        code, lines = check(tmp_path, venue + "ping_idel_s = 3\n")
        assert code == EXIT_NO_GO
        assert "[venue] ping_idel_s: unknown key" in lines[0] and lines[0].startswith("[FAIL]")
        assert lines[-1] == "NO-GO: config" and len(lines) == 2
        assert not _accepted_any(lst)
        # control: the same config without the typo does connect (and times out: no HTTP here)
        code, lines = check(tmp_path, venue)
        assert code == EXIT_NO_GO and status_of(lines, "venue") == FAIL
        assert _accepted_any(lst)
    finally:
        lst.close()


def test_trade_mode_on_mainnet_without_allow_live_is_no_go_before_connecting(
        tmp_path: Path) -> None:
    env = base_env(tmp_path, ENGINE_AGENT_KEY=AGENT_KEY)
    t0 = time.monotonic()
    code, lines = check(tmp_path, f'mode = "trade"\n[account]\naddress = "{MASTER}"\n', env=env)
    assert code == EXIT_NO_GO
    assert "allow_live" in lines[0] and lines[0].startswith("[FAIL] config")
    assert lines[-1] == "NO-GO: config" and len(lines) == 2
    assert time.monotonic() - t0 < 5


# ------------------------------------------------------------------------ the simulator


def test_embedded_sim_go_with_credentials_and_passing_tests(tmp_path: Path) -> None:
    suite = write_tests(tmp_path, PASSING)
    env = base_env(tmp_path, ENGINE_OPS_TOKEN=OPS_TOKEN, ENGINE_WEBHOOK_URL=WEBHOOK)
    code, lines = check(tmp_path, None, run_tests=True, tests_path=str(suite), env=env)
    assert code == EXIT_GO, lines
    assert lines[-1] == "GO"
    assert all(ln.startswith("[PASS] ") for ln in lines[:-1]), lines
    assert "1 passed" in line_of(lines, "property tests")
    assert "40 listed markets on dex 'xyz'" in line_of(lines, "venue")
    assert "environment variable ENGINE_OPS_TOKEN" in line_of(lines, "ops token")
    text = "\n".join(lines)
    assert OPS_TOKEN not in text and WEBHOOK not in text and "hook-Secret" not in text


def test_embedded_sim_conditional_when_tests_skipped_and_no_ops_secrets(tmp_path: Path) -> None:
    code, lines = check(tmp_path, None)
    assert code == EXIT_CONDITIONAL
    assert lines[-1] == "CONDITIONAL: property tests"  # optional secrets absent: INFO only
    assert line_of(lines, "ops token").startswith("[INFO] ops token: not configured (optional)")
    assert "POST /kill and /hardstop/reset disabled" in line_of(lines, "ops token")
    assert line_of(lines, "webhook").startswith("[INFO] webhook: not configured (optional)")
    assert "skipped (--skip-tests)" in line_of(lines, "property tests")
    for name in ("config", "credentials", "data dir", "venue", "clock", "hard stop", "kill file"):
        assert status_of(lines, name) == PASS
    assert "not needed in paper mode" in line_of(lines, "credentials")


def test_configured_market_missing_is_no_go(tmp_path: Path) -> None:
    env = base_env(tmp_path, ENGINE__VENUE__MARKETS='["NOPE"]')
    code, lines = check(tmp_path, None, env=env)
    assert code == EXIT_NO_GO
    assert status_of(lines, "venue") == FAIL
    assert "'xyz:NOPE' is not in dex 'xyz'" in line_of(lines, "venue")
    assert lines[-1].startswith("NO-GO: venue")


def test_venue_unreachable_is_no_go(tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    cfg = (f'mode = "observe"\n[venue]\ninfo_url = "http://127.0.0.1:{port}/info"\n'
           "info_timeout_s = 2\n")
    code, lines = check(tmp_path, cfg)
    assert code == EXIT_NO_GO
    assert status_of(lines, "venue") == FAIL and "unreachable" in line_of(lines, "venue")
    assert status_of(lines, "clock") == WARN  # no answer, so no skew measurement
    assert "venue" in lines[-1]


def test_simulator_that_cannot_bind_is_no_go(tmp_path: Path) -> None:
    busy = _listener()
    try:
        env = base_env(tmp_path, ENGINE__SIM__PORT=str(busy.getsockname()[1]))
        code, lines = check(tmp_path, None, env=env)
        assert code == EXIT_NO_GO
        assert "cannot start the embedded simulator" in line_of(lines, "venue")
    finally:
        busy.close()


def test_trade_mode_on_sim_key_and_tokens_never_shown(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env = base_env(tmp_path, ENGINE_AGENT_KEY=AGENT_KEY, ENGINE__ACCOUNT__ADDRESS=MASTER,
                   ENGINE_OPS_TOKEN=OPS_TOKEN, ENGINE_WEBHOOK_URL=WEBHOOK)
    code, lines = check(tmp_path, None, mode="trade", env=env)
    agent = Signer.from_hex(AGENT_KEY).address
    assert status_of(lines, "credentials") == PASS
    assert f"agent {agent} signs for account {MASTER}" in line_of(lines, "credentials")
    assert status_of(lines, "account") == PASS
    # flat: the dex reports $0, the main dex the USDC (protocol doc §9, P22)
    assert "usable equity $10,000.00 (main dex $10,000.00 + dex 'xyz' $0.00)" in line_of(
        lines, "account")
    assert code == EXIT_CONDITIONAL and lines[-1] == "CONDITIONAL: property tests"
    shown = "\n".join(lines) + "\n" + caplog.text
    for secret in (AGENT_KEY, AGENT_KEY[2:], AGENT_KEY.upper()[2:], OPS_TOKEN, WEBHOOK):
        assert secret not in shown


def test_credentials_directory_is_used_and_never_shown(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "agent_key").write_text(AGENT_KEY + "\n")
    (creds / "ops_token").write_text(OPS_TOKEN + "\n")
    (creds / "webhook_url").write_text(WEBHOOK + "\n")
    env = base_env(tmp_path, CREDENTIALS_DIRECTORY=str(creds), ENGINE__ACCOUNT__ADDRESS=MASTER)
    code, lines = check(tmp_path, None, mode="trade", env=env)
    assert status_of(lines, "credentials") == PASS
    assert "$CREDENTIALS_DIRECTORY/ops_token" in line_of(lines, "ops token")
    assert "$CREDENTIALS_DIRECTORY/webhook_url" in line_of(lines, "webhook")
    text = "\n".join(lines)
    assert AGENT_KEY[2:] not in text and OPS_TOKEN not in text and WEBHOOK not in text
    assert code == EXIT_CONDITIONAL


def test_trade_mode_without_key_is_no_go(tmp_path: Path) -> None:
    env = base_env(tmp_path, ENGINE__ACCOUNT__ADDRESS=MASTER)
    code, lines = check(tmp_path, None, mode="trade", env=env)
    assert code == EXIT_NO_GO
    assert status_of(lines, "credentials") == FAIL
    assert "ENGINE_AGENT_KEY" in line_of(lines, "credentials")
    assert lines[-1].startswith("NO-GO: credentials")


def test_malformed_key_is_no_go_and_not_echoed(tmp_path: Path) -> None:
    bad = "0x" + "7f" * 31 + "zz"
    env = base_env(tmp_path, ENGINE_AGENT_KEY=bad, ENGINE__ACCOUNT__ADDRESS=MASTER)
    code, lines = check(tmp_path, None, mode="trade", env=env)
    assert code == EXIT_NO_GO and status_of(lines, "credentials") == FAIL
    assert bad not in "\n".join(lines) and bad[2:] not in "\n".join(lines)


def test_agent_equal_to_account_warns(tmp_path: Path) -> None:
    agent = Signer.from_hex(AGENT_KEY).address
    env = base_env(tmp_path, ENGINE_AGENT_KEY=AGENT_KEY, ENGINE__ACCOUNT__ADDRESS=agent)
    code, lines = check(tmp_path, None, mode="trade", env=env)
    assert status_of(lines, "credentials") == WARN
    assert "master key" in line_of(lines, "credentials")
    assert code == EXIT_CONDITIONAL


def test_trade_mode_without_account_address_fails(tmp_path: Path) -> None:
    env = base_env(tmp_path, ENGINE_AGENT_KEY=AGENT_KEY)
    code, lines = check(tmp_path, None, mode="trade", env=env)
    assert status_of(lines, "credentials") == FAIL and "[account] address" in lines[1]
    assert status_of(lines, "account") == FAIL
    assert code == EXIT_NO_GO


def test_empty_ops_token_is_a_failure(tmp_path: Path) -> None:
    code, lines = check(tmp_path, None, env=base_env(tmp_path, ENGINE_OPS_TOKEN="  "))
    assert status_of(lines, "ops token") == FAIL and "is empty" in line_of(lines, "ops token")
    assert code == EXIT_NO_GO


# ------------------------------------------------------------------------ data dir


def test_records_dir_that_cannot_be_created_is_no_go(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env = base_env(tmp_path, ENGINE__RECORDS__DIR=str(blocker / "data"))
    code, lines = check(tmp_path, None, env=env)
    assert code == EXIT_NO_GO
    assert status_of(lines, "data dir") == FAIL and "not writable" in line_of(lines, "data dir")
    assert "data dir" in lines[-1]


def test_unwritable_records_dir_is_no_go(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        if os.access(d, os.W_OK):
            pytest.skip("chmod has no effect for this user (root)")
        code, lines = check(tmp_path, None, env=base_env(tmp_path, ENGINE__RECORDS__DIR=str(d)))
        assert code == EXIT_NO_GO and status_of(lines, "data dir") == FAIL
    finally:
        d.chmod(0o700)


def test_free_space_thresholds() -> None:
    mib = 1024 * 1024
    assert assess_free_space(50 * mib)[0] == FAIL
    assert assess_free_space(500 * mib)[0] == WARN
    status, text = assess_free_space(5 * 1024 * mib)
    assert status == PASS and text == "5.0 GiB free"


# ------------------------------------------------------------------------ tests subprocess


def test_failing_tests_are_no_go(tmp_path: Path) -> None:
    suite = write_tests(tmp_path, PASSING + "\ndef test_bad() -> None:\n    assert 1 == 2\n")
    env = base_env(tmp_path, ENGINE_OPS_TOKEN=OPS_TOKEN, ENGINE_WEBHOOK_URL=WEBHOOK)
    code, lines = check(tmp_path, None, run_tests=True, tests_path=str(suite), env=env)
    assert code == EXIT_NO_GO
    ln = line_of(lines, "property tests")
    assert ln.startswith("[FAIL]") and "1 failed" in ln and "test_bad" in ln
    assert lines[-1] == "NO-GO: property tests"


def test_failing_test_output_is_never_echoed(tmp_path: Path) -> None:
    body = ("import logging\n\ndef test_leaky() -> None:\n"
            "    print('stdout-Q1x')\n"
            "    logging.getLogger('x').error('ERROR log-Q2x')\n"
            "    assert False, 'message-Q3x'\n")
    suite = write_tests(tmp_path, body)
    code, lines = check(tmp_path, None, run_tests=True, tests_path=str(suite))
    ln = line_of(lines, "property tests")
    assert ln.startswith("[FAIL]") and "test_trivial.py::test_leaky" in ln and "1 failed" in ln
    assert not [m for m in ("Q1x", "Q2x", "Q3x") if m in "\n".join(lines)]


def test_tests_see_no_secrets_and_no_overrides(tmp_path: Path) -> None:
    body = ("import os\n\ndef test_env() -> None:\n"
            "    assert 'ENGINE_OPS_TOKEN' not in os.environ\n"
            "    assert 'ENGINE_AGENT_KEY' not in os.environ\n"
            "    assert not [k for k in os.environ if k.upper().startswith('ENGINE__')]\n")
    suite = write_tests(tmp_path, body)
    env = base_env(tmp_path, ENGINE_OPS_TOKEN=OPS_TOKEN, ENGINE_AGENT_KEY=AGENT_KEY,
                   engine__venue__dex="xyz")  # overrides are case-insensitive
    code, lines = check(tmp_path, None, run_tests=True, tests_path=str(suite), env=env)
    assert status_of(lines, "property tests") == PASS, lines


def test_tests_timeout_kills_the_run(tmp_path: Path) -> None:
    suite = write_tests(tmp_path, "import time\n\ndef test_slow() -> None:\n    time.sleep(60)\n")
    t0 = time.monotonic()
    code, lines = check(tmp_path, None, run_tests=True, tests_path=str(suite),
                        tests_timeout_s=1.0)
    assert time.monotonic() - t0 < 30
    assert code == EXIT_NO_GO
    assert "timed out after 1 s" in line_of(lines, "property tests")


def test_missing_tests_path_fails(tmp_path: Path) -> None:
    code, lines = check(tmp_path, None, run_tests=True, tests_path=str(tmp_path / "nope"))
    assert status_of(lines, "property tests") == FAIL and code == EXIT_NO_GO


def test_default_tests_path_is_the_repository_suite() -> None:
    path = default_tests_path()
    assert path is not None and path == Path(__file__).resolve().parent.parent
    assert (path / "ops" / "test_check.py").is_file()


def test_pytest_summary_line() -> None:
    assert pytest_summary("x\n.F\n\n==== 1 failed, 2 passed in 0.12s ====\n\n") == \
        "1 failed, 2 passed in 0.12s"
    assert pytest_summary("") == "no pytest summary line"
    assert pytest_summary("E   ImportError: token=abc\n") == "no pytest summary line"
    assert pytest_summary("no tests ran in 0.01s\n") == "no tests ran in 0.01s"


# ------------------------------------------------------------------------ hard stop, kill file


def test_kill_file_present_is_conditional(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "KILL").write_text("")
    env = base_env(tmp_path, ENGINE_OPS_TOKEN=OPS_TOKEN, ENGINE_WEBHOOK_URL=WEBHOOK)
    code, lines = check(tmp_path, None, env=env)
    assert code == EXIT_CONDITIONAL
    assert line_of(lines, "kill file").startswith(
        f"[WARN] kill file: trading will not start while {data / 'KILL'} exists")
    assert lines[-1] == "CONDITIONAL: kill file, property tests"
    (data / "KILL").unlink()
    code, lines = check(tmp_path, None, env={**env, "ENGINE_KILL": "1"})
    assert line_of(lines, "kill env").startswith("[WARN] kill env: ENGINE_KILL is set")
    assert status_of(lines, "kill file") == PASS
    assert lines[-1] == "CONDITIONAL: kill env, property tests"


def test_kill_file_honours_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "KILL").write_text("")
    env = base_env(tmp_path, STATE_DIRECTORY=f"{state}:{tmp_path / 'other'}")
    code, lines = check(tmp_path, None, env=env)
    assert status_of(lines, "kill file") == WARN and str(state / "KILL") in line_of(lines,
                                                                                   "kill file")


def test_state_dir_and_kill_file_resolution(tmp_path: Path) -> None:
    cfg = EngineConfig(records=RecordsConfig(dir=str(tmp_path / "rec")))
    assert resolve_state_dir(cfg, {}) == tmp_path / "rec"
    assert kill_file_path(cfg, {}) == tmp_path / "rec" / "KILL"
    assert resolve_state_dir(cfg, {"STATE_DIRECTORY": "/var/lib/engine:/var/lib/x"}) == \
        Path("/var/lib/engine")
    assert resolve_state_dir(cfg, {"STATE_DIRECTORY": ""}) == tmp_path / "rec"
    cfg2 = EngineConfig(records=RecordsConfig(dir="rec"),
                        ops=OpsConfig(state_dir=str(tmp_path / "st"), kill_file="stop.now"))
    assert kill_file_path(cfg2, {"STATE_DIRECTORY": "/ignored"}) == tmp_path / "st" / "stop.now"
    cfg3 = EngineConfig(ops=OpsConfig(kill_file="/run/engine/KILL"))
    assert kill_file_path(cfg3, {}) == Path("/run/engine/KILL")


def _latch(data: Path, event: str = "hard_stop") -> None:
    data.mkdir(exist_ok=True)
    now_ms = time.time() * 1000.0
    day = time.strftime("%Y-%m-%d", time.gmtime(now_ms / 1000))
    rec = {"event": event, "reason": "reject_burst", "detail": "10 rejects", "ts_ms": now_ms}
    with (data / f"positions_{day}.jsonl").open("a") as f:
        f.write(json.dumps(rec) + "\n")


def test_latched_hard_stop_warns_and_a_pending_reset_passes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _latch(data)
    code, lines = check(tmp_path, None)
    assert status_of(lines, "hard stop") == WARN and "reject_burst" in line_of(lines, "hard stop")
    assert code == EXIT_CONDITIONAL and "hard stop" in lines[-1]
    state = tmp_path / "state"  # the reset request lives in the state dir, not the records dir
    state.mkdir()
    (state / "RESET_HARD_STOP").write_text("reset")
    code, lines = check(tmp_path, None)
    assert status_of(lines, "hard stop") == WARN
    code, lines = check(tmp_path, None, env=base_env(tmp_path, STATE_DIRECTORY=str(state)))
    assert status_of(lines, "hard stop") == PASS
    assert f"reset is pending ({state / 'RESET_HARD_STOP'})" in line_of(lines, "hard stop")
    _latch(data, "hard_stop_reset")
    code, lines = check(tmp_path, None)
    assert line_of(lines, "hard stop").startswith("[PASS] hard stop: not latched")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    with (data / f"positions_{day}.jsonl").open("a") as f:
        f.write("{not json\n")
    code, lines = check(tmp_path, None)
    assert "1 torn/malformed journal line(s) skipped" in line_of(lines, "hard stop")


# ------------------------------------------------------------------ stub venue: clock, account

UNIVERSE = {"universe": [{"name": "xyz:GOLD", "szDecimals": 2, "maxLeverage": 10}]}


async def _stub_connection(stream: trio.SocketStream, date: Callable[[], str | None],
                           answers: dict[str, Any]) -> None:
    conn = h11.Connection(h11.SERVER)
    body = b""
    while True:
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(ev, h11.Data):
            body += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            if not body:  # e.g. the network check's GET /sim/stats: not the simulator
                await stream.send_all(conn.send(h11.Response(
                    status_code=404, headers=[("content-length", "0"), ("connection", "close")]))
                    + conn.send(h11.EndOfMessage()))
                return
            req = json.loads(body)
            kind = req["type"]
            answer = answers[kind]
            if isinstance(answer, dict) and "by_dex" in answer:  # main dex vs a HIP-3 dex
                answer = answer["by_dex"][req.get("dex", "")]
            data = json.dumps(answer).encode()
            headers = [("content-length", str(len(data))), ("content-type", "application/json"),
                       ("connection", "close")]
            stamp = date()
            if stamp is not None:
                headers.append(("date", stamp))
            await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers))
                                  + conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage()))
            return
        elif isinstance(ev, h11.ConnectionClosed):
            return


async def start_stub(nursery: trio.Nursery, date: Callable[[], str | None],
                     answers: dict[str, Any] | None = None) -> int:
    answers = {"perpDexs": [None, {"name": "xyz"}], "meta": UNIVERSE, **(answers or {})}

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await _stub_connection(stream, date, answers)
        except (trio.BrokenResourceError, h11.RemoteProtocolError):
            pass
        await stream.aclose()

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0,
                                                      host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


def http_date(offset_s: float) -> Callable[[], str]:
    return lambda: email.utils.formatdate(time.time() + offset_s, usegmt=True)


async def check_async(tmp_path: Path, port: int, mode: str = "observe",
                      env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    p = tmp_path / "stub.toml"
    p.write_text(f'mode = "{mode}"\n[venue]\ninfo_url = "http://127.0.0.1:{port}/info"\n'
                 'ws_url = "ws://127.0.0.1:9/ws"\ninfo_timeout_s = 5\nnetwork = "testnet"\n',
                 "utf-8")
    out = io.StringIO()
    code = await run_check_async(str(p), mode=None, run_tests=False, tests_path=None, out=out,
                                 env=base_env(tmp_path) if env is None else env)
    return code, out.getvalue().splitlines()


@pytest.mark.parametrize(("date", "expected", "text"), [
    (http_date(0.0), PASS, "at least 0.00 s"),
    (http_date(-10.0), FAIL, "local clock ahead of the venue"),
    (http_date(+10.0), FAIL, "local clock behind the venue"),
    (lambda: "yesterday-ish", WARN, "not an HTTP date"),
    (lambda: None, WARN, "no Date header"),
])
async def test_clock_skew_against_the_venue_date_header(
        tmp_path: Path, nursery: trio.Nursery, date: Callable[[], str | None], expected: str,
        text: str) -> None:
    port = await start_stub(nursery, date)
    code, lines = await check_async(tmp_path, port)
    assert status_of(lines, "venue") == PASS
    assert "1 listed markets on dex 'xyz'" in line_of(lines, "venue")
    assert status_of(lines, "clock") == expected and text in line_of(lines, "clock"), lines


def by_dex(main: Any, dex: Any) -> dict[str, Any]:
    return {"by_dex": {"": main, "xyz": dex}}


FLAT_DEX = {"marginSummary": {"accountValue": "0.0"}, "assetPositions": []}


@pytest.mark.parametrize(("state", "expected", "text"), [
    ({"marginSummary": {"accountValue": "1234.5"}, "assetPositions": []}, PASS,
     "usable equity $2,469.00 (main dex $1,234.50 + dex 'xyz' $1,234.50)"),
    # a flat dex reports 0: the equity is the main dex's (protocol doc §9, P22)
    (by_dex({"marginSummary": {"accountValue": "800.0"}, "assetPositions": []}, FLAT_DEX),
     PASS, "0 open position(s); usable equity $800.00 (main dex $800.00 + dex 'xyz' $0.00)"),
    # the venue cannot tell: say so and what the breakers will do
    (by_dex(FLAT_DEX, FLAT_DEX), WARN, "the venue cannot tell the equity: usable equity is "
     "$0.00"),
    (by_dex({"assetPositions": []}, FLAT_DEX), WARN,
     "new entries will be refused: fund the account or set [breakers] equity_usd"),
    ({"assetPositions": []}, FAIL, "no numeric marginSummary.accountValue"),
    ({"marginSummary": {"accountValue": "lots"}, "assetPositions": []}, FAIL, "no numeric"),
    (["not", "an", "object"], FAIL, "malformed clearinghouseState"),
])
async def test_account_answer_is_validated(tmp_path: Path, nursery: trio.Nursery, state: Any,
                                           expected: str, text: str) -> None:
    port = await start_stub(nursery, http_date(0.0), {"clearinghouseState": state})
    env = base_env(tmp_path, ENGINE_AGENT_KEY=AGENT_KEY, ENGINE__ACCOUNT__ADDRESS=MASTER)
    code, lines = await check_async(tmp_path, port, mode="trade", env=env)
    assert status_of(lines, "account") == expected and text in line_of(lines, "account"), lines


async def test_malformed_discovery_answer_is_no_go(tmp_path: Path,
                                                   nursery: trio.Nursery) -> None:
    port = await start_stub(nursery, http_date(0.0), {"meta": {"universe": "nope"}})
    code, lines = await check_async(tmp_path, port)
    assert code == EXIT_NO_GO and status_of(lines, "venue") == FAIL
    assert "no 'universe' list" in line_of(lines, "venue")


# ------------------------------------------------------------------------ pure assessments


def test_skew_bound_allows_for_the_date_resolution() -> None:
    t = 1_800_000_000.0
    # in sync: the Date header is the floor of the venue's time
    assert assess_skew(t + 0.95, t + 0.99, t)[0] == PASS
    assert assess_skew(t + 0.01, t + 0.02, t)[0] == PASS
    # 1.2 s ahead at least (Date t, local t+2.2..t+2.25): WARN; 3 s: FAIL
    assert assess_skew(t + 2.2, t + 2.25, t)[0] == WARN
    assert assess_skew(t + 4.0, t + 4.05, t)[0] == FAIL
    # behind: venue said t+2 while local is t+0.5 → at least 1.45 s behind
    status, text = assess_skew(t + 0.5, t + 0.55, t + 2)
    assert status == WARN and "behind" in text
    assert assess_skew(t, t + 0.01, t + 5)[0] == FAIL


def test_local_time_plausibility() -> None:
    assert assess_local_time(time.time())[0] == PASS
    assert assess_local_time(0.0)[0] == FAIL  # 1970


async def test_account_with_no_usable_equity_names_the_configured_fallback(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    port = await start_stub(nursery, http_date(0.0),
                            {"clearinghouseState": by_dex(FLAT_DEX, FLAT_DEX)})
    env = base_env(tmp_path, ENGINE_AGENT_KEY=AGENT_KEY, ENGINE__ACCOUNT__ADDRESS=MASTER,
                   ENGINE__BREAKERS__EQUITY_USD="250")
    code, lines = await check_async(tmp_path, port, mode="trade", env=env)
    assert status_of(lines, "account") == WARN
    assert "measure against [breakers] equity_usd = 250 USD" in line_of(lines, "account"), lines
# ------------------------------------------------------------------------ GO, scopes, wording


def test_clean_setup_without_optional_secrets_can_say_go(tmp_path: Path) -> None:
    """No ops token, no webhook: INFO lines, and GO once the property tests pass."""
    suite = write_tests(tmp_path, PASSING)
    code, lines = check(tmp_path, None, run_tests=True, tests_path=str(suite))
    assert code == EXIT_GO, lines
    assert lines[-1] == "GO"
    assert status_of(lines, "ops token") == "INFO" and status_of(lines, "webhook") == "INFO"
    assert all(ln[1:5] in (PASS, "INFO") for ln in lines[:-1]), lines


def test_property_scope_runs_only_property_tests_and_all_runs_everything(tmp_path: Path) -> None:
    suite = write_tests(tmp_path, PASSING)
    write_tests(tmp_path, "def test_unmarked_fails() -> None:\n    assert False\n",
                marked=False)
    code, lines = check(tmp_path, None, run_tests=True, tests_path=str(suite))
    ln = line_of(lines, "property tests")
    assert ln.startswith("[PASS]") and "1 passed" in ln and "1 deselected" in ln, lines
    code, lines = check(tmp_path, None, run_tests=True, tests_path=str(suite), tests="all")
    ln = line_of(lines, "all tests")
    assert ln.startswith("[FAIL]") and "test_unmarked_fails" in ln and code == EXIT_NO_GO
    assert lines[-1] == "NO-GO: all tests"


def test_property_scope_without_property_tests_fails(tmp_path: Path) -> None:
    suite = write_tests(tmp_path, PASSING, marked=False)
    code, lines = check(tmp_path, None, run_tests=True, tests_path=str(suite))
    assert code == EXIT_NO_GO
    assert line_of(lines, "property tests").startswith("[FAIL] property tests: no property "
                                                       "tests selected")


def test_repository_conftest_marks_hypothesis_tests_property() -> None:
    root = Path(__file__).resolve().parents[2]

    def collected(path: str) -> str:
        r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-p",
                            "no:cacheprovider", "-m", "property", path], cwd=root,
                           capture_output=True, text=True, timeout=120)
        return r.stdout

    out = collected("tests/core/test_rounding_fast.py")  # Hypothesis tests
    assert "test_ioc_wire_equals_prepare_ioc" in out
    assert "test_trading_core_stateful" in collected("tests/trading/test_trading_stateful.py")
    assert "no tests collected" in collected("tests/test_systemd_unit.py")  # none there


def test_a_failing_config_line_never_says_valid(tmp_path: Path) -> None:
    env = base_env(tmp_path, ENGINE_AGENT_KEY=AGENT_KEY, ENGINE__ACCOUNT__ADDRESS=MASTER)
    code, lines = check(tmp_path, "mode = \"trade\"\n", mode="trade", env=env)
    ln = line_of(lines, "config")
    assert ln.startswith("[FAIL] config:") and "allow_live" in ln
    assert not re.search(r"\bvalid\b", ln), ln
    assert code == EXIT_NO_GO


def test_cli_check_help_and_scopes(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "engine", "check", "--help"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0
    assert "{property,all}" in r.stdout and "--tests-path" in r.stdout
    r = subprocess.run([sys.executable, "-m", "engine", "check", "--tests", "nope"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_records_dir_held_by_a_running_engine_is_a_warning(tmp_path: Path) -> None:
    from engine.io.dirlock import DirLock

    data = tmp_path / "data"
    data.mkdir()
    lock = DirLock(data)
    lock.acquire()
    try:
        code, lines = check(tmp_path, None)
    finally:
        lock.release()
    ln = line_of(lines, "records lock")
    assert ln.startswith("[WARN] records lock:") and f"pid {os.getpid()}" in ln
    assert "records lock" in lines[-1] and code == EXIT_CONDITIONAL
    code, lines = check(tmp_path, None)
    assert status_of(lines, "records lock") == PASS
