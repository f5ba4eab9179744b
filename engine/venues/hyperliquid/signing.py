"""Hyperliquid L1 action signing: owns the action wire builders, the wire number format, the
action hash, the phantom-agent EIP-712 digest, and the agent key (:class:`Signer`).

Byte-identical to the official SDK (``hyperliquid.utils.signing``; docs/reference/hyperliquid-protocol.md §5, §8):

* actions are plain dicts built in the canonical key order (order: ``type, orders, grouping
  [, builder]``; order wire ``a, b, p, s, r, t[, c]``; ``cancel`` → ``{a, o}``;
  ``cancelByCloid`` → ``{asset, cloid}``); absent optional keys are omitted, never ``null``;
  no floats anywhere (numbers are canonical decimal strings, or ints);
* ``connectionId = keccak256(msgpack(action) ‖ nonce:u64be ‖ vault tag ‖ [0x00 ‖
  expiresAfter:u64be])`` with vault tag ``0x00`` or ``0x01 ‖ 20 address bytes`` (§8.1); msgpack
  packs ints in their smallest form (oids ≥ 2^32 as uint64) and str as str (§8.2);
* EIP-712 ``Agent{source, connectionId}`` with source ``"a"`` mainnet / ``"b"`` testnet, domain
  ``Exchange/1/1337/0x0``; the domain separator, the type hash and both source hashes are
  computed once at import, so a signature costs three keccaks and one secp256k1 sign (§8.3);
* signature ``{"r": "0x…", "s": "0x…", "v": 27|28}`` with r/s as the SDK prints them
  (``hex(int)``, no zero padding) (§8.6, pitfalls P3, P5).

The post payload (:meth:`Signer.payload`) carries the very action object that was hashed, so
its JSON (any encoder that keeps dict order) has exactly the hashed strings in the hashed key
order (P30). Keccak comes from ``safe-pysha3`` (C, ~1 µs) when installed, else pycryptodome.

The private key lives only inside :class:`Signer` (as a coincurve key); ``repr``/``str`` show the
agent address, pickling is refused, and no error message carries key material.

Also here, for SDK parity and the doc's vectors only (not on the order path): ``float_to_int*``
(scaled ints inside actions) and user-signed EIP-712 actions (§8.4, e.g. ``usdSend``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final, Literal, TypedDict

import coincurve
import msgpack

try:  # coincurve's cffi binding of libsecp256k1: Signer.sign_digest calls it directly
    from coincurve._libsecp256k1 import ffi as _ffi
    from coincurve._libsecp256k1 import lib as _lib
except ImportError:  # pragma: no cover - depends on the coincurve build
    _ffi = _lib = None

from engine.venues.hyperliquid.rounding import decimal_to_wire

try:  # C keccak: ~1 µs per hash
    import sha3 as _sha3  # safe-pysha3

    _keccak_new = _sha3.keccak_256

    def keccak256(data: bytes) -> bytes:
        """Keccak-256 (Ethereum's, not NIST SHA3-256) of ``data``."""
        return _keccak_new(data).digest()

    KECCAK_BACKEND: Final[str] = "pysha3"
except ImportError:  # pragma: no cover - depends on the environment
    from Crypto.Hash import keccak as _pcd_keccak

    def keccak256(data: bytes) -> bytes:
        """Keccak-256 (Ethereum's, not NIST SHA3-256) of ``data``."""
        return _pcd_keccak.new(data=data, digest_bits=256).digest()

    KECCAK_BACKEND = "pycryptodome"  # type: ignore[misc]

Action = dict[str, Any]
Tif = Literal["Gtc", "Ioc", "Alo"]
Tpsl = Literal["tp", "sl"]
WireNumber = str | Decimal | float | int


class Signature(TypedDict):
    r: str
    s: str
    v: int


# --- EIP-712 constants (precomputed once) -----------------------------------------------------

SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_U64_LIMIT: Final = 1 << 64

EIP712_DOMAIN_TYPEHASH: Final = keccak256(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
DOMAIN_SEPARATOR: Final = keccak256(
    EIP712_DOMAIN_TYPEHASH
    + keccak256(b"Exchange")
    + keccak256(b"1")
    + (1337).to_bytes(32, "big")
    + bytes(32)  # verifyingContract 0x000…0 as a 32-byte word
)
AGENT_TYPEHASH: Final = keccak256(b"Agent(string source,bytes32 connectionId)")
MAINNET_SOURCE: Final = "a"
TESTNET_SOURCE: Final = "b"
# typeHash ‖ keccak(source): the first 64 bytes of the Agent struct encoding, per network.
_AGENT_PREFIX: Final = {
    True: AGENT_TYPEHASH + keccak256(MAINNET_SOURCE.encode()),
    False: AGENT_TYPEHASH + keccak256(TESTNET_SOURCE.encode()),
}
_EIP712_PREFIX: Final = b"\x19\x01" + DOMAIN_SEPARATOR
_NO_VAULT: Final = b"\x00"

_packb = msgpack.packb
_from_bytes = int.from_bytes

# --- wire numbers ------------------------------------------------------------------------------

# canonical decimal: no sign, no leading zeros, no trailing fractional zeros, ≤ 8 decimals
_WIRE_NUM_RE: Final = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]{0,7}[1-9])?")
_CLOID_RE: Final = re.compile(r"0x[0-9a-f]{32}")
_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_GROUPINGS: Final = frozenset({"na", "normalTpsl", "positionTpsl"})
_TIFS: Final = frozenset({"Gtc", "Ioc", "Alo"})


def float_to_wire(x: float) -> str:
    """The SDK's ``float_to_wire``: 8-decimal rounding that must be exact to 1e-12, no trailing
    zeros. Refuses NaN/inf (the SDK lets them through) and returns ``0`` for ``-0.0``."""
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite number: {x!r}")
    rounded = f"{x:.8f}"
    if abs(float(rounded) - x) >= 1e-12:
        raise ValueError(f"float_to_wire causes rounding: {x!r}")
    s = rounded.rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def to_wire(x: WireNumber) -> str:
    """Canonical wire string for a price/size: a canonical ``str`` passes unchanged (anything
    else, e.g. ``"105.00"``, is refused: it would hash differently, P4); ``Decimal`` is exact
    (≤ 8 decimals); ``float`` follows the SDK; ``int`` is its digits."""
    if isinstance(x, str):
        if _WIRE_NUM_RE.fullmatch(x) is None:
            raise ValueError(f"not a canonical wire number: {x!r}")
        return x
    if isinstance(x, Decimal):
        return decimal_to_wire(x)
    if isinstance(x, bool):
        raise TypeError("a bool is not a wire number")
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return float_to_wire(x)
    raise TypeError(f"unsupported wire number type {type(x).__name__}")


def _positive_wire(x: WireNumber, what: str) -> str:
    s = to_wire(x)
    if s == "0" or s.startswith("-"):
        raise ValueError(f"{what} must be > 0, got {s}")
    return s


def _uint(x: int, what: str, limit: int = _U64_LIMIT) -> int:
    if type(x) is not int or not 0 <= x < limit:
        raise ValueError(f"{what} must be an int in [0, {limit}), got {x!r}")
    return x


def check_cloid(cloid: str) -> str:
    """A cloid is ``0x`` + exactly 32 lowercase hex digits (16 bytes) (P7); returned as is."""
    if not isinstance(cloid, str) or _CLOID_RE.fullmatch(cloid) is None:
        raise ValueError(f"cloid must be 0x + 32 lowercase hex digits, got {cloid!r}")
    return cloid


def cloid_from_bytes(raw: bytes) -> str:
    """The cloid for 16 raw bytes."""
    if len(raw) != 16:
        raise ValueError(f"a cloid is 16 bytes, got {len(raw)}")
    return "0x" + raw.hex()


def cloid_from_int(n: int) -> str:
    """The cloid for ``0 ≤ n < 2^128`` (the SDK's ``Cloid.from_int``)."""
    _uint(n, "cloid int", 1 << 128)
    return f"0x{n:032x}"


def check_address(address: str) -> str:
    """``0x`` + 40 hex digits, returned lowercase."""
    if not isinstance(address, str) or _ADDRESS_RE.fullmatch(address) is None:
        raise ValueError(f"not an address (0x + 40 hex): {address!r}")
    return address.lower()


# --- action builders (canonical key order) ------------------------------------------------------


def limit_type(tif: Tif) -> dict[str, Any]:
    """``{"limit": {"tif": tif}}``."""
    if tif not in _TIFS:
        raise ValueError(f"tif must be one of {sorted(_TIFS)}, got {tif!r}")
    return {"limit": {"tif": tif}}


def trigger_type(trigger_px: WireNumber, is_market: bool, tpsl: Tpsl) -> dict[str, Any]:
    """``{"trigger": {"isMarket", "triggerPx", "tpsl"}}`` in that key order."""
    if tpsl not in ("tp", "sl"):
        raise ValueError(f"tpsl must be 'tp' or 'sl', got {tpsl!r}")
    if not isinstance(is_market, bool):
        raise TypeError("is_market must be a bool")
    return {
        "trigger": {
            "isMarket": is_market,
            "triggerPx": _positive_wire(trigger_px, "triggerPx"),
            "tpsl": tpsl,
        }
    }


def _check_order_type(t: Mapping[str, Any]) -> None:
    """Only the two wire shapes built by :func:`limit_type` / :func:`trigger_type`."""
    if type(t) is not dict or len(t) != 1:
        raise ValueError(f"order type must be a limit or trigger wire, got {t!r}")
    limit = t.get("limit")
    if limit is not None:
        if type(limit) is not dict or list(limit) != ["tif"] or limit["tif"] not in _TIFS:
            raise ValueError(f"bad limit order type {t!r}")
        return
    trig = t.get("trigger")
    if (
        type(trig) is not dict
        or list(trig) != ["isMarket", "triggerPx", "tpsl"]
        or type(trig["isMarket"]) is not bool
        or type(trig["triggerPx"]) is not str
        or _WIRE_NUM_RE.fullmatch(trig["triggerPx"]) is None
        or trig["tpsl"] not in ("tp", "sl")
    ):
        raise ValueError(f"bad order type {t!r}")


def order_wire(
    asset: int,
    is_buy: bool,
    px: WireNumber,
    sz: WireNumber,
    reduce_only: bool,
    order_type: Mapping[str, Any],
    cloid: str | None = None,
) -> dict[str, Any]:
    """One order: ``{a, b, p, s, r, t[, c]}`` (``c`` omitted without a cloid)."""
    if type(asset) is not int or asset < 0:
        raise ValueError(f"asset must be an int ≥ 0, got {asset!r}")
    if type(is_buy) is not bool or type(reduce_only) is not bool:
        raise TypeError("is_buy and reduce_only must be bools")
    _check_order_type(order_type)
    wire: dict[str, Any] = {
        "a": asset,
        "b": is_buy,
        "p": _positive_wire(px, "price"),
        "s": _positive_wire(sz, "size"),
        "r": reduce_only,
        "t": order_type,
    }
    if cloid is not None:
        wire["c"] = check_cloid(cloid)
    return wire


def ioc_order_wire(
    asset: int, is_buy: bool, px: str, sz: str, reduce_only: bool, cloid: str | None
) -> dict[str, Any]:
    """:func:`order_wire` of an IOC limit order whose price and size are already canonical
    wire strings: the same checks and the same result, about 2.5x faster (the order path).
    Anything the quick checks refuse goes through :func:`order_wire` (its error, or its
    conversion of a non-string number)."""
    if (
        type(asset) is not int
        or asset < 0
        or type(is_buy) is not bool
        or type(reduce_only) is not bool
        or type(px) is not str
        or type(sz) is not str
        or px == "0"
        or sz == "0"
        or _WIRE_NUM_RE.fullmatch(px) is None
        or _WIRE_NUM_RE.fullmatch(sz) is None
        or (cloid is not None and (type(cloid) is not str or _CLOID_RE.fullmatch(cloid) is None))
    ):
        return order_wire(asset, is_buy, px, sz, reduce_only, {"limit": {"tif": "Ioc"}}, cloid)
    wire: dict[str, Any] = {
        "a": asset,
        "b": is_buy,
        "p": px,
        "s": sz,
        "r": reduce_only,
        "t": {"limit": {"tif": "Ioc"}},
    }
    if cloid is not None:
        wire["c"] = cloid
    return wire


# --- pre-built fragments: IOC order actions as msgpack and JSON, without dicts ----------------
#
# The order path needs an action twice: msgpack (hashed) and JSON (sent). For IOC limit orders
# whose fields passed the quick checks of :func:`ioc_order_wire` both encodings are assembled
# from constant fragments and the order's strings: the same bytes as ``msgpack.packb`` of the
# :func:`ioc_order_wire` dicts in an ``order`` action (grouping ``na``) and as the JSON an
# order-keeping encoder writes for them (tests compare both, byte for byte, and the signature
# with the SDK's). Wire numbers and cloids are ASCII without characters JSON would escape.

_MP_ACTION_HEAD: Final = b"\x83\xa4type\xa5order\xa6orders"
_MP_ACTION_TAIL: Final = b"\xa8grouping\xa2na"
_MP_T_IOC: Final = b"\xa1t\x81\xa5limit\x81\xa3tif\xa3Ioc"
_MP_RO_T_IOC: Final = (b"\xa1r\xc2" + _MP_T_IOC, b"\xa1r\xc3" + _MP_T_IOC)
_JS_BOOL: Final = ("false", "true")

OrderFragment = tuple[bytes, str]
"""One order wire as (msgpack bytes, JSON text)."""

# price/size strings already checked canonical (and != "0") -> their msgpack; prices repeat, so
# the regex runs once per distinct string (cleared when it reaches _WIRE_MEMO_MAX entries)
_WIRE_MEMO: dict[str, bytes] = {}
_WIRE_MEMO_MAX: Final = 4096


_HEX_LOWER: Final = "0123456789abcdef"


def _is_cloid(x: object) -> bool:
    """``_CLOID_RE.fullmatch(x)`` for a str, without the regex engine (tests check both agree):
    ``0x`` and 32 characters that ``strip`` of the lowercase hex digits removes entirely."""
    return type(x) is str and len(x) == 34 and x[:2] == "0x" and not x[2:].strip(_HEX_LOWER)


def _mp_wire(x: object) -> bytes | None:
    """msgpack of a canonical, non-zero wire number string; None for anything else."""
    b = _WIRE_MEMO.get(x) if type(x) is str else None
    if b is not None:
        return b
    if type(x) is not str or x == "0" or _WIRE_NUM_RE.fullmatch(x) is None:
        return None
    b = _mp_str(x)
    if len(_WIRE_MEMO) >= _WIRE_MEMO_MAX:
        _WIRE_MEMO.clear()
    _WIRE_MEMO[x] = b
    return b


def _mp_str(s: str) -> bytes:
    """msgpack str of an ASCII ``s`` shorter than 2^16 (fixstr / str8 / str16)."""
    n = len(s)
    if n < 32:
        return bytes((0xA0 | n,)) + s.encode()
    if n < 256:
        return bytes((0xD9, n)) + s.encode()
    return b"\xda" + n.to_bytes(2, "big") + s.encode()


def _mp_uint(n: int) -> bytes:
    """msgpack of ``0 ≤ n < 2^64`` in its smallest form (as ``packb`` writes it)."""
    if n < 128:
        return bytes((n,))
    if n < 256:
        return bytes((0xCC, n))
    if n < 65536:
        return b"\xcd" + n.to_bytes(2, "big")
    if n < 1 << 32:
        return b"\xce" + n.to_bytes(4, "big")
    return b"\xcf" + n.to_bytes(8, "big")


def ioc_order_fragment(
    asset: int, is_buy: bool, px: str, sz: str, reduce_only: bool, cloid: str | None
) -> OrderFragment | None:
    """The :func:`ioc_order_wire` of these fields as (msgpack, JSON), or None when they fail
    its quick checks (use :func:`ioc_order_wire` then: its error, or its conversion)."""
    p = _mp_wire(px)
    s = _mp_wire(sz)
    if (
        p is None
        or s is None
        or type(asset) is not int
        or not 0 <= asset < _U64_LIMIT
        or type(is_buy) is not bool
        or type(reduce_only) is not bool
        or (cloid is not None and not _is_cloid(cloid))
    ):
        return None
    mp = b"".join((
        b"\x87\xa1a" if cloid is not None else b"\x86\xa1a",
        _mp_uint(asset),
        b"\xa1b\xc3\xa1p" if is_buy else b"\xa1b\xc2\xa1p",
        p,
        b"\xa1s",
        s,
        _MP_RO_T_IOC[reduce_only],
        b"" if cloid is None else b"\xa1c\xd9\x22" + cloid.encode(),
    ))
    js = "".join((
        '{"a":', str(asset), ',"b":', _JS_BOOL[is_buy], ',"p":"', px, '","s":"', sz, '","r":',
        _JS_BOOL[reduce_only], ',"t":{"limit":{"tif":"Ioc"}}',
        "}" if cloid is None else ',"c":"' + cloid + '"}',
    ))
    return mp, js


def ioc_action_fragments(orders: Sequence[OrderFragment]) -> OrderFragment:
    """``{"type":"order","orders":[...],"grouping":"na"}`` of 1..65535 order fragments."""
    n = len(orders)
    if not 0 < n < 65536:
        raise ValueError(f"an order action needs 1..65535 orders, got {n}")
    head = bytes((0x90 | n,)) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
    mp = b"".join((_MP_ACTION_HEAD, head, *(o[0] for o in orders), _MP_ACTION_TAIL))
    js = '{"type":"order","orders":[' + ",".join([o[1] for o in orders]) + '],"grouping":"na"}'
    return mp, js


def builder_info(address: str, fee_tenths_bp: int) -> dict[str, Any]:
    """``{"b": <lowercase address>, "f": <fee in tenths of a basis point>}``."""
    return {"b": check_address(address), "f": _uint(fee_tenths_bp, "builder fee", 1001)}


def order_action(
    orders: Sequence[Mapping[str, Any]],
    grouping: str | Mapping[str, int] = "na",
    builder: Mapping[str, Any] | None = None,
) -> Action:
    """``{"type": "order", "orders": [...], "grouping": ..., ["builder": ...]}``."""
    if not orders:
        raise ValueError("an order action needs at least one order")
    if isinstance(grouping, str):
        if grouping not in _GROUPINGS:
            raise ValueError(f"grouping must be one of {sorted(_GROUPINGS)} or {{'p': int}}")
    elif list(grouping) != ["p"]:
        raise ValueError("a priority grouping is exactly {'p': int}")
    else:
        _uint(grouping["p"], "priority", 100_000_001)
    action: Action = {"type": "order", "orders": list(orders), "grouping": grouping}
    if builder:
        action["builder"] = builder
    return action


def ioc_order_action(
    asset: int,
    is_buy: bool,
    px: WireNumber,
    sz: WireNumber,
    *,
    reduce_only: bool = False,
    cloid: str | None = None,
) -> Action:
    """A one-order IOC action (grouping ``na``), the hot path of taker trading."""
    return {
        "type": "order",
        "orders": [
            order_wire(asset, is_buy, px, sz, reduce_only, {"limit": {"tif": "Ioc"}}, cloid)
        ],
        "grouping": "na",
    }


def cancel_action(cancels: Iterable[tuple[int, int]]) -> Action:
    """``{"type": "cancel", "cancels": [{"a": asset, "o": oid}, ...]}`` (oids may be ≥ 2^32)."""
    wires = [{"a": _uint(a, "asset"), "o": _uint(o, "oid")} for a, o in cancels]
    if not wires:
        raise ValueError("a cancel action needs at least one cancel")
    return {"type": "cancel", "cancels": wires}


def cancel_by_cloid_action(cancels: Iterable[tuple[int, str]]) -> Action:
    """``{"type": "cancelByCloid", "cancels": [{"asset": asset, "cloid": cloid}, ...]}``."""
    wires = [{"asset": _uint(a, "asset"), "cloid": check_cloid(c)} for a, c in cancels]
    if not wires:
        raise ValueError("a cancelByCloid action needs at least one cancel")
    return {"type": "cancelByCloid", "cancels": wires}


def schedule_cancel_action(time_ms: int | None = None) -> Action:
    """``{"type": "scheduleCancel"[, "time": ms]}`` (no ``time`` unsets the dead-man switch)."""
    if time_ms is None:
        return {"type": "scheduleCancel"}
    return {"type": "scheduleCancel", "time": _uint(time_ms, "time")}


# --- hashing -----------------------------------------------------------------------------------


def check_action(action: Any) -> None:
    """Refuse what the exchange cannot hash like we do: floats, ``None``, non-str keys, ints
    outside the msgpack range. Builders above never produce these; run on foreign actions."""
    stack = [action]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str or t is bool:
            continue
        if t is int:
            if not -(1 << 63) <= v < _U64_LIMIT:
                raise ValueError(f"int out of msgpack range: {v}")
        elif t is dict:
            for k, item in v.items():
                if type(k) is not str:
                    raise TypeError(f"action keys must be str, got {k!r}")
                stack.append(item)
        elif t is list:
            stack.extend(v)
        else:
            raise TypeError(f"{t.__name__} is not allowed in an action (use strings/ints)")


def _vault_tag(vault_address: str | None) -> bytes:
    if vault_address is None:
        return _NO_VAULT
    return b"\x01" + bytes.fromhex(check_address(vault_address)[2:])


def action_hash(
    action: Mapping[str, Any],
    nonce: int,
    vault_address: str | None = None,
    expires_after: int | None = None,
) -> bytes:
    """The 32-byte connectionId (§8.1); same bytes as the SDK's ``action_hash``."""
    data = _packb(action) + _uint(nonce, "nonce").to_bytes(8, "big") + _vault_tag(vault_address)
    if expires_after is not None:
        data += b"\x00" + _uint(expires_after, "expires_after").to_bytes(8, "big")
    return keccak256(data)


def agent_struct_hash(connection_id: bytes, is_mainnet: bool) -> bytes:
    """EIP-712 ``hashStruct(Agent{source, connectionId})``."""
    if len(connection_id) != 32:
        raise ValueError("connectionId must be 32 bytes")
    return keccak256(_AGENT_PREFIX[bool(is_mainnet)] + connection_id)


def l1_signing_hash(connection_id: bytes, is_mainnet: bool) -> bytes:
    """``keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(Agent))``: the digest that is signed."""
    return keccak256(_EIP712_PREFIX + agent_struct_hash(connection_id, is_mainnet))


def checksum_address(address_bytes: bytes) -> str:
    """EIP-55 mixed-case address for 20 bytes."""
    hex_addr = address_bytes.hex()
    h = keccak256(hex_addr.encode()).hex()
    return "0x" + "".join(c.upper() if int(h[i], 16) >= 8 else c for i, c in enumerate(hex_addr))


def float_to_int(x: float, power: int) -> int:
    """The SDK's ``float_to_int``: ``round(x·10^power)``, refused if off by ≥ 1e-3."""
    with_decimals = x * 10**power
    if abs(round(with_decimals) - with_decimals) >= 1e-3:
        raise ValueError(f"float_to_int causes rounding: {x!r}")
    return round(with_decimals)


def float_to_int_for_hashing(x: float) -> int:
    """×1e8 integer amounts inside actions (SDK ``float_to_int_for_hashing``)."""
    return float_to_int(x, 8)


def float_to_usd_int(x: float) -> int:
    """×1e6 integer USD amounts (SDK ``float_to_usd_int``)."""
    return float_to_int(x, 6)


# --- user-signed actions (§8.4; not on the order path) ----------------------------------------

USER_SIGNED_CHAIN_ID: Final = "0x66eee"
USD_SEND_TYPES: Final = (
    ("hyperliquidChain", "string"),
    ("destination", "string"),
    ("amount", "string"),
    ("time", "uint64"),
)
WITHDRAW_TYPES: Final = USD_SEND_TYPES


def _eip712_word(kind: str, value: Any) -> bytes:
    if kind == "string":
        return keccak256(str(value).encode())
    if kind in ("uint64", "uint256"):
        return _uint(value, kind, 1 << (64 if kind == "uint64" else 256)).to_bytes(32, "big")
    if kind == "bool":
        if type(value) is not bool:
            raise TypeError("bool field needs a bool")
        return int(value).to_bytes(32, "big")
    if kind == "address":
        return bytes(12) + bytes.fromhex(check_address(value)[2:])
    if kind == "bytes32":
        raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
        if len(raw) != 32:
            raise ValueError("bytes32 field needs 32 bytes")
        return raw
    raise ValueError(f"unsupported EIP-712 field type {kind!r}")


def user_signed_hash(
    action: Mapping[str, Any], types: Sequence[tuple[str, str]], primary_type: str
) -> bytes:
    """EIP-712 digest of a user-signed action (domain ``HyperliquidSignTransaction``, chain id
    from ``action["signatureChainId"]``), as the SDK's ``sign_user_signed_action`` signs it."""
    domain = keccak256(
        EIP712_DOMAIN_TYPEHASH
        + keccak256(b"HyperliquidSignTransaction")
        + keccak256(b"1")
        + int(action["signatureChainId"], 16).to_bytes(32, "big")
        + bytes(32)
    )
    type_str = f"{primary_type}({','.join(f'{t} {n}' for n, t in types)})"
    struct = keccak256(
        keccak256(type_str.encode()) + b"".join(_eip712_word(t, action[n]) for n, t in types)
    )
    return keccak256(b"\x19\x01" + domain + struct)


# --- the key holder ---------------------------------------------------------------------------


class Signer:
    """An agent (API wallet) key: signs L1 actions. Never exposes the key (repr shows the
    address only; pickling and copying are refused)."""

    __slots__ = ("_pk", "_address", "_direct")

    _pk: coincurve.PrivateKey
    _address: str
    # (thread id, context, secret, signature, output, recid, output buffer): libsecp256k1
    # called directly with buffers allocated once, from the thread that built the Signer (the
    # engine's Trio thread); None, or any other thread, goes through coincurve's API
    _direct: tuple[Any, ...] | None

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != 32:
            raise ValueError("a private key is exactly 32 bytes")
        k = int.from_bytes(key, "big")
        if not 0 < k < SECP256K1_N:
            raise ValueError("not a valid secp256k1 private key (must be in [1, n-1])")
        pk = coincurve.PrivateKey(bytes(key))
        pub = pk.public_key.format(compressed=False)[1:]
        object.__setattr__(self, "_pk", pk)
        object.__setattr__(self, "_address", checksum_address(keccak256(pub)[12:]))
        direct = None
        if _lib is not None:
            out = _ffi.new("unsigned char[64]")
            direct = (threading.get_ident(), pk.context.ctx, pk.secret,
                      _ffi.new("secp256k1_ecdsa_recoverable_signature *"), out,
                      _ffi.new("int *"), _ffi.buffer(out, 64))
        object.__setattr__(self, "_direct", direct)

    @classmethod
    def from_hex(cls, key_hex: str) -> Signer:
        """From 64 hex digits, optionally ``0x``-prefixed (surrounding whitespace ignored)."""
        s = key_hex.strip()
        if s[:2] in ("0x", "0X"):
            s = s[2:]
        if len(s) != 64 or re.fullmatch(r"[0-9a-fA-F]{64}", s) is None:
            raise ValueError("a private key is 64 hex digits, optionally 0x-prefixed")
        return cls(bytes.fromhex(s))

    @property
    def address(self) -> str:
        """The agent address (EIP-55 checksummed), i.e. the signer the exchange recovers."""
        return self._address

    def __repr__(self) -> str:
        return f"Signer(address={self._address})"

    __str__ = __repr__

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Signer is immutable")

    def __reduce__(self) -> Any:
        raise TypeError("Signer holds a private key and cannot be pickled or copied")

    def __copy__(self) -> Signer:
        raise TypeError("Signer holds a private key and cannot be copied")

    def __deepcopy__(self, memo: object) -> Signer:
        raise TypeError("Signer holds a private key and cannot be copied")

    def sign_digest(self, digest: bytes) -> Signature:
        """Sign a 32-byte digest: ``{"r": hex(r), "s": hex(s), "v": 27 + recid}``.

        RFC 6979 nonces (libsecp256k1's default, as coincurve and the SDK use): the same digest
        gives the same signature. On the owner thread libsecp256k1 is called directly with
        buffers allocated once (coincurve's wrapper allocates three cffi objects and runs a
        dozen Python calls per signature: a third of a cold signature's time)."""
        d = self._direct
        if d is not None and type(digest) is bytes and len(digest) == 32 \
                and d[0] == threading.get_ident():
            _tid, ctx, secret, rsig, out, recid, buf = d
            if not _lib.secp256k1_ecdsa_sign_recoverable(ctx, rsig, digest, secret, _ffi.NULL,
                                                         _ffi.NULL):
                raise ValueError("secp256k1 signing failed")
            _lib.secp256k1_ecdsa_recoverable_signature_serialize_compact(ctx, out, recid, rsig)
            raw = buf[:]
            return {
                "r": hex(_from_bytes(raw[:32], "big")),
                "s": hex(_from_bytes(raw[32:], "big")),
                "v": 27 + recid[0],
            }
        sig = self._pk.sign_recoverable(digest, hasher=None)
        return {
            "r": hex(_from_bytes(sig[:32], "big")),
            "s": hex(_from_bytes(sig[32:64], "big")),
            "v": 27 + sig[64],
        }

    def sign_l1_action(
        self,
        action: Mapping[str, Any],
        nonce: int,
        vault_address: str | None = None,
        expires_after: int | None = None,
        is_mainnet: bool = True,
    ) -> Signature:
        """The SDK's ``sign_l1_action(wallet, action, vault, nonce, expires, is_mainnet)``.

        ``action`` must come from the builders above or pass :func:`check_action` (not re-run
        here: it would cost ~10 % of a signature)."""
        conn = action_hash(action, nonce, vault_address, expires_after)
        return self.sign_digest(
            keccak256(_EIP712_PREFIX + keccak256(_AGENT_PREFIX[bool(is_mainnet)] + conn))
        )

    def sign_packed(
        self,
        action_msgpack: bytes,
        nonce: int,
        vault_address: str | None = None,
        expires_after: int | None = None,
        is_mainnet: bool = True,
    ) -> Signature:
        """:meth:`sign_l1_action` of an action already packed (``msgpack.packb(action)``,
        e.g. from :func:`ioc_action_fragments`)."""
        if type(nonce) is not int or not 0 <= nonce < _U64_LIMIT:
            _uint(nonce, "nonce")  # raises
        data = action_msgpack + nonce.to_bytes(8, "big") + (
            _NO_VAULT if vault_address is None else _vault_tag(vault_address)
        )
        if expires_after is not None:
            if type(expires_after) is not int or not 0 <= expires_after < _U64_LIMIT:
                _uint(expires_after, "expires_after")  # raises
            data += b"\x00" + expires_after.to_bytes(8, "big")
        conn = keccak256(data)
        return self.sign_digest(
            keccak256(_EIP712_PREFIX + keccak256(_AGENT_PREFIX[bool(is_mainnet)] + conn))
        )

    def payload_json(
        self,
        action: OrderFragment,
        nonce: int,
        vault_address: str | None = None,
        expires_after: int | None = None,
        is_mainnet: bool = True,
    ) -> str:
        """The JSON text of :meth:`payload` for an action given as (msgpack, JSON) fragments
        (:func:`ioc_action_fragments`): the bytes an order-keeping JSON encoder writes for
        that payload dict, without building it."""
        sig = self.sign_packed(action[0], nonce, vault_address, expires_after, is_mainnet)
        parts = [
            '{"action":', action[1], ',"nonce":', str(nonce), ',"signature":{"r":"', sig["r"],
            '","s":"', sig["s"], '","v":', str(sig["v"]), "}",
        ]
        if vault_address is not None:
            parts += [',"vaultAddress":"', check_address(vault_address), '"']
        if expires_after is not None:
            parts += [',"expiresAfter":', str(expires_after)]
        parts.append("}")
        return "".join(parts)

    def sign_user_signed_action(
        self,
        action: dict[str, Any],
        types: Sequence[tuple[str, str]],
        primary_type: str,
        is_mainnet: bool = True,
    ) -> Signature:
        """The SDK's ``sign_user_signed_action``: like it, sets ``signatureChainId`` (0x66eee)
        and ``hyperliquidChain`` (Mainnet/Testnet) in ``action`` before signing."""
        action["signatureChainId"] = USER_SIGNED_CHAIN_ID
        action["hyperliquidChain"] = "Mainnet" if is_mainnet else "Testnet"
        return self.sign_digest(user_signed_hash(action, types, primary_type))

    def payload(
        self,
        action: Action,
        nonce: int,
        vault_address: str | None = None,
        expires_after: int | None = None,
        is_mainnet: bool = True,
    ) -> dict[str, Any]:
        """The ``/exchange`` body / WS post ``payload``: ``{action, nonce, signature
        [, vaultAddress][, expiresAfter]}`` (optional keys omitted when unused). ``action`` is
        the object that was hashed; do not mutate it afterwards."""
        body: dict[str, Any] = {
            "action": action,
            "nonce": nonce,
            "signature": self.sign_l1_action(
                action, nonce, vault_address, expires_after, is_mainnet
            ),
        }
        if vault_address is not None:
            body["vaultAddress"] = check_address(vault_address)
        if expires_after is not None:
            body["expiresAfter"] = expires_after
        return body
