"""Replay's batch path equals the per-record path it replaced (the old code as the oracle).

``frames.parse_chunk`` / ``frames.iter_chunks`` (one list per zstd frame) must give exactly the
records, order, filter and errors of ``parse_records`` + ``_filtered`` / ``iter_records``; the
tuple-free ``Timers.advance`` must fire exactly what the ``next_due()``-based loop fired.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.io import frames
from engine.replay.clock import SimClock, Timers
from engine.replay.driver import Replay

from .helpers import default_cfg, out_bytes

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


# --- replay's reader: whole zstd frames split in C, records grouped into socket reads

plain = st.binary(max_size=30).filter(lambda b: b"\n" not in b)
plain_records = st.lists(st.tuples(st.sampled_from(frames.KINDS), st.integers(0, 50),
                                   st.integers(0, 10_000_000), plain), max_size=40)


@settings(max_examples=200, deadline=None)
@given(plain_records, bounds, bounds)
def test_split_chunk_takes_the_common_case_and_equals_the_per_record_parser(
        recs: list[tuple[str, int, int, bytes]], lo: int | None, hi: int | None) -> None:
    content = _content(recs)
    lo_ns = None if lo is None else T0 + lo
    hi_ns = None if hi is None else T0 + hi
    got = frames._split_chunk(content, lo_ns, hi_ns)
    assert got is not None  # no payload holds a newline: the fast path is taken
    assert got == list(frames._filtered(frames.parse_records(content), lo_ns, hi_ns))


@pytest.mark.parametrize("content", [
    b"in 1 2 3 5\nab\ncd\n",  # a payload holding a newline
    b"in 1 2 3 2\nab\nin 1 2 3 3\nab\n",  # a length that does not match
    b"in 1 2 3 2 9\nab\n",  # six header fields
    b"zz 1 2 3 2\nab\n",  # a kind this version does not know
    b"in 1 -2 3 2\nab\n",  # a field only int() can judge
    b"in 1 2 3 2\nab",  # no final newline
])
def test_split_chunk_leaves_what_it_cannot_prove_to_the_per_record_parser(
        content: bytes) -> None:
    assert frames._split_chunk(content, None, None) is None
    want: list[frames.FrameRecord] = []
    want_err = None
    try:
        for r in frames.parse_records(content):
            want.append(r)
    except (frames.FramesError, ValueError) as exc:
        want_err = type(exc)
    got, err = frames.parse_chunk(content)
    assert got == want
    assert (err is None) == (want_err is None)


def _reads_oracle(recs: list[frames.RawRecord]) -> list[tuple[str, int, int, list[bytes]]]:
    """Consecutive K_IN records of one batch number are one read; anything else alone."""
    out: list[tuple[str, int, int, list[bytes]]] = []
    for r in recs:
        if r[0] == frames.K_IN and out and out[-1][0] == frames.K_IN and out[-1][1] == r[1] \
                and out[-1][4:] == ("open",):
            out[-1][3].append(r[4])
            continue
        out.append((r[0], r[1], r[2], [r[4]], "open") if r[0] == frames.K_IN  # type: ignore
                   else (r[0], r[1], r[2], [r[4]], "closed"))
    return [o[:4] for o in out]


def _expand(items: list[frames.BatchItem]) -> list[tuple[str, int, int, list[bytes]]]:
    out = []
    for it in items:
        if it[0] == frames.K_IN:
            texts = [t if isinstance(t, bytes) else t.encode() for t in it[3]]
            out.append((it[0], it[1], it[2], texts))
        else:
            out.append((it[0], it[1], it[2], [it[4]]))
    return out


any_text = st.one_of(plain, st.binary(max_size=30), st.text(max_size=10).map(str.encode))
group_records = st.lists(st.tuples(st.sampled_from((frames.K_IN,) * 4 + frames.KINDS),
                                   st.integers(0, 4), st.integers(0, 10_000_000), any_text),
                         max_size=40)


@settings(max_examples=300, deadline=None)
@given(group_records, bounds, bounds)
def test_parse_batches_groups_the_records_of_each_socket_read(
        recs: list[tuple[str, int, int, bytes]], lo: int | None, hi: int | None) -> None:
    content = _content(recs)
    lo_ns = None if lo is None else T0 + lo
    hi_ns = None if hi is None else T0 + hi
    want_recs = list(frames._filtered(frames.parse_records(content), lo_ns, hi_ns))
    items, n, err = frames.parse_batches(content, lo_ns, hi_ns)
    assert err is None
    assert n == len(want_recs)
    want = _reads_oracle([tuple(r) for r in want_recs])  # type: ignore[misc]
    # texts: an ASCII payload as its bytes, any other as the str replay always decoded
    for it in items:
        if it[0] == frames.K_IN:
            for t in it[3]:
                assert (isinstance(t, bytes) and t.isascii()) or isinstance(t, str)
    got = _expand(items)
    want_texts = [(k, b, w, [p if p.isascii() else p.decode("utf-8", "replace").encode()
                             for p in ps]) if k == frames.K_IN else (k, b, w, ps)
                  for k, b, w, ps in want]
    assert got == want_texts


def test_iter_batches_reads_what_iter_chunks_reads(tmp_path: Path) -> None:
    parts = [[("in", i // 2, j * 1000 + i, b"x%d" % j) for j in range(5)] for i in range(4)]
    cctx = zstandard.ZstdCompressor()
    frames.day_path(tmp_path, frames.day_of(T0)).write_bytes(
        b"".join(cctx.compress(_content(p)) for p in parts))
    got = list(frames.iter_batches(tmp_path))
    assert [n for _, n in got] == [5, 5, 5, 5]
    # a read split over two zstd frames comes as two items (the driver joins them)
    assert [(it[1], len(it[3])) for items, _ in got for it in items] == [
        (0, 5), (0, 5), (1, 5), (1, 5)]


# --- the fast reader of socket-read-only zstd frames, the timer closure, the runs of reads

ascii_plain = plain.filter(bytes.isascii)
in_records = st.lists(st.tuples(st.just(frames.K_IN), st.integers(0, 6),
                                st.integers(0, 10_000_000), ascii_plain), min_size=1,
                      max_size=40)


@settings(max_examples=300, deadline=None)
@given(in_records)
def test_in_only_batches_takes_socket_reads_and_equals_the_general_path(
        recs: list[tuple[str, int, int, bytes]]) -> None:
    content = _content(recs)
    fast = frames._in_only_batches(content)
    assert fast is not None  # socket reads only, ASCII, no newline in a payload
    cols = frames._columns(content)
    assert cols is not None
    want = _reads_oracle([tuple(r) for r in frames.parse_records(content)])  # type: ignore[misc]
    assert fast[1] == len(recs)
    assert _expand(fast[0]) == want
    assert all(type(it[1]) is int and type(it[2]) is int and type(it[3]) is list
               for it in fast[0])


@pytest.mark.parametrize("content", [
    b"in 1 2 3 5\nab\ncd\n",  # a payload holding a newline
    b"in 1 2 3 2\nab\nin 1 2 3 3\nab\n",  # a length that does not match
    b"in 01 2 3 2\nab\n",  # a leading zero: 01 and 1 are one batch, their bytes differ
    b"in 1 2 3 02\nab\n",  # a leading zero in the length
    b"in 1 2 3 2 9\nab\n",  # six header fields
    b"out 1 2 3 2\nab\n",  # another kind: the general path
    b"in 1 -2 3 2\nab\n",  # a field only int() can judge
    b"in 1 2 3 2\nab",  # no final newline
    b"in 1 2 3 2\n\xc3\xa9\n",  # not ASCII: decoded texts, the general path
    b"in 1 2 " + b"9" * 21 + b" 2\nab\n",  # a field longer than the bound
])
def test_in_only_batches_leaves_everything_else_to_the_general_path(content: bytes) -> None:
    assert frames._in_only_batches(content) is None


def _heap_setup(dues: list[list[float]], as_heap: list[bool]
                ) -> tuple[Timers, list[tuple[str, float]]]:
    clock = SimClock()
    timers = Timers(clock)
    log: list[tuple[str, float]] = []
    for k, (seq, hp) in enumerate(zip(dues, as_heap, strict=False)):
        heap = [(d, i) for i, d in enumerate(sorted(seq))]  # sorted: a valid heap

        def due(h: list[tuple[float, int]] = heap) -> float | None:
            return h[0][0] if h else None

        def fire(now: float, h: list[tuple[float, int]] = heap, name: str = f"s{k}") -> None:
            log.append((name, now))
            h.pop(0)

        timers.add(f"s{k}", due, fire, heap=heap if hp else None)
    return timers, log


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30).map(float), max_size=8), min_size=1, max_size=3),
       st.lists(st.booleans(), min_size=3, max_size=3),
       st.lists(st.integers(0, 35).map(float), min_size=1, max_size=6))
def test_advancer_fires_like_advance(dues: list[list[float]], as_heap: list[bool],
                                     targets: list[float]) -> None:
    new, new_log = _heap_setup(dues, as_heap)
    old, old_log = _heap_setup(dues, as_heap)
    adv = new.advancer()
    for t in targets:
        adv(t)
        old.advance(t)
        assert new_log == old_log
        assert new.clock.now_ms == old.clock.now_ms
    assert new.fired == old.fired


def _rechunk(src: Path, dst: Path, every: int) -> int:
    """``src``'s records in zstd frames of ``every`` records each (cut anywhere: a socket
    read can span two frames); how many reads were cut in two."""
    dst.mkdir()
    recs = list(frames.iter_records(src))
    cctx = zstandard.ZstdCompressor()
    by_day: dict[str, list[bytes]] = {}
    for i in range(0, len(recs), every):
        part = recs[i:i + every]
        by_day.setdefault(frames.day_of(part[0].wall_ns), []).append(
            cctx.compress(b"".join(frames.encode_record(*r) for r in part)))
    for day, blobs in by_day.items():
        frames.day_path(dst, day).write_bytes(b"".join(blobs))
    return sum(1 for i in range(every, len(recs), every)
               if recs[i].kind == recs[i - 1].kind == frames.K_IN
               and recs[i].batch == recs[i - 1].batch)


class _PerReadReplay(Replay):
    """The oracle: every socket read on its own — ``Timers.advance`` to its receive time,
    then ``replay_batch`` (the driver's loop before runs of reads)."""

    def _build(self, t0_ms: float) -> tuple[Any, Timers]:
        app, timers = super()._build(t0_ms)
        feed = app.feed

        def reads(items: list[Any], start: int, end: int, before: Any) -> int:
            n = 0
            for it in items[start:end]:
                t_ms = it[2] / 1e6
                timers.advance(t_ms)
                feed.replay_batch(it[3], t_ms / 1000.0)
                n += len(it[3])
            return n

        feed.replay_reads = reads
        return app, timers


@pytest.mark.parametrize("mode", ["observe", "paper"])
def test_runs_of_reads_give_the_bytes_of_one_read_at_a_time(sim_recording: Path,
                                                             tmp_path: Path, mode: str) -> None:
    cut = tmp_path / "rechunked"
    assert _rechunk(sim_recording, cut, 7) > 0  # some reads continue in the next zstd frame
    cfg = default_cfg()
    want = _PerReadReplay(cfg, sim_recording, tmp_path / "oracle", mode=mode).run()
    got = Replay(cfg, sim_recording, tmp_path / "runs", mode=mode).run()
    got_cut = Replay(cfg, cut, tmp_path / "runs_cut", mode=mode).run()
    oracle = out_bytes(tmp_path / "oracle")
    assert any(n.startswith("signals_") for n in oracle)
    assert out_bytes(tmp_path / "runs") == oracle
    assert out_bytes(tmp_path / "runs_cut") == oracle
    for st_ in (got, got_cut):
        assert (st_.frames, st_.batches, st_.last_ms, st_.timers) == (
            want.frames, want.batches, want.last_ms, want.timers)
