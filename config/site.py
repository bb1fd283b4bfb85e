"""The site file: a TOML document validated by pydantic, with one-line errors."""

from __future__ import annotations

import tomllib
from collections import Counter
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dcpue.config.base import Section
from dcpue.config.calculator import CalculatorSettings
from dcpue.config.carbon import CarbonSettings, GridFactor
from dcpue.config.collector import CollectorSettings
from dcpue.config.optimizer import OptimizerSettings
from dcpue.config.service import METER_FIGURE, ServiceSettings
from dcpue.config.topology import Meter, MeterRole
from dcpue.config.twin import TwinSettings
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A site file is missing, unreadable or invalid; ``str()`` is one line naming file and field."""


def known_zone(value: str) -> str:
    """``value`` if it names an IANA time zone, else ValueError (for pydantic validators)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}") from None
    return value


class StoreSettings(Section):
    """The embedded DuckDB store (relative paths are relative to the site file)."""

    path: Path = Path("var/dcpue.duckdb")


class Site(Section):
    """A data-center site: location, grid factor, meter topology and component settings."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    name: str = ""
    timezone: str = "UTC"
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    altitude_m: float = 0.0
    grid: GridFactor
    meters: list[Meter] = Field(min_length=1)
    store: StoreSettings = StoreSettings()
    twin: TwinSettings = TwinSettings()
    collector: CollectorSettings = CollectorSettings()
    calculator: CalculatorSettings = CalculatorSettings()
    carbon: CarbonSettings = CarbonSettings()
    optimizer: OptimizerSettings = OptimizerSettings()
    service: ServiceSettings = ServiceSettings()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)

    @field_validator("meters")
    @classmethod
    def _topology(cls, meters: list[Meter]) -> list[Meter]:
        counts = Counter(m.id for m in meters)
        duplicates = sorted(k for k, n in counts.items() if n > 1)
        if duplicates:
            raise ValueError(f"duplicate meter id {', '.join(duplicates)}")
        ids = set(counts)
        for m in meters:
            if m.parent is not None and m.parent not in ids:
                raise ValueError(f"meter {m.id!r} has unknown parent {m.parent!r}")
            if m.parent == m.id:
                raise ValueError(f"meter {m.id!r} is its own parent")
        if not any(m.role is MeterRole.IT_LOAD for m in meters):
            raise ValueError("no meter with role it_load: PUE needs IT energy")
        return meters

    @model_validator(mode="after")
    def _threshold_meters(self) -> Site:
        ids = {m.id for m in self.meters}
        for i, rule in enumerate(self.service.alerts.thresholds):
            meter = rule.figure.removeprefix(METER_FIGURE)
            if rule.figure.startswith(METER_FIGURE) and meter not in ids:
                raise ValueError(
                    f"service.alerts.thresholds[{i}].figure names unknown meter {meter!r}"
                )
        return self

    @cached_property
    def meter_by_id(self) -> dict[str, Meter]:
        return {m.id: m for m in self.meters}

    def meters_with(self, *roles: MeterRole) -> list[Meter]:
        """Meters whose role is one of ``roles``, in file order."""
        return [m for m in self.meters if m.role in roles]


def _location(loc: tuple[int | str, ...]) -> str:
    """Pydantic error location -> dotted path, e.g. ``meters[3].unit``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def validated(model: type[M], data: dict, source: str) -> M:
    """``model`` validated from ``data``; :class:`ConfigError` names source, field and reason
    of the first error in one line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _location(err["loc"])
        reason = err["msg"].removeprefix("Value error, ")
        more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{source}: {where}: {reason}{more}") from None


def read_toml(path: Path) -> dict:
    """A TOML file as a dict; :class:`ConfigError` in one line if unreadable or invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def parse_site(data: dict, source: str = "<memory>", base_dir: Path | None = None) -> Site:
    """Validate a site document; relative store (and EnergyPlus model) paths are resolved
    against ``base_dir``."""
    site = validated(Site, data, source)
    if base_dir is not None and not site.store.path.is_absolute():
        site.store.path = base_dir / site.store.path
    eplus = site.twin.energyplus
    if base_dir is not None and eplus.model is not None and not eplus.model.is_absolute():
        eplus.model = base_dir / eplus.model
    return site


def load_site(path: str | Path) -> Site:
    """Read and validate a TOML site file; raise :class:`ConfigError` with a one-line message."""
    path = Path(path)
    return parse_site(read_toml(path), str(path), path.parent)


def example_path(name: str = "single_hall") -> Path:
    """Path of a bundled example site file (``single_hall`` or ``microgrid``)."""
    return Path(str(resources.files("dcpue.config") / "examples" / f"{name}.toml"))
