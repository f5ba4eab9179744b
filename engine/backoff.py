"""Exponential back-off with full jitter: the delay before reconnect/retry attempt ``n``.

Pure (the random source is injected) so tests can pin it; used by the Bybit adapter, meant as
the one implementation the other reconnect loops move to (issue 11).
"""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    base_s: float,
    cap_s: float,
    jitter_s: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """``min(cap, base * 2**attempt) + U(0, jitter)`` seconds; ``attempt`` counts from 0."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    delay = min(cap_s, base_s * (2.0 ** min(attempt, 62)))
    return delay + (jitter_s * rand() if jitter_s > 0 else 0.0)
