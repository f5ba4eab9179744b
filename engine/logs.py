"""Logging setup: owns how log records leave the process (console, stderr prefixes, journal).

Three outputs, chosen by :func:`setup_logging`:

- **journal** — under systemd, when ``JOURNAL_STREAM`` names our stderr and the journal socket
  exists (``/run/systemd/journal/socket``; ``ENGINE_JOURNAL_SOCKET`` overrides the path for
  tests): :class:`JournalHandler` sends one native-protocol datagram per record with
  ``MESSAGE``, ``PRIORITY``, ``SYSLOG_IDENTIFIER=engine``, ``LOGGER``, ``CODE_FILE``,
  ``CODE_LINE``, ``CODE_FUNC`` and, when a log call passes them through ``extra=``,
  ``MARKET``, ``SIDE``, ``SIGNAL_ID``, ``CLOID``, ``REASON`` (so
  ``journalctl -u engine MARKET=xyz:GOLD`` works). A record the socket refuses (too large,
  socket gone, journald backed up) goes to stderr with a priority prefix instead.
- **stderr with syslog priority prefixes** — otherwise under systemd (``JOURNAL_STREAM`` or
  ``INVOCATION_ID`` set): every line starts ``<N>`` so ``journalctl -p warning`` filters
  correctly; the timestamp is left to the journal.
- **console** — elsewhere: ``2025-01-01T00:00:00.000Z WARNING engine.x: text [market=…]``.

Secrets are never passed to the logger. Belt and braces, :class:`SecretRedactor` (installed on
every handler) replaces any run of 64+ hex digits (with or without ``0x``: a private key) and
every value given to :func:`register_secret` by ``<redacted>`` — in the message, its
arguments, the traceback and the extra fields.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any, Final

DEFAULT_JOURNAL_SOCKET: Final = "/run/systemd/journal/socket"
JOURNAL_SOCKET_ENV: Final = "ENGINE_JOURNAL_SOCKET"
SYSLOG_IDENTIFIER: Final = "engine"
REDACTED: Final = "<redacted>"
#: ``extra=`` keys carried as journal fields (and shown on the console), in display order
EXTRA_FIELDS: Final = (("market", "MARKET"), ("side", "SIDE"), ("signal_id", "SIGNAL_ID"),
                       ("cloid", "CLOID"), ("reason", "REASON"))


def _priority(levelno: int) -> int:
    """The syslog priority of a logging level (custom levels round down)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


# --- secret redaction --------------------------------------------------------------------------

_HEX_SECRET_RE: Final = re.compile(r"(?:0[xX])?[0-9a-fA-F]{64,}")
_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secrets_re: re.Pattern[str] | None = None
_EXC_FORMATTER: Final = logging.Formatter()

log = logging.getLogger(__name__)


def register_secret(value: str) -> None:
    """Redact ``value`` (an ops token, a webhook URL, …) from every log record from now on."""
    global _secrets_re
    if not isinstance(value, str) or not value.strip():
        log.warning("register_secret: ignored an empty or non-text value (%s)",
                    type(value).__name__)
        return
    with _secrets_lock:
        _secrets.update({value, value.strip()})
        ordered = sorted(_secrets, key=len, reverse=True)  # longest first: no partial leftovers
        _secrets_re = re.compile("|".join(re.escape(s) for s in ordered))
    if len(value.strip()) < 8:
        log.warning("register_secret: a %d-character secret is short; log lines may be "
                    "over-redacted", len(value.strip()))


def redact(text: str) -> str:
    """``text`` with 64+-hex-digit runs and registered secrets replaced by ``<redacted>``."""
    pattern = _secrets_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _HEX_SECRET_RE.sub(REDACTED, text)


class SecretRedactor(logging.Filter):
    """Redacts secrets in place (message + args, traceback, stack, extras); never drops a record.

    A message whose arguments do not match its format is kept, marked, instead of raising
    into the caller.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            text = (f"<unformattable log message {record.msg!r} with args {record.args!r}: "
                    f"{type(exc).__name__}: {exc}>")
        record.msg = redact(text)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXC_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for attr, _field in EXTRA_FIELDS:
            value = record.__dict__.get(attr)
            if value is not None:
                record.__dict__[attr] = redact(str(value))
        return True


# --- formatters --------------------------------------------------------------------------------

def extras_suffix(record: logging.LogRecord) -> str:
    """`` [market=… side=… cloid=…]`` for the extras present on ``record``, else ``""``."""
    parts = [f"{attr}={record.__dict__[attr]}" for attr, _f in EXTRA_FIELDS
             if record.__dict__.get(attr) is not None]
    return f" [{' '.join(parts)}]" if parts else ""


class ConsoleFormatter(logging.Formatter):
    """UTC timestamp, level, logger, message, extras; traceback below."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s",
                         "%Y-%m-%dT%H:%M:%S")
        self.converter = time.gmtime

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record) + extras_suffix(record)


class _SyslogPrefixFormatter(logging.Formatter):
    """``<N>logger: message [extras]``; every line of a traceback carries the prefix too, so
    the journal files all of it under the record's priority."""

    def __init__(self) -> None:
        super().__init__("%(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        return f"{record.name}: {super().formatMessage(record)}{extras_suffix(record)}"

    def format(self, record: logging.LogRecord) -> str:
        prio = _priority(record.levelno)
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).split("\n"))


# --- the native journal protocol ---------------------------------------------------------------

_FIELD_NAME_RE: Final = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")


def encode_journal_field(name: str, value: str) -> bytes:
    """One field of the native protocol: ``NAME=value\\n``, or for a value with a newline
    ``NAME\\n`` + little-endian u64 length + value + ``\\n``."""
    if _FIELD_NAME_RE.fullmatch(name) is None or name[0].isdigit():
        raise ValueError(f"invalid journal field name {name!r}")
    data = value.encode("utf-8", "replace")
    key = name.encode("ascii")
    if b"\n" in data:
        return key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key + b"=" + data + b"\n"


class JournalHandler(logging.Handler):
    """Sends each record as one native journal datagram to ``path``; a record that cannot be
    sent goes to ``fallback`` (stderr with priority prefixes by default), and the first such
    failure is announced there once."""

    def __init__(self, path: str = DEFAULT_JOURNAL_SOCKET,
                 fallback: logging.Handler | None = None,
                 identifier: str = SYSLOG_IDENTIFIER) -> None:
        super().__init__()
        self.path = path
        self.identifier = identifier
        if fallback is None:
            fallback = logging.StreamHandler(sys.stderr)
            fallback.setFormatter(_SyslogPrefixFormatter())
        self.fallback = fallback
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self.sent = 0
        self.failures = 0
        self._announced = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setblocking(False)  # never stall the event loop on a backed-up journald

    def encode(self, record: logging.LogRecord) -> bytes:
        fields = [
            ("MESSAGE", self.format(record)),
            ("PRIORITY", str(_priority(record.levelno))),
            ("SYSLOG_IDENTIFIER", self.identifier),
            ("LOGGER", record.name),
            ("CODE_FILE", record.pathname),
            ("CODE_LINE", str(record.lineno)),
            ("CODE_FUNC", record.funcName or ""),
        ]
        for attr, name in EXTRA_FIELDS:
            value = record.__dict__.get(attr)
            if value is not None:
                fields.append((name, str(value)))
        return b"".join(encode_journal_field(k, v) for k, v in fields)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.encode(record)
        except (TypeError, ValueError) as exc:
            self._fall_back(record, f"cannot encode the record ({type(exc).__name__})")
            return
        try:
            self._sock.sendto(data, self.path)
        except OSError as exc:
            self._fall_back(record, f"{type(exc).__name__}: {exc.strerror or exc}, "
                                    f"{len(data)} bytes")
            return
        self.sent += 1

    def _fall_back(self, record: logging.LogRecord, why: str) -> None:
        self.failures += 1
        if not self._announced:
            self._announced = True
            note = logging.LogRecord(
                __name__, logging.WARNING, __file__, 0,
                f"journal socket {self.path}: send failed ({why}); records the journal socket "
                f"refuses are written to stderr instead (announced once)", None, None)
            self.fallback.handle(note)
        self.fallback.handle(record)

    def close(self) -> None:
        self.acquire()
        try:
            self._sock.close()
        finally:
            self.release()
        super().close()


# --- setup -------------------------------------------------------------------------------------

def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


def journal_socket_path(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(JOURNAL_SOCKET_ENV) or DEFAULT_JOURNAL_SOCKET


def stream_is_journal(stream: Any, env: Mapping[str, str] | None = None) -> bool:
    """``JOURNAL_STREAM`` (``device:inode``) names ``stream``'s file: systemd connected it to
    the journal (the variable alone can leak into shells started from a service)."""
    env = os.environ if env is None else env
    raw = env.get("JOURNAL_STREAM", "")
    dev, sep, ino = raw.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (AttributeError, OSError, ValueError):
        return False  # io.StringIO and friends have no fileno


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def setup_logging(level: str = "INFO", stream: IO[str] | None = None, *,
                  env: Mapping[str, str] | None = None) -> logging.Handler:
    """Configure the root logger (idempotent: replaces handlers installed earlier) and return
    the handler installed. ``stream`` defaults to stderr; ``env`` to ``os.environ``."""
    env = os.environ if env is None else env
    out: IO[str] = stream if stream is not None else sys.stderr
    redactor = SecretRedactor()
    notes: list[tuple[int, str]] = []
    handler: logging.Handler
    prefix = logging.StreamHandler(out)
    prefix.setFormatter(_SyslogPrefixFormatter())
    prefix.addFilter(redactor)
    path = journal_socket_path(env)
    if stream_is_journal(out, env) and _is_socket(path):
        try:
            handler = JournalHandler(path, fallback=prefix)
            notes.append((logging.DEBUG, f"logging to the journal socket {path}"))
        except OSError as exc:
            handler = prefix
            notes.append((logging.WARNING, f"cannot open a journal socket ({exc.strerror}): "
                                           "logging to stderr with priority prefixes"))
    elif under_systemd(env):
        handler = prefix
        if env.get(JOURNAL_SOCKET_ENV) and not _is_socket(path):
            notes.append((logging.WARNING, f"{JOURNAL_SOCKET_ENV}={path} is not a socket: "
                                           "logging to stderr with priority prefixes"))
    else:
        handler = logging.StreamHandler(out)
        handler.setFormatter(ConsoleFormatter())
    handler.addFilter(redactor)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        if isinstance(h, JournalHandler):
            h.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter stays at WARNING unless we debug.
    for noisy in ("httpx", "httpcore", "trio-websocket", "hpack"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for lvl, text in notes:
        log.log(lvl, "%s", text)
    return handler
