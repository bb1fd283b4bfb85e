"""Meter topology: what each meter measures, how, in which unit, and where it hangs."""

from __future__ import annotations

from enum import StrEnum

from dcpue.config.base import Section
from dcpue.core.units import UnitError, check_unit
from pydantic import Field, model_validator


class MeterRole(StrEnum):
    """What a meter measures in the facility (The Green Grid / ISO/IEC 30134 vocabulary)."""

    GRID_IMPORT = "grid_import"
    GRID_EXPORT = "grid_export"
    IT_LOAD = "it_load"
    CHILLER = "chiller"
    CRAH = "crah"  # CRAH/CRAC fans and units
    PUMP = "pump"
    COOLING_TOWER = "cooling_tower"
    DX_COOLING = "dx_cooling"  # DX coils: compressors and condenser fans
    CRAC = "crac"  # computer-room air conditioners (self-contained DX units)
    EVAPORATIVE_COOLER = "evaporative_cooler"
    ECONOMIZER = "economizer"  # air-side economizer fans and dampers
    DRY_COOLER = "dry_cooler"
    HEAT_RECOVERY_CHILLER = "heat_recovery_chiller"
    LIGHTING = "lighting"
    UPS_LOSS = "ups_loss"
    TRANSFORMER_LOSS = "transformer_loss"
    OTHER_LOAD = "other_load"
    PV_GENERATION = "pv_generation"
    BATTERY_CHARGE = "battery_charge"
    BATTERY_DISCHARGE = "battery_discharge"
    BATTERY_SOC = "battery_soc"
    REUSED_HEAT = "reused_heat"
    WATER = "water"
    OUTDOOR_TEMPERATURE = "outdoor_temperature"
    OUTDOOR_HUMIDITY = "outdoor_humidity"
    IRRADIANCE = "irradiance"
    RACK_INLET_TEMPERATURE = "rack_inlet_temperature"
    SETPOINT = "setpoint"
    # electrical state of a supply or feeder (e.g. an SDM630's per-phase registers)
    VOLTAGE = "voltage"
    CURRENT = "current"
    POWER_FACTOR = "power_factor"
    APPARENT_POWER = "apparent_power"
    REACTIVE_POWER = "reactive_power"
    FREQUENCY = "frequency"


class MeterKind(StrEnum):
    """How a meter reports: a cumulative counter, an instantaneous power, or a state value."""

    COUNTER = "counter"
    POWER = "power"
    STATE = "state"


class ITCategory(StrEnum):
    """Green Grid PUE measurement category of an IT meter (PUE1 / PUE2 / PUE3)."""

    UPS_OUTPUT = "ups_output"
    PDU_OUTPUT = "pdu_output"
    IT_INPUT = "it_input"


class SetpointName(StrEnum):
    """Cooling setpoints the optimizer may read and propose."""

    SUPPLY_AIR_TEMPERATURE = "supply_air_temperature"
    CHILLED_WATER_TEMPERATURE = "chilled_water_temperature"
    CRAH_FAN_SPEED = "crah_fan_speed"
    PUMP_FREQUENCY = "pump_frequency"
    RUNNING_UNITS = "running_units"


#: Cooling equipment roles beyond the chilled-water plant (counted as cooling everywhere).
COOLING_EQUIPMENT = (
    MeterRole.DX_COOLING, MeterRole.CRAC, MeterRole.EVAPORATIVE_COOLER, MeterRole.ECONOMIZER,
    MeterRole.DRY_COOLER, MeterRole.HEAT_RECOVERY_CHILLER,
)
#: Roles whose meters carry electrical energy or power (counter or power kind).
ENERGY_ROLES = frozenset(
    {
        MeterRole.GRID_IMPORT, MeterRole.GRID_EXPORT, MeterRole.IT_LOAD, MeterRole.CHILLER,
        MeterRole.CRAH, MeterRole.PUMP, MeterRole.COOLING_TOWER, MeterRole.LIGHTING,
        *COOLING_EQUIPMENT, MeterRole.UPS_LOSS, MeterRole.TRANSFORMER_LOSS, MeterRole.OTHER_LOAD,
        MeterRole.PV_GENERATION, MeterRole.BATTERY_CHARGE, MeterRole.BATTERY_DISCHARGE,
        MeterRole.REUSED_HEAT,
    }
)
#: Cooling subsystem roles (partial PUE for cooling).
COOLING_ROLES = frozenset(
    {MeterRole.CHILLER, MeterRole.CRAH, MeterRole.PUMP, MeterRole.COOLING_TOWER,
     *COOLING_EQUIPMENT}
)
_STATE_QUANTITY = {
    MeterRole.OUTDOOR_TEMPERATURE: "temperature",
    MeterRole.RACK_INLET_TEMPERATURE: "temperature",
    MeterRole.OUTDOOR_HUMIDITY: "humidity",
    MeterRole.BATTERY_SOC: "humidity",  # state of charge in % shares the percent dimension
    MeterRole.IRRADIANCE: "irradiance",
    **{r: r.value for r in (
        MeterRole.VOLTAGE, MeterRole.CURRENT, MeterRole.POWER_FACTOR, MeterRole.APPARENT_POWER,
        MeterRole.REACTIVE_POWER, MeterRole.FREQUENCY,
    )},
}
_SETPOINT_QUANTITY = {
    SetpointName.SUPPLY_AIR_TEMPERATURE: "temperature",
    SetpointName.CHILLED_WATER_TEMPERATURE: "temperature",
    SetpointName.CRAH_FAN_SPEED: "speed",
    SetpointName.PUMP_FREQUENCY: "frequency",
    SetpointName.RUNNING_UNITS: "count",
}


class Meter(Section):
    """One meter (or sensor) of the site.

    ``rollover`` is the value at which a cumulative counter wraps to zero (e.g. 999999.9 kWh);
    ``max_power_kw`` is the plausibility ceiling in kW (power readings above it, and counter
    increments implying more, are data-quality errors; unset: derived from the meter's own
    history, see docs/metrics.md); ``jitter_tolerance`` (meter unit) replaces the calculator's
    absolute jitter tolerance for this counter. ``also`` lists extra quantities the same meter
    reports (``"power"`` for a counter, ``"energy"`` for a power meter): the balance counts the
    meter's energy once, from the counter, and uses the power readings only for intervals the
    counter cannot cover.
    """

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$", max_length=64)
    role: MeterRole
    kind: MeterKind
    unit: str
    description: str = ""
    parent: str | None = None
    it_category: ITCategory | None = None
    setpoint: SetpointName | None = None
    rollover: float | None = Field(default=None, gt=0)
    max_power_kw: float | None = Field(default=None, gt=0)
    jitter_tolerance: float | None = Field(default=None, ge=0)
    also: list[str] = Field(default_factory=list)

    @property
    def quantities(self) -> tuple[str, ...]:
        """Every quantity this meter's readings may carry: :attr:`quantity` first."""
        return (self.quantity, *self.also)

    @property
    def quantity(self) -> str:
        """The quantity this meter's readings carry (see :data:`dcpue.core.units.QUANTITIES`)."""
        if self.kind is MeterKind.COUNTER:
            return "volume" if self.role is MeterRole.WATER else "energy"
        if self.kind is MeterKind.POWER:
            return "power"
        if self.role is MeterRole.SETPOINT:
            assert self.setpoint is not None
            return _SETPOINT_QUANTITY[self.setpoint]
        return _STATE_QUANTITY[self.role]

    @model_validator(mode="after")
    def _consistent(self) -> Meter:
        if self.role in ENERGY_ROLES and self.kind is MeterKind.STATE:
            raise ValueError(f"role {self.role} needs kind 'counter' or 'power', not 'state'")
        if self.role is MeterRole.WATER and self.kind is not MeterKind.COUNTER:
            raise ValueError("role water needs kind 'counter' (cumulative volume)")
        if (
            self.role not in ENERGY_ROLES
            and self.role is not MeterRole.WATER
            and self.kind is not MeterKind.STATE
        ):
            raise ValueError(f"role {self.role} needs kind 'state'")
        if (self.role is MeterRole.IT_LOAD) != (self.it_category is not None):
            raise ValueError("it_category is required for role it_load and only for it")
        if (self.role is MeterRole.SETPOINT) != (self.setpoint is not None):
            raise ValueError("setpoint is required for role setpoint and only for it")
        if self.rollover is not None and self.kind is not MeterKind.COUNTER:
            raise ValueError("rollover applies to kind 'counter' only")
        if self.jitter_tolerance is not None and self.kind is not MeterKind.COUNTER:
            raise ValueError("jitter_tolerance applies to kind 'counter' only")
        allowed = {MeterKind.COUNTER: ["power"], MeterKind.POWER: ["energy"]}.get(self.kind, [])
        if self.role is MeterRole.WATER:
            allowed = []
        for extra in self.also:
            if extra not in allowed:
                raise ValueError(
                    f"also: a {self.kind} meter can also report {' or '.join(allowed) or 'nothing'},"
                    f" not {extra!r}"
                )
        try:
            check_unit(self.unit, self.quantity)
        except UnitError as exc:
            raise ValueError(str(exc)) from None
        return self
