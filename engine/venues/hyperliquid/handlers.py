"""What the Hyperliquid feed talks to: the handler it calls, the recorder it hands frames to
and the send sources it materializes before a write (all ``typing.Protocol``, no code).

The feed (:mod:`.client`) calls every method synchronously in its reader task; none may block.
"""

from __future__ import annotations

from typing import Any, Protocol

from engine.venues.hyperliquid.wire import OrderUpdate, UserFill


class FeedHandler(Protocol):
    """What the feed calls; every method is synchronous, runs in the reader task, must not block.

    ``on_bbo``/``on_ctx`` are called once per valid frame for a subscribed coin, in arrival
    order; ``on_batch_end`` after the frames of one socket read (only if it held a message).
    ``on_connected``/``on_disconnected(reason)`` bracket every connection (reason
    ``"shutdown"`` when ``run()`` is cancelled); ``on_subscribed`` once per acked subscription
    per connection. An exception raised here propagates out of ``run()``.

    Optional (looked up once with ``getattr`` at construction; see :class:`UserStreamHandler`):
    ``on_order_updates``, ``on_user_fills``, ``on_user_channels_acked``. Without them, user
    stream messages are counted (``user_unhandled``) and dropped. ``on_l2book`` (see
    :class:`L2BookHandler`) is optional too: without it l2Book frames only update the store.
    """

    def on_bbo(
        self,
        coin: str,
        time_ms: int,
        bid_px: float | None,
        bid_sz: float | None,
        ask_px: float | None,
        ask_sz: float | None,
    ) -> None: ...

    def on_ctx(self, coin: str, oracle_px: float, mark_px: float | None) -> None: ...

    def on_connected(self) -> None: ...

    def on_disconnected(self, reason: str) -> None: ...

    def on_subscribed(self, sub_type: str, coin: str | None) -> None: ...

    def on_batch_end(self) -> None: ...


class UserStreamHandler(Protocol):
    """The optional user-stream methods of a :class:`FeedHandler` (same rules: sync, no block).

    ``on_order_updates`` gets the decoded elements of one ``orderUpdates`` frame (possibly
    empty); ``on_user_fills`` the fills of one ``userFills`` frame and whether it is the
    snapshot (history: never rebuild positions from it, P17); ``on_user_channels_acked(True)``
    once both user subscriptions are acked on a connection, ``(False)`` on every disconnect and
    when the venue confirms an unsubscribe.
    """

    def on_order_updates(self, updates: list[OrderUpdate]) -> None: ...

    def on_user_fills(self, fills: list[UserFill], is_snapshot: bool) -> None: ...

    def on_user_channels_acked(self, acked: bool) -> None: ...


class L2BookHandler(Protocol):
    """The optional l2Book method of a :class:`FeedHandler` (only with ``l2book=True``).

    Called after the store accepted the frame (valid levels, ``time`` not regressing) with the
    levels best first as ``(px, sz)``; the lists are the stored ones: do not mutate them.
    """

    def on_l2book(
        self,
        coin: str,
        time_ms: int,
        bids: list[tuple[float, float]],
        asks: list[tuple[float, float]],
    ) -> None: ...


class FrameSink(Protocol):
    """Where the feed hands its frames for recording (:class:`engine.io.frames.FrameRecorder`):
    synchronous and cheap (a list append); the sink owns the lists it is given."""

    def inbound(self, texts: list[str]) -> None: ...

    def outbound(self, texts: list[str]) -> None: ...

    def event(self, kind: str, obj: Any) -> None: ...


class SendSource(Protocol):
    """Work queued outside the outbox (e.g. orders to coalesce into one action).

    ``materialize()`` runs right before every write: turn the queued work into posts with
    :meth:`HyperliquidFeed.post_nowait`. ``discard(reason)`` runs when the connection ends (or a
    flush finds none): the queued work was never sent. Both are synchronous and must not raise.
    """

    def materialize(self) -> None: ...

    def discard(self, reason: str) -> None: ...

