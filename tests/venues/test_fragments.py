"""Order actions assembled from fragments are byte-identical to the dict path and the SDK.

``ioc_order_fragment`` / ``ioc_action_fragments`` / ``Signer.payload_json`` /
``EncodedRequest`` (the order path, engine/venues/hyperliquid/signing.py and client.py) must
produce exactly ``msgpack.packb`` of the ``ioc_order_wire`` dicts, the JSON an order-keeping
encoder writes for the payload and the post, and the SDK's signature.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgpack
import msgspec
from hyperliquid.utils import signing as sdk
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.venues.hyperliquid import signing as S
from engine.venues.hyperliquid.posts import EncodedRequest
from engine.venues.hyperliquid.wire import encode_post

KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
AGENT = "0x14791697260e4c9a71f18484c9f997b308e59325"
SIGNER = S.Signer.from_hex(KEY)

WIRE_NUMS = st.one_of(
    st.builds(lambda n, d: S.to_wire(Decimal(n).scaleb(-d)), st.integers(1, 10**12),
              st.integers(0, 8)),
    st.sampled_from(["1", "0.00000001", "105", "12345", "0.1", "99999999999999999999"]),
)
CLOIDS = st.one_of(st.none(), st.binary(min_size=16, max_size=16).map(S.cloid_from_bytes))
ASSETS = st.one_of(st.integers(0, 300), st.integers(0, 2**16 + 5), st.integers(0, 2**64 - 1),
                   st.sampled_from([127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32]))
ORDERS = st.tuples(ASSETS, st.booleans(), WIRE_NUMS, WIRE_NUMS, st.booleans(), CLOIDS)


@settings(max_examples=300, deadline=None)
@given(orders=st.lists(ORDERS, min_size=1, max_size=20), nonce=st.integers(0, 2**63),
       expires=st.one_of(st.none(), st.integers(0, 2**63)), mainnet=st.booleans(),
       vault=st.one_of(st.none(), st.just("0x" + "ab" * 20)), post_id=st.integers(0, 2**40))
def test_fragments_equal_the_dict_path(orders: list[tuple[Any, ...]], nonce: int,
                                       expires: int | None, mainnet: bool, vault: str | None,
                                       post_id: int) -> None:
    wires = [S.ioc_order_wire(*o) for o in orders]
    frags = [S.ioc_order_fragment(*o) for o in orders]
    assert all(f is not None for f in frags)
    for w, f in zip(wires, frags, strict=True):
        assert f is not None
        assert f[0] == msgpack.packb(w)
        assert json.loads(f[1]) == w and msgspec.json.encode(w).decode() == f[1]
    action = {"type": "order", "orders": wires, "grouping": "na"}
    packed = S.ioc_action_fragments(frags)  # type: ignore[arg-type]
    assert packed[0] == msgpack.packb(action)
    assert packed[1] == msgspec.json.encode(action).decode()
    payload = SIGNER.payload(action, nonce, vault, expires, mainnet)
    text = SIGNER.payload_json(packed, nonce, vault, expires, mainnet)
    assert text == msgspec.json.encode(payload).decode()
    request = {"type": "action", "payload": payload}
    raw = EncodedRequest('{"type":"action","payload":' + text + "}")
    assert '{"method":"post","id":' + str(post_id) + ',"request":' + raw + "}" == encode_post(
        post_id, request)


def test_more_than_15_orders_use_array16() -> None:
    o = (110_000, True, "100.1", "0.99", False, S.cloid_from_int(7))
    for n in (15, 16, 40):
        frags = [S.ioc_order_fragment(*o)] * n
        action = {"type": "order", "orders": [S.ioc_order_wire(*o)] * n, "grouping": "na"}
        assert S.ioc_action_fragments(frags)[0] == msgpack.packb(action)  # type: ignore[arg-type]


def test_signature_recovers_to_the_agent_with_the_sdk() -> None:
    frags = [S.ioc_order_fragment(110_026, True, "105.5", "0.2", False, S.cloid_from_int(1)),
             S.ioc_order_fragment(110_027, False, "3.2151", "17", True, None)]
    packed = S.ioc_action_fragments(frags)  # type: ignore[arg-type]
    payload = json.loads(SIGNER.payload_json(packed, 1_769_339_470_576, None, 1_769_339_475_576,
                                             True))
    assert sdk.recover_agent_or_user_from_l1_action(
        payload["action"], payload["signature"], None, payload["nonce"],
        payload["expiresAfter"], True).lower() == AGENT
    # and the SDK's own signature of that action is the same one (deterministic ECDSA)
    import eth_account

    wallet = eth_account.Account.from_key(KEY)
    assert sdk.sign_l1_action(wallet, payload["action"], None, payload["nonce"],
                              payload["expiresAfter"], True) == payload["signature"]


def test_what_the_quick_checks_refuse_goes_to_the_dict_path() -> None:
    ok = (1, True, "1", "1", False, None)
    assert S.ioc_order_fragment(*ok) is not None
    for bad in [
        (-1, True, "1", "1", False, None),
        (2**64, True, "1", "1", False, None),
        (True, True, "1", "1", False, None),
        (1, 1, "1", "1", False, None),
        (1, True, "1", "1", 0, None),
        (1, True, "105.00", "1", False, None),  # not canonical: would hash differently (P4)
        (1, True, "0", "1", False, None),
        (1, True, "1", "0", False, None),
        (1, True, 1.5, "1", False, None),
        (1, True, "1", "1", False, "0xABC"),
        (1, True, "1", "1", False, "0x" + "A" * 32),  # cloids are lowercase hex
    ]:
        assert S.ioc_order_fragment(*bad) is None, bad  # type: ignore[arg-type]
