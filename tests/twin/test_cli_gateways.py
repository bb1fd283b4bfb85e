"""``dcpue simulate --mqtt`` and ``--modbus-port``: the twin as field hardware, end to end."""

from __future__ import annotations

import asyncio
import re
import sys

from dcpue.collector.gateway_modbus import ModbusGateway
from dcpue.collector.service import Collector
from dcpue.config import example_path, load_site
from dcpue.core.store import Store

from tests.collector.conftest import wait_until
from tests.servers import free_port, port_open


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dcpue", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_simulate_mqtt_publishes_every_reading_into_the_collector(mosquitto):
    site = load_site(example_path("single_hall"))
    site.collector.mqtt.port = mosquitto.port
    site.collector.pipeline.max_age_s = 0.05
    store = Store()
    async with Collector(site, store, remote=False) as collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "connection")
        code, out, err = await run_cli(
            "simulate", "--config", str(example_path("single_hall")), "--days", "0.5",
            "--mqtt", f"127.0.0.1:{mosquitto.port}", "--no-progress",
        )
        assert code == 0, err
        sent = int(re.search(r"published ([\d,]+) readings", out).group(1).replace(",", ""))
        assert sent == 720 * len(site.meters)  # 12 h of 60 s steps, every meter each step
        await wait_until(lambda: store.count() == sent, "every published reading stored")
        assert collector.stats().dead_letters == {}
    store.close()


async def test_simulate_modbus_port_serves_registers_the_collector_polls():
    site = load_site(example_path("single_hall"))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dcpue", "simulate", "--config", str(example_path("single_hall")),
        "--days", "0.05", "--speedup", "600", "--modbus-port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_until(lambda: port_open(port), "Modbus gateway listening")
        site.collector.modbus = ModbusGateway(site, port=port).settings(interval_s=0.05)
        store = Store()
        async with Collector(site, store, remote=False) as collector:
            await wait_until(
                lambda: len(collector.pipeline.stats.last_ts_ms) == len(site.meters),
                "a reading of every meter polled",
            )
            await collector.pipeline.commit()
        it = store.latest("ups-out")
        assert it is not None and it.unit == "kWh" and it.value > 0
        assert store.dead_letter_counts() == {}
        store.close()
    finally:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert "[collector.modbus]" in err.decode() or "[[collector.modbus" in err.decode()
