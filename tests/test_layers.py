"""The one-way layers (docs/architecture.md, "Layers") hold: import-linter checks the contracts
in pyproject.toml ``[tool.importlinter]`` on the real code, and on a copy of the code with one
violating import per contract, where every contract must be reported broken (so no contract
is one that cannot fail). The simulators' contracts must name every engine module, so a new
package cannot slip past them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _contracts() -> dict[str, dict[str, Any]]:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["tool"]["importlinter"]
    return {c["id"]: c for c in cfg["contracts"]}


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``root`` with the repo's contracts."""
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", str(REPO / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def _children(pkg: Path) -> set[str]:
    """Names of the modules and packages directly in ``pkg`` (not ``__init__``)."""
    out = {p.stem for p in pkg.glob("*.py") if p.stem != "__init__"}
    return out | {p.name for p in pkg.iterdir() if (p / "__init__.py").is_file()}


def test_the_contracts_hold() -> None:
    r = _lint(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in r.stdout


# one violating import per contract: (contract id, file in the copy, line appended, what the
# checker must say)
VIOLATIONS = [
    ("core", "engine/core/_probe.py", "import engine.venues.hyperliquid.wire",
     "engine.core is not allowed to import engine.venues"),
    ("core", "engine/core/_probe.py", "import asyncio",
     "engine.core is not allowed to import asyncio"),
    ("core", "engine/core/_probe.py", "import trio",
     "engine.core is not allowed to import trio"),
    ("core", "fsm/_probe.py", "import engine.io.jsonl",
     "fsm is not allowed to import engine.io"),
    ("config", "engine/networks.py", "import engine.ops.paths",
     "engine.networks is not allowed to import engine.ops"),
    ("io", "engine/io/_probe.py", "import engine.ops.retention",
     "engine.io is not allowed to import engine.ops"),
    ("ops", "engine/ops/_probe.py", "from engine.app import ObserveApp",
     "engine.ops is not allowed to import engine.app"),
    ("secrets", "engine/secrets.py", "from engine.venues.hyperliquid.signing import Signer",
     "engine.secrets is not allowed to import engine.venues"),
    ("strategies", "engine/strategies/_probe.py", "import engine.venues.bybit.codec",
     "engine.strategies is not allowed to import engine.venues"),
    ("strategies", "engine/strategies/_probe.py", "import httpx",
     "engine.strategies is not allowed to import httpx"),
    ("shared", "engine/backoff.py", "import engine.core.types",
     "engine.backoff is not allowed to import engine.core"),
    ("funding_shell", "engine/funding_app.py",
     "from engine.venues.bybit.rest import BybitRest",
     "engine.funding_app is not allowed to import engine.venues.bybit.rest"),
    ("venue_interfaces", "engine/venues/registry.py",
     "from engine.venues.hyperliquid import factory",
     "engine.venues.registry is not allowed to import engine.venues.hyperliquid"),
    ("sim", "engine/sim/_probe.py", "from engine.core import neutral",
     "engine.sim is not allowed to import engine.core"),
    ("sim_bybit", "engine/sim/bybit/_probe.py", "from engine.sim import model",
     "engine.sim.bybit is not allowed to import engine.sim.model"),
]


def test_every_contract_is_exercised_by_a_violation() -> None:
    assert {v[0] for v in VIOLATIONS} == set(_contracts())


def test_each_contract_fails_on_a_violating_import(tmp_path: Path) -> None:
    for pkg in ("engine", "fsm"):
        shutil.copytree(REPO / pkg, tmp_path / pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "static", "defaults"))
    clean = _lint(tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr  # the copy alone is clean
    for _cid, rel, line, _said in VIOLATIONS:
        with open(tmp_path / rel, "a", encoding="utf-8") as f:
            f.write(f"\n{line}  # layer-contract probe\n")
    r = _lint(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    for cid, c in _contracts().items():
        assert f"{c['name']} BROKEN" in " ".join(r.stdout.split()), cid
    missing = [said for _c, _r, _l, said in VIOLATIONS if said not in r.stdout]
    assert not missing, r.stdout


def test_the_simulator_contracts_name_every_engine_module() -> None:
    """A module added to ``engine`` (or to the Hyperliquid simulator) must be added to the
    simulators' forbidden lists, or this fails."""
    c = _contracts()
    engine_mods = {f"engine.{m}" for m in _children(REPO / "engine")} - {
        "engine.sim", "engine.__main__"}
    assert set(c["sim"]["forbidden_modules"]) >= engine_mods | {"fsm"}
    sim_mods = {f"engine.sim.{m}" for m in _children(REPO / "engine" / "sim")} - {
        "engine.sim.bybit"}
    assert set(c["sim_bybit"]["forbidden_modules"]) >= sim_mods


@pytest.mark.parametrize("cid", ["core", "strategies"])
def test_the_core_contracts_forbid_every_outer_layer(cid: str) -> None:
    forbidden = set(_contracts()[cid]["forbidden_modules"])
    assert forbidden >= {"engine.venues", "engine.io", "engine.ops", "engine.app",
                         "engine.trading_app", "engine.cli"}
