"""The command line as an operator uses it: exit codes, config errors, the default run, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.io.jsonl import read_jsonl

ROOT = Path(__file__).resolve().parent.parent


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE__")}
    e["ENGINE__OPS__HTTP_PORT"] = "0"  # an ephemeral ops port, never the operator's 9321
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


def test_help_lists_commands(tmp_path: Path) -> None:
    r = run_cli(["--help"], tmp_path)
    assert r.returncode == 0 and "run" in r.stdout and "sim" in r.stdout
    r = run_cli(["run", "--help"], tmp_path)
    assert r.returncode == 0 and "--config" in r.stdout
    r = run_cli(["sim", "--help"], tmp_path)
    assert r.returncode == 0 and "--port" in r.stdout


def test_unknown_key_exits_2_naming_file_and_key_before_connecting(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    # The venue URL points at a port nobody listens on: the error must come first.
    cfg.write_text('[venue]\nws_url = "ws://127.0.0.1:9/ws"\nping_idel_s = 3\n')
    t0 = time.monotonic()
    r = run_cli(["run", "--config", str(cfg)], tmp_path)
    assert r.returncode == 2
    assert str(cfg) in r.stderr and "[venue] ping_idel_s: unknown key" in r.stderr
    assert time.monotonic() - t0 < 10
    assert not (tmp_path / "data").exists()


def test_bad_value_and_missing_file_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[followups]\noffsets_ms = [1000, "3s"]\n')
    r = run_cli(["run", "--config", str(cfg)], tmp_path)
    assert r.returncode == 2 and "offsets_ms" in r.stderr
    r = run_cli(["run", "--config", str(tmp_path / "nope.toml")], tmp_path)
    assert r.returncode == 2 and "config file not found" in r.stderr


def test_bad_environment_override_exits_2(tmp_path: Path) -> None:
    r = run_cli(["run"], tmp_path, env={"ENGINE__VENUE__PING_IDLE_S": "soon"})
    assert r.returncode == 2
    assert "ENGINE__VENUE__PING_IDLE_S" in r.stderr and "ping_idle_s" in r.stderr


def test_unwritable_records_dir_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = run_cli(["run", "--duration", "5"], tmp_path,
                env={"ENGINE__RECORDS__DIR": str(blocker / "sub")})
    assert r.returncode == 2 and "not writable" in r.stderr


def test_default_run_shows_signals_and_followups(tmp_path: Path) -> None:
    """The README's first command, as a newcomer runs it: signals within 30 s, clean exit."""
    r = run_cli(["run", "--duration", "15"], tmp_path, env={"ENGINE__SUMMARY__INTERVAL_S": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "engine.summary: markets live" in r.stderr
    data = tmp_path / "data" / "sim" / "paper"
    sigs = [x for p in data.glob("signals_*.jsonl") for x in read_jsonl(p)]
    fus = [x for p in data.glob("followups_*.jsonl") for x in read_jsonl(p)]
    assert len(sigs) >= 1
    ids = {s["signal_id"] for s in sigs}
    per_sig: dict[str, int] = {}
    for f in fus:
        per_sig[f["signal_id"]] = per_sig.get(f["signal_id"], 0) + 1
    assert set(per_sig) == ids and set(per_sig.values()) == {3}


def test_sigterm_stops_cleanly_with_missed_followups(tmp_path: Path) -> None:
    e = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE__")}
    # An ephemeral ops port: with the default 9321 held by any other engine on the machine this
    # run exits 2 at once, and the wait below used to report it as "no signal within 40 s".
    e["ENGINE__OPS__HTTP_PORT"] = "0"
    # Logs go to files, not pipes nobody reads while we wait (a full pipe would stall the engine).
    with (tmp_path / "stdout.txt").open("w+") as out_f, (tmp_path / "stderr.txt").open("w+") as err_f:
        p = subprocess.Popen([sys.executable, "-m", "engine"], cwd=tmp_path, env=e,
                             stdout=out_f, stderr=err_f, text=True)
        try:
            data = tmp_path / "data" / "sim" / "paper"
            # The first signal comes ~7 s in on an idle machine; the bound is for a loaded one.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if any(q.stat().st_size > 0 for q in data.glob("signals_*.jsonl")):
                    break
                if p.poll() is not None:
                    raise AssertionError(f"engine exited {p.returncode} before any signal: "
                                         f"{(tmp_path / 'stderr.txt').read_text()[-2000:]}")
                time.sleep(0.2)
            else:
                raise AssertionError("no signal within 120 s")
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    err = (tmp_path / "stderr.txt").read_text()
    assert p.returncode == 0, err[-2000:]
    assert "received SIGTERM" in err
    sigs = [x for q in data.glob("signals_*.jsonl") for x in read_jsonl(q)]
    fus = [x for q in data.glob("followups_*.jsonl") for x in read_jsonl(q)]
    assert sigs
    assert any(f["miss_reason"] == "shutdown" for f in fus)
    per_sig: dict[str, int] = {}
    for f in fus:
        per_sig[f["signal_id"]] = per_sig.get(f["signal_id"], 0) + 1
    assert {s["signal_id"] for s in sigs} == set(per_sig) and set(per_sig.values()) == {3}


def test_trade_mode_refuses_mainnet_without_allow_live(tmp_path: Path) -> None:
    cfg = tmp_path / "trade.toml"
    cfg.write_text('[account]\naddress = "0x1111111111111111111111111111111111111111"\n')
    r = run_cli(["run", "--mode", "trade", "--config", str(cfg)], tmp_path,
                env={"ENGINE_AGENT_KEY": "0x" + "01" * 32})
    assert r.returncode == 2 and "allow_live" in r.stderr


def test_trade_mode_needs_a_key_and_never_prints_it(tmp_path: Path) -> None:
    r = run_cli(["run", "--mode", "trade"], tmp_path,
                env={"ENGINE__ACCOUNT__ADDRESS": "0x1111111111111111111111111111111111111111"})
    assert r.returncode == 2 and "ENGINE_AGENT_KEY" in r.stderr
    key = "0x" + "ab" * 32
    r = run_cli(["run", "--mode", "trade", "--duration", "3"], tmp_path,
                env={"ENGINE__ACCOUNT__ADDRESS": "0x1111111111111111111111111111111111111111",
                     "ENGINE_AGENT_KEY": key})
    assert r.returncode == 0, r.stderr[-2000:]
    assert key[2:] not in r.stderr and key[2:] not in r.stdout
