"""Agent key loading and the no-secrets-in-config guard: owns where the private key comes from.

Sources, in order:

1. ``$CREDENTIALS_DIRECTORY/agent_key`` when systemd provides ``CREDENTIALS_DIRECTORY``
   (``LoadCredential=agent_key:/path/to/key`` or ``LoadCredentialEncrypted=`` in the unit) and
   the file exists;
2. else the environment variable ``ENGINE_AGENT_KEY``.

The value is 64 hex digits, optionally ``0x``-prefixed; surrounding whitespace is ignored. Errors
name the source that was tried, never the value. The key goes straight into a
:class:`~engine.venues.hyperliquid.signing.Signer`, whose repr shows only the agent address.

The predecessor committed private keys in its TOML configs; :func:`refuse_secrets_in_config`
rejects any config text holding a 64-hex-digit run (with or without ``0x``), comments included.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from engine.venues.hyperliquid.signing import Signer

log = logging.getLogger(__name__)

CREDENTIALS_DIRECTORY_ENV: Final = "CREDENTIALS_DIRECTORY"
CREDENTIAL_NAME: Final = "agent_key"
AGENT_KEY_ENV: Final = "ENGINE_AGENT_KEY"

HOW_TO_PROVIDE: Final = (
    f"provide the agent key through systemd credentials (LoadCredential={CREDENTIAL_NAME}:<file>"
    f" → $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}) or the {AGENT_KEY_ENV} environment variable"
)

_KEY_RE: Final = re.compile(r"(?:0[xX])?[0-9a-fA-F]{64}")
_SECRET_RUN_RE: Final = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64,}")


class SecretsError(RuntimeError):
    """The agent key could not be loaded, or a config holds something that looks like a key."""


def _parse_key(raw: str, source: str) -> Signer:
    text = raw.strip()
    if not text:
        raise SecretsError(f"agent key from {source} is empty; {HOW_TO_PROVIDE}")
    if _KEY_RE.fullmatch(text) is None:
        raise SecretsError(
            f"agent key from {source} is not 64 hex digits (optionally 0x-prefixed); "
            f"got {len(text)} characters"
        )
    signer: Signer | None
    try:
        signer = Signer.from_hex(text)
    except ValueError:
        signer = None
    if signer is None:  # raised outside the except block: no exception context kept
        raise SecretsError(f"agent key from {source} is not a valid secp256k1 key")
    return signer


def load_agent_key(env: Mapping[str, str] = os.environ) -> Signer:
    """The agent :class:`Signer` from systemd credentials or ``ENGINE_AGENT_KEY`` (see module)."""
    tried: list[str] = []
    cred_dir = env.get(CREDENTIALS_DIRECTORY_ENV)
    if cred_dir:
        path = Path(cred_dir) / CREDENTIAL_NAME
        source = f"${CREDENTIALS_DIRECTORY_ENV}/{CREDENTIAL_NAME} ({path})"
        if path.is_file():
            # raise outside the except block: the decode error's context holds the bytes
            raw: str | None
            try:
                raw, failure = path.read_text(encoding="ascii"), None
            except (OSError, UnicodeDecodeError) as exc:
                raw, failure = None, type(exc).__name__
            if raw is None:
                raise SecretsError(f"cannot read agent key from {source}: {failure}")
            signer = _parse_key(raw, source)
            log.info("agent key loaded from %s; agent address %s", source, signer.address)
            return signer
        tried.append(f"{source}: no such file")
    else:
        tried.append(f"${CREDENTIALS_DIRECTORY_ENV}: not set")
    raw_env = env.get(AGENT_KEY_ENV)
    if raw_env is not None:
        source = f"environment variable {AGENT_KEY_ENV}"
        signer = _parse_key(raw_env, source)
        log.info("agent key loaded from %s; agent address %s", source, signer.address)
        return signer
    tried.append(f"${AGENT_KEY_ENV}: not set")
    raise SecretsError(f"no agent key found (tried {'; '.join(tried)}); {HOW_TO_PROVIDE}")


def refuse_secrets_in_config(text: str, source: str) -> None:
    """Raise :class:`SecretsError` if config ``text`` (from ``source``) contains a run of 64 or
    more hex digits, with or without ``0x``: private keys must never be in config files."""
    lines = [text.count("\n", 0, m.start()) + 1 for m in _SECRET_RUN_RE.finditer(text)]
    if lines:
        where = ", ".join(str(n) for n in sorted(set(lines)))
        raise SecretsError(
            f"{source}: line {where} contains a 64-hex-digit string that looks like a private "
            f"key; remove it (and rotate that key if it was ever committed): {HOW_TO_PROVIDE}"
        )


def load_credential(name: str, env_var: str,
                    env: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """A non-key secret (ops token, webhook URL): ``$CREDENTIALS_DIRECTORY/<name>`` when that
    file exists, else the environment variable ``env_var``; ``None`` when neither is set.

    Returns ``(value, source)`` with surrounding whitespace stripped. ``source`` names where it
    came from and never contains the value. An unreadable or empty credential raises
    :class:`SecretsError` naming the source.
    """
    cred_dir = env.get(CREDENTIALS_DIRECTORY_ENV)
    if cred_dir:
        path = Path(cred_dir) / name
        if path.is_file():
            source = f"${CREDENTIALS_DIRECTORY_ENV}/{name}"
            value: str | None
            try:
                value, failure = path.read_text(encoding="utf-8").strip(), None
            except (OSError, UnicodeDecodeError) as exc:
                value, failure = None, type(exc).__name__
            if value is None:
                raise SecretsError(f"cannot read {source}: {failure}")
            if not value:
                raise SecretsError(f"{source} is empty")
            return value, source
    raw = env.get(env_var)
    if raw is None:
        return None
    if not raw.strip():
        raise SecretsError(f"environment variable {env_var} is empty")
    return raw.strip(), f"environment variable {env_var}"
