"""ESG key-performance table: energy, renewables, PUE, Scope 2 both ways, avoided emissions.

:func:`site_report` builds it from a metered site's store (one column per window, annual or
monthly); :func:`inventory_report` from a fleet inventory's declared totals. Both run the same
:func:`dcpue.carbon.accounting.account`. :class:`Report` renders Markdown, CSV or JSON; values
are rounded only for display (MWh and tCO2 to 0.1, % to 0.1, PUE to 0.001), the audit trail
keeps full precision.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dcpue.carbon.accounting import FIGURE_KEYS, MEASURE_PREFIX, PeriodAccount, account
from dcpue.carbon.inventory import (
    FleetInventory,
    ghg_protocol_figures,
    inventory_energy,
    mark_basis,
)
from dcpue.carbon.periods import report_windows
from dcpue.carbon.savings import declared_savings, measured_savings
from dcpue.carbon.site import hourly_basis, site_energy, slice_hours
from dcpue.config.carbon import Scope2Method
from dcpue.config.factors import site_hourly_factors
from dcpue.config.site import ConfigError, Site
from dcpue.core.figures import Figure
from dcpue.core.readings import ms_to_datetime
from dcpue.core.store import Store
from dcpue.metrics.balance import DATA_QUALITY_ERROR, BalanceTopology, energy_balance
from dcpue.metrics.provenance import has_battery, stored_origins, window_origin

#: Table label and display decimals of each fixed figure.
ROWS: dict[str, tuple[str, int]] = {
    "total_energy": ("Total energy (all sources)", 1),
    "electricity": ("Electricity used", 1),
    "grid_electricity": ("Electricity purchased from the grid", 1),
    "renewable_electricity": ("Renewable electricity consumed", 1),
    "purchased_green": ("of which purchased green power", 1),
    "onsite_pv": ("of which self-generated (on-site PV)", 1),
    "renewable_share": ("Renewable share of electricity", 1),
    "pue": ("PUE", 3),
    "scope2_location": ("Scope 2 emissions, location-based", 1),
    "scope2_market": ("Scope 2 emissions, market-based", 1),
    "avoided_renewables": ("Avoided emissions: all renewable electricity", 1),
    "avoided_purchased_green": ("Avoided emissions: purchased green power", 1),
    "avoided_onsite_pv": ("Avoided emissions: on-site PV", 1),
    "scope2_location_ghg": ("Scope 2 emissions, location-based (GHG Protocol, grid electricity)", 1),
    "scope2_market_ghg": ("Scope 2 emissions, market-based (GHG Protocol, residual mix)", 1),
}


@dataclass(frozen=True, slots=True)
class Row:
    """One table row: figure key, label, unit and display decimals."""

    key: str
    label: str
    unit: str
    decimals: int


@dataclass(frozen=True)
class Report:
    """The table: one :class:`PeriodAccount` per column."""

    title: str
    subject: str
    method: str
    accounts: tuple[PeriodAccount, ...]

    @property
    def warnings(self) -> list[str]:
        return [f"{a.label}: {w}" for a in self.accounts for w in a.warnings] + (
            self.quality_warnings)

    def rows(self) -> list[Row]:
        """Fixed rows, then one row per efficiency measure seen in any window."""
        keys = list(FIGURE_KEYS)
        keys += list(dict.fromkeys(
            k for a in self.accounts for k in a.figures if k not in FIGURE_KEYS
        ))
        rows = []
        for key in keys:
            unit = next(a.figures[key].unit for a in self.accounts if key in a.figures)
            label, decimals = ROWS.get(key, (f"Avoided emissions: {key[len(MEASURE_PREFIX):]}", 1))
            rows.append(Row(key, label, unit, decimals))
        return rows

    def cell(self, row: Row, acc: PeriodAccount) -> float | None:
        """The displayed (rounded) value, None if missing or insufficient data."""
        fig = acc.figures.get(row.key)
        if fig is None or fig.value is None:
            return None
        return float(f"{fig.value:.{row.decimals}f}")

    def status(self, row: Row, acc: PeriodAccount) -> str | None:
        """Why a cell has no value: "data-quality error" (a figure it rests on is built on
        implausible data) or "insufficient data"; None when it has a value or no figure."""
        fig = acc.figures.get(row.key)
        if fig is None or fig.value is not None:
            return None
        return DATA_QUALITY_ERROR if data_quality_cause(fig) else "insufficient data"

    @property
    def quality_warnings(self) -> list[str]:
        causes = {
            f"{a.label}: data-quality error: {cause}"
            for a in self.accounts for f in a.figures.values()
            if f.value is None and (cause := data_quality_cause(f))
        }
        return sorted(causes)

    def basis(self, row: Row) -> str | None:
        """``declared`` / ``computed`` when the figures say (fleet inventories), else None."""
        return next((a.figures[row.key].extra.get("basis") for a in self.accounts
                     if row.key in a.figures), None)

    def to_markdown(self, explain: bool = False) -> str:
        marked = any(self.basis(r) for r in self.rows())
        head = f"| Indicator | Unit | {' | '.join(a.label for a in self.accounts)} |"
        lines = [f"# {self.title}", "", f"Scope 2 method: {self.method}", "",
                 head + (" Basis |" if marked else ""),
                 "|---|---|" + "---:|" * len(self.accounts) + ("---|" if marked else "")]
        for row in self.rows():
            cells = []
            for acc in self.accounts:
                value = self.cell(row, acc)
                missing = self.status(row, acc) or "–"
                cells.append(missing if value is None else f"{value:,.{row.decimals}f}")
            basis = f" {self.basis(row)} |" if marked else ""
            lines.append(f"| {row.label} | {row.unit} | {' | '.join(cells)} |{basis}")
        lines += [f"\nResidual mix ({a.label}, {k}): {f.extra['residual_mix']}"
                  for a in self.accounts for k, f in a.figures.items() if "residual_mix" in f.extra]
        if self.warnings:
            lines += ["", "Warnings:", *(f"- {w}" for w in self.warnings)]
        if explain:
            for acc in self.accounts:
                lines += ["", f"## Audit trail {acc.label}", ""]
                for row in self.rows():
                    if row.key in acc.figures:
                        lines += _tree_lines(acc.figures[row.key], 0)
        return "\n".join(lines) + "\n"

    def to_csv(self, explain: bool = False) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        extra = ["formula", "factor_t_per_mwh", "factor_source"] if explain else []
        marked = any(self.basis(r) for r in self.rows())
        writer.writerow(["key", "indicator", "unit", *(a.label for a in self.accounts),
                         *(["basis"] if marked else []), *extra])
        for row in self.rows():
            values = [self.cell(row, a) for a in self.accounts]
            cells = ["" if v is None else f"{v:.{row.decimals}f}" for v in values]
            cells += [self.basis(row) or ""] if marked else []
            if explain:
                fig = next(a.figures[row.key] for a in self.accounts if row.key in a.figures)
                cells += [fig.formula, "" if fig.factor is None else fig.factor,
                          fig.factor_source or ""]
            writer.writerow([row.key, row.label, row.unit, *cells])
        return out.getvalue()

    def to_json(self) -> str:
        """The table, warnings and the full audit trail of every figure."""
        data: dict[str, Any] = {
            "title": self.title,
            "subject": self.subject,
            "method": self.method,
            "periods": [
                {"label": a.label, "from": ms_to_datetime(a.start_ms).isoformat(),
                 "to": ms_to_datetime(a.end_ms).isoformat()}
                for a in self.accounts
            ],
            "rows": [
                {"key": r.key, "indicator": r.label, "unit": r.unit,
                 "values": [self.cell(r, a) for a in self.accounts],
                 "status": [self.status(r, a) for a in self.accounts]}
                for r in self.rows()
            ],
            "warnings": self.warnings,
            "audit": {a.label: {k: f.explain() for k, f in a.figures.items()}
                      for a in self.accounts},
        }
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    def render(self, fmt: str, explain: bool = False) -> str:
        if fmt == "json":
            return self.to_json()
        return self.to_csv(explain) if fmt == "csv" else self.to_markdown(explain)


def data_quality_cause(fig: Figure) -> str:
    """The data-quality cause found in ``fig`` or the figures it rests on ('' when none)."""
    if fig.extra.get("status") == DATA_QUALITY_ERROR:
        return str(fig.extra.get("cause", ""))
    return next((c for i in fig.inputs if (c := data_quality_cause(i))), "")


def _tree_lines(fig: Figure, depth: int) -> list[str]:
    value = "insufficient data" if fig.value is None else f"{fig.value:,.6g} {fig.unit}"
    parts = [f"{'  ' * depth}- **{fig.name}** = {value}"]
    if fig.formula:
        parts.append(f"= {fig.formula}")
    if fig.coverage is not None:
        parts.append(f"coverage {fig.coverage:.3f}")
    if fig.meters:
        parts.append(f"meters {', '.join(fig.meters)}")
    if fig.factor is not None:
        parts.append(f"factor {fig.factor:g} {fig.factor_unit or ''} ({fig.factor_source})")
    if fig.note:
        parts.append(f"note: {fig.note}")
    lines = ["; ".join(parts)]
    for child in fig.inputs:
        lines += _tree_lines(child, depth + 1)
    return lines


def site_report(
    site: Site,
    store: Store,
    start: date,
    end: date,
    monthly: bool = False,
    base_dir: Path | None = None,
) -> Report:
    """The ESG table of a metered site over ``[start, end)`` (dates in the site's time zone).

    ``base_dir`` resolves a relative ``carbon.hourly_factors_csv`` (the site file's directory).
    """
    zone = ZoneInfo(site.timezone)
    settings = site.carbon
    windows = report_windows(start, end, zone, monthly)
    hourly = site_hourly_factors(site, base_dir)
    first, last = windows[0].start_ms, windows[-1].end_ms
    origins = None  # the battery's provenance ledger, run once over all windows
    if has_battery(BalanceTopology.from_site(site)):
        origins = stored_origins(site, store, first, last, hourly,
                                 cuts=[w.start_ms for w in windows], anchor_ms=first)
    basis = None  # hourly location basis, unless the ledger's emissions replace it
    if hourly is not None and (origins is None or settings.method is not Scope2Method.GHG_PROTOCOL):
        basis = hourly_basis(site, store, first, last, settings.method)
    accounts = []
    for w in windows:
        balance = energy_balance(site, store, w.start_ms, w.end_ms)
        energy = site_energy(site, balance, w.label,
                             None if basis is None else slice_hours(basis, w),
                             None if origins is None else window_origin(
                                 origins, w.start_ms, w.end_ms), hourly)
        savings = declared_savings(settings.measures, w.start_ms, w.end_ms, zone)
        measured = measured_savings(store, settings.mv_measure, w.start_ms, w.end_ms)
        accounts.append(account(
            energy, site.grid, settings, zone, [*savings, *([measured] if measured else [])],
            hourly,
        ))
    return Report(f"ESG key performance: {site.name or site.id}", site.id,
                  settings.method.value, tuple(accounts))


def inventory_report(
    inv: FleetInventory, start: date | None = None, end: date | None = None,
    monthly: bool = False,
) -> Report:
    """The ESG table of a fleet inventory; its figures are for its whole period only."""
    if monthly:
        raise ConfigError(f"inventory {inv.id}: figures are for the whole period; no --monthly")
    if (start or inv.period.start, end or inv.period.end) != (inv.period.start, inv.period.end):
        raise ConfigError(
            f"inventory {inv.id}: covers {inv.period.start}..{inv.period.end} only "
            "(omit --from/--to or give exactly that period)"
        )
    energy = inventory_energy(inv)
    savings = declared_savings(inv.carbon.measures, energy.start_ms, energy.end_ms, inv.zone)
    acc = account(energy, inv.grid, inv.carbon, inv.zone, savings)
    acc = replace(acc, figures=mark_basis({**acc.figures, **ghg_protocol_figures(inv, energy)}))
    return Report(f"ESG key performance: {inv.name or inv.id}", inv.id,
                  inv.carbon.method.value, (acc,))
