"""``dcpue simulate`` on the EnergyPlus plant: into the store, and as an MQTT gateway."""

from __future__ import annotations

import re

from dcpue.collector.service import Collector
from dcpue.config import MeterKind
from dcpue.core.store import Store

from tests.collector.conftest import wait_until
from tests.twin.test_cli_gateways import run_cli
from tests.twin_energyplus.conftest import HALL_TOML, hall_site


async def test_simulate_into_the_store_is_idempotent(tmp_path):
    """One day: 96 steps x 15 meters (13 fed, 2 setpoints) + 9 counters at the start instant;
    a rerun adds 0."""
    store = tmp_path / "eplus.duckdb"
    args = ("simulate", "--config", str(HALL_TOML), "--days", "1", "--store", str(store),
            "--no-progress")
    code, out, err = await run_cli(*args)
    assert code == 0, err
    assert "wrote 1,449 new rows" in out
    assert "simulated 2023-07-01 06:00 .. 2023-07-02 06:00 UTC" in out
    pue = float(re.search(r"PUE (\d\.\d+)", out).group(1))
    assert 1.1 < pue < 1.6
    code, out, err = await run_cli(*args)
    assert code == 0, err
    assert "wrote 0 new rows" in out


async def test_simulate_mqtt_feeds_the_collector(mosquitto):
    site = hall_site()
    site.collector.mqtt.port = mosquitto.port
    site.collector.pipeline.max_age_s = 0.05
    counters = sum(m.kind is MeterKind.COUNTER for m in site.meters)
    with Store() as store:
        async with Collector(site, store, remote=False) as collector:
            await wait_until(lambda: collector.stats().mqtt_connected, "connection")
            code, out, err = await run_cli(
                "simulate", "--config", str(HALL_TOML), "--days", "1",
                "--mqtt", f"127.0.0.1:{mosquitto.port}", "--no-progress",
            )
            assert code == 0, err
            sent = int(re.search(r"published ([\d,]+) readings", out).group(1).replace(",", ""))
            assert sent == 96 * len(site.meters) + counters
            await wait_until(lambda: store.count() == sent, "every published reading stored")
            assert collector.stats().dead_letters == {}
