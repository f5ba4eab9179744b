"""The Trio internals engine.net.ws relies on, asserted to exist and to behave as it assumes,
so that a Trio upgrade that changes them fails here loudly (instead of the feed silently
falling back to one TLS record per read and no busy-poll).

``trio.SSLStream`` keeps its ``ssl.SSLObject`` in ``_ssl_object`` and the ``ssl.MemoryBIO`` of
received ciphertext in ``_incoming``; ``ws._tls_probe`` reads both to tell whether a read of the
stream can return without waiting for the socket (``ws._tls_ready``)."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
import trio

from engine.net import ws

from .test_ws_tls_reads import tls_pair

UPGRADE_HINT = (f"trio {trio.__version__} changed SSLStream internals that engine.net.ws "
                "reads (_ssl_object, _incoming): update ws._tls_probe")


async def test_ssl_stream_has_the_internals_the_probe_reads(
        self_signed: tuple[Path, Path]) -> None:
    conn, _peer = await tls_pair(self_signed)
    stream = conn._stream
    assert isinstance(stream, trio.SSLStream)
    assert isinstance(getattr(stream, "_ssl_object", None), ssl.SSLObject), UPGRADE_HINT
    assert isinstance(getattr(stream, "_incoming", None), ssl.MemoryBIO), UPGRADE_HINT
    probe = ws._tls_probe(stream)
    assert probe is not None, UPGRADE_HINT
    assert probe[0] is stream._ssl_object and probe[1] is stream._incoming
    assert probe[2] is stream.transport_stream.socket


async def test_the_internals_behave_as_the_probe_assumes(
        self_signed: tuple[Path, Path]) -> None:
    """Received ciphertext waits in ``_incoming`` and decrypted bytes of a partly read record
    in ``_ssl_object``, where ``_tls_ready`` looks for them."""
    conn, peer = await tls_pair(self_signed)
    stream = conn._stream
    assert isinstance(stream, trio.SSLStream)
    obj, bio = stream._ssl_object, stream._incoming
    assert not ws._tls_ready(obj, bio)
    first, second = peer.record(b"x" * 100), peer.record(b"y" * 50)
    await peer.send(first + second)
    await trio.sleep(0.05)
    with trio.fail_after(5):
        got = await stream.receive_some(10)
    assert got == b"x" * 10
    assert obj.pending() == 90, UPGRADE_HINT  # the rest of the record, decrypted
    assert ws._tls_ready(obj, bio)
    with trio.fail_after(5):
        assert await stream.receive_some(90) == b"x" * 90
    assert obj.pending() == 0
    assert bio.pending == len(second), UPGRADE_HINT  # the next record, still ciphertext
    assert ws._tls_ready(obj, bio)
    with trio.fail_after(5):
        assert await stream.receive_some(100) == b"y" * 50
    assert not ws._tls_ready(obj, bio)


async def test_without_the_internals_the_client_says_so(
        self_signed: tuple[Path, Path], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback (a future Trio without them) is logged, never silent."""
    conn, _peer = await tls_pair(self_signed)
    stream = conn._stream
    monkeypatch.delattr(stream, "_incoming")
    with caplog.at_level(logging.WARNING, logger="engine.net.ws"):
        assert ws._tls_probe(stream) is None
    assert "_incoming" in caplog.text and "busy_poll_s is ignored" in caplog.text
