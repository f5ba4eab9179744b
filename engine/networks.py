"""The pure rules of ``[venue] network``: which network the engine trades on. One setting
decides both the ``[trading] allow_live`` gate and the signing chain, validated against the
venue URLs (at config load) and the venue actually discovered there (at start).

These rules sit below ``engine.config``, which applies them at load, so that loading a config
(and so the core, which imports its config types) imports no venue package. The Hyperliquid
venue (:mod:`engine.venues.hyperliquid.network`) re-exports them and adds the probe of the
discovered venue.

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

import ipaddress
from typing import Final
from urllib.parse import urlparse

import attrs

MAINNET: Final = "mainnet"
TESTNET: Final = "testnet"
SIM: Final = "sim"
NETWORKS: Final = (MAINNET, TESTNET, SIM)

HOST_MAINNET: Final = "mainnet"
HOST_TESTNET: Final = "testnet"
HOST_LOOPBACK: Final = "loopback"
HOST_OTHER: Final = "other"

_MAINNET_DOMAIN: Final = "hyperliquid.xyz"
_TESTNET_DOMAIN: Final = "hyperliquid-testnet.xyz"
SIM_STATS_PATH: Final = "/sim/stats"


class NetworkError(ValueError):
    """The network setting does not fit the URLs or the venue; the message names the key."""


@attrs.frozen
class Network:
    """The effective network and what it decides."""

    name: str

    @property
    def signs_mainnet(self) -> bool:
        """The L1 signing chain: phantom-agent source ``"a"`` (mainnet, sim) or ``"b"``."""
        return self.name != TESTNET

    @property
    def needs_allow_live(self) -> bool:
        """Trade mode refuses this network unless ``[trading] allow_live = true``."""
        return self.name == MAINNET


def _on_domain(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def host_class(url: str) -> str:
    """``mainnet`` / ``testnet`` (official hosts), ``loopback`` or ``other`` for ``url``."""
    host = (urlparse(url).hostname or "").lower().rstrip(".")
    if _on_domain(host, _TESTNET_DOMAIN):
        return HOST_TESTNET
    if _on_domain(host, _MAINNET_DOMAIN):
        return HOST_MAINNET
    if host == "localhost" or host.endswith(".localhost"):
        return HOST_LOOPBACK
    try:
        return HOST_LOOPBACK if ipaddress.ip_address(host).is_loopback else HOST_OTHER
    except ValueError:
        return HOST_OTHER


def resolve_network(network: str, ws_url: str, info_url: str, sim_enabled: bool
                    ) -> Network | None:
    """The effective network of a configuration (rules in the module docstring); ``None``
    when unset and not implied by the URLs. Raises :class:`NetworkError` on a mismatch."""
    if network not in ("", *NETWORKS):
        raise NetworkError(f"[venue] network must be one of {', '.join(NETWORKS)}; "
                           f"got {network!r}")
    if sim_enabled:
        if network not in ("", SIM):
            raise NetworkError(f"[venue] network = {network!r} but [sim] enabled runs the "
                               f"embedded simulator: set network = \"sim\" or disable [sim]")
        return Network(SIM)
    classes = {host_class(ws_url), host_class(info_url)}
    where = f"ws_url {ws_url!r}, info_url {info_url!r}"
    if network == SIM:
        if classes != {HOST_LOOPBACK}:
            raise NetworkError(f"[venue] network = \"sim\" needs loopback venue URLs (the "
                               f"simulator runs on this host); got {where}")
        return Network(SIM)
    if network == MAINNET:
        if HOST_TESTNET in classes:
            raise NetworkError(f"[venue] network = \"mainnet\" but a venue URL is the "
                               f"Hyperliquid testnet ({where})")
        return Network(MAINNET)
    if network == TESTNET:
        if HOST_MAINNET in classes:
            raise NetworkError(f"[venue] network = \"testnet\" but a venue URL is the "
                               f"Hyperliquid mainnet ({where})")
        return Network(TESTNET)
    if classes == {HOST_MAINNET}:
        return Network(MAINNET)
    if classes == {HOST_TESTNET}:
        return Network(TESTNET)
    return None


def unresolved_message(ws_url: str, info_url: str) -> str:
    return (f"trade mode needs [venue] network = \"mainnet\", \"testnet\" or \"sim\": the venue "
            f"URLs (ws_url {ws_url!r}, info_url {info_url!r}) do not say which network "
            f"signs")


def needs_discovery_check(ws_url: str, info_url: str, sim_enabled: bool) -> bool:
    """Whether the venue must be probed (not the embedded simulator, not both URLs on an
    official Hyperliquid host)."""
    if sim_enabled:
        return False
    classes = {host_class(ws_url), host_class(info_url)}
    return not (classes <= {HOST_MAINNET} or classes <= {HOST_TESTNET})


def check_discovered(network: Network, is_simulator: bool, info_url: str) -> None:
    """Raise :class:`NetworkError` when the venue found at ``info_url`` contradicts the
    network (the simulator for ``mainnet``/``testnet``, anything else for ``sim``)."""
    if network.name == SIM and not is_simulator:
        raise NetworkError(f"[venue] network = \"sim\" but the venue at {info_url} is not the "
                           f"engine's simulator (no {SIM_STATS_PATH}): set the network it is")
    if network.name != SIM and is_simulator:
        raise NetworkError(f"[venue] network = \"{network.name}\" but the venue at {info_url} "
                           f"is the engine's simulator: set [venue] network = \"sim\"")
