"""The followup book: what the market did 1, 3, 5 s after each signal (pure: no I/O, no Trio).

Owns the pending followups of every signal and the :data:`FollowupRecord` dicts they resolve
into (design §4 invariant 7: each signal gets exactly one record per offset, captured or
explicitly MISSED). Time is always an argument (wall-clock epoch milliseconds).

Memory: ONE heap entry per signal (keyed by its next due offset) holding a ``__slots__``
object; identical offset lists are shared. The lifecycle of each signal follows
:class:`fsm.followup.FollowupMachine` through the table derived from it
(:data:`fsm.followup.FOLLOWUP_TABLE`); no state machine instance is built per signal.

Record formulas (``best`` is side-consistent: buy uses ask/ask_sz, sell uses bid/bid_sz)::

    raw_edge_bps     = buy: (oracle - ask) / oracle * 1e4     sell: (bid - oracle) / oracle * 1e4
    edge_change_bps  = raw_edge_bps - t0_raw_edge_bps
    oracle_moved_bps = (oracle - t0_oracle) / t0_oracle * 1e4
    market_moved_bps = (best - t0_best) / t0_best * 1e4

``lateness_ms = captured_at_ms - due_ms``; for records resolved before their due time
(``shutdown``, ``restart``) it is negative.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from engine.core.types import MarketView, Side
from fsm.followup import CAPTURE, DONE, FINAL_STATES, FOLLOWUP_TABLE, MISS, SCHEDULED

FollowupRecord = dict[str, Any]
"""One followup line; the keys are :data:`RECORD_FIELDS`, in that order."""

RECORD_FIELDS: Final[tuple[str, ...]] = (
    "signal_id",
    "market_key",
    "side",
    "signal_timestamp_ms",
    "offset_ms",
    "due_ms",
    "captured_at_ms",
    "lateness_ms",
    "status",
    "miss_reason",
    "t0_oracle_px",
    "t0_best_px",
    "t0_raw_edge_bps",
    "oracle_px",
    "best_px",
    "best_size",
    "raw_edge_bps",
    "edge_change_bps",
    "oracle_moved_bps",
    "market_moved_bps",
)

CAPTURED: Final = "captured"
MISSED_STATUS: Final = "missed"
MISS_REASONS: Final[tuple[str, ...]] = (
    "no_data",
    "disconnected",
    "stale_data",
    "late",
    "shutdown",
    "restart",
)

ViewFn = Callable[[str], MarketView | None]


def _side_str(side: Side | str) -> str:
    s = side.value if isinstance(side, Side) else side
    if s not in ("buy", "sell"):
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    return s


def missed_record(
    signal_id: str,
    market_key: str,
    side: str,
    signal_ts_ms: float,
    offset_ms: float,
    now_ms: float,
    reason: str,
    t0_oracle_px: float | None,
    t0_best_px: float | None,
    t0_raw_edge_bps: float | None,
) -> FollowupRecord:
    """A MISSED :data:`FollowupRecord` (every observed field null)."""
    due = signal_ts_ms + offset_ms
    return {
        "signal_id": signal_id,
        "market_key": market_key,
        "side": side,
        "signal_timestamp_ms": signal_ts_ms,
        "offset_ms": offset_ms,
        "due_ms": due,
        "captured_at_ms": now_ms,
        "lateness_ms": now_ms - due,
        "status": MISSED_STATUS,
        "miss_reason": reason,
        "t0_oracle_px": t0_oracle_px,
        "t0_best_px": t0_best_px,
        "t0_raw_edge_bps": t0_raw_edge_bps,
        "oracle_px": None,
        "best_px": None,
        "best_size": None,
        "raw_edge_bps": None,
        "edge_change_bps": None,
        "oracle_moved_bps": None,
        "market_moved_bps": None,
    }


class _Pending:
    """One signal's unresolved followups (the heap holds exactly one entry per signal)."""

    __slots__ = (
        "signal_id",
        "coin",
        "side",
        "is_buy",
        "signal_ts_ms",
        "t0_oracle_px",
        "t0_best_px",
        "t0_raw_edge_bps",
        "offsets",
        "idx",
        "state",
        "had_miss",
    )

    def __init__(
        self,
        signal_id: str,
        coin: str,
        side: str,
        signal_ts_ms: float,
        t0_oracle_px: float | None,
        t0_best_px: float | None,
        t0_raw_edge_bps: float | None,
        offsets: tuple[float, ...],
        had_miss: bool,
    ) -> None:
        self.signal_id = signal_id
        self.coin = coin
        self.side = side
        self.is_buy = side == "buy"
        self.signal_ts_ms = signal_ts_ms
        self.t0_oracle_px = t0_oracle_px
        self.t0_best_px = t0_best_px
        self.t0_raw_edge_bps = t0_raw_edge_bps
        self.offsets = offsets
        self.idx = 0
        self.state = SCHEDULED
        self.had_miss = had_miss


class FollowupBook:
    """Pending followups of every signal, resolved into records as time passes.

    A capture is MISSED (observed fields null) with ``miss_reason``:

    * ``"late"``: ``now - due > max_lateness_ms`` (the data would describe the wrong moment);
    * ``"no_data"``: ``view(coin)`` is None;
    * ``"disconnected"``: the view is not ``live``;
    * ``"stale_data"``: the oracle or the side's price is missing (or not > 0), or, when the
      bound is > 0, ``now - ctx_recv_ms > max_ctx_age_ms`` / ``now - bbo_recv_ms >
      max_bbo_age_ms`` (a missing receive time counts as stale).

    ``max_pending`` bounds the pending *signals*; a schedule beyond it is refused (returns
    False) and counted in :attr:`refused`.
    """

    def __init__(
        self,
        *,
        max_ctx_age_ms: float = 8000.0,
        max_bbo_age_ms: float = 0.0,
        max_lateness_ms: float = 1000.0,
        max_pending: int = 1_000_000,
    ) -> None:
        self.max_ctx_age_ms = float(max_ctx_age_ms)
        self.max_bbo_age_ms = float(max_bbo_age_ms)
        self.max_lateness_ms = float(max_lateness_ms)
        self.max_pending = int(max_pending)
        self._heap: list[tuple[float, int, _Pending]] = []
        self._seq = 0
        self._offsets_cache: dict[tuple[float, ...], tuple[float, ...]] = {}
        self.pending_offsets = 0
        """Offsets (future records) not yet resolved."""
        self.scheduled = 0
        self.refused = 0
        self.captured = 0
        self.missed = 0
        self.signals_done = 0
        self.signals_missed = 0

    # ------------------------------------------------------------------ scheduling

    @property
    def pending_count(self) -> int:
        """Signals with at least one unresolved offset."""
        return len(self._heap)

    def _intern_offsets(self, offsets_ms: Iterable[float]) -> tuple[float, ...]:
        key = tuple(offsets_ms)
        cached = self._offsets_cache.get(key)
        if cached is not None:
            return cached
        if not key:
            raise ValueError("offsets_ms must not be empty")
        if any(o <= 0 for o in key) or any(b <= a for a, b in zip(key, key[1:], strict=False)):
            raise ValueError(f"offsets_ms must be > 0 and strictly increasing, got {key!r}")
        if len(self._offsets_cache) < 1024:
            self._offsets_cache[key] = key
        return key

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
        """Schedule one followup per offset (due at ``signal_ts_ms + offset``).

        Returns False (and counts it) when ``max_pending`` signals are already pending.
        ``prior_miss`` marks a rescheduled signal that already had a MISSED offset.
        """
        offsets = self._intern_offsets(offsets_ms)
        side_s = _side_str(side)
        if len(self._heap) >= self.max_pending:
            self.refused += 1
            return False
        entry = _Pending(
            signal_id,
            coin,
            side_s,
            signal_ts_ms,
            t0_oracle_px,
            t0_best_px,
            t0_raw_edge_bps,
            offsets,
            prior_miss,
        )
        self._seq += 1
        heapq.heappush(self._heap, (signal_ts_ms + offsets[0], self._seq, entry))
        self.pending_offsets += len(offsets)
        self.scheduled += 1
        return True

    def next_due_ms(self) -> float | None:
        """When the earliest pending offset is due (None when nothing is pending)."""
        return self._heap[0][0] if self._heap else None

    # ------------------------------------------------------------------ resolution

    def _advance(self, entry: _Pending, event: str) -> bool:
        """Apply one resolution through the FSM table; True if the signal is finished."""
        is_last = entry.idx == len(entry.offsets) - 1
        state = FOLLOWUP_TABLE[(entry.state, event, is_last, entry.had_miss)]
        entry.state = state
        if event == MISS:
            entry.had_miss = True
            self.missed += 1
        else:
            self.captured += 1
        entry.idx += 1
        self.pending_offsets -= 1
        if state in FINAL_STATES:
            if state == DONE:
                self.signals_done += 1
            else:
                self.signals_missed += 1
            return True
        return False

    def capture_due(
        self, now_ms: float, view: ViewFn, *, limit: int | None = None
    ) -> list[FollowupRecord]:
        """Resolve every offset due at or before ``now_ms`` (at most ``limit`` of them).

        ``view(coin)`` is called at most once per coin per call. Records come out in due
        order (a signal's offsets in offset order).
        """
        heap = self._heap
        out: list[FollowupRecord] = []
        if not heap or heap[0][0] > now_ms:
            return out
        views: dict[str, MarketView | None] = {}
        max_late = self.max_lateness_ms
        max_ctx = self.max_ctx_age_ms
        max_bbo = self.max_bbo_age_ms
        remaining = -1 if limit is None else limit
        while heap and remaining != 0:
            due, seq, entry = heap[0]
            if due > now_ms:
                break
            remaining -= 1
            offset = entry.offsets[entry.idx]
            coin = entry.coin
            reason: str | None = None
            v: MarketView | None = None
            oracle = best = 0.0
            if now_ms - due > max_late:
                reason = "late"
            else:
                if coin in views:
                    v = views[coin]
                else:
                    v = views[coin] = view(coin)
                if v is None:
                    reason = "no_data"
                elif not v.live:
                    reason = "disconnected"
                else:
                    o = v.oracle_px
                    b = v.ask_px if entry.is_buy else v.bid_px
                    if not o or not b or o <= 0 or b <= 0:
                        reason = "stale_data"
                    elif max_ctx > 0 and (
                        v.ctx_recv_ms is None or now_ms - v.ctx_recv_ms > max_ctx
                    ):
                        reason = "stale_data"
                    elif max_bbo > 0 and (
                        v.bbo_recv_ms is None or now_ms - v.bbo_recv_ms > max_bbo
                    ):
                        reason = "stale_data"
                    else:
                        oracle = o
                        best = b
            if reason is None:
                assert v is not None
                if entry.is_buy:
                    raw = (oracle - best) / oracle * 1e4
                    size = v.ask_sz
                else:
                    raw = (best - oracle) / oracle * 1e4
                    size = v.bid_sz
                t0_raw = entry.t0_raw_edge_bps
                t0_o = entry.t0_oracle_px
                t0_b = entry.t0_best_px
                out.append(
                    {
                        "signal_id": entry.signal_id,
                        "market_key": coin,
                        "side": entry.side,
                        "signal_timestamp_ms": entry.signal_ts_ms,
                        "offset_ms": offset,
                        "due_ms": due,
                        "captured_at_ms": now_ms,
                        "lateness_ms": now_ms - due,
                        "status": CAPTURED,
                        "miss_reason": None,
                        "t0_oracle_px": t0_o,
                        "t0_best_px": t0_b,
                        "t0_raw_edge_bps": t0_raw,
                        "oracle_px": oracle,
                        "best_px": best,
                        "best_size": size,
                        "raw_edge_bps": raw,
                        "edge_change_bps": None if t0_raw is None else raw - t0_raw,
                        "oracle_moved_bps": (oracle - t0_o) / t0_o * 1e4 if t0_o else None,
                        "market_moved_bps": (best - t0_b) / t0_b * 1e4 if t0_b else None,
                    }
                )
                finished = self._advance(entry, CAPTURE)
            else:
                out.append(
                    missed_record(
                        entry.signal_id,
                        coin,
                        entry.side,
                        entry.signal_ts_ms,
                        offset,
                        now_ms,
                        reason,
                        entry.t0_oracle_px,
                        entry.t0_best_px,
                        entry.t0_raw_edge_bps,
                    )
                )
                finished = self._advance(entry, MISS)
            if finished:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (entry.signal_ts_ms + entry.offsets[entry.idx], seq, entry))
        return out

    def miss_all(self, now_ms: float, reason: str) -> list[FollowupRecord]:
        """Resolve every pending offset as MISSED with ``reason`` (e.g. ``"shutdown"``)."""
        if reason not in MISS_REASONS:
            raise ValueError(f"unknown miss reason {reason!r}")
        entries = sorted(self._heap, key=lambda t: (t[0], t[1]))
        self._heap = []
        out: list[FollowupRecord] = []
        for _due, _seq, entry in entries:
            while True:
                out.append(
                    missed_record(
                        entry.signal_id,
                        entry.coin,
                        entry.side,
                        entry.signal_ts_ms,
                        entry.offsets[entry.idx],
                        now_ms,
                        reason,
                        entry.t0_oracle_px,
                        entry.t0_best_px,
                        entry.t0_raw_edge_bps,
                    )
                )
                if self._advance(entry, MISS):
                    break
        return out
