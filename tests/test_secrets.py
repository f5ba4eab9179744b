"""Agent key loading (systemd credentials / env) and the no-secrets-in-config guard.

The key must never show up in an exception message, a repr, or a log record. ``engine.secrets``
returns key material (:class:`AgentKey`); the Hyperliquid venue builds the signer from it
(``load_signer``), so most cases below go through ``load_signer`` and check both halves.
"""

from __future__ import annotations

import copy
import logging
import pickle
import re
from pathlib import Path

import pytest

from engine.secrets import (
    AGENT_KEY_ENV,
    CREDENTIALS_DIRECTORY_ENV,
    AgentKey,
    SecretsError,
    load_agent_key,
    refuse_secrets_in_config,
)
from engine.venues.hyperliquid.keys import load_signer, signer_from_key
from engine.venues.hyperliquid.signing import Signer

KEY = "0123456789012345678901234567890123456789012345678901234567890123"
ADDRESS = "0x14791697260E4c9A71f18484C9f997B308e59325"
OTHER_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
OTHER_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def assert_no_secret(text: str, *secrets: str) -> None:
    """No 16-hex-digit fragment (start or end of any hex run) of the secrets is in ``text``."""
    low = text.lower()
    for s in secrets:
        for run in re.findall(r"[0-9a-f]{16,}", s.lower().removeprefix("0x")):
            assert run[:16] not in low and run[-16:] not in low, "key material leaked"


def exc_texts(exc: BaseException) -> str:
    parts = [str(exc), repr(exc)]
    e: BaseException | None = exc
    while e is not None:
        parts += [str(e), repr(e)]
        e = e.__cause__ or e.__context__
    return "\n".join(parts)


@pytest.fixture(autouse=True)
def _capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def creds(tmp_path: Path, content: str) -> dict[str, str]:
    (tmp_path / "agent_key").write_text(content)
    return {CREDENTIALS_DIRECTORY_ENV: str(tmp_path)}


@pytest.mark.parametrize(
    "content", [KEY, "0x" + KEY, "  0x" + KEY + "\n", KEY.upper(), "0X" + KEY, "\t" + KEY + "\r\n"]
)
def test_loads_from_systemd_credentials(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    signer = load_signer(creds(tmp_path, content))
    assert isinstance(signer, Signer) and signer.address == ADDRESS
    assert_no_secret(repr(signer) + str(signer) + caplog.text, KEY)
    assert "agent_key" in caplog.text and ADDRESS in caplog.text


@pytest.mark.parametrize("content", [KEY, "0x" + KEY, " " + KEY + " \n"])
def test_loads_from_env(content: str, caplog: pytest.LogCaptureFixture) -> None:
    signer = load_signer({AGENT_KEY_ENV: content})
    assert signer.address == ADDRESS
    assert_no_secret(repr(signer) + caplog.text, KEY)
    assert AGENT_KEY_ENV in caplog.text


def test_credentials_win_over_env(tmp_path: Path) -> None:
    env = creds(tmp_path, OTHER_KEY) | {AGENT_KEY_ENV: KEY}
    assert load_signer(env).address == OTHER_ADDRESS


def test_env_is_used_when_the_credential_file_is_absent(tmp_path: Path) -> None:
    env = {CREDENTIALS_DIRECTORY_ENV: str(tmp_path), AGENT_KEY_ENV: KEY}
    assert load_signer(env).address == ADDRESS


def test_nothing_configured_names_every_source_tried(tmp_path: Path) -> None:
    with pytest.raises(SecretsError) as ei:
        load_signer({CREDENTIALS_DIRECTORY_ENV: str(tmp_path)})
    msg = str(ei.value)
    assert "agent_key" in msg and "no such file" in msg and AGENT_KEY_ENV in msg
    assert "LoadCredential" in msg
    with pytest.raises(SecretsError, match=f"{CREDENTIALS_DIRECTORY_ENV}: not set"):
        load_signer({})


BAD_VALUES = [
    KEY[:-1],  # 63 digits
    KEY + "0",  # 65 digits
    "0x" + KEY[:-2] + "zz",  # not hex
    KEY[:32] + " " + KEY[32:],  # split
    "0" * 64,  # zero scalar
    "f" * 64,  # ≥ curve order
    "0x" + "f" * 64,
    "",
    "   \n",
    "ENGINE_AGENT_KEY=" + KEY,  # a whole env-file line pasted in
]


@pytest.mark.parametrize("value", BAD_VALUES)
def test_bad_env_value_errors_never_echo_it(value: str, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SecretsError) as ei:
        load_signer({AGENT_KEY_ENV: value})
    text = exc_texts(ei.value)
    assert AGENT_KEY_ENV in str(ei.value)
    if value.strip():
        assert_no_secret(text + caplog.text, value)
    assert ei.value.__cause__ is None and ei.value.__context__ is None


@pytest.mark.parametrize("value", BAD_VALUES)
def test_bad_credential_file_errors_never_echo_it(
    tmp_path: Path, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(SecretsError) as ei:
        load_signer(creds(tmp_path, value))
    assert "agent_key" in str(ei.value)
    if value.strip():
        assert_no_secret(exc_texts(ei.value) + caplog.text, value)


def test_unreadable_credential_file(tmp_path: Path) -> None:
    (tmp_path / "agent_key").write_bytes(b"\xff\xfe" + KEY.encode())
    with pytest.raises(SecretsError, match="cannot read") as ei:
        load_signer({CREDENTIALS_DIRECTORY_ENV: str(tmp_path)})
    assert_no_secret(exc_texts(ei.value), KEY)


def test_default_env_is_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CREDENTIALS_DIRECTORY_ENV, raising=False)
    monkeypatch.setenv(AGENT_KEY_ENV, "0x" + KEY)
    assert load_signer().address == ADDRESS


def test_load_agent_key_returns_key_material_not_a_signer(caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    key = load_agent_key({AGENT_KEY_ENV: "0x" + KEY})
    assert isinstance(key, AgentKey) and not isinstance(key, Signer)
    assert key.secret_bytes() == bytes.fromhex(KEY)
    assert AGENT_KEY_ENV in key.source
    assert_no_secret(repr(key) + str(key) + caplog.text, KEY)
    assert signer_from_key(key).address == ADDRESS


def test_agent_key_cannot_be_pickled_copied_or_changed() -> None:
    key = load_agent_key({AGENT_KEY_ENV: KEY})
    for attempt in (lambda: pickle.dumps(key), lambda: copy.copy(key),
                    lambda: copy.deepcopy(key)):
        with pytest.raises(TypeError):
            attempt()
    with pytest.raises(AttributeError):
        key._secret = b"\0" * 32  # type: ignore[misc]


@pytest.mark.parametrize("value", ["0" * 64, "f" * 64])
def test_out_of_range_material_is_refused_by_the_venue_signer(value: str) -> None:
    """The form is the secrets module's check, the curve the venue's: both name the source."""
    key = load_agent_key({AGENT_KEY_ENV: value})
    with pytest.raises(SecretsError, match=AGENT_KEY_ENV) as ei:
        signer_from_key(key)
    assert ei.value.__cause__ is None and ei.value.__context__ is None


# --- refuse_secrets_in_config -------------------------------------------------------------------

CLEAN = """\
[venue]
ws_url = "wss://api.hyperliquid.xyz/ws"
account = "0x1719884eb866cb12b2287399b15f7db5e7d775ea"  # 40 hex: an address is fine
cloid_prefix = "0x0de3e244a8f44fc28a6b7bc852d66d19"
"""


def test_clean_config_passes() -> None:
    refuse_secrets_in_config(CLEAN, "config/prod.toml")


@pytest.mark.parametrize(
    "line",
    [
        f'private_key = "0x{KEY}"',
        f'private_key = "{KEY}"',
        f"private_key = '0X{KEY.upper()}'",
        f"# private_key = 0x{KEY}   (commented out still leaks)",
        f'keys = ["{OTHER_KEY}"]',
        f'blob = "{KEY}{KEY}"',  # a longer hex run holds a key too
    ],
)
def test_secret_looking_strings_are_refused(line: str, caplog: pytest.LogCaptureFixture) -> None:
    text = CLEAN + line + "\n"
    with pytest.raises(SecretsError) as ei:
        refuse_secrets_in_config(text, "config/prod.toml")
    msg = str(ei.value)
    assert "config/prod.toml" in msg and "line 5" in msg
    assert "CREDENTIALS_DIRECTORY" in msg and AGENT_KEY_ENV in msg
    assert_no_secret(exc_texts(ei.value) + caplog.text, KEY, OTHER_KEY)
