"""``POST /sim/control``: drive the fault knobs of a simulator running as a subprocess.

Body ``{"action": <name>, ...arguments}``; e.g. ``{"action":"stall","coin":"xyz:GOLD",
"stream":"bbo","duration_s":2}``. Actions: drop_connections, stall, unstall, inject_malformed,
time_regression, set_ack_delay (``ms``), set_aligned (``aligned``), force_dislocation, stats;
trading: create_account (``address``, ``balance``), approve_agent (``agent``, ``master``),
account (``address``), set_fee (``coin``, ``taker``, ``maker``), set_match_latency (``ms``),
reject_next (``n``, ``error``?), set_partial_fill_ratio (``ratio``, null = off),
drop_next_post_responses (``n``), delay_post_responses (``ms``), omit_order_updates_for_ioc
(``enabled``), transient_empty_clearinghouse (``n``), restart; clock: step_server_time
(``ms``, returns the new offset), set_server_time_offset (``ms``); issue-9 faults:
delay_user_streams (``ms``), empty_clearinghouse_for (``seconds``), empty_clearinghouse_every
(``period_s``, ``length_s``), drop_on_reduce_only (``n``, ``execute``?), unknown_oid_for (``ms``).
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


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if not isinstance(value, bool):
        raise TypeError(f"{key!r} must be true or false")
    return value


def _count(body: dict[str, Any], key: str = "n", default: float = 1) -> int:
    value = _num(body, key, default)
    if value != int(value) or value < 0:
        raise ValueError(f"{key!r} must be an integer >= 0")
    return int(value)


def _trading(sim: SimExchange, action: Any, body: dict[str, Any]) -> tuple[bool, Any]:
    """(handled, result) for the trading actions."""
    if action == "create_account":
        sim.create_account(_str(body, "address"), _num(body, "balance", 0.0))
    elif action == "approve_agent":
        sim.approve_agent(_str(body, "agent"), _str(body, "master"))
    elif action == "account":
        return True, sim.account_summary(_str(body, "address"))
    elif action == "set_fee":
        sim.set_fee(_str(body, "coin"), _num(body, "taker"), _num(body, "maker"))
    elif action == "set_match_latency":
        sim.match_latency_ms = _num(body, "ms")
    elif action == "reject_next":
        if "error" in body:
            sim.reject_next(_count(body), _str(body, "error"))
        else:
            sim.reject_next(_count(body))
    elif action == "set_partial_fill_ratio":
        ratio = body.get("ratio")
        sim.partial_fill_ratio = None if ratio is None else _num(body, "ratio")
    elif action == "drop_next_post_responses":
        sim.drop_next_post_responses(_count(body))
    elif action == "delay_post_responses":
        sim.delay_post_responses_ms = _num(body, "ms")
    elif action == "omit_order_updates_for_ioc":
        sim.omit_order_updates_for_ioc = _bool(body, "enabled")
    elif action == "transient_empty_clearinghouse":
        sim.transient_empty_clearinghouse(_count(body))
    elif action == "restart":
        return True, sim.restart()
    elif action == "delay_user_streams":
        sim.delay_user_streams_ms = _num(body, "ms")
    elif action == "empty_clearinghouse_for":
        sim.empty_clearinghouse_for(_num(body, "seconds"))
    elif action == "empty_clearinghouse_every":
        sim.empty_clearinghouse_every(_num(body, "period_s"), _num(body, "length_s", 0.0))
    elif action == "drop_on_reduce_only":
        sim.drop_on_reduce_only(_count(body), _bool(body, "execute") if "execute" in body
                                else False)
    elif action == "unknown_oid_for":
        sim.unknown_oid_for_ms = _num(body, "ms")
    else:
        return False, None
    return True, None


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
    if action == "step_server_time":
        return sim.step_server_time(int(_num(body, "ms")))
    if action == "set_server_time_offset":
        sim.server_time_offset_ms = int(_num(body, "ms"))
        return None
    handled, result = _trading(sim, action, body)
    if handled:
        return result
    raise ValueError(f"unknown action {action!r}")
