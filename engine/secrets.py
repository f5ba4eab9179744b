"""Agent key loading and the no-secrets-in-config guard: owns where the private key comes from.

Sources, in order:

1. ``$CREDENTIALS_DIRECTORY/agent_key`` when systemd provides ``CREDENTIALS_DIRECTORY``
   (``LoadCredential=agent_key:/path/to/key`` or ``LoadCredentialEncrypted=`` in the unit) and
   the file exists;
2. else the environment variable ``ENGINE_AGENT_KEY``.

The value is 64 hex digits, optionally ``0x``-prefixed; surrounding whitespace is ignored. Errors
name the source that was tried, never the value. :func:`load_agent_key` returns the key
material as an :class:`AgentKey` (whose repr shows only its source); this module knows no
signer: the venue builds its signer from the material
(:func:`engine.venues.hyperliquid.keys.load_signer`).

The predecessor committed private keys in its TOML configs; :func:`refuse_secrets_in_config`
rejects any config text holding a 64-hex-digit run (with or without ``0x``), comments included.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

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


class AgentKey:
    """The agent private key material (32 bytes) and where it came from. Never shows the key:
    the repr names the source only; pickling and copying are refused."""

    __slots__ = ("_secret", "_source")

    _secret: bytes
    _source: str

    def __init__(self, secret: bytes, source: str) -> None:
        if not isinstance(secret, bytes) or len(secret) != 32:
            raise ValueError("agent key material is exactly 32 bytes")
        object.__setattr__(self, "_secret", secret)
        object.__setattr__(self, "_source", source)

    @property
    def source(self) -> str:
        """Where the key came from (``$CREDENTIALS_DIRECTORY/agent_key (...)`` or the env var)."""
        return self._source

    def secret_bytes(self) -> bytes:
        """The 32 key bytes: for the venue's signer only, never to be logged or written."""
        return self._secret

    def __repr__(self) -> str:
        return f"AgentKey(source={self._source!r})"

    __str__ = __repr__

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("AgentKey is immutable")

    def __reduce__(self) -> Any:
        raise TypeError("AgentKey holds a private key and cannot be pickled or copied")

    def __copy__(self) -> AgentKey:
        raise TypeError("AgentKey holds a private key and cannot be copied")

    def __deepcopy__(self, memo: object) -> AgentKey:
        raise TypeError("AgentKey holds a private key and cannot be copied")


def _parse_key(raw: str, source: str) -> AgentKey:
    text = raw.strip()
    if not text:
        raise SecretsError(f"agent key from {source} is empty; {HOW_TO_PROVIDE}")
    if _KEY_RE.fullmatch(text) is None:
        raise SecretsError(
            f"agent key from {source} is not 64 hex digits (optionally 0x-prefixed); "
            f"got {len(text)} characters"
        )
    return AgentKey(bytes.fromhex(text[2:] if text[:2] in ("0x", "0X") else text), source)


def load_agent_key(env: Mapping[str, str] = os.environ) -> AgentKey:
    """The agent key material from systemd credentials or ``ENGINE_AGENT_KEY`` (see module).

    Checks the form (64 hex digits); whether it is a valid key for the venue's curve is the
    venue's signer's check (:func:`engine.venues.hyperliquid.keys.load_signer`)."""
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
            return _parse_key(raw, source)
        tried.append(f"{source}: no such file")
    else:
        tried.append(f"${CREDENTIALS_DIRECTORY_ENV}: not set")
    raw_env = env.get(AGENT_KEY_ENV)
    if raw_env is not None:
        return _parse_key(raw_env, f"environment variable {AGENT_KEY_ENV}")
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
