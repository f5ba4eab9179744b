"""Where each decoded frame of the Hyperliquid feed goes (the per-frame hot path).

:class:`FrameRouter` decodes one text (:class:`~.wire.WireDecoder`) and routes it: ``bbo`` and
``activeAssetCtx`` of a subscribed coin to the handler (noting the frame's time for the
watchdog), ``l2Book`` to the :class:`~.l2book.L2BookStore` and then the handler's optional
``on_l2book``, ``post`` answers and error-channel refusals to the :class:`~.outbox.PostBook`,
``subscriptionResponse`` to :class:`~.subscriptions.Subscriptions`, ``orderUpdates`` and
``userFills`` to the handler's optional user-stream methods (frames of another user, or
without a user subscription, or without a method for them, are counted and dropped).

:meth:`FrameRouter.dispatcher` returns the closure the live reader and replay both call per
frame (decode → handler → core), with every lookup bound once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec

from engine.net.ratelog import RateLimitedLog, excerpt
from engine.venues.hyperliquid.feed_stats import FeedStats
from engine.venues.hyperliquid.handlers import FeedHandler
from engine.venues.hyperliquid.l2book import L2BookStore
from engine.venues.hyperliquid.outbox import PostBook
from engine.venues.hyperliquid.session import Session
from engine.venues.hyperliquid.subscriptions import Subscriptions
from engine.venues.hyperliquid.wire import (
    CH_BBO,
    CH_CTX,
    CH_L2BOOK,
    CH_ORDER_UPDATES,
    CH_USER_FILLS,
    BboEvent,
    CtxEvent,
    ErrorEvent,
    L2BookEvent,
    OrderUpdate,
    OrderUpdatesEvent,
    PongEvent,
    PostEvent,
    SubAckEvent,
    UserFill,
    UserFillsEvent,
    WireDecoder,
)

log = logging.getLogger(__name__)

L2Levels = list[tuple[float, float]]


class FrameRouter:
    """Decode and route the frames of one feed (see the module docstring)."""

    def __init__(self, decoder: WireDecoder, handler: FeedHandler, stats: FeedStats,
                 subs: Subscriptions, posts: PostBook, l2book: L2BookStore | None,
                 coins: list[str]) -> None:
        self._decoder = decoder
        self._handler = handler
        self.stats = stats
        self._subs = subs
        self._posts = posts
        self.user = subs.user
        self.l2book = l2book
        self._rlog = RateLimitedLog(log)
        self._l2_coins = frozenset(coins) if l2book is not None else frozenset()
        self._h_l2book: Callable[[str, int, L2Levels, L2Levels], None] | None = getattr(
            handler, "on_l2book", None
        )
        self._h_order_updates: Callable[[list[OrderUpdate]], None] | None = getattr(
            handler, "on_order_updates", None
        )
        self._h_user_fills: Callable[[list[UserFill], bool], None] | None = getattr(
            handler, "on_user_fills", None
        )
        if self.user is not None:
            missing = [
                name
                for name, h in (
                    ("on_order_updates", self._h_order_updates),
                    ("on_user_fills", self._h_user_fills),
                    ("on_user_channels_acked", getattr(handler, "on_user_channels_acked", None)),
                )
                if h is None
            ]
            if missing:
                log.warning(
                    "user streams are subscribed but the handler has no %s: those messages "
                    "are counted and dropped",
                    ", ".join(missing),
                )

    def dispatcher(self, s: Session) -> Callable[[str, float], None]:
        """The per-frame step of a read (decode → handler), shared by the live reader and
        replay: a closure over the session's lookups (no attribute loads per frame).

        A bbo frame with both sides valid and a ctx frame with a valid oracle (and mark, or
        none) — nearly every frame — are decoded with the decoder's ``raw_decode`` and go
        to the handler from the message's fields, with the checks and counters of
        :meth:`WireDecoder.decode` (one call and one event object less per frame); every
        other frame takes the decoder's full path (the same events and counters as
        ``decode``: tests/venues/hyperliquid/test_fast_dispatch.py)."""
        dec = self._decoder
        raw = dec.raw_decode
        decode = dec.decode
        decoded = dec.decoded
        bbo_msg, ctx_msg = dec.FAST_TYPES
        wstats = dec.stats
        fbc = wstats.frames_by_channel
        decode_error = msgspec.DecodeError
        inf = float("inf")
        h = self._handler
        on_bbo = h.on_bbo
        on_ctx = h.on_ctx
        bbo_last = self._subs.bbo_last
        ctx_last = self._subs.ctx_last
        on_l2book = self._on_l2book
        on_control = self._on_control
        unexpected = self._unexpected_coin

        def dispatch(text: str, now: float) -> None:
            try:
                msg = raw(text)
            except decode_error:
                ev = decode(text)  # counts and classifies the failure
            else:
                t = type(msg)
                if t is bbo_msg:
                    d = msg.data
                    b, a = d.bbo
                    if b is not None and a is not None:
                        bp = b.px
                        bs = b.sz
                        ap = a.px
                        asz = a.sz
                        if (0.0 < bp < inf and 0.0 < bs < inf
                                and 0.0 < ap < inf and 0.0 < asz < inf):
                            wstats.frames_total += 1
                            fbc[CH_BBO] += 1
                            coin = d.coin
                            if coin in bbo_last:
                                bbo_last[coin] = now
                                on_bbo(coin, d.time, bp, bs, ap, asz)
                            else:
                                unexpected(CH_BBO, coin)
                            return
                    ev = decode(text)  # an empty or invalid side: decode's own handling
                elif t is ctx_msg:
                    cd = msg.data
                    ctx = cd.ctx
                    oracle = ctx.oraclePx
                    mark = ctx.markPx
                    if 0.0 < oracle < inf and (mark is None or 0.0 < mark < inf):
                        wstats.frames_total += 1
                        fbc[CH_CTX] += 1
                        coin = cd.coin
                        if coin in ctx_last:
                            ctx_last[coin] = now
                            on_ctx(coin, oracle, mark)
                        else:
                            unexpected(CH_CTX, coin)
                        return
                    ev = decode(text)
                else:
                    ev = decoded(msg, text)
            t = type(ev)
            if t is BboEvent:
                e: BboEvent = ev  # type: ignore[assignment]
                coin = e.coin
                if coin in bbo_last:
                    bbo_last[coin] = now
                    on_bbo(coin, e.time_ms, e.bid_px, e.bid_sz, e.ask_px, e.ask_sz)
                else:
                    unexpected(CH_BBO, coin)
            elif t is CtxEvent:
                c: CtxEvent = ev  # type: ignore[assignment]
                coin = c.coin
                if coin in ctx_last:
                    ctx_last[coin] = now
                    on_ctx(coin, c.oracle_px, c.mark_px)
                else:
                    unexpected(CH_CTX, coin)
            elif t is L2BookEvent:
                on_l2book(ev)  # type: ignore[arg-type]
            elif ev is not None:
                on_control(s, ev, now)

        return dispatch

    def _unexpected_coin(self, channel: str, coin: str) -> None:
        self.stats.unexpected_coin += 1
        self._rlog.log(
            "unexpected_coin",
            logging.WARNING,
            "%s frame for unsubscribed coin %s skipped",
            channel,
            excerpt(coin, 40),
        )

    def _on_l2book(self, ev: L2BookEvent) -> None:
        coin = ev.coin
        store = self.l2book
        if store is None or coin not in self._l2_coins:
            self._unexpected_coin(CH_L2BOOK, coin)
            return
        if not store.update(coin, ev.time_ms, ev.bids, ev.asks):
            return
        h = self._h_l2book
        if h is not None:
            snap = store.snapshot(coin)
            assert snap is not None
            h(coin, ev.time_ms, snap.bids, snap.asks)

    def _on_control(self, s: Session, ev: object, now: float) -> None:
        if isinstance(ev, PongEvent):
            return  # liveness is any received byte; nothing else to do
        if isinstance(ev, PostEvent):
            self._posts.on_answer(ev)
        elif isinstance(ev, OrderUpdatesEvent):
            self._on_order_updates(ev)
        elif isinstance(ev, UserFillsEvent):
            self._on_user_fills(ev)
        elif isinstance(ev, SubAckEvent):
            self._subs.on_ack(s, ev, now)
        elif isinstance(ev, ErrorEvent):
            self.stats.errors += 1
            self._rlog.log(
                "error_channel", logging.WARNING, "server error message: %s", excerpt(ev.message)
            )
            self._posts.on_error_message(ev.message)

    def _user_frame_usable(self, channel: str, handler: object) -> bool:
        st = self.stats
        if self.user is None:
            st.user_unsubscribed += 1
            self._rlog.log(
                "user_unsubscribed",
                logging.WARNING,
                "%s frame without a user subscription dropped",
                channel,
            )
            return False
        if handler is None:
            st.user_unhandled += 1
            self._rlog.log(
                "user_unhandled",
                logging.WARNING,
                "%s frame dropped: the handler has no method for it",
                channel,
            )
            return False
        return True

    def _on_order_updates(self, ev: OrderUpdatesEvent) -> None:
        h = self._h_order_updates
        if not self._user_frame_usable(CH_ORDER_UPDATES, h):
            return
        st = self.stats
        st.order_update_frames += 1
        st.order_updates += len(ev.updates)
        assert h is not None
        h(ev.updates)

    def _on_user_fills(self, ev: UserFillsEvent) -> None:
        h = self._h_user_fills
        if not self._user_frame_usable(CH_USER_FILLS, h):
            return
        st = self.stats
        if ev.user is not None and ev.user.lower() != self.user:
            st.user_mismatch += 1
            self._rlog.log(
                "user_mismatch",
                logging.ERROR,
                "userFills for another user (%s, expected %s) dropped",
                excerpt(ev.user, 50),
                self.user,
            )
            return
        st.user_fill_frames += 1
        st.user_fills += len(ev.fills)
        if ev.is_snapshot:
            st.user_snapshots += 1
        assert h is not None
        h(ev.fills, ev.is_snapshot)
