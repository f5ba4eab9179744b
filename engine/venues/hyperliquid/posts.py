"""One WS ``post`` and its outcome: :class:`PostTicket` (QUEUED → WRITING → WRITTEN → DONE),
the failures a post can end with (:class:`PostFailure` and its subclasses, exact about whether
a byte reached the socket) and :class:`EncodedRequest` (a request already encoded as JSON).

The registry that writes tickets and matches answers to them is :mod:`.outbox`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import trio

from engine.net.ratelog import excerpt
from engine.venues.hyperliquid.wire import PostEvent


class EncodedRequest(str):
    """A post ``request`` already encoded as compact JSON (the order path builds it from
    fragments, :func:`~engine.venues.hyperliquid.signing.ioc_action_fragments`): written as
    ``{"method":"post","id":<id>,"request":<this text>}``, the bytes :func:`encode_post` gives
    for the same request as a dict."""

    __slots__ = ()


class PostFailure(Exception):
    """Base class of post errors."""


class PostTimeout(PostFailure):
    """No answer to the post within the timeout."""


class PostError(PostFailure):
    """The server answered with a response of type ``error`` (or an unusable answer)."""


class PostLost(PostFailure):
    """The connection dropped (or there was none) before the answer arrived."""


class PostNotSent(PostLost):
    """No byte of the post reached the socket (not connected, no free slot, the connection
    failed first): the venue cannot have seen it. A :class:`PostLost` for older callers."""


QUEUED: Final = 0
WRITING: Final = 1
WRITTEN: Final = 2
DONE: Final = 3


class PostTicket:
    """One post: QUEUED (in the outbox) → WRITING → WRITTEN (``on_sent`` ran) → DONE.

    When DONE exactly one of ``event`` (the answer) and ``error`` is set, :meth:`wait`
    returns and ``on_done`` (if any) ran. An answer, timeout or loss that comes while the frame is being
    written is held until ``on_sent`` ran, so ``on_sent`` always precedes the outcome.
    ``context`` is free for the caller.
    """

    __slots__ = (
        "id",
        "text",
        "deadline",
        "state",
        "event",
        "error",
        "_done",
        "on_sent",
        "on_done",
        "context",
        "_held",
        "_slot",
    )

    def __init__(
        self,
        post_id: int,
        text: str,
        deadline: float,
        on_sent: Callable[[PostTicket], None] | None,
        on_done: Callable[[PostTicket], None] | None,
        context: object,
    ) -> None:
        self.id = post_id
        self.text = text
        self.deadline = deadline
        self.state = QUEUED
        self.event: PostEvent | None = None
        self.error: PostFailure | None = None
        self._done: trio.Event | None = None  # created by the first wait() only
        self.on_sent = on_sent
        self.on_done = on_done
        self.context = context
        self._held: tuple[PostEvent | None, PostFailure | None] | None = None
        self._slot = True

    @property
    def written(self) -> bool:
        """The frame was handed to the socket (its bytes may have left)."""
        return self.state >= WRITTEN and not isinstance(self.error, PostNotSent)

    async def wait(self) -> None:
        """Return once the post is DONE (a checkpoint even if it already is)."""
        if self.state == DONE:
            await trio.lowlevel.checkpoint()
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()

    def result(self) -> dict[str, Any]:
        """The answer's ``response`` (once DONE); raises the failure, or :class:`PostError`
        for a response of type ``error``."""
        if self.error is not None:
            raise self.error
        ev = self.event
        if ev is None:
            raise RuntimeError(f"post {self.id} is not done")
        if ev.response_type == "error":
            raise PostError(f"post {self.id}: {excerpt(str(ev.payload))}")
        return ev.response

