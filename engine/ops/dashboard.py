"""The live dashboard's data: what the page at ``GET /`` shows and the task that streams it.

:class:`Dashboard` owns an :class:`engine.ops.sse.SseHub` (``GET /events``) and one publisher
task (:meth:`Dashboard.run`, in the ops service's nursery). It sends:

* ``snapshot`` every ``snapshot_interval_s`` (0.4 s) while a client is connected: status (the
  same document as ``/status``), per market the gate state, oracle, book and dislocation, open
  positions with entry, mark, unrealised P&L and exit-rule state, live orders, P&L, latency
  percentiles (from the metrics exposition, every 2 s) and the dashboard's own counters;
  with the funding/basis strategy (``FundingApp``: no markets, positions or orders of the
  Hyperliquid kind) also ``funding``: per symbol the pair's state, both legs, net delta, P&L
  parts, funding rate / APR / next funding time, hedge ratio and leg latency, the pairs' open
  orders with their state words, and the strategy's P&L in ``pnl`` (so the header figures and
  the equity curve work there too), all read from the core's own snapshot and ledgers;
* ``signal``, ``followup``, ``order``, ``trade``, ``alert`` events as they are written (the
  record writer's tap and the ops service's alert hook), at most 20 pushes a second;
* ``hello`` to a new client: the recent events of each kind and the equity curve so far.

Nothing here can slow the trading path: the tap only appends to bounded deques (a constant
amount of work per record, whether or not a browser is connected); encoding, snapshots and
fan-out happen in the publisher task, and a slow client only loses its own frames (see
:mod:`engine.ops.sse`). Every read of the engine's state is read-only and defensive: a field
the app does not have is shown as missing, never an error.

The page itself (``engine/ops/static/``) ships as package data and uses relative URLs only,
so it works through an SSH tunnel on any local port.
"""

from __future__ import annotations

import importlib.resources
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import msgspec
import trio

from engine.deadline import DeadlineSleeper
from engine.ops.sse import SseHub, sse_frame

log = logging.getLogger("engine.ops.dashboard")

# record kind (writer) -> event name (page)
EVENT_KINDS: Final = {"signals": "signal", "followups": "followup", "orders": "order",
                      "trades": "trade", "alerts": "alert"}
RECENT_PER_KIND: Final = 50
MAX_PENDING_RECORDS: Final = 4096
PUSH_MIN_INTERVAL_S: Final = 0.05
LATENCY_HISTOGRAMS: Final = {
    "engine_frame_to_decision_seconds": "frame → decision",
    "engine_decision_to_order_sent_seconds": "decision → order sent",
    "engine_order_sent_to_ack_seconds": "order sent → venue answer",
    "engine_exit_trigger_to_flatten_sent_seconds": "exit trigger → flatten sent",
    "engine_event_loop_lag_seconds": "event-loop lag",
    # the funding shell's (registered only there): leg-1 fill received → hedge order written
    "engine_funding_leg_latency_seconds": "leg-1 fill → hedge written",
}
QUANTILES: Final = (0.5, 0.9, 0.99)

# the page and its assets: URL path -> (file in engine/ops/static, content type)
ASSETS: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}

# fields the page shows per event (a record without one just lacks it)
_EVENT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "signals": ("signal_id", "market_key", "side", "timestamp_ms", "raw_edge_bps",
                "threshold_bps", "net_edge_bps", "oracle_px", "best_px", "suggested_size",
                "confidence", "trigger", "strength", "oracle_age_ms"),
    "followups": ("signal_id", "market_key", "side", "offset_ms", "status", "miss_reason",
                  "captured_at_ms", "t0_raw_edge_bps", "raw_edge_bps", "oracle_px", "best_px"),
    "orders": ("cloid", "market_key", "side", "purpose", "px", "sz", "event", "state",
               "message", "reason", "ts_ms"),
    "trades": ("market_key", "direction", "size", "entry_avg_px", "exit_avg_px", "exit_reason",
               "hold_ms", "net_pnl", "fees", "exit_time_ms", "entry_signal_id"),
    "alerts": ("level", "code", "message", "ts_ms"),
}


def load_pages() -> dict[str, tuple[str, bytes]]:
    """The dashboard files from the package (``OpsHandlers.pages``)."""
    root = importlib.resources.files("engine.ops") / "static"
    return {path: (ctype, (root / name).read_bytes()) for path, (name, ctype) in ASSETS.items()}


# ------------------------------------------------------------------ latency percentiles

_BUCKET_RE: Final = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)_bucket\{(.*)\}\s+(\S+)')
_LE_RE: Final = re.compile(r'(?:^|,)\s*le="([^"]*)"')

Buckets = dict[str, dict[float, float]]  # histogram -> upper bound -> cumulative count


def parse_buckets(text: str, names: Iterable[str]) -> Buckets:
    """Cumulative bucket counts of the named histograms from a Prometheus text exposition
    (label sets other than ``le`` are summed). Lines that do not parse are skipped."""
    wanted = set(names)
    out: Buckets = {}
    for line in text.splitlines():
        m = _BUCKET_RE.match(line)
        if m is None or m.group(1) not in wanted:
            continue
        le = _LE_RE.search(m.group(2))
        try:
            bound = float(le.group(1)) if le is not None else math.nan
            count = float(m.group(3))
        except ValueError:
            continue
        if math.isnan(bound) or math.isnan(count):
            continue
        per = out.setdefault(m.group(1), {})
        per[bound] = per.get(bound, 0.0) + count
    return out


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """``histogram_quantile``: linear interpolation inside the bucket holding rank ``q``; the
    largest finite bound when the rank is in ``+Inf``; None without observations."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if math.isinf(b):
                return prev_bound
            if c == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (c - prev_count)
        prev_bound, prev_count = (b if not math.isinf(b) else prev_bound), c
    return prev_bound


def latency_table(now: Buckets, then: Buckets | None = None) -> dict[str, dict[str, Any]]:
    """Per histogram: count and p50/p90/p99 in milliseconds, over everything since the start
    and over the window since ``then`` (``now - then``)."""
    out: dict[str, dict[str, Any]] = {}
    for name, label in LATENCY_HISTOGRAMS.items():
        b = now.get(name)
        if b is None:
            continue
        row: dict[str, Any] = {"label": label, "count": int(max(b.values(), default=0))}
        for q in QUANTILES:
            v = quantile(b, q)
            row[f"p{round(q * 100)}_ms"] = None if v is None else v * 1000.0
        old = (then or {}).get(name)
        if old is not None:
            window = {k: max(0.0, v - old.get(k, 0.0)) for k, v in b.items()}
            row["window_count"] = int(max(window.values(), default=0))
            for q in QUANTILES:
                v = quantile(window, q)
                row[f"window_p{round(q * 100)}_ms"] = None if v is None else v * 1000.0
        out[name] = row
    return out


# ------------------------------------------------------------------ read-only views of the app

def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def market_rows(core: Any, now_ms: float) -> list[dict[str, Any]]:
    """Per market: gate state, oracle vs book, the current dislocation (the detector's raw
    edge: BUY ``(oracle − ask)/oracle``, SELL ``(bid − oracle)/oracle``, in bps)."""
    rows: list[dict[str, Any]] = []
    for m in getattr(core, "markets", ()):
        oracle, bid, ask = (_num(getattr(m, a, None)) for a in ("oracle_px", "bid_px", "ask_px"))
        buy = (oracle - ask) / oracle * 1e4 if oracle and ask is not None else None
        sell = (bid - oracle) / oracle * 1e4 if oracle and bid is not None else None
        disloc, side = None, None
        for value, name in ((buy, "buy"), (sell, "sell")):
            if value is not None and (disloc is None or value > disloc):
                disloc, side = value, name
        mid = (bid + ask) / 2 if bid is not None and ask is not None else None
        gate = getattr(m, "blocked_by", None)
        since = _num(getattr(m, "blocked_since_ms", None))
        spec = getattr(m, "spec", None)
        bbo_t, ctx_t = _num(getattr(m, "bbo_recv_ms", None)), _num(getattr(m, "ctx_recv_ms", None))
        rows.append({
            "coin": getattr(m, "coin", "?"), "gate": gate,
            "gate_detail": getattr(m, "block_detail", "") if gate else "",
            "blocked_ms": None if gate is None or not since else max(0.0, now_ms - since),
            "halted": getattr(m, "halted", None), "live": bool(getattr(m, "live", False)),
            "oracle": oracle, "mark": _num(getattr(m, "mark_px", None)), "bid": bid, "ask": ask,
            "oracle_mid_bps": None if mid is None or not oracle else (oracle - mid) / mid * 1e4,
            "disloc_bps": disloc, "disloc_side": side,
            "bbo_age_ms": None if bbo_t is None else max(0.0, now_ms - bbo_t),
            "ctx_age_ms": None if ctx_t is None else max(0.0, now_ms - ctx_t),
            "sz_decimals": getattr(spec, "sz_decimals", None),
        })
    return rows


def position_rows(trading: Any, exits_cfg: Any, now_ms: float) -> list[dict[str, Any]]:
    """Open positions: size, entry, mark, unrealised P&L (USD and bps) and exit-rule state."""
    if trading is None:
        return []
    markets = getattr(getattr(trading, "strategy", None), "markets", [])
    time_stop = _num(getattr(exits_cfg, "time_stop_ms", None))
    rows: list[dict[str, Any]] = []
    for p in getattr(getattr(trading, "book", None), "positions", ()):
        if not getattr(p, "has_exposure", False):
            continue
        size = _num(getattr(p, "effective", None)) or 0.0
        entry = _num(getattr(p, "avg_px", None))
        idx = getattr(p, "idx", None)
        m = markets[idx] if isinstance(idx, int) and 0 <= idx < len(markets) else None
        mark = _num(getattr(m, "mark_px", None))
        bid, ask = _num(getattr(m, "bid_px", None)), _num(getattr(m, "ask_px", None))
        exit_px = bid if size > 0 else ask  # what a flatten would hit
        upnl = (mark - entry) * size if mark is not None and entry else None
        es = getattr(p, "exit_state", None)
        opened = _num(getattr(es, "entry_ms", None)) or _num(getattr(p, "entry_ms", None))
        held = None if opened is None else max(0.0, now_ms - opened)
        rows.append({
            "coin": getattr(p, "coin", "?"), "state": getattr(p, "state", None),
            "size": size, "entry_px": entry, "mark": mark, "unrealised_usd": upnl,
            "exit_side_pnl_bps": None if exit_px is None or not entry else
            (exit_px - entry) / entry * 1e4 * (1 if size > 0 else -1),
            "entry_edge_bps": _num(getattr(p, "entry_edge_bps", None)),
            "held_ms": held,
            "time_stop_in_ms": None if held is None or time_stop is None
            else max(0.0, time_stop - held),
            "best_pnl_bps": _num(getattr(es, "best_pnl_bps", None)),
            "trail_active": getattr(es, "trail_active", None),
            "exit_reason": getattr(p, "exit_reason", None),
            "flatten_failures": getattr(p, "flatten_failures", None),
            "signal_id": getattr(p, "entry_signal_id", None),
        })
    return rows


def order_rows(trading: Any, now_ms: float, limit: int = 50) -> list[dict[str, Any]]:
    """The live (non-terminal) orders, newest first."""
    orders = getattr(trading, "orders", None)
    if orders is None:
        return []
    rows = []
    for o in orders.active():
        created = _num(getattr(o, "created_ms", None))
        rows.append({
            "cloid": getattr(o, "cloid", None), "coin": getattr(o, "coin", None),
            "side": "buy" if getattr(o, "is_buy", False) else "sell",
            "purpose": getattr(o, "purpose", None), "state": getattr(o, "state", None),
            "px": getattr(o, "px_wire", None), "sz": getattr(o, "sz_wire", None),
            "reduce_only": getattr(o, "reduce_only", None),
            "age_ms": None if created is None else max(0.0, now_ms - created),
        })
    rows.sort(key=lambda r: r["age_ms"] if r["age_ms"] is not None else 0.0)
    return rows[:limit]


# ------------------------------------------------------------------ the funding strategy (Bybit)

def funding_mode(app: Any) -> bool:
    """True when the app runs the funding/basis strategy: it has the funding core's slot
    (``FundingApp.funding``, None until the run is built). The Hyperliquid apps have none."""
    return hasattr(app, "funding")


def _ledger_figures(core: Any, sym: str) -> tuple[float | None, float | None]:
    """(hedge ratio, leg latency ms) of the symbol's current round trip, from the core's own
    ledger (:class:`engine.core.funding_core.Ledger`); None where there is none yet."""
    led = (getattr(core, "ledgers", None) or {}).get(sym)
    if led is None:
        return None, None
    ratio = led.hedge_ratio() if getattr(led, "peak_perp", 0.0) else None
    latency = led.leg_latency_ms()
    return _num(ratio), _num(latency)


def _core_snapshot(core: Any, snap: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if snap is not None:
        return snap
    fn = getattr(core, "snapshot", None)
    found = fn() if callable(fn) else None
    return found if isinstance(found, Mapping) else {}


def _symbols(snap: Mapping[str, Any]) -> Mapping[str, Any]:
    syms = snap.get("symbols")
    return syms if isinstance(syms, Mapping) else {}


def funding_rows(core: Any, now_ms: float,
                 snap: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per configured symbol, in the config's order, from
    :meth:`FundingCore.snapshot` (``snap``, when the caller has it already) and the pair's
    ledger: the pair's state word (``idle``, ``leg1``, ``hedging``, ``hedged``, ``closing``,
    ``unwinding``), both legs, the net delta, the P&L parts as the core computes them
    (funding earned, basis at the mids, fees, net), the predicted funding rate, the
    strategy's APR, the next funding time, the basis, the leg risk, hedge ratio and leg
    latency."""
    if core is None:
        return []
    rows: list[dict[str, Any]] = []
    for sym, r in _symbols(_core_snapshot(core, snap)).items():
        if not isinstance(r, Mapping):
            continue
        nxt = _num(r.get("next_funding_ms"))
        opened = _num(r.get("opened_ms"))
        cooldown = _num(r.get("cooldown_until_ms"))
        ratio, latency = _ledger_figures(core, str(sym))
        decision = r.get("decision")
        orders = r.get("orders")
        rows.append({
            "symbol": str(sym), "state": str(r.get("state") or "idle"),
            "intent_id": r.get("intent_id"),
            "perp_qty": _num(r.get("perp_qty")), "spot_qty": _num(r.get("spot_qty")),
            "net_delta": _num(r.get("net_delta")), "exposure_usd": _num(r.get("exposure_usd")),
            "funding": _num(r.get("funding")), "basis_pnl": _num(r.get("basis_pnl")),
            "fees": _num(r.get("fees")), "net": _num(r.get("net")),
            "rate": _num(r.get("rate")), "apr": _num(r.get("apr")),
            "next_funding_ms": nxt,
            "next_funding_in_ms": None if nxt is None else max(0.0, nxt - now_ms),
            "basis_bps": _num(r.get("basis_bps")),
            "leg_risk_usd_s": _num(r.get("leg_risk_usd_s")),
            "hedge_ratio": ratio, "leg_latency_ms": latency,
            "held_ms": None if opened is None else max(0.0, now_ms - opened),
            "cooldown_in_ms": None if cooldown is None or cooldown <= now_ms
            else cooldown - now_ms,
            "decision": list(decision) if isinstance(decision, list | tuple) else [],
            "unreconciled": r.get("unreconciled"),
            "open_orders": len(orders) if isinstance(orders, list) else 0,
        })
    return rows


def funding_order_rows(core: Any, snap: Mapping[str, Any] | None = None,
                       limit: int = 50) -> list[dict[str, Any]]:
    """The open pairs' orders not over yet (per symbol oldest first, as
    :func:`engine.core.funding_core.open_order_rows` lists them), each with its
    :mod:`fsm.order` state word."""
    if core is None:
        return []
    rows: list[dict[str, Any]] = []
    for sym, r in _symbols(_core_snapshot(core, snap)).items():
        orders = r.get("orders") if isinstance(r, Mapping) else None
        for o in orders if isinstance(orders, list) else ():
            if not isinstance(o, Mapping):
                continue
            rows.append({"symbol": str(sym), "client_id": o.get("client_id"),
                         "leg": o.get("leg"), "role": o.get("role"), "side": o.get("side"),
                         "qty": o.get("qty"), "filled": o.get("filled"),
                         "state": o.get("state"), "reduce_only": o.get("reduce_only"),
                         "cancel_sent": o.get("cancel_sent")})
    return rows[:limit]


def funding_pnl(core: Any) -> tuple[float | None, float | None]:
    """(realised, unrealised) net P&L of the funding strategy in USD, the core's own figures:
    the closed round trips' net (``totals["net"]``) and the open pairs' at the mids
    (:meth:`FundingCore.open_net`); their sum is :meth:`FundingCore.net_pnl`, what the
    breakers and ``/status`` use. (None, None) before the core exists."""
    if core is None:
        return None, None
    totals = getattr(core, "totals", None)
    realised = _num(totals.get("net")) if isinstance(totals, Mapping) else None
    open_net = getattr(core, "open_net", None)
    unrealised = _num(open_net()) if callable(open_net) else None
    return realised, unrealised


ROUND_TRIP_FIELDS: Final = ("symbol", "intent_id", "direction", "opened_ms", "closed_ms",
                             "hold_ms", "entry_notional", "funding", "settlements",
                             "basis_pnl", "fees", "net", "net_apr", "hedge_ratio",
                             "fail_reason")


def funding_round_trip_rows(core: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The last ``limit`` closed round trips of the funding core, newest first, with the
    figures of their ``closed`` record (:attr:`FundingCore.round_trips`: the core's own P&L
    parts, not computed again)."""
    trips = list(getattr(core, "round_trips", ()) or ())
    return [{k: t.get(k) for k in ROUND_TRIP_FIELDS} for t in reversed(trips[-limit:])]


def funding_doc(app: Any, now_ms: float) -> dict[str, Any]:
    """The snapshot's ``funding`` part: the pairs, their open orders, the last closed round
    trips, the strategy's totals
    (closed round trips plus the open ones marked now, :meth:`FundingApp.totals`), the leg
    latency quantiles and the settlements booked."""
    core = getattr(app, "funding", None)
    snap = _core_snapshot(core, None) if core is not None else {}
    totals_fn = getattr(app, "totals", None)
    totals = totals_fn() if callable(totals_fn) and core is not None else {}
    latency = getattr(app, "latency", None)
    quantiles = getattr(latency, "quantiles", None)
    stats = getattr(app, "stats", None)
    closed = snap.get("totals")
    return {
        "symbols": funding_rows(core, now_ms, snap),
        "orders": funding_order_rows(core, snap),
        "round_trips": funding_round_trip_rows(core),
        "totals": {k: _num(v) for k, v in totals.items()} if isinstance(totals, Mapping) else {},
        "closed": int(closed.get("closed") or 0) if isinstance(closed, Mapping) else 0,
        "leg_latency": quantiles() if callable(quantiles) else {},
        "settlements": getattr(stats, "settlements", None),
        "killed": bool(snap.get("killed", False)),
        "connected": snap.get("connected"),
    }


def _compact(kind: str, record: Any) -> dict[str, Any]:
    if not isinstance(record, Mapping):
        try:
            record = msgspec.to_builtins(record)
        except (TypeError, ValueError):
            return {}
        if not isinstance(record, Mapping):
            return {}
    fields = _EVENT_FIELDS.get(kind)
    keys = fields if fields is not None else tuple(record)
    return {k: record[k] for k in keys if k in record}


# ------------------------------------------------------------------ the publisher

class Dashboard:
    """See the module docstring. ``status`` is the ``/status`` document builder, ``app`` the
    running app (its ``core``, ``trading``, ``cfg`` and ``clock`` are read, never written)."""

    def __init__(self, app: Any, status: Callable[[], Mapping[str, Any]],
                 metrics_text: Callable[[], bytes], *, snapshot_interval_s: float = 0.4,
                 latency_interval_s: float = 2.0, latency_window_s: float = 60.0,
                 equity_interval_s: float = 5.0, equity_points: int = 4320,
                 max_clients: int = 8, max_queued_events: int = 256) -> None:
        self.app = app
        self._status = status
        self._metrics_text = metrics_text
        self.snapshot_interval_s = snapshot_interval_s
        self.latency_interval_s = latency_interval_s
        self.equity_interval_s = equity_interval_s
        self.hub = SseHub(max_clients=max_clients, max_queued_events=max_queued_events,
                          greeting=self._greeting)
        self.recent: dict[str, deque[Any]] = {k: deque(maxlen=RECENT_PER_KIND)
                                              for k in EVENT_KINDS}
        self._pending: deque[tuple[str, Any]] = deque()
        self.pending_dropped = 0
        self.snapshots = 0
        self.snapshot_errors = 0
        self.equity: deque[tuple[float, float]] = deque(maxlen=equity_points)
        self._latency: dict[str, dict[str, Any]] = {}
        self._latency_history: deque[tuple[float, Buckets]] = deque(
            maxlen=max(2, int(latency_window_s / latency_interval_s) + 1))
        self._last_snapshot: bytes | None = None
        self._sleeper = DeadlineSleeper()

    # -------------------------------------------------------------- hooks (hot-ish path)
    def on_record(self, kind: str, ts_ms: float, record: Any) -> None:
        """The record writer's tap: remember, and queue for the connected pages."""
        recent = self.recent.get(kind)
        if recent is None:
            return
        recent.append(record)
        if self.hub.clients:
            if len(self._pending) >= MAX_PENDING_RECORDS:
                self._pending.popleft()
                self.pending_dropped += 1
            self._pending.append((kind, record))
            self._sleeper.wake()

    def on_alert(self, level: str, code: str, message: str, ts_ms: float) -> None:
        self.on_record("alerts", ts_ms, {"level": level, "code": code, "message": message,
                                         "ts_ms": ts_ms})

    # -------------------------------------------------------------- the task
    async def run(self) -> None:
        next_snapshot = next_latency = next_equity = trio.current_time()
        while True:
            await self._sleeper.sleep_until(min(next_snapshot, next_equity))
            now = trio.current_time()
            if now >= next_equity:
                next_equity = now + self.equity_interval_s
                self._sample_equity()
            if self.hub.clients:
                self._flush_events()
                if now >= next_latency:
                    next_latency = now + self.latency_interval_s
                    self._refresh_latency()
                if now >= next_snapshot:
                    self._publish_snapshot()
            else:
                self._pending.clear()
            if now >= next_snapshot:
                next_snapshot = now + self.snapshot_interval_s
            await trio.sleep(PUSH_MIN_INTERVAL_S)  # coalesce bursts of events

    def _flush_events(self) -> None:
        while self._pending:
            kind, record = self._pending.popleft()
            try:
                frame = sse_frame(EVENT_KINDS[kind], _compact(kind, record))
            except (TypeError, ValueError, msgspec.EncodeError) as exc:
                log.warning("dashboard: cannot encode a %s event: %s", kind, exc)
                continue
            self.hub.publish_event(frame)

    def _publish_snapshot(self) -> None:
        try:
            frame = sse_frame("snapshot", self.snapshot())
        except Exception:  # a display bug must never reach the engine: logged, counted
            self.snapshot_errors += 1
            if self.snapshot_errors <= 3 or self.snapshot_errors % 1000 == 0:
                log.exception("dashboard: snapshot failed (%d so far)", self.snapshot_errors)
            return
        self.snapshots += 1
        self._last_snapshot = frame
        self.hub.publish_snapshot(frame)

    def _refresh_latency(self) -> None:
        try:
            text = self._metrics_text().decode("utf-8", "replace")
        except Exception:  # the metrics registry is another component: never fatal here
            log.exception("dashboard: metrics exposition failed")
            return
        now_b = parse_buckets(text, LATENCY_HISTOGRAMS)
        t = trio.current_time()
        self._latency_history.append((t, now_b))
        then = self._latency_history[0][1] if len(self._latency_history) > 1 else None
        self._latency = latency_table(now_b, then)
        window = t - self._latency_history[0][0]
        for row in self._latency.values():
            row["window_s"] = round(window, 1)

    def _pnl(self) -> tuple[float | None, float | None]:
        """(realised net, unrealised) of the run in USD, or None where the app has none."""
        if funding_mode(self.app):
            return funding_pnl(getattr(self.app, "funding", None))
        trading = getattr(self.app, "trading", None)
        if trading is None:
            return None, None
        realised = 0.0
        for p in getattr(getattr(trading, "book", None), "positions", ()):
            realised += (_num(getattr(p, "realized_pnl", 0.0)) or 0.0) - \
                (_num(getattr(p, "fees", 0.0)) or 0.0)
        unrealised_fn = getattr(self.app, "unrealized_pnl", None)
        unrealised = _num(unrealised_fn()) if callable(unrealised_fn) else None
        return realised, unrealised

    def _sample_equity(self) -> None:
        try:
            realised, unrealised = self._pnl()
        except Exception:  # a display bug must never reach the engine: logged, counted
            self.snapshot_errors += 1
            if self.snapshot_errors <= 3 or self.snapshot_errors % 1000 == 0:
                log.exception("dashboard: equity sample failed (%d so far)",
                              self.snapshot_errors)
            return
        if realised is None:
            return
        self.equity.append((time.time() * 1000.0, realised + (unrealised or 0.0)))

    # -------------------------------------------------------------- documents
    def snapshot(self) -> dict[str, Any]:
        """One ``snapshot`` event's document (see the module docstring); with the funding
        strategy also ``funding`` (:func:`funding_doc`) and its P&L in ``pnl``."""
        app = self.app
        now_ms = float(app.clock())
        trading = getattr(app, "trading", None)
        cfg = getattr(app, "cfg", None)
        status = dict(self._status())
        realised, unrealised = self._pnl()
        found = status.get("breakers")
        breakers: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        doc: dict[str, Any] = {
            "t_ms": time.time() * 1000.0,
            "status": status,
            "markets": market_rows(getattr(app, "core", None), now_ms),
            "positions": position_rows(trading, getattr(cfg, "exits", None), now_ms),
            "orders": order_rows(trading, now_ms),
            "pnl": {"realised_usd": realised, "unrealised_usd": unrealised,
                    "total_usd": None if realised is None else realised + (unrealised or 0.0),
                    "today_usd": _num(breakers.get("daily_pnl")),
                    "equity_usd": _num(breakers.get("equity")),
                    "trades": len(getattr(trading, "trades", ()) or ())},
            "equity_last": list(self.equity[-1]) if self.equity else None,
            "latency": self._latency,
            "dashboard": self.stats_doc(),
        }
        if funding_mode(app):  # the Hyperliquid document stays exactly what it was
            part = funding_doc(app, now_ms)
            doc["funding"] = part
            doc["pnl"]["trades"] = part["closed"]
        return doc

    def stats_doc(self) -> dict[str, Any]:
        return self.hub.stats_doc() | {"snapshots": self.snapshots,
                                       "snapshot_errors": self.snapshot_errors,
                                       "records_dropped": self.pending_dropped,
                                       "snapshot_interval_s": self.snapshot_interval_s}

    def _greeting(self) -> list[bytes]:
        """A new page's first frames: recent events, the equity curve, the latest snapshot."""
        recent = {EVENT_KINDS[k]: [_compact(k, r) for r in v] for k, v in self.recent.items()}
        frames = [sse_frame("hello", {"recent": recent, "equity": list(self.equity),
                                      "snapshot_interval_s": self.snapshot_interval_s})]
        if self._last_snapshot is None:
            self._publish_snapshot()  # before the subscription: reaches no one else
        if self._last_snapshot is not None:
            frames.append(self._last_snapshot)
        return frames
