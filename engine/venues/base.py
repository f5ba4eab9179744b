"""The venue interfaces the shell builds and drives, whatever the venue (no venue imported).

A venue package (``engine/venues/<venue>/``) implements these ``typing.Protocol`` types and
registers a :class:`VenueFactory` in :mod:`engine.venues.registry`; the shell
(:mod:`engine.app`, :mod:`engine.trading_app`) asks the registry for the factory by name and
only talks to the objects through these interfaces:

* :class:`InstrumentProvider`: what can be traded (discovery), once at start;
* :class:`MarketDataFeed`: the connection task that decodes frames and hands them, one socket
  read at a time, synchronously to the shell's handler (frames → core);
* :class:`ExecutionBackend`: where the core's venue-bound intents go (orders, cancels,
  queries) and what it answers with; the paper venue is one too;
* :class:`AccountVenueFactory`: a venue built as one account object (Bybit's REST,
  executor, order lanes and sockets) for a shell that drives it whole;
* :class:`BatchContext`: the explicit context of the frame batch being dispatched (its
  receive time), shared by the handler that fills it and whoever needs "now" of the batch.

See docs/architecture.md, "Adding a third venue".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import attrs

from engine.config import EngineConfig
from engine.core.intents import Intent

T_co = TypeVar("T_co", covariant=True)


@attrs.define(slots=True)
class BatchContext:
    """The frame batch (one socket read) being dispatched: ``now`` is its receive time on the
    engine's clock (epoch ms), taken once at the batch's first use, None between batches.

    The feed handler sets and clears it; the shell reads it (frame → decision latency, "is
    a read being dispatched?") instead of reaching into the handler."""

    now: float | None = None

    @property
    def in_batch(self) -> bool:
        """A socket read is being dispatched (its batch end is still to come)."""
        return self.now is not None


class FrameRecorder(Protocol):
    """Where a feed hands the frames it reads and writes (``[recording]``)."""

    def inbound(self, texts: list[str]) -> None: ...

    def outbound(self, texts: list[str]) -> None: ...

    def event(self, kind: str, obj: Any) -> None: ...


class FeedStatsView(Protocol):
    """The counters of a feed the shell shows (summary line, ``/status``, metrics); read
    only (a feed keeps them as attributes or computes them)."""

    @property
    def connected(self) -> bool: ...

    @property
    def reconnects(self) -> int: ...

    @property
    def malformed(self) -> int: ...

    @property
    def frames_by_channel(self) -> dict[str, int]: ...

    @property
    def frames_total(self) -> int: ...


class BusyPollView(Protocol):
    """Busy-poll counters (``[venue] busy_poll_us``); a feed that never spins reports 0."""

    busy_polls: int
    busy_poll_timeouts: int
    spin_hooks: int


class MarketDataFeed(Protocol):
    """A venue's market-data connection: :meth:`run` connects, subscribes, reads, decodes and
    dispatches to the handler it was built with, reconnecting forever until cancelled.

    Replay (:mod:`engine.replay`) drives the same feed without a socket: ``replay_connected``
    / ``replay_disconnected`` / ``replay_batch`` take the steps a live connection and a live
    socket read take (times in seconds of the feed's clock); ``replay_reads`` takes a run of
    recorded reads ``(kind, batch, wall_ns, texts)``, calling ``before(t_ms)`` ahead of each
    (one call per run; the frames dispatched are returned)."""

    @property
    def stats(self) -> FeedStatsView: ...

    @property
    def connected(self) -> bool: ...

    recorder: Any  # a FrameRecorder or None; set before run()
    wall_clock: Callable[[], float]  # epoch seconds for display; set before run()
    spin_hook: Callable[[], None] | None  # called while a read busy-polls (warm-up); or None

    @property
    def busy_poll_stats(self) -> BusyPollView: ...

    async def run(self) -> None: ...

    def replay_connected(self, url: str, now: float) -> None: ...

    def replay_disconnected(self, reason: str, now: float) -> None: ...

    def replay_batch(self, texts: list[str], now: float) -> None: ...

    def replay_reads(self, items: list[Any], start: int, end: int,
                     before: Callable[[float], None]) -> int: ...


@attrs.frozen
class FeedOptions:
    """How the shell wants its market-data feed: endpoint overrides (the embedded simulator's
    URLs), ``account`` whose user streams (orders, fills) come over the same connection (trade
    mode; None = market data only), ``book_store`` for depth levels beyond the top of book
    (the venue's own store type; None = no depth), and whether a read's first order is
    written at once (``send_first_at_once``)."""

    ws_url: str | None = None
    info_url: str | None = None
    account: str | None = None
    book_store: Any = None
    send_first_at_once: bool = True


class ExecutionBackend(Protocol):
    """Where the core's intents go after each socket read and timer tick.

    ``dispatch`` takes the intents it handles (orders, cancels, queries) and returns the rest
    (records, alerts, ...) for the shell, in order. ``next_due_ms``/``on_timer``: the backend's
    own timer (e.g. paper fills after their latency), None when it has none.
    ``defer_bookkeeping()`` is asked at the end of a read: True when orders of the read still
    wait for the venue write, so the shell's bookkeeping must wait for that write too."""

    def dispatch(self, intents: Iterable[Intent], now_ms: float) -> list[Intent]: ...

    def next_due_ms(self) -> float | None: ...

    def on_timer(self, now_ms: float) -> object: ...

    def defer_bookkeeping(self) -> bool: ...


class InstrumentProvider(Protocol[T_co]):
    """What can be traded on a venue (Hyperliquid: :class:`engine.core.types.MarketSpec` per
    market; Bybit: :class:`engine.core.neutral.Instrument`). ``discover`` raises the venue's
    errors (the shell turns them into one line and an exit code)."""

    async def discover(self) -> Sequence[T_co]: ...


class InstrumentsRefused(Exception):
    """The venue answered, but the configured instruments do not exist there: a config error
    (``config_key`` names what to change)."""

    def __init__(self, message: str, config_key: str) -> None:
        super().__init__(message)
        self.config_key = config_key


class InstrumentsUnreachable(Exception):
    """The venue's instrument endpoint could not be reached (transient: worth a retry)."""


InfoRecorder = Callable[[dict[str, Any], Any], None]
"""``record(request, answer)``: the discovery answers, for a frame recording."""


class VenueFactory(Protocol):
    """What the shell needs from a venue package (registered by ``name`` in
    :mod:`engine.venues.registry`): the instrument provider and the market-data feed.
    Trade-mode execution is built by the venue's own factory methods (its signer, nonces and
    order protocol are the venue's)."""

    name: str

    def instruments(self, cfg: EngineConfig, *, info_url: str | None = None,
                    record: InfoRecorder | None = None) -> InstrumentProvider[Any]: ...

    def market_data(self, cfg: EngineConfig, symbols: Sequence[str], handler: Any,
                    options: FeedOptions) -> MarketDataFeed: ...


Level = tuple[float, float]


class BookStore(Protocol):
    """Depth levels beyond the top of book, kept by the feed (``FeedOptions.book_store``) and
    walked by paper fills: ``levels(symbol)`` is ``(bids, asks)`` best first, or None."""

    def levels(self, symbol: str) -> tuple[list[Level], list[Level]] | None: ...


class TradingVenueFactory(VenueFactory, Protocol):
    """A venue the paper and trade modes can run on: a depth store for paper fills, and the
    trade-mode order executor and dead-man switch over the feed the factory built (their
    signer, nonces and wire protocol are the venue's own types, hence ``Any`` here)."""

    def book_store(self, clock: Callable[[], float]) -> BookStore: ...

    def execution(self, feed: MarketDataFeed, signer: Any, nonces: Any, *, is_mainnet: bool,
                  post_timeout_s: float, clock: Callable[[], float],
                  on_sent: Callable[[list[str]], None],
                  on_result: Callable[[str, object], None],
                  on_not_sent: Callable[[list[str], str], None],
                  entry_guard: Callable[[], str | None] | None = None) -> Any: ...

    def dead_man(self, executor: Any, dead_man_s: float, *, orders: Callable[[], Iterable[Any]],
                 connected: Callable[[], bool], clock: Callable[[], float]) -> Any: ...


class AccountVenueFactory(VenueFactory, Protocol):
    """A venue whose shell drives one account object (Bybit: REST with server-time sync,
    the order executor and its timed order lanes, and the sockets as one feed) instead of the
    separate trade-mode pieces of :class:`TradingVenueFactory`: ``build(venue_cfg, clock,
    need_keys, env)`` returns it (keys only when ``need_keys``: trade mode)."""

    def build(self, cfg: Any, clock: Callable[[], float], need_keys: bool = True,
              env: Mapping[str, str] = ...) -> Any: ...
