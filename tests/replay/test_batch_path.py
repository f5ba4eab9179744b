"""Replay's batch path equals the per-record path it replaced (the old code as the oracle).

``frames.parse_chunk`` / ``frames.iter_chunks`` (one list per zstd frame) must give exactly the
records, order, filter and errors of ``parse_records`` + ``_filtered`` / ``iter_records``; the
tuple-free ``Timers.advance`` must fire exactly what the ``next_due()``-based loop fired.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.io import frames
from engine.replay.clock import SimClock, Timers

T0 = 1_780_000_000 * 1_000_000_000

records = st.lists(st.tuples(st.sampled_from(frames.KINDS), st.integers(0, 50),
                             st.integers(0, 10_000_000), st.binary(max_size=30)),
                   max_size=40)
bounds = st.one_of(st.none(), st.integers(-1, 10_000_001))


def _content(recs: list[tuple[str, int, int, bytes]]) -> bytes:
    return b"".join(frames.encode_record(k, b, T0 + w, w, p) for k, b, w, p in recs)


@settings(max_examples=200, deadline=None)
@given(records, bounds, bounds)
def test_parse_chunk_is_parse_records_filtered(recs: list[tuple[str, int, int, bytes]],
                                               lo: int | None, hi: int | None) -> None:
    content = _content(recs)
    lo_ns = None if lo is None else T0 + lo
    hi_ns = None if hi is None else T0 + hi
    want = list(frames._filtered(frames.parse_records(content), lo_ns, hi_ns))
    got, err = frames.parse_chunk(content, lo_ns, hi_ns)
    assert err is None
    assert got == want
    assert [type(r[0]) for r in got] == [str] * len(got)


@settings(max_examples=100, deadline=None)
@given(records, st.integers(0, 2000))
def test_parse_chunk_bad_record_keeps_the_records_before_it(
        recs: list[tuple[str, int, int, bytes]], cut: int) -> None:
    content = _content(recs)
    bad = content[:cut] + b"zz" + content[cut:]
    want: list[frames.FrameRecord] = []
    want_exc: type[BaseException] | None = None
    try:
        for r in frames.parse_records(bad):
            want.append(r)
    except (frames.FramesError, ValueError) as exc:
        want_exc = type(exc)
    got, err = frames.parse_chunk(bad)
    assert got == want
    if want_exc is None:
        assert err is None
    else:
        assert err is not None
        raised = err.exc if isinstance(err, frames._Unparsable) else err
        assert type(raised) is want_exc


def test_iter_chunks_equals_iter_records(tmp_path: Path) -> None:
    parts = [[("in", i, j * 1000 + i, b"x%d" % j) for j in range(5)] for i in range(4)]
    cctx = zstandard.ZstdCompressor()
    blob = b"".join(cctx.compress(_content(p)) for p in parts)
    day = frames.day_of(T0)
    frames.day_path(tmp_path, day).write_bytes(blob + cctx.compress(_content(parts[0]))[:7])
    for lo, hi in ((None, None), (T0 + 1002, None), (None, T0 + 3001), (T0 + 5, T0 + 4002)):
        flat = [r for c in frames.iter_chunks(tmp_path, from_ns=lo, to_ns=hi) for r in c]
        assert flat == list(frames.iter_records(tmp_path, from_ns=lo, to_ns=hi))
        assert flat  # the torn tail is skipped, the whole frames are read


def test_iter_chunks_raises_what_iter_records_raises(tmp_path: Path) -> None:
    bad = _content([("in", 1, 1, b"ok")]) + b"in 1 2 3 99\nshort\n"
    frames.day_path(tmp_path, frames.day_of(T0)).write_bytes(zstandard.ZstdCompressor()
                                                             .compress(bad))
    seen: list[frames.RawRecord] = []
    with pytest.raises(frames.FramesError):
        for c in frames.iter_chunks(tmp_path):
            seen += c
    assert [r[4] for r in seen] == [b"ok"]
    with pytest.raises(frames.FramesError):
        list(frames.iter_records(tmp_path))


def _old_advance(timers: Timers, t_ms: float) -> None:
    """The loop Timers.advance had before the batch path (the oracle)."""
    clock = timers.clock
    while True:
        nxt = timers.next_due()
        if nxt is None or nxt[0] > t_ms:
            break
        due, i = nxt
        clock.set(due)
        name, _, fire = timers._sources[i]
        timers.fired[name] += 1
        fire(clock.now_ms)
    clock.set(t_ms)


def _setup(dues: list[list[float]]) -> tuple[Timers, list[tuple[str, float]]]:
    clock = SimClock()
    timers = Timers(clock)
    log: list[tuple[str, float]] = []
    for k, seq in enumerate(dues):
        queue = sorted(seq)

        def due(q: list[float] = queue) -> float | None:
            return q[0] if q else None

        def fire(now: float, q: list[float] = queue, name: str = f"s{k}") -> None:
            log.append((name, now))
            q.pop(0)

        timers.add(f"s{k}", due, fire)
    return timers, log


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30).map(float), max_size=8), min_size=1, max_size=4),
       st.lists(st.integers(0, 35).map(float), min_size=1, max_size=6))
def test_advance_fires_like_the_next_due_loop(dues: list[list[float]],
                                              targets: list[float]) -> None:
    new, new_log = _setup(dues)
    old, old_log = _setup(dues)
    adv: Callable[[float], None] = new.advance
    for t in targets:
        adv(t)
        _old_advance(old, t)
        assert new_log == old_log
        assert new.clock.now_ms == old.clock.now_ms
    assert new.fired == old.fired
