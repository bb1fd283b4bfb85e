"""Units, their conversion to each quantity's canonical unit, and plausible value ranges.

Canonical units: energy kWh, power kW, temperature degC, humidity and speed %, frequency Hz,
volume m3, irradiance W/m2, count 1, voltage V, current A, power factor 1, apparent power kVA,
reactive power kvar.
"""

from __future__ import annotations

from dataclasses import dataclass


class UnitError(ValueError):
    """A unit is unknown or does not fit the quantity it was given for."""


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit as ``canonical = value * scale + offset`` within one dimension."""

    symbol: str
    dimension: str
    scale: float = 1.0
    offset: float = 0.0


_UNITS: tuple[Unit, ...] = (
    Unit("Wh", "energy", 1e-3),
    Unit("kWh", "energy"),
    Unit("MWh", "energy", 1e3),
    Unit("GWh", "energy", 1e6),
    Unit("W", "power", 1e-3),
    Unit("kW", "power"),
    Unit("MW", "power", 1e3),
    Unit("degC", "temperature"),
    Unit("degF", "temperature", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
    Unit("K", "temperature", 1.0, -273.15),
    Unit("%", "percent"),
    Unit("Hz", "frequency"),
    Unit("m3", "volume"),
    Unit("L", "volume", 1e-3),
    Unit("W/m2", "irradiance"),
    Unit("1", "count"),
    Unit("mV", "voltage", 1e-3),
    Unit("V", "voltage"),
    Unit("kV", "voltage", 1e3),
    Unit("mA", "current", 1e-3),
    Unit("A", "current"),
    Unit("kA", "current", 1e3),
    Unit("VA", "apparent_power", 1e-3),
    Unit("kVA", "apparent_power"),
    Unit("MVA", "apparent_power", 1e3),
    Unit("var", "reactive_power", 1e-3),
    Unit("kvar", "reactive_power"),
    Unit("Mvar", "reactive_power", 1e3),
)
UNITS: dict[str, Unit] = {u.symbol: u for u in _UNITS}
_ALIASES = {
    "°C": "degC", "C": "degC", "°F": "degF", "F": "degF", "m³": "m3", "W/m²": "W/m2",
    "VAr": "var", "VAR": "var", "kVAr": "kvar", "kVAR": "kvar", "MVAr": "Mvar",
}

#: Quantity name -> (dimension its units belong to, canonical unit symbol).
#: ``power_factor`` is a ratio (cos phi), so it takes the dimensionless unit ``1``.
QUANTITIES: dict[str, tuple[str, str]] = {
    "energy": ("energy", "kWh"),
    "power": ("power", "kW"),
    "temperature": ("temperature", "degC"),
    "humidity": ("percent", "%"),
    "speed": ("percent", "%"),
    "frequency": ("frequency", "Hz"),
    "volume": ("volume", "m3"),
    "irradiance": ("irradiance", "W/m2"),
    "count": ("count", "1"),
    "voltage": ("voltage", "V"),
    "current": ("current", "A"),
    "power_factor": ("count", "1"),
    "apparent_power": ("apparent_power", "kVA"),
    "reactive_power": ("reactive_power", "kvar"),
}

#: Plausible range of each quantity, in its canonical unit (inclusive). A value outside is a
#: sensor, wiring or decoding fault, never a measurement: 1 GW (1e6 kW) is above the largest
#: data-center campus, 1e12 kWh (1 PWh) above any counter, -90..200 degC spans outdoor air
#: (record -89.2 degC) to steam; irradiance allows the few W/m2 below zero a pyranometer reads
#: at night and cloud-enhanced peaks near 1,800 W/m2; power factor is cos phi, -1..1 (IEC
#: 61557-12 signs it by direction).
SANITY_RANGES: dict[str, tuple[float, float]] = {
    "energy": (-1e12, 1e12),
    "power": (-1e6, 1e6),
    "temperature": (-90.0, 200.0),
    "humidity": (0.0, 100.0),
    "speed": (0.0, 100.0),
    "frequency": (0.0, 1000.0),
    "volume": (-1e12, 1e12),
    "irradiance": (-50.0, 2000.0),
    "count": (-1e15, 1e15),
    "voltage": (-1e6, 1e6),
    "current": (-1e6, 1e6),
    "power_factor": (-1.0, 1.0),
    "apparent_power": (0.0, 1e6),
    "reactive_power": (-1e6, 1e6),
}


def unit(symbol: str) -> Unit:
    """Look up a unit by symbol (a few common spellings such as ``°C`` are accepted)."""
    found = UNITS.get(_ALIASES.get(symbol, symbol))
    if found is None:
        raise UnitError(f"unknown unit {symbol!r}; known: {', '.join(sorted(UNITS))}")
    return found


def check_unit(symbol: str, quantity: str) -> Unit:
    """Return the unit if it measures ``quantity``, else raise :class:`UnitError`."""
    u = unit(symbol)
    dimension, _ = QUANTITIES[quantity]
    if u.dimension != dimension:
        raise UnitError(f"unit {symbol!r} does not measure {quantity} (expects {dimension})")
    return u


def canonical_unit(quantity: str) -> str:
    """Canonical unit symbol of a quantity, e.g. ``"kW"`` for ``"power"``."""
    return QUANTITIES[quantity][1]


def conversion(symbol: str, quantity: str) -> tuple[float, float, float]:
    """``(multiplier, divisor, offset)`` with ``canonical = value * multiplier / divisor + offset``.

    A sub-unit divides by its exact power of ten (-410 var -> -0.41 kvar, the float nearest;
    multiplying by 0.001 would give -0.41000000000000003). Raises :class:`UnitError`.
    """
    u = check_unit(symbol, quantity)
    if u.scale < 1.0 and (1.0 / u.scale).is_integer():
        return 1.0, 1.0 / u.scale, u.offset
    return u.scale, 1.0, u.offset


def to_canonical(value: float, symbol: str, quantity: str) -> float:
    """Convert ``value`` in unit ``symbol`` to the canonical unit of ``quantity``."""
    multiplier, divisor, offset = conversion(symbol, quantity)
    return value * multiplier / divisor + offset
