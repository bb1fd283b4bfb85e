"""Publisher -> Mosquitto -> collector -> DuckDB and VictoriaMetrics, through outages."""

import asyncio

from dcpue.collector.gateway_mqtt import publish_readings
from dcpue.collector.service import Collector
from dcpue.core.store import Store

from tests.collector.conftest import wait_until
from tests.collector.helpers import collector_site, once, stored, stream, vm_export


async def test_every_reading_arrives_once_through_broker_restart_and_remote_outage(
    mosquitto, victoria
):
    site = collector_site(mosquitto.port, victoria.url)
    first, second, third = stream(0, 150), stream(150, 300), stream(300, 400)
    everything = first + second + third
    store = Store()
    async with Collector(site, store) as collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "first connection")
        assert await publish_readings(site, [first], "127.0.0.1", mosquitto.port, batch_size=40) == 600
        # Restart the broker at once: messages it acknowledged to the publisher but the
        # collector had not yet committed are redelivered from the persistent session.
        await asyncio.to_thread(mosquitto.restart)
        await wait_until(lambda: collector.mqtt.stats.connects >= 2, "reconnection")
        await wait_until(lambda: store.count() == len(first), "first part in DuckDB")
        await wait_until(lambda: collector.forwarder.backlog() == 0, "first part forwarded")

        await asyncio.to_thread(victoria.stop)
        await publish_readings(site, [second[:300], second[300:]], "127.0.0.1", mosquitto.port)
        await wait_until(lambda: store.count() == len(first) + len(second), "second part in DuckDB")
        await wait_until(lambda: collector.stats().remote_errors > 0, "remote failure noticed")
        assert collector.forwarder.backlog() == len(second)  # kept locally, none lost

        await asyncio.to_thread(victoria.start)
        await publish_readings(site, [third], "127.0.0.1", mosquitto.port, batch_size=1000)
        await wait_until(lambda: store.count() == len(everything), "third part in DuckDB")
        await wait_until(lambda: collector.forwarder.backlog() == 0, "backlog replayed")
        await wait_until(lambda: collector.stats().remote_written == len(everything),
                         "replayed batches counted")
        stats = collector.stats()

    assert stats.readings_stored == len(everything)
    assert stats.dead_letters == {}
    assert stats.last_ts_ms["oat"] == third[-1].ts_ms
    assert stats.remote_written == len(everything)
    assert stored(store) == once(everything)
    await asyncio.to_thread(victoria.flush)
    assert vm_export(victoria.url) == once(everything)
