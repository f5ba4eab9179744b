"""The latest ``l2Book`` levels per coin: owns their time order and staleness (paper fills).

:class:`L2BookStore` keeps, per coin, the last accepted snapshot: ``(px, sz)`` bids and asks,
best first, the frame's venue ``time`` and when it was received (the store's clock, epoch ms by
default). The feed fills it (``HyperliquidFeed(..., l2book=True, l2book_store=store)``);
:class:`engine.venues.paper.PaperVenue` reads it through :meth:`L2BookStore.levels`, which is a
``LevelsProvider``.

Rules:

* an update whose ``time`` is older than the coin's last accepted one is rejected (counted,
  logged at most once a minute), like a regressing bbo; an equal time replaces the snapshot;
* levels are checked again (:func:`~engine.venues.hyperliquid.wire.check_l2_levels`: finite,
  > 0, sorted, not crossed), so a direct caller (replay, tests) cannot store a bad book either;
* :meth:`levels` returns ``None`` when there is no snapshot or it was received more than
  ``max_age_ms`` ago (the venue pushes at most every 0.5 s; a snapshot much older than that
  means a quiet or broken stream) — the paper venue then falls back to the top of book;
* :meth:`invalidate` (the feed calls it on every disconnect) drops the snapshots but keeps each
  coin's last ``time``, so a replayed older frame is still refused after a reconnect.

Synchronous and cheap; the returned lists are the stored ones (read them, do not mutate them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Final

import attrs

from engine.clock import WallClock
from engine.venues.hyperliquid.ratelog import RateLimitedLog, excerpt
from engine.venues.hyperliquid.wire import check_l2_levels

log = logging.getLogger(__name__)

Level = tuple[float, float]
DEFAULT_MAX_AGE_MS: Final = 5_000.0
LOG_INTERVAL_S: Final = 60.0


@attrs.define(slots=True)
class L2BookStats:
    """Counters of an :class:`L2BookStore`."""

    updates: int = 0  # snapshots accepted
    regressions: int = 0  # rejected: older than the last accepted time
    rejected: int = 0  # rejected: bad, unsorted or crossed levels
    hits: int = 0  # levels() answered with a fresh snapshot
    stale: int = 0  # levels() found a snapshot older than max_age_ms
    missing: int = 0  # levels() found no snapshot
    invalidations: int = 0


@attrs.frozen(slots=True)
class L2Snapshot:
    """One accepted ``l2Book`` snapshot."""

    coin: str
    time_ms: int
    recv_ms: float
    bids: list[Level]
    asks: list[Level]


class L2BookStore:
    """Latest valid, time-ordered l2Book levels per coin (see the module docstring)."""

    __slots__ = ("max_age_ms", "stats", "_clock", "_books", "_last_time", "_rlog")

    def __init__(
        self,
        *,
        max_age_ms: float = DEFAULT_MAX_AGE_MS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` returns milliseconds (default: the engine's wall clock); it dates receipt
        in :meth:`update` and measures age in :meth:`levels`."""
        if not max_age_ms > 0:
            raise ValueError(f"max_age_ms must be > 0, got {max_age_ms!r}")
        self.max_age_ms = float(max_age_ms)
        self.stats = L2BookStats()
        self._clock: Callable[[], float] = clock if clock is not None else WallClock()
        self._books: dict[str, L2Snapshot] = {}
        self._last_time: dict[str, int] = {}
        self._rlog = RateLimitedLog(log, interval_s=LOG_INTERVAL_S, burst=1)

    # ------------------------------------------------------------------ writes
    def update(
        self,
        coin: str,
        time_ms: int,
        bids: Sequence[Level],
        asks: Sequence[Level],
        recv_ms: float | None = None,
    ) -> bool:
        """Store ``coin``'s levels (best first) stamped ``time_ms``; False if rejected."""
        last = self._last_time.get(coin)
        if last is not None and time_ms < last:
            self.stats.regressions += 1
            self._rlog.log(
                "regression",
                logging.WARNING,
                "l2Book for %s rejected: time %d is older than the last accepted %d",
                excerpt(coin, 40),
                time_ms,
                last,
            )
            return False
        b = [(float(px), float(sz)) for px, sz in bids]
        a = [(float(px), float(sz)) for px, sz in asks]
        why = check_l2_levels(b, a)
        if why is not None:
            self.stats.rejected += 1
            self._rlog.log(
                f"rejected:{why.split(' ', 1)[0]}",
                logging.WARNING,
                "l2Book for %s rejected: %s",
                excerpt(coin, 40),
                why,
            )
            return False
        now = self._clock() if recv_ms is None else recv_ms
        self._books[coin] = L2Snapshot(coin, time_ms, now, b, a)
        self._last_time[coin] = time_ms
        self.stats.updates += 1
        return True

    def invalidate(self, reason: str = "") -> None:
        """Drop every snapshot (the stream is gone); the time watermarks stay."""
        if self._books:
            log.info("l2Book levels dropped for %d coin(s)%s", len(self._books),
                     f" ({reason})" if reason else "")
            self._books.clear()
        self.stats.invalidations += 1

    # ------------------------------------------------------------------ reads
    def levels(self, coin: str) -> tuple[list[Level], list[Level]] | None:
        """``(bids, asks)`` best first, or ``None`` when missing or older than ``max_age_ms``."""
        return self.levels_at(coin, self._clock())

    def levels_at(self, coin: str, now_ms: float) -> tuple[list[Level], list[Level]] | None:
        """:meth:`levels` with the current time given (pure)."""
        snap = self._books.get(coin)
        if snap is None:
            self.stats.missing += 1
            return None
        if now_ms - snap.recv_ms > self.max_age_ms:
            self.stats.stale += 1
            return None
        self.stats.hits += 1
        return snap.bids, snap.asks

    def snapshot(self, coin: str) -> L2Snapshot | None:
        """The last accepted snapshot of ``coin`` whatever its age (None: none held)."""
        return self._books.get(coin)

    def last_time_ms(self, coin: str) -> int | None:
        """The venue ``time`` of the last accepted snapshot (kept across :meth:`invalidate`)."""
        return self._last_time.get(coin)

    def coins(self) -> list[str]:
        """Coins with a snapshot held now."""
        return list(self._books)
