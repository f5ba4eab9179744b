"""Frame recordings: every inbound WebSocket frame, info answer and outbound action, on disk.

Files: ``<records dir>/frames/frames_YYYY-MM-DD.zst`` (UTC day of the record's receive wall
time). A file is a concatenation of independent zstandard frames, one per flush; each zstd frame
holds whole records only, so a kill loses at most the records not yet flushed (the last flush
interval) and never damages earlier frames. A torn last zstd frame (a kill or power loss during
the write) is cut off when the file is opened again for appending (:func:`repair`), and skipped
with a warning by the reader.

One record, decompressed (see ``docs/data-formats.md``)::

    <kind> <batch> <wall_ns> <mono_ns> <nbytes>\\n<payload: nbytes bytes>\\n

``kind`` is one of :data:`KINDS`; ``batch`` numbers the socket reads of one run (the frames of
one read share it and their receive time); ``wall_ns`` is the engine's wall clock at the receive
(epoch ns, monotonic-anchored like :class:`engine.clock.WallClock`), ``mono_ns`` the raw
``time.monotonic_ns()``.

Recording stays off the hot path: the feed hands over the list of texts of a read and the
monotonic time already read (:meth:`FrameRecorder.inbound`: one ``time.monotonic_ns()`` and one
list append per read); encoding, signature stripping and compression run in
:meth:`FrameRecorder.run`, its own Trio task (compression and the write in a worker thread).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from itertools import compress, repeat
from operator import and_, eq, ne, not_
from pathlib import Path
from typing import Any, Final, NamedTuple

import msgspec
import trio
import zstandard

log = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1
K_RUN: Final = "run"  # a run started (payload: JSON header)
K_IN: Final = "in"  # one inbound WebSocket text frame
K_OUT: Final = "out"  # one outbound WebSocket text (post signatures removed)
K_INFO: Final = "info"  # one info answer the engine used (payload: {"request","response"})
K_CONN: Final = "conn"  # connection event (payload: {"event": "connected"|"disconnected", ...})
K_IN_ON: Final = "ins"  # one inbound frame of a named socket (payload: b"<socket> <frame>")
KINDS: Final = (K_RUN, K_IN, K_OUT, K_INFO, K_CONN, K_IN_ON)
FRAMES_SUBDIR: Final = "frames"
DAY_FILE: Final = re.compile(r"^frames_(?P<day>\d{4}-\d{2}-\d{2})\.zst$")
NS_PER_DAY: Final = 86_400 * 1_000_000_000
_HEADER_MAX: Final = 120

_json_enc = msgspec.json.Encoder()
_json_dec = msgspec.json.Decoder()


class FrameRecord(NamedTuple):
    """One decoded record (payload as bytes)."""

    kind: str
    batch: int
    wall_ns: int
    mono_ns: int
    payload: bytes


class FramesError(Exception):
    """A frame recording cannot be read (not a recording, unreadable directory)."""


def day_of(wall_ns: int) -> str:
    return dt.datetime.fromtimestamp(wall_ns // 1_000_000_000, dt.UTC).date().isoformat()


def frames_dir(records_dir: str | Path) -> Path:
    return Path(records_dir) / FRAMES_SUBDIR


def day_path(directory: Path, day: str) -> Path:
    return directory / f"frames_{day}.zst"


def encode_record(kind: str, batch: int, wall_ns: int, mono_ns: int, payload: bytes) -> bytes:
    return b"%s %d %d %d %d\n%s\n" % (kind.encode(), batch, wall_ns, mono_ns, len(payload),
                                      payload)


def strip_signature(text: str | bytes) -> bytes:
    """An outbound text without any post signature (``request.payload.signature``)."""
    raw = text.encode() if isinstance(text, str) else text
    if b'"signature"' not in raw:
        return raw
    try:
        msg = _json_dec.decode(raw)
    except msgspec.DecodeError:
        return b'{"unparsable_outbound_with_signature":true}'
    _drop_signatures(msg)
    return _json_enc.encode(msg)


def _drop_signatures(obj: Any) -> None:
    if isinstance(obj, dict):
        obj.pop("signature", None)
        for v in obj.values():
            _drop_signatures(v)
    elif isinstance(obj, list):
        for v in obj:
            _drop_signatures(v)


# ---------------------------------------------------------------- reading and repair


def _scan(data: bytes) -> tuple[list[bytes], int, str | None]:
    """Decompress the complete zstd frames of ``data``: (their contents, bytes they span, why
    the rest is unusable or None)."""
    out: list[bytes] = []
    pos = 0
    n = len(data)
    while pos < n:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        try:
            chunk = dobj.decompress(data[pos:])
        except zstandard.ZstdError as exc:
            return out, pos, f"corrupt zstd frame at byte {pos}: {exc}"
        if not dobj.eof:
            return out, pos, f"torn zstd frame at byte {pos} ({n - pos} bytes)"
        out.append(chunk)
        pos = n - len(dobj.unused_data)
    return out, pos, None


def _good_length(path: Path) -> tuple[int, int, str | None]:
    """(bytes spanned by the complete zstd frames, file size, why the rest is unusable),
    streaming: one chunk and one frame's decoder state in memory, output discarded."""
    good = 0
    pos = 0
    with path.open("rb") as fh:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        started = False
        pending = b""
        while True:
            chunk = pending or fh.read(1 << 20)
            pending = b""
            if not chunk:
                break
            started = True
            try:
                dobj.decompress(chunk)
            except zstandard.ZstdError as exc:
                size = path.stat().st_size
                return good, size, f"corrupt zstd frame at byte {good}: {exc}"
            if dobj.eof:
                pending = dobj.unused_data
                pos += len(chunk) - len(pending)
                good = pos
                dobj = zstandard.ZstdDecompressor().decompressobj()
                started = False
            else:
                pos += len(chunk)
        size = pos
        if started:
            return good, size, f"torn zstd frame at byte {good} ({size - good} bytes)"
    return good, size, None


def repair(path: Path) -> int:
    """Cut a torn or corrupt tail off ``path`` (kept: every complete frame); bytes removed."""
    try:
        good, size, why = _good_length(path)
    except FileNotFoundError:
        return 0
    if why is None:
        return 0
    log.warning("frames file %s: %s; cut off (the records before it are kept)", path, why)
    with path.open("r+b") as fh:
        fh.truncate(good)
        fh.flush()
        os.fsync(fh.fileno())
    return size - good


def parse_records(content: bytes) -> Iterator[FrameRecord]:
    """The records of one decompressed zstd frame (which holds whole records only)."""
    pos = 0
    n = len(content)
    while pos < n:
        nl = content.index(b"\n", pos, pos + _HEADER_MAX)
        kind, batch, wall, mono, size = content[pos:nl].split(b" ")
        start = nl + 1
        end = start + int(size)
        if content[end:end + 1] != b"\n":
            raise FramesError(f"record at offset {pos}: payload length does not match")
        yield FrameRecord(kind.decode(), int(batch), int(wall), int(mono), content[start:end])
        pos = end + 1


_KIND_STR: Final = {k.encode(): k for k in KINDS}


#: a record as a plain tuple, in :class:`FrameRecord`'s field order (replay's batch path)
RawRecord = tuple[str, int, int, int, bytes]


def parse_chunk(content: bytes, from_ns: int | None = None,
                to_ns: int | None = None) -> tuple[list[RawRecord], FramesError | None]:
    """The records of one decompressed zstd frame as a list of plain tuples (replay's batch
    path; ``FrameRecord._make`` turns one into a record), with
    ``from_ns <= wall_ns <= to_ns``: the same records as :func:`parse_records` +
    :func:`_filtered`, and on a bad record the ones before it plus the error (the caller
    raises it after using them, as the generator would have)."""
    fast = _split_chunk(content, from_ns, to_ns)
    if fast is not None:
        return fast, None
    out: list[RawRecord] = []
    append = out.append
    kinds = _KIND_STR
    index = content.index
    lo = from_ns if from_ns is not None else -1
    hi = to_ns if to_ns is not None else 1 << 63
    check = from_ns is not None or to_ns is not None
    pos = 0
    n = len(content)
    try:
        while pos < n:
            nl = index(b"\n", pos, pos + _HEADER_MAX)
            kind, batch, wall, mono, size = content[pos:nl].split(b" ")
            start = nl + 1
            end = start + int(size)
            if content[end:end + 1] != b"\n":
                return out, FramesError(f"record at offset {pos}: payload length does not match")
            w = int(wall)
            if not check or lo <= w <= hi:
                k = kinds.get(kind)
                append((k if k is not None else kind.decode(), int(batch), w, int(mono),
                        content[start:end]))
            pos = end + 1
    except ValueError as exc:  # no header line, or a header that is not 5 fields / numbers
        return out, _Unparsable(exc)
    return out, None


#: a zstd frame's records as columns (kinds, batches, wall_ns, mono_ns fields as bytes,
#: payloads), in record order, before the time filter: see :func:`_columns`
_Columns = tuple[list[str], list[int], list[bytes], list[bytes], list[bytes]]


def _columns(content: bytes) -> _Columns | None:
    """The records of one zstd frame as columns, split in C (``split``, ``map``) instead of
    one record at a time; None when the content is not the common case this handles (a
    payload holding a newline, a bad or unknown header, ...): the caller then parses it
    record by record (:func:`parse_chunk`), which also finds the error.

    Why these are exactly the per-record parser's records: splitting at every newline yields
    header, payload, header, payload, ... only if no payload holds a newline; that is
    verified, not assumed: every header has exactly five fields and is shorter than
    ``_HEADER_MAX`` (so the per-record parser finds the same header line), every payload
    piece is exactly as long as its header says (so the per-record parser's payload ends at
    that same newline and its next record starts at the same offset), and the content ends
    with the last payload's newline. By induction from offset 0 both read the same records;
    the fields are converted by the same ``int`` and the same kind table."""
    lines = content.split(b"\n")
    if lines.pop() != b"" or len(lines) & 1:
        return None
    heads = lines[0::2]
    pays = lines[1::2]
    n = len(heads)
    if n == 0:
        return [], [], [], [], []
    if list(map(bytes.count, heads, repeat(b" "))) != [4] * n:
        return None
    if max(map(len, heads)) >= _HEADER_MAX:
        return None
    toks = b" ".join(heads).split(b" ")
    kinds = list(map(_KIND_STR.get, toks[0::5]))
    if None in kinds:  # a kind this version does not know: the per-record path keeps it
        return None
    walls = toks[2::5]
    monos = toks[3::5]
    try:
        if list(map(int, toks[4::5])) != list(map(len, pays)):
            return None
        batches = list(map(int, toks[1::5]))
    except ValueError:
        return None
    # the per-record parser converts every field with int(): digits-only fields convert,
    # anything else (an error there, or a sign) is left to it
    if not (all(map(bytes.isdigit, walls)) and all(map(bytes.isdigit, monos))):
        return None
    return kinds, batches, walls, monos, pays  # type: ignore[return-value]  # no None kind


def _split_chunk(content: bytes, from_ns: int | None,
                 to_ns: int | None) -> list[RawRecord] | None:
    """:func:`parse_chunk`'s records from :func:`_columns` (None: parse record by record)."""
    cols = _columns(content)
    if cols is None:
        return None
    kinds, batches, walls_b, monos_b, pays = cols
    walls = list(map(int, walls_b))
    recs = list(zip(kinds, batches, walls, map(int, monos_b), pays, strict=True))
    if from_ns is None and to_ns is None:
        return recs
    lo = from_ns if from_ns is not None else -1
    hi = to_ns if to_ns is not None else 1 << 63
    return [r for r in recs if lo <= r[2] <= hi]


#: replay's unit (:func:`parse_batches`): ``(K_IN, batch, wall_ns, texts)`` for the records
#: of one socket read, else the record itself (a :data:`RawRecord`)
BatchItem = tuple[Any, ...]


def _texts(pays: list[bytes], ascii_only: bool) -> list[Any]:
    """The texts the wire decoder reads for these payloads: an ASCII payload as it is (msgspec
    reads bytes exactly as the str they spell), any other decoded as replay always did
    (UTF-8, ``replace``)."""
    if ascii_only:
        return pays
    return [p if p.isascii() else p.decode("utf-8", "replace") for p in pays]


def group_records(recs: list[RawRecord], ascii_only: bool = False) -> list[BatchItem]:
    """Records as :data:`BatchItem`: consecutive K_IN records of one batch number become one
    item (their payloads as :func:`_texts`), every other record stays an item of its own."""
    out: list[BatchItem] = []
    cur: list[bytes] | None = None
    cur_batch = -1
    for r in recs:
        if r[0] == K_IN:
            if cur is not None and r[1] == cur_batch:
                cur.append(r[4])
                continue
            cur = [r[4]]
            cur_batch = r[1]
            out.append((K_IN, r[1], r[2], cur))
        else:
            cur = None
            out.append(r)
    if not ascii_only:
        out = [(K_IN, it[1], it[2], _texts(it[3], False)) if it[0] == K_IN else it
               for it in out]
    return out


#: the record headers of a zstd frame of socket reads only, each followed by a newline: kind
#: ``in``, numbers of digits only without a leading zero (so equal digit strings are equal
#: numbers and back), bounded so that a header stays shorter than ``_HEADER_MAX``
_IN_HEADS: Final = re.compile(
    rb"(?:in (?:0|[1-9][0-9]{0,19}) (?:0|[1-9][0-9]{0,19}) [0-9]{1,20} (?:0|[1-9][0-9]{0,9})\n)*")
assert 2 + 3 * 21 + 11 < _HEADER_MAX


def _in_only_batches(content: bytes) -> tuple[list[BatchItem], int] | None:
    """:func:`parse_batches` for the common zstd frame — socket reads only (every record
    ``K_IN``), ASCII, no payload holding a newline — in fewer C passes than
    :func:`_columns` + grouping: (items, records), or None for anything else (the caller
    takes the general path).

    Why these are exactly :func:`parse_batches`' items: as in :func:`_columns`, splitting at
    every newline yields header, payload, ... only if each payload is exactly as long as its
    header says, which is checked for every record; ``_IN_HEADS`` checks every header (five
    fields, kind ``in``, digits that ``int`` converts, shorter than ``_HEADER_MAX``); without
    leading zeros, consecutive batch fields are the same number exactly when they are the
    same bytes, so the reads start where the bytes differ."""
    if not content.isascii():
        return None
    lines = content.split(b"\n")
    if lines.pop() != b"" or len(lines) & 1:
        return None
    heads = lines[0::2]
    n = len(heads)
    if n == 0:
        return [], 0
    heads.append(b"")
    joined = b"\n".join(heads)  # every header followed by a newline
    if _IN_HEADS.fullmatch(joined) is None:
        return None
    pays = lines[1::2]
    toks = joined.replace(b"\n", b" ").split(b" ")  # 5 per header, then one empty
    if list(map(int, toks[4::5])) != list(map(len, pays)):
        return None
    batches = toks[1::5]
    walls = toks[2::5]
    starts = [0, *compress(range(1, n), map(ne, batches[1:], batches[:-1]))]
    if len(starts) == n:  # one record per read (the common case): no slicing
        return list(zip(repeat(K_IN), map(int, batches), map(int, walls),
                        map(list, zip(pays)))), n
    ends = [*starts[1:], n]
    return list(zip(repeat(K_IN), map(int, map(batches.__getitem__, starts)),
                    map(int, map(walls.__getitem__, starts)),
                    map(pays.__getitem__, map(slice, starts, ends)))), n


def parse_batches(content: bytes, from_ns: int | None = None, to_ns: int | None = None
                  ) -> tuple[list[BatchItem], int, FramesError | None]:
    """The records of one zstd frame, as :func:`parse_chunk` gives them, grouped by
    :func:`group_records` (replay's reader): (items, how many records, the error after
    them). Split in C where it can (:func:`_in_only_batches`, :func:`_columns`): no tuple
    and no int per K_IN record, one Python step per socket read."""
    if from_ns is None and to_ns is None:
        fast = _in_only_batches(content)
        if fast is not None:
            return fast[0], fast[1], None
    cols = _columns(content)
    if cols is None:
        recs, err = parse_chunk(content, from_ns, to_ns)
        return group_records(recs, content.isascii()), len(recs), err
    kinds, batches, walls_b, monos_b, pays = cols
    if from_ns is not None or to_ns is not None:
        lo = from_ns if from_ns is not None else -1
        hi = to_ns if to_ns is not None else 1 << 63
        keep = [lo <= w <= hi for w in map(int, walls_b)]
        kinds = list(compress(kinds, keep))
        batches = list(compress(batches, keep))
        walls_b = list(compress(walls_b, keep))
        monos_b = list(compress(monos_b, keep))
        pays = list(compress(pays, keep))
    n = len(kinds)
    if n == 0:
        return [], 0, None
    is_in = list(map(K_IN.__eq__, kinds))
    # record i continues record i-1's read: both K_IN, the same batch number
    cont = map(and_, map(eq, batches[1:], batches[:-1]), map(and_, is_in[1:], is_in[:-1]))
    starts = [0, *compress(range(1, n), map(not_, cont))]
    ascii_only = content.isascii()
    if ascii_only and False not in is_in:  # only socket reads (the common case): all in C
        ends = [*starts[1:], n]
        return list(zip(repeat(K_IN), map(batches.__getitem__, starts),
                        map(int, map(walls_b.__getitem__, starts)),
                        map(pays.__getitem__, map(slice, starts, ends)))), n, None
    out: list[BatchItem] = []
    append = out.append
    for a, b in zip(starts, [*starts[1:], n], strict=True):
        if is_in[a]:
            append((K_IN, batches[a], int(walls_b[a]),
                    pays[a:b] if ascii_only else _texts(pays[a:b], False)))
        else:  # never continued nor continues: one record
            append((kinds[a], batches[a], int(walls_b[a]), int(monos_b[a]), pays[a]))
    return out, n, None


class _Unparsable(FramesError):
    """A record header :func:`parse_records` would have failed on (the original error is
    re-raised by :func:`iter_chunks`, so the batch path fails exactly like the per-record
    one)."""

    def __init__(self, exc: ValueError) -> None:
        super().__init__(str(exc))
        self.exc = exc


def day_files(directory: Path) -> list[Path]:
    """The frame day files of ``directory`` (or its ``frames/``), oldest first."""
    d = directory
    if not any(DAY_FILE.match(p.name) for p in _listdir(d)) and (d / FRAMES_SUBDIR).is_dir():
        d = d / FRAMES_SUBDIR
    return sorted(p for p in _listdir(d) if DAY_FILE.match(p.name))


def _listdir(d: Path) -> list[Path]:
    try:
        return list(d.iterdir())
    except OSError:
        return []


def _day_files_in_range(directory: Path, from_ns: int | None,
                        to_ns: int | None) -> Iterator[Path]:
    """The recording's day files that can hold records in ``[from_ns, to_ns]``, in order."""
    files = day_files(directory)
    if not files:
        raise FramesError(f"no frame recording (frames_YYYY-MM-DD.zst) in {directory}")
    for path in files:
        day = DAY_FILE.match(path.name)
        assert day is not None
        day0 = int(dt.datetime.fromisoformat(day["day"]).replace(tzinfo=dt.UTC).timestamp()
                   * 1e9)
        if to_ns is not None and day0 > to_ns:
            break
        if from_ns is not None and day0 + NS_PER_DAY <= from_ns:
            continue
        yield path


def iter_records(directory: Path, *, from_ns: int | None = None, to_ns: int | None = None,
                 progress: list[int] | None = None) -> Iterator[FrameRecord]:
    """Every record of the recording in ``directory``, in file order (receive order), with
    ``from_ns <= wall_ns <= to_ns``. A torn tail is skipped with a warning, never an error.
    ``progress[0]`` is increased by the compressed bytes read (for a progress bar)."""
    for path in _day_files_in_range(directory, from_ns, to_ns):
        yield from _file_records(path, from_ns, to_ns, progress)


def iter_chunks(directory: Path, *, from_ns: int | None = None, to_ns: int | None = None,
                progress: list[int] | None = None) -> Iterator[list[RawRecord]]:
    """The records of :func:`iter_records` as plain tuples, one list per zstd frame (replay's
    batch path: no generator step and no named tuple per record). The same records in the same order, the same errors and
    warnings at the same point of the stream."""
    for path in _day_files_in_range(directory, from_ns, to_ns):
        for content in _file_contents(path, progress):
            recs, err = parse_chunk(content, from_ns, to_ns)
            if recs:
                yield recs
            if err is not None:
                raise err.exc if isinstance(err, _Unparsable) else err


def iter_batches(directory: Path, *, from_ns: int | None = None, to_ns: int | None = None,
                 progress: list[int] | None = None) -> Iterator[tuple[list[BatchItem], int]]:
    """:func:`iter_chunks`, grouped by :func:`parse_batches`: (items, records) per zstd frame.
    A socket read split over two zstd frames comes as two items (the reader joins them)."""
    for path in _day_files_in_range(directory, from_ns, to_ns):
        for content in _file_contents(path, progress):
            items, n, err = parse_batches(content, from_ns, to_ns)
            if items:
                yield items, n
            if err is not None:
                raise err.exc if isinstance(err, _Unparsable) else err


def _file_records(path: Path, from_ns: int | None, to_ns: int | None,
                  progress: list[int] | None = None) -> Iterator[FrameRecord]:
    """Whole zstd frames only (the same cut as :func:`repair`): a torn or corrupt tail is
    skipped with a warning."""
    for content in _file_contents(path, progress):
        yield from _filtered(parse_records(content), from_ns, to_ns)


def _file_contents(path: Path, progress: list[int] | None = None) -> Iterator[bytes]:
    """The decompressed content of each whole zstd frame of ``path``, in order; a torn or
    corrupt tail is skipped with a warning."""
    with path.open("rb") as fh:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        parts: list[bytes] = []
        pending = b""
        offset = 0
        while True:
            chunk = pending or fh.read(1 << 20)
            if not pending and progress is not None:
                progress[0] += len(chunk)
            pending = b""
            if not chunk:
                break
            try:
                parts.append(dobj.decompress(chunk))
            except zstandard.ZstdError as exc:
                log.warning("frames file %s: corrupt data after byte %d skipped (%s)", path,
                            offset, exc)
                return
            if dobj.eof:
                content = b"".join(parts)
                parts = []
                pending = dobj.unused_data
                offset += len(chunk) - len(pending)
                dobj = zstandard.ZstdDecompressor().decompressobj()
                yield content
            else:
                offset += len(chunk)
        if parts:
            log.warning("frames file %s: torn last frame skipped (records after byte %d)",
                        path, offset)


def _last_whole(buf: bytes) -> int:
    """The length of the longest prefix of ``buf`` made of whole records."""
    pos = 0
    n = len(buf)
    while pos < n:
        nl = buf.find(b"\n", pos, pos + _HEADER_MAX)
        if nl < 0:
            break
        parts = buf[pos:nl].split(b" ")
        if len(parts) != 5 or not parts[4].isdigit():
            break
        end = nl + 1 + int(parts[4])
        if end >= n:
            break
        pos = end + 1
    return pos


def _filtered(recs: Iterable[FrameRecord], from_ns: int | None,
              to_ns: int | None) -> Iterator[FrameRecord]:
    if from_ns is None and to_ns is None:
        yield from recs
        return
    lo = from_ns if from_ns is not None else -1
    hi = to_ns if to_ns is not None else 1 << 63
    for r in recs:
        if lo <= r.wall_ns <= hi:
            yield r


def decode_json(payload: bytes) -> Any:
    return _json_dec.decode(payload)


def split_socket(payload: bytes) -> tuple[str, bytes]:
    """A :data:`K_IN_ON` payload → (socket name, the frame's bytes)."""
    socket, sep, frame = payload.partition(b" ")
    if not sep:
        raise FramesError(f"{K_IN_ON} record without a socket name: {payload[:40]!r}")
    return socket.decode("ascii", "replace"), frame


# ---------------------------------------------------------------- writing


class FrameFileWriter:
    """Appends zstd frames of whole records to per-day files (synchronous; one caller)."""

    def __init__(self, directory: Path, *, level: int = 3, fsync: bool = False) -> None:
        self.dir = directory
        self.level = level
        self.fsync = fsync
        self._fds: dict[str, int] = {}
        self.bytes_written = 0
        self.frames_written = 0
        self.repaired_bytes = 0

    def _fd(self, day: str) -> int:
        fd = self._fds.get(day)
        if fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            path = day_path(self.dir, day)
            self.repaired_bytes += repair(path)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            # only today and yesterday stay open
            for old in sorted(self._fds)[:-1]:
                os.close(self._fds.pop(old))
            self._fds[day] = fd
        return fd

    def write_day(self, day: str, data: bytes) -> None:
        """Compress ``data`` (whole records) as one zstd frame and append it with one write."""
        if not data:
            return
        frame = zstandard.ZstdCompressor(level=self.level, write_checksum=True,
                                         write_content_size=True).compress(data)
        fd = self._fd(day)
        view = memoryview(frame)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if self.fsync:
            os.fsync(fd)
        self.bytes_written += len(frame)
        self.frames_written += 1

    def close(self) -> None:
        for fd in self._fds.values():
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.close(fd)
        self._fds.clear()


class RecorderStats:
    __slots__ = ("batches", "frames_in", "frames_out", "dropped", "write_errors", "flushes")

    def __init__(self) -> None:
        self.batches = 0
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self.write_errors = 0
        self.flushes = 0


class FrameRecorder:
    """Takes frames from the hot path and writes them in its own task (see module docstring).

    ``anchor_ns`` maps ``time.monotonic_ns()`` to epoch ns (the engine's wall clock offset);
    ``max_pending`` bounds the items waiting for the writer (beyond it new items are dropped,
    counted and logged: recording never stalls or grows the engine without bound).
    """

    def __init__(self, directory: Path, *, flush_interval_ms: float = 1000.0, level: int = 3,
                 anchor_ns: int | None = None, max_pending: int = 1_000_000,
                 source: str = "engine", header: dict[str, Any] | None = None) -> None:
        self.dir = directory
        self.flush_interval_s = max(0.001, flush_interval_ms / 1000.0)
        self.anchor_ns = (time.time_ns() - time.monotonic_ns()) if anchor_ns is None \
            else int(anchor_ns)
        self.max_pending = max_pending
        self.stats = RecorderStats()
        self._items: list[tuple[str, int, Any]] = []
        self._file = FrameFileWriter(directory, level=level)
        self._batch = 0
        self._dropped_logged = 0
        self._header = {"format": FORMAT_VERSION, "source": source, "pid": os.getpid(),
                        **(header or {})}
        self.event(K_RUN, self._header)

    # -- hot path (synchronous, cheap)
    def inbound(self, texts: list[str]) -> None:
        """The texts of one socket read (the list is kept as is: do not mutate it after)."""
        items = self._items
        if len(items) < self.max_pending:
            items.append((K_IN, time.monotonic_ns(), texts))
        else:
            self.stats.dropped += len(texts)

    def outbound(self, texts: list[str]) -> None:
        items = self._items
        if len(items) < self.max_pending:
            items.append((K_OUT, time.monotonic_ns(), texts))
        else:
            self.stats.dropped += len(texts)

    def event(self, kind: str, obj: Any) -> None:
        """A connection event, an info answer or a run header (encoded to JSON now)."""
        self._items.append((kind, time.monotonic_ns(), _json_enc.encode(obj)))

    def info(self, request: Any, response: Any) -> None:
        self.event(K_INFO, {"request": request, "response": response})

    def inbound_on(self, socket: str, texts: list[str]) -> None:
        """The texts of one read of socket ``socket`` (a venue with several sockets, e.g.
        Bybit's linear, spot and private ones): :data:`K_IN_ON` records whose payload is the
        socket name, a space and the frame, so replay hands each frame to its socket's
        decoder. ``socket`` must hold no space."""
        items = self._items
        if len(items) < self.max_pending:
            items.append((K_IN_ON, time.monotonic_ns(), (socket, texts)))
        else:
            self.stats.dropped += len(texts)

    # -- the writer side
    def _encode(self, items: list[tuple[str, int, Any]]) -> dict[str, bytearray]:
        by_day: dict[str, bytearray] = {}
        anchor = self.anchor_ns
        st = self.stats
        cur_day = ""
        day_end = -1
        buf = bytearray()
        for kind, mono, obj in items:
            wall = mono + anchor
            if wall >= day_end or wall < day_end - NS_PER_DAY:
                cur_day = day_of(wall)
                day_end = (wall // NS_PER_DAY + 1) * NS_PER_DAY
                buf = by_day.setdefault(cur_day, bytearray())
            self._batch += 1
            b = self._batch
            if kind == K_IN:
                st.batches += 1
                st.frames_in += len(obj)
                for text in obj:
                    raw = text.encode() if isinstance(text, str) else bytes(text)
                    buf += encode_record(K_IN, b, wall, mono, raw)
            elif kind == K_IN_ON:
                st.batches += 1
                socket, texts = obj
                st.frames_in += len(texts)
                prefix = socket.encode() + b" "
                for text in texts:
                    raw = text.encode() if isinstance(text, str) else bytes(text)
                    buf += encode_record(K_IN_ON, b, wall, mono, prefix + raw)
            elif kind == K_OUT:
                st.frames_out += len(obj)
                for text in obj:
                    buf += encode_record(K_OUT, b, wall, mono, strip_signature(text))
            else:
                buf += encode_record(kind, b, wall, mono, obj)
        return by_day

    def _take(self) -> dict[str, bytearray]:
        items, self._items = self._items, []
        self._log_dropped()
        return self._encode(items) if items else {}

    def _write(self, by_day: dict[str, bytearray]) -> None:
        for day in sorted(by_day):
            try:
                self._file.write_day(day, bytes(by_day[day]))
            except OSError as exc:
                self.stats.write_errors += 1
                log.error("frames: cannot write %s: %s (errno %s); %d bytes of records lost",
                          day_path(self.dir, day), exc.strerror, exc.errno, len(by_day[day]))
        self.stats.flushes += 1

    def _log_dropped(self) -> None:
        d = self.stats.dropped
        if d > self._dropped_logged:
            log.error("frames: %d frame(s) dropped so far (recorder %d items behind)", d,
                      self.max_pending)
            self._dropped_logged = d

    def flush(self) -> None:
        """Encode, compress and write everything handed over so far (synchronous)."""
        by_day = self._take()
        if by_day:
            self._write(by_day)

    async def run(self) -> None:
        """The recorder task: every flush interval, one zstd frame per day touched; on
        cancellation a last flush (synchronous) and close."""
        try:
            while True:
                await trio.sleep(self.flush_interval_s)
                by_day = self._take()
                if by_day:
                    await trio.to_thread.run_sync(self._write, by_day)
        finally:
            self.close()

    def discard(self) -> None:
        """Drop everything handed over and not yet written (a start that failed records
        nothing)."""
        self._items = []

    def close(self) -> None:
        self.flush()
        self._file.close()

    @property
    def bytes_written(self) -> int:
        return self._file.bytes_written
