"""The funding app's circuit breakers are :class:`engine.core.breakers.CircuitBreakers` (through
:mod:`engine.core.funding_breakers`), end to end over loopback: ``config/bybit-sim.toml`` in trade
mode on the embedded Bybit simulator (real signed orders, private streams), two pairs hedged;
one closes at a loss (its funding flips sign) and ``[breakers] max_consecutive_losses = 1`` —
a breaker the funding app did not have before — trips: the other pair's both legs are
flattened (the perp reduce-only), no new entry, the ``breaker`` record, ``hard_stop`` in
``/status``, the metric; the run exits 0 flat."""

from __future__ import annotations

from pathlib import Path

import trio

from engine.config import load_config
from engine.funding_app import SIM_KEY, FundingApp
from tests.integration.bybit_helpers import (
    SIM_TOML,
    funding_records,
    sim_env,
    start_app,
    until,
)


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return sim_env(tmp_path, {"ENGINE__MODE": "trade", "ENGINE__BYBIT_SIM__FUNDING_DRIFT": "0"},
                   **extra)


async def test_a_losing_round_trip_trips_consecutive_losses_and_flattens_the_other_pair(
        tmp_path: Path) -> None:
    cfg = load_config(SIM_TOML, env=env_for(
        tmp_path, ENGINE__BREAKERS__MAX_CONSECUTIVE_LOSSES="1"))
    assert cfg.mode == "trade" and cfg.sim.enabled
    app = FundingApp(cfg, env={})
    async with trio.open_nursery() as nursery:
        codes = start_app(nursery, app)
        await until(lambda: app.funding is not None and all(
            r["hedged"] for r in app.position_rows().values()) and len(app.position_rows()) == 2)
        ex = app.sim_exchange
        acct = ex.accounts[SIM_KEY]
        assert acct.positions["BTCUSDT"][0] < 0 and acct.coins["BTC"] > 0
        assert app.breaker_trip is None
        ex.set_funding("ETHUSDT", -0.0002)  # the strategy closes ETHUSDT: a loss (fees)
        await until(lambda: app.breaker_trip is not None)
        assert app.breaker_name == "consecutive_losses"
        assert app.breaker_trip.startswith("consecutive losses: 1 losing round trip in a row")
        await until(app.flat)
        # both legs of BTCUSDT flattened at the venue, the perp reduce-only
        assert acct.positions.get("BTCUSDT", [0.0])[0] == 0
        assert acct.coins.get("BTC", 0.0) < 1e-5  # the sub-lot rest of the buy's BTC fee
        closes = [o for o in acct.orders.values() if o.category == "linear"
                  and o.symbol == "BTCUSDT" and o.side == "Buy"]
        assert closes and all(o.reduce_only for o in closes)
        n = len(acct.orders)
        await trio.sleep(0.8)  # BTCUSDT still pays: no new entry while tripped
        assert len(acct.orders) == n
        assert app.ops is not None
        doc = app.ops.status()
        assert doc["hard_stop"] == app.breaker_trip
        assert doc["breakers"]["trips"][0]["breaker"] == "consecutive_losses"
        assert doc["breakers"]["consecutive_losses"] == 2  # the flatten lost its fees too
        text = app.ops.metrics.registry.render().decode()
        assert 'engine_breaker_tripped{breaker="consecutive_losses"} 1' in text
        recs = funding_records(app)
        eth = next(r for r in recs if r["type"] == "closed" and r.get("filled")
                   and r["symbol"] == "ETHUSDT")
        assert eth["net"] < 0
        assert [r["breaker"] for r in recs if r["type"] == "breaker"] == ["consecutive_losses"]
        app.request_stop("test over")
        await until(lambda: bool(codes), limit_s=20)
    assert codes == [0]
