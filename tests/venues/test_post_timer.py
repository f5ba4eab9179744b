"""The feed's post deadlines (engine/venues/hyperliquid/outbox.py, ``PostBook.post_timer`` on
engine.deadline.DeadlineSleeper), on Trio's autojump clock: every post fails with PostTimeout
at its own deadline, a shorter post registered while the timer sleeps toward a longer one
pulls the sleep in, and answered posts never time out."""

from __future__ import annotations

import json

import trio
import trio.testing

from engine.config import VenueConfig
from engine.venues.hyperliquid.client import HyperliquidFeed
from engine.venues.hyperliquid.posts import PostTimeout

from .conftest import FAST, Recorder, Scripted


def test_each_post_times_out_at_its_own_deadline() -> None:
    done: dict[str, float] = {}

    async def main() -> None:
        scripted = Scripted()
        cfg = VenueConfig(ws_url="ws://scripted/ws", **FAST)  # type: ignore[arg-type]
        feed = HyperliquidFeed(cfg, ["xyz:GOLD"], Recorder(), connector=scripted.connect)
        async with trio.open_nursery() as n:
            n.start_soon(feed.run)
            await feed.wait_connected()
            t0 = trio.current_time()

            def note(name: str):  # type: ignore[no-untyped-def]
                def on_done(t) -> None:  # type: ignore[no-untyped-def]
                    assert isinstance(t.error, PostTimeout)
                    done[name] = trio.current_time() - t0
                return on_done

            feed.post_nowait({"type": "info"}, timeout=10.0, on_done=note("long"))
            await feed.flush()
            await trio.sleep(1.0)  # the timer now sleeps toward t0 + 10
            feed.post_nowait({"type": "info"}, timeout=2.0, on_done=note("short"))
            answered = feed.post_nowait({"type": "info"}, timeout=3.0)
            await feed.flush()
            conn = scripted.conns[0]
            conn.push({"channel": "post", "data": {"id": answered.id, "response": {
                "type": "info", "payload": {"type": "x", "data": 1}}}})
            await trio.sleep(20.0)
            assert answered.error is None and answered.event is not None
            assert json.loads(conn.sent[-1])["method"] == "post"
            n.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert abs(done["short"] - 3.0) < 0.01  # registered at t0 + 1 with 2 s: t0 + 3, not t0 + 10
    assert abs(done["long"] - 10.0) < 0.01
