"""Units and their conversion to each quantity's canonical unit.

Canonical units: energy kWh, power kW, temperature degC, humidity and speed %, frequency Hz,
volume m3, irradiance W/m2, count 1.
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
)
UNITS: dict[str, Unit] = {u.symbol: u for u in _UNITS}
_ALIASES = {"°C": "degC", "C": "degC", "°F": "degF", "F": "degF", "m³": "m3", "W/m²": "W/m2"}

#: Quantity name -> (dimension its units belong to, canonical unit symbol).
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


def to_canonical(value: float, symbol: str, quantity: str) -> float:
    """Convert ``value`` in unit ``symbol`` to the canonical unit of ``quantity``."""
    u = check_unit(symbol, quantity)
    return value * u.scale + u.offset
