"""Fleet inventory: a reporting period's published or declared totals instead of meters.

An ESG report covers a fleet of data centers whose per-site meters are not available to the
reader; what is published are annual totals. A ``FleetInventory`` TOML file holds them as
inputs (each with its source) plus the same ``[grid]`` and ``[carbon]`` settings as a site, and
:func:`inventory_energy` turns it into the :class:`~dcpue.carbon.accounting.PeriodEnergy` the
accounting consumes, so a fleet and a metered site go through the same computation.

``scope2_location`` is optional: when absent, location-based Scope 2 is derived as the basis
electricity x the grid factor. Give it when the published total was computed with factors
that are not published (e.g. regional grid factors per site); the audit trail then shows the
factor it implies and the difference from the single-factor derivation.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

from dcpue.carbon.accounting import PeriodEnergy, account, location_basis
from dcpue.carbon.periods import date_ms, period_label
from dcpue.config.base import Section
from dcpue.config.carbon import CarbonSettings, GridFactor, Period, Scope2Method
from dcpue.config.site import known_zone, read_toml, validated
from dcpue.core.figures import Figure
from pydantic import Field, field_validator, model_validator


class Declared(Section):
    """A published or declared value and where it comes from."""

    value: float = Field(ge=0)
    source: str = Field(min_length=1)


class InventoryEnergy(Section):
    """Energy totals of the period, MWh.

    ``electricity_mwh`` is all electricity used (grid plus on-site generation consumed);
    ``onsite_renewable_mwh`` the self-generated renewable electricity consumed (on-site PV);
    ``grid_electricity_mwh`` defaults to electricity - on-site renewable.
    """

    total_energy_mwh: float = Field(ge=0)
    electricity_mwh: float = Field(gt=0)
    onsite_renewable_mwh: float = Field(default=0.0, ge=0)
    grid_electricity_mwh: float | None = Field(default=None, ge=0)
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> InventoryEnergy:
        if self.onsite_renewable_mwh > self.electricity_mwh:
            raise ValueError("onsite_renewable_mwh exceeds electricity_mwh")
        if self.grid_electricity_mwh is not None and self.grid_electricity_mwh > (
            self.electricity_mwh
        ):
            raise ValueError("grid_electricity_mwh exceeds electricity_mwh")
        if self.electricity_mwh > self.total_energy_mwh:
            raise ValueError("electricity_mwh exceeds total_energy_mwh")
        return self


class FleetInventory(Section):
    """A fleet's reporting period with its totals as inputs (see module docstring)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    name: str = ""
    timezone: str = "UTC"
    period: Period
    grid: GridFactor
    energy: InventoryEnergy
    pue: Declared | None = None
    scope2_location: Declared | None = None
    carbon: CarbonSettings = Field(default_factory=CarbonSettings)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)

    @model_validator(mode="after")
    def _no_hourly(self) -> FleetInventory:
        if self.carbon.hourly_factors_csv is not None:
            raise ValueError("carbon.hourly_factors_csv needs metered hourly energy, not totals")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load_inventory(path: str | Path) -> FleetInventory:
    """Read and validate an inventory TOML; :class:`ConfigError` with a one-line message."""
    path = Path(path)
    return validated(FleetInventory, read_toml(path), str(path))


def _declared(name: str, value: float, unit: str, source: str, window: dict) -> Figure:
    return Figure(name, value, unit, formula="declared input", note=f"declared: {source}",
                  **window)


def inventory_energy(inv: FleetInventory) -> PeriodEnergy:
    """The inventory's period as accounting input; every figure is marked as declared."""
    zone = inv.zone
    start_ms, end_ms = date_ms(inv.period.start, zone), date_ms(inv.period.end, zone)
    window = {"start_ms": start_ms, "end_ms": end_ms}
    e = inv.energy
    electricity = _declared("electricity", e.electricity_mwh, "MWh", e.source, window)
    onsite = _declared("onsite_renewable", e.onsite_renewable_mwh, "MWh", e.source, window)
    if e.grid_electricity_mwh is None:
        grid = Figure(
            "grid_electricity", e.electricity_mwh - e.onsite_renewable_mwh, "MWh",
            formula="electricity - onsite_renewable", **window, inputs=(electricity, onsite),
        )
    else:
        grid = _declared("grid_electricity", e.grid_electricity_mwh, "MWh", e.source, window)
    pue = (
        _declared("pue", inv.pue.value, "1", inv.pue.source, window) if inv.pue
        else Figure("pue", None, "1", note="not in the inventory", **window)
    )
    energy = PeriodEnergy(
        label=period_label(inv.period.start, inv.period.end), start_ms=start_ms, end_ms=end_ms,
        total_energy=_declared("total_energy", e.total_energy_mwh, "MWh", e.source, window),
        electricity=electricity, grid_electricity=grid, onsite_renewable=onsite, pue=pue,
    )
    if inv.scope2_location is None:
        return energy
    basis = location_basis(energy, inv.carbon.method)
    declared = inv.scope2_location.value
    factor = inv.grid.emission_factor_t_per_mwh
    location = Figure(
        "scope2_location", declared, "tCO2e", formula="declared input",
        note=f"declared: {inv.scope2_location.source}", **window, inputs=(basis,),
        extra={
            "implied_factor_t_per_mwh": declared / basis.value if basis.value else None,
            "basis_x_grid_factor_tco2e": (basis.value or 0.0) * factor,
            "difference_tco2e": declared - (basis.value or 0.0) * factor,
        },
    )
    return PeriodEnergy(
        energy.label, start_ms, end_ms, energy.total_energy, electricity, grid, onsite, pue,
        location_based=location,
    )


def basis(fig: Figure) -> str:
    """``declared`` for a figure typed into the inventory (or a configured volume with no
    inputs), else ``computed``; a renamed figure has the basis of what it renames."""
    while len(fig.inputs) == 1 and fig.formula == fig.inputs[0].name and (
        fig.value == fig.inputs[0].value
    ):
        fig = fig.inputs[0]
    return "declared" if fig.formula == "declared input" or not fig.inputs else "computed"


def declared_inputs(fig: Figure) -> list[str]:
    """Names of the declared figures ``fig`` rests on, in audit-trail order (deduplicated)."""
    if basis(fig) == "declared":
        return [fig.name]
    return list(dict.fromkeys(n for child in fig.inputs for n in declared_inputs(child)))


def mark_basis(figures: dict[str, Figure]) -> dict[str, Figure]:
    """Each figure with ``extra['basis']`` (declared / computed) and, when computed, the
    declared inputs it is computed from (``extra['computed_from']``)."""
    out = {}
    for key, fig in figures.items():
        mark = basis(fig)
        extra = {**fig.extra, "basis": mark}
        if mark == "computed":
            extra["computed_from"] = declared_inputs(fig)
        out[key] = replace(fig, extra=extra)
    return out


def ghg_protocol_figures(inv: FleetInventory, energy: PeriodEnergy) -> dict[str, Figure]:
    """Scope 2 per the GHG Protocol Scope 2 Guidance on the inventory's inputs, to print beside
    the identity method: location-based = grid electricity x the grid factor (not the declared
    total, whose factors are not published); market-based = instruments meeting the quality
    criteria at their factor + the rest of the grid electricity at the residual mix (the
    configured one, else the grid factor, which the factor source then says)."""
    settings = inv.carbon.model_copy(update={"method": Scope2Method.GHG_PROTOCOL})
    plain = replace(energy, location_based=None)
    figures = account(plain, inv.grid, settings, inv.zone).figures
    market = figures["scope2_market"]
    rest = next(i for i in market.inputs if i.name == "scope2_market_residual")
    residual = f"{rest.factor:g} tCO2/MWh: {rest.factor_source}"
    return {
        "scope2_location_ghg": replace(figures["scope2_location"], name="scope2_location_ghg"),
        "scope2_market_ghg": replace(market, name="scope2_market_ghg",
                                     extra={**market.extra, "residual_mix": residual}),
    }
