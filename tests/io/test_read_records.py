"""engine.io.jsonl.read_records: the one JSON Lines reader of the record files (the restart
journal, the followup recovery, the daily report, the export and read_jsonl all use it)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.io.jsonl import ReadStats, encode_line, read_jsonl, read_records

BODY = (b'{"i":1}\n'
        b"\n"  # blank: skipped, not counted
        b"   \n"
        b"not json\n"
        b"[1,2]\n"  # JSON, but not an object
        b'{"i":2}\n'
        b'{"i":3')  # torn: a kill mid-write


@pytest.mark.parametrize("gz", [False, True], ids=["jsonl", "gz"])
def test_counts_and_skips_the_damage(tmp_path: Path, gz: bool) -> None:
    path = tmp_path / ("a.jsonl.gz" if gz else "a.jsonl")
    path.write_bytes(gzip.compress(BODY) if gz else BODY)
    rs = ReadStats()
    assert list(read_records(path, rs)) == [{"i": 1}, {"i": 2}]
    assert (rs.lines, rs.records, rs.malformed) == (4, 2, 2)
    assert rs.torn_tail == b'{"i":3' and rs.error is None


def test_a_truncated_gz_keeps_the_records_before_the_damage(tmp_path: Path) -> None:
    data = b"".join(encode_line({"i": i, "pad": "x" * 200}) for i in range(2000))
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(data)[:-100])  # the end (and its CRC) is missing
    rs = ReadStats()
    got = list(read_records(path, rs))
    assert isinstance(rs.error, EOFError)
    assert 0 < len(got) < 2000 and got == [{"i": i, "pad": "x" * 200} for i in range(len(got))]
    with pytest.raises(EOFError):
        list(read_records(path, strict=True))


def test_not_a_gzip_file_and_a_missing_file_are_errors(tmp_path: Path) -> None:
    bad = tmp_path / "a.jsonl.gz"
    bad.write_bytes(b'{"i":1}\n')
    rs = ReadStats()
    assert list(read_records(bad, rs)) == [] and isinstance(rs.error, gzip.BadGzipFile)
    rs = ReadStats()
    assert list(read_records(tmp_path / "none.jsonl", rs)) == []
    assert isinstance(rs.error, FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        list(read_records(tmp_path / "none.jsonl", strict=True))
    assert read_jsonl(tmp_path / "none.jsonl") == []


@given(st.lists(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5),
                                max_size=3), max_size=20),
       st.binary(max_size=30).filter(lambda b: b"\n" not in b))
def test_plain_and_gz_read_the_same(tmp_path_factory: pytest.TempPathFactory,
                                    recs: list[dict[str, object]], tail: bytes) -> None:
    d = tmp_path_factory.mktemp("rr")
    data = b"".join(encode_line(r) for r in recs) + tail
    (d / "a.jsonl").write_bytes(data)
    (d / "a.jsonl.gz").write_bytes(gzip.compress(data))
    a, b = ReadStats(), ReadStats()
    assert list(read_records(d / "a.jsonl", a)) == recs == list(read_records(d / "a.jsonl.gz",
                                                                              b))
    assert a == b
    assert a.torn_tail == (tail or None)
