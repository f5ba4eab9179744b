"""Logging outputs: readable console, syslog prefixes, the native journal protocol (parsed here
from a real AF_UNIX datagram socket), the stderr fallback, and secret redaction everywhere."""

from __future__ import annotations

import io
import logging
import os
import secrets
import socket
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from engine.logs import (
    JournalHandler,
    SecretRedactor,
    encode_journal_field,
    register_secret,
    setup_logging,
)

KEY = "4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d"
EXTRAS = {"market": "xyz:GOLD", "side": "buy", "signal_id": "sig_GOLD_buy_1_ab-7",
          "cloid": "0x0123456789abcdef0123456789abcdef", "reason": "quote lag"}


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            if h not in handlers:
                h.close()
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="jrn", dir="/tmp"))
    try:
        yield d
    finally:
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


def parse_native(data: bytes) -> dict[str, list[str]]:
    """The journal's native protocol, parsed independently of engine.logs."""
    fields: dict[str, list[str]] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            i = nl + 1
        else:
            name = line
            (size,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            value = data[nl + 9:nl + 9 + size]
            assert data[nl + 9 + size:nl + 10 + size] == b"\n"
            i = nl + 10 + size
        fields.setdefault(name.decode("ascii"), []).append(value.decode("utf-8"))
    return fields


class Journal:
    """A fake journald: a bound datagram socket and the stream that stands for our stderr."""

    def __init__(self, d: Path) -> None:
        self.path = str(d / "journal.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(10)
        self.stderr_path = d / "stderr.log"
        self.stderr: IO[str] = open(self.stderr_path, "w+", encoding="utf-8")
        st = os.fstat(self.stderr.fileno())
        self.env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
                    "ENGINE_JOURNAL_SOCKET": self.path, "INVOCATION_ID": "abc"}

    def receive(self) -> dict[str, list[str]]:
        return parse_native(self.sock.recv(1 << 20))

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(1 << 20)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(10)
        return False

    def stderr_text(self) -> str:
        self.stderr.flush()
        return self.stderr_path.read_text("utf-8")

    def close(self) -> None:
        self.sock.close()
        self.stderr.close()


@pytest.fixture
def journal(short_dir: Path) -> Iterator[Journal]:
    j = Journal(short_dir)
    try:
        yield j
    finally:
        j.close()


def test_console_is_readable_with_extras() -> None:
    out = io.StringIO()
    setup_logging("INFO", out, env={})
    log = logging.getLogger("engine.test")
    log.info("plain %s", "line")
    log.warning("signal", extra=EXTRAS)
    log.debug("hidden")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" INFO    engine.test: plain line")
    assert lines[0][:4].isdigit() and lines[0][23] == "Z"  # 2025-01-01T00:00:00.000Z
    assert lines[1].endswith(
        "WARNING engine.test: signal [market=xyz:GOLD side=buy signal_id=sig_GOLD_buy_1_ab-7 "
        "cloid=0x0123456789abcdef0123456789abcdef reason=quote lag]")


def test_syslog_prefixes_under_systemd_on_every_line() -> None:
    out = io.StringIO()
    setup_logging("DEBUG", out, env={"INVOCATION_ID": "abc"})
    log = logging.getLogger("engine.test")
    log.debug("d")
    log.info("i", extra={"market": "xyz:SILVER"})
    log.error("e")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    lines = out.getvalue().splitlines()
    assert lines[:3] == ["<7>engine.test: d", "<6>engine.test: i [market=xyz:SILVER]",
                         "<3>engine.test: e"]
    assert lines[3] == "<3>engine.test: failed"
    assert len(lines) > 5 and all(line.startswith("<3>") for line in lines[3:])
    assert lines[-1] == "<3>RuntimeError: boom"


def test_journal_stream_not_ours_means_no_journal_socket(journal: Journal) -> None:
    env = dict(journal.env, JOURNAL_STREAM="1:2")  # leaked from some other service
    handler = setup_logging("INFO", journal.stderr, env=env)
    assert not isinstance(handler, JournalHandler)
    logging.getLogger("engine.test").warning("to stderr")
    assert journal.stderr_text() == "<4>engine.test: to stderr\n"
    assert journal.nothing_pending()


def test_journal_fields(journal: Journal) -> None:
    handler = setup_logging("INFO", journal.stderr, env=journal.env)
    assert isinstance(handler, JournalHandler)
    log = logging.getLogger("engine.trading")
    log.warning("entry sent for %s", "xyz:GOLD", extra=EXTRAS)
    f = journal.receive()
    assert f["MESSAGE"] == ["engine.trading: entry sent for xyz:GOLD"]
    assert f["PRIORITY"] == ["4"]
    assert f["SYSLOG_IDENTIFIER"] == ["engine"]
    assert f["LOGGER"] == ["engine.trading"]
    assert f["CODE_FUNC"] == ["test_journal_fields"]
    assert f["CODE_FILE"] == [__file__] and int(f["CODE_LINE"][0]) > 0
    assert f["MARKET"] == ["xyz:GOLD"] and f["SIDE"] == ["buy"]
    assert f["SIGNAL_ID"] == ["sig_GOLD_buy_1_ab-7"]
    assert f["CLOID"] == ["0x0123456789abcdef0123456789abcdef"]
    assert f["REASON"] == ["quote lag"]
    log.info("no extras")
    f = journal.receive()
    assert f["PRIORITY"] == ["6"] and "MARKET" not in f and "CLOID" not in f
    assert journal.stderr_text() == ""


def test_journal_multiline_values_use_the_binary_form(journal: Journal) -> None:
    setup_logging("INFO", journal.stderr, env=journal.env)
    log = logging.getLogger("engine.test")
    try:
        raise ValueError("bad frame\nsecond line")
    except ValueError:
        log.exception("decode failed", extra={"reason": "line one\nline two=still two"})
    f = journal.receive()
    msg = f["MESSAGE"][0]
    assert msg.startswith("engine.test: decode failed\nTraceback (most recent call last):")
    assert msg.endswith("ValueError: bad frame\nsecond line")
    assert f["PRIORITY"] == ["3"]
    assert f["REASON"] == ["line one\nline two=still two"]


def test_encode_field_forms() -> None:
    assert encode_journal_field("MARKET", "xyz:GOLD") == b"MARKET=xyz:GOLD\n"
    assert encode_journal_field("MESSAGE", "a\nb") == (b"MESSAGE\n" + struct.pack("<Q", 3)
                                                       + b"a\nb\n")
    for bad in ("market", "_PID", "1X", "A" * 65, "A=B", ""):
        with pytest.raises(ValueError):
            encode_journal_field(bad, "x")


def test_journal_send_failure_falls_back_to_stderr(journal: Journal) -> None:
    handler = setup_logging("INFO", journal.stderr, env=journal.env)
    assert isinstance(handler, JournalHandler)
    log = logging.getLogger("engine.test")
    log.info("first")
    assert journal.receive()["MESSAGE"] == ["engine.test: first"]
    os.unlink(journal.path)  # journald went away
    log.warning("second", extra={"market": "xyz:GOLD"})
    log.error("third")
    text = journal.stderr_text().splitlines()
    assert text[0].startswith(f"<4>engine.logs: journal socket {journal.path}: send failed (")
    assert text[1:] == ["<4>engine.test: second [market=xyz:GOLD]", "<3>engine.test: third"]
    assert handler.failures == 2 and handler.sent == 1


def test_oversized_record_falls_back_to_stderr(journal: Journal) -> None:
    handler = setup_logging("INFO", journal.stderr, env=journal.env)
    assert isinstance(handler, JournalHandler)
    log = logging.getLogger("engine.test")
    big = "x" * (8 << 20)  # beyond any datagram size the kernel accepts by default
    log.info("big %s", big)
    log.info("small")
    assert journal.receive()["MESSAGE"] == ["engine.test: small"]
    lines = journal.stderr_text().splitlines()
    assert "send failed" in lines[0]
    assert lines[1] == f"<6>engine.test: big {big}"
    assert handler.failures == 1


def test_missing_journal_socket_override_is_reported(short_dir: Path) -> None:
    out = io.StringIO()
    handler = setup_logging("INFO", out, env={"INVOCATION_ID": "x", "JOURNAL_STREAM": "1:2",
                                              "ENGINE_JOURNAL_SOCKET": str(short_dir / "no")})
    assert not isinstance(handler, JournalHandler)
    assert "ENGINE_JOURNAL_SOCKET" in out.getvalue() and out.getvalue().startswith("<4>")


# --- secrets -----------------------------------------------------------------------------------

def test_hex_keys_are_redacted_everywhere(journal: Journal) -> None:
    setup_logging("INFO", journal.stderr, env=journal.env)
    log = logging.getLogger("engine.test")
    log.warning("key 0x%s and %s and upper %s", KEY, KEY, KEY.upper(),
                extra={"reason": f"leaked {KEY}", "cloid": "0x" + KEY})
    f = journal.receive()
    assert f["MESSAGE"] == ["engine.test: key <redacted> and <redacted> and upper <redacted>"]
    assert f["REASON"] == ["leaked <redacted>"] and f["CLOID"] == ["<redacted>"]
    try:
        raise ValueError(f"cannot parse {KEY}")
    except ValueError:
        log.exception("failed")
    f = journal.receive()
    assert KEY not in f["MESSAGE"][0] and "ValueError: cannot parse <redacted>" in f["MESSAGE"][0]
    # 40-hex addresses and 32-hex cloids are not secrets
    address = "0x" + "ab" * 20
    log.info("agent %s", address, extra={"cloid": EXTRAS["cloid"]})
    f = journal.receive()
    assert f["MESSAGE"] == [f"engine.test: agent {address}"]
    assert f["CLOID"] == [EXTRAS["cloid"]]


@pytest.mark.parametrize("env", [{}, {"INVOCATION_ID": "x"}])
def test_registered_secrets_are_redacted_on_stream_outputs(env: dict[str, str]) -> None:
    token = "tok-" + secrets.token_urlsafe(16)
    url = f"https://discord.example/api/webhooks/1/{secrets.token_urlsafe(24)}"
    register_secret(token)
    register_secret(url)
    out = io.StringIO()
    setup_logging("INFO", out, env=env)
    log = logging.getLogger("engine.test")
    log.info("token=%s url=%s key=%s", token, url, KEY, extra={"reason": token})
    try:
        raise RuntimeError(f"POST {url} failed")
    except RuntimeError:
        log.exception("webhook failed")
    log.info("stack", stack_info=True, extra={"market": KEY})
    text = out.getvalue()
    assert token not in text and url not in text and KEY not in text
    assert text.count("<redacted>") >= 5
    assert "RuntimeError: POST <redacted> failed" in text


def test_register_secret_bad_input_is_logged_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "engine.logs")
    register_secret("   ")
    register_secret(None)  # type: ignore[arg-type]
    short = "zq!x"
    register_secret(short)
    assert caplog.text.count("register_secret") == 3
    assert "short" in caplog.text and short not in caplog.text


def test_unformattable_message_does_not_raise() -> None:
    out = io.StringIO()
    setup_logging("INFO", out, env={})
    log = logging.getLogger("engine.test")
    log.info("two %s %s", "only-one")
    log.info("after")
    text = out.getvalue()
    assert "unformattable log message 'two %s %s'" in text and "TypeError" in text
    assert text.rstrip().endswith("engine.test: after")


def test_redactor_is_idempotent_and_keeps_records() -> None:
    r = logging.LogRecord("x", logging.INFO, __file__, 1, "k=%s", (KEY,), None)
    f = SecretRedactor()
    assert f.filter(r) and f.filter(r)
    assert r.getMessage() == "k=<redacted>"
