"""Issue 9 item 9 (nonces): a restart within the same millisecond, or after the wall clock
stepped back, never reuses a nonce. The allocator persists a high-water mark (a reservation
``LEASE_MS`` ahead) that is always ≥ every nonce it issued, and a new allocator continues
above it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.app import StartupError
from engine.config import structure_config
from engine.core.types import MarketSpec
from engine.io.records import RecordWriter
from engine.trading_app import NONCE_FILE_PREFIX, TradingApp
from engine.venues.hyperliquid.nonce import (
    LEASE_MS,
    NonceAllocator,
    NonceStore,
    NonceStoreError,
)

T = 1_769_339_470_576
KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
AGENT = "0x14791697260e4c9a71f18484c9f997b308e59325"  # address of KEY
MASTER = "0x1111111111111111111111111111111111111111"


def test_a_restart_within_the_same_millisecond_never_reuses_a_nonce(tmp_path: Path) -> None:
    path = tmp_path / "NONCE"
    a = NonceAllocator(store=NonceStore(path), now_ms=T)
    first = [a.next(T) for _ in range(3)]  # T, T+1, T+2: a burst within one ms
    # the process dies (no clean shutdown) and the next one starts in the same millisecond
    b = NonceAllocator(store=NonceStore(path), now_ms=T)
    n = b.next(T)
    assert n > max(first)


def test_a_restart_after_the_wall_clock_stepped_back_never_reuses_a_nonce(
        tmp_path: Path) -> None:
    path = tmp_path / "NONCE"
    a = NonceAllocator(store=NonceStore(path), now_ms=T)
    issued = [a.next(T + 1000 * k) for k in range(10)]
    # NTP steps the clock back an hour; the engine restarts
    back = T - 3_600_000
    b = NonceAllocator(store=NonceStore(path), now_ms=back)
    later = [b.next(back + k) for k in range(5)]
    assert min(later) > max(issued)
    assert later == sorted(set(later))


def test_without_a_store_a_restart_would_reuse_the_nonce() -> None:
    """What the persisted mark prevents (the allocator alone only orders one process)."""
    assert NonceAllocator().next(T) == NonceAllocator().next(T)


def test_the_mark_is_reserved_ahead_and_passing_it_writes_first(tmp_path: Path) -> None:
    store = NonceStore(tmp_path / "NONCE")
    a = NonceAllocator(store=store, now_ms=T)
    assert store.load() == T + LEASE_MS == a.reserved
    # the clock stalls while more nonces than the lease are issued: each nonce past the
    # reservation is covered on disk before it is returned
    for _ in range(LEASE_MS + 3):
        n = a.next(T)
        assert n <= store.load()
    assert a.reserved == store.load()


def test_renewal_is_due_at_half_a_lease_and_never_lowers_the_mark(tmp_path: Path) -> None:
    store = NonceStore(tmp_path / "NONCE")
    a = NonceAllocator(store=store, now_ms=T)
    assert a.renew_target(T) is None
    assert a.renew_target(T + LEASE_MS // 2) is None  # half a lease left: not yet
    target = a.renew_target(T + LEASE_MS // 2 + 1)
    assert target == T + LEASE_MS // 2 + 1 + LEASE_MS
    assert store.save(target) == target
    a.reserved_to(target)
    assert a.reserved == target
    # a late, lower write (the renewal thread racing a synchronous reservation) is ignored
    assert store.save(T) == target and store.load() == target
    a.reserved_to(T)
    assert a.reserved == target


def test_a_damaged_mark_is_refused_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "NONCE"
    path.write_text("17x\n")
    with pytest.raises(NonceStoreError, match="not a non-negative integer"):
        NonceAllocator(store=NonceStore(path), now_ms=T)


def test_an_unwritable_mark_fails_the_order_not_the_process(tmp_path: Path) -> None:
    store = NonceStore(tmp_path / "NONCE")
    a = NonceAllocator(store=store, now_ms=T)
    (tmp_path / "NONCE").unlink()
    store.path = tmp_path / "missing" / "dir" / "NONCE"
    (tmp_path / "missing").write_text("a file where a directory should be")
    with pytest.raises(ValueError, match="cannot write the nonce high-water mark"):
        a.next(T + LEASE_MS + 1)  # past the reservation: must persist first, cannot


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["issue", "restart", "renew"]),
                          st.integers(-120_000, 120_000), st.integers(1, 30)),
                min_size=1, max_size=30))
def test_nonces_strictly_increase_across_restarts_and_clock_steps(
        tmp_path_factory: pytest.TempPathFactory,
        steps: list[tuple[str, int, int]]) -> None:
    path = tmp_path_factory.mktemp("n") / "NONCE"
    now = T
    a = NonceAllocator(store=NonceStore(path), now_ms=now)
    issued: list[int] = []
    for op, step_ms, count in steps:
        now += step_ms  # the wall clock moves either way
        if op == "restart":
            a = NonceAllocator(store=NonceStore(path), now_ms=now)
        elif op == "renew":
            target = a.renew_target(now)
            if target is not None:
                a.reserved_to(NonceStore(path).save(target))
        else:
            issued.extend(a.next(now) for _ in range(count))
        assert not issued or NonceStore(path).load() >= issued[-1]
    assert issued == sorted(set(issued))


# ------------------------------------------------------------------ the trading shell


def _app(tmp_path: Path, clock_ms: float) -> TradingApp:
    cfg = structure_config({
        "mode": "trade", "account": {"address": MASTER},
        "venue": {"ws_url": "ws://127.0.0.1:9/ws", "info_url": "http://127.0.0.1:9/info",
                  "network": "sim"},
        "records": {"dir": str(tmp_path / "data")},
    }, "test")
    app = TradingApp(cfg, clock=lambda: clock_ms)
    app.preflight()
    writer = RecordWriter(tmp_path / "data")
    app.writer = writer
    app.build([MarketSpec(0, "xyz:GOLD", 110_000, 2)], writer)
    return app


@pytest.fixture
def agent_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_AGENT_KEY", KEY)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


def test_the_trade_shell_persists_the_mark_per_agent_in_the_state_dir(
        tmp_path: Path, agent_key: None) -> None:
    app1 = _app(tmp_path, float(T))
    assert app1.nonces is not None
    used = [app1.nonces.next(T) for _ in range(4)]
    mark = tmp_path / "data" / f"{NONCE_FILE_PREFIX}{AGENT}"
    assert int(mark.read_text()) >= max(used)
    # restarted after the clock stepped back 10 minutes
    app2 = _app(tmp_path, float(T - 600_000))
    assert app2.nonces is not None and app2.nonces.next(T - 600_000) > max(used)


def test_the_trade_shell_refuses_a_damaged_mark(tmp_path: Path, agent_key: None) -> None:
    d = tmp_path / "data"
    d.mkdir()
    (d / f"{NONCE_FILE_PREFIX}{AGENT}").write_text("garbage")
    with pytest.raises(StartupError, match="nonce high-water mark"):
        _app(tmp_path, float(T))
