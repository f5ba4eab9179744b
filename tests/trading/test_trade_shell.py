"""Trade-mode shell order of work (engine/trading_app.py: TradingHandler, LiveBackend, execute).

The real ``TradingApp`` (core, handler, ``LiveBackend``, ``OrderExecutor``, ``HyperliquidFeed``,
record writer, followups) on an in-memory WebSocket: one socket read carrying three dislocated
``activeAssetCtx`` frames must put the first order on the wire right after its frame and the two
others in ONE more action at the end of the read, and nothing else before them — no journal
record, no signal record, no followup — all of which is written right after the last write,
complete and in order (each order's ``created`` before its ``transmit``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from hyperliquid.utils import signing as sdk

from engine.config import structure_config
from engine.core.types import MarketSpec
from engine.io.records import RecordWriter
from engine.trading_app import LiveBackend, TradingApp

KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
AGENT = "0x14791697260e4c9a71f18484c9f997b308e59325"
MASTER = "0x1111111111111111111111111111111111111111"
COINS = ("xyz:AAA", "xyz:BBB", "xyz:CCC")


class Conn:
    """In-memory connection: ``push`` makes the next ``receive_batch`` return those frames;
    every ``send_texts`` calls ``on_write(texts)`` first (the state at the moment of the write)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent: list[str] = []
        self.on_write: Any = None
        self._tx, self._rx = trio.open_memory_channel[list[str]](100)

    def push(self, *frames: dict[str, Any]) -> None:
        self._tx.send_nowait([json.dumps(f) for f in frames])

    async def receive_batch(self) -> list[str]:
        return await self._rx.receive()

    async def send_text(self, text: str) -> None:
        await self.send_texts([text])

    async def send_texts(self, texts: list[str]) -> None:
        if self.on_write is not None:
            self.on_write(texts)
        self.sent.extend(texts)
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        return None

    def posts(self) -> list[dict[str, Any]]:
        return [m for m in map(json.loads, self.sent) if m.get("method") == "post"]


def bbo(coin: str, t: int) -> dict[str, Any]:
    return {"channel": "bbo", "data": {"coin": coin, "time": t, "bbo": [
        {"px": "99.99", "sz": "100", "n": 1}, {"px": "100.01", "sz": "100", "n": 1}]}}


def ctx(coin: str, oracle: str) -> dict[str, Any]:
    return {"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": {
        "funding": "0", "openInterest": "1", "prevDayPx": "100", "dayNtlVlm": "1",
        "premium": None, "oraclePx": oracle, "markPx": oracle, "midPx": None,
        "impactPxs": None, "dayBaseVlm": "1"}}}


async def poll_until(pred: Any) -> None:
    while True:
        if pred():
            return
        await trio.sleep(0.001)


def lines(root: Path, kind: str) -> list[dict[str, Any]]:
    return [json.loads(x) for p in sorted(root.glob(f"{kind}_*.jsonl"))
            for x in p.read_text().splitlines()]


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TradingApp:
    monkeypatch.setenv("ENGINE_AGENT_KEY", KEY)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    cfg = structure_config({
        "mode": "trade",
        "venue": {"ws_url": "ws://127.0.0.1:9/ws", "info_url": "http://127.0.0.1:9/info",
                  "network": "sim", "dex": "xyz", "ctx_stale_ms": 0.0, "bbo_stale_ms": 0.0,
                  "post_timeout_s": 5.0},
        "records": {"dir": str(tmp_path / "data")},
        "account": {"address": MASTER},
        "detector": {"session_aware": False, "min_consecutive_moves": 0,
                     "oracle_direction_filter": False, "min_edge_above_baseline_bps": 0.0,
                     "min_confidence": 0.0, "min_quote_lag_ms": 0.0},
        "trading": {"max_total_notional": 10_000.0, "reconcile_interval_s": 3600.0},
    }, "test")
    a = TradingApp(cfg)
    a.preflight()
    writer = RecordWriter(tmp_path / "data")
    a.writer = writer
    a.build([MarketSpec(i, c, 110_000 + i, 2) for i, c in enumerate(COINS)], writer)
    return a


async def test_orders_go_out_before_any_bookkeeping(app: TradingApp, tmp_path: Path) -> None:
    data = tmp_path / "data"
    conns: list[Conn] = []

    async def connect(url: str, timeout: float) -> Conn:  # noqa: ASYNC109
        conns.append(Conn(url))
        return conns[-1]

    assert app.feed is not None and app.trading is not None and app.scheduler is not None
    app.feed._connector = connect  # type: ignore[assignment]
    trading, feed = app.trading, app.feed
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(feed.run)
            await feed.wait_connected()
            conn = conns[0]
            conn.push(*[bbo(c, 1) for c in COINS], *[ctx(c, "100.0") for c in COINS])
            await poll_until(lambda: trading.ready["market_data"])
            trading.set_ready("user_channels", True)
            trading.on_reconcile({}, [], app.clock())
            trading.on_account_values(10_000.0, 0.0, app.clock())  # main-dex USDC, flat dex
            app.execute(app.clock())
            assert trading.is_ready()
            followups0 = app.scheduler.book.pending_count
            at_write: list[tuple[int, int, int, int]] = []

            def on_write(texts: list[str]) -> None:
                for t in texts:
                    m = json.loads(t)
                    if m.get("method") == "post":
                        at_write.append((len(m["request"]["payload"]["action"]["orders"]),
                                         len(lines(data, "orders")), len(lines(data, "signals")),
                                         app.scheduler.book.pending_count - followups0))

            conn.on_write = on_write
            conn.push(*[ctx(c, "100.3") for c in COINS])  # ONE read, three dislocations
            await poll_until(lambda: len(lines(data, "signals")) >= 3)
            # 1 order right after its frame, 2 in one action at the end of the read; at each
            # write: no order record, no signal record, no followup yet
            assert at_write == [(1, 0, 0, 0), (2, 0, 0, 0)]
            assert isinstance(app.backend, LiveBackend) and not app.backend.bookkeeping_due
            orders = lines(data, "orders")
            assert len(orders) == 6
            seen: dict[str, list[str]] = {}
            for r in orders:
                seen.setdefault(r["cloid"], []).append(r["event"])
            assert sorted(seen.values()) == [["created", "transmit"]] * 3
            assert {r["executor_verdict"] for r in lines(data, "signals")} == {"order_created"}
            assert app.scheduler.book.pending_count - followups0 == 3
            for p in conn.posts():
                pl = p["request"]["payload"]
                assert sdk.recover_agent_or_user_from_l1_action(
                    pl["action"], pl["signature"], None, pl["nonce"], pl.get("expiresAfter"),
                    True).lower() == AGENT
            n.cancel_scope.cancel()


async def test_a_read_without_orders_does_its_bookkeeping_at_once(app: TradingApp,
                                                                  tmp_path: Path) -> None:
    """No order waiting for a write: the batch end writes records and signals itself."""
    assert app.trading is not None and app.backend is not None
    h = app.handler
    for c in COINS:
        h.on_bbo(c, 1, 99.99, 100.0, 100.01, 100.0)
        h.on_ctx(c, 100.0, 100.0)
    h.on_batch_end()
    app.trading.set_ready("user_channels", True)
    app.trading.on_reconcile({}, [], app.clock())
    app.trading.on_account_values(10_000.0, 0.0, app.clock())
    app.execute(app.clock())
    # not connected: the entry's order is refused by the executor at once (not sent)
    h.on_ctx(COINS[0], 100.3, 100.3)
    assert h.in_batch  # inside the read: nothing written yet
    assert lines(tmp_path / "data", "orders") == []
    h.on_batch_end()
    assert not h.in_batch
    data = tmp_path / "data"
    events = [r["event"] for r in lines(data, "orders")]
    assert events == ["created", "abandon"]
    assert [r["executor_verdict"] for r in lines(data, "signals")] == ["order_created"]

