"""The fleet report: fleet PUE, per-site table, renewables, avoided emissions, Scope 2 both ways
and 24/7 CFE, from the sites' published hourly terms (pure; :func:`fleet_report` does the I/O).

- Site energies (MWh) = sum over the period's hours of the published term / 1000; coverage =
  sum of the hourly coverage / hours in the period (a missing hour counts 0).
  PV consumed and grid electricity used inside the boundary (``pv_inside``, ``grid_inside``)
  apply the site balance's own definitions to the period sums. A term below ``inclusion.min_coverage`` is insufficient data (None).
- **Fleet PUE** = sum(facility) / sum(IT) over the sites in operation at least
  ``inclusion.min_months`` months at the period end (The Green Grid energy-weighted fleet PUE;
  reference operator: "data centers in operation for more than 12 months"). Younger sites are
  shown, marked excluded, and still count in electricity and carbon.
- **Carbon** per region with :func:`dcpue.carbon.accounting.account` (the one Scope 2 engine):
  GHG Protocol (location-based on grid import x the region factor or its hourly factors;
  market-based with the region's instruments meeting the quality criteria at their factor and
  the residual mix for the rest) and the reference operator's identity method (location on all
  electricity - avoided emissions of renewables); fleet figures are sums over regions.
- **24/7 CFE**: :mod:`dcpue.fleet.cfe` on the regions' hourly facility energy, on-site PV and
  instrument delivery profiles.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from dcpue.carbon.accounting import PeriodEnergy, account
from dcpue.carbon.periods import date_ms, period_label
from dcpue.carbon.report import ROWS, _tree_lines
from dcpue.config.calculator import CalculatorSettings
from dcpue.config.carbon import CarbonSettings, GridFactor, Scope2Method
from dcpue.config.factors import HourlyFactors, load_hourly_factors
from dcpue.config.site import ConfigError
from dcpue.core.figures import Figure
from dcpue.fleet.cfe import CfeResult, match_hourly
from dcpue.fleet.config import Fleet, FleetSite
from dcpue.fleet.profiles import load_profile, on_hours
from dcpue.fleet.query import SiteSums, hourly, period_sums
from dcpue.fleet.terms import FIELDS, HOUR_MS, TERMS, field_name, hour_floor
from dcpue.metrics.balance import PV_INSIDE_FORMULA, PV_LEDGER_FORMULA, EnergyBalance
from dcpue.metrics.provenance import LOOKBACK_MS, BusSteps, ledger, window_origin

#: Terms the report reads (period sums), with their coverage fields.
ENERGY_TERMS = ("it", "facility", "grid_import", "grid_export", "pv_generation",
                "battery_charge", "battery_discharge", "outside_boundary", "reused_heat", "water")
#: Hourly fields 24/7 matching and hourly factors need.
HOURLY_FIELDS = ("facility_kwh", "grid_import_kwh", "pv_generation_kwh")
#: Hourly site-bus fields of the battery provenance ledger (from 48 h before the period).
BUS_FIELDS = ("grid_import_kwh", "grid_export_kwh", "pv_generation_kwh", "battery_charge_kwh",
              "battery_discharge_kwh", "outside_boundary_kwh")

FLEET_ROWS: dict[str, tuple[str, int]] = {
    "fleet_pue": ("Fleet PUE (sites in operation >= {months} months)", 3),
    **{k: ROWS[k] for k in (
        "electricity", "grid_electricity", "renewable_electricity", "purchased_green",
        "onsite_pv", "renewable_share", "avoided_renewables", "avoided_purchased_green",
        "avoided_onsite_pv")},
    "scope2_location": ("Scope 2 location-based (GHG Protocol, grid import)", 1),
    "scope2_market": ("Scope 2 market-based (GHG Protocol)", 1),
    "scope2_location_identity": ("Scope 2 location-based (all electricity, identity method)", 1),
    "scope2_market_identity": ("Scope 2 market-based (identity: location - avoided)", 1),
    "cfe_hourly_score": ("24/7 CFE score (hourly matching)", 1),
    "cfe_annual_share": ("Clean share with annual matching (same supply)", 1),
    "cfe_unmatched_emissions": ("Emissions of unmatched hours", 1),
}
SITE_COLUMNS = ("it", "facility", "pue", "grid_inside", "pv_inside")


@dataclass(frozen=True)
class SiteRow:
    """One site of the table: status, whether it is in fleet PUE and why not, its figures."""

    site: FleetSite
    months: int
    source: str  # metered | declared | none
    included: bool
    status: str
    hours: int
    figures: dict[str, Figure]


@dataclass(frozen=True)
class FleetReport:
    """The computed report; :meth:`render` prints it as Markdown, CSV or JSON."""

    fleet: Fleet
    start: date
    end: date
    sites: tuple[SiteRow, ...]
    figures: dict[str, Figure]
    residual_mix: dict[str, str]
    warnings: tuple[str, ...] = ()
    cfe_regions: dict[str, CfeResult] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return period_label(self.start, self.end)

    def rows(self) -> list[tuple[str, str, str, float | None, int]]:
        """(key, label, unit, value, decimals) of the fleet figures, in table order."""
        out = []
        for key, (label, decimals) in FLEET_ROWS.items():
            if key in self.figures:
                fig = self.figures[key]
                out.append((key, label.format(months=self.fleet.inclusion.min_months), fig.unit,
                            fig.value, decimals))
        return out

    def to_markdown(self, explain: bool = False) -> str:
        f = self.fleet
        lines = [f"# Fleet report: {f.name or f.id}, {self.label}", "",
                 f"Period {self.start}..{self.end} (end exclusive, {f.timezone}); fleet PUE "
                 f"over sites in operation >= {f.inclusion.min_months} months at period end.",
                 "", "## Sites", "",
                 "| site | region | commissioned | months | source | hours | coverage | "
                 "IT MWh | facility MWh | PUE | grid inside MWh | PV inside MWh | "
                 "fleet PUE |", "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for row in self.sites:
            cov = row.figures.get("facility")
            cells = [_fmt(row.figures.get(k), 3 if k == "pue" else 1) for k in SITE_COLUMNS]
            lines.append(
                f"| {row.site.id} | {row.site.region} | {row.site.commissioned} | {row.months} | "
                f"{row.source} | {row.hours} | "
                f"{'' if cov is None or cov.coverage is None else f'{cov.coverage:.3f}'} | "
                f"{' | '.join(cells)} | {row.status} |"
            )
        lines += ["", "## Fleet figures", "", "| Indicator | Unit | Value |", "|---|---|---:|"]
        for _, label, unit, value, decimals in self.rows():
            shown = "insufficient data" if value is None else f"{value:,.{decimals}f}"
            lines.append(f"| {label} | {unit} | {shown} |")
        lines += ["", "## Scope 2 side by side", "",
                  "| method | location-based tCO2e | market-based tCO2e | rest of the grid "
                  "electricity at |", "|---|---:|---:|---|"]
        residual = "; ".join(f"{r}: {s}" for r, s in self.residual_mix.items())
        for name, loc, mkt, note in (
            ("GHG Protocol Scope 2 Guidance", "scope2_location", "scope2_market", residual),
            ("identity (location - avoided)", "scope2_location_identity",
             "scope2_market_identity", "grid factor (avoided = MWh x grid factor)"),
        ):
            lines.append(f"| {name} | {_fmt(self.figures.get(loc), 1)} | "
                         f"{_fmt(self.figures.get(mkt), 1)} | {note} |")
        if self.cfe_regions:
            lines += ["", "## 24/7 carbon-free energy by region", "",
                      "| region | load MWh | clean supply MWh | matched MWh | hourly CFE % | "
                      "annual matching % | unmatched tCO2 |", "|---|---:|---:|---:|---:|---:|---:|"]
            for region, c in self.cfe_regions.items():
                lines.append(
                    f"| {region} | {c.load_mwh:,.1f} | {c.clean_mwh:,.1f} | {c.matched_mwh:,.1f} "
                    f"| {_pct(c.hourly_score_pct)} | {_pct(c.annual_share_pct)} | "
                    f"{c.unmatched_tco2:,.1f} |")
        if self.warnings:
            lines += ["", "Warnings:", *(f"- {w}" for w in self.warnings)]
        if explain:
            lines += ["", "## Audit trail", ""]
            for key in FLEET_ROWS:
                if key in self.figures:
                    lines += _tree_lines(self.figures[key], 0)
        return "\n".join(lines) + "\n"

    def to_csv(self, explain: bool = False) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        extra = ["formula", "factor_t_per_mwh", "factor_source"] if explain else []
        writer.writerow(["key", "indicator", "unit", "value", *extra])
        for key, label, unit, value, decimals in self.rows():
            cells = ["" if value is None else f"{value:.{decimals}f}"]
            if explain:
                fig = self.figures[key]
                cells += [fig.formula, "" if fig.factor is None else fig.factor,
                          fig.factor_source or ""]
            writer.writerow([key, label, unit, *cells])
        for row in self.sites:
            writer.writerow([f"site:{row.site.id}:status", "status", "", row.status,
                             *([""] * len(extra))])
            for k in SITE_COLUMNS:
                fig = row.figures.get(k)
                value = "" if fig is None or fig.value is None else f"{fig.value:.6f}"
                writer.writerow([f"site:{row.site.id}:{k}", k, "" if fig is None else fig.unit,
                                 value, *([fig.formula if fig else "", "", ""] if explain else [])])
        return out.getvalue()

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "fleet": self.fleet.id, "from": self.start.isoformat(), "to": self.end.isoformat(),
            "inclusion": {"min_months": self.fleet.inclusion.min_months,
                          "min_coverage": self.fleet.inclusion.min_coverage},
            "sites": [
                {"site": r.site.id, "region": r.site.region,
                 "commissioned": r.site.commissioned.isoformat(), "months": r.months,
                 "source": r.source, "in_fleet_pue": r.included, "status": r.status,
                 "hours": r.hours,
                 "values": {k: f.value for k, f in r.figures.items()},
                 "audit": {k: f.explain() for k, f in r.figures.items()}}
                for r in self.sites
            ],
            "rows": [{"key": k, "indicator": lab, "unit": u, "value": v}
                     for k, lab, u, v, _ in self.rows()],
            "residual_mix": self.residual_mix,
            "cfe": {r: {**dataclasses.asdict(c), "hourly_score_pct": c.hourly_score_pct,
                        "annual_share_pct": c.annual_share_pct}
                    for r, c in self.cfe_regions.items()},
            "warnings": list(self.warnings),
            "audit": {k: f.explain() for k, f in self.figures.items()},
        }
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    def render(self, fmt: str, explain: bool = False) -> str:
        if fmt == "json":
            return self.to_json()
        return self.to_csv(explain) if fmt == "csv" else self.to_markdown(explain)


def _fmt(fig: Figure | None, decimals: int) -> str:
    if fig is None:
        return "–"
    return "insufficient data" if fig.value is None else f"{fig.value:,.{decimals}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def months_in_operation(commissioned: date, at: date) -> int:
    """Whole months from ``commissioned`` to ``at`` (0 if not yet commissioned)."""
    months = (at.year - commissioned.year) * 12 + at.month - commissioned.month
    if at.day < commissioned.day:
        months -= 1
    return max(months, 0)


def _metered_figures(
    site: FleetSite, sums: SiteSums, series: str, start_ms: int, end_ms: int, min_coverage: float,
    operating_from_ms: int,
) -> dict[str, Figure]:
    """Period sums as MWh figures; coverage over the hours the site was in operation."""
    n_hours = (end_ms - max(start_ms, operating_from_ms)) // HOUR_MS
    out: dict[str, Figure] = {}
    for term in ENERGY_TERMS:
        fname = field_name(term)
        unit = TERMS[term][2]
        coverage = sums.sums.get(f"{term}_coverage", 0.0) / n_hours
        raw = sums.sums.get(fname, 0.0)
        short = coverage < min_coverage
        out[term] = Figure(
            f"{site.id}:{term}", None if short else raw / (1.0 if unit == "m3" else 1000.0),
            "m3" if unit == "m3" else "MWh",
            formula=f"sum over {sums.hours} published hours (of {n_hours} in operation) of {series}_{fname}"
            + ("" if unit == "m3" else " [kWh] / 1000"),
            start_ms=start_ms, end_ms=end_ms, coverage=coverage,
            note=f"coverage {coverage:.3f} below the threshold {min_coverage:.3f}" if short else "",
            extra={"site": site.id, "hours_published": sums.hours, "hours_in_operation": n_hours},
        )
    return out


def _inside_figures(
    site: FleetSite, figures: dict[str, Figure], start_ms: int, end_ms: int,
    bus: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Figure]:
    """PV consumed inside the boundary and grid electricity used inside it over the period,
    by the metrics balance's own definitions (:class:`dcpue.metrics.balance.EnergyBalance`
    ``pv_inside_kwh`` / ``grid_inside_kwh``) applied to the period sums; for a site with a
    battery and its hourly ``bus`` fields (from :data:`LOOKBACK_MS` before the period) by the
    battery provenance ledger, as the site's own report (at the default battery efficiency)."""
    keys = ("grid_import", "grid_export", "pv_generation", "facility", "outside_boundary",
            "battery_charge")
    parts = tuple(figures[k] for k in keys)
    covs = [p.coverage for p in parts if p.coverage is not None]
    window = {"start_ms": start_ms, "end_ms": end_ms, "coverage": min(covs, default=None)}
    if any(p.value is None for p in parts):
        return {k: Figure(f"{site.id}:{k}", None, "MWh", **window, inputs=parts)
                for k in ("pv_inside", "grid_inside")}
    v = {k: (figures[k].value or 0.0) * 1000.0 for k in keys}
    balance = EnergyBalance(
        start_ms, end_ms, grid_import_kwh=v["grid_import"], grid_export_kwh=v["grid_export"],
        pv_generation_kwh=v["pv_generation"],
        pv_self_consumed_kwh=max(v["pv_generation"] - v["grid_export"], 0.0),
        battery_charge_kwh=v["battery_charge"],
        battery_discharge_kwh=(figures["battery_discharge"].value or 0.0) * 1000.0,
        facility_kwh=v["facility"], it_kwh=(figures["it"].value or 0.0) * 1000.0,
        cooling_kwh=0.0, power_loss_kwh=0.0, lighting_kwh=0.0, other_kwh=0.0,
        reused_heat_kwh=0.0, water_m3=0.0, coverage=window["coverage"] or 0.0,
        outside_boundary_kwh=v["outside_boundary"],
    )
    if bus is not None and (bus["battery_charge_kwh"].any() or bus["battery_discharge_kwh"].any()):
        t0 = start_ms - LOOKBACK_MS + HOUR_MS * np.arange(len(bus["grid_import_kwh"]),
                                                          dtype=np.int64)
        steps = BusSteps(t0, t0 + HOUR_MS, *(bus[f] for f in BUS_FIELDS),
                         factor=np.zeros(len(t0)), found=np.ones(len(t0), bool))
        origin = window_origin(ledger(steps, CalculatorSettings().battery_efficiency),
                               start_ms, end_ms).scaled(balance.facility_kwh)
        balance = replace(balance, pv_inside_kwh=origin.pv_inside_kwh,
                          pv_stored_kwh=origin.pv_stored_kwh)
    assert balance.pv_inside_kwh is not None
    pv_inside = Figure(f"{site.id}:pv_inside", balance.pv_inside_kwh / 1000.0, "MWh",
                       formula=PV_INSIDE_FORMULA if balance.pv_stored_kwh is None
                       else PV_LEDGER_FORMULA, **window, inputs=parts)
    grid_inside = Figure(f"{site.id}:grid_inside", balance.grid_inside_kwh / 1000.0, "MWh",
                         formula="min(grid_import + battery_discharge, facility - pv_inside)",
                         **window, inputs=(figures["grid_import"], figures["facility"],
                                           pv_inside))
    return {"pv_inside": pv_inside, "grid_inside": grid_inside}


def _declared_figures(site: FleetSite, start_ms: int, end_ms: int) -> dict[str, Figure]:
    d = site.declared
    assert d is not None
    note = f"declared: {d.source}"
    values = {"it": d.it_mwh, "facility": d.facility_mwh, "grid_inside": d.grid_import_mwh,
              "pv_inside": d.pv_self_consumed_mwh}
    return {k: Figure(f"{site.id}:{k}", v, "MWh", formula="declared input", start_ms=start_ms,
                      end_ms=end_ms, note=note, extra={"site": site.id})
            for k, v in values.items()}


def _ratio(name: str, num: Figure, den: Figure, formula: str) -> Figure:
    value = None
    if num.value is not None and den.value:
        value = num.value / den.value
    covs = [c for c in (num.coverage, den.coverage) if c is not None]
    return Figure(name, value, "1", formula=formula, start_ms=num.start_ms, end_ms=num.end_ms,
                  coverage=min(covs) if covs else None, inputs=(num, den))


def _sum(name: str, unit: str, parts: Sequence[Figure], formula: str, window: dict) -> Figure:
    values = [p.value for p in parts]
    value = None if None in values else float(sum(v for v in values if v is not None))
    return Figure(name, value, unit, formula=formula, inputs=tuple(parts), **window,
                  extra={"parts": len(parts)})


def site_rows(
    fleet: Fleet, start: date, end: date, sums: Mapping[str, SiteSums],
    bus: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> list[SiteRow]:
    """Every site of the fleet with its figures and inclusion status (``bus``: field -> site
    -> hourly kWh from :data:`LOOKBACK_MS` before the period, for battery provenance)."""
    zone = fleet.zone
    start_ms, end_ms = date_ms(start, zone), date_ms(end, zone)
    rows = []
    for site in fleet.sites:
        months = months_in_operation(site.commissioned, end)
        if site.commissioned >= end:
            rows.append(SiteRow(site, 0, "none", False, "not in operation in the period", 0, {}))
            continue
        if site.declared is not None:
            d = site.declared
            if (d.start, d.end) != (start, end):
                rows.append(SiteRow(site, months, "declared", False,
                                    f"EXCLUDED: declared figures are for {d.start}..{d.end}",
                                    0, {}))
                continue
            figures, source, hours = _declared_figures(site, start_ms, end_ms), "declared", 0
        else:
            got = sums.get(site.id, SiteSums(site.id, {}, 0))
            figures = _metered_figures(site, got, fleet.remote.measurement, start_ms, end_ms,
                                       fleet.inclusion.min_coverage,
                                       hour_floor(date_ms(site.commissioned, zone)))
            figures.update(_inside_figures(
                site, figures, start_ms, end_ms,
                {f: bus[f][site.id] for f in BUS_FIELDS}
                if bus is not None and site.id in bus[BUS_FIELDS[0]] else None))
            source, hours = "metered", got.hours
        figures["pue"] = _ratio(f"{site.id}:pue", figures["facility"], figures["it"],
                                "facility / it")
        if months < fleet.inclusion.min_months:
            included = False
            status = (f"EXCLUDED: in operation {months} months (< "
                      f"{fleet.inclusion.min_months}) at period end")
        elif figures["pue"].value is None:
            included, status = False, "EXCLUDED: insufficient data"
        else:
            included, status = True, "included"
        rows.append(SiteRow(site, months, source, included, status, hours, figures))
    return rows


def _region_energy(
    label: str, rows: Sequence[SiteRow], window: dict, hourly_basis: tuple | None
) -> PeriodEnergy:
    def part(key: str) -> list[Figure]:
        return [r.figures[key] for r in rows]

    electricity = _sum("electricity", "MWh", part("facility"),
                       "sum of the sites' facility energy", window)
    return PeriodEnergy(
        label=label, start_ms=window["start_ms"], end_ms=window["end_ms"],
        total_energy=electricity, electricity=electricity,
        grid_electricity=_sum("grid_electricity", "MWh", part("grid_inside"),
                              "sum of the sites' grid electricity used inside the boundary",
                              window),
        onsite_renewable=_sum("onsite_renewable", "MWh", part("pv_inside"),
                              "sum of the sites' PV consumed inside the boundary", window),
        pue=_ratio("pue", electricity, _sum("it", "MWh", part("it"), "sum of IT", window),
                   "facility / it"),
        hourly_basis=hourly_basis,
    )


def compute(
    fleet: Fleet, start: date, end: date, sums: Mapping[str, SiteSums],
    hourly_terms: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    hourly_factors: Mapping[str, HourlyFactors] | None = None,
    deliveries: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    bus: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> FleetReport:
    """The report from the sites' period sums (and hourly terms for CFE and hourly factors).

    ``hourly_terms``: field -> site -> kWh per hour of the period; ``hourly_factors``: region ->
    factors; ``deliveries``: instrument name -> (hour starts UTC ms, MWh).
    """
    zone = fleet.zone
    start_ms, end_ms = date_ms(start, zone), date_ms(end, zone)
    window = {"start_ms": start_ms, "end_ms": end_ms}
    n_hours = (end_ms - start_ms) // HOUR_MS
    hour_ms = start_ms + HOUR_MS * np.arange(n_hours, dtype=np.int64)
    rows = site_rows(fleet, start, end, sums, bus)
    warnings: list[str] = []
    figures: dict[str, Figure] = {}

    inc = [r for r in rows if r.included]
    pue_inputs = (
        _sum("facility_included", "MWh", [r.figures["facility"] for r in inc],
             "sum of facility energy of the included sites", window),
        _sum("it_included", "MWh", [r.figures["it"] for r in inc],
             "sum of IT energy of the included sites", window),
    )
    fleet_pue = _ratio("fleet_pue", *pue_inputs,
                       "sum(facility) / sum(IT) over included sites (energy-weighted)")
    figures["fleet_pue"] = dataclasses.replace(fleet_pue, extra={
        "included": [r.site.id for r in inc],
        "excluded": {r.site.id: r.status for r in rows if not r.included},
    })

    active = [r for r in rows if r.figures]
    by_region = {reg.id: [r for r in active if r.site.region == reg.id] for reg in fleet.regions}
    accounts: dict[str, dict[str, dict[str, Figure]]] = {}
    residual_mix: dict[str, str] = {}
    cfe_regions: dict[str, CfeResult] = {}
    for region in fleet.regions:
        members = by_region[region.id]
        if not members:
            continue
        instruments = [i for i in fleet.instruments if i.region == region.id]
        grid = GridFactor(emission_factor_t_per_mwh=region.emission_factor_t_per_mwh,
                          source=region.source)
        factors = (hourly_factors or {}).get(region.id)
        metered = [r for r in members if r.source == "metered"]
        for method in (Scope2Method.GHG_PROTOCOL, Scope2Method.LOCATION_MINUS_AVOIDED):
            basis = None
            if factors is not None and hourly_terms is not None:
                if len(metered) != len(members):
                    warnings.append(f"region {region.id}: declared sites have no hourly energy; "
                                    "flat factor used")
                else:
                    fld = ("grid_import_kwh" if method is Scope2Method.GHG_PROTOCOL
                           else "facility_kwh")
                    kwh = sum(hourly_terms[fld][r.site.id] for r in metered)
                    basis = (hour_ms, np.asarray(kwh) / 1000.0)
            settings = CarbonSettings(
                method=method, residual_mix_t_per_mwh=region.residual_mix_t_per_mwh,
                residual_mix_source=region.residual_mix_source,
                avoided_factor_t_per_mwh=fleet.carbon.avoided_factor_t_per_mwh,
                avoided_factor_source=fleet.carbon.avoided_factor_source,
                max_vintage_gap_years=fleet.carbon.max_vintage_gap_years,
                instruments=instruments,
            )
            acc = account(_region_energy(region.id, members, window, basis), grid, settings,
                          zone, (), factors if basis is not None else None)
            accounts.setdefault(region.id, {})[method.value] = acc.figures
            warnings += [f"region {region.id}: {w}" for w in acc.warnings
                         if method is Scope2Method.GHG_PROTOCOL]
        market = accounts[region.id]["ghg_protocol"]["scope2_market"]
        rest = next((i for i in market.inputs if i.name == "scope2_market_residual"), None)
        if rest is not None:
            residual_mix[region.id] = f"{rest.factor:g} tCO2/MWh ({rest.factor_source})"
        if hourly_terms is not None and len(metered) != len(members):
            warnings.append(f"region {region.id}: declared sites have no hourly energy; the "
                            "region is not in 24/7 matching")
        elif hourly_terms is not None:
            load = sum(hourly_terms["facility_kwh"][r.site.id] for r in metered) / 1000.0
            clean = sum(hourly_terms["pv_generation_kwh"][r.site.id] for r in metered) / 1000.0
            for inst in instruments:
                if deliveries and inst.name in deliveries:
                    clean = clean + on_hours(*deliveries[inst.name], start_ms, n_hours)
                else:
                    warnings.append(f"instrument {inst.name!r}: no hourly delivery profile, "
                                    "not in 24/7 matching")
            hourly_f: np.ndarray | float = region.emission_factor_t_per_mwh
            if factors is not None:
                idx = np.clip(np.searchsorted(factors.ts_ms, hour_ms), 0, len(factors.ts_ms) - 1)
                found = factors.ts_ms[idx] == hour_ms
                hourly_f = np.where(found, factors.t_per_mwh[idx],
                                    region.emission_factor_t_per_mwh)
            cfe_regions[region.id] = match_hourly(np.broadcast_to(load, n_hours),
                                                  np.broadcast_to(clean, n_hours), hourly_f)

    def fleet_sum(key: str, method: str, name: str | None = None) -> Figure:
        parts = [dataclasses.replace(acc[method][key], name=f"{region}:{key}")
                 for region, acc in accounts.items()]
        unit = parts[0].unit if parts else "MWh"
        return _sum(name or key, unit, parts, f"sum over regions of {key}", window)

    if accounts:
        for key in ("electricity", "grid_electricity", "renewable_electricity",
                    "purchased_green", "onsite_pv", "avoided_renewables",
                    "avoided_purchased_green", "avoided_onsite_pv", "scope2_location",
                    "scope2_market"):
            figures[key] = fleet_sum(key, "ghg_protocol")
        figures["scope2_location_identity"] = fleet_sum(
            "scope2_location", "location_minus_avoided", "scope2_location_identity")
        figures["scope2_market_identity"] = fleet_sum(
            "scope2_market", "location_minus_avoided", "scope2_market_identity")
        ren, elec = figures["renewable_electricity"], figures["electricity"]
        share = _ratio("renewable_share", ren, elec, "renewable_electricity / electricity x 100")
        figures["renewable_share"] = dataclasses.replace(
            share, unit="%", value=None if share.value is None else share.value * 100.0)
    if cfe_regions:
        total = sum(cfe_regions.values(), CfeResult(0.0, 0.0, 0.0, 0.0, 0))
        detail = {r: dataclasses.asdict(c) for r, c in cfe_regions.items()}
        figures["cfe_hourly_score"] = Figure(
            "cfe_hourly_score", total.hourly_score_pct, "%",
            formula="sum over regions and hours of min(load, clean supply) / sum(load) x 100",
            **window, extra={"regions": detail, "hours": n_hours})
        figures["cfe_annual_share"] = Figure(
            "cfe_annual_share", total.annual_share_pct, "%",
            formula="min(sum clean supply, sum load) / sum(load) x 100 (same supply, annual)",
            **window, extra={"regions": detail})
        figures["cfe_unmatched_emissions"] = Figure(
            "cfe_unmatched_emissions", total.unmatched_tco2, "tCO2",
            formula="sum over hours of (load - matched) [MWh] x hourly factor [tCO2/MWh]",
            **window, extra={"regions": detail})
    return FleetReport(fleet, start, end, tuple(rows), figures, residual_mix,
                       tuple(dict.fromkeys(warnings)), cfe_regions)


def fleet_report(fleet: Fleet, start: date, end: date, hourly_matching: bool = True) -> FleetReport:
    """Query the remote store and compute the report (``hourly_matching`` False skips the
    hourly export, i.e. 24/7 CFE and hourly factors; the hourly site-bus terms of sites with
    a battery are always read, for the battery provenance ledger)."""
    zone = fleet.zone
    start_ms, end_ms = date_ms(start, zone), date_ms(end, zone)
    if start_ms % HOUR_MS or end_ms % HOUR_MS:
        raise ConfigError(f"fleet {fleet.id}: time zone {fleet.timezone} does not start days on "
                          "a whole UTC hour; the published terms are UTC hours")
    metered = [s.id for s in fleet.sites if s.declared is None and s.commissioned < end]
    fields = [field_name(t) for t in ENERGY_TERMS] + [f"{t}_coverage" for t in ENERGY_TERMS]
    assert set(fields) <= set(FIELDS)
    sums = period_sums(fleet.remote, metered, fields, start_ms, end_ms) if metered else {}
    hourly_terms = None
    if hourly_matching and metered:
        hourly_terms = hourly(fleet.remote, metered, HOURLY_FIELDS, start_ms, end_ms)
    batteries = [s for s in metered if s in sums and any(
        sums[s].sums.get(f, 0.0) for f in ("battery_charge_kwh", "battery_discharge_kwh"))]
    bus = (hourly(fleet.remote, batteries, BUS_FIELDS, start_ms - LOOKBACK_MS, end_ms)
           if batteries else None)
    factors = {
        r.id: load_hourly_factors(r.hourly_factors_csv, r.hourly_factors_source)
        for r in fleet.regions if r.hourly_factors_csv is not None
    }
    deliveries = {i.name: load_profile(Path(i.delivery_csv))
                  for i in fleet.instruments if i.delivery_csv is not None}
    return compute(fleet, start, end, sums, hourly_terms, factors, deliveries, bus)
