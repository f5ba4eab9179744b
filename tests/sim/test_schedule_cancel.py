"""The simulator's dead-man switch (``scheduleCancel``): signed with the official SDK, verified
like every action, limits (5 s ahead, 10 triggers per UTC day), and the timer cancelling the
account's resting orders with status ``scheduledCancel``."""

from __future__ import annotations

from typing import Any

import trio
from hyperliquid.utils.signing import get_timestamp_ms

from engine.sim import SimExchange
from engine.sim.schedule_cancel import (
    DAY_MS,
    ERR_TOO_EARLY,
    ERR_TOO_MANY,
    MAX_TRIGGERS_PER_DAY,
    ScheduledCancels,
)

from .trader import (
    AGENT,
    AGENT_KEY,
    GOLD_ID,
    MASTER,
    STRANGER,
    STRANGER_KEY,
    Trader,
    order_wire,
    ws_action,
    ws_ok,
)

FROZEN = {"seed": 2, "speed": 1e-3}


async def start(start_sim: Any) -> SimExchange:
    sim: SimExchange = await start_sim(
        **FROZEN, accounts={MASTER: 100_000.0}, agents={AGENT: MASTER}
    )
    return sim


def far_bid(sim: SimExchange) -> float:
    bid = sim.model.bbo("xyz:GOLD").bid
    assert bid is not None
    return float(round(float(bid.px) * 0.95))


def schedule(trader: Trader, time_ms: int | None) -> dict[str, Any]:
    action: dict[str, Any] = {"type": "scheduleCancel"}
    if time_ms is not None:
        action["time"] = time_ms
    return trader.sign(action)


def test_timer_bookkeeping_limits_and_day_reset() -> None:
    cancelled: list[tuple[str, int]] = []

    def cancel_all(user: str, now: int) -> int:
        cancelled.append((user, now))
        return 2

    now = 10 * DAY_MS + 1_000
    sc = ScheduledCancels(lambda: now, cancel_all)
    assert sc.handle("u", now + 4_999, now) == ERR_TOO_EARLY
    assert sc.handle("u", now + 5_000, now) is None
    assert sc.fire_due(now + 4_999) == [] and cancelled == []
    assert sc.fire_due(now + 5_000) == [("u", now + 5_000, 2)]
    assert cancelled == [("u", now + 5_000)] and sc.timers == {}
    # an unset timer never fires
    assert sc.handle("u", now + 6_000, now) is None
    assert sc.handle("u", None, now) is None
    assert sc.fire_due(now + 10_000) == []
    # 10 triggers in a UTC day, then setting is refused until 00:00 UTC
    for _ in range(MAX_TRIGGERS_PER_DAY - 1):
        assert sc.handle("u", now + 5_000, now) is None
        assert len(sc.fire_due(now + 5_000)) == 1
    assert sc.triggers_today("u", now) == MAX_TRIGGERS_PER_DAY
    assert sc.handle("u", now + 5_000, now) == ERR_TOO_MANY
    assert sc.handle("other", now + 5_000, now) is None  # per account
    assert sc.handle("u", None, now) is None  # unsetting always works
    tomorrow = 11 * DAY_MS
    assert sc.triggers_today("u", tomorrow) == 0
    assert sc.handle("u", tomorrow + 5_000, tomorrow) is None


async def test_schedule_cancel_fires_and_cancels_resting_orders(
    start_sim: Any, connect: Any
) -> None:
    sim = await start(start_sim)
    agent = Trader(AGENT_KEY)
    px = far_bid(sim)
    async with connect(sim) as c:
        await c.subscribe({"type": "orderUpdates", "user": MASTER})
        [a] = await ws_ok(c, 1, agent.orders(order_wire(GOLD_ID, True, px, 0.01)))
        [b] = await ws_ok(c, 2, agent.orders(order_wire(GOLD_ID, True, px - 1, 0.01)))
        oids = {a["resting"]["oid"], b["resting"]["oid"]}
        now = get_timestamp_ms()
        r = await ws_action(c, 3, schedule(agent, now + 2_000))  # too early: refused
        assert r["payload"] == {"status": "err", "response": ERR_TOO_EARLY}
        at = get_timestamp_ms() + 5_300
        r = await ws_action(c, 4, schedule(agent, at))
        assert r["payload"] == {"status": "ok", "response": {"type": "default"}}
        assert sim.trading.schedule.timers == {MASTER: at}
        assert set(sim.account_summary(MASTER)["open_orders"]) == oids  # type: ignore[index]
        # the real timer (wall clock): nothing before its time, both orders at its time
        with trio.fail_after(8):
            while sim.trading.schedule.timers:  # noqa: ASYNC110 - the venue's own timer
                await trio.sleep(0.05)
        assert get_timestamp_ms() >= at
        update = await c.expect(
            lambda m: m.get("channel") == "orderUpdates"
            and any(u["status"] == "scheduledCancel" for u in m["data"])
        )
    assert {u["order"]["oid"] for u in update["data"]} == oids
    assert all(u["status"] == "scheduledCancel" for u in update["data"])
    assert sim.account_summary(MASTER)["open_orders"] == []  # type: ignore[index]
    assert sim.trading.schedule.fired == [(MASTER, at, 2)]


async def test_schedule_cancel_signature_is_verified(start_sim: Any, connect: Any) -> None:
    sim = await start(start_sim)
    at = get_timestamp_ms() + 60_000
    async with connect(sim) as c:
        r = await ws_action(c, 1, schedule(Trader(STRANGER_KEY), at))
        assert r["payload"]["status"] == "err"
        assert f"User or API Wallet {STRANGER} does not exist." in r["payload"]["response"]
        # signed for another time than the one sent: recovers to a random address
        body = schedule(Trader(AGENT_KEY), at)
        body["action"]["time"] = at + 1
        r = await ws_action(c, 2, body)
        assert r["payload"]["status"] == "err" and "does not exist." in r["payload"]["response"]
        assert MASTER not in r["payload"]["response"]
        assert sim.trading.schedule.timers == {}
        # the unset form, signed by the agent: accepted
        r = await ws_action(c, 3, schedule(Trader(AGENT_KEY), None))
        assert r["payload"]["status"] == "ok"
