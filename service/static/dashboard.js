// Live dashboard: polls the dcpue JSON API every 15 s. No build step, no external assets.
"use strict";
const params = new URLSearchParams(location.search);
const token = params.get("access_token");
const POLL_MS = 15000;
const ENERGY_PARTS = [["it", "IT"], ["cooling", "Cooling"], ["power_loss", "Power losses"],
                      ["lighting", "Lighting"], ["other", "Other"]];
const PV_PARTS = [["pv_generation", "PV generated"], ["pv_self_consumed", "PV self-consumed"],
                  ["grid_export", "Exported"], ["battery_charge", "Battery charged"],
                  ["battery_discharge", "Battery discharged"]];

const CARBON_LABELS = {
  total_energy: "Total energy", electricity: "Electricity used",
  grid_electricity: "Grid electricity", renewable_electricity: "Renewable electricity",
  purchased_green: "Purchased green power", onsite_pv: "On-site PV",
  renewable_share: "Renewable share", pue: "PUE",
  scope2_location: "Scope 2, location-based", scope2_market: "Scope 2, market-based",
  avoided_renewables: "Avoided: all renewables", avoided_purchased_green: "Avoided: green power",
  avoided_onsite_pv: "Avoided: on-site PV",
};

async function api(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const resp = await fetch(path, { headers });
  if (!resp.ok) throw new Error(path + ": HTTP " + resp.status);
  return resp.json();
}

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  const v = Number(value);
  return (Math.abs(v) < 0.5 * 10 ** -digits ? 0 : v).toLocaleString("en-US",
    { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function rows(tbody, items) {
  tbody.replaceChildren(...items.map(([label, value, extra]) => {
    const tr = document.createElement("tr");
    for (const [text, cls] of [[label, ""], [value, "num"], [extra || "", ""]]) {
      const td = document.createElement("td");
      if (cls) td.className = cls;
      if (text instanceof Node) td.append(text); else td.textContent = text;
      tr.append(td);
    }
    return tr;
  }));
}

function showPue(data) {
  document.getElementById("site-name").textContent = data.name || data.site;
  document.getElementById("clock").textContent = data.now.replace("T", " ").slice(0, 16) + " UTC";
  const cur = data.current;
  const el = document.getElementById("pue-current");
  el.textContent = cur ? fmt(cur.value, 3) : "–";
  el.dataset.value = cur && cur.value !== null ? String(cur.value) : "";
  document.getElementById("pue-window").textContent = data.current_figure;
  document.getElementById("pue-coverage").textContent =
    cur && cur.coverage !== undefined ? "coverage " + fmt(100 * cur.coverage, 1) + " %" : "";
  document.getElementById("pue-figures").textContent = Object.entries(data.figures)
    .filter(([key]) => key.startsWith("pue.")).map(([key, f]) => key + " " + fmt(f.value, 3))
    .join(" · ");
}

function showTrend(data) {
  const pts = data.points.filter((p) => p[1] !== null);
  const line = document.getElementById("pue-line");
  if (pts.length < 2) { line.setAttribute("points", ""); return; }
  const t0 = pts[0][0], t1 = pts[pts.length - 1][0];
  const vs = pts.map((p) => p[1]);
  const lo = Math.min(...vs), hi = Math.max(...vs), span = hi - lo || 1;
  line.setAttribute("points", pts.map(([t, v]) =>
    (300 * (t - t0) / (t1 - t0)).toFixed(1) + "," + (58 - 56 * (v - lo) / span).toFixed(1)
  ).join(" "));
}

function showEnergy(data) {
  const f = data.figures;
  const total = f.facility ? f.facility.value : null;
  rows(document.querySelector("#energy-split tbody"), ENERGY_PARTS.filter(([k]) => f[k]).map(
    ([k, label]) => {
      const share = total ? f[k].value / total : null;
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = share ? Math.max(0, Math.min(100, 100 * share)).toFixed(1) + "%" : "0";
      return [label, fmt(f[k].value, 0) + " kWh", bar];
    }));
  rows(document.querySelector("#pv-battery tbody"), PV_PARTS.filter(([k]) => f[k]).map(
    ([k, label]) => [label, fmt(f[k].value, 0) + " kWh"]));
}

function showCarbon(data) {
  rows(document.querySelector("#carbon tbody"), Object.values(data.figures).map(
    (f) => [CARBON_LABELS[f.name] || f.name.replaceAll("_", " "),
            fmt(f.value, f.unit === "1" ? 3 : 1) + (f.unit === "1" ? "" : " " + f.unit)]));
}

function showAlerts(data) {
  const ul = document.getElementById("alerts");
  if (!data.active.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "none";
    ul.replaceChildren(li);
    return;
  }
  ul.replaceChildren(...data.active.map((a) => {
    const li = document.createElement("li");
    li.className = a.severity;
    li.dataset.alert = a.name;
    li.textContent = a.name + " since " + a.starts_at.slice(0, 16) + ": " + a.summary;
    return li;
  }));
}

function showProposal(data) {
  const el = document.getElementById("proposal");
  const p = data.proposals[0];
  if (!p) { el.textContent = "none"; return; }
  const changes = Object.entries(p.changes).map(([k, v]) => k.replaceAll("_", " ") + " " + v);
  el.textContent = new Date(p.ts_ms).toISOString().slice(0, 16).replace("T", " ") + " UTC · " +
    p.status + " · saving " + fmt(p.saving_kw, 1) + " kW (" + fmt(p.saving_pct, 2) + " %) · " +
    (changes.length ? changes.join(", ") : "no change") + " · " + p.reason;
}

async function refresh() {
  const jobs = [["api/pue", showPue], ["api/pue/history", showTrend], ["api/energy", showEnergy],
                ["api/carbon", showCarbon], ["api/alerts", showAlerts],
                ["api/proposals?limit=1", showProposal]];
  const results = await Promise.allSettled(jobs.map(([path, show]) => api(path).then(show)));
  const failed = results.filter((r) => r.status === "rejected");
  document.getElementById("status").textContent = failed.length
    ? "error: " + failed[0].reason.message
    : "updated " + new Date().toLocaleTimeString();
  document.body.dataset.loaded = "true";
}

refresh();
setInterval(refresh, POLL_MS);
