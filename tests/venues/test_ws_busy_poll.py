"""ws busy-poll (``busy_poll_s`` / ``[venue] busy_poll_us``): a read that finds nothing spins
through Trio's scheduler and retries before it sleeps in the kernel. Frames still arrive whole
(plain TCP and TLS), other tasks and timers keep running during the spin, cancellation ends it,
a spin that times out falls back to the kernel wait, and bytes already buffered by the TLS
layer are returned at once instead of waiting for the socket."""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

import pytest
import trio
import wsproto
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, Message, Request

from engine.config import ConfigError, load_config
from engine.net import ws

from .conftest import server_frame, ws_pair


def test_busy_poll_is_validated() -> None:
    conn, peer = ws_pair(busy_poll_s=0.001)
    assert conn.busy_poll_s == 0.001
    assert conn.busy_poll_supported
    for bad in (-1e-6, ws.MAX_BUSY_POLL_S * 2, float("nan")):
        with pytest.raises(ValueError, match="busy_poll_s"):
            conn.busy_poll_s = bad
    assert conn.busy_poll_s == 0.001
    peer.close()


async def test_spin_picks_up_a_frame_and_other_tasks_keep_running() -> None:
    conn, peer = ws_pair(busy_poll_s=ws.MAX_BUSY_POLL_S)
    ticks = 0
    ticks_during_spin = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.001)
            ticks += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)

        async def send_later() -> None:
            # Send once the reader is spinning and the 1 ms timer has fired 10 times during
            # the spin: counted, not timed, so a slow machine only makes it take longer.
            nonlocal ticks_during_spin
            while conn.stats.busy_polls == 0:
                await trio.lowlevel.checkpoint()
            start = ticks
            while ticks - start < 10:
                await trio.lowlevel.checkpoint()
            ticks_during_spin = ticks - start
            assert conn.stats.busy_poll_timeouts == 0  # still the first spin
            peer.sendall(server_frame("hello"))

        nursery.start_soon(send_later)
        with trio.fail_after(5):
            got = await conn.receive_batch()
        nursery.cancel_scope.cancel()
    assert got == ["hello"]
    assert conn.stats.busy_polls >= 1
    assert conn.stats.busy_poll_timeouts == 0  # picked up by the spin, not the kernel wait
    assert ticks_during_spin >= 10  # the 1 ms timer kept firing while the reader spun
    peer.close()


async def test_a_spin_that_times_out_falls_back_to_the_kernel_wait() -> None:
    conn, peer = ws_pair(busy_poll_s=0.005)

    async def send_later() -> None:
        await trio.sleep(0.1)
        peer.sendall(server_frame("late"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_later)
        with trio.fail_after(5):
            got = await conn.receive_batch()
    assert got == ["late"]
    assert conn.stats.busy_polls == 1
    assert conn.stats.busy_poll_timeouts == 1
    peer.close()


async def test_spin_hook_runs_while_spinning_only() -> None:
    conn, peer = ws_pair(busy_poll_s=ws.MAX_BUSY_POLL_S)
    calls: list[float] = []
    conn.spin_hook = lambda: calls.append(trio.current_time())
    conn.spin_hook_interval_s = 0.002

    async def send_later() -> None:
        while len(calls) < 5:  # the hook has run 5 times during the spin (counted, not timed)
            await trio.lowlevel.checkpoint()
        peer.sendall(server_frame("x"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_later)
        with trio.fail_after(5):
            assert await conn.receive_batch() == ["x"]
    n = len(calls)
    assert n >= 5
    # at most one call per 2 ms interval, however long the spin took on this machine
    assert all(b - a >= 0.0019 for a, b in zip(calls, calls[1:], strict=False))
    assert conn.stats.busy_poll_timeouts == 0
    assert conn.stats.spin_hooks == n
    # data already there: no spin, no hook
    peer.sendall(server_frame("y"))
    await trio.sleep(0.01)
    assert await conn.receive_batch() == ["y"]
    assert len(calls) == n
    peer.close()


async def test_a_failing_spin_hook_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    conn, peer = ws_pair(busy_poll_s=0.5)
    calls = 0

    def bad() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    conn.spin_hook = bad
    conn.spin_hook_interval_s = 0.001

    async def send_later() -> None:
        while calls == 0 and conn.stats.busy_poll_timeouts == 0:  # the hook ran (and failed)
            await trio.lowlevel.checkpoint()
        await trio.sleep(0.01)  # the spin goes on without it
        peer.sendall(server_frame("still here"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_later)
        with trio.fail_after(5):
            assert await conn.receive_batch() == ["still here"]
    assert calls == 1
    assert conn.spin_hook is None
    assert "spin hook" in caplog.text and "disabled" in caplog.text
    peer.close()


async def test_cancel_ends_a_spin_promptly() -> None:
    conn, peer = ws_pair(busy_poll_s=1.0)
    with trio.move_on_after(0.02) as scope:
        await conn.receive_batch()
    assert scope.cancelled_caught
    # the cancel ended the spin itself: it neither ran out its 1 s bound nor fell back to the
    # kernel wait (judged by the counters, not the clock, so a loaded machine cannot fail it)
    assert conn.stats.busy_polls == 1
    assert conn.stats.busy_poll_timeouts == 0
    peer.close()


async def test_close_from_another_task_during_a_spin() -> None:
    conn, peer = ws_pair(busy_poll_s=1.0)

    async def close_later() -> None:
        await trio.sleep(0.02)
        await conn.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_later)
        with trio.fail_after(5), pytest.raises(ws.ConnectionClosed):
            await conn.receive_batch()
    peer.close()


async def test_frames_split_across_reads_while_spinning() -> None:
    conn, peer = ws_pair(busy_poll_s=0.5)
    frames = [server_frame(f"m{i}" * 50) for i in range(20)]
    blob = b"".join(frames)

    async def trickle() -> None:
        for i in range(0, len(blob), 7):
            peer.sendall(blob[i : i + 7])
            await trio.sleep(0.0005)

    got: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        with trio.fail_after(10):
            while len(got) < 20:
                got += await conn.receive_batch()
    assert got == [f"m{i}" * 50 for i in range(20)]
    peer.close()


# ---------------------------------------------------------------- TLS


async def tls_server(
    nursery: trio.Nursery, cert: Path, key: Path, payloads: list[tuple[float, list[str]]]
) -> int:
    """A wss server that sends each batch of messages (in one write) after its delay."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        srv = wsproto.WSConnection(ConnectionType.SERVER)
        done = False
        while not done:
            data = await stream.receive_some(65536)
            srv.receive_data(data)
            for ev in srv.events():
                if isinstance(ev, Request):
                    await stream.send_all(srv.send(AcceptConnection()))
                    done = True
        for delay, msgs in payloads:
            await trio.sleep(delay)
            await stream.send_all(b"".join(srv.send(Message(data=m)) for m in msgs))
        await trio.sleep_forever()

    listeners = await nursery.start(
        functools.partial(trio.serve_ssl_over_tcp, handle, 0, ctx, host="127.0.0.1")
    )
    return int(listeners[0].transport_listener.socket.getsockname()[1])


async def test_tls_spin_picks_up_a_frame(nursery: trio.Nursery, self_signed) -> None:
    cert, key = self_signed
    port = await tls_server(nursery, cert, key, [(0.05, ["over tls"])])
    client_ctx = ssl.create_default_context(cafile=str(cert))
    conn = await ws.connect(  # the longest spin allowed: 20x the server's delay
        f"wss://localhost:{port}/ws", 5, ssl_context=client_ctx, busy_poll_s=ws.MAX_BUSY_POLL_S
    )
    assert conn.busy_poll_supported
    got: list[str] = []
    with trio.fail_after(5):
        while not got:
            got += await conn.receive_batch()
    assert got == ["over tls"]
    assert conn.stats.busy_polls >= 1
    assert conn.stats.busy_poll_timeouts == 0
    await conn.aclose()


async def test_tls_bytes_buffered_in_the_tls_layer_do_not_wait_for_the_socket(
    nursery: trio.Nursery, self_signed
) -> None:
    """With reads smaller than what arrived, the rest sits in Trio's TLS buffers while the
    socket is empty: a spin that only watched the socket would wait out its whole bound on
    every read (0.5 s each here)."""
    cert, key = self_signed
    big = [("x" * 3000) + str(i) for i in range(100)]  # ~300 KB in one write
    port = await tls_server(nursery, cert, key, [(0.0, big)])
    client_ctx = ssl.create_default_context(cafile=str(cert))
    conn = await ws.connect(
        f"wss://localhost:{port}/ws", 5, ssl_context=client_ctx, max_read=4096,
        busy_poll_s=0.5,
    )
    got: list[str] = []
    with trio.fail_after(30):
        while len(got) < len(big):
            got += await conn.receive_batch()
    assert got == big
    assert conn.stats.reads > 20
    assert conn.stats.busy_poll_timeouts == 0  # no read waited out its spin bound
    await conn.aclose()


# ---------------------------------------------------------------- config


def test_venue_busy_poll_us_config(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[venue]\nbusy_poll_us = 5000\n")
    assert load_config(good, env={}).venue.busy_poll_us == 5000
    for bad in ("-1", "2000000", '"fast"'):
        p = tmp_path / "bad.toml"
        p.write_text(f"[venue]\nbusy_poll_us = {bad}\n")
        with pytest.raises(ConfigError, match="busy_poll_us"):
            load_config(p, env={})
