"""The paper venue forgets processed orders the core no longer holds (bounded memory).

It kept every processed order (for ``orderStatus`` by cloid) for the whole run: a 6-hour paper
replay of 40 markets held 36,000 orders, while the core itself keeps only its recent terminal
ones (``OrderBook.prune``). The core asks for the status of its own orders only, so past a
bound the venue keeps just those (and the order it just processed): the status of every order
the core still holds — however old, e.g. one still unresolved — is answered as before.
"""

from __future__ import annotations

import pytest

import engine.venues.paper as paper_mod
from engine.core.orders import ENTRY, Order
from engine.venues.paper import PaperVenue

from .helpers import T0, make_ready, make_trading


def _order(n: int, now: float) -> Order:
    return Order(f"0x{n:032x}", "xyz:GOLD", 0, 110000, n % 2 == 0, "100.05" if n % 2 == 0
                 else "99.95", "0.10", False, ENTRY, now)


def test_processed_orders_the_core_forgot_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core's order book is stood in for by its ``by_cloid`` (what the venue reads): each
    order enters it after its execution, the old ones leave it as a prune would, except one
    (an order still unresolved in the core) that stays throughout."""
    monkeypatch.setattr(paper_mod, "DONE_PRUNE_AT", 16)
    core, _ = make_trading()
    make_ready(core)
    venue = PaperVenue(core, 0.0, 0.9, tid_prefix="m")
    held = core.orders.by_cloid
    now = T0
    kept = _order(3, T0)
    mine: set[str] = set()  # (the core may place orders of its own on these quotes)
    peak = 0
    for n in range(1, 400):
        now += 10.0
        core.on_bbo(0, 10 + n, 99.99, 100.0, 100.01, 100.0, now)
        o = _order(n, now)
        venue.submit(o, now)
        assert venue.on_timer(now) == 1
        core.drain()
        held[o.cloid] = o  # the core holds it ...
        mine.add(o.cloid)
        for old in [c for c in held if c in mine and c != kept.cloid][:-5]:
            del held[old]  # ... and keeps its 5 most recent ones (and the unresolved one)
        peak = max(peak, len(venue._done))  # noqa: SLF001
        for cloid in mine & held.keys():  # every order the core holds is still answered
            assert venue.order_status(cloid)["status"] == "order", cloid
    assert kept.cloid in held
    assert venue.order_status(kept.cloid)["order"]["order"]["cloid"] == kept.cloid
    assert peak <= 2 * 16 + 1  # bounded (it held all 399 before)
    assert venue.order_status(_order(1, T0).cloid) == {"status": "unknownOid"}  # forgotten
