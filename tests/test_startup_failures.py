"""Every startup failure, as an operator meets it: the CLI in a subprocess, one clear line naming
the key to change, the documented exit code, no traceback, nothing written to the records; and
one engine per records directory (the lock)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.io.jsonl import read_jsonl

EXIT_RUNTIME = 1
EXIT_CONFIG = 2


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.upper().startswith("ENGINE__")}
    e.pop("ENGINE_OPS_TOKEN", None)
    e.pop("ENGINE_WEBHOOK_URL", None)
    e["ENGINE__OPS__HTTP_PORT"] = "0"  # never the fixed 9321 of the default config
    e.update(extra or {})
    return e


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, env=_env(env),
                          capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    """The lines an operator reads as the failure (ERROR/CRITICAL log lines and ``engine:``)."""
    return [ln for ln in stderr.splitlines()
            if " ERROR " in ln or " CRITICAL " in ln or ln.startswith("engine:")]


def assert_one_clear_line(r: subprocess.CompletedProcess[str], code: int,
                          *needles: str) -> str:
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr[-3000:]
    lines = error_lines(r.stderr)
    assert len(lines) == 1, lines
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def jsonl_files(root: Path) -> list[Path]:
    """Every record a run writes: JSON Lines day files and frame recordings (.zst)."""
    return sorted([*root.rglob("*.jsonl"), *root.rglob("*.zst")])


def test_unknown_market_exits_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    r = run_cli(["run", "--duration", "5"], tmp_path,
                {"ENGINE__VENUE__MARKETS": '["xyz:NOPE"]'})
    assert_one_clear_line(r, EXIT_CONFIG, "xyz:NOPE", "[venue] markets")
    assert jsonl_files(tmp_path) == []


def test_unknown_dex_lowercase_override_is_honoured_and_exits_2(tmp_path: Path) -> None:
    # the docs call overrides case-insensitive: the lower-case name is applied, not ignored
    r = run_cli(["run", "--duration", "5"], tmp_path, {"engine__venue__dex": "abc"})
    assert_one_clear_line(r, EXIT_CONFIG, "'abc'", "[venue] dex")
    assert jsonl_files(tmp_path) == []


def test_override_of_a_whole_section_is_a_config_error(tmp_path: Path) -> None:
    r = run_cli(["run", "--duration", "5"], tmp_path, {"ENGINE__SUMMARY": "5"})
    line = assert_one_clear_line(r, EXIT_CONFIG, "ENGINE__SUMMARY", "[summary]")
    assert "not iterable" not in line
    assert not (tmp_path / "data").exists()


def test_ops_port_taken_exits_2_naming_the_key_and_writes_no_record(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        r = run_cli(["run", "--duration", "5"], tmp_path,
                    {"ENGINE__OPS__HTTP_PORT": str(port)})
    assert_one_clear_line(r, EXIT_CONFIG, f"127.0.0.1:{port}", "[ops] http_port")
    # the failed start restored nothing and wrote nothing (no journal_restored record)
    assert jsonl_files(tmp_path) == []


def test_unreachable_info_url_exits_1_after_retries_naming_the_key(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "unreachable.toml"
    cfg.write_text(f'mode = "observe"\n[venue]\ninfo_url = "http://127.0.0.1:{port}/info"\n'
                   f'ws_url = "ws://127.0.0.1:{port}/ws"\ninfo_timeout_s = 1\n')
    r = run_cli(["run", "--config", str(cfg)], tmp_path, timeout=90)
    assert_one_clear_line(r, EXIT_RUNTIME, "unreachable", "after 5 attempts",
                          "[venue] info_url")
    assert jsonl_files(tmp_path) == []


def _wait_for(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _journal_restored(records: Path) -> list[dict[str, object]]:
    return [x for p in records.glob("positions_*.jsonl") for x in read_jsonl(p)
            if x.get("event") == "journal_restored"]


def test_second_engine_on_the_same_records_dir_refuses(tmp_path: Path) -> None:
    records = tmp_path / "data" / "sim" / "paper"
    first = subprocess.Popen([sys.executable, "-m", "engine", "run", "--duration", "60"],
                             cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(_journal_restored(records)) == 1, 30, "the first engine's start")
        lock = records / "engine.lock"
        assert lock.read_text().split() == [str(first.pid)]
        r = run_cli(["run", "--duration", "5"], tmp_path)
        assert_one_clear_line(r, EXIT_CONFIG, "in use by another engine", f"pid {first.pid}",
                              "[records] dir")
        # the refused start wrote nothing into the running engine's journal
        assert len(_journal_restored(records)) == 1
        # another mode on the simulator gets its own directory and runs
        r = run_cli(["run", "--mode", "observe", "--duration", "1"], tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        assert (tmp_path / "data" / "sim" / "observe" / "engine.lock").exists()
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err[-2000:]
    assert lock.read_text() == ""  # released: a later start is free to take it
    r = run_cli(["run", "--duration", "1"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("debug", [False, True])
def test_unexpected_error_is_one_line_unless_debug(tmp_path: Path, debug: bool,
                                                   capfd: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.cli as cli

    async def boom(cfg: object, duration_s: float | None = None) -> int:
        raise ExceptionGroup("nursery", [RuntimeError("disk on fire")])

    monkeypatch.setattr(cli, "run_observe", boom)
    monkeypatch.chdir(tmp_path)
    for k in [k for k in os.environ if k.upper().startswith("ENGINE__")]:
        monkeypatch.delenv(k)
    argv = ["run", "--mode", "observe"] + (["--debug"] if debug else [])
    assert cli.main(argv) == EXIT_RUNTIME
    err = capfd.readouterr().err
    assert "RuntimeError: disk on fire" in err
    assert ("Traceback" in err) == debug
    if not debug:
        assert "--debug" in err and len(error_lines(err)) == 1
