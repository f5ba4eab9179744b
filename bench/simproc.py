"""Shared by the benches: run the simulator as a separate process and an observe config for it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only

CONFIG_TOML = """
mode = "observe"
[venue]
ws_url = "ws://{host}:{port}/ws"
info_url = "http://{host}:{port}/info"
dex = "xyz"
ctx_stale_ms = 10000
[records]
dir = "{dir}"
fsync_interval_ms = 1000
[followups]
offsets_ms = [1000, 3000, 5000]
[summary]
interval_s = {summary_s}
[log]
level = "{log_level}"
[ops]
http_port = 0  # an ephemeral port: the default 9321 may be held by another engine on the host
"""


def observe_config(port: int, records_dir: Path | str, *, summary_s: float = 0,
                   log_level: str = "WARNING") -> str:
    return CONFIG_TOML.format(host=HOST, port=port, dir=records_dir, summary_s=summary_s,
                              log_level=log_level)


def start_sim(markets: int, rate: float, seed: int) -> tuple[subprocess.Popen[str], int]:
    """Start ``python -m engine.sim`` on an ephemeral loopback port; return (process, port)."""
    cmd = [sys.executable, "-m", "engine.sim", "--host", HOST, "--port", "0",
           "--markets", str(markets), "--rate", str(rate), "--seed", str(seed)]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    m = re.search(r"http://[^:]+:(\d+)", line)
    if m is None:
        stop_process(p)
        raise RuntimeError(f"simulator did not report its port (got {line!r})")
    return p, int(m.group(1))


def stop_process(p: subprocess.Popen[Any]) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
