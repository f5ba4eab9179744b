"""Build the Bybit venue's pieces from ``[bybit]`` (:class:`~engine.config.BybitConfig`): the
URLs (testnet or mainnet, each overridable), the credentials (only from systemd credentials or
the environment), the REST client, the execution backend and the three streams.

This is the per-venue factory a venue-neutral shell calls; mainnet is refused unless
``allow_live`` (also enforced when the config is loaded). ``FACTORY`` registers it as
``"bybit"`` in :mod:`engine.venues.registry`: it provides the instruments (instruments-info of
the ``[funding]`` symbols, spot and linear), the market-data feed (its three sockets as one
:class:`~engine.venues.bybit.feed.BybitFeed`) and :func:`build_venue` (the whole venue: REST,
execution, the feed and timed order lanes, see :class:`BybitVenue`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from engine.config import BybitConfig, EngineConfig
from engine.core.neutral import Instrument, InstrumentKind
from engine.venues.base import (
    AccountVenueFactory,
    FeedOptions,
    InfoRecorder,
    InstrumentsRefused,
    InstrumentsUnreachable,
)
from engine.venues.bybit import urls as bybit_urls
from engine.venues.bybit.codec import BybitApiError, BybitDecoder, parse_instruments
from engine.venues.bybit.execution import BybitExecution
from engine.venues.bybit.feed import BybitFeed, TimedHttpClient
from engine.venues.bybit.http import HttpClient, HttpError
from engine.venues.bybit.keys import load_bybit_credentials
from engine.venues.bybit.rest import BybitRest
from engine.venues.bybit.signing import BybitCredentials
from engine.venues.bybit.ws import BybitStream


class LiveNotAllowed(Exception):
    """Mainnet without ``allow_live = true``."""


def live_url_overrides(cfg: BybitConfig) -> list[str]:
    """The ``[bybit] *_url`` keys that point at a mainnet host while the environment is not
    mainnet (a testnet config that would trade live)."""
    if cfg.environment == "mainnet":
        return []
    urls = {"rest_url": cfg.rest_url, "ws_public_linear_url": cfg.ws_public_linear_url,
            "ws_public_spot_url": cfg.ws_public_spot_url, "ws_private_url": cfg.ws_private_url}
    return [k for k, v in urls.items() if v and bybit_urls.mainnet_host(v)]


def resolve_urls(cfg: BybitConfig) -> bybit_urls.BybitUrls:
    base = bybit_urls.for_environment(cfg.environment)
    if base.is_mainnet and not cfg.allow_live:
        raise LiveNotAllowed("[bybit] environment = \"mainnet\" needs allow_live = true")
    live = live_url_overrides(cfg) if not cfg.allow_live else []
    if live:
        raise LiveNotAllowed(f"[bybit] {', '.join(live)} points at a Bybit mainnet host while "
                             f"environment = {cfg.environment!r}: use the {cfg.environment} "
                             "URL, or set environment = \"mainnet\" and allow_live = true")
    return bybit_urls.BybitUrls(
        rest=cfg.rest_url or base.rest,
        ws_public_linear=cfg.ws_public_linear_url or base.ws_public_linear,
        ws_public_spot=cfg.ws_public_spot_url or base.ws_public_spot,
        ws_private=cfg.ws_private_url or base.ws_private,
    )


@attrs.define
class BybitVenue:
    """Everything one Bybit account needs; streams are made on demand (one per socket)."""

    cfg: BybitConfig
    urls: bybit_urls.BybitUrls
    clock: Callable[[], float]
    credentials: BybitCredentials | None
    rest: BybitRest
    execution: BybitExecution

    def stream(self, channel: str, topics: Iterable[str],
               on_event: Callable[[Any], None]) -> BybitStream:
        """``channel`` is ``linear``, ``spot`` or ``private``."""
        url = {"linear": self.urls.ws_public_linear, "spot": self.urls.ws_public_spot,
               "private": self.urls.ws_private}[channel]
        kind = InstrumentKind.SPOT if channel == "spot" else InstrumentKind.LINEAR_PERP
        return BybitStream(
            url, topics, BybitDecoder(kind), on_event, self.clock,
            self.credentials if channel == "private" else None,
            ping_interval_s=self.cfg.ping_interval_s, pong_timeout_s=self.cfg.pong_timeout_s,
            connect_timeout_s=self.cfg.http_timeout_s, reconnect_base_s=self.cfg.reconnect_base_s,
            reconnect_max_s=self.cfg.reconnect_max_s, auth_expire_s=self.cfg.auth_expire_s,
        )


    def market_data(self, symbols: Sequence[str], handler: Callable[[Any], None], *,
                    private: bool = False,
                    funding_interval_ms: Mapping[str, int] | None = None) -> BybitFeed:
        """The shell's sockets as one feed (:class:`~engine.venues.bybit.feed.BybitFeed`):
        spot and linear market data for ``symbols``, and with ``private`` the account's
        order, execution, position and wallet streams."""
        return BybitFeed(self.stream, symbols, handler, private=private,
                         funding_interval_ms=funding_interval_ms,
                         connect_timeout_s=max(self.cfg.http_timeout_s, 5.0) * 3)

    def time_requests(self, on_written: Callable[[bytes, int, int], None]) -> None:
        """From now on this venue's own REST connection reports each request's socket write
        too (``on_written(body, issued_ns, returned_ns)``: the recording of what was sent)."""
        self.rest.http = TimedHttpClient(self.urls.rest, self.cfg.http_timeout_s, on_written)

    def timed_rest(self, on_written: Callable[[bytes, int, int], None]) -> BybitRest:
        """A REST client on its own connection that reports each request's socket write
        (``on_written(body, issued_ns, returned_ns)``), with this venue's keys and measured
        server-time offset."""
        rest = BybitRest(TimedHttpClient(self.urls.rest, self.cfg.http_timeout_s, on_written),
                         self.clock, self.credentials, recv_window_ms=self.cfg.recv_window_ms)
        rest.time_offset_ms = self.rest.time_offset_ms
        return rest

    def order_lane(self, on_written: Callable[[bytes, int, int], None]) -> BybitExecution:
        """An order executor on its own timed connection (one lane of the shell's sender)."""
        return BybitExecution(self.timed_rest(on_written), self.clock)

    @staticmethod
    async def warm(execution: BybitExecution) -> None:
        """Open an order lane's connection before its first order (TCP and TLS)."""
        http = execution.rest.http
        if isinstance(http, TimedHttpClient):
            await http.warm()


def build_venue(cfg: BybitConfig, clock: Callable[[], float], need_keys: bool = True,
                env: Mapping[str, str] = os.environ) -> BybitVenue:
    """The venue for ``cfg``; ``need_keys`` False (observe mode) skips the key pair."""
    u = resolve_urls(cfg)
    creds = load_bybit_credentials(env) if need_keys else None
    rest = BybitRest(HttpClient(u.rest, timeout_s=cfg.http_timeout_s), clock, creds,
                     recv_window_ms=cfg.recv_window_ms)
    return BybitVenue(cfg, u, clock, creds, rest, BybitExecution(rest, clock))


INSTRUMENTS_PATH = "/v5/market/instruments-info"


@attrs.define
class BybitInstruments:
    """:class:`~engine.venues.base.InstrumentProvider`: spot and linear-perp instruments of
    ``symbols`` from instruments-info (each with its own funding interval).

    ``record(request, answer)`` gets every raw answer (the frame recording's ``info``
    records, from which replay builds the same instruments). A symbol the venue does not list
    is :class:`~engine.venues.base.InstrumentsRefused` (``[funding] symbols``); a transport
    failure or an error answer is :class:`~engine.venues.base.InstrumentsUnreachable`."""

    rest: BybitRest
    symbols: list[str]
    record: InfoRecorder | None = None

    async def discover(self) -> list[Instrument]:
        out: list[Instrument] = []
        missing: list[str] = []
        for category in ("spot", "linear"):
            for symbol in self.symbols:
                params: dict[str, Any] = {"category": category, "symbol": symbol}
                try:
                    result = await self.rest.get(INSTRUMENTS_PATH, params)
                except (HttpError, BybitApiError) as exc:
                    http = self.rest.http
                    raise InstrumentsUnreachable(
                        f"Bybit at {http.scheme}://{http.host_header} unreachable: {exc}"
                    ) from exc
                if self.record is not None:
                    self.record({"path": INSTRUMENTS_PATH, **params}, result)
                got = [i for i in parse_instruments(result) if i.symbol == symbol]
                if not got and symbol not in missing:
                    missing.append(symbol)
                out.extend(got)
        if missing:
            raise InstrumentsRefused(f"[funding] symbols: {', '.join(missing)} not listed on "
                                     "Bybit spot and linear (check the symbol names)",
                                     "funding.symbols")
        return out


def instruments_from_info(answers: Iterable[tuple[Any, Any]]
                          ) -> tuple[dict[str, Instrument], dict[str, Instrument]]:
    """(spot, perp) by symbol from recorded ``(request, answer)`` pairs of
    :class:`BybitInstruments` (others are ignored): the instruments the recorded run used."""
    spot: dict[str, Instrument] = {}
    perp: dict[str, Instrument] = {}
    for request, answer in answers:
        if not isinstance(request, dict) or request.get("path") != INSTRUMENTS_PATH:
            continue
        if not isinstance(answer, dict):
            continue
        for i in parse_instruments(answer):
            (spot if i.kind is InstrumentKind.SPOT else perp)[i.symbol] = i
    return spot, perp


class BybitFactory:
    """The Bybit venue in the registry (name ``"bybit"``): instruments, the market-data feed
    (:meth:`market_data`, the shell interface) and the whole venue (:meth:`build`: REST,
    execution, feed and order lanes over one set of keys)."""

    name = "bybit"
    simulator = "engine.sim.bybit.cli:main"  # python -m engine sim --venue bybit

    def build(self, cfg: BybitConfig, clock: Callable[[], float], need_keys: bool = True,
              env: Mapping[str, str] = os.environ) -> BybitVenue:
        return build_venue(cfg, clock, need_keys, env)

    def instruments(self, cfg: EngineConfig, *, info_url: str | None = None,
                    record: InfoRecorder | None = None) -> BybitInstruments:
        """Public instruments of ``[funding] symbols`` (no keys needed); ``info_url``
        overrides the REST base URL."""
        bcfg = cfg.bybit or BybitConfig()
        u = resolve_urls(bcfg)
        rest = BybitRest(HttpClient(info_url or u.rest, timeout_s=bcfg.http_timeout_s),
                         lambda: time.time() * 1000.0, None,
                         recv_window_ms=bcfg.recv_window_ms)
        symbols = list(cfg.funding.symbols) if cfg.funding is not None else []
        return BybitInstruments(rest, symbols, record)

    def market_data(self, cfg: EngineConfig, symbols: Sequence[str], handler: Any,
                    options: FeedOptions) -> BybitFeed:
        """The feed of :meth:`BybitVenue.market_data` for ``[bybit]``: ``options.account``
        (any non-empty value) adds the private streams (keys from the environment);
        ``options.ws_url`` is not used (three sockets: ``[bybit] ws_*_url``)."""
        venue = build_venue(cfg.bybit or BybitConfig(), lambda: time.time() * 1000.0,
                            need_keys=bool(options.account))
        return venue.market_data(symbols, handler, private=bool(options.account))


FACTORY = BybitFactory()

if TYPE_CHECKING:  # mypy checks the factory against the registry's interface
    _CHECKED: AccountVenueFactory = FACTORY
