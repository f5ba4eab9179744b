"""The funding backtest: recorded-frame and funding-history-CSV inputs through FundingCore and the
paper venue, and "a decision may only use data known at its time": a run on input cut at ``T``
writes exactly the records (stamped ``<= T``) of the full run (Hypothesis over ``T``)."""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import FundingConfig
from engine.core.neutral import FundingQuote, Instrument, InstrumentKind
from engine.replay.funding_backtest import (
    BacktestError,
    FundingBacktest,
    FundingRow,
    read_funding_csv,
    ticks_from_frames,
    ticks_from_funding,
)

H = 3_600_000
FIXTURES = Path(__file__).parent.parent / "venues" / "bybit" / "fixtures"
SPOT = Instrument("bybit", "BTCUSDT", InstrumentKind.SPOT, Decimal("0.01"), Decimal("0.000001"),
                  Decimal("0.000011"), Decimal("5"), taker_fee=0.001, maker_fee=0.001)
PERP = Instrument("bybit", "BTCUSDT", InstrumentKind.LINEAR_PERP, Decimal("0.1"),
                  Decimal("0.001"), Decimal("0.001"), Decimal("5"), funding_interval_ms=8 * H)
SPOTS, PERPS = {"BTCUSDT": SPOT}, {"BTCUSDT": PERP}
CFG = FundingConfig(symbols=["BTCUSDT"], min_expected_apr=0.1, exit_apr=0.05,
                    pre_event_open_minutes=60, quote_stale_ms=600_000,
                    expected_hold_hours=48, leg_risk_budget_usd_s=3000)
STEP = 300_000  # CSV re-stamps every 5 minutes (< quote_stale_ms)


# -- frames: the Bybit docs' ticker snapshot, then deltas and spot books in the same shapes -----

def frame_lines() -> list[str]:
    """A recording: Bybit's documented linear ticker snapshot (docs_ws_ticker_linear_snapshot,
    fixtures/README.md), then a ticker delta and a spot ``orderbook.1`` snapshot a minute for
    6 h across its ``nextFundingTime``; the rate turns positive, then flips after the
    settlement. Only the documented fields change."""
    snap = json.loads((FIXTURES / "docs_ws_ticker_linear_snapshot.json").read_text())
    ts0 = int(snap["ts"])
    settle = int(snap["data"]["nextFundingTime"])
    lines = [json.dumps({"ts": ts0 + 5, "socket": "linear", "raw": json.dumps(snap)})]
    for i in range(1, 6 * 60):
        t = ts0 + i * 60_000
        px = 66_666.6 + 3.0 * ((i * 7) % 11 - 5)
        nxt = settle if t < settle else settle + 8 * H
        rate = "0.001" if t < settle + 30 * 60_000 else "-0.0002"
        delta = {"topic": "tickers.BTCUSDT", "type": "delta", "cs": 9532239429 + i, "ts": t,
                 "data": {"symbol": "BTCUSDT", "markPrice": f"{px:.2f}",
                          "indexPrice": f"{px:.2f}", "fundingRate": rate,
                          "nextFundingTime": str(nxt), "bid1Price": f"{px - 0.1:.2f}",
                          "bid1Size": "2.5", "ask1Price": f"{px:.2f}", "ask1Size": "1.5"}}
        book = {"topic": "orderbook.1.BTCUSDT", "type": "snapshot", "ts": t + 3,
                "data": {"s": "BTCUSDT", "b": [[f"{px - 0.5:.2f}", "0.8"]],
                         "a": [[f"{px + 0.5:.2f}", "0.6"]], "u": 1, "seq": 1000 + i}}
        lines.append(json.dumps({"ts": t + 20, "socket": "linear", "raw": json.dumps(delta)}))
        lines.append(json.dumps({"ts": t + 25, "socket": "spot", "raw": book}))
    return lines


@cache
def full_frames_run() -> tuple[dict[str, Any], ...]:
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=0, latency_ms=60)
    return tuple(bt.run(ticks_from_frames(frame_lines())))


def test_frames_backtest_enters_before_the_settlement_receives_funding_and_closes() -> None:
    recs = list(full_frames_run())
    settle = int(json.loads((FIXTURES / "docs_ws_ticker_linear_snapshot.json").read_text())[
        "data"]["nextFundingTime"])
    (opened,) = [r for r in recs if r["type"] == "decision" and r["action"] == "open"]
    assert settle - H <= opened["ts"] < settle
    (funding,) = [r for r in recs if r["type"] == "funding" and r["applied"]]
    assert funding["settled_ms"] == settle and funding["amount"] > 0
    (closed,) = [r for r in recs if r["type"] == "closed"]
    # the spot buy pays its fee in BTC and was sized up for it: matched to a spot lot
    assert closed["funding"] == funding["amount"] and abs(closed["hedge_ratio"] - 1.0) < 1e-5
    # the perp filled against the ticker's displayed size, the spot against orderbook.1
    fills = [r for r in recs if r["type"] == "fill"]
    assert all(f["qty"] <= 0.6 for f in fills)


def test_frames_decisions_use_the_receive_time_not_the_venue_stamp() -> None:
    ticks = list(ticks_from_frames(frame_lines()[:3]))
    assert [t.ts for t in ticks][:2] == [1760325052635, 1760325052635]
    assert isinstance(ticks[0].event, FundingQuote) and ticks[0].event.interval_ms == 8 * H


def test_bad_frame_lines_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    lines = ["not json", json.dumps({"ts": 1, "socket": "nope", "raw": "{}"}),
             json.dumps({"ts": 2, "socket": "linear", "raw": "{\"topic\": 5}"}),
             frame_lines()[0]]
    ticks = list(ticks_from_frames(lines))
    assert len(ticks) == 2  # the quote and the perp top of the good line
    assert sum("frames line" in r.message for r in caplog.records) == 3


@settings(max_examples=40, deadline=None)
@given(frac=st.floats(0.0, 1.0))
def test_frames_truncated_at_t_give_exactly_the_prefix(frac: float) -> None:
    lines = frame_lines()
    ts = [json.loads(x)["ts"] for x in lines]
    cut = int(ts[0] + frac * (ts[-1] - ts[0]))
    part = [x for x, t in zip(lines, ts, strict=True) if t <= cut]
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=0, latency_ms=60)
    got = bt.run(ticks_from_frames(part), end_ms=cut)
    assert got == [r for r in full_frames_run() if r["ts"] <= cut]


# -- the funding-history CSV -----------------------------------------------------------------

RATES = [0.0001, 0.0004, 0.0011, 0.0012, 0.0009, 0.0002, -0.0003, 0.0010, 0.0013, 0.0001]
T0 = 1_700_006_400_000  # 00:00 UTC


def csv_rows() -> list[FundingRow]:
    return [FundingRow("BTCUSDT", r, T0 + k * 8 * H, 37_000.0 + 40 * k)
            for k, r in enumerate(RATES)]


def write_csv(path: Path, rows: list[FundingRow], price: bool = True) -> None:
    head = "symbol,fundingRate,fundingRateTimestamp" + (",price" if price else "")
    body = [f"{r.symbol},{r.rate},{r.ts_ms}" + (f",{r.price}" if price else "") for r in rows]
    path.write_text("\n".join([head, *body]) + "\n")


@cache
def full_csv_run() -> tuple[dict[str, Any], ...]:
    bt = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=60)
    return tuple(bt.run(honest(csv_rows(), None)))


def test_csv_is_read_with_bybits_field_names(tmp_path: Path) -> None:
    p = tmp_path / "f.csv"
    write_csv(p, list(reversed(csv_rows())))
    rows = read_funding_csv(p)
    assert rows == csv_rows()  # time order, whatever the file order
    write_csv(p, csv_rows(), price=False)
    assert read_funding_csv(p)[0].price is None
    p.write_text("symbol,rate,ts\nBTCUSDT,0.1,1\n")
    with pytest.raises(BacktestError, match="missing column.*fundingRate.*fundingRateTimestamp"):
        read_funding_csv(p)
    p.write_text("symbol,fundingRate,fundingRateTimestamp\nBTCUSDT,abc,1\n")
    with pytest.raises(BacktestError, match=r"f\.csv:2"):
        read_funding_csv(p)


def test_csv_without_prices_needs_a_fixed_price() -> None:
    rows = [FundingRow("BTCUSDT", 0.001, T0, None)]
    with pytest.raises(BacktestError, match="no price"):
        list(ticks_from_funding(rows, PERPS))
    ticks = list(ticks_from_funding(rows, PERPS, price=50_000.0))
    assert {t.event.symbol for t in ticks} == {"BTCUSDT"}


def test_csv_backtest_trades_collects_funding_and_closes_on_the_flip() -> None:
    recs = list(full_csv_run())
    closed = [r for r in recs if r["type"] == "closed" and r["filled"]]
    assert closed
    applied = [r for r in recs if r["type"] == "funding" and r["applied"]]
    by_ts = {r.ts_ms: r.rate for r in csv_rows()}
    for f in applied:  # each settlement is the row's own rate at its own time
        assert f["rate"] == by_ts[f["settled_ms"]] and f["ts"] == f["settled_ms"]
    assert sum(c["funding"] for c in closed) == pytest.approx(
        sum(f["amount"] for f in applied if any(
            f["intent_id"] == c["intent_id"] for c in closed)))
    assert any(r["reason"] == "funding sign flipped" for r in recs if r["type"] == "decision")


def test_a_rate_is_never_used_before_its_row_is_known() -> None:
    """The rate that settles at T is the forecast only from T on; the predecessor used it
    ahead of time (future funding)."""
    for r in full_csv_run():
        if r["type"] == "decision" and r["apr"] is not None:
            known = [x.rate for x in csv_rows() if x.ts_ms <= r["ts"]]
            assert r["apr"] == pytest.approx(known[-1] * 3 * 365)


def csv_prefix_holds(make_ticks: Any, cut: int) -> bool:
    rows = csv_rows()
    full = list(full_csv_run()) if make_ticks is honest else FundingBacktest(
        CFG, SPOTS, PERPS, start_ms=T0, latency_ms=60).run(make_ticks(rows, None))
    part_rows = [r for r in rows if r.ts_ms <= cut]
    got = FundingBacktest(CFG, SPOTS, PERPS, start_ms=T0, latency_ms=60).run(
        make_ticks(part_rows, cut), end_ms=cut)
    return got == [r for r in full if r["ts"] <= cut]


def honest(rows: list[FundingRow], end: int | None) -> Any:
    return ticks_from_funding(rows, PERPS, step_ms=STEP, end_ms=end)


@settings(max_examples=30, deadline=None)
@given(frac=st.floats(0.0, 1.0))
def test_csv_truncated_at_t_gives_exactly_the_prefix(frac: float) -> None:
    rows = csv_rows()
    cut = int(rows[0].ts_ms + frac * (rows[-1].ts_ms - rows[0].ts_ms))
    assert csv_prefix_holds(honest, cut)


def test_the_prefix_test_catches_a_driver_that_uses_future_funding() -> None:
    """The predecessor's backtest applied the rate of the settlement ahead as if known: a
    driver that forecasts with the next row's rate fails the property (it is not vacuous)."""

    def peeking(rows: list[FundingRow], end: int | None) -> Any:
        ahead = [attrs.evolve(r, rate=rows[k + 1].rate if k + 1 < len(rows) else r.rate)
                 for k, r in enumerate(rows)]
        return ticks_from_funding(ahead, PERPS, step_ms=STEP, end_ms=end)

    cut = T0 + 2 * 8 * H + 4 * H  # between rows: the forecast differs once the row ahead is cut
    assert csv_prefix_holds(honest, cut)
    assert not csv_prefix_holds(peeking, cut)


# -- the CLI -----------------------------------------------------------------------------------

def cli_config(tmp_path: Path) -> Path:
    p = tmp_path / "engine.toml"
    p.write_text("[funding]\nsymbols = [\"BTCUSDT\"]\nmin_expected_apr = 0.1\nexit_apr = 0.05\n"
                 "quote_stale_ms = 600000\nexpected_hold_hours = 48\n"
                 "leg_risk_budget_usd_s = 3000\n")
    return p


def test_cli_funding_csv_writes_the_records_and_a_summary(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.replay.cli import main

    csv_path, out = tmp_path / "f.csv", tmp_path / "out.jsonl"
    write_csv(csv_path, csv_rows())
    rc = main(["--venue", "bybit", "--funding", str(csv_path), "--config",
               str(cli_config(tmp_path)), "--out", str(out), "--latency-ms", "60",
               "--instruments-linear", str(FIXTURES / "docs_rest_instruments_linear.json"),
               "--instruments-spot", str(FIXTURES / "docs_rest_instruments_spot.json")])
    assert rc == 0
    lines = out.read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert any(r["type"] == "closed" and r["filled"] for r in recs)
    line = capsys.readouterr().out
    assert line.startswith("funding backtest: ") and str(out) in line
    # the instruments came from the saved instruments-info: 480-minute funding interval
    apr = next(r["apr"] for r in recs if r["type"] == "decision" and r["apr"])
    assert apr == pytest.approx(RATES[0] * 3 * 365)


@pytest.mark.parametrize(("extra", "message"), [
    (["--step-s", "600"], "--step-s (600) must be below [funding] quote_stale_ms (600 s)"),
    (["--instruments-linear", "x.json"], "give both --instruments-linear and"),
    (["--spot-inventory", "BTCUSDT"], "expected SYMBOL=QTY"),
])
def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            extra: list[str], message: str) -> None:
    from engine.replay.cli import main

    csv_path = tmp_path / "f.csv"
    write_csv(csv_path, csv_rows())
    rc = main(["--venue", "bybit", "--funding", str(csv_path), "--config",
               str(cli_config(tmp_path)), "--out", str(tmp_path / "o.jsonl"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_refuses_an_existing_out_file(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from engine.replay.cli import main

    csv_path, out = tmp_path / "f.csv", tmp_path / "o.jsonl"
    write_csv(csv_path, csv_rows())
    out.write_text("keep\n")
    assert main(["--venue", "bybit", "--funding", str(csv_path), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == "keep\n"
