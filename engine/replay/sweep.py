"""Parameter sweeps: one replay per parameter set, on a process pool or a Dask cluster.

``python -m engine sweep --data DIR --grid KEY=V1,V2,… [--grid …] [--workers N]
[--cluster ADDRESS] [--config FILE] [--mode paper|observe] [--out DIR]``

Every ``--grid`` names a config key by its dotted path (``detector.min_edge_bps``,
``exits.time_stop_ms``, …) and its values (parsed as TOML values, like environment overrides);
the sweep runs the cartesian product. Each parameter set is one task: structure the config
(errors name the key), run :class:`engine.replay.driver.Replay` into ``OUT/run-NNN/`` and
summarise it (:mod:`engine.replay.summary`). Tasks are plain synchronous functions of picklable
arguments, so they run on a local :class:`concurrent.futures.ProcessPoolExecutor` (default,
``--workers``, default the CPU count) or, with ``--cluster tcp://HOST:PORT``, on an existing
Dask distributed scheduler (its workers must see ``--data`` and ``--out`` at the same paths, e.g.
a shared filesystem). Dask was chosen over Ray: see ``docs/architecture.md``.

Results: ``OUT/sweep.md`` (Markdown table) and ``OUT/sweep.csv``, one row per parameter set in
grid order (trades, win rate, P&L, P&L per trade, max drawdown, edge retention per offset);
with the ``report`` extra (matplotlib) also ``sweep_heatmap.png`` (P&L over the first two grid
keys) and ``sweep_equity.png`` (cumulative P&L per parameter set).
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import os
import tomllib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from engine.config import ConfigError, structure_config


class SweepError(Exception):
    """A sweep cannot run (bad grid, bad key or value, unreachable cluster)."""


@attrs.frozen
class GridAxis:
    key: str
    values: tuple[Any, ...]


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def parse_grid(specs: Sequence[str]) -> list[GridAxis]:
    axes: list[GridAxis] = []
    for spec in specs:
        key, sep, vals = spec.partition("=")
        key = key.strip()
        if not sep or not key or not vals.strip():
            raise SweepError(f"--grid must look like KEY=V1,V2,...; got {spec!r}")
        parts = [key_part for key_part in key.split(".")]
        if not all(parts):
            raise SweepError(f"--grid {spec!r}: malformed key {key!r}")
        if any(a.key == key for a in axes):
            raise SweepError(f"--grid {key} is given twice")
        axes.append(GridAxis(key, tuple(_parse_value(v.strip()) for v in vals.split(","))))
    if not axes:
        raise SweepError("give at least one --grid KEY=V1,V2,...")
    return axes


def param_sets(axes: Sequence[GridAxis]) -> list[dict[str, Any]]:
    return [dict(zip([a.key for a in axes], combo, strict=True))
            for combo in itertools.product(*(a.values for a in axes))]


def apply_params(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(base)
    for key, value in params.items():
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise SweepError(f"--grid {key}: {p!r} is not a config section")
            node = nxt
        node[parts[-1]] = value
    return data


def check_params(base: dict[str, Any], sets: Sequence[dict[str, Any]]) -> None:
    """Every parameter set structures (before any task runs): errors name the key."""
    for params in sets:
        try:
            structure_config(apply_params(base, params), f"--grid {params}")
        except ConfigError as exc:
            raise SweepError(str(exc)) from None


def run_one(base: dict[str, Any], params: dict[str, Any], data_dir: str, out_dir: str,
            mode: str) -> dict[str, Any]:
    """One sweep task (in a worker process): replay with ``params``; its summary row."""
    import logging

    from engine.replay.driver import Replay
    from engine.replay.summary import summarize

    engine_log = logging.getLogger("engine")
    level = engine_log.level
    engine_log.setLevel(logging.ERROR)  # the live run logged these warnings already
    try:
        cfg = structure_config(apply_params(base, params), f"--grid {params}")
        out = Path(out_dir)
        st = Replay(cfg, Path(data_dir), out, mode=mode).run()
    finally:
        engine_log.setLevel(level)  # in-process (one worker): leave the caller's logging be
    s = summarize(out)
    row: dict[str, Any] = {"params": params, "frames": st.frames, "signals": s.signals,
                           "trades": s.trades, "wins": s.wins, "win_rate": s.win_rate,
                           "pnl": s.pnl, "pnl_per_trade": s.pnl_per_trade,
                           "max_drawdown": s.max_drawdown,
                           "retention": {o.offset_ms: o.median_retention for o in s.offsets},
                           "equity": s.equity}
    return row


def _pool_map(tasks: list[tuple[Any, ...]], workers: int) -> list[dict[str, Any]]:
    if workers <= 1:
        return [run_one(*t) for t in tasks]
    with ProcessPoolExecutor(max_workers=workers) as ex:
        futs = [ex.submit(run_one, *t) for t in tasks]
        return [f.result() for f in futs]


def _dask_map(tasks: list[tuple[Any, ...]], address: str,
              timeout_s: float = 10.0) -> list[dict[str, Any]]:
    try:
        from distributed import Client
    except ImportError:
        raise SweepError("--cluster needs Dask distributed: pip install 'engine[cluster]'"
                         ) from None
    try:
        client = Client(address, timeout=timeout_s)
    except (OSError, TimeoutError) as exc:
        raise SweepError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        # pure=False: every parameter set is its own task, even if two look alike
        futs = [client.submit(run_one, *t, pure=False) for t in tasks]
        return list(client.gather(futs))
    finally:
        client.close()


def run_sweep(base: dict[str, Any], data_dir: Path, out_dir: Path, axes: Sequence[GridAxis],
              *, mode: str = "paper", workers: int | None = None,
              cluster: str | None = None,
              cluster_timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Run every parameter set; write the tables (and plots); return the rows in grid order."""
    sets = param_sets(axes)
    check_params(base, sets)
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.glob("run-*")):
        raise SweepError(f"--out {out_dir} already holds sweep runs: give an empty directory")
    tasks = [(base, params, str(Path(data_dir).resolve()),
              str((out_dir / f"run-{i:03d}").resolve()), mode)
             for i, params in enumerate(sets)]
    if cluster:
        rows = _dask_map(tasks, cluster, cluster_timeout_s)
    else:
        rows = _pool_map(tasks, workers or os.cpu_count() or 1)
    write_tables(rows, axes, out_dir)
    write_plots(rows, axes, out_dir)
    return rows


def _offsets(rows: Sequence[dict[str, Any]]) -> list[int]:
    return sorted({int(k) for r in rows for k in r["retention"]})


def _fmt(x: Any, nd: int = 4) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def table_rows(rows: Sequence[dict[str, Any]],
               axes: Sequence[GridAxis]) -> tuple[list[str], list[list[str]]]:
    offs = _offsets(rows)
    head = [a.key for a in axes] + ["signals", "trades", "win_rate", "pnl", "pnl_per_trade",
                                    "max_drawdown"] + [f"retention_{o}ms" for o in offs]
    body = []
    for r in rows:
        ret = {int(k): v for k, v in r["retention"].items()}
        body.append([_fmt(r["params"][a.key]) for a in axes]
                    + [str(r["signals"]), str(r["trades"]), _fmt(r["win_rate"]),
                       _fmt(r["pnl"]), _fmt(r["pnl_per_trade"]), _fmt(r["max_drawdown"])]
                    + [_fmt(ret.get(o)) for o in offs])
    return head, body


def write_tables(rows: Sequence[dict[str, Any]], axes: Sequence[GridAxis],
                 out_dir: Path) -> None:
    head, body = table_rows(rows, axes)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    w.writerows(body)
    (out_dir / "sweep.csv").write_text(buf.getvalue(), encoding="utf-8")
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(c or "-" for c in row) + " |" for row in body]
    (out_dir / "sweep.md").write_text("\n".join(md) + "\n", encoding="utf-8")


def write_plots(rows: Sequence[dict[str, Any]], axes: Sequence[GridAxis],
                out_dir: Path) -> list[Path]:
    """P&L heatmap over the first two keys and equity curves (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written: list[Path] = []
    if len(axes) >= 2:
        a, b = axes[0], axes[1]
        grid = [[0.0] * len(b.values) for _ in a.values]
        for r in rows:
            i = a.values.index(r["params"][a.key])
            j = b.values.index(r["params"][b.key])
            grid[i][j] += r["pnl"]
        fig, ax = plt.subplots(figsize=(6, 4))
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="RdYlGn")
        ax.set_xticks(range(len(b.values)), [str(v) for v in b.values])
        ax.set_yticks(range(len(a.values)), [str(v) for v in a.values])
        ax.set(xlabel=b.key, ylabel=a.key, title="P&L (USD)")
        fig.colorbar(im)
        p = out_dir / "sweep_heatmap.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        written.append(p)
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        eq = r["equity"]
        if eq:
            ax.plot([t / 1000.0 - eq[0][0] / 1000.0 for t, _ in eq], [v for _, v in eq],
                    label=", ".join(f"{k}={v}" for k, v in r["params"].items()))
    ax.set(xlabel="seconds", ylabel="cumulative P&L (USD)", title="Equity per parameter set")
    if len(rows) <= 12:
        ax.legend(fontsize=6)
    p = out_dir / "sweep_equity.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    written.append(p)
    return written


def load_base(config_path: str | None) -> dict[str, Any]:
    """The raw config dict (TOML of the file, or the embedded default)."""
    from engine.cli import embedded_default_config

    if config_path is None:
        return tomllib.loads(embedded_default_config())
    try:
        return tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"config file not found: {config_path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{config_path}: not valid TOML: {exc}") from None
