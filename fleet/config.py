"""The fleet file (``fleet.toml``): sites, grid regions, contractual instruments, remote store.

Validated by pydantic with the site loader's one-line errors (:func:`dcpue.config.site.
read_toml`, :func:`~dcpue.config.site.validated`). Dates are calendar days in the fleet's
``timezone``; periods are ``[start, end)`` like everywhere in dcpue. Relative paths (site files,
hourly CSVs) are relative to the fleet file.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dcpue.config.base import Section
from dcpue.config.carbon import Instrument, Period
from dcpue.config.collector import RemoteSettings
from dcpue.config.site import known_zone, read_toml, validated
from pydantic import Field, field_validator, model_validator

ID_PATTERN = r"^[A-Za-z0-9_.-]+$"


class RemoteKind(StrEnum):
    """How the remote store overwrites a re-finalized hour.

    ``influxdb``: a line with the same series and timestamp replaces the old one.
    ``victoriametrics``: equal-timestamp samples are deduplicated in no defined order
    (measured on 1.79), so a site whose published hours changed has its hourly series deleted
    (``/api/v1/admin/tsdb/delete_series``) and rewritten from the site's ledger.
    """

    INFLUXDB = "influxdb"
    VICTORIAMETRICS = "victoriametrics"


class PublishSettings(RemoteSettings):
    """Where a site publishes its hourly terms (the remote sink's keys plus these)."""

    measurement: str = Field(default="dcpue_hourly", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    cursor: str = "fleet_hourly"
    kind: RemoteKind = RemoteKind.VICTORIAMETRICS
    #: An hour is final once every balance meter has a reading at or after its end, or once
    #: the slowest meter lags the newest reading by more than this (a dead meter), in s.
    grace_s: float = Field(default=7200.0, ge=0)
    #: VictoriaMetrics that takes ``delete_series`` when ``url`` is a vmagent in front of it
    #: (empty: ``url`` itself).
    admin_url: str = ""


class Region(Section):
    """A grid region: location-based factor, residual mix, optional hourly factors."""

    id: str = Field(pattern=ID_PATTERN, max_length=64)
    emission_factor_t_per_mwh: float = Field(ge=0, le=2.0)
    source: str = Field(min_length=1)
    residual_mix_t_per_mwh: float | None = Field(default=None, ge=0, le=2.0)
    residual_mix_source: str = ""
    hourly_factors_csv: Path | None = None
    hourly_factors_source: str = ""

    @model_validator(mode="after")
    def _sources(self) -> Region:
        if self.residual_mix_t_per_mwh is not None and not self.residual_mix_source.strip():
            raise ValueError("residual_mix_source is required with residual_mix_t_per_mwh")
        if self.hourly_factors_csv is not None and not self.hourly_factors_source.strip():
            raise ValueError("hourly_factors_source is required with hourly_factors_csv")
        return self


class DeclaredSite(Period):
    """Totals of a site not metered by dcpue over ``[start, end)`` (MWh), with their source."""

    facility_mwh: float = Field(ge=0)
    it_mwh: float = Field(gt=0)
    grid_import_mwh: float = Field(ge=0)
    pv_self_consumed_mwh: float = Field(default=0.0, ge=0)
    source: str = Field(min_length=1)


class SimulatedSite(Section):
    """How ``dcpue simulate --fleet`` builds this site's twin from a bundled or given site file."""

    base: str = "single_hall"
    nominal_it_kw: float = Field(default=800.0, gt=0)
    weather: str | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    seed: int = 0


class FleetSite(Section):
    """One data center of the fleet."""

    id: str = Field(pattern=ID_PATTERN, max_length=64)
    name: str = ""
    commissioned: date
    region: str
    #: Site file of a metered site (for ``dcpue fleet publish`` and simulate), optional.
    config: Path | None = None
    declared: DeclaredSite | None = None
    simulate: SimulatedSite | None = None


class FleetInstrument(Instrument):
    """A contractual instrument of a region; ``delivery_csv`` (``timestamp,mwh``, hour starts
    with UTC offset) is its hourly delivery profile, used for 24/7 carbon-free-energy matching."""

    region: str
    delivery_csv: Path | None = None
    delivery_source: str = ""


class Inclusion(Section):
    """Which sites count in fleet PUE: in operation at least ``min_months`` at period end.

    A metered term whose period coverage is below ``min_coverage`` is insufficient data.
    """

    min_months: int = Field(default=12, ge=0, le=600)
    min_coverage: float = Field(default=0.95, ge=0, le=1)


class FleetCarbon(Section):
    """Fleet-wide carbon settings (avoided factor default: each region's grid factor)."""

    avoided_factor_t_per_mwh: float | None = Field(default=None, ge=0, le=2.0)
    avoided_factor_source: str = ""
    max_vintage_gap_years: int = Field(default=1, ge=0, le=10)

    @model_validator(mode="after")
    def _source(self) -> FleetCarbon:
        if self.avoided_factor_t_per_mwh is not None and not self.avoided_factor_source.strip():
            raise ValueError("avoided_factor_source is required with avoided_factor_t_per_mwh")
        return self


class Fleet(Section):
    """The fleet file (see module docstring)."""

    id: str = Field(pattern=ID_PATTERN, max_length=64)
    name: str = ""
    timezone: str = "UTC"
    remote: PublishSettings
    inclusion: Inclusion = Inclusion()
    carbon: FleetCarbon = FleetCarbon()
    regions: list[Region] = Field(min_length=1)
    sites: list[FleetSite] = Field(min_length=1)
    instruments: list[FleetInstrument] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)

    @model_validator(mode="after")
    def _references(self) -> Fleet:
        regions = [r.id for r in self.regions]
        for kind, ids in (("region", regions), ("site", [s.id for s in self.sites]),
                          ("instrument", [i.name for i in self.instruments])):
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            if repeated:
                raise ValueError(f"duplicate {kind} {', '.join(repeated)}")
        for owner, region in [*((f"site {s.id!r}", s.region) for s in self.sites),
                              *((f"instrument {i.name!r}", i.region) for i in self.instruments)]:
            if region not in regions:
                raise ValueError(f"{owner}: unknown region {region!r}")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def region(self, region_id: str) -> Region:
        return next(r for r in self.regions if r.id == region_id)


def _resolve(data: Any, base: Path) -> None:
    """Make the fleet file's relative paths relative to its directory (in place)."""
    for site in data.get("sites", []):
        if isinstance(site, dict) and isinstance(site.get("config"), str):
            site["config"] = str(base / site["config"])
    for key, items in (("regions", "hourly_factors_csv"), ("instruments", "delivery_csv")):
        for item in data.get(key, []):
            if isinstance(item, dict) and isinstance(item.get(items), str):
                item[items] = str(base / item[items])


def parse_fleet(data: dict, source: str = "<memory>", base_dir: Path | None = None) -> Fleet:
    """Validate a fleet document; relative paths are resolved against ``base_dir``."""
    if base_dir is not None:
        _resolve(data, base_dir)
    return validated(Fleet, data, source)


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet TOML; :class:`ConfigError` with a one-line message."""
    path = Path(path)
    return parse_fleet(read_toml(path), str(path), path.parent)
