"""A small hand-made site for optimizer tests (no twin): one meter per role it needs."""

from __future__ import annotations

from typing import Any

import numpy as np
from dcpue.config import Site, parse_site
from dcpue.core.readings import ReadingColumns

SETPOINT_METERS = {
    "sp-sa": ("supply_air_temperature", "degC"),
    "sp-chw": ("chilled_water_temperature", "degC"),
    "sp-fan": ("crah_fan_speed", "%"),
    "sp-pump": ("pump_frequency", "Hz"),
    "sp-units": ("running_units", "1"),
}


def state_series(meter: str, quantity: str, unit: str, ts: np.ndarray, value) -> ReadingColumns:
    """A state meter's readings at ``ts``: ``value`` (a number or one per sample)."""
    return ReadingColumns.series(meter, quantity, unit, ts, np.broadcast_to(value, ts.shape))


def setpoint_readings(ts: np.ndarray, values: dict[str, float]) -> list[ReadingColumns]:
    """Readings of the five setpoint meters of :func:`small_site` at ``ts`` (value by id)."""
    quantities = {"degC": "temperature", "%": "speed", "Hz": "frequency", "1": "count"}
    return [state_series(mid, quantities[unit], unit, ts, values[mid])
            for mid, (_name, unit) in SETPOINT_METERS.items()]


def small_site(optimizer: dict[str, Any] | None = None) -> Site:
    """IT counter with rollover 1000 kWh, cooling meters (the CRAH as a power meter), two rack
    inlet sensors, outdoor air and the five setpoint meters; sea level."""
    meters: list[dict[str, Any]] = [
        {"id": "it", "role": "it_load", "kind": "counter", "unit": "kWh",
         "it_category": "ups_output", "rollover": 1000.0},
        {"id": "ch", "role": "chiller", "kind": "counter", "unit": "kWh"},
        {"id": "crah", "role": "crah", "kind": "power", "unit": "kW"},
        {"id": "pump", "role": "pump", "kind": "counter", "unit": "kWh"},
        {"id": "tower", "role": "cooling_tower", "kind": "counter", "unit": "kWh"},
        {"id": "ups", "role": "ups_loss", "kind": "counter", "unit": "kWh"},
        {"id": "light", "role": "lighting", "kind": "counter", "unit": "kWh"},
        {"id": "oat", "role": "outdoor_temperature", "kind": "state", "unit": "degC"},
        {"id": "orh", "role": "outdoor_humidity", "kind": "state", "unit": "%"},
        {"id": "inlet-a", "role": "rack_inlet_temperature", "kind": "state", "unit": "degC"},
        {"id": "inlet-b", "role": "rack_inlet_temperature", "kind": "state", "unit": "degC"},
    ]
    meters += [
        {"id": mid, "role": "setpoint", "setpoint": name, "kind": "state", "unit": unit}
        for mid, (name, unit) in SETPOINT_METERS.items()
    ]
    doc: dict[str, Any] = {
        "id": "t", "latitude": 36.0, "longitude": -80.0, "altitude_m": 0.0,
        "grid": {"emission_factor_t_per_mwh": 0.5, "source": "test"}, "meters": meters,
    }
    if optimizer is not None:
        doc["optimizer"] = optimizer
    return parse_site(doc)
