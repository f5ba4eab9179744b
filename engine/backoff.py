"""Exponential back-off: the delay before reconnect/retry attempt ``n``, the one implementation
every retry loop uses (the Bybit adapter, the market discovery at start, the record writer's
write retries, the webhook notifier; the Hyperliquid feed's reconnects are moved here by the
``client.py`` split).

Pure (the random source is injected) so tests can pin it. ``attempt`` counts from 0: attempt 0
waits ``base``, each later one twice the one before, never more than ``cap``. Two ways to add
randomness, so that many clients retrying at once spread out:

* :func:`backoff_delay` adds ``U(0, jitter)`` on top (reconnect loops);
* :func:`backoff_equal_jitter` waits a uniform time in the upper half of the delay ("equal
  jitter": at least half the exponential delay, never more than it; the webhook notifier).
"""

from __future__ import annotations

import random
from collections.abc import Callable


def exponential_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """``min(cap, base * 2**attempt)``; ``attempt`` counts from 0 (any unit: s or ms)."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    return min(cap_s, base_s * (2.0 ** min(attempt, 62)))


def backoff_delay(
    attempt: int,
    base_s: float,
    cap_s: float,
    jitter_s: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """``min(cap, base * 2**attempt) + U(0, jitter)`` seconds; ``attempt`` counts from 0."""
    delay = exponential_delay(attempt, base_s, cap_s)
    return delay + (jitter_s * rand() if jitter_s > 0 else 0.0)


def backoff_equal_jitter(
    attempt: int,
    base_s: float,
    cap_s: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """``d/2 + U(0, d/2)`` with ``d = min(cap, base * 2**attempt)``; ``attempt`` from 0."""
    delay = exponential_delay(attempt, base_s, cap_s)
    return delay / 2.0 + (delay / 2.0) * rand()
