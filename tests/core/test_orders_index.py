"""OrderBook's O(1) views (engine/core/orders.py) always equal a scan of its orders.

The entry gates read ``live_by_idx`` / ``active_for``, ``pending_for``, ``pending_total`` and
``unknown_count`` instead of scanning every order of the run; any sequence of adds, FSM events,
venue-filled updates, prunes and reindexes must leave them equal to the scan.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.orders import ENTRY, FLATTEN, CloidFactory, Order, OrderBook
from fsm import order as ofsm

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 3), st.booleans(),
                  st.sampled_from(["0.1", "0.25", "1", "3.7"]),
                  st.sampled_from(["99.5", "100", "100.01"])),
        st.tuples(st.just("event"), st.integers(0, 40), st.sampled_from(ofsm.EVENTS)),
        st.tuples(st.just("filled"), st.integers(0, 40), st.floats(0.0, 4.0)),
        st.tuples(st.just("prune"), st.integers(0, 5)),
        st.tuples(st.just("reindex"),),
    ),
    max_size=60,
)


def check(book: OrderBook) -> None:
    live = [o for o in book.by_cloid.values() if o.state in ofsm.ACTIVE_STATES]
    assert list(book.live.values()) == live
    for idx in range(4):
        mine = [o for o in live if o.idx == idx]
        assert book.active_for(idx) == mine
        assert book.pending_for(idx) == sum(o.remaining * o.px for o in mine
                                            if not o.reduce_only)
    assert set(book.live_by_idx) == {o.idx for o in live}
    assert book.unknown_count == sum(1 for o in live if o.state == ofsm.UNKNOWN)
    assert [o.cloid for o in book.unknown()] == [o.cloid for o in live
                                                 if o.state == ofsm.UNKNOWN]
    pending = sum(o.remaining * o.px for o in live if not o.reduce_only)
    assert abs(book.pending_total - pending) <= 1e-9 * max(1.0, pending)
    if not any(not o.reduce_only for o in live):
        assert book.pending_total == 0.0  # exactly: no float residue left behind


@settings(max_examples=400, deadline=None)
@given(ops=OPS)
def test_views_equal_a_scan_after_any_sequence(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    book = OrderBook()
    made: list[Order] = []
    t = 0.0
    for op in ops:
        t += 1.0
        if op[0] == "add":
            _, idx, ro, sz, px = op
            o = Order(f"0x{len(made):032x}", f"xyz:M{idx}", idx, 110000 + idx, True, px, sz, ro,
                      FLATTEN if ro else ENTRY, t)
            made.append(o)
            book.add(o)
        elif op[0] == "event" and made:
            o = made[op[1] % len(made)]
            if o.cloid in book.by_cloid:
                book.apply(o, op[2], t)
        elif op[0] == "filled" and made:
            o = made[op[1] % len(made)]
            if o.cloid in book.by_cloid and op[2] > o.venue_filled:
                book.set_venue_filled(o, op[2])
        elif op[0] == "prune":
            book.prune(op[1])
        elif op[0] == "reindex":
            book.reindex()
        check(book)


def test_unknown_orders_restored_by_add_are_counted() -> None:
    """The journal restore sets the state before add(): the counters must see it."""
    book = OrderBook()
    o = Order("0x" + "1" * 32, "xyz:A", 0, 1, True, "100", "1", False, ENTRY, 1.0)
    o.state = ofsm.UNKNOWN
    o.venue_filled = 0.25
    book.add(o)
    assert book.unknown_count == 1 and book.pending_total == 0.75 * 100
    book.apply(o, ofsm.RESOLVE_NOT_FOUND, 2.0)
    assert book.unknown_count == 0 and book.pending_total == 0.0 and not book.live_by_idx


def test_the_cloid_factory_moves_past_restored_cloids_of_its_own_prefix() -> None:
    f = CloidFactory(b"\x07" * 8)
    first = f.next()
    mine = f"0x{'07' * 8}{41:016x}"
    other = f"0x{'08' * 8}{99:016x}"
    f.advance_past([other, mine, "0xnot-a-cloid", f"0x{'07' * 8}zz"])
    assert f.next() == f"0x{'07' * 8}{42:016x}"  # past the highest of its own, only
    f.advance_past([first])  # an older one never moves it back
    assert f.next() == f"0x{'07' * 8}{43:016x}"
