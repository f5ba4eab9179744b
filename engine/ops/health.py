"""Engine health for the systemd watchdog (and the ops ``/health`` endpoint): owns the rule.

Pure and deterministic: no clock reads, no I/O. The shell samples the engine into a
:class:`HealthInputs` (every age is already computed by the caller) and :func:`evaluate_health`
turns it into a :class:`HealthReport`. The watchdog sends ``WATCHDOG=1`` only while the report
is healthy, so a wedged engine stops petting the watchdog and systemd restarts it.

Healthy means all of:

- the engine is READY (data for every market, user channels acked, reconciliation done);
- the market-data feed is connected and at least one market is configured;
- the oldest of the per-market freshest-frame ages is known and within ``max_data_age_s``;
- no order has been unresolved (UNKNOWN / in flight) longer than its bound;
- the record writer's backlog is within its maximum and no write failed since the last
  successful flush;
- the event-loop lag, when measured, is within ``max_loop_lag_ms``.

A latched hard stop or the kill switch is **not** unhealthy: the engine is doing its job and a
restart would not help (the latch survives it). Both are reported in ``notes`` instead.
Malformed inputs (NaN or negative ages, negative counts) are problems, never silently healthy.
"""

from __future__ import annotations

import math

import attrs


@attrs.frozen
class HealthInputs:
    """A snapshot of what health depends on; ages in seconds (or ms for the loop lag)."""

    ready: bool
    mode: str
    markets_total: int
    #: the oldest of the per-market freshest-frame ages; ``None`` = no data yet
    max_market_data_age_s: float | None
    feed_connected: bool
    #: age of the oldest order without a final outcome; ``None`` = none unresolved
    oldest_unresolved_order_age_s: float | None
    unresolved_order_bound_s: float
    writer_pending: int
    writer_max_pending: int
    #: write errors since the last successful flush
    writer_errors_recent: int
    hard_stop: str | None
    killed: bool
    #: ``None`` = not measured
    event_loop_lag_ms: float | None


@attrs.frozen
class HealthReport:
    """``healthy`` iff ``problems`` is empty; ``notes`` never affect health."""

    healthy: bool
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for ``STATUS=`` and logs: ``healthy`` or ``unhealthy: p1; p2``, plus notes."""
        head = "healthy" if self.healthy else "unhealthy: " + "; ".join(self.problems)
        return head + "".join(f"; {n}" for n in self.notes)


def _num(x: float) -> str:
    """Short human form: ``10``, ``12.3``, ``0.25``."""
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.3g}" if abs(x) < 1 else f"{x:.1f}"


def _bad(x: float) -> bool:
    return math.isnan(x) or x < 0


def evaluate_health(h: HealthInputs, max_data_age_s: float,
                    max_loop_lag_ms: float = 1000.0) -> HealthReport:
    """The :class:`HealthReport` for ``h`` (see the module docstring for the rule)."""
    problems: list[str] = []
    for name, bound in (("max_data_age_s", max_data_age_s), ("max_loop_lag_ms", max_loop_lag_ms),
                        ("unresolved_order_bound_s", h.unresolved_order_bound_s)):
        if _bad(bound):
            problems.append(f"health bound {name} invalid ({bound!r})")
    if not h.ready:
        problems.append(f"not READY ({h.mode})")
    if not h.feed_connected:
        problems.append("market data feed disconnected")
    if h.markets_total <= 0:
        problems.append(f"no markets (markets_total={h.markets_total})")
    age = h.max_market_data_age_s
    if age is None:
        problems.append("no market data yet")
    elif _bad(age):
        problems.append(f"market data age invalid ({age!r})")
    elif age > max_data_age_s:
        problems.append(f"market data {age:.1f} s old (bound {_num(max_data_age_s)} s)")
    order_age = h.oldest_unresolved_order_age_s
    if order_age is not None:
        if _bad(order_age):
            problems.append(f"unresolved order age invalid ({order_age!r})")
        elif order_age > h.unresolved_order_bound_s:
            problems.append(f"order unresolved for {order_age:.1f} s "
                            f"(bound {_num(h.unresolved_order_bound_s)} s)")
    if h.writer_pending < 0:
        problems.append(f"record writer backlog invalid ({h.writer_pending})")
    elif h.writer_pending > h.writer_max_pending:
        problems.append(f"record writer backlog {h.writer_pending} "
                        f"(max {h.writer_max_pending})")
    if h.writer_errors_recent < 0:
        problems.append(f"record writer error count invalid ({h.writer_errors_recent})")
    elif h.writer_errors_recent > 0:
        problems.append(f"record writer: {h.writer_errors_recent} write error(s) since the "
                        "last successful flush")
    lag = h.event_loop_lag_ms
    if lag is not None:
        if _bad(lag):
            problems.append(f"event loop lag invalid ({lag!r})")
        elif lag > max_loop_lag_ms:
            problems.append(f"event loop lag {lag:.0f} ms (bound {_num(max_loop_lag_ms)} ms)")
    notes: list[str] = []
    if h.hard_stop is not None:
        notes.append(f"hard stop latched: {h.hard_stop}")
    if h.killed:
        notes.append("kill switch on")
    return HealthReport(healthy=not problems, problems=tuple(problems), notes=tuple(notes))
