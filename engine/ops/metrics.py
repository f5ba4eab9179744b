"""Prometheus metrics: owns a small dependency-free registry and the engine's metric set.

The engine's hot path records into these objects, so an observation is a plain attribute or
list update: no locks (everything runs on the one Trio thread), no allocation beyond Python's own
number objects. ``Counter.inc`` and ``Histogram.observe`` cost well under 1 µs
(``bench/bench_metrics.py``, which measures ``prometheus_client`` side by side: 5-10 times the
cost per observation and 13 times per render, which blocks the engine's one thread; why this
registry stays is in docs/architecture.md "Why the metrics registry is hand-written").

* :class:`Counter` (``inc``), :class:`Gauge` (``set``/``inc``/``dec``), both optionally backed by
  a callback read at scrape time (``Gauge(..., fn=lambda: ...)``);
* :class:`Histogram` with fixed buckets: ``observe`` bisects into a list of per-bucket counts
  and adds to the sum; the cumulative ``_bucket{le=...}`` series are computed at scrape;
* labelled families (:class:`CounterFamily`, :class:`GaugeFamily`, :class:`HistogramFamily`):
  ``family.labels("xyz:GOLD")`` returns a cached child, the family renders every child;
* :class:`Registry`: ``register`` metrics, ``add_collector(fn)`` for callbacks run at scrape
  time (stream ages, positions, P&L, orders by state are computed lazily there, not on the hot
  path), and ``render() -> bytes`` in the Prometheus text format 0.0.4. A callback that raises
  is logged (once until it succeeds again) and counted; the scrape still succeeds.

:class:`EngineMetrics` defines the engine's metrics (all named ``engine_*``);
:func:`run_loop_lag_monitor` measures event-loop lag into a histogram.
"""

from __future__ import annotations

import logging
import math
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, Generic, TypeVar

import trio

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# 10 µs .. 5 s: decision (~15 µs budget), send/ack (ms), flatten (up to seconds)
LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.00001, 0.000015, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
# event-loop lag: how late a periodic sleep woke up
LOOP_LAG_BUCKETS: Final[tuple[float, ...]] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
)

_NAME_RE: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Number = float | int
ValueFn = Callable[[], Number]


def _check_name(name: str) -> str:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise ValueError(f"invalid metric name {name!r}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")
    return name


def _check_labelnames(name: str, labelnames: Sequence[str], reserved: tuple[str, ...] = ()
                      ) -> tuple[str, ...]:
    names = tuple(labelnames)
    if not names:
        raise ValueError(f"{name}: a labelled family needs at least one label name")
    for ln in names:
        if not isinstance(ln, str) or _LABEL_RE.fullmatch(ln) is None or ln.startswith("__"):
            raise ValueError(f"{name}: invalid label name {ln!r}")
        if ln in reserved:
            raise ValueError(f"{name}: label name {ln!r} is reserved")
    if len(set(names)) != len(names):
        raise ValueError(f"{name}: duplicate label names in {names!r}")
    return names


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: Number) -> str:
    """A sample value as Prometheus writes it: ``+Inf``, ``-Inf``, ``NaN``, else Python repr
    of the float (``1.0``, ``1e-05``), which Go's ``ParseFloat`` reads."""
    v = float(value)
    if v != v:
        return "NaN"
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    return repr(v)


def _label_block(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs)
    return f"{{{inner}}}" if inner else ""


class _ScrapeState:
    """Per-registry bookkeeping of failing scrape-time callbacks (log once per failure run)."""

    __slots__ = ("errors", "_failing")

    def __init__(self) -> None:
        self.errors = 0
        self._failing: set[str] = set()

    def call(self, what: str, fn: Callable[[], object]) -> bool:
        """Run ``fn``; on an exception log it (once per failure run), count it, return False."""
        try:
            fn()
        except Exception:
            self.errors += 1
            if what not in self._failing:
                self._failing.add(what)
                log.exception("metrics: %s raised at scrape time; its samples are left out "
                              "until it succeeds again", what)
            return False
        if what in self._failing:
            self._failing.discard(what)
            log.info("metrics: %s succeeds again", what)
        return True

    def read(self, what: str, fn: ValueFn) -> float | None:
        """``float(fn())``, or None (logged, counted) when it raises or is not a number."""
        out: list[float] = []
        self.call(what, lambda: out.append(float(fn())))
        return out[0] if out else None


# -- metric types ---------------------------------------------------------------------------------


class _Scalar:
    """One number per series, or ``fn`` (optional) read at scrape time instead."""

    __slots__ = ("name", "help", "value", "fn")

    def __init__(self, name: str = "", help: str = "", *, fn: ValueFn | None = None) -> None:
        self.name = _check_name(name) if name else ""
        self.help = help
        self.value: Number = 0
        self.fn = fn

    def _samples(self, name: str, labels: str, state: _ScrapeState, what: str
                 ) -> Iterable[str]:
        value = self.value
        if self.fn is not None:
            got = state.read(f"value callback of {what}", self.fn)
            if got is None:
                return ()
            value = got
        return (f"{name}{labels} {format_value(value)}",)


class Counter(_Scalar):
    """A monotonically increasing value; ``fn`` (optional) is read at scrape time instead."""

    __slots__ = ()
    typ: Final = "counter"

    def inc(self, amount: Number = 1) -> None:
        if not amount >= 0:
            raise ValueError(f"counter {self.name or '(child)'}: inc by {amount!r} < 0")
        self.value += amount


class Gauge(_Scalar):
    """A value that goes up and down; ``fn`` (optional) is read at scrape time instead."""

    __slots__ = ()
    typ: Final = "gauge"

    def set(self, value: Number) -> None:
        self.value = value

    def inc(self, amount: Number = 1) -> None:
        self.value += amount

    def dec(self, amount: Number = 1) -> None:
        self.value -= amount


def _check_buckets(name: str, buckets: Sequence[float]) -> tuple[float, ...]:
    bounds = [float(b) for b in buckets]
    if bounds and bounds[-1] == math.inf:
        bounds.pop()
    if not bounds:
        raise ValueError(f"{name}: a histogram needs at least one finite bucket")
    if any(not math.isfinite(b) for b in bounds):
        raise ValueError(f"{name}: bucket bounds must be finite (+Inf is implicit): {buckets!r}")
    if any(b >= c for b, c in zip(bounds, bounds[1:], strict=False)):
        raise ValueError(f"{name}: bucket bounds must be strictly increasing: {buckets!r}")
    return tuple(bounds)


class Histogram:
    """Fixed buckets (``le`` upper bounds, inclusive; ``+Inf`` implicit), sum and count.

    ``observe`` does one ``bisect`` and two additions. NaN is not observable (it would poison
    ``_sum`` forever): it is dropped, counted in ``dropped``, and logged once per histogram.
    """

    __slots__ = ("name", "help", "bounds", "counts", "sum", "dropped", "_les")
    typ: Final = "histogram"

    def __init__(self, name: str = "", help: str = "",
                 buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name = _check_name(name) if name else ""
        self.help = help
        self.bounds: tuple[float, ...] = _check_buckets(name or "histogram", buckets)
        self.counts: list[int] = [0] * (len(self.bounds) + 1)  # last: above every bound
        self.sum = 0.0
        self.dropped = 0
        self._les = [format_value(b) for b in self.bounds] + ["+Inf"]

    def observe(self, value: float) -> None:
        if value != value:
            self._drop_nan()
            return
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def _drop_nan(self) -> None:
        self.dropped += 1
        if self.dropped == 1:
            log.warning("metrics: histogram %s observed NaN; dropped (further NaNs are "
                        "counted, not logged)", self.name or "(labelled child)")

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[int]:
        """Cumulative counts per bound, the last one (``+Inf``) equal to :attr:`count`."""
        out: list[int] = []
        total = 0
        for c in self.counts:
            total += c
            out.append(total)
        return out

    def _samples(self, name: str, labels: str, state: _ScrapeState, what: str
                 ) -> Iterable[str]:
        # labels is "" or '{a="x"}'; le goes last inside the braces
        prefix = labels[1:-1] + "," if labels else ""
        lines = [f'{name}_bucket{{{prefix}le="{le}"}} {c}'
                 for le, c in zip(self._les, self.cumulative(), strict=True)]
        lines.append(f"{name}_sum{labels} {format_value(self.sum)}")
        lines.append(f"{name}_count{labels} {self.count}")
        return lines


Metric = Counter | Gauge | Histogram
M = TypeVar("M", Counter, Gauge, Histogram)


class _Family(Generic[M]):
    """A labelled family: one child per distinct label-value tuple, created on first use."""

    typ: str = ""

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        self.name = _check_name(name)
        self.help = help
        reserved = ("le",) if self.typ == "histogram" else ()
        self.labelnames = _check_labelnames(name, labelnames, reserved)
        self._children: dict[tuple[str, ...], M] = {}
        self._label_blocks: dict[tuple[str, ...], str] = {}

    def _new_child(self) -> M:
        raise NotImplementedError

    def labels(self, *values: str) -> M:
        """The child for these label values (in ``labelnames`` order), cached."""
        child = self._children.get(values)
        if child is None:
            child = self._create(values)
        return child

    def _create(self, values: tuple[str, ...]) -> M:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected {len(self.labelnames)} label values "
                             f"{self.labelnames!r}, got {values!r}")
        if not all(isinstance(v, str) for v in values):
            raise ValueError(f"{self.name}: label values must be str, got {values!r}")
        child = self._new_child()
        self._children[values] = child
        self._label_blocks[values] = _label_block(zip(self.labelnames, values, strict=True))
        return child

    def remove(self, *values: str) -> None:
        """Forget one child (its series disappears from the next scrape); absent is a no-op."""
        self._children.pop(values, None)
        self._label_blocks.pop(values, None)

    def clear(self) -> None:
        self._children.clear()
        self._label_blocks.clear()

    def children(self) -> dict[tuple[str, ...], M]:
        return dict(self._children)

    def _samples(self, name: str, labels: str, state: _ScrapeState, what: str
                 ) -> Iterable[str]:
        lines: list[str] = []
        for key, child in list(self._children.items()):
            lines.extend(child._samples(name, self._label_blocks[key], state,
                                        f"{what}{self._label_blocks[key]}"))
        return lines


class CounterFamily(_Family[Counter]):
    typ = "counter"

    def _new_child(self) -> Counter:
        return Counter()


class GaugeFamily(_Family[Gauge]):
    typ = "gauge"

    def _new_child(self) -> Gauge:
        return Gauge()


class HistogramFamily(_Family[Histogram]):
    typ = "histogram"

    def __init__(self, name: str, help: str, labelnames: Sequence[str],
                 buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help, labelnames)
        self.buckets = _check_buckets(name, buckets)

    def _new_child(self) -> Histogram:
        return Histogram(buckets=self.buckets)


Renderable = Counter | Gauge | Histogram | CounterFamily | GaugeFamily | HistogramFamily
R = TypeVar("R", Counter, Gauge, Histogram, CounterFamily, GaugeFamily, HistogramFamily)


def _series_names(metric: Renderable) -> set[str]:
    """The names a metric's series use or claim (OpenMetrics drops a counter's ``_total``)."""
    name = metric.name
    if metric.typ == "histogram":
        return {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if metric.typ == "counter":
        return {name, name.removesuffix("_total"), f"{name.removesuffix('_total')}_total"}
    return {name}


class Registry:
    """Metrics in registration order, scrape-time collectors, and the text exposition."""

    def __init__(self) -> None:
        self._metrics: dict[str, Renderable] = {}
        self._collectors: list[Callable[[], None]] = []
        self._scrape = _ScrapeState()

    @property
    def collector_errors(self) -> int:
        """How many scrape-time callbacks (collectors and value ``fn``s) raised so far."""
        return self._scrape.errors

    def register(self, metric: R) -> R:
        name = metric.name
        if not name:
            raise ValueError("only named metrics can be registered (children are not)")
        if name in self._metrics:
            raise ValueError(f"metric {name!r} is already registered")
        mine = _series_names(metric)
        for other in self._metrics.values():
            clash = mine & _series_names(other)
            if clash:
                raise ValueError(f"metric {name!r} clashes with {other.name!r} on "
                                 f"{sorted(clash)!r}")
        self._metrics[name] = metric
        return metric

    def counter(self, name: str, help: str, *, fn: ValueFn | None = None) -> Counter:
        return self.register(Counter(name, help, fn=fn))

    def gauge(self, name: str, help: str, *, fn: ValueFn | None = None) -> Gauge:
        return self.register(Gauge(name, help, fn=fn))

    def histogram(self, name: str, help: str,
                  buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        return self.register(Histogram(name, help, buckets))

    def counter_family(self, name: str, help: str, labelnames: Sequence[str]) -> CounterFamily:
        return self.register(CounterFamily(name, help, labelnames))

    def gauge_family(self, name: str, help: str, labelnames: Sequence[str]) -> GaugeFamily:
        return self.register(GaugeFamily(name, help, labelnames))

    def histogram_family(self, name: str, help: str, labelnames: Sequence[str],
                         buckets: Sequence[float] = LATENCY_BUCKETS) -> HistogramFamily:
        return self.register(HistogramFamily(name, help, labelnames, buckets))

    def get(self, name: str) -> Renderable | None:
        return self._metrics.get(name)

    def names(self) -> list[str]:
        return list(self._metrics)

    def add_collector(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` at the start of every :meth:`render` (to refresh gauges lazily)."""
        if not callable(fn):
            raise TypeError(f"collector must be callable, got {fn!r}")
        self._collectors.append(fn)

    def render(self) -> bytes:
        """Run the collectors, then every metric in the text format 0.0.4 (UTF-8)."""
        for fn in list(self._collectors):
            self._scrape.call(f"collector {getattr(fn, '__qualname__', repr(fn))}", fn)
        lines: list[str] = []
        for name, metric in self._metrics.items():
            lines.append(f"# HELP {name} {_escape_help(metric.help)}")
            lines.append(f"# TYPE {name} {metric.typ}")
            lines.extend(metric._samples(name, "", self._scrape, name))
        lines.append("")
        return "\n".join(lines).encode("utf-8")


# -- the engine's metric set ----------------------------------------------------------------------


class EngineMetrics:
    """Every ``engine_*`` metric, as attributes the app records into or refreshes at scrape.

    Hot path (frames, signals, orders, fills, latencies) records directly; states that are
    cheaper to read than to track (stream ages, gates, positions, P&L, orders by state, flags)
    are meant to be set by a collector: ``metrics.registry.add_collector(fn)``.
    """

    def __init__(self, version: str = "", mode: str = "") -> None:
        r = self.registry = Registry()
        # market data
        self.frames = r.counter_family(
            "engine_frames_total", "Market-data frames received, by channel.", ["channel"])
        self.stream_age = r.gauge_family(
            "engine_stream_age_seconds",
            "Seconds since the last message of a market's stream (bbo, ctx).",
            ["market", "stream"])
        self.reconnects = r.counter(
            "engine_reconnects_total", "Market-data WebSocket reconnections.")
        self.gate_blocked = r.gauge_family(
            "engine_gate_blocked", "1 while the gate blocks the market, else 0.",
            ["market", "gate"])
        # detector and followups
        self.signals = r.counter_family(
            "engine_signals_total", "Signals raised by the detector.", ["market", "side"])
        self.followups = r.counter_family(
            "engine_followups_total", "Followup offsets resolved, by status (captured, missed).",
            ["status"])
        self.followups_pending = r.gauge(
            "engine_followups_pending", "Signals with followup offsets still to resolve.")
        # orders, fills, positions, P&L
        self.orders = r.gauge_family(
            "engine_orders_by_state", "Orders of this run in each state.", ["state"])
        self.orders_total = r.counter_family(
            "engine_orders_total", "Order actions by kind (entry, flatten, cancel, query) and "
            "result (sent, filled, rejected, canceled, error, ...).", ["kind", "result"])
        self.fills = r.counter("engine_fills_total", "Distinct fills received.")
        self.position_size = r.gauge_family(
            "engine_position_size", "Signed position size in the market's units.", ["market"])
        self.position_notional = r.gauge_family(
            "engine_position_notional_usd", "Signed position notional at the mark, USD.",
            ["market"])
        self.realized_pnl = r.gauge(
            "engine_realized_pnl_usd", "Realised P&L, USD, net of fees.")
        self.unrealized_pnl = r.gauge(
            "engine_unrealized_pnl_usd", "Unrealised P&L of open positions at the mark, USD.")
        self.fees = r.gauge("engine_fees_usd", "Fees paid, USD.")
        # state flags
        self.hard_stop = r.gauge("engine_hard_stop", "1 while the hard stop is latched.")
        self.killed = r.gauge("engine_killed", "1 while the kill switch is on.")
        self.ready = r.gauge("engine_ready", "1 while the engine is READY to trade.")
        self.healthy = r.gauge("engine_healthy", "1 while /health reports healthy.")
        self.breaker_tripped = r.gauge_family(
            "engine_breaker_tripped", "1 when the circuit breaker has tripped.", ["breaker"])
        self.notifications = r.counter_family(
            "engine_notifications_total", "Notifications by result (sent, failed, dropped).",
            ["result"])
        # latencies
        self.event_loop_lag = r.histogram(
            "engine_event_loop_lag_seconds", "How late a periodic Trio sleep woke up.",
            LOOP_LAG_BUCKETS)
        self.frame_to_decision = r.histogram(
            "engine_frame_to_decision_seconds",
            "Socket read of a frame to the core's decision on it.")
        self.decision_to_order_sent = r.histogram(
            "engine_decision_to_order_sent_seconds",
            "Core decision to the order action written to the socket.")
        self.order_sent_to_ack = r.histogram(
            "engine_order_sent_to_ack_seconds",
            "Order action written to the venue's response received.")
        self.exit_trigger_to_flatten_sent = r.histogram(
            "engine_exit_trigger_to_flatten_sent_seconds",
            "Exit condition seen to the flatten order written to the socket.")
        # meta
        self.build_info = r.gauge_family(
            "engine_build_info", "Always 1; labels name the version and the mode.",
            ["version", "mode"])
        self.collector_errors = r.counter(
            "engine_metrics_collector_errors_total",
            "Scrape-time metric callbacks that raised (see the log).",
            fn=lambda: r.collector_errors)
        if version or mode:
            self.build_info.labels(version, mode).set(1)

    def set_flags(self, *, ready: bool | None = None, healthy: bool | None = None,
                  hard_stop: bool | None = None, killed: bool | None = None) -> None:
        """Set the 0/1 state gauges given (``None`` leaves one unchanged)."""
        for gauge, value in ((self.ready, ready), (self.healthy, healthy),
                             (self.hard_stop, hard_stop), (self.killed, killed)):
            if value is not None:
                gauge.set(1 if value else 0)

    def set_orders(self, counts: Mapping[str, int]) -> None:
        """Orders by state: states absent from ``counts`` but seen before drop to 0."""
        for child in self.orders.children().values():
            child.set(0)
        for state, n in counts.items():
            self.orders.labels(state).set(n)

    def set_position(self, market: str, size: float, notional_usd: float) -> None:
        self.position_size.labels(market).set(size)
        self.position_notional.labels(market).set(notional_usd)


async def run_loop_lag_monitor(hist: Histogram, interval_s: float,
                               on_lag: Callable[[float], None] | None = None) -> None:
    """Forever: sleep ``interval_s`` (Trio clock) and observe how late the wake-up came
    (seconds) into ``hist``, and hand it to ``on_lag`` too (e.g. to keep the latest lag for
    the health check).

    A blocked event loop (a long synchronous step) shows as a large lag. Runs until cancelled.
    """
    if not interval_s > 0 or not math.isfinite(interval_s):
        raise ValueError(f"loop lag interval must be a positive number of seconds, "
                         f"got {interval_s!r}")
    while True:
        deadline = trio.current_time() + interval_s
        await trio.sleep_until(deadline)
        lag = max(0.0, trio.current_time() - deadline)
        hist.observe(lag)
        if on_lag is not None:
            on_lag(lag)
