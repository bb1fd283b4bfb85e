"""SunSpec "not implemented" sentinels and an SDM630's electrical registers, through a real server.

Computed: what the poller makes of registers served by a real pymodbus TCP server. Declared:
the register words (SunSpec Information Model Specification sentinels; the Eastron SDM630
input-register map: float32, big-endian, L1 voltage at 0x0000, L1 current 0x0006, L1 VA 0x0012,
L1 var 0x0018, L1 power factor 0x001E, frequency 0x0046, total import kWh 0x0048).
"""

from __future__ import annotations

import pytest
from dcpue.collector.gateway_modbus import RegisterServer
from dcpue.collector.modbus_registers import NOT_IMPLEMENTED, decode, encode, not_implemented

from tests.collector_modbus.conftest import ListSink, make_site, wait_until
from tests.collector_modbus.test_poller import device, polling


@pytest.mark.parametrize("type_", sorted(NOT_IMPLEMENTED))
def test_integer_sentinels_and_their_neighbours(type_: str) -> None:
    sentinel = NOT_IMPLEMENTED[type_]
    words = encode(sentinel, type_)
    assert set(words) <= {0x8000, 0x0000, 0xFFFF}  # 0x8000..., or all ones
    assert not_implemented(decode(words, type_), type_)
    assert not not_implemented(sentinel + (1 if sentinel < 0 else -1), type_)
    assert not not_implemented(0, type_) and not_implemented(0, type_, accumulator=True)


def test_every_nan_pattern_is_not_implemented() -> None:
    for words in ([0x7FC0, 0x0000], [0xFFC0, 0x0001], [0x7F80, 0x0001]):  # quiet, signed, signalling
        assert not_implemented(decode(words, "float32"), "float32")
    assert not not_implemented(decode([0x7F80, 0x0000], "float32"), "float32")  # +Inf is not NaN


SENTINEL_METERS = [(f"s{i}", "outdoor_temperature", "state", "degC") for i in range(8)] + [
    ("grid-main", "grid_import", "counter", "kWh"),
    ("it", "it_load", "counter", "kWh"),
    ("raw", "grid_export", "counter", "kWh"),
]


async def test_sentinels_from_a_server_are_dead_letters_and_neighbours_are_kept() -> None:
    sink = ListSink()
    layout = [  # (meter, type, words)
        ("s0", "int16", [0x8000]), ("s1", "uint16", [0xFFFF]),
        ("s2", "int32", [0x8000, 0x0000]), ("s3", "uint32", [0xFFFF, 0xFFFF]),
        ("s4", "int64", [0x8000, 0, 0, 0]), ("s5", "uint64", [0xFFFF] * 4),
        ("s6", "float32", [0x7FC0, 0x0000]), ("s7", "int16", [0x00D7]),  # 215 x 0.1 = 21.5 degC
        ("grid-main", "uint32", [0x0000, 0x0000]),  # accumulator 0: not implemented
        ("it", "uint32", [0x0001, 0x0000]),  # accumulator 65536 kWh: a value
        ("raw", "uint16", [0xFFFF]),  # sentinel check switched off: a real 65535
    ]
    async with RegisterServer(holding_size=40) as server:
        points, address = [], 0
        for meter, type_, words in layout:
            server.write("holding", address, words)
            point = {"meter": meter, "address": address, "type": type_}
            if meter == "s7":
                point["scale"] = 0.1
            if meter in ("grid-main", "it"):
                point["accumulator"] = True
            if meter == "raw":
                point["not_implemented"] = "none"
            points.append(point)
            address += len(words)
        site = make_site({"devices": [device("sunspec", server.port, points)]}, SENTINEL_METERS)
        async with polling(site, sink):
            await wait_until(lambda: len(sink.letters) >= 8, "one poll")
    first = sink.letters[:8]
    assert [d.reason for d in first] == ["not_implemented"] * 8
    assert [d.detail.split(": ")[1].split(" ")[0] for d in first] == [
        "s0", "s1", "s2", "s3", "s4", "s5", "s6", "grid-main"]
    assert {m: r.value for m, r in sink.by_meter().items()} == {
        "s7": 21.5, "it": 65536.0, "raw": 65535.0}


SDM630 = [
    ("l1-voltage", "voltage", "state", "V", 0x0000, 230.5),
    ("l1-current", "current", "state", "A", 0x0006, 12.25),
    ("l1-apparent", "apparent_power", "state", "VA", 0x0012, 2823.5),
    ("l1-reactive", "reactive_power", "state", "var", 0x0018, -410.0),
    ("l1-pf", "power_factor", "state", "1", 0x001E, -0.96875),
    ("frequency", "frequency", "state", "Hz", 0x0046, 50.0625),
    ("import", "grid_import", "counter", "kWh", 0x0048, 12345.5),
]
IT = ("it", "it_load", "counter", "kWh")  # a site needs IT energy


async def test_sdm630_phase_registers_map_to_electrical_quantities() -> None:
    """Values are exact in float32; VA and var become kVA and kvar (divided by 1000)."""
    sink = ListSink()
    meters = [(m, role, kind, unit) for m, role, kind, unit, _, _ in SDM630] + [IT]
    async with RegisterServer(holding_size=1, input_size=80) as server:
        for _, _, _, _, address, value in SDM630:
            server.write("input", address, encode(value, "float32"))
        points = [{"meter": m, "table": "input", "address": a, "type": "float32"}
                  for m, _, _, _, a, _ in SDM630]
        site = make_site({"devices": [device("sdm630", server.port, points, max_gap=40)]}, meters)
        async with polling(site, sink):
            await wait_until(lambda: len(sink.by_meter()) == len(SDM630), "one poll")
    got = {m: (r.quantity, r.value, r.unit) for m, r in sink.by_meter().items()}
    assert got == {
        "l1-voltage": ("voltage", 230.5, "V"),
        "l1-current": ("current", 12.25, "A"),
        "l1-apparent": ("apparent_power", 2.8235, "kVA"),
        "l1-reactive": ("reactive_power", -0.41, "kvar"),
        "l1-pf": ("power_factor", -0.96875, "1"),
        "frequency": ("frequency", 50.0625, "Hz"),
        "import": ("energy", 12345.5, "kWh"),
    }
    assert sink.letters == []


async def test_a_power_factor_above_one_is_out_of_range() -> None:
    sink = ListSink()
    async with RegisterServer(holding_size=1, input_size=4) as server:
        server.write("input", 0, encode(1.5, "float32"))
        site = make_site({"devices": [device("pf", server.port, [
            {"meter": "pf", "table": "input", "address": 0, "type": "float32"}])]},
            [("pf", "power_factor", "state", "1"), ("grid-main", "grid_import", "counter", "kWh"),
             IT])
        async with polling(site, sink):
            await wait_until(lambda: sink.letters, "one poll")
    assert sink.letters[0].reason == "out_of_range" and sink.readings == []
