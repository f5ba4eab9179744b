"""The followup book: what the market did 1, 3, 5 s after each signal (pure: no I/O, no Trio).

Owns the pending followups of every signal and the :data:`FollowupRecord` dicts they resolve
into (docs/reference/design.md §4 invariant 7: each signal gets exactly one record per offset, captured or
explicitly MISSED). Time is always an argument (wall-clock epoch milliseconds).

Memory and GC: ONE heap entry per signal (keyed by its next due offset); a pending signal is
held in plain tuples of atoms, which CPython's cyclic GC untracks (see ``_HeapItem``), and
identical offset lists are shared. The lifecycle of each signal follows
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
    "end_of_data",
    "overflow",
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


# A pending signal is two plain tuples of atoms (str, float, int, bool, None), never a class
# instance: CPython's cyclic GC untracks such tuples, so 100,000 pending signals add nothing to
# the cost of a GC pass (instances, even with __slots__, stay tracked: a full collection over
# 100k of them took ~50 ms in bench/bench_followups.py). Tuples are also as small as slots.
#
#   heap item: (due_ms, seq, idx, state, had_miss, sig)   one per signal; seq breaks ties
#   sig:       (signal_id, coin, side, is_buy, signal_ts_ms, t0_oracle_px, t0_best_px,
#               t0_raw_edge_bps, offsets)                  shared by all of its heap items
_SigData = tuple[
    str, str, str, bool, float, float | None, float | None, float | None, tuple[float, ...]
]
_HeapItem = tuple[float, int, int, str, bool, _SigData]


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
        self._heap: list[_HeapItem] = []
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
        sig: _SigData = (
            signal_id,
            coin,
            side_s,
            side_s == "buy",
            signal_ts_ms,
            t0_oracle_px,
            t0_best_px,
            t0_raw_edge_bps,
            offsets,
        )
        self._seq += 1
        heapq.heappush(
            self._heap, (signal_ts_ms + offsets[0], self._seq, 0, SCHEDULED, prior_miss, sig)
        )
        self.pending_offsets += len(offsets)
        self.scheduled += 1
        return True

    def next_due_ms(self) -> float | None:
        """When the earliest pending offset is due (None when nothing is pending)."""
        return self._heap[0][0] if self._heap else None

    @property
    def heap(self) -> list[Any]:
        """The pending offsets as a ``heapq`` list (due first in each entry), for replay's
        timer check to read without a call: :meth:`next_due_ms` is ``heap[0][0]`` (None when
        empty). It is mutated in place only, never rebound; do not modify it."""
        return self._heap

    # ------------------------------------------------------------------ resolution

    def _check_view(self, v: MarketView | None, now_ms: float) -> str | None:
        """The miss reason that applies to every side of ``v`` at ``now_ms`` (None: usable)."""
        if v is None:
            return "no_data"
        if not v.live:
            return "disconnected"
        o = v.oracle_px
        if o is None or not o > 0:
            return "stale_data"
        max_ctx = self.max_ctx_age_ms
        if max_ctx > 0 and (v.ctx_recv_ms is None or now_ms - v.ctx_recv_ms > max_ctx):
            return "stale_data"
        max_bbo = self.max_bbo_age_ms
        if max_bbo > 0 and (v.bbo_recv_ms is None or now_ms - v.bbo_recv_ms > max_bbo):
            return "stale_data"
        return None

    def capture_due(
        self, now_ms: float, view: ViewFn, *, limit: int | None = None
    ) -> list[FollowupRecord]:
        """Resolve every offset due at or before ``now_ms`` (at most ``limit`` of them).

        ``view(coin)`` is called at most once per coin per call (an exception from it counts
        as ``"no_data"``). Records come out in due order (a signal's offsets in offset order);
        every record of one call has ``captured_at_ms == now_ms``.
        """
        heap = self._heap
        out: list[FollowupRecord] = []
        if not heap or heap[0][0] > now_ms:
            return out
        # coin -> (reason or None, view); filled lazily, once per coin per call
        checked: dict[str, tuple[str | None, MarketView | None]] = {}
        max_late = self.max_lateness_ms
        table = FOLLOWUP_TABLE
        finals = FINAL_STATES
        heappop = heapq.heappop
        heapreplace = heapq.heapreplace
        append = out.append
        n_captured = n_missed = n_done = n_signals_missed = 0
        remaining = -1 if limit is None else limit
        while heap and remaining != 0:
            due, seq, idx, state, had_miss, sig = heap[0]
            if due > now_ms:
                break
            remaining -= 1
            (signal_id, coin, side, is_buy, signal_ts, t0_o, t0_b, t0_raw, offsets) = sig
            offset = offsets[idx]
            is_last = idx == len(offsets) - 1
            lateness = now_ms - due
            reason: str | None
            v: MarketView | None = None
            if lateness > max_late:
                reason = "late"
            else:
                chk = checked.get(coin)
                if chk is None:
                    try:
                        v = view(coin)
                    except Exception:  # noqa: BLE001 - a broken view is "no data", not a crash
                        v = None
                    chk = checked[coin] = (self._check_view(v, now_ms), v)
                reason, v = chk
            if reason is None:
                assert v is not None
                oracle: float = v.oracle_px  # type: ignore[assignment]  # checked > 0 above
                if is_buy:
                    best = v.ask_px
                    size = v.ask_sz
                else:
                    best = v.bid_px
                    size = v.bid_sz
                if best is None or not best > 0:
                    reason = "stale_data"
            if reason is None:
                assert best is not None
                raw = (oracle - best if is_buy else best - oracle) / oracle * 1e4
                append(
                    {
                        "signal_id": signal_id,
                        "market_key": coin,
                        "side": side,
                        "signal_timestamp_ms": signal_ts,
                        "offset_ms": offset,
                        "due_ms": due,
                        "captured_at_ms": now_ms,
                        "lateness_ms": lateness,
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
                n_captured += 1
                state = table[(state, CAPTURE, is_last, had_miss)]
            else:
                append(
                    missed_record(
                        signal_id, coin, side, signal_ts, offset, now_ms, reason, t0_o, t0_b, t0_raw
                    )
                )
                n_missed += 1
                state = table[(state, MISS, is_last, had_miss)]
                had_miss = True
            if state in finals:
                if state == DONE:
                    n_done += 1
                else:
                    n_signals_missed += 1
                heappop(heap)
            else:
                heapreplace(
                    heap, (signal_ts + offsets[idx + 1], seq, idx + 1, state, had_miss, sig)
                )
        self.captured += n_captured
        self.missed += n_missed
        self.pending_offsets -= n_captured + n_missed
        self.signals_done += n_done
        self.signals_missed += n_signals_missed
        return out

    def miss_all(self, now_ms: float, reason: str) -> list[FollowupRecord]:
        """Resolve every pending offset as MISSED with ``reason`` (e.g. ``"shutdown"``)."""
        if reason not in MISS_REASONS:
            raise ValueError(f"unknown miss reason {reason!r}")
        items = sorted(self._heap, key=lambda t: (t[0], t[1]))
        self._heap.clear()  # in place: the list stays the one :attr:`heap` gave out
        table = FOLLOWUP_TABLE
        out: list[FollowupRecord] = []
        for _due, _seq, idx, state, had_miss, sig in items:
            (signal_id, coin, side, _is_buy, signal_ts, t0_o, t0_b, t0_raw, offsets) = sig
            for i in range(idx, len(offsets)):
                out.append(
                    missed_record(
                        signal_id,
                        coin,
                        side,
                        signal_ts,
                        offsets[i],
                        now_ms,
                        reason,
                        t0_o,
                        t0_b,
                        t0_raw,
                    )
                )
                state = table[(state, MISS, i == len(offsets) - 1, i > idx or had_miss)]
            if state == DONE:  # pragma: no cover - the table makes a final miss MISSED
                self.signals_done += 1
            else:
                self.signals_missed += 1
            self.missed += len(offsets) - idx
            self.pending_offsets -= len(offsets) - idx
        return out
