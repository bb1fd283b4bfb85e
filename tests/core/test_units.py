import math

import pytest
from dcpue.core.units import UnitError, canonical_unit, to_canonical


@pytest.mark.parametrize(
    ("value", "unit", "quantity", "expected"),
    [
        (1500.0, "W", "power", 1.5),
        (2.5, "MW", "power", 2500.0),
        (1234.0, "Wh", "energy", 1.234),
        (3.0, "MWh", "energy", 3000.0),
        (212.0, "degF", "temperature", 100.0),
        (32.0, "°F", "temperature", 0.0),
        (300.0, "K", "temperature", 26.85),
        (250.0, "L", "volume", 0.25),
        (230_500.0, "mV", "voltage", 230.5),
        (11.0, "kV", "voltage", 11_000.0),
        (500.0, "mA", "current", 0.5),
        (2823.5, "VA", "apparent_power", 2.8235),
        (1.2, "MVA", "apparent_power", 1200.0),
        (-410.0, "var", "reactive_power", -0.41),
        (2.0, "Mvar", "reactive_power", 2000.0),
        (0.95, "1", "power_factor", 0.95),
    ],
)
def test_to_canonical(value, unit, quantity, expected):
    assert math.isclose(to_canonical(value, unit, quantity), expected, rel_tol=1e-12)


def test_wrong_dimension_and_unknown_unit_are_errors():
    with pytest.raises(UnitError, match="does not measure power"):
        to_canonical(1.0, "kWh", "power")
    with pytest.raises(UnitError, match="unknown unit 'BTU'"):
        to_canonical(1.0, "BTU", "energy")
    assert canonical_unit("energy") == "kWh"
    with pytest.raises(UnitError, match="does not measure apparent_power"):
        to_canonical(1.0, "kvar", "apparent_power")
    assert canonical_unit("reactive_power") == "kvar"
