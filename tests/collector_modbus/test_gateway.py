"""The twin's Modbus gateway: readings in, registers out, and back through the poller."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Sequence

from dcpue.collector.gateway_modbus import ModbusGateway, gateway_points, serve_modbus
from dcpue.collector.modbus import ModbusPoller
from dcpue.config import Site, example_path, load_site, parse_site
from dcpue.core.readings import Reading

from tests.collector_modbus.conftest import ListSink, wait_until
from tests.servers import free_port

TS = 1_700_000_000_000


def hall() -> Site:
    return load_site(example_path("single_hall"))


def twin_like_readings(site: Site) -> list[Reading]:
    """One value per meter: counters with awkward binary fractions, plain state values."""
    # counters carry 0.1 + 0.2 = 0.30000000000000004, which only a float64 keeps
    return [
        Reading(TS, m.id, m.quantity,
                12_345_678.9 + i + (0.1 + 0.2) if m.quantity == "energy" else 21.7 + i / 3, m.unit)
        for i, m in enumerate(site.meters)
    ]


def test_register_map_packs_meters_in_site_order() -> None:
    points = gateway_points(hall())
    assert [(p.meter, p.address, p.type) for p in points[:2]] == [
        ("grid-main", 0, "float64"), ("ups-out", 4, "float64")]
    assert (points[8].meter, points[8].address, points[8].type) == ("outdoor-temp", 32, "float32")
    assert points[-1].address == 46  # 8 counters x 4 + 7 states x 2 registers


def test_example_block_is_the_gateway_map() -> None:
    site = hall()
    expected = ModbusGateway(site, port=1502).settings(enabled=False)
    assert site.collector.modbus == expected


def test_snippet_appended_to_a_site_file_loads(tmp_path) -> None:
    site = hall()
    gateway = ModbusGateway(site, port=1600, unit_id=3)
    text = example_path("single_hall").read_text().split("[collector.modbus]")[0]
    path = tmp_path / "site.toml"
    path.write_text(text + gateway.snippet(interval_s=2.5))
    loaded = load_site(path).collector.modbus
    assert loaded == gateway.settings(interval_s=2.5)
    assert loaded.active_devices[0].port == 1600 and loaded.active_devices[0].unit_id == 3


async def test_round_trip_through_the_poller() -> None:
    site, sink = hall(), ListSink()
    sent = twin_like_readings(site)
    async with ModbusGateway(site, port=0) as gateway:
        assert gateway.update(sent) == len(site.meters)
        site.collector.modbus = gateway.settings(interval_s=0.05)
        poller = ModbusPoller(site, sink)
        task = asyncio.create_task(poller.run())
        await wait_until(lambda: len(sink.readings) >= len(sent), "one poll of every meter")
        poller.stop()
        await task
    got = {r.meter: r for r in sink.readings[: len(sent)]}
    for reading in sent:
        back = got[reading.meter]
        assert (back.quantity, back.unit) == (reading.quantity, reading.unit)
        if site.meter_by_id[reading.meter].kind == "counter":
            assert back.value == reading.value  # float64: bit for bit
        else:  # float32: within half a unit in the last place, 2^-24 relative
            assert abs(back.value - reading.value) <= abs(reading.value) * 2**-24
    temperature = next(r.value for r in sent if r.meter == "outdoor-temp")
    as_float32 = struct.unpack(">f", struct.pack(">f", temperature))[0]
    assert got["outdoor-temp"].value == as_float32 != temperature  # really served as float32
    assert sink.letters == []


async def test_units_unknown_meters_and_unset_registers() -> None:
    site, sink = hall(), ListSink()
    async with ModbusGateway(site, port=0) as gateway:
        written = gateway.update([
            Reading(TS, "grid-main", "energy", 1.5, "MWh"),  # served in kWh
            Reading(TS, "no-such-meter", "energy", 1.0, "kWh"),
            Reading(TS, "outdoor-temp", "temperature", 50.0, "degF"),  # 10 degC
            Reading(TS, "outdoor-rh", "humidity", 1e39, "%"),  # beyond float32: served as NaN
        ])
        assert written == 3 and gateway.update([]) == 0
        site.collector.modbus = gateway.settings(interval_s=30)
        poller = ModbusPoller(site, sink)
        task = asyncio.create_task(poller.run())
        await wait_until(lambda: len(sink.readings) + len(sink.letters) >= 16, "one poll")
        poller.stop()
        await task
    values = {r.meter: r.value for r in sink.readings}
    assert values == {"grid-main": 1500.0, "outdoor-temp": 10.0}
    # the 13 meters never written and the float32 overflow are served as NaN, SunSpec's
    # "not implemented", and refused as such
    assert [d.reason for d in sink.letters] == ["not_implemented"] * 14
    assert any("outdoor-rh" in d.detail for d in sink.letters)


async def test_serve_modbus_serves_each_batch() -> None:
    site, sink = hall(), ListSink()
    port = free_port()
    port_ready = asyncio.Event()
    done = asyncio.Event()

    async def steps() -> AsyncIterator[Sequence[Reading]]:
        yield [Reading(TS, "pumps", "energy", 42.0, "kWh")]
        port_ready.set()
        await done.wait()

    serving = asyncio.create_task(serve_modbus(site, port, steps()))
    await asyncio.wait_for(port_ready.wait(), 5)
    site.collector.modbus = ModbusGateway(site, port=port).settings(interval_s=30)
    poller = ModbusPoller(site, sink)
    task = asyncio.create_task(poller.run())
    await wait_until(lambda: len(sink.readings) >= 1, "the served value")
    poller.stop()
    await task
    done.set()
    gateway = await asyncio.wait_for(serving, 5)
    assert not gateway.server.serving
    assert [(r.meter, r.value) for r in sink.readings] == [("pumps", 42.0)]


def test_power_is_served_in_the_canonical_unit() -> None:
    site = parse_site({
        "id": "tiny", "latitude": 0, "longitude": 0,
        "grid": {"emission_factor_t_per_mwh": 0.5703, "source": "test"},
        "meters": [{"id": "it", "role": "it_load", "kind": "power", "unit": "W",
                    "it_category": "ups_output"}],
    })
    (point,) = gateway_points(site)
    assert (point.type, point.unit) == ("float64", "kW")  # served in the canonical unit
