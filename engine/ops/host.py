"""What the ops service needs of the engine it serves: the :class:`OpsHost` protocol.

The app (``engine.app.ObserveApp`` and the trading app) implements it; the ops service
(:mod:`engine.ops.service`) is written against it, so ``engine.ops`` never imports
``engine.app`` and the two do not form a cycle (docs/architecture.md, "Layers"; checked by
import-linter in tests/test_layers.py, and the conformance of the app by mypy where the app
builds its ``OpsService(self)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from engine.config import EngineConfig
    from engine.core.core import ObserveCore
    from engine.followups import FollowupScheduler
    from engine.io.records import RecordWriter
    from engine.ops.health import HealthInputs


class FeedCounters(Protocol):
    """The market-data feed's counters the metrics read."""

    @property
    def frames_by_channel(self) -> Mapping[str, int]: ...

    @property
    def reconnects(self) -> int: ...


class FeedView(Protocol):
    """The market-data feed, as far as ops sees it."""

    @property
    def stats(self) -> FeedCounters: ...


class OpsHost(Protocol):
    """The engine as the ops service sees it (HTTP endpoints, metrics, health, notifications)."""

    @property
    def cfg(self) -> EngineConfig: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def core(self) -> ObserveCore | None: ...

    @property
    def writer(self) -> RecordWriter | None: ...

    @property
    def scheduler(self) -> FollowupScheduler | None: ...

    @property
    def feed(self) -> FeedView | None: ...

    @property
    def kill_path(self) -> Path: ...

    @property
    def stop_reason(self) -> str | None: ...

    def is_ready(self) -> bool: ...

    def ready_detail(self) -> str:
        """What the engine trades, for the READY line and systemd's ``STATUS=`` (e.g. ``40
        markets``, ``2 pairs (BTCUSDT, ETHUSDT)``)."""
        ...

    def health_inputs(self, loop_lag_ms: float | None, writer_errors: int) -> HealthInputs: ...

    def status_doc(self) -> dict[str, Any]: ...

    def request_stop(self, reason: str) -> bool: ...

    def reset_from_operator(self, source: str) -> Mapping[str, Any]: ...

    def flatten_from_operator(self, source: str) -> Mapping[str, Any]: ...

    def collect_metrics(self, m: Any) -> None: ...
