"""The simulator is an independent exchange: no imports from the rest of ``engine`` or from
``fsm``, no asyncio, no bare ``except:``, and every module says what it owns."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SIM_DIR = REPO / "engine" / "sim"
TESTS_DIR = Path(__file__).resolve().parent
SIM_FILES = sorted(SIM_DIR.rglob("*.py"))


def imported_modules(tree: ast.AST, package: str) -> list[str]:
    """Absolute names of every module ``tree`` imports (relative imports resolved)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)] if node.level - 1 < len(base) else []
                prefix = ".".join(base)
                mod = f"{prefix}.{node.module}" if node.module else prefix
            else:
                mod = node.module or ""
            names.append(mod)
            names += [f"{mod}.{alias.name}" for alias in node.names]
    return names


def forbidden(name: str) -> bool:
    top = name.split(".")[0]
    if top in ("fsm", "asyncio"):
        return True
    if top == "engine":
        parts = name.split(".")
        return len(parts) < 2 or parts[1] != "sim"
    return False


def test_there_are_sim_modules() -> None:
    assert len(SIM_FILES) >= 10


@pytest.mark.parametrize("path", SIM_FILES, ids=lambda p: p.name)
def test_sim_module_is_independent(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    bad = [n for n in imported_modules(tree, package) if forbidden(n)]
    assert not bad, f"{path.name} imports {bad}"
    bare = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler) and n.type is None]
    assert not bare, f"{path.name}: bare except at lines {bare}"
    doc = ast.get_docstring(tree)
    assert doc and doc.strip(), f"{path.name} has no module docstring"


def test_the_scanner_catches_violations() -> None:
    samples = {
        "import engine.core.types": True,
        "from engine.core import types": True,
        "from engine import config": True,
        "from .. import config": True,
        "from ..venues import hyperliquid": True,
        "import fsm.order": True,
        "import asyncio": True,
        "from engine.sim import grid": False,
        "from . import grid": False,
        "from .model import MarketModel": False,
        "import trio": False,
    }
    for source, expect_bad in samples.items():
        names = imported_modules(ast.parse(source), "engine.sim")
        assert any(forbidden(n) for n in names) is expect_bad, source


@pytest.mark.parametrize("path", sorted(TESTS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_sim_tests_do_not_use_asyncio(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert not [n for n in imported_modules(tree, "tests.sim") if n.split(".")[0] == "asyncio"]
