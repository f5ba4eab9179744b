"""Benchmark firehose: re-publishes each market's current bbo (same prices, varying sizes) at an
aggregate frame rate on top of the model, in 1 ms batches, and tracks how far behind schedule it is.

Frames are pre-encoded per book (see frames.BboTemplates) and only the ``time`` is filled in;
each batch is appended to the subscribers' outboxes, whose writers coalesce it into one
``send_all``. Because prices are always the model's current ones, it never creates a false
dislocation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import trio

from engine.sim.frames import BboTemplates
from engine.sim.hub import Hub
from engine.sim.model import MarketModel


class Firehose:
    def __init__(
        self,
        hub: Hub,
        model: MarketModel,
        rate: float,
        epoch_ms: Callable[[], int],
        counters: Counter[str],
        tick_s: float = 0.001,
        max_batch_s: float = 0.05,
    ) -> None:
        if rate <= 0:
            raise ValueError("firehose rate must be > 0")
        self.rate = rate
        self.tick_s = tick_s
        self.max_batch = max(1, int(rate * max_batch_s))
        self.frames_due = 0
        self.frames_produced = 0
        self.frames_delivered = 0
        self.backlog_frames = 0
        self.max_backlog_frames = 0
        self.batches = 0
        self._hub = hub
        self._model = model
        self._epoch_ms = epoch_ms
        self._counters = counters
        self._coins = model.coins
        self._szd = [s.sz_decimals for s in model.specs]
        self._templates: list[BboTemplates | None] = [None] * len(self._coins)
        self._rr = 0
        self._variant = 0

    def stats(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "frames_due": self.frames_due,
            "frames_produced": self.frames_produced,
            "frames_delivered": self.frames_delivered,
            "backlog_frames": self.backlog_frames,
            "max_backlog_frames": self.max_backlog_frames,
            "lag_ms": round(self.backlog_frames / self.rate * 1000.0, 3),
            "batches": self.batches,
        }

    async def run(self) -> None:
        start = trio.current_time()
        next_tick = start
        while True:
            next_tick += self.tick_s
            now = trio.current_time()
            if next_tick < now:  # late: don't try to replay missed ticks, the count catches up
                next_tick = now
            await trio.sleep_until(next_tick)
            now = trio.current_time()
            self.frames_due = int((now - start) * self.rate)
            due = self.frames_due - self.frames_produced
            batch = min(due, self.max_batch)
            if batch > 0:
                self._emit(batch, now)
                self.frames_produced += batch
                self.batches += 1
            self.backlog_frames = self.frames_due - self.frames_produced
            if self.backlog_frames > self.max_backlog_frames:
                self.max_backlog_frames = self.backlog_frames

    def _template(self, i: int) -> BboTemplates:
        bbo = self._model.bbo(self._coins[i])
        tpl = self._templates[i]
        if tpl is None or tpl.bbo is not bbo:
            tpl = BboTemplates(self._coins[i], bbo, self._szd[i])
            self._templates[i] = tpl
        return tpl

    def _emit(self, batch: int, now: float) -> None:
        hub = self._hub
        coins = self._coins
        n = len(coins)
        t_epoch = self._epoch_ms()
        stalls = hub.stalls
        delivered = 0
        rr = self._rr
        for _ in range(batch):
            i = rr % n
            rr += 1
            coin = coins[i]
            targets = hub.subscribers("bbo", coin)
            if not targets or stalls.is_stalled(coin, "bbo", now):
                continue
            frame = self._template(i).frame(self._variant, hub.stamp_bbo(coin, t_epoch))
            self._variant += 1
            for s in targets:
                s.send_frame(frame)
            delivered += len(targets)
        self._rr = rr
        self.frames_delivered += delivered
        self._counters["bbo"] += delivered
        self._counters["firehose"] += delivered
