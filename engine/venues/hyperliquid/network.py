"""Which network the engine trades on: one setting (``[venue] network``) decides both the
``[trading] allow_live`` gate and the signing chain, validated against the venue URLs and the
venue actually discovered there. The pure rules are in :mod:`engine.networks` (below
``engine.config``, which applies them at load) and re-exported here; this module adds the probe
of the discovered venue and :func:`network_of`.

Networks: ``mainnet`` (real money: trade mode needs ``allow_live``; signs with the phantom-agent
source ``"a"``), ``testnet`` (source ``"b"``), ``sim`` (the engine's exchange simulator, which
verifies source ``"a"`` like the real venue; never needs ``allow_live``).

URL hosts fall in four classes: the official mainnet host (``hyperliquid.xyz`` and its
subdomains), the official testnet host (``hyperliquid-testnet.xyz`` and subdomains), loopback
(``localhost``, ``127.0.0.0/8``, ``::1``) and any other host. Rules (:func:`resolve_network`):

* ``[sim] enabled`` (the embedded simulator; the URLs are ignored): the network is ``sim``;
  any other explicit value is an error.
* ``sim``: both URLs must be loopback (the simulator runs on this host).
* ``mainnet``: neither URL may be the testnet host; ``testnet``: neither may be the mainnet host.
  Any other host (a node of your own, a tunnel on loopback) is allowed for both: the setting,
  not the host name, decides.
* unset (``""``): ``mainnet`` / ``testnet`` when both URLs are on that official host, else
  unresolved — trade mode then refuses to start and asks for the key (observe and paper never
  sign, so they need no network).

The discovered venue (:func:`check_discovered`): a venue that answers the simulator's
``GET /sim/stats`` is the simulator. Trade mode requires it for ``sim`` and refuses it for
``mainnet`` / ``testnet`` (checked at start, before any connection that could sign), so a
``sim`` setting pointed at a real node through a tunnel can never sign real orders.
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
