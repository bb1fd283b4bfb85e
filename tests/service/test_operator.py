"""A real `dcpue run` process, used as an operator would: CLI read commands while it holds the
store (same output as offline), a write command told who holds the store, SIGHUP reloading a
changed threshold and surviving a broken file, JSON logs, a busy port, /healthz fields."""

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

from tests.servers import free_port, wait_for

RULE = """
[[service.alerts.thresholds]]
name = "RackInletHigh"
figure = "meter:rack-inlet-max"
above = {above}
for_min = 0
clear_margin = 0.5
severity = "critical"
"""


def site_text(tmp_path, mqtt_port: int, http_port: int, above: float) -> str:
    text = example_path("single_hall").read_text()
    text = text.replace('path = "var/hall-a.duckdb"', f"path = {json.dumps(str(tmp_path / 's.duckdb'))}")
    text = text.replace("port = 1883", f"port = {mqtt_port}").replace("port = 8080", f"port = {http_port}")
    text = text.replace("evaluate_every_s = 60", "evaluate_every_s = 1")
    head, _, tail = text.partition("[[service.alerts.thresholds]]")
    tail = tail.split("\n\n", 1)[1]  # drop the example's PueHigh rule
    return head + RULE.format(above=above) + "\n" + tail


def dcpue(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dcpue", *argv], capture_output=True,
                          text=True, timeout=180, cwd=cwd)


def test_daemon_serves_cli_readers_reloads_and_refuses_a_busy_port(mosquitto, tmp_path):
    port = free_port()
    config = tmp_path / "site.toml"
    config.write_text(site_text(tmp_path, mosquitto.port, port, above=99.0))
    site = load_site(config)
    assert dcpue("simulate", "--config", str(config), "--days", "0.05", "--no-progress").returncode == 0
    reads = [("pue", "--config", "site.toml"),
             ("report", "--config", "site.toml", "--from", "2023-01-01", "--to", "2023-01-02",
              "--format", "csv"),
             ("optimize", "proposals", "--config", "site.toml")]
    offline = [dcpue(*argv, cwd=tmp_path) for argv in reads]
    assert [r.returncode for r in offline] == [0, 0, 0], [r.stderr for r in offline]

    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "dcpue", "run", "--config", str(config),
                             "--log-format", "json"], stdout=log, stderr=subprocess.STDOUT)
    try:
        def health() -> dict:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").json()
            except httpx.TransportError:
                return {}

        wait_for(lambda: health().get("status") == "ok", "daemon /healthz", 60)
        assert {"ingest_lag_s", "readings_waiting", "reasons"} <= set(health())

        # Read commands while the daemon holds the store: the daemon runs them, same output.
        for argv, want in zip(reads, offline, strict=True):
            got = dcpue(*argv, cwd=tmp_path)
            assert (got.returncode, got.stdout) == (0, want.stdout), (argv, got.stderr)
        # A command that writes is refused in one line naming the holder's PID.
        busy = dcpue("optimize", "override", "--config", str(config))
        assert busy.returncode == 1 and "Traceback" not in busy.stderr
        assert f"PID {proc.pid}" in busy.stderr and "in use by another process" in busy.stderr

        # SIGHUP: a lowered threshold applies to the next evaluation; no reading is lost.
        now = int(time.time() * 1000) // 1000 * 1000

        def publish(ts: int, value: float) -> None:
            reading = Reading(ts, "rack-inlet-max", "temperature", value, "degC")
            asyncio.run(publish_readings(site, [[reading]], "127.0.0.1", mosquitto.port))

        def active() -> list[str]:
            body = httpx.get(f"http://127.0.0.1:{port}/api/alerts").json()
            return [a["name"] for a in body["active"]]

        publish(now, 50.0)
        time.sleep(3)
        assert "RackInletHigh" not in active()
        config.write_text(site_text(tmp_path, mosquitto.port, port, above=40.0))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "RackInletHigh" in active(), "alert after reload", 30)
        # A broken file is refused; the daemon keeps running on the previous one.
        config.write_text("[[[ not toml")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in (tmp_path / "daemon.log").read_text(), "log", 30)
        publish(now + 1000, 51.0)
        assert health().get("status") == "ok" and proc.poll() is None

        # A second daemon on the same HTTP port stops at once with one line.
        other = tmp_path / "other.toml"
        other.write_text(site_text(tmp_path, mosquitto.port, port, above=99.0).replace(
            "s.duckdb", "other.duckdb"))
        second = dcpue("run", "--config", str(other), "--log-level", "ERROR")
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert f"cannot serve the API on 127.0.0.1:{port}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == 0
    lines = (tmp_path / "daemon.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    messages = [r["message"] for r in records]
    assert any(m.startswith(f"dashboard on http://127.0.0.1:{port}/") for m in messages)
    assert any(m.startswith("ready: site hall-a") for m in messages)
    assert any(m.startswith("reloaded the site file: service") for m in messages)
    with Store(site.store.path) as store:
        late = store.series("rack-inlet-max", start_ms=now)
        assert late.value.tolist() == [50.0, 51.0]
