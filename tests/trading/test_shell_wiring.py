"""The shell builds its venue through the registry and shares an explicit batch context
(engine/app.py, engine/trading_app.py, engine/venues/registry.py, engine/venues/base.py).

* the app's feed, executor, dead-man switch and paper depth store come from the factory
  registered under the app's ``venue_name`` (a probe factory wrapping the real Hyperliquid one
  records what the shell asked for);
* the frame batch's receive time is one :class:`~engine.venues.base.BatchContext` object
  that the handler fills and the app and the live backend read;
* the shell modules reach into no other object's private attributes (static check).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.app import ObserveApp
from engine.config import structure_config
from engine.core.types import MarketSpec
from engine.io.records import RecordWriter
from engine.trading_app import LiveBackend, TradingApp
from engine.venues import registry
from engine.venues.base import BatchContext, FeedOptions
from engine.venues.hyperliquid.client import HyperliquidFeed
from engine.venues.hyperliquid.deadman import DeadManSwitch
from engine.venues.hyperliquid.execution import OrderExecutor
from engine.venues.hyperliquid.factory import HyperliquidFactory
from engine.venues.paper import PaperVenue

KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
MASTER = "0x1111111111111111111111111111111111111111"
COINS = ("xyz:AAA", "xyz:BBB")
MARKETS = [MarketSpec(i, c, 110_000 + i, 2) for i, c in enumerate(COINS)]


class ProbeFactory(HyperliquidFactory):
    """The real Hyperliquid factory under another name, noting every piece it builds."""

    name = "hl-probe"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def market_data(self, cfg: Any, symbols: Any, handler: Any,
                    options: FeedOptions) -> HyperliquidFeed:
        feed = super().market_data(cfg, symbols, handler, options)
        self.calls.append(("market_data", (list(symbols), options, feed)))
        return feed

    def execution(self, feed: Any, *a: Any, **kw: Any) -> OrderExecutor:
        ex = super().execution(feed, *a, **kw)
        self.calls.append(("execution", (feed, ex)))
        return ex

    def dead_man(self, executor: Any, dead_man_s: float, **kw: Any) -> DeadManSwitch:
        dm = super().dead_man(executor, dead_man_s, **kw)
        self.calls.append(("dead_man", (executor, dm)))
        return dm

    def book_store(self, clock: Any) -> Any:
        store = super().book_store(clock)
        self.calls.append(("book_store", store))
        return store


@pytest.fixture
def probe() -> Iterator[ProbeFactory]:
    f = ProbeFactory()
    registry.register(f.name, f)
    yield f
    registry.unregister(f.name)


def config(tmp_path: Path, mode: str, **extra: Any) -> Any:
    doc: dict[str, Any] = {
        "mode": mode,
        "venue": {"ws_url": "ws://127.0.0.1:9/ws", "info_url": "http://127.0.0.1:9/info",
                  "network": "sim", "dex": "xyz", "send_first_at_once": False},
        "records": {"dir": str(tmp_path / "data")},
        "account": {"address": MASTER},
    }
    doc.update(extra)
    return structure_config(doc, "test")


def build(app: ObserveApp, tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path / "data")
    app.writer = writer
    app.build(MARKETS, writer)


def test_observe_builds_its_feed_through_the_registry(tmp_path: Path,
                                                      probe: ProbeFactory) -> None:
    class App(ObserveApp):
        venue_name = "hl-probe"

    app = App(config(tmp_path, "observe"))
    assert app.venue is probe
    build(app, tmp_path)
    assert [c[0] for c in probe.calls] == ["market_data"]
    symbols, options, feed = probe.calls[0][1]
    assert symbols == list(COINS) and app.feed is feed
    assert options.ws_url == app.ws_url and options.account is None
    assert options.book_store is None and options.send_first_at_once is True
    assert ObserveApp(config(tmp_path, "observe")).venue is registry.factory("hyperliquid")


def test_paper_gets_its_depth_store_and_feed_from_the_factory(tmp_path: Path,
                                                              probe: ProbeFactory) -> None:
    class App(TradingApp):
        venue_name = "hl-probe"

    app = App(config(tmp_path, "paper", paper={"walk_l2book": True}))
    build(app, tmp_path)
    assert [c[0] for c in probe.calls] == ["book_store", "market_data"]
    store = probe.calls[0][1]
    _, options, feed = probe.calls[1][1]
    assert options.book_store is store and feed.l2book is store
    assert isinstance(app.backend, PaperVenue) and app.backend.levels == store.levels
    assert app.backend.defer_bookkeeping() is False


def test_trade_gets_feed_executor_and_dead_man_from_the_factory(
        tmp_path: Path, probe: ProbeFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_AGENT_KEY", KEY)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)

    class App(TradingApp):
        venue_name = "hl-probe"

    app = App(config(tmp_path, "trade", trading={"dead_man_s": 30.0}))
    app.preflight()
    build(app, tmp_path)
    names = [c[0] for c in probe.calls]
    assert names == ["market_data", "execution", "dead_man"]
    _, options, feed = probe.calls[0][1]
    assert options.account == MASTER and options.send_first_at_once is False
    assert app.feed is feed and probe.calls[1][1] == (feed, app.executor)
    assert probe.calls[2][1] == (app.executor, app.deadman)


def test_one_batch_context_is_shared_by_handler_app_and_live_backend(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_AGENT_KEY", KEY)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    app = TradingApp(config(tmp_path, "trade"))
    app.preflight()
    build(app, tmp_path)
    assert isinstance(app.batch, BatchContext)
    assert app.handler.batch is app.batch
    assert isinstance(app.backend, LiveBackend) and app.backend.batch is app.batch
    assert app.batch.now is None and not app.handler.in_batch
    app.handler.on_bbo(COINS[0], 1, 99.99, 100.0, 100.01, 100.0)
    t = app.batch.now
    assert t is not None and app.handler.in_batch  # the read's receive time, taken once
    app.handler.on_ctx(COINS[0], 100.0, 100.0)
    assert app.batch.now == t
    app.handler.on_batch_end()
    assert app.batch.now is None and not app.handler.in_batch


ROOT = Path(__file__).resolve().parents[2]
SHELL = ["engine/app.py", "engine/trading_app.py", "engine/cli.py",
         *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "engine" / "ops").glob("*.py"))]
# a module's own helper classes sharing a private protocol (the registry's metric families
# render their children's samples)
ALLOWED = {("engine/ops/metrics.py", "_samples")}


def _private_reaches(path: str) -> list[str]:
    """``x._name`` (x not self/cls) and ``getattr(x, "_name")``: another object's privates."""
    tree = ast.parse((ROOT / path).read_text())
    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and re.fullmatch(r"_[a-z]\w*", n.attr):
            owner = n.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if (path, n.attr) not in ALLOWED:
                found.append(f"{path}:{n.lineno} .{n.attr}")
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "getattr"
              and len(n.args) >= 2 and isinstance(n.args[1], ast.Constant)
              and isinstance(n.args[1].value, str)
              and re.fullmatch(r"_[a-z]\w*", n.args[1].value)):
            found.append(f"{path}:{n.lineno} getattr {n.args[1].value}")
    return found


def test_the_shell_reaches_into_no_private_attributes() -> None:
    assert len(SHELL) > 5
    bad = [hit for p in SHELL for hit in _private_reaches(p)]
    assert bad == []


async def test_the_frame_to_order_path_enters_the_feed_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/trace_order_path.py on this checkout: from the socket read to the order's write
    the path enters client.py once (its reader) and the venue side runs one way: execution →
    outbox, never back into the feed (it used to call feed.connected, feed.request_send and
    feed.post_nowait)."""
    import importlib.util

    monkeypatch.setenv("ENGINE_AGENT_KEY", KEY)
    spec = importlib.util.spec_from_file_location("trace_order_path",
                                                  ROOT / "bench" / "trace_order_path.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tracer = await mod.trace(tmp_path)
    seq = tracer.entries
    client = "engine/venues/hyperliquid/client.py"
    assert seq[0] == client and seq.count(client) == 1
    assert "engine/venues/hyperliquid/outbox.py" in seq
    first_exec = seq.index("engine/venues/hyperliquid/execution.py")
    assert "engine/trading_app.py" not in seq[first_exec:]  # no call back into the shell
