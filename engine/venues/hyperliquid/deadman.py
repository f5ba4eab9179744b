"""The dead-man switch (trade mode): keep the venue's ``scheduleCancel`` armed a short time ahead
while an order may rest on Hyperliquid, so a wedged or killed engine's orders are cancelled by
the venue (docs/reference/hyperliquid-protocol.md §5.3).

When is it armed? ``scheduleCancel`` cancels every open order of the account, so it is armed
while any of these holds (:func:`wants_armed`):

* one of this run's orders is, or may be, open at the venue: RESTING or PARTIAL (the venue
  said it rests) or UNKNOWN (no answer: it may rest). Entries and flattens are IOC, so this
  is rare — a SENT IOC is done within its post timeout, and then UNKNOWN if unanswered;
* the last reconciliation (``openOrders`` with the dex) listed any open order of the account:
  an orphan the engine is cancelling, an order restored from the journal, or an order on a
  market this run does not trade (left alone while the engine runs, cancelled by the venue if
  it dies: run the engine on an account of its own, docs/going-live.md).

Otherwise it is disarmed (``scheduleCancel`` without ``time``). At start the venue's timer is
unknown (a previous run may have left it armed), so the first decision always sends one.

Arming sends ``time = now + [trading] dead_man_s``; while it stays wanted the engine renews it
each time a third of that window has passed, so a healthy engine keeps it at least two thirds
of the window ahead. Renewal needs the engine to be healthy in the sense that matters here: its
Trio loop runs (a wedged loop renews nothing) and the venue connection is up (a lost connection
cannot renew: after ``dead_man_s`` the venue cancels, which is what a lost engine wants).

The venue refuses a time less than 5 s ahead and allows 10 triggers per UTC day; a refused or
unanswered attempt is logged (rate-limited), counted, and retried a third of the window later.
A timer that the engine's clock sees run out while still wanted is counted as ``expired`` (the
venue has cancelled the account's orders) and re-armed.

:class:`DeadManPolicy` is the decision (synchronous, injected times, property-tested);
:class:`DeadManSwitch` is the Trio shell that sends what it decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

import attrs
import trio

from engine.venues.hyperliquid.ratelog import RateLimitedLog
from fsm.order import PARTIAL, RESTING, UNKNOWN

log = logging.getLogger("engine.deadman")

MIN_AHEAD_S: Final = 6.0
"""The smallest ``dead_man_s``: the venue's 5 s minimum plus 1 s for clock skew and transit."""
MAY_REST: Final = frozenset({RESTING, PARTIAL, UNKNOWN})
POLL_S: Final = 0.25  # how often the switch looks at the orders

UNKNOWN_STATE: Final = "unknown"  # what the venue's timer is at start
ARMED: Final = "armed"
DISARMED: Final = "disarmed"


class _HasState(Protocol):
    @property
    def state(self) -> str: ...


def wants_armed(orders: Iterable[_HasState], venue_open_orders: int) -> bool:
    """True while an order may rest at the venue (see the module docstring)."""
    return venue_open_orders > 0 or any(o.state in MAY_REST for o in orders)


@attrs.frozen
class Arm:
    time_ms: int


@attrs.frozen
class Disarm:
    pass


Decision = Arm | Disarm


@attrs.define
class DeadManPolicy:
    """What to send, given whether the switch is wanted and the time (epoch ms)."""

    ahead_ms: float
    state: str = UNKNOWN_STATE
    armed_until_ms: float | None = None
    next_try_ms: float = 0.0
    expired: int = 0

    def __attrs_post_init__(self) -> None:
        if not self.ahead_ms >= MIN_AHEAD_S * 1000.0:
            raise ValueError(f"dead-man window must be >= {MIN_AHEAD_S} s, got "
                             f"{self.ahead_ms / 1000.0} s")

    @property
    def renew_ms(self) -> float:
        return self.ahead_ms / 3.0

    def decide(self, want: bool, now_ms: float) -> Decision | None:
        until = self.armed_until_ms
        if self.state == ARMED and until is not None and now_ms >= until:
            # the venue's timer ran out: it has cancelled the account's orders
            self.state, self.armed_until_ms = DISARMED, None
            if want:
                self.expired += 1
        if now_ms < self.next_try_ms:
            return None
        if want:
            if self.state != ARMED or until is None or until - now_ms <= self.ahead_ms - self.renew_ms:
                return Arm(int(now_ms + self.ahead_ms))
            return None
        if self.state != DISARMED:
            return Disarm()
        return None

    def on_result(self, decision: Decision, accepted: bool, now_ms: float) -> None:
        """The venue's answer to ``decision`` (``accepted`` False: refused or unanswered)."""
        if not accepted:
            self.next_try_ms = now_ms + self.renew_ms
            return
        self.next_try_ms = 0.0
        if isinstance(decision, Arm):
            self.state, self.armed_until_ms = ARMED, float(decision.time_ms)
        else:
            self.state, self.armed_until_ms = DISARMED, None


@attrs.define
class DeadManStats:
    arms: int = 0  # accepted scheduleCancel with a time (first arm and every renewal)
    disarms: int = 0
    failures: int = 0  # refused, unanswered or not sent
    last_error: str | None = None


class ScheduleCancelSender(Protocol):
    async def schedule_cancel(self, time_ms: int | None) -> object | None: ...


class DeadManSwitch:
    """Trio shell of :class:`DeadManPolicy`: looks at the orders every :data:`POLL_S` and sends
    ``scheduleCancel`` through ``sender`` (the :class:`OrderExecutor`)."""

    def __init__(self, sender: ScheduleCancelSender, dead_man_s: float, *,
                 orders: Callable[[], Iterable[_HasState]], connected: Callable[[], bool],
                 clock: Callable[[], float]) -> None:
        self.policy = DeadManPolicy(dead_man_s * 1000.0)
        self.stats = DeadManStats()
        self.venue_open_orders = 0  # from the last reconciliation
        self._sender = sender
        self._orders = orders
        self._connected = connected
        self._clock = clock
        self._lock = trio.Lock()
        self._rlog = RateLimitedLog(log, interval_s=600.0, burst=3)  # a refusal repeats

    def wanted(self) -> bool:
        return wants_armed(self._orders(), self.venue_open_orders)

    async def step(self) -> None:
        """Decide once and send what was decided (one at a time)."""
        async with self._lock:
            if not self._connected():
                return
            decision = self.policy.decide(self.wanted(), self._clock())
            if decision is not None:
                await self._send(decision)

    async def run(self) -> None:
        while True:
            await self.step()
            await trio.sleep(POLL_S)

    async def settle(self) -> None:
        """At a graceful stop: disarm when no order may rest; otherwise leave the switch armed
        (the venue cancels what the engine could not) and say so."""
        if self.wanted():
            if self.policy.state == ARMED:
                log.warning("stopping with order(s) that may rest at the venue: the dead-man "
                            "switch stays armed until %s ms", int(self.policy.armed_until_ms or 0))
            return
        with trio.move_on_after(5.0):
            await self.step()

    async def _send(self, decision: Decision) -> None:
        time_ms = decision.time_ms if isinstance(decision, Arm) else None
        try:
            answer = await self._sender.schedule_cancel(time_ms)
        except Exception as exc:  # noqa: BLE001 - NotSent, signing refusal: retry later
            answer = {"status": "err", "response": f"not sent: {exc}"}
        now = self._clock()
        accepted = isinstance(answer, dict) and answer.get("status") == "ok"
        was = self.policy.state
        self.policy.on_result(decision, accepted, now)
        st = self.stats
        if not accepted:
            st.failures += 1
            st.last_error = _describe(answer)
            self._rlog.log("failed", logging.WARNING,
                           "dead-man switch: scheduleCancel %s failed: %s; retrying in %.0f s",
                           "arm" if time_ms is not None else "disarm", st.last_error,
                           self.policy.renew_ms / 1000.0)
        elif time_ms is not None:
            if was != ARMED:
                log.info("dead-man switch armed: the venue cancels the account's open orders "
                         "at %d unless renewed", time_ms)
            st.arms += 1
        else:
            st.disarms += 1
            log.info("dead-man switch disarmed: no order rests")

    def snapshot(self) -> dict[str, Any]:
        p, st = self.policy, self.stats
        return {"state": p.state, "armed_until_ms": p.armed_until_ms,
                "window_s": p.ahead_ms / 1000.0, "venue_open_orders": self.venue_open_orders,
                "arms": st.arms, "disarms": st.disarms, "failures": st.failures,
                "expired": p.expired, "last_error": st.last_error}


def _describe(answer: object) -> str:
    if answer is None:
        return "no answer"
    if isinstance(answer, dict):
        return str(answer.get("response") or answer.get("payload") or answer)[:200]
    return repr(answer)[:200]
