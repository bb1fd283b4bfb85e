// Live dashboard: polls the dcpue JSON API every 30 s. No build step, no external assets.
// The token is taken once from #access_token=... (or ?access_token=...) and kept in the
// browser session; the address bar is then cleaned so the token is not left in history.
"use strict";
const { lineChart, barChart, stackedChart, scatter, timeFormatter } = window.charts;
const POLL_MS = 30000;
const DAY = 86400000;
const RANGES = { "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY, "12mo": 365 * DAY };
const PARTS = [["it", "IT", "s0"], ["cooling", "Cooling", "s1"], ["power_loss", "Power losses", "s2"],
               ["lighting", "Lighting", "s3"], ["other", "Other", "s4"]];
const SUPPLY = [["grid_import", "Grid import", "s5"], ["pv_generation", "PV", "s6"],
                ["battery_discharge", "Battery out", "s7"], ["battery_charge", "Battery in", "s8"],
                ["grid_export", "Export", "s9"]];
const PV_PARTS = [["grid_import", "Grid import"], ["pv_generation", "PV generated"],
                  ["pv_self_consumed", "PV self-consumed"], ["grid_export", "Exported"],
                  ["battery_charge", "Battery charged"], ["battery_discharge", "Battery discharged"]];
const CARBON_LABELS = {
  total_energy: "Total energy", electricity: "Electricity used",
  grid_electricity: "Grid electricity", renewable_electricity: "Renewable electricity",
  purchased_green: "Purchased green power", onsite_pv: "On-site PV",
  renewable_share: "Renewable share", pue: "PUE",
  scope2_location: "Scope 2, location-based", scope2_market: "Scope 2, market-based",
  avoided_renewables: "Avoided: all renewables", avoided_purchased_green: "Avoided: green power",
  avoided_onsite_pv: "Avoided: on-site PV",
};

const token = (() => {
  const hash = new URLSearchParams(location.hash.slice(1)).get("access_token");
  const query = new URLSearchParams(location.search).get("access_token");
  const given = hash || query;
  if (given) {
    sessionStorage.setItem("dcpue-token", given);
    history.replaceState(null, "", location.pathname);
  }
  return given || sessionStorage.getItem("dcpue-token");
})();
const state = { range: "24h", custom: null, site: null, csv: {} };

async function api(path, init) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const resp = await fetch(path, { ...(init || {}), headers: { ...headers, ...((init || {}).headers || {}) } });
  if (!resp.ok) {
    let why = "HTTP " + resp.status;
    try { why = (await resp.json()).error || why; } catch (e) { /* not JSON */ }
    throw new Error(path.split("?")[0] + ": " + why);
  }
  return resp.json();
}

function q(params) { return new URLSearchParams(params).toString(); }

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  const v = Number(value);
  return (Math.abs(v) < 0.5 * 10 ** -digits ? 0 : v).toLocaleString("en-US",
    { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function rows(tbody, items) {
  tbody.replaceChildren(...items.map((cells) => {
    const tr = document.createElement("tr");
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      if (i > 0 && typeof text === "string" && /^[-–\d]/.test(text)) td.className = "num";
      if (text instanceof Node) td.append(text); else td.textContent = text ?? "";
      tr.append(td);
    });
    return tr;
  }));
}

function localTime(ms, opts) {
  return new Intl.DateTimeFormat("en-GB", { timeZone: state.site.timezone, dateStyle: "medium",
    timeStyle: "short", ...(opts || {}) }).format(new Date(ms));
}

function setCsv(name, header, data) { state.csv[name] = [header, ...data]; }

function download(name) {
  const table = state.csv[name];
  if (!table) return;
  const text = table.map((r) => r.map((c) => {
    const s = c === null || c === undefined ? "" : String(c);
    return /[",\n]/.test(s) ? '"' + s.replaceAll('"', '""') + '"' : s;
  }).join(",")).join("\n") + "\n";
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  a.download = `dcpue-${state.site.site}-${name}.csv`;
  a.click();
  URL.revokeObjectURL(a.href);
}

// {from, to} in ms (custom dates: UTC midnights, close enough to pick buckets) and
// {qFrom, qTo} for the API (custom dates are sent as dates: the server reads them in site time).
function range(nowMs) {
  if (state.custom) {
    const { from, to } = state.custom;
    return { from: Date.parse(from + "T00:00:00Z"), to: Date.parse(to + "T00:00:00Z"), qFrom: from, qTo: to };
  }
  const to = Math.ceil((nowMs + 1) / 60000) * 60000;
  return { from: to - RANGES[state.range], to, qFrom: to - RANGES[state.range], qTo: to };
}

function bucketLabel(ms, step) {
  const tz = state.site.timezone;
  const opts = step === "month" ? { month: "short", year: "2-digit" }
    : step === "day" ? { month: "short", day: "numeric" } : { hour: "2-digit", hourCycle: "h23" };
  return new Intl.DateTimeFormat("en-GB", { timeZone: tz, ...opts }).format(new Date(ms));
}

// -- cards --------------------------------------------------------------------------------

function showPue(data) {
  document.getElementById("site-name").textContent = data.name || data.site;
  const zone = new Intl.DateTimeFormat("en-US", { timeZone: data.timezone, timeZoneName: "short" })
    .formatToParts(new Date(data.now_ms)).find((p) => p.type === "timeZoneName");
  document.getElementById("clock").textContent = localTime(data.now_ms) + " " + (zone ? zone.value : "");
  const shownName = data.current && data.current.value !== null ? data.current_figure : data.best_figure;
  const shown = shownName ? data.figures[shownName] : null;
  const el = document.getElementById("pue-current");
  el.textContent = shown ? fmt(shown.value, 3) : "–";
  el.dataset.value = shown && shown.value !== null ? String(shown.value) : "";
  document.getElementById("pue-window").textContent = (shownName || data.current_figure).replace("pue.", "") + " window";
  const cov = shown && shown.coverage !== undefined ? shown.coverage : null;
  document.getElementById("pue-coverage").textContent = cov === null ? "" :
    "coverage " + fmt(100 * cov, 1) + " % · kWh/kWh over the window, not instantaneous";
  const warm = document.getElementById("warming");
  if (data.warming_up) {
    const w = data.warming_up, win = w.figure.replace("pue.", "");
    warm.textContent = w.ready_in_s === null ? `warming up: no readings yet for the ${win} PUE`
      : `warming up: ${win} PUE in ${Math.max(1, Math.ceil(w.ready_in_s / 60))} min` +
        (shownName ? ` · showing the ${shownName.replace("pue.", "")} window meanwhile` : "");
    warm.hidden = false;
  } else warm.hidden = true;
  document.getElementById("pue-figures").textContent = Object.entries(data.figures)
    .filter(([key]) => key.startsWith("pue.")).map(([key, f]) => key.replace("pue.", "") + " " + fmt(f.value, 3))
    .join(" · ");
}

function showTrend(data, r) {
  document.getElementById("trend-label").textContent = data.figure + ", " +
    (data.step_s >= 3600 ? data.step_s / 3600 + " h" : data.step_s / 60 + " min") + " means";
  lineChart(document.getElementById("pue-trend"), data.points,
    { from: r.from, to: r.to, tz: state.site.timezone, yLabel: "PUE (kWh/kWh)",
      emptyText: "no stored PUE in this range yet" });
  setCsv("trend", ["time_utc", "time_local", "figure", "pue"], data.points.map(([t, v]) =>
    [new Date(t).toISOString(), localTime(t), data.figure, v]));
}

function pairBars(svgId, csvName, cur, prev, step, names) {
  const groups = cur.buckets.map((b, i) => ({
    label: bucketLabel(b.start_ms, step),
    values: [prev && prev.buckets[i] ? prev.buckets[i].pue : null, b.pue],
  }));
  const pues = groups.flatMap((g) => g.values).filter((v) => v !== null);
  const lo = pues.length ? Math.max(1, Math.min(...pues) - 0.05) : 1;
  barChart(document.getElementById(svgId), groups, [{ name: names[0], cls: "prev" }, { name: names[1], cls: "s0" }],
    { yLabel: "PUE", yRange: [lo, pues.length ? Math.max(...pues) + 0.02 : 2], digits: 3,
      emptyText: "not enough data yet" });
  setCsv(csvName, ["start_local", "pue", "previous_start_local", "previous_pue"], cur.buckets.map((b, i) =>
    [localTime(b.start_ms), b.pue, prev && prev.buckets[i] ? localTime(prev.buckets[i].start_ms) : "",
     prev && prev.buckets[i] ? prev.buckets[i].pue : ""]));
}

function showEnergy(buckets, step, totals) {
  document.getElementById("energy-label").textContent = "kWh per " + step;
  stackedChart(document.getElementById("energy-chart"), buckets.map((b) => ({
    label: bucketLabel(b.start_ms, step), parts: PARTS.map(([k]) => b[k]) })),
    PARTS.map(([, name, cls]) => ({ name, cls })), { yLabel: "kWh", unit: "kWh" });
  setCsv("energy", ["start_local", ...PARTS.map(([k]) => k + "_kwh"), "facility_kwh", "pue"],
    buckets.map((b) => [localTime(b.start_ms), ...PARTS.map(([k]) => b[k]), b.facility, b.pue]));
  const f = totals.figures, total = f.facility ? f.facility.value : null;
  rows(document.querySelector("#energy-split tbody"), PARTS.filter(([k]) => f[k]).map(([k, label]) => {
    const share = total ? f[k].value / total : null;
    const bar = document.createElement("div");
    bar.className = "share";
    bar.style.width = share ? Math.max(0, Math.min(100, 100 * share)).toFixed(1) + "%" : "0";
    return [label, fmt(f[k].value, 0) + " kWh", share === null ? "" : fmt(100 * share, 1) + " %", bar];
  }));
}

function showSupply(buckets, step, totals) {
  const used = SUPPLY.filter(([k]) => buckets.some((b) => Math.abs(b[k] || 0) > 0));
  stackedChart(document.getElementById("supply-chart"), buckets.map((b) => ({
    label: bucketLabel(b.start_ms, step), parts: used.map(([k]) => b[k]) })),
    used.map(([, name, cls]) => ({ name, cls })), { yLabel: "kWh", unit: "kWh" });
  setCsv("supply", ["start_local", ...SUPPLY.map(([k]) => k + "_kwh")],
    buckets.map((b) => [localTime(b.start_ms), ...SUPPLY.map(([k]) => b[k])]));
  const f = totals.figures;
  rows(document.querySelector("#pv-battery tbody"), PV_PARTS.filter(([k]) => f[k]).map(
    ([k, label]) => [label, fmt(f[k].value, 0) + " kWh"]));
}

function showWeather(data) {
  scatter(document.getElementById("pue-weather"), data.points,
    { xLabel: "wet bulb (°C)", yLabel: "PUE (hourly)", emptyText: "needs outdoor temperature and humidity meters" });
  setCsv("weather", ["wet_bulb_c", "pue_hourly"], data.points);
}

function showCarbon(data) {
  const label = document.getElementById("carbon-label");
  label.textContent = data.from ? `${data.from} to ${data.to} (site days)` : "this month";
  const items = Object.values(data.figures).map((f) => [CARBON_LABELS[f.name] || f.name.replaceAll("_", " "),
    fmt(f.value, f.unit === "1" ? 3 : 1) + (f.unit === "1" ? "" : " " + f.unit)]);
  rows(document.querySelector("#carbon tbody"), items);
  setCsv("carbon", ["figure", "value", "unit"], Object.values(data.figures).map((f) => [f.name, f.value, f.unit]));
}

function showQuality(data) {
  const dead = Object.entries(data.dead_letters);
  const events = Object.entries(data.counter_events || {});
  const lines = [
    data.stale.length ? `stale: ${data.stale.join(", ")}` : "no stale meter",
    dead.length ? "dead letters: " + dead.map(([r, n]) => `${r} ${n}`).join(", ") : "no dead letters",
  ];
  if (events.length) lines.push("counter events: " + events.map(([k, n]) => `${k} ${n}`).join(", "));
  const summary = document.getElementById("quality-summary");
  summary.replaceChildren(...lines.map((t, i) => {
    const d = document.createElement("div");
    d.textContent = t;
    d.className = (i === 0 && data.stale.length) || (i === 1 && dead.length) ? "warn" : "muted";
    return d;
  }));
  rows(document.querySelector("#quality tbody"), data.meters.map((m) => [
    m.meter, m.coverage === undefined ? "" : fmt(100 * m.coverage, 1) + " %",
    m.age_s === null ? "never" : m.age_s < 120 ? fmt(m.age_s, 0) + " s ago" : fmt(m.age_s / 60, 0) + " min ago",
    Object.entries(m.events || {}).map(([k, n]) => `${n} ${k.replaceAll("_", " ")}`).join(", ")]));
  setCsv("quality", ["meter", "role", "kind", "coverage", "age_s", "stale", "rollovers", "resets"],
    data.meters.map((m) => [m.meter, m.role, m.kind, m.coverage, m.age_s, m.stale, m.rollovers, m.resets]));
}

function button(text, action) {
  const b = document.createElement("button");
  b.textContent = text;
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await action(); await refresh(); } catch (e) { status("error: " + e.message); b.disabled = false; }
  });
  return b;
}

function post(path, body) {
  return api(path, { method: "POST", body: JSON.stringify(body || {}), headers: { "Content-Type": "application/json" } });
}

function showAlerts(data) {
  const ul = document.getElementById("alerts");
  if (!data.groups.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "none";
    ul.replaceChildren(li);
    return;
  }
  const byId = Object.fromEntries(data.active.map((a) => [a.id, a]));
  ul.replaceChildren(...data.groups.map((g) => {
    const li = document.createElement("li");
    li.className = g.severity;
    li.dataset.alert = g.cause;
    const first = byId[g.ids[0]];
    const acked = g.ids.every((id) => byId[id] && byId[id].acknowledged_by);
    const silenced = g.ids.every((id) => byId[id] && byId[id].silenced_until_ms);
    const head = document.createElement("div");
    head.className = "alert-head";
    head.textContent = `${g.cause}${g.count > 1 ? " ×" + g.count : ""}` +
      (g.devices.length ? " · " + g.devices.join(", ") : "") + " · since " + localTime(g.since_ms);
    const text = document.createElement("div");
    text.textContent = g.summary + (acked ? ` (acknowledged by ${first.acknowledged_by})` : "") +
      (silenced ? ` (silenced until ${localTime(first.silenced_until_ms)})` : "");
    const actions = document.createElement("div");
    actions.className = "actions";
    if (!acked) actions.append(button("Acknowledge", () => Promise.all(g.ids.map((id) => post(`api/alerts/${encodeURIComponent(id)}/ack`)))));
    actions.append(button(silenced ? "Unsilence" : "Silence 1 h", () => Promise.all(g.ids.map((id) =>
      post(`api/alerts/${encodeURIComponent(id)}/silence`, { minutes: silenced ? 0 : 60 })))));
    li.append(head, text, actions);
    return li;
  }));
}

function showProposals(data) {
  const el = document.getElementById("proposal");
  const [latest, ...older] = data.proposals;
  if (!latest) { el.textContent = "none yet: the optimizer proposes once it has a trained model"; return; }
  el.className = latest.status === "proposed" ? "proposal" : "muted";
  el.replaceChildren(document.createTextNode(`${localTime(latest.ts_ms)} · ${latest.text}`));
  if (latest.status === "proposed" && state.site.write_back.length) {
    const actions = document.createElement("div");
    actions.className = "actions";
    actions.append(button("Accept", () => post(`api/proposals/${latest.id}/accept`)),
                   button("Reject", () => post(`api/proposals/${latest.id}/reject`)));
    el.append(actions);
  } else if (latest.status === "proposed") {
    const note = document.createElement("div");
    note.className = "muted small";
    note.textContent = "advisory: write-back is not enabled for any setpoint";
    el.append(note);
  }
  const ul = document.getElementById("proposals");
  ul.replaceChildren(...older.map((p) => {
    const li = document.createElement("li");
    li.className = "muted small";
    li.textContent = `${localTime(p.ts_ms)} · ${p.status} · ${p.text}`;
    return li;
  }));
}

function status(text) { document.getElementById("status").textContent = text; }

async function refresh() {
  try {
    if (!state.site) state.site = await api("api/site");
    const pue = await api("api/pue");
    showPue(pue);
    const r = range(pue.now_ms), span = r.to - r.from;
    const step = span <= DAY ? "hour" : span <= 62 * DAY ? "day" : "month";
    const days = Math.min(Math.max(7 * DAY, span), 31 * DAY);
    const jobs = [
      api("api/pue/history?" + q({ figure: pue.current_figure, from: r.qFrom, to: r.qTo })).then((d) => showTrend(d, r)),
      Promise.all([api("api/balance?" + q({ step: "day", from: r.to - days, to: r.to })),
                   api("api/balance?" + q({ step: "day", from: r.to - 2 * days, to: r.to - days }))])
        .then(([cur, prev]) => pairBars("daily-pue", "daily", cur, prev, "day", ["previous", "this period"])),
      Promise.all([api("api/balance?" + q({ step: "month", from: r.to - 365 * DAY, to: r.to })),
                   api("api/balance?" + q({ step: "month", from: r.to - 730 * DAY, to: r.to - 365 * DAY }))])
        .then(([cur, prev]) => pairBars("monthly-pue", "monthly",
          { buckets: cur.buckets.filter((b) => b.pue !== null || b.it > 0) },
          { buckets: prev.buckets.slice(prev.buckets.length - cur.buckets.filter((b) => b.pue !== null || b.it > 0).length) },
          "month", ["a year before", "last 12 months"])),
      Promise.all([api("api/balance?" + q({ step, from: r.qFrom, to: r.qTo })),
                   api("api/energy?" + q({ from: r.qFrom, to: r.qTo }))])
        .then(([b, totals]) => { showEnergy(b.buckets, step, totals); showSupply(b.buckets, step, totals); }),
      api("api/pue/weather?" + q({ from: Math.max(r.from, r.to - 30 * DAY), to: r.to })).then(showWeather),
      api("api/carbon?" + q({ from: r.qFrom, to: r.qTo })).then(showCarbon),
      api("api/quality?" + q({ from: r.qFrom, to: r.qTo })).then(showQuality),
      api("api/alerts").then(showAlerts),
      api("api/proposals?limit=5").then(showProposals),
    ];
    const results = await Promise.allSettled(jobs);
    const failed = results.filter((x) => x.status === "rejected");
    status(failed.length ? "error: " + failed[0].reason.message
      : "updated " + new Date().toLocaleTimeString("en-GB") + " (your time)");
  } catch (e) {
    status("error: " + e.message);
  }
  document.body.dataset.loaded = "true";
}

document.querySelectorAll("#range button").forEach((b) => b.addEventListener("click", () => {
  state.range = b.dataset.range;
  state.custom = null;
  document.querySelectorAll("#range button").forEach((x) => x.classList.toggle("on", x === b));
  refresh();
}));
for (const id of ["range-from", "range-to"]) {
  document.getElementById(id).addEventListener("change", () => {
    const from = document.getElementById("range-from").value, to = document.getElementById("range-to").value;
    if (!from || !to || to <= from) return;
    state.custom = { from, to };
    document.querySelectorAll("#range button").forEach((x) => x.classList.remove("on"));
    refresh();
  });
}
document.querySelectorAll("button.csv").forEach((b) => b.addEventListener("click", () => download(b.dataset.chart)));
window.addEventListener("resize", () => { clearTimeout(state.resize); state.resize = setTimeout(refresh, 300); });

refresh();
setInterval(refresh, POLL_MS);
