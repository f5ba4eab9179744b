"""Issue 9 item 9 (runtime clock check): the engine compares its clock with the venue's at
every reconciliation (``clearinghouseState.time`` and the request's send/receive times) and
refuses new entries while it is off by more than ``[trading] max_clock_skew_ms``; exits and
flattens still go, and entries resume once a sample is back within the bound.
"""

from __future__ import annotations

from engine.core.intents import Alert, PlaceOrder, Record

from .helpers import T0, make_ready, make_trading


def _alerts(out: list[object], code: str) -> list[Alert]:
    return [a for a in out if isinstance(a, Alert) and a.code == code]


def _dislocate(core: object, now: float) -> None:
    core.on_ctx(0, 100.3, 100.3, now)  # type: ignore[attr-defined]


def test_entries_are_refused_while_the_clock_is_off_and_resume_after() -> None:
    core, _ = make_trading({"mode": "trade", "trading": {"max_clock_skew_ms": 2000.0}})
    make_ready(core, equity=10_000.0)
    # local clock 5 s ahead: venue said T0 - 5000 for a request sent at T0, answered at T0+40
    core.on_clock_sample(T0, T0 + 40, T0 - 5000, T0 + 40)
    out = core.drain()
    assert core.clock_skewed and len(_alerts(out, "clock_skew")) == 1
    assert any(isinstance(r, Record) and r.record.get("event") == "clock_skew" for r in out)
    _dislocate(core, T0 + 100)
    assert not [i for i in core.out if isinstance(i, PlaceOrder)]
    assert core.skips["clock_skew"] == 1
    assert core.entries_blocked() == "clock_skew"
    # the same verdict again: no new alert
    core.on_clock_sample(T0 + 200, T0 + 240, T0 - 4800, T0 + 240)
    assert not _alerts(core.drain(), "clock_skew")
    # back within the bound: entries allowed again
    core.on_clock_sample(T0 + 300, T0 + 340, T0 + 320, T0 + 340)
    out = core.drain()
    assert not core.clock_skewed and len(_alerts(out, "clock_skew_cleared")) == 1
    core.on_ctx(0, 100.6, 100.6, T0 + 1500)  # the next dislocation
    assert [i for i in core.out if isinstance(i, PlaceOrder)]
    assert core.skips["clock_skew"] == 1


def test_flattens_still_go_while_the_clock_is_off() -> None:
    core, _ = make_trading({"mode": "trade"})
    make_ready(core, equity=10_000.0)
    core.on_clock_sample(T0, T0 + 40, T0 + 9000, T0 + 40)  # local clock 9 s behind
    assert core.clock_skewed and core.clock_offset_ms is not None and core.clock_offset_ms < 0
    core.on_fill("t1", None, "xyz:GOLD", True, 100.0, 0.5, 0.0, T0, T0 + 50)  # hard stop
    flat = [i.order for i in core.drain() if isinstance(i, PlaceOrder)]
    assert len(flat) == 1 and flat[0].reduce_only


def test_a_slow_answer_is_never_a_false_alarm() -> None:
    """Only the lower bound of the skew counts: a 3 s round trip cannot tell a 1 s offset
    from 4 s, so it must not stop trading."""
    core, _ = make_trading({"mode": "trade", "trading": {"max_clock_skew_ms": 2000.0}})
    make_ready(core, equity=10_000.0)
    core.on_clock_sample(T0, T0 + 3000, T0 - 1000, T0 + 3000)
    assert not core.clock_skewed and core.clock_skew_least_ms == 1000.0
    # the bound is configurable: at 500 ms the same answer proves too much skew
    strict, _ = make_trading({"mode": "trade", "trading": {"max_clock_skew_ms": 500.0}})
    make_ready(strict)
    strict.on_clock_sample(T0, T0 + 3000, T0 - 1000, T0 + 3000)
    assert strict.clock_skewed
