"""The simulator writes a frame recording of its own: ``python -m engine sim record --out DIR``.

The market model runs in virtual time as fast as it can (no sockets, no real-time pacing) and
every frame a subscriber of all markets' ``bbo`` and ``activeAssetCtx`` would receive is written
in the engine's frame recording format (docs/data-formats.md, "Frame recordings"): the
discovery answers (``perpDexs``, ``meta``) as ``info`` records, a ``connected`` event, the
subscription acks and the snapshots, then one socket read per model instant, received
``--latency-ms`` after the venue time. A minute of 40 markets takes a few seconds, so a fresh
clone can replay something at once (README).

Like the rest of the simulator this builds its frames with its own codec (``sim/frames.py``)
and writes the container itself (zstandard frames of length-prefixed records): it never imports
the engine's codec or recorder, so a replay of it also checks the two agree on the format.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Iterable
from pathlib import Path

import msgspec
import zstandard

from engine.sim import frames
from engine.sim.info import InfoService
from engine.sim.markets import XYZ_MARKETS
from engine.sim.model import Bbo, MarketModel, ModelParams

DEFAULT_START = "2026-01-05T15:00:00+00:00"  # a Monday, US session
_enc = msgspec.json.Encoder()


def _record(kind: str, batch: int, wall_ns: int, payload: bytes) -> bytes:
    # mono_ns: the simulator has no engine monotonic clock; virtual ns since the start
    return b"%s %d %d %d %d\n%s\n" % (kind.encode(), batch, wall_ns, wall_ns, len(payload),
                                      payload)


class SimRecordingWriter:
    """Day files of zstd frames, one frame per ``flush_records`` records."""

    def __init__(self, out: Path, flush_records: int = 5000) -> None:
        self.out = out
        self.flush_records = flush_records
        self._buf: list[bytes] = []
        self._day: str | None = None
        self.bytes_written = 0
        self.records = 0
        out.mkdir(parents=True, exist_ok=True)

    def add(self, wall_ns: int, data: bytes) -> None:
        day = dt.datetime.fromtimestamp(wall_ns // 1_000_000_000, dt.UTC).date().isoformat()
        if day != self._day:
            self.flush()
            self._day = day
        self._buf.append(data)
        self.records += 1
        if len(self._buf) >= self.flush_records:
            self.flush()

    def flush(self) -> None:
        if not self._buf or self._day is None:
            return
        frame = zstandard.ZstdCompressor(level=3, write_checksum=True,
                                         write_content_size=True).compress(b"".join(self._buf))
        self._buf = []
        path = self.out / f"frames_{self._day}.zst"
        with open(path, "ab") as fh:
            fh.write(frame)
        self.bytes_written += len(frame)


def record(out: Path, *, seconds: float = 60.0, seed: int = 1, n_markets: int = 40,
           start: str = DEFAULT_START, latency_ms: int = 1, aligned: bool = False) -> int:
    """Write ``seconds`` of the model's frames to ``out``; returns the number of records."""
    model = MarketModel(seed, n_markets, ModelParams(aligned=aligned))
    if aligned:
        model.set_aligned(True)
    info = InfoService(model)
    epoch0_ms = int(dt.datetime.fromisoformat(start).timestamp() * 1000)
    w = SimRecordingWriter(out)
    batch = 0

    def put(kind: str, t_ms: int, payloads: Iterable[bytes]) -> None:
        nonlocal batch
        batch += 1
        wall_ns = t_ms * 1_000_000
        for p in payloads:
            w.add(wall_ns, _record(kind, batch, wall_ns, p))

    t0 = epoch0_ms
    # no pid or host: the same arguments give the same bytes
    put("run", t0, [_enc.encode({"format": 1, "source": "sim", "seed": seed,
                                 "markets": n_markets, "aligned": aligned})])
    for body in ({"type": "perpDexs"}, {"type": "meta", "dex": "xyz"}):
        put("info", t0, [_enc.encode({"request": body, "response": info.handle(body)})])
    put("conn", t0, [_enc.encode({"event": "connected", "url": "sim://record"})])
    coins = model.coins
    acks = [frames.ack_payload("subscribe", {"type": ch, "coin": c})
            for ch in ("bbo", "activeAssetCtx") for c in coins]
    put("in", t0 + latency_ms, acks)
    end_ms = int(seconds * 1000)
    while True:
        t = model.next_time_ms()
        if t > end_ms:
            break
        events = model.advance(t)
        payloads: list[bytes] = []
        for ev in events:
            p = ev.payload
            if isinstance(p, Bbo):
                payloads.append(frames.bbo_payload(ev.coin, epoch0_ms + ev.time_ms, p))
            else:
                payloads.append(frames.ctx_payload(ev.coin, p))
        if payloads:
            put("in", epoch0_ms + t + latency_ms, payloads)
    put("conn", epoch0_ms + end_ms, [_enc.encode({"event": "disconnected",
                                                  "reason": "recording ended"})])
    w.flush()
    return w.records


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m engine sim record",
        description="Write a frame recording of the simulator's market data (virtual time, "
                    "as fast as possible) for `python -m engine replay --data DIR`.")
    p.add_argument("--out", required=True, help="directory for frames_YYYY-MM-DD.zst")
    p.add_argument("--seconds", type=float, default=60.0, help="virtual seconds (default 60)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--markets", type=int, default=40,
                   help=f"number of xyz markets (1-{len(XYZ_MARKETS)}, default 40)")
    p.add_argument("--start", default=DEFAULT_START, help=f"ISO start time ({DEFAULT_START})")
    p.add_argument("--latency-ms", type=int, default=1,
                   help="receive time after the venue time (default 1)")
    p.add_argument("--aligned", action="store_true", help="books never dislocate")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if any(out.glob("frames_*.zst")):
        print(f"engine sim record: {out} already holds a recording; give an empty directory",
              file=sys.stderr)
        return 2
    if not 1 <= args.markets <= len(XYZ_MARKETS):
        print(f"engine sim record: --markets must be 1-{len(XYZ_MARKETS)}", file=sys.stderr)
        return 2
    try:
        n = record(out, seconds=args.seconds, seed=args.seed, n_markets=args.markets,
                   start=args.start, latency_ms=args.latency_ms, aligned=args.aligned)
    except (OSError, ValueError) as exc:
        print(f"engine sim record: {exc}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in out.glob("frames_*.zst"))
    print(f"wrote {n} records ({size:,} bytes) to {out}")
    return 0
