"""RecentList and RecentIds: the recent items of a stream, bounded, with a total count."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.bounded import RecentIds, RecentList


@given(st.integers(1, 20), st.lists(st.integers(), max_size=200))
def test_recent_list_keeps_the_newest_in_order_and_counts_all(keep: int, xs: list[int]) -> None:
    r: RecentList[int] = RecentList(keep)
    for n, x in enumerate(xs, 1):
        r.append(x)
        assert len(r) <= 2 * keep and r.total == n
        assert list(r) == xs[:n][-len(r):] and len(r) >= min(n, keep)


def test_recent_list_is_a_list() -> None:
    r: RecentList[int] = RecentList(3, [1, 2])
    assert r == [1, 2] and r[-1] == 2 and r[1:] == [2] and r.total == 2
    assert RecentList(3) == []
    with pytest.raises(ValueError):
        RecentList(0)


@given(st.integers(1, 20), st.lists(st.integers(0, 40).map(str), max_size=200))
def test_recent_ids_remember_the_last_keep_distinct_ids(keep: int, ids: list[str]) -> None:
    w = RecentIds(keep)
    distinct: list[str] = []  # first additions, in order, as the window sees them
    for i in ids:
        fresh = i not in distinct[-keep:]
        assert w.add(i) is fresh
        if fresh:
            distinct.append(i)
        assert set(w) == set(distinct[-keep:]) and len(w) == min(len(distinct), keep)
        assert w.total == len(distinct)


def test_recent_ids_compare_as_a_set() -> None:
    w = RecentIds(2, ["a", "b", "c"])
    assert w == {"b", "c"} and {"c"} <= w and "a" not in w and w.total == 3
