"""The Bybit simulator is an independent exchange: it imports nothing from ``engine`` outside
``engine.sim.bybit`` (not the Bybit adapter's codec or signer, not the core, not the
Hyperliquid simulator), nothing from ``fsm``, no asyncio; every module has a docstring."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FILES = sorted((REPO / "engine" / "sim" / "bybit").rglob("*.py"))


def imports(tree: ast.AST, package: str) -> list[str]:
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
            out += [f"{mod}.{a.name}" for a in node.names]
    return out


def forbidden(name: str) -> bool:
    top = name.split(".")[0]
    if top in ("fsm", "asyncio", "pybit"):
        return True
    return top == "engine" and not name.startswith("engine.sim.bybit")


def test_there_are_modules() -> None:
    assert len(FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_module_is_independent(path: Path) -> None:
    tree = ast.parse(path.read_text("utf-8"))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    bad = [n for n in imports(tree, package) if forbidden(n)]
    assert not bad, f"{path.name} imports {bad}"
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"


def test_scanner_catches_violations() -> None:
    for src, bad in {"from engine.venues.bybit import codec": True,
                     "import engine.venues.bybit.signing": True,
                     "from engine.sim import server": True, "from .. import server": True,
                     "from engine.core.neutral import Side": True,
                     "from engine.sim.bybit import wire": False, "from . import wire": False,
                     "import hmac": False}.items():
        names = imports(ast.parse(src), "engine.sim.bybit")
        assert any(forbidden(n) for n in names) is bad, src
