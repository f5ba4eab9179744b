"""Windowed oracle-movement tracker: consecutive same-direction oracle moves and their velocity.

Semantics follow the predecessor's ``OracleMovementTracker`` (docs/reference/predecessor-semantics.md §1.4) with a
wall-clock window added: a move of at least ``min_move_bps`` counts as up or down; smaller moves
neither count nor reset the run (but zero the velocity); only moves younger than ``window_ms``
count towards the run, so a run from minutes ago cannot qualify a fresh dislocation.
"""

from __future__ import annotations

UP = 1
DOWN = -1
_MAX_MOVES = 16


class OracleTracker:
    """Per-market tracker of qualifying oracle moves."""

    __slots__ = ("min_move_bps", "window_ms", "last_px", "times", "dirs", "last_change_bps",
                 "last_move_ms")

    def __init__(self, min_move_bps: float, window_ms: float) -> None:
        self.min_move_bps = min_move_bps
        self.window_ms = window_ms
        self.last_px: float | None = None
        self.times: list[float] = []
        self.dirs: list[int] = []
        self.last_change_bps = 0.0
        self.last_move_ms = 0.0

    def record(self, px: float, now_ms: float) -> None:
        """Record an oracle price observation (call on every ctx; unchanged prices are no-ops)."""
        last = self.last_px
        if last is None:
            self.last_px = px
            return
        if px == last:
            return
        change = abs(px - last) / last * 1e4
        self.last_px = px
        if change < self.min_move_bps:
            self.last_change_bps = 0.0
            return
        self.times.append(now_ms)
        self.dirs.append(UP if px > last else DOWN)
        if len(self.times) > _MAX_MOVES:
            del self.times[0]
            del self.dirs[0]
        self.last_change_bps = change
        self.last_move_ms = now_ms

    def consecutive(self, direction: int, now_ms: float) -> int:
        """Trailing run length of qualifying moves in ``direction`` within the window."""
        horizon = now_ms - self.window_ms
        n = 0
        times, dirs = self.times, self.dirs
        for i in range(len(dirs) - 1, -1, -1):
            if dirs[i] != direction or times[i] < horizon:
                break
            n += 1
        return n

    def velocity_bps(self, now_ms: float) -> float:
        """Size of the latest qualifying move if it is the latest change and within the window."""
        if self.last_change_bps and now_ms - self.last_move_ms <= self.window_ms:
            return self.last_change_bps
        return 0.0
