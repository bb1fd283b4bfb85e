// Small SVG charts for the dcpue dashboard: line, grouped bars, stacked bars, scatter.
// Every chart has axes with units; times are shown in the site's time zone. No dependencies.
(() => {
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PAD = { l: 46, r: 10, t: 10, b: 26 };

function el(name, attrs, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / Math.max(1, n);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
  return { ticks: out, step };
}

function fmtNum(v, step) {
  const digits = step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step)));
  return Math.abs(v) >= 10000 ? (v / 1000).toFixed(0) + "k" : v.toFixed(digits);
}

function timeFormatter(tz, spanMs) {
  const opts = spanMs > 40 * 86400000 ? { month: "short", year: "2-digit" }
    : spanMs > 2 * 86400000 ? { month: "short", day: "numeric" }
      : { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  const f = new Intl.DateTimeFormat("en-GB", { timeZone: tz, ...opts });
  return (ms) => f.format(new Date(ms));
}

// A frame: the svg sized to its box, with scales, axes and a y-axis title.
function frame(svg, xr, yr, opts) {
  const w = Math.max(240, svg.clientWidth || 600), h = Math.max(140, svg.clientHeight || 200);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  for (const child of [...svg.children]) if (child.id !== "pue-line") child.remove();
  const x = (v) => PAD.l + (w - PAD.l - PAD.r) * (v - xr[0]) / ((xr[1] - xr[0]) || 1);
  const y = (v) => h - PAD.b - (h - PAD.t - PAD.b) * (v - yr[0]) / ((yr[1] - yr[0]) || 1);
  const axes = el("g", { class: "axes" });
  const yt = niceTicks(yr[0], yr[1], Math.max(2, Math.floor(h / 45)));
  for (const v of yt.ticks) {
    axes.append(el("line", { x1: PAD.l, x2: w - PAD.r, y1: y(v), y2: y(v), class: "grid" }));
    axes.append(el("text", { x: PAD.l - 4, y: y(v) + 4, "text-anchor": "end" }, fmtNum(v, yt.step)));
  }
  axes.append(el("text", { x: 4, y: PAD.t + 2, class: "unit", "dominant-baseline": "hanging",
    transform: `rotate(-90 4 ${PAD.t + 2}) translate(-${h - PAD.t - PAD.b} 0)` }, opts.yLabel || ""));
  if (opts.xTicks) {
    const every = Math.max(1, Math.ceil(opts.xTicks.length / Math.floor((w - PAD.l) / 70)));
    opts.xTicks.forEach(([v, label], i) => {
      if (i % every) return;
      axes.append(el("text", { x: x(v), y: h - 8, "text-anchor": "middle" }, label));
    });
  }
  if (opts.xLabel) axes.append(el("text", { x: w - PAD.r, y: h - PAD.b - 4, "text-anchor": "end",
    class: "unit" }, opts.xLabel));
  svg.prepend(axes);
  return { x, y, w, h, svg };
}

function extent(values, pad) {
  const vs = values.filter((v) => v !== null && Number.isFinite(v));
  if (!vs.length) return [0, 1];
  let lo = Math.min(...vs), hi = Math.max(...vs);
  const span = (hi - lo) || Math.abs(hi) * 0.05 || 1;
  return [lo - span * pad, hi + span * pad];
}

function empty(svg, text) {
  const f = frame(svg, [0, 1], [0, 1], {});
  svg.append(el("text", { x: f.w / 2, y: f.h / 2, "text-anchor": "middle", class: "empty" }, text));
}

function timeTicks(t0, t1, tz) {
  const fmt = timeFormatter(tz, t1 - t0);
  const { ticks } = niceTicks(t0, t1, 6);
  const hour = 3600000, day = 86400000;
  const step = (t1 - t0) / 6;
  const unit = step > 20 * day ? 30 * day : step > day ? day : step > 3 * hour ? 6 * hour : hour;
  const out = [];
  for (let t = Math.ceil(t0 / unit) * unit; t <= t1; t += unit) out.push([t, fmt(t)]);
  return out.length ? out : ticks.map((t) => [t, fmt(t)]);
}

// points: [[t_ms, value], ...]
function lineChart(svg, points, opts) {
  const pts = points.filter((p) => p[1] !== null);
  const line = svg.querySelector("#pue-line") || el("polyline", { fill: "none" });
  if (pts.length < 2) { empty(svg, opts.emptyText || "no data in this range"); line.setAttribute("points", ""); svg.append(line); return; }
  const t0 = opts.from ?? pts[0][0], t1 = opts.to ?? pts[pts.length - 1][0];
  const f = frame(svg, [t0, t1], extent(pts.map((p) => p[1]), 0.08),
    { yLabel: opts.yLabel, xTicks: timeTicks(t0, t1, opts.tz) });
  line.setAttribute("class", "series s0");
  line.setAttribute("points", pts.map(([t, v]) => f.x(t).toFixed(1) + "," + f.y(v).toFixed(1)).join(" "));
  svg.append(line);
}

// groups: [{label, values: [v per series]}], series: [{name, cls}]
function barChart(svg, groups, series, opts) {
  const vals = groups.flatMap((g) => g.values).filter((v) => v !== null);
  if (!vals.length) { empty(svg, opts.emptyText || "no data in this range"); return; }
  const yr = opts.yRange || [Math.min(...vals) * 0.97, Math.max(...vals) * 1.02];
  const f = frame(svg, [0, groups.length], yr,
    { yLabel: opts.yLabel, xTicks: groups.map((g, i) => [i + 0.5, g.label]) });
  const bw = (f.x(1) - f.x(0)) * 0.8 / series.length;
  groups.forEach((g, i) => g.values.forEach((v, j) => {
    if (v === null) return;
    const x = f.x(i) + (f.x(1) - f.x(0)) * 0.1 + j * bw;
    const r = el("rect", { x: x.toFixed(1), y: f.y(v).toFixed(1), width: Math.max(1, bw - 1).toFixed(1),
      height: Math.max(0, f.y(yr[0]) - f.y(v)).toFixed(1), class: "bar " + series[j].cls });
    r.append(el("title", {}, `${g.label} ${series[j].name}: ${v.toFixed(opts.digits ?? 3)}`));
    svg.append(r);
  }));
  legend(svg, f, series);
}

// stacks: [{label, parts: [v per series]}]
function stackedChart(svg, stacks, series, opts) {
  const totals = stacks.map((s) => s.parts.reduce((a, v) => a + Math.max(0, v || 0), 0));
  if (!totals.some((t) => t > 0)) { empty(svg, "no data in this range"); return; }
  const f = frame(svg, [0, stacks.length], [0, Math.max(...totals) * 1.05],
    { yLabel: opts.yLabel, xTicks: stacks.map((s, i) => [i + 0.5, s.label]) });
  const bw = (f.x(1) - f.x(0)) * 0.8;
  stacks.forEach((s, i) => {
    let acc = 0;
    s.parts.forEach((v, j) => {
      v = Math.max(0, v || 0);
      if (!v) return;
      const r = el("rect", { x: (f.x(i) + (f.x(1) - f.x(0)) * 0.1).toFixed(1), y: f.y(acc + v).toFixed(1),
        width: Math.max(1, bw).toFixed(1), height: Math.max(0, f.y(acc) - f.y(acc + v)).toFixed(1),
        class: "bar " + series[j].cls });
      r.append(el("title", {}, `${s.label} ${series[j].name}: ${v.toFixed(0)} ${opts.unit || ""}`));
      svg.append(r);
      acc += v;
    });
  });
  legend(svg, f, series);
}

function scatter(svg, points, opts) {
  if (points.length < 2) { empty(svg, opts.emptyText || "no data in this range"); return; }
  const xr = extent(points.map((p) => p[0]), 0.05), yr = extent(points.map((p) => p[1]), 0.08);
  const xt = niceTicks(xr[0], xr[1], 6);
  const f = frame(svg, xr, yr, { yLabel: opts.yLabel, xLabel: opts.xLabel,
    xTicks: xt.ticks.map((v) => [v, fmtNum(v, xt.step)]) });
  for (const [a, b] of points) svg.append(el("circle", { cx: f.x(a).toFixed(1), cy: f.y(b).toFixed(1), r: 2.2, class: "dot" }));
}

function legend(svg, f, series) {
  if (series.length < 2) return;
  let x = PAD.l + 4;
  for (const s of series) {
    svg.append(el("rect", { x, y: PAD.t, width: 9, height: 9, class: "bar key " + s.cls }));
    const t = el("text", { x: x + 12, y: PAD.t + 8, class: "legend" }, s.name);
    svg.append(t);
    x += 18 + 6.2 * s.name.length;
  }
}

window.charts = { lineChart, barChart, stackedChart, scatter, timeFormatter };
})();
