"""A long paper run keeps every per-fill collection bounded, with unchanged outputs.

The same code runs live for weeks and replays a day of frames: the fills, trades, trade-id
dedup window, per-cloid fill sums, terminal orders and the paper venue's fills, executions and
processed orders must not grow with the number of fills. With the bounds made small, a run of
hundreds of round trips stays within them, and writes exactly the records (and reports the
same totals, P&L and slippage) as the same run with the default bounds, which it never reaches.
A fill the venue resends inside the dedup window is still rejected.
"""

from __future__ import annotations

from typing import Any

import pytest

import engine.core.positions as positions_mod
import engine.core.trading as trading_mod
import engine.venues.paper as paper_mod
from engine.core.orders import ENTRY, FLATTEN

from .test_paper import T0, Harness, make

CYCLES = 400  # round trips: 800 fills


def run(cycles: int = CYCLES) -> tuple[Harness, dict[str, int]]:
    """``cycles`` round trips (entry on a dislocation, exit by quick profit or time stop);
    returns the harness and the peak size of each bounded collection over the run."""
    h = make()
    core, venue = h.core, h.venue
    peak: dict[str, int] = {}

    def sample() -> None:
        sizes = {"book.fills": len(core.book.fills), "seen_tids": len(core.book.seen_tids),
                 "fills_by_cloid": len(core.book.fills_by_cloid), "trades": len(core.trades),
                 "orders": len(core.orders.by_cloid), "venue.fills": len(venue.fills),
                 "executions": len(venue.executions),
                 "venue._done": len(venue._done)}  # noqa: SLF001
        for k, v in sizes.items():
            peak[k] = max(peak.get(k, 0), v)

    t = T0 + 100
    for i in range(cycles):
        h.bbo(t, 99.99, 100.01)
        t += 50
        h.ctx(t, 101.0 + 0.01 * (i % 7))
        t += 200
        h.at(t)
        t += 50
        h.bbo(t, 100.90, 100.95)
        t += 60_000
        h.housekeeping(t)
        t += 1000
        h.ctx(t, 100.0)
        t += 50
        h.housekeeping(t)
        t += 1000
        sample()
    return h, peak


def small_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(positions_mod, "KEEP_FILLS", 10)
    monkeypatch.setattr(positions_mod, "TID_WINDOW", 50)
    monkeypatch.setattr(trading_mod, "KEEP_TRADES", 10)
    monkeypatch.setattr(trading_mod, "KEEP_TERMINAL_ORDERS", 20)
    monkeypatch.setattr(paper_mod, "KEEP_RECENT", 10)
    monkeypatch.setattr(paper_mod, "DONE_PRUNE_AT", 30)


def test_a_long_run_keeps_each_collection_bounded_and_writes_the_same_records(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ref, ref_peak = run()  # default bounds: never reached by 800 fills
    assert ref.core.trades.total == CYCLES and ref.core.book.fills.total == 2 * CYCLES
    assert ref_peak["book.fills"] == 2 * CYCLES  # (so the bounded run below has work to do)
    small_bounds(monkeypatch)
    h, peak = run()
    core, venue = h.core, h.venue
    assert h.lines == ref.lines  # every record, byte for byte
    assert core.hard_stop.latched is False and core.flat()
    # bounded, whatever the length of the run
    assert peak["book.fills"] <= 2 * 10
    assert peak["seen_tids"] <= 50
    assert peak["trades"] <= 2 * 10
    assert peak["orders"] <= 2 * 20 + 2
    assert peak["fills_by_cloid"] <= 2 * 20 + 2
    assert peak["venue.fills"] <= 2 * 10 and peak["executions"] <= 2 * 10
    # (past its bound the venue keeps the orders the core holds: the bound doubles from those)
    assert peak["venue._done"] <= max(30, 2 * (2 * 20 + 2)) + 1
    # the totals and aggregates still cover the whole run
    assert core.book.fills.total == 2 * CYCLES == core.book.seen_tids.total
    assert core.trades.total == CYCLES and venue.fills.total == 2 * CYCLES
    assert venue.executions.total == 2 * CYCLES == venue.stats.fills
    trades = [r.record for r in h.records if r.kind == "trades"]
    assert len(trades) == CYCLES
    assert core.trades_net_pnl == sum(t["net_pnl"] for t in trades) == ref.core.trades_net_pnl
    assert core.trades[-1] == trades[-1]  # the most recent are kept for inspection
    for purpose in (None, ENTRY, FLATTEN):
        got = venue.mean_slippage_bps(purpose)
        assert got is not None and got == ref.venue.mean_slippage_bps(purpose)


def test_a_resent_fill_inside_the_window_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    small_bounds(monkeypatch)
    h, _ = run(60)  # 120 fills: more than the window of 50 tids
    core = h.core
    before = (core.book.fills.total, [(p.size, p.realized_pnl, p.fees)
                                      for p in core.book.positions], len(h.records))
    resent: list[Any] = list(h.venue.fills)[-50:]  # the last 50 distinct fills: in the window
    assert all(f.tid in core.book.seen_tids for f in resent)
    for f in resent:
        core.on_fill(f.tid, f.cloid, f.coin, f.is_buy, f.px, f.sz, f.fee, f.time_ms, h.now)
        # the streaming resend and a reconnect snapshot of the same fill: both ignored
        core.on_fill(f.tid, f.cloid, f.coin, f.is_buy, f.px, f.sz, f.fee, f.time_ms, h.now,
                     snapshot=True)
    h.pump(h.now)
    after = (core.book.fills.total, [(p.size, p.realized_pnl, p.fees)
                                     for p in core.book.positions], len(h.records))
    assert after == before and core.flat()


def test_the_dedup_window_covers_what_the_venue_can_resend() -> None:
    """Hyperliquid serves only a user's 10,000 most recent fills (a userFills snapshot holds at
    most 2,000): the window keeps at least that many distinct tids (docs: operations)."""
    assert positions_mod.TID_WINDOW >= 10_000
    book = positions_mod.PositionBook(["xyz:GOLD"])
    p = book.positions[0]
    for n in range(10_000):
        ok, _ = book.apply_fill(p, positions_mod.Fill(f"t{n}", None, p.coin, n % 2 == 0, 100.0,
                                                      0.1, 0.0, float(n)))
        assert ok
    ok, _ = book.apply_fill(p, positions_mod.Fill("t0", None, p.coin, True, 100.0, 0.1, 0.0,
                                                  1e9))
    assert not ok and book.fills.total == 10_000
