"""Training frames: the store's readings resampled to one row per step.

A frame row holds, for one bucket ``[ts, ts + step)``:

==========================  ======  =====================================================
column                      unit    from
==========================  ======  =====================================================
``it_kw``                   kW      IT meters (counter increase / step, or mean power)
``dry_bulb_c``              degC    outdoor temperature, bucket mean
``relative_humidity_pct``   %       outdoor humidity, bucket mean
``wet_bulb_c``              degC    psychrolib ``GetTWetBulbFromRelHum`` at site pressure
``dew_point_c``             degC    psychrolib ``GetTDewPointFromRelHum``
setpoints (see SETPOINTS)   various setpoint meters, bucket mean
``cooling_kw``              kW      chiller + CRAH + pump + cooling-tower meters
``facility_kw``             kW      IT + cooling + UPS/transformer losses + lighting
``rack_inlet_max_c``        degC    maximum over rack-inlet sensors, bucket maximum
``pue``                     1       facility_kw / it_kw
==========================  ======  =====================================================

Facility power is the sum of the data-center boundary's sub-meters, not the utility incomer, so
on-site PV, batteries and loads outside the boundary (EV chargers) do not enter the plant model.
Counter powers of the first bucket use the last reading before the window as baseline. A bucket
is kept only when every required meter delivered at least ``min_coverage`` of its usual
number of samples per bucket (the median over the window) and every value is finite.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psychrolib
from dcpue.config import Meter, MeterKind, MeterRole, SetpointName, Site
from dcpue.core.store import Store

psychrolib.SetUnitSystem(psychrolib.SI)

#: Setpoint name (site vocabulary) -> frame column (twin ``Setpoints`` field), in a fixed order.
SETPOINTS: dict[SetpointName, str] = {
    SetpointName.SUPPLY_AIR_TEMPERATURE: "supply_air_c",
    SetpointName.CHILLED_WATER_TEMPERATURE: "chilled_water_c",
    SetpointName.CRAH_FAN_SPEED: "crah_fan_speed_pct",
    SetpointName.PUMP_FREQUENCY: "pump_frequency_hz",
    SetpointName.RUNNING_UNITS: "running_units",
}
SETPOINT_COLUMNS: tuple[str, ...] = tuple(SETPOINTS.values())
#: Conditions the optimizer does not control: IT load and outdoor air.
CONDITION_COLUMNS: tuple[str, ...] = (
    "it_kw", "dry_bulb_c", "relative_humidity_pct", "wet_bulb_c", "dew_point_c",
)
FEATURE_COLUMNS: tuple[str, ...] = CONDITION_COLUMNS + SETPOINT_COLUMNS
TARGET_COLUMNS: tuple[str, ...] = ("cooling_kw", "facility_kw", "rack_inlet_max_c")
FRAME_COLUMNS: tuple[str, ...] = (*FEATURE_COLUMNS, *TARGET_COLUMNS, "pue")

_OVERHEAD_ROLES = (
    MeterRole.CHILLER, MeterRole.CRAH, MeterRole.PUMP, MeterRole.COOLING_TOWER,
    MeterRole.UPS_LOSS, MeterRole.TRANSFORMER_LOSS, MeterRole.LIGHTING,
)
_COOLING_ROLES = (MeterRole.CHILLER, MeterRole.CRAH, MeterRole.PUMP, MeterRole.COOLING_TOWER)


class FrameError(ValueError):
    """The site lacks a meter the frame needs, or the window holds no usable data."""


@dataclass(frozen=True, slots=True)
class TrainingFrame:
    """Resampled rows (index: bucket start, UTC ms) and how many buckets were dropped."""

    data: pd.DataFrame
    step_s: int
    total_rows: int
    dropped_rows: int

    def __len__(self) -> int:
        return len(self.data)

    @property
    def step_h(self) -> float:
        return self.step_s / 3600.0


def wet_bulb_c(dry_bulb_c: np.ndarray, rh_pct: np.ndarray, pressure_pa: float) -> np.ndarray:
    """Thermodynamic wet-bulb temperature in degC (ASHRAE Handbook Fundamentals 2017 ch. 1,
    via psychrolib); NaN where an input is NaN. Relative humidity in %, pressure in Pa."""
    out = np.full(len(dry_bulb_c), np.nan)
    for i, (t, rh) in enumerate(zip(dry_bulb_c, rh_pct, strict=True)):
        if np.isfinite(t) and np.isfinite(rh):
            out[i] = psychrolib.GetTWetBulbFromRelHum(
                float(t), float(np.clip(rh, 0.1, 100.0)) / 100.0, pressure_pa
            )
    return out


def dew_point_c(dry_bulb_c: np.ndarray, rh_pct: np.ndarray) -> np.ndarray:
    """Dew-point temperature in degC (psychrolib ``GetTDewPointFromRelHum``)."""
    out = np.full(len(dry_bulb_c), np.nan)
    for i, (t, rh) in enumerate(zip(dry_bulb_c, rh_pct, strict=True)):
        if np.isfinite(t) and np.isfinite(rh):
            out[i] = psychrolib.GetTDewPointFromRelHum(
                float(t), float(np.clip(rh, 0.1, 100.0)) / 100.0
            )
    return out


def site_pressure_pa(site: Site) -> float:
    """Standard-atmosphere pressure at the site's altitude in Pa (ASHRAE Fundamentals eq. 3)."""
    return float(psychrolib.GetStandardAtmPressure(site.altitude_m))


def _top_level(meters: Iterable[Meter]) -> list[Meter]:
    """Meters whose parent is not itself among them (sub-meters would count twice)."""
    meters = list(meters)
    ids = {m.id for m in meters}
    return [m for m in meters if m.parent not in ids]


def _one(site: Site, role: MeterRole) -> Meter:
    found = site.meters_with(role)
    if not found:
        raise FrameError(f"site {site.id} has no {role} meter")
    return found[0]


def setpoint_meters(site: Site) -> dict[SetpointName, Meter]:
    """The site's setpoint meter per setpoint name (first one wins)."""
    out: dict[SetpointName, Meter] = {}
    for m in site.meters_with(MeterRole.SETPOINT):
        assert m.setpoint is not None
        out.setdefault(m.setpoint, m)
    return out


class _Grid:
    """Bucket grid of one frame: reads a meter's per-bucket values and sample counts."""

    def __init__(self, store: Store, start_ms: int, end_ms: int, step_ms: int) -> None:
        self.store, self.start, self.end, self.step = store, start_ms, end_ms, step_ms
        self.index = np.arange(start_ms, end_ms, step_ms, dtype=np.int64)
        self.coverage = np.ones(len(self.index))

    def _aligned(self, meter: str, agg: str) -> np.ndarray:
        series = self.store.bucketed([meter], self.start, self.end, self.step, agg).get(meter)
        out = np.full(len(self.index), np.nan)
        if series is not None:
            out[(series.ts_ms - self.start) // self.step] = series.value
        return out

    def _count(self, meter: str) -> None:
        counts = np.nan_to_num(self._aligned(meter, "count"))
        usual = np.median(counts[counts > 0]) if np.any(counts > 0) else 1.0
        self.coverage = np.minimum(self.coverage, np.minimum(counts / usual, 1.0))

    def value(self, meter: str, agg: str = "mean") -> np.ndarray:
        self._count(meter)
        return self._aligned(meter, agg)

    def power_kw(self, meter: Meter) -> np.ndarray:
        """Mean power per bucket in kW: counter increase between consecutive buckets' last
        samples divided by the step, with the configured rollover added to negative steps
        (a negative step without rollover is a reset and gives NaN); power meters are averaged."""
        if meter.kind is MeterKind.POWER:
            return self.value(meter.id)
        last = self.value(meter.id, "last")
        delta = np.diff(last, prepend=np.nan)
        if meter.rollover is not None:
            delta = np.where(delta < 0, delta + meter.rollover, delta)
        delta[delta < 0] = np.nan
        return delta / (self.step / 3_600_000.0)

    def power_sum(self, meters: Iterable[Meter]) -> np.ndarray:
        total = np.zeros(len(self.index))
        for m in _top_level(meters):
            total = total + self.power_kw(m)
        return total


def build_frame(
    store: Store,
    site: Site,
    start_ms: int,
    end_ms: int,
    step_s: int | None = None,
    min_coverage: float | None = None,
) -> TrainingFrame:
    """Resample ``[start_ms, end_ms)`` of the store into a :class:`TrainingFrame`.

    ``step_s`` and ``min_coverage`` default to the site's ``[optimizer]`` settings. Raises
    :class:`FrameError` if a required meter is missing from the site.
    """
    cfg = site.optimizer
    step_s = step_s or cfg.step_s
    min_coverage = cfg.min_coverage if min_coverage is None else min_coverage
    # one extra bucket before the window gives the first bucket's counters their baseline
    grid = _Grid(store, int(start_ms) - step_s * 1000, int(end_ms), step_s * 1000)
    it_meters = site.meters_with(MeterRole.IT_LOAD)
    sp_meters = setpoint_meters(site)
    missing = [n.value for n in SETPOINTS if n not in sp_meters]
    if missing:
        raise FrameError(f"site {site.id} has no setpoint meter for {', '.join(missing)}")
    inlet = site.meters_with(MeterRole.RACK_INLET_TEMPERATURE)
    if not inlet:
        raise FrameError(f"site {site.id} has no rack_inlet_temperature meter")

    cols: dict[str, np.ndarray] = {"it_kw": grid.power_sum(it_meters)}
    cols["dry_bulb_c"] = grid.value(_one(site, MeterRole.OUTDOOR_TEMPERATURE).id)
    cols["relative_humidity_pct"] = grid.value(_one(site, MeterRole.OUTDOOR_HUMIDITY).id)
    for name, column in SETPOINTS.items():
        cols[column] = grid.value(sp_meters[name].id)
    cols["cooling_kw"] = grid.power_sum(
        m for m in site.meters if m.role in _COOLING_ROLES
    )
    overhead = grid.power_sum(m for m in site.meters if m.role in _OVERHEAD_ROLES)
    cols["facility_kw"] = cols["it_kw"] + overhead
    cols["rack_inlet_max_c"] = np.fmax.reduce([grid.value(m.id, "max") for m in inlet])

    frame = pd.DataFrame(cols, index=pd.Index(grid.index, name="ts_ms")).iloc[1:]
    keep = (grid.coverage[1:] >= min_coverage) & np.isfinite(frame.to_numpy()).all(axis=1)
    keep &= frame["it_kw"].to_numpy() > 0
    frame = frame.loc[keep].copy()
    pressure = site_pressure_pa(site)
    db, rh = frame["dry_bulb_c"].to_numpy(), frame["relative_humidity_pct"].to_numpy()
    frame["wet_bulb_c"] = wet_bulb_c(db, rh, pressure)
    frame["dew_point_c"] = dew_point_c(db, rh)
    frame["pue"] = frame["facility_kw"] / frame["it_kw"]
    frame = frame[list(FRAME_COLUMNS)]
    total = len(grid.index) - 1
    return TrainingFrame(frame, step_s, total, int(total - keep.sum()))
