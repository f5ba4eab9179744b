"""The followup scheduler: the ONE Trio task that turns due followups into written records.

Owns the timing side of followups: it sleeps until :meth:`FollowupBook.next_due_ms` (a
:class:`engine.deadline.DeadlineSleeper`, pulled in by :meth:`FollowupScheduler.schedule` when a
new signal is due sooner, so there is no polling and no task per signal), captures everything due
in bounded chunks (a checkpoint between chunks keeps the hot path responsive), writes the
records to the ``"followups"`` kind at their ``captured_at_ms`` (one ``writer.write_many`` per
chunk when the writer has it, else ``writer.write`` per record), and on shutdown or
cancellation writes every pending offset as MISSED ``"shutdown"`` (docs/reference/design.md §4 invariant 7).
The decisions themselves live in the pure :class:`engine.core.followups.FollowupBook`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import attrs
import trio

from engine.clock import trio_deadline
from engine.core.followups import CAPTURED, FollowupBook, FollowupRecord, ViewFn, missed_record
from engine.core.types import Side
from engine.deadline import DeadlineSleeper
from engine.io.followup_recovery import Reschedule

log = logging.getLogger(__name__)


class RecordSink(Protocol):
    """Where records go (a :class:`engine.io.records.RecordWriter`); ``write`` must not raise."""

    def write(self, kind: str, ts_ms: float, record: Any) -> None: ...


class Reservoir:
    """A bounded reservoir of the most recent ``size`` samples, plus the exact count and max.

    Recent rather than uniform: p50/p99 then describe the scheduler as it is now.
    """

    __slots__ = ("count", "max", "_sample")

    def __init__(self, size: int = 10_000) -> None:
        self.count = 0
        self.max = -math.inf
        self._sample: deque[float] = deque(maxlen=size)

    def extend(self, values: list[float]) -> None:
        if not values:
            return
        self.count += len(values)
        m = max(values)
        if m > self.max:
            self.max = m
        self._sample.extend(values)

    def add(self, value: float) -> None:
        self.extend([value])

    def __len__(self) -> int:
        return len(self._sample)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1, nearest rank) of the sample, None when empty."""
        if not self._sample:
            return None
        s = sorted(self._sample)
        return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


@attrs.define
class FollowupStats:
    """Counters of a :class:`FollowupScheduler`; ``lateness`` samples ``captured_at - due``."""

    written_captured: int = 0
    written_missed: int = 0
    missed_by_reason: dict[str, int] = attrs.Factory(dict)
    refused: int = 0
    wakeups: int = 0
    lateness: Reservoir = attrs.Factory(Reservoir)
    pending: int = 0
    pending_offsets: int = 0


class FollowupScheduler:
    """Runs the :class:`FollowupBook` against real time and writes what it resolves.

    ``view(coin)`` returns the current :class:`MarketView` (or None); ``clock()`` returns
    wall-clock epoch milliseconds. Call :meth:`schedule` from any task in the same Trio run.
    """

    def __init__(
        self,
        book: FollowupBook,
        writer: RecordSink,
        view: ViewFn,
        clock: Callable[[], float],
        *,
        batch_limit: int = 256,
    ) -> None:
        if batch_limit <= 0:
            raise ValueError("batch_limit must be > 0")
        self.book = book
        self.writer = writer
        self.view = view
        self.clock = clock
        self.batch_limit = batch_limit
        self._stats = FollowupStats()
        self._sleeper = DeadlineSleeper()
        self._shut_down = False
        self._refused_logged = 0
        # RecordWriter.write_many: one os.write per captured batch instead of one per record
        self._write_many: Callable[[str, float, list[FollowupRecord]], None] | None = getattr(
            writer, "write_many", None
        )

    @property
    def stats(self) -> FollowupStats:
        st = self._stats
        st.pending = self.book.pending_count
        st.pending_offsets = self.book.pending_offsets
        st.refused = self.book.refused
        return st

    # ------------------------------------------------------------------ scheduling

    def schedule(
        self,
        signal_id: str,
        coin: str,
        side: Side | str,
        signal_ts_ms: float,
        t0_oracle_px: float | None,
        t0_best_px: float | None,
        t0_raw_edge_bps: float | None,
        offsets_ms: Sequence[float],
        *,
        prior_miss: bool = False,
    ) -> bool:
        """Schedule a signal's followups and wake the task if it is now due sooner.

        Returns False when the book refused it (``max_pending``; counted and logged). After
        :meth:`shutdown` the offsets are written at once as MISSED ``"shutdown"``.
        """
        book = self.book
        ok = book.schedule(
            signal_id,
            coin,
            side,
            signal_ts_ms,
            t0_oracle_px,
            t0_best_px,
            t0_raw_edge_bps,
            offsets_ms,
            prior_miss=prior_miss,
        )
        if not ok:
            # Invariant 7: never silence. A refused signal still gets one record per offset.
            self._log_refused()
            now = self.clock()
            self._write([
                missed_record(signal_id, coin, str(side), signal_ts_ms, off, now, "overflow",
                              t0_oracle_px, t0_best_px, t0_raw_edge_bps)
                for off in offsets_ms
            ])
            return False
        if self._shut_down:
            now = self.clock()
            self._write(book.miss_all(now, "shutdown"), now)
            return True
        sleeper = self._sleeper
        if sleeper.sleeping:
            first_due = signal_ts_ms + offsets_ms[0]
            earliest = book.next_due_ms()
            if earliest is not None and first_due <= earliest:
                sleeper.pull_in(trio_deadline(self.clock, first_due))
        return True

    def restore(self, missed: Iterable[FollowupRecord], reschedule: Iterable[Reschedule]) -> None:
        """Apply :func:`engine.io.followup_recovery.recover_incomplete`'s result."""
        self._write(list(missed))
        for r in reschedule:
            self.schedule(
                r.signal_id,
                r.coin,
                r.side,
                r.signal_ts_ms,
                r.t0_oracle_px,
                r.t0_best_px,
                r.t0_raw_edge_bps,
                r.offsets_ms,
                prior_miss=r.prior_miss,
            )

    def _log_refused(self) -> None:
        n = self.book.refused
        if n >= self._refused_logged * 2 or n - self._refused_logged >= 10_000:
            log.warning(
                "followup book full (%d signals pending): refused %d signal(s) so far; "
                "they get NO followup records",
                self.book.pending_count,
                n,
            )
            self._refused_logged = n

    # ------------------------------------------------------------------ task

    def _write(self, records: list[FollowupRecord], now_ms: float | None = None) -> None:
        """Write records; ``now_ms`` given means every record has ``captured_at_ms == now_ms``."""
        if not records:
            return
        st = self._stats
        if now_ms is not None and self._write_many is not None:
            self._write_many("followups", now_ms, records)
        else:
            write = self.writer.write
            for rec in records:
                write("followups", rec["captured_at_ms"], rec)
        captured = 0
        for rec in records:
            if rec["status"] == CAPTURED:
                captured += 1
            else:
                reason = rec["miss_reason"]
                st.missed_by_reason[reason] = st.missed_by_reason.get(reason, 0) + 1
        st.written_captured += captured
        st.written_missed += len(records) - captured

    async def run(self) -> None:
        """Capture followups as they fall due, until cancelled; then :meth:`shutdown`."""
        book = self.book
        clock = self.clock
        limit = self.batch_limit
        st = self._stats
        sleeper = self._sleeper
        try:
            while True:
                due = book.next_due_ms()
                await sleeper.sleep_until(trio_deadline(clock, due) if due is not None
                                          else math.inf)
                st.wakeups += 1
                while True:
                    now = clock()
                    if self.capture_once(now) < limit:
                        break
                    await trio.lowlevel.checkpoint()
        finally:
            self.shutdown()

    def capture_once(self, now_ms: float) -> int:
        """Capture and write up to ``batch_limit`` followups due at ``now_ms`` (the live task
        runs this in chunks; replay calls it until it returns less than ``batch_limit``)."""
        records = self.book.capture_due(now_ms, self.view, limit=self.batch_limit)
        if records:
            self._stats.lateness.extend([rec["lateness_ms"] for rec in records])
            self._write(records, now_ms)
        return len(records)

    def shutdown(self, now_ms: float | None = None, reason: str = "shutdown") -> int:
        """Write every pending offset as MISSED ``reason`` (``"shutdown"``; replay:
        ``"end_of_data"``); return how many (idempotent)."""
        self._shut_down = True
        now = self.clock() if now_ms is None else now_ms
        records = self.book.miss_all(now, reason)
        self._write(records, now)
        if records:
            log.info("followups: %d pending offset(s) written as MISSED (%s)", len(records),
                     reason)
        return len(records)
