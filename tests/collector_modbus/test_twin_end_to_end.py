"""Twin -> Modbus gateway -> collector (poller + DuckDB pipeline): values arrive exactly."""

from __future__ import annotations

import struct

from dcpue.collector.gateway_modbus import ModbusGateway
from dcpue.collector.service import Collector
from dcpue.config import MeterKind, example_path, load_site
from dcpue.core.store import Store
from dcpue.twin.simulator import Twin

from tests.collector_modbus.conftest import wait_until


def _float32(value: float) -> float:
    return struct.unpack(">f", struct.pack(">f", value))[0]


async def test_twin_steps_reach_the_store_through_modbus() -> None:
    site = load_site(example_path("single_hall"))
    twin = Twin(site, seed=7)
    store = Store(":memory:")
    async with ModbusGateway(site, port=0) as gateway:
        site.collector.modbus = gateway.settings(interval_s=0.05)
        async with Collector(site, store, remote=False) as collector:
            assert "modbus" in collector.source_names
            for _ in range(2):  # two twin steps, each read back through Modbus
                step = twin.step()
                gateway.update(step.readings)
                # counters and powers travel as float64 (exact), states as float32
                expected = {
                    r.meter: r.value if site.meter_by_id[r.meter].kind is not MeterKind.STATE
                    else _float32(r.value)
                    for r in step.readings
                }
                seen = collector.pipeline.stats.readings_in
                await wait_until(
                    lambda seen=seen: collector.pipeline.stats.readings_in >= seen + 2 * 16,
                    "two polls of the new step",
                )
                await collector.pipeline.commit()
                got = {m: store.latest(m) for m in expected}
                assert {m: r.value for m, r in got.items() if r} == expected
                assert {(r.meter, r.unit) for r in step.readings} == {
                    (m, r.unit) for m, r in got.items() if r}
    assert store.dead_letter_counts() == {}
    store.close()
