"""Order execution over the feed's WebSocket: owns turning our orders into signed ``order`` /
``cancel`` actions, sending them as WS posts, and reading the answers back per order; plus the
info queries the trading shell needs (``orderStatus``, ``clearinghouseState``, ``openOrders``,
``userFills``).

:class:`OrderExecutor` never decides anything: the trading core does (``engine/core``), and the
shell feeds the values returned here to :func:`.order_events.classify_post_status` (via the
core's ``on_post_result``). Per order a post answer is exactly one of

* the raw status object ``statuses[i]`` (``{"resting":…}``, ``{"filled":…}``, ``{"error":…}``,
  ``"waitingForFill"``, ``"success"``, …) when ``statuses`` has one entry per order;
* the action-level ``{"status":"err","response":msg}`` dict, for every order of the action
  (the action was not applied);
* the transport ``{"type":"error","payload":msg}`` dict, for every order (the venue refused
  the post envelope, e.g. ``too many pending post requests``: processing unknown);
* ``None``: timeout, connection lost after the write, an unreadable answer, or a ``statuses``
  list of the wrong length (never a shifted zip: ``classify_post_response``'s rule).

Every shape maps to ``lose_contact`` or a definite event of ``fsm.order``
(:mod:`.order_events`); ``None`` and the transport error both mean "resolve by cloid".

"Not sent" is distinct from "sent, no answer": when no byte of the post reached the socket
(not connected, no free post slot, invalid order, signing failure, connection failed first)
:meth:`OrderExecutor.place` raises :class:`NotSent` and :meth:`OrderExecutor.submit` calls
``on_not_sent``; the orders can be abandoned (``NEW → EXPIRED``). Otherwise ``on_sent(cloids)``
runs right after the write carrying the frame and before any answer is processed (the core's
TRANSMIT), and an outcome always follows.

Two ways to send orders:

* ``await place(orders)``: one ``order`` action for exactly these orders, returns the per-order
  outcomes. For tasks.
* ``submit(orders)`` (sync, the hot path, callable from a feed handler callback): queues the
  orders; the feed's reader writes them right after the current frame, and orders submitted
  later in the same socket read are coalesced (``send_coalesce_s``) into ONE action (up to
  ``max_orders_per_action``) signed at write time, so a burst of 40 signals costs a few
  signatures and a few socket writes while the first order is not delayed. Outcomes arrive via
  ``on_result(cloid, status)`` (same shapes as above) or ``on_not_sent(cloids, reason)``.

Nonces come from the one :class:`~engine.venues.hyperliquid.nonce.NonceAllocator` of the agent
(``max(last + 1, now_ms)``), taken at signing time. At most ``max_inflight_posts`` posts (the
feed's limit, 100 by default: the venue's per-IP cap) are in flight; a ``place`` waits for a
slot up to ``post_timeout_s``, a ``submit`` does not wait (``on_not_sent``). The agent key never
leaves the :class:`~engine.venues.hyperliquid.signing.Signer`; nothing here logs it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
import msgspec

from engine.core.orders import Order
from engine.net.ws import text_frame
from engine.venues.hyperliquid.client import HyperliquidFeed
from engine.venues.hyperliquid.info import DiscoveryError, normalise_coin
from engine.venues.hyperliquid.nonce import NonceAllocator
from engine.venues.hyperliquid.posts import (
    EncodedRequest,
    PostError,
    PostFailure,
    PostNotSent,
    PostTicket,
)
from engine.venues.hyperliquid.ratelog import RateLimitedLog, excerpt
from engine.venues.hyperliquid.signing import (
    Action,
    Signer,
    cancel_action,
    cancel_by_cloid_action,
    check_address,
    check_cloid,
    ioc_action_fragments,
    ioc_order_fragment,
    ioc_order_wire,
    schedule_cancel_action,
)
from engine.venues.hyperliquid.wire import UserFill

log = logging.getLogger(__name__)

MAX_ORDERS_PER_ACTION: Final = 40
"""Coalesced orders per action (the venue weighs a batch as 1 + n // 40)."""
_ORDER_RESPONSE_TYPES: Final = frozenset({"order"})
_CANCEL_RESPONSE_TYPES: Final = frozenset({"cancel", "cancelByCloid"})
_WARM_CLOID: Final = "0x" + "00" * 15 + "01"  # the warm-up's dummy order (never sent)
_WARM_EXPIRES: Final = 1  # its expiresAfter: long past

SentHook = Callable[[list[str]], None]
ResultHook = Callable[[str, object], None]
NotSentHook = Callable[[list[str], str], None]


class NotSent(Exception):
    """No byte of the action reached the socket: the venue cannot have seen these orders."""

    def __init__(self, cloids: list[str], reason: str) -> None:
        super().__init__(reason)
        self.cloids = cloids
        self.reason = reason


class ReconcileError(Exception):
    """The reconciliation snapshot could not be taken or read: never treat it as flat."""


@attrs.define(slots=True)
class ExecStats:
    """Executor counters (orders count every order of an action)."""

    actions_sent: int = 0  # order actions whose frame was written
    orders_sent: int = 0
    orders_not_sent: int = 0
    orders_answered: int = 0  # a per-order status came back
    orders_action_err: int = 0  # the action-level {"status":"err"} answer
    orders_transport_err: int = 0  # {"type":"error"} envelope or error-channel refusal
    orders_no_answer: int = 0  # timeout, loss, unreadable answer, wrong-length statuses
    wrong_length: int = 0  # answers whose statuses count differed from the orders
    unrecognized: int = 0  # answers of an unknown shape
    cancels_sent: int = 0
    queries: int = 0
    query_failures: int = 0
    coalesced_actions: int = 0  # submit() actions carrying orders of more than one submit


class OrderExecutor:
    """Signs and sends orders/cancels through a :class:`HyperliquidFeed` (see the module)."""

    def __init__(
        self,
        feed: HyperliquidFeed,
        signer: Signer,
        nonces: NonceAllocator,
        *,
        is_mainnet: bool,
        vault_address: str | None = None,
        post_timeout_s: float,
        clock: Callable[[], float],
        on_sent: SentHook | None = None,
        on_result: ResultHook | None = None,
        on_not_sent: NotSentHook | None = None,
        max_orders_per_action: int = MAX_ORDERS_PER_ACTION,
        entry_guard: Callable[[], str | None] | None = None,
    ) -> None:
        """``clock`` returns epoch milliseconds (the nonce source); ``on_sent(cloids)`` runs
        after the write of every order action (``place`` and ``submit``); ``on_result`` and
        ``on_not_sent`` are required by :meth:`submit` only. ``entry_guard()`` (O(1)) is asked
        right before queued orders are signed: a reason (e.g. ``"hard_stop"``) holds back
        every queued entry (reported not sent); reduce-only orders always go."""
        if not isinstance(is_mainnet, bool):
            raise TypeError("is_mainnet must be a bool")
        if not (post_timeout_s > 0 and math.isfinite(post_timeout_s)):
            raise ValueError(f"post_timeout_s must be > 0, got {post_timeout_s!r}")
        if not 1 <= max_orders_per_action <= 1000:
            raise ValueError("max_orders_per_action must be in [1, 1000]")
        self.stats = ExecStats()
        # from the last reconcile_snapshot: accountValue of the dex and of the main dex
        self.last_account_value: float | None = None
        self.last_main_value: float | None = None
        # (local ms sent, local ms received, venue ms) of the last reconcile_snapshot's
        # clearinghouseState, whose ``time`` is the venue's clock; None: it sent none
        self.last_clock_sample: tuple[float, float, float] | None = None
        self._feed = feed
        # orders go to the feed's post book directly: the order path never calls back into
        # the feed (docs/architecture.md, "The frame → order path")
        self._posts = feed.posts
        self._signer = signer
        self._nonces = nonces
        self._is_mainnet = is_mainnet
        self._vault = None if vault_address is None else check_address(vault_address)
        self._timeout = post_timeout_s
        self._clock = clock
        self._on_sent = on_sent
        self._on_result = on_result
        self._on_not_sent = on_not_sent
        self._max_per_action = max_orders_per_action
        self.entry_guard = entry_guard
        self._queue: list[Order] = []
        self._queue_groups = 0  # submit() calls whose orders are queued
        self._rlog = RateLimitedLog(log)
        feed.add_send_source(self)

    @property
    def agent_address(self) -> str:
        return self._signer.address

    @property
    def connected(self) -> bool:
        """The feed has a live connection (an order submitted now can be written)."""
        return self._posts.session is not None

    @property
    def queued(self) -> int:
        """Orders submitted and not yet turned into a post."""
        return len(self._queue)

    # ------------------------------------------------------------------ place (async)

    async def place(self, orders: Sequence[Order]) -> list[object | None]:
        """Send ONE ``order`` action (IOC limit orders, grouping ``na``) for ``orders`` and
        return one outcome per order, in order (see the module docstring).

        Raises :class:`NotSent` when nothing was written (``on_sent`` not called).
        """
        batch = list(orders)
        if not batch:
            return []
        cloids = [o.cloid for o in batch]
        try:
            wires = [_order_wire(o) for o in batch]
            expires = _expires_after(batch)
        except (ValueError, TypeError) as exc:
            self._count_not_sent(len(batch), f"invalid order: {exc}")
            raise NotSent(cloids, f"invalid order: {exc}") from None

        def build() -> dict[str, Any]:
            return self._signed({"type": "order", "orders": wires, "grouping": "na"}, expires)

        def sent(t: PostTicket) -> None:
            self._count_sent(len(batch))
            if self._on_sent is not None:
                self._on_sent(cloids)

        try:
            t = await self._posts.send(build, timeout=self._timeout, on_sent=sent)
        except PostNotSent as exc:
            self._count_not_sent(len(batch), str(exc))
            raise NotSent(cloids, str(exc)) from None
        except (ValueError, TypeError) as exc:  # nonce or signing refused: nothing was sent
            self._count_not_sent(len(batch), f"signing failed: {exc}")
            raise NotSent(cloids, f"signing failed: {exc}") from None
        await t.wait()
        return self._outcomes(t, len(batch), _ORDER_RESPONSE_TYPES)

    # ------------------------------------------------------------------ submit (sync hot path)

    def submit(self, orders: Sequence[Order]) -> None:
        """Queue ``orders`` for the next write (sync; see the module docstring).

        Raises :class:`NotSent` at once when not connected; later failures before the write
        go to ``on_not_sent``. Requires the ``on_result`` and ``on_not_sent`` hooks.
        """
        if self._on_result is None or self._on_not_sent is None:
            raise RuntimeError("submit() needs the on_result and on_not_sent hooks")
        if not orders:
            return
        if self._posts.session is None:
            cloids = [o.cloid for o in orders]
            self._count_not_sent(len(cloids), "not connected")
            raise NotSent(cloids, "not connected")
        self._queue.extend(orders)
        self._queue_groups += 1
        self._posts.request_send()

    def materialize(self) -> None:
        """:class:`~engine.venues.hyperliquid.handlers.SendSource`: queued orders → signed posts,
        up to ``max_orders_per_action`` per action (called by the feed right before a write)."""
        queue = self._queue
        if not queue:
            return
        groups = self._queue_groups
        self._queue = []
        self._queue_groups = 0
        guard = self.entry_guard
        if guard is not None:
            # an earlier frame of this socket read may have latched the hard stop or turned
            # the kill switch on after these entries were queued: never sign them then
            why = guard()
            if why is not None:
                queue = self._hold_entries(queue, why)
                if not queue:
                    return
        step = self._max_per_action
        if groups > 1:
            self.stats.coalesced_actions += (len(queue) + step - 1) // step
        for i in range(0, len(queue), step):
            self._post_chunk(queue[i : i + step])

    def _hold_entries(self, queue: list[Order], why: str) -> list[Order]:
        """Report the queued entries not sent (``why`` blocks them); return the reduce-only
        orders, which still go."""
        held = [o.cloid for o in queue if not o.reduce_only]
        if held:
            self._not_sent(held, f"not sent: {why} before signing")
        return [o for o in queue if o.reduce_only]

    def warm(self) -> None:
        """Run an order's pure work on a dummy order — fragment, action, signature, post text,
        WebSocket frame — and drop the result: called while the feed busy-polls
        (``[venue] busy_poll_us``), so the code and tables an entry needs are in the CPU
        caches when its frame arrives. No nonce is taken, nothing is counted, logged, stored
        or sent (the dummy carries nonce 1, which the venue would refuse anyway)."""
        frag = ioc_order_fragment(0, True, "1", "1", False, _WARM_CLOID)
        if frag is None:
            return
        payload = self._signer.payload_json(
            ioc_action_fragments([frag]), 1, self._vault, _WARM_EXPIRES, self._is_mainnet
        )
        text_frame(('{"method":"post","id":0,"request":{"type":"action","payload":'
                    + payload + "}}").encode())

    def discard(self, reason: str) -> None:
        """:class:`~engine.venues.hyperliquid.handlers.SendSource`: the connection ended (or
        none exists) before the queued orders were written: report them not sent."""
        queue = self._queue
        if not queue:
            return
        self._queue = []
        self._queue_groups = 0
        self._not_sent([o.cloid for o in queue], f"not sent: connection ended ({reason})")

    def _post_chunk(self, chunk: list[Order]) -> None:
        frags = []
        for o in chunk:
            f = ioc_order_fragment(o.asset_id, o.is_buy, o.px_wire, o.sz_wire, o.reduce_only,
                                   o.cloid)
            if f is None:
                break
            frags.append(f)
        else:
            self._post_fragments(chunk, frags)
            return
        wires: list[dict[str, Any]] = []
        good: list[Order] = []
        for o in chunk:
            try:
                wires.append(_order_wire(o))
            except (ValueError, TypeError) as exc:
                self._not_sent([getattr(o, "cloid", "?")], f"invalid order: {exc}")
                continue
            good.append(o)
        if not good:
            return
        cloids = [o.cloid for o in good]
        try:
            expires = _expires_after(good)
            request = self._signed({"type": "order", "orders": wires, "grouping": "na"}, expires)
            self._posts.post_nowait(
                request,
                timeout=self._timeout,
                on_sent=self._chunk_sent,
                on_done=self._chunk_done,
                context=good,
            )
        except PostNotSent as exc:
            self._not_sent(cloids, str(exc))
        except (ValueError, TypeError) as exc:
            self._not_sent(cloids, f"signing failed: {exc}")

    def _post_fragments(self, chunk: list[Order], frags: list[tuple[bytes, str]]) -> None:
        """:meth:`_post_chunk` for orders that all passed the quick checks: the action's
        msgpack and JSON are assembled from fragments (no dicts, no encoder calls)."""
        try:
            expires = _expires_after(chunk)
            nonce = self._nonces.next(int(self._clock()))
            payload = self._signer.payload_json(
                ioc_action_fragments(frags), nonce, self._vault, expires, self._is_mainnet
            )
            self._posts.post_nowait(
                EncodedRequest('{"type":"action","payload":' + payload + "}"),
                timeout=self._timeout,
                on_sent=self._chunk_sent,
                on_done=self._chunk_done,
                context=chunk,
            )
        except PostNotSent as exc:
            self._not_sent([o.cloid for o in chunk], str(exc))
        except (ValueError, TypeError) as exc:
            self._not_sent([o.cloid for o in chunk], f"signing failed: {exc}")

    def _chunk_sent(self, t: PostTicket) -> None:
        orders: list[Order] = t.context  # type: ignore[assignment]
        self._count_sent(len(orders))
        if self._on_sent is not None:
            self._on_sent([o.cloid for o in orders])

    def _chunk_done(self, t: PostTicket) -> None:
        orders: list[Order] = t.context  # type: ignore[assignment]
        if isinstance(t.error, PostNotSent):
            self._not_sent([o.cloid for o in orders], str(t.error))
            return
        outcomes = self._outcomes(t, len(orders), _ORDER_RESPONSE_TYPES)
        on_result = self._on_result
        assert on_result is not None
        for o, status in zip(orders, outcomes, strict=True):
            on_result(o.cloid, status)

    def _not_sent(self, cloids: list[str], reason: str) -> None:
        self._count_not_sent(len(cloids), reason)
        if self._on_not_sent is not None:
            self._on_not_sent(cloids, reason)

    # ------------------------------------------------------------------ cancel

    async def cancel(
        self, asset_id: int, oid: int | None = None, cloid: str | None = None
    ) -> object | None:
        """Cancel one order by ``oid`` (``cancel``) or by ``cloid`` (``cancelByCloid``); return
        its status (``"success"`` or ``{"error": msg}``), the action-level or transport error
        dict, or ``None`` (no answer). Raises :class:`NotSent` when nothing was written."""
        if (oid is None) == (cloid is None):
            raise ValueError("cancel needs exactly one of oid and cloid")
        action = (
            cancel_action([(asset_id, oid)])
            if oid is not None
            else cancel_by_cloid_action([(asset_id, check_cloid(cloid))])  # type: ignore[arg-type]
        )
        ref = [cloid if cloid is not None else f"oid:{oid}"]
        try:
            t = await self._posts.send(lambda: self._signed(action, None), timeout=self._timeout)
        except PostNotSent as exc:
            raise NotSent(ref, str(exc)) from None
        except (ValueError, TypeError) as exc:
            raise NotSent(ref, f"signing failed: {exc}") from None
        self.stats.cancels_sent += 1
        await t.wait()
        return self._outcomes(t, 1, _CANCEL_RESPONSE_TYPES, count=False)[0]

    async def schedule_cancel(self, time_ms: int | None) -> object | None:
        """The dead-man switch (``scheduleCancel``; :mod:`.deadman`): with ``time_ms`` (epoch
        ms, at least 5 s ahead) the venue cancels every open order of the account then; without
        it the timer is unset. Returns the action payload (``{"status": "ok", …}`` or
        ``{"status": "err", "response": msg}``), the transport error dict, or ``None`` (no
        answer). Raises :class:`NotSent` when nothing was written."""
        action = schedule_cancel_action(time_ms)
        try:
            t = await self._posts.send(lambda: self._signed(action, None), timeout=self._timeout)
        except PostNotSent as exc:
            raise NotSent([], str(exc)) from None
        except (ValueError, TypeError) as exc:
            raise NotSent([], f"signing failed: {exc}") from None
        await t.wait()
        if t.error is not None:
            return {"type": "error", "payload": str(t.error)} if isinstance(
                t.error, PostError) else None
        ev = t.event
        if ev is None:
            return None
        if ev.response_type == "action" and isinstance(ev.payload, dict):
            return ev.payload
        return {"type": "error", "payload": ev.payload}

    # ------------------------------------------------------------------ queries

    async def order_status(self, user: str, cloid: str) -> object:
        """``orderStatus`` by cloid for the master account ``user`` (WS post info); the reply
        (``{"status":"order",…}`` / ``{"status":"unknownOid"}``) for
        ``order_events.classify_order_status_reply``, or ``None`` when there was no usable answer
        (counted and logged: ask again later)."""
        user = self._check_user(user)
        check_cloid(cloid)
        self.stats.queries += 1
        try:
            return await self._posts.info(
                {"type": "orderStatus", "user": user, "oid": cloid}, self._timeout
            )
        except PostFailure as exc:
            self.stats.query_failures += 1
            self._rlog.log("order_status", logging.WARNING, "orderStatus %s failed: %s", cloid, exc)
            return None

    async def reconcile_snapshot(
        self, user: str, dex: str
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """The venue's view of ``user`` on ``dex``: positions (full ``dex:COIN`` → signed size,
        non-zero only) from ``clearinghouseState`` and the open orders from ``openOrders``, both
        queried WITH ``dex`` (P21). Raises :class:`ReconcileError` when either cannot be
        fetched or read: a failure must never look like "flat, no orders"."""
        user = self._check_user(user)
        if not isinstance(dex, str) or not dex or ":" in dex:
            raise ValueError(f"dex must be a HIP-3 dex name such as 'xyz', got {dex!r}")
        self.stats.queries += 2
        try:
            sent = self._clock()
            state = await self._posts.info(
                {"type": "clearinghouseState", "user": user, "dex": dex}, self._timeout
            )
            self.last_clock_sample = _clock_sample(sent, self._clock(), state)
            open_orders = await self._posts.info(
                {"type": "openOrders", "user": user, "dex": dex}, self._timeout
            )
        except PostFailure as exc:
            self.stats.query_failures += 1
            raise ReconcileError(f"reconciliation query for dex {dex!r} failed: {exc}") from None
        positions, orders = parse_positions(state, dex), parse_open_orders(open_orders, dex)
        self.last_account_value = parse_account_value(state)
        self.last_main_value = await self.main_account_value(user)
        return positions, orders

    async def user_fills(self, user: str) -> list[UserFill] | None:
        """``userFills`` of the master account ``user`` (its most recent fills, every dex; WS
        post info): the second source before a reconciliation answer that a position closed
        is believed. ``None`` when there was no usable answer (counted and logged, rate-limited:
        the core asks again while the mismatch lasts); malformed elements are skipped and
        logged."""
        user = self._check_user(user)
        self.stats.queries += 1
        try:
            answer = await self._posts.info({"type": "userFills", "user": user}, self._timeout)
        except PostFailure as exc:
            self.stats.query_failures += 1
            self._rlog.log("user_fills", logging.WARNING, "userFills failed: %s", exc)
            return None
        parsed = parse_user_fills(answer)
        if parsed is None:
            self.stats.query_failures += 1
            self._rlog.log("user_fills", logging.WARNING, "userFills answer is not a list: %s",
                           excerpt(repr(answer), 120))
            return None
        fills, bad = parsed
        if bad:
            self._rlog.log("user_fills_bad", logging.WARNING,
                           "userFills answer: %d malformed fill(s) skipped", bad)
        return fills

    async def main_account_value(self, user: str) -> float | None:
        """``marginSummary.accountValue`` of ``clearinghouseState`` WITHOUT ``dex`` (the main
        dex, where the free collateral sits with DEX abstraction: protocol doc §9, P22), or
        ``None`` when the query fails or the answer has none (logged, rate-limited). It does not
        fail the reconciliation: positions and orders are the dex's."""
        self.stats.queries += 1
        try:
            state = await self._posts.info({"type": "clearinghouseState", "user": user},
                                          self._timeout)
        except PostFailure as exc:
            self.stats.query_failures += 1
            self._rlog.log("main_account", logging.WARNING,
                           "main-dex clearinghouseState failed: %s; usable equity unknown", exc)
            return None
        value = parse_account_value(state)
        if value is None:
            self._rlog.log("main_account", logging.WARNING,
                           "main-dex clearinghouseState has no numeric marginSummary."
                           "accountValue (%s); usable equity unknown", excerpt(repr(state), 120))
        return value

    # ------------------------------------------------------------------ helpers

    def _check_user(self, user: str) -> str:
        addr = check_address(user)
        if addr == self._signer.address.lower():
            raise ValueError(
                "user must be the master account address, not the agent (signer) address"
            )
        return addr

    def _signed(self, action: Action, expires_after: int | None) -> dict[str, Any]:
        nonce = self._nonces.next(int(self._clock()))
        payload = self._signer.payload(action, nonce, self._vault, expires_after, self._is_mainnet)
        return {"type": "action", "payload": payload}

    def _count_sent(self, n: int) -> None:
        st = self.stats
        st.actions_sent += 1
        st.orders_sent += n

    def _count_not_sent(self, n: int, reason: str) -> None:
        self.stats.orders_not_sent += n
        self._rlog.log("not_sent", logging.WARNING, "%d order(s) not sent: %s", n, reason)

    def _outcomes(
        self, t: PostTicket, n: int, kinds: frozenset[str], *, count: bool = True
    ) -> list[object | None]:
        """Per-order outcomes of a DONE ticket (see the module docstring)."""
        st = self.stats
        err = t.error
        if err is not None:
            if isinstance(err, PostError):  # refused on the error channel (too many pending)
                if count:
                    st.orders_transport_err += n
                self._rlog.log("transport", logging.WARNING, "post %d refused: %s", t.id, err)
                return [{"type": "error", "payload": str(err)}] * n
            if count:
                st.orders_no_answer += n
            self._rlog.log(
                "no_answer", logging.WARNING, "post %d: no answer (%s); resolve by cloid", t.id, err
            )
            return [None] * n
        ev = t.event
        assert ev is not None
        if ev.response_type == "error":
            if count:
                st.orders_transport_err += n
            self._rlog.log(
                "transport",
                logging.WARNING,
                "post %d: transport error %s",
                t.id,
                excerpt(str(ev.payload)),
            )
            return [{"type": "error", "payload": ev.payload}] * n
        payload = ev.payload
        if ev.response_type == "action" and isinstance(payload, dict):
            status = payload.get("status")
            if status == "err":
                if count:
                    st.orders_action_err += n
                return [payload] * n
            inner = payload.get("response")
            data = inner.get("data") if isinstance(inner, dict) else None
            statuses = data.get("statuses") if isinstance(data, dict) else None
            if status == "ok" and isinstance(statuses, list) and inner.get("type") in kinds:  # type: ignore[union-attr]
                if len(statuses) == n:
                    if count:
                        st.orders_answered += n
                    return list(statuses)
                st.wrong_length += 1
                if count:
                    st.orders_no_answer += n
                self._rlog.log(
                    "wrong_length",
                    logging.ERROR,
                    "post %d: %d statuses for %d order(s); every order treated as unanswered",
                    t.id,
                    len(statuses),
                    n,
                )
                return [None] * n
        st.unrecognized += 1
        if count:
            st.orders_no_answer += n
        self._rlog.log(
            "unrecognized",
            logging.ERROR,
            "post %d: unrecognized answer, treated as unanswered: %s",
            t.id,
            excerpt(repr(ev.response)),
        )
        return [None] * n


# ---------------------------------------------------------------------- pure helpers


def _order_wire(o: Order) -> dict[str, Any]:
    """The IOC limit order wire of ``o`` with its exact wire strings (validated; the quick
    checks of :func:`ioc_order_wire`, which defers anything unusual to ``order_wire``)."""
    return ioc_order_wire(o.asset_id, o.is_buy, o.px_wire, o.sz_wire, o.reduce_only, o.cloid)


def _expires_after(orders: Sequence[Order]) -> int | None:
    """The strictest ``expires_after_ms`` of the orders that set one (None if none does)."""
    best: int | None = None
    for o in orders:
        e = o.expires_after_ms
        if e is None:
            continue
        if type(e) is not int or e <= 0:
            raise ValueError(f"expires_after_ms must be a positive int, got {e!r}")
        if best is None or e < best:
            best = e
    return best


def _decimal(value: object, what: str) -> float:
    if not isinstance(value, str):
        raise ReconcileError(f"{what} is not a decimal string: {excerpt(repr(value), 60)}")
    try:
        x = float(value)
    except ValueError:
        raise ReconcileError(f"{what} is not a decimal: {excerpt(value, 60)}") from None
    if not math.isfinite(x):
        raise ReconcileError(f"{what} is not finite: {excerpt(value, 60)}")
    return x


def _coin(value: object, dex: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ReconcileError(f"{what}: no coin name ({excerpt(repr(value), 60)})")
    try:
        return normalise_coin(dex, value)
    except DiscoveryError as exc:
        raise ReconcileError(f"{what}: {exc}") from None


def parse_positions(state: object, dex: str) -> dict[str, float]:
    """``clearinghouseState`` (queried with ``dex``) → {full coin: signed ``szi``}, non-zero
    positions only. Raises :class:`ReconcileError` on any malformed part."""
    if not isinstance(state, dict):
        raise ReconcileError(f"clearinghouseState: expected an object, got {excerpt(repr(state))}")
    items = state.get("assetPositions")
    if not isinstance(items, list):
        raise ReconcileError("clearinghouseState: no assetPositions list")
    out: dict[str, float] = {}
    for i, item in enumerate(items):
        pos = item.get("position") if isinstance(item, dict) else None
        if not isinstance(pos, dict):
            raise ReconcileError(f"clearinghouseState.assetPositions[{i}] has no position object")
        coin = _coin(pos.get("coin"), dex, f"assetPositions[{i}]")
        szi = _decimal(pos.get("szi"), f"assetPositions[{i}] ({coin}) szi")
        if coin in out:
            raise ReconcileError(f"clearinghouseState lists {coin} twice")
        if szi != 0.0:
            out[coin] = szi
    return out


def _clock_sample(sent: float, received: float, state: object
                  ) -> tuple[float, float, float] | None:
    """``(sent, received, venue ms)`` from a ``clearinghouseState``'s ``time`` (the venue's
    clock when it answered), or None when it carries no plausible one."""
    t = state.get("time") if isinstance(state, dict) else None
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
        return None
    return sent, received, float(t)


def parse_user_fills(answer: object) -> tuple[list[UserFill], int] | None:
    """A ``userFills`` info answer → (the fills that read, how many did not), or ``None``
    when the answer is not a list. A fill reads when it has the channel's fields with ``px``
    and ``sz`` positive decimals."""
    if not isinstance(answer, list):
        return None
    out: list[UserFill] = []
    bad = 0
    for raw in answer:
        try:
            f = msgspec.convert(raw, UserFill)
            ok = float(f.px) > 0.0 and float(f.sz) > 0.0 and math.isfinite(
                float(f.px) * float(f.sz) + float(f.fee))
        except (msgspec.ValidationError, ValueError):
            ok = False
        if ok:
            out.append(f)
        else:
            bad += 1
    return out, bad


def parse_account_value(state: object) -> float | None:
    """``marginSummary.accountValue`` of a ``clearinghouseState``, or ``None`` when absent or
    unreadable. With ``dex`` set this is only what sits in that dex (its isolated margin in
    use, $0 when flat); the usable equity is the main dex's value plus the dex's (§9, P22)."""
    if not isinstance(state, dict):
        return None
    summary = state.get("marginSummary")
    raw = summary.get("accountValue") if isinstance(summary, dict) else None
    try:
        value = float(raw) if isinstance(raw, str | int | float) else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def parse_open_orders(orders: object, dex: str) -> list[dict[str, Any]]:
    """``openOrders`` (queried with ``dex``) → the order objects (``coin`` normalised to the
    full name; ``oid`` an int; ``cloid`` optional). Raises :class:`ReconcileError` on any
    malformed element (a skipped one would be an orphan nobody cancels)."""
    if not isinstance(orders, list):
        raise ReconcileError(f"openOrders: expected a list, got {excerpt(repr(orders))}")
    out: list[dict[str, Any]] = []
    for i, o in enumerate(orders):
        if not isinstance(o, dict):
            raise ReconcileError(f"openOrders[{i}] is not an object")
        oid = o.get("oid")
        if type(oid) is not int:
            raise ReconcileError(f"openOrders[{i}] has no integer oid")
        cloid = o.get("cloid")
        if cloid is not None and not isinstance(cloid, str):
            raise ReconcileError(f"openOrders[{i}] has a non-string cloid")
        coin = _coin(o.get("coin"), dex, f"openOrders[{i}]")
        out.append({**o, "coin": coin})
    return out
