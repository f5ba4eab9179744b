// The engine's live dashboard: one EventSource on "events" (relative: works through an SSH
// tunnel on any local port), tables re-drawn from each snapshot, signals/followups/orders/
// trades/alerts appended as they are pushed; with the funding/basis strategy (a "funding"
// part in the snapshot) its pairs, totals and open orders, the empty Hyperliquid sections
// hidden. Actions POST with the bearer token typed here
// (kept in this page only) after a confirmation dialog.
"use strict";

const MAX_ROWS = 50;
const SHOWN_EVENTS = 20;
const STALE_MS = 3000;
const state = {
  signals: [],          // newest first
  followups: new Map(), // signal_id -> [{offset_ms, status, raw_edge_bps, miss_reason}]
  orderEvents: [],
  trades: [],
  alerts: [],
  equity: [],           // [t_ms, pnl]
  lastSnapshotAt: 0,
  snapshot: null,
  dropped: 0,
  funding: false,       // the snapshot has a "funding" part (the funding/basis strategy)
};

const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g,
  (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

function num(x, digits) {
  if (x === null || x === undefined || typeof x !== "number" || !isFinite(x)) return "–";
  return x.toFixed(digits);
}
function px(x) {  // prices: 6 significant digits, no float noise
  if (typeof x === "string") return esc(x);
  if (typeof x !== "number" || !isFinite(x)) return "–";
  if (Math.abs(x) >= 1e5) return x.toFixed(0);
  return String(Number(x.toPrecision(6)));
}
function qty(x) {  // signed quantities: 6 significant digits, no float noise
  if (typeof x !== "number" || !isFinite(x)) return "–";
  if (x === 0) return "0";
  return (x > 0 ? "+" : "") + String(Number(x.toPrecision(6)));
}
function pct(x, digits) {
  return typeof x === "number" && isFinite(x) ? `${(x * 100).toFixed(digits)} %` : "–";
}
function signed(x, digits) {
  if (typeof x !== "number" || !isFinite(x)) return "–";
  if (Math.abs(x) < 0.5 * Math.pow(10, -digits)) x = 0;  // never "-0.00"
  const cls = x > 0 ? "pos" : x < 0 ? "neg" : "";
  return `<span class="${cls}">${x > 0 ? "+" : ""}${x.toFixed(digits)}</span>`;
}
function dur(ms) {
  if (typeof ms !== "number" || !isFinite(ms)) return "–";
  if (ms < 1000) return `${ms.toFixed(0)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${(ms / 60000).toFixed(1)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}
function clock(ms) {
  if (typeof ms !== "number") return "–";
  return new Date(ms).toISOString().slice(11, 23);
}
function badge(id, text, cls) {
  const el = $(id);
  el.textContent = text;
  el.className = "badge " + (cls || "");
}
function kv(id, rows) {
  $(id).querySelector("tbody").innerHTML =
    rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${v}</td></tr>`).join("");
}
function body(id, html) { $(id).querySelector("tbody").innerHTML = html; }

// ------------------------------------------------------------------ snapshot
function onSnapshot(s) {
  state.snapshot = s;
  state.lastSnapshotAt = Date.now();
  const st = s.status || {};
  $("mode").textContent = st.mode ? `— ${st.mode}` : "";
  badge("health", st.healthy ? "healthy" : "unhealthy", st.healthy ? "ok" : "bad");
  badge("ready", st.ready ? "ready" : "not ready", st.ready ? "ok" : "warn");
  badge("hardstop", st.hard_stop ? `HARD STOP: ${st.hard_stop}` : "hard stop off",
        st.hard_stop ? "bad" : "ok");
  const killed = st.stopping || (st.killed ? "kill switch on" : null) ||
    (st.kill_file_present ? "kill file present" : null);
  badge("killed", killed ? `STOP: ${killed}` : "kill switch off", killed ? "bad" : "ok");
  $("uptime").textContent = st.uptime_s !== undefined ?
    `up ${dur(st.uptime_s * 1000)} · v${st.version || "?"}` : "";
  const funding = s.funding && typeof s.funding === "object" ? s.funding : null;
  setFundingMode(!!funding);
  drawPnl(s.pnl || {}, st);
  drawBreakers(st);
  drawFeed(st, s.markets || []);
  drawLatency(s.latency || {});
  drawFunding(funding);
  drawPositions(s.positions || []);
  drawOrders(s.orders || []);
  drawMarkets(s.markets || []);
  // funding mode: the Hyperliquid sections only while they have something to show
  $("positions-panel").hidden = !!funding && !(s.positions || []).length;
  $("markets-panel").hidden = !!funding && !(s.markets || []).length;
  $("signals-orders").hidden = !!funding && !state.signals.length && !(s.orders || []).length;
  if (Array.isArray(s.equity_last)) {
    const last = state.equity[state.equity.length - 1];
    if (!last || s.equity_last[0] > last[0]) state.equity.push(s.equity_last);
    if (state.equity.length > 5000) state.equity.splice(0, state.equity.length - 5000);
  }
  drawEquity();
  const d = s.dashboard || {};
  $("footer").textContent = `dashboard: ${d.connected ?? "?"}/${d.max_clients ?? "?"} clients · ` +
    `snapshot every ${d.snapshot_interval_s ?? "?"} s · events dropped for this page ` +
    `${state.dropped} (all pages ${d.dropped ?? 0}) · snapshots coalesced ${d.coalesced ?? 0}`;
}

function drawPnl(p, st) {
  if (state.funding) {
    const f = (state.snapshot && state.snapshot.funding) || {};
    kv("pnl", [
      ["today (breakers)", signed(p.today_usd, 2)],
      ["closed round trips (net of fees)", signed(p.realised_usd, 4)],
      ["open pairs at the mids", signed(p.unrealised_usd, 4)],
      ["session total", signed(p.total_usd, 4)],
      ["equity", num(p.equity_usd, 2)],
      ["round trips closed", esc(p.trades ?? "–")],
      ["funding settlements", esc(f.settlements ?? "–")],
    ]);
    return;
  }
  const rows = [
    ["today (breakers)", signed(p.today_usd, 2)],
    ["session realised (net of fees)", signed(p.realised_usd, 4)],
    ["unrealised", signed(p.unrealised_usd, 4)],
    ["session total", signed(p.total_usd, 4)],
    ["equity", num(p.equity_usd, 2)],
    ["trades", esc(p.trades ?? st.trades ?? "–")],
    ["entries / flattens", `${esc(st.entries ?? "–")} / ${esc(st.flattens ?? "–")}`],
    ["signals", esc(st.signals ?? "–")],
  ];
  kv("pnl", rows);
}

function drawBreakers(st) {
  const b = st.breakers || {};
  const t = b.thresholds || {};
  kv("breakers", [
    ["hard stop", st.hard_stop ? `<span class="neg">${esc(st.hard_stop)}</span>` : "off"],
    ["daily loss", `${num(b.daily_loss_pct, 2)} % of ${num(t.daily_loss, 1)} %`],
    ["drawdown", `${num(b.drawdown_pct, 2)} % of ${num(t.drawdown, 1)} %`],
    ["consecutive losses", `${esc(b.consecutive_losses ?? "–")} of ` +
      `${esc(t.consecutive_losses ?? "–")}`],
    ["halted markets", esc((b.halted_markets || []).join(", ") || "none")],
  ]);
  $("trips").innerHTML = (b.trips || []).map((tr) =>
    `<li class="error">tripped: ${esc(tr.breaker || "")} ${esc(tr.detail || tr.reason || "")}` +
    `</li>`).join("");
}

function drawFeed(st, markets) {
  const f = st.feed || {};
  const fu = st.followups || {};
  let worstBook = null, worstOracle = null;
  for (const m of markets) {
    if (m.halted) continue;
    if (typeof m.bbo_age_ms === "number") worstBook = Math.max(worstBook ?? 0, m.bbo_age_ms);
    if (typeof m.ctx_age_ms === "number") worstOracle = Math.max(worstOracle ?? 0, m.ctx_age_ms);
  }
  kv("feed", [
    ["connected", f.connected ? '<span class="pos">yes</span>' : '<span class="neg">no</span>'],
    ["markets live / passing", `${esc(st.markets_live ?? "–")} / ${esc(st.markets_passing ?? "–")}` +
      ` of ${esc(st.markets ?? "–")}`],
    ["frames / reconnects / malformed", `${esc(f.frames ?? "–")} / ${esc(f.reconnects ?? "–")}` +
      ` / ${esc(f.malformed ?? "–")}`],
    ["oldest book / oracle", `${dur(worstBook)} / ${dur(worstOracle)}`],
    ["event-loop lag", typeof st.event_loop_lag_ms === "number" ?
      `${st.event_loop_lag_ms.toFixed(2)} ms` : "–"],
    ["followups pending / captured / missed",
      `${esc(fu.pending ?? "–")} / ${esc(fu.captured ?? "–")} / ${esc(fu.missed ?? "–")}`],
    ["orders active / unknown", `${esc(st.orders_active ?? "–")} / ${esc(st.orders_unknown ?? "–")}`],
  ]);
  $("problems").innerHTML = (st.problems || []).map((p) => `<li class="error">${esc(p)}</li>`)
    .concat((st.notes || []).map((p) => `<li class="warning">${esc(p)}</li>`)).join("");
}

function drawLatency(lat) {
  const ms = (x) => (typeof x === "number" ? x.toFixed(x < 1 ? 3 : 1) : "–");
  // funding mode: the Hyperliquid paths never observe anything there; shown once they do
  const rows = Object.entries(lat).filter(([name, r]) => !state.funding || r.count > 0 ||
    name === "engine_funding_leg_latency_seconds" || name === "engine_event_loop_lag_seconds");
  body("latency", rows.map(([, r]) =>
    `<tr><td>${esc(r.label)}</td><td>${esc(r.count)}</td><td>${ms(r.p50_ms)}</td>` +
    `<td>${ms(r.p90_ms)}</td><td>${ms(r.p99_ms)}</td>` +
    `<td>${ms(r.window_p50_ms)} / ${ms(r.window_p99_ms)}</td></tr>`).join("") ||
    '<tr><td colspan="6" class="l muted">no observations yet</td></tr>');
}

const FLATTEN_HL = "Flatten every position";
const FLATTEN_FUNDING = "Flatten both legs of every pair (the perp reduce-only); entries stop " +
  "until a restart";
function setFundingMode(on) {
  if (state.funding === on) return;
  state.funding = on;
  const b = $("btn-flatten");
  b.textContent = on ? "Flatten all pairs" : "Flatten all";
  b.title = on ? FLATTEN_FUNDING : FLATTEN_HL;
  $("btn-kill").title = on ? "no new entries, both legs of every pair flattened, the engine " +
    "stops" : "";
}

function drawFunding(f) {
  $("funding").hidden = !f;
  if (!f) return;
  const unhedged = new Set(["leg1", "hedging", "unwinding"]);
  body("funding-pairs", (f.symbols || []).map((r) => {
    const cls = unhedged.has(r.state) ? "unhedged" : r.state === "idle" ? "blocked" : "";
    const next = typeof r.next_funding_ms === "number" ?
      `${clock(r.next_funding_ms).slice(0, 8)} (in ${dur(r.next_funding_in_ms)})` : "–";
    const d = r.decision || [];
    const why = d[0] ? `${d[0]}${d[1] ? `: ${d[1]}` : ""}` : "";
    const stateCell = r.unreconciled ?
      `${esc(r.state)} <span class="neg" title="${esc(r.unreconciled)}">unreconciled</span>` :
      esc(r.state);
    return `<tr class="${cls}" data-symbol="${esc(r.symbol)}" data-state="${esc(r.state)}">` +
      `<td>${esc(r.symbol)}</td><td class="l">${stateCell}</td><td>${qty(r.perp_qty)}</td>` +
      `<td>${qty(r.spot_qty)}</td><td>${qty(r.net_delta)}</td><td>${signed(r.funding, 4)}</td>` +
      `<td>${signed(r.basis_pnl, 4)}</td><td>${num(r.fees, 4)}</td><td>${signed(r.net, 4)}</td>` +
      `<td>${pct(r.rate, 4)}</td><td>${pct(r.apr, 1)}</td><td>${next}</td>` +
      `<td>${num(r.hedge_ratio, 4)}</td><td>${r.leg_latency_ms === 0 ? "&lt; 1 ms" : dur(r.leg_latency_ms)}</td>` +
      `<td>${dur(r.held_ms)}</td><td class="l wrap">${esc(why)}</td></tr>`;
  }).join("") || '<tr><td colspan="16" class="l muted">no pairs yet (starting)</td></tr>');
  const t = f.totals || {};
  const lat = f.leg_latency || {};
  const ms = (x) => (typeof x === "number" ? `${x.toFixed(2)} ms` : "–");
  kv("funding-totals", [
    ["funding earned / basis / fees / net (closed + open)",
      `${signed(t.funding, 4)} / ${signed(t.basis_pnl, 4)} / ${num(t.fees, 4)} / ` +
      `${signed(t.net_pnl, 4)}`],
    ["round trips closed / settlements", `${esc(f.closed ?? "–")} / ${esc(f.settlements ?? "–")}`],
    ["leg latency (fill received → hedge written) median / p99",
      `${ms(lat.median_ms)} / ${ms(lat.p99_ms)} (n ${esc(lat.n ?? 0)})`],
  ]);
  body("funding-orders", (f.orders || []).map((o) =>
    `<tr data-client-id="${esc(o.client_id)}"><td>${esc(o.symbol)}</td>` +
    `<td class="l">${esc(o.client_id)}</td><td>${esc(o.leg)}</td>` +
    `<td>${esc(o.role)}${o.reduce_only ? " (RO)" : ""}</td><td>${esc(o.side)}</td>` +
    `<td>${esc(o.qty)}</td><td>${esc(o.filled)}</td>` +
    `<td>${esc(o.state)}${o.cancel_sent ? " (cancel sent)" : ""}</td></tr>`).join("") ||
    '<tr><td colspan="8" class="l muted">no open orders</td></tr>');
  body("funding-trips", (f.round_trips || []).map((t) =>
    `<tr data-intent-id="${esc(t.intent_id)}"><td>${clock(t.closed_ms).slice(0, 8)}</td>` +
    `<td>${esc(t.symbol)}</td><td>${esc(t.direction)}</td><td>${dur(t.hold_ms)}</td>` +
    `<td>${num(t.entry_notional, 2)}</td><td>${esc(t.settlements ?? "–")}</td>` +
    `<td>${signed(t.funding, 4)}</td><td>${signed(t.basis_pnl, 4)}</td>` +
    `<td>${num(t.fees, 4)}</td><td>${signed(t.net, 4)}</td>` +
    `<td>${pct(t.net_apr, 1)}</td>` +
    `<td>${num(t.hedge_ratio, 4)}</td><td class="l">${esc(t.fail_reason || "–")}</td></tr>`
  ).join("") || '<tr><td colspan="13" class="l muted">none closed yet</td></tr>');
}

function drawPositions(rows) {
  body("positions", rows.map((p) =>
    `<tr><td>${esc(p.coin)}</td><td>${esc(p.state)}</td><td>${signed(p.size, 4)}</td>` +
    `<td>${px(p.entry_px)}</td><td>${px(p.mark)}</td><td>${signed(p.unrealised_usd, 4)}</td>` +
    `<td>${signed(p.exit_side_pnl_bps, 1)}</td><td>${dur(p.held_ms)}</td>` +
    `<td>${dur(p.time_stop_in_ms)}</td><td>${num(p.best_pnl_bps, 1)}</td>` +
    `<td>${p.trail_active ? "active" : "–"}</td>` +
    `<td>${esc(p.exit_reason || (p.flatten_failures ? `${p.flatten_failures} failed` : ""))}</td>` +
    `</tr>`).join("") || '<tr><td colspan="12" class="l muted">flat</td></tr>');
}

function drawOrders(rows) {
  body("orders", rows.map((o) =>
    `<tr><td>${dur(o.age_ms)}</td><td>${esc(o.coin)}</td><td>${esc(o.side)}</td>` +
    `<td>${esc(o.purpose)}${o.reduce_only ? " (RO)" : ""}</td><td>${px(o.px)}</td>` +
    `<td>${esc(o.sz)}</td><td>${esc(o.state)}</td></tr>`).join("") ||
    '<tr><td colspan="7" class="l muted">no live orders</td></tr>');
}

function drawMarkets(rows) {
  body("markets", rows.map((m) => {
    const gate = m.halted ? `halted: ${m.halted}` : m.gate ?
      `${m.gate}${m.blocked_ms ? ` (${dur(m.blocked_ms)})` : ""}` : "pass";
    const cls = m.gate || m.halted ? "blocked" : (m.disloc_bps > 0 ? "hot" : "");
    const disloc = typeof m.disloc_bps === "number" ?
      `${signed(m.disloc_bps, 2)} ${esc(m.disloc_side || "")}` : "–";
    return `<tr class="${cls}" data-coin="${esc(m.coin)}"><td>${esc(m.coin)}</td>` +
      `<td class="l" title="${esc(m.gate_detail)}">${esc(gate)}</td><td>${px(m.oracle)}</td>` +
      `<td>${px(m.bid)}</td><td>${px(m.ask)}</td><td>${disloc}</td>` +
      `<td>${signed(m.oracle_mid_bps, 2)}</td><td>${dur(m.bbo_age_ms)}</td>` +
      `<td>${dur(m.ctx_age_ms)}</td></tr>`;
  }).join(""));
}

// ------------------------------------------------------------------ pushed events
function followupCell(id) {
  const list = state.followups.get(id) || [];
  return list.sort((a, b) => a.offset_ms - b.offset_ms).map((f) =>
    f.status === "captured" ?
      `<span title="raw edge at +${f.offset_ms} ms">+${(f.offset_ms / 1000).toFixed(1)}s ` +
      `${signed(f.raw_edge_bps, 1)}</span>` :
      `<span class="muted" title="${esc(f.miss_reason)}">+${(f.offset_ms / 1000).toFixed(1)}s ` +
      `missed</span>`).join(" · ");
}

function drawSignals(flashId) {
  body("signals", state.signals.map((s) =>
    `<tr data-signal-id="${esc(s.signal_id)}"${s.signal_id === flashId ? ' class="new"' : ""}>` +
    `<td>${clock(s.timestamp_ms)}</td><td>${esc(s.market_key)}</td><td>${esc(s.side)}</td>` +
    `<td>${num(s.raw_edge_bps, 2)}</td><td>${num(s.net_edge_bps, 2)}</td>` +
    `<td>${px(s.oracle_px)} / ${px(s.best_px)}</td><td>${esc(s.suggested_size)}</td>` +
    `<td class="l wrap">${followupCell(s.signal_id)}</td></tr>`).join("") ||
    '<tr><td colspan="9" class="l muted">no signals yet</td></tr>');
}

function addSignal(s, redraw) {
  if (state.signals.some((x) => x.signal_id === s.signal_id)) return;
  state.signals.unshift(s);
  state.signals.length = Math.min(state.signals.length, MAX_ROWS);
  if (redraw) drawSignals(s.signal_id);
}

function addFollowup(f, redraw) {
  const list = state.followups.get(f.signal_id) || [];
  if (!list.some((x) => x.offset_ms === f.offset_ms)) list.push(f);
  state.followups.set(f.signal_id, list);
  if (state.followups.size > 4 * MAX_ROWS) {
    state.followups.delete(state.followups.keys().next().value);
  }
  if (redraw) drawSignals(null);
}

function pushCapped(list, item, key) {
  const k = key(item);
  if (list.some((x) => key(x) === k)) return;
  list.unshift(item);
  list.length = Math.min(list.length, MAX_ROWS);
}

function drawOrderEvents() {
  body("order-events", state.orderEvents.slice(0, SHOWN_EVENTS).map((o) =>
    `<tr><td>${clock(o.ts_ms)}</td><td>${esc(o.market_key)}</td><td>${esc(o.purpose)}</td>` +
    `<td>${esc(o.side)}</td><td>${esc(o.sz)}@${px(o.px)}</td><td>${esc(o.event)}</td>` +
    `<td title="${esc(o.message)}">${esc(o.state)}</td></tr>`).join(""));
}
function drawTrades() {
  body("trades", state.trades.slice(0, SHOWN_EVENTS).map((t) =>
    `<tr><td>${clock(t.exit_time_ms)}</td><td>${esc(t.market_key)}</td>` +
    `<td>${esc(t.direction)}</td><td>${esc(t.size)}</td><td>${px(t.entry_avg_px)}</td>` +
    `<td>${px(t.exit_avg_px)}</td><td>${signed(t.net_pnl, 4)}</td>` +
    `<td>${esc(t.exit_reason)}</td></tr>`).join(""));
}
function drawAlerts() {
  $("alerts").innerHTML = state.alerts.map((a) =>
    `<li class="${esc(a.level)}">${clock(a.ts_ms)} ${esc(a.level)} ${esc(a.code)}: ` +
    `${esc(a.message)}</li>`).join("");
}

const orderKey = (o) => `${o.cloid}|${o.event}|${o.ts_ms}`;
const tradeKey = (t) => `${t.market_key}|${t.exit_time_ms}`;
const alertKey = (a) => `${a.ts_ms}|${a.code}|${a.message}`;

function onHello(h) {
  const r = h.recent || {};
  state.signals = [];
  state.followups = new Map();
  state.orderEvents = [];
  state.trades = [];
  state.alerts = [];
  for (const s of r.signal || []) addSignal(s, false);
  for (const f of r.followup || []) addFollowup(f, false);
  for (const o of r.order || []) pushCapped(state.orderEvents, o, orderKey);
  for (const t of r.trade || []) pushCapped(state.trades, t, tradeKey);
  for (const a of r.alert || []) pushCapped(state.alerts, a, alertKey);
  state.equity = Array.isArray(h.equity) ? h.equity.slice() : [];
  drawSignals(null);
  drawOrderEvents();
  drawTrades();
  drawAlerts();
  drawEquity();
}

// ------------------------------------------------------------------ equity curve
function drawEquity() {
  const c = $("equity");
  const w = c.clientWidth || c.width, hgt = c.clientHeight || c.height;
  if (c.width !== w) c.width = w;
  if (c.height !== hgt) c.height = hgt;
  const g = c.getContext("2d");
  g.clearRect(0, 0, w, hgt);
  g.font = "12px system-ui, sans-serif";
  const pts = state.equity;
  if (pts.length < 2) {
    g.fillStyle = "#8a949f";
    g.fillText(pts.length ? `session P&L ${pts[0][1].toFixed(4)} USD (one sample so far)` :
      "no P&L samples yet (one every few seconds)", 10, 20);
    return;
  }
  const t0 = pts[0][0], t1 = pts[pts.length - 1][0];
  let lo = Math.min(0, ...pts.map((p) => p[1])), hi = Math.max(0, ...pts.map((p) => p[1]));
  if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
  const L = 60, R = 10, T = 10, B = 20;
  const x = (t) => L + (w - L - R) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => T + (hgt - T - B) * (hi - v) / (hi - lo);
  g.strokeStyle = "#2a313a";
  g.beginPath(); g.moveTo(L, y(0)); g.lineTo(w - R, y(0)); g.stroke();
  g.strokeStyle = "#4aa3ff";
  g.lineWidth = 1.5;
  g.beginPath();
  pts.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
  g.stroke();
  g.fillStyle = "#8a949f";
  g.fillText(hi.toFixed(2), 4, T + 10);
  g.fillText(lo.toFixed(2), 4, hgt - B);
  if (y(0) - y(hi) > 14 && y(lo) - y(0) > 14) g.fillText("0", 4, y(0) + 4);
  g.fillText(new Date(t0).toISOString().slice(11, 19), L, hgt - 4);
  const end = new Date(t1).toISOString().slice(11, 19) + " UTC";
  g.fillText(end, w - R - g.measureText(end).width, hgt - 4);
}

// ------------------------------------------------------------------ connection
let source = null;
let retryMs = 1000;

function connect() {
  source = new EventSource("events");
  source.onopen = () => { retryMs = 1000; badge("conn-state", "live", "ok"); };
  source.onerror = () => {
    badge("conn-state", "disconnected — retrying", "bad");
    if (source.readyState === EventSource.CLOSED) {  // refused (e.g. 503): retry ourselves
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    }
  };
  const on = (name, fn) => source.addEventListener(name, (e) => {
    try { fn(JSON.parse(e.data)); } catch (err) { console.error(name, err); }
  });
  on("hello", onHello);
  on("snapshot", onSnapshot);
  on("signal", (s) => addSignal(s, true));
  on("followup", (f) => addFollowup(f, true));
  on("order", (o) => { pushCapped(state.orderEvents, o, orderKey); drawOrderEvents(); });
  on("trade", (t) => { pushCapped(state.trades, t, tradeKey); drawTrades(); });
  on("alert", (a) => { pushCapped(state.alerts, a, alertKey); drawAlerts(); });
  on("dropped", (d) => { state.dropped = d.dropped; });
}

setInterval(() => {
  if (source && source.readyState === EventSource.OPEN && state.lastSnapshotAt &&
      Date.now() - state.lastSnapshotAt > STALE_MS) {
    badge("conn-state", `stale (${dur(Date.now() - state.lastSnapshotAt)})`, "warn");
  } else if (source && source.readyState === EventSource.OPEN) {
    badge("conn-state", "live", "ok");
  }
}, 1000);

// ------------------------------------------------------------------ actions
function result(text, ok) {
  const el = $("action-result");
  el.textContent = text;
  el.className = ok === undefined ? "muted" : ok ? "ok" : "bad";
}

async function act(path, label, payload) {
  if (!window.confirm(`${label}: are you sure? This is sent to the running engine now.`)) {
    result(`${label}: cancelled`);
    return;
  }
  const headers = {};
  const token = $("token").value.trim();
  if (token) headers["Authorization"] = `Bearer ${token}`;
  let bodyText;
  if (payload !== undefined) {
    headers["Content-Type"] = "application/json";
    bodyText = JSON.stringify(payload);
  }
  result(`${label}: sending…`);
  try {
    const r = await fetch(path, {method: "POST", headers, body: bodyText, cache: "no-store"});
    let doc = {};
    try { doc = await r.json(); } catch (e) { doc = {}; }
    if (r.ok) {
      result(`${label}: accepted (${r.status}) ${JSON.stringify(doc)}`, true);
    } else {
      result(`${label}: refused (${r.status}) ${doc.error || ""}`, false);
    }
  } catch (err) {
    result(`${label}: failed: ${err}`, false);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("btn-flatten").addEventListener("click", () =>
    act("flatten", state.funding ? FLATTEN_FUNDING : FLATTEN_HL));
  $("btn-kill").addEventListener("click", () =>
    act("kill", "Kill switch (no new entries, flatten everything" +
        (state.funding ? " — both legs of every pair, the perp reduce-only" : "") +
        ", stop the engine; it will not trade again until `python -m engine kill --clear`)",
        {reason: "dashboard kill switch"}));
  $("btn-reset").addEventListener("click", () => act("hardstop/reset", "Reset the hard stop"));
  drawSignals(null);
  drawEquity();
  connect();
});
