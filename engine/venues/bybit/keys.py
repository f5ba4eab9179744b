"""The Bybit API key pair: ``$CREDENTIALS_DIRECTORY/bybit_api_key`` and ``…/bybit_api_secret``
(systemd ``LoadCredential=``), else the environment variables ``BYBIT_API_KEY`` and
``BYBIT_API_SECRET``. Errors name the source, never the value; the pair goes straight into a
:class:`~engine.venues.bybit.signing.BybitCredentials`, whose repr hides the secret."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Final

from engine.secrets import SecretsError, load_credential
from engine.venues.bybit.signing import BybitCredentials

log = logging.getLogger(__name__)

KEY_CREDENTIAL: Final = "bybit_api_key"
SECRET_CREDENTIAL: Final = "bybit_api_secret"
KEY_ENV: Final = "BYBIT_API_KEY"
SECRET_ENV: Final = "BYBIT_API_SECRET"
HOW_TO_PROVIDE: Final = (
    f"provide the Bybit key pair through systemd credentials (LoadCredential={KEY_CREDENTIAL}:<file>"
    f" and {SECRET_CREDENTIAL}:<file>) or the {KEY_ENV} and {SECRET_ENV} environment variables"
)


def load_bybit_credentials(env: Mapping[str, str] = os.environ) -> BybitCredentials:
    """The key pair from systemd credentials or the environment (see module); raises
    :class:`~engine.secrets.SecretsError` naming what is missing."""
    key = load_credential(KEY_CREDENTIAL, KEY_ENV, env)
    secret = load_credential(SECRET_CREDENTIAL, SECRET_ENV, env)
    missing = [n for n, v in ((KEY_ENV, key), (SECRET_ENV, secret)) if v is None]
    if key is None or secret is None:
        raise SecretsError(f"no Bybit {' and '.join(missing)} found; {HOW_TO_PROVIDE}")
    creds = BybitCredentials(key[0].strip(), secret[0].strip())
    log.info("Bybit API key loaded from %s (secret from %s); %r", key[1], secret[1], creds)
    return creds
