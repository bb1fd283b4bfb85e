"""`dcpue run --config` in production mode: real MQTT in, wall-clock jobs, clean SIGTERM exit."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import httpx
from dcpue.collector.gateway_mqtt import publish_readings
from dcpue.config import example_path, load_site
from dcpue.core.readings import Reading
from dcpue.core.store import Store
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import free_port, wait_for


def test_realtime_daemon_collects_serves_and_stops_on_sigterm(mosquitto, tmp_path):
    port = free_port()
    text = example_path("single_hall").read_text()
    text = text.replace('path = "var/hall-a.duckdb"', f"path = {json.dumps(str(tmp_path / 's.duckdb'))}")
    text = text.replace("port = 1883", f"port = {mosquitto.port}")
    text = text.replace("port = 8080", f"port = {port}")
    config = tmp_path / "site.toml"
    config.write_text(text)
    site = load_site(config)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcpue", "run", "--config", str(config), "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, "daemon HTTP", 30)
        now = int(time.time() * 1000) // 60_000 * 60_000
        readings = [Reading(now - k * 60_000, "ups-out", "energy", 1000.0 - k * 10, "kWh")
                    for k in range(5)]
        asyncio.run(publish_readings(site, [readings], "127.0.0.1", mosquitto.port))

        def received() -> float:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            for family in text_string_to_metric_families(text):
                if family.name == "dcpue_readings_received":
                    return sum(s.value for s in family.samples)
            return 0.0

        wait_for(lambda: received() == 5.0, "5 readings received", 30)
        # The age appears once the pipeline has committed the batch to the store.
        wait_for(lambda: 'dcpue_meter_last_reading_age_seconds{meter="ups-out"}'
                 in httpx.get(f"http://127.0.0.1:{port}/metrics").text, "meter age", 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    with Store(site.store.path) as store:
        assert store.count("ups-out") == 5


def test_demo_history_ends_with_proposals(tmp_path):
    """`dcpue run` without a config (the demo): the simulated history (a commissioning sweep,
    the first plant model fitted in the trainer's worker process) ends with proposals on the
    API, so the dashboard's optimizer card has data at once. Computed: the proposals the daemon
    made; declared: nothing."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcpue", "run", "--port", str(port), "--store",
         str(tmp_path / "demo.duckdb"), "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )
    try:
        def live() -> bool:  # the history is simulated up to the wall clock
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").json()["clock"] == "wall"
            except httpx.TransportError:
                return False

        wait_for(live, "demo caught up with the wall clock", 240)
        proposals = httpx.get(f"http://127.0.0.1:{port}/api/proposals").json()["proposals"]
        assert proposals, "the simulated history ended without a proposal"
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
