"""The site file: a TOML document validated by pydantic, with one-line errors."""

from __future__ import annotations

import difflib
import logging
import re
import tomllib
import types
import typing
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dcpue.config.base import Section
from dcpue.config.calculator import CalculatorSettings
from dcpue.config.carbon import CarbonSettings, GridFactor
from dcpue.config.collector import CollectorSettings
from dcpue.config.modbus import REGISTER_WIDTH
from dcpue.config.optimizer import OptimizerSettings, writeback_problems
from dcpue.config.service import METER_FIGURE, ServiceSettings
from dcpue.config.topology import ENERGY_ROLES, Meter, MeterKind, MeterRole
from dcpue.config.twin import TwinSettings
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """One finding in a configuration: ``where`` is a dotted path with meter ids
    (``meters[ups-out].unit``), ``hint`` a near-miss suggestion ("did you mean")."""

    where: str
    reason: str
    hint: str | None = None
    warning: bool = False

    def line(self, source: str) -> str:
        hint = f" (did you mean {self.hint!r}?)" if self.hint else ""
        return f"{source}: {self.where}: {self.reason}{hint}"


class ConfigError(ValueError):
    """A site file is missing, unreadable or invalid; ``str()`` has one line per error, each
    naming file, field and reason; ``problems`` holds them."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


def near(word: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to a misspelt ``word`` (difflib ratio >= 0.6), or None."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


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
        ids = [m.id for m in self.meters]
        for rule in self.service.alerts.thresholds:
            meter = rule.figure.removeprefix(METER_FIGURE)
            if rule.figure.startswith(METER_FIGURE) and meter not in ids:
                close = near(meter, ids)
                hint = f" (did you mean {METER_FIGURE}{close}?)" if close else ""
                raise ValueError(
                    f"service.alerts.thresholds[{rule.name}].figure names unknown meter "
                    f"{meter!r}{hint}"
                )
        return self

    @model_validator(mode="after")
    def _writeback_instances(self) -> Site:
        errors = [f"{where}: {why}" for where, why, warning
                  in writeback_problems(self.optimizer.setpoints, self.meters) if not warning]
        if errors:
            raise ValueError("; ".join(errors))
        return self

    @cached_property
    def meter_by_id(self) -> dict[str, Meter]:
        return {m.id: m for m in self.meters}

    def meters_with(self, *roles: MeterRole) -> list[Meter]:
        """Meters whose role is one of ``roles``, in file order."""
        return [m for m in self.meters if m.role in roles]


def _location(loc: tuple[int | str, ...], data: object = None) -> str:
    """Pydantic error location -> dotted path; list items that carry an ``id`` (meters) are
    named by it, e.g. ``meters[ups-out].unit`` instead of ``meters[3].unit``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            item = data[part] if isinstance(data, list) and part < len(data) else None
            ident = item.get("id") if isinstance(item, dict) else None
            out += f"[{ident}]" if isinstance(ident, str) and ident else f"[{part}]"
            data = item
        else:
            out += f".{part}" if out else str(part)
            data = data.get(part) if isinstance(data, dict) else None
    return out or "(file)"


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The pydantic model a location points into (for "did you mean" on unknown keys)."""
    current: object = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: object) -> object:
    """The model inside ``list[X]``, ``X | None`` or ``dict[str, X]`` (first model found)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (list, dict, typing.Union, types.UnionType,
                                         typing.Annotated):
        for arg in args:
            found = _unwrap(arg)
            if found is not None:
                return found
    return None


def _hint(model: type[BaseModel], err: dict) -> str | None:
    loc = err["loc"]
    if err["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
        parent = _model_at(model, loc[:-1])
        return near(loc[-1], parent.model_fields) if parent else None
    expected = (err.get("ctx") or {}).get("expected")
    if err["type"] in ("enum", "literal_error") and expected and isinstance(err.get("input"),
                                                                             str):
        return near(err["input"], re.findall(r"'([^']*)'", expected))
    return None


def validated(model: type[M], data: dict, source: str) -> M:
    """``model`` validated from ``data``; :class:`ConfigError` has one line per error, each
    naming source, field (meters by id) and reason, with a "did you mean" for near misses."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(_location(err["loc"], data), err["msg"].removeprefix("Value error, "),
                    _hint(model, err))
            for err in exc.errors()
        ]
        raise ConfigError("\n".join(p.line(source) for p in problems), problems) from None


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
    """Validate a site document; relative store, EnergyPlus model and hourly-factor paths
    are resolved against ``base_dir``."""
    site = validated(Site, data, source)
    if base_dir is not None and not site.store.path.is_absolute():
        site.store.path = base_dir / site.store.path
    eplus = site.twin.energyplus
    if base_dir is not None and eplus.model is not None and not eplus.model.is_absolute():
        eplus.model = base_dir / eplus.model
    factors = site.carbon.hourly_factors_csv
    if base_dir is not None and factors is not None and not factors.is_absolute():
        site.carbon.hourly_factors_csv = base_dir / factors
    return site


def load_site(path: str | Path) -> Site:
    """Read and validate a TOML site file; raise :class:`ConfigError` naming every error."""
    path = Path(path)
    return parse_site(read_toml(path), str(path), path.parent)


def require_consistent(site: Site, source: str, log_warnings: bool = True) -> list[Problem]:
    """Raise :class:`ConfigError` listing every error of :func:`site_problems`; return the
    warnings (logged unless ``log_warnings`` is false)."""
    problems = site_problems(site)
    errors = [p for p in problems if not p.warning]
    if errors:
        raise ConfigError("\n".join(p.line(source) for p in errors), errors)
    warnings = [p for p in problems if p.warning]
    for w in warnings if log_warnings else ():
        log.warning("%s", w.line(source))
    return warnings


# -- site-level consistency: what single fields cannot tell -----------------------------------

def site_problems(site: Site) -> list[Problem]:
    """Cross-section errors and warnings of a validated site, every one at once.

    Errors: a Modbus point, MQTT gateway path or stale-meter list naming an unknown meter; IT
    metered at several Green Grid categories without ``calculator.it_category``; a figure
    (threshold, drift, ``current_figure``) on a window the calculator does not compute; no
    grid_import meter (total facility energy unknown). Warnings: overlapping Modbus registers,
    a meter fed by two sources, an energy counter without ``max_power_kw``, write-back of a
    setpoint with several instances to one target or with instances left without a target.
    """
    out: list[Problem] = []
    ids = [m.id for m in site.meters]
    known = set(ids)

    def meter_ref(where: str, meter: str) -> None:
        if meter not in known:
            out.append(Problem(where, f"unknown meter {meter!r}", near(meter, ids)))

    feeds: dict[str, list[str]] = {}
    for d in site.collector.modbus.devices:
        spans: list[tuple[str, int, int, str]] = []
        for g in d.groups:
            for i, p in enumerate(g.points):
                where = f"collector.modbus.devices[{d.name}].groups[{g.name}].points[{i}].meter"
                meter_ref(where, p.meter)
                feeds.setdefault(p.meter, []).append(f"Modbus {d.name}/{g.name}")
                spans.append((p.table, p.address, p.address + REGISTER_WIDTH[p.type], p.meter))
        spans.sort()
        for k, (table, start, _, meter) in enumerate(spans):
            for t0, a0, e0, m0 in spans[:k]:
                if t0 == table and start < e0:
                    out.append(Problem(
                        f"collector.modbus.devices[{d.name}]",
                        f"{table} registers of meter {m0!r} ({a0}..{e0 - 1}) and {meter!r} "
                        f"(from {start}) overlap", warning=True))
    for s in site.collector.mqtt.subscriptions:
        for meter in s.paths:
            meter_ref(f"collector.mqtt.subscriptions[{s.topic}].paths.{meter}", meter)
            feeds.setdefault(meter, []).append(f"MQTT {s.topic}")
    for meter, sources in feeds.items():
        if len(sources) > 1 and meter in known:
            out.append(Problem(f"meters[{meter}]", "fed by two sources: "
                               + ", ".join(sources), warning=True))
    for meter in site.service.alerts.stale.meters or []:
        meter_ref("service.alerts.stale.meters", meter)

    it = site.meters_with(MeterRole.IT_LOAD)
    categories = {m.it_category for m in it}
    if len(categories) > 1 and site.calculator.it_category is None:
        listed = ", ".join(f"{m.id} ({m.it_category})" for m in it)
        out.append(Problem("calculator.it_category", f"IT is metered at several Green Grid "
                           f"categories ({listed}); choose one"))
    if not site.meters_with(MeterRole.GRID_IMPORT):
        out.append(Problem("meters", "no meter with role grid_import: total facility energy "
                           "(and so PUE) cannot be computed"))

    windows = site.calculator.windows
    alerts = site.service.alerts
    figures = [(f"service.alerts.thresholds[{r.name}].figure", r.figure)
               for r in alerts.thresholds]
    figures += [("service.alerts.drift.figure", alerts.drift.figure),
                ("service.current_figure", site.service.current_figure)]
    for where, figure in figures:
        if figure.startswith(METER_FIGURE):
            continue
        name, _, window = figure.rpartition(".")
        if not name or window not in windows:
            out.append(Problem(where, f"{figure!r}: window {window!r} is not computed "
                               f"(calculator.windows = {', '.join(windows)})",
                               near(figure, [f"{name or figure}.{w}" for w in windows])))

    out += [Problem(where, why, warning=True) for where, why, warning
            in writeback_problems(site.optimizer.setpoints, site.meters) if warning]
    unbounded = [m.id for m in site.meters if m.kind is MeterKind.COUNTER
                 and m.role in ENERGY_ROLES and m.max_power_kw is None]
    if unbounded:
        out.append(Problem("meters.max_power_kw", "energy counters without a plausibility bound "
                           f"(a glitch would count as a huge energy): {', '.join(unbounded)}",
                           warning=True))
    return out


def example_path(name: str = "single_hall") -> Path:
    """Path of a bundled example site file (``single_hall`` or ``microgrid``)."""
    return Path(str(resources.files("dcpue.config") / "examples" / f"{name}.toml"))
