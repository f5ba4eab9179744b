"""Logging setup: readable console lines, or syslog-priority prefixes under systemd/journald.

Under systemd (``JOURNAL_STREAM`` or ``INVOCATION_ID`` set) each line is prefixed ``<N>`` with the
syslog priority so ``journalctl -p warning`` filters correctly and the timestamp is left to the
journal. Elsewhere lines carry a UTC timestamp. Secrets are never passed to the logger.
"""

from __future__ import annotations

import logging
import os
import sys
import time

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class _SyslogPrefixFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6)
        return f"<{prio}>{record.name}: {super().format(record)}"


def under_systemd() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def setup_logging(level: str = "INFO", stream: object = None) -> None:
    """Configure the root logger once (idempotent: replaces handlers installed earlier)."""
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    if under_systemd():
        handler.setFormatter(_SyslogPrefixFormatter("%(message)s"))
    else:
        fmt = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s",
                                "%Y-%m-%dT%H:%M:%S")
        fmt.converter = time.gmtime
        handler.setFormatter(fmt)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter stays at WARNING unless we debug.
    for noisy in ("httpx", "httpcore", "trio-websocket", "hpack"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
