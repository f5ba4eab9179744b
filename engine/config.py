"""Configuration: attrs classes structured from TOML (+ ENGINE__SECTION__KEY env overrides) by cattrs.

Every key is documented in docs/configuration.md. Loading is strict: an unknown key, a value of
the wrong type or an out-of-range value raises :class:`ConfigError` whose message names the file
(or environment variable) and the key, so the CLI can exit non-zero before any connection.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

MODES = ("observe", "paper", "trade")
ENV_PREFIX = "ENGINE__"


class ConfigError(Exception):
    """A configuration problem; the message names the source and the key."""


def _positive(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _busy_poll_us(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= 1_000_000:
        raise ValueError(f"{attribute.name} must be within [0, 1000000] µs, got {value!r}")


def _hhmm(_inst: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f"{attribute.name} must be HH:MM (24h), got {value!r}")


@attrs.frozen
class VenueConfig:
    """[venue]: where market data comes from and how the connection is kept healthy."""

    ws_url: str = "wss://api.hyperliquid.xyz/ws"
    info_url: str = "https://api.hyperliquid.xyz/info"
    dex: str = "xyz"
    markets: list[str] | None = None
    connect_timeout_s: float = attrs.field(default=10.0, validator=_positive)
    ping_idle_s: float = attrs.field(default=20.0, validator=_positive)
    pong_timeout_s: float = attrs.field(default=10.0, validator=_positive)
    reconnect_base_s: float = attrs.field(default=1.0, validator=_positive)
    reconnect_max_s: float = attrs.field(default=60.0, validator=_positive)
    reconnect_jitter_s: float = attrs.field(default=1.0, validator=_non_negative)
    ctx_stale_ms: float = attrs.field(default=10_000.0, validator=_non_negative)
    bbo_stale_ms: float = attrs.field(default=0.0, validator=_non_negative)
    stale_reconnect_min_interval_s: float = attrs.field(default=30.0, validator=_non_negative)
    post_timeout_s: float = attrs.field(default=5.0, validator=_positive)
    info_timeout_s: float = attrs.field(default=10.0, validator=_positive)
    # a read that finds nothing spins this long before sleeping in the kernel (0 = off; costs
    # a core at 100 % when longer than the gap between frames; see docs/configuration.md)
    busy_poll_us: float = attrs.field(default=0.0, validator=_busy_poll_us)
    # trade mode: a socket read's first order is written right after its frame (true), or
    # waits for the end of the read with the rest, all in one signed action (false)
    send_first_at_once: bool = True
    # "mainnet" | "testnet" | "sim" (or "" = implied by [sim] enabled / the official host):
    # decides the allow_live gate and the signing chain (engine/venues/hyperliquid/network.py)
    network: str = ""


@attrs.frozen
class RecordsConfig:
    """[records]: where JSON Lines records go and how often they are flushed and fsynced."""

    # "" = data/<venue>/<mode> (see default_records_dir): runs of different modes or venues
    # never share a journal
    dir: str = ""
    flush_interval_ms: float = attrs.field(default=0.0, validator=_non_negative)
    fsync_interval_ms: float = attrs.field(default=1000.0, validator=_non_negative)
    max_pending_records: int = attrs.field(default=1_000_000, validator=_positive)


@attrs.frozen
class RecordingConfig:
    """[recording]: every inbound frame, info answer and outbound action (signatures removed)
    to ``<records dir>/frames/frames_YYYY-MM-DD.zst`` (zstandard; see docs/data-formats.md)."""

    enabled: bool = True
    flush_interval_ms: float = attrs.field(default=1000.0, validator=_positive)
    level: int = attrs.field(default=3, validator=_positive)
    max_pending: int = attrs.field(default=1_000_000, validator=_positive)


@attrs.frozen
class FollowupsConfig:
    """[followups]: what the market did after each signal, at these offsets."""

    offsets_ms: list[int] = attrs.Factory(lambda: [1000, 3000, 5000])
    max_ctx_age_ms: float = attrs.field(default=8000.0, validator=_non_negative)
    max_bbo_age_ms: float = attrs.field(default=0.0, validator=_non_negative)
    max_pending: int = attrs.field(default=1_000_000, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if not self.offsets_ms:
            raise ValueError("offsets_ms must not be empty")
        if any(o <= 0 for o in self.offsets_ms):
            raise ValueError("offsets_ms must be > 0")
        if sorted(set(self.offsets_ms)) != list(self.offsets_ms):
            raise ValueError("offsets_ms must be strictly increasing")


@attrs.frozen
class GatesConfig:
    """[gates]: market-data risk gates evaluated before the detector (0 disables a bound)."""

    max_bbo_age_ms: float = attrs.field(default=0.0, validator=_non_negative)
    max_ctx_age_ms: float = attrs.field(default=8000.0, validator=_non_negative)
    max_mark_mid_bps: float = attrs.field(default=0.0, validator=_non_negative)
    spread_ewma_tau_ms: float = attrs.field(default=30_000.0, validator=_positive)
    spread_shock_multiple: float = attrs.field(default=6.0, validator=_non_negative)
    time_regression_block_ms: float = attrs.field(default=2000.0, validator=_non_negative)
    halted_markets: list[str] = attrs.Factory(list)


@attrs.frozen
class SessionWindow:
    """One weekday trading-session window in ``detector.session_timezone`` local time."""

    name: str
    start: str = attrs.field(validator=_hhmm)
    end: str = attrs.field(validator=_hhmm)
    threshold_mult: float = attrs.field(default=1.0, validator=_positive)
    size_mult: float = attrs.field(default=1.0, validator=_positive)


def _default_sessions() -> list[SessionWindow]:
    return [
        SessionWindow("us_open", "09:30", "11:00", 2.0, 0.5),
        SessionWindow("us_active", "11:00", "16:00", 1.5, 0.75),
    ]


@attrs.frozen
class DetectorConfig:
    """[detector]: the dislocation detector (threshold, filters, baseline, confidence)."""

    taker_fee_bps: float = attrs.field(default=4.0, validator=_non_negative)
    slippage_bps: float = attrs.field(default=2.0, validator=_non_negative)
    min_edge_bps: float = attrs.field(default=5.0, validator=_non_negative)
    threshold_overrides: dict[str, float] = attrs.Factory(dict)
    adaptive_threshold: bool = False
    spread_threshold_multiplier: float = attrs.field(default=1.5, validator=_non_negative)
    session_aware: bool = True
    session_timezone: str = "America/New_York"
    sessions: list[SessionWindow] = attrs.Factory(_default_sessions)
    short_side_throttle: bool = False
    short_threshold_mult: float = attrs.field(default=1.5, validator=_positive)
    max_entry_spread_bps: float = attrs.field(default=0.0, validator=_non_negative)
    oracle_direction_filter: bool = True
    min_oracle_change_bps: float = attrs.field(default=0.0, validator=_non_negative)
    min_consecutive_moves: int = attrs.field(default=2, validator=_non_negative)
    oracle_min_move_bps: float = attrs.field(default=2.0, validator=_non_negative)
    oracle_window_ms: float = attrs.field(default=30_000.0, validator=_positive)
    min_quote_lag_ms: float = attrs.field(default=30.0, validator=_non_negative)
    max_quote_lag_ms: float = attrs.field(default=700.0, validator=_non_negative)
    baseline_tau_ms: float = attrs.field(default=300_000.0, validator=_positive)
    baseline_min_samples: int = attrs.field(default=100, validator=_non_negative)
    min_edge_above_baseline_bps: float = attrs.field(default=8.0, validator=_non_negative)
    min_confidence: float = attrs.field(default=0.25, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.max_quote_lag_ms and self.max_quote_lag_ms < self.min_quote_lag_ms:
            raise ValueError("max_quote_lag_ms must be >= min_quote_lag_ms (or 0 to disable)")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.session_timezone)
        except Exception as exc:  # noqa: BLE001 - any failure means an unusable zone name
            raise ValueError(f"unknown session_timezone {self.session_timezone!r}") from exc


@attrs.frozen
class SizingConfig:
    """[sizing]: liquidity-based suggested size (recorded in observe mode)."""

    sizing_alpha: float = attrs.field(default=0.10, validator=_positive)
    min_book_notional: float = attrs.field(default=50.0, validator=_non_negative)
    normal_book_notional: float = attrs.field(default=5000.0, validator=_positive)
    max_notional: float = attrs.field(default=50.0, validator=_positive)
    min_order_notional: float = attrs.field(default=11.0, validator=_non_negative)
    confidence_sizing: bool = True

    def __attrs_post_init__(self) -> None:
        if self.min_book_notional >= self.normal_book_notional:
            raise ValueError("min_book_notional must be < normal_book_notional")
        if self.max_notional * 0.99 < max(self.min_order_notional, 10.0):
            raise ValueError(
                "max_notional x 0.99 must be >= min_order_notional and the venue's $10 minimum"
            )


@attrs.frozen
class ExitsConfig:
    """[exits]: when an open position is flattened (docs/reference/predecessor-semantics.md §4.4–§4.7, prod values).

    Every rule is evaluated on every bbo/ctx frame of a market with a position and by a backup
    timer; the first rule that fires names the exit reason.
    """

    quick_profit_bps: float = attrs.field(default=3.0, validator=_non_negative)
    quick_profit_min_hold_ms: float = attrs.field(default=500.0, validator=_non_negative)
    edge_evap_enabled: bool = True
    edge_evap_min_hold_ms: float = attrs.field(default=500.0, validator=_non_negative)
    edge_evap_threshold_bps: float = 2.0
    min_hold_ms: float = attrs.field(default=1500.0, validator=_non_negative)
    exit_threshold_bps: float = attrs.field(default=25.0, validator=_non_negative)
    entry_edge_scaling: bool = True
    entry_edge_scale: float = attrs.field(default=0.5, validator=_non_negative)
    time_decay_enabled: bool = True
    decay_start_ms: float = attrs.field(default=3000.0, validator=_non_negative)
    decay_min_factor: float = attrs.field(default=0.4, validator=_non_negative)
    min_loss_exit_bps: float = attrs.field(default=15.0, validator=_non_negative)
    oracle_exit_enabled: bool = True
    oracle_min_hold_ms: float = attrs.field(default=0.0, validator=_non_negative)
    trailing_stop: bool = True
    trail_activation_bps: float = attrs.field(default=5.0, validator=_non_negative)
    trail_bps: float = attrs.field(default=3.0, validator=_non_negative)
    exit_against_moves: int = attrs.field(default=2, validator=_positive)
    exit_with_moves: int = attrs.field(default=3, validator=_positive)
    time_stop_ms: float = attrs.field(default=20_000.0, validator=_positive)
    flatten_slippage_bps: float = attrs.field(default=50.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.decay_min_factor > 1:
            raise ValueError("decay_min_factor must be within [0, 1]")
        if self.decay_start_ms >= self.time_stop_ms:
            raise ValueError("decay_start_ms must be < time_stop_ms")


def _dead_man(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (value == 0 or (6 <= value <= 86_400)):
        raise ValueError(f"{attribute.name} must be 0 (off) or within [6, 86400] seconds "
                         f"(the venue needs the cancel time at least 5 s ahead), got {value!r}")


@attrs.frozen
class TradingConfig:
    """[trading]: executor gates, order parameters and lifecycle bounds (paper and trade)."""

    max_notional_per_market: float = attrs.field(default=100.0, validator=_positive)
    max_total_notional: float = attrs.field(default=300.0, validator=_positive)
    max_concurrent_positions: int = attrs.field(default=5, validator=_positive)
    action_budget: int = attrs.field(default=10, validator=_positive)
    action_budget_interval_ms: float = attrs.field(default=1000.0, validator=_positive)
    entry_slippage_bps: float = attrs.field(default=5.0, validator=_non_negative)
    expires_after_ms: float = attrs.field(default=5000.0, validator=_non_negative)
    unknown_query_interval_ms: float = attrs.field(default=1000.0, validator=_positive)
    unknown_timeout_ms: float = attrs.field(default=30_000.0, validator=_positive)
    pending_timeout_ms: float = attrs.field(default=10_000.0, validator=_positive)
    max_flatten_failures: int = attrs.field(default=3, validator=_positive)
    flatten_retry_ms: float = attrs.field(default=1000.0, validator=_non_negative)
    reject_burst_limit: int = attrs.field(default=10, validator=_positive)
    reject_burst_window_ms: float = attrs.field(default=3_600_000.0, validator=_positive)
    reconcile_interval_s: float = attrs.field(default=60.0, validator=_positive)
    mismatch_confirmations: int = attrs.field(default=2, validator=_positive)
    # a mismatch must also persist this long (first sighting to the confirming answer): the
    # venue's transient all-zero clearinghouseState lasts a few seconds (P23)
    mismatch_confirm_wait_s: float = attrs.field(default=10.0, validator=_non_negative)
    # an answer that a position of ours (its fills, or the venue saying our order filled) is
    # smaller or gone, while neither the fills stream nor a userFills query shows a fill
    # closing it, is adopted only after this many answers over this long (the longer of
    # these and the two above; state-machines.md)
    unfilled_close_confirmations: int = attrs.field(default=4, validator=_positive)
    unfilled_close_wait_s: float = attrs.field(default=60.0, validator=_non_negative)
    # an orderStatus "unknownOid" is believed only this long after the order's expiresAfter
    # (or, for an order without one, after it was sent): before that it may still execute
    unknown_oid_grace_ms: float = attrs.field(default=2000.0, validator=_non_negative)
    allow_live: bool = False
    # trade mode: no new entries while the local clock is off the venue's by more than this
    # (measured at every reconciliation from clearinghouseState's time; docs/runbook.md)
    max_clock_skew_ms: float = attrs.field(default=2000.0, validator=_positive)
    # trade mode: scheduleCancel kept this far ahead while an order may rest (0 = off; >= 6:
    # the venue's 5 s minimum plus skew). engine/venues/hyperliquid/deadman.py
    dead_man_s: float = attrs.field(default=30.0, validator=_dead_man)


@attrs.frozen
class AccountConfig:
    """[account]: the master account whose positions and fills are queried (never a key)."""

    address: str = ""

    def __attrs_post_init__(self) -> None:
        if self.address and not re.fullmatch(r"0x[0-9a-fA-F]{40}", self.address):
            raise ValueError("address must be 0x followed by 40 hex digits")


@attrs.frozen
class PaperConfig:
    """[paper]: simulated fills at decision time + latency against the book at that later time."""

    latency_ms: float = attrs.field(default=150.0, validator=_non_negative)
    taker_fee_bps: float = attrs.field(default=0.9, validator=_non_negative)
    walk_l2book: bool = False


def _loopback(_inst: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"{attribute.name} must be a loopback address (127.0.0.1, ::1), "
                         f"got {value!r}: the ops endpoints are never exposed to a network")


def _percent(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= 100:
        raise ValueError(f"{attribute.name} must be within [0, 100] percent (0 disables), "
                         f"got {value!r}")


@attrs.frozen
class OpsConfig:
    """[ops]: the loopback ops HTTP endpoint, the kill file and the systemd watchdog's health."""

    http_enabled: bool = True
    http_host: str = attrs.field(default="127.0.0.1", validator=_loopback)
    http_port: int = attrs.field(default=9321, validator=_non_negative)
    state_dir: str = ""
    kill_file: str = "KILL"
    kill_flat_timeout_s: float = attrs.field(default=15.0, validator=_positive)
    health_max_data_age_s: float = attrs.field(default=10.0, validator=_positive)
    health_max_writer_pending: int = attrs.field(default=100_000, validator=_positive)
    event_loop_lag_interval_ms: float = attrs.field(default=100.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.http_port > 65535:
            raise ValueError(f"http_port must be <= 65535, got {self.http_port}")
        if not self.kill_file:
            raise ValueError("kill_file must not be empty")


@attrs.frozen
class BreakersConfig:
    """[breakers]: circuit breakers that latch the hard stop (0 disables one).

    Equity for the percentage breakers is the account's usable equity in trade mode (the
    main-dex ``accountValue`` plus the dex's, protocol doc §9 / P22; ``equity_usd`` plus the
    run's P&L when the venue cannot tell, 0 = no fallback: new entries are refused) and
    ``paper_equity`` plus realised P&L in paper mode.
    """

    daily_loss_pct: float = attrs.field(default=2.0, validator=_percent)
    drawdown_pct: float = attrs.field(default=5.0, validator=_percent)
    max_consecutive_losses: int = attrs.field(default=5, validator=_non_negative)
    market_move_pct: float = attrs.field(default=10.0, validator=_percent)
    market_move_window_s: float = attrs.field(default=60.0, validator=_positive)
    paper_equity: float = attrs.field(default=10_000.0, validator=_positive)
    equity_usd: float = attrs.field(default=0.0, validator=_non_negative)
    # an all-zero account answer (P23) is used only once such answers persisted this long
    equity_confirm_s: float = attrs.field(default=10.0, validator=_non_negative)
    # ... and over at least this many answers, all while the account holds nothing (never
    # while a position or an order is open: collateral cannot vanish under a held position)
    equity_confirm_reads: int = attrs.field(default=3, validator=_positive)
    # ... and, when the fills do not explain the drop (they say the account is not in
    # drawdown; the venue's answer says it is), over at least this long (a second source)
    equity_unexplained_confirm_s: float = attrs.field(default=60.0, validator=_non_negative)


@attrs.frozen
class NotifyConfig:
    """[notify]: webhook notifications (Discord-compatible JSON).

    The webhook URL carries a token, so it is a secret: it comes from
    ``$CREDENTIALS_DIRECTORY/webhook_url`` or ``ENGINE_WEBHOOK_URL``, never from this file.
    """

    enabled: bool = True
    username: str = "engine"
    queue_size: int = attrs.field(default=100, validator=_positive)
    max_attempts: int = attrs.field(default=5, validator=_positive)
    backoff_base_s: float = attrs.field(default=1.0, validator=_positive)
    backoff_max_s: float = attrs.field(default=60.0, validator=_positive)
    timeout_s: float = attrs.field(default=5.0, validator=_positive)
    reconnect_storm_count: int = attrs.field(default=5, validator=_positive)
    reconnect_storm_window_s: float = attrs.field(default=300.0, validator=_positive)
    # the same kind and title again within this many seconds is held back and counted (0: off)
    repeat_window_s: float = attrs.field(default=60.0, validator=_non_negative)


def _default_retention() -> dict[str, int]:
    return {"signals": 30, "followups": 30, "orders": 90, "fills": 90, "positions": 90,
            "trades": 90, "frames": 14}


@attrs.frozen
class RetentionConfig:
    """[retention]: how many UTC days of each record kind are kept; closed days are gzipped."""

    enabled: bool = True
    days: dict[str, int] = attrs.Factory(_default_retention)
    default_days: int = attrs.field(default=30, validator=_positive)
    compress_closed_days: bool = True

    def __attrs_post_init__(self) -> None:
        for kind, n in self.days.items():
            if n <= 0:
                raise ValueError(f"days.{kind} must be > 0, got {n}")


@attrs.frozen
class ReportConfig:
    """[report]: the daily Markdown report of the previous UTC day (written by the service)."""

    daily: bool = True
    dir: str = ""
    run_at_utc: str = attrs.field(default="00:10", validator=_hhmm)


@attrs.frozen
class SimConfig:
    """[sim]: the embedded exchange simulator (used when ``enabled``; venue URLs then ignored)."""

    enabled: bool = False
    seed: int = 1
    markets: int = attrs.field(default=40, validator=_positive)
    host: str = "127.0.0.1"
    port: int = attrs.field(default=0, validator=_non_negative)


@attrs.frozen
class SummaryConfig:
    """[summary]: the one-line live summary printed to the console/journal."""

    interval_s: float = attrs.field(default=5.0, validator=_non_negative)


@attrs.frozen
class LogConfig:
    """[log]: logging level."""

    level: str = "INFO"

    def __attrs_post_init__(self) -> None:
        if self.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"unknown log level {self.level!r}")


# -- issue 11: the Bybit venue and the funding/basis strategy (optional sections) ---------------


def _bps(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= 10_000:
        raise ValueError(f"{attribute.name} must be within [0, 10000] bps, got {value!r}")


def _one_of(*choices: str) -> Any:
    def check(_inst: Any, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in choices:
            raise ValueError(f"{attribute.name} must be one of {', '.join(choices)}; got {value!r}")

    return check


@attrs.frozen
class FundingConfig:
    """[funding]: the delta-neutral funding/basis strategy (absent = not configured)."""

    symbols: list[str] = attrs.Factory(lambda: ["BTCUSDT", "ETHUSDT"])
    min_expected_apr: float = 0.05
    exit_apr: float = 0.02
    expected_hold_hours: float = attrs.field(default=24.0, validator=_positive)
    pre_event_open_minutes: float = attrs.field(default=60.0, validator=_non_negative)
    hold_across_events: bool = True
    negative_funding: str = attrs.field(default="spot_inventory",
                                        validator=_one_of("spot_inventory", "off"))
    rebalance_band_bps: float = attrs.field(default=5.0, validator=_bps)
    max_basis_bps: float = attrs.field(default=30.0, validator=_bps)
    spot_fee_bps: float = attrs.field(default=10.0, validator=_bps)
    perp_fee_bps: float = attrs.field(default=5.5, validator=_bps)
    slippage_bps: float = attrs.field(default=2.0, validator=_bps)
    margin_bps: float = attrs.field(default=2.0, validator=_bps)
    notional_usd: float = attrs.field(default=1000.0, validator=_positive)
    max_total_notional_usd: float = attrs.field(default=5000.0, validator=_positive)
    quote_stale_ms: float = attrs.field(default=10_000.0, validator=_positive)
    leg_risk_budget_usd_s: float = attrs.field(default=2000.0, validator=_positive)
    leg_deadline_s: float = attrs.field(default=5.0, validator=_positive)
    leg_unwind_reserve_s: float = attrs.field(default=1.0, validator=_non_negative)
    max_hedge_attempts: int = attrs.field(default=3, validator=_positive)
    reentry_cooldown_s: float = attrs.field(default=300.0, validator=_non_negative)
    # trade mode: the spot leg against /v5/account/wallet-balance and the perp leg against
    # /v5/position/list, this often and after every reconnect; a mismatch is believed only when
    # seen mismatch_confirmations times over at least mismatch_confirm_wait_s
    reconcile_interval_s: float = attrs.field(default=30.0, validator=_positive)
    mismatch_confirmations: int = attrs.field(default=2, validator=_positive)
    mismatch_confirm_wait_s: float = attrs.field(default=5.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.exit_apr > self.min_expected_apr:
            raise ValueError(f"exit_apr ({self.exit_apr}) must be <= min_expected_apr "
                             f"({self.min_expected_apr})")
        if not self.symbols:
            raise ValueError("symbols must list at least one symbol")


@attrs.frozen
class BybitConfig:
    """[bybit]: the Bybit v5 venue (keys only from credentials/env, never here)."""

    environment: str = attrs.field(default="testnet", validator=_one_of("testnet", "mainnet"))
    allow_live: bool = False
    rest_url: str | None = None
    ws_public_linear_url: str | None = None
    ws_public_spot_url: str | None = None
    ws_private_url: str | None = None
    recv_window_ms: int = attrs.field(default=5000, validator=_positive)
    ping_interval_s: float = attrs.field(default=20.0, validator=_positive)
    pong_timeout_s: float = attrs.field(default=10.0, validator=_positive)
    reconnect_base_s: float = attrs.field(default=0.5, validator=_positive)
    reconnect_max_s: float = attrs.field(default=30.0, validator=_positive)
    http_timeout_s: float = attrs.field(default=10.0, validator=_positive)
    auth_expire_s: float = attrs.field(default=10.0, validator=_positive)
    # where the funding strategy's fee rates come from: "venue" = the account's own
    # (/v5/account/fee-rate, when keys exist; [funding] spot_fee_bps/perp_fee_bps the fallback),
    # "config" = always [funding] spot_fee_bps/perp_fee_bps
    fee_source: str = attrs.field(default="venue", validator=_one_of("venue", "config"))
    # fee_source = "venue": re-read the account's rates this often while running (0 = only at
    # start); a change applies to new decisions, an open pair keeps its fills' fees
    fee_refresh_s: float = attrs.field(default=3600.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.environment == "mainnet" and not self.allow_live:
            raise ValueError("environment = \"mainnet\" needs allow_live = true")
@attrs.frozen
class BybitSimConfig:
    """[bybit_sim]: the embedded Bybit simulator (used when ``[sim] enabled`` and ``[bybit]``
    is set; the [bybit] URLs are then pointed at it). Short funding intervals make a demo see
    settlements within a minute."""

    funding_interval_s: float = attrs.field(default=60.0, validator=_positive)
    funding_rate: float = 0.0005
    funding_drift: float = attrs.field(default=0.000002, validator=_non_negative)
    tick_ms: float = attrs.field(default=100.0, validator=_positive)
    usdt: float = attrs.field(default=100_000.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.funding_interval_s < 60 or self.funding_interval_s % 60:
            raise ValueError("funding_interval_s must be a whole number of minutes (>= 60): "
                             "Bybit states fundingInterval in minutes")


def venue_label(cfg: EngineConfig) -> str:
    """``sim`` (embedded simulator), ``mainnet``, ``testnet``, else the venue's host[-port]."""
    if cfg.bybit is not None:  # issue 11: Bybit runs never share a dir with Hyperliquid's
        return "bybit-sim" if cfg.sim.enabled else f"bybit-{cfg.bybit.environment}"
    if cfg.sim.enabled:
        return "sim"
    from urllib.parse import urlparse

    url = urlparse(cfg.venue.ws_url)
    host = (url.hostname or "").lower()
    if "testnet" in host:
        return "testnet"
    if host == "hyperliquid.xyz" or host.endswith(".hyperliquid.xyz"):
        return "mainnet"
    label = host + (f"-{url.port}" if url.port else "")
    return re.sub(r"[^A-Za-z0-9._-]", "_", label) or "venue"


def default_records_dir(cfg: EngineConfig) -> str:
    """``[records] dir`` when not set: ``data/<venue>/<mode>`` (``data/sim/paper`` for the
    default run), so paper, trade and observe runs never share a journal."""
    return f"data/{venue_label(cfg)}/{cfg.mode}"


@attrs.frozen
class EngineConfig:
    """The whole configuration. ``mode`` is one of :data:`MODES`."""

    mode: str = "observe"
    venue: VenueConfig = attrs.Factory(VenueConfig)
    records: RecordsConfig = attrs.Factory(RecordsConfig)
    recording: RecordingConfig = attrs.Factory(RecordingConfig)
    followups: FollowupsConfig = attrs.Factory(FollowupsConfig)
    gates: GatesConfig = attrs.Factory(GatesConfig)
    detector: DetectorConfig = attrs.Factory(DetectorConfig)
    sizing: SizingConfig = attrs.Factory(SizingConfig)
    exits: ExitsConfig = attrs.Factory(ExitsConfig)
    trading: TradingConfig = attrs.Factory(TradingConfig)
    account: AccountConfig = attrs.Factory(AccountConfig)
    paper: PaperConfig = attrs.Factory(PaperConfig)
    sim: SimConfig = attrs.Factory(SimConfig)
    summary: SummaryConfig = attrs.Factory(SummaryConfig)
    log: LogConfig = attrs.Factory(LogConfig)
    ops: OpsConfig = attrs.Factory(OpsConfig)
    breakers: BreakersConfig = attrs.Factory(BreakersConfig)
    notify: NotifyConfig = attrs.Factory(NotifyConfig)
    retention: RetentionConfig = attrs.Factory(RetentionConfig)
    report: ReportConfig = attrs.Factory(ReportConfig)
    funding: FundingConfig | None = None  # issue 11
    bybit: BybitConfig | None = None  # issue 11
    bybit_sim: BybitSimConfig = attrs.Factory(BybitSimConfig)  # issue 11

    def __attrs_post_init__(self) -> None:
        if not self.records.dir and self.mode in MODES:
            object.__setattr__(self, "records",
                               attrs.evolve(self.records, dir=default_records_dir(self)))
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        from engine.networks import resolve_network

        v = self.venue
        resolve_network(v.network, v.ws_url, v.info_url, self.sim.enabled)  # mismatch: raises



_converter = cattrs.Converter(forbid_extra_keys=True)


def _structure_strict_float(value: Any, _t: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _structure_strict_int(value: Any, _t: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _structure_strict_bool(value: Any, _t: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _structure_strict_str(value: Any, _t: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _is_list_type(t: Any) -> bool:
    return getattr(t, "__origin__", None) is list


def _strict_list_factory(t: Any) -> Any:
    (item_type,) = t.__args__

    def structure(value: Any, _t: Any) -> list[Any]:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {value!r}")
        return [_converter.structure(v, item_type) for v in value]

    return structure


def _is_dict_type(t: Any) -> bool:
    return getattr(t, "__origin__", None) is dict


def _strict_dict_factory(t: Any) -> Any:
    key_type, value_type = t.__args__

    def structure(value: Any, _t: Any) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise TypeError(f"expected a table, got {value!r}")
        return {
            _converter.structure(k, key_type): _converter.structure(v, value_type)
            for k, v in value.items()
        }

    return structure


_converter.register_structure_hook_factory(_is_list_type, _strict_list_factory)
_converter.register_structure_hook_factory(_is_dict_type, _strict_dict_factory)
_converter.register_structure_hook(float, _structure_strict_float)
_converter.register_structure_hook(int, _structure_strict_int)
_converter.register_structure_hook(bool, _structure_strict_bool)
_converter.register_structure_hook(str, _structure_strict_str)


def _path_to_key(path: str) -> str:
    """'$.venue.ws_url' -> '[venue] ws_url'; '$.mode' -> 'mode'."""
    parts = [p for p in re.split(r"\.|\[|\]", path.lstrip("$")) if p]
    parts = [p.strip("'\"") for p in parts]
    if not parts:
        return "(top level)"
    if len(parts) == 1:
        return parts[0]
    return f"[{parts[0]}] {'.'.join(parts[1:])}"


def _describe(exc: BaseException, path: str = "$") -> list[str]:
    """Flatten a cattrs exception tree into 'key: problem' strings."""
    out: list[str] = []
    if isinstance(exc, ForbiddenExtraKeysError):
        for k in sorted(exc.extra_fields):
            out.append(f"{_path_to_key(path + '.' + k)}: unknown key")
        return out
    if isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            name = getattr(note, "name", None)
            idx = getattr(note, "index", None)
            sub_path = f"{path}.{name}" if name is not None else f"{path}[{idx}]"
            if isinstance(sub, KeyError):
                out.append(f"{_path_to_key(sub_path)}: required key is missing")
            else:
                out.extend(_describe(sub, sub_path))
        for plain in without:
            out.extend(_describe(plain, path))
        return out
    if isinstance(exc, BaseExceptionGroup):
        for member in exc.exceptions:
            out.extend(_describe(member, path))
        return out
    key = _path_to_key(path)
    if key == "(top level)":
        out.append(str(exc))
    elif not key.startswith("["):
        out.append(f"[{key}] {exc}")
    else:
        out.append(f"{key}: {exc}")
    return out


def _parse_env_value(raw: str) -> Any:
    """Parse an env override as a TOML value when it is one (numbers, bools, lists), else a string."""
    if raw.strip().lower().startswith(("0x", "0o", "0b", "+0x", "-0x")):
        return raw  # addresses and hex strings stay strings (TOML would read 0x… as an int)
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _optional_section(t: Any) -> Any:
    """``FundingConfig | None`` (an optional section) -> ``FundingConfig``; other types as
    they are."""
    import types
    import typing

    if typing.get_origin(t) in (typing.Union, types.UnionType):
        classes = [a for a in typing.get_args(t) if a is not type(None)]
        if len(classes) == 1 and attrs.has(classes[0]):
            return classes[0]
    return t


def _override_target(name: str, parts: list[str]) -> None:
    """Refuse an override that names a section (``ENGINE__SUMMARY=5``) or goes below a plain
    key (``ENGINE__MODE__X``); unknown names are left to the strict structuring."""
    import typing

    cls: Any = EngineConfig
    for i, part in enumerate(parts):
        if cls is None or not attrs.has(cls):
            return  # inside a table (e.g. threshold_overrides): any key
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return  # unknown key: reported with the rest by structure_config
        t = _optional_section(hints[part])
        last = i == len(parts) - 1
        key = _path_to_key("$." + ".".join(parts[: i + 1]))
        if last and attrs.has(t):
            key = f"[{key}]" if i == 0 else key
            raise ConfigError(f"environment variable {name}: {key} is a section, not a key; "
                              f"name one of its keys: {name}__<KEY>")
        if not last and not attrs.has(t) and not _is_dict_type(t):
            raise ConfigError(f"environment variable {name}: {key} is a key, not a section")
        cls = t if attrs.has(t) else None


def apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Apply ENGINE__SECTION__KEY=value overrides in place (the name is case-insensitive,
    ``engine__venue__dex`` included); return the applied variable names."""
    applied: list[str] = []
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            raise ConfigError(f"environment variable {name}: malformed override name")
        _override_target(name, parts)
        node = data
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"environment variable {name}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = _parse_env_value(env[name])
        applied.append(name)
    return applied


def structure_config(data: dict[str, Any], source: str) -> EngineConfig:
    """Structure a raw dict into :class:`EngineConfig`; errors name ``source`` and the key."""
    try:
        return _converter.structure(data, EngineConfig)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError) as exc:
        problems = _describe(exc)
        raise ConfigError(
            f"invalid configuration in {source}:\n  " + "\n  ".join(problems)
        ) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid configuration in {source}: {exc}") from None


def load_config(
    path: str | Path | None, env: Mapping[str, str] | None = None, defaults: str | None = None
) -> EngineConfig:
    """Load ``path`` (or the TOML text ``defaults`` when path is None) plus env overrides."""
    env = os.environ if env is None else env
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {source}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {source}: {exc.strerror}") from None
    else:
        source = "<embedded default config>"
        text = defaults or ""
    from engine.secrets import SecretsError, refuse_secrets_in_config

    try:
        refuse_secrets_in_config(text, source)
    except SecretsError as exc:
        raise ConfigError(str(exc)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    applied = apply_env_overrides(data, env)
    if applied:
        source = f"{source} (with environment overrides {', '.join(applied)})"
    return structure_config(data, source)
