"""The funding/basis strategy's metrics (``engine_funding_*``), next to the engine's own.

Registered once on the run's :class:`~engine.ops.metrics.EngineMetrics` registry by the funding
app; :meth:`FundingMetrics.collect` refreshes them from the app's views at scrape time. The leg
latency histogram is observed on the hot path (one observe per hedge order written)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.ops.metrics import EngineMetrics

LEG_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1.0, 2.0, 5.0)


class FundingMetrics:
    def __init__(self, m: EngineMetrics) -> None:
        r = m.registry
        self.engine = m
        self.leg_latency = r.histogram(
            "engine_funding_leg_latency_seconds",
            "Leg-1 fill received to the leg-2 (hedge) order written to the socket.",
            LEG_LATENCY_BUCKETS)
        self.leg_qty = r.gauge_family(
            "engine_funding_leg_qty", "Signed base quantity held per symbol and leg.",
            ["symbol", "leg"])
        self.net_delta = r.gauge_family(
            "engine_funding_net_delta", "spot + perp base quantity per symbol.", ["symbol"])
        self.hedged = r.gauge_family(
            "engine_funding_hedged", "1 while the symbol's two legs are HEDGED.", ["symbol"])
        self.apr = r.gauge_family(
            "engine_funding_apr", "Latest predicted funding APR per symbol (signed).",
            ["symbol"])
        self.pnl = r.gauge_family(
            "engine_funding_pnl_usd", "Run P&L by part (funding, basis_pnl, fees, net_pnl).",
            ["part"])
        self.exposure = r.gauge_family(
            "engine_funding_exposure_usd",
            "Unhedged notional per symbol: |spot + perp| base quantity at the spot mid (USD).",
            ["symbol"])
        self.gross = r.gauge_family(
            "engine_funding_gross_usd",
            "Notional held per symbol: the larger leg at the spot mid (USD).", ["symbol"])
        self.leg_risk = r.gauge_family(
            "engine_funding_leg_risk_usd_seconds",
            "Leg risk used by the symbol's open intent: unhedged USD x seconds (its budget is "
            "[funding] leg_risk_budget_usd_s).", ["symbol"])
        self.hedge_ratio = r.gauge_family(
            "engine_funding_hedge_ratio",
            "|spot| / |perp| of the legs held now (1 = matched; absent while flat).",
            ["symbol"])
        self.settlements = r.gauge(
            "engine_funding_settlements", "Funding settlements received this run.")
        self.symbols_live = r.gauge(
            "engine_funding_symbols_live", "Symbols with a fresh quote and spot book.")
        self.connected = r.gauge(
            "engine_funding_streams_connected", "1 while every Bybit stream is connected.")

    def collect(self, rows: Mapping[str, Mapping[str, Any]], totals: Mapping[str, float],
                settlements: int, symbols_live: int, connected: bool) -> None:
        for sym, r in rows.items():
            spot, perp = float(r.get("spot_qty") or 0.0), float(r.get("perp_qty") or 0.0)
            self.leg_qty.labels(sym, "spot").set(spot)
            self.leg_qty.labels(sym, "perp").set(perp)
            self.net_delta.labels(sym).set(spot + perp)
            self.hedged.labels(sym).set(1 if r.get("hedged") else 0)
            apr = r.get("apr")
            if isinstance(apr, int | float):
                self.apr.labels(sym).set(apr)
            self.exposure.labels(sym).set(_num(r.get("exposure_usd")))
            self.gross.labels(sym).set(_num(r.get("gross_usd")))
            self.leg_risk.labels(sym).set(_num(r.get("leg_risk_usd_s")))
            if perp:
                self.hedge_ratio.labels(sym).set(abs(spot) / abs(perp))
            elif spot:
                self.hedge_ratio.labels(sym).set(0.0)  # a spot leg and no hedge at all
            else:
                self.hedge_ratio.remove(sym)
            self.engine.position_size.labels(f"{sym}:perp").set(perp)
            self.engine.position_size.labels(f"{sym}:spot").set(spot)
        for part in ("funding", "basis_pnl", "fees", "net_pnl"):
            self.pnl.labels(part).set(float(totals.get(part, 0.0)))
        self.engine.realized_pnl.set(float(totals.get("net_pnl", 0.0)))
        self.engine.fees.set(float(totals.get("fees", 0.0)))
        self.settlements.set(settlements)
        self.symbols_live.set(symbols_live)
        self.connected.set(1 if connected else 0)


def _num(v: Any) -> float:
    """A row's number; 0 for a missing or non-numeric value (the row is the core's snapshot)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return 0.0
    return float(v)
