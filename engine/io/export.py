"""``python -m engine export --parquet [--records DIR] [--out DIR] [--kinds K,…]``: record day
files to Parquet, partitioned by kind and day (Hive style), for DuckDB/polars (docs/analysis.md).

Layout: ``OUT/kind=<kind>/day=<YYYY-MM-DD>/part-0.parquet`` for every ``<kind>_<day>.jsonl``
(or its ``.jsonl.gz`` after retention; the two forms are merged exactly as the daily report
reads them, :func:`engine.io.dayfiles.day_sources`), and ``kind=frames`` for the frame
recordings (one row per record: ``rec_kind``, ``batch``, ``wall_ns``, ``mono_ns``,
``payload`` as text). Files are written through a temp name and renamed, so a reader never sees
half a file; a day already exported is rewritten only when its source is newer. One day file
is in memory at a time (months are exported day by day). Needs ``pyarrow`` (the ``analysis``
extra).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from engine.io.dayfiles import DAY_FILE, day_sources
from engine.io.jsonl import read_records


class ExportError(Exception):
    """The export cannot run (no pyarrow, unreadable records dir)."""


def _pa() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError("export --parquet needs pyarrow: pip install 'engine[analysis]'"
                          ) from None
    return pa, pq


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """The records of one day file (:func:`engine.io.jsonl.read_records`; read errors raise)."""
    return read_records(path, strict=True)


def _day_groups(records_dir: Path) -> dict[tuple[str, str], list[Path]]:
    keys: set[tuple[str, str]] = set()
    for p in records_dir.iterdir():
        m = DAY_FILE.match(p.name)
        if m and p.is_file():
            keys.add((m["kind"], m["day"]))
    out: dict[tuple[str, str], list[Path]] = {}
    for kind, day in sorted(keys):
        paths, _note = day_sources(records_dir, kind, dt.date.fromisoformat(day))
        out[(kind, day)] = list(paths)
    return out


def _table(rows: list[dict[str, Any]]) -> Any:
    """Columns = the union of the rows' keys (first-seen order); a column whose values do not
    share one Arrow type (e.g. a number in one row, an object in another) is stored as JSON
    text, so no record is dropped or mangled."""
    pa, _ = _pa()
    names: dict[str, None] = {}
    for r in rows:
        for k in r:
            names.setdefault(k, None)
    enc = msgspec.json.Encoder()
    cols = {}
    for name in names:
        vals = [r.get(name) for r in rows]
        try:
            arr = pa.array(vals)
            ok = _parquet_ok(pa, arr.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            ok = False
        if not ok:
            arr = pa.array([None if v is None else enc.encode(v).decode() for v in vals],
                           type=pa.string())
        cols[name] = arr
    return pa.table(cols)


def _parquet_ok(pa: Any, t: Any) -> bool:
    """Parquet cannot store a struct without fields (an always-empty object)."""
    if pa.types.is_struct(t):
        return t.num_fields > 0 and all(_parquet_ok(pa, t.field(i).type)
                                        for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return bool(_parquet_ok(pa, t.value_type))
    return True


def _write(table: Any, dest: Path) -> None:
    _, pq = _pa()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, dest)


def _fresh(dest: Path, sources: list[Path]) -> bool:
    try:
        t = dest.stat().st_mtime_ns
    except FileNotFoundError:
        return False
    return all(s.stat().st_mtime_ns <= t for s in sources)


def export_parquet(records_dir: Path, out_dir: Path, kinds: set[str] | None = None,
                   frames: bool = True) -> list[Path]:
    """Export every day file (and the frame recordings); returns the Parquet files written."""
    pa, _ = _pa()
    if not records_dir.is_dir():
        raise ExportError(f"records dir {records_dir} does not exist")
    written: list[Path] = []
    for (kind, day), sources in _day_groups(records_dir).items():
        if kinds is not None and kind not in kinds:
            continue
        dest = out_dir / f"kind={kind}" / f"day={day}" / "part-0.parquet"
        if _fresh(dest, sources):
            continue
        rows = [r for src in sources for r in _lines(src)]
        if not rows:
            continue
        _write(_table(rows), dest)
        written.append(dest)
    fdir = records_dir / "frames"
    if frames and (kinds is None or "frames" in kinds) and fdir.is_dir():
        from engine.io.frames import DAY_FILE as FRAMES_DAY
        from engine.io.frames import _file_records

        for src in sorted(fdir.iterdir()):
            m = FRAMES_DAY.match(src.name)
            if m is None:
                continue
            dest = out_dir / "kind=frames" / f"day={m['day']}" / "part-0.parquet"
            if _fresh(dest, [src]):
                continue
            cols: dict[str, list[Any]] = {"rec_kind": [], "batch": [], "wall_ns": [],
                                          "mono_ns": [], "payload": []}
            for r in _file_records(src, None, None):
                cols["rec_kind"].append(r.kind)
                cols["batch"].append(r.batch)
                cols["wall_ns"].append(r.wall_ns)
                cols["mono_ns"].append(r.mono_ns)
                cols["payload"].append(r.payload.decode("utf-8", "replace"))
            _write(pa.table(cols), dest)
            written.append(dest)
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine export",
                                description="Export record day files to Parquet, partitioned "
                                            "by kind and day (docs/analysis.md).")
    p.add_argument("--parquet", action="store_true", required=True,
                   help="the output format (the only one)")
    p.add_argument("--records", default="data/sim/paper",
                   help="records dir (default: data/sim/paper, the default run's)")
    p.add_argument("--out", default=None, help="output dir (default: RECORDS/parquet)")
    p.add_argument("--kinds", default=None, help="comma-separated kinds (default: all)")
    p.add_argument("--no-frames", action="store_true", help="skip the frame recordings")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rec = Path(args.records)
    out = Path(args.out) if args.out else rec / "parquet"
    kinds = set(args.kinds.split(",")) if args.kinds else None
    try:
        files = export_parquet(rec, out, kinds, frames=not args.no_frames)
    except (ExportError, OSError) as exc:
        print(f"engine export: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(files)} Parquet file(s) under {out.resolve()}")
    return 0
