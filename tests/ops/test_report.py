"""The daily report against a hand-made fixture day (tests/ops/fixtures/records, 2024-03-05).

Every expected figure below was computed by hand from the fixture files; the arithmetic is in
the comments next to each assertion (fixtures/README.md describes the day).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import math
import shutil
import sys
from pathlib import Path

import attrs
import pytest
import trio

from engine.ops.report import (
    EXIT_NO_DATA,
    DayReport,
    NoDataError,
    Percentiles,
    TimeAxis,
    build_report,
    drawdown,
    make_plots,
    percentiles,
    render_markdown,
    time_axis,
    write_report,
)

FIXTURE = Path(__file__).parent / "fixtures" / "records"
DAY = dt.date(2024, 3, 5)
approx = pytest.approx


@pytest.fixture(scope="module")
def rep() -> DayReport:
    return build_report(FIXTURE, DAY)


def _copy_fixture(dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for p in FIXTURE.iterdir():
        shutil.copy(p, dst / p.name)
    return dst


def _figures(r: DayReport) -> tuple[object, ...]:
    return (r.signals, r.followups, r.trades, r.orders, r.fills, r.positions)


def _counts(r: DayReport) -> list[tuple[object, ...]]:
    return [(f.kind, f.records, f.malformed, f.torn, f.invalid, f.bad_values) for f in r.files]


# ------------------------------------------------------------------------------ input files


def test_input_file_counters(rep: DayReport) -> None:
    sig = rep.file("signals")
    # 9 lines: line 4 is cut off mid-object (malformed), line 7 has side "flat" (invalid),
    # the TSLA sell has raw_edge_bps "n/a" (a bad value; the signal still counts) → 7 used
    assert (sig.records, sig.malformed, sig.torn, sig.invalid, sig.bad_values) == (7, 1, 0, 1, 1)
    fol = rep.file("followups")
    # 14 complete records + a last line without newline (torn)
    assert (fol.records, fol.malformed, fol.torn, fol.invalid, fol.bad_values) == (14, 0, 1, 0, 0)
    orders = rep.file("orders")
    # 20 lines, one is the JSON array [1, 2, 3] (not an object → malformed)
    assert (orders.records, orders.malformed) == (19, 1)
    assert (rep.file("fills").records, rep.file("trades").records,
            rep.file("positions").records) == (9, 4, 3)
    assert sig.files == ("signals_2024-03-05.jsonl",)
    assert all(f.errors == () and f.note is None for f in rep.files)


# ------------------------------------------------------------------------------ signals


def test_signal_figures(rep: DayReport) -> None:
    s = rep.signals
    assert s.total == 7
    # buy: GOLD 01:00, GOLD 14:00, SILVER 14:10, TSLA 23:59; sell: GOLD 01:30, SILVER 14:20,
    # TSLA 23:00
    assert s.by_side == {"buy": 4, "sell": 3}
    by_market = {m.market: (m.signals, m.buy, m.sell, m.median_raw_edge_bps) for m in s.by_market}
    assert by_market == {
        "xyz:GOLD": (3, 2, 1, 20.0),  # median(20, 30, 12) = 20
        "xyz:SILVER": (2, 1, 1, 28.0),  # median(40, 16) = (40 + 16) / 2 = 28
        "xyz:TSLA": (2, 1, 1, 25.0),  # median(25) (the "n/a" edge is unknown)
    }
    assert [m.market for m in s.by_market] == ["xyz:GOLD", "xyz:SILVER", "xyz:TSLA"]
    expected_hours = [0] * 24
    expected_hours[1], expected_hours[14], expected_hours[23] = 2, 3, 2
    assert list(s.by_hour) == expected_hours
    assert (s.by_hour_side["buy"][1], s.by_hour_side["sell"][1]) == (1, 1)
    assert (s.by_hour_side["buy"][14], s.by_hour_side["sell"][14]) == (2, 1)
    assert (s.by_hour_side["buy"][23], s.by_hour_side["sell"][23]) == (1, 1)
    assert s.by_market_hour["xyz:GOLD"][1] == 2 and s.by_market_hour["xyz:GOLD"][14] == 1
    assert s.by_market_hour["xyz:SILVER"][14] == 2
    assert s.by_market_hour["xyz:TSLA"][23] == 2
    assert sum(sum(v) for v in s.by_market_hour.values()) == 7


# ------------------------------------------------------------------------------ followups


def test_followup_offset_1000(rep: DayReport) -> None:
    fu = rep.followups
    assert (fu.records, fu.captured, fu.missed) == (14, 8, 6)
    assert [o.offset_ms for o in fu.offsets] == [1000, 5000]
    o = fu.offsets[0]
    # captured: GOLD buy (t0 20 → 10), GOLD sell (30 → 33), SILVER buy (40 → 20),
    # SILVER sell (16 → -4); missed: no_data (GOLD 14:00), shutdown (TSLA sell),
    # disconnected (TSLA buy)
    assert (o.records, o.captured, o.missed) == (7, 4, 3)
    assert o.miss_reasons == {"disconnected": 1, "no_data": 1, "shutdown": 1}
    assert o.edge_n == 4
    assert o.median_raw_edge_bps == approx(15.0)  # sorted -4, 10, 20, 33 → (10 + 20) / 2
    assert o.mean_raw_edge_bps == approx(14.75)  # 59 / 4
    assert o.median_t0_raw_edge_bps == approx(25.0)  # 16, 20, 30, 40 → (20 + 30) / 2
    assert o.mean_t0_raw_edge_bps == approx(26.5)  # 106 / 4
    # retention raw/t0: 0.5, 1.1, 0.5, -0.25 → sorted -0.25, 0.5, 0.5, 1.1
    assert (o.retention_n, o.retention_excluded) == (4, 0)
    assert o.median_retention == approx(0.5)
    assert o.mean_retention == approx(0.4625)  # 1.85 / 4
    assert o.shrinking_share == approx(0.75)  # 10<20, 20<40, -4<16; 33>30 → 3/4
    # direction s = +1 buy, -1 sell; market toward = s·market_moved: 8, -2, 20, 20
    # oracle toward = -s·oracle_moved: 2, 1, 0, 0
    assert o.converge_n == 4
    assert o.market_toward_share == approx(0.75)  # 8, 20, 20 > 0
    assert o.oracle_toward_share == approx(0.5)  # 2, 1 > 0
    assert o.median_market_toward_bps == approx(14.0)  # -2, 8, 20, 20 → (8 + 20) / 2
    assert o.median_oracle_toward_bps == approx(0.5)  # 0, 0, 1, 2 → (0 + 1) / 2
    # lateness of the captured: 3, 5, 10, 2 → sorted 2, 3, 5, 10; nearest rank
    # p50 = 2nd (ceil(0.5·4)), p90 = 4th (ceil(3.6)), p99 = 4th
    assert o.lateness == Percentiles(4, 3.0, 10.0, 10.0, 10.0)


def test_followup_offset_5000(rep: DayReport) -> None:
    o = rep.followups.offsets[1]
    # captured: GOLD buy (20 → 5), GOLD sell (30 → 0), SILVER buy (40 → 44),
    # TSLA sell (t0 -2 → 3: t0 ≤ 0, excluded from retention); missed: no_data, late,
    # disconnected
    assert (o.records, o.captured, o.missed) == (7, 4, 3)
    assert o.miss_reasons == {"disconnected": 1, "late": 1, "no_data": 1}
    assert o.median_raw_edge_bps == approx(4.0)  # 0, 3, 5, 44 → (3 + 5) / 2
    assert o.mean_raw_edge_bps == approx(13.0)  # 52 / 4
    assert o.median_t0_raw_edge_bps == approx(25.0)  # -2, 20, 30, 40 → (20 + 30) / 2
    assert o.mean_t0_raw_edge_bps == approx(22.0)  # 88 / 4
    # retention over t0 > 0: 0.25, 0, 1.1 → sorted 0, 0.25, 1.1
    assert (o.retention_n, o.retention_excluded) == (3, 1)
    assert o.median_retention == approx(0.25)
    assert o.mean_retention == approx(0.45)  # 1.35 / 3
    assert o.shrinking_share == approx(0.5)  # 5<20, 0<30; 44>40, 3>-2 → 2/4
    # market toward: 12 (buy), 30 (sell, -(-30)), 0, 0; oracle toward: 3, 0, -4, 0
    assert o.market_toward_share == approx(0.5)
    assert o.oracle_toward_share == approx(0.25)
    assert o.median_market_toward_bps == approx(6.0)  # 0, 0, 12, 30 → (0 + 12) / 2
    assert o.median_oracle_toward_bps == approx(0.0)  # -4, 0, 0, 3 → 0
    assert o.lateness == Percentiles(4, 4.0, 20.0, 20.0, 20.0)  # 1, 4, 7, 20


def test_followup_retention_by_market_and_lateness(rep: DayReport) -> None:
    fu = rep.followups
    rbm = fu.retention_by_market
    assert set(rbm) == {"xyz:GOLD", "xyz:SILVER"}  # TSLA's only capture has t0 ≤ 0
    assert rbm["xyz:GOLD"][1000] == approx(0.8)  # median(0.5, 1.1)
    assert rbm["xyz:GOLD"][5000] == approx(0.125)  # median(0.25, 0)
    assert rbm["xyz:SILVER"][1000] == approx(0.125)  # median(0.5, -0.25)
    assert rbm["xyz:SILVER"][5000] == approx(1.1)
    # every captured lateness: 1, 2, 3, 4, 5, 7, 10, 20 → p50 4th = 4, p90 8th = 20
    assert fu.lateness == Percentiles(8, 4.0, 20.0, 20.0, 20.0)


# ------------------------------------------------------------------------------ trades etc.


def test_trade_figures(rep: DayReport) -> None:
    t = rep.trades
    # nets: 0.6 (GOLD quick_profit), -0.5 (GOLD edge_evaporated), 1.4 (SILVER quick_profit),
    # 0.0 (SILVER time_stop)
    assert (t.count, t.wins, t.losses, t.breakeven) == (4, 2, 1, 1)
    assert t.win_rate == approx(0.5)  # 2 / 4
    assert t.gross_pnl == approx(2.1)  # 0.8 - 0.3 + 1.5 + 0.1
    assert t.fees == approx(0.6)  # 0.2 + 0.2 + 0.1 + 0.1
    assert t.net_pnl == approx(1.5)  # 0.6 - 0.5 + 1.4 + 0.0
    by_market = {m.market: (m.trades, m.wins, m.losses, m.gross_pnl, m.fees, m.net_pnl)
                 for m in t.by_market}
    assert by_market["xyz:GOLD"] == (2, 1, 1, approx(0.5), approx(0.4), approx(0.1))
    assert by_market["xyz:SILVER"] == (2, 1, 0, approx(1.6), approx(0.2), approx(1.4))
    reasons = [(r.reason, r.trades, r.wins, r.net_pnl) for r in t.exit_reasons]
    assert reasons == [("quick_profit", 2, 2, approx(2.0)),
                       ("edge_evaporated", 1, 0, approx(-0.5)),
                       ("time_stop", 1, 0, approx(0.0))]
    assert t.mean_hold_ms == approx(19_500.0)  # (5000 + 3000 + 10000 + 60000) / 4
    assert t.median_hold_ms == approx(7_500.0)  # (5000 + 10000) / 2
    assert t.slippage_n == 3  # the time_stop trade has no decision price
    assert t.mean_slippage_bps == approx(2.5 / 3)  # (1 + 2 - 0.5) / 3
    assert t.median_slippage_bps == approx(1.0)
    # by exit time: 0.6, 0.6 - 0.5, + 1.4, + 0.0
    assert [v for _, v in t.cumulative_pnl] == [approx(0.6), approx(0.1), approx(1.5),
                                                 approx(1.5)]
    assert [ts for ts, _ in t.cumulative_pnl] == [1709600405300, 1709602203300, 1709647810200,
                                                  1709648460300]


def test_order_latency_fill_and_position_figures(rep: DayReport) -> None:
    o = rep.orders
    assert o.orders == 6
    assert o.by_purpose == {"entry": 5, "flatten": 1}
    assert o.final_states == {"expired": 2, "filled": 3, "rejected": 1}
    # decision → sent = sent_ms - created_ms: 2, 1, 3, 5, 4 (the abandoned one never sent)
    # sorted 1..5: p50 = ceil(2.5) = 3rd = 3, p90 = ceil(4.5) = 5th = 5
    assert o.decision_to_sent_ms == Percentiles(5, 3.0, 5.0, 5.0, 5.0)
    # ack = ts of the first venue answer - sent_ms: fill_complete 300-2 = 298,
    # venue_filled 241-1 = 240, expire 183-3 = 180, reject 124-4 = 120; the SILVER entry
    # lost contact first (answered by orderStatus: no ack). Sorted 120, 180, 240, 298:
    # p50 = 2nd = 180, p90 = ceil(3.6) = 4th = 298
    assert o.ack_ms == Percentiles(4, 180.0, 298.0, 298.0, 298.0)
    f = rep.fills
    assert (f.fills, f.synthetic) == (9, 1)
    assert f.fees == approx(0.6)  # 4 × 0.1 + 4 × 0.05 + 0
    # GOLD 1996.1996 + 1996.9996 + 2005.5988 + 2005.8988 = 8004.6968
    # SILVER 248.98755 + 250.48755 + 250.4 + 250.3 = 1000.1751; synthetic 2 × 25 = 50
    assert f.notional == approx(9054.8719)
    p = rep.positions
    assert p.events == {"fill": 2, "hard_stop": 1}
    assert p.hard_stops == ((1709683140124.0, "reject_burst"),)
    assert p.hard_stop_resets == 0


# ------------------------------------------------------------------------------ Markdown


def test_markdown_has_the_tables(rep: DayReport) -> None:
    md = render_markdown(rep)
    assert md.startswith("# Daily report 2024-03-05 (UTC)")
    for line in [
        "| signals | 7 |",
        "| signals | signals_2024-03-05.jsonl | 7 | 1 | 0 | 1 | 1 | 0 |  |",
        "| followups | followups_2024-03-05.jsonl | 14 | 0 | 1 | 0 | 0 | 0 |  |",
        "| xyz:SILVER | 2 | 1 | 1 | 28.00 |",
        "| 14 | 3 | 2 | 1 |",
        "| market | 01 | 14 | 23 |",
        "| xyz:GOLD | 2 | 1 | 0 |",
        "| 1000 | 7 | 4 | 3 | 4 | 15.00 | 14.75 | 25.00 | 26.50 |",
        "| 1000 | 4 | 0 | 50.0 % | 46.2 % | 75.0 % | 4 | 75.0 % | 50.0 % | 14.00 | 0.50 |",
        "| 5000 | 3 | 1 | 25.0 % | 45.0 % | 50.0 % | 4 | 50.0 % | 25.0 % | 6.00 | 0.00 |",
        "| offset (ms) | disconnected | late | no_data | shutdown |",
        "| 5000 | 1 | 1 | 1 | 0 |",
        "| xyz:GOLD | 80.0 % | 12.5 % |",
        "| win rate | 50.0 % |",
        "| net P&L (USDC) | 1.5000 |",
        "| wins / losses / breakeven | 2 / 1 / 1 |",
        "| xyz:SILVER | 2 | 1 | 0 | 1.6000 | 0.2000 | 1.4000 |",
        "| quick_profit | 2 | 2 | 2.0000 |",
        "| 01:30:03 | 0.1000 |",
        "| decision → sent | 5 | 3.0 | 5.0 | 5.0 | 5.0 |",
        "| sent → venue answer (ack) | 4 | 180.0 | 298.0 | 298.0 | 298.0 |",
        "| followup lateness | 8 | 4.0 | 20.0 | 20.0 | 20.0 |",
        "- hard stop latched at 23:59:00 UTC: reject_burst",
    ]:
        assert line in md.splitlines(), line
    assert render_markdown(rep) == md  # deterministic


# ------------------------------------------------------------------------------ input forms


def test_gz_input_gives_the_same_report(tmp_path: Path, rep: DayReport) -> None:
    d = _copy_fixture(tmp_path / "rec")
    for p in list(d.glob("*.jsonl")):
        p.with_name(p.name + ".gz").write_bytes(gzip.compress(p.read_bytes()))
        p.unlink()
    gz = build_report(d, DAY)
    assert _figures(gz) == _figures(rep)
    assert _counts(gz) == _counts(rep)  # the torn last line is still seen inside the .gz
    assert gz.file("signals").files == ("signals_2024-03-05.jsonl.gz",)


def test_both_forms_never_count_twice(tmp_path: Path, rep: DayReport) -> None:
    d = _copy_fixture(tmp_path / "rec")
    # an interrupted compression: a truncated .gz next to the .jsonl → the .jsonl is read
    data = (d / "signals_2024-03-05.jsonl").read_bytes()
    (d / "signals_2024-03-05.jsonl.gz").write_bytes(gzip.compress(data)[:-20])
    # a finished compression whose unlink did not happen: identical → the .gz is read
    fdata = (d / "trades_2024-03-05.jsonl").read_bytes()
    (d / "trades_2024-03-05.jsonl.gz").write_bytes(gzip.compress(fdata))
    r = build_report(d, DAY)
    assert _figures(r) == _figures(rep)
    assert r.file("signals").files == ("signals_2024-03-05.jsonl",)
    assert "gzip" in (r.file("signals").note or "")
    assert r.file("trades").files == ("trades_2024-03-05.jsonl.gz",)


def test_merge_case_reads_gz_then_jsonl(tmp_path: Path) -> None:
    d = _copy_fixture(tmp_path / "rec")
    lines = (d / "trades_2024-03-05.jsonl").read_bytes().splitlines(keepends=True)
    (d / "trades_2024-03-05.jsonl.gz").write_bytes(gzip.compress(b"".join(lines[:3])))
    (d / "trades_2024-03-05.jsonl").write_bytes(lines[3])  # a late record after compression
    r = build_report(d, DAY)
    assert r.trades.count == 4 and r.trades.net_pnl == approx(1.5)
    assert r.file("trades").files == ("trades_2024-03-05.jsonl.gz", "trades_2024-03-05.jsonl")


# ------------------------------------------------------------------------------ bad input


def test_bad_input_never_crashes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "rec"
    d.mkdir()
    (d / "signals_2024-03-05.jsonl").write_bytes(
        b"\xff\xfe garbage\n"  # not UTF-8, not JSON
        b"\n"  # empty line: ignored
        b'"just a string"\n'
        b'{"timestamp_ms": 1709600400000, "market_key": "m", "side": "buy", '
        b'"raw_edge_bps": true}\n'  # bool is not a number: bad value
        b'{"timestamp_ms": 1709500000000, "market_key": "m", "side": "buy"}\n'  # wrong day
        b'{"timestamp_ms": 1709600400000, "market_key": 5, "side": "buy"}\n')  # invalid
    (d / "followups_2024-03-05.jsonl.gz").write_bytes(b"not gzip at all\n")
    (d / "trades_2024-03-05.jsonl").write_bytes(
        b'{"net_pnl": "1.0"}\n{"net_pnl": 1.0, "gross_pnl": "x", "fees": 0.1, '
        b'"hold_ms": [1]}\n')
    (d / "orders_2024-03-05.jsonl").write_bytes(b'{"cloid": 1, "event": "created"}\n')
    (d / "fills_2024-03-05.jsonl").write_bytes(b'{"tid": true}\n{"tid": 7, "px": "1"}\n')
    (d / "positions_2024-03-05.jsonl.torn").write_bytes(b'{"event": "fi\n{"ev\n')
    with caplog.at_level(logging.WARNING, logger="engine.ops.report"):
        r = build_report(d, DAY)
    sig = r.file("signals")
    assert (sig.records, sig.malformed, sig.invalid, sig.bad_values) == (1, 2, 2, 1)
    assert r.signals.total == 1 and r.signals.by_market[0].median_raw_edge_bps is None
    fol = r.file("followups")
    assert fol.records == 0 and fol.errors and "gzip" in fol.errors[0]
    tr = r.file("trades")
    # "1.0" as net_pnl: invalid; gross "x" and hold [1]: bad values (the trade still counts)
    assert (tr.records, tr.invalid, tr.bad_values) == (1, 1, 2)
    assert r.trades.count == 1 and r.trades.gross_pnl == 0.0 and r.trades.mean_hold_ms is None
    assert r.file("orders").invalid == 1 and r.orders.orders == 0
    # fills: tid true is invalid; px "1" is a bad value, sz and fee missing are bad values
    assert (r.file("fills").invalid, r.file("fills").bad_values, r.fills.fills) == (1, 3, 1)
    assert r.file("positions").quarantined == 2
    md = render_markdown(r)
    assert "| followups | followups_2024-03-05.jsonl.gz | 0 |" in md
    assert "incomplete or corrupt gzip" in md
    warned = " ".join(rec.getMessage() for rec in caplog.records)
    assert "signals: skipped 2 malformed" in warned and "followups" in warned


def test_empty_day_and_missing_dir(tmp_path: Path) -> None:
    r = build_report(tmp_path, DAY)
    assert r.signals.total == 0 and r.trades.count == 0 and r.trades.win_rate is None
    assert r.followups.offsets == () and r.orders.ack_ms.n == 0
    assert not r.has_data and r.trades.drawdown is None and r.trades.markets == ()
    md = render_markdown(r)
    assert "| signals | (none) | 0 |" in md and "| win rate | n/a |" in md
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_report(tmp_path / "nope", DAY)
    # a day without any record writes nothing and says so
    with pytest.raises(NoDataError, match="no records for 2024-03-05"):
        write_report(tmp_path, DAY, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # an empty file is no data either; a file of one malformed line is (the report shows it)
    (tmp_path / "signals_2024-03-05.jsonl").write_text("")
    assert not build_report(tmp_path, DAY).has_data
    (tmp_path / "signals_2024-03-05.jsonl").write_text("not json\n")
    assert build_report(tmp_path, DAY).has_data
    assert write_report(tmp_path, DAY, tmp_path / "out").exists()


def test_report_command_on_a_day_without_data_exits_3(tmp_path: Path) -> None:
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env["ENGINE__RECORDS__DIR"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-m", "engine", "report", "--day", "2024-03-05"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == EXIT_NO_DATA == 3, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"engine: no records for 2024-03-05 in {tmp_path}: no report written"]
    assert "Traceback" not in r.stderr and list(tmp_path.iterdir()) == []
    shutil.copy(FIXTURE / "trades_2024-03-05.jsonl", tmp_path)
    r = subprocess.run([sys.executable, "-m", "engine", "report", "--day", "2024-03-05"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "report written" in r.stdout, r.stderr


# ------------------------------------------------------------------------------ issue 12 figures

T1 = 1709600405300  # 01:00:05.3 UTC on DAY
DAY_MS = 1709596800000


def test_time_axis_fits_the_data() -> None:
    # 35 s: seconds after 01:00:05, padded by max(5 % of 35 s, 1 s) = 1.75 s
    ax = time_axis([T1, T1 + 35_000], DAY_MS)
    assert (ax.origin_ms, ax.unit_ms, ax.label) == (1709600405000, 1000.0,
                                                     "seconds after 01:00:05 UTC")
    assert (ax.lo, ax.hi) == (approx(-1.45), approx(37.05))  # (0.3 - 1.75), (0.3 + 35 + 1.75)
    assert ax.x(T1 + 35_000) == approx(35.3)
    # one point: padded by one unit
    one = time_axis([T1], DAY_MS)
    assert (one.lo, one.hi) == (approx(-0.7), approx(1.3))
    # 30 min: minutes after 01:00, padded by max(90 s, 60 s) = 1.5 min
    ax = time_axis([T1, T1 + 1_800_000], DAY_MS)
    assert (ax.origin_ms, ax.unit_ms, ax.label) == (1709600400000, 60_000.0,
                                                     "minutes after 01:00 UTC")
    assert (ax.lo, ax.hi) == (approx((5300 - 90_000) / 60_000),
                              approx((5300 + 1_800_000 + 90_000) / 60_000))
    # the fixture's trades, 01:00:05 to 14:21:00: whole UTC hours 1 to 15
    assert time_axis([T1, 1709648460300], DAY_MS) == TimeAxis(DAY_MS, 3_600_000.0, 1.0, 15.0,
                                                             "UTC hour")
    assert time_axis([math.inf], DAY_MS) == TimeAxis(DAY_MS, 3_600_000.0, 0.0, 24.0, "UTC hour")


def test_drawdown_per_market_and_trade_by_trade(rep: DayReport) -> None:
    t = rep.trades
    d = t.drawdown
    assert d is not None
    # cumulative 0.6, 0.1, 1.5, 1.5; peaks 0.6, 0.6, 1.5, 1.5 -> drawdown 0, 0.5, 0, 0
    assert [v for _, v in d.series] == [approx(0.0), approx(0.5), approx(0.0), approx(0.0)]
    assert (d.max_usd, d.peak_ms, d.trough_ms) == (approx(0.5), 1709600405300, 1709602203300)
    assert drawdown([(1.0, -0.2), (2.0, -0.5), (3.0, 0.1)]) is not None
    dd0 = drawdown([(1.0, -0.2), (2.0, -0.5), (3.0, 0.1)])
    assert dd0 is not None and (dd0.max_usd, dd0.peak_ms, dd0.trough_ms) == (
        approx(0.5), None, 2.0)  # from the 0 before the first trade down to -0.5
    assert [(p.market, p.direction, p.entry_edge_bps, p.net_pnl, p.exit_reason)
            for p in t.by_trade] == [
        ("xyz:GOLD", "long", 20.0, approx(0.6), "quick_profit"),
        ("xyz:GOLD", "short", 30.0, approx(-0.5), "edge_evaporated"),
        ("xyz:SILVER", "long", 40.0, approx(1.4), "quick_profit"),
        ("xyz:SILVER", "short", 16.0, approx(0.0), "time_stop")]
    rows = {m.market: (m.signals, m.trades, m.wins, m.win_rate, m.net_pnl, m.fees,
                       m.max_drawdown, m.median_entry_edge_bps) for m in t.markets}
    assert rows == {
        # GOLD: 3 signals; 0.6 then -0.5: net 0.1, fees 0.2 + 0.2, drawdown 0.6 - 0.1
        "xyz:GOLD": (3, 2, 1, 0.5, approx(0.1), approx(0.4), approx(0.5), 25.0),
        # SILVER: 1.4 then 0.0: net 1.4, no drawdown; median(40, 16) = 28
        "xyz:SILVER": (2, 2, 1, 0.5, approx(1.4), approx(0.2), approx(0.0), 28.0),
        "xyz:TSLA": (2, 0, 0, None, 0.0, 0.0, 0.0, None),  # signals, no trade
    }


def test_markdown_has_the_issue_12_tables(rep: DayReport) -> None:
    lines = render_markdown(rep).splitlines()
    for line in [
        "| max drawdown (USDC) | 0.5000 |",
        "| data from / to (UTC) | 01:00:00 – 23:59:00 (82740 s) |",  # GOLD 01:00 .. TSLA 23:59
        "### Drawdown",
        "| from the peak at (UTC) | 01:00:05 |",
        "| to the trough at (UTC) | 01:30:03 |",
        "| 01:30:03 | 0.5000 |",
        "### Trade by trade",
        "| exit (UTC) | market | direction | entry edge (bps) | net (USDC) | exit reason |",
        "| 01:00:05 | xyz:GOLD | long | 20.00 | 0.6000 | quick_profit |",
        "| 01:30:03 | xyz:GOLD | short | 30.00 | -0.5000 | edge_evaporated |",
        "| 14:21:00 | xyz:SILVER | short | 16.00 | 0.0000 | time_stop |",
        "## Per market",
        "| xyz:GOLD | 3 | 2 | 1 | 50.0 % | 0.1000 | 0.4000 | 0.5000 | 25.00 |",
        "| xyz:SILVER | 2 | 2 | 1 | 50.0 % | 1.4000 | 0.2000 | 0.0000 | 28.00 |",
        "| xyz:TSLA | 2 | 0 | 0 | n/a | 0.0000 | 0.0000 | 0.0000 | n/a |",
    ]:
        assert line in lines, line


def _short_session(root: Path) -> Path:
    """A 35 s session: two signals and two trades between 01:00:05.3 and 01:00:40.3."""
    root.mkdir(parents=True, exist_ok=True)
    sigs = [{"market_key": "xyz:GOLD", "side": "buy", "timestamp_ms": T1 - 300 + i * 35_000,
             "raw_edge_bps": 20.0} for i in range(2)]
    trades = [{"market_key": "xyz:GOLD", "direction": "long", "exit_time_ms": T1 + i * 35_000,
               "net_pnl": v, "gross_pnl": v, "fees": 0.0, "entry_edge_bps": e,
               "exit_reason": "quick_profit"} for i, (v, e) in enumerate(((0.5, 20.0),
                                                                           (-0.2, 10.0)))]
    for kind, recs in (("signals", sigs), ("trades", trades)):
        (root / f"{kind}_2024-03-05.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in recs))
    return root


def test_plots_fit_a_35_s_session(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from engine.ops.report import figures

    r = build_report(_short_session(tmp_path / "rec"), DAY)
    figs = dict(figures(r))
    assert sorted(figs) == ["report_2024-03-05_cumulative_pnl.png",
                            "report_2024-03-05_drawdown.png", "report_2024-03-05_per_market.png",
                            "report_2024-03-05_signals.png",
                            "report_2024-03-05_trades_edge_vs_pnl.png"]
    for name in ("cumulative_pnl", "drawdown"):
        ax = figs[f"report_2024-03-05_{name}.png"].axes[0]
        assert ax.get_xlim() == (approx(-1.45), approx(37.05))  # not 0..24 h
        assert ax.get_xlabel() == "seconds after 01:00:05 UTC"
    sig_ax = figs["report_2024-03-05_signals.png"].axes[0]
    assert sig_ax.get_xlim() == (approx(-1.75), approx(36.75))  # signals 01:00:05.0 .. :40.0
    assert sig_ax.get_title() == "Signals per second, 2024-03-05"
    scatter = figs["report_2024-03-05_trades_edge_vs_pnl.png"].axes[0]
    assert [tuple(p) for p in scatter.collections[0].get_offsets()] == [(20.0, 0.5),
                                                                       (10.0, -0.2)]
    assert scatter.get_xlabel() == "edge at entry (bps)"


def test_percentiles_nearest_rank() -> None:
    assert percentiles([]) == Percentiles(0, None, None, None, None)
    assert percentiles([7.0]) == Percentiles(1, 7.0, 7.0, 7.0, 7.0)
    xs = [float(x) for x in range(100, 0, -1)]  # 1..100 unsorted
    assert percentiles(xs) == Percentiles(100, 50.0, 90.0, 99.0, 100.0)


# ------------------------------------------------------------------------------ files + plots


def test_write_report_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         rep: DayReport) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails with ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    out = tmp_path / "reports" / "nested"
    path = write_report(FIXTURE, DAY, out)
    assert path == out / "report_2024-03-05.md"
    md = path.read_text("utf-8")
    assert md == render_markdown(rep, make_plots(rep, out))  # same text as rendering directly
    assert "plots: matplotlib not installed" in md
    assert sorted(p.name for p in out.iterdir()) == ["report_2024-03-05.md"]  # no temp left
    # a second run replaces the file atomically
    assert write_report(FIXTURE, DAY, out) == path
    assert sorted(p.name for p in out.iterdir()) == ["report_2024-03-05.md"]


def test_write_report_with_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = write_report(FIXTURE, DAY, tmp_path)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["report_2024-03-05_cumulative_pnl.png", "report_2024-03-05_drawdown.png",
                    "report_2024-03-05_edge_retention.png", "report_2024-03-05_per_market.png",
                    "report_2024-03-05_signals.png",
                    "report_2024-03-05_trades_edge_vs_pnl.png"]
    for name in pngs:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{name}]({name})" in path.read_text("utf-8")
    assert "matplotlib not installed" not in path.read_text("utf-8")


def test_write_report_unwritable_output_raises_oserror(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        write_report(FIXTURE, DAY, blocker / "sub")


def test_report_is_attrs_data(rep: DayReport) -> None:
    d = attrs.asdict(rep)  # every figure is plain data
    assert d["signals"]["total"] == 7 and d["trades"]["net_pnl"] == approx(1.5)


async def test_service_calls_it_in_a_worker_thread(tmp_path: Path) -> None:
    """How the service runs it: off the Trio thread, inside a nursery, under a deadline."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            out: list[Path] = []

            async def job() -> None:
                out.append(await trio.to_thread.run_sync(write_report, FIXTURE, DAY, tmp_path))

            nursery.start_soon(job)
    assert out == [tmp_path / "report_2024-03-05.md"] and out[0].is_file()


def test_definition_boundaries(tmp_path: Path) -> None:
    """Equal edges are not shrinking, zero moves are not "toward", t0 = 0 is excluded, and an
    hour is [start, start + 1 h)."""
    base = {"status": "captured", "offset_ms": 1000, "lateness_ms": 1, "market_key": "m"}
    recs = [
        {**base, "side": "buy", "t0_raw_edge_bps": 10, "raw_edge_bps": 10,
         "oracle_moved_bps": 0, "market_moved_bps": 0},
        {**base, "side": "sell", "t0_raw_edge_bps": 0, "raw_edge_bps": -1,
         "oracle_moved_bps": 5, "market_moved_bps": -5},
        {**base, "side": "hold", "t0_raw_edge_bps": 20, "raw_edge_bps": 10,
         "oracle_moved_bps": 1, "market_moved_bps": 1},
    ]
    (tmp_path / "followups_2024-03-05.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in recs))
    start = 1709596800000  # 2024-03-05T00:00:00Z
    (tmp_path / "signals_2024-03-05.jsonl").write_text("".join(
        f'{{"timestamp_ms": {ts}, "market_key": "m", "side": "buy", "raw_edge_bps": 1}}\n'
        for ts in (start, start + 86_400_000 - 1, start + 86_400_000, start - 1)))
    r = build_report(tmp_path, DAY)
    o = r.followups.offsets[0]
    assert o.edge_n == 3 and o.shrinking_share == approx(2 / 3)  # 10 = 10 is not shrinking
    assert (o.retention_n, o.retention_excluded) == (2, 1)  # t0 = 0 excluded
    assert o.median_retention == approx(0.75)  # ratios 1.0 and 0.5
    assert o.converge_n == 2 and r.file("followups").bad_values == 1  # side "hold"
    assert o.market_toward_share == approx(0.5) and o.oracle_toward_share == approx(0.5)
    assert r.signals.by_hour[0] == 1 and r.signals.by_hour[23] == 1
    assert r.file("signals").invalid == 2  # next day's first ms and the previous day's last
