"""Carbon accounting for one reporting window: energy figures in, ESG figures out (pure).

Input is :class:`PeriodEnergy`, the few energies the accounting needs, each a
:class:`~dcpue.core.figures.Figure` with its own audit trail (from the metrics energy balance of a
site, or declared annual figures of a fleet inventory). Output is an ordered set of figures keyed
as in :data:`FIGURE_KEYS` plus one ``avoided:<measure>`` per efficiency measure.

Definitions (units: MWh, %, tCO2e for Scope 2, tCO2 for avoided emissions):
- renewable electricity = purchased green power (renewable instruments applied in the window)
  + on-site renewable generation consumed on site (PV self-consumption);
- renewable share = renewable electricity / electricity x 100;
- avoided emissions of a source = MWh x avoided factor (the grid factor unless configured),
  for instruments MWh x (avoided factor - instrument factor);
- Scope 2 location- and market-based per :class:`dcpue.config.carbon.Scope2Method`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
from dcpue.carbon.scope2 import (
    T_PER_MWH,
    cap_note,
    emissions,
    instrument_figures,
    location_based_hourly,
    market_based_ghg,
    market_based_location_minus_avoided,
    total,
)
from dcpue.config.carbon import CarbonSettings, GridFactor, Scope2Method
from dcpue.config.factors import Factor, HourlyFactors
from dcpue.config.instruments import allocate, instrument_claims
from dcpue.core.figures import Figure

#: Keys of the fixed figures, in table order (measures follow as ``avoided:<name>``).
FIGURE_KEYS = (
    "total_energy", "electricity", "grid_electricity", "renewable_electricity",
    "purchased_green", "onsite_pv", "renewable_share", "pue", "scope2_location",
    "scope2_market", "avoided_renewables", "avoided_purchased_green", "avoided_onsite_pv",
)
MEASURE_PREFIX = "avoided:"


@dataclass(frozen=True, slots=True)
class PeriodEnergy:
    """The energies of one reporting window that carbon accounting needs.

    ``electricity`` is all electricity consumed (grid plus on-site generation consumed, MWh);
    ``grid_electricity`` the part purchased from the grid (MWh); ``onsite_renewable`` the on-site
    PV consumed on site (MWh); ``pue`` is dimensionless. ``location_based`` (tCO2e) is given only
    when it cannot be derived (a published total whose factors are not published).
    ``hourly_basis`` holds (hour-start UTC ms, MWh) of the location-based basis for hourly factors.
    """

    label: str
    start_ms: int
    end_ms: int
    total_energy: Figure
    electricity: Figure
    grid_electricity: Figure
    onsite_renewable: Figure
    pue: Figure
    location_based: Figure | None = None
    hourly_basis: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True, slots=True)
class PeriodAccount:
    """The accounted figures of one window, keyed in table order, and warnings to show."""

    label: str
    start_ms: int
    end_ms: int
    figures: dict[str, Figure]
    warnings: tuple[str, ...]


def _renamed(fig: Figure, name: str) -> Figure:
    if fig.name == name:
        return fig
    return Figure(name, fig.value, fig.unit, formula=fig.name, start_ms=fig.start_ms,
                  end_ms=fig.end_ms, coverage=fig.coverage, inputs=(fig,))


def location_basis(energy: PeriodEnergy, method: Scope2Method) -> Figure:
    """The electricity the location-based total covers under ``method`` (MWh)."""
    return energy.grid_electricity if method is Scope2Method.GHG_PROTOCOL else energy.electricity


def _location(
    energy: PeriodEnergy, method: Scope2Method, grid: Factor, hourly: HourlyFactors | None
) -> Figure:
    basis = location_basis(energy, method)
    if energy.location_based is not None:
        return _renamed(energy.location_based, "scope2_location")
    if hourly is not None and energy.hourly_basis is not None:
        hours, mwh = energy.hourly_basis
        return location_based_hourly(basis, hours, mwh, hourly, grid)
    return emissions(
        "scope2_location", basis, grid,
        formula=f"{basis.name} [MWh] x grid factor [{T_PER_MWH}] (GHG Protocol Scope 2 6.2)",
    )


def _residual(settings: CarbonSettings, location: Figure, basis: Figure, grid: Factor) -> Factor:
    """Configured residual mix, else the location factor (said in the source)."""
    if settings.residual_mix_t_per_mwh is not None:
        return Factor(settings.residual_mix_t_per_mwh, settings.residual_mix_source)
    if location.factor == grid.value and location.factor_source == grid.source:
        return Factor(grid.value, f"residual mix not configured: location factor used "
                                  f"({grid.source})")
    if location.value is None or not basis.value:
        return Factor(grid.value, f"residual mix not configured: grid factor used ({grid.source})")
    return Factor(
        location.value / basis.value,
        "residual mix not configured: the window's average location factor used "
        f"(scope2_location / {basis.name})",
    )


def account(
    energy: PeriodEnergy,
    grid: GridFactor,
    settings: CarbonSettings,
    zone: ZoneInfo,
    savings: Sequence[Figure] = (),
    hourly: HourlyFactors | None = None,
) -> PeriodAccount:
    """Compute the ESG carbon figures of one window.

    ``savings`` are MWh figures of efficiency measures (declared and measured) in the window.
    """
    grid_factor = Factor(grid.emission_factor_t_per_mwh, grid.source)
    avoided_factor = (
        Factor(settings.avoided_factor_t_per_mwh, settings.avoided_factor_source)
        if settings.avoided_factor_t_per_mwh is not None
        else Factor(grid.emission_factor_t_per_mwh, f"site grid factor: {grid.source}")
    )
    warnings: list[str] = []
    location = _location(energy, settings.method, grid_factor, hourly)
    if location.note and energy.location_based is None:
        warnings.append(location.note)  # hours without an hourly factor

    claims = instrument_claims(
        settings.instruments, energy.start_ms, energy.end_ms, zone, settings.max_vintage_gap_years
    )
    allocation = allocate(claims, energy.grid_electricity.value or 0.0)
    warnings += [n for n in (cap_note(allocation),) if n]
    warnings += [f"instrument {c.name!r} not applied: {'; '.join(c.reasons)}"
                 for c in allocation.excluded]
    window = {"start_ms": energy.start_ms, "end_ms": energy.end_ms}
    instruments = instrument_figures(allocation, energy.grid_electricity)
    renewable_applied = [(c, mwh) for c, mwh in allocation.applied if c.renewable]
    purchased_green = Figure(
        "purchased_green", allocation.renewable_mwh, "MWh",
        formula="sum of renewable instrument MWh applied (quality criteria met, capped at "
        "grid electricity)", **window, inputs=instruments, note=cap_note(allocation),
    )
    onsite = _renamed(energy.onsite_renewable, "onsite_pv")
    renewable = total("renewable_electricity", "MWh", [purchased_green, onsite])
    share = Figure(
        "renewable_share",
        None if renewable.value is None or not energy.electricity.value
        else renewable.value / energy.electricity.value * 100.0,
        "%", formula="renewable_electricity / electricity x 100", **window,
        inputs=(renewable, energy.electricity),
    )
    avoided_green = Figure(
        "avoided_purchased_green",
        sum(mwh * (avoided_factor.value - c.factor.value) for c, mwh in renewable_applied),
        "tCO2", formula="sum(instrument MWh x (avoided factor - instrument factor))", **window,
        inputs=(purchased_green,), factor=avoided_factor.value, factor_unit=T_PER_MWH,
        factor_source=avoided_factor.source,
    )
    avoided_pv = emissions("avoided_onsite_pv", onsite, avoided_factor, unit="tCO2")
    avoided_renewables = total("avoided_renewables", "tCO2", [avoided_green, avoided_pv])

    if settings.method is Scope2Method.GHG_PROTOCOL:
        basis = location_basis(energy, settings.method)
        market = market_based_ghg(
            energy.grid_electricity, allocation,
            _residual(settings, location, basis, grid_factor),
        )
    else:
        market = market_based_location_minus_avoided(location, avoided_renewables)
        if any(not c.renewable for c, _ in allocation.applied):
            warnings.append("location_minus_avoided ignores non-renewable instruments")

    figures = {
        "total_energy": _renamed(energy.total_energy, "total_energy"),
        "electricity": _renamed(energy.electricity, "electricity"),
        "grid_electricity": _renamed(energy.grid_electricity, "grid_electricity"),
        "renewable_electricity": renewable,
        "purchased_green": purchased_green,
        "onsite_pv": onsite,
        "renewable_share": share,
        "pue": _renamed(energy.pue, "pue"),
        "scope2_location": location,
        "scope2_market": market,
        "avoided_renewables": avoided_renewables,
        "avoided_purchased_green": avoided_green,
        "avoided_onsite_pv": avoided_pv,
    }
    for saving in savings:
        key = MEASURE_PREFIX + saving.name
        figures[key] = emissions(key, saving, avoided_factor, unit="tCO2")
    return PeriodAccount(energy.label, energy.start_ms, energy.end_ms, figures, tuple(warnings))
