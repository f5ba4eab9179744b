"""Bounded in-memory history: the recent items of an append-only stream, and a recent-id window.

A live process runs for weeks and a replay of a day applies every fill of that day through the
same code, so nothing the core, positions or paper venue keep may grow with the number of fills,
trades or orders. What later decisions need is kept in running aggregates (counts, sums) by
their owners; for inspection (tests, ``/status``, the operator) only the most recent items are
kept, here:

* :class:`RecentList` is a ``list`` of the last ``keep`` appended items (at most ``2 × keep``
  between trims, so appending stays amortised O(1)) plus :attr:`RecentList.total`, the number
  ever appended;
* :class:`RecentIds` is a set of the last ``keep`` distinct ids added, in order of first
  addition, plus :attr:`RecentIds.total`, the number of distinct ids ever added (the fill
  dedup window of :class:`~engine.core.positions.PositionBook`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Set
from typing import TypeVar

T = TypeVar("T")


class RecentList(list[T]):
    """The most recent ``keep`` (up to ``2 × keep``) items appended, oldest first."""

    def __init__(self, keep: int, items: Iterable[T] = ()) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        super().__init__()
        self.keep = keep
        self.total = 0
        for x in items:
            self.append(x)

    def append(self, item: T) -> None:  # (list's signature: amortised O(1))
        super().append(item)
        self.total += 1
        if len(self) > 2 * self.keep:
            del self[: len(self) - self.keep]

    def extend(self, items: Iterable[T]) -> None:
        for x in items:
            self.append(x)


class RecentIds(Set[str]):
    """The last ``keep`` distinct ids added (a set; the oldest is forgotten first)."""

    __slots__ = ("keep", "total", "_ids", "_order")

    def __init__(self, keep: int, ids: Iterable[str] = ()) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.keep = keep
        self.total = 0
        self._ids: set[str] = set()
        self._order: deque[str] = deque()
        for i in ids:
            self.add(i)

    def add(self, tid: str) -> bool:
        """Remember ``tid``; False if it is already in the window."""
        if tid in self._ids:
            return False
        self._ids.add(tid)
        self._order.append(tid)
        self.total += 1
        if len(self._order) > self.keep:
            self._ids.discard(self._order.popleft())
        return True

    def __contains__(self, tid: object) -> bool:
        return tid in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        return f"RecentIds(keep={self.keep}, total={self.total}, n={len(self)})"
