"""Minimal WebSocket client connection on a Trio stream, driven directly with wsproto.

Owns one socket: TCP (plus TLS for ``wss://``), the HTTP upgrade handshake, frame
(de)serialisation, reassembly of fragmented messages, answers to protocol Ping frames and the
closing handshake. It exists because trio-websocket costs ~15 µs of CPU per received frame;
here :meth:`WsConnection.receive_batch` does one big socket read and returns every complete
text message in it, so the caller can dispatch a whole batch synchronously.

On a plain TCP stream a read is one checkpoint and a direct ``os.read`` of the socket (waiting
for readability only when nothing is there) instead of the stream's ``receive_some``.

Receive fast path (default, ``fast_path=True``): wsproto spends ~6 µs per frame, which caps a
connection near 150k frames/s. Almost every server frame is a single unmasked text frame
(first byte ``0x81``); :meth:`WsConnection._scan` delimits frames itself and decodes those as
strict UTF-8 (~0.4 µs/frame). Every other frame (ping/pong/close, fragments, binary, RSV bits,
unknown opcodes, invalid UTF-8, masking) is handed to wsproto whole, so protocol validation
and control handling stay wsproto's. ``fast_path=False`` feeds every byte to wsproto.

Send fast path (same ``fast_path`` switch): text messages are framed here (FIN + text opcode,
a fresh masking key per frame, the payload masked with one big-int XOR: ~2 µs instead of
wsproto's ~5 µs; no extension is ever negotiated, and wsproto still frames every control
frame). Masking keys come from ``os.urandom`` (RFC 6455 §5.3: a strong source of entropy),
fetched 4 KiB at a time into a pool (one syscall per 1024 frames; the pool is dropped in a
forked child). On a plain TCP stream the bytes are written with one non-blocking ``os.write``
on the socket and the task yields AFTER the bytes left (``send_texts(..., yield_after=False)``
skips that yield, for a caller that checkpoints soon anyway: the feed's reader in the middle of
a socket read); whatever the kernel does not take at once (or a TLS stream) goes through the
stream's ``send_all``. An uncontended send is started without a checkpoint (a flag, not a Trio
lock: no task bookkeeping on the order path), so nothing yields to the scheduler between
"decided to send" and the syscall; contended sends queue FIFO.

Busy-poll (opt-in, ``busy_poll_s`` > 0): a read that finds nothing does not go to sleep in
``epoll`` at once; it passes through Trio's scheduler (a checkpoint: timers, other tasks and
cancellation keep running) and retries, for up to ``busy_poll_s``, then waits as usual. Set it
longer than the usual gap between frames and the thread never sleeps: the vCPU and the caches
stay warm and a frame is picked up within a few µs instead of the ~50–100 µs a wake-up costs,
at the price of one core kept at 100 %. An optional ``spin_hook`` runs every
``spin_hook_interval_s`` of a spin (the feed uses it to keep the order path warm). On plain TCP the retry is the non-blocking read
itself; on TLS it polls the socket and Trio's TLS buffers, then the stream's read follows.

Concurrency: one task may call :meth:`WsConnection.receive_batch` while any number of tasks
call :meth:`WsConnection.send_text` (sends are serialised by a lock). A send is shielded from
the caller's cancellation so a frame is never half-written, but bounded by ``send_timeout_s``:
a send that cannot complete in time breaks the connection.

Memory: a frame longer than ``max_message`` closes the connection with 1009 (fast path); a
message reassembled from fragments is bounded by ``max_message`` too.

Errors: every transport failure surfaces as :class:`ConnectionClosed` (with the close code
and reason, 1006 for a lost connection) from the established connection, or as
:class:`ConnectError` from :func:`connect`. A send that fails before any of its bytes were handed
to the socket raises the subclass :class:`NothingSent` (the peer cannot have seen the message);
a plain :class:`ConnectionClosed` from a send means the bytes may have left, in part or whole.
"""

from __future__ import annotations

import logging
import os
import select
import ssl
from collections.abc import Callable
from time import perf_counter
from typing import Final, NoReturn
from urllib.parse import urlsplit

import trio
import wsproto
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, ProtocolError

from engine.net.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

DEFAULT_MAX_READ: Final = 256 * 1024
DEFAULT_MAX_MESSAGE: Final = 16 * 1024 * 1024
DEFAULT_SEND_TIMEOUT_S: Final = 5.0
MAX_BUSY_POLL_S: Final = 1.0
DEFAULT_SPIN_HOOK_INTERVAL_S: Final = 0.001
_TLS_HEADER: Final = 5  # a TLS record: type (1), version (2), length (2), then the payload
CLOSE_TIMEOUT_S: Final = 1.0
_HANDSHAKE_READ: Final = 16 * 1024
_MAX_HANDSHAKE_BYTES: Final = 64 * 1024

_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class WsError(Exception):
    """Base class of this module's errors."""


class ConnectError(WsError):
    """The connection could not be opened (DNS, TCP, TLS, HTTP upgrade, or timeout)."""


class ConnectionClosed(WsError):
    """The connection is closed: ``code`` is the WebSocket close code (1006 = lost)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed (code {code}): {reason}" if reason else f"closed (code {code})")
        self.code = code
        self.reason = reason


class NothingSent(ConnectionClosed):
    """A send failed before any of its bytes reached the socket: the peer cannot have seen it."""


class WsStats:
    """Per-connection transport counters."""

    __slots__ = (
        "bytes_received",
        "reads",
        "messages",
        "binary_messages",
        "binary_skipped",
        "pings_answered",
        "busy_polls",
        "busy_poll_timeouts",
        "spin_hooks",
    )

    def __init__(self) -> None:
        self.bytes_received = 0
        self.reads = 0
        self.messages = 0
        self.binary_messages = 0
        self.binary_skipped = 0
        self.pings_answered = 0
        self.busy_polls = 0  # reads that found nothing and busy-polled
        self.busy_poll_timeouts = 0  # ... and fell back to waiting in the kernel
        self.spin_hooks = 0  # spin hook calls during busy-polls


_rlog = RateLimitedLog(log)


class WsConnection:
    """An open client WebSocket connection (create it with :func:`connect`)."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        proto: Connection,
        url: str,
        *,
        initial: bytes = b"",
        fast_path: bool = True,
        max_read: int = DEFAULT_MAX_READ,
        max_message: int = DEFAULT_MAX_MESSAGE,
        send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
        busy_poll_s: float = 0.0,
    ) -> None:
        self.url = url
        self.stats = WsStats()
        self._stream = stream
        self._proto = proto
        self._fast = fast_path
        self._fast_send = fast_path
        # plain TCP: the socket, for the direct-write fast path (its fd is read at each write)
        self._sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        if os.name != "posix":
            self._sock = None
        self._max_read = max_read
        self._busy_poll_s = 0.0
        self.busy_poll_s = busy_poll_s
        # called every spin_hook_interval_s while a read busy-polls (never while it sleeps):
        # keeps the code that runs when a frame arrives in the CPU caches
        self.spin_hook: Callable[[], None] | None = None
        self.spin_hook_interval_s = DEFAULT_SPIN_HOOK_INTERVAL_S
        # TLS busy-poll: Trio's SSLStream buffers (plaintext in the SSL object, ciphertext in
        # its incoming BIO) and the socket under it; None when any is missing (no busy-poll)
        self._tls_probe = _tls_probe(stream)
        self._max_message = max_message
        self._send_timeout = send_timeout_s
        # the send "lock": a flag, and a FIFO of parked senders that get it handed over
        self._sending = False
        self._send_waiters = trio.lowlevel.ParkingLot()
        self._buf = bytearray()  # fast path: bytes of an incomplete frame
        self._in_fragmented = False  # fast path: a fragmented message is open (wsproto's)
        self._frag: list[str | bytes] = []
        self._frag_len = 0
        self._frag_binary = False
        self._pending_close: ConnectionClosed | None = None
        self._closed: ConnectionClosed | None = None
        self._initial = bool(initial)  # frames that came with the handshake answer
        if initial:
            if fast_path:
                self._buf += initial
            else:
                proto.receive_data(initial)

    @property
    def busy_poll_s(self) -> float:
        """How long a read that finds nothing spins (checkpoint + retry) before it waits in
        the kernel; 0 = never spin (the default)."""
        return self._busy_poll_s

    @busy_poll_s.setter
    def busy_poll_s(self, value: float) -> None:
        if not (isinstance(value, int | float) and 0.0 <= value <= MAX_BUSY_POLL_S):
            raise ValueError(f"busy_poll_s must be within [0, {MAX_BUSY_POLL_S}], got {value!r}")
        self._busy_poll_s = float(value)

    @property
    def busy_poll_supported(self) -> bool:
        """Whether busy-polling works on this stream (plain TCP, or Trio's TLS stream)."""
        return self._sock is not None or self._tls_probe is not None

    @property
    def is_open(self) -> bool:
        return self._closed is None and self._pending_close is None

    # ------------------------------------------------------------------ receive

    async def receive_batch(self) -> list[str]:
        """Read once from the socket (up to ``max_read`` bytes); return all complete messages.

        May return an empty list (a partial frame, or only control frames). Raises
        :class:`ConnectionClosed` on a close frame, a protocol error, EOF or a socket error;
        messages that arrived before the close in the same read are returned first.
        """
        if self._pending_close is not None:
            await self._finish_close(self._pending_close)
        if self._closed is not None:
            raise self._closed
        if self._initial:
            self._initial = False
            out = await self._handle(b"")
            if out:
                return out
        try:
            data = await self._receive_some()
        except _TRANSPORT_ERRORS as exc:
            await self._finish_close(ConnectionClosed(1006, f"connection lost: {exc!r}"))
        if not data:
            await self._finish_close(ConnectionClosed(1006, "connection lost (EOF)"))
        st = self.stats
        st.reads += 1
        st.bytes_received += len(data)
        return await self._handle(data)

    async def _receive_some(self) -> bytes | bytearray:
        """One read of up to ``max_read`` bytes. On plain TCP: one checkpoint, then
        ``os.read`` on the socket, waiting for readability only when nothing is there (the
        stream's ``receive_some`` runs through three wrapper layers and two context managers per
        read, all on the path from a frame's arrival to its order)."""
        sock = self._sock
        if sock is None:
            if self.busy_poll_s > 0.0:
                await self._spin_tls()
            data = await self._stream.receive_some(self._max_read)
            tls = self._tls_probe
            if tls is None or not data:
                return data
            # One TLS read returns one record at most: take the records that are already
            # complete in the TLS buffers too, so that a read is the batch that arrived, as
            # on plain TCP (a venue writing one record per message would otherwise give
            # one-message batches and the feed could never merge a burst's orders).
            buf: bytes | bytearray = data
            while len(buf) < self._max_read and _tls_ready(tls[0], tls[1]):
                more = await self._stream.receive_some(self._max_read - len(buf))
                if not more:
                    break  # closed: the next read reports it
                if type(buf) is not bytearray:
                    buf = bytearray(buf)
                buf += more
            return buf
        await trio.lowlevel.checkpoint()
        while True:
            fd = sock.fileno()  # -1 once closed: os.read raises EBADF (an OSError)
            try:
                return os.read(fd, self._max_read)
            except BlockingIOError:
                if self.busy_poll_s > 0.0:
                    spun = await self._spin_read(sock)
                    if spun is not None:
                        return spun
                await trio.lowlevel.wait_readable(fd)

    async def _spin_read(self, sock: trio.socket.SocketType) -> bytes | None:
        """Busy-poll (plain TCP): retry the non-blocking read after every checkpoint for up to
        ``busy_poll_s``; ``None`` when nothing came in that time. Every iteration passes
        through Trio's run loop (timers, other tasks and cancellation keep working); the
        thread never sleeps, so neither the vCPU nor the caches go cold between frames."""
        self.stats.busy_polls += 1
        now = perf_counter()
        deadline = now + self.busy_poll_s
        next_hook = now + self.spin_hook_interval_s
        max_read = self._max_read
        while now < deadline:
            await trio.lowlevel.checkpoint()
            try:
                return os.read(sock.fileno(), max_read)
            except BlockingIOError:
                now = perf_counter()
            if now >= next_hook and self.spin_hook is not None:
                self._run_spin_hook()
                try:  # a frame that came in during the hook: no scheduler pass first
                    return os.read(sock.fileno(), max_read)
                except BlockingIOError:
                    now = perf_counter()
                    next_hook = now + self.spin_hook_interval_s
        self.stats.busy_poll_timeouts += 1
        return None

    async def _spin_tls(self) -> None:
        """Busy-poll (TLS): checkpoint until the TLS layer holds buffered bytes or the socket
        under it is readable, for up to ``busy_poll_s``; the stream's own read follows."""
        tls = self._tls_probe
        if tls is None:
            return
        ssl_object, incoming, sock = tls
        fd = sock.fileno()
        if fd < 0 or _tls_ready(ssl_object, incoming):
            return  # closed (the stream's read reports it), or a record already buffered
        self.stats.busy_polls += 1
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        now = perf_counter()
        deadline = now + self.busy_poll_s
        next_hook = now + self.spin_hook_interval_s
        while now < deadline:
            await trio.lowlevel.checkpoint()
            if poller.poll(0) or _tls_ready(ssl_object, incoming):
                return
            now = perf_counter()
            if now >= next_hook and self.spin_hook is not None:
                self._run_spin_hook()
                if poller.poll(0):  # a record that came in during the hook
                    return
                now = perf_counter()
                next_hook = now + self.spin_hook_interval_s
        self.stats.busy_poll_timeouts += 1

    def _run_spin_hook(self) -> None:
        """Run the spin hook (e.g. warming the order path); one that raises is logged once
        and dropped: busy-poll goes on without it."""
        hook = self.spin_hook
        if hook is None:
            return
        self.stats.spin_hooks += 1
        try:
            hook()
        except Exception:
            log.exception("busy-poll spin hook %r failed; it is disabled", hook)
            self.spin_hook = None

    async def _handle(self, data: bytes | bytearray) -> list[str]:
        """Turn received bytes into messages; answer pings; note a close."""
        out: list[str] = []
        pongs: list[bytes] = []
        if self._fast:
            close = self._scan(data, out, pongs)
        else:
            if data:
                self._proto.receive_data(data)  # type: ignore[arg-type]  # bytearray is fine
            close = self._drain(out, pongs)
        self.stats.messages += len(out)
        if pongs:
            try:
                await self._send_bytes(b"".join(pongs))
            except ConnectionClosed as exc:
                close = close or exc
        if close is not None:
            if out:
                self._pending_close = close
            else:
                await self._finish_close(close)
        return out

    def _scan(
        self, data: bytes | bytearray, out: list[str], pongs: list[bytes]
    ) -> ConnectionClosed | None:
        """Fast path: split complete frames out of the buffer.

        An unfragmented, unmasked text frame with no RSV bits (``0x81``: nearly every frame a
        server sends) is decoded here as strict UTF-8. Every other frame (control frames,
        fragments, binary, RSV bits, unknown opcodes, invalid UTF-8) is handed whole to wsproto,
        which validates it and produces the events; a masked server frame (a protocol error)
        hands the rest of the stream to wsproto for good. wsproto therefore never holds a
        partial frame while the fast path is active, so the two never disagree on boundaries.
        """
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        n = len(buf)
        i = 0
        append = out.append
        max_message = self._max_message
        close: ConnectionClosed | None = None
        while n - i >= 2:
            b0 = buf[i]
            b1 = buf[i + 1]
            if b1 & 0x80:  # masked frame from a server: wsproto reports the protocol error
                self._fast = False
                self._proto.receive_data(bytes(buf[i:]))
                i = n
                close = self._drain(out, pongs)
                break
            length = b1 & 0x7F
            if length < 126:
                start = i + 2
            elif length == 126:
                if n - i < 4:
                    break
                length = (buf[i + 2] << 8) | buf[i + 3]
                start = i + 4
            else:
                if n - i < 10:
                    break
                length = int.from_bytes(buf[i + 2 : i + 10], "big")
                start = i + 10
            if length > max_message:
                close = ConnectionClosed(1009, f"frame larger than {max_message} bytes")
                i = n
                break
            end = start + length
            if end > n:
                break
            if b0 == 0x81 and not self._in_fragmented:
                try:
                    append(buf[start:end].decode())
                    i = end
                    continue
                except UnicodeDecodeError:
                    pass  # wsproto closes with 1007
            op = b0 & 0x0F
            if op == 1 or op == 2:
                self._in_fragmented = not b0 & 0x80
            elif op == 0 and b0 & 0x80:
                self._in_fragmented = False
            self._proto.receive_data(bytes(buf[i:end]))
            i = end
            close = self._drain(out, pongs)
            if close is not None:
                i = n
                break
        # keep the bytes of an incomplete frame
        if i >= n:
            self._buf = bytearray()
        elif buf is self._buf:
            del self._buf[:i]
        else:
            self._buf = bytearray(memoryview(buf)[i:])
        return close

    def _drain(self, out: list[str], pongs: list[bytes]) -> ConnectionClosed | None:
        """Collect wsproto's events: messages into ``out``, pong frames into ``pongs``."""
        append = out.append
        frag = self._frag
        for ev in self._proto.events():
            if isinstance(ev, TextMessage):
                if ev.message_finished and not frag:
                    append(ev.data)
                    continue
                close = self._fragment(ev.data, ev.message_finished, False, out)
            elif isinstance(ev, BytesMessage):
                close = self._fragment(bytes(ev.data), ev.message_finished, True, out)
            elif isinstance(ev, Ping):
                try:
                    pongs.append(self._proto.send(ev.response()))
                    self.stats.pings_answered += 1
                except LocalProtocolError:  # already closing: no pong any more
                    pass
                continue
            elif isinstance(ev, CloseConnection):
                return ConnectionClosed(ev.code, ev.reason or "")
            else:
                continue
            if close is not None:
                return close
        return None

    def _fragment(
        self, data: str | bytes, finished: bool, binary: bool, out: list[str]
    ) -> ConnectionClosed | None:
        frag = self._frag
        if not frag:
            self._frag_binary = binary
        frag.append(data)
        self._frag_len += len(data)
        if self._frag_len > self._max_message:
            frag.clear()
            self._frag_len = 0
            return ConnectionClosed(1009, f"message larger than {self._max_message} bytes")
        if not finished:
            return None
        self._frag_len = 0
        if not self._frag_binary:
            out.append("".join(frag))  # type: ignore[arg-type]
        else:
            self.stats.binary_messages += 1
            raw = b"".join(frag)  # type: ignore[arg-type]
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                self.stats.binary_skipped += 1
                _rlog.log(
                    "binary",
                    logging.WARNING,
                    "skipped a %d-byte binary message that is not UTF-8",
                    len(raw),
                )
        frag.clear()
        return None

    async def _finish_close(self, exc: ConnectionClosed) -> NoReturn:
        """Answer/send the close frame if still possible, close the stream, raise ``exc``."""
        self._pending_close = None
        if self._closed is None:
            self._closed = exc
            state = self._proto.state
            try:
                if state is ConnectionState.REMOTE_CLOSING:
                    await self._send_bytes(self._proto.send(CloseConnection(code=exc.code or 1000)))
                elif state is ConnectionState.OPEN and exc.code not in (None, 1005, 1006):
                    # protocol error detected locally (wsproto reports it as a close event)
                    await self._send_bytes(
                        self._proto.send(CloseConnection(code=exc.code or 1002, reason=exc.reason))
                    )
            except (ConnectionClosed, LocalProtocolError):
                pass
            await trio.aclose_forcefully(self._stream)
        raise self._closed

    # ------------------------------------------------------------------ send

    async def send_text(self, text: str) -> None:
        """Send one text message. Raises :class:`ConnectionClosed` if the connection is gone
        (:class:`NothingSent` when none of its bytes were handed to the socket)."""
        await self.send_texts([text])

    async def send_texts(self, texts: list[str], *, yield_after: bool = True) -> None:
        """Send several text messages with one socket write (see :meth:`send_text`).

        ``yield_after=False``: when the bytes were written at once, return without yielding to
        the scheduler (the caller must reach a checkpoint soon; the feed's reader does at its
        next socket read)."""
        closed = self._closed
        if closed is not None:
            raise NothingSent(closed.code, closed.reason)
        if self._fast_send:
            if self._proto.state is not ConnectionState.OPEN:
                raise NothingSent(1006, f"cannot send in state {self._proto.state.name}")
            data = b"".join([text_frame(t.encode()) for t in texts])
        else:
            try:
                data = b"".join([self._proto.send(Message(data=t)) for t in texts])
            except LocalProtocolError as exc:
                raise NothingSent(1006, f"cannot send: {exc}") from None
        await self._send_bytes(data, message=True, yield_after=yield_after)

    async def _send_bytes(
        self, data: bytes | bytearray, *, message: bool = False, yield_after: bool = True
    ) -> None:
        # An uncontended send starts without a checkpoint (acquiring a lock would yield to the
        # scheduler BEFORE the bytes leave: a whole scheduling pass on the order path); the
        # write yields right after its send syscall instead. A contended send parks; the
        # releasing sender hands the turn over (FIFO), so the flag stays set.
        if self._sending:
            await self._send_waiters.park()  # a cancel here: never got the turn, nothing to undo
        else:
            self._sending = True
        try:
            closed = self._closed
            if message and closed is not None:  # failed while we waited for our turn
                raise NothingSent(closed.code, closed.reason)
            await self._send_locked(data, yield_after)
        finally:
            if self._send_waiters:
                self._send_waiters.unpark()  # the next sender's turn (the flag stays set)
            else:
                self._sending = False

    async def _send_locked(
        self, data: bytes | bytearray | memoryview, yield_after: bool = True
    ) -> None:
        sock = self._sock
        if sock is not None:
            fd = sock.fileno()  # -1 once closed; read right before the write, no await between
            if fd >= 0:
                try:
                    n = os.write(fd, data)
                except BlockingIOError:
                    n = 0
                except OSError as exc:  # refused whole: none of these bytes were taken
                    err = ConnectionClosed(1006, f"send failed: {exc!r}")
                    self._closed = self._closed or err
                    await trio.aclose_forcefully(self._stream)
                    raise NothingSent(err.code, err.reason) from None
                if n == len(data):
                    if yield_after:
                        await trio.lowlevel.cancel_shielded_checkpoint()  # after the bytes left
                    return
                data = memoryview(data)[n:]  # the rest waits for the socket: send_all below
        with trio.CancelScope(shield=True) as cs:
            cs.deadline = trio.current_time() + self._send_timeout
            try:
                await self._stream.send_all(data)
            except _TRANSPORT_ERRORS as exc:
                err = ConnectionClosed(1006, f"send failed: {exc!r}")
                self._closed = self._closed or err
                await trio.aclose_forcefully(self._stream)
                raise err from None
        if cs.cancelled_caught:
            err = ConnectionClosed(1006, f"send timed out after {self._send_timeout}s")
            self._closed = self._closed or err
            await trio.aclose_forcefully(self._stream)
            raise err

    # ------------------------------------------------------------------ close

    async def aclose(self) -> None:
        """Close: send a close frame (best effort, ≤ 1 s, even when cancelled), drop the socket."""
        if self._closed is not None and self._proto.state is not ConnectionState.OPEN:
            await trio.aclose_forcefully(self._stream)
            return
        if self._closed is None:
            self._closed = ConnectionClosed(1000, "closed locally")
        if self._proto.state is ConnectionState.OPEN and not self._sending:
            with trio.CancelScope(shield=True) as cs:
                cs.deadline = trio.current_time() + CLOSE_TIMEOUT_S
                try:
                    frame = self._proto.send(CloseConnection(code=1000))
                    await self._stream.send_all(frame)
                except (*_TRANSPORT_ERRORS, LocalProtocolError):
                    pass
        await trio.aclose_forcefully(self._stream)


_MASK_POOL_BYTES: Final = 4096
_mask_pool = b""  # random bytes from os.urandom; 4 per masking key
_mask_pos = 0


def _drop_mask_pool() -> None:
    global _mask_pool, _mask_pos
    _mask_pool = b""
    _mask_pos = 0


if hasattr(os, "register_at_fork"):  # a forked child never reuses its parent's keys
    os.register_at_fork(after_in_child=_drop_mask_pool)


def _tls_ready(ssl_object: ssl.SSLObject, incoming: ssl.MemoryBIO) -> bool:
    """Whether a read of the TLS stream returns without waiting for the socket: decrypted
    bytes are pending, or at least one whole TLS record is buffered (a partial one needs the
    socket). Exception: a whole record that carries no application data (a TLS 1.3 key update
    or session ticket, rare after the handshake) makes that read wait for the next record."""
    if ssl_object.pending():
        return True
    n = incoming.pending
    if n < _TLS_HEADER:
        return False
    head = incoming.read()  # a MemoryBIO cannot peek: read it all and put it back
    incoming.write(head)
    return n >= _TLS_HEADER + int.from_bytes(head[3:5], "big")


def _tls_probe(
    stream: trio.abc.Stream,
) -> tuple[ssl.SSLObject, ssl.MemoryBIO, trio.socket.SocketType] | None:
    """For busy-polling a TLS stream: its SSL object, incoming BIO and socket.

    The SSL object and the BIO are Trio internals (``SSLStream._ssl_object`` and
    ``SSLStream._incoming``: Trio has no public API for them). They are read defensively (a
    Trio without them gives None: batch reads of one record at a time and no busy-poll) and
    loudly: that case logs a WARNING, and tests/venues/test_ws_trio_internals.py fails on such
    a Trio, so an upgrade that renames them cannot silently slow the feed down."""
    if not isinstance(stream, trio.SSLStream) or os.name != "posix":
        return None
    transport = stream.transport_stream
    if not isinstance(transport, trio.SocketStream):
        return None
    ssl_object = getattr(stream, "_ssl_object", None)
    incoming = getattr(stream, "_incoming", None)
    if not (isinstance(ssl_object, ssl.SSLObject) and isinstance(incoming, ssl.MemoryBIO)):
        log.warning("trio %s: SSLStream has no _ssl_object/_incoming (Trio internals this "
                    "client reads); TLS reads return one record at a time and busy_poll_s is "
                    "ignored", trio.__version__)
        return None
    return ssl_object, incoming, transport.socket


def text_frame(payload: bytes) -> bytes:
    """One complete, masked client text frame (RFC 6455 §5.2) for UTF-8 ``payload``."""
    global _mask_pool, _mask_pos
    n = len(payload)
    pos = _mask_pos
    if pos + 4 > len(_mask_pool):
        _mask_pool = os.urandom(_MASK_POOL_BYTES)
        pos = 0
    _mask_pos = pos + 4
    key = _mask_pool[pos : pos + 4]
    if n:
        reps = (key * ((n >> 2) + 1))[:n]
        payload = (int.from_bytes(payload, "little") ^ int.from_bytes(reps, "little")).to_bytes(
            n, "little"
        )
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 0xFF)) + n.to_bytes(8, "big")
    return head + key + payload


def _split_url(url: str) -> tuple[bool, str, int, str, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ConnectError(f"unsupported URL scheme {parts.scheme!r} in {url!r} (need ws/wss)")
    host = parts.hostname
    if not host:
        raise ConnectError(f"no host in URL {url!r}")
    tls = scheme == "wss"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError as exc:
        raise ConnectError(f"bad port in URL {url!r}: {exc}") from None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    default_port = 443 if tls else 80
    host_header = host if port == default_port else f"{host}:{port}"
    if ":" in host and port == default_port:  # IPv6 literal
        host_header = f"[{host}]"
    elif ":" in host:
        host_header = f"[{host}]:{port}"
    return tls, host, port, target, host_header


async def connect(
    url: str,
    timeout: float,  # noqa: ASYNC109 - the whole connect+TLS+upgrade budget, by API contract
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_read: int = DEFAULT_MAX_READ,
    max_message: int = DEFAULT_MAX_MESSAGE,
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
    fast_path: bool = True,
    busy_poll_s: float = 0.0,
) -> WsConnection:
    """Open a client WebSocket to ``ws://`` or ``wss://`` ``url`` within ``timeout`` seconds.

    TLS uses ``ssl_context`` or :func:`ssl.create_default_context` with SNI = the URL host.
    ``busy_poll_s``: see :attr:`WsConnection.busy_poll_s`.
    Raises :class:`ConnectError` on any failure (the socket is closed first).
    """
    tls, host, port, target, host_header = _split_url(url)
    stream: trio.abc.Stream | None = None
    try:
        with trio.fail_after(timeout):
            if tls:
                ctx = ssl_context if ssl_context is not None else ssl.create_default_context()
                stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=ctx)
            else:
                stream = await trio.open_tcp_stream(host, port)
            ws = wsproto.WSConnection(ConnectionType.CLIENT)
            await stream.send_all(ws.send(Request(host=host_header, target=target)))
            head = b""
            while True:
                data = await stream.receive_some(_HANDSHAKE_READ)
                if not data:
                    raise ConnectError(f"{url}: connection closed during the WebSocket handshake")
                head += data
                end = head.find(b"\r\n\r\n")
                if end >= 0:
                    break
                if len(head) > _MAX_HANDSHAKE_BYTES:
                    raise ConnectError(f"{url}: no WebSocket handshake answer in {len(head)} bytes")
            # only the HTTP head goes to wsproto; bytes after it are already WebSocket frames
            initial = head[end + 4 :]
            ws.receive_data(head[: end + 4])
            for ev in ws.events():
                if isinstance(ev, AcceptConnection):
                    break
                if isinstance(ev, RejectConnection):
                    raise ConnectError(
                        f"{url}: WebSocket upgrade rejected with HTTP {ev.status_code}"
                    )
            else:
                raise ConnectError(f"{url}: invalid WebSocket handshake answer")
    except ConnectError:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise
    except trio.TooSlowError:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise ConnectError(f"{url}: connect timed out after {timeout}s") from None
    except (*_TRANSPORT_ERRORS, ProtocolError) as exc:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise ConnectError(f"{url}: {exc!r}") from None
    except BaseException:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise
    proto = ws.connection
    assert proto is not None
    return WsConnection(
        stream,
        proto,
        url,
        initial=initial,
        fast_path=fast_path,
        max_read=max_read,
        max_message=max_message,
        send_timeout_s=send_timeout_s,
        busy_poll_s=busy_poll_s,
    )
