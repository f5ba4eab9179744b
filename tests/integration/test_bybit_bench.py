"""bench/run_all.py reads the Bybit loopback hedge bench's verdict and figures."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import run_all  # noqa: E402

OUT = """leg-1 fill received -> leg-2 order written (real shell, loopback, sim process): n=200 \
median 0.650 ms p99 22.033 ms max 35.156 ms (load average 8.3 on 2 cores)
  write call returned (adds Trio's schedule point after the write, i.e. other tasks): median \
7.790 ms p99 38.709 ms
MISS: leg-1 fill -> leg-2 order written median <= 1 ms, p99 <= 5 ms (median 0.650 ms, p99 \
22.033 ms)
"""


def test_run_all_parses_the_bybit_hedge_loopback_row() -> None:
    rows = run_all.PARSERS["bench_bybit_hedge_loopback"](OUT)
    assert rows == [("bybit loopback: leg-1 fill -> leg-2 order written median <= 1 ms, "
                     "p99 <= 5 ms", "MISS",
                     "median 0.650 ms, p99 22.033 ms, n=200 (load 8.3 on 2 cores)")]
    passing = OUT.replace("MISS:", "PASS:")
    assert run_all.PARSERS["bench_bybit_hedge_loopback"](passing)[0][1] == "PASS"
    assert run_all.PARSERS["bench_bybit_hedge_loopback"]("crashed") == []
