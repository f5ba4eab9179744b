"""The Hyperliquid feed's reconnect back-off goes through the engine's one implementation
(:func:`engine.backoff.backoff_delay`) and gives exactly the delays of the formula it replaced:
``min(max, base · 2**min(max(attempt-1, 0), 32)) + rng.uniform(0, jitter)`` (one draw of the
feed's random source per attempt, none without jitter)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import backoff
from engine.config import VenueConfig
from engine.venues.hyperliquid import session
from engine.venues.hyperliquid.client import HyperliquidFeed


def old_delay(cfg: VenueConfig, attempt: int, rng: random.Random) -> float:
    """The feed's own formula before the shared helper (kept here as the reference)."""
    exp = min(max(attempt - 1, 0), 32)
    base = min(cfg.reconnect_max_s, cfg.reconnect_base_s * (2.0**exp))
    jitter = rng.uniform(0.0, cfg.reconnect_jitter_s) if cfg.reconnect_jitter_s else 0.0
    return base + jitter


positive = st.floats(min_value=1e-6, max_value=1e4, allow_nan=False, allow_infinity=False)
jitters = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=100.0))


@settings(max_examples=300, deadline=None)
@given(base=positive, cap=positive, jitter=jitters, seed=st.integers(0, 2**32 - 1),
       attempts=st.lists(st.one_of(st.integers(0, 70), st.integers(0, 10**9)), min_size=1,
                         max_size=12))
def test_feed_backoff_equals_the_old_formula(base: float, cap: float, jitter: float, seed: int,
                                             attempts: list[int]) -> None:
    cfg = VenueConfig(reconnect_base_s=base, reconnect_max_s=cap, reconnect_jitter_s=jitter)
    feed = HyperliquidFeed(cfg, ["xyz:GOLD"], object(), rng=random.Random(seed))  # type: ignore[arg-type]
    ref = random.Random(seed)
    for attempt in attempts:
        # exact equality: same float operations, same draws of the same random source
        assert feed._backoff_delay(attempt) == old_delay(cfg, attempt, ref)


def test_the_feed_uses_the_shared_backoff(monkeypatch) -> None:
    """The delay is computed by engine.backoff.backoff_delay (no private copy left)."""
    assert session.backoff_delay is backoff.backoff_delay
    calls: list[tuple[int, float, float, float]] = []
    real = backoff.backoff_delay

    def spy(attempt: int, base_s: float, cap_s: float, jitter_s: float = 0.0,
            rand=random.random) -> float:
        calls.append((attempt, base_s, cap_s, jitter_s))
        return real(attempt, base_s, cap_s, jitter_s, rand)

    monkeypatch.setattr(session, "backoff_delay", spy)
    cfg = VenueConfig(reconnect_base_s=0.5, reconnect_max_s=8.0, reconnect_jitter_s=0.0)
    feed = HyperliquidFeed(cfg, ["xyz:GOLD"], object())  # type: ignore[arg-type]
    assert [feed._backoff_delay(a) for a in (1, 2, 3, 5, 6)] == [0.5, 1.0, 2.0, 8.0, 8.0]
    assert calls == [(0, 0.5, 8.0, 0.0), (1, 0.5, 8.0, 0.0), (2, 0.5, 8.0, 0.0),
                     (4, 0.5, 8.0, 0.0), (5, 0.5, 8.0, 0.0)]
