"""bench/run_all.py gets a verdict row (target, PASS/MISS/INFO, figure) from every bench whose
output it parses here: the Bybit signing bench (run for real, briefly), recording (hot path,
size per day, trade path on/off), replay (throughput, memory for a day) and the decode ceiling;
and the verdict rules of the recording and replay benches."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bybit_signing_bench_gives_a_verdict_row() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "bench_bybit_signing.py"), "-n", "2000",
                           "--warmup", "100"], capture_output=True, text=True, timeout=120)
    rows = run_all.PARSERS["bench_bybit_signing"](proc.stdout)
    assert len(rows) == 1, proc.stdout + proc.stderr
    target, verdict, figure = rows[0]
    assert target == "HMAC signing of one order median <= 10 us"
    assert verdict in ("PASS", "MISS")
    assert "body + signed headers median" in figure and "HMAC alone" in figure
    assert proc.returncode == (0 if verdict == "PASS" else 1)


RECORDING_OUT = """\
NOTE: figures from whatever machine runs this; on a shared, loaded machine they are upper bounds
PASS: recording hot path <= 1 µs per frame median, 1-frame reads (188.2 ns per inbound call, \
188.2 ns per frame)
MISS: recording hot path <= 1 µs per frame median, 40-frame reads (187.8 ns per inbound call, \
4.7 ns per frame)
writer (recorder task + thread): 2,462 ns per frame to encode, compress and write (76,094 frames)
INFO: recorded size per day, 40 markets at the simulator's rate: live recorder 382 MB, sim \
record 339 MB (10 min measured x 144)
bench_trade_path recording off: entry (oracle ctx → IOC entry):  100 cycles  median   225.8 µs
PASS: bench_trade_path entry median unchanged within noise with recording on (off 225.8 µs \
[226], on 238.3 µs [238], on - off +12.5 µs, bound 22.6 µs: the larger of the same-setting \
spread 0.0 and 10 % of off)
"""


def test_recording_rows() -> None:
    rows = run_all.PARSERS["bench_recording"](RECORDING_OUT)
    assert [(t, v) for t, v, _ in rows] == [
        ("recording hot path <= 1 µs per frame median, 1-frame reads", "PASS"),
        ("recording hot path <= 1 µs per frame median, 40-frame reads", "MISS"),
        ("(no target) recorded size per day", "INFO"),
        ("bench_trade_path entry median unchanged within noise with recording on", "PASS"),
    ]
    assert rows[0][2] == "188.2 ns per inbound call, 188.2 ns per frame"
    assert rows[3][2] == ("off 225.8 µs [226], on 238.3 µs [238], on - off +12.5 µs, bound "
                          "22.6 µs: the larger of the same-setting spread 0.0 and 10 % of off")
    assert rows[2][2] == ("40 markets at the simulator's rate: live recorder 382 MB, sim record "
                          "339 MB (10 min measured x 144)")


def test_trade_path_verdict_rule() -> None:
    rec = _load("bench_recording")
    # within the 10 % floor
    assert rec.trade_path_verdict([300.0, 310.0, 305.0], [330.0, 332.0, 331.0]).startswith(
        "PASS:")
    # beyond 10 % and beyond the same-setting spread
    assert rec.trade_path_verdict([300.0, 302.0, 301.0], [360.0, 361.0, 362.0]).startswith(
        "MISS:")
    # a noisy setting widens the bound to its spread
    assert rec.trade_path_verdict([300.0, 420.0, 301.0], [380.0, 381.0, 382.0]).startswith(
        "PASS:")


REPLAY_OUT = """\
MISS: replay observe >= 400,000 frames/s, 10 min of 40 markets (93,993 frames/s, 76,094 frames, \
2.4 MB, 0.81 s, peak RSS 63 MB)
INFO: reading + decoding alone with no core, 10 min of 40 markets: 400,502 frames per CPU second (2.50 µs per frame; no core, timers or records written: the ceiling of any replay of this recording on one core)
PASS: replay memory <= 200 MB for a day (measured, 24 h replayed: peak RSS observe 70 MB, paper \
120 MB)
"""


def test_replay_rows() -> None:
    rows = run_all.PARSERS["bench_replay"](REPLAY_OUT)
    assert rows == [
        ("replay observe >= 400,000 frames/s, 10 min of 40 markets", "MISS",
         "93,993 frames/s, 76,094 frames, 2.4 MB, 0.81 s, peak RSS 63 MB"),
        ("(no target) reading + decoding alone with no core", "INFO",
         "10 min of 40 markets: 400,502 frames per CPU second (2.50 µs per frame; no core, "
         "timers or records written: the ceiling of any replay of this recording on one core)"),
        ("replay memory <= 200 MB for a day", "PASS",
         "measured, 24 h replayed: peak RSS observe 70 MB, paper 120 MB"),
    ]


def test_replay_floor_line_is_an_info_row() -> None:
    line = _load("bench_replay").floor_text({"frames": 76_094, "cpu_s": 0.19}, 10.0)
    ((what, verdict, figure),) = run_all.PARSERS["bench_replay"](line)
    assert (what, verdict) == ("(no target) reading + decoding alone with no core", "INFO")
    assert figure.startswith("10 min of 40 markets: 400,495 frames per CPU second (2.50 µs")


def test_replay_memory_verdict_measured_or_said_to_be_extrapolated() -> None:
    rep = _load("bench_replay")
    short = {"observe": 60.0, "paper": 66.0}
    # paper grows 4 MB per 90 min: 70 + 4 / 90 * 1340 = 130 MB at 24 h
    flat = rep.memory_verdict({10.0: short, 100.0: {"observe": 60.0, "paper": 70.0}}, 10.0,
                              100.0)
    assert flat == ("PASS: replay memory <= 200 MB for a day (extrapolated, not measured: peak "
                    "RSS observe 60 -> 60 MB at 10 -> 100 min, 60 MB at 24 h, paper 66 -> 70 MB "
                    "at 10 -> 100 min, 130 MB at 24 h if it grows linearly; --day measures it)")
    # 18 MB per 90 min: 84 + 0.2 * 1340 = 352 MB
    steep = rep.memory_verdict({10.0: short, 100.0: {"observe": 60.0, "paper": 84.0}}, 10.0,
                               100.0)
    assert steep.startswith("MISS:") and "paper 66 -> 84 MB at 10 -> 100 min, 352 MB at 24 h" \
        in steep
    # a measured day wins over any extrapolation
    day = rep.memory_verdict({10.0: short, 100.0: {"observe": 60.0, "paper": 70.0},
                              1440.0: {"observe": 70.0, "paper": 201.0}}, 10.0, 100.0)
    assert day == ("MISS: replay memory <= 200 MB for a day (measured, 24 h replayed: peak RSS "
                   "observe 70 MB, paper 201 MB)")
    assert run_all.PARSERS["bench_replay"](flat)[0][:2] == ("replay memory <= 200 MB for a day",
                                                            "PASS")


DECODE_OUT = """\
  [fast path   ] HyperliquidFeed, no-op handler :   719572 frames/s,  1.33 us CPU/frame,   \
753809 frames/CPU-s, on CPU  95%
  [fast path   ] HyperliquidFeed, no-op handler :   379501 frames/s,  1.30 us CPU/frame,   \
769230 frames/CPU-s, on CPU  49%
  [fast path   ] HyperliquidFeed, no-op handler :   600000 frames/s,  1.40 us CPU/frame,   \
714285 frames/CPU-s, on CPU  84%
  [wsproto only] HyperliquidFeed, no-op handler :    52590 frames/s,  7.48 us CPU/frame,   \
133699 frames/CPU-s, on CPU  39%
"""


def test_decode_row_gives_the_best_wall_figure_and_the_median_cpu_per_frame() -> None:
    assert run_all.PARSERS["bench_decode"](DECODE_OUT) == [
        ("(no target) feed + decode ceiling, no-op handler", "INFO",
         "719,572 frames/s (on CPU 95 %); CPU 1.33 us/frame = 751,880 frames/CPU-s "
         "(median of 3)"),
    ]
    assert run_all.PARSERS["bench_decode"]("nothing") == []
