"""The Hyperliquid agent signer, built from the key material :mod:`engine.secrets` loads
(systemd credentials or ``ENGINE_AGENT_KEY``): the secrets module knows no signer, the venue
knows its curve. Errors name the source, never the value; the :class:`Signer`'s repr shows only
the agent address."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from engine.secrets import AgentKey, SecretsError, load_agent_key
from engine.venues.hyperliquid.signing import Signer

log = logging.getLogger(__name__)


def signer_from_key(key: AgentKey) -> Signer:
    """The :class:`Signer` of ``key``; :class:`~engine.secrets.SecretsError` (naming the key's
    source, with no exception context) when it is not a valid secp256k1 private key."""
    signer: Signer | None
    try:
        signer = Signer(key.secret_bytes())
    except ValueError:
        signer = None
    if signer is None:  # raised outside the except block: no exception context kept
        raise SecretsError(f"agent key from {key.source} is not a valid secp256k1 key")
    return signer


def load_signer(env: Mapping[str, str] = os.environ) -> Signer:
    """The agent :class:`Signer` from the configured key (see :func:`engine.secrets.load_agent_key`
    for the sources); logs where it came from and the agent address, never the key."""
    key = load_agent_key(env)
    signer = signer_from_key(key)
    log.info("agent key loaded from %s; agent address %s", key.source, signer.address)
    return signer
