"""Journal restore: a core driven through entries/fills/flattens, journaled with RecordWriter,
is rebuilt in a NEW core from the files, and a kill at any byte still restores a consistent
prefix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine.core.intents import Alert, QueryOrder, Record
from engine.core.orders import ENTRY, FLATTEN, CloidFactory
from engine.io.journal import JournalState, load_journal, restore
from engine.io.jsonl import encode_line
from engine.io.records import RecordWriter
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore
from engine.venues.paper import PaperVenue
from fsm import order as ofsm
from fsm import position as pfsm

from .helpers import T0, make_ready, make_trading
from .test_paper import FEE_BPS, LATENCY, Harness, snapshot

COINS = ("xyz:GOLD", "xyz:SILVER", "xyz:OIL", "xyz:COPPER", "xyz:ZINC")
GOLD, SILVER, OIL, COPPER, ZINC = range(5)
CFG: dict[str, Any] = {"trading": {"pending_timeout_ms": 1000,
                                   "unknown_query_interval_ms": 500}}
DAY = "2027-01-15"  # the UTC day of T0


def new_core(boot: bytes = b"\x02" * 8, extra: dict[str, Any] | None = None) -> TradingCore:
    core, _ = make_trading(extra or CFG, coins=COINS)
    core.cloids = CloidFactory(boot)
    return core


def journaled(tmp: Path, extra: dict[str, Any] | None = None) -> tuple[Harness, RecordWriter]:
    core, _ = make_trading(extra or CFG, coins=COINS)
    make_ready(core)
    writer = RecordWriter(tmp, flush_interval_ms=0, fsync_interval_ms=0)
    venue = PaperVenue(core, LATENCY, FEE_BPS, tid_prefix="run1")
    return Harness(core, venue, write=writer.write), writer


def drive(h: Harness) -> None:
    """SILVER: a round trip (flat). GOLD: a partly filled entry, its flatten in flight.
    OIL: open, no order. COPPER: an entry in flight. ZINC: an entry whose response and fills
    were lost, resolved by cloid into unconfirmed exposure."""
    h.venue.drop_next_response(1, fills=False)  # the next order to execute: ZINC's
    h.ctx(T0 + 100, 101.0, idx=ZINC)
    h.ctx(T0 + 110, 101.0, idx=SILVER)
    h.at(T0 + 250)
    h.bbo(T0 + 900, 100.90, 100.95, idx=SILVER)  # quick profit
    h.at(T0 + 1050)
    h.ctx(T0 + 1100, 101.0, idx=GOLD)
    h.venue.partial_ratio = 0.5
    h.ctx(T0 + 1200, 101.0, idx=OIL)
    h.at(T0 + 1250)
    h.venue.partial_ratio = 1.0
    h.at(T0 + 1350)
    h.housekeeping(T0 + 1400)  # ZINC: pending timeout → UNKNOWN → orderStatus → filled
    h.bbo(T0 + 1900, 100.90, 100.95, idx=GOLD)  # GOLD flatten sent, due at 2050
    h.ctx(T0 + 1950, 101.0, idx=COPPER)  # COPPER entry sent, due at 2100
    h.at(T0 + 2000)  # the process dies here


def state_of(h: Harness) -> dict[int, str]:
    return {i: h.core.book.positions[i].state for i in range(len(COINS))}


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[tuple[Harness, Path]]:
    h, writer = journaled(tmp_path)
    drive(h)
    writer.close()
    yield h, tmp_path


def test_scenario_reaches_the_states_we_want_to_restore(scenario: tuple[Harness, Path]) -> None:
    h, d = scenario
    assert state_of(h) == {GOLD: pfsm.FLATTENING, SILVER: pfsm.FLAT, OIL: pfsm.OPEN,
                           COPPER: pfsm.OPENING, ZINC: pfsm.OPEN}
    zinc = h.core.book.positions[ZINC]
    assert zinc.size == 0.0 and zinc.effective == pytest.approx(0.49)
    assert h.core.book.positions[GOLD].size == pytest.approx(0.24)
    # the files are exactly the records, in order (RecordWriter wrote every line)
    for kind in ("orders", "fills", "positions", "trades", "signals"):
        want = b"".join(line for k, _, line in h.lines if k == kind)
        assert (d / f"{kind}_{DAY}.jsonl").read_bytes() == want


def test_restore_reproduces_positions_orders_and_metadata(
        scenario: tuple[Harness, Path]) -> None:
    h, d = scenario
    old = h.core
    js = load_journal(d, T0 + 5000)
    assert js.stats.torn_lines == 0 and js.stats.malformed_lines == 0
    core = new_core()
    rep = restore(core, js, T0 + 5000)
    assert rep.fills_applied == len(old.book.fills)
    for p_old, p in zip(old.book.positions, core.book.positions, strict=True):
        assert p.state == p_old.state, p.coin
        assert p.size == pytest.approx(p_old.size, abs=1e-12)
        assert p.avg_px == pytest.approx(p_old.avg_px)
        assert p.effective == pytest.approx(p_old.effective, abs=1e-12)
        assert p.unconfirmed == pytest.approx(p_old.unconfirmed)
        assert p.fees == pytest.approx(p_old.fees)
        assert p.realized_pnl == pytest.approx(p_old.realized_pnl)
        assert (p.entry_signal_id, p.entry_decision_px) \
            == (p_old.entry_signal_id, p_old.entry_decision_px), p.coin
        assert p.entry_edge_bps == pytest.approx(p_old.entry_edge_bps), p.coin
        assert p.entry_ms == p_old.entry_ms, p.coin
        assert p.exit_reason == p_old.exit_reason, p.coin
        assert p.flatten_failures == p_old.flatten_failures
        assert (p.entry_cloid, p.flatten_cloid) == (p_old.entry_cloid, p_old.flatten_cloid)
        assert (p.exit_state is None) == (p_old.exit_state is None), p.coin
        if p.exit_state is not None and p_old.exit_state is not None:
            assert p.exit_state.entry_ms == p_old.exit_state.entry_ms
            assert p.exit_state.direction == p_old.exit_state.direction
            assert p.exit_state.entry_px == pytest.approx(p_old.exit_state.entry_px)
            assert p.exit_state.entry_edge_bps == pytest.approx(p_old.exit_state.entry_edge_bps)
            assert p.exit_state.entry_oracle_px == p_old.exit_state.entry_oracle_px
        if p.size:
            assert p.trade_open_ms == p_old.trade_open_ms
            assert p.trade_entry_qty == pytest.approx(p_old.trade_entry_qty)
            assert p.trade_fees == pytest.approx(p_old.trade_fees)
    # positions are the signed sum of the distinct fills
    sums = js.signed_fills()
    for p in core.book.positions:
        assert p.size == pytest.approx(sums.get(p.coin, 0.0), abs=1e-12)
    # every order that was live is back, same cloid and wire strings, UNKNOWN
    old_active = {o.cloid: o for o in old.orders.active()}
    new_active = {o.cloid: o for o in core.orders.active()}
    assert set(new_active) == set(old_active) == set(rep.unknown_orders)
    assert len(new_active) == 2  # GOLD's flatten, COPPER's entry
    for cloid, o in new_active.items():
        was = old_active[cloid]
        assert o.state == ofsm.UNKNOWN
        for attr in ("coin", "idx", "asset_id", "is_buy", "px_wire", "sz_wire", "reduce_only",
                     "purpose", "signal_id", "reason", "decision_px", "expires_after_ms",
                     "created_ms", "sent_ms", "oid"):
            assert getattr(o, attr) == getattr(was, attr), attr
    # terminal orders are known too (a late message about them is not "foreign")
    assert set(core.orders.by_cloid) == set(old.orders.by_cloid)
    for cloid, o in core.orders.by_cloid.items():
        if cloid not in new_active:
            assert o.state == old.orders.by_cloid[cloid].state
    assert not core.is_ready() and not core.hard_stop.latched
    # restore journals what it did
    out = core.drain()
    restored = [i for i in out if isinstance(i, Record) and i.kind == "orders"]
    assert {r.record["cloid"] for r in restored} == set(new_active)
    assert all(r.record["state"] == "unknown" for r in restored)
    assert any(isinstance(i, Alert) and i.code == "journal_restored" for i in out)
    assert any(isinstance(i, Record) and i.record.get("event") == "journal_restored"
               for i in out)


def test_restored_core_dedups_fills_resolves_unknowns_and_trades_on(
        scenario: tuple[Harness, Path]) -> None:
    h, d = scenario
    now = T0 + 5000
    core = new_core()
    restore(core, load_journal(d, now), now)
    core.drain()
    before = snapshot(core)
    # the same fills arrive again (a streaming redelivery): nothing is counted twice
    for f in h.core.book.fills:
        core.on_fill(f.tid, f.cloid, f.coin, f.is_buy, f.px, f.sz, f.fee, f.time_ms, now)
    assert snapshot(core) == before
    assert not [i for i in core.drain() if isinstance(i, Record)]
    # a new paper venue (the old one died with the process): nothing in flight survived
    venue = PaperVenue(core, LATENCY, FEE_BPS, tid_prefix="run2")
    venue.seed_positions({p.coin: p.effective for p in core.book.positions if p.has_exposure})
    h2 = Harness(core, venue)
    h2.now = now
    for i in range(len(COINS)):
        h2.bbo(now, 99.99, 100.01, idx=i)
        h2.ctx(now, 101.0, idx=i)
    core.set_ready("user_channels", True)
    core.on_reconcile(venue.positions(), venue.open_orders(), now)
    assert not core.hard_stop.latched  # venue and journal agree
    assert not core.is_ready()  # two orders still UNKNOWN
    # a signal now is refused until they are resolved
    h2.ctx(now + 10, 101.2, idx=SILVER)
    assert core.skips["not_ready"] >= 1 and not h2.orders(ENTRY, SILVER)[-1].active
    # housekeeping asks the venue by cloid: never seen → EXPIRED, slots released
    h2.at(now + 20)
    core.on_housekeeping(now + 20)
    queries = [i for i in core.out if isinstance(i, QueryOrder)]
    assert len(queries) == 2
    h2.pump(now + 20)
    assert core.is_ready()
    assert core.book.positions[COPPER].state == pfsm.FLAT
    assert core.book.positions[GOLD].state == pfsm.OPEN  # flatten retried later
    # exits work on the restored positions: everything gets flat, one flatten at a time
    t = now + 100
    for _ in range(10):
        t += 1200
        for i in range(len(COINS)):
            h2.bbo(t, 100.90, 100.95, idx=i)
        h2.at(t + 200)
        if core.flat():
            break
    assert core.flat() and venue.positions() == {}
    assert h2.max_live_flattens == 1
    trades = {tr["market_key"]: tr for tr in core.trades}
    assert trades["xyz:OIL"]["entry_signal_id"] == h.core.book.positions[OIL].entry_signal_id
    assert trades["xyz:OIL"]["entry_time_ms"] == T0 + 1350
    assert trades["xyz:GOLD"]["exit_reason"] == "quick_profit"


def test_without_signal_files_the_entry_edge_comes_from_the_order_record(
        scenario: tuple[Harness, Path]) -> None:
    h, d = scenario
    (d / f"signals_{DAY}.jsonl").unlink()
    core = new_core()
    restore(core, load_journal(d, T0 + 5000), T0 + 5000)
    p = core.book.positions[OIL]
    orig = h.core.book.positions[OIL]
    assert p.entry_signal_id == orig.entry_signal_id
    assert p.entry_edge_bps == orig.entry_edge_bps and p.exit_state is not None
    assert orig.exit_state is not None
    assert p.exit_state.entry_oracle_px == orig.exit_state.entry_oracle_px


def test_entry_edge_in_the_order_record_wins(tmp_path: Path) -> None:
    rec = {"event": "created", "cloid": "0x" + "ab" * 16, "market_key": "xyz:GOLD",
           "asset_id": 110000, "side": "buy", "px": "100.07", "sz": "0.49",
           "reduce_only": False, "purpose": "entry", "state": "sent", "created_ms": T0,
           "signal_id": "s1", "decision_px": 100.01, "entry_edge_bps": 42.0, "ts_ms": T0}
    (tmp_path / f"orders_{DAY}.jsonl").write_bytes(encode_line(rec))
    core = new_core()
    restore(core, load_journal(tmp_path, T0 + 10), T0 + 10)
    p = core.book.positions[GOLD]
    assert p.state == pfsm.OPENING and p.entry_edge_bps == 42.0 and p.entry_signal_id == "s1"


def test_restore_needs_a_fresh_core(scenario: tuple[Harness, Path]) -> None:
    _, d = scenario
    js = load_journal(d, T0 + 5000)
    core = new_core()
    restore(core, js, T0 + 5000)
    with pytest.raises(ValueError):
        restore(core, js, T0 + 5000)


def test_restore_with_the_same_cloid_prefix_never_reuses_a_cloid(
        scenario: tuple[Harness, Path]) -> None:
    h, d = scenario
    core = new_core(boot=b"\x01" * 8)  # the prefix of the journaled run
    restore(core, load_journal(d, T0 + 5000), T0 + 5000)
    nxt = core.cloids.next()
    assert nxt not in h.core.orders.by_cloid


# ---------------------------------------------------------------------------------- hard stop


def _latch(tmp: Path, reset: bool) -> Harness:
    h, writer = journaled(tmp, {"trading": {"reject_burst_limit": 1}})
    h.venue.reject_next(2)
    h.ctx(T0 + 100, 101.0, idx=GOLD)
    h.ctx(T0 + 110, 101.0, idx=SILVER)
    h.at(T0 + 300)
    assert h.core.hard_stop.latched
    if reset:
        h.core.reset_hard_stop(T0 + 400)
        h.pump(T0 + 400)
    writer.close()
    return h


@pytest.mark.parametrize("reset", [False, True])
def test_hard_stop_latch_survives_a_restart_unless_reset(tmp_path: Path, reset: bool) -> None:
    h = _latch(tmp_path, reset)
    js = load_journal(tmp_path, T0 + 1000)
    core = new_core(extra={"trading": {"reject_burst_limit": 1}})
    rep = restore(core, js, T0 + 1000)
    if reset:
        assert js.hard_stop is None and not core.hard_stop.latched and rep.hard_stop is None
    else:
        assert core.hard_stop.latched and core.hard_stop.reason == "reject_burst"
        assert core.hard_stop.since_ms == h.core.hard_stop.since_ms
        assert core.hard_stop.detail == h.core.hard_stop.detail
    # the non-benign rejects are back in the burst window
    assert list(core.rejects.times) == list(h.core.rejects.times)


def test_a_latch_older_than_the_lookback_is_still_found(tmp_path: Path) -> None:
    day_ms = 86_400_000
    old = {"event": "hard_stop", "reason": "foreign_fill", "detail": "x", "ts_ms": T0}
    (tmp_path / f"positions_{DAY}.jsonl").write_bytes(encode_line(old))
    js = load_journal(tmp_path, T0 + 10 * day_ms)
    assert js.hard_stop is not None and js.hard_stop.reason == "foreign_fill"
    assert js.stats.older_position_files == 1
    reset = {"event": "hard_stop_reset", "reason": "foreign_fill", "ts_ms": T0 + 5 * day_ms}
    later = "2027-01-20"
    (tmp_path / f"positions_{later}.jsonl").write_bytes(encode_line(reset))
    assert load_journal(tmp_path, T0 + 10 * day_ms).hard_stop is None


# ---------------------------------------------------------------------------------- damage


def fill_rec(tid: str, sz: float, ts: float, side: str = "buy",
             coin: str = "xyz:GOLD") -> dict[str, Any]:
    return {"tid": tid, "cloid": None, "market_key": coin, "side": side, "px": 100.0, "sz": sz,
            "fee": 0.0, "time_ms": ts, "synthetic": True, "ts_ms": ts}


def test_fills_across_days_dedup_by_tid_and_the_window(tmp_path: Path) -> None:
    day_ms = 86_400_000
    d1, d2, d3 = "2027-01-13", "2027-01-14", "2027-01-15"
    (tmp_path / f"fills_{d1}.jsonl").write_bytes(encode_line(fill_rec("a", 9.0, T0 - 2 * day_ms)))
    (tmp_path / f"fills_{d2}.jsonl").write_bytes(
        encode_line(fill_rec("b", 1.0, T0 - day_ms)) + encode_line(fill_rec("c", 0.5, T0 - day_ms)))
    (tmp_path / f"fills_{d3}.jsonl").write_bytes(
        encode_line(fill_rec("c", 0.5, T0)) + encode_line(fill_rec("d", 0.25, T0, "sell")))
    js = load_journal(tmp_path, T0 + 1)  # today and yesterday: "a" is out of the window
    assert [f.tid for f in js.fills] == ["b", "c", "d"] and js.stats.duplicate_fills == 1
    core = new_core()
    restore(core, js, T0 + 1)
    p = core.book.positions[GOLD]
    assert p.size == pytest.approx(1.25) and p.state == pfsm.OPEN
    assert core.book.seen_tids == {"b", "c", "d"}
    assert len(load_journal(tmp_path, T0 + 1, lookback_days=3).fills) == 4
    with pytest.raises(ValueError):
        load_journal(tmp_path, T0, lookback_days=0)


def test_malformed_and_torn_lines_are_counted_and_skipped(
        scenario: tuple[Harness, Path], caplog: pytest.LogCaptureFixture) -> None:
    h, d = scenario
    fills = d / f"fills_{DAY}.jsonl"
    orders = d / f"orders_{DAY}.jsonl"
    good_fills = fills.read_bytes()
    fills.write_bytes(b"{not json\n[1,2]\n" + encode_line({"tid": "z", "sz": -1}) + good_fills
                      + b'{"tid": "torn-')
    orders.write_bytes(orders.read_bytes() + encode_line({"cloid": "0xdead", "state": "sent"}))
    with caplog.at_level("WARNING"):
        js = load_journal(d, T0 + 5000)
    assert js.stats.torn_lines == 1 and js.stats.malformed_lines == 4
    assert any("torn" in r.message for r in caplog.records)
    core = new_core()
    restore(core, js, T0 + 5000)
    assert snapshot(core)["positions"] == snapshot(h.core)["positions"]
    alert = [i for i in core.drain() if isinstance(i, Alert)]
    assert alert and "1 torn and 4 malformed" in alert[0].message


def test_records_of_markets_no_longer_traded_are_skipped(tmp_path: Path) -> None:
    (tmp_path / f"fills_{DAY}.jsonl").write_bytes(encode_line(fill_rec("q", 1.0, T0,
                                                                       coin="xyz:GONE")))
    core = new_core()
    rep = restore(core, load_journal(tmp_path, T0 + 1), T0 + 1)
    assert rep.skipped == 1 and core.flat() and rep.warnings


def test_empty_or_missing_directory_restores_nothing(tmp_path: Path) -> None:
    core = new_core()
    rep = restore(core, load_journal(tmp_path / "nope", T0), T0)
    assert rep.fills_applied == 0 and rep.orders_restored == 0 and core.flat()
    assert all(p.state == pfsm.FLAT for p in core.book.positions)


# ---------------------------------------------------------------------------------- kill at any byte


def _files_at(lines: list[tuple[str, float, bytes]], cut: int) -> dict[str, bytes]:
    """The day files as a kill after ``cut`` bytes of the global write stream leaves them."""
    files: dict[str, bytearray] = {}
    pos = 0
    for kind, _, line in lines:
        name = f"{kind}_{DAY}.jsonl"
        buf = files.setdefault(name, bytearray())
        if pos >= cut:
            break
        buf += line[: cut - pos]
        pos += len(line)
    return {k: bytes(v) for k, v in files.items()}


def _prefix_records(lines: list[tuple[str, float, bytes]], cut: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    for kind, _, line in lines:
        if pos + len(line) > cut:
            break
        out.append((kind, msgspec.json.decode(line)))
        pos += len(line)
    return out


def _check_consistent(core: TradingCore, js: JournalState,
                      recs: list[tuple[str, Any]]) -> None:
    # positions = signed sum of the distinct fills of the prefix
    sums: dict[str, float] = {}
    tids: set[str] = set()
    for kind, r in recs:
        if kind == "fills" and r["tid"] not in tids:
            tids.add(r["tid"])
            sums[r["market_key"]] = sums.get(r["market_key"], 0.0) \
                + (r["sz"] if r["side"] == "buy" else -r["sz"])
    for p in core.book.positions:
        assert p.size == pytest.approx(sums.get(p.coin, 0.0), abs=1e-9), p.coin
    # the live orders are exactly those whose last record is not terminal; all UNKNOWN
    last: dict[str, str] = {}
    for kind, r in recs:
        if kind == "orders":
            last[r["cloid"]] = r["state"]
    live = {c for c, s in last.items() if s not in ofsm.TERMINAL_STATES}
    assert {o.cloid for o in core.orders.active()} == live
    assert all(o.state == ofsm.UNKNOWN for o in core.orders.active())
    # the position FSM agrees with the orders and the exposure
    for p in core.book.positions:
        mine = core.orders.active_for(p.idx)
        assert pfsm.flatten_live(p.state) == any(o.purpose == FLATTEN for o in mine)
        assert pfsm.entry_live(p.state) == any(o.purpose == ENTRY for o in mine)
        if p.state in (pfsm.FLAT, pfsm.OPENING):
            assert not p.has_exposure
        if p.state in (pfsm.OPEN, pfsm.OPENING_PARTIAL):
            assert p.has_exposure and p.exit_state is not None
        assert len([o for o in mine if o.reduce_only]) <= 1
    # the latch as the prefix last showed it
    latch = None
    for kind, r in recs:
        if kind == "positions" and r["event"] in ("hard_stop", "hard_stop_reset"):
            latch = r["reason"] if r["event"] == "hard_stop" else None
    assert (core.hard_stop.reason if core.hard_stop.latched else None) == latch
    assert js.stats.malformed_lines == 0


def _kill_and_restore(h: Harness, d: Path, cut: int) -> tuple[TradingCore, JournalState]:
    for p in d.glob("*.jsonl"):
        p.unlink()
    for name, data in _files_at(h.lines, cut).items():
        (d / name).write_bytes(data)
    js = load_journal(d, T0 + 5000)
    core = new_core()
    restore(core, js, T0 + 5000)
    return core, js


def _cuts(h: Harness, every_byte: bool) -> list[int]:
    cuts: list[int] = []
    pos = 0
    for _, _, line in h.lines:
        n = len(line)
        if every_byte:
            cuts.extend(range(pos, pos + n))
        else:
            cuts.extend(sorted({pos, pos + 1, pos + n // 2, pos + n - 1}))
        pos += n
    cuts.append(pos)
    return cuts


def _kill_everywhere(h: Harness, tmp: Path, every_byte: bool) -> int:
    d = tmp / "killed"
    d.mkdir()
    at_boundary = {n: snap for n, snap in h.boundaries}
    line_ends: dict[int, int] = {}
    kind_at: list[tuple[int, str]] = []  # (end offset, kind) of every line
    pos = 0
    for i, (kind, _, line) in enumerate(h.lines):
        pos += len(line)
        line_ends[pos] = i + 1
        kind_at.append((pos, kind))
    for cut in _cuts(h, every_byte):
        core, js = _kill_and_restore(h, d, cut)
        recs = _prefix_records(h.lines, cut)
        _check_consistent(core, js, recs)
        if cut and cut not in line_ends:
            torn_kind = next(k for end, k in kind_at if end > cut)
            if torn_kind != "signals":  # read only for the entries' signal ids
                assert js.stats.torn_lines == 1, cut
        else:
            assert js.stats.torn_lines == 0, cut
        n_lines = line_ends.get(cut, 0 if cut == 0 else -1)
        if n_lines in at_boundary:  # a kill between two core calls: exactly that core
            assert snapshot(core) == at_boundary[n_lines], cut
    return len(_cuts(h, every_byte))


def test_a_kill_at_any_line_or_inside_any_line_restores_a_consistent_prefix(
        tmp_path: Path) -> None:
    h = Harness(*_fresh(tmp_path))
    drive(h)
    assert _kill_everywhere(h, tmp_path, every_byte=False) > 100


@pytest.mark.slow
def test_a_kill_at_every_byte_restores_a_consistent_prefix(tmp_path: Path) -> None:
    h = Harness(*_fresh(tmp_path))
    drive(h)
    _kill_everywhere(h, tmp_path, every_byte=True)


def _fresh(tmp: Path) -> tuple[TradingCore, PaperVenue]:
    core, _ = make_trading(CFG, coins=COINS)
    make_ready(core)
    return core, PaperVenue(core, LATENCY, FEE_BPS, tid_prefix="run1")


def test_a_kill_with_the_hard_stop_latched_in_the_middle(tmp_path: Path) -> None:
    h = Harness(*_fresh_latching(tmp_path))
    h.venue.reject_next(2)
    h.ctx(T0 + 100, 101.0, idx=GOLD)
    h.ctx(T0 + 110, 101.0, idx=SILVER)
    h.at(T0 + 300)
    h.core.reset_hard_stop(T0 + 400)
    h.pump(T0 + 400)
    h.ctx(T0 + 500, 101.0, idx=OIL)
    h.at(T0 + 700)
    assert _kill_everywhere(h, tmp_path, every_byte=False) > 20


def _fresh_latching(tmp: Path) -> tuple[TradingCore, PaperVenue]:
    core, _ = make_trading({**CFG, "trading": {**CFG["trading"], "reject_burst_limit": 1}},
                           coins=COINS)
    make_ready(core)
    return core, PaperVenue(core, LATENCY, FEE_BPS, tid_prefix="run1")


def test_restore_reads_days_that_retention_compressed(tmp_path: Path) -> None:
    """Retention gzips closed days; the restart recovery must still see yesterday's journal
    (positions, fills, a latched hard stop) and pending followups."""
    import datetime as dt
    import gzip
    import json

    from engine.io.followup_recovery import recover_incomplete
    from engine.io.journal import load_journal

    now = dt.datetime(2026, 11, 23, 0, 5, tzinfo=dt.UTC)
    now_ms = now.timestamp() * 1000
    yday = "2026-11-22"
    t = now_ms - 10 * 60_000
    fills = [{"tid": "t1", "cloid": "0x" + "1" * 32, "market_key": "xyz:GOLD", "side": "buy",
              "px": 100.0, "sz": 0.5, "fee": 0.01, "time_ms": t, "synthetic": False,
              "ts_ms": t}]
    positions = [{"event": "hard_stop", "reason": "reject_burst", "detail": "x", "ts_ms": t}]
    signals = [{"signal_id": "sig_a", "market_key": "xyz:GOLD", "side": "buy",
                "timestamp_ms": now_ms - 2000, "followup_offsets_ms": [1000, 3000, 5000],
                "oracle_px": 100.0, "best_px": 99.0, "raw_edge_bps": 10.0}]
    for kind, recs in (("fills", fills), ("positions", positions)):
        body = "".join(json.dumps(r) + "\n" for r in recs).encode()
        (tmp_path / f"{kind}_{yday}.jsonl.gz").write_bytes(gzip.compress(body))
    body = "".join(json.dumps(r) + "\n" for r in signals).encode()
    (tmp_path / "signals_2026-11-23.jsonl.gz").write_bytes(gzip.compress(body))
    js = load_journal(tmp_path, now_ms)
    assert [f.tid for f in js.fills] == ["t1"]
    assert js.hard_stop is not None and js.hard_stop.reason == "reject_burst"
    missed, reschedule = recover_incomplete(tmp_path, now_ms)
    assert len(missed) == 1 and len(reschedule) == 1  # 1000 ms is past due; 3000/5000 are not
