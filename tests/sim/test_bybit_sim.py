"""The Bybit simulator on its own: funding slots and settlement, HMAC verification by Bybit's
rules, matching (market, limit, PostOnly, reduceOnly, balances) and the fault knobs; and the
``python -m engine sim --venue bybit`` command line."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
from pathlib import Path

import pytest

from engine.sim.bybit import wire
from engine.sim.bybit.exchange import DAY_MS, Exchange, OrderError

REPO = Path(__file__).resolve().parents[2]
T0 = 1_765_000_000_000 - 1_765_000_000_000 % DAY_MS + 3_600_000  # 01:00 UTC


def ex() -> Exchange:
    e = Exchange(seed=7, now_ms=T0)
    e.add_account("k", "s", usdt=100_000.0, coins={"BTC": 1.0})
    return e


def test_funding_slots_are_anchored_at_midnight_utc() -> None:
    assert Exchange.next_slot(T0, 8 * 3_600_000) == T0 - 3_600_000 + 8 * 3_600_000
    assert Exchange.next_slot(T0, 3_600_000) == T0 + 3_600_000
    e = ex()
    assert e.markets["BTCUSDT"].next_funding_ms == T0 + 7 * 3_600_000


def test_funding_settles_at_next_funding_time_and_moves_on() -> None:
    e = ex()
    e.create("k", {"category": "linear", "symbol": "BTCUSDT", "side": "Sell",
                   "orderType": "Market", "qty": "0.1"}, T0)
    e.outbox.clear()
    m = e.markets["BTCUSDT"]
    e.set_funding("BTCUSDT", 0.0005)
    due = m.next_funding_ms
    before = e.accounts["k"].coins["USDT"]
    e.step(due - 1)
    assert e.settlements == 0 and m.history == []
    mark = m.mid("linear")
    e.step(due)
    assert e.settlements == 2  # both perpetuals settle in the same slot
    assert m.next_funding_ms == due + 8 * 3_600_000
    received = e.accounts["k"].coins["USDT"] - before
    assert received == pytest.approx(0.1 * mark * 0.0005, rel=1e-3)  # the short receives
    fund = [d for _k, t, d in e.outbox if t == "execution" and d["execType"] == "Funding"]
    assert len(fund) == 1 and float(fund[0]["execFee"]) < 0 and fund[0]["execTime"] == str(due)
    assert m.history == [(due, 0.0005)]


def test_funding_rate_drifts_and_can_flip_within_the_cap() -> None:
    e = Exchange(seed=1, now_ms=T0, funding_drift=0.0002)
    rates = []
    for i in range(500):
        e.step(T0 + i)
        rates.append(e.markets["BTCUSDT"].funding_rate)
    assert min(rates) < 0 < max(rates)
    assert all(abs(r) <= 0.00375 for r in rates)


def sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_rest_signature_rules() -> None:
    secrets = {"k": "s"}
    now = T0
    payload = '{"category":"linear"}'

    def headers(ts: int, key: str = "k", secret: str = "s", rw: int = 5000) -> dict[str, str]:
        return {"x-bapi-api-key": key, "x-bapi-timestamp": str(ts),
                "x-bapi-recv-window": str(rw), "x-bapi-sign": sign(secret, f"{ts}{key}{rw}"
                                                                       f"{payload}")}

    assert wire.verify_rest(headers(now), payload, secrets, now) == "k"
    assert wire.verify_rest(headers(now - 5000), payload, secrets, now) == "k"
    assert wire.verify_rest(headers(now + 999), payload, secrets, now) == "k"
    for h, code in [(headers(now - 5001), 10002), (headers(now + 1000), 10002),
                    (headers(now, secret="x"), 10004), (headers(now, key="z"), 10003)]:
        with pytest.raises(wire.AuthFailure) as e:
            wire.verify_rest(h, payload, secrets, now)
        assert e.value.code == code
    with pytest.raises(wire.AuthFailure):  # signed over another body
        wire.verify_rest(headers(now), payload + " ", secrets, now)


def test_ws_auth_rules() -> None:
    secrets = {"k": "s"}
    exp = T0 + 1000
    assert wire.verify_ws_auth(["k", exp, sign("s", f"GET/realtime{exp}")], secrets, T0) == "k"
    for args in (["k", T0, sign("s", f"GET/realtime{T0}")], ["k", exp, "bad"],
                 ["z", exp, sign("s", f"GET/realtime{exp}")], ["k", exp]):
        with pytest.raises(wire.AuthFailure):
            wire.verify_ws_auth(args, secrets, T0)


def create(e: Exchange, now: int = T0, **p: object) -> object:
    base = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market",
            "qty": "0.01"}
    base.update(p)
    return e.create("k", base, now)


def test_matching_and_order_rules() -> None:
    e = ex()
    o = create(e)
    assert o.status == "Filled" and e.accounts["k"].positions["BTCUSDT"][0] == 0.01  # type: ignore[attr-defined]
    bid, _, ask, _ = e.markets["BTCUSDT"].top("linear")
    po = create(e, orderType="Limit", price=str(ask), timeInForce="PostOnly")
    assert po.status == "Cancelled" and po.reject_reason == "EC_PostOnlyWillTakeLiquidity"  # type: ignore[attr-defined]
    rest = create(e, orderType="Limit", price=str(round(bid - 100, 1)), orderLinkId="L1")
    assert rest.status == "New"  # type: ignore[attr-defined]
    with pytest.raises(OrderError) as err:
        create(e, orderLinkId="L1")
    assert err.value.code == wire.DUPLICATE_LINK_ID
    with pytest.raises(OrderError) as err:
        create(e, side="Buy", reduceOnly=True)
    assert err.value.code == wire.REDUCE_ONLY_ZERO
    with pytest.raises(OrderError) as err:
        create(e, category="spot", qty="0.01", reduceOnly=True)
    assert err.value.code == wire.PARAM_ERROR
    with pytest.raises(OrderError) as err:
        create(e, category="spot", side="Sell", qty="5")
    assert err.value.code == wire.SPOT_INSUFFICIENT
    with pytest.raises(OrderError):
        create(e, qty="0.0105")  # not on the lot


def test_fault_knobs() -> None:
    e = ex()
    e.faults.partial_fill_ratio = 0.5
    o = create(e, qty="0.10")
    assert o.status == "Cancelled" and o.cum_qty == pytest.approx(0.05)  # type: ignore[attr-defined]
    e.faults.partial_fill_ratio = 1.0
    e.faults.lag_ms = {"spot": 500}
    s = create(e, category="spot", qty="0.01")
    assert s.status == "New" and s.cum_qty == 0  # type: ignore[attr-defined]
    e.step(T0 + 499)
    assert s.cum_qty == 0  # type: ignore[attr-defined]
    e.step(T0 + 500)
    assert s.status == "Filled"  # type: ignore[attr-defined]
    e.faults.reject_next, e.faults.reject_category = 1, "spot"
    create(e, now=T0 + 600)  # linear unaffected
    with pytest.raises(OrderError) as err:
        create(e, now=T0 + 600, category="spot", qty="0.01")
    assert err.value.code == wire.INSUFFICIENT_BALANCE
    e.faults.order_rate_per_s = 2
    t = T0 + 10_000
    create(e, now=t)
    create(e, now=t)
    with pytest.raises(OrderError) as err:
        create(e, now=t)
    assert err.value.code == wire.RATE_LIMIT


def test_cli_prints_its_address_and_rejects_unknown_venue() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "engine", "sim", "--venue", "bybit",
                             "--port", "0"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("bybit simulator listening on http://127.0.0.1:")
        assert "/v5/private" in line
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bad = subprocess.run([sys.executable, "-m", "engine", "sim", "--venue", "kraken"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--venue must be hyperliquid or bybit" in bad.stderr
