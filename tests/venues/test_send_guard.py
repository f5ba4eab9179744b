"""Issue 9 item 8: orders coalesced in one socket read are re-checked against the hard stop
and the kill switch right before they are signed and written.

One socket read carries several frames. The first entry goes out right after its frame; later
entries wait in the executor for the end of the read (coalescing). A later frame of the same
read latches the hard stop (a fill of an order this engine never placed) or turns the kill
switch on: the waiting entries are never signed (reported not sent, abandoned by the core),
while the reduce-only flatten that the latch produced still goes out.
"""

from __future__ import annotations

from typing import Any

import trio

from engine.config import VenueConfig, structure_config
from engine.core.orders import ENTRY, FLATTEN, CloidFactory, Order
from engine.core.types import MarketSpec
from engine.strategies.dislocation import DislocationStrategy
from engine.venues.hyperliquid.client import HyperliquidFeed
from engine.venues.hyperliquid.execution import OrderExecutor
from engine.venues.hyperliquid.nonce import NonceAllocator
from engine.venues.hyperliquid.order_events import HyperliquidTradingCore as TradingCore
from engine.venues.hyperliquid.signing import Signer
from fsm import order as ofsm

from .conftest import FAST, Recorder, Scripted, poll_until

SDK_TEST_KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
T0 = 1_800_000_000_000.0
COINS = [f"xyz:C{i}" for i in range(4)]


RELAXED: dict[str, Any] = {
    "mode": "trade",
    "detector": {"session_aware": False, "min_consecutive_moves": 0,
                 "oracle_direction_filter": False, "min_edge_above_baseline_bps": 0.0,
                 "min_confidence": 0.0, "min_quote_lag_ms": 0.0},
}


def make_core() -> TradingCore:
    cfg = structure_config(RELAXED, "test")
    specs = [MarketSpec(i, c, 110000 + i, 2) for i, c in enumerate(COINS)]
    obs = DislocationStrategy(specs, cfg.gates, cfg.detector, cfg.sizing, cfg.followups.offsets_ms,
                      mode=cfg.mode, boot_id="t")
    core = TradingCore(obs, cfg, cloids=CloidFactory(b"\x02" * 8))
    for i in range(len(COINS)):
        core.on_bbo(i, 1, 99.99, 100.0, 100.01, 100.0, T0)
        core.on_ctx(i, 100.0, 100.0, T0)
    core.set_ready("user_channels", True)
    core.on_reconcile({}, [], T0)
    core.on_account_values(10_000.0, 0.0, T0)  # trade mode: no entry without a known equity
    core.drain()
    return core


def entry(core: TradingCore, idx: int) -> Order:
    """The entry the core's own gates create on a dislocation (the oracle jumps above the
    ask): a buy signal."""
    core.on_ctx(idx, 100.3, 100.3, T0 + 1 + idx)
    (it,) = core.take_orders()
    assert it.order.purpose == ENTRY
    return it.order


def bbo(coin: str) -> dict[str, Any]:
    return {"channel": "bbo", "data": {"coin": coin, "time": 1, "bbo": [
        {"px": "99.99", "sz": "100", "n": 1}, {"px": "100.01", "sz": "100", "n": 1}]}}


async def _run_read(trigger: str) -> tuple[TradingCore, list[dict[str, Any]], list[Any],
                                            list[Order]]:
    """Frames C0, C1, C3, C2 in ONE read: C0, C1 and C3 submit entries, then C2 raises
    ``trigger`` (and submits the flattens it produced)."""
    core = make_core()
    scripted = Scripted()
    not_sent: list[tuple[tuple[str, ...], str]] = []
    entries: list[Order] = []

    def on_not_sent(cloids: list[str], reason: str) -> None:
        not_sent.append((tuple(cloids), reason))
        for c in cloids:
            core.on_send_failed(c, T0 + 5, reason)

    def on_sent(cloids: list[str]) -> None:
        for c in cloids:
            core.on_sent(c, T0 + 5)

    class Handler(Recorder):
        def on_bbo(self, coin: str, time_ms: int, *a: Any) -> None:
            i = COINS.index(coin)
            if i == 2:
                if trigger == "foreign_fill":
                    # a fill of an order this engine did not place: the hard stop latches
                    # and flattens it reduce-only
                    core.on_fill("t1", None, "xyz:C2", True, 100.0, 0.2, 0.0, T0, T0 + 4)
                else:
                    core.on_fill("t0", None, "xyz:C2", True, 100.0, 0.2, 0.0, T0, T0 + 3)
                    core.reset_hard_stop(T0 + 3)
                    core.kill(T0 + 4, "operator")
                ex.submit([it.order for it in core.take_orders()])
            else:
                o = entry(core, i)
                entries.append(o)
                ex.submit([o])

    cfg = VenueConfig(ws_url="ws://scripted/ws", **FAST)  # type: ignore[arg-type]
    feed = HyperliquidFeed(cfg, COINS, Handler(), connector=scripted.connect,
                           send_coalesce_s=10.0)  # type: ignore[arg-type]
    ex = OrderExecutor(feed, Signer.from_hex(SDK_TEST_KEY), NonceAllocator(), is_mainnet=True,
                       post_timeout_s=2.0, clock=lambda: T0, on_sent=on_sent,
                       on_result=lambda c, s: None, on_not_sent=on_not_sent,
                       entry_guard=core.entries_blocked)
    async with trio.open_nursery() as n:
        n.start_soon(feed.run)
        await feed.wait_connected()
        conn = scripted.conns[0]
        await poll_until(lambda: conn.writes >= 1)  # the subscriptions
        conn.push(*[bbo(COINS[i]) for i in (0, 1, 3, 2)])
        await poll_until(lambda: len(conn.posts()) >= 2 and feed.stats.batches >= 1)
        await trio.sleep(0.05)
        posts = conn.posts()
        n.cancel_scope.cancel()
    return core, posts, not_sent, entries


def _orders(post: dict[str, Any]) -> list[dict[str, Any]]:
    return post["request"]["payload"]["action"]["orders"]  # type: ignore[no-any-return]


async def test_a_latch_raised_by_an_earlier_frame_stops_the_coalesced_entries() -> None:
    core, posts, not_sent, entries = await _run_read("foreign_fill")
    e0, e1, e3 = entries
    assert core.hard_stop.latched
    assert len(posts) == 2
    # the first entry left right after its frame, before the latch
    assert [o["c"] for o in _orders(posts[0])] == [e0.cloid]
    # the coalesced write carries only the reduce-only flatten
    (flat,) = _orders(posts[1])
    assert flat["r"] is True and flat["b"] is False
    assert core.orders.get(flat["c"]).purpose == FLATTEN  # type: ignore[union-attr]
    # both waiting entries were held back before signing, and the core abandoned them
    assert not_sent == [((e1.cloid, e3.cloid), "not sent: hard_stop before signing")]
    assert e1.state == ofsm.EXPIRED and e3.state == ofsm.EXPIRED
    assert e0.state == ofsm.SENT


async def test_the_kill_switch_turned_on_mid_read_stops_the_coalesced_entries() -> None:
    core, posts, not_sent, entries = await _run_read("kill")
    e0, e1, e3 = entries
    assert core.killed and not core.hard_stop.latched
    assert [o["c"] for o in _orders(posts[0])] == [e0.cloid]
    flat_orders = [o for p in posts[1:] for o in _orders(p)]
    assert flat_orders and all(o["r"] is True for o in flat_orders)
    assert not_sent == [((e1.cloid, e3.cloid), "not sent: killed before signing")]


def test_entries_blocked_reads_the_latch_and_the_kill_switch() -> None:
    core = make_core()
    assert core.entries_blocked() is None
    core.kill(T0, "test")
    assert core.entries_blocked() == "killed"
    core.on_fill("t9", None, "xyz:C0", True, 100.0, 0.2, 0.0, T0, T0)
    assert core.entries_blocked() == "hard_stop"
