"""Per-signer nonce allocation and the local-vs-server clock drift check (docs/reference/hyperliquid-protocol.md §11).

The exchange keeps, per signer (the agent address), a set of the highest nonces; a new nonce
must be above the smallest of them, never repeat, and lie within about a day of block time.
The recommended scheme, used here: nonce = unix ms, one counter per signer fast-forwarded to
now, ``next(now_ms) = max(last + 1, now_ms)``.

:class:`NonceAllocator` is synchronous (no awaits), so Trio tasks sharing one allocator cannot
interleave inside :meth:`~NonceAllocator.next`: every caller gets a distinct, strictly larger
nonce even when the clock stalls or steps backwards. Use exactly one allocator per signer per
process. Drift: warn at 2 s and refuse to trade at 5 s between local and server clocks.

Across restarts (:class:`NonceStore`): a new process must never reuse a nonce of the previous
one — a restart within the same millisecond, or after the wall clock stepped back, would.
The allocator therefore keeps a *reservation* persisted in a file: a high-water mark that is
always ≥ every nonce it has issued. At start the allocator continues above the stored mark;
the reservation is renewed ``LEASE_MS`` ahead of ``max(now, last)`` off the order path
(:meth:`NonceAllocator.renew_target` + :meth:`NonceAllocator.reserved_to`, written by a task in
a worker thread), and only a nonce that would pass the reservation (a burst of more than
``LEASE_MS`` nonces while the clock stalls) writes the file synchronously before it is issued.
After a crash the next process's nonces lead its clock by at most ``LEASE_MS`` (well inside the
venue's window of a day); a clean stop leaves the same.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
from pathlib import Path
from typing import Final

import attrs

log = logging.getLogger(__name__)

DRIFT_WARN_MS: Final = 2_000
DRIFT_REFUSE_MS: Final = 5_000
_U64_LIMIT: Final = 1 << 64
LEASE_MS: Final = 5_000
"""How far ahead of ``max(now, last)`` the persisted high-water mark is reserved."""


class NonceStoreError(Exception):
    """The persisted nonce high-water mark cannot be read or written."""


class NonceStore:
    """One signer's nonce high-water mark in a file: one decimal integer ≥ every nonce the
    signer's allocator ever issued. Written atomically (temporary file, fsync, rename), never
    lowered, one writer at a time (the renewal thread and a synchronous reservation)."""

    __slots__ = ("path", "_lock", "_saved")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._saved = 0

    def load(self) -> int:
        """The stored mark (0 when the file does not exist yet); :class:`NonceStoreError`
        when it cannot be read or holds no non-negative integer (never guessed: a low
        guess could reuse a nonce)."""
        try:
            text = self.path.read_text("ascii")
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            raise NonceStoreError(f"nonce high-water mark {self.path} is unreadable: "
                                  f"{getattr(exc, 'strerror', None) or exc}") from None
        value = text.strip()
        if not value.isdigit() or not value.isascii():
            raise NonceStoreError(f"nonce high-water mark {self.path} holds {value[:40]!r}, "
                                  f"not a non-negative integer")
        mark = int(value)
        with self._lock:
            self._saved = max(self._saved, mark)
        return mark

    def save(self, value: int) -> int:
        """Persist ``max(value, the mark saved so far)`` durably before returning it;
        :class:`NonceStoreError` if it cannot be written. Thread-safe."""
        with self._lock:
            value = max(value, self._saved)
            self._write(value)
            self._saved = value
            return value

    def _write(self, value: int) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, f"{value}\n".encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise NonceStoreError(f"cannot write the nonce high-water mark {self.path}: "
                                  f"{exc.strerror or exc}") from None


class NonceAllocator:
    """Strictly increasing ms nonces for one signer: ``max(last + 1, now_ms)``; with a
    :class:`NonceStore`, also across restarts (see the module docstring)."""

    __slots__ = ("_last", "_reserved", "_store")

    def __init__(self, last: int = 0, *, store: NonceStore | None = None,
                 now_ms: int | None = None) -> None:
        """``store``: continue above its mark and reserve ``LEASE_MS`` ahead at once
        (``now_ms``: the clock at start; raises :class:`NonceStoreError`)."""
        if type(last) is not int or last < 0:
            raise ValueError(f"last must be an int ≥ 0, got {last!r}")
        self._store = store
        self._reserved = _U64_LIMIT  # no store: nothing to reserve
        if store is not None:
            last = max(last, store.load())
            self._reserved = last
            target = max(last, now_ms if type(now_ms) is int else 0) + LEASE_MS
            self._reserved = store.save(target)
        self._last = last

    @property
    def last(self) -> int:
        """The most recently issued nonce (the initial ``last`` before any)."""
        return self._last

    def next(self, now_ms: int) -> int:
        """The next nonce: ``now_ms`` if it is above the last one, else ``last + 1``."""
        if type(now_ms) is not int:
            raise ValueError(f"now_ms must be an int ms timestamp, got {now_ms!r}")
        last = self._last
        n = now_ms if now_ms > last else last + 1
        if n >= _U64_LIMIT:
            raise ValueError(f"nonce {n} does not fit in 64 bits")
        if n > self._reserved:
            self._reserve_now(n)
        self._last = n
        return n

    @property
    def reserved(self) -> int:
        """The persisted high-water mark (every issued nonce is ≤ it; 2^64 without a store)."""
        return self._reserved

    def renew_target(self, now_ms: int) -> int | None:
        """The mark to persist now (``LEASE_MS`` ahead of ``max(now, last)``) when less than
        half a lease is left, else None (nothing to do; always None without a store)."""
        if self._store is None:
            return None
        base = max(now_ms, self._last)
        if self._reserved - base >= LEASE_MS // 2:
            return None
        return base + LEASE_MS

    @property
    def store(self) -> NonceStore | None:
        return self._store

    def reserved_to(self, value: int) -> None:
        """``value`` has been persisted (by the renewal task): nonces up to it may be issued."""
        if value > self._reserved:
            self._reserved = value

    def _reserve_now(self, n: int) -> None:
        """Off the common path: persist a mark above ``n`` before ``n`` is issued."""
        store = self._store
        assert store is not None
        try:
            self._reserved = store.save(n + LEASE_MS)
        except NonceStoreError as exc:
            raise ValueError(str(exc)) from None  # the order is not sent ("signing failed")

    def lead_ms(self, now_ms: int) -> int:
        """How far the last nonce is ahead of ``now_ms`` (> 0 after bursts or clock steps back)."""
        return self._last - now_ms

    def __repr__(self) -> str:
        return f"NonceAllocator(last={self._last})"


class Drift(enum.Enum):
    OK = "ok"
    WARN = "warn"
    REFUSE = "refuse"


@attrs.frozen(slots=True)
class DriftCheck:
    """Local minus server clock in ms, and the verdict."""

    drift_ms: int
    verdict: Drift

    @property
    def ok_to_trade(self) -> bool:
        return self.verdict is not Drift.REFUSE


class ClockDriftError(RuntimeError):
    """The local clock is too far from the server's for nonces to be trusted."""


def check_drift(
    local_ms: int,
    server_ms: int,
    *,
    warn_ms: int = DRIFT_WARN_MS,
    refuse_ms: int = DRIFT_REFUSE_MS,
) -> DriftCheck:
    """Classify ``|local − server|``: ≥ ``refuse_ms`` REFUSE, ≥ ``warn_ms`` WARN, else OK."""
    drift = local_ms - server_ms
    mag = abs(drift)
    verdict = Drift.REFUSE if mag >= refuse_ms else Drift.WARN if mag >= warn_ms else Drift.OK
    return DriftCheck(drift, verdict)


def ensure_clock_ok(
    local_ms: int,
    server_ms: int,
    *,
    warn_ms: int = DRIFT_WARN_MS,
    refuse_ms: int = DRIFT_REFUSE_MS,
) -> DriftCheck:
    """:func:`check_drift`, logging a warning on WARN and raising :class:`ClockDriftError`
    on REFUSE."""
    c = check_drift(local_ms, server_ms, warn_ms=warn_ms, refuse_ms=refuse_ms)
    if c.verdict is Drift.REFUSE:
        raise ClockDriftError(
            f"local clock is {c.drift_ms} ms off the server's (refuse at ±{refuse_ms} ms): "
            "fix time sync before trading"
        )
    if c.verdict is Drift.WARN:
        log.warning("local clock is %d ms off the server's (warn at ±%d ms)", c.drift_ms, warn_ms)
    return c
