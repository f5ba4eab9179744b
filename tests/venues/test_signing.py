"""L1 signing: every vector of docs/reference/hyperliquid-protocol.md §14, SDK parity by property, pitfalls P3–P7/P29/P30."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import eth_account
import msgpack
import msgspec
import pytest
from hyperliquid.utils import signing as sdk
from hyperliquid.utils.types import Cloid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.venues.hyperliquid import signing as S
from engine.venues.hyperliquid.wire import encode_post

SDK_TEST_KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
SDK_TEST_ADDRESS = "0x14791697260E4c9A71f18484C9f997B308e59325"
HARDHAT_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
HARDHAT_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
TS_KEY = "0x822e9959e022b78423eb653a62ea0020cd283e71a2a8133a6ff2aeffaf373cff"


@pytest.fixture(scope="module")
def signer() -> S.Signer:
    return S.Signer.from_hex(SDK_TEST_KEY)


def sig_ints(sig: Mapping[str, Any]) -> tuple[int, int, int]:
    return int(sig["r"], 16), int(sig["s"], 16), int(sig["v"])


def assert_sig(sig: Mapping[str, Any], r: str, s: str, v: int) -> None:
    """Compare as integers (the SDK prints r/s unpadded, §8.6) and check the wire shape."""
    assert sig_ints(sig) == (int(r, 16), int(s, 16), v)
    assert list(sig) == ["r", "s", "v"]
    assert sig["r"].startswith("0x") and sig["s"].startswith("0x")  # P3
    assert sig["v"] in (27, 28) and type(sig["v"]) is int  # P5


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


# --- §14.1 verbatim SDK tests -------------------------------------------------------------------

ORDER_GTC = S.order_action([S.order_wire(1, True, 100.0, 100.0, False, S.limit_type("Gtc"))])
ORDER_GTC_CLOID = S.order_action(
    [
        S.order_wire(
            1,
            True,
            100,
            100,
            False,
            S.limit_type("Gtc"),
            cloid="0x00000000000000000000000000000001",
        )
    ]
)
ORDER_TPSL = S.order_action(
    [S.order_wire(1, True, 100, 100, False, S.trigger_type(103, True, "sl"))]
)
DUMMY = {"type": "dummy", "num": S.float_to_int_for_hashing(1000)}


def test_address_of_sdk_test_key(signer: S.Signer) -> None:
    assert signer.address == SDK_TEST_ADDRESS
    assert S.Signer.from_hex(HARDHAT_KEY).address == HARDHAT_ADDRESS


def test_phantom_agent_creation_matches_production() -> None:
    action = S.order_action([S.order_wire(4, True, 1670.1, 0.0147, False, S.limit_type("Ioc"))])
    h = S.action_hash(action, 1677777606040)
    assert "0x" + h.hex() == "0x0fcbeda5ae3c4950a548021552a4fea2226858c4453571bf3f24ba017eac2908"
    assert sdk.construct_phantom_agent(h, True) == {"source": "a", "connectionId": h}


@pytest.mark.parametrize(
    ("action", "vault", "mainnet", "testnet"),
    [
        pytest.param(
            DUMMY,
            None,
            (
                "0x53749d5b30552aeb2fca34b530185976545bb22d0b3ce6f62e31be961a59298",
                "0x755c40ba9bf05223521753995abb2f73ab3229be8ec921f350cb447e384d8ed8",
                27,
            ),
            (
                "0x542af61ef1f429707e3c76c5293c80d01f74ef853e34b76efffcb57e574f9510",
                "0x17b8b32f086e8cdede991f1e2c529f5dd5297cbe8128500e00cbaf766204a613",
                28,
            ),
            id="l1_action_signing_matches",
        ),
        pytest.param(
            ORDER_GTC,
            None,
            (
                "0xd65369825a9df5d80099e513cce430311d7d26ddf477f5b3a33d2806b100d78e",
                "0x2b54116ff64054968aa237c20ca9ff68000f977c93289157748a3162b6ea940e",
                28,
            ),
            (
                "0x82b2ba28e76b3d761093aaded1b1cdad4960b3af30212b343fb2e6cdfa4e3d54",
                "0x6b53878fc99d26047f4d7e8c90eb98955a109f44209163f52d8dc4278cbbd9f5",
                27,
            ),
            id="l1_action_signing_order_matches",
        ),
        pytest.param(
            ORDER_GTC_CLOID,
            None,
            (
                "0x41ae18e8239a56cacbc5dad94d45d0b747e5da11ad564077fcac71277a946e3",
                "0x3c61f667e747404fe7eea8f90ab0e76cc12ce60270438b2058324681a00116da",
                27,
            ),
            (
                "0xeba0664bed2676fc4e5a743bf89e5c7501aa6d870bdb9446e122c9466c5cd16d",
                "0x7f3e74825c9114bc59086f1eebea2928c190fdfbfde144827cb02b85bbe90988",
                28,
            ),
            id="l1_action_signing_order_with_cloid_matches",
        ),
        pytest.param(
            DUMMY,
            "0x1719884eb866cb12b2287399b15f7db5e7d775ea",
            (
                "0x3c548db75e479f8012acf3000ca3a6b05606bc2ec0c29c50c515066a326239",
                "0x4d402be7396ce74fbba3795769cda45aec00dc3125a984f2a9f23177b190da2c",
                28,
            ),
            (
                "0xe281d2fb5c6e25ca01601f878e4d69c965bb598b88fac58e475dd1f5e56c362b",
                "0x7ddad27e9a238d045c035bc606349d075d5c5cd00a6cd1da23ab5c39d4ef0f60",
                27,
            ),
            id="l1_action_signing_matches_with_vault",
        ),
        pytest.param(
            ORDER_TPSL,
            None,
            (
                "0x98343f2b5ae8e26bb2587daad3863bc70d8792b09af1841b6fdd530a2065a3f9",
                "0x6b5bb6bb0633b710aa22b721dd9dee6d083646a5f8e581a20b545be6c1feb405",
                27,
            ),
            (
                "0x971c554d917c44e0e1b6cc45d8f9404f32172a9d3b3566262347d0302896a2e4",
                "0x206257b104788f80450f8e786c329daa589aa0b32ba96948201ae556d5637eac",
                28,
            ),
            id="l1_action_signing_tpsl_order_matches",
        ),
        pytest.param(
            {"type": "createSubAccount", "name": "example"},
            None,
            (
                "0x51096fe3239421d16b671e192f574ae24ae14329099b6db28e479b86cdd6caa7",
                "0xb71f7d293af92d3772572afb8b102d167a7cef7473388286bc01f52a5c5b423",
                27,
            ),
            (
                "0xa699e3ed5c2b89628c746d3298b5dc1cca604694c2c855da8bb8250ec8014a5b",
                "0x53f1b8153a301c72ecc655b1c315d64e1dcea3ee58921fd7507e35818fcc1584",
                28,
            ),
            id="create_sub_account_action",
        ),
        pytest.param(
            {
                "type": "subAccountTransfer",
                "subAccountUser": "0x1d9470d4b963f552e6f671a81619d395877bf409",
                "isDeposit": True,
                "usd": 10,
            },
            None,
            (
                "0x43592d7c6c7d816ece2e206f174be61249d651944932b13343f4d13f306ae602",
                "0x71a926cb5c9a7c01c3359ec4c4c34c16ff8107d610994d4de0e6430e5cc0f4c9",
                28,
            ),
            (
                "0xe26574013395ad55ee2f4e0575310f003c5bb3351b5425482e2969fa51543927",
                "0xefb08999196366871f919fd0e138b3a7f30ee33e678df7cfaf203e25f0a4278",
                28,
            ),
            id="sub_account_transfer_action",
        ),
        pytest.param(
            S.schedule_cancel_action(),
            None,
            (
                "0x6cdfb286702f5917e76cd9b3b8bf678fcc49aec194c02a73e6d4f16891195df9",
                "0x6557ac307fa05d25b8d61f21fb8a938e703b3d9bf575f6717ba21ec61261b2a0",
                27,
            ),
            (
                "0xc75bb195c3f6a4e06b7d395acc20bbb224f6d23ccff7c6a26d327304e6efaeed",
                "0x342f8ede109a29f2c0723bd5efb9e9100e3bbb493f8fb5164ee3d385908233df",
                28,
            ),
            id="schedule_cancel_action_unset",
        ),
        pytest.param(
            S.schedule_cancel_action(123456789),
            None,
            (
                "0x609cb20c737945d070716dcc696ba030e9976fcf5edad87afa7d877493109d55",
                "0x16c685d63b5c7a04512d73f183b3d7a00da5406ff1f8aad33f8ae2163bab758b",
                28,
            ),
            (
                "0x4e4f2dbd4107c69783e251b7e1057d9f2b9d11cee213441ccfa2be63516dc5bc",
                "0x706c656b23428c8ba356d68db207e11139ede1670481a9e01ae2dfcdb0e1a678",
                27,
            ),
            id="schedule_cancel_action_time",
        ),
    ],
)
def test_sdk_l1_vectors(
    signer: S.Signer,
    action: dict[str, Any],
    vault: str | None,
    mainnet: tuple[str, str, int],
    testnet: tuple[str, str, int],
) -> None:
    assert_sig(signer.sign_l1_action(action, 0, vault, None, True), *mainnet)
    assert_sig(signer.sign_l1_action(action, 0, vault, None, False), *testnet)


def test_sdk_vectors_are_unpadded_like_the_sdk(signer: S.Signer) -> None:
    sig = signer.sign_l1_action(DUMMY, 0)
    assert sig["r"] == "0x53749d5b30552aeb2fca34b530185976545bb22d0b3ce6f62e31be961a59298"
    assert sig == sdk.sign_l1_action(
        eth_account.Account.from_key(SDK_TEST_KEY), DUMMY, None, 0, None, True
    )


def test_float_to_int_for_hashing() -> None:
    assert S.float_to_int_for_hashing(123123123123) == 12312312312300000000
    assert S.float_to_int_for_hashing(0.00001231) == 1231
    assert S.float_to_int_for_hashing(1.033) == 103300000
    with pytest.raises(ValueError):
        S.float_to_int_for_hashing(0.000012312312)


USD_MESSAGE = {
    "destination": "0x5e9ee1089755c3435139848e47e6635505d5a13a",
    "amount": "1",
    "time": 1687816341423,
}


def test_sign_usd_transfer_action(signer: S.Signer) -> None:
    sig = signer.sign_user_signed_action(
        dict(USD_MESSAGE), S.USD_SEND_TYPES, "HyperliquidTransaction:UsdSend", False
    )
    assert_sig(
        sig,
        "0x637b37dd731507cdd24f46532ca8ba6eec616952c56218baeff04144e4a77073",
        "0x11a6a24900e6e314136d2592e2f8d502cd89b7c15b198e1bee043c9589f9fad7",
        27,
    )


def test_sign_withdraw_from_bridge_action(signer: S.Signer) -> None:
    action = dict(USD_MESSAGE)
    sig = signer.sign_user_signed_action(
        action, S.WITHDRAW_TYPES, "HyperliquidTransaction:Withdraw", False
    )
    assert_sig(
        sig,
        "0x8363524c799e90ce9bc41022f7c39b4e9bdba786e5f9c72b20e43e1462c37cf9",
        "0x58b1411a775938b83e29182e8ef74975f9054c8e97ebf5ec2dc8d51bfc893881",
        28,
    )
    assert action["signatureChainId"] == "0x66eee" and action["hyperliquidChain"] == "Testnet"


# --- §14.2 intermediate values ------------------------------------------------------------------

TPSL_JSON = (
    '{"type":"order","orders":[{"a":1,"b":true,"p":"100","s":"100","r":false,'
    '"t":{"trigger":{"isMarket":true,"triggerPx":"103","tpsl":"sl"}}}],"grouping":"na"}'
)


@pytest.mark.parametrize(
    ("action", "nonce", "vault", "wire_json", "packed", "conn"),
    [
        pytest.param(
            S.order_action([S.order_wire(4, True, 1670.1, 0.0147, False, S.limit_type("Ioc"))]),
            1677777606040,
            None,
            '{"type":"order","orders":[{"a":4,"b":true,"p":"1670.1","s":"0.0147","r":false,'
            '"t":{"limit":{"tif":"Ioc"}}}],"grouping":"na"}',
            "83a474797065a56f72646572a66f72646572739186a16104a162c3a170a6313637302e31a173a6302e"
            "30313437a172c2a17481a56c696d697481a3746966a3496f63a867726f7570696e67a26e61",
            "0fcbeda5ae3c4950a548021552a4fea2226858c4453571bf3f24ba017eac2908",
            id="phantom",
        ),
        pytest.param(
            DUMMY,
            0,
            None,
            '{"type":"dummy","num":100000000000}',
            "82a474797065a564756d6d79a36e756dcf000000174876e800",
            "f528daee6a0bd11407b483cfcd9a48c56884180b70ee86f124053e5fc1bf4d57",
            id="dummy",
        ),
        pytest.param(
            DUMMY,
            0,
            "0x1719884eb866cb12b2287399b15f7db5e7d775ea",
            '{"type":"dummy","num":100000000000}',
            "82a474797065a564756d6d79a36e756dcf000000174876e800",
            "de9e09a7a3da45cc694096d4bfdcd89bc1b892d05497c5ecc1f56c335945184c",
            id="dummy+vault",
        ),
        pytest.param(
            ORDER_GTC,
            0,
            None,
            '{"type":"order","orders":[{"a":1,"b":true,"p":"100","s":"100","r":false,'
            '"t":{"limit":{"tif":"Gtc"}}}],"grouping":"na"}',
            "83a474797065a56f72646572a66f72646572739186a16101a162c3a170a3313030a173a3313030a172c2"
            "a17481a56c696d697481a3746966a3477463a867726f7570696e67a26e61",
            "884f2c32bb6dbdd65f6033e32fb28c0cb6f5b345db0f6471fd3366d85c9252c1",
            id="order_gtc",
        ),
        pytest.param(
            ORDER_GTC_CLOID,
            0,
            None,
            '{"type":"order","orders":[{"a":1,"b":true,"p":"100","s":"100","r":false,'
            '"t":{"limit":{"tif":"Gtc"}},"c":"0x00000000000000000000000000000001"}],'
            '"grouping":"na"}',
            "83a474797065a56f72646572a66f72646572739187a16101a162c3a170a3313030a173a3313030a172c2"
            "a17481a56c696d697481a3746966a3477463a163d92230783030303030303030303030303030303030"
            "303030303030303030303030303031a867726f7570696e67a26e61",
            "0ba500cedd8f4ba6ded620a0b1cd04f124d9ba745e2e2893fcc763bcc1444af5",
            id="order_gtc_cloid",
        ),
        pytest.param(
            ORDER_TPSL,
            0,
            None,
            TPSL_JSON,
            "83a474797065a56f72646572a66f72646572739186a16101a162c3a170a3313030a173a3313030a172c2"
            "a17481a77472696767657283a869734d61726b6574c3a9747269676765725078a3313033a47470736c"
            "a2736ca867726f7570696e67a26e61",
            "430a86fb9876e901920d931f5bb20c9d011f6389bd179f39a73c09e6219adcad",
            id="tpsl",
        ),
    ],
)
def test_intermediate_values(
    action: dict[str, Any], nonce: int, vault: str | None, wire_json: str, packed: str, conn: str
) -> None:
    assert compact(action) == wire_json
    assert msgpack.packb(action).hex() == packed
    assert S.action_hash(action, nonce, vault).hex() == conn
    assert S.action_hash(action, nonce, vault) == sdk.action_hash(action, vault, nonce, None)


def test_float_to_wire_doc_outputs() -> None:
    assert S.float_to_wire(105.0) == "105"
    assert S.float_to_wire(0.0147) == "0.0147"
    assert S.float_to_wire(1e-8) == "0.00000001"
    assert S.float_to_wire(123456.0) == "123456"
    assert S.float_to_wire(100) == "100"
    assert S.float_to_wire(1670.1) == "1670.1"
    assert S.float_to_wire(-0.0) == "0"  # the SDK gives "-0" despite its guard


# --- §14.3 (oids ≥ 2^32 are uint64) -----------------------------------------------------------


def test_large_oid_is_uint64() -> None:
    action = S.cancel_action([(110026, 302228651101)])
    assert compact(action) == '{"type":"cancel","cancels":[{"a":110026,"o":302228651101}]}'
    packed = msgpack.packb(action)
    assert b"\xcf" + (302228651101).to_bytes(8, "big") in packed
    assert b"\xcb" not in packed  # no float64 anywhere
    assert S.action_hash(action, 5) == sdk.action_hash(action, None, 5, None)
    big = S.cancel_action([(1, 2**64 - 1)])
    assert S.action_hash(big, 5) == sdk.action_hash(big, None, 5, None)
    with pytest.raises(ValueError):
        S.cancel_action([(1, 2**64)])


def test_cancel_by_cloid_shape() -> None:
    action = S.cancel_by_cloid_action([(110026, "0x0de3e244a8f44fc28a6b7bc852d66d19")])
    assert compact(action) == (
        '{"type":"cancelByCloid","cancels":[{"asset":110026,'
        '"cloid":"0x0de3e244a8f44fc28a6b7bc852d66d19"}]}'
    )


# --- §14.4 BOT vectors --------------------------------------------------------------------------

BOT_ACTION_105_00 = {
    "type": "order",
    "orders": [
        {
            "a": 110027,
            "b": True,
            "p": "105.00",
            "s": "0.2",
            "r": False,
            "t": {"limit": {"tif": "Ioc"}},
            "c": "0x0de3e244a8f44fc28a6b7bc852d66d19",
        }
    ],
    "grouping": "na",
}


def test_bot_msgpack_field_order() -> None:
    assert msgpack.packb(BOT_ACTION_105_00).hex() == (
        "83a474797065a56f72646572a66f72646572739187a161ce0001adcba162c3a170a63130352e3030a173a3"
        "302e32a172c2a17481a56c696d697481a3746966a3496f63a163d92230783064653365323434613866343466"
        "633238613662376263383532643636643139a867726f7570696e67a26e61"
    )
    assert S.action_hash(BOT_ACTION_105_00, 1769339470576).hex() == (
        "904c57b8f4b75ac9da005b49298dc39af735ed8c3a89b241f5f1e061e0207868"
    )


def test_trailing_zero_price_is_a_different_action_and_refused() -> None:
    """P4: "105.00" hashes differently from "105"; our builders never emit or accept it."""
    ours = S.ioc_order_action(
        110027, True, "105", "0.2", cloid="0x0de3e244a8f44fc28a6b7bc852d66d19"
    )
    assert compact(ours) == compact(BOT_ACTION_105_00).replace('"105.00"', '"105"')
    assert "0x" + S.action_hash(ours, 1769339470576).hex() == (
        "0xa11060c128fa42d9ca2291e006ec852a6dd3c4d0654abcdfb20fe2d856dc7ca2"
    )
    for bad in ("105.00", "105.", "0105", "1.05E+2", "-1", " 105", "1e2", "0.123456789"):
        with pytest.raises(ValueError):
            S.ioc_order_action(110027, True, bad, "0.2")
    assert (
        S.ioc_order_action(1, True, Decimal("105.00"), Decimal("0.20"))["orders"][0]["p"] == "105"
    )


def test_bot_signature_and_eip712_intermediates() -> None:
    conn = bytes.fromhex("f01fa6eaca0b8cbd2afe65f8852a2e00d35eae3d19560ece9b8a28614646e849")
    assert "0x" + S.DOMAIN_SEPARATOR.hex() == (
        "0xd79297fcdf2ffcd4ae223d01edaa2ba214ff8f401d7c9300d995d17c82aa4040"
    )
    assert "0x" + S.agent_struct_hash(conn, False).hex() == (
        "0x9b4df0fd8db77d906bfdb75485a4ace25342ac34133799aae04cdfef7fc69333"
    )
    digest = S.l1_signing_hash(conn, False)
    assert "0x" + digest.hex() == (
        "0x7a4448d5a2b26a982eb79a0930f02065c9dc7128c53a1ad908475b61e0ab2874"
    )
    hh = S.Signer.from_hex(HARDHAT_KEY)
    assert hh.address == HARDHAT_ADDRESS
    assert_sig(
        hh.sign_digest(digest),
        "0xa9e728f2faea4febc0b6eb9c3dbbac04b375eb3869f051030d205318425faebc",
        "0x7b21be7030bb979352b71494708b99d789266f0d0e1242a21e74905b683e4698",
        27,
    )


# --- §14.5 TS vectors ---------------------------------------------------------------------------

TS_ACTION = S.order_action([S.order_wire(0, True, "30000", "0.1", False, S.limit_type("Gtc"))])
TS_VAULT = "0x1234567890123456789012345678901234567890"


@pytest.mark.parametrize(
    ("vault", "expires", "expected"),
    [
        (None, None, "0x25367e0dba84351148288c2233cd6130ed6cec5967ded0c0b7334f36f957cc90"),
        (TS_VAULT, None, "0x214e2ea3270981b6fd18174216691e69f56872663139d396b10ded319cb4bb1e"),
        (None, 1234567890, "0xc30b002ba3775e4c31c43c1dfd3291dfc85c6ae06c6b9f393991de86cad5fac7"),
        (
            TS_VAULT,
            1234567890,
            "0x2d62412aa0fc57441b5189841d81554a6a9680bf07204e1454983a9ca44f0744",
        ),
    ],
)
def test_ts_hashes(vault: str | None, expires: int | None, expected: str) -> None:
    assert compact(TS_ACTION) == (
        '{"type":"order","orders":[{"a":0,"b":true,"p":"30000","s":"0.1","r":false,'
        '"t":{"limit":{"tif":"Gtc"}}}],"grouping":"na"}'
    )
    assert "0x" + S.action_hash(TS_ACTION, 1234567890, vault, expires).hex() == expected


@pytest.mark.parametrize(
    ("vault", "expires", "is_mainnet", "r", "s", "v"),
    [
        (None, None, True,
         "0x61078d8ffa3cb591de045438a1ae2ed299b271891d1943a33901e7cfb3a31ed8",
         "0x0e91df4f9841641d3322dad8d932874b74d7e082cdb5b533f804964a6963aef9", 28),
        (None, None, False,
         "0x6b0283a894d87b996ad0182b86251cc80d27d61ef307449a2ed249a508ded1f7",
         "0x6f884e79f4a0a10af62db831af6f8e03b3f11d899eb49b352f836746ee9226da", 27),
        (TS_VAULT, 1234567890, True,
         "0x78fcca006d7fdfaf1f66978ef7a60280246fc3e7a5b39a68a1656c3e42c58bf1",
         "0x61a09957de7f0886c2bdffb7a94e3a257bf240796883ea6ceaf4d0be37055cdd", 27),
        (TS_VAULT, 1234567890, False,
         "0x3a0bbbd9fadca54f58a2b7050899cecb97f68b2f693c63e91ca60510427326d7",
         "0x60f75f12cae7b9dc18b889406192afcaf13f40d2f8c68cc01f7f83f3fb5deb23", 27),
    ],
)  # fmt: skip
def test_ts_signatures(
    vault: str | None, expires: int | None, is_mainnet: bool, r: str, s: str, v: int
) -> None:
    ts = S.Signer.from_hex(TS_KEY)
    assert_sig(ts.sign_l1_action(TS_ACTION, 1234567890, vault, expires, is_mainnet), r, s, v)


# --- pitfalls P3, P5, P29, P30, P7 ------------------------------------------------------------


def test_p29_mainnet_source_is_a(signer: S.Signer) -> None:
    conn = S.action_hash(ORDER_GTC, 0)
    assert S.agent_struct_hash(conn, True) == S.keccak256(
        S.AGENT_TYPEHASH + S.keccak256(b"a") + conn
    )
    assert S.agent_struct_hash(conn, False) == S.keccak256(
        S.AGENT_TYPEHASH + S.keccak256(b"b") + conn
    )
    sig = signer.sign_l1_action(ORDER_GTC, 0, is_mainnet=True)
    # the exchange would recover us with source "a", a stranger with "b"
    assert sdk.recover_agent_or_user_from_l1_action(ORDER_GTC, sig, None, 0, None, True) == (
        signer.address
    )
    assert sdk.recover_agent_or_user_from_l1_action(ORDER_GTC, sig, None, 0, None, False) != (
        signer.address
    )


def test_p30_payload_json_carries_the_hashed_action(signer: S.Signer) -> None:
    action = S.ioc_order_action(
        110026, True, "105", "0.2", reduce_only=True, cloid="0x0de3e244a8f44fc28a6b7bc852d66d19"
    )
    vault = "0x1719884EB866cb12b2287399b15f7db5e7d775ea"
    body = signer.payload(action, 1769339470576, vault, 1769339480576, is_mainnet=True)
    assert list(body) == ["action", "nonce", "signature", "vaultAddress", "expiresAfter"]
    assert body["vaultAddress"] == vault.lower()
    for text in (
        json.dumps(body),
        msgspec.json.encode(body).decode(),
        encode_post(7, {"type": "action", "payload": body}),
    ):
        parsed = json.loads(text)
        if "request" in parsed:
            parsed = parsed["request"]["payload"]
        # same key order, same strings → same msgpack bytes → same connectionId
        assert compact(parsed["action"]) == compact(action)
        assert msgpack.packb(parsed["action"]) == msgpack.packb(action)
        assert (
            sdk.recover_agent_or_user_from_l1_action(
                parsed["action"],
                parsed["signature"],
                parsed["vaultAddress"],
                parsed["nonce"],
                parsed["expiresAfter"],
                True,
            )
            == signer.address
        )
    assert list(action["orders"][0]) == ["a", "b", "p", "s", "r", "t", "c"]
    assert list(action) == ["type", "orders", "grouping"]


def test_payload_omits_unused_optional_keys(signer: S.Signer) -> None:
    body = signer.payload(S.cancel_action([(110026, 302228651101)]), 7)
    assert list(body) == ["action", "nonce", "signature"]


def test_order_action_key_order_with_builder_and_priority() -> None:
    b = S.builder_info("0x1719884EB866CB12B2287399B15F7DB5E7D775EA", 10)
    assert b == {"b": "0x1719884eb866cb12b2287399b15f7db5e7d775ea", "f": 10}
    a = S.order_action(
        [S.order_wire(1, False, "1.5", "2", False, S.limit_type("Ioc"))],
        grouping={"p": 5},
        builder=b,
    )
    assert list(a) == ["type", "orders", "grouping", "builder"]
    sdk_a = sdk.order_wires_to_order_action(a["orders"], b, {"p": 5})
    assert compact(sdk_a) == compact(a)
    with pytest.raises(ValueError):
        S.order_action(
            [S.order_wire(1, False, "1.5", "2", False, S.limit_type("Ioc"))], grouping="bogus"
        )


@pytest.mark.parametrize(
    "bad",
    [
        "0x0DE3E244A8F44FC28A6B7BC852D66D19",  # upper case
        "0de3e244a8f44fc28a6b7bc852d66d19",  # no prefix
        "0x0de3e244a8f44fc28a6b7bc852d66d1",  # 31 digits
        "0x0de3e244a8f44fc28a6b7bc852d66d190",  # 33 digits
        "hip3_1769339470576_1a2b3c4d",  # the predecessor's early format
        "0xzze3e244a8f44fc28a6b7bc852d66d19",
    ],
)
def test_p7_cloid_must_be_0x_32_lowercase_hex(bad: str) -> None:
    with pytest.raises(ValueError):
        S.check_cloid(bad)
    with pytest.raises(ValueError):
        S.ioc_order_action(1, True, "1", "1", cloid=bad)
    with pytest.raises(ValueError):
        S.cancel_by_cloid_action([(1, bad)])


def test_cloid_helpers() -> None:
    assert S.cloid_from_int(1) == "0x00000000000000000000000000000001" == str(Cloid.from_int(1))
    c = S.cloid_from_bytes(bytes(range(16)))
    assert S.check_cloid(c) == c == "0x000102030405060708090a0b0c0d0e0f"
    with pytest.raises(ValueError):
        S.cloid_from_bytes(b"short")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"px": "0"},
        {"sz": "0"},
        {"px": -1.0},
        {"sz": Decimal("-0.1")},
        {"px": float("nan")},
        {"px": float("inf")},
        {"px": 1.123456789},  # loses precision at 8 decimals
        {"px": True},
        {"asset": -1},
        {"asset": True},
    ],
)
def test_order_wire_refuses_bad_values(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"asset": 1, "px": "1", "sz": "1"}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError)):
        S.ioc_order_action(args["asset"], True, args["px"], args["sz"])


def test_nonce_and_expiry_ranges(signer: S.Signer) -> None:
    for bad in (-1, 2**64, True, 1.0):
        with pytest.raises(ValueError):
            signer.sign_l1_action(DUMMY, bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            signer.sign_l1_action(DUMMY, 0, expires_after=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        signer.sign_l1_action(DUMMY, 0, vault_address="0x1234")


def test_check_action_refuses_floats_and_none() -> None:
    S.check_action(BOT_ACTION_105_00)
    S.check_action(S.cancel_action([(1, 2**64 - 1)]))
    for bad in (
        {"type": "x", "p": 1.5},
        {"type": "x", "t": None},
        {"type": "x", 1: "a"},
        {"n": 2**64},
    ):
        with pytest.raises((ValueError, TypeError)):
            S.check_action(bad)


def test_signer_hides_the_key() -> None:
    s = S.Signer.from_hex(SDK_TEST_KEY)
    secret = SDK_TEST_KEY[2:]
    for text in (repr(s), str(s), f"{s}", f"{s!r}"):
        assert secret not in text.lower() and SDK_TEST_ADDRESS in text
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(TypeError):
        copy.copy(s)
    with pytest.raises(TypeError):
        copy.deepcopy(s)
    with pytest.raises(AttributeError):
        s._address = "0x0"
    assert not hasattr(s, "__dict__")


@pytest.mark.parametrize(
    "bad",
    [
        "0x" + "00" * 32,  # zero scalar
        "0x" + "ff" * 32,  # ≥ n
        "0x" + "11" * 31,  # short
        "0x" + "zz" * 32,
        "",
    ],
)
def test_signer_refuses_bad_keys_without_echoing_them(bad: str) -> None:
    with pytest.raises(ValueError) as ei:
        S.Signer.from_hex(bad)
    if bad:
        assert bad[2:] not in str(ei.value)
    with pytest.raises(ValueError):
        S.Signer(b"\x01" * 31)


# --- SDK parity (property) --------------------------------------------------------------------

KEYS = st.integers(1, S.SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))
# decimal values with ≤ 8 decimals, as floats the SDK accepts (|x| < 1e15 keeps its Decimal
# normalize (28-digit context) exact, so both sides can agree)
WIRE_FLOATS = st.builds(lambda m, d: m / 10**d, st.integers(1, 10**12), st.integers(0, 8)).filter(
    lambda x: 0 < x < 1e15
)
SOME_CLOIDS = st.binary(min_size=16, max_size=16).map(lambda b: "0x" + b.hex())
CLOIDS = st.none() | SOME_CLOIDS
TIFS = st.sampled_from(["Gtc", "Ioc", "Alo"])
U64 = st.integers(0, 2**64 - 1)
VAULTS = st.none() | st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


@st.composite
def sdk_orders(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(our order action, the SDK-built order action) from the same inputs."""
    n = draw(st.integers(1, 3))
    ours, theirs = [], []
    for _ in range(n):
        asset = draw(st.integers(0, 200_000))
        is_buy, reduce_only = draw(st.booleans()), draw(st.booleans())
        px, sz = draw(WIRE_FLOATS), draw(WIRE_FLOATS)
        cloid = draw(CLOIDS)
        if draw(st.booleans()):
            tif: Any = draw(TIFS)
            ot: dict[str, Any] = S.limit_type(tif)
            sdk_ot: Any = {"limit": {"tif": tif}}
        else:
            tpx, is_market = draw(WIRE_FLOATS), draw(st.booleans())
            tpsl: Any = draw(st.sampled_from(["tp", "sl"]))
            ot = S.trigger_type(tpx, is_market, tpsl)
            sdk_ot = {"trigger": {"triggerPx": tpx, "isMarket": is_market, "tpsl": tpsl}}
        ours.append(S.order_wire(asset, is_buy, px, sz, reduce_only, ot, cloid))
        req: Any = {
            "coin": "X",
            "is_buy": is_buy,
            "sz": sz,
            "limit_px": px,
            "order_type": sdk_ot,
            "reduce_only": reduce_only,
            "cloid": None if cloid is None else Cloid(cloid),
        }
        theirs.append(sdk.order_request_to_order_wire(req, asset))
    grouping = draw(st.sampled_from(["na", "normalTpsl", "positionTpsl"]))
    return S.order_action(ours, grouping), sdk.order_wires_to_order_action(theirs, None, grouping)


@st.composite
def sdk_actions(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    kind = draw(st.sampled_from(["order", "cancel", "cancelByCloid", "scheduleCancel"]))
    if kind == "order":
        return draw(sdk_orders())
    if kind == "cancel":
        pairs = draw(st.lists(st.tuples(st.integers(0, 200_000), U64), min_size=1, max_size=3))
        sdk_a = {"type": "cancel", "cancels": [{"a": a, "o": o} for a, o in pairs]}
        return S.cancel_action(pairs), sdk_a
    if kind == "cancelByCloid":
        cpairs = draw(
            st.lists(st.tuples(st.integers(0, 200_000), SOME_CLOIDS), min_size=1, max_size=3)
        )
        sdk_c: dict[str, Any] = {
            "type": "cancelByCloid",
            "cancels": [{"asset": a, "cloid": Cloid(c).to_raw()} for a, c in cpairs],
        }
        return S.cancel_by_cloid_action(cpairs), sdk_c
    t = draw(st.none() | U64)
    sdk_s: dict[str, Any] = {"type": "scheduleCancel"}
    if t is not None:
        sdk_s["time"] = t
    return S.schedule_cancel_action(t), sdk_s


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=KEYS,
    pair=sdk_actions(),
    nonce=U64,
    vault=VAULTS,
    expires=st.none() | U64,
    is_mainnet=st.booleans(),
)
def test_signature_equals_sdk(
    key: bytes,
    pair: tuple[dict[str, Any], dict[str, Any]],
    nonce: int,
    vault: str | None,
    expires: int | None,
    is_mainnet: bool,
) -> None:
    ours_action, sdk_action = pair
    assert compact(ours_action) == compact(sdk_action)  # same keys, same order, same strings
    me = S.Signer(key)
    wallet = eth_account.Account.from_key(key)
    assert me.address == wallet.address
    ours = me.sign_l1_action(ours_action, nonce, vault, expires, is_mainnet)
    theirs = sdk.sign_l1_action(wallet, sdk_action, vault, nonce, expires, is_mainnet)
    assert sig_ints(ours) == sig_ints(dict(theirs))
    assert ours == theirs  # same strings too: r/s printed like the SDK
    assert (
        sdk.recover_agent_or_user_from_l1_action(
            ours_action, ours, vault, nonce, expires, is_mainnet
        )
        == me.address
    )


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15))
def test_float_to_wire_equals_sdk(x: float) -> None:
    try:
        expected = sdk.float_to_wire(x)
    except ValueError:
        with pytest.raises(ValueError):
            S.float_to_wire(x)
        return
    if expected == "-0":  # the SDK's guard misses -0.0 and tiny negatives; ours says "0"
        assert S.float_to_wire(x) == "0"
        return
    assert S.float_to_wire(x) == expected
    assert S.to_wire(Decimal(expected)) == expected
    if x > 0:
        assert S.to_wire(expected) == expected  # canonical strings pass through unchanged


@given(st.decimals(min_value=0, max_value=10**12, places=8, allow_nan=False, allow_infinity=False))
def test_decimal_wire_is_canonical(d: Decimal) -> None:
    s = S.to_wire(d)
    assert Decimal(s) == d
    assert "e" not in s.lower() and not (("." in s) and s.endswith("0"))
    assert S.to_wire(s) == s


@pytest.mark.parametrize(
    "order_type",
    [
        {"limit": {"tif": "Day"}},
        {"limit": {"tif": "Ioc"}, "trigger": {}},
        {"trigger": {"triggerPx": "103", "isMarket": True, "tpsl": "sl"}},  # key order
        {"trigger": {"isMarket": True, "triggerPx": 103.0, "tpsl": "sl"}},  # float
        {"trigger": {"isMarket": True, "triggerPx": "103.0", "tpsl": "sl"}},  # not canonical
        {"trigger": {"isMarket": 1, "triggerPx": "103", "tpsl": "sl"}},
        {},
    ],
)
def test_order_wire_refuses_foreign_order_types(order_type: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        S.order_wire(1, True, "1", "1", False, order_type)


def test_ioc_orders_do_not_share_mutable_parts() -> None:
    a = S.ioc_order_action(1, True, "1", "1")
    b = S.ioc_order_action(1, True, "1", "1")
    a["orders"][0]["t"]["limit"]["tif"] = "Gtc"
    assert b["orders"][0]["t"] == {"limit": {"tif": "Ioc"}}
    assert S.ioc_order_action(1, True, "1", "1")["orders"][0]["t"] == {"limit": {"tif": "Ioc"}}
