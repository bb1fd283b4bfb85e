"""A metered site's energies for carbon accounting, from the metrics energy balance (adapter).

Mapping from :class:`dcpue.metrics.balance.EnergyBalance` (kWh) to
:class:`~dcpue.carbon.accounting.PeriodEnergy` (MWh):
- electricity = facility energy (ISO/IEC 30134-2 balance: grid import - export + PV + battery
  discharge - charge - loads outside the boundary);
- grid electricity = grid electricity used inside the boundary, min(grid import, facility - PV
  inside) (purchased electricity, the GHG Protocol Scope 2 basis; grid energy feeding loads
  outside the boundary, e.g. EV chargers, is not the data center's);
- on-site renewable = PV consumed inside the boundary (generation - export, shared in
  proportion with loads outside the boundary and the battery charge,
  :func:`dcpue.metrics.balance.pv_inside`), so the renewable share never exceeds 100 %;
- total energy = electricity: the site model meters no fuels;
- PUE from :func:`dcpue.metrics.indicators.pue`.
A figure whose coverage is below ``calculator.min_coverage`` is "insufficient data" (None).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dcpue.carbon.accounting import PeriodEnergy
from dcpue.carbon.factors import load_hourly_factors
from dcpue.carbon.periods import Window
from dcpue.carbon.scope2 import Factor, location_based_hourly
from dcpue.config.carbon import Scope2Method
from dcpue.config.site import Site
from dcpue.core.figures import Figure
from dcpue.core.store import Store
from dcpue.metrics.balance import EnergyBalance, balance_from_energies, stored_intervals
from dcpue.metrics.energy import MeterEnergy, bucket_amounts
from dcpue.metrics.indicators import pue

HOUR_MS = 3_600_000


def _mwh(fig: Figure, name: str, min_coverage: float) -> Figure:
    """A kWh balance figure as MWh; None below the coverage threshold."""
    coverage = fig.coverage if fig.coverage is not None else 1.0
    short = coverage < min_coverage
    note = fig.note if "status" in fig.extra else (
        f"coverage {coverage:.3f} below the threshold {min_coverage:.3f}" if short else "")
    return Figure(
        name, None if short or fig.value is None else fig.value / 1000.0, "MWh",
        formula=f"{fig.name} [kWh] / 1000", start_ms=fig.start_ms, end_ms=fig.end_ms,
        coverage=fig.coverage, inputs=(fig,), note=note, extra=dict(fig.extra),
    )


def site_energy(
    site: Site, balance: EnergyBalance, label: str,
    hourly_basis: tuple[np.ndarray, np.ndarray] | None = None,
) -> PeriodEnergy:
    """The accounting input of one window from the site's energy balance over it."""
    figures = balance.figures()
    threshold = site.calculator.min_coverage
    electricity = _mwh(figures["facility"], "electricity", threshold)
    total_energy = Figure(
        "total_energy", electricity.value, "MWh",
        formula="electricity (the site model meters no fuels)", start_ms=balance.start_ms,
        end_ms=balance.end_ms, coverage=electricity.coverage, inputs=(electricity,),
    )
    return PeriodEnergy(
        label=label, start_ms=balance.start_ms, end_ms=balance.end_ms,
        total_energy=total_energy, electricity=electricity,
        grid_electricity=_mwh(figures["grid_inside"], "grid_electricity", threshold),
        onsite_renewable=_mwh(figures["pv_inside"], "onsite_renewable", threshold),
        pue=pue(balance, threshold), hourly_basis=hourly_basis,
    )


def hourly_basis(
    site: Site, store: Store, start_ms: int, end_ms: int, method: Scope2Method
) -> tuple[np.ndarray, np.ndarray]:
    """Hour starts (UTC ms, from ``start_ms``) and MWh of the location-based basis per hour.

    The basis is the grid electricity used inside the boundary (``ghg_protocol``) or facility
    electricity (``location_minus_avoided``); each hour is one energy balance of the meters'
    readings.
    """
    topology, intervals = stored_intervals(site, store, start_ms, end_ms)
    n = -(-(end_ms - start_ms) // HOUR_MS)
    amounts = {mid: bucket_amounts(iv, start_ms, HOUR_MS, n) for mid, iv in intervals.items()}
    hours = start_ms + HOUR_MS * np.arange(n, dtype=np.int64)
    attr = "grid_inside_kwh" if method is Scope2Method.GHG_PROTOCOL else "facility_kwh"
    kwh = np.array([
        getattr(balance_from_energies(topology, {
            mid: MeterEnergy(mid, float(a[k]), float(m[k]) / HOUR_MS)
            for mid, (a, m) in amounts.items()
        }, int(h), int(h) + HOUR_MS), attr)
        for k, h in enumerate(hours)
    ])
    return hours, kwh / 1000.0


def hourly_grid_factor(
    site: Site, store: Store, start_ms: int, end_ms: int, base_dir: Path | None = None
) -> Factor | None:
    """The energy-weighted mean of the configured hourly factors over the grid electricity
    used inside the boundary in ``[start_ms, end_ms)`` (tCO2/MWh = kgCO2/kWh), for CUE; None
    without ``carbon.hourly_factors_csv``. The hours are whole UTC hours covering the window;
    hours without a factor use the site factor (as the location-based Scope 2 does)."""
    settings = site.carbon
    if settings.hourly_factors_csv is None:
        return None
    path = settings.hourly_factors_csv
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    factors = load_hourly_factors(path, settings.hourly_factors_source)
    first = start_ms // HOUR_MS * HOUR_MS
    last = -(-end_ms // HOUR_MS) * HOUR_MS
    hours, mwh = hourly_basis(site, store, first, last, Scope2Method.GHG_PROTOCOL)
    grid = Factor(site.grid.emission_factor_t_per_mwh, site.grid.source)
    basis = Figure("grid_inside", float(mwh.sum()), "MWh", start_ms=first, end_ms=last)
    fig = location_based_hourly(basis, hours, mwh, factors, grid)
    assert fig.factor is not None and fig.factor_source is not None
    return Factor(fig.factor, fig.factor_source + (f"; {fig.note}" if fig.note else ""))


def slice_hours(
    basis: tuple[np.ndarray, np.ndarray], window: Window
) -> tuple[np.ndarray, np.ndarray]:
    """The hours of ``basis`` that start inside ``window``."""
    hours, mwh = basis
    inside = (hours >= window.start_ms) & (hours < window.end_ms)
    return hours[inside], mwh[inside]
