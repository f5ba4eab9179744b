"""The order path's shortcuts in signing.py give exactly what the general code gives:
libsecp256k1 called directly (owner thread, buffers allocated once) vs coincurve's API, and the
regex-free cloid check vs the cloid regex."""

from __future__ import annotations

import threading

import coincurve
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.venues.hyperliquid import signing as S

KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"


def reference(digest: bytes) -> S.Signature:
    sig = coincurve.PrivateKey(bytes.fromhex(KEY[2:])).sign_recoverable(digest, hasher=None)
    return {"r": hex(int.from_bytes(sig[:32], "big")), "s": hex(int.from_bytes(sig[32:64], "big")),
            "v": 27 + sig[64]}


def test_the_direct_path_is_available_here() -> None:
    # without it every test below would only compare coincurve with itself
    assert S.Signer.from_hex(KEY)._direct is not None


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_direct_signature_equals_coincurve(digest: bytes) -> None:
    s = S.Signer.from_hex(KEY)
    assert s.sign_digest(digest) == reference(digest)
    assert s.sign_digest(digest) == reference(digest)  # the reused buffers carry nothing over


def test_other_threads_use_their_own_buffers() -> None:
    """Signatures made concurrently from several threads (the owner included) are all right."""
    s = S.Signer.from_hex(KEY)
    digests = [bytes([i]) * 32 for i in range(1, 9)]
    want = [reference(d) for d in digests]
    bad: list[int] = []

    def worker(k: int) -> None:
        for _ in range(200):
            for i, d in enumerate(digests):
                if s.sign_digest(d) != want[i]:
                    bad.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    worker(99)  # the owner thread, at the same time
    for t in threads:
        t.join()
    assert not bad


@pytest.mark.parametrize("digest", [b"", b"\x01" * 31, b"\x01" * 33])
def test_a_digest_of_the_wrong_length_is_refused(digest: bytes) -> None:
    s = S.Signer.from_hex(KEY)
    with pytest.raises(ValueError):
        s.sign_digest(digest)


near_cloids = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEFxX_ g٣", min_size=30, max_size=36).map(
        lambda t: "0x" + t[2:] if t[:1] != "0" else t),
    st.text(max_size=40),
    st.builds(lambda b: "0x" + b.hex(), st.binary(min_size=15, max_size=17)),
)


@settings(max_examples=500, deadline=None)
@given(near_cloids)
def test_quick_cloid_check_equals_the_regex(x: str) -> None:
    assert S._is_cloid(x) == (S._CLOID_RE.fullmatch(x) is not None)


@pytest.mark.parametrize("x", [5, b"0x" + b"a" * 32, "0X" + "a" * 32, "0x" + "A" * 32,
                               "0x" + "a" * 31 + "\n", " 0x" + "a" * 31, "0x" + "a" * 33])
def test_quick_cloid_check_refuses(x: object) -> None:
    assert not S._is_cloid(x)
    assert S.ioc_order_fragment(110000, True, "100.5", "1.5", False, x) is None  # type: ignore[arg-type]


def test_fragment_without_cloid() -> None:
    assert not S._is_cloid(None)
    frag = S.ioc_order_fragment(110000, True, "100.5", "1.5", False, None)
    assert frag is not None and '"c"' not in frag[1]


def test_fragment_takes_a_good_cloid() -> None:
    c = "0x" + "0123456789abcdef" * 2
    assert S._is_cloid(c)
    frag = S.ioc_order_fragment(110000, True, "100.5", "1.5", False, c)
    assert frag is not None and c in frag[1]
