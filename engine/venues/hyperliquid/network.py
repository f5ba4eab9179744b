"""Which network the engine trades on: one setting (``[venue] network``) decides both the
``[trading] allow_live`` gate and the signing chain, validated against the venue URLs and the
venue actually discovered there. The pure rules are in :mod:`engine.networks` (below
``engine.config``, which applies them at load) and re-exported here; this module adds the probe
of the discovered venue and :func:`network_of`.

The networks, the host classes and the resolution rules are documented once, in
:mod:`engine.networks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

import httpx

from engine.networks import (  # re-exported: the rules live below engine.config
    HOST_LOOPBACK,
    HOST_MAINNET,
    HOST_OTHER,
    HOST_TESTNET,
    MAINNET,
    NETWORKS,
    SIM,
    SIM_STATS_PATH,
    TESTNET,
    Network,
    NetworkError,
    check_discovered,
    host_class,
    needs_discovery_check,
    resolve_network,
    unresolved_message,
)

if TYPE_CHECKING:
    from engine.config import EngineConfig

__all__ = [
    "MAINNET", "TESTNET", "SIM", "NETWORKS", "HOST_MAINNET", "HOST_TESTNET", "HOST_LOOPBACK",
    "HOST_OTHER", "SIM_STATS_PATH", "NetworkError", "Network", "host_class", "resolve_network",
    "unresolved_message", "needs_discovery_check", "check_discovered", "network_of",
    "sim_stats_url", "probe_simulator",
]


def network_of(cfg: EngineConfig) -> Network | None:
    """The network ``[venue] network`` (with ``[sim]`` and the URLs) resolves to, or None when
    unset and not implied (trade mode then refuses to start). Config loading already refused
    a mismatch; the rules are in :mod:`engine.networks`."""
    v = cfg.venue
    return resolve_network(v.network, v.ws_url, v.info_url, cfg.sim.enabled)


def sim_stats_url(info_url: str) -> str:
    u = urlparse(info_url)
    return f"{u.scheme}://{u.netloc}{SIM_STATS_PATH}"


async def probe_simulator(info_url: str, timeout_s: float,
                          transport: httpx.AsyncBaseTransport | None = None) -> bool:
    """True when the venue serving ``info_url`` is the engine's simulator: its
    ``GET /sim/stats`` answers 200 with its stats object. Any failure means "not the
    simulator" (so a ``sim`` setting fails closed)."""
    try:
        async with httpx.AsyncClient(timeout=timeout_s, transport=transport) as client:
            resp = await client.get(sim_stats_url(info_url))
        if resp.status_code != 200:
            return False
        doc = resp.json()
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(doc, dict) and "virtual_ms" in doc and "seed" in doc
