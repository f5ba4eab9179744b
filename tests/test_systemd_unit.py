"""The systemd unit is well-formed and keeps the operational promises the docs make."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "engine.service"


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(UNIT)
    return cp


def test_unit_keeps_state_secrets_and_restarts_right() -> None:
    svc = _unit()["Service"]
    assert svc["ExecStart"].split()[1:4] == ["-m", "engine", "run"]
    assert svc["StateDirectory"] == "engine"
    assert svc["Environment"] == "ENGINE__RECORDS__DIR=/var/lib/engine"
    assert svc["LoadCredential"].startswith("agent_key:")
    assert svc["Restart"] == "on-failure"
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict"
    assert "AGENT_KEY=" not in UNIT.read_text()  # no secret ever in the unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify() -> None:
    r = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True,
                       text=True, timeout=60)
    # missing /opt/engine or user on a dev box is fine; syntax errors are not
    assert "Unknown key" not in r.stderr and "Invalid section" not in r.stderr, r.stderr
