"""The [collector.modbus] schema: defaults, one-line errors, meter checks, TOML round trip."""

from __future__ import annotations

import tomllib

import pytest
from dcpue.collector.modbus import ModbusPoller, check_points
from dcpue.config import ConfigError, load_site

from tests.collector_modbus.conftest import ListSink, make_site

DEVICE = {
    "name": "pm-1",
    "port": 1502,
    "groups": [{"name": "fast", "interval_s": 5, "points": [
        {"meter": "grid-main", "address": 0, "type": "float32", "word_order": "little"},
        {"meter": "it-power", "table": "input", "address": 40, "type": "int16",
         "scale_factor_address": 41, "unit": "W"},
    ]}],
}


def test_defaults_and_values() -> None:
    site = make_site({"devices": [DEVICE]})
    modbus = site.collector.modbus
    device = modbus.devices[0]
    assert (device.host, device.unit_id, device.timeout_s, device.max_registers) == (
        "127.0.0.1", 1, 2.0, 125)
    assert (modbus.backoff_initial_s, modbus.backoff_max_s) == (1.0, 300.0)
    point = device.groups[0].points[0]
    assert (point.table, point.byte_order, point.scale, point.width) == ("holding", "big", 1.0, 2)
    assert device.origin == "pm-1@127.0.0.1:1502/1"
    assert modbus.active_devices == [device]
    assert ModbusPoller(site, ListSink()).active  # built outside an event loop, as the daemon does


def test_site_without_block_polls_nothing() -> None:
    site = make_site()
    assert site.collector.modbus.devices == []
    assert not ModbusPoller(site, ListSink()).active


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"unit_id": 256}, "devices[0].unit_id"),
        ({"max_registers": 126}, "devices[0].max_registers"),
        ({"colour": "red"}, "devices[0].colour"),
        ({"groups": [{"name": "a"}, {"name": "a"}]}, "duplicate poll group a"),
        ({"groups": [{"points": [{"meter": "it", "address": 65535, "type": "uint32"}]}]},
         "runs past register 65535"),
        ({"groups": [{"points": [{"meter": "it", "address": 0, "type": "float16"}]}]},
         "groups[0].points[0].type"),
        ({"groups": [{"points": [{"meter": "it", "address": 0, "word_order": "middle"}]}]},
         "word_order"),
    ],
)
def test_invalid_blocks_are_one_line_errors(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=r"collector\.modbus") as err:
        make_site({"devices": [DEVICE | change]})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_disabled_or_empty_devices_are_inactive() -> None:
    modbus = make_site({"devices": [
        DEVICE | {"enabled": False}, DEVICE | {"name": "empty", "groups": [{"name": "none"}]},
    ]}).collector.modbus
    assert len(modbus.devices) == 2
    assert modbus.active_devices == []


def test_duplicate_devices_and_backoff_order() -> None:
    with pytest.raises(ConfigError, match="duplicate Modbus device name pm-1"):
        make_site({"devices": [DEVICE, DEVICE]})
    with pytest.raises(ConfigError, match="backoff_max_s must be >= backoff_initial_s"):
        make_site({"backoff_initial_s": 10, "backoff_max_s": 1})


def test_points_must_name_site_meters_in_fitting_units() -> None:
    unknown = DEVICE | {"groups": [{"points": [{"meter": "nope", "address": 0}]}]}
    with pytest.raises(ConfigError, match=r"devices\[0\]\.groups\[0\]\.points\[0\]: unknown meter 'nope'"):
        ModbusPoller(make_site({"devices": [unknown]}), ListSink())
    wrong = DEVICE | {"groups": [{"points": [{"meter": "outdoor", "address": 0, "unit": "kWh"}]}]}
    site = make_site({"devices": [wrong]})
    with pytest.raises(ConfigError, match=r"points\[0\]: .*kWh"):
        check_points(site, site.collector.modbus)


def test_to_toml_round_trips() -> None:
    modbus = make_site({"backoff_max_s": 60, "devices": [DEVICE]}).collector.modbus
    text = modbus.to_toml()
    assert "backoff_max_s = 60.0" in text and 'word_order = "little"' in text
    assert "timeout_s" not in text  # defaults are left out
    again = make_site(tomllib.loads(text)["collector"]["modbus"]).collector.modbus
    assert again == modbus


def test_single_hall_example_block_is_present_and_inactive() -> None:
    from dcpue.config import example_path

    site = load_site(example_path("single_hall"))
    modbus = site.collector.modbus
    assert [d.name for d in modbus.devices] == ["twin"]
    assert modbus.active_devices == []  # dcpue demo must not poll it
    assert not ModbusPoller(site, ListSink()).active
