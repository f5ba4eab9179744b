"""Time-based exponentially weighted moving average (wall-clock time constant, not per message).

The predecessor advanced its EWMAs once per *any* WebSocket message, so their effective time
constants depended on the total message rate (its latent bug L5). Here each sample is weighted by
the wall-clock time elapsed since the previous sample of the same series:
``alpha = 1 - exp(-dt / tau)``; the first sample initialises the average.
"""

from __future__ import annotations

import math


class TimeEwma:
    """An EWMA whose memory is ``tau_ms`` of wall-clock time."""

    __slots__ = ("tau_ms", "value", "last_ms", "samples")

    def __init__(self, tau_ms: float) -> None:
        if tau_ms <= 0:
            raise ValueError("tau_ms must be > 0")
        self.tau_ms = tau_ms
        self.value: float | None = None
        self.last_ms = 0.0
        self.samples = 0

    def update(self, x: float, now_ms: float) -> float:
        """Fold sample ``x`` taken at ``now_ms`` into the average and return the new value."""
        v = self.value
        if v is None:
            self.value = x
        else:
            dt = now_ms - self.last_ms
            if dt > 0:
                alpha = 1.0 - math.exp(-dt / self.tau_ms)
                self.value = v + alpha * (x - v)
        self.last_ms = now_ms
        self.samples += 1
        return self.value  # type: ignore[return-value]
