"""``python -m engine replay --venue bybit (--data DIR [--from ISO] [--to ISO] | --frames FILE |
--funding FILE) [options]``: backtest the funding/basis strategy
(:mod:`engine.replay.funding_backtest`) and print a summary.

Inputs: ``--data`` the engine's own frame recording (``<records dir>/frames/``, zstd day files,
as a live funding run writes them; its instruments and core start come from the recording,
``--from``/``--to`` select a window of receive times), replayed through the live shell's loop;
``--frames`` a recorded-frames JSON Lines file; ``--funding`` a funding-history CSV
(Bybit's ``symbol,fundingRate,fundingRateTimestamp`` [+ ``price``]) or a saved
``/v5/market/funding/history`` JSON answer. Instruments: ``--instruments-linear`` /
``--instruments-spot`` saved ``/v5/market/instruments-info`` answers (lot sizes, minimums,
``fundingInterval``), else a generic pair per ``[funding] symbols`` (``--interval-hours``,
fees ``--spot-taker-bps`` / ``--perp-taker-bps``). Strategy settings: the config's ``[funding]``
section (``--config``; absent: the defaults). Records (one JSON object a line, the same as a live
run's) go to ``--out`` (must not exist).

Exit codes: 0 done; 2 usage, config or input error (one line on stderr naming what to change).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from engine.config import FundingConfig
from engine.core.neutral import Instrument, InstrumentKind
from engine.replay.funding_backtest import (
    BacktestError,
    FundingBacktest,
    FundingRow,
    Tick,
    open_recording,
    read_funding_csv,
    replay_recording,
    ticks_from_frames,
    ticks_from_funding,
)

EXIT_OK = 0
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m engine replay --venue bybit",
        description="Backtest the funding/basis strategy on recorded Bybit frames or a funding "
                    "history, through the same core and an honest paper venue.")
    p.add_argument("--venue", choices=("bybit",), default="bybit")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="the engine's own frame recording: a records dir (its "
                                    "frames/) or a frames dir, as `engine run` writes it")
    src.add_argument("--frames", help="recorded frames, JSON Lines {ts, socket, raw}")
    src.add_argument("--funding", help="funding history: CSV (Bybit's field names) or the "
                                       "saved /v5/market/funding/history JSON")
    p.add_argument("--from", dest="t_from", default=None, metavar="ISO",
                   help="--data: first receive time to replay (UTC unless an offset is given)")
    p.add_argument("--to", dest="t_to", default=None, metavar="ISO",
                   help="--data: last receive time to replay")
    p.add_argument("--config", default=None, help="engine TOML with a [funding] section")
    p.add_argument("--instruments-linear", default=None, help="saved instruments-info (linear)")
    p.add_argument("--instruments-spot", default=None, help="saved instruments-info (spot)")
    p.add_argument("--interval-hours", type=float, default=8.0,
                   help="funding interval of the generic instruments (default 8)")
    p.add_argument("--spot-taker-bps", type=float, default=10.0)
    p.add_argument("--perp-taker-bps", type=float, default=5.5)
    p.add_argument("--price", type=float, default=None,
                   help="fixed mid for funding rows without a price column")
    p.add_argument("--spread-bps", type=float, default=2.0)
    p.add_argument("--depth-qty", type=float, default=10.0)
    p.add_argument("--step-s", type=float, default=None,
                   help="funding input: re-stamp the last known state this often (default: "
                        "half of [funding] quote_stale_ms; must be below it)")
    p.add_argument("--drain-s", type=float, default=5.0,
                   help="after the last input, run the clock this long so orders in flight "
                        "end (default 5)")
    p.add_argument("--latency-ms", type=float, default=None,
                   help="paper order latency (default: [paper] latency_ms)")
    p.add_argument("--spot-inventory", action="append", default=[], metavar="SYMBOL=QTY",
                   help="base coin owned at the start (negative funding sells it)")
    p.add_argument("--out", default=None, help="records file (default funding-backtest-<UTC>"
                                               ".jsonl; must not exist)")
    return p


def _result(path: str) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    res = data.get("result", data) if isinstance(data, dict) else None
    if not isinstance(res, dict):
        raise BacktestError(f"{path}: not a Bybit answer (no result object)")
    return res


def _instruments(args: argparse.Namespace, cfg: FundingConfig
                 ) -> tuple[dict[str, Instrument], dict[str, Instrument]]:
    from engine.venues.bybit.codec import CodecError, parse_instruments

    spot_fee, perp_fee = args.spot_taker_bps / 1e4, args.perp_taker_bps / 1e4
    if args.instruments_linear or args.instruments_spot:
        if not (args.instruments_linear and args.instruments_spot):
            raise BacktestError("give both --instruments-linear and --instruments-spot")
        try:
            perp = {i.symbol: i for i in parse_instruments(_result(args.instruments_linear),
                                                           perp_fee, perp_fee)}
            spot = {i.symbol: i for i in parse_instruments(_result(args.instruments_spot),
                                                           spot_fee, spot_fee)}
        except (CodecError, OSError, ValueError) as exc:
            raise BacktestError(f"instruments: {exc}") from None
        return spot, perp
    interval = int(args.interval_hours * 3_600_000)
    if interval <= 0:
        raise BacktestError("--interval-hours must be > 0")
    spot = {s: Instrument("bybit", s, InstrumentKind.SPOT, Decimal("0.01"), Decimal("0.000001"),
                          Decimal("0.000001"), Decimal("5"), taker_fee=spot_fee,
                          maker_fee=spot_fee) for s in cfg.symbols}
    perp = {s: Instrument("bybit", s, InstrumentKind.LINEAR_PERP, Decimal("0.01"),
                          Decimal("0.001"), Decimal("0.001"), Decimal("5"),
                          funding_interval_ms=interval, taker_fee=perp_fee, maker_fee=perp_fee)
            for s in cfg.symbols}
    return spot, perp


def _funding_rows(path: str) -> list[FundingRow]:
    if path.endswith(".json"):
        from engine.venues.bybit.codec import parse_funding_history

        try:
            rates = parse_funding_history(_result(path))
        except (KeyError, TypeError, ValueError) as exc:
            raise BacktestError(f"{path}: {type(exc).__name__} {exc}") from None
        return [FundingRow(r.symbol, r.rate, r.ts_ms, None) for r in rates]
    return read_funding_csv(Path(path))


def _inventory(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        sym, sep, qty = item.partition("=")
        try:
            out[sym] = float(qty)
        except ValueError:
            sep = ""
        if not sep or not sym:
            raise BacktestError(f"--spot-inventory {item!r}: expected SYMBOL=QTY")
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from engine.cli import load
    from engine.config import ConfigError

    try:
        ecfg = load(args.config)
        cfg = ecfg.funding or FundingConfig()
        latency = args.latency_ms if args.latency_ms is not None else ecfg.paper.latency_ms
        inventory = _inventory(args.spot_inventory)
        out = Path(args.out) if args.out else Path(
            f"funding-backtest-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.jsonl")
        if out.exists():
            raise BacktestError(f"--out {out} exists: give a new file")
        if (args.t_from or args.t_to) and not args.data:
            raise BacktestError("--from/--to select a window of a recording (--data)")
        if args.data:
            from engine.replay.cli import parse_iso_ms

            rec = open_recording(
                Path(args.data),
                from_ms=int(parse_iso_ms(args.t_from)) if args.t_from else None,
                to_ms=int(parse_iso_ms(args.t_to)) if args.t_to else None)
            if ecfg.funding is None:  # no [funding] in the config: the recorded symbols
                cfg = attrs.evolve(cfg, symbols=list(rec.header.get("symbols") or []))
            bt, records = replay_recording(cfg, rec, latency_ms=latency,
                                           drain_ms=int(args.drain_s * 1000),
                                           spot_balances=inventory)
            return _write(out, bt, records)
        spot, perp = _instruments(args, cfg)
        ticks: list[Tick]
        if args.frames:
            with Path(args.frames).open() as fh:
                ticks = list(ticks_from_frames(fh))
        else:
            step_ms = int(args.step_s * 1000) if args.step_s is not None else int(
                cfg.quote_stale_ms // 2)
            if step_ms >= cfg.quote_stale_ms:
                raise BacktestError(f"--step-s ({step_ms / 1000:g}) must be below [funding] "
                                    f"quote_stale_ms ({cfg.quote_stale_ms / 1000:g} s): every "
                                    "quote would be stale")
            rows = _funding_rows(args.funding)
            ticks = list(ticks_from_funding(rows, perp, price=args.price,
                                            spread_bps=args.spread_bps,
                                            depth_qty=args.depth_qty, step_ms=step_ms))
        if not ticks:
            raise BacktestError("the input holds no usable data")
        bt = FundingBacktest(cfg, spot, perp, start_ms=ticks[0].ts, latency_ms=latency,
                             spot_balances=inventory)
        records = bt.run(ticks, end_ms=ticks[-1].ts + int(args.drain_s * 1000))
    except (ConfigError, BacktestError, ValueError, OSError) as exc:
        print(f"engine replay --venue bybit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _write(out, bt, records)


def _write(out: Path, bt: FundingBacktest, records: list[dict[str, Any]]) -> int:
    """The records (one JSON object a line) to ``out``, and the summary line."""
    with out.open("w") as fh:
        for r in records:
            fh.write(json.dumps(r, separators=(",", ":")) + "\n")
    summary = bt.summary()
    t = summary["totals"]
    print(f"funding backtest: {summary['closed']} round trip(s), funding {t['funding']:.4f}, "
          f"basis {t['basis']:.4f}, fees {t['fees']:.4f}, net {t['net']:.4f} USDT; "
          f"{summary['settlements']} settlement(s), {summary['fills']} fill(s); "
          f"{len(summary['open'])} open at the end; records: {out}")
    return EXIT_OK
