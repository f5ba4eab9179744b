"""The docs against the program: every ``python -m engine …`` command in the README and the
runbook parses (``--help`` of each distinct subcommand, run as a subprocess, and every flag the
docs use is one that command offers), and the docs, ``bench/README.md`` and the docstrings cite
only files inside the repository."""

from __future__ import annotations

import ast
import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMAND_DOCS = ("README.md", "docs/runbook.md")
_CMD = re.compile(r"python -m engine((?:[ \t]+[^\s`|;)]+)*)")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _doc_commands() -> dict[str, set[str]]:
    """Subcommand ("" for none) → the flags the docs pass to it."""
    out: dict[str, set[str]] = {}
    for name in COMMAND_DOCS:
        for line in (ROOT / name).read_text("utf-8").splitlines():
            for m in _CMD.finditer(line):
                words = m.group(1).split()
                sub = words[0] if words and re.fullmatch(r"[a-z][a-z-]*", words[0]) else ""
                if words[:2] == ["sim", "record"]:
                    sub = "sim record"  # its own parser (engine/sim/record.py)
                flags = out.setdefault(sub, set())
                flags.update(f for f in _FLAG.findall(" ".join(words)) if f != "--help")
    return out


@functools.cache
def _help(sub: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE")}
    args = [sys.executable, "-m", "engine", *sub.split(), "--help"]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_docs_name_the_commands() -> None:
    cmds = _doc_commands()
    # the operator's commands all appear (a parse failure of the regex must not pass silently)
    assert {"", "run", "check", "status", "kill", "flatten", "reset-hard-stop", "report",
            "retention", "sim"} <= set(cmds), sorted(cmds)
    assert "--config" in cmds["run"] and "--day" in cmds["report"]


@pytest.mark.parametrize("sub", sorted(_doc_commands()))
def test_every_documented_command_parses_with_help(sub: str) -> None:
    r = _help(sub)
    assert r.returncode == 0, f"python -m engine {sub} --help: {r.stderr}"
    assert "usage" in r.stdout.lower() and "Traceback" not in r.stderr
    missing = sorted(f for f in _doc_commands()[sub] if f not in r.stdout)
    assert not missing, f"the docs pass {missing} to `python -m engine {sub}`, which has no such flag"


# ---------------------------------------------------------------------- citations


def _doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "bench" / "README.md", ROOT / "docs" / "reference" /
             "README.md"]
    files += sorted((ROOT / "docs").glob("*.md"))
    return files


def _docstrings() -> list[tuple[Path, str]]:
    out = []
    for base in ("engine", "fsm", "bench"):
        for path in sorted((ROOT / base).rglob("*.py")):
            tree = ast.parse(path.read_text("utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                              | ast.AsyncFunctionDef):
                    doc = ast.get_docstring(node, clean=False)
                    if doc:
                        out.append((path, doc))
            # comments cite too
            out.append((path, "\n".join(line for line in path.read_text("utf-8").splitlines()
                                        if line.lstrip().startswith("#"))))
    return out


_OUTSIDE = re.compile(r"\.\./shared|/work/|shared/docs|shared/data|/home/|/tmp/[a-z]")


def test_docs_and_docstrings_cite_only_files_inside_the_repository() -> None:
    bad = []
    texts = [(p, p.read_text("utf-8")) for p in _doc_files()] + _docstrings()
    for path, text in texts:
        for m in _OUTSIDE.finditer(text):
            bad.append(f"{path.relative_to(ROOT)}: {text[max(0, m.start() - 30):m.end() + 30]!r}")
        # every docs/… .md file named exists in the repository
        for m in re.finditer(r"(?<![\w/.])docs/[\w/.-]+\.md", text):
            if not (ROOT / m.group(0)).is_file():
                bad.append(f"{path.relative_to(ROOT)}: names {m.group(0)}, which does not exist")
    assert not bad, "\n".join(bad)


def test_markdown_links_stay_inside_the_repository() -> None:
    bad = []
    for path in _doc_files():
        for m in re.finditer(r"\]\(([^)\s]+)\)", path.read_text("utf-8")):
            target = m.group(1).split("#")[0]
            if not target or re.match(r"[a-z]+://", target):
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                bad.append(f"{path.relative_to(ROOT)}: link {m.group(1)}")
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------------- config/trade.toml


def test_trade_toml_is_trade_mode_on_testnet_without_live_or_secrets() -> None:
    from engine.config import load_config
    from engine.trading_app import is_real_mainnet

    cfg = load_config(ROOT / "config" / "trade.toml", env={})
    assert cfg.mode == "trade" and not cfg.sim.enabled
    assert "testnet" in cfg.venue.ws_url and "testnet" in cfg.venue.info_url
    assert not is_real_mainnet(cfg) and cfg.trading.allow_live is False
    assert cfg.trading.dead_man_s > 0 and cfg.account.address == ""
    assert cfg.records.dir not in ("data", "data/paper", "data/sim", "data/observe")
    # mainnet URLs without allow_live: the engine refuses to start (one clear line, exit 2)
    env = {"ENGINE__VENUE__WS_URL": "wss://api.hyperliquid.xyz/ws",
           "ENGINE__VENUE__INFO_URL": "https://api.hyperliquid.xyz/info",
           "ENGINE__ACCOUNT__ADDRESS": "0x" + "11" * 20}
    main = load_config(ROOT / "config" / "trade.toml", env=env)
    assert is_real_mainnet(main)
    from engine.app import StartupError
    from engine.trading_app import TradingApp

    with pytest.raises(StartupError, match="allow_live") as exc:
        TradingApp(main).preflight()
    assert exc.value.exit_code == 2
