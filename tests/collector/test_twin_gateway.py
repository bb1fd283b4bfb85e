"""The digital twin as hardware: twin -> MQTT gateway -> Mosquitto -> collector -> both sinks."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from dcpue.collector.gateway_mqtt import batch_payloads, publish_readings, round_significant
from dcpue.collector.service import Collector
from dcpue.config import example_path, load_site
from dcpue.core.readings import Reading, ReadingColumns
from dcpue.core.store import Store
from dcpue.twin.simulator import Twin

from tests.collector.conftest import T0_MS, wait_until
from tests.collector.helpers import vm_series


def test_values_are_published_at_register_resolution():
    assert round_significant(60667894.59915031, 10) == 60667894.6
    assert round_significant(3461581.1049007922, 10) == 3461581.105
    assert round_significant(0.1 + 0.2, 10) == 0.3
    assert round_significant(0.1 + 0.2, None) == 0.30000000000000004
    readings = [Reading(T0_MS + i, "it", "energy", 1.0 + i, "kWh") for i in range(5)]
    payloads = list(batch_payloads([readings[:3], ReadingColumns.from_readings(readings[3:])], 2))
    assert [n for _, n in payloads] == [2, 2, 1]
    assert json.loads(payloads[1][0]) == {"readings": [
        {"meter": "it", "value": 3.0, "unit": "kWh", "ts": T0_MS + 2},
        {"meter": "it", "value": 4.0, "unit": "kWh", "ts": T0_MS + 3},
    ]}


async def test_twin_readings_reach_duckdb_and_victoriametrics_digit_for_digit(mosquitto, victoria):
    site = load_site(example_path("single_hall"))
    site.collector.mqtt.port = mosquitto.port
    site.collector.mqtt.ack_interval_s = 0.05
    site.collector.pipeline.max_age_s = 0.05
    site.collector.remote.url = victoria.url
    site.collector.remote.interval_s = 0.05
    twin = Twin(site, seed=3, start=datetime(2024, 7, 1, tzinfo=UTC))
    chunks = list(twin.run(0.25, chunk_days=0.1))  # 360 steps of 60 s, every meter each step
    published = ReadingColumns.concat(chunks)
    expected = {
        (m, q, t): round_significant(v, 10)
        for t, m, q, v in zip(published.ts_ms.tolist(), published.meter, published.quantity,
                              published.value.tolist(), strict=True)
    }
    store = Store()
    async with Collector(site, store) as collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "connection")
        sent = await publish_readings(site, chunks, "127.0.0.1", mosquitto.port)
        await wait_until(lambda: store.count() == sent, "every reading in DuckDB")
        await wait_until(lambda: collector.forwarder.backlog() == 0, "every reading forwarded")
        assert collector.stats().dead_letters == {}
    assert sent == len(published) == len(expected) == 360 * len(site.meters)
    local = store.read().to_readings()
    assert {(r.meter, r.quantity, r.ts_ms): r.value for r in local} == expected
    await asyncio.to_thread(victoria.flush)
    remote: dict[tuple[str, str, int], float] = {}
    for row in vm_series(victoria.url):
        labels = row["metric"]
        assert (labels["site"], labels["role"]) == ("hall-a", str(site.meter_by_id[labels["meter"]].role))
        for ts, value in zip(row["timestamps"], row["values"], strict=True):
            key = (labels["meter"], labels["__name__"].removeprefix("dcpue_"), ts)
            assert key not in remote  # exactly once
            remote[key] = value
    assert remote == expected
