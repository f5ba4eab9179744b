"""Parquet export by kind and day, and every DuckDB query of docs/analysis.md over it."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from engine.cli import main
from engine.io.export import export_parquet

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.cli import embedded_default_config
    from engine.config import load_config
    from engine.replay.driver import Replay
    from engine.sim.record import record

    base = tmp_path_factory.mktemp("exp")
    rec = base / "rec"
    record(rec, seconds=60.0, seed=3, n_markets=12)
    out = base / "records"
    Replay(load_config(None, env={}, defaults=embedded_default_config()), rec, out,
           mode="paper").run()
    (out / "frames").mkdir()
    for p in rec.iterdir():
        (out / "frames" / p.name).write_bytes(p.read_bytes())
    return out


def test_export_partitions_by_kind_and_day_and_keeps_every_record(records: Path,
                                                                  tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    # a gzipped closed day (retention) is read like the .jsonl
    sig = next(records.glob("signals_*.jsonl"))
    n_sig = sig.read_bytes().count(b"\n")
    gz = sig.with_name(sig.name + ".gz")
    gz.write_bytes(gzip.compress(sig.read_bytes()))
    sig.unlink()
    out = tmp_path / "pq"
    files = export_parquet(records, out)
    kinds = {p.parent.parent.name for p in files}
    assert {"kind=signals", "kind=followups", "kind=orders", "kind=trades",
            "kind=frames"} <= kinds
    t = pq.read_table(out / "kind=signals" / f"day={sig.name[8:18]}" / "part-0.parquet")
    assert t.num_rows == n_sig and "raw_edge_bps" in t.column_names
    assert export_parquet(records, out) == []  # unchanged days are not rewritten


def test_every_query_in_docs_analysis_runs(records: Path, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "pq"
    assert main(["export", "--parquet", "--records", str(records), "--out", str(out)]) == 0
    queries = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)
    assert len(queries) >= 4
    con = duckdb.connect()
    results = [con.sql(q.replace("'P/", f"'{out}/")).fetchall() for q in queries]
    assert all(results), "every documented query returns rows"
    retention = dict((r[0], r[2]) for r in results[1])
    assert set(retention) == {1000, 3000, 5000}
