"""The Collector object: Modbus and MQTT sources side by side into one store, with counters."""

from __future__ import annotations

from dcpue.collector.gateway_modbus import ModbusGateway
from dcpue.collector.gateway_mqtt import publish_readings
from dcpue.collector.service import Collector
from dcpue.core.readings import Reading
from dcpue.core.store import Store

from tests.collector.conftest import T0_MS, make_site, wait_until
from tests.collector.helpers import collector_site, stream
from tests.servers import free_port


async def test_modbus_and_mqtt_sources_feed_one_store(mosquitto):
    plant = [
        Reading(T0_MS, "grid", "energy", 1_234_567.125, "kWh"),
        Reading(T0_MS, "it", "energy", 987_654.5, "kWh"),
        Reading(T0_MS, "pdu-1", "power", 42.75, "kW"),
        Reading(T0_MS, "oat", "temperature", 21.5, "degC"),
    ]
    async with ModbusGateway(make_site(), port=free_port()) as gateway:
        gateway.update(plant)
        mqtt_site = collector_site(mosquitto.port)
        site = mqtt_site.model_copy(update={"collector": mqtt_site.collector.model_copy(
            update={"modbus": gateway.settings(interval_s=0.05)}
        )})
        store = Store()
        async with Collector(site, store) as collector:
            assert collector.source_names == ("mqtt", "modbus")
            await wait_until(lambda: collector.stats().mqtt_connected, "mqtt connection")
            await publish_readings(site, [stream(0, 5)], "127.0.0.1", mosquitto.port)
            await wait_until(
                lambda: store.count() >= 20 + 4 and len(store.read(start_ms=T0_MS + 10**8)) >= 4,
                "mqtt and modbus readings",
            )
            stats = collector.stats()
    assert [d.state for d in stats.modbus] == ["ok"]
    assert stats.dead_letters == {}
    polled = store.read(start_ms=T0_MS + 10**8)  # Modbus readings carry receive time (now)
    latest = {m: store.latest(m) for m in ("grid", "it", "pdu-1", "oat")}
    assert {r.meter: r.value for r in latest.values()} == {r.meter: r.value for r in plant}
    assert set(polled.meter) == {"grid", "it", "pdu-1", "oat"}
    assert len(store.read(end_ms=T0_MS + 10**8)) == 20  # the MQTT stream, untouched


async def test_counters_without_sources_or_remote():
    store = Store()
    async with Collector(make_site(), store) as collector:
        collector.pipeline.submit(stream(0, 2))
        await wait_until(lambda: store.count() == 8, "direct submissions")
        stats = collector.stats()
    assert stats.sources == ()
    assert (stats.readings_in, stats.readings_stored, stats.backlog) == (8, 8, None)
    assert not stats.mqtt_connected
    assert stats.last_ts_ms == {m: T0_MS + 60_000 for m in ("grid", "it", "pdu-1", "oat")}
