"""Per-signer nonce allocation and the local-vs-server clock drift check (docs/reference/hyperliquid-protocol.md §11).

The exchange keeps, per signer (the agent address), a set of the highest nonces; a new nonce
must be above the smallest of them, never repeat, and lie within about a day of block time.
The recommended scheme, used here: nonce = unix ms, one counter per signer fast-forwarded to
now, ``next(now_ms) = max(last + 1, now_ms)``.

:class:`NonceAllocator` is synchronous (no awaits), so Trio tasks sharing one allocator cannot
interleave inside :meth:`~NonceAllocator.next`: every caller gets a distinct, strictly larger
nonce even when the clock stalls or steps backwards. Use exactly one allocator per signer per
process. Drift: warn at 2 s and refuse to trade at 5 s between local and server clocks.
"""

from __future__ import annotations

import enum
import logging
from typing import Final

import attrs

log = logging.getLogger(__name__)

DRIFT_WARN_MS: Final = 2_000
DRIFT_REFUSE_MS: Final = 5_000
_U64_LIMIT: Final = 1 << 64


class NonceAllocator:
    """Strictly increasing ms nonces for one signer: ``max(last + 1, now_ms)``."""

    __slots__ = ("_last",)

    def __init__(self, last: int = 0) -> None:
        if type(last) is not int or last < 0:
            raise ValueError(f"last must be an int ≥ 0, got {last!r}")
        self._last = last

    @property
    def last(self) -> int:
        """The most recently issued nonce (the initial ``last`` before any)."""
        return self._last

    def next(self, now_ms: int) -> int:
        """The next nonce: ``now_ms`` if it is above the last one, else ``last + 1``."""
        if type(now_ms) is not int:
            raise ValueError(f"now_ms must be an int ms timestamp, got {now_ms!r}")
        last = self._last
        n = now_ms if now_ms > last else last + 1
        if n >= _U64_LIMIT:
            raise ValueError(f"nonce {n} does not fit in 64 bits")
        self._last = n
        return n

    def lead_ms(self, now_ms: int) -> int:
        """How far the last nonce is ahead of ``now_ms`` (> 0 after bursts or clock steps back)."""
        return self._last - now_ms

    def __repr__(self) -> str:
        return f"NonceAllocator(last={self._last})"


class Drift(enum.Enum):
    OK = "ok"
    WARN = "warn"
    REFUSE = "refuse"


@attrs.frozen(slots=True)
class DriftCheck:
    """Local minus server clock in ms, and the verdict."""

    drift_ms: int
    verdict: Drift

    @property
    def ok_to_trade(self) -> bool:
        return self.verdict is not Drift.REFUSE


class ClockDriftError(RuntimeError):
    """The local clock is too far from the server's for nonces to be trusted."""


def check_drift(
    local_ms: int,
    server_ms: int,
    *,
    warn_ms: int = DRIFT_WARN_MS,
    refuse_ms: int = DRIFT_REFUSE_MS,
) -> DriftCheck:
    """Classify ``|local − server|``: ≥ ``refuse_ms`` REFUSE, ≥ ``warn_ms`` WARN, else OK."""
    drift = local_ms - server_ms
    mag = abs(drift)
    verdict = Drift.REFUSE if mag >= refuse_ms else Drift.WARN if mag >= warn_ms else Drift.OK
    return DriftCheck(drift, verdict)


def ensure_clock_ok(
    local_ms: int,
    server_ms: int,
    *,
    warn_ms: int = DRIFT_WARN_MS,
    refuse_ms: int = DRIFT_REFUSE_MS,
) -> DriftCheck:
    """:func:`check_drift`, logging a warning on WARN and raising :class:`ClockDriftError`
    on REFUSE."""
    c = check_drift(local_ms, server_ms, warn_ms=warn_ms, refuse_ms=refuse_ms)
    if c.verdict is Drift.REFUSE:
        raise ClockDriftError(
            f"local clock is {c.drift_ms} ms off the server's (refuse at ±{refuse_ms} ms): "
            "fix time sync before trading"
        )
    if c.verdict is Drift.WARN:
        log.warning("local clock is %d ms off the server's (warn at ±%d ms)", c.drift_ms, warn_ms)
    return c
