"""What the dashboard's charts show, computed by the one energy engine (dcpue.metrics).

- :func:`balance_buckets`: the energy balance (kWh) and PUE of each hour, day or month of a
  range (days and months at site-local midnight), from one read of each balance meter:
  :func:`dcpue.metrics.balance.stored_intervals`, then cumulative amounts at the bucket
  edges (:func:`dcpue.metrics.energy.accumulated`) and
  :func:`dcpue.metrics.balance.balance_from_energies` per bucket; PUE by
  :func:`dcpue.metrics.indicators.pue` (None below ``calculator.min_coverage``).
- :func:`pue_vs_wet_bulb`: hourly PUE beside the hour's mean outdoor wet bulb (psychrolib
  at the site's standard-atmosphere pressure, as the optimizer's frames compute it).
- :func:`data_quality`: coverage per meter over the range, stale meters, dead letters by
  reason, and the counter engine's events (rollover, reset, replacement, jump, outlier,
  over_ceiling, ...) inside the range, by kind and per meter.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
from dcpue.config.site import Site
from dcpue.config.topology import MeterRole
from dcpue.core.store import Store
from dcpue.metrics.balance import balance_from_energies, stored_intervals
from dcpue.metrics.energy import MeterEnergy, accumulated, window_energy
from dcpue.metrics.indicators import pue

Step = Literal["hour", "day", "month"]
HOUR_MS = 3_600_000
#: Most buckets one request may ask for.
MAX_BUCKETS = 2000
#: Energy parts of the stacked chart, in stacking order.
PARTS = ("it", "cooling", "power_loss", "lighting", "other")
SUPPLY = ("grid_import", "grid_export", "pv_generation", "pv_self_consumed", "battery_charge",
          "battery_discharge")


def bucket_edges(start_ms: int, end_ms: int, step: Step, zone: str) -> list[int]:
    """Edges (UTC ms) of the buckets covering ``[start_ms, end_ms)``: whole UTC hours, or
    site-local days and calendar months (so DST days are 23 or 25 h long); the last bucket
    ends at ``end_ms`` (a day or month to date)."""
    edges = _edges(start_ms, end_ms, step, zone)
    return [*edges[:-1], min(edges[-1], end_ms)] if len(edges) > 1 else edges


def _edges(start_ms: int, end_ms: int, step: Step, zone: str) -> list[int]:
    if step == "hour":
        first = start_ms // HOUR_MS * HOUR_MS
        n = min(-(-(end_ms - first) // HOUR_MS), MAX_BUCKETS + 1)  # one more: "too many"
        return [first + k * HOUR_MS for k in range(n + 1)]
    tz = ZoneInfo(zone)
    local = datetime.fromtimestamp(start_ms / 1000, tz)
    day = local.date() if step == "day" else local.date().replace(day=1)
    out: list[int] = []
    while True:
        edge = int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)
        out.append(edge)
        if edge >= end_ms or len(out) > MAX_BUCKETS + 1:
            return out
        day = day + timedelta(days=1) if step == "day" else (
            day.replace(year=day.year + 1, month=1) if day.month == 12
            else day.replace(month=day.month + 1))


def balance_buckets(site: Site, store: Store, edges: list[int]) -> list[dict[str, Any]]:
    """Per bucket: start/end (ms), each part and supply flow in kWh, facility kWh, coverage
    (0..1) and PUE (None with too little data)."""
    if len(edges) < 2:
        return []
    topology, intervals = stored_intervals(site, store, edges[0], edges[-1])
    grid = np.asarray(edges, dtype=np.int64)
    cumulative = {mid: accumulated(iv, grid) for mid, iv in intervals.items()}
    spans = np.diff(grid)
    out = []
    for k in range(len(edges) - 1):
        energies = {
            mid: MeterEnergy(mid, float(amount[k + 1] - amount[k]),
                             float((measured[k + 1] - measured[k]) / spans[k]))
            for mid, (amount, measured) in cumulative.items()
        }
        b = balance_from_energies(topology, energies, edges[k], edges[k + 1])
        figs = b.figures()
        row: dict[str, Any] = {"start_ms": edges[k], "end_ms": edges[k + 1],
                               "coverage": b.coverage,
                               "pue": pue(b, site.calculator.min_coverage).value}
        for name in (*PARTS, *SUPPLY, "facility"):
            row[name] = figs[name].value
        out.append(row)
    return out


def pue_vs_wet_bulb(site: Site, store: Store, start_ms: int, end_ms: int) -> list[list[float]]:
    """``[wet bulb degC, PUE]`` of each hour with both known."""
    from dcpue.optimizer.frames import site_pressure_pa, wet_bulb_c

    edges = bucket_edges(start_ms, end_ms, "hour", site.timezone)[: MAX_BUCKETS + 1]
    rows = balance_buckets(site, store, edges)
    temp = site.meters_with(MeterRole.OUTDOOR_TEMPERATURE)
    humid = site.meters_with(MeterRole.OUTDOOR_HUMIDITY)
    if not rows or not temp or not humid:
        return []
    got = store.bucketed([temp[0].id, humid[0].id], edges[0], edges[-1], HOUR_MS, "mean")
    if temp[0].id not in got or humid[0].id not in got:
        return []
    t, h = got[temp[0].id], got[humid[0].id]
    common, ti, hi = np.intersect1d(t.ts_ms, h.ts_ms, return_indices=True)
    wet = wet_bulb_c(t.value[ti], h.value[hi], site_pressure_pa(site))
    by_ts = dict(zip(common.tolist(), np.asarray(wet).tolist(), strict=True))
    return [[round(by_ts[r["start_ms"]], 2), r["pue"]] for r in rows
            if r["pue"] is not None and r["start_ms"] in by_ts
            and np.isfinite(by_ts[r["start_ms"]])]


def data_quality(site: Site, store: Store, start_ms: int, end_ms: int, now_ms: int,
                 stale_after_ms: int) -> dict[str, Any]:
    """Coverage (0..1) of each balance meter over the range with its rollovers and resets,
    the age of each site meter's newest reading (stale beyond ``stale_after_ms``), and dead
    letters by reason."""
    topology, intervals = stored_intervals(site, store, start_ms, end_ms)
    meters = []
    events: Counter[str] = Counter()
    for m in site.meters:
        row: dict[str, Any] = {"meter": m.id, "role": m.role.value, "kind": m.kind.value}
        if m.id in intervals:
            e = window_energy(m.id, intervals[m.id], start_ms, end_ms)
            row |= {"coverage": e.coverage, "rollovers": e.rollovers, "resets": e.resets,
                    "events": dict(Counter(ev.kind for ev in e.events))}
            for ev in e.events:
                events[ev.kind] += 1
        latest = store.latest(m.id)
        row["age_s"] = None if latest is None else max(0, now_ms - latest.ts_ms) / 1000
        row["stale"] = latest is None or now_ms - latest.ts_ms > stale_after_ms
        meters.append(row)
    return {"meters": meters, "stale": [r["meter"] for r in meters if r["stale"]],
            "dead_letters": store.dead_letter_counts(), "counter_events": dict(events),
            "balance_coverage": min((r.get("coverage", 1.0) for r in meters
                                     if r["meter"] in topology.meters), default=None)}


# -- proposals in plain words --------------------------------------------------------------

#: Setpoint -> (words, unit).
SETPOINT_WORDS = {
    "supply_air_temperature": ("supply air", "degC"),
    "chilled_water_temperature": ("chilled water", "degC"),
    "crah_fan_speed": ("CRAH fan speed", "%"),
    "pump_frequency": ("pump frequency", "Hz"),
    "running_units": ("running cooling units", ""),
}
#: Model input columns -> (words, unit) for "outside trained range" notes.
CONDITION_WORDS = {
    "dry_bulb_c": ("outdoor dry bulb", "degC"), "wet_bulb_c": ("outdoor wet bulb", "degC"),
    "relative_humidity_pct": ("outdoor humidity", "%"), "dew_point_c": ("dew point", "degC"),
    "it_kw": ("IT load", "kW"),
}
_OUTSIDE = re.compile(r"(\w+)=(-?[\d.e+]+) outside trained range \[(-?[\d.e+-]+), "
                      r"(-?[\d.e+-]+)\]")
_SMALL = re.compile(r"predicted saving (-?[\d.]+) % below ([\d.]+) %")


def _words(name: str) -> tuple[str, str]:
    return SETPOINT_WORDS.get(name) or CONDITION_WORDS.get(name) or (name.replace("_", " "), "")


def _why(reason: str) -> str:
    """The optimizer's reason, its machine notes turned into sentences."""
    text = reason.removeprefix("keep current: ")

    def outside(m: re.Match[str]) -> str:
        words, unit = _words(m.group(1))
        return (f"{words} {float(m.group(2)):.1f} {unit} is outside what the model was trained "
                f"on ({float(m.group(3)):.1f} to {float(m.group(4)):.1f} {unit})").replace(
                    "  ", " ")

    text = _OUTSIDE.sub(outside, text)
    return _SMALL.sub(lambda m: f"the predicted saving ({m.group(1)} %) is below the "
                      f"{float(m.group(2)):g} % worth a change", text)


def plain_words(p: Any) -> str:
    """E.g. "raise chilled water 10 -> 11 degC: saves about 25 kW, inlet stays <= 25.1 degC"
    for a :class:`dcpue.optimizer.propose.Proposal`."""
    changes = [(k, p.current[k], v) for k, v in p.proposed.items()
               if k in p.current and v != p.current[k]]
    if not changes:
        return "keep the current setpoints: " + _why(p.reason)
    parts = []
    for name, old, new in changes:
        words, unit = _words(name)
        parts.append(f"{'raise' if new > old else 'lower'} {words} {old:g} -> {new:g}"
                     + (f" {unit}" if unit else ""))
    text = ", ".join(parts)
    if p.saving_kw > 0:
        text += f": saves about {p.saving_kw:.0f} kW ({p.saving_pct:.1f} %)"
    elif not p.reason.startswith("predicted saving"):
        text += f": {_why(p.reason)}"
    if p.predicted_inlet_c is not None:
        text += f", inlet stays <= {p.predicted_inlet_c:.1f} degC"
    return text
