"""The daily report's funding/basis section from funding_YYYY-MM-DD.jsonl records (the shape
FundingCore writes): figures, a malformed line skipped, a day with only funding records."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from engine.ops.funding_report import YEAR_MS, build_funding_day
from engine.ops.report import NoDataError, write_report

DAY = dt.date(2026, 3, 4)
T0 = int(dt.datetime(2026, 3, 4, 1, tzinfo=dt.UTC).timestamp() * 1000)


def closed(sym: str, funding: float, basis: float, fees: float, notional: float, hold_ms: int,
           leg_ms: float, fail: str | None = None) -> dict[str, object]:
    return {"type": "closed", "ts": T0 + hold_ms, "symbol": sym, "filled": True,
            "funding": funding, "basis_pnl": basis, "fees": fees,
            "net": funding + basis - fees, "entry_notional": notional, "hold_ms": hold_ms,
            "hedge_ratio": 1.0 if fail is None else 0.0, "leg_latency_ms": leg_ms,
            "fail_reason": fail}


def write(d: Path, lines: list[str]) -> None:
    (d / f"funding_{DAY.isoformat()}.jsonl").write_text("".join(x + "\n" for x in lines))


def test_figures_of_the_day(tmp_path: Path) -> None:
    recs = [
        {"type": "funding", "ts": T0, "symbol": "BTCUSDT", "amount": 0.6, "applied": True},
        {"type": "funding", "ts": T0, "symbol": "ETHUSDT", "amount": 0.2, "applied": True},
        {"type": "funding", "ts": T0, "symbol": "ETHUSDT", "amount": 9.0, "applied": False},
        closed("BTCUSDT", 0.6, -0.1, 0.4, 1000.0, 3_600_000, 2.0),
        closed("ETHUSDT", 0.0, -0.05, 0.2, 500.0, 1_800_000, 4.0, fail="leg-risk budget"),
        {"type": "closed", "ts": T0, "symbol": "ETHUSDT", "filled": False},
        {"type": "kill", "ts": T0},
        {"type": "breaker", "ts": T0, "breaker": "daily_loss", "detail": "daily loss 3 USD"},
    ]
    write(tmp_path, [json.dumps(r) for r in recs] + ["{not json", '{"type": "closed", '
                                                     '"filled": true, "funding": "x"}'])
    fd = build_funding_day(tmp_path, DAY)
    assert fd is not None
    assert fd.settlements == 2 and fd.funding_received == pytest.approx(0.8)
    assert fd.closed == 2 and fd.unwound == 1
    assert fd.funding == pytest.approx(0.6) and fd.fees == pytest.approx(0.6)
    assert fd.net == pytest.approx(0.6 - 0.15 - 0.6)
    weight = 1000.0 * 3_600_000 + 500.0 * 1_800_000
    assert fd.net_apr == pytest.approx(fd.net / weight * YEAR_MS)
    assert fd.hedge_ratio == pytest.approx(0.5)
    assert fd.leg_latency_median_ms == pytest.approx(3.0) and fd.leg_latency_p99_ms == 4.0
    assert fd.kills == 1 and fd.breaker_trips == ("daily loss 3 USD",)
    assert fd.skipped == 2
    assert [s.symbol for s in fd.symbols] == ["BTCUSDT", "ETHUSDT"]


def test_a_day_with_only_funding_records_gets_a_report(tmp_path: Path) -> None:
    write(tmp_path, [json.dumps(closed("BTCUSDT", 1.0, 0.0, 0.5, 1000.0, 3_600_000, 1.0))])
    md = write_report(tmp_path, DAY, tmp_path / "out").read_text()
    assert "## Funding / basis (Bybit)" in md
    assert "funding earned: +1.0000 USD" in md and "| BTCUSDT | 1 |" in md


def test_no_record_at_all_is_still_no_data(tmp_path: Path) -> None:
    assert build_funding_day(tmp_path, DAY) is None
    with pytest.raises(NoDataError):
        write_report(tmp_path, DAY, tmp_path / "out")
