"""Carbon accounting settings: grid factors and contractual instruments (owned by dcpue.carbon).

Every field has a default, so a site file without a ``[carbon]`` block is valid: Scope 2 is then
location-based on the site's grid factor, market-based with no instruments and the residual mix
defaulting to the location factor (which the audit trail says).

Periods are calendar dates in the site's time zone, ``start`` inclusive and ``end`` exclusive
(a 2023 certificate runs ``start = 2023-01-01``, ``end = 2024-01-01``), like every time window in
dcpue.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path

from dcpue.config.base import Section
from pydantic import Field, model_validator


class GridFactor(Section):
    """Location-based grid emission factor and where it comes from."""

    emission_factor_t_per_mwh: float = Field(ge=0, le=2.0)
    source: str = Field(min_length=1)


class Scope2Method(StrEnum):
    """How the market-based total is formed.

    ``ghg_protocol``: GHG Protocol Scope 2 Guidance (2015) ch. 6-7: location-based = purchased grid
    electricity x grid factor; market-based = sum(instrument MWh x instrument factor) + (grid MWh -
    instrument MWh) x residual-mix factor.

    ``location_minus_avoided``: the reference operator's ESG-report method: location-based covers
    all electricity consumed (on-site renewables included, at the grid factor); market-based =
    location-based - avoided emissions of all renewable electricity (purchased green power and
    on-site PV, MWh x avoided factor). Equal to ``ghg_protocol`` applied to the same base when
    the residual mix equals the grid average and the location figure is base MWh x that factor.
    """

    GHG_PROTOCOL = "ghg_protocol"
    LOCATION_MINUS_AVOIDED = "location_minus_avoided"


class InstrumentType(StrEnum):
    """Contractual instrument types named by the GHG Protocol Scope 2 Guidance (ch. 6)."""

    PPA = "ppa"  # physical power purchase agreement
    VIRTUAL_PPA = "virtual_ppa"  # financial / virtual PPA with bundled certificates
    GREEN_TARIFF = "green_tariff"  # utility green-power product
    GREEN_POWER_TRADING = "green_power_trading"  # green electricity bought on a power market
    CERTIFICATE = "certificate"  # unbundled energy attribute certificate (REC, GO, I-REC, GEC)
    SUPPLIER_SPECIFIC = "supplier_specific"  # supplier emission rate of the delivered product
    COMBINED = "combined"  # several of the above reported as one total (split not published)


class Period(Section):
    """A calendar period ``[start, end)`` in the site's time zone."""

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start} (end is exclusive)")
        return self


class Instrument(Period):
    """A contractual instrument conveying electricity attributes for a period.

    The Scope 2 Quality Criteria (GHG Protocol Scope 2 Guidance, table 7.1) decide whether it is
    applied in the market-based total: it must be tracked and retired on a registry
    (``traceable``), come from the market where the electricity is consumed (``same_market``,
    the proximity criterion) and have a ``vintage`` close to the reporting period. Additionality
    is not a Scope 2 criterion; it is recorded and disclosed in the audit trail.
    """

    name: str = Field(min_length=1)
    type: InstrumentType
    mwh: float = Field(ge=0)
    emission_factor_t_per_mwh: float = Field(default=0.0, ge=0, le=2.0)
    renewable: bool = True
    traceable: bool = True
    same_market: bool = True
    additional: bool | None = None
    vintage: int | None = Field(default=None, ge=1990, le=2100)
    technology: str = ""
    reference: str = ""
    source: str = ""


class EfficiencyMeasure(Period):
    """A declared efficiency measure: electricity saved over a period, with its evidence."""

    name: str = Field(min_length=1)
    mwh: float = Field(ge=0)
    source: str = Field(min_length=1)


class CarbonSettings(Section):
    """Scope 2 method, contractual instruments, residual mix, hourly factors and measures.

    ``residual_mix_t_per_mwh`` None: the location factor is used for the uncovered remainder
    (the audit trail says so). ``avoided_factor_t_per_mwh`` None: avoided emissions use the
    site grid factor. ``hourly_factors_csv`` (columns ``timestamp,t_per_mwh``; relative paths are
    relative to the site file) replaces the flat grid factor in the location-based total.
    ``mv_measure`` names the avoided-emission row filled from the optimizer's M&V savings.
    """

    method: Scope2Method = Scope2Method.GHG_PROTOCOL
    residual_mix_t_per_mwh: float | None = Field(default=None, ge=0, le=2.0)
    residual_mix_source: str = ""
    avoided_factor_t_per_mwh: float | None = Field(default=None, ge=0, le=2.0)
    avoided_factor_source: str = ""
    hourly_factors_csv: Path | None = None
    hourly_factors_source: str = ""
    max_vintage_gap_years: int = Field(default=1, ge=0, le=10)
    instruments: list[Instrument] = Field(default_factory=list)
    measures: list[EfficiencyMeasure] = Field(default_factory=list)
    mv_measure: str = Field(default="AI cooling optimization", min_length=1)

    @model_validator(mode="after")
    def _sources(self) -> CarbonSettings:
        for value, source, name in (
            (self.residual_mix_t_per_mwh, self.residual_mix_source, "residual_mix"),
            (self.avoided_factor_t_per_mwh, self.avoided_factor_source, "avoided_factor"),
            (self.hourly_factors_csv, self.hourly_factors_source, "hourly_factors"),
        ):
            if value is not None and not source.strip():
                raise ValueError(f"{name}_source is required when a {name} factor is given")
        names = [i.name for i in self.instruments] + [m.name for m in self.measures]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"duplicate instrument/measure name {', '.join(repeated)}")
        return self
