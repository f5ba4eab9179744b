"""Crash-safe JSON Lines appender: torn-line repair, failed-write undo, tolerant reader."""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.io.jsonl as jsonl
from engine.io.jsonl import JsonlAppender, encode_line, read_jsonl, repair_torn_tail, torn_path

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
records_st = st.dictionaries(
    st.text(min_size=1, max_size=8),
    json_scalars | st.lists(json_scalars, max_size=3),
    max_size=5,
)


class _OsShim:
    """Forwards to ``os`` except ``write`` (monkeypatched into engine.io.jsonl as ``os``)."""

    def __init__(self, write: Any) -> None:
        self.write = write

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def test_append_and_read_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "x.jsonl"
    recs = [{"a": 1}, {"b": "two", "c": [1.5, None]}, {}]
    with JsonlAppender(path) as app:
        app.append(encode_line(recs[0]))
        app.append(encode_line(recs[1]) + encode_line(recs[2]))
        app.fsync()
        assert app.size == path.stat().st_size
    assert read_jsonl(path) == recs
    assert path.read_bytes() == b"".join(msgspec.json.encode(r) + b"\n" for r in recs)


def test_append_rejects_partial_lines_and_closed(tmp_path: Path) -> None:
    app = JsonlAppender(tmp_path / "x.jsonl")
    with pytest.raises(ValueError):
        app.append(b'{"a":1}')
    app.append(b"")  # nothing to do
    app.close()
    app.close()  # idempotent
    assert app.closed
    with pytest.raises(ValueError):
        app.append(b"{}\n")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(records_st, min_size=1, max_size=12),
    batch=st.integers(min_value=1, max_value=4),
    more=st.lists(records_st, max_size=4),
    data=st.data(),
)
def test_kill_at_any_byte_recovers_complete_records(
    records: list[dict[str, Any]], batch: int, more: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Invariant 6: a file cut at any byte k recovers to exactly the complete records, in order;
    the torn bytes go to .torn; appending then continues cleanly."""
    with tempfile.TemporaryDirectory() as d:
        full = Path(d) / "full.jsonl"
        with JsonlAppender(full) as app:
            for i in range(0, len(records), batch):
                app.append(b"".join(encode_line(r) for r in records[i : i + batch]))
        blob = full.read_bytes()
        k = data.draw(st.integers(min_value=0, max_value=len(blob)), label="k")
        cut = Path(d) / "cut.jsonl"
        cut.write_bytes(blob[:k])

        complete = blob[:k].count(b"\n")
        keep = blob.rfind(b"\n", 0, k) + 1 if complete else 0
        fragment = blob[keep:k]

        app = JsonlAppender(cut)
        assert app.quarantined_bytes == len(fragment)
        assert cut.read_bytes() == blob[:keep]
        assert read_jsonl(cut) == records[:complete]
        if fragment:
            assert torn_path(cut).read_bytes() == fragment + b"\n"
        else:
            assert not torn_path(cut).exists()

        for r in more:
            app.append(encode_line(r))
        app.close()
        assert read_jsonl(cut) == records[:complete] + more
        raw = cut.read_bytes()
        assert raw == b"" or raw.endswith(b"\n")
        for line in raw.splitlines():
            msgspec.json.decode(line)  # every line parses


def test_reader_ignores_torn_last_line(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"a":1}\n{"b":2}\n{"c":')
    assert read_jsonl(p) == [{"a": 1}, {"b": 2}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_reader_skips_and_logs_bad_complete_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"a":1}\nnot json\n[1,2]\n\n{"b":2}\n')
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(p) == [{"a": 1}, {"b": 2}]
    assert "skipped 2" in caplog.text


def test_repair_logs_warning_and_accumulates_in_torn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "x.jsonl"
    p.write_bytes(b"no newline at all")
    with caplog.at_level(logging.WARNING):
        JsonlAppender(p).close()
    assert "quarantined 17 bytes" in caplog.text
    assert p.read_bytes() == b""
    p.write_bytes(b'{"a":1}\n{"tor')
    assert repair_torn_tail(p) == 5
    assert p.read_bytes() == b'{"a":1}\n'
    assert torn_path(p).read_bytes() == b'no newline at all\n{"tor\n'
    assert repair_torn_tail(p) == 0  # clean now
    assert repair_torn_tail(tmp_path / "missing.jsonl") == 0


def test_repair_handles_torn_tail_longer_than_a_chunk(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    head = b'{"a":1}\n'
    tail = b"x" * (200 * 1024)
    p.write_bytes(head + tail)
    assert repair_torn_tail(p) == len(tail)
    assert p.read_bytes() == head


@pytest.mark.parametrize("mode", ["short", "partial_then_raise", "raise"])
def test_failed_write_leaves_file_line_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    p = tmp_path / "x.jsonl"
    app = JsonlAppender(p)
    app.append(encode_line({"ok": 1}))
    before = p.read_bytes()

    def bad_write(fd: int, data: bytes) -> int:
        if mode == "raise":
            raise OSError(errno.ENOSPC, "No space left on device")
        n = os.write(fd, bytes(data)[: len(data) // 2])  # the kernel took half of it
        if mode == "short":
            return n
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jsonl, "os", _OsShim(bad_write))
    with pytest.raises(OSError) as ei:
        app.append(encode_line({"big": "y" * 100}) + encode_line({"z": 2}))
    assert ei.value.errno == errno.ENOSPC
    assert p.read_bytes() == before
    assert app.size == len(before)

    monkeypatch.undo()
    app.append(encode_line({"after": 3}))
    app.close()
    assert read_jsonl(p) == [{"ok": 1}, {"after": 3}]


def test_failed_undo_is_retried_before_next_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "x.jsonl"
    app = JsonlAppender(p)
    app.append(b'{"a":1}\n')

    class Shim(_OsShim):
        def ftruncate(self, fd: int, size: int) -> None:
            raise OSError(errno.EIO, "I/O error")

    def half(fd: int, data: bytes) -> int:
        return os.write(fd, bytes(data)[:3])

    monkeypatch.setattr(jsonl, "os", Shim(half))
    with pytest.raises(OSError):
        app.append(b'{"b":2}\n')
    assert p.read_bytes() == b'{"a":1}\n{"b'  # the undo failed ...
    monkeypatch.undo()
    app.append(b'{"c":3}\n')  # ... and is redone first
    app.close()
    assert p.read_bytes() == b'{"a":1}\n{"c":3}\n'


def _check_cut(d: Path, blob: bytes, records: list[dict[str, Any]], k: int) -> None:
    cut = d / f"cut{k}.jsonl"
    cut.write_bytes(blob[:k])
    complete = blob[:k].count(b"\n")
    app = JsonlAppender(cut)
    app.append(encode_line({"after": k}))
    app.close()
    assert read_jsonl(cut) == records[:complete] + [{"after": k}]
    torn = blob[blob.rfind(b"\n", 0, k) + 1 : k] if complete else blob[:k]
    assert (torn_path(cut).read_bytes() if torn else b"") == (torn + b"\n" if torn else b"")


def test_kill_at_every_byte_exhaustive(tmp_path: Path) -> None:
    """Invariant 6, exhaustively for one small file: every cut point k."""
    records = [{"i": i, "s": 'é\n"x"' * (i % 3), "f": i / 7} for i in range(8)]
    blob = b"".join(encode_line(r) for r in records)
    for k in range(len(blob) + 1):
        _check_cut(tmp_path, blob, records, k)


@pytest.mark.slow
@settings(
    max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(records_st, min_size=1, max_size=40), data=st.data())
def test_kill_at_any_byte_many_examples(records: list[dict[str, Any]], data: st.DataObject) -> None:
    blob = b"".join(encode_line(r) for r in records)
    k = data.draw(st.integers(min_value=0, max_value=len(blob)), label="k")
    with tempfile.TemporaryDirectory() as d:
        _check_cut(Path(d), blob, records, k)
