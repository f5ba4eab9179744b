"""Reading a replay's output records with the timestamp each was written at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.cli import embedded_default_config
from engine.config import EngineConfig, load_config
from engine.io.jsonl import read_jsonl

KINDS = ("signals", "followups", "orders", "fills", "positions", "trades")
TS_FIELD = {"signals": "timestamp_ms", "followups": "captured_at_ms"}


def default_cfg(**env: str) -> EngineConfig:
    return load_config(None, env=dict(env), defaults=embedded_default_config())


def out_records(out: Path) -> dict[str, list[dict[str, Any]]]:
    got: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        recs: list[dict[str, Any]] = []
        for p in sorted(out.glob(f"{kind}_*.jsonl")):
            recs.extend(read_jsonl(p))
        got[kind] = recs
    return got


def ts(kind: str, rec: dict[str, Any]) -> float:
    return float(rec[TS_FIELD.get(kind, "ts_ms")])


def out_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}
