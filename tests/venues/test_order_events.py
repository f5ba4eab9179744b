"""The Hyperliquid adapter's order dialect: venue answers become neutral order reports.

The classifiers themselves are tested in ``tests/fsm`` (they moved here from ``fsm/order.py``);
these tests pin the translation into :class:`~engine.core.neutral.OrderReport` and the reject
texts → :class:`~engine.core.neutral.RejectReason` mapping that replaced the core's string
matching.
"""

from __future__ import annotations

import pytest

from engine.core.neutral import OrderReport, RejectReason
from engine.core.risk import BENIGN_REJECTS
from engine.venues.hyperliquid.order_events import (
    is_benign_reject,
    post_report,
    reject_reason,
    status_report,
    update_report,
)
from fsm import order as ofsm

# The substring rule the core applied before the move (engine/core/risk.py at 6c40aeb): the
# reference the new reason-based rule must agree with on the venue's real texts.
_OLD_BENIGN_MARKERS = (
    "iocCancelRejected",
    "reduceOnlyRejected",
    "minTradeNtlRejected",
    "Order could not immediately match",
    "Reduce only order would increase position",
    "Order has zero size",
    "Order must have minimum value",
)

# Reject texts the venue really sends (hyperliquid-protocol.md, recorded answers, sim).
_TEXTS = (
    ("Order could not immediately match against any resting orders. asset=110027",
     RejectReason.NO_LIQUIDITY),
    ("Order could not immediately match against any resting orders.", RejectReason.NO_LIQUIDITY),
    ("Order must have minimum value of $10. asset=110026", RejectReason.BELOW_MIN_NOTIONAL),
    ("Order must have minimum value of $10.", RejectReason.BELOW_MIN_NOTIONAL),
    ("Reduce only order would increase position. asset=110026", RejectReason.REDUCE_ONLY),
    ("Order has zero size", RejectReason.ZERO_SIZE),
    ("Insufficient margin to place order. asset=1", RejectReason.INSUFFICIENT_BALANCE),
    ("Price must be divisible by tick size. asset=110026", RejectReason.INVALID_PRICE),
    ("Order would increase open interest while open interest is capped",
     RejectReason.VENUE_ERROR),
    ("Post only order would have immediately matched, bbo was 1@2", RejectReason.VENUE_ERROR),
    ("Invalid asset id. asset=123456", RejectReason.VENUE_ERROR),
    ("L1 error", RejectReason.VENUE_ERROR),
    ("", RejectReason.VENUE_ERROR),
)


@pytest.mark.parametrize(("text", "reason"), _TEXTS)
def test_reject_texts_map_to_neutral_reasons(text: str, reason: RejectReason) -> None:
    assert reject_reason(text) is reason


@pytest.mark.parametrize("text", [t for t, _ in _TEXTS] + list(_OLD_BENIGN_MARKERS))
def test_benign_by_reason_agrees_with_the_old_substring_rule(text: str) -> None:
    old = any(marker in text for marker in _OLD_BENIGN_MARKERS)
    assert is_benign_reject(text) is old
    assert (reject_reason(text) in BENIGN_REJECTS) is old


def test_post_answers_become_reports() -> None:
    filled = post_report({"filled": {"totalSz": "0.2", "avgPx": "104.63", "oid": 7}}, "0.2")
    assert filled == OrderReport(ofsm.FILL_COMPLETE, "filled", venue_order_id=7, filled_qty=0.2,
                                 avg_px=104.63)
    msg = "Insufficient margin to place order. asset=1"
    assert post_report({"error": msg}, "1") == OrderReport(
        ofsm.REJECT, "error", reason=RejectReason.INSUFFICIENT_BALANCE, message=msg)
    ioc = "Order could not immediately match against any resting orders. asset=1"
    assert post_report({"error": ioc}, "1") == OrderReport(
        ofsm.EXPIRE, "error", reason=RejectReason.NO_LIQUIDITY, message=ioc)
    assert post_report(None, "1") == OrderReport(ofsm.LOSE_CONTACT, "timeout")
    assert post_report("waitingForFill", "1") == OrderReport(ofsm.ACK_RESTING, "waitingForFill")
    bad = post_report({"filled": {"totalSz": "junk", "oid": True}}, "1")
    assert bad.filled_qty is None and bad.venue_order_id is None


def test_order_updates_become_reports() -> None:
    assert update_report("open", 9, "0.15", "0.2") == OrderReport(
        ofsm.FILL_PARTIAL, "open", venue_order_id=9, filled_qty=pytest.approx(0.05))
    assert update_report("filled", None, "0", "0.2").filled_qty == 0.2
    assert update_report("open", None, None, "0.2").filled_qty is None
    assert update_report("open", None, "0.3", "0.2").filled_qty is None  # remaining > original
    odd = update_report("someNewStatus", None, "0.2", "0.2")
    assert odd.unrecognized and odd.event == ofsm.CANCEL_CONFIRMED  # fail safe, flagged
    assert not update_report("marginCanceled", None, "0.2", "0.2").unrecognized


def test_status_replies_become_reports() -> None:
    assert status_report({"status": "unknownOid"}) == OrderReport(ofsm.RESOLVE_NOT_FOUND,
                                                                  "orderStatus")
    reply = {"status": "order", "order": {"order": {"oid": 5, "sz": "0.1", "origSz": "0.3"},
                                          "status": "canceled"}}
    assert status_report(reply) == OrderReport(ofsm.CANCEL_CONFIRMED, "orderStatus",
                                               venue_order_id=5, filled_qty=pytest.approx(0.2))
    # unreadable: nothing about the state (ask again), but what can be read is kept
    torn = {"status": "order", "order": {"order": {"oid": 5, "sz": "0", "origSz": "1"}}}
    assert status_report(torn) == OrderReport(None, "orderStatus", venue_order_id=5,
                                              filled_qty=1.0)
    assert status_report(None).event is None
