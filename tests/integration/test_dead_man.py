"""The dead-man switch end to end against the simulator over loopback: the engine (trade mode)
arms ``scheduleCancel`` while an order rests on the account, renews it, disarms it when none
rests; and when the engine is killed with SIGKILL the simulator cancels the resting order once
the timer ends.

The engine's own orders are IOC, so the resting order here is the honest case the engine meets
at reconciliation: an open GTC order of the account on a market this run does not trade
(placed by a second API wallet of the same account), which the engine leaves alone while it
runs and which the venue must cancel if the engine dies."""

from __future__ import annotations

import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import trio
from eth_account import Account
from hyperliquid.utils.signing import get_timestamp_ms, sign_l1_action

from engine.sim.server import SimExchange
from engine.trading_app import TradingApp

from .harness import running, wait_for

KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
AGENT = "0x14791697260e4c9a71f18484c9f997b308e59325"  # address of KEY
MASTER = "0x1111111111111111111111111111111111111111"
OTHER_KEY = "0x" + "22" * 32  # a second API wallet of MASTER: the test's own orders
OTHER = Account.from_key(OTHER_KEY).address.lower()
OTHER_COIN = "xyz:TSLA"  # the engine trades xyz:GOLD only

SIM: dict[str, Any] = {"aligned": True, "accounts": {MASTER: 10_000.0},
                       "agents": {AGENT: MASTER, OTHER: MASTER}}
TRADE: dict[str, Any] = {
    "mode": "trade",
    "account": {"address": MASTER},
    "venue": {"markets": ["xyz:GOLD"]},
    "trading": {"dead_man_s": 6.0, "reconcile_interval_s": 0.5},
}


def _sign(action: dict[str, Any]) -> dict[str, Any]:
    nonce = get_timestamp_ms()
    sig = sign_l1_action(Account.from_key(OTHER_KEY), action, None, nonce, None, True)
    return {"action": action, "nonce": nonce, "signature": sig}


def rest_order(sim: SimExchange) -> int:
    """A GTC buy far below the book on OTHER_COIN (rests; > $10): its oid."""
    bid = sim.model.bbo(OTHER_COIN).bid
    assert bid is not None
    px = float(int(float(bid.px) * 0.8))
    sz = math.ceil(20.0 / px * 100) / 100
    asset = sim.trading.coin_asset[OTHER_COIN]
    order = {"a": asset, "b": True, "p": f"{px:g}", "s": f"{sz:g}", "r": False,
             "t": {"limit": {"tif": "Gtc"}}}
    acct = sim.trading.account(MASTER)
    assert acct is not None
    from engine.sim.actions import parse_signed_action  # the venue's own parser
    payload = sim.trading.execute_now(parse_signed_action(
        _sign({"type": "order", "orders": [order], "grouping": "na"})))
    status = payload["response"]["data"]["statuses"][0]
    return int(status["resting"]["oid"])


def status_of(sim: SimExchange, oid: int) -> str:
    acct = sim.trading.account(MASTER)
    assert acct is not None
    return acct.orders[oid].status


async def test_arms_renews_and_disarms_while_an_order_rests(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("ENGINE_AGENT_KEY", KEY)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    async with running(tmp_path, config=TRADE, sim=SIM, app_cls=TradingApp) as (sim, app):
        timers = sim.trading.schedule.timers
        await wait_for(lambda: app.trading.is_ready(), 10, "READY")
        dm = app.deadman
        assert dm is not None
        await wait_for(lambda: dm.stats.disarms >= 1, 5, "the start's disarm")
        assert timers == {} and dm.stats.arms == 0  # nothing rests: not armed
        oid = rest_order(sim)
        await wait_for(lambda: MASTER in timers, 5, "armed")
        first = timers[MASTER]
        assert first >= get_timestamp_ms() + 3_000
        assert app.status_doc()["dead_man"]["state"] == "armed"
        await wait_for(lambda: timers.get(MASTER, 0) > first, 5, "renewed")
        assert status_of(sim, oid) == "open"  # renewed in time: never fired
        # the order goes (cancelled by its owner): the next reconciliation disarms
        acct = sim.trading.account(MASTER)
        assert acct is not None
        sim.trading._finish(acct.orders[oid], "canceled", get_timestamp_ms())  # noqa: SLF001
        await wait_for(lambda: MASTER not in timers, 5, "disarmed")
        assert sim.trading.schedule.fired == []
        assert dm.stats.failures == 0 and dm.stats.arms >= 2


async def test_kill_9_with_a_resting_order_the_venue_cancels_it(tmp_path: Path) -> None:
    exchange = SimExchange(seed=7, n_markets=12, speed=1.0, **SIM)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(exchange.serve)
        oid = rest_order(exchange)
        cfg = tmp_path / "trade.toml"
        cfg.write_text(f"""
mode = "trade"
[venue]
network = "sim"
ws_url = "ws://127.0.0.1:{port}/ws"
info_url = "http://127.0.0.1:{port}/info"
dex = "xyz"
markets = ["xyz:GOLD"]
[account]
address = "{MASTER}"
[trading]
dead_man_s = 6
reconcile_interval_s = 1
[records]
dir = "{tmp_path / 'data'}"
[summary]
interval_s = 0
[ops]
http_port = 0
""")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ENGINE_") and k not in ("STATE_DIRECTORY", "NOTIFY_SOCKET",
                                                            "CREDENTIALS_DIRECTORY")}
        env["ENGINE_AGENT_KEY"] = KEY
        log_path = tmp_path / "engine.log"
        with log_path.open("wb") as log_file:  # noqa: ASYNC230 - the child's output
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "engine", "run", "--config", str(cfg)],
                env=env, stdout=log_file, stderr=log_file)
            try:
                timers = exchange.trading.schedule.timers
                with trio.fail_after(40):
                    # the venue holds the timer, and the engine has seen its answer (logged):
                    # only then is a kill "with the switch armed"
                    while MASTER not in timers or \
                            "dead-man switch armed" not in log_path.read_text():  # noqa: ASYNC110
                        assert proc.poll() is None, log_path.read_text()
                        await trio.sleep(0.05)
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        at = timers[MASTER]
        killed_ms = get_timestamp_ms()
        assert status_of(exchange, oid) == "open"  # the engine left it; its timer will not
        with trio.fail_after(10):
            while status_of(exchange, oid) == "open":  # noqa: ASYNC110
                await trio.sleep(0.05)
        done_ms = get_timestamp_ms()
        assert status_of(exchange, oid) == "scheduledCancel"
        assert done_ms >= at and at - killed_ms <= 6_000
        assert exchange.trading.schedule.fired == [(MASTER, at, 1)]
        assert exchange.account_summary(MASTER)["open_orders"] == []  # type: ignore[index]
        assert "dead-man switch armed" in log_path.read_text()
        nursery.cancel_scope.cancel()
