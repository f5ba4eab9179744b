"""Build the Bybit venue's pieces from ``[bybit]`` (:class:`~engine.config.BybitConfig`): the
URLs (testnet or mainnet, each overridable), the credentials (only from systemd credentials or
the environment), the REST client, the execution backend and the three streams.

This is the per-venue factory a venue-neutral shell calls; mainnet is refused unless
``allow_live`` (also enforced when the config is loaded). ``FACTORY`` registers it as
``"bybit"`` in :mod:`engine.venues.registry`: it provides the instruments (instruments-info of
the ``[funding]`` symbols, spot and linear) and :func:`build_venue`; it has no single
market-data feed for the engine's one-feed shell yet (three streams, see :class:`BybitVenue`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from engine.config import BybitConfig, EngineConfig
from engine.core.neutral import Instrument, InstrumentKind
from engine.venues.bybit import urls as bybit_urls
from engine.venues.bybit.codec import BybitDecoder
from engine.venues.bybit.execution import BybitExecution
from engine.venues.bybit.http import HttpClient
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


def build_venue(cfg: BybitConfig, clock: Callable[[], float], need_keys: bool = True,
                env: Mapping[str, str] = os.environ) -> BybitVenue:
    """The venue for ``cfg``; ``need_keys`` False (observe mode) skips the key pair."""
    u = resolve_urls(cfg)
    creds = load_bybit_credentials(env) if need_keys else None
    rest = BybitRest(HttpClient(u.rest, timeout_s=cfg.http_timeout_s), clock, creds,
                     recv_window_ms=cfg.recv_window_ms)
    return BybitVenue(cfg, u, clock, creds, rest, BybitExecution(rest, clock))


@attrs.define
class BybitInstruments:
    """:class:`~engine.venues.base.InstrumentProvider`: spot and linear-perp instruments of
    ``symbols`` from instruments-info (each with its own funding interval)."""

    rest: BybitRest
    symbols: list[str]

    async def discover(self) -> list[Instrument]:
        out: list[Instrument] = []
        for category in ("spot", "linear"):
            for symbol in self.symbols:
                out.extend(await self.rest.instruments_info(category, symbol))
        return out


class BybitFactory:
    """The Bybit venue in the registry (name ``"bybit"``)."""

    name = "bybit"
    simulator = "engine.sim.bybit.cli:main"  # python -m engine sim --venue bybit

    def build(self, cfg: BybitConfig, clock: Callable[[], float], need_keys: bool = True,
              env: Mapping[str, str] = os.environ) -> BybitVenue:
        return build_venue(cfg, clock, need_keys, env)

    def instruments(self, cfg: EngineConfig, *, info_url: str | None = None,
                    record: Any = None) -> BybitInstruments:
        """Public instruments of ``[funding] symbols`` (no keys needed); ``info_url``
        overrides the REST base URL."""
        bcfg = cfg.bybit or BybitConfig()
        u = resolve_urls(bcfg)
        rest = BybitRest(HttpClient(info_url or u.rest, timeout_s=bcfg.http_timeout_s),
                         lambda: time.time() * 1000.0, None,
                         recv_window_ms=bcfg.recv_window_ms)
        symbols = list(cfg.funding.symbols) if cfg.funding is not None else []
        return BybitInstruments(rest, symbols)


FACTORY = BybitFactory()
