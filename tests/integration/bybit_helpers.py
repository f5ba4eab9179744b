"""Shared by the Bybit funding-shell integration tests: the embedded-simulator config, a clean
environment for it, running the app in a test's nursery, polling until a condition holds, and
the run's funding records."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from engine.funding_app import FundingApp

ROOT = Path(__file__).resolve().parents[2]
SIM_TOML = ROOT / "config" / "bybit-sim.toml"


def sim_env(tmp_path: Path, base: dict[str, str], **extra: str) -> dict[str, str]:
    """The process environment without ENGINE_/BYBIT_ keys, plus an ephemeral ops port,
    records under ``tmp_path``, no summary line, then ``base`` and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "BYBIT_"))}
    env.update({"ENGINE__OPS__HTTP_PORT": "0", "ENGINE__RECORDS__DIR": str(tmp_path / "rec"),
                "ENGINE__SUMMARY__INTERVAL_S": "0"})
    env.update(base)
    env.update(extra)
    return env


def start_app(nursery: trio.Nursery, app: FundingApp) -> list[int]:
    """Run ``app`` in ``nursery``; the list returned gets its exit code when it ends."""
    codes: list[int] = []

    async def run() -> None:
        codes.append(await app.run())

    nursery.start_soon(run)
    return codes


async def until(cond: Callable[[], Any], limit_s: float = 20.0) -> None:
    with trio.fail_after(limit_s):
        while not cond():  # noqa: ASYNC110 - polling state other tasks change
            await trio.sleep(0.02)


def funding_records(app: FundingApp) -> list[dict[str, Any]]:
    return [json.loads(x) for p in sorted(app.records_dir.glob("funding_*.jsonl"))
            for x in p.read_text().splitlines()]
