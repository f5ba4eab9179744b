"""UTC day files of the records dir: their naming, which files hold one kind's day, and the
one JSON Lines reader every consumer of them uses.

A kind's day is ``{kind}_{YYYY-MM-DD}.jsonl`` while it is written and, once retention
(:mod:`engine.ops.retention`) compressed the closed day, ``{kind}_{YYYY-MM-DD}.jsonl.gz``.
Both forms can exist after an interrupted compression or a late record appended to a
compressed day: :func:`compare_pair` decides from the content which to read and
:func:`day_sources` gives every reader (the restart journal, the followup recovery, the
daily report, the export) and retention the same answer, so a day is never counted twice.

:func:`read_records` is the reader: complete lines only (a torn last line, from a kill
mid-write, is counted and skipped), undecodable lines and lines that are not JSON objects
counted and skipped, a file that cannot be read or a gzip file that ends early recorded as an
error with every record up to that point kept. Each caller decides what to say about the
counts (:class:`ReadStats`).

This module is below ``engine.ops``: ``engine.io`` never imports ``engine.ops``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final, Literal

import attrs
import msgspec

DAY_FILE: Final = re.compile(
    r"^(?P<kind>[a-z_]+)_(?P<day>\d{4}-\d{2}-\d{2})\.jsonl(?P<gz>\.gz)?$")
CHUNK: Final = 1 << 20

PairStateName = Literal["same", "jsonl_extends", "gz_invalid", "merge"]

_decoder = msgspec.json.Decoder()


class IncompleteGzipError(Exception):
    """A ``.gz`` day file is truncated or corrupt (gzip checks its CRC and length at the end)."""


@attrs.frozen
class PairState:
    """How a ``.jsonl.gz`` relates to the ``.jsonl`` of the same day (see :func:`compare_pair`)."""

    state: PairStateName
    detail: str


def day_file(records_dir: Path, kind: str, day: dt.date) -> Path:
    """``{records_dir}/{kind}_{day}.jsonl`` (the form a day is written in)."""
    return records_dir / f"{kind}_{day.isoformat()}.jsonl"


def iter_plain(path: Path, limit: int | None = None) -> Iterator[bytes]:
    """The content of ``path`` (its first ``limit`` bytes) in chunks."""
    with open(path, "rb") as f:
        left = limit
        while left is None or left > 0:
            chunk = f.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


def iter_gz(path: Path) -> Iterator[bytes]:
    """The decompressed content of ``path`` in chunks; raises :class:`IncompleteGzipError`
    when the file is truncated or corrupt."""
    try:
        with gzip.open(path, "rb") as f:
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    return
                yield chunk
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise IncompleteGzipError(f"{path.name} is not a complete gzip file: {exc}") from exc


def digest(chunks: Iterable[bytes], prefix_len: int | None = None) -> tuple[str, int, str]:
    """(sha256 of everything, total length, sha256 of the first ``prefix_len`` bytes)."""
    h = hashlib.sha256()
    hp = hashlib.sha256()
    n = 0
    for chunk in chunks:
        h.update(chunk)
        if prefix_len is not None and n < prefix_len:
            hp.update(chunk[: prefix_len - n])
        n += len(chunk)
    return h.hexdigest(), n, hp.hexdigest()


def compare_pair(gz: Path, jsonl: Path) -> PairState:
    """Compare ``gz`` (decompressed) with ``jsonl`` without loading either into memory.

    * ``same``: the ``.gz`` holds everything the ``.jsonl`` holds (equal, or the ``.jsonl`` is
      a prefix of it): the ``.jsonl`` can go;
    * ``jsonl_extends``: the ``.jsonl`` starts with the ``.gz`` content and has more lines;
    * ``gz_invalid``: the ``.gz`` is truncated or corrupt;
    * ``merge``: neither contains the other (lines appended to a re-created ``.jsonl`` after
      the day was compressed): the day is the ``.gz`` content followed by the ``.jsonl``.

    Raises ``OSError`` when a file cannot be read.
    """
    lj = jsonl.stat().st_size
    try:
        hg, lg, hg_prefix = digest(iter_gz(gz), lj)
    except IncompleteGzipError as exc:
        return PairState("gz_invalid", str(exc))
    hj, lj2, hj_prefix = digest(iter_plain(jsonl), lg)
    if lj2 == lg and hj == hg:
        return PairState("same", "identical content")
    if lj2 < lg and hg_prefix == hj:
        return PairState("same", "the .jsonl is a prefix of the .gz")
    if lj2 > lg and hj_prefix == hg:
        return PairState("jsonl_extends", f"the .jsonl has {lj2 - lg} bytes more")
    return PairState("merge", "different content: .gz lines, then .jsonl lines")


def day_sources(records_dir: Path, kind: str, day: dt.date) -> tuple[list[Path], str | None]:
    """The files holding ``kind`` records of ``day``, in reading order, and a note when both
    forms exist (the same rule as retention's ``finish_compress``; never counts a line twice).
    """
    base = day_file(records_dir, kind, day)
    gz = base.with_name(base.name + ".gz")
    has_j, has_g = base.is_file(), gz.is_file()
    if not has_g:
        return ([base] if has_j else []), None
    if not has_j:
        return [gz], None
    try:
        st = compare_pair(gz, base)
    except OSError as exc:
        return [base], f"both {base.name} and {gz.name} exist; {exc}: read the .jsonl only"
    if st.state == "same":
        return [gz], f"both forms exist ({st.detail}): read the .gz"
    if st.state == "merge":
        return [gz, base], f"both forms exist ({st.detail})"
    return [base], f"both forms exist ({st.detail}): read the .jsonl"
