"""The venue's trading side (docs/reference/hyperliquid-protocol.md §4, §5, §7, §9, §11, §12): signed actions are verified
(signer recovery with the official SDK, API-wallet approvals, nonces, expiry), queued and executed
in arrival order after ``match_latency_ms`` of venue time against the market model's book as it
is at that later moment, and their effects are streamed to the ``orderUpdates``, ``userFills``
and ``userEvents`` (channel ``user``) subscribers of the master account.

Orders: ``Ioc`` takes what the book offers up to its limit (partial fills possible) and cancels
the rest; ``Gtc`` takes what crosses and rests the remainder; ``Alo`` rests or is rejected when
it would cross. Resting orders are not shown in the public book; they fill as maker (at their
limit price) when the market maker's quotes cross them. Taking consumes the book's liquidity
until the market maker re-quotes. Per-order errors carry the HIP-3 `` asset=<id>`` suffix.

Fault knobs: per-order rejections, a partial-fill ratio, lost or late post responses, IOC orders
without orderUpdates (docs/reference/hyperliquid-protocol.md §15 P19), transient all-zero ``clearinghouseState`` answers (P23), and
those of :class:`~engine.sim.faults.TradingFaults` (``self.faults``): user streams delivered
after the post response, all-zero answers for a time window, a connection cut when a
reduce-only order arrives (in ``wsapi``), ``unknownOid`` for fresh orders.

``scheduleCancel`` (the dead-man switch) is verified here and timed by
:mod:`engine.sim.schedule_cancel`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import trio

from engine.sim import grid
from engine.sim.accounts import (
    ZERO,
    Account,
    NonceSet,
    Order,
    empty_clearinghouse,
    margin_summary,
    num,
    px_str,
    usd,
)
from engine.sim.actions import (
    ActionParseError,
    CancelRequest,
    OrderRequest,
    SignedAction,
    parse_signed_action,
)
from engine.sim.faults import TradingFaults
from engine.sim.markets import XYZ_DEX
from engine.sim.model import Event, MarketModel
from engine.sim.schedule_cancel import ScheduledCancels
from engine.sim.signatures import SignatureError, recover_signer

log = logging.getLogger("engine.sim.trading")

DEFAULT_TAKER_FEE = 0.0000765  # 0.765 bp: the observed xyz taker fill (docs/reference/hyperliquid-protocol.md §13.1)
DEFAULT_MAKER_FEE = 0.0000255
MIN_NOTIONAL = Decimal(10)
OID_BASE = 300_000_000_000  # oids are > 2**32 (docs/reference/hyperliquid-protocol.md §5.2)
TID_BASE = 690_000_000_000_000

# Per-order error texts (docs/reference/hyperliquid-protocol.md §12); each gets " asset=<id>" appended.
ERR_TICK = "Price must be divisible by tick size."
ERR_BAD_PRICE = "Order has invalid price."
ERR_BAD_SIZE = "Order has invalid size."
ERR_ZERO_SIZE = "Order has zero size."
ERR_MIN_NOTIONAL = "Order must have minimum value of $10."
ERR_REDUCE_ONLY = "Reduce only order would increase position."
ERR_MARGIN = "Insufficient margin to place order."
ERR_IOC = "Order could not immediately match against any resting orders."
ERR_ALO = "Post only order would have immediately matched, bbo was {bbo}."
ERR_CANCEL = "Order was never placed, already canceled, or filled."
ERR_ASSET = "Invalid asset id."
ERR_TRIGGER = "Trigger orders are not supported by the simulator."
# Whole-action errors ({"status": "err", "response": <text>}).
ERR_UNKNOWN_SIGNER = "L1 error: User or API Wallet {address} does not exist."

_STAT_COUNTERS = (
    "actions", "orders", "fills", "cancels", "unknown_signer", "nonce_rejections",
    "action_parse_errors", "dropped_responses", "empty_clearinghouse_answers",
    "hidden_orders", "reduce_only_drops", "delayed_stream_messages",
)  # fmt: skip

UserPublisher = Callable[[str, str, str, Any], None]  # (subscription type, user, channel, data)


def _d(value: float) -> Decimal:
    return Decimal(repr(value))


@dataclass(slots=True)
class Outcome:
    """What to answer for one action post: the action payload, or a deserialisation error."""

    payload: dict[str, Any] | None = None
    parse_error: str | None = None
    dropped: bool = False  # executed but never answered (fault)
    delay_s: float = 0.0  # answer this much later (fault)


@dataclass(slots=True)
class _Job:
    action: SignedAction
    exec_at: float
    done: trio.Event
    outcome: Outcome | None = None


def err(message: str) -> dict[str, Any]:
    return {"status": "err", "response": message}


def ok(kind: str, data: Any = None) -> dict[str, Any]:
    response: dict[str, Any] = {"type": kind}
    if data is not None:
        response["data"] = data
    return {"status": "ok", "response": response}


class Trading:
    """Accounts, order matching and user streams. Single-threaded: call from Trio tasks only."""

    def __init__(
        self,
        model: MarketModel,
        dex_position: int,
        *,
        now_ms: Callable[[], int],
        virtual_ms: Callable[[], int],
        sync_model: Callable[[], None],
        publish_bbo: Callable[[Event], None],
        publish_user: UserPublisher,
        speed: float = 1.0,
        is_mainnet: bool = True,
        match_latency_ms: float = 0.0,
        taker_fee: float = DEFAULT_TAKER_FEE,
        maker_fee: float = DEFAULT_MAKER_FEE,
    ) -> None:
        self.model = model
        self.is_mainnet = is_mainnet
        self.speed = speed
        self.match_latency_ms = match_latency_ms
        self.accounts: dict[str, Account] = {}
        self.agents: dict[str, str] = {}  # agent -> master
        self.nonces: dict[str, NonceSet] = {}
        self.counters: Counter[str] = Counter()
        self._now_ms = now_ms
        self._virtual_ms = virtual_ms
        self._sync_model = sync_model
        self._publish_bbo = publish_bbo
        self._publish_user = publish_user
        base = 100_000 + 10_000 * dex_position
        self.asset_coin: dict[int, str] = {base + i: c for i, c in enumerate(model.coins)}
        self.coin_asset: dict[str, int] = {c: a for a, c in self.asset_coin.items()}
        self.szd: dict[str, int] = {s.name: s.sz_decimals for s in model.specs}
        self.max_leverage: dict[str, int] = {s.name: s.max_leverage for s in model.specs}
        self.fees: dict[str, tuple[Decimal, Decimal]] = {
            c: (_d(taker_fee), _d(maker_fee)) for c in model.coins
        }
        self.resting: dict[str, dict[int, Order]] = {}  # coin -> open orders
        self._next_oid = OID_BASE
        self._next_tid = TID_BASE
        # fault knobs
        self.reject_queue: deque[str] = deque()
        self.partial_fill_ratio: float | None = None
        self.drop_responses = 0
        self.response_delay_ms = 0.0
        self.omit_ioc_order_updates = False
        self.empty_clearinghouse_answers = 0
        self.faults = TradingFaults()
        self._send, self._recv = trio.open_memory_channel[_Job](math.inf)
        # user-stream messages held back by faults.user_stream_delay_ms: (due, publish args)
        self._late_send, self._late_recv = trio.open_memory_channel[
            tuple[float, tuple[str, str, str, Any]]
        ](math.inf)
        # the dead-man switch (scheduleCancel): its timers run in SimExchange.serve
        self.schedule = ScheduledCancels(now_ms, self.cancel_all_open)

    # ------------------------------------------------------------------ accounts

    def create_account(self, address: str, balance: float = 0.0) -> None:
        """Create the master account ``address`` with ``balance`` USDC (or set the balance of an
        existing one)."""
        addr = _check_address(address)
        if balance < 0 or not math.isfinite(balance):
            raise ValueError("balance must be a finite number >= 0")
        acct = self.accounts.get(addr)
        if acct is None:
            self.accounts[addr] = Account(addr, _d(float(balance)))
        else:
            acct.cash = _d(float(balance))

    def approve_agent(self, agent: str, master: str) -> None:
        """Let ``agent`` (an API wallet) sign for the existing account ``master``."""
        a, m = _check_address(agent), _check_address(master)
        if m not in self.accounts:
            raise ValueError(f"no account {m}; create it first")
        if a in self.accounts:
            raise ValueError(f"{a} is an account and cannot be an agent")
        self.agents[a] = m

    def account(self, address: str) -> Account | None:
        return self.accounts.get(address.lower())

    def leverage(self, acct: Account, coin: str) -> int:
        return acct.leverage.get(coin, min(10, self.max_leverage[coin]))

    def set_fee(self, coin: str, taker: float, maker: float) -> None:
        if coin not in self.fees:
            raise ValueError(f"unknown coin {coin!r}")
        if not (0 <= taker < 0.01 and -0.01 < maker < 0.01):
            raise ValueError("fee rates are fractions (0.0000765 = 0.765 bp)")
        self.fees[coin] = (_d(taker), _d(maker))

    # ------------------------------------------------------------------ faults

    def reject_next(self, n: int = 1, error: str = ERR_MARGIN) -> None:
        """The next ``n`` orders (of any batch) fail with ``error`` + `` asset=<id>``."""
        if n < 0:
            raise ValueError("n must be >= 0")
        if not error:
            raise ValueError("error must be a non-empty string")
        self.reject_queue.extend([error] * n)

    def set_partial_fill_ratio(self, ratio: float | None) -> None:
        """Takers get at most ``ratio`` of their size (floored to the lot); None = no cap."""
        if ratio is not None and not 0 < ratio <= 1:
            raise ValueError("ratio must be within (0, 1] or None")
        self.partial_fill_ratio = ratio

    # ------------------------------------------------------------------ execution

    async def run(self) -> None:
        """Execute queued actions in arrival order, each at its execution time."""
        async for job in self._recv:
            await trio.sleep_until(job.exec_at)
            try:
                self._sync_model()
                payload = self.execute_now(job.action)
            except Exception as exc:  # noqa: BLE001 - a simulator bug must not stop the venue
                log.exception("simulator failed to execute an action")
                payload = err(f"Simulator internal error: {exc!r}")
            outcome = Outcome(payload=payload)
            if self.drop_responses > 0:
                self.drop_responses -= 1
                outcome.dropped = True
                self.counters["dropped_responses"] += 1
            elif self.response_delay_ms > 0:
                outcome.delay_s = self.response_delay_ms / 1000.0
            job.outcome = outcome
            job.done.set()

    async def submit(self, body: Any) -> Outcome:
        """Parse ``body`` (an /exchange body) and, if valid, execute it after the match latency.

        Returns when executed; a caller cancelled meanwhile does not stop the execution."""
        try:
            action = parse_signed_action(body)
        except ActionParseError as exc:
            self.counters["action_parse_errors"] += 1
            return Outcome(parse_error=str(exc))
        latency_s = max(0.0, self.match_latency_ms) / 1000.0 / self.speed
        job = _Job(action, trio.current_time() + latency_s, trio.Event())
        self._send.send_nowait(job)
        await job.done.wait()
        assert job.outcome is not None
        return job.outcome

    def execute_now(self, action: SignedAction) -> dict[str, Any]:
        """Verify and execute one parsed action; the ``{"status", "response"}`` payload."""
        self.counters["actions"] += 1
        now = self._now_ms()
        if action.expires_after is not None and action.expires_after < now:
            return err(
                f"Action expired: expiresAfter {action.expires_after} is before the current "
                f"time {now}"
            )
        try:
            signer = recover_signer(
                action.action,
                action.signature,
                action.vault,
                action.nonce,
                action.expires_after,
                self.is_mainnet,
            )
        except SignatureError as exc:
            return err(f"Invalid signature: {exc}")
        master = self.agents.get(signer) or (signer if signer in self.accounts else None)
        if master is None:
            self.counters["unknown_signer"] += 1
            return err(ERR_UNKNOWN_SIGNER.format(address=signer))
        user = master
        if action.vault is not None:
            if action.vault not in self.accounts:
                return err(f"Vault or sub-account {action.vault} does not exist.")
            user = action.vault
        nonces = self.nonces.get(signer)
        if nonces is None:
            nonces = self.nonces[signer] = NonceSet()
        problem = nonces.check(action.nonce, now)
        if problem is not None:
            self.counters["nonce_rejections"] += 1
            return err(problem)
        nonces.add(action.nonce)
        acct = self.accounts[user]
        acct.n_requests += action.n_requests
        tx_hash = "0x" + hashlib.sha256(f"{signer}:{action.nonce}".encode()).hexdigest()
        if action.kind == "order":
            return self._orders(acct, action.orders, tx_hash, now)
        if action.kind in ("cancel", "cancelByCloid"):
            return self._cancels(acct, action.kind, action.cancels, now)
        if action.kind == "updateLeverage" and action.leverage is not None:
            return self._update_leverage(acct, *action.leverage)
        if action.kind == "scheduleCancel":
            problem = self.schedule.handle(acct.address, action.schedule_time, now)
            return ok("default") if problem is None else err(problem)
        return err(f"Simulator does not support action type {action.kind!r}")

    # ------------------------------------------------------------------ orders

    def _orders(
        self, acct: Account, orders: list[OrderRequest], tx_hash: str, now: int
    ) -> dict[str, Any]:
        statuses: list[Any] = []
        updates: list[dict[str, Any]] = []
        fills: list[dict[str, Any]] = []
        for req in orders:
            statuses.append(self._place(acct, req, tx_hash, now, updates, fills))
            self.counters["orders"] += 1
        self._stream(acct.address, updates, fills)
        return ok("order", {"statuses": statuses})

    def _place(
        self,
        acct: Account,
        req: OrderRequest,
        tx_hash: str,
        now: int,
        updates: list[dict[str, Any]],
        fills: list[dict[str, Any]],
    ) -> Any:
        suffix = f" asset={req.asset}"
        coin = self.asset_coin.get(req.asset)
        if coin is None:
            return {"error": ERR_ASSET + suffix}
        if self.reject_queue:
            return {"error": self.reject_queue.popleft() + suffix}
        if req.tif is None:
            return {"error": ERR_TRIGGER + suffix}
        szd = self.szd[coin]
        if req.px <= 0:
            return {"error": ERR_BAD_PRICE + suffix}
        if not grid.is_valid_price(req.px_wire, szd):
            return {"error": ERR_TICK + suffix}
        if not grid.is_valid_size(req.sz_wire, szd):
            return {"error": ERR_BAD_SIZE + suffix}
        if req.sz == 0:
            return {"error": ERR_ZERO_SIZE + suffix}
        if req.px * req.sz < MIN_NOTIONAL:
            return {"error": ERR_MIN_NOTIONAL + suffix}
        szi = acct.szi(coin)
        if req.reduce_only and (szi == 0 or (szi > 0) == req.is_buy or req.sz > abs(szi)):
            return {"error": ERR_REDUCE_ONLY + suffix}
        if not req.reduce_only:
            opening = req.sz if szi == 0 or (szi > 0) == req.is_buy else req.sz - abs(szi)
            if opening > 0:
                lev = Decimal(self.leverage(acct, coin))
                free = acct.cash - self._reserved_margin(acct)
                if req.px * opening / lev > free:
                    return {"error": ERR_MARGIN + suffix}
        bbo = self.model.bbo(coin)
        if req.tif == "Alo":
            crosses = (req.is_buy and bbo.ask is not None and req.px >= Decimal(bbo.ask.px)) or (
                not req.is_buy and bbo.bid is not None and req.px <= Decimal(bbo.bid.px)
            )
            if crosses:
                text = f"{bbo.bid.px if bbo.bid else 'None'}@{bbo.ask.px if bbo.ask else 'None'}"
                return {"error": ERR_ALO.format(bbo=text) + suffix}
            order = self._new_order(acct, coin, req, now)
            self._rest(order)
            updates.append(order.update_wire())
            return "success"
        is_ioc = req.tif in ("Ioc", "FrontendMarket")
        cap = req.sz
        if self.partial_fill_ratio is not None:
            cap = grid.round_size(req.sz * _d(self.partial_fill_ratio), szd)
        taken: list[tuple[Decimal, Decimal]] = []
        if cap > 0:
            taken, event = self.model.take(coin, req.is_buy, req.px, cap, self._virtual_ms())
            if event is not None:
                self._publish_bbo(event)
        if is_ioc and not taken:
            return {"error": ERR_IOC + suffix}
        order = self._new_order(acct, coin, req, now)
        total = ZERO
        notional = ZERO
        for px, q in taken:
            fills.append(self._fill(acct, order, px, q, True, tx_hash, now))
            total += q
            notional += px * q
        order.sz = req.sz - total
        ident: dict[str, Any]
        if order.sz == 0:
            order.status = "filled"
        elif is_ioc:
            order.status = "canceled"
        else:
            self._rest(order)
        if not (is_ioc and self.omit_ioc_order_updates):
            updates.append(order.update_wire())
        if order.sz == 0 or is_ioc:
            ident = {"totalSz": num(total), "avgPx": px_str(notional / total), "oid": order.oid}
            if order.cloid is not None:
                ident["cloid"] = order.cloid
            return {"filled": ident}
        ident = {"oid": order.oid}
        if order.cloid is not None:
            ident["cloid"] = order.cloid
        return {"resting": ident}

    def _reserved_margin(self, acct: Account) -> Decimal:
        """Margin held back for the account's open orders that may open or increase positions."""
        total = ZERO
        for book in self.resting.values():
            for o in book.values():
                if o.user == acct.address and not o.reduce_only:
                    total += o.limit_px * o.sz / Decimal(self.leverage(acct, o.coin))
        return total

    def _new_order(self, acct: Account, coin: str, req: OrderRequest, now: int) -> Order:
        self._next_oid += 1
        order = Order(
            user=acct.address,
            oid=self._next_oid,
            coin=coin,
            asset=req.asset,
            is_buy=req.is_buy,
            limit_px=req.px,
            orig_sz=req.sz,
            sz=req.sz,
            tif=req.tif or "Gtc",
            reduce_only=req.reduce_only,
            cloid=req.cloid,
            timestamp=now,
            status="open",
            status_ts=now,
        )
        acct.orders[order.oid] = order
        if order.cloid is not None:
            acct.cloids[order.cloid] = order.oid
        return order

    def _rest(self, order: Order) -> None:
        self.resting.setdefault(order.coin, {})[order.oid] = order

    def _unrest(self, order: Order) -> None:
        book = self.resting.get(order.coin)
        if book is not None:
            book.pop(order.oid, None)
            if not book:
                del self.resting[order.coin]

    def _fill(
        self,
        acct: Account,
        order: Order,
        px: Decimal,
        sz: Decimal,
        crossed: bool,
        tx_hash: str,
        now: int,
    ) -> dict[str, Any]:
        """Apply one fill to the account (position, margin, cash) and return its wire form."""
        coin = order.coin
        pos = acct.position(coin)
        start = pos.szi
        is_buy = order.is_buy
        closed = ZERO
        pnl = ZERO
        if start != 0 and (start > 0) != is_buy:
            closed = min(sz, abs(start))
            pnl = (px - pos.entry_px) * closed * (1 if start > 0 else -1)
            released = pos.margin * closed / abs(start)
            pos.margin -= released
            acct.cash += released + pnl
        opened = sz - closed
        new_szi = start + (sz if is_buy else -sz)
        if opened > 0:
            held = abs(start) - closed  # same-direction size kept before opening
            if held > 0:
                pos.entry_px = (held * pos.entry_px + opened * px) / (held + opened)
            else:
                pos.entry_px = px
            add = px * opened / Decimal(self.leverage(acct, coin))
            pos.margin += add
            acct.cash -= add
        pos.szi = new_szi
        if new_szi == 0:
            acct.cash += pos.margin
            del acct.positions[coin]
        taker, maker = self.fees[coin]
        fee = (px * sz * (taker if crossed else maker)).quantize(Decimal("0.000001"))
        acct.cash -= fee
        acct.cum_volume += px * sz
        if start == 0:
            direction = "Open Long" if is_buy else "Open Short"
        elif start > 0:
            direction = "Open Long" if is_buy else ("Close Long" if sz <= start else "Long > Short")
        else:
            direction = (
                "Open Short" if not is_buy else ("Close Short" if sz <= -start else "Short > Long")
            )
        self._next_tid += 1
        fill: dict[str, Any] = {
            "coin": coin,
            "px": num(px),
            "sz": num(sz),
            "side": "B" if is_buy else "A",
            "time": now,
            "startPosition": num(start),
            "dir": direction,
            "closedPnl": usd(pnl),
            "hash": tx_hash,
            "oid": order.oid,
            "crossed": crossed,
            "fee": usd(fee),
            "tid": self._next_tid,
        }
        if order.cloid is not None:
            fill["cloid"] = order.cloid
        fill["feeToken"] = "USDC"
        fill["twapId"] = None
        acct.fills.append(fill)
        self.counters["fills"] += 1
        return fill

    def _stream(
        self, user: str, updates: list[dict[str, Any]], fills: list[dict[str, Any]]
    ) -> None:
        publish = self._publish_user
        delay_ms = self.faults.user_stream_delay_ms
        if delay_ms > 0:
            # after the post response (itself late by response_delay_ms), one message at a
            # time: each in its own socket read
            due = trio.current_time() + (self.response_delay_ms + delay_ms) / 1000.0
            publish = self._publish_late(due)
        if updates:
            publish("orderUpdates", user, "orderUpdates", updates)
        if fills:
            publish("userFills", user, "userFills", {"user": user, "fills": fills})
            publish("userEvents", user, "user", {"fills": fills})

    def _publish_late(self, due: float) -> UserPublisher:
        def publish(sub_type: str, user: str, channel: str, data: Any) -> None:
            self.counters["delayed_stream_messages"] += 1
            self._late_send.send_nowait((due, (sub_type, user, channel, data)))

        return publish

    async def deliver_late(self) -> None:
        """Publish the held-back user-stream messages at their due times, in order, a few
        milliseconds apart (so a client reads each one separately)."""
        async for due, args in self._late_recv:
            await trio.sleep_until(due)
            self._publish_user(*args)
            await trio.sleep(0.002)

    def check_resting(self, coin: str) -> None:
        """Fill resting orders of ``coin`` that the market maker's current quotes cross (the
        resting order is the maker and trades at its own limit price)."""
        book = self.resting.get(coin)
        if not book:
            return
        now = self._now_ms()
        per_user: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
        orders = sorted(
            book.values(), key=lambda o: (not o.is_buy, -o.limit_px if o.is_buy else o.limit_px)
        )
        for order in orders:
            bbo = self.model.bbo(coin)
            if order.is_buy:
                crosses = bbo.ask is not None and Decimal(bbo.ask.px) <= order.limit_px
            else:
                crosses = bbo.bid is not None and Decimal(bbo.bid.px) >= order.limit_px
            if not crosses:
                continue
            acct = self.accounts[order.user]
            updates, fills = per_user.setdefault(order.user, ([], []))
            qty = order.sz
            if order.reduce_only:
                szi = acct.szi(coin)
                if szi == 0 or (szi > 0) == order.is_buy:
                    self._finish(order, "reduceOnlyCanceled", now)
                    updates.append(order.update_wire())
                    continue
                qty = min(qty, abs(szi))
            taken, event = self.model.take(
                coin, order.is_buy, order.limit_px, qty, self._virtual_ms()
            )
            if event is not None:
                self._publish_bbo(event)
            if not taken:
                continue
            tx_hash = "0x" + hashlib.sha256(f"maker:{order.oid}:{now}".encode()).hexdigest()
            for _px, q in taken:
                fills.append(self._fill(acct, order, order.limit_px, q, False, tx_hash, now))
                order.sz -= q
            if order.sz == 0:
                self._finish(order, "filled", now)
            else:
                order.status_ts = now
            updates.append(order.update_wire())
        for user, (updates, fills) in per_user.items():
            self._stream(user, updates, fills)

    def _finish(self, order: Order, status: str, now: int) -> None:
        order.status = status
        order.status_ts = now
        self._unrest(order)

    # ------------------------------------------------------------------ cancels, leverage

    def _cancels(
        self, acct: Account, kind: str, cancels: list[CancelRequest], now: int
    ) -> dict[str, Any]:
        statuses: list[Any] = []
        updates: list[dict[str, Any]] = []
        for req in cancels:
            oid = req.oid if req.oid is not None else acct.cloids.get(req.cloid or "")
            order = acct.orders.get(oid) if oid is not None else None
            if order is None or not order.is_open or order.asset != req.asset:
                statuses.append({"error": f"{ERR_CANCEL} asset={req.asset}"})
                continue
            self._finish(order, "canceled", now)
            updates.append(order.update_wire())
            statuses.append("success")
            self.counters["cancels"] += 1
        self._stream(acct.address, updates, [])
        return ok("cancel", {"statuses": statuses})

    def cancel_all_open(self, user: str, now: int) -> int:
        """The dead-man switch fired: cancel every open order of ``user`` (status
        ``scheduledCancel``, streamed on ``orderUpdates``); returns how many."""
        acct = self.accounts.get(user)
        if acct is None:
            return 0
        updates: list[dict[str, Any]] = []
        for order in acct.open_orders():
            self._finish(order, "scheduledCancel", now)
            updates.append(order.update_wire())
        self.counters["scheduled_cancels"] += len(updates)
        self._stream(user, updates, [])
        return len(updates)

    def _update_leverage(
        self, acct: Account, asset: int, is_cross: bool, leverage: int
    ) -> dict[str, Any]:
        coin = self.asset_coin.get(asset)
        if coin is None:
            return err(f"{ERR_ASSET} asset={asset}")
        if is_cross:
            return err(f"Cross margin is not allowed for this asset. asset={asset}")
        if leverage > self.max_leverage[coin]:
            return err(f"Invalid leverage value. asset={asset}")
        acct.leverage[coin] = leverage
        return ok("default")

    # ------------------------------------------------------------------ user info

    def clearinghouse(self, user: str, dex: str) -> dict[str, Any]:
        now = self._now_ms()
        if self.empty_clearinghouse_answers > 0 or self.faults.clearinghouse_empty(now):
            self.empty_clearinghouse_answers = max(0, self.empty_clearinghouse_answers - 1)
            self.counters["empty_clearinghouse_answers"] += 1
            return empty_clearinghouse(now)
        acct = self.accounts.get(user.lower())
        if acct is None or dex not in ("", XYZ_DEX):
            return empty_clearinghouse(now)
        if dex == "":
            summary = margin_summary(acct.cash, ZERO, acct.cash, ZERO)
            return {
                "marginSummary": summary,
                "crossMarginSummary": dict(summary),
                "crossMaintenanceMarginUsed": "0.0",
                "withdrawable": usd(max(ZERO, acct.cash)),
                "assetPositions": [],
                "time": now,
            }
        positions = []
        value = ntl = raw = used = ZERO
        for coin in self.model.coins:
            pos = acct.positions.get(coin)
            if pos is None or pos.szi == 0:
                continue
            mark = Decimal(self.model.ctx(coin).markPx)
            upnl = pos.szi * (mark - pos.entry_px)
            pos_value = abs(pos.szi) * mark
            raw_usd = pos.margin - pos.szi * pos.entry_px
            margin_used = pos.margin + upnl
            value += margin_used
            ntl += pos_value
            raw += raw_usd
            used += margin_used
            positions.append(
                {
                    "type": "oneWay",
                    "position": {
                        "coin": coin,
                        "szi": num(pos.szi),
                        "leverage": {
                            "type": "isolated",
                            "value": self.leverage(acct, coin),
                            "rawUsd": usd(raw_usd),
                        },
                        "entryPx": px_str(pos.entry_px),
                        "positionValue": usd(pos_value),
                        "unrealizedPnl": usd(upnl),
                        "returnOnEquity": num(
                            (upnl / pos.margin).quantize(Decimal("0.00000001"))
                            if pos.margin
                            else ZERO
                        ),
                        "liquidationPx": self._liquidation_px(
                            coin, pos.szi, pos.entry_px, pos.margin
                        ),
                        "marginUsed": usd(margin_used),
                        "maxLeverage": self.max_leverage[coin],
                        "cumFunding": {"allTime": "0.0", "sinceOpen": "0.0", "sinceChange": "0.0"},
                    },
                }
            )
        summary = margin_summary(value, ntl, raw, used)
        return {
            "marginSummary": summary,
            "crossMarginSummary": margin_summary(ZERO, ZERO, ZERO, ZERO),
            "crossMaintenanceMarginUsed": "0.0",
            "withdrawable": "0.0",
            "assetPositions": positions,
            "time": now,
        }

    def _liquidation_px(
        self, coin: str, szi: Decimal, entry: Decimal, margin: Decimal
    ) -> str | None:
        mmr = Decimal(1) / Decimal(2 * self.max_leverage[coin])
        q = abs(szi)
        if szi > 0:
            px = (q * entry - margin) / (q * (1 - mmr))
        else:
            px = (margin + q * entry) / (q * (1 + mmr))
        if px <= 0:
            return None
        return num(grid.round_price(px, self.szd[coin]))

    def open_orders(self, user: str, dex: str, frontend: bool = False) -> list[dict[str, Any]]:
        acct = self.accounts.get(user.lower())
        if acct is None or dex != XYZ_DEX:
            return []
        orders = acct.open_orders(XYZ_DEX + ":")
        return [o.frontend_wire() if frontend else o.wire() for o in orders]

    def order_status(self, user: str, oid: int | str) -> dict[str, Any]:
        acct = self.accounts.get(user.lower())
        order: Order | None = None
        if acct is not None:
            if isinstance(oid, str):
                found = acct.cloids.get(oid.lower())
                order = acct.orders.get(found) if found is not None else None
            else:
                order = acct.orders.get(oid)
        if order is not None and self.faults.hides_order(order.timestamp, self._now_ms()):
            self.counters["hidden_orders"] += 1
            return {"status": "unknownOid"}
        if order is None:
            return {"status": "unknownOid"}
        return {
            "status": "order",
            "order": {
                "order": order.frontend_wire(),
                "status": order.status,
                "statusTimestamp": order.status_ts,
            },
        }

    def user_fills(self, user: str) -> list[dict[str, Any]]:
        """Every fill of ``user``, newest first (all dexes)."""
        acct = self.accounts.get(user.lower())
        return list(reversed(acct.fills)) if acct is not None else []

    def user_rate_limit(self, user: str) -> dict[str, Any]:
        acct = self.accounts.get(user.lower())
        vlm = acct.cum_volume if acct is not None else ZERO
        used = acct.n_requests if acct is not None else 0
        return {"cumVlm": usd(vlm), "nRequestsUsed": used, "nRequestsCap": 10_000 + int(vlm)}

    def user_fees(self, user: str) -> dict[str, Any]:
        """Tier-0 validator-perp rates (docs/reference/hyperliquid-protocol.md §13.1); xyz fills use the per-market rates."""
        return {
            "dailyUserVlm": [],
            "feeSchedule": {
                "cross": "0.00045",
                "add": "0.00015",
                "spotCross": "0.0007",
                "spotAdd": "0.0004",
                "tiers": {"vip": [], "mm": []},
                "referralDiscount": "0.04",
                "stakingDiscountTiers": [],
            },
            "userCrossRate": "0.00045",
            "userAddRate": "0.00015",
            "userSpotCrossRate": "0.0007",
            "userSpotAddRate": "0.0004",
            "activeReferralDiscount": "0.0",
            "trial": None,
            "feeTrialReward": "0.0",
            "nextTrialAvailableTimestamp": None,
            "stakingLink": None,
            "activeStakingDiscount": {"bpsOfMaxSupply": "0.0", "discount": "0.0"},
        }

    def stats(self) -> dict[str, Any]:
        return {
            "accounts": len(self.accounts),
            "agents": len(self.agents),
            "open_orders": sum(len(b) for b in self.resting.values()),
            "match_latency_ms": self.match_latency_ms,
            "is_mainnet": self.is_mainnet,
            "faults": self.faults.snapshot(self._now_ms()),
            **{k: self.counters[k] for k in _STAT_COUNTERS},
        }


def _check_address(address: str) -> str:
    if not isinstance(address, str) or len(address) != 42 or not address.startswith("0x"):
        raise ValueError(f"not a 0x address: {address!r}")
    try:
        int(address[2:], 16)
    except ValueError:
        raise ValueError(f"not a 0x address: {address!r}") from None
    return address.lower()
