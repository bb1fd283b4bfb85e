"""EnergyPlus as the plant: a model run in lock-step with dcpue through the runtime API.

``[twin] engine = "energyplus"`` (docs/energyplus.md). EnergyPlus runs in a worker thread; at
the end of every zone timestep of the weather-file run period (warm-up excluded) a callback
reads the mapped meters (J over the timestep) and output variables, hands them to the caller
and waits for the setpoints of the next timestep, which a second callback writes into the
mapped actuators at the start of every system timestep. So :meth:`EnergyPlusPlant.step` is one
timestep with the setpoints it was given, and nothing runs ahead of dcpue.

Readings are what real meters would report: energy counters accumulate kWh from 0 at the start
of the run (a first reading at the start instant, then one per timestep; the value at t covers
the timestep ending at t), power meters the timestep's mean kW, state meters the value at the
end of the timestep, setpoint meters the value the plant ran with. EnergyPlus's clock is local
standard time of the weather file (its LOCATION offset), mapped to UTC.
"""

from __future__ import annotations

import calendar
import json
import math
import queue
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from dcpue.config import ConfigError, Meter, MeterKind, MeterRole, SetpointName, Site
from dcpue.config.twin import EnergyPlusActuator, EnergyPlusSource
from dcpue.core.readings import Reading, ReadingColumns, datetime_to_ms, ms_to_datetime
from dcpue.core.store import Store
from dcpue.core.units import unit
from dcpue.twin.energyplus_checks import (
    ModelObject,
    actuator_keys,
    available_names,
    close_matches,
    epjson_objects,
    idf_objects,
    lever_problems,
)
from dcpue.twin.energyplus_model import (
    CHW_SCHEDULE,
    ITE,
    SAT_SCHEDULE,
    Location,
    hall_model,
    run_period,
)
from dcpue.twin.simulator import _SETPOINT_FIELDS as SETPOINT_FIELDS  # name -> field
from dcpue.twin.simulator import Twin

_J_PER_KWH = 3.6e6
#: Every mapped meter is read through a ``Meter:Custom`` mirror named with this prefix: the
#: runtime API cannot return a handle to the first meter EnergyPlus creates (usually
#: Electricity:Facility; EnergyPlus issue #11522, present in 25.2).
MIRROR = "dcpue "
_RESOURCES = ("Electricity", "NaturalGas", "DistrictCooling", "DistrictHeatingWater",
              "DistrictHeatingSteam", "Water", "Propane", "Diesel", "Gasoline", "Coal",
              "FuelOilNo1", "FuelOilNo2", "OtherFuel1", "OtherFuel2")
_RUN_PERIOD_WEATHER = 3  # EnergyPlus KindOfSim::RunPeriodWeather
_TIMEOUT_S = 600.0  # longest wait for one timestep before the run counts as hung

#: The generated model's sources, by dcpue meter role.
HALL_SOURCES: dict[MeterRole, EnergyPlusSource] = {
    MeterRole.GRID_IMPORT: EnergyPlusSource(meter="Electricity:Facility"),
    MeterRole.IT_LOAD: EnergyPlusSource(meter=["ITE-CPU:InteriorEquipment:Electricity",
                                               "ITE-Fans:InteriorEquipment:Electricity"]),
    MeterRole.UPS_LOSS: EnergyPlusSource(meter="ITE-UPS:InteriorEquipment:Electricity"),
    MeterRole.CHILLER: EnergyPlusSource(meter="Cooling:Electricity"),
    MeterRole.CRAH: EnergyPlusSource(meter="Fans:Electricity"),
    MeterRole.PUMP: EnergyPlusSource(meter="Pumps:Electricity"),
    MeterRole.COOLING_TOWER: EnergyPlusSource(meter="HeatRejection:Electricity"),
    MeterRole.LIGHTING: EnergyPlusSource(meter="InteriorLights:Electricity"),
    MeterRole.WATER: EnergyPlusSource(variable="Cooling Tower Make Up Water Volume", key="Tower"),
    MeterRole.OUTDOOR_TEMPERATURE: EnergyPlusSource(
        variable="Site Outdoor Air Drybulb Temperature", key="Environment"),
    MeterRole.OUTDOOR_HUMIDITY: EnergyPlusSource(
        variable="Site Outdoor Air Relative Humidity", key="Environment"),
    MeterRole.RACK_INLET_TEMPERATURE: EnergyPlusSource(
        variable="ITE Air Inlet Dry-Bulb Temperature", key=ITE),
}
#: The generated model's levers.
HALL_ACTUATORS: dict[SetpointName, EnergyPlusActuator] = {
    SetpointName.SUPPLY_AIR_TEMPERATURE: EnergyPlusActuator(
        component_type="Schedule:Compact", control_type="Schedule Value", key=SAT_SCHEDULE),
    SetpointName.CHILLED_WATER_TEMPERATURE: EnergyPlusActuator(
        component_type="Schedule:Compact", control_type="Schedule Value", key=CHW_SCHEDULE),
}


class EnergyPlusError(RuntimeError):
    """EnergyPlus failed or a mapped meter, variable or actuator does not exist in the model."""


class EnergyPlusModelError(EnergyPlusError, ConfigError):
    """The user's model or its mapping in the site file is at fault (a missing name, a lever
    that cannot take effect, no weather-file run period): a configuration error."""


def load_api():
    """``pyenergyplus.api.EnergyPlusAPI`` or a ConfigError naming the optional extra."""
    try:
        from pyenergyplus.api import EnergyPlusAPI
    except ImportError:
        raise ConfigError(
            "twin.engine = 'energyplus' needs EnergyPlus: pip install 'dcpue[energyplus]' "
            "(the pyenergyplus-lbnl package)"
        ) from None
    return EnergyPlusAPI


def shipped_weather_dir() -> Path:
    """The folder of TMY3 EPW files shipped with pyenergyplus-lbnl."""
    load_api()
    import pyenergyplus

    return Path(pyenergyplus.__file__).parent / "data" / "weather"


def weather_path(name: str) -> Path:
    """An EPW file: a name shipped with pyenergyplus-lbnl, or a path."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_weather_dir()
    if (shipped / name).is_file():
        return shipped / name
    known = ", ".join(sorted(p.name for p in shipped.glob("*.epw")))
    raise ConfigError(f"twin.energyplus.weather: no file {name!r}; shipped: {known}")


@dataclass(frozen=True)
class _Feed:
    """One dcpue meter fed by EnergyPlus: its sources and how to convert them."""

    meter: Meter
    source: EnergyPlusSource
    source_unit: str

    @property
    def mirrors(self) -> list[tuple[str, str, str, str]]:
        """(mirror meter name, key, EnergyPlus meter or variable, resource) of each source this
        feed reads through a ``Meter:Custom``: meters (the runtime API cannot hand out the first
        meter's handle) and energy or water variables (an HVAC variable read at the end of a
        zone timestep holds only its last system timestep; a meter sums them all)."""
        if self.source.meter is not None:
            return [(MIRROR + name, "", name, _resource(name)) for name in self.source.meters]
        if self.source_unit in ("J", "m3") and self.meter.kind is not MeterKind.STATE:
            v = self.source.variable
            resource = "Water" if self.source_unit == "m3" else _resource(v)
            return [(f"{MIRROR}{key} {v}", key, v, resource) for key in self.source.keys]
        return []

    @classmethod
    def of(cls, meter: Meter, source: EnergyPlusSource) -> _Feed:
        default = {MeterKind.COUNTER: "m3" if meter.role is MeterRole.WATER else "J",
                   MeterKind.POWER: "W"}.get(meter.kind)
        src = "J" if source.meter is not None else source.unit or default
        if meter.kind is MeterKind.STATE:
            src = src or unit(meter.unit).symbol
            if src in ("J", "W", "m3") or unit(src).dimension != unit(meter.unit).dimension:
                raise ConfigError(f"twin.energyplus.meters.{meter.id}: a {meter.quantity} "
                                  f"meter cannot read a source in {src}")
        elif meter.role is MeterRole.WATER:
            if src != "m3":
                raise ConfigError(f"twin.energyplus.meters.{meter.id}: a water counter needs m3")
        elif src not in ("J", "W"):
            raise ConfigError(f"twin.energyplus.meters.{meter.id}: an energy meter needs a "
                              f"source in J or W, not {src}")
        return cls(meter, source, src)


@dataclass
class EnergyPlusResult:
    """Headline powers of one timestep (kW, from the site's grid_import and it_load meters)."""

    it_kw: float
    facility_kw: float


@dataclass
class EnergyPlusStep:
    """One timestep: end time (UTC ms), per-meter values and the readings.

    ``values``: kWh over the timestep for counters (m3 for water), kW for power meters,
    canonical units for state meters, keyed by dcpue meter id.
    """

    ts_ms: int
    values: dict[str, float]
    readings: list[Reading]
    result: EnergyPlusResult
    pv_kw: float = 0.0


@dataclass
class _Raw:
    clock: tuple[int, int, int]  # EnergyPlus's month, day and end of timestep (s of the day)
    values: list[float]


@dataclass
class _Done:
    code: int
    error: BaseException | None = None


@dataclass
class _Handles:
    meters: list[list[int]] = field(default_factory=list)
    variables: list[list[int]] = field(default_factory=list)
    actuators: dict[SetpointName, list[int]] = field(default_factory=dict)
    resolved: bool = False


def _no_templates(model: Path, text: str) -> None:
    """HVACTemplate objects need ExpandObjects and Energy+.idd, which the wheel lacks."""
    if re.search(r"(?i)^\s*HVACTemplate:", text, re.M):
        raise ConfigError(
            f"twin.energyplus.model: {model} uses HVACTemplate objects; pyenergyplus-lbnl "
            "cannot expand them (no Energy+.idd): give the expanded model (expanded.idf from "
            "a full EnergyPlus install's ExpandObjects)"
        )


_SIZING_FIELDS = ("do_zone_sizing_calculation", "do_system_sizing_calculation",
                  "do_plant_sizing_calculation")
_RUN_FIELDS = ("run_simulation_for_sizing_periods", "run_simulation_for_weather_file_run_periods")


def _simulation_control(sizing: list[str]) -> dict[str, str]:
    """SimulationControl of a user's model: its sizing calculations (``sizing``: zone, system,
    plant, default No) kept; the sizing periods not simulated, the weather-file run period
    simulated (many example models switch it off: dcpue steps through it)."""
    flags = [*sizing, "No", "No", "No"][:3]
    return dict(zip(_SIZING_FIELDS, flags, strict=True)) | dict(zip(_RUN_FIELDS, ("No", "Yes"),
                                                                    strict=True))


def _schedule_file(model: Path, index: int, field: str) -> str:
    """A ``Schedule:File`` field, its file name (field 2) made absolute when it is relative to
    the model's folder: dcpue runs a copy of the model in another folder."""
    name = field.strip()
    if index != 2 or not name or Path(name).is_absolute() or not (model.parent / name).is_file():
        return field
    return str((model.parent / name).resolve())


def _resource(meter: str) -> str:
    """The resource of an EnergyPlus meter name (e.g. ``Fans:Electricity`` -> Electricity)."""
    parts = {p.lower() for p in meter.split(":")}
    return next((r for r in _RESOURCES if r.lower() in parts), "Generic")


def _standard_offset_h(zone: str, moment: datetime) -> float:
    tz = ZoneInfo(zone)
    offset = tz.utcoffset(moment) - (tz.dst(moment) or timedelta(0))
    return offset.total_seconds() / 3600.0


def site_levers(site: Site) -> tuple[dict[SetpointName, EnergyPlusActuator],
                                     dict[SetpointName, float]]:
    """The site's EnergyPlus levers (setpoint name -> actuator) and their initial values:
    ``[twin.setpoints]``, for your own model only the keys the site file sets (a lever without
    a value runs the model's own control until it is given one)."""
    cfg = site.twin.energyplus
    generated = cfg.model is None
    actuators = HALL_ACTUATORS | cfg.actuators if generated else dict(cfg.actuators)
    tw = site.twin.setpoints
    given = set(SETPOINT_FIELDS.values()) if generated else tw.model_fields_set
    initial = {
        SetpointName(name): float(getattr(tw, f)) for name, f in SETPOINT_FIELDS.items()
        if name in actuators and f in given and getattr(tw, f) is not None
    }
    return actuators, initial


class EnergyPlusPlant:
    """A site's plant played by EnergyPlus for ``days`` whole local days from ``start``.

    Levers (:attr:`levers`) are the setpoint names mapped to actuators; :meth:`step` takes new
    values for any of them, applied from the next timestep on. :meth:`run` fast-forwards like
    :meth:`dcpue.twin.simulator.Twin.run`. Use as a context manager (or call :meth:`close`).
    ``workdir`` keeps EnergyPlus's input and output files (default: a temporary folder removed
    on close); ``eplusout.sql`` there holds EnergyPlus's own totals (:func:`energyplus_totals`).
    """

    def __init__(self, site: Site, *, days: float, start: datetime | None = None,
                 setpoints: Mapping[SetpointName, float] | None = None,
                 workdir: Path | None = None) -> None:
        self.api = load_api()()
        self.site = site
        cfg = site.twin.energyplus
        self.settings = cfg
        self.step_s = 3600 // cfg.timesteps_per_hour
        gap = site.calculator.max_gap_s
        if gap < self.step_s:
            raise ConfigError(
                f"calculator.max_gap_s {gap} s is below the EnergyPlus timestep {self.step_s} s: "
                "no counter interval could be integrated (set max_gap_s >= the timestep)"
            )
        self.weather = weather_path(cfg.weather)
        with self.weather.open(encoding="latin-1") as f:
            self.location = Location.from_epw(f.readline())
        begin = (start or site.twin.start).astimezone(UTC)
        site_offset = _standard_offset_h(site.timezone, begin)
        if abs(site_offset - self.location.time_zone_h) > 1e-9:
            raise ConfigError(
                f"timezone {site.timezone} (standard UTC{site_offset:+g} h) differs from the "
                f"weather file {self.weather.name} (UTC{self.location.time_zone_h:+g} h): "
                "EnergyPlus runs in the weather file's standard time"
            )
        self.offset = timedelta(hours=self.location.time_zone_h)
        self.first_day = (begin + self.offset).date()
        self.days = max(1, math.ceil(days - 1e-9))
        last_day = self.first_day + timedelta(days=self.days - 1)
        leap = [y for y in range(self.first_day.year, last_day.year + 1) if calendar.isleap(y)
                and self.first_day <= date(y, 2, 29) <= last_day]
        if leap:
            raise ConfigError(
                f"twin.energyplus: the run {self.first_day} .. {last_day} covers 29 February "
                f"{leap[0]}, which EnergyPlus skips with a typical-year weather file: start "
                "after it or end before it"
            )
        local0 = datetime(self.first_day.year, self.first_day.month, self.first_day.day, tzinfo=UTC)
        self.start_ms = datetime_to_ms(local0 - self.offset)
        self.total_steps = self.days * 86400 // self.step_s
        generated = cfg.model is None
        self.feeds, self.unmapped = self._feeds(generated)
        self.actuators, self.setpoints = site_levers(site)
        self.setpoints.update({SetpointName(k): float(v) for k, v in (setpoints or {}).items()})
        self._check_levers(self.setpoints)
        self._own_dir = workdir is None
        self.output_dir = Path(workdir or tempfile.mkdtemp(prefix="dcpue-energyplus-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._keys: dict[SetpointName, list[str]] = {}  # actuator keys, node lists expanded
        self.model_path = self._write_model(generated)
        self._totals = [0.0] * len(self.feeds)
        self.next_step = 0  # steps handed out; the next reading is at start + next_step x step
        self._started_counters = False
        self._thread: threading.Thread | None = None
        self._out: queue.Queue = queue.Queue(maxsize=1)
        self._cmd: queue.Queue = queue.Queue(maxsize=1)
        self._waiting = False
        self._done: _Done | None = None

    # -- configuration ----------------------------------------------------------------------
    @property
    def levers(self) -> list[SetpointName]:
        """Setpoints this plant takes (those mapped to actuators)."""
        return list(self.actuators)

    @property
    def now_ms(self) -> int:
        """Timestamp of the next reading, UTC epoch ms."""
        return self.start_ms + self.next_step * self.step_s * 1000

    def _feeds(self, generated: bool) -> tuple[list[_Feed], list[str]]:
        cfg = self.settings
        unknown = sorted(set(cfg.meters) - set(self.site.meter_by_id))
        if unknown:
            raise ConfigError(f"twin.energyplus.meters: {unknown} are not meters of the site")
        feeds, unmapped = [], []
        for m in self.site.meters:
            source = cfg.meters.get(m.id) or (HALL_SOURCES.get(m.role) if generated else None)
            if m.role is MeterRole.SETPOINT or source is None:
                unmapped.append(m.id)
                continue
            feeds.append(_Feed.of(m, source))
        return feeds, unmapped

    def _check_levers(self, values: Mapping[SetpointName, float]) -> None:
        extra = sorted(str(k) for k in values if k not in self.actuators)
        if extra:
            raise ConfigError(f"setpoints {extra} have no EnergyPlus actuator "
                              f"(levers: {[str(k) for k in self.actuators]})")

    def _write_model(self, generated: bool) -> Path:
        cfg = self.settings
        meters = sorted({name for f in self.feeds for name in f.source.meters})
        mirrors = sorted({m for f in self.feeds for m in f.mirrors})
        # every key of a mapped variable, so that a wrong key's error can list the right ones
        variables = sorted({f.source.variable for f in self.feeds if f.source.variable})
        rp = run_period(self.first_day, self.days)
        if generated:
            doc = hall_model(
                self.site.twin.nominal_it_kw, self.site.twin.daily_swing, cfg.hall, self.location,
                cfg.timesteps_per_hour, self.first_day, self.days,
                self.setpoints[SetpointName.SUPPLY_AIR_TEMPERATURE],
                self.setpoints[SetpointName.CHILLED_WATER_TEMPERATURE],
            )
        elif cfg.model.suffix.lower() == ".idf":
            return self._write_idf(cfg.model, rp, meters, variables, mirrors)
        else:
            try:
                doc = json.loads(cfg.model.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"twin.energyplus.model: cannot read {cfg.model}: {exc}") from None
            _no_templates(cfg.model, "\n".join(doc))
            self._check_model(epjson_objects(doc))
            for sched in (doc.get("Schedule:File") or {}).values():
                if "file_name" in sched:
                    sched["file_name"] = _schedule_file(cfg.model, 2, sched["file_name"])
            controls = list((doc.get("SimulationControl") or {}).values())
            doc["SimulationControl"] = {"SimulationControl 1": _simulation_control(
                [controls[0].get(f, "No") for f in _SIZING_FIELDS] if controls else [])}
            doc["RunPeriod"] = rp
            doc["Timestep"] = {"Timestep 1": {"number_of_timesteps_per_hour": cfg.timesteps_per_hour}}
            doc["Output:SQLite"] = {"Output:SQLite 1": {"option_type": "Simple"}}
        doc.setdefault("Output:Variable", {}).update({
            f"{MIRROR}{name}": {"key_value": "*", "variable_name": name,
                                "reporting_frequency": "RunPeriod"}
            for name in variables
        })
        doc.setdefault("Output:Meter", {}).update({
            f"{MIRROR}{name}": {"key_name": name, "reporting_frequency": "RunPeriod"}
            for name in [*meters, *(m for m, key, *_ in mirrors if key)]
        })
        doc.setdefault("Meter:Custom", {}).update({
            mirror: {"resource_type": resource, "variable_details": [
                {"key_name": key, "output_variable_or_meter_name": name}]}
            for mirror, key, name, resource in mirrors
        })
        path = self.output_dir / "model.epJSON"
        path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        return path

    def _check_model(self, objects: list[ModelObject]) -> None:
        self._keys = {name: actuator_keys(objects, a) for name, a in self.actuators.items()}
        problems = lever_problems(objects, self.actuators)
        if problems:
            raise EnergyPlusModelError(
                f"twin.energyplus.actuators: {self.settings.model}: " + "; ".join(problems))

    def _write_idf(self, model: Path, rp: dict, meters: list[str], variables: list[str],
                   mirrors: list[tuple[str, str, str, str]]) -> Path:
        """The user's IDF with its RunPeriod, Timestep and Output:SQLite replaced by dcpue's."""
        try:
            text = model.read_text(encoding="latin-1")
        except OSError as exc:
            raise ConfigError(f"twin.energyplus.model: cannot read {model}: {exc}") from None
        lines = [re.sub(r"!.*", "", line) for line in text.splitlines()]
        _no_templates(model, "\n".join(lines))
        self._check_model(idf_objects(text))
        body = re.sub(r"(?is)((?:(?<=;)|^)\s*Schedule:File\s*,)([^;]*);",
                      lambda m: m.group(1) + ",".join(_schedule_file(model, i, f) for i, f in
                                                     enumerate(m.group(2).split(","))) + ";",
                      "\n".join(lines))
        control = re.search(r"(?is)(?:(?<=;)|^)\s*SimulationControl\s*,([^;]*);", body)
        sizing = [v.strip() or "No" for v in control.group(1).split(",")[:3]] if control else []
        body = re.sub(r"(?is)(?:(?<=;)|^)\s*(RunPeriod|Timestep|Output:SQLite|SimulationControl)"
                      r"\s*,[^;]*;", "\n", body)
        c = _simulation_control(sizing)
        r = rp["dcpue"]
        extra = [
            "SimulationControl," + ",".join(c[f] for f in (*_SIZING_FIELDS, *_RUN_FIELDS)) + ";",
            f"RunPeriod,dcpue,{r['begin_month']},{r['begin_day_of_month']},{r['begin_year']},"
            f"{r['end_month']},{r['end_day_of_month']},{r['end_year']},,No,No,No,Yes,Yes;",
            f"Timestep,{self.settings.timesteps_per_hour};",
            "Output:SQLite,Simple;",
            *(f"Output:Variable,*,{name},RunPeriod;" for name in variables),
            *(f"Output:Meter,{name},RunPeriod;"
              for name in [*meters, *(m for m, key, *_ in mirrors if key)]),
            *(f"Meter:Custom,{mirror},{resource},{key},{name};"
              for mirror, key, name, resource in mirrors),
        ]
        path = self.output_dir / "model.idf"
        path.write_text(body + "\n" + "\n".join(extra) + "\n", encoding="latin-1")
        return path

    # -- the simulation thread --------------------------------------------------------------
    def _start(self) -> None:
        api = self.api
        state = api.state_manager.new_state()
        self._state = state
        api.runtime.set_console_output_status(state, False)
        for f in self.feeds:
            if f.source.variable is not None:
                for key in f.source.keys:
                    api.exchange.request_variable(state, f.source.variable, key)
        handles = _Handles()
        failed: list[BaseException] = []

        names: dict[str, list[str]] = {}

        def near(kind: str, wanted: str) -> str:
            """`` (closest: ...)`` from EnergyPlus's list of available API data."""
            if not names:
                text = api.exchange.list_available_api_data_csv(state)
                text = text.decode("latin-1") if isinstance(text, bytes) else text
                (self.output_dir / "eplusout-api.csv").write_text(text, encoding="latin-1")
                names.update(available_names(text))
            found = close_matches(wanted, names[kind])
            return f" (closest: {'; '.join(found)})" if found else ""

        def resolve_outputs() -> list[str]:
            x, errors = api.exchange, []
            for f in self.feeds:
                if f.source.variable is not None:
                    get = x.get_variable_handle
                    hs = [get(state, f.source.variable, k) for k in f.source.keys]
                    if f.mirrors:  # read through its meters, once the variable exists
                        hs = [x.get_meter_handle(state, m) if h >= 0 else h
                              for h, (m, *_) in zip(hs, f.mirrors, strict=True)]
                    errors += [f"variable {f.source.variable!r} key {k!r} "
                               f"(twin.energyplus.meters.{f.meter.id})"
                               + near("OutputVariable", f"{f.source.variable} / {k}")
                               for k, h in zip(f.source.keys, hs, strict=True) if h < 0]
                    handles.variables.append([] if f.mirrors else hs)
                    handles.meters.append(hs if f.mirrors else [])
                else:
                    hs = [x.get_meter_handle(state, MIRROR + name) for name in f.source.meters]
                    errors += [f"meter {name!r} (twin.energyplus.meters.{f.meter.id})"
                               + near("OutputMeter", name)
                               for name, h in zip(f.source.meters, hs, strict=True) if h < 0]
                    handles.meters.append(hs)
                    handles.variables.append([])
            return errors

        def resolve_actuators() -> list[str]:
            errors = []
            for name, a in self.actuators.items():
                handles.actuators[name] = []
                for key in self._keys.get(name, a.keys):
                    h = api.exchange.get_actuator_handle(state, a.component_type,
                                                         a.control_type, key)
                    if h < 0:
                        errors.append(
                            f"actuator ({a.component_type}, {a.control_type}, {key}) "
                            f"(twin.energyplus.actuators.{name})"
                            + near("Actuator", f"{a.component_type} / {a.control_type} / {key}"))
                    handles.actuators[name].append(h)
            return errors

        def ready() -> bool:
            """Handles resolved once the API data are ready; missing names stop the run (all
            of them named at once)."""
            if failed or not api.exchange.api_data_fully_ready(state):
                return False
            if not handles.resolved:
                handles.resolved = True
                errors = resolve_actuators() + resolve_outputs()
                if errors:
                    failed.append(EnergyPlusModelError(
                        "the EnergyPlus model has no " + "; no ".join(errors)
                        + " (every name EnergyPlus offers: eplusout-api.csv in the run's folder,"
                        " EnergyPlusPlant(workdir=...))"
                    ))
                    api.runtime.stop_simulation(state)
                    return False
            return True

        def guarded(callback: Callable[[object], None]) -> Callable[[object], None]:
            """EnergyPlus cannot take a Python exception: keep it for the caller and stop."""
            def run(s) -> None:
                try:
                    callback(s)
                except BaseException as exc:
                    failed.append(exc)
                    api.runtime.stop_simulation(s)
            return run

        def actuate(s) -> None:
            if ready():
                for name, hs in handles.actuators.items():
                    if name in self.setpoints:
                        for h in hs:
                            api.exchange.set_actuator_value(s, h, self.setpoints[name])

        def report(s) -> None:
            x = api.exchange
            if x.warmup_flag(s) or x.kind_of_sim(s) != _RUN_PERIOD_WEATHER:
                return
            if not ready():
                return
            values = [  # several keys of a variable: summed, the highest for a state meter
                sum(x.get_meter_value(s, h) for h in ms) if ms else
                (max if f.meter.kind is MeterKind.STATE else sum)(
                    x.get_variable_value(s, h) for h in vs)
                for f, ms, vs in zip(self.feeds, handles.meters, handles.variables, strict=True)
            ]
            # hour (0-23) and zone timestep number: current_time() is off after HVAC substeps
            clock = (x.month(s), x.day_of_month(s),
                     x.hour(s) * 3600 + x.zone_time_step_number(s) * self.step_s)
            self._out.put(_Raw(clock, values))
            command = self._cmd.get()
            if command is None:
                api.runtime.stop_simulation(s)
            else:
                self.setpoints.update(command)

        api.runtime.callback_begin_system_timestep_before_predictor(state, guarded(actuate))
        # again after the setpoint managers, which would overwrite a node-setpoint actuator
        api.runtime.callback_after_predictor_after_hvac_managers(state, guarded(actuate))
        api.runtime.callback_end_zone_timestep_after_zone_reporting(state, guarded(report))
        args = ["-w", str(self.weather), "-d", str(self.output_dir), str(self.model_path)]

        def work() -> None:
            try:
                code = api.runtime.run_energyplus(state, args)
                self._out.put(_Done(code, failed[0] if failed else None))
            except BaseException as exc:  # handed to the caller's thread
                self._out.put(_Done(-1, exc))

        self._thread = threading.Thread(target=work, name="energyplus", daemon=True)
        self._thread.start()

    def _next_raw(self) -> _Raw:
        while True:
            try:
                item = self._out.get(timeout=1.0)
                break
            except queue.Empty:
                if self._thread is None or not self._thread.is_alive():
                    raise EnergyPlusError("the EnergyPlus thread ended without a result") from None
        if isinstance(item, _Done):
            self._done = item
            if item.error is not None:
                raise item.error
            if item.code != 0:
                raise EnergyPlusError(f"EnergyPlus exited with code {item.code}: {self._errors()}")
            if self.next_step == 0:
                raise EnergyPlusModelError(
                    f"EnergyPlus finished without simulating a timestep of the weather-file run "
                    f"period {self.first_day} + {self.days} days: {self._errors()}")
            raise EnergyPlusError("the EnergyPlus run period is over")
        self._waiting = True
        return item

    def _errors(self) -> str:
        err = self.output_dir / "eplusout.err"
        if not err.is_file():
            return "no eplusout.err"
        lines = err.read_text(encoding="latin-1").splitlines()
        severe = [i for i, line in enumerate(lines) if "** Severe" in line or "** Fatal" in line]
        picked = [lines[j].strip() for i in severe[:4] for j in (i, i + 1) if j < len(lines)]
        return " | ".join(picked) or (lines[-1] if lines else "empty eplusout.err")

    # -- advancing --------------------------------------------------------------------------
    def step(self, setpoints: Mapping[SetpointName, float] | None = None) -> EnergyPlusStep:
        """Advance one timestep with ``setpoints`` (others unchanged); its readings (the first
        step's start with the counters' readings at the start instant)."""
        if setpoints:
            self._check_levers(setpoints)
        if self.next_step >= self.total_steps:
            raise EnergyPlusError(f"the run covers {self.days} days ({self.total_steps} steps)")
        sp = {SetpointName(k): float(v) for k, v in (setpoints or {}).items()}
        if self._thread is None:
            self.setpoints.update(sp)
            self._start()
        else:
            self._cmd.put(sp)
            self._waiting = False
        raw = self._next_raw()
        ts_ms = self.now_ms + self.step_s * 1000
        # EnergyPlus's clock (local standard time, 24:00 ends a day) must be dcpue's.
        local = ms_to_datetime(ts_ms) + self.offset
        day = (local - timedelta(seconds=1)).date()
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        expected = (day.month, day.day, round((local - midnight).total_seconds()))
        if raw.clock != expected:
            raise EnergyPlusError(f"EnergyPlus reached (month, day, s) {raw.clock}, dcpue "
                                  f"expected {expected}")
        self.next_step += 1
        first = self._initial_readings()
        step = self._readings(ts_ms, raw)
        step.readings[:0] = first
        return step

    def _initial_readings(self) -> list[Reading]:
        """Counter readings at the start instant (0 in each counter's unit), once."""
        if self._started_counters:
            return []
        self._started_counters = True
        return [Reading(self.start_ms, f.meter.id, f.meter.quantity, 0.0, f.meter.unit)
                for f in self.feeds if f.meter.kind is MeterKind.COUNTER]

    def _readings(self, ts_ms: int, raw: _Raw) -> EnergyPlusStep:
        dt = float(self.step_s)
        values: dict[str, float] = {}
        readings = []
        for i, (f, v) in enumerate(zip(self.feeds, raw.values, strict=True)):
            m = f.meter
            u = unit(m.unit)
            if m.kind is MeterKind.COUNTER:
                amount = v if m.role is MeterRole.WATER else (
                    v / _J_PER_KWH if f.source_unit == "J" else v * dt / _J_PER_KWH)
                self._totals[i] += amount
                value = (self._totals[i] - u.offset) / u.scale
                if m.rollover:
                    value = math.fmod(value, m.rollover)
                values[m.id] = amount
            elif m.kind is MeterKind.POWER:
                kw = v / dt / 1000.0 if f.source_unit == "J" else v / 1000.0
                values[m.id] = kw
                value = (kw - u.offset) / u.scale
            else:
                src = unit(f.source_unit)
                canonical = v * src.scale + src.offset
                values[m.id] = canonical
                value = (canonical - u.offset) / u.scale
            readings.append(Reading(ts_ms, m.id, m.quantity, value, m.unit))
        for m in self.site.meters_with(MeterRole.SETPOINT):
            if m.setpoint in self.setpoints:
                u = unit(m.unit)
                readings.append(Reading(ts_ms, m.id, m.quantity,
                                        (self.setpoints[m.setpoint] - u.offset) / u.scale, m.unit))
        return EnergyPlusStep(ts_ms, values, readings, self._headline(values))

    def _headline(self, values: dict[str, float]) -> EnergyPlusResult:
        per_h = 3600.0 / self.step_s

        def kw(role: MeterRole) -> float:
            ids = [f.meter.id for f in self.feeds if f.meter.role is role]
            kinds = {f.meter.id: f.meter.kind for f in self.feeds}
            return sum(values[i] * (per_h if kinds[i] is MeterKind.COUNTER else 1.0) for i in ids)

        return EnergyPlusResult(kw(MeterRole.IT_LOAD), kw(MeterRole.GRID_IMPORT))

    def run(self, days: float, *, setpoints: Mapping[SetpointName, float | np.ndarray] | None = None,
            chunk_days: float = 30.0,
            progress: Callable[[int], object] | None = None) -> Iterator[ReadingColumns]:
        """Fast-forward ``days``, yielding readings chunk by chunk (``chunk_days`` each).

        ``setpoints`` values may be arrays with one value per step of the run.
        """
        total = round(days * 86400 / self.step_s)
        per_chunk = max(1, round(chunk_days * 86400 / self.step_s))
        arrays = {}
        for k, v in (setpoints or {}).items():
            a = np.asarray(v, float)
            if a.ndim and len(a) != total:
                raise ValueError(f"setpoints.{k} has {len(a)} values for {total} steps")
            arrays[SetpointName(k)] = np.broadcast_to(a, (total,))
        done = 0
        while done < total:
            n = min(per_chunk, total - done)
            rows: list[Reading] = []
            for i in range(done, done + n):
                rows += self.step({k: float(a[i]) for k, a in arrays.items()}).readings
            done += n
            if progress is not None:
                progress(n)
            yield ReadingColumns.from_readings(rows)

    def close(self) -> None:
        """Stop EnergyPlus (if running), free its state and remove a temporary folder."""
        if self._thread is not None:
            if self._waiting:
                self._cmd.put(None)
                self._waiting = False
            while self._done is None:
                try:
                    item = self._out.get(timeout=_TIMEOUT_S)
                except queue.Empty:
                    break
                if isinstance(item, _Done):
                    self._done = item
                else:
                    self._cmd.put(None)
            self._thread.join(timeout=_TIMEOUT_S)
            self.api.state_manager.delete_state(self._state)
            self._thread = None
        if self._own_dir:
            shutil.rmtree(self.output_dir, ignore_errors=True)

    def __enter__(self) -> EnergyPlusPlant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def energyplus_totals(sql_path: Path) -> dict[str, float]:
    """EnergyPlus's own run-period meter totals (J, m3 for water) from its ``eplusout.sql``, by
    meter name: every mapped meter, and for every mapped energy or water variable its mirror
    ``DCPUE <KEY> <VARIABLE>`` (one per key, in upper case as EnergyPlus names custom meters)."""
    import sqlite3

    with sqlite3.connect(f"file:{sql_path}?mode=ro", uri=True) as db:
        rows = db.execute(  # a meter the model also requests is reported twice: once here
            "SELECT Name, SUM(Value) FROM (SELECT DISTINCT d.Name, r.TimeIndex, r.Value "
            "FROM ReportData r JOIN ReportDataDictionary d "
            "ON r.ReportDataDictionaryIndex = d.ReportDataDictionaryIndex "
            "WHERE d.ReportingFrequency = 'Run Period' AND d.IsMeter = 1) GROUP BY Name"
        ).fetchall()
    return {name: float(total) for name, total in rows}


def make_plant(site: Site, *, seed: int | None = None, start: datetime | None = None,
               days: float = 1.0) -> Twin | EnergyPlusPlant:
    """The plant ``[twin] engine`` names: the native :class:`Twin` or EnergyPlus for ``days``."""
    if site.twin.engine == "energyplus":
        return EnergyPlusPlant(site, days=days, start=start)
    return Twin(site, seed=seed, start=start)


class EnergyPlusFeed:
    """The EnergyPlus plant as the daemon's twin feed (the interface of
    :class:`dcpue.service.demo.TwinFeed`: ``twin.start_ms``, ``step_ms``, ``now_ms``,
    ``next(n)``, ``save()``), resumed at the position a previous run stored: EnergyPlus replays
    the run silently up to it, so counters continue. Commissioning sweeps and faults are the
    native twin's only."""

    STATE_START = "service.energyplus_start_ms"
    STATE_NEXT = "service.energyplus_next_ms"

    def __init__(self, site: Site, store: Store, *, days: float,
                 start: datetime | None = None) -> None:
        saved_start = store.get_state(self.STATE_START)
        if saved_start is not None:
            start = ms_to_datetime(int(saved_start))
        self.twin = EnergyPlusPlant(site, days=days, start=start)
        self.store = store
        self.step_ms = self.twin.step_s * 1000
        saved = store.get_state(self.STATE_NEXT)
        while saved is not None and self.twin.now_ms < int(saved):
            self.twin.step()

    @property
    def now_ms(self) -> int:
        """Time of the next reading (UTC ms)."""
        return self.twin.now_ms

    def next(self, n: int) -> ReadingColumns:
        """Readings of the next ``n`` timesteps."""
        return ReadingColumns.from_readings(
            [r for _ in range(n) for r in self.twin.step().readings]
        )

    def save(self) -> None:
        self.store.set_state(self.STATE_START, str(self.twin.start_ms))
        self.store.set_state(self.STATE_NEXT, str(self.now_ms))

    def close(self) -> None:
        self.twin.close()
