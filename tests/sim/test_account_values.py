"""The simulator's account values as the venue reports them with DEX abstraction (protocol doc
§9 notes, P22): ``clearinghouseState`` with ``dex`` shows only what sits in that dex (the
isolated margin in use plus its unrealised P&L, "0.0" when flat); without ``dex`` (the engine
sends no key) it shows the main dex, where the free USDC stays. Their sum is the account's usable
equity: the starting balance plus realised P&L, minus fees, plus unrealised P&L at the mark."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from engine.sim import SimExchange

from .trader import AGENT, AGENT_KEY, GOLD, GOLD_ID, MASTER, Trader, order_wire

FROZEN = {"seed": 1, "speed": 1e-3}


async def state(sim: SimExchange, **dex: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        r = await http.post("/info", json={"type": "clearinghouseState", "user": MASTER, **dex})
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out


def value(st: dict[str, Any]) -> Decimal:
    return Decimal(st["marginSummary"]["accountValue"])


async def order(sim: SimExchange, is_buy: bool, px: float, sz: float, ro: bool) -> None:
    body = Trader(AGENT_KEY).orders(order_wire(GOLD_ID, is_buy, px, sz, "Ioc", ro))
    async with httpx.AsyncClient(base_url=sim.url) as http:
        r = await http.post("/exchange", json=body)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    assert "filled" in r.json()["response"]["data"]["statuses"][0], r.text


async def test_main_plus_dex_account_value_is_the_usable_equity(start_sim: Any) -> None:
    sim: SimExchange = await start_sim(**FROZEN, accounts={MASTER: 1000.0},
                                       agents={AGENT: MASTER})
    flat_main, flat_dex = await state(sim), await state(sim, dex="xyz")
    assert value(flat_main) == 1000 and flat_main["assetPositions"] == []
    assert value(flat_dex) == 0 and flat_dex["marginSummary"]["accountValue"] == "0.0"
    assert value(await state(sim, dex="")) == 1000  # "" is the main dex too (the SDK's form)

    ask = sim.model.bbo(GOLD).ask
    assert ask is not None
    await order(sim, True, float(ask.px), 0.1, False)  # open long 0.1 GOLD
    main, dex = await state(sim), await state(sim, dex="xyz")
    [pos] = dex["assetPositions"]
    p = pos["position"]
    lev = Decimal(p["leverage"]["value"])
    entry, szi = Decimal(p["entryPx"]), Decimal(p["szi"])
    margin = entry * szi / lev
    upnl = Decimal(p["unrealizedPnl"])
    # the dex holds the isolated margin plus unrealised P&L; the main dex the rest, less the fee
    assert value(dex) == margin + upnl and Decimal(p["marginUsed"]) == margin + upnl
    summary = sim.account_summary(MASTER)
    assert summary is not None
    assert value(main) == Decimal(summary["cash"]) and main["assetPositions"] == []
    fee = Decimal(1000) - margin - value(main)
    assert Decimal(0) < fee < Decimal("0.1")  # the taker fee, paid from the free USDC
    assert value(main) + value(dex) == 1000 - fee + upnl  # usable equity

    bid = sim.model.bbo(GOLD).bid
    assert bid is not None
    await order(sim, False, float(bid.px), 0.1, True)  # close it
    main, dex = await state(sim), await state(sim, dex="xyz")
    assert value(dex) == 0 and dex["assetPositions"] == []  # flat: $0 in the dex
    pnl = (Decimal(bid.px) - entry) * szi
    assert Decimal(0) < 1000 + pnl - value(main) < Decimal("0.1")  # both fees
