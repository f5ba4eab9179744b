"""A restart counts only the flattens that really failed (issue 9 item 3, found by the stateful
machine): a flatten that never reached the venue (not sent while the socket was down) is no
failed flatten live, and must not become one when the journal is restored — otherwise a
restart after a reconnect during an exit brings the flatten-failure latch closer (or trips it)
for a position whose flattens the venue never refused."""

from __future__ import annotations

from pathlib import Path

from engine.core.intents import Intent, Record
from engine.io.journal import load_journal, restore
from engine.io.records import RecordWriter
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore
from fsm import order as ofsm

from .helpers import T0, make_trading
from .test_reconcile_reconnect import (
    COINS,
    GOLD,
    HOLD,
    NO_MATCH,
    open_position,
    placed,
    reconnect,
    trade_core,
)


def journaling(core: TradingCore) -> list[Record]:
    """Keep every record the core emits from now on (as the shell's writer would)."""
    records: list[Record] = []
    drain = core.drain

    def keep() -> list[Intent]:
        out = drain()
        records.extend(it for it in out if isinstance(it, Record))
        return out

    core.drain = keep  # type: ignore[method-assign]
    return records


def restored(tmp: Path, records: list[Record], now: float) -> TradingCore:
    w = RecordWriter(str(tmp), clock=lambda: now)
    for r in records:
        w.write(r.kind, r.ts_ms, r.record)
    w.close()
    core, _ = make_trading(HOLD, coins=COINS)
    restore(core, load_journal(str(tmp), now), now)
    return core


def test_a_flatten_not_sent_while_the_socket_was_down_is_not_counted_after_a_restart(
        tmp_path: Path) -> None:
    core = trade_core(max_flatten_failures=3)
    records = journaling(core)
    open_position(core, GOLD, T0 + 10)
    core.on_housekeeping(T0 + 21_000)  # the time stop
    [f1] = placed(core)
    core.on_disconnect(T0 + 21_001)
    core.on_send_failed(f1.cloid, T0 + 21_002, "not sent", link_down=True)
    assert f1.state == ofsm.EXPIRED and core.book.positions[GOLD].flatten_failures == 0
    reconnect(core, T0 + 21_100)
    core.on_housekeeping(T0 + 21_200)
    [f2] = placed(core)
    core.on_sent(f2.cloid, T0 + 21_201)
    core.on_post_result(f2.cloid, {"error": NO_MATCH}, T0 + 21_202)  # really unfilled
    assert core.book.positions[GOLD].flatten_failures == 1
    core.drain()
    again = restored(tmp_path, records, T0 + 30_000)
    p = again.book.positions[GOLD]
    assert p.has_exposure
    assert p.flatten_failures == 1  # the one the venue left unfilled; not the unsent one


def test_journals_without_the_failure_field_count_as_before(tmp_path: Path) -> None:
    core = trade_core(max_flatten_failures=3)
    records = journaling(core)
    open_position(core, GOLD, T0 + 10)
    core.on_housekeeping(T0 + 21_000)
    [f1] = placed(core)
    core.on_sent(f1.cloid, T0 + 21_001)
    core.on_post_result(f1.cloid, {"error": NO_MATCH}, T0 + 21_002)
    core.drain()
    for r in records:
        r.record.pop("failure", None)  # a journal written before the field existed
    again = restored(tmp_path, records, T0 + 30_000)
    assert again.book.positions[GOLD].flatten_failures == 1
