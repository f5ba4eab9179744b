"""The Bybit simulator's markets, accounts and matching (synchronous; the server drives it).

- One common index per base coin follows a seeded random walk; the spot book and the linear
  perpetual book quote around it (the perp with a small drifting basis), five levels a side.
- Each perpetual has a funding rate that drifts (and can change sign) and settles at
  ``next_funding_ms`` (slots anchored at 00:00 UTC, every ``interval_ms``): each position pays
  ``size × mark × rate`` (longs pay a positive rate), published as an ``execType=Funding``
  execution and a wallet update; then the next slot starts.
- Orders: Market and Limit (GTC, IOC, FOK, PostOnly), matched against the book by walking its
  levels; resting limits fill when the book crosses them. A crossing PostOnly is cancelled with
  ``EC_PostOnlyWillTakeLiquidity``. ``orderLinkId`` must be unique per account (``110072``).
  Spot moves coin balances (``170131`` when short); linear nets one position per symbol with a
  10x margin check (``110007``) and honours ``reduceOnly`` (``110017`` on a flat position).
- Fees: a perp fill and a spot *sell* pay ``qty × price × rate`` in USDT; a spot *buy* pays
  ``qty × rate`` in the coin bought (``qty × (1 − rate)`` arrives), ``feeCurrency`` says which.
  The rates are the exchange's (``taker_fee``/``maker_fee`` linear, ``spot_fee`` spot, or a
  symbol's own in :attr:`Exchange.symbol_fees`), the same ones ``/v5/account/fee-rate`` answers.
- Each funding payment is also a ``SETTLEMENT`` row of the account's transaction log
  (``tradeId`` = the execution's ``execId``), so a client that missed the execution can find it.
- Fault knobs (:class:`Faults`): synchronous rejects, partial fills (every order, or only the
  next N of a category), a lagging category (its orders match only after ``lag_ms``),
  rate-limit answers, lost answers (executed, never answered), a wallet answer that differs
  from the account (``wallet_skew``, for the next N answers or all), position answers that read
  flat (``flat_positions_next``), a path's next answers failing with ``10016`` (``fail_path_next``);
  disconnects are the server's.

Private messages are queued per API key in :attr:`Exchange.outbox` for the server to publish.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from engine.sim.bybit import wire
from engine.sim.bybit.wire import s

DAY_MS = 86_400_000


@dataclass
class Faults:
    reject_next: int = 0  # next N creates answered with reject_code
    reject_code: int = wire.INSUFFICIENT_BALANCE
    reject_category: str | None = None  # only this category (None: any)
    partial_fill_ratio: float = 1.0  # taker fills at most this share of the order
    partial_fill_category: str | None = None  # only this category (None: any)
    partial_fill_orders: int | None = None  # only the next N taker orders (None: every one)
    lag_ms: dict[str, float] = field(default_factory=dict)  # category -> matching delay
    rate_limit_next: int = 0  # next N REST requests answered 10006
    order_rate_per_s: int = 10  # per key and category, like Bybit's create limit
    drop_next_answer: int = 0  # next N REST requests are executed but never answered
    # what GET /v5/account/wallet-balance reports differs from the account by these amounts
    # (coin -> amount added), for the next N answers (None: every answer until cleared)
    wallet_skew: dict[str, float] = field(default_factory=dict)
    wallet_skew_answers: int | None = None
    flat_positions_next: int = 0  # next N GET /v5/position/list answers report every size 0
    fail_path_next: dict[str, int] = field(default_factory=dict)  # path -> next N answer 10016


@dataclass
class MarketSpec:
    symbol: str
    base: str
    index: float
    tick: float
    lot: float
    min_qty: float
    spot_lot: float
    spot_min_qty: float
    interval_ms: int = 8 * 3_600_000
    funding_rate: float = 0.0001
    funding_cap: float = 0.00375


@dataclass
class Market:
    spec: MarketSpec
    index: float
    basis: float = 0.0002  # perp mid = index * (1 + basis)
    half_spread_bps: float = 1.0
    level_size: float = 1.0
    funding_rate: float = 0.0001
    next_funding_ms: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)
    pinned_rate: bool = False

    def mid(self, category: str) -> float:
        return self.index * (1 + self.basis) if category == "linear" else self.index

    def levels(self, category: str, side: str) -> list[tuple[float, float]]:
        """Five levels of the side a taker of ``side`` meets (asks for a Buy)."""
        tick = self.spec.tick
        m = self.mid(category)
        half = max(m * self.half_spread_bps / 1e4, tick)
        out = []
        for i in range(5):
            if side == "Buy":
                px = math.ceil((m + half) / tick) * tick + i * tick
            else:
                px = math.floor((m - half) / tick) * tick - i * tick
            out.append((round(px, 10), self.level_size * (i + 1)))
        return out

    def top(self, category: str) -> tuple[float, float, float, float]:
        (ask, asz) = self.levels(category, "Buy")[0]
        (bid, bsz) = self.levels(category, "Sell")[0]
        return bid, bsz, ask, asz


@dataclass
class SimOrder:
    order_id: str
    link_id: str
    key: str
    category: str
    symbol: str
    side: str
    order_type: str
    qty: float
    price: float | None
    tif: str
    reduce_only: bool
    created_ms: int
    status: str = "New"
    cum_qty: float = 0.0
    cum_value: float = 0.0
    cum_fee: float = 0.0
    updated_ms: int = 0
    reject_reason: str = "EC_NoError"
    due_ms: int = 0  # lagging category: match at or after this time
    evaluated: bool = False  # met the book once as a taker (later passes are as a maker)

    @property
    def leaves(self) -> float:
        return max(self.qty - self.cum_qty, 0.0)


@dataclass
class Account:
    key: str
    secret: str
    coins: dict[str, float]
    positions: dict[str, list[float]] = field(default_factory=dict)  # symbol -> [size, entry]
    orders: dict[str, SimOrder] = field(default_factory=dict)
    links: dict[tuple[str, str], str] = field(default_factory=dict)
    create_times: dict[str, deque[int]] = field(default_factory=dict)
    executions: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    transactions: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))


class OrderError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


DEFAULT_MARKETS = (
    MarketSpec("BTCUSDT", "BTC", 60_000.0, 0.1, 0.001, 0.001, 0.000001, 0.000011),
    MarketSpec("ETHUSDT", "ETH", 3_000.0, 0.01, 0.01, 0.01, 0.00001, 0.0001),
)


class Exchange:
    """All markets and accounts. ``seed`` makes the walk reproducible."""

    def __init__(self, markets: tuple[MarketSpec, ...] = DEFAULT_MARKETS, seed: int = 1,
                 now_ms: int = 0, taker_fee: float = 0.00055, maker_fee: float = 0.0002,
                 spot_fee: float = 0.001, leverage: float = 10.0,
                 volatility_bps: float = 1.0, funding_drift: float = 0.00002) -> None:
        self.rng = random.Random(seed)
        self.markets: dict[str, Market] = {}
        for shared in markets:
            spec = dataclasses.replace(shared)  # ours to change (set_funding)
            m = Market(spec, spec.index, funding_rate=spec.funding_rate)
            m.next_funding_ms = self.next_slot(now_ms, spec.interval_ms)
            self.markets[spec.symbol] = m
        self.accounts: dict[str, Account] = {}
        self.faults = Faults()
        self.taker_fee, self.maker_fee, self.spot_fee = taker_fee, maker_fee, spot_fee
        # (category, symbol) -> (taker, maker): a symbol charged other than its category's rate
        self.symbol_fees: dict[tuple[str, str], tuple[float, float]] = {}
        self.leverage = leverage
        self.volatility_bps = volatility_bps
        self.funding_drift = funding_drift
        self.outbox: deque[tuple[str, str, dict[str, Any]]] = deque()  # (key, topic, data)
        self._ids = itertools.count(1)
        self.settlements = 0

    @staticmethod
    def next_slot(now_ms: int, interval_ms: int) -> int:
        """The first funding slot after ``now_ms`` (slots anchored at 00:00 UTC)."""
        day = now_ms - now_ms % DAY_MS
        k = (now_ms - day) // interval_ms + 1
        return day + k * interval_ms

    def add_account(self, key: str, secret: str, usdt: float = 100_000.0,
                    coins: dict[str, float] | None = None) -> Account:
        acct = Account(key, secret, {"USDT": usdt, **(coins or {})})
        self.accounts[key] = acct
        return acct

    @property
    def secrets(self) -> dict[str, str]:
        return {k: a.secret for k, a in self.accounts.items()}

    def set_funding(self, symbol: str, rate: float, next_funding_ms: int | None = None,
                    interval_ms: int | None = None, pin: bool = True) -> None:
        m = self.markets[symbol]
        m.funding_rate = rate
        m.pinned_rate = pin
        if interval_ms is not None:
            m.spec.interval_ms = interval_ms
        if next_funding_ms is not None:
            m.next_funding_ms = next_funding_ms

    # -- time ----------------------------------------------------------------------------------

    def step(self, now_ms: int) -> None:
        """Move the index, the basis and the funding rate; settle due funding; match resting
        and lagged orders."""
        for m in self.markets.values():
            m.index *= 1 + self.rng.gauss(0, self.volatility_bps / 1e4)
            m.basis += self.rng.gauss(0, 0.00002)
            m.basis = max(min(m.basis, 0.003), -0.003)
            if not m.pinned_rate:
                m.funding_rate += self.rng.gauss(0, self.funding_drift)
                cap = m.spec.funding_cap
                m.funding_rate = max(min(m.funding_rate, cap), -cap)
            while now_ms >= m.next_funding_ms:
                self._settle(m, m.next_funding_ms)
                m.next_funding_ms += m.spec.interval_ms
        for acct in self.accounts.values():
            for o in list(acct.orders.values()):
                if o.status in ("New", "PartiallyFilled") and now_ms >= o.due_ms:
                    self._match(acct, o, now_ms, resting=o.evaluated)

    def _settle(self, m: Market, ts: int) -> None:
        rate = m.funding_rate
        m.history.append((ts, rate))
        mark = m.mid("linear")
        self.settlements += 1
        for acct in self.accounts.values():
            pos = acct.positions.get(m.spec.symbol)
            if not pos or pos[0] == 0:
                continue
            size = pos[0]
            paid = size * mark * rate  # > 0: paid by the account
            acct.coins["USDT"] -= paid
            exec_id = f"fund-{next(self._ids)}"
            side = "Buy" if size > 0 else "Sell"
            # the transaction log's row of the same payment (GET /v5/account/transaction-log):
            # ``funding`` is the wallet's change, ``tradeId`` the execution's id
            acct.transactions.append({
                "symbol": m.spec.symbol, "category": "linear", "side": side,
                "funding": s(-paid), "orderLinkId": "", "orderId": "", "fee": "0",
                "change": s(-paid), "cashFlow": "0", "transactionTime": ts,
                "type": "SETTLEMENT", "feeRate": s(rate, 10), "size": s(abs(size)),
                "qty": s(abs(size)), "cashBalance": s(acct.coins["USDT"]), "currency": "USDT",
                "tradePrice": s(mark), "tradeId": exec_id,
            })
            self.outbox.append((acct.key, "execution", {
                "category": "linear", "symbol": m.spec.symbol, "execFee": s(paid),
                "execId": exec_id, "execPrice": s(mark), "execQty": s(abs(size)),
                "execType": "Funding", "execValue": s(abs(size) * mark), "feeRate": s(rate, 10),
                "isMaker": False, "orderId": "", "orderLinkId": "", "orderType": "UNKNOWN",
                "side": side, "execTime": str(ts), "leavesQty": "0",
                "orderQty": "0", "orderPrice": "0", "markPrice": s(mark), "seq": 0,
            }))
            self._wallet(acct, ts)

    # -- orders --------------------------------------------------------------------------------

    def create(self, key: str, p: dict[str, Any], now_ms: int) -> SimOrder:
        acct = self.accounts[key]
        category = p.get("category")
        if category not in ("spot", "linear"):
            raise OrderError(wire.PARAM_ERROR, f"category {category!r} not supported")
        symbol = p.get("symbol")
        if symbol not in self.markets:
            raise OrderError(wire.PARAM_ERROR, f"symbol {symbol!r} invalid")
        m = self.markets[symbol]
        side, otype = p.get("side"), p.get("orderType")
        if side not in ("Buy", "Sell") or otype not in ("Market", "Limit"):
            raise OrderError(wire.PARAM_ERROR, "side or orderType invalid")
        try:
            qty = float(p["qty"])
        except (KeyError, TypeError, ValueError):
            raise OrderError(wire.PARAM_ERROR, "qty invalid") from None
        lot = m.spec.lot if category == "linear" else m.spec.spot_lot
        min_qty = m.spec.min_qty if category == "linear" else m.spec.spot_min_qty
        if qty < min_qty or abs(round(qty / lot) * lot - qty) > lot * 1e-6:
            raise OrderError(wire.PARAM_ERROR, f"qty {p['qty']} not a multiple of {lot} or "
                                               f"below {min_qty}")
        price = None
        if otype == "Limit":
            try:
                price = float(p["price"])
            except (KeyError, TypeError, ValueError):
                raise OrderError(wire.PARAM_ERROR, "price invalid") from None
        tif = str(p.get("timeInForce") or ("IOC" if otype == "Market" else "GTC"))
        reduce_only = bool(p.get("reduceOnly", False))
        if reduce_only and category != "linear":
            raise OrderError(wire.PARAM_ERROR, "reduceOnly is for linear and inverse only")
        link = str(p.get("orderLinkId") or f"auto-{next(self._ids)}")
        if (category, link) in acct.links:
            raise OrderError(wire.DUPLICATE_LINK_ID, "OrderLinkedID is duplicate")
        times = acct.create_times.setdefault(category, deque())
        while times and times[0] <= now_ms - 1000:
            times.popleft()
        if len(times) >= self.faults.order_rate_per_s:
            raise OrderError(wire.RATE_LIMIT, "Too many visits!")
        f = self.faults
        if f.reject_next > 0 and f.reject_category in (None, category):
            f.reject_next -= 1
            raise OrderError(f.reject_code, "simulated reject")
        if reduce_only:
            pos = acct.positions.get(symbol, [0.0, 0.0])[0]
            if pos == 0 or (pos > 0) == (side == "Buy"):
                raise OrderError(wire.REDUCE_ONLY_ZERO,
                                 "current position is zero, cannot fix reduce-only order qty")
            qty = min(qty, abs(pos))
        ref_px = price if price is not None else m.top(category)[2 if side == "Buy" else 0]
        self._check_funds(acct, category, m, side, qty, ref_px, reduce_only)
        times.append(now_ms)
        lag = f.lag_ms.get(category, 0.0)
        o = SimOrder(order_id=f"{next(self._ids):019d}", link_id=link, key=key,
                     category=category, symbol=symbol, side=side, order_type=otype, qty=qty,
                     price=price, tif=tif, reduce_only=reduce_only, created_ms=now_ms,
                     updated_ms=now_ms, due_ms=now_ms + int(lag))
        acct.orders[o.order_id] = o
        acct.links[(category, link)] = o.order_id
        self._order_msg(o)
        if lag <= 0:
            self._match(acct, o, now_ms, resting=False)
        return o

    def _check_funds(self, acct: Account, category: str, m: Market, side: str, qty: float,
                     px: float, reduce_only: bool) -> None:
        if category == "spot":
            if side == "Buy" and acct.coins.get("USDT", 0.0) < qty * px:  # fee: in the coin
                raise OrderError(wire.SPOT_INSUFFICIENT, "Insufficient balance.")
            if side == "Sell" and acct.coins.get(m.spec.base, 0.0) < qty - 1e-12:
                raise OrderError(wire.SPOT_INSUFFICIENT, "Insufficient balance.")
            return
        if reduce_only:
            return
        need = qty * px / self.leverage + qty * px * self.fee_rates("linear", m.spec.symbol)[0]
        if self._available(acct) < need:
            raise OrderError(wire.INSUFFICIENT_BALANCE,
                             "ab not enough for new order")

    def _available(self, acct: Account) -> float:
        used = sum(abs(sz) * self.markets[sym].mid("linear") / self.leverage
                   for sym, (sz, _e) in acct.positions.items())
        return acct.coins.get("USDT", 0.0) - used

    def find(self, key: str, category: str, order_id: str | None,
             link_id: str | None) -> SimOrder:
        acct = self.accounts[key]
        if order_id and order_id in acct.orders:
            return acct.orders[order_id]
        if link_id and (category, link_id) in acct.links:
            return acct.orders[acct.links[(category, link_id)]]
        raise OrderError(wire.ORDER_NOT_FOUND, "order not exists or too late to cancel")

    def cancel(self, key: str, p: dict[str, Any], now_ms: int) -> SimOrder:
        o = self.find(key, str(p.get("category")), p.get("orderId"), p.get("orderLinkId"))
        if o.status not in ("New", "PartiallyFilled"):
            raise OrderError(wire.ORDER_NOT_FOUND, "order not exists or too late to cancel")
        self._finish(o, "Cancelled", now_ms)
        return o

    def cancel_all(self, key: str, p: dict[str, Any], now_ms: int) -> list[SimOrder]:
        out = []
        for o in list(self.accounts[key].orders.values()):
            if o.category == p.get("category") and o.status in ("New", "PartiallyFilled") and (
                p.get("symbol") in (None, o.symbol)
            ):
                self._finish(o, "Cancelled", now_ms)
                out.append(o)
        return out

    def amend(self, key: str, p: dict[str, Any], now_ms: int) -> SimOrder:
        o = self.find(key, str(p.get("category")), p.get("orderId"), p.get("orderLinkId"))
        if o.status not in ("New", "PartiallyFilled"):
            raise OrderError(wire.ORDER_NOT_FOUND, "order not exists or too late to replace")
        if p.get("qty") is not None:
            o.qty = float(p["qty"])
        if p.get("price") is not None and o.order_type == "Limit":
            o.price = float(p["price"])
        o.updated_ms = now_ms
        self._order_msg(o)
        self._match(self.accounts[key], o, now_ms, resting=True)
        return o

    def _finish(self, o: SimOrder, status: str, now_ms: int, reason: str = "EC_NoError") -> None:
        if status == "Cancelled" and o.category == "spot" and o.cum_qty > 0:
            status = "PartiallyFilledCanceled"
        o.status = status
        o.reject_reason = reason
        o.updated_ms = now_ms
        self._order_msg(o)

    def _match(self, acct: Account, o: SimOrder, now_ms: int, resting: bool) -> None:
        o.evaluated = True
        m = self.markets[o.symbol]
        levels = m.levels(o.category, o.side)
        crosses = [(px, sz) for px, sz in levels if o.price is None or
                   (px <= o.price if o.side == "Buy" else px >= o.price)]
        if o.tif == "PostOnly" and crosses and not resting:
            self._finish(o, "Cancelled", now_ms, "EC_PostOnlyWillTakeLiquidity")
            return
        if o.tif == "PostOnly" and crosses and resting:
            crosses = crosses[:1]  # a resting maker fills at its own price
        want = o.leaves
        if not resting or o.tif != "PostOnly":
            want = min(want, o.qty * self._partial_ratio(o, resting) - o.cum_qty)
        lot = m.spec.lot if o.category == "linear" else m.spec.spot_lot
        want = math.floor(want / lot + 1e-9) * lot
        if o.tif == "FOK" and sum(sz for _, sz in crosses) < o.leaves:
            crosses = []
        maker = resting and o.price is not None
        for px, sz in crosses:
            if want <= 1e-12:
                break
            fill = min(sz, want)
            fill_px = o.price if maker and o.price is not None else px
            self._fill(acct, o, m, fill, fill_px, maker, now_ms)
            want -= fill
        if o.status in ("Filled", "Cancelled", "PartiallyFilledCanceled", "Rejected"):
            return
        if o.leaves <= 1e-12:
            self._finish(o, "Filled", now_ms)
        elif o.order_type == "Market" or o.tif in ("IOC", "FOK"):
            self._finish(o, "Cancelled", now_ms)
        elif o.cum_qty > 0 and o.status != "PartiallyFilled":
            o.status = "PartiallyFilled"
            self._order_msg(o)

    def _partial_ratio(self, o: SimOrder, resting: bool) -> float:
        """The share of ``o`` a taker pass may fill (the partial-fill fault knobs)."""
        f = self.faults
        if f.partial_fill_ratio >= 1.0 or f.partial_fill_category not in (None, o.category):
            return 1.0
        if f.partial_fill_orders is None:
            return f.partial_fill_ratio
        if resting or f.partial_fill_orders <= 0:
            return 1.0
        f.partial_fill_orders -= 1
        return f.partial_fill_ratio

    def _fill(self, acct: Account, o: SimOrder, m: Market, qty: float, px: float, maker: bool,
              now_ms: int) -> None:
        taker, maker_rate = self.fee_rates(o.category, o.symbol)
        rate = maker_rate if maker else taker
        fee = qty * px * rate
        fee_coin, fee_text = "USDT", s(fee)
        sign = 1 if o.side == "Buy" else -1
        if o.category == "spot" and o.side == "Buy":
            # Bybit keeps a spot buy's fee from the coin bought: qty × (1 − rate) arrives
            fee = qty * rate
            fee_coin, fee_text = m.spec.base, s(fee, 12)
            acct.coins["USDT"] = acct.coins.get("USDT", 0.0) - qty * px
            acct.coins[m.spec.base] = acct.coins.get(m.spec.base, 0.0) + qty - fee
        elif o.category == "spot":  # a sell pays it from the USDT received
            acct.coins["USDT"] = acct.coins.get("USDT", 0.0) + qty * px - fee
            acct.coins[m.spec.base] = acct.coins.get(m.spec.base, 0.0) - qty
        else:
            pos = acct.positions.setdefault(o.symbol, [0.0, 0.0])
            size, entry = pos
            new = size + sign * qty
            if size == 0 or (size > 0) == (sign > 0):
                pos[1] = (abs(size) * entry + qty * px) / abs(new) if new else 0.0
            else:
                closed = min(qty, abs(size))
                acct.coins["USDT"] += closed * (px - entry) * (1 if size > 0 else -1)
                if abs(new) > 1e-12 and (new > 0) != (size > 0):
                    pos[1] = px
            pos[0] = round(new, 12)
            acct.coins["USDT"] -= fee
        o.cum_qty += qty
        o.cum_value += qty * px
        o.cum_fee += fee
        o.updated_ms = now_ms
        execution = {
            "category": o.category, "symbol": o.symbol, "execFee": fee_text,
            "feeCurrency": fee_coin, "execId": f"x-{next(self._ids)}", "execPrice": s(px), "execQty": s(qty),
            "execType": "Trade", "execValue": s(qty * px), "feeRate": s(rate),
            "isMaker": maker, "orderId": o.order_id, "orderLinkId": o.link_id,
            "orderType": o.order_type, "side": o.side, "execTime": str(now_ms),
            "leavesQty": s(o.leaves), "orderQty": s(o.qty),
            "orderPrice": s(o.price or 0.0), "markPrice": s(m.mid("linear")), "seq": 0,
        }
        acct.executions.append(execution)  # GET /v5/execution/list
        self.outbox.append((acct.key, "execution", execution))
        if o.category == "linear":
            self._position(acct, o.symbol, now_ms)
        self._wallet(acct, now_ms)

    # -- private messages ------------------------------------------------------------------------

    def order_row(self, o: SimOrder) -> dict[str, Any]:
        avg = o.cum_value / o.cum_qty if o.cum_qty else 0.0
        return {
            "category": o.category, "symbol": o.symbol, "orderId": o.order_id,
            "orderLinkId": o.link_id, "side": o.side, "orderType": o.order_type,
            "price": s(o.price or 0.0), "qty": s(o.qty), "timeInForce": o.tif,
            "orderStatus": o.status, "cancelType": "CancelByUser" if o.status == "Cancelled"
            else "UNKNOWN", "rejectReason": o.reject_reason,
            "avgPrice": s(avg) if o.cum_qty else "", "leavesQty": s(o.leaves),
            "cumExecQty": s(o.cum_qty), "cumExecValue": s(o.cum_value),
            "cumExecFee": s(o.cum_fee), "reduceOnly": o.reduce_only, "positionIdx": 0,
            "createdTime": str(o.created_ms), "updatedTime": str(o.updated_ms),
        }

    def _order_msg(self, o: SimOrder) -> None:
        self.outbox.append((o.key, "order", self.order_row(o)))

    def position_row(self, acct: Account, symbol: str, now_ms: int) -> dict[str, Any]:
        size, entry = acct.positions.get(symbol, [0.0, 0.0])
        mark = self.markets[symbol].mid("linear")
        return {
            "category": "linear", "symbol": symbol, "positionIdx": 0,
            "side": "" if size == 0 else ("Buy" if size > 0 else "Sell"),
            "size": s(abs(size)), "entryPrice": s(entry), "markPrice": s(mark),
            "positionValue": s(abs(size) * entry), "unrealisedPnl": s(size * (mark - entry)),
            "leverage": s(self.leverage), "positionStatus": "Normal",
            "createdTime": str(now_ms), "updatedTime": str(now_ms), "seq": 0,
        }

    def _position(self, acct: Account, symbol: str, now_ms: int) -> None:
        self.outbox.append((acct.key, "position", self.position_row(acct, symbol, now_ms)))

    def wallet_row(self, acct: Account, skew: dict[str, float] | None = None
                   ) -> dict[str, Any]:
        """The account's wallet; ``skew`` (the ``wallet_skew`` fault) is added to the coins
        reported, never to the account itself."""
        held = dict(acct.coins)
        for c, extra in (skew or {}).items():
            held[c] = held.get(c, 0.0) + extra
        coins = [{"coin": c, "walletBalance": s(v, 12), "equity": s(v, 12),
                  "availableToWithdraw": s(v if c != "USDT" else self._available(acct), 12)}
                 for c, v in sorted(held.items())]
        usdt = acct.coins.get("USDT", 0.0)
        return {"accountType": "UNIFIED", "totalEquity": s(usdt), "totalWalletBalance": s(usdt),
                "totalAvailableBalance": s(self._available(acct)), "coin": coins}

    def _wallet(self, acct: Account, now_ms: int) -> None:
        self.outbox.append((acct.key, "wallet", self.wallet_row(acct)))

    # -- public views ----------------------------------------------------------------------------

    def ticker(self, symbol: str, category: str) -> dict[str, Any]:
        m = self.markets[symbol]
        if category == "spot":
            return {"symbol": symbol, "lastPrice": s(m.index, 2), "usdIndexPrice": s(m.index, 4)}
        bid, bsz, ask, asz = m.top("linear")
        extra = ({"fundingIntervalHour": str(m.spec.interval_ms // 3_600_000)}
                 if m.spec.interval_ms % 3_600_000 == 0 else {})  # whole hours only, like Bybit
        return {**extra,
            "symbol": symbol, "lastPrice": s((bid + ask) / 2, 2),
            "markPrice": s(m.mid("linear"), 2), "indexPrice": s(m.index, 2),
            "fundingRate": s(m.funding_rate, 8), "nextFundingTime": str(m.next_funding_ms),
            "fundingCap": s(m.spec.funding_cap), "bid1Price": s(bid, 2), "bid1Size": s(bsz),
            "ask1Price": s(ask, 2), "ask1Size": s(asz),
        }

    def book1(self, symbol: str, category: str) -> dict[str, Any]:
        bid, bsz, ask, asz = self.markets[symbol].top(category)
        return {"s": symbol, "b": [[s(bid, 2), s(bsz)]], "a": [[s(ask, 2), s(asz)]]}

    def fee_rates(self, category: str, symbol: str) -> tuple[float, float]:
        """What a fill of ``symbol`` in ``category`` is charged: (taker, maker)."""
        own = self.symbol_fees.get((category, symbol))
        if own is not None:
            return own
        if category == "spot":
            return self.spot_fee, self.spot_fee
        return self.taker_fee, self.maker_fee

    def fee_rate_rows(self, category: str, symbol: str | None) -> list[dict[str, Any]]:
        """``/v5/account/fee-rate``'s list: every market (or ``symbol``) of ``category``."""
        rows = []
        for sy in self.markets:
            if symbol not in (None, "", sy):
                continue
            taker, maker = self.fee_rates(category, sy)
            row = {"symbol": sy, "takerFeeRate": s(taker, 8), "makerFeeRate": s(maker, 8)}
            if category == "spot":
                row["baseCoin"] = self.markets[sy].spec.base
            rows.append(row)
        return rows

    def instruments(self, category: str, symbol: str | None) -> list[dict[str, Any]]:
        out = []
        for m in self.markets.values():
            sp = m.spec
            if symbol not in (None, sp.symbol):
                continue
            if category == "linear":
                out.append({
                    "symbol": sp.symbol, "contractType": "LinearPerpetual", "status": "Trading",
                    "baseCoin": sp.base, "quoteCoin": "USDT", "settleCoin": "USDT",
                    "priceFilter": {"minPrice": s(sp.tick), "maxPrice": "9999999",
                                    "tickSize": s(sp.tick)},
                    "lotSizeFilter": {"maxOrderQty": "1000", "minOrderQty": s(sp.min_qty),
                                      "qtyStep": s(sp.lot), "minNotionalValue": "5"},
                    "fundingInterval": sp.interval_ms // 60_000,
                    "upperFundingRate": s(sp.funding_cap), "lowerFundingRate": s(-sp.funding_cap),
                })
            else:
                out.append({
                    "symbol": sp.symbol, "baseCoin": sp.base, "quoteCoin": "USDT",
                    "status": "Trading",
                    "lotSizeFilter": {"basePrecision": s(sp.spot_lot),
                                      "quotePrecision": "0.0000001",
                                      "minOrderQty": s(sp.spot_min_qty), "maxOrderQty": "1000",
                                      "minOrderAmt": "5", "maxOrderAmt": "8000000"},
                    "priceFilter": {"tickSize": s(sp.tick)},
                })
        return out
