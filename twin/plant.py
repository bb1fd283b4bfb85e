"""Steady-state physics of a chilled-water data hall: pure functions, floats or NumPy arrays.

:func:`evaluate` maps outdoor conditions, IT load and the five cooling setpoints to the electrical
power of every subsystem (kW) and the hottest rack inlet (degC). Everything broadcasts, so one call
can evaluate a year of minutes or a grid of candidate setpoints. No I/O.

Model (each step is a named function below; sources and constants in docs/twin.md):

* UPS loss = rating x (a0 + a1 f + a2 f^2), f = IT / rating (the usual no-load / proportional /
  square loss split of double-conversion UPS efficiency curves).
* CRAH fans: power = units x (fixed + rated x s^3), airflow = units x unit airflow x s
  (fan affinity laws, s = speed / 100 %).
* Rack inlet max = effective supply air + mixing / r + server dT x max(0, 1 - r), where
  r = airflow / airflow needed to carry the IT heat at the server dT (hot-aisle recirculation),
  and supply air is at least chilled water + coil approach.
* Heat load on the chilled water = IT + UPS loss + lighting + CRAH fan heat.
* Chilled-water return = chilled water + coil fraction x (return air - chilled water), return
  air = supply air + IT heat / (air heat capacity x airflow): warmer supply air, warmer return
  water, less chilled-water flow (variable primary pumping) and more economizer hours.
* Condenser water leaves the tower at wet bulb + approach; the approach grows with heat
  rejection and as the condenser pump slows (less flow); the condenser range grows as 1/flow.
* Water-side economizer: a plate heat exchanger pre-cools the chilled-water return to
  condenser water + HX approach; the fraction of the chilled-water dT it covers is free cooling.
* Chiller COP = Carnot fraction x T_evap / (T_cond - T_evap) (kelvin) with evaporator at
  chilled water - 1.5 K and condenser at leaving condenser water + 1.5 K; a part-load overhead.
* Pumps (affinity law): chilled-water pumps x (flow / design)^3 + condenser pumps x (f / 50 Hz)^3.
* Tower fans ~ (heat rejected / design)^3; make-up water = evaporation x C / (C - 1), with
  evaporation = heat rejected / latent heat of vaporisation of water.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
import psychrolib
from dcpue.config.twin import TwinSettings

psychrolib.SetUnitSystem(psychrolib.SI)

#: Volumetric heat capacity of air, kJ/(m3 K) (1.2 kg/m3 x 1.006 kJ/(kg K)).
AIR_RHO_CP = 1.2 * 1.006
#: Latent heat of vaporisation of water at ~30 degC, kJ/kg.
LATENT_HEAT_KJ_KG = 2430.0
#: Density of water, kg/m3.
WATER_DENSITY = 1000.0
#: Nominal pump frequency of a 50 Hz VFD, Hz.
FULL_SPEED_HZ = 50.0
#: Lowest fan speed fraction used in the physics (fans stall below it).
MIN_FAN_FRACTION = 0.1
#: Evaporator and condenser refrigerant approaches, K.
EVAP_APPROACH_K = 1.5
COND_APPROACH_K = 1.5
#: Upper bound of any chiller COP (-).
MAX_COP = 15.0
#: Lowest chilled-water flow (fraction of design) and temperature rise (K) of the coils.
MIN_CHW_FLOW = 0.3
MIN_CHW_RISE_K = 1.0

Number = float | np.ndarray


@dataclass
class Setpoints:
    """The levers the optimizer acts on; each field a float or an array (one value per case).

    Attributes:
        supply_air_c: CRAH supply-air temperature, degC.
        chilled_water_c: chilled-water supply temperature, degC.
        crah_fan_speed_pct: CRAH fan speed, % of maximum.
        pump_frequency_hz: condenser-water pump VFD frequency, Hz (50 = full speed).
        running_units: CRAH units in service (integer-valued).
    """

    supply_air_c: Number
    chilled_water_c: Number
    crah_fan_speed_pct: Number
    pump_frequency_hz: Number
    running_units: Number

    def at(self, index: slice | int | np.ndarray) -> Setpoints:
        """The setpoints of some cases: array fields are indexed, scalar fields kept."""
        return Setpoints(
            **{f.name: _take(getattr(self, f.name), index) for f in fields(self)}
        )


@dataclass
class Conditions:
    """What the plant cannot choose: IT load and outdoor air.

    Attributes:
        it_kw: IT electrical load, kW (all of it becomes heat in the room).
        dry_bulb_c: outdoor dry-bulb temperature, degC.
        relative_humidity_pct: outdoor relative humidity, %.
        pressure_pa: station pressure, Pa.
        wet_bulb_c: outdoor wet bulb, degC; computed with psychrolib when None.
    """

    it_kw: Number
    dry_bulb_c: Number
    relative_humidity_pct: Number
    pressure_pa: Number
    wet_bulb_c: Number | None = None

    def at(self, index: slice | int | np.ndarray) -> Conditions:
        """The conditions of some cases (array fields indexed, scalars kept)."""
        return Conditions(
            **{f.name: _take(getattr(self, f.name), index) for f in fields(self)}
        )


@dataclass
class PlantResult:
    """Electrical powers in kW, temperatures in degC, water in m3/h, fractions 0..1."""

    chiller_kw: Number
    crah_kw: Number
    pump_kw: Number
    tower_kw: Number
    ups_loss_kw: Number
    lighting_kw: Number
    cooling_kw: Number  # chiller + crah + pump + tower
    facility_kw: Number  # it + cooling + ups_loss + lighting
    rack_inlet_max_c: Number
    wet_bulb_c: Number
    free_cooling_fraction: Number
    it_kw: Number = 0.0
    supply_air_c: Number = 0.0  # achieved supply air (setpoint or coil limit, whichever higher)
    chiller_cop: Number = 0.0
    condenser_water_c: Number = 0.0  # leaving the tower
    heat_load_kw: Number = 0.0  # heat the chilled water removes
    makeup_water_m3_h: Number = 0.0

    @property
    def pue(self) -> Number:
        """Instantaneous PUE = facility / IT (-)."""
        return np.asarray(self.facility_kw) / np.asarray(self.it_kw)


@dataclass(frozen=True)
class PlantParams:
    """Resolved plant data (all sizes in kW, m3/s, K) and setpoint bounds.

    Build it with :meth:`from_settings`; ``bounds`` maps each :class:`Setpoints` field to its
    (min, max); ``inlet_limit_c`` is the ASHRAE recommended maximum rack inlet.
    """

    nominal_it_kw: float
    ups_rated_kw: float
    ups_loss_coefficients: tuple[float, float, float]
    lighting_kw: float
    crah_units: int
    crah_unit_airflow_m3_s: float
    crah_fan_kw: float
    crah_unit_fixed_kw: float
    server_delta_t_k: float
    mixing_k: float
    coil_approach_k: float
    coil_water_fraction: float
    cooling_capacity_kw: float
    chw_delta_t_k: float
    tower_approach_k: float
    condenser_range_k: float
    economizer_approach_k: float
    chiller_carnot_fraction: float
    chiller_min_lift_k: float
    chiller_part_load_k: float
    chw_pump_kw: float
    cw_pump_kw: float
    tower_fan_kw: float
    cycles_of_concentration: float
    default_setpoints: Setpoints
    inlet_limit_c: float = 27.0
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, twin: TwinSettings) -> PlantParams:
        """Resolve sizes left unset in the config from the nominal IT load."""
        d = twin.plant
        nominal = twin.nominal_it_kw
        units = d.crah_units or max(
            1, math.ceil(1.4 * nominal / (AIR_RHO_CP * d.server_delta_t_k) / d.crah_unit_airflow_m3_s)
        )
        capacity = d.cooling_capacity_factor * nominal
        sp = twin.setpoints
        return cls(
            nominal_it_kw=nominal,
            ups_rated_kw=d.ups_rated_kw or 1.25 * nominal,
            ups_loss_coefficients=(d.ups_no_load, d.ups_proportional, d.ups_square),
            lighting_kw=0.01 * nominal if d.lighting_kw is None else d.lighting_kw,
            crah_units=units,
            **{name: getattr(d, name) for name in _DESIGN_FIELDS},
            cooling_capacity_kw=capacity,
            chw_pump_kw=d.chw_pump_fraction * capacity,
            cw_pump_kw=d.cw_pump_fraction * capacity,
            tower_fan_kw=d.tower_fan_fraction * capacity,
            default_setpoints=Setpoints(
                supply_air_c=sp.supply_air_c,
                chilled_water_c=sp.chilled_water_c,
                crah_fan_speed_pct=sp.crah_fan_speed_pct,
                pump_frequency_hz=sp.pump_frequency_hz,
                running_units=float(min(sp.running_units or units, units)),
            ),
            bounds={
                "supply_air_c": (16.0, 27.0),
                "chilled_water_c": (6.0, 20.0),
                "crah_fan_speed_pct": (30.0, 100.0),
                "pump_frequency_hz": (25.0, 50.0),
                "running_units": (1.0, float(units)),
            },
        )


#: PlantParams fields taken unchanged from :class:`dcpue.config.twin.PlantDesign`.
_DESIGN_FIELDS = (
    "crah_unit_airflow_m3_s", "crah_fan_kw", "crah_unit_fixed_kw", "server_delta_t_k", "mixing_k",
    "coil_approach_k", "coil_water_fraction", "chw_delta_t_k", "tower_approach_k",
    "condenser_range_k", "economizer_approach_k", "chiller_carnot_fraction", "chiller_min_lift_k",
    "chiller_part_load_k", "cycles_of_concentration",
)


def _take(value: Number | None, index: slice | int | np.ndarray) -> Number | None:
    return value[index] if isinstance(value, np.ndarray) and value.ndim else value


def wet_bulb_c(dry_bulb_c: Number, relative_humidity_pct: Number, pressure_pa: Number) -> Number:
    """Thermodynamic wet-bulb temperature, degC (psychrolib, SI, ASHRAE Handbook 2017 ch. 1)."""
    rh = np.clip(np.asarray(relative_humidity_pct, dtype=float) / 100.0, 0.0, 1.0)
    out = _wet_bulb(np.asarray(dry_bulb_c, dtype=float), rh, np.asarray(pressure_pa, dtype=float))
    return float(out) if np.ndim(out) == 0 else out.astype(float)


_wet_bulb = np.vectorize(psychrolib.GetTWetBulbFromRelHum, otypes=[float])


def ups_loss_kw(it_kw: Number, params: PlantParams) -> Number:
    """UPS loss, kW: rating x (no-load + proportional x f + square x f^2), f = IT / rating."""
    a0, a1, a2 = params.ups_loss_coefficients
    f = np.asarray(it_kw) / params.ups_rated_kw
    return params.ups_rated_kw * (a0 + a1 * f + a2 * f * f)


def crah_power_kw(units: Number, speed_pct: Number, params: PlantParams) -> Number:
    """CRAH power, kW = units x (fixed + rated fan power x (speed / 100)^3) (fan affinity law)."""
    s = np.maximum(np.asarray(speed_pct) / 100.0, MIN_FAN_FRACTION)
    return units * (params.crah_unit_fixed_kw + params.crah_fan_kw * s**3)


def airflow_m3_s(units: Number, speed_pct: Number, params: PlantParams) -> Number:
    """CRAH airflow, m3/s = units x unit airflow x speed fraction (fan affinity law)."""
    return units * params.crah_unit_airflow_m3_s * np.maximum(np.asarray(speed_pct) / 100.0, MIN_FAN_FRACTION)


def rack_inlet_max_c(
    supply_air_c: Number, units: Number, speed_pct: Number, it_kw: Number, params: PlantParams
) -> Number:
    """Hottest rack inlet, degC: supply air + mixing / r + server dT x max(0, 1 - r).

    r = delivered airflow / airflow the IT heat needs at the design server dT (both m3/s).
    """
    airflow = airflow_m3_s(units, speed_pct, params)
    needed = np.maximum(np.asarray(it_kw), 1e-6) / (AIR_RHO_CP * params.server_delta_t_k)
    r = airflow / needed
    return supply_air_c + params.mixing_k / r + params.server_delta_t_k * np.maximum(0.0, 1.0 - r)


def chiller_cop(chilled_water_c: Number, condenser_leaving_c: Number, params: PlantParams) -> Number:
    """Full-load chiller COP (-): Carnot fraction x T_evap / lift, lift >= the minimum lift."""
    t_evap = np.asarray(chilled_water_c) - EVAP_APPROACH_K + 273.15
    lift = np.maximum(
        np.asarray(condenser_leaving_c) + COND_APPROACH_K + 273.15 - t_evap,
        params.chiller_min_lift_k,
    )
    return np.minimum(params.chiller_carnot_fraction * t_evap / lift, MAX_COP)


def pump_power_kw(pump_frequency_hz: Number, chw_flow_ratio: Number, params: PlantParams) -> Number:
    """Pumps, kW, by the pump affinity law (power ~ flow^3 ~ speed^3).

    Chilled-water pumps x max(flow / design flow, 0.3)^3 (variable primary flow, minimum 30 %)
    + condenser pumps x (f / 50 Hz)^3.
    """
    chw = params.chw_pump_kw * np.maximum(np.asarray(chw_flow_ratio), MIN_CHW_FLOW) ** 3
    return chw + params.cw_pump_kw * (np.asarray(pump_frequency_hz) / FULL_SPEED_HZ) ** 3


def chilled_water_return_c(
    chilled_water_c: Number, supply_air_c: Number, units: Number, speed_pct: Number,
    it_kw: Number, params: PlantParams,
) -> Number:
    """Chilled-water return, degC: the coil's water leaves part-way to the return-air temperature.

    Return air = supply air + IT heat / (air heat capacity x airflow) (bypass air lowers it);
    return water = chilled water + coil water fraction x (return air - chilled water). A warmer
    supply air thus warms the return water: less chilled-water flow and more economizer hours.
    """
    return_air = supply_air_c + np.asarray(it_kw) / (AIR_RHO_CP * airflow_m3_s(units, speed_pct, params))
    chw = np.asarray(chilled_water_c)
    return chw + np.maximum(params.coil_water_fraction * (return_air - chw), MIN_CHW_RISE_K)


def evaluate(
    cond: Conditions, sp: Setpoints, params: PlantParams, *, chiller_degradation: Number = 0.0
) -> PlantResult:
    """Electrical power of each subsystem for the given conditions and setpoints.

    ``chiller_degradation`` = 0.15 makes the chiller draw 15 % more power for the same duty.
    Inputs broadcast against each other; ``facility_kw`` is exactly IT + cooling + UPS loss +
    lighting.
    """
    it = np.asarray(cond.it_kw, dtype=float)
    wb = (
        wet_bulb_c(cond.dry_bulb_c, cond.relative_humidity_pct, cond.pressure_pa)
        if cond.wet_bulb_c is None
        else np.asarray(cond.wet_bulb_c, dtype=float)
    )
    units = np.clip(np.round(np.asarray(sp.running_units, dtype=float)), 1, params.crah_units)
    speed = np.clip(np.asarray(sp.crah_fan_speed_pct, dtype=float), 0.0, 100.0)
    chw = np.asarray(sp.chilled_water_c, dtype=float)
    pump_hz = np.clip(np.asarray(sp.pump_frequency_hz, dtype=float), 1.0, 60.0)

    ups = ups_loss_kw(it, params)
    lighting = np.full_like(it, params.lighting_kw)
    crah = crah_power_kw(units, speed, params)
    supply = np.maximum(np.asarray(sp.supply_air_c, dtype=float), chw + params.coil_approach_k)
    inlet = rack_inlet_max_c(supply, units, speed, it, params)

    heat = it + ups + lighting + crah
    load_ratio = heat / params.cooling_capacity_kw
    chw_return = chilled_water_return_c(chw, supply, units, speed, it, params)
    chw_flow = (heat / (chw_return - chw)) / (params.cooling_capacity_kw / params.chw_delta_t_k)
    flow = pump_hz / FULL_SPEED_HZ
    approach = params.tower_approach_k * np.sqrt(np.maximum(load_ratio, 0.2) / flow)
    tower_out = wb + approach
    free = np.clip(
        (chw_return - (tower_out + params.economizer_approach_k)) / (chw_return - chw), 0.0, 1.0
    )
    chiller_heat = heat * (1.0 - free)
    condenser_leaving = tower_out + params.condenser_range_k * load_ratio / flow
    cop = chiller_cop(chw, condenser_leaving, params)
    running = chiller_heat > 0.0
    overhead = np.where(running, params.chiller_part_load_k * params.cooling_capacity_kw, 0.0)
    chiller = (
        (chiller_heat + overhead)
        / (cop * (1.0 + params.chiller_part_load_k))
        * (1.0 + np.asarray(chiller_degradation, dtype=float))
    )
    pump = pump_power_kw(pump_hz, chw_flow, params)
    rejected = heat + chiller
    tower = params.tower_fan_kw * np.clip(rejected / (1.25 * params.cooling_capacity_kw), 0.1, 1.0) ** 3
    makeup = (
        rejected * 3600.0 / LATENT_HEAT_KJ_KG / WATER_DENSITY
        * params.cycles_of_concentration / (params.cycles_of_concentration - 1.0)
    )

    cooling = chiller + crah + pump + tower
    return PlantResult(
        chiller_kw=chiller,
        crah_kw=crah,
        pump_kw=pump,
        tower_kw=tower,
        ups_loss_kw=ups,
        lighting_kw=lighting,
        cooling_kw=cooling,
        facility_kw=it + cooling + ups + lighting,
        rack_inlet_max_c=inlet,
        wet_bulb_c=wb,
        free_cooling_fraction=free,
        it_kw=it,
        supply_air_c=supply,
        chiller_cop=cop,
        condenser_water_c=tower_out,
        heat_load_kw=heat,
        makeup_water_m3_h=makeup,
    )
