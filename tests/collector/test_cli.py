"""``dcpue collect`` as a real process: SIGTERM flushes; SIGKILL before a commit loses nothing."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

from dcpue.collector.gateway_mqtt import publish_readings
from dcpue.collector.service import Collector
from dcpue.config import load_site
from dcpue.core.store import Store

from tests.collector.conftest import wait_until
from tests.collector.helpers import once, stored, stream

SITE_TOML = """
id = "test-site"
latitude = 36.1
longitude = -79.95

[grid]
emission_factor_t_per_mwh = 0.5703
source = "test"

[store]
path = "collector.duckdb"

[[meters]]
id = "grid"
role = "grid_import"
kind = "counter"
unit = "kWh"

[[meters]]
id = "it"
role = "it_load"
kind = "counter"
unit = "kWh"
it_category = "ups_output"

[[meters]]
id = "pdu-1"
role = "it_load"
kind = "power"
unit = "kW"
it_category = "pdu_output"
max_power_kw = 100.0

[[meters]]
id = "oat"
role = "outdoor_temperature"
kind = "state"
unit = "degC"

[collector.mqtt]
port = {port}
client_id = "cli-test"
ack_interval_s = {ack_interval_s}
ack_batch = 1000

[[collector.mqtt.subscriptions]]
topic = "dcpue/test-site/#"

[collector.pipeline]
max_age_s = {max_age_s}
"""


def write_site(tmp_path: Path, port: int, *, ack_interval_s: float, max_age_s: float) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(SITE_TOML.format(port=port, ack_interval_s=ack_interval_s, max_age_s=max_age_s))
    return path


async def start_collect(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dcpue", "collect", "--config", str(config),
        "--status-every", "0.05",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def wait_log(proc: asyncio.subprocess.Process, pattern: bytes, at_least: int = 0) -> None:
    """Read the process log until a line matches ``pattern`` (with a number >= ``at_least``)."""
    async def scan() -> None:
        while line := await proc.stderr.readline():
            found = re.search(pattern, line)
            if found and (not found.groups() or int(found[1]) >= at_least):
                return
        raise AssertionError(f"collector exited before logging {pattern!r}")

    await asyncio.wait_for(scan(), 30)


async def wait_connected(proc: asyncio.subprocess.Process) -> None:
    await wait_log(proc, rb"mqtt: connected")  # logged once the subscriptions are in place


async def wait_received(proc: asyncio.subprocess.Process, count: int) -> None:
    await wait_log(proc, rb"status: in (\d+)", count)


async def test_sigterm_flushes_and_exits_zero(mosquitto, tmp_path):
    config = write_site(tmp_path, mosquitto.port, ack_interval_s=60, max_age_s=60)
    site = load_site(config)
    readings = stream(0, 50)
    proc = await start_collect(config)
    try:
        await wait_connected(proc)
        await publish_readings(site, [readings], "127.0.0.1", mosquitto.port, batch_size=25)
        await wait_received(proc, len(readings))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    summary = json.loads(out.splitlines()[-1])
    assert (summary["readings_in"], summary["readings_stored"]) == (200, 200)
    with Store(site.store.path) as store:  # nothing commits within 60 s: the shutdown flush did
        assert stored(store) == once(readings)


async def test_kill_9_after_receipt_but_before_commit_loses_nothing(mosquitto, tmp_path):
    """Acknowledgements wait for the DuckDB commit, so the broker redelivers after a crash."""
    config = write_site(tmp_path, mosquitto.port, ack_interval_s=60, max_age_s=60)
    site = load_site(config)
    readings = stream(0, 40)
    proc = await start_collect(config)
    await wait_connected(proc)
    await publish_readings(site, [readings], "127.0.0.1", mosquitto.port, batch_size=16)
    await wait_received(proc, len(readings))  # in memory, neither committed nor acknowledged
    proc.kill()
    await proc.wait()
    with Store(site.store.path) as store:
        assert store.count() == 0
        async with Collector(site, store) as collector:
            # The broker resends every unacknowledged message to the same client id.
            await wait_until(lambda: collector.stats().readings_in == len(readings), "redelivery")
        assert stored(store) == once(readings)
