"""The [optimizer] section: defaults, the example blocks, one-line errors."""

from __future__ import annotations

import pytest
from dcpue.config import ConfigError, example_path, load_site

from tests.optimizer.helpers import small_site


def test_defaults_keep_write_back_off() -> None:
    cfg = small_site().optimizer
    assert (cfg.inlet_limit_c, cfg.inlet_margin_c, cfg.step_s, cfg.interval_s) == (
        27.0, 1.0, 900, 900)
    assert cfg.setpoints.running_units.integer
    assert not cfg.setpoints.supply_air_temperature.writeback.enabled


def test_example_blocks() -> None:
    hall = load_site(example_path("single_hall")).optimizer
    chw = hall.setpoints.chilled_water_temperature
    assert (chw.min, chw.max, chw.max_step) == (7.0, 20.0, 1.0)
    assert chw.writeback.transport == "modbus" and chw.writeback.modbus.scale == 10.0
    assert not chw.writeback.enabled
    campus = load_site(example_path("microgrid")).optimizer
    assert campus.setpoints.running_units.min == 2.0
    assert campus.setpoints.supply_air_temperature.writeback.topic.endswith("supply-air")


@pytest.mark.parametrize(("block", "message"), [
    ({"setpoints": {"pump_frequency": {"min": 50.0, "max": 30.0, "max_step": 5.0}}},
     "optimizer.setpoints.pump_frequency: min 50.0 must not exceed max 30.0"),
    ({"setpoints": {"supply_air_temperature": {
        "min": 18.0, "max": 27.0, "max_step": 1.0, "writeback": {"enabled": True}}}},
     "needs a command topic"),
    ({"setpoints": {"crah_fan_speed": {
        "min": 30.0, "max": 100.0, "max_step": 10.0,
        "writeback": {"enabled": True, "transport": "modbus"}}}},
     "needs a [modbus] register block"),
    ({"setpoints": {"running_units": {"min": 1.0, "max": 8.0, "max_step": 1.0}}},
     "running_units needs integer = true"),
    ({"inlet_limt_c": 26.0}, "optimizer.inlet_limt_c: Extra inputs are not permitted"),
])
def test_invalid_blocks_are_one_line_errors(block: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        small_site(block)
    assert message in str(err.value) and "\n" not in str(err.value)
