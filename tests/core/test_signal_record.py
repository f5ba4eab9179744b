"""The lazily built signal record equals the eagerly built one of the previous implementation.

``RefCore`` is the observe core with the detector and ``_emit`` exactly as they were before the
record became lazy (a plain dict per signal, built at detection with the reference functions of
``engine.core.sizing`` and ``Thresholds``). Both cores see the same random event sequences under
random configurations; every signal must agree: the same instants, the same record (values,
types and key order) — built only at the END of the run, after later frames changed the market,
so the snapshot is what is recorded — and the same reject counters and market state.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import DetectorConfig, GatesConfig, SessionWindow, SizingConfig
from engine.core.core import ObserveCore, Signal
from engine.core.detector import (
    R_BASELINE,
    R_CONFIDENCE,
    R_CONSECUTIVE,
    R_DEDUP,
    R_DIRECTION,
    R_LAG_MAX,
    R_LAG_MIN,
    R_LIQUIDITY,
    R_SIZE,
    R_SPREAD,
    R_THRESHOLD,
    R_VELOCITY,
    REJECT_REASONS,
    Thresholds,
    strength_of,
)
from engine.core.market import MarketState
from engine.core.oracle import DOWN, UP
from engine.core.sizing import confidence_parts, confidence_score, liquidity_factor, suggested_size
from engine.core.types import MarketSpec

from .helpers import T0

COINS = ("xyz:SILVER", "xyz:GOLD")


# --------------------------------------------------------------------------- the reference
class RefDetector:
    """The detector before the lazy record (returns the decision dict)."""

    def __init__(self, cfg: DetectorConfig, sizing: SizingConfig) -> None:
        self.cfg = cfg
        self.sizing = sizing
        self.thresholds = Thresholds(cfg)
        self.rejects: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)

    def evaluate(self, m: MarketState, now_ms: float,
                 session: tuple[str, float, float]) -> dict[str, Any] | None:
        oracle, bid, ask = m.oracle_px, m.bid_px, m.ask_px
        if oracle is None or bid is None or ask is None or oracle <= 0:
            return None
        mid = (bid + ask) * 0.5
        result = None
        if ask < oracle:
            result = self._side(m, now_ms, session, False, (oracle - ask) / oracle * 1e4, ask,
                                m.ask_sz or 0.0, mid)
        elif bid > oracle:
            result = self._side(m, now_ms, session, True, (bid - oracle) / oracle * 1e4, bid,
                                m.bid_sz or 0.0, mid)
        m.baseline.update((oracle - mid) / oracle * 1e4, now_ms)
        return result

    def _side(self, m: MarketState, now_ms: float, session: tuple[str, float, float],
              is_sell: bool, raw: float, best_px: float, best_sz: float,
              mid: float) -> dict[str, Any] | None:
        cfg, rejects, oracle = self.cfg, self.rejects, m.oracle_px
        assert oracle is not None and m.ask_px is not None and m.bid_px is not None
        last = m.last_signal_oracle_sell if is_sell else m.last_signal_oracle_buy
        if last is not None and last == oracle:
            rejects[R_DEDUP] += 1
            return None
        spread_bps = (m.ask_px - m.bid_px) / mid * 1e4
        if cfg.max_entry_spread_bps and spread_bps > cfg.max_entry_spread_bps:
            rejects[R_SPREAD] += 1
            return None
        ewma_val = m.spread_ewma.value
        base, source, adaptive = self.thresholds.base(m.coin, ewma_val)
        session_name, session_thr, session_size = session
        total, short = self.thresholds.total(base, is_sell, session_thr)
        if raw < total:
            rejects[R_THRESHOLD] += 1
            return None
        tracker = m.tracker
        consecutive = tracker.consecutive(DOWN if is_sell else UP, now_ms)
        if cfg.oracle_direction_filter and consecutive <= 0:
            rejects[R_DIRECTION] += 1
            return None
        velocity = tracker.velocity_bps(now_ms)
        if cfg.min_oracle_change_bps and velocity < cfg.min_oracle_change_bps:
            rejects[R_VELOCITY] += 1
            return None
        if consecutive < cfg.min_consecutive_moves:
            rejects[R_CONSECUTIVE] += 1
            return None
        oracle_age = None
        if m.oracle_changed_ms is not None:
            oracle_age = now_ms - m.oracle_changed_ms
            if cfg.min_quote_lag_ms and oracle_age < cfg.min_quote_lag_ms:
                rejects[R_LAG_MIN] += 1
                return None
            if cfg.max_quote_lag_ms and oracle_age > cfg.max_quote_lag_ms:
                rejects[R_LAG_MAX] += 1
                return None
        baseline = m.baseline
        gap = baseline.value
        warm = gap is not None and baseline.samples >= cfg.baseline_min_samples
        if warm:
            assert gap is not None
            edge_above = raw - (max(0.0, -gap) if is_sell else max(0.0, gap))
        else:
            edge_above = raw
        if cfg.min_edge_above_baseline_bps and edge_above < cfg.min_edge_above_baseline_bps:
            rejects[R_BASELINE] += 1
            return None
        sz = self.sizing
        book_notional = best_sz * best_px
        lf = liquidity_factor(book_notional, sz.min_book_notional, sz.normal_book_notional)
        if lf <= 0.0:
            rejects[R_LIQUIDITY] += 1
            return None
        parts = confidence_parts(raw, total, velocity, cfg.min_oracle_change_bps, consecutive,
                                 lf, ewma_val)
        confidence = confidence_score(parts)
        if cfg.min_confidence and confidence < cfg.min_confidence:
            rejects[R_CONFIDENCE] += 1
            return None
        size = suggested_size(best_sz, best_px, m.spec.sz_decimals, lf, confidence, session_size,
                              sz.sizing_alpha, sz.confidence_sizing, sz.max_notional,
                              sz.min_order_notional)
        if size <= 0.0:
            rejects[R_SIZE] += 1
            return None
        if is_sell:
            m.last_signal_oracle_sell = oracle
        else:
            m.last_signal_oracle_buy = oracle
        net = raw - total
        return {
            "side": "sell" if is_sell else "buy", "raw_edge_bps": raw, "net_edge_bps": net,
            "strength": strength_of(net), "oracle_px": oracle, "best_px": best_px,
            "best_size": best_sz, "suggested_size": size, "suggested_notional": size * best_px,
            "threshold_bps": total, "threshold_base_bps": base, "threshold_source": source,
            "threshold_fee_total_bps": self.thresholds.fee_total,
            "threshold_taker_fee_bps": cfg.taker_fee_bps,
            "threshold_slippage_bps": cfg.slippage_bps,
            "threshold_min_edge_bps": cfg.min_edge_bps,
            "threshold_override_bps": cfg.threshold_overrides.get(m.coin),
            "threshold_adaptive_bps": adaptive, "threshold_session_mult": session_thr,
            "threshold_short_mult": short, "session": session_name,
            "session_size_mult": session_size, "oracle_age_ms": oracle_age,
            "oracle_velocity_bps": velocity, "consecutive_moves": consecutive,
            "spread_bps": spread_bps, "spread_ewma_bps": ewma_val, "baseline_gap_bps": gap,
            "baseline_samples": baseline.samples, "baseline_warm": warm,
            "edge_above_baseline_bps": edge_above, "liquidity_factor": lf,
            "book_notional": book_notional, "confidence": confidence,
            "confidence_edge": parts[0], "confidence_velocity": parts[1],
            "confidence_consecutive": parts[2], "confidence_book": parts[3],
            "confidence_spread": parts[4],
        }


def _ref_mark_mid_bps(m: MarketState) -> float | None:
    if m.mark_px is None or m.bid_px is None or m.ask_px is None:
        return None
    mid = (m.bid_px + m.ask_px) * 0.5
    if mid <= 0 or not math.isfinite(mid):
        return None
    return abs(m.mark_px - mid) / mid * 1e4


class RefCore(ObserveCore):
    """The observe core with the eager record of the previous implementation."""

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.ref = RefDetector(self.detector_cfg, self.detector.sizing)
        self.detector.rejects = self.ref.rejects  # compared by the test

    def _evaluate(self, m: MarketState, now_ms: float, trigger: str) -> Signal | None:
        self.evaluations += 1
        if self._gate(m, now_ms) is not None:
            return None
        fields = self.ref.evaluate(m, now_ms, self.sessions.lookup(now_ms))
        if fields is None:
            return None
        self.signals_total += 1
        self._seq += 1
        ts = int(now_ms)
        side = fields["side"]
        bid, ask = m.bid_px, m.ask_px
        g = self.gates_cfg
        record: dict[str, Any] = {
            "timestamp_ms": ts, "market_key": m.coin, "side": side,
            "raw_edge_bps": fields["raw_edge_bps"], "net_edge_bps": fields["net_edge_bps"],
            "oracle_px": fields["oracle_px"], "best_px": fields["best_px"],
            "best_size": fields["best_size"], "suggested_size": fields["suggested_size"],
            "signal_id": f"sig_{m.coin}_{side}_{ts}_{self.boot_id}-{self._seq}",
            "asset_id": m.spec.asset_id, "mode": self.mode, "trigger": trigger,
            "mark_px": m.mark_px, "bid_px": bid, "bid_sz": m.bid_sz, "ask_px": ask,
            "ask_sz": m.ask_sz,
            "mid_px": (bid + ask) * 0.5 if bid is not None and ask is not None else None,
            "bbo_server_time_ms": m.bbo_time_ms,
            "gate_bbo_age_ms": now_ms - m.bbo_recv_ms if m.bbo_recv_ms is not None else None,
            "gate_ctx_age_ms": now_ms - m.ctx_recv_ms if m.ctx_recv_ms is not None else None,
            "gate_max_bbo_age_ms": g.max_bbo_age_ms, "gate_max_ctx_age_ms": g.max_ctx_age_ms,
            "gate_mark_mid_bps": _ref_mark_mid_bps(m),
            "gate_max_mark_mid_bps": g.max_mark_mid_bps,
            "gate_spread_shock_multiple": g.spread_shock_multiple, "gate_state": "pass",
            "followup_offsets_ms": self.followup_offsets_ms,
        }
        for k, v in fields.items():
            if k not in record:
                record[k] = v
        return Signal.from_fields(record)


# --------------------------------------------------------------------------- the comparison
configs = st.fixed_dictionaries({
    "adaptive_threshold": st.booleans(),
    "spread_threshold_multiplier": st.sampled_from([0.5, 1.5, 4.0]),
    "threshold_overrides": st.sampled_from([{}, {"xyz:GOLD": 9.0}, {"xyz:SILVER": 25.0}]),
    "short_side_throttle": st.booleans(),
    "max_entry_spread_bps": st.sampled_from([0.0, 20.0]),
    "oracle_direction_filter": st.booleans(),
    "min_oracle_change_bps": st.sampled_from([0.0, 3.0]),
    "min_consecutive_moves": st.sampled_from([0, 1, 2]),
    "min_quote_lag_ms": st.sampled_from([0.0, 30.0]),
    "max_quote_lag_ms": st.sampled_from([0.0, 700.0]),
    "baseline_min_samples": st.sampled_from([0, 3, 100]),
    "min_edge_above_baseline_bps": st.sampled_from([0.0, 8.0]),
    "min_confidence": st.sampled_from([0.0, 0.25, 0.6]),
    "session_aware": st.booleans(),
    "gates": st.fixed_dictionaries({"max_mark_mid_bps": st.sampled_from([0.0, 200.0]),
                                    "spread_shock_multiple": st.sampled_from([0.0, 6.0]),
                                    "max_bbo_age_ms": st.sampled_from([0.0, 5000.0])}),
})
events = st.lists(
    st.tuples(
        st.sampled_from(["bbo", "ctx", "timer"]),
        st.integers(0, 1),  # market
        st.one_of(st.floats(-60, 60), st.floats(15, 150), st.floats(-150, -15)),  # bps: ctx
        # frame: oracle move; bbo frame: edge (+ buy side crossed, - sell side)
        st.floats(1, 40),  # spread bps
        st.floats(20, 20_000),  # book notional $
        st.integers(0, 900),  # ms since the previous event
    ),
    min_size=1, max_size=40,
)


def _cores(det: dict[str, Any]) -> tuple[ObserveCore, RefCore]:
    det = dict(det)
    gcfg = GatesConfig(**det.pop("gates", {}))
    dcfg = DetectorConfig(**det, sessions=[SessionWindow("all_day", "00:00", "23:59", 1.5, 0.5)],
                          session_timezone="UTC")
    scfg = SizingConfig()
    specs = [MarketSpec(i, c, 110000 + i, 2) for i, c in enumerate(COINS)]
    new = ObserveCore(specs, gcfg, dcfg, scfg, [1000, 3000], mode="paper", boot_id="b00t")
    ref = RefCore(specs, gcfg, dcfg, scfg, [1000, 3000], mode="paper", boot_id="b00t")
    return new, ref


def _drive(core: ObserveCore, evs: list[tuple[str, int, float, float, float, int]]
           ) -> list[Signal]:
    t = T0 + 14 * 3_600_000.0  # a weekday afternoon: the session window applies
    oracle = [100.0, 37.5]
    server = [0, 0]
    out: list[Signal] = []
    for i, px in enumerate(oracle):
        core.on_bbo(i, 0, px * 0.9999, 50.0, px * 1.0001, 50.0, t)
        core.on_ctx(i, px, px, t)
    for kind, i, bps, spread_bps, notional, gap in evs:
        t += gap
        if kind == "timer":
            out.extend(core.on_timer(t))
            continue
        if kind == "ctx":
            oracle[i] *= 1 + bps / 1e4
            s = core.on_ctx(i, oracle[i], oracle[i] * (1 + bps / 3e4), t)
        else:
            o = oracle[i]
            if bps >= 0:  # buy side crossed by bps
                ask = o * (1 - bps / 1e4)
                bid = ask * (1 - spread_bps / 1e4)
            else:  # sell side
                bid = o * (1 - bps / 1e4)
                ask = bid * (1 + spread_bps / 1e4)
            server[i] += 1
            s = core.on_bbo(i, server[i], bid, notional / bid, ask, notional / ask, t)
        if s is not None:
            out.append(s)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs, events)
def test_lazy_record_equals_the_eager_reference(det: dict[str, Any], evs: Any) -> None:
    new, ref = _cores(det)
    got = _drive(new, evs)
    want = _drive(ref, evs)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g._fields is None  # nothing built the record during the run
        wf = w.fields
        gf = g.fields  # built now, after every later event of the run
        assert list(gf) == list(wf)
        assert json.dumps(gf) == json.dumps(wf)  # values and types (int vs float) too
        assert (g.market_key, g.side, g.timestamp_ms, g.raw_edge_bps, g.oracle_px, g.best_px,
                g.best_size, g.suggested_size, g.signal_id) == (
            wf["market_key"], wf["side"], wf["timestamp_ms"], wf["raw_edge_bps"],
            wf["oracle_px"], wf["best_px"], wf["best_size"], wf["suggested_size"],
            wf["signal_id"])
    assert new.detector.rejects == ref.detector.rejects
    for a, b in zip(new.markets, ref.markets, strict=True):
        assert (a.baseline.value, a.baseline.samples, a.spread_ewma.value, a.blocked_by) == (
            b.baseline.value, b.baseline.samples, b.spread_ewma.value, b.blocked_by)


def _one_signal() -> tuple[ObserveCore, Signal]:
    new, _ = _cores({"min_consecutive_moves": 0, "oracle_direction_filter": False,
                     "min_quote_lag_ms": 0.0, "min_confidence": 0.0,
                     "min_edge_above_baseline_bps": 0.0, "session_aware": False})
    new.on_bbo(0, 1, 99.99, 100.0, 100.01, 100.0, T0)
    new.on_ctx(0, 100.0, 100.0, T0)
    sig = new.on_ctx(0, 100.2, 100.1, T0 + 5)
    assert sig is not None
    return new, sig


def test_executor_verdict_is_the_last_field_whenever_it_is_set() -> None:
    _, before = _one_signal()
    before.executor_verdict = "order_created"  # set before the record exists
    assert before._fields is None
    assert list(before.fields)[-1] == "executor_verdict"
    assert before.fields["executor_verdict"] == "order_created"
    _, after = _one_signal()
    n = len(after.fields)
    assert "executor_verdict" not in after.fields and after.executor_verdict is None
    after.executor_verdict = "not_ready"  # set after: goes into the built record
    assert list(after.fields)[-1] == "executor_verdict" and len(after.fields) == n + 1
    assert after.executor_verdict == "not_ready"
    # the older way (through the dict) keeps working
    _, legacy = _one_signal()
    legacy.fields["executor_verdict"] = "killed"
    assert legacy.executor_verdict == "killed"


def test_record_is_built_once_and_signal_id_is_stable() -> None:
    core, sig = _one_signal()
    sid = sig.signal_id
    assert sid == "sig_xyz:SILVER_buy_" + str(int(T0 + 5)) + "_b00t-1"
    f = sig.fields
    core.on_bbo(0, 2, 100.5, 1.0, 100.6, 1.0, T0 + 50)  # the market moves on
    assert sig.fields is f and f["signal_id"] == sid and f["bid_px"] == 99.99
    assert "raw=" in repr(sig) and sid in repr(sig)


def test_from_fields_round_trip() -> None:
    _, sig = _one_signal()
    again = Signal.from_fields(dict(sig.fields))
    assert again.fields == sig.fields
    assert (again.signal_id, again.market_key, again.side, again.timestamp_ms) == (
        sig.signal_id, sig.market_key, sig.side, sig.timestamp_ms)
