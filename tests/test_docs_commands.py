"""Every ``python -m engine …`` command the README and docs/ show parses with today's CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from engine.cli import _sim_venue, build_parser
from engine.io.export import build_parser as build_export_parser
from engine.replay.cli import build_parser as build_replay_parser
from engine.replay.funding_cli import build_parser as build_funding_replay_parser
from engine.replay.sweep_cli import build_parser as build_sweep_parser
from engine.sim.bybit.cli import build_parser as build_bybit_sim_parser
from engine.sim.cli import build_parser as build_sim_parser
from engine.sim.record import build_parser as build_sim_record_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_CMD = re.compile(r"python -m engine((?:\s+(?:[^\s`|\\]|\\\|)+)*)")


def _variants(text: str) -> list[str]:
    """The command as written with each optional ``[...]`` part left out and put in (the
    first of ``a|b`` alternatives)."""
    text = text.replace("\\|", "|")
    bare = re.sub(r"\[[^\]]*\]", "", text)
    full = re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split("|")[0], text)
    return [bare, full]


def doc_commands() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for doc in DOCS:
        for line in doc.read_text("utf-8").splitlines():
            for m in _CMD.finditer(line):
                args = m.group(1).split(" #")[0].strip()  # no shell comment
                if "COMMAND" in args:
                    continue
                found.append((f"{doc.name}: python -m engine {args}", args))
    return found


COMMANDS = doc_commands()
# subcommands main() hands to a parser of their own (engine/cli.py)
_OWN_PARSERS = {"replay": build_replay_parser, "sweep": build_sweep_parser,
                "export": build_export_parser}


def test_docs_show_commands() -> None:
    assert len(COMMANDS) > 20  # the README and runbook tables are found


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_parses(where: str, args: str) -> None:
    for variant in _variants(args):
        variant = variant.replace("YYYY-MM-DD", "2026-01-01")
        variant = re.sub(r"\$\{?[A-Z_]+\}?", "x", variant)
        argv = shlex.split(variant)
        argv = [a for a in argv if a not in ("…", "...")]
        try:
            own = _OWN_PARSERS.get(argv[0]) if argv else None
            if argv in (["sim", "record"], ["replay"], ["sweep"], ["export"]):
                argv = [*argv, "--help"]  # named in prose: the command exists
            if argv[:2] == ["sim", "record"]:
                build_sim_record_parser().parse_args(argv[2:])
            elif argv[:1] == ["replay"] and "--venue" in argv:  # issue 11: funding backtest
                build_funding_replay_parser().parse_args(argv[1:])
            elif own is not None:
                own().parse_args(argv[1:])
            elif argv and argv[0] == "sim":
                venue, rest = _sim_venue(argv[1:])
                if venue == "bybit":
                    build_bybit_sim_parser().parse_args(rest)
                else:
                    assert venue == "hyperliquid", (where, venue)
                    build_sim_parser().parse_args(rest)
            else:
                build_parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code == 0 and "--help" in argv:
                continue
            raise AssertionError(f"{where}: {variant!r} does not parse (exit {exc.code})") \
                from None
