"""The systemd unit is well-formed and keeps the operational promises the docs make."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "engine.service"
ENV_EXAMPLE = ROOT / "systemd" / "engine.env.example"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"


def _unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: sections, repeatable keys (every value kept, in order), comments
    with '#' or ';' at the start of a line."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"assignment outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _one(svc: dict[str, list[str]], key: str) -> str:
    values = svc[key]
    assert len(values) == 1, (key, values)
    return values[0]


def test_unit_keeps_state_secrets_and_restarts_right() -> None:
    svc = _unit(UNIT.read_text())["Service"]
    assert _one(svc, "ExecStart").split()[1:4] == ["-m", "engine", "run"]
    assert _one(svc, "StateDirectory") == "engine"
    # the records dir comes from the config file the operator's commands read too
    assert not any("ENGINE__RECORDS__DIR" in e for e in svc.get("Environment", []))
    assert svc["LoadCredential"] == ["agent_key:/etc/engine/credentials/agent_key"]
    assert _one(svc, "Restart") == "on-failure"
    assert _one(svc, "RestartPreventExitStatus") == "2"  # a config error is not retried
    assert _one(svc, "NoNewPrivileges") == "yes" and _one(svc, "ProtectSystem") == "strict"
    assert "AGENT_KEY=" not in UNIT.read_text()  # no secret ever in the unit


def test_unit_is_notify_with_a_watchdog() -> None:
    svc = _unit(UNIT.read_text())["Service"]
    assert _one(svc, "Type") == "notify"
    assert _one(svc, "NotifyAccess") == "main"
    watchdog = int(_one(svc, "WatchdogSec"))
    # the engine pets every WatchdogSec/2; the bound must outlast a reconnect at max backoff
    assert 30 <= watchdog <= 300
    assert _one(svc, "WatchdogSignal") == "SIGTERM"  # a graceful stop first
    assert int(_one(svc, "TimeoutStopSec")) >= 30  # flatten (15 s) + flush before SIGKILL
    assert int(_one(svc, "TimeoutStartSec")) >= 60


def test_optional_credentials_are_documented_not_required() -> None:
    text = UNIT.read_text()
    for name in ("ops_token", "webhook_url"):
        assert re.search(rf"^#LoadCredential={name}:/etc/engine/credentials/{name}$", text,
                         re.MULTILINE), name
    svc = _unit(text)["Service"]
    assert not any(k in svc for k in ("SetCredential", "ImportCredential"))


def test_unit_is_sandboxed() -> None:
    svc = _unit(UNIT.read_text())["Service"]
    for key, value in {"ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
                       "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes",
                       "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
                       "SystemCallArchitectures": "native", "CapabilityBoundingSet": "",
                       "User": "engine"}.items():
        assert _one(svc, key) == value, key
    families = _one(svc, "RestrictAddressFamilies").split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)  # journal + notify + venue


def test_env_example_and_docs_hold_no_secret() -> None:
    for path in (UNIT, ENV_EXAMPLE, DEPLOY_DOC):
        text = path.read_text()
        assert re.search(r"[0-9a-fA-F]{64}", text) is None, path
        assert re.search(r"^\s*ENGINE_(AGENT_KEY|OPS_TOKEN|WEBHOOK_URL)\s*=", text,
                         re.MULTILINE) is None, path
    for line in ENV_EXAMPLE.read_text().splitlines():
        assert not line.strip() or line.startswith("#"), line  # an example: all commented


def test_deploy_doc_covers_the_runbook() -> None:
    text = DEPLOY_DOC.read_text()
    for needle in ("useradd", "/opt/engine", "systemd-creds", "LoadCredential",
                   "systemctl daemon-reload", "python -m pytest -m slow tests/trading",
                   "python -m engine check", "journalctl -u engine", "WatchdogSec"):
        assert needle in text, needle


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # the same unit, pointed at an interpreter that exists here (the unit names /opt/engine)
    text = UNIT.read_text().replace("/opt/engine/.venv/bin/python", sys.executable)
    unit = tmp_path / "engine.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                       text=True, timeout=60)
    complaints = [line for line in r.stderr.splitlines()
                  if re.search(r"engine\.service:\d+:", line) or "Unknown key" in line
                  or "Invalid section" in line or "Failed to parse" in line]
    assert complaints == [], r.stderr
    assert r.returncode == 0, r.stderr


def test_restart_prevent_exit_status_matches_the_documented_codes() -> None:
    """Exit 2 (configuration/usage: unknown market or dex, bad override, ops port in use,
    records dir locked by another engine) is never restarted; exit 1 (runtime: venue
    unreachable after its retries, positions left open) is."""
    from engine.app import EXIT_CONFIG, EXIT_RUNTIME
    from engine.cli import EXIT_CODES_HELP

    svc = _unit(UNIT.read_text())["Service"]
    prevent = _one(svc, "RestartPreventExitStatus").split()
    assert prevent == [str(EXIT_CONFIG)]
    assert str(EXIT_RUNTIME) not in prevent
    assert f"{EXIT_CONFIG} config or usage error" in EXIT_CODES_HELP
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    assert "· 2 config or usage error" in runbook
