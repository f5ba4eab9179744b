"""Live and replay cannot drift apart: the shell's timer and decision code reads time only
through the injected clock (``engine.clock``), never ``time.time()``/``trio.current_time()``
directly (the issue found some tasks doing so)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "engine"
# the shell's modules that replay drives, and the pure core they feed
CHECKED = ["app.py", "trading_app.py", "followups.py", "venues/paper.py", "replay", "core",
           "io/records.py"]
DIRECT = re.compile(r"\b(time\.time|time\.monotonic|time\.time_ns|trio\.current_time|"
                    r"datetime\.now|dt\.datetime\.now)\(\)")
ALLOWED = {
    # the default wall clock of a RecordWriter built without one (the apps pass theirs)
    ("io/records.py", "    return time.time() * 1000.0"),
}


def _files() -> list[Path]:
    out: list[Path] = []
    for rel in CHECKED:
        p = ROOT / rel
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return out


def test_no_direct_clock_reads_in_the_shell_or_core() -> None:
    found = []
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        for line in path.read_text().splitlines():
            if DIRECT.search(line) and (rel, line) not in ALLOWED:
                found.append(f"{rel}: {line.strip()}")
    assert not found, "read the injected clock instead:\n" + "\n".join(found)


def test_the_scan_sees_the_files() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _files()}
    assert {"app.py", "trading_app.py", "followups.py", "replay/driver.py"} <= names
