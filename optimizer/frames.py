"""Training frames: the store's readings resampled to one row per step.

A frame row holds, for one bucket ``[ts, ts + step)``:

==========================  ======  =====================================================
column                      unit    from
==========================  ======  =====================================================
``it_kw``                   kW      IT meters (energy in the bucket / step, see below)
``dry_bulb_c``              degC    outdoor temperature, bucket mean
``relative_humidity_pct``   %       outdoor humidity, bucket mean
``wet_bulb_c``              degC    psychrolib ``GetTWetBulbFromRelHum`` at site pressure
``dew_point_c``             degC    psychrolib ``GetTDewPointFromRelHum``
setpoints (see SETPOINTS)   various setpoint meters, bucket mean (mean over instances)
``cooling_off_share``       1       cooling meters off in the step before (STAGE_COLUMN)
``cooling_kw``              kW      meters of every cooling role (``COOLING_ROLES``)
``facility_kw``             kW      IT + cooling + UPS/transformer losses + lighting
``rack_inlet_max_c``        degC    maximum over rack-inlet sensors, bucket maximum
``pue``                     1       facility_kw / it_kw
==========================  ======  =====================================================

Levers: a setpoint type with several meters (one supply-air setpoint per air handler) gets one
column per instance, ``<column>@<meter id>`` (:func:`instance_columns`), each its own lever that
the optimizer proposes separately; the type's column is then their mean (a derived input). A
type the site does not meter is held at :func:`unmetered_value`, so training works with any
subset of levers.

Facility power is the sum of the data-center boundary's sub-meters, not the utility incomer, so
on-site PV, batteries and loads outside the boundary (EV chargers) do not enter the plant model.
Energy meters go through the one counter/energy engine (:func:`dcpue.metrics.balance.stored_meter_intervals`
with the site's calculator rules and recorded meter swaps, and
:func:`dcpue.metrics.energy.bucket_amounts`, as PUE and carbon do): a bucket's power is the
energy the engine places in ``[ts, ts + step)`` divided by the measured time, its coverage the engine's
measured share, and a bucket touched by a counter reset gets coverage 0. A bucket is kept only
when every energy meter covered at least ``min_coverage`` of it, every state meter delivered at
least ``min_coverage`` of its usual number of samples per bucket (the median over the window),
and every value is finite. Only complete buckets inside ``[start, end)`` are built.

State samples (temperatures, setpoints) are taken as end-stamped, like counter readings and
meters' demand-interval averages: a sample stamped ``ts`` describes the time up to ``ts``, so
bucket ``[t, t + step)`` aggregates the samples stamped in ``(t, t + step]``. A setpoint
changed at ``t`` thus lands in the same bucket as the energy used under it.

Training-data guard: a row where an energy meter's bucket power exceeds the meter's
``max_power_kw``, or else the engine's plausibility ceiling of its bucket powers over the frame
(:func:`dcpue.metrics.energy.derived_ceiling_kw`: the larger of the calculator's
``ceiling_margin`` x the median and 2 x the 99th percentile), is dropped and counted
(``implausible``), so a counter event the engine reads as a rollover or a jump (a torn read, a
reset from the upper half of a counter's range) can never become a training row of megawatts.
A load that is mostly off (a chiller under an economizer, lights at night, a staged
evaporative cooler) keeps its busy hours: 10 x its median alone dropped them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
import psychrolib
from dcpue.config import Meter, MeterRole, SetpointName, Site
from dcpue.config.topology import COOLING_ROLES
from dcpue.core.store import Store
from dcpue.metrics.balance import (
    FACILITY_GROUPS,
    BalanceTopology,
    counter_rules,
    meter_intervals,
    read_meter,
    stored_meter_intervals,
)
from dcpue.metrics.energy import bucket_amounts, derived_ceiling_kw

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
#: The plant's staging as the meters showed it one step before the row (1): the share of the
#: site's cooling energy meters (top level) with a ``max_power_kw`` that were off (a cooling
#: tower, a loop's pumps, an evaporative stage, a chiller under an economizer): below
#: :data:`OFF_SHARE_OF_RATING` of that rating (a meter without one is not judged; a site
#: without any has 0 throughout). Staging follows the plant's own history (on the DOE 2-zone
#: economizer model a tower stayed off for hours after a setpoint step had unloaded its
#: chiller), which the row's weather and setpoints do not show; a model input only where it
#: varies in the training data (:attr:`dcpue.optimizer.models.Scales.staged`).
STAGE_COLUMN = "cooling_off_share"
#: A cooling meter drawing less than this share of its ``max_power_kw`` counts as off (an
#: evaporative cooler's idle pump, 0.1 kW of a 30 kW rating, is off; its stage running is on).
OFF_SHARE_OF_RATING = 0.02
#: Conditions the optimizer does not control: IT load and outdoor air, and the plant's
#: staging (:data:`STAGE_COLUMN`).
CONDITION_COLUMNS: tuple[str, ...] = (
    "it_kw", "dry_bulb_c", "relative_humidity_pct", "wet_bulb_c", "dew_point_c", STAGE_COLUMN,
)
#: The model's raw inputs of every site (the staging column is added where it varies).
FEATURE_COLUMNS: tuple[str, ...] = (
    tuple(c for c in CONDITION_COLUMNS if c != STAGE_COLUMN) + SETPOINT_COLUMNS)
TARGET_COLUMNS: tuple[str, ...] = ("cooling_kw", "facility_kw", "rack_inlet_max_c")
FRAME_COLUMNS: tuple[str, ...] = (*FEATURE_COLUMNS, STAGE_COLUMN, *TARGET_COLUMNS, "pue")

#: Sub-metered loads inside the boundary besides IT: cooling (every role of
#: :data:`dcpue.config.topology.COOLING_ROLES`), distribution losses and lighting.
OVERHEAD_ROLES = COOLING_ROLES | {MeterRole.UPS_LOSS, MeterRole.TRANSFORMER_LOSS, MeterRole.LIGHTING}


class FrameError(ValueError):
    """The site lacks a meter the frame needs, or the window holds no usable data."""


@dataclass(frozen=True, slots=True)
class TrainingFrame:
    """Resampled rows (index: bucket start, UTC ms) and how many buckets were dropped."""

    data: pd.DataFrame
    step_s: int
    total_rows: int
    dropped_rows: int
    #: Counter resets (torn reads, replacements) per meter: their buckets were dropped.
    resets: dict[str, int] = field(default_factory=dict)
    #: Buckets dropped per meter by the plausibility guard (see the module docstring).
    implausible: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def step_h(self) -> float:
        return self.step_s / 3600.0


#: psychrolib solves wet bulb and dew point iteratively (about 0.3 ms a row); the daemon's
#: frames (nightly retrain over weeks, the drift and proposal frames each simulated day) ask
#: for the same rows again and again, so each (dry bulb, RH, pressure) is solved once.
_PSYCHRO_CACHE = 1 << 17
_wet_bulb = lru_cache(maxsize=_PSYCHRO_CACHE)(psychrolib.GetTWetBulbFromRelHum)
_dew_point = lru_cache(maxsize=_PSYCHRO_CACHE)(psychrolib.GetTDewPointFromRelHum)


def wet_bulb_c(dry_bulb_c: np.ndarray, rh_pct: np.ndarray, pressure_pa: float) -> np.ndarray:
    """Thermodynamic wet-bulb temperature in degC (ASHRAE Handbook Fundamentals 2017 ch. 1,
    via psychrolib); NaN where an input is NaN. Relative humidity in %, pressure in Pa."""
    out = np.full(len(dry_bulb_c), np.nan)
    for i, (t, rh) in enumerate(zip(dry_bulb_c.tolist(), _rh_share(rh_pct), strict=True)):
        if math.isfinite(t) and math.isfinite(rh):
            out[i] = _wet_bulb(t, rh, pressure_pa)
    return out


def dew_point_c(dry_bulb_c: np.ndarray, rh_pct: np.ndarray) -> np.ndarray:
    """Dew-point temperature in degC (psychrolib ``GetTDewPointFromRelHum``)."""
    out = np.full(len(dry_bulb_c), np.nan)
    for i, (t, rh) in enumerate(zip(dry_bulb_c.tolist(), _rh_share(rh_pct), strict=True)):
        if math.isfinite(t) and math.isfinite(rh):
            out[i] = _dew_point(t, rh)
    return out


def _rh_share(rh_pct: np.ndarray) -> list[float]:
    """Relative humidity in % as a share, clipped to 0.1-100 % (psychrolib's domain)."""
    return (np.clip(np.asarray(rh_pct, dtype=np.float64), 0.1, 100.0) / 100.0).tolist()


def site_pressure_pa(site: Site) -> float:
    """Standard-atmosphere pressure at the site's altitude in Pa (ASHRAE Fundamentals eq. 3)."""
    return float(psychrolib.GetStandardAtmPressure(site.altitude_m))


def _top_level(meters: Iterable[Meter]) -> list[Meter]:
    """Meters whose parent is not itself among them (sub-meters would count twice)."""
    meters = list(meters)
    ids = {m.id for m in meters}
    return [m for m in meters if m.parent not in ids]


def cooling_meters(site: Site) -> list[Meter]:
    """The site's cooling energy meters (every role of ``COOLING_ROLES``), top level."""
    return _top_level(m for m in site.meters if m.role in COOLING_ROLES)


def _one(site: Site, role: MeterRole) -> Meter:
    found = site.meters_with(role)
    if not found:
        raise FrameError(f"site {site.id} has no {role} meter")
    return found[0]


def setpoint_meters(site: Site) -> dict[SetpointName, list[Meter]]:
    """The site's setpoint meters per setpoint name (several instances: e.g. one supply-air
    setpoint per air handler)."""
    out: dict[SetpointName, list[Meter]] = {}
    for m in site.meters_with(MeterRole.SETPOINT):
        assert m.setpoint is not None
        out.setdefault(m.setpoint, []).append(m)
    return out


def instance_column(column: str, meter_id: str) -> str:
    """Frame column of one instance of a setpoint type: ``<column>@<meter id>``."""
    return f"{column}@{meter_id}"


def instance_columns(site: Site) -> dict[SetpointName, list[str]]:
    """Per setpoint type metered by two or more meters, the frame column of each instance
    (in site order); types with at most one meter are absent (their column is the lever)."""
    return {name: [instance_column(SETPOINTS[name], m.id) for m in meters]
            for name, meters in setpoint_meters(site).items() if len(meters) > 1}


def unmetered_value(site: Site, name: SetpointName) -> float:
    """The value a frame carries for a lever the site does not meter: the lever is held (never
    searched) at its declared value, ``min`` (declare ``min = max`` = what the plant runs at;
    with a range the midpoint stands in)."""
    b = getattr(site.optimizer.setpoints, name.value)
    return float(b.min + b.max) / 2.0


class _Grid:
    """Bucket grid of one frame: per-bucket values of state meters (store aggregates) and mean
    powers of energy meters (the counter/energy engine), with each bucket's worst coverage."""

    def __init__(self, store: Store, site: Site, start_ms: int, end_ms: int, step_ms: int) -> None:
        self.store, self.site = store, site
        self.start, self.end, self.step = start_ms, end_ms, step_ms
        self.index = np.arange(start_ms, end_ms - step_ms + 1, step_ms, dtype=np.int64)
        self.coverage = np.ones(len(self.index))
        self.max_gap_ms = site.calculator.max_gap_s * 1000.0
        self.events: dict[str, int] = {}
        self.implausible: dict[str, int] = {}
        self._kw: dict[str, np.ndarray] = {}  # a meter in two sums is read and counted once

    def _aligned(self, meter: str, agg: str) -> np.ndarray:
        # end-stamped samples: bucket [t, t + step) takes the samples stamped in (t, t + step]
        start = self.start + 1
        series = self.store.bucketed([meter], start, self.end + 1, self.step, agg).get(meter)
        out = np.full(len(self.index), np.nan)
        if series is not None:
            k = (series.ts_ms - start) // self.step
            inside = k < len(self.index)
            out[k[inside]] = series.value[inside]
        return out

    def _count(self, meter: str) -> None:
        counts = np.nan_to_num(self._aligned(meter, "count"))
        usual = np.median(counts[counts > 0]) if np.any(counts > 0) else 1.0
        self.coverage = np.minimum(self.coverage, np.minimum(counts / usual, 1.0))

    def value(self, meter: str, agg: str = "mean") -> np.ndarray:
        self._count(meter)
        return self._aligned(meter, agg)

    def power_kw(self, meter: Meter) -> np.ndarray:
        """Mean power per bucket in kW (energy over the measured part of the bucket) from :func:`dcpue.metrics.balance.meter_intervals` and
        :func:`dcpue.metrics.energy.bucket_amounts` (the one counter/energy engine: rollover,
        reset, jitter and gap rules live there). The bucket's coverage is the engine's measured
        share; a bucket touched by a counter reset (its energy is unknown: a torn read, a
        replaced meter) gets coverage 0, so it is dropped and counted, never trained on."""
        hit = self._kw.get(meter.id)
        if hit is not None:
            return hit
        pad = int(self.max_gap_ms)
        lo, hi = self.start - pad, self.end + pad + 1
        if isinstance(self.store, Store):  # the engine's store reader: swaps, power fill-in
            iv = stored_meter_intervals(self.site, self.store, meter, lo, hi)
        else:  # in-memory recent readings (LiveState): same rules, recorded swaps not applied
            iv = meter_intervals(meter, *read_meter(self.store, meter, lo, hi), self.max_gap_ms,
                                 settings=self.site.calculator)
        amount, measured = bucket_amounts(iv, self.start, self.step, len(self.index))
        share = measured / self.step
        if np.any(iv.reset):
            edges = self.start + self.step * np.arange(len(self.index) + 1, dtype=np.int64)
            for t0, t1 in zip(iv.t0[iv.reset], iv.t1[iv.reset], strict=True):
                lo = max(int(np.searchsorted(edges, t0, side="right")) - 1, 0)
                hi = int(np.searchsorted(edges, t1, side="left"))
                share[lo:hi] = 0.0
            self.events[meter.id] = self.events.get(meter.id, 0) + int(np.count_nonzero(iv.reset))
        with np.errstate(invalid="ignore", divide="ignore"):
            kw = np.where(measured > 0, amount / (measured / 3_600_000.0), np.nan)
        positive = kw[np.isfinite(kw) & (kw > 0) & (share > 0)]
        if len(positive) >= 4:
            ceiling = meter.max_power_kw or derived_ceiling_kw(
                positive, counter_rules(self.site.calculator, meter))
            wild = np.isfinite(kw) & (kw > ceiling) & (share > 0)
            if wild.any():
                share[wild] = 0.0
                self.implausible[meter.id] = int(np.count_nonzero(wild))
        self.coverage = np.minimum(self.coverage, share)
        kw.flags.writeable = False
        self._kw[meter.id] = kw
        return kw

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
    *,
    utility: bool = False,
) -> TrainingFrame:
    """Resample the complete buckets of ``[start_ms, end_ms)`` into a :class:`TrainingFrame`.

    ``step_s`` and ``min_coverage`` default to the site's ``[optimizer]`` settings. With
    ``utility`` and grid meters on the site, a ``utility_kw`` column holds the balance's
    facility power (grid import - export + PV + battery - outside boundary, the utility meter
    view of ISO/IEC 30134-2). Raises :class:`FrameError` if a required meter is missing.
    """
    cfg = site.optimizer
    step_s = step_s or cfg.step_s
    min_coverage = cfg.min_coverage if min_coverage is None else min_coverage
    grid = _Grid(store, site, int(start_ms), int(end_ms), step_s * 1000)
    it_meters = site.meters_with(MeterRole.IT_LOAD)
    if not it_meters:
        raise FrameError(f"site {site.id} has no it_load meter")
    sp_meters = setpoint_meters(site)
    inlet = site.meters_with(MeterRole.RACK_INLET_TEMPERATURE)
    if not inlet:
        raise FrameError(f"site {site.id} has no rack_inlet_temperature meter")

    cols: dict[str, np.ndarray] = {"it_kw": grid.power_sum(it_meters)}
    cols["dry_bulb_c"] = grid.value(_one(site, MeterRole.OUTDOOR_TEMPERATURE).id)
    cols["relative_humidity_pct"] = grid.value(_one(site, MeterRole.OUTDOOR_HUMIDITY).id)
    extra = list(FRAME_COLUMNS)
    for name, column in SETPOINTS.items():
        meters = sp_meters.get(name, [])
        instances = [grid.value(m.id) for m in meters]
        cols[column] = (np.mean(instances, axis=0) if instances
                        else np.full(len(grid.index), unmetered_value(site, name)))
        if len(meters) > 1:
            for m, values in zip(meters, instances, strict=True):
                cols[instance_column(column, m.id)] = values
                extra.append(instance_column(column, m.id))
    coolers = cooling_meters(site)
    cooling = [grid.power_kw(m) for m in coolers]
    cols["cooling_kw"] = np.sum(cooling, axis=0) if cooling else np.zeros(len(grid.index))
    cols[STAGE_COLUMN] = (off_share(cooling, [m.max_power_kw for m in coolers]) if cooling
                          else np.zeros(len(grid.index)))
    overhead = grid.power_sum(m for m in site.meters if m.role in OVERHEAD_ROLES)
    cols["facility_kw"] = cols["it_kw"] + overhead
    cols["rack_inlet_max_c"] = np.fmax.reduce([grid.value(m.id, "max") for m in inlet])
    if utility and site.meters_with(MeterRole.GRID_IMPORT):
        cols["utility_kw"] = _utility_kw(grid, site)
        extra.append("utility_kw")

    frame = pd.DataFrame(cols, index=pd.Index(grid.index, name="ts_ms"))
    keep = (grid.coverage >= min_coverage) & np.isfinite(frame.to_numpy()).all(axis=1)
    keep &= frame["it_kw"].to_numpy() > 0
    frame = frame.loc[keep].copy()
    pressure = site_pressure_pa(site)
    db, rh = frame["dry_bulb_c"].to_numpy(), frame["relative_humidity_pct"].to_numpy()
    frame["wet_bulb_c"] = wet_bulb_c(db, rh, pressure)
    frame["dew_point_c"] = dew_point_c(db, rh)
    frame["pue"] = frame["facility_kw"] / frame["it_kw"]
    frame = frame[extra]
    total = len(grid.index)
    return TrainingFrame(frame, step_s, total, int(total - keep.sum()), dict(grid.events),
                         dict(grid.implausible))


def off_share(cooling_kw: list[np.ndarray], rating_kw: Iterable[float | None]) -> np.ndarray:
    """:data:`STAGE_COLUMN` on a regular bucket grid: per bucket the share of the meters in
    ``cooling_kw`` (one array of bucket powers, kW, per meter) with a rating (``rating_kw``,
    their ``max_power_kw``; None: not judged) that were off, below
    :data:`OFF_SHARE_OF_RATING` x the rating, in the bucket before (the first bucket: its
    own; a bucket without data counts as running). Zeros where no meter has a rating."""
    rated = [(kw, r) for kw, r in zip(cooling_kw, rating_kw, strict=True) if r is not None]
    if not rated:
        return np.zeros(len(cooling_kw[0]))
    with np.errstate(invalid="ignore"):
        off = np.mean([kw < OFF_SHARE_OF_RATING * r for kw, r in rated], axis=0)
    return np.concatenate([off[:1], off[:-1]])


#: Sign of each facility group in the balance's facility formula (ISO/IEC 30134-2).
_FACILITY_SIGNS = {
    "grid_import": 1.0, "grid_export": -1.0, "pv_generation": 1.0, "battery_discharge": 1.0,
    "battery_charge": -1.0, "outside_boundary": -1.0,
}


def _utility_kw(grid: _Grid, site: Site) -> np.ndarray:
    """Facility power per bucket as the utility boundary sees it (the balance's groups)."""
    topology = BalanceTopology.from_site(site)
    total = np.zeros(len(grid.index))
    for group in FACILITY_GROUPS:
        for mid in topology.groups[group]:
            total = total + _FACILITY_SIGNS[group] * grid.power_kw(topology.meters[mid])
    return total


def lever_columns(data: pd.DataFrame) -> list[str]:
    """The columns of a frame's data that a lever sets: the setpoint types and their
    instances (``<column>@<meter id>``)."""
    return [c for c in data.columns if c.split("@", 1)[0] in SETPOINT_COLUMNS]


def response_lag(data: pd.DataFrame, step_s: int, response: str = "rack_inlet_max_c",
                 max_lag: int = 3, settled_share: float = 0.9) -> int:
    """How many frame rows ``response`` takes to follow a lever change, learned from the
    step responses of the data (the exploration sweep): 0 when it responds within the row.

    Least squares over consecutive rows (``step_s`` apart) of the response's change on every
    lever's changes in the same row and the ``max_lag`` rows before, ``d y_k ~ sum_j b_j
    d x_{k-j}``; the lag is the fewest rows ``L`` after which the levers' cumulative responses
    ``b_0 + ... + b_L`` to a typical change (one standard deviation of the lever's row-to-row
    changes) miss at most ``1 - settled_share`` of their total, summed over the levers (EnergyPlus's ITE inlet,
    an internal gain computed from the supply-air node at the start of each zone timestep:
    1 row at 15-min frames; the native twin: 0). 0 when the data hold too few changes."""
    levers = [c for c in lever_columns(data) if data[c].nunique() > 1]
    ts = data.index.to_numpy()
    y = data[response].to_numpy()
    # rows k with max_lag + 1 consecutive predecessors
    run = np.concatenate([[False], np.diff(ts) == step_s * 1000])
    ok = np.ones(len(ts), bool)
    for j in range(max_lag + 1):
        ok &= np.concatenate([np.zeros(j, bool), run[: len(ts) - j]])
    rows = np.flatnonzero(ok)
    if not levers or len(rows) < 10 * (max_lag + 1) * len(levers):
        return 0
    design = np.column_stack([
        np.diff(data[c].to_numpy(), prepend=np.nan)[rows - j]
        for c in levers for j in range(max_lag + 1)])
    dy = np.diff(y, prepend=np.nan)[rows]
    beta = np.linalg.lstsq(design - design.mean(axis=0), dy - dy.mean(), rcond=None)[0]
    # each lever's cumulative response to a typical change of it (response units)
    scale = np.nanstd(design[:, :: max_lag + 1], axis=0)[:, None]
    cumulative = np.cumsum(beta.reshape(len(levers), max_lag + 1), axis=1) * scale
    total = cumulative[:, -1:]
    missing = np.abs(cumulative - total).sum(axis=0)
    return int(np.argmax(missing <= (1.0 - settled_share) * np.abs(total).sum()))


def settled_rows(data: pd.DataFrame, step_s: int, lag: int) -> np.ndarray:
    """Mask of the rows whose response has settled: no lever changed in the row or the
    ``lag - 1`` rows before it (a change is a lever differing from the previous row's value,
    ``step_s`` earlier; after a gap the row counts as settled). All True for ``lag`` 0."""
    keep = np.ones(len(data), bool)
    if lag <= 0 or len(data) < 2:
        return keep
    ts = data.index.to_numpy()
    values = data[lever_columns(data)].to_numpy()
    changed = np.concatenate([[False], (np.diff(ts) == step_s * 1000)
                              & np.any(np.diff(values, axis=0) != 0, axis=1)])
    for j in range(lag):
        keep &= ~np.concatenate([np.zeros(j, bool), changed[: len(data) - j]])
    return keep
