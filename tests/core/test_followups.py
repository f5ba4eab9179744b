"""FollowupBook (pure): formulas, miss reasons, one record per offset under any interleaving."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from engine.core.followups import MISS_REASONS, RECORD_FIELDS, FollowupBook
from engine.core.types import MarketView, Side

T = 1_768_893_220_000.0  # a signal time (epoch ms)
OFFSETS = (1000, 3000, 5000)


def view(
    oracle: float | None = 100.0,
    bid: float | None = 99.9,
    bid_sz: float | None = 5.0,
    ask: float | None = 100.1,
    ask_sz: float | None = 7.0,
    *,
    live: bool = True,
    bbo_ms: float | None = None,
    ctx_ms: float | None = None,
    coin: str = "xyz:SILVER",
    now: float = T + 1000,
) -> MarketView:
    return MarketView(
        coin,
        oracle,
        oracle,
        bid,
        bid_sz,
        ask,
        ask_sz,
        now if bbo_ms is None else bbo_ms,
        now if ctx_ms is None else ctx_ms,
        live,
    )


def const(v: MarketView | None) -> Any:
    return lambda coin: v


def one(book: FollowupBook, now: float, v: MarketView | None) -> dict[str, Any]:
    recs = book.capture_due(now, const(v))
    assert len(recs) == 1
    return recs[0]


def test_buy_formulas_hand_computed() -> None:
    book = FollowupBook()
    book.schedule("sig_1", "xyz:SILVER", Side.BUY, T, 100.0, 99.8, 20.0, (1000,))
    assert book.next_due_ms() == T + 1000
    r = one(book, T + 1004, view(oracle=100.5, ask=100.2, ask_sz=3.0, bid=100.1, bid_sz=9.0))
    assert list(r) == list(RECORD_FIELDS)
    assert r["status"] == "captured" and r["miss_reason"] is None
    assert r["signal_id"] == "sig_1" and r["market_key"] == "xyz:SILVER" and r["side"] == "buy"
    assert r["signal_timestamp_ms"] == T and r["offset_ms"] == 1000
    assert r["due_ms"] == T + 1000 and r["captured_at_ms"] == T + 1004
    assert r["lateness_ms"] == pytest.approx(4.0)
    assert (r["t0_oracle_px"], r["t0_best_px"], r["t0_raw_edge_bps"]) == (100.0, 99.8, 20.0)
    assert r["oracle_px"] == 100.5 and r["best_px"] == 100.2 and r["best_size"] == 3.0
    # (100.5 - 100.2) / 100.5 * 1e4 = 29.8507...
    assert r["raw_edge_bps"] == pytest.approx(29.850746268656)
    assert r["edge_change_bps"] == pytest.approx(9.850746268656)
    assert r["oracle_moved_bps"] == pytest.approx(50.0)
    # (100.2 - 99.8) / 99.8 * 1e4 = 40.0801...
    assert r["market_moved_bps"] == pytest.approx(40.080160320641)
    assert book.pending_count == 0 and book.next_due_ms() is None
    assert book.signals_done == 1


def test_sell_formulas_hand_computed_and_negative_edge() -> None:
    book = FollowupBook()
    book.schedule("sig_2", "xyz:GOLD", "sell", T, 2000.0, 2003.0, 15.0, (1000, 3000))
    r1 = one(book, T + 1000, view(oracle=2000.0, bid=2001.0, bid_sz=2.5, ask=2002.0))
    # (2001 - 2000) / 2000 * 1e4 = 5
    assert r1["best_px"] == 2001.0 and r1["best_size"] == 2.5
    assert r1["raw_edge_bps"] == pytest.approx(5.0)
    assert r1["edge_change_bps"] == pytest.approx(-10.0)
    assert r1["oracle_moved_bps"] == pytest.approx(0.0)
    assert r1["market_moved_bps"] == pytest.approx(-9.985022466300)  # (2001-2003)/2003*1e4
    r2 = one(book, T + 3000, view(oracle=2010.0, bid=2005.0, bid_sz=1.0, ask=2012.0))
    # the bid is now below the oracle: a negative edge, recorded as is
    assert r2["raw_edge_bps"] == pytest.approx((2005.0 - 2010.0) / 2010.0 * 1e4)
    assert r2["raw_edge_bps"] < 0
    assert r2["oracle_moved_bps"] == pytest.approx(50.0)


def test_null_t0_values_give_null_deltas() -> None:
    book = FollowupBook()
    book.schedule("s", "c", "buy", T, None, 0.0, None, (1000,))
    r = one(book, T + 1000, view())
    assert r["status"] == "captured"
    assert r["edge_change_bps"] is None
    assert r["oracle_moved_bps"] is None and r["market_moved_bps"] is None


@pytest.mark.parametrize(
    ("reason", "v", "kwargs", "now"),
    [
        ("no_data", None, {}, T + 1000),
        ("disconnected", view(live=False), {}, T + 1000),
        ("stale_data", view(oracle=None), {}, T + 1000),
        ("stale_data", view(oracle=0.0), {}, T + 1000),
        ("stale_data", view(ask=None, ask_sz=None), {}, T + 1000),  # buy needs the ask
        ("stale_data", view(ctx_ms=T + 1000 - 8001), {"max_ctx_age_ms": 8000}, T + 1000),
        ("stale_data", view(bbo_ms=T + 1000 - 501), {"max_bbo_age_ms": 500}, T + 1000),
        ("late", view(), {}, T + 1000 + 1000.5),
        ("late", view(), {"max_lateness_ms": 10}, T + 1011),
    ],
)
def test_every_miss_reason(
    reason: str, v: MarketView | None, kwargs: dict[str, Any], now: float
) -> None:
    book = FollowupBook(**kwargs)
    book.schedule("s", "c", "buy", T, 100.0, 100.1, 5.0, (1000,))
    r = one(book, now, v)
    assert r["status"] == "missed" and r["miss_reason"] == reason
    for k in ("oracle_px", "best_px", "best_size", "raw_edge_bps", "edge_change_bps"):
        assert r[k] is None
    assert r["oracle_moved_bps"] is None and r["market_moved_bps"] is None
    assert r["t0_oracle_px"] == 100.0  # the signal's own values are kept
    assert book.signals_missed == 1


def test_staleness_bounds_disabled_at_zero_and_sell_ignores_missing_ask() -> None:
    book = FollowupBook(max_ctx_age_ms=0, max_bbo_age_ms=0)
    book.schedule("s", "c", "sell", T, 100.0, 100.2, 5.0, (1000,))
    v = view(ask=None, ask_sz=None, bid=100.3, bbo_ms=T - 1e9, ctx_ms=T - 1e9)
    assert one(book, T + 1000, v)["status"] == "captured"
    book2 = FollowupBook(max_ctx_age_ms=100)
    book2.schedule("s", "c", "sell", T, 100.0, 100.2, 5.0, (1000,))
    v2 = view()
    v2.ctx_recv_ms = None
    assert one(book2, T + 1000, v2)["miss_reason"] == "stale_data"


def test_view_error_counts_as_no_data_and_view_called_once_per_coin() -> None:
    book = FollowupBook()
    calls: list[str] = []

    def broken(coin: str) -> MarketView | None:
        calls.append(coin)
        raise RuntimeError("boom")

    for i in range(3):
        book.schedule(f"s{i}", "c", "buy", T, 100.0, 100.1, 5.0, (1000,))
    recs = book.capture_due(T + 1000, broken)
    assert [r["miss_reason"] for r in recs] == ["no_data"] * 3
    assert calls == ["c"]


def test_due_order_limit_and_offsets_in_order() -> None:
    book = FollowupBook()
    book.schedule("a", "c", "buy", T, 100.0, 100.1, 5.0, OFFSETS)
    book.schedule("b", "c", "sell", T + 500, 100.0, 99.9, 5.0, OFFSETS)
    assert book.pending_count == 2 and book.pending_offsets == 6
    assert book.capture_due(T + 999, const(view())) == []
    recs = book.capture_due(T + 1500, const(view()))
    assert [(r["signal_id"], r["offset_ms"]) for r in recs] == [("a", 1000), ("b", 1000)]
    assert book.next_due_ms() == T + 3000
    # both remaining offsets of both signals are due; limit splits the batch
    first = book.capture_due(T + 5600, const(view()), limit=3)
    rest = book.capture_due(T + 5600, const(view()))
    got = [(r["signal_id"], r["offset_ms"]) for r in first + rest]
    assert got == [("a", 3000), ("b", 3000), ("a", 5000), ("b", 5000)]
    # T+5600 is 2600 ms after a@3000 was due: late
    assert [r["miss_reason"] for r in first + rest] == ["late", "late", None, None]
    assert book.pending_count == 0 and book.pending_offsets == 0
    assert book.signals_missed == 2 and book.signals_done == 0


def test_late_wake_resolves_every_offset_of_a_signal() -> None:
    book = FollowupBook(max_lateness_ms=1e9)
    book.schedule("a", "c", "buy", T, 100.0, 100.1, 5.0, OFFSETS)
    recs = book.capture_due(T + 10_000, const(view(now=T + 10_000)))
    assert [r["offset_ms"] for r in recs] == [1000, 3000, 5000]
    assert all(r["status"] == "captured" for r in recs)


def test_miss_all_shutdown() -> None:
    book = FollowupBook()
    book.schedule("a", "c", "buy", T, 100.0, 100.1, 5.0, OFFSETS)
    book.schedule("b", "c", "sell", T + 10, 100.0, 99.9, 5.0, (1000,))
    book.capture_due(T + 1000, const(view()))
    now = T + 1500
    recs = book.miss_all(now, "shutdown")
    assert [(r["signal_id"], r["offset_ms"]) for r in recs] == [
        ("b", 1000),
        ("a", 3000),
        ("a", 5000),
    ]
    assert all(r["status"] == "missed" and r["miss_reason"] == "shutdown" for r in recs)
    assert all(r["captured_at_ms"] == now for r in recs)
    assert recs[0]["lateness_ms"] == pytest.approx(490.0)
    assert recs[1]["lateness_ms"] == pytest.approx(-1500.0)  # resolved before it was due
    assert book.pending_count == 0 and book.pending_offsets == 0 and book.next_due_ms() is None
    assert book.signals_missed == 2
    assert book.miss_all(now, "shutdown") == []
    with pytest.raises(ValueError):
        book.miss_all(now, "bogus")


def test_max_pending_refuses_and_counts() -> None:
    book = FollowupBook(max_pending=2)
    assert book.schedule("a", "c", "buy", T, 1.0, 1.0, 1.0, OFFSETS)
    assert book.schedule("b", "c", "buy", T, 1.0, 1.0, 1.0, OFFSETS)
    assert not book.schedule("c", "c", "buy", T, 1.0, 1.0, 1.0, OFFSETS)
    assert book.refused == 1 and book.pending_count == 2


@pytest.mark.parametrize("offsets", [(), (0,), (-5,), (3000, 1000), (1000, 1000)])
def test_bad_offsets_rejected(offsets: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        FollowupBook().schedule("a", "c", "buy", T, 1.0, 1.0, 1.0, offsets)


def test_bad_side_rejected() -> None:
    with pytest.raises(ValueError):
        FollowupBook().schedule("a", "c", "long", T, 1.0, 1.0, 1.0, OFFSETS)


def test_one_gc_untracked_heap_entry_per_signal() -> None:
    """Memory/GC design: one heap entry per signal, invisible to the cyclic GC."""
    book = FollowupBook()
    for i in range(100):
        book.schedule(f"s{i}", "c", "buy", T + i, 100.0, 100.1, 5.0, OFFSETS)
    assert len(book._heap) == 100
    gc.collect()
    gc.collect()  # a nested tuple may need a second pass: the outer one is seen first
    assert not any(gc.is_tracked(item) for item in book._heap)
    book.capture_due(T + 1050, const(view()))
    assert len(book._heap) == 100


# --------------------------------------------------------------------- random interleavings

signal_st = st.tuples(
    st.floats(min_value=0, max_value=20_000),  # signal time offset from T
    st.lists(st.integers(min_value=1, max_value=6000), min_size=1, max_size=4, unique=True),
    st.sampled_from(["buy", "sell"]),
)
view_st = st.sampled_from(["ok", "none", "dead", "no_oracle", "empty_side"])


def make_view(kind: str, now: float) -> MarketView | None:
    if kind == "none":
        return None
    v = view(now=now)
    if kind == "dead":
        v.live = False
    elif kind == "no_oracle":
        v.oracle_px = None
    elif kind == "empty_side":
        v.ask_px = v.bid_px = None
    return v


@settings(max_examples=200, deadline=None)
@given(
    signals=st.lists(signal_st, max_size=25),
    steps=st.lists(st.tuples(st.floats(min_value=0, max_value=3000), view_st), max_size=30),
    stop=st.booleans(),
)
def test_exactly_one_record_per_offset_under_random_interleavings(
    signals: list[tuple[float, list[int], str]], steps: list[tuple[float, str]], stop: bool
) -> None:
    """Invariant 7: schedules and captures interleave arbitrarily; shutdown resolves the rest."""
    book = FollowupBook(max_lateness_ms=1000)
    expected: dict[str, list[int]] = {}
    out: list[dict[str, Any]] = []
    now = T
    sig_iter = iter(enumerate(signals))
    for dt, kind in steps:
        nxt = next(sig_iter, None)
        if nxt is not None:
            i, (ts_off, offs, side) = nxt
            offs = sorted(offs)
            sid = f"s{i}"
            assert book.schedule(sid, "c", side, now + ts_off * 0.01, 100.0, 100.1, 5.0, offs)
            expected[sid] = offs
        now += dt
        out += book.capture_due(now, const(make_view(kind, now)))
    for i, (ts_off, offs, side) in sig_iter:
        book.schedule(f"s{i}", "c", side, now + ts_off, 100.0, 100.1, 5.0, sorted(offs))
        expected[f"s{i}"] = sorted(offs)
    if not stop:
        out += book.capture_due(now + 1e7, const(view()))  # all remaining become "late"
    out += book.miss_all(now + 1e7 + 1, "shutdown")

    got: dict[str, list[int]] = {}
    for r in out:
        got.setdefault(r["signal_id"], []).append(r["offset_ms"])
        assert (r["status"] == "captured") == (r["miss_reason"] is None)
        assert r["miss_reason"] is None or r["miss_reason"] in MISS_REASONS
        if r["status"] == "captured":
            assert r["captured_at_ms"] >= r["due_ms"]
            assert r["lateness_ms"] <= 1000
    assert got == expected  # exactly one per offset, in offset order
    assert book.pending_count == 0 and book.pending_offsets == 0
    assert book.signals_done + book.signals_missed == len(expected)
    assert book.captured + book.missed == sum(len(o) for o in expected.values())


class BookMachine(RuleBasedStateMachine):
    """Stateful: records + pending offsets always equal the scheduled offsets."""

    @initialize()
    def setup(self) -> None:
        self.book = FollowupBook(max_pending=8)
        self.now = T
        self.n = 0
        self.scheduled_offsets = 0
        self.records: list[dict[str, Any]] = []

    @rule(offs=st.lists(st.integers(1, 4000), min_size=1, max_size=3, unique=True))
    def schedule(self, offs: list[int]) -> None:
        self.n += 1
        if self.book.schedule(f"s{self.n}", "c", "buy", self.now, 100.0, 100.1, 5.0, sorted(offs)):
            self.scheduled_offsets += len(offs)

    @rule(dt=st.floats(0, 2500), kind=view_st)
    def advance(self, dt: float, kind: str) -> None:
        self.now += dt
        self.records += self.book.capture_due(self.now, const(make_view(kind, self.now)))

    @rule()
    def shutdown(self) -> None:
        self.records += self.book.miss_all(self.now, "shutdown")

    @invariant()
    def conservation(self) -> None:
        assert len(self.records) + self.book.pending_offsets == self.scheduled_offsets
        keys = [(r["signal_id"], r["offset_ms"]) for r in self.records]
        assert len(keys) == len(set(keys))
        nd = self.book.next_due_ms()
        assert (nd is None) == (self.book.pending_count == 0)


TestBookMachine = BookMachine.TestCase
TestBookMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
