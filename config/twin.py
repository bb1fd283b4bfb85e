"""Digital-twin settings (owned by dcpue.twin): the simulated hall, its plant, weather and microgrid.

Every field has a default, so a site file without a ``[twin]`` block is valid: an 800 kW hall in
the Greensboro TMY3 climate. Units are in the field names (kW, kWh, degC, K, m3/s, %, Hz); plant
sizes left unset (``None``) are derived from ``nominal_it_kw`` by :class:`dcpue.twin.plant.PlantParams`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from dcpue.config.base import Section
from dcpue.config.topology import SetpointName
from pydantic import Field, field_validator, model_validator


class CounterReset(Section):
    """Restart one meter's cumulative counter from zero, once, ``at_day`` days after the start."""

    meter: str
    at_day: float = Field(gt=0)


class TwinSetpoints(Section):
    """The setpoints the twin runs with until something (the optimizer) changes them.

    The defaults are a conventionally run plant. ``running_units`` unset means all CRAH units.
    """

    supply_air_c: float = 20.0
    chilled_water_c: float = 10.0
    crah_fan_speed_pct: float = Field(default=80.0, gt=0, le=100)
    pump_frequency_hz: float = Field(default=50.0, gt=0, le=60)
    running_units: int | None = Field(default=None, ge=1)


class PlantDesign(Section):
    """Design data of the cooling plant and electrical losses (sources in docs/twin.md)."""

    #: UPS rating in kW; unset = 1.25 x nominal IT.
    ups_rated_kw: float | None = Field(default=None, gt=0)
    #: UPS loss = rating x (no_load + proportional x f + square x f^2), f = IT / rating.
    ups_no_load: float = Field(default=0.02, ge=0)
    ups_proportional: float = Field(default=0.03, ge=0)
    ups_square: float = Field(default=0.015, ge=0)
    #: Lighting in kW; unset = 1 % of nominal IT.
    lighting_kw: float | None = Field(default=None, ge=0)
    #: CRAH units installed; unset = enough for 1.4 x the airflow nominal IT needs.
    crah_units: int | None = Field(default=None, ge=1)
    crah_unit_airflow_m3_s: float = Field(default=10.0, gt=0)
    crah_fan_kw: float = Field(default=9.0, gt=0)
    #: Per running unit, independent of speed (controls, drives, humidifier standby).
    crah_unit_fixed_kw: float = Field(default=2.0, ge=0)
    #: Air temperature rise across the servers at design.
    server_delta_t_k: float = Field(default=12.0, gt=0)
    #: Hot-spot mixing at the hottest rack inlet when airflow just matches demand.
    mixing_k: float = Field(default=2.0, ge=0)
    #: Supply air cannot be colder than chilled water + this coil approach.
    coil_approach_k: float = Field(default=5.0, ge=0)
    #: Chilled-water return = chilled water + this fraction x (return air - chilled water).
    coil_water_fraction: float = Field(default=0.35, gt=0, lt=1)
    #: Cooling plant capacity / nominal IT.
    cooling_capacity_factor: float = Field(default=1.3, gt=1)
    #: Chilled-water temperature rise at design capacity (defines the design flow).
    chw_delta_t_k: float = Field(default=6.0, gt=0)
    #: Cooling-tower approach to wet bulb at design heat rejection and full condenser flow.
    tower_approach_k: float = Field(default=3.5, gt=0)
    #: Condenser-water range at design heat rejection and full condenser flow.
    condenser_range_k: float = Field(default=5.5, gt=0)
    #: Plate heat exchanger (water-side economizer) approach.
    economizer_approach_k: float = Field(default=1.5, ge=0)
    #: Chiller COP as a fraction of the Carnot COP between evaporator and condenser.
    chiller_carnot_fraction: float = Field(default=0.42, gt=0, le=1)
    chiller_min_lift_k: float = Field(default=8.0, gt=0)
    #: Part-load overhead of a running chiller, as a fraction of capacity.
    chiller_part_load_k: float = Field(default=0.05, ge=0)
    #: Pump, tower-fan and rated powers as fractions of cooling capacity (kW/kW).
    chw_pump_fraction: float = Field(default=0.012, ge=0)
    cw_pump_fraction: float = Field(default=0.018, ge=0)
    tower_fan_fraction: float = Field(default=0.012, ge=0)
    #: Cooling-tower cycles of concentration (make-up = evaporation x C / (C - 1)).
    cycles_of_concentration: float = Field(default=4.0, gt=1)


class PVSettings(Section):
    """PV array (PVWatts): used only when the site has ``pv_generation`` meters."""

    dc_kw: float = Field(default=4000.0, ge=0)
    #: Inverter AC rating; unset = dc_kw / 1.2.
    ac_kw: float | None = Field(default=None, gt=0)
    tilt_deg: float = Field(default=20.0, ge=0, le=90)
    azimuth_deg: float = Field(default=180.0, ge=0, lt=360)
    gamma_pdc: float = Field(default=-0.0035, le=0)
    #: System losses (soiling, wiring, mismatch), % of DC power.
    losses_pct: float = Field(default=14.0, ge=0, lt=100)


class BatterySettings(Section):
    """Battery and its rule dispatch: used only when the site has battery meters.

    Charges from PV surplus, or from the grid in the local ``charge_hours``; discharges in the
    local ``discharge_hours`` (evening peak). Hours are ``[start, end)`` in local time.
    """

    energy_kwh: float = Field(default=4000.0, gt=0)
    power_kw: float = Field(default=2000.0, gt=0)
    round_trip_efficiency: float = Field(default=0.9, gt=0, le=1)
    min_soc_pct: float = Field(default=10.0, ge=0, lt=100)
    max_soc_pct: float = Field(default=95.0, gt=0, le=100)
    initial_soc_pct: float = Field(default=50.0, ge=0, le=100)
    charge_hours: tuple[int, int] = (0, 6)
    discharge_hours: tuple[int, int] = (17, 21)

    @model_validator(mode="after")
    def _soc_order(self) -> BatterySettings:
        if not self.min_soc_pct <= self.initial_soc_pct <= self.max_soc_pct:
            raise ValueError("need min_soc_pct <= initial_soc_pct <= max_soc_pct")
        for lo, hi in (self.charge_hours, self.discharge_hours):
            if not 0 <= lo < hi <= 24:
                raise ValueError(f"hours ({lo}, {hi}) must satisfy 0 <= start < end <= 24")
        return self


class HallDesign(Section):
    """Design of the data hall dcpue generates for EnergyPlus (docs/energyplus.md).

    IT design power = ``nominal_it_kw`` x (1 + ``daily_swing``) at full CPU loading and the
    design inlet; CPU power and server airflow grow by ``cpu_power_per_k`` and ``airflow_per_k``
    (fractions per K) of the inlet above ``design_inlet_c``.
    """

    design_inlet_c: float = 20.0
    cpu_power_per_k: float = Field(default=0.01, ge=0, lt=0.2)
    airflow_per_k: float = Field(default=0.03, ge=0, lt=0.2)
    server_fan_fraction: float = Field(default=0.1, ge=0, lt=1)
    server_delta_t_k: float = Field(default=12.0, gt=0)
    recirculation_fraction: float = Field(default=0.1, ge=0, le=0.5)
    ups_efficiency: float = Field(default=0.95, gt=0, le=1)
    airflow_margin: float = Field(default=1.15, ge=1)
    fan_pressure_pa: float = Field(default=600.0, gt=0)
    #: Design point of the CRAH coil (its size); the running setpoints are [twin.setpoints].
    supply_air_c: float = 18.0
    chilled_water_c: float = 10.0
    #: Air-side economizer (differential enthalpy, up to 100 % outdoor air below this dry bulb).
    economizer: bool = True
    economizer_max_c: float = 24.0
    cooling_capacity_factor: float = Field(default=1.3, ge=1)
    chw_delta_t_k: float = Field(default=6.0, gt=0)
    chiller_cop: float = Field(default=5.5, gt=0)
    condenser_range_k: float = Field(default=5.5, gt=0)
    tower_approach_k: float = Field(default=3.5, ge=0)
    tower_fan_fraction: float = Field(default=0.012, ge=0)
    pump_head_pa: float = Field(default=200_000.0, gt=0)
    lighting_fraction: float = Field(default=0.01, ge=0)
    floor_w_m2: float = Field(default=1500.0, gt=0)
    envelope_r_m2k_w: float = Field(default=2.0, gt=0)


class EnergyPlusSource(Section):
    """Where one dcpue meter's readings come from in EnergyPlus.

    ``meter``: one EnergyPlus meter name (or several, summed), energy in J per timestep.
    ``variable`` + ``key``: an output variable, in ``unit`` (default: J for counter meters,
    m3 for water counters, W for power meters, the canonical unit for state meters); several
    keys are summed (counters, power) or give the highest (state meters: the hottest inlet).
    """

    meter: str | list[str] | None = None
    variable: str | None = None
    key: str | list[str] | None = None
    unit: Literal["J", "W", "m3", "degC", "%", "W/m2"] | None = None

    @model_validator(mode="after")
    def _one(self) -> EnergyPlusSource:
        if (self.meter is None) == (self.variable is None):
            raise ValueError("give exactly one of meter or variable")
        if self.variable is not None and not self.key:
            raise ValueError("a variable needs its key (e.g. 'Environment' or an object name)")
        if self.meter is not None and self.unit not in (None, "J"):
            raise ValueError("EnergyPlus meters report J; unit must be J or unset")
        return self

    @property
    def keys(self) -> list[str]:
        return [] if self.key is None else [self.key] if isinstance(self.key, str) else self.key

    @property
    def meters(self) -> list[str]:
        return [] if self.meter is None else [self.meter] if isinstance(self.meter, str) else self.meter


class EnergyPlusActuator(Section):
    """An EnergyPlus actuator (component type, control type, key) that takes a setpoint, e.g.
    ``{ component_type = "Schedule:Compact", control_type = "Schedule Value", key = "SAT" }``.

    ``key`` may be a list: every actuator named takes the same value (e.g. the supply-air
    nodes of several air handlers). A ``System Node Setpoint`` key may name a ``NodeList`` of
    the model: each node in it is actuated.
    """

    component_type: str
    control_type: str
    key: str | list[str]

    @property
    def keys(self) -> list[str]:
        return [self.key] if isinstance(self.key, str) else list(self.key)


class EnergyPlusSettings(Section):
    """``[twin.energyplus]``: the model, its weather and the mapping to dcpue meters and levers.

    ``model`` unset: dcpue generates a data hall from ``[twin]`` and ``hall``. ``weather``: an
    EPW file shipped with pyenergyplus-lbnl (by name) or a path. ``meters`` maps dcpue meter
    ids to sources (default for the generated model: by role); ``actuators`` maps setpoint
    names to actuators (default for the generated model: supply air and chilled water).
    """

    model: Path | None = None
    weather: str = "USA_IL_Chicago-OHare.Intl.AP.725300_TMY3.epw"
    timesteps_per_hour: int = Field(default=4, ge=1, le=60)
    meters: dict[str, EnergyPlusSource] = Field(default_factory=dict)
    actuators: dict[SetpointName, EnergyPlusActuator] = Field(default_factory=dict)
    hall: HallDesign = HallDesign()

    @model_validator(mode="after")
    def _step(self) -> EnergyPlusSettings:
        if 60 % self.timesteps_per_hour:
            raise ValueError(f"timesteps_per_hour {self.timesteps_per_hour} must divide 60")
        return self


class TwinSettings(Section):
    """Parameters of the simulated data hall.

    ``weather`` names a TMY file shipped in ``pvlib/data`` (``723170TYA.CSV`` Greensboro TMY3,
    ``12839.tm2`` Miami TMY2) or a path to one. IT load = ``nominal_it_kw`` x (1 + daily swing
    - weekend dip + noise), clipped to ``[trough_factor, peak_factor]`` x nominal.
    ``other_load_kw`` is the peak of ``other_load`` meters (EV chargers), daytime-shaped.
    ``engine = "energyplus"`` runs ``[twin.energyplus]`` instead (docs/energyplus.md); its step
    is ``3600 / timesteps_per_hour`` s and ``step_s`` is ignored.
    """

    engine: Literal["native", "energyplus"] = "native"
    seed: int = 0
    step_s: int = Field(default=60, ge=1, le=3600)
    start: datetime = datetime(2023, 1, 1, tzinfo=UTC)
    weather: str = "723170TYA.CSV"
    nominal_it_kw: float = Field(default=800.0, gt=0)
    peak_factor: float = Field(default=1.1, ge=1)
    trough_factor: float = Field(default=0.85, gt=0, le=1)
    daily_swing: float = Field(default=0.05, ge=0, lt=1)
    weekend_dip: float = Field(default=0.03, ge=0, lt=1)
    noise: float = Field(default=0.01, ge=0, lt=1)
    other_load_kw: float = Field(default=0.0, ge=0)
    counter_reset: CounterReset | None = None
    setpoints: TwinSetpoints = TwinSetpoints()
    plant: PlantDesign = PlantDesign()
    pv: PVSettings = PVSettings()
    battery: BatterySettings = BatterySettings()
    energyplus: EnergyPlusSettings = EnergyPlusSettings()

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    @model_validator(mode="after")
    def _profile(self) -> TwinSettings:
        if 86400 % self.step_s:
            raise ValueError(f"step_s {self.step_s} must divide a day (86400 s)")
        return self
