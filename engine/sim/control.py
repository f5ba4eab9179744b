"""``POST /sim/control``: drive the fault knobs of a simulator running as a subprocess.

Body ``{"action": <name>, ...arguments}``; e.g. ``{"action":"stall","coin":"xyz:GOLD",
"stream":"bbo","duration_s":2}``. Actions: drop_connections, stall, unstall, inject_malformed,
time_regression, set_ack_delay (``ms``), set_aligned (``aligned``), force_dislocation, stats.
Invalid requests raise ValueError/TypeError (HTTP 400).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.sim.server import SimExchange


def _str(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be a string")
    return value


def _num(body: dict[str, Any], key: str, default: float | None = None) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key!r} must be a number")
    return float(value)


def apply(sim: SimExchange, body: Any) -> Any:
    """Run one control action on ``sim``; return its JSON-able result."""
    if not isinstance(body, dict):
        raise TypeError("body must be a JSON object")
    action = body.get("action")
    if action == "drop_connections":
        return sim.drop_connections()
    if action == "stall":
        duration = body.get("duration_s")
        sim.stall(
            _str(body, "coin"),
            _str(body, "stream", "both"),
            None if duration is None else _num(body, "duration_s"),
        )
        return None
    if action == "unstall":
        sim.unstall(_str(body, "coin"))
        return None
    if action == "inject_malformed":
        return sim.inject_malformed(int(_num(body, "n", 1)), _str(body, "kind", "garbage"))
    if action == "time_regression":
        sim.time_regression(_str(body, "coin"), int(_num(body, "back_ms", 5000)))
        return None
    if action == "set_ack_delay":
        ms = _num(body, "ms")
        if ms < 0:
            raise ValueError("ms must be >= 0")
        sim.ack_delay_ms = ms
        return None
    if action == "set_aligned":
        aligned = body.get("aligned")
        if not isinstance(aligned, bool):
            raise TypeError("'aligned' must be true or false")
        sim.set_aligned(aligned)
        return None
    if action == "force_dislocation":
        sim.force_dislocation(
            _str(body, "coin"),
            _str(body, "side"),
            _num(body, "bps"),
            int(_num(body, "lag_ms", 1000)),
        )
        return None
    if action == "stats":
        return sim.stats()
    raise ValueError(f"unknown action {action!r}")
