"""Webhook notifications (Discord-compatible JSON): owns the notification queue and its sender.

:class:`Notifier` is what the engine calls on a hard stop, a kill, a circuit breaker, a reconnect
storm (see :class:`ReconnectStormDetector`) and the daily report.

- :meth:`Notifier.notify` is synchronous, O(1), never blocks and never raises: it puts the
  notification on a bounded in-memory queue. When the queue is full the oldest *non-critical*
  item is dropped (critical = :data:`CRITICAL_KINDS`: hard stop, kill); when every queued item
  is critical the new one is dropped. Drops are counted and logged as one WARNING per burst.
- :meth:`Notifier.run` is the single sender task (a child of the engine's nursery). It POSTs the
  items in order with a per-request timeout and retries 5xx, 429 and transport errors with
  exponential backoff and jitter up to ``max_attempts``; a 429 ``Retry-After`` (header or JSON
  ``retry_after``, seconds) is honoured up to ``backoff_max_s``; any other non-2xx gives up at
  once. An item in flight when the task is cancelled goes back to the head of the queue (so it
  may be delivered twice if the server had already received it).
- :meth:`Notifier.drain` delivers what is still queued within a time bound on shutdown (shielded
  from the surrounding cancellation), so the kill path's message gets out.

The webhook URL embeds a token, so it is a secret (``load_credential("webhook_url",
"ENGINE_WEBHOOK_URL")``). It is never logged, printed or put in an exception message: logs name
the host only. Requests go straight to an ``httpx.AsyncHTTPTransport`` (no ``AsyncClient``,
whose INFO log line carries the full URL; no proxy variables, cookies or redirects), created in
a worker thread because building its TLS context takes tens of milliseconds.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import urlsplit

import attrs
import httpx
import trio

from engine.backoff import backoff_equal_jitter
from engine.config import NotifyConfig
from engine.secrets import SecretsError, load_credential

log = logging.getLogger(__name__)

WEBHOOK_CREDENTIAL: Final = "webhook_url"
WEBHOOK_ENV: Final = "ENGINE_WEBHOOK_URL"

KIND_HARD_STOP: Final = "hard_stop"
KIND_KILL: Final = "kill"
KIND_CIRCUIT_BREAKER: Final = "circuit_breaker"
KIND_RECONNECT_STORM: Final = "reconnect_storm"
KIND_DAILY_REPORT: Final = "daily_report"
CRITICAL_KINDS: Final = frozenset({KIND_HARD_STOP, KIND_KILL})

LEVEL_COLORS: Final[Mapping[str, int]] = {
    "info": 0x3498DB,
    "warning": 0xF1C40F,
    "error": 0xE74C3C,
    "critical": 0x992D22,
}

# Discord limits (counted in UTF-16 code units, as Discord counts them).
MAX_CONTENT: Final = 2000
MAX_USERNAME: Final = 80
MAX_TITLE: Final = 256
MAX_DESCRIPTION: Final = 4096
MAX_FIELDS: Final = 25
MAX_FIELD_NAME: Final = 256
MAX_FIELD_VALUE: Final = 1024
MAX_EMBED_TOTAL: Final = 6000
ELLIPSIS: Final = "…"

_USER_AGENT: Final = "engine-notifier/0.1"
_MIN_SECRET_PIECE: Final = 16


# --------------------------------------------------------------------------------------------
# payload


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units (what Discord's limits count)."""
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-16 code units, ending in "…" when it was cut."""
    if utf16_len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    raw = text.encode("utf-16-le")[: (limit - 1) * 2]
    if raw and 0xD8 <= raw[-1] <= 0xDB:  # do not split a surrogate pair
        raw = raw[:-2]
    return raw.decode("utf-16-le") + ELLIPSIS


def _nonempty(text: str) -> str:
    return text if text.strip() else "-"


@attrs.frozen
class Notification:
    """One queued notification (inputs already coerced to ``str``; ``ts`` is epoch seconds)."""

    kind: str
    title: str
    message: str
    level: str
    fields: tuple[tuple[str, str], ...]
    ts: float
    seq: int

    @property
    def critical(self) -> bool:
        return self.kind in CRITICAL_KINDS


def build_payload(item: Notification, username: str) -> dict[str, object]:
    """The Discord webhook JSON body for ``item``, within every Discord length limit."""
    title = truncate(item.title if item.title.strip() else _nonempty(item.kind), MAX_TITLE)
    fields = [
        (truncate(_nonempty(name), MAX_FIELD_NAME), truncate(_nonempty(value), MAX_FIELD_VALUE))
        for name, value in item.fields[:MAX_FIELDS]
    ]
    omitted = len(item.fields) - len(fields)
    reserve = 100  # room for the footer and a short description
    used = utf16_len(title) + sum(utf16_len(n) + utf16_len(v) for n, v in fields)
    while fields and used > MAX_EMBED_TOTAL - reserve:
        name, value = fields.pop()
        used -= utf16_len(name) + utf16_len(value)
        omitted += 1
    footer = f"{omitted} more field(s) omitted" if omitted else ""
    used += utf16_len(footer)
    description = truncate(item.message, min(MAX_DESCRIPTION, MAX_EMBED_TOTAL - used))
    embed: dict[str, object] = {
        "title": title,
        "color": LEVEL_COLORS[item.level],
        "timestamp": datetime.fromtimestamp(item.ts, UTC).isoformat(timespec="milliseconds"),
    }
    if description:
        embed["description"] = description
    if fields:
        embed["fields"] = [{"name": n, "value": v, "inline": True} for n, v in fields]
    if footer:
        embed["footer"] = {"text": footer}
    content = truncate(f"**[{item.level.upper()}] {item.kind}**: {title}", MAX_CONTENT)
    return {
        "username": truncate(_nonempty(username), MAX_USERNAME),
        "content": content,
        "embeds": [embed],
        "allowed_mentions": {"parse": []},  # text from the engine never pings anyone
    }


# --------------------------------------------------------------------------------------------
# URL handling (the URL is a secret)


def webhook_host(url: str) -> str:
    """The host of a valid http(s) webhook URL; ``ValueError`` (without the URL) otherwise."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        host = None
    if host is None or parts.scheme not in ("http", "https"):
        raise ValueError("webhook URL is not a valid http(s) URL with a host")
    return host


class _Redactor:
    """Removes the URL, its path and its query from text that is about to be logged."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        secrets = {url, parts.path, parts.query, parts.fragment}
        # long path segments and query values (a Discord token is one), also on their own
        pieces = [*parts.path.split("/"), *(kv.partition("=")[2] for kv in parts.query.split("&"))]
        secrets.update(p for p in pieces if len(p) >= _MIN_SECRET_PIECE)
        if "@" in parts.netloc:  # user info
            secrets.add(parts.netloc.rpartition("@")[0])
        host = parts.hostname or ""
        # longest first, and never the bare host or a trivial path
        self._secrets = sorted((s for s in secrets if len(s) > 1 and s != host),
                               key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "<redacted>")
        return text


# --------------------------------------------------------------------------------------------
# notifier


@attrs.frozen
class NotifierStats:
    """Counters for metrics: delivered, given up, dropped from the queue, retried attempts."""

    sent: int
    failed: int
    dropped: int
    retries: int
    queued: int
    suppressed: int = 0  # repeats coalesced within [notify] repeat_window_s


class _GiveUp(Exception):  # noqa: N818 - control flow, never escapes the module
    """A response that must not be retried."""


@attrs.frozen
class _Retry:
    """A failed attempt worth retrying: why, and how long the server asked us to wait."""

    error: str
    wait_s: float = 0.0  # 0: use the backoff


class Notifier:
    """Bounded, never-blocking webhook notifier; see the module docstring.

    ``url=None`` or ``cfg.enabled = false`` gives a disabled notifier: :meth:`notify` accepts and
    discards (returns ``False``), :meth:`run` returns at once, one INFO line says so. An invalid
    URL raises ``ValueError`` (the message never holds the URL). ``notify`` must be called from
    the Trio thread (or before ``trio.run``), not from worker threads.
    """

    def __init__(
        self,
        cfg: NotifyConfig,
        url: str | None,
        *,
        source: str = "argument",
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self._url = url.strip() if url is not None else None
        self._wall = wall_clock
        self._rng = rng or random.Random()
        self.host = webhook_host(self._url) if self._url is not None else ""
        self._redact: Callable[[str], str] = (
            _Redactor(self._url) if self._url is not None else str)
        self.enabled = cfg.enabled and self._url is not None
        self._critical: deque[Notification] = deque()
        self._normal: deque[Notification] = deque()
        self._seq = 0
        self._wakeup = trio.Event()
        self._idle = trio.Event()
        self._send_lock = trio.Lock()
        self._running = False
        self._burst_drops = 0  # > 0: inside a drop burst
        self._bad_input: set[str] = set()
        self._sent = self._failed = self._dropped = self._retries = 0
        # repeat coalescing: (kind, title) -> wall time it last went out / repeats held back
        self._last_by_key: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}
        self._suppressed = 0
        if not self.enabled:
            why = "disabled in [notify]" if self._url is not None else (
                f"no webhook URL ({WEBHOOK_CREDENTIAL} credential or {WEBHOOK_ENV})")
            log.info("notifications are off: %s", why)
        else:
            log.info("notifications on: webhook %s (URL from %s)", self.host, source)

    @classmethod
    def from_config(cls, cfg: NotifyConfig, env: Mapping[str, str] = os.environ, *,
                    wall_clock: Callable[[], float] = time.time,
                    rng: random.Random | None = None) -> Notifier:
        """A notifier with the URL from ``$CREDENTIALS_DIRECTORY/webhook_url`` or
        ``ENGINE_WEBHOOK_URL`` (disabled when neither is set). Raises :class:`SecretsError`,
        naming the source but never the value, for an empty, unreadable or invalid URL."""
        found = load_credential(WEBHOOK_CREDENTIAL, WEBHOOK_ENV, env)
        if found is None:
            return cls(cfg, None, wall_clock=wall_clock, rng=rng)
        url, source = found
        try:
            webhook_host(url)
        except ValueError:
            valid = False
        else:
            valid = True
        if not valid:  # raised outside the except block: no context
            raise SecretsError(f"webhook URL from {source} is not a valid http(s) URL with a host")
        return cls(cfg, url, source=source, wall_clock=wall_clock, rng=rng)

    def __repr__(self) -> str:
        state = f"webhook {self.host}" if self.enabled else "disabled"
        return f"<Notifier {state} queued={self.queued}>"

    # ---------------------------------------------------------------- producer side

    @property
    def queued(self) -> int:
        return len(self._critical) + len(self._normal)

    @property
    def stats(self) -> NotifierStats:
        return NotifierStats(sent=self._sent, failed=self._failed, dropped=self._dropped,
                             retries=self._retries, queued=self.queued,
                             suppressed=self._suppressed)

    def notify(self, kind: str, title: str, message: str, *, level: str = "warning",
               fields: Mapping[str, str] | None = None) -> bool:
        """Queue a notification; never blocks, never raises. Returns whether it was queued."""
        if not self.enabled:
            return False
        level = self._check_level(level)
        pairs: tuple[tuple[str, str], ...] = ()
        if isinstance(fields, Mapping):
            pairs = tuple((str(k), str(v)) for k, v in fields.items())
        elif fields is not None:
            self._bad("fields", f"notify: fields must be a mapping, got {type(fields).__name__}; "
                      "ignoring them")
        text = self._coalesce(str(kind), str(title), str(message))
        if text is None:
            return False
        self._seq += 1
        item = Notification(kind=str(kind), title=str(title), message=text, level=level,
                            fields=pairs, ts=self._wall(), seq=self._seq)
        if self.queued >= self.cfg.queue_size:
            self._drop()
            if not self._normal:  # every queued item is critical: the new one goes
                return False
            self._normal.popleft()
        elif self._burst_drops:
            log.info("notification queue: %d dropped in the last burst", self._burst_drops)
            self._burst_drops = 0
        (self._critical if item.critical else self._normal).append(item)
        self._wakeup.set()
        return True

    def _coalesce(self, kind: str, title: str, message: str) -> str | None:
        """No webhook flood: a non-critical notification whose kind and title already went
        out less than ``repeat_window_s`` ago is held back (counted; the log has every one);
        the next one after the window says how many were held back. ``None``: hold it.
        Hard stop, kill and circuit-breaker trips always go: each latches, so none can storm."""
        window = self.cfg.repeat_window_s
        if window <= 0 or kind in CRITICAL_KINDS or kind == KIND_CIRCUIT_BREAKER:
            return message
        key, now = (kind, title), self._wall()
        last = self._last_by_key.get(key)
        if last is not None and 0.0 <= now - last < window:
            self._held[key] = self._held.get(key, 0) + 1
            self._suppressed += 1
            return None
        if len(self._last_by_key) >= 1000:  # bounded: forget the oldest keys
            for old in sorted(self._last_by_key, key=self._last_by_key.__getitem__)[:500]:
                del self._last_by_key[old]
                self._held.pop(old, None)
        self._last_by_key[key] = now
        held = self._held.pop(key, 0)
        if held:
            message = f"{message} (+{held} more like this held back in the last {window:g} s)"
        return message

    def _bad(self, key: str, message: str) -> None:
        """Log a bad-input message once per distinct ``key``."""
        if key not in self._bad_input and len(self._bad_input) < 100:
            self._bad_input.add(key)
            log.warning(message)

    def _check_level(self, level: object) -> str:
        if isinstance(level, str) and level in LEVEL_COLORS:
            return level
        shown = repr(level)[:40]
        self._bad(f"level {shown}", f"notify: unknown level {shown} (expected one of "
                  f"{', '.join(LEVEL_COLORS)}); using 'warning'")
        return "warning"

    def _drop(self) -> None:
        self._dropped += 1
        self._burst_drops += 1
        if self._burst_drops == 1:
            log.warning("notification queue full (%d; webhook %s slow or down): dropping "
                        "notifications, oldest non-critical first, until it drains",
                        self.cfg.queue_size, self.host)

    def _pop(self) -> Notification | None:
        if self._critical and (not self._normal or self._critical[0].seq < self._normal[0].seq):
            return self._critical.popleft()
        if self._normal:
            return self._normal.popleft()
        return None

    def _push_front(self, item: Notification) -> None:
        """Put back the (oldest) item taken by a cancelled delivery, within the bound."""
        if self.queued >= self.cfg.queue_size:
            self._drop()
            if not item.critical or not self._normal:
                return
            self._normal.popleft()
        (self._critical if item.critical else self._normal).appendleft(item)

    # ---------------------------------------------------------------- sender side

    @staticmethod
    async def _open_transport() -> httpx.AsyncHTTPTransport:
        # building the TLS context takes tens of ms: keep it off the event loop
        return await trio.to_thread.run_sync(lambda: httpx.AsyncHTTPTransport(retries=0))

    @staticmethod
    async def _close_transport(transport: httpx.AsyncHTTPTransport | None) -> None:
        if transport is not None:
            with trio.move_on_after(1.0, shield=True):
                await transport.aclose()

    async def run(self) -> None:
        """The sender task: deliver queued notifications in order until cancelled."""
        if not self.enabled:
            return
        transport: httpx.AsyncHTTPTransport | None = None
        self._running = True
        try:
            transport = await self._open_transport()
            while True:
                while self.queued == 0:
                    self._idle.set()
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                await self._deliver_next(transport)
        finally:
            self._running = False
            self._idle.set()
            await self._close_transport(transport)

    async def _deliver_next(self, transport: httpx.AsyncHTTPTransport) -> None:
        """Deliver the oldest item; one delivery at a time (run() and drain() share the lock),
        so items leave in order and a message is never sent twice concurrently."""
        async with self._send_lock:
            item = self._pop()
            if item is None:
                return
            done = False
            try:
                await self._deliver(transport, item)
                done = True
            except Exception as exc:  # noqa: BLE001 - a notifier bug must never stop trading
                done = True
                self._failed += 1
                log.error("webhook %s: unexpected %s delivering %s notification: %s; dropped it",
                          self.host, type(exc).__name__, item.kind,
                          self._redact(str(exc))[:200])
            finally:
                if not done:  # cancelled mid-delivery: keep it for drain() or the next sender
                    self._push_front(item)

    async def drain(self, timeout_s: float) -> int:
        """Deliver what is queued within ``timeout_s`` (shielded: safe to call while the
        surrounding scope is being cancelled). While :meth:`run` is active it waits for it to
        go idle; when it is not (or it ends meanwhile), drain sends the rest itself. Returns
        how many notifications are still queued."""
        if not self.enabled:
            return 0
        with trio.move_on_after(timeout_s, shield=True) as scope:
            transport: httpx.AsyncHTTPTransport | None = None
            try:
                while self.queued or self._send_lock.locked():
                    if self._running:
                        if self._idle.is_set():
                            self._idle = trio.Event()  # set by run() when idle or ending
                        await self._idle.wait()
                    else:
                        if transport is None:
                            transport = await self._open_transport()
                        await self._deliver_next(transport)
            finally:
                await self._close_transport(transport)
        left = self.queued
        if scope.cancelled_caught and left:
            log.warning("notifications: %d not delivered within the %g s drain bound "
                        "(webhook %s)", left, timeout_s, self.host)
        return left

    def backoff_s(self, attempt: int) -> float:
        """Delay after failed attempt ``attempt`` (1-based): ``min(max, base·2^(n−1))`` with
        equal jitter (uniform in its upper half)."""
        return backoff_equal_jitter(attempt - 1, self.cfg.backoff_base_s,
                                    self.cfg.backoff_max_s, self._rng.random)

    async def _deliver(self, transport: httpx.AsyncHTTPTransport, item: Notification) -> None:
        body = json.dumps(build_payload(item, self.cfg.username), ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")
        title = truncate(item.title, 80)
        last = ""
        for attempt in range(1, self.cfg.max_attempts + 1):
            try:
                outcome = await self._post(transport, body)
            except _GiveUp as exc:
                self._failed += 1
                log.error("webhook %s: %s for %s notification %r; not retried (check the "
                          "webhook URL credential)", self.host, exc, item.kind, title)
                return
            if outcome is None:
                self._sent += 1
                log.debug("webhook %s: delivered %s notification (attempt %d)", self.host,
                          item.kind, attempt)
                return
            last = outcome.error
            if attempt == self.cfg.max_attempts:
                break
            self._retries += 1
            delay = outcome.wait_s if outcome.wait_s > 0 else self.backoff_s(attempt)
            log.debug("webhook %s: attempt %d/%d failed (%s); retrying in %.2f s", self.host,
                      attempt, self.cfg.max_attempts, last, delay)
            await trio.sleep(delay)
        self._failed += 1
        log.warning("webhook %s: %s notification %r not delivered after %d attempts (last: %s)",
                    self.host, item.kind, title, self.cfg.max_attempts, last)

    async def _post(self, transport: httpx.AsyncHTTPTransport, body: bytes) -> _Retry | None:
        """One attempt: ``None`` when delivered, a :class:`_Retry` when worth retrying;
        raises :class:`_GiveUp` for a response that must not be retried."""
        assert self._url is not None
        request = httpx.Request(
            "POST", self._url, content=body,
            headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT},
            extensions={"timeout": httpx.Timeout(self.cfg.timeout_s).as_dict()},
        )
        status = 0
        payload = b""
        headers: httpx.Headers | None = None
        error = ""
        # httpx's timeouts are per phase; this bounds the whole exchange
        with trio.move_on_after(self.cfg.timeout_s + 0.5):
            try:
                response = await transport.handle_async_request(request)
                try:
                    payload = await response.aread()
                finally:
                    await response.aclose()
                status, headers = response.status_code, response.headers
            except httpx.TimeoutException as exc:
                error = f"{type(exc).__name__} after {self.cfg.timeout_s:g} s"
            except (httpx.HTTPError, OSError) as exc:
                error = f"{type(exc).__name__}: {self._redact(str(exc))[:200]}"
        if error:
            return _Retry(error)
        if status == 0:
            return _Retry(f"no answer within {self.cfg.timeout_s:g} s")
        if 200 <= status < 300:
            return None
        detail = self._error_detail(payload)
        if status == 429:
            retry_after = _retry_after(headers, payload)
            if retry_after > self.cfg.backoff_max_s:
                log.warning("webhook %s: rate limited for %.1f s; retrying after %g s "
                            "(backoff_max_s)", self.host, retry_after, self.cfg.backoff_max_s)
            return _Retry(f"HTTP 429 (retry after {retry_after:g} s)",
                          min(retry_after, self.cfg.backoff_max_s))
        if status >= 500:
            return _Retry(f"HTTP {status}{detail}")
        raise _GiveUp(f"HTTP {status}{detail}")

    def _error_detail(self, payload: bytes) -> str:
        """A short, redacted ``code``/``message`` from a JSON error body, if any."""
        try:
            data = json.loads(payload) if payload else None
        except (ValueError, UnicodeDecodeError):
            return ""
        if not isinstance(data, dict):
            return ""
        parts = [f"{k}={str(data[k])[:120]}" for k in ("code", "message") if k in data]
        return f" ({self._redact(', '.join(parts))})" if parts else ""


def _retry_after(headers: httpx.Headers | None, payload: bytes) -> float:
    """Seconds to wait from a 429: JSON ``retry_after`` first (Discord's, fractional), then
    the ``Retry-After`` header (seconds or an HTTP date); 0 when absent or unparseable."""
    try:
        data = json.loads(payload) if payload else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        value = data.get("retry_after")
        if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
            return float(value)
    raw = headers.get("retry-after") if headers is not None else None
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError):
            return 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


# --------------------------------------------------------------------------------------------
# reconnect storms


class ReconnectStormDetector:
    """``on_reconnect(now_s)`` is ``True`` once when ``count`` reconnects fall within
    ``window_s`` seconds; then quiet until the window clears (a reconnect with none in the
    ``window_s`` before it ends the storm), so one storm is one notification.

    ``now_s`` is any monotonic seconds clock (``trio.current_time()``, ``time.monotonic()``).
    """

    def __init__(self, count: int, window_s: float) -> None:
        if count < 1 or not window_s > 0:
            raise ValueError(f"need count >= 1 and window_s > 0, got {count}, {window_s}")
        self.count = count
        self.window_s = window_s
        self._times: deque[float] = deque()
        self.storming = False

    @classmethod
    def from_config(cls, cfg: NotifyConfig) -> ReconnectStormDetector:
        return cls(cfg.reconnect_storm_count, cfg.reconnect_storm_window_s)

    def on_reconnect(self, now_s: float) -> bool:
        times = self._times
        while times and now_s - times[0] >= self.window_s:
            times.popleft()
        if not times:
            self.storming = False
        times.append(now_s)
        if not self.storming and len(times) >= self.count:
            self.storming = True
            return True
        return False

    @property
    def recent(self) -> int:
        """Reconnects in the current window (as of the last call)."""
        return len(self._times)
