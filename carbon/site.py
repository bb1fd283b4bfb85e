"""A metered site's energies for carbon accounting, from the metrics energy balance (adapter).

Mapping from :class:`dcpue.metrics.balance.EnergyBalance` (kWh) to
:class:`~dcpue.carbon.accounting.PeriodEnergy` (MWh):
- electricity = facility energy (ISO/IEC 30134-2 balance: grid import - export + PV + battery
  discharge - charge - loads outside the boundary);
- grid electricity = grid electricity used inside the boundary, min(grid import + battery
  discharge, facility - PV inside) (purchased electricity, the GHG Protocol Scope 2 basis;
  grid energy feeding loads outside the boundary, e.g. EV chargers, is not the data center's);
- on-site renewable = PV consumed inside the boundary (generation - export, shared in
  proportion with loads outside the boundary and the battery charge,
  :func:`dcpue.metrics.balance.pv_inside`), so the renewable share never exceeds 100 %;
- with a battery, both follow the stored energy's origin hour by hour (the provenance ledger,
  :mod:`dcpue.metrics.provenance`): PV charged and discharged later is on-site PV, grid
  discharged later is grid electricity at the factors of the hours it was charged;
- total energy = electricity: the site model meters no fuels;
- PUE from :func:`dcpue.metrics.indicators.pue`.
A figure whose coverage is below ``calculator.min_coverage`` is "insufficient data" (None).
"""

from __future__ import annotations

import numpy as np
from dcpue.carbon.accounting import PeriodEnergy
from dcpue.carbon.periods import Window
from dcpue.carbon.scope2 import T_PER_MWH
from dcpue.config.carbon import Scope2Method
from dcpue.config.factors import HourlyFactors
from dcpue.config.site import Site
from dcpue.core.figures import Figure
from dcpue.core.store import Store
from dcpue.metrics.balance import EnergyBalance, balance_from_energies, stored_intervals
from dcpue.metrics.energy import MeterEnergy, bucket_amounts
from dcpue.metrics.indicators import origin_source, pue
from dcpue.metrics.provenance import Origin, has_battery, with_origin

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
    origin: Origin | None = None, factors: HourlyFactors | None = None,
) -> PeriodEnergy:
    """The accounting input of one window from the site's energy balance over it.

    With a battery and ``origin`` (the provenance ledger's sums over the window), on-site PV
    and grid electricity follow the stored energy's origin, and with hourly ``factors`` the
    GHG Protocol location-based total is the ledger's: grid used directly x its hour's factor
    + grid discharged from the battery x the factors of the hours it was charged.
    """
    balance = with_origin(balance, origin)
    figures = balance.figures()
    threshold = site.calculator.min_coverage
    electricity = _mwh(figures["facility"], "electricity", threshold)
    total_energy = Figure(
        "total_energy", electricity.value, "MWh",
        formula="electricity (the site model meters no fuels)", start_ms=balance.start_ms,
        end_ms=balance.end_ms, coverage=electricity.coverage, inputs=(electricity,),
    )
    grid = _mwh(figures["grid_inside"], "grid_electricity", threshold)
    location = None
    if (origin is not None and factors is not None and has_battery(balance)
            and site.carbon.method is Scope2Method.GHG_PROTOCOL):
        location, hourly_basis = ledger_location(site, grid, origin, balance.facility_kwh), None
    return PeriodEnergy(
        label=label, start_ms=balance.start_ms, end_ms=balance.end_ms,
        total_energy=total_energy, electricity=electricity, grid_electricity=grid,
        onsite_renewable=_mwh(figures["pv_inside"], "onsite_renewable", threshold),
        pue=pue(balance, threshold), location_based=location, hourly_basis=hourly_basis,
    )


def ledger_location(site: Site, grid: Figure, origin: Origin, facility_kwh: float) -> Figure:
    """Location-based Scope 2 (tCO2e) of the grid electricity used inside, from the
    provenance ledger's emissions scaled to the window balance's facility energy."""
    o = origin.scaled(facility_kwh)
    tonnes = None if grid.value is None else o.grid_kg / 1000.0
    return Figure(
        "scope2_location", tonnes, "tCO2e",
        formula=f"sum over steps of grid used directly [MWh] x the step's factor + grid "
        f"discharged from the battery [MWh] x its charge steps' factors [{T_PER_MWH}] "
        "(GHG Protocol Scope 2 6.2)",
        start_ms=grid.start_ms, end_ms=grid.end_ms, coverage=grid.coverage, inputs=(grid,),
        factor=o.factor if o.factor is not None else site.grid.emission_factor_t_per_mwh,
        factor_unit=T_PER_MWH, factor_source=origin_source(site, origin, True),
        extra={"steps": o.steps, "steps_with_factor": o.steps - o.steps_without_factor},
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


def slice_hours(
    basis: tuple[np.ndarray, np.ndarray], window: Window
) -> tuple[np.ndarray, np.ndarray]:
    """The hours of ``basis`` that start inside ``window``."""
    hours, mwh = basis
    inside = (hours >= window.start_ms) & (hours < window.end_ms)
    return hours[inside], mwh[inside]
