"""Bybit v5 HMAC signing: vectors computed from the documented string-to-sign rules with pybit's
public dummy credentials, and pybit itself (``pybit._http_manager``) as the independent
reference for REST payload building and signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.secrets import SecretsError
from engine.venues.bybit.keys import load_bybit_credentials
from engine.venues.bybit.signing import BybitCredentials, json_body, query_string

# pybit's public dummy test credentials (tests/test_pybit.py), not a real account
KEY = "CFEJUGQEQPPHGOHGHM"
SECRET = "VDFZSSPUTKRJMXAVMJXBHEXIPZNZJIZUBVRQ"


def test_docs_string_to_sign_vectors() -> None:
    """The GET/POST examples of Bybit's guide (docs/v5/guide.mdx) with the dummy key."""
    c = BybitCredentials(KEY, SECRET)
    assert c.sign_rest(1658384314791, 5000, "category=option&symbol=BTC-29JUL22-25000-C") == (
        "0bfc5f1d29d38ee7f4d451a9f265f4c3b5a57119d175917df05068384d7955c7"
    )
    assert c.sign_rest(1658385579423, 5000, '{"category": "option"}') == (
        "7da1f1187f9d354ada1258023a22d9aef67163261c0d42ad52bb27cc30a3fc0d"
    )
    body = (
        '{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit",'
        '"qty":"0.001","price":"20000","timeInForce":"PostOnly","orderLinkId":"sim-0001"}'
    )
    assert c.sign_rest(1672211928338, 5000, body) == (
        "a40b53445b3bdc84384be9570904b12e8d2996555550c44d5ab6286c12c78818"
    )


def test_ws_auth_vector() -> None:
    c = BybitCredentials(KEY, SECRET)
    key, expires, sig = c.ws_auth_args(1662350400000)
    assert (key, expires) == (KEY, 1662350400000)
    assert sig == "06f9ae2e99920f9b2838bea70215b2b1f1e30ae7665078e97d0a8b76b47d1094"


def test_pybit_sample_param_str() -> None:
    """pybit's own unit-test payload, signed by pybit's generate_signature and by us."""
    pybit_http = pytest.importorskip("pybit._http_manager")
    expected = pybit_http.generate_signature(False, SECRET, "12345mykey6789payload")
    assert expected == "41a5ab59eff2a5fc34ac3fcb66df173928373d268d9f188127fc31cdc3dcb842"
    assert BybitCredentials("k", SECRET).sign(b"12345mykey6789payload") == expected


params_st = st.dictionaries(
    st.sampled_from(["category", "symbol", "side", "orderType", "qty", "price", "orderLinkId",
                     "limit", "startTime", "cursor"]),
    st.one_of(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1,
                      max_size=12), st.integers(0, 10**13), st.none()),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(params=params_st, ts=st.integers(10**12, 2 * 10**12), rw=st.integers(1000, 60000))
def test_get_signature_equals_pybit(params: dict[str, object], ts: int, rw: int) -> None:
    pybit_http = pytest.importorskip("pybit._http_manager")
    mgr = pybit_http._V5HTTPManager(api_key=KEY, api_secret=SECRET)
    payload = mgr.prepare_payload("GET", dict(params))
    assert query_string(params) == payload
    assert BybitCredentials(KEY, SECRET).sign_rest(ts, rw, query_string(params)) == mgr._auth(
        payload, rw, ts
    )


@settings(max_examples=200, deadline=None)
@given(params=params_st, ts=st.integers(10**12, 2 * 10**12))
def test_post_signature_equals_pybit_over_the_same_body(params: dict[str, object], ts: int) -> None:
    """pybit signs ``json.dumps`` (with spaces); we send compact JSON. Each signature is over
    the exact bytes sent, so both must agree on the same body string."""
    pybit_http = pytest.importorskip("pybit._http_manager")
    mgr = pybit_http._V5HTTPManager(api_key=KEY, api_secret=SECRET)
    body = json_body(params)
    assert json.loads(body) == {k: v for k, v in params.items() if v is not None}
    ours = BybitCredentials(KEY, SECRET).sign_rest(ts, 5000, body)
    assert ours == mgr._auth(body.decode(), 5000, ts)
    assert ours == hmac.new(SECRET.encode(), f"{ts}{KEY}5000".encode() + body,
                            hashlib.sha256).hexdigest()


def test_headers_and_repr_hide_the_secret() -> None:
    c = BybitCredentials(KEY, SECRET)
    h = c.rest_headers(1, 5000, "")
    assert set(h) == {"X-BAPI-API-KEY", "X-BAPI-TIMESTAMP", "X-BAPI-SIGN", "X-BAPI-SIGN-TYPE",
                      "X-BAPI-RECV-WINDOW"}
    assert SECRET not in repr(c) and SECRET not in str(c) and KEY not in repr(c)
    assert repr(c).endswith("GHM)")


def test_keys_from_env_and_credentials_dir(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    c = load_bybit_credentials({"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET})
    assert c.api_key == KEY
    (tmp_path / "bybit_api_key").write_text("K2ZZ\n")
    (tmp_path / "bybit_api_secret").write_text("S2-secret-value\n")
    c2 = load_bybit_credentials({"CREDENTIALS_DIRECTORY": str(tmp_path),
                                 "BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET})
    assert c2.api_key == "K2ZZ"
    assert SECRET not in caplog.text and "S2-secret-value" not in caplog.text
    with pytest.raises(SecretsError, match="BYBIT_API_SECRET"):
        load_bybit_credentials({"BYBIT_API_KEY": KEY})
    with pytest.raises(SecretsError, match="BYBIT_API_KEY and BYBIT_API_SECRET"):
        load_bybit_credentials({})


def test_pybit_is_never_a_runtime_dependency() -> None:
    import ast
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("pybit") for d in meta["dependencies"])
    assert any(d.startswith("pybit") for d in meta["optional-dependencies"]["test"])
    for path in [*root.glob("engine/**/*.py"), *root.glob("fsm/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "pybit" for n in names), path
