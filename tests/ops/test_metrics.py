"""The metrics registry (exposition parsed by prometheus_client), histogram math, label escaping,
scrape-time callbacks, the engine's metric set, the loop-lag monitor and the Grafana dashboard."""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from engine.ops.funding_metrics import FundingMetrics
from engine.ops.metrics import (
    LATENCY_BUCKETS,
    Counter,
    CounterFamily,
    EngineMetrics,
    Histogram,
    Registry,
    format_value,
    run_loop_lag_monitor,
)

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


def parse(reg: Registry) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(reg.render().decode("utf-8"))}


def samples(reg: Registry) -> list[Sample]:
    return [s for f in parse(reg).values() for s in f.samples]


def value(reg: Registry, name: str, **labels: str) -> float:
    found = [s.value for s in samples(reg) if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, found)
    return found[0]


# -- exposition -------------------------------------------------------------------------------


def test_counter_gauge_exposition_parses() -> None:
    reg = Registry()
    c = reg.counter("x_requests_total", "Requests.")
    g = reg.gauge("x_temperature", "Temperature.")
    c.inc()
    c.inc(2.5)
    g.set(7)
    g.inc(3)
    g.dec(0.5)
    fams = parse(reg)
    assert fams["x_requests"].type == "counter"
    assert fams["x_requests"].documentation == "Requests."
    assert fams["x_temperature"].type == "gauge"
    assert value(reg, "x_requests_total") == 3.5
    assert value(reg, "x_temperature") == 9.5
    text = reg.render().decode()
    assert text.endswith("\n")
    assert "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\n" in text


def test_special_values() -> None:
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"
    assert format_value(1e-05) == "1e-05"
    assert format_value(3) == "3.0"
    reg = Registry()
    reg.gauge("g_inf", "").set(math.inf)
    reg.gauge("g_nan", "").set(math.nan)
    assert value(reg, "g_inf") == math.inf
    assert math.isnan(value(reg, "g_nan"))


def test_counter_refuses_to_go_down() -> None:
    c = Counter("c_total", "")
    for bad in (-1, -0.001, math.nan):
        with pytest.raises(ValueError, match="c_total"):
            c.inc(bad)
    assert c.value == 0


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "é", "a\nb"])
def test_invalid_metric_names(name: str) -> None:
    reg = Registry()
    with pytest.raises(ValueError):
        reg.counter(name, "")


@pytest.mark.parametrize("labelnames", [[], ["a", "a"], ["__x"], ["1a"], ["a-b"], ["le"]])
def test_invalid_label_names(labelnames: list[str]) -> None:
    reg = Registry()
    with pytest.raises(ValueError):
        reg.histogram_family("h_seconds", "", labelnames)


def test_duplicate_and_clashing_names_are_refused() -> None:
    reg = Registry()
    reg.counter("a_total", "")
    reg.histogram("h_seconds", "")
    reg.gauge_family("orders", "", ["state"])
    with pytest.raises(ValueError, match="already registered"):
        reg.gauge("a_total", "")
    with pytest.raises(ValueError, match="clashes"):
        reg.gauge("a", "")  # OpenMetrics names the counter family "a"
    with pytest.raises(ValueError, match="clashes"):
        reg.gauge("h_seconds_count", "")
    with pytest.raises(ValueError, match="clashes"):
        reg.counter_family("orders_total", "", ["kind"])
    with pytest.raises(ValueError, match="only named"):
        reg.register(Counter())


def test_help_is_escaped() -> None:
    reg = Registry()
    reg.gauge("g", "line one\nback\\slash \"quoted\"")
    text = reg.render().decode()
    assert '# HELP g line one\\nback\\\\slash "quoted"\n' in text
    assert parse(reg)["g"].documentation == 'line one\nback\\slash "quoted"'


# -- labels -----------------------------------------------------------------------------------


def test_label_values_are_escaped_and_round_trip() -> None:
    reg = Registry()
    fam = reg.gauge_family("g", "", ["market", "stream"])
    nasty = 'xyz:"GOLD"\\n\nnew line é ✓ {a=b},'
    fam.labels(nasty, "bbo").set(1.5)
    fam.labels("xyz:SILVER", "ctx").set(2)
    assert value(reg, "g", market=nasty, stream="bbo") == 1.5
    assert value(reg, "g", market="xyz:SILVER", stream="ctx") == 2
    line = next(x for x in reg.render().decode().splitlines() if x.startswith('g{market="xyz:\\"'))
    assert line == 'g{market="xyz:\\"GOLD\\"\\\\n\\nnew line é ✓ {a=b},",stream="bbo"} 1.5'


def test_labelled_children_are_cached_and_validated() -> None:
    fam = CounterFamily("f_total", "", ["market", "side"])
    a = fam.labels("xyz:GOLD", "buy")
    assert fam.labels("xyz:GOLD", "buy") is a
    assert fam.labels("xyz:GOLD", "sell") is not a
    with pytest.raises(ValueError, match="expected 2 label values"):
        fam.labels("xyz:GOLD")
    with pytest.raises(ValueError, match="must be str"):
        fam.labels("xyz:GOLD", 1)  # type: ignore[arg-type]
    fam.remove("xyz:GOLD", "buy")
    fam.remove("not", "there")
    assert fam.labels("xyz:GOLD", "buy") is not a
    assert len(fam.children()) == 2
    fam.clear()
    assert fam.children() == {}


def test_family_without_children_renders_only_help_and_type() -> None:
    reg = Registry()
    reg.counter_family("empty_total", "Nothing yet.", ["x"])
    assert reg.render() == b"# HELP empty_total Nothing yet.\n# TYPE empty_total counter\n"
    assert parse(reg)["empty"].samples == []


# -- histograms -------------------------------------------------------------------------------


def test_histogram_math() -> None:
    reg = Registry()
    h = reg.histogram("lat_seconds", "Latency.", [0.001, 0.01, 0.1])
    for v in (0.0005, 0.001, 0.001, 0.005, 0.01, 0.05, 0.2, 7.0, -1.0):
        h.observe(v)
    # le is inclusive: 0.001 goes in the 0.001 bucket; a negative value in the first one
    assert h.counts == [4, 2, 1, 2]
    assert h.cumulative() == [4, 6, 7, 9]
    assert h.count == 9
    fam = parse(reg)["lat_seconds"]
    assert fam.type == "histogram"
    got = {(s.name, s.labels.get("le")): s.value for s in fam.samples}
    assert got[("lat_seconds_bucket", "0.001")] == 4
    assert got[("lat_seconds_bucket", "0.01")] == 6
    assert got[("lat_seconds_bucket", "0.1")] == 7
    assert got[("lat_seconds_bucket", "+Inf")] == 9
    assert got[("lat_seconds_count", None)] == 9
    assert got[("lat_seconds_sum", None)] == pytest.approx(7.2675 - 1.0)


def test_histogram_drops_nan_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "engine.ops.metrics")
    h = Histogram("h_seconds", "", [1.0])
    h.observe(math.nan)
    h.observe(math.nan)
    h.observe(0.5)
    assert h.dropped == 2 and h.count == 1 and h.sum == 0.5
    assert [r.getMessage() for r in caplog.records if "NaN" in r.getMessage()] == [
        "metrics: histogram h_seconds observed NaN; dropped (further NaNs are counted, "
        "not logged)"]


def test_histogram_buckets_are_validated() -> None:
    assert Histogram("h", "", [1, 2, math.inf]).bounds == (1.0, 2.0)
    for bad in ([], [math.inf], [2, 1], [1, 1], [math.nan], [-math.inf, 1]):
        with pytest.raises(ValueError, match="bucket"):
            Histogram("h", "", bad)


def test_labelled_histogram_family() -> None:
    reg = Registry()
    fam = reg.histogram_family("rt_seconds", "", ["kind"], [0.1, 1.0])
    fam.labels("entry").observe(0.05)
    fam.labels("entry").observe(0.5)
    fam.labels("flatten").observe(3.0)
    fam_parsed = parse(reg)["rt_seconds"]
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam_parsed.samples}
    assert got[("rt_seconds_bucket", (("kind", "entry"), ("le", "0.1")))] == 1
    assert got[("rt_seconds_bucket", (("kind", "entry"), ("le", "+Inf")))] == 2
    assert got[("rt_seconds_bucket", (("kind", "flatten"), ("le", "1.0")))] == 0
    assert got[("rt_seconds_count", (("kind", "flatten"),))] == 1
    assert got[("rt_seconds_sum", (("kind", "entry"),))] == pytest.approx(0.55)


def test_latency_buckets_span_10us_to_5s() -> None:
    assert LATENCY_BUCKETS[0] == 1e-05 and LATENCY_BUCKETS[-1] == 5.0
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))


# -- scrape-time callbacks --------------------------------------------------------------------


def test_value_callbacks_and_collectors_run_at_scrape_time() -> None:
    reg = Registry()
    state = {"age": 1.0, "calls": 0}
    reg.gauge("age_seconds", "", fn=lambda: state["age"])
    reg.counter("things_total", "", fn=lambda: 41 + 1)
    pos = reg.gauge_family("pos", "", ["market"])

    def collect() -> None:
        state["calls"] += 1
        pos.labels("xyz:GOLD").set(state["calls"])

    reg.add_collector(collect)
    assert state["calls"] == 0  # nothing runs until a scrape
    assert value(reg, "age_seconds") == 1.0
    state["age"] = 2.5
    assert value(reg, "age_seconds") == 2.5
    assert value(reg, "things_total") == 42
    assert value(reg, "pos", market="xyz:GOLD") == 4  # the fourth scrape
    with pytest.raises(TypeError):
        reg.add_collector("not callable")  # type: ignore[arg-type]


def test_failing_callbacks_are_logged_counted_and_the_scrape_succeeds(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "engine.ops.metrics")
    m = EngineMetrics()
    broken = {"on": True}

    def collector() -> None:
        if broken["on"]:
            raise KeyError("no such market")
        m.followups_pending.set(7)

    m.registry.add_collector(collector)
    m.registry.gauge("engine_test_bad_value", "", fn=lambda: "not a number")  # type: ignore
    for _ in range(3):
        reg_samples = samples(m.registry)
    names = {s.name for s in reg_samples}
    assert "engine_ready" in names  # everything else still rendered
    assert "engine_test_bad_value" not in names  # the failing one is left out
    # 3 scrapes x 2 callbacks, + the collector of this 4th scrape (the value callback
    # registered after the error counter has not run yet when the counter is read)
    assert value(m.registry, "engine_metrics_collector_errors_total") == 7
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2  # logged once per callback, not once per scrape
    assert any("no such market" in (r.exc_text or "") for r in errors)
    broken["on"] = False
    assert value(m.registry, "engine_followups_pending") == 7
    assert any("succeeds again" in r.getMessage() for r in caplog.records)


# -- the engine's metric set ------------------------------------------------------------------


def test_engine_metrics_exposition() -> None:
    m = EngineMetrics(version="0.1.0", mode="trade")
    m.frames.labels("bbo").inc()
    m.stream_age.labels("xyz:GOLD", "bbo").set(0.25)
    m.gate_blocked.labels("xyz:GOLD", "spread_shock").set(1)
    m.signals.labels("xyz:GOLD", "buy").inc()
    m.followups.labels("captured").inc(3)
    m.orders_total.labels("entry", "filled").inc()
    m.fills.inc()
    m.set_position("xyz:GOLD", -1.5, -3000.0)
    m.set_orders({"sent": 2, "filled": 5})
    m.set_orders({"filled": 6})  # "sent" drops to 0, not stale at 2
    m.set_flags(ready=True, healthy=True, hard_stop=False, killed=True)
    m.breaker_tripped.labels("daily_loss").set(0)
    m.notifications.labels("sent").inc()
    m.frame_to_decision.observe(12e-6)
    m.order_sent_to_ack.observe(0.03)
    reg = m.registry
    assert all(name.startswith("engine_") for name in reg.names())
    assert value(reg, "engine_build_info", version="0.1.0", mode="trade") == 1
    assert value(reg, "engine_orders_by_state", state="sent") == 0
    assert value(reg, "engine_orders_by_state", state="filled") == 6
    assert value(reg, "engine_position_size", market="xyz:GOLD") == -1.5
    assert value(reg, "engine_position_notional_usd", market="xyz:GOLD") == -3000.0
    assert value(reg, "engine_ready") == 1 and value(reg, "engine_killed") == 1
    assert value(reg, "engine_hard_stop") == 0
    assert value(reg, "engine_frame_to_decision_seconds_bucket", le="1e-05") == 0
    assert value(reg, "engine_frame_to_decision_seconds_bucket", le="1.5e-05") == 1
    fams = parse(reg)
    expected = {
        "engine_frames": "counter", "engine_stream_age_seconds": "gauge",
        "engine_gate_blocked": "gauge", "engine_signals": "counter",
        "engine_followups": "counter", "engine_followups_pending": "gauge",
        "engine_orders_by_state": "gauge", "engine_orders": "counter",
        "engine_fills": "counter", "engine_position_size": "gauge",
        "engine_position_notional_usd": "gauge", "engine_realized_pnl_usd": "gauge",
        "engine_unrealized_pnl_usd": "gauge", "engine_fees_usd": "gauge",
        "engine_hard_stop": "gauge", "engine_killed": "gauge", "engine_ready": "gauge",
        "engine_healthy": "gauge", "engine_reconnects": "counter",
        "engine_event_loop_lag_seconds": "histogram",
        "engine_frame_to_decision_seconds": "histogram",
        "engine_decision_to_order_sent_seconds": "histogram",
        "engine_order_sent_to_ack_seconds": "histogram",
        "engine_exit_trigger_to_flatten_sent_seconds": "histogram",
        "engine_breaker_tripped": "gauge", "engine_notifications": "counter",
        "engine_build_info": "gauge", "engine_metrics_collector_errors": "counter",
    }
    assert {name: f.type for name, f in fams.items()} == expected


def test_forty_markets_render_and_parse() -> None:
    m = EngineMetrics(version="0.1.0", mode="paper")
    for i in range(40):
        coin = f"xyz:M{i:02d}"
        for stream in ("bbo", "ctx"):
            m.stream_age.labels(coin, stream).set(i / 10)
        for gate in ("halt", "bbo_age", "ctx_age", "crossed", "spread_shock"):
            m.gate_blocked.labels(coin, gate).set(i % 2)
        m.set_position(coin, i, i * 100.0)
    got = samples(m.registry)
    assert sum(1 for s in got if s.name == "engine_gate_blocked") == 200
    assert sum(1 for s in got if s.name == "engine_stream_age_seconds") == 80


# -- loop lag ---------------------------------------------------------------------------------


def block_the_event_loop(seconds: float) -> None:
    time.sleep(seconds)  # deliberately synchronous


async def wait_for_count(hist: Histogram, n: int) -> None:
    for _ in range(1000):
        if hist.count >= n:
            return
        await trio.sleep(0.01)
    raise AssertionError(f"fewer than {n} observations within 10 s")


async def test_loop_lag_monitor_sees_a_blocked_loop_and_stops_on_cancel() -> None:
    hist = Histogram("lag_seconds", "", [0.01, 0.03, 1.0])
    lags: list[float] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(run_loop_lag_monitor, hist, 0.005, lags.append)
            await wait_for_count(hist, 3)
            block_the_event_loop(0.06)  # the monitor wakes >= 55 ms late
            await wait_for_count(hist, 5)
            n.cancel_scope.cancel()
    assert hist.cumulative()[-1] - hist.cumulative()[1] >= 1  # one wake-up later than 30 ms
    assert hist.sum >= 0.03
    assert len(lags) == hist.count and max(lags) >= 0.03 and min(lags) >= 0.0
    count = hist.count
    await trio.sleep(0.05)
    assert hist.count == count  # stopped


@pytest.mark.parametrize("interval", [0, -1, math.nan, math.inf])
async def test_loop_lag_monitor_refuses_bad_intervals(interval: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        await run_loop_lag_monitor(Histogram("h", "", [1.0]), interval)


# -- Grafana dashboard ------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def _panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows
    return out


def _exprs(dash: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dash) for t in p.get("targets", [])]
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        exprs.append(q["query"] if isinstance(q, dict) else str(q or ""))
    return exprs


def _series_names(text: str) -> set[str]:
    """Every series name a query may use, from the TYPE lines (empty families included)."""
    names = set()
    for name, typ in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(name)
        if typ == "histogram":
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    return names


def test_dashboard_is_a_grafana_dashboard_with_a_prometheus_input() -> None:
    dash = _dashboard()
    assert dash["schemaVersion"] >= 36
    assert dash["title"] and dash["uid"]
    inputs = dash["__inputs"]
    assert [(i["name"], i["type"], i["pluginId"]) for i in inputs] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")]
    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids))
    for p in _panels(dash):
        assert {"type", "title", "gridPos"} <= set(p), p.get("title")
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert t["expr"].strip() and t["refId"]
            assert _balanced(t["expr"]), t["expr"]
    cells: set[tuple[int, int]] = set()  # panels on the 24-column grid never overlap
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine


def _balanced(expr: str) -> bool:
    """Brackets nest and quotes close (a cheap PromQL sanity check)."""
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    in_str = False
    for ch in expr:
        if ch == '"':
            in_str = not in_str
        elif in_str:
            continue
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack and not in_str


def _all_metrics_text() -> str:
    """Every family either app exports: the engine's own plus the funding strategy's."""
    m = EngineMetrics()
    FundingMetrics(m)
    return m.registry.render().decode()


def test_dashboard_queries_only_metrics_the_engine_exports_and_covers_them_all() -> None:
    text = _all_metrics_text()
    exported = _series_names(text)
    used = {n for e in _exprs(_dashboard()) for n in re.findall(r"\bengine_[a-zA-Z0-9_:]*", e)}
    assert used, "no engine_* metric in the dashboard"
    assert used - exported == set(), f"dashboard uses unknown metrics: {used - exported}"
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    uncovered = {f for f in families
                 if not used & {f, f"{f}_bucket", f"{f}_sum", f"{f}_count"}}
    assert uncovered == set(), f"no panel for {sorted(uncovered)}"


def test_the_funding_row_has_a_panel_for_every_funding_metric() -> None:
    """Every ``engine_funding_*`` family of engine/ops/funding_metrics.py is queried by a panel
    of the dashboard's "Funding / basis (Bybit)" row, and that row queries only families the
    funding app exports (the funding metrics or the engine's own)."""
    dash = _dashboard()
    top = dash["panels"]
    start = next(i for i, p in enumerate(top) if p["type"] == "row"
                 and p["title"] == "Funding / basis (Bybit)")
    row = []
    for p in top[start + 1:]:
        if p["type"] == "row":
            break
        row.append(p)
    used = {n for p in row for t in p["targets"]
            for n in re.findall(r"\bengine_[a-zA-Z0-9_:]*", t["expr"])}
    m = EngineMetrics()
    FundingMetrics(m)
    text = m.registry.render().decode()
    funding = set(re.findall(r"^# TYPE (engine_funding_\S+) ", text, re.MULTILINE))
    assert len(funding) >= 13
    missing = {f for f in funding if not used & {f, f"{f}_bucket", f"{f}_sum", f"{f}_count"}}
    assert missing == set(), f"no funding panel for {sorted(missing)}"
    assert used <= _series_names(text)
    titles = " ".join(p["title"] for p in row)
    for what in ("Funding earned", "Basis P&L", "fees", "Net APR", "Hedge ratio",
                 "Leg latency", "Unhedged notional", "Leg risk"):
        assert what.lower() in titles.lower(), what


def test_dashboard_panel_kinds() -> None:
    dash = _dashboard()
    by_kind: dict[str, list[str]] = {}
    for p in _panels(dash):
        for t in p.get("targets", []):
            by_kind.setdefault(p["type"], []).append(t["expr"])
    stat_exprs = " ".join(by_kind.get("stat", []))
    for flag in ("engine_ready", "engine_healthy", "engine_hard_stop", "engine_killed"):
        assert flag in stat_exprs
    quantiles = [e for e in by_kind.get("timeseries", []) if "histogram_quantile" in e]
    for h in ("frame_to_decision", "decision_to_order_sent", "order_sent_to_ack",
              "exit_trigger_to_flatten_sent", "event_loop_lag", "funding_leg_latency"):
        assert any(h in e for e in quantiles) or any(h in e for e in by_kind.get("heatmap", []))


def test_bench_compares_like_with_like() -> None:
    """bench/bench_metrics.py's prometheus_client registry holds the same series as the
    hand-written 40-market one (same children, same buckets), so its ratios compare like with
    like (docs/architecture.md "Why the metrics registry is hand-written")."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "bench_metrics.py"
    spec = importlib.util.spec_from_file_location("bench_metrics", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ours = {f.name: f for f in text_string_to_metric_families(
        bench.forty_markets().registry.render().decode())}
    _, pm = bench.prometheus_forty_markets()
    theirs = {f.name: f for f in text_string_to_metric_families(pm["render"]().decode())}
    for name in ("engine_stream_age_seconds", "engine_gate_blocked", "engine_position_size",
                 "engine_orders_by_state", "engine_breaker_tripped"):
        assert len(theirs[name].samples) == len(ours[name].samples), name
    buckets = [s for s in theirs["engine_h0_seconds"].samples if s.name.endswith("_bucket")]
    ours_buckets = [s for s in ours["engine_frame_to_decision_seconds"].samples
                    if s.name.endswith("_bucket")]
    assert [s.labels["le"] for s in buckets] == [s.labels["le"] for s in ours_buckets]
    assert buckets[-1].value == ours_buckets[-1].value == 1000


def test_funding_metrics_unhedged_notional_leg_risk_and_hedge_ratio() -> None:
    m = EngineMetrics()
    fm = FundingMetrics(m)
    rows = {"BTCUSDT": {"spot_qty": 0.01, "perp_qty": -0.008, "hedged": False, "apr": 0.3,
                        "exposure_usd": 180.0, "gross_usd": 900.0, "leg_risk_usd_s": 42.5},
            "ETHUSDT": {"spot_qty": 0.0, "perp_qty": 0.0, "hedged": False, "apr": None,
                        "exposure_usd": 0.0, "gross_usd": 0.0, "leg_risk_usd_s": 0.0}}
    totals = {"funding": 1.5, "basis_pnl": -0.25, "fees": 0.5, "net_pnl": 0.75}
    fm.collect(rows, totals, 2, 2, True)
    text = m.registry.render().decode()
    assert 'engine_funding_exposure_usd{symbol="BTCUSDT"} 180' in text
    assert 'engine_funding_gross_usd{symbol="BTCUSDT"} 900' in text
    assert 'engine_funding_leg_risk_usd_seconds{symbol="BTCUSDT"} 42.5' in text
    assert 'engine_funding_hedge_ratio{symbol="BTCUSDT"} 1.25' in text
    assert 'engine_funding_hedge_ratio{symbol="ETHUSDT"}' not in text  # flat: no ratio
    assert 'engine_funding_pnl_usd{part="net_pnl"} 0.75' in text
    rows["BTCUSDT"].update(perp_qty=0.0)  # the hedge gone, the spot still held
    fm.collect(rows, totals, 2, 2, True)
    assert 'engine_funding_hedge_ratio{symbol="BTCUSDT"} 0' in m.registry.render().decode()
    rows["BTCUSDT"].update(spot_qty=0.0)
    fm.collect(rows, totals, 2, 2, True)
    assert "engine_funding_hedge_ratio{" not in m.registry.render().decode()
