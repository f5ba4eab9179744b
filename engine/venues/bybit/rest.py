"""Bybit v5 REST on Trio: public and signed calls, server-time sync, rate-limit back-off.

- Signed calls carry ``X-BAPI-*`` headers over the exact query string / JSON body sent; the
  timestamp is ``clock() + offset`` where the offset comes from ``/v5/market/time``
  (:meth:`BybitRest.sync_time`), so a drifting host clock does not break ``recv_window``.
- ``retCode 10002`` (timestamp outside the window): resync the time once and retry.
- ``retCode 10006`` / HTTP 403 (rate limit): wait until ``X-Bapi-Limit-Reset-Timestamp`` when
  the venue sent it, else exponential back-off, then retry up to ``max_retries``; the waits are
  counted in :attr:`BybitRest.rate_limited`.
- HTTP 5xx and transport failures are retried with back-off; a POST with the *same* body, so an order keeps its
  ``orderLinkId`` (idempotent at the venue: a duplicate answers ``110072``, handled by
  :mod:`engine.venues.bybit.execution`).
- Account reads for reconciliation and catch-up: :meth:`BybitRest.wallet_coins`,
  :meth:`BybitRest.linear_positions`, :meth:`BybitRest.settlements` (funding paid, from the
  transaction log), :meth:`BybitRest.fee_rates` (the account's own taker/maker rates).
- Everything else raises :class:`~engine.venues.bybit.codec.BybitApiError` (neutral ``reason``)
  or :class:`~engine.venues.bybit.http.HttpError`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import trio

from engine.backoff import backoff_delay
from engine.core.neutral import FundingRate, FundingSettlement, Instrument, PositionUpdate
from engine.venues.bybit.codec import (
    BybitApiError,
    parse_envelope,
    parse_fee_rates,
    parse_funding_history,
    parse_instruments,
    parse_position_list,
    parse_server_time_ms,
    parse_settlements,
    parse_wallet_coins,
)
from engine.venues.bybit.http import HttpClient, HttpError
from engine.venues.bybit.signing import BybitCredentials, json_body, query_string

log = logging.getLogger("engine.venues.bybit.rest")

RATE_LIMIT = 10006
TIMESTAMP = 10002


class BybitRest:
    """REST client for one origin. ``clock`` returns epoch ms (injected)."""

    def __init__(
        self,
        http: HttpClient,
        clock: Callable[[], float],
        credentials: BybitCredentials | None = None,
        recv_window_ms: int = 5000,
        max_retries: int = 4,
        backoff_base_s: float = 0.25,
        backoff_max_s: float = 8.0,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    ) -> None:
        self.http = http
        self.clock = clock
        self.credentials = credentials
        self.recv_window_ms = recv_window_ms
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self.time_offset_ms = 0.0
        self.rate_limited = 0
        self.time_resyncs = 0
        self.last_limit_status: str | None = None

    def now_ms(self) -> int:
        return int(self.clock() + self.time_offset_ms)

    async def sync_time(self) -> int:
        """Measure the server clock (mid-point of the round trip); returns the offset in ms."""
        t0 = self.clock()
        result = await self._call("GET", "/v5/market/time", {}, signed=False)
        t1 = self.clock()
        server = parse_server_time_ms(result)
        self.time_offset_ms = server - (t0 + t1) / 2.0
        return int(self.time_offset_ms)

    async def get(self, path: str, params: dict[str, Any], signed: bool = False) -> dict[str, Any]:
        return await self._call("GET", path, params, signed)

    async def post(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", path, params, signed=True)

    async def _call(self, method: str, path: str, params: dict[str, Any],
                    signed: bool) -> dict[str, Any]:
        payload = query_string(params) if method == "GET" else json_body(params).decode()
        target = f"{path}?{payload}" if method == "GET" and payload else path
        body = payload.encode() if method == "POST" else b""
        resynced = False
        attempt = 0
        while True:
            headers = {"Content-Type": "application/json"} if method == "POST" else {}
            if signed:
                if self.credentials is None:
                    raise BybitApiError(10003, f"{path} needs API keys; none configured")
                headers.update(
                    self.credentials.rest_headers(self.now_ms(), self.recv_window_ms, payload)
                )
            try:
                resp = await self.http.request(method, target, headers, body)
            except HttpError as exc:
                if attempt >= self.max_retries:
                    raise
                delay = backoff_delay(attempt, self.backoff_base_s, self.backoff_max_s)
                log.warning("bybit %s %s: %s; retry %d in %.2f s", method, path, exc,
                            attempt + 1, delay)
                attempt += 1
                await self._sleep(delay)
                continue
            self.last_limit_status = resp.headers.get("x-bapi-limit-status")
            if resp.status >= 500 and attempt < self.max_retries:
                delay = backoff_delay(attempt, self.backoff_base_s, self.backoff_max_s)
                log.warning("bybit %s %s: HTTP %d; retry %d in %.2f s", method, path,
                            resp.status, attempt + 1, delay)
                attempt += 1
                await self._sleep(delay)
                continue
            try:
                return parse_envelope(resp.status, resp.body)
            except BybitApiError as exc:
                if exc.ret_code == TIMESTAMP and signed and not resynced:
                    resynced = True
                    self.time_resyncs += 1
                    log.warning("bybit %s: timestamp outside recv_window; resyncing time", path)
                    await self.sync_time()
                    continue
                if exc.ret_code == RATE_LIMIT and attempt < self.max_retries:
                    self.rate_limited += 1
                    delay = self._rate_limit_delay(resp.headers, attempt)
                    log.warning("bybit %s %s: rate limited (%s); waiting %.2f s", method, path,
                                exc.ret_msg, delay)
                    attempt += 1
                    await self._sleep(delay)
                    continue
                raise

    def _rate_limit_delay(self, headers: dict[str, str], attempt: int) -> float:
        reset = headers.get("x-bapi-limit-reset-timestamp")
        if reset:
            try:
                wait = (int(reset) - self.now_ms()) / 1000.0
            except ValueError:
                wait = -1.0
            if 0 <= wait <= self.backoff_max_s:
                return max(wait, 0.001)
        return backoff_delay(attempt, self.backoff_base_s, self.backoff_max_s)

    # -- market data ----------------------------------------------------------------------------

    async def instruments_info(self, category: str, symbol: str | None = None) -> list[Instrument]:
        """Every instrument of ``category`` (``linear`` or ``spot``), following the cursor."""
        out: list[Instrument] = []
        cursor: str | None = None
        while True:
            result = await self.get("/v5/market/instruments-info",
                                    {"category": category, "symbol": symbol, "limit": 1000,
                                     "cursor": cursor})
            out.extend(parse_instruments(result))
            cursor = result.get("nextPageCursor") or None
            if cursor is None:
                return out

    async def funding_history(self, symbol: str, start_ms: int | None = None,
                              end_ms: int | None = None, limit: int = 200) -> list[FundingRate]:
        """Settled funding rates, oldest first. Bybit refuses ``startTime`` alone, so a start
        without an end is sent with ``end = now``."""
        if start_ms is not None and end_ms is None:
            end_ms = self.now_ms()
        result = await self.get("/v5/market/funding/history",
                                {"category": "linear", "symbol": symbol, "startTime": start_ms,
                                 "endTime": end_ms, "limit": limit})
        return parse_funding_history(result)

    # -- account (signed) ------------------------------------------------------------------------

    async def wallet_coins(self, coins: list[str]) -> dict[str, Decimal]:
        """``walletBalance`` of each of ``coins`` in the unified account (a coin the account
        has never held is absent from Bybit's answer: 0)."""
        result = await self.get("/v5/account/wallet-balance",
                                {"accountType": "UNIFIED", "coin": ",".join(sorted(coins))},
                                signed=True)
        found = parse_wallet_coins(result)
        return {c: found.get(c, Decimal(0)) for c in coins}

    async def fee_rates(self, category: str, symbol: str | None = None
                        ) -> dict[str, tuple[Decimal, Decimal]]:
        """The account's ``(taker, maker)`` fee rate per symbol of ``category`` (``spot`` or
        ``linear``), from the signed ``/v5/account/fee-rate``; a malformed answer raises
        :class:`~engine.venues.bybit.codec.CodecError` naming the field."""
        if category not in ("spot", "linear"):
            raise ValueError(f"fee rates: category must be spot or linear, got {category!r}")
        result = await self.get("/v5/account/fee-rate",
                                {"category": category, "symbol": symbol}, signed=True)
        return parse_fee_rates(result)

    async def linear_positions(self) -> list[PositionUpdate]:
        """Every USDT-settled linear position (``/v5/position/list``), following the cursor."""
        out: list[PositionUpdate] = []
        cursor: str | None = None
        while True:
            result = await self.get("/v5/position/list",
                                    {"category": "linear", "settleCoin": "USDT", "limit": 200,
                                     "cursor": cursor}, signed=True)
            out.extend(parse_position_list(result, self.now_ms()))
            cursor = result.get("nextPageCursor") or None
            if cursor is None:
                return out

    async def settlements(self, start_ms: int, end_ms: int, max_pages: int = 20
                          ) -> list[FundingSettlement]:
        """Funding payments (the transaction log's ``SETTLEMENT`` rows, USDT linear) between
        ``start_ms`` and ``end_ms``, oldest first, following the cursor (50 a page)."""
        out: list[FundingSettlement] = []
        cursor: str | None = None
        for _ in range(max_pages):
            result = await self.get("/v5/account/transaction-log",
                                    {"accountType": "UNIFIED", "category": "linear",
                                     "currency": "USDT", "type": "SETTLEMENT",
                                     "startTime": start_ms, "endTime": end_ms, "limit": 50,
                                     "cursor": cursor}, signed=True)
            out.extend(parse_settlements(result))
            cursor = result.get("nextPageCursor") or None
            if cursor is None:
                break
        else:
            log.warning("bybit transaction log: more than %d pages between %d and %d; the "
                        "oldest were not read", max_pages, start_ms, end_ms)
        return sorted(out, key=lambda e: e.ts_ms)
