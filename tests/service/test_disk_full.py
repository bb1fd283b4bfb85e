"""A full disk under the store, for real: a small tmpfs (needs root to mount; skipped
otherwise). Store writes fail, the collector holds the readings and acknowledges nothing,
/healthz says degraded and the log says so once; when space returns it resumes by itself and
every reading is stored."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess

import pytest
from dcpue.collector.gateway_mqtt import publish_readings
from dcpue.collector.service import Collector
from dcpue.config import example_path, load_site
from dcpue.core.readings import Reading
from dcpue.core.store import Store
from dcpue.service.daemon import Runtime


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path) -> None:
    with path.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


async def wait(check, what: str, timeout_s: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_disk_full_holds_readings_degrades_and_recovers(small_disk, mosquitto, tmp_path,
                                                               caplog):
    text = example_path("single_hall").read_text()
    text = text.replace('path = "var/hall-a.duckdb"',
                        f"path = {json.dumps(str(small_disk / 's.duckdb'))}")
    config = tmp_path / "site.toml"
    config.write_text(text.replace("port = 1883", f"port = {mosquitto.port}"))
    site = load_site(config)
    caplog.set_level(logging.INFO, logger="dcpue.collector.service")
    t0 = 1_700_000_000_000

    def batch(k: int, n: int) -> list[Reading]:
        return [Reading(t0 + (k * n + i) * 1000, "ups-out", "energy", float(k * n + i), "kWh")
                for i in range(n)]

    with Store(site.store.path) as store:
        collector = Collector(site, store)
        await collector.start()
        runtime = Runtime(site, store, lambda: t0, collector)
        try:
            await wait(lambda: collector.stats().mqtt_connected, "MQTT connected")
            await publish_readings(site, [batch(0, 100)], "127.0.0.1", mosquitto.port)
            await wait(lambda: collector.stats().readings_stored == 100, "first batch stored")
            filler = small_disk / "filler"
            fill(filler)
            await publish_readings(site, [batch(k, 5000) for k in range(1, 5)], "127.0.0.1",
                                   mosquitto.port)
            await wait(lambda: collector.store_failing > 0, "store writes failing")
            status = runtime.status()
            assert status["status"] == "degraded" and "store writes failing" in status["reasons"][0]
            assert status["readings_waiting"] > 0
            await wait(lambda: "writes failing" in caplog.text, "the log says so")
            filler.unlink()
            await wait(lambda: collector.stats().readings_stored == 20_100, "all stored", 120)
            await wait(lambda: "writes work again" in caplog.text, "the log says resumed")
            assert runtime.status()["status"] == "ok" and collector.store_failing == 0
        finally:
            await collector.stop()
        assert store.count("ups-out") == 20_100
