"""The simulator's server-time knob: ``step_server_time`` / ``server_time_offset_ms`` (and the
``step_server_time`` / ``set_server_time_offset`` control actions, ``--server-time-offset-ms``)
shift every wall-clock time it reports — what a client reads the venue's clock from."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from engine.sim import SimExchange
from engine.sim.cli import build_parser

MASTER = "0x1111111111111111111111111111111111111111"


async def _venue_time(client: httpx.AsyncClient) -> int:
    r = await client.post("/info", json={"type": "clearinghouseState", "user": MASTER,
                                         "dex": "xyz"})
    t: int = r.json()["time"]
    return t


async def test_step_server_time_moves_the_reported_clock(start_sim: Any) -> None:
    sim: SimExchange = await start_sim(seed=1, n_markets=2, accounts={MASTER: 100.0})
    async with httpx.AsyncClient(base_url=sim.url) as client:
        local = time.time() * 1000
        assert abs(await _venue_time(client) - local) < 1000
        assert sim.step_server_time(-30_000) == -30_000
        t = await _venue_time(client)
        assert abs(t - (time.time() * 1000 - 30_000)) < 1000
        # l2Book answers carry the stepped clock too
        coin = sim.model.coins[0]
        r = await client.post("/info", json={"type": "l2Book", "coin": coin})
        assert abs(r.json()["time"] - (time.time() * 1000 - 30_000)) < 1000
        # over /sim/control: a step is relative, a set is absolute
        r = await client.post("/sim/control", json={"action": "step_server_time", "ms": 40_000})
        assert r.json() == {"ok": True, "result": 10_000}
        assert abs(await _venue_time(client) - (time.time() * 1000 + 10_000)) < 1000
        r = await client.post("/sim/control", json={"action": "set_server_time_offset", "ms": 0})
        assert r.json()["ok"] and sim.server_time_offset_ms == 0
        assert (await client.get("/sim/stats")).json()["server_time_offset_ms"] == 0
        bad = await client.post("/sim/control", json={"action": "step_server_time", "ms": "x"})
        assert bad.status_code == 400


def test_the_offset_must_be_a_number() -> None:
    sim = SimExchange(seed=1, n_markets=2)
    with pytest.raises(TypeError):
        sim.server_time_offset_ms = True  # type: ignore[assignment]
    sim.server_time_offset_ms = 1500
    assert sim.server_time_offset_ms == 1500


def test_the_cli_flag() -> None:
    args = build_parser().parse_args(["--server-time-offset-ms", "-7000"])
    assert args.server_time_offset_ms == -7000
