"""The funding/basis strategy's operator docs: every ``[funding]``, ``[bybit]`` and
``[bybit_sim]`` key is documented in its section of docs/configuration.md with its real default;
docs/runbook.md has the funding section (start, check, kill, alerts, a lagging second leg);
docs/bybit.md's status is not the stale "nothing is wired" text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import pytest

from engine.config import BybitConfig, BybitSimConfig, FundingConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end >= 0 else None]


def documented_keys(table: str) -> dict[str, str]:
    """``key`` -> its default cell, from ``| `a`, `b` | d1, d2 | … |`` rows."""
    out: dict[str, str] = {}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([a-z0-9_]+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split(",")] if len(keys) > 1 else [cells[1]]
        for i, k in enumerate(keys):
            out[k] = defaults[i] if i < len(defaults) else cells[1]
    return out


def matches(cell: str, default: Any) -> bool:
    """The table's default cell says ``default``."""
    if isinstance(default, bool):
        return cell == ("true" if default else "false")
    if default is None:
        return cell == "unset"
    if isinstance(default, int | float):
        try:
            return float(cell.replace("_", "")) == default
        except ValueError:
            return False
    if isinstance(default, str):
        return cell in (f'`"{default}"`', f"`{default}`")
    return cell == f"`{default}`".replace("'", '"')


@pytest.mark.parametrize(("cls", "heading"), [
    (FundingConfig, "## `[funding]`"),
    (BybitConfig, "## `[bybit]`"),
    (BybitSimConfig, "## `[bybit_sim]`"),
])
def test_every_key_is_documented_with_its_default(cls: type, heading: str) -> None:
    table = documented_keys(section((DOCS / "configuration.md").read_text(), heading))
    instance = cls()
    for field in attrs.fields(cls):
        assert field.name in table, f"{heading} {field.name} is not documented"
        assert matches(table[field.name], getattr(instance, field.name)), (
            f"{heading} {field.name}: documented default {table[field.name]!r}, the code's is "
            f"{getattr(instance, field.name)!r}")
    extra = set(table) - {f.name for f in attrs.fields(cls)}
    assert not extra, f"{heading} documents keys the config does not have: {sorted(extra)}"


def test_the_runbook_has_the_funding_section() -> None:
    runbook = section((DOCS / "runbook.md").read_text(), "## Funding/basis on Bybit")
    for must in ("python -m engine check --config", "python -m engine kill", "leg_unwound",
                 "funding_anomaly", "circuit_breaker", "reduce-only", "leg_risk_budget_usd_s",
                 "READY: trade mode, 2 pairs (BTCUSDT, ETHUSDT)", "venue_positions",
                 "engine_funding_exposure_usd"):
        assert must in runbook, must


def test_bybit_doc_status_is_current() -> None:
    text = (DOCS / "bybit.md").read_text()
    assert "Nothing here is wired into `engine run` yet" not in text
    assert "## Not done yet" not in text
    status = section(text, "## Status")
    for must in ("config/bybit-sim.toml", "python -m engine check", "WS trade API"):
        assert must in status, must
