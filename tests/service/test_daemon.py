"""`dcpue run` end to end: the twin over real Mosquitto, SIGTERM and restart, a chiller fault
raising a PUE-drift alert at a real Alertmanager; then API, /metrics and Grafana queries on the
resulting store. One fast-forward run is shared by the module (test budget)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from dcpue.config import example_path, load_site
from dcpue.config.site import Site
from dcpue.core.store import Store
from dcpue.service.daemon import Runtime, SimScheduler, job_triggers
from dcpue.service.demo import SimClock
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import Mosquitto, free_port, wait_for
from tests.service.conftest import Alertmanager

DAY_MS = 86_400_000
START_MS = 1_688_169_600_000  # 2023-07-01T00:00Z, the twin's start in this test
DAYS = 6.0
FAULT_DAY = 4.5
STOP_AFTER_MS = START_MS + 2 * DAY_MS  # SIGTERM once the twin has passed day 2


def site_text(store: Path, am_url: str, http_port: int) -> str:
    """The bundled single-hall site with its store moved and test-sized service settings."""
    text = example_path("single_hall").read_text()
    text = text.split("\n[service]")[0]  # drop the example's own service block
    text = re.sub(r'(?m)^path = "var/hall-a.duckdb"$', f"path = {json.dumps(str(store))}", text)
    # Summer, when the chillers carry the load (in January the economizer does).
    text = re.sub(r"(?m)^start = 2023-01-01T00:00:00Z$", "start = 2023-07-01T00:00:00Z", text)
    return text + f"""
[service]
port = {http_port}

[service.schedule]
write_back_every_s = 900
proposals_every_min = 720
first_train_after_days = 2.0
retrain_days = 3.0

[service.alerts]
evaluate_every_s = 900

[service.alerts.drift]
baseline_samples = 24
for_min = 60
clear_for_min = 60

[service.alerts.stale]
factor = 30

[[service.notifiers]]
kind = "alertmanager"
url = "{am_url}"
"""


@dataclass
class Run:
    site: Site
    config: Path
    alertmanager: list[dict]
    first_exit: int
    second_exit: int
    stopped_at_ms: int


def dcpue(config: Path, mqtt_port: int, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dcpue", "run", "--config", str(config), "--twin",
         "--mqtt", f"127.0.0.1:{mqtt_port}", "--fast-forward", str(DAYS),
         "--chiller-degradation", "0.15", "--fault-day", str(FAULT_DAY), "--log-level", "WARNING"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def twin_position(store_path: Path) -> int:
    """Where the daemon's twin is, read through DuckDB's read-only mode (no lock conflict)."""
    import duckdb

    try:
        con = duckdb.connect(str(store_path), read_only=True)
    except duckdb.Error:
        return 0
    try:
        row = con.execute("SELECT value FROM state WHERE key = 'service.twin_next_ms'").fetchone()
    finally:
        con.close()
    return 0 if row is None else int(row[0])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("daemon")
    with Mosquitto(tmp / "mq") as broker, Alertmanager(tmp / "am") as am:
        http_port = free_port()
        store = tmp / "var" / "hall-a.duckdb"
        config = tmp / "site.toml"
        config.write_text(site_text(store, am.url, http_port))
        site = load_site(config)
        first = dcpue(config, broker.port, tmp)
        # The store is locked by the daemon; its HTTP API tells how far the twin got.
        wait_for(lambda: _api_now(http_port) >= STOP_AFTER_MS, "twin past day 2", 120)
        first.send_signal(signal.SIGTERM)
        first_out = first.communicate(timeout=60)[0]
        stopped_at = twin_position(store)
        second = dcpue(config, broker.port, tmp)
        second_out = second.communicate(timeout=300)[0]
        assert "Traceback" not in first_out + second_out, first_out + second_out
        alerts = am.alerts()
    return Run(site, config, alerts, first.returncode, second.returncode, stopped_at)


def _api_now(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/pue", timeout=2) as resp:
            return int(json.loads(resp.read())["now_ms"])
    except OSError:
        return 0


def test_sigterm_exits_cleanly_and_restart_resumes(run):
    assert run.first_exit == 0 and run.second_exit == 0
    assert START_MS + 2 * DAY_MS <= run.stopped_at_ms < START_MS + DAYS * DAY_MS


def test_no_reading_lost_or_duplicated_across_the_restart(run):
    steps = int(DAYS * 1440)
    with Store(run.site.store.path) as store:
        rows = store.execute(
            "SELECT meter, count(*), count(DISTINCT ts), min(ts), max(ts) FROM readings "
            "WHERE meter NOT LIKE 'metric.%' GROUP BY meter"
        ).fetchall()
        assert len(rows) == len(run.site.meters)
        for meter, n, distinct, lo, hi in rows:
            assert (n, distinct, lo, hi) == (steps, steps, START_MS, START_MS + (steps - 1) * 60_000), meter
        # The counter keeps counting through the restart: every 1-minute increase is an
        # 800-kW-class IT load (tens of kWh per minute at most), none negative or doubled.
        ups = store.series("ups-out")
        inc = np.diff(ups.value)
        assert inc.min() > 0 and inc.max() < 1000 / 60 * 1.5
        # Write-back every 15 min: the stored rolling PUE has every quarter hour exactly once.
        pue = store.series("metric.pue.1h")
        assert len(np.unique(pue.ts_ms)) == len(pue)
        assert set(np.diff(pue.ts_ms).tolist()) == {900_000}


def test_chiller_fault_raises_pue_drift_at_alertmanager(run):
    drift = [a for a in run.alertmanager if a["labels"]["alertname"] == "PueDrift"]
    assert len(drift) == 1, run.alertmanager
    alert = drift[0]
    assert alert["status"]["state"] == "active"
    assert alert["labels"]["site"] == "hall-a" and alert["labels"]["direction"] == "up"
    fault_ms = START_MS + FAULT_DAY * DAY_MS
    started = _parse_ms(alert["startsAt"])
    # Detection after the fault and within 12 h: hourly samples, CUSUM h = 8 σ, for = 60 min.
    assert fault_ms < started <= fault_ms + 12 * 3_600_000
    assert "above what the model expects" in alert["annotations"]["summary"]


def test_no_alert_fired_before_the_fault(run):
    with Store(run.site.store.path) as store:
        state = json.loads(store.get_state("service.alerts"))
    fault_ms = START_MS + FAULT_DAY * DAY_MS
    every = state["active"] + state["history"]
    assert [a for a in every if a["starts_ms"] < fault_ms] == []


@pytest.fixture
def api(run):
    """The API of a daemon restarted on the finished store, its clock at the end of the run."""
    with Store(run.site.store.path) as store:
        end = START_MS + int(DAYS * DAY_MS) - 60_000
        runtime = Runtime(run.site, store, SimClock(end))
        from dcpue.service.api import create_app

        transport = httpx.ASGITransport(app=create_app(runtime.api_sources()))
        yield runtime, httpx.AsyncClient(transport=transport, base_url="http://dcpue")


async def test_api_dashboard_numbers_match_the_stored_series(api):
    runtime, client = api
    body = (await client.get("/api/pue")).json()
    current = body["current"]
    assert current["name"] == "pue" and current["unit"] == "1"
    # The API's current PUE is the calculator's snapshot at "now" ...
    snap = runtime.calculator.snapshot(runtime.clock())["pue.1h"]
    assert current["value"] == pytest.approx(snap.value, rel=1e-12)
    # ... and the stored rolling series written back at the last quarter hour agrees with the
    # API's history endpoint, point for point.
    hist = (await client.get("/api/pue/history", params={"hours": 6, "step_s": 900})).json()
    stored = runtime.store.series("metric.pue.1h", start_ms=runtime.clock() - 6 * 3_600_000)
    got = {t: v for t, v in hist["points"]}
    assert len(got) >= 23
    for t, v in zip(stored.ts_ms.tolist(), stored.value.tolist(), strict=True):
        bucket = t - (t - (runtime.clock() - 6 * 3_600_000)) % 900_000
        assert got[bucket] == pytest.approx(v)
    # A write-back at the last quarter hour equals the snapshot at that time.
    last_t = int(stored.ts_ms[-1])
    assert runtime.calculator.snapshot(last_t)["pue.1h"].value == pytest.approx(stored.value[-1])


async def test_metrics_parse_with_prometheus_parser(api):
    runtime, client = api
    await client.get("/api/pue")
    resp = await client.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    ages = {s.labels["meter"]: s.value for s in families["dcpue_meter_last_reading_age_seconds"].samples}
    assert set(ages) == {m.id for m in runtime.site.meters}
    assert ages["ups-out"] == 0.0  # clock = the newest reading's time
    firing = {s.labels["severity"]: s.value for s in families["dcpue_alerts_firing"].samples}
    assert firing["warning"] == 1.0  # the PUE-drift alert
    figure = families["dcpue_figure"].samples[0]
    assert figure.labels == {"name": "pue.1h", "unit": "1"}
    assert "dcpue_job_duration_seconds" in families
    assert "dcpue_dead_letters" in families


async def test_grafana_query_sums_role_energy(api):
    runtime, client = api
    end = runtime.clock() + 60_000
    start = end - 3_600_000
    iso = lambda ms: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))  # noqa: E731
    assert (await client.get("/grafana/")).status_code == 200
    targets = (await client.post("/grafana/search", json={"target": ""})).json()
    assert {"meter:ups-out", "role:chiller", "metric:pue.1h"} <= set(targets)
    resp = await client.post("/grafana/query", json={
        "range": {"from": iso(start), "to": iso(end)}, "intervalMs": 3_600_000,
        "maxDataPoints": 100,
        "targets": [{"target": "role:it_load", "refId": "A"},
                    {"target": "meter:ups-out", "refId": "B", "payload": {"agg": "count"}}],
    })
    it, count = resp.json()
    # One bucket: 60 one-minute readings; kWh increase = last - first reading of the bucket
    # (the first sample is its own baseline), matching the raw counter.
    assert count["datapoints"] == [[60.0, start]]
    raw = runtime.store.series("ups-out", start_ms=start, end_ms=end)
    assert it["datapoints"][0][0] == pytest.approx(raw.value[-1] - raw.value[0])
    bad = await client.post("/grafana/query", json={
        "range": {"from": iso(start), "to": iso(end)}, "targets": [{"target": "meter:nope"}]})
    assert bad.status_code == 400 and "unknown meter" in bad.json()["error"]


def test_rollups_kept_by_the_daemon_equal_the_raw_readings(run):
    """Computed twice: facility and IT kWh of the second simulated day (across the restart's
    neighbourhood) from the hourly rollups the daemon's ``rollups`` job kept, and from the raw
    readings (metrics.balance.energy_balance); they must agree to 1e-9."""
    from dcpue.metrics import rollups
    from dcpue.metrics.balance import energy_balance

    lo, hi = START_MS + DAY_MS, START_MS + 2 * DAY_MS
    with Store(run.site.store.path) as store:
        kept = rollups.rollup_balance(run.site, store, lo, hi)
        raw = energy_balance(run.site, store, lo, hi)
    assert kept.it_kwh > 0
    assert kept.facility_kwh == pytest.approx(raw.facility_kwh, rel=1e-9)
    assert kept.it_kwh == pytest.approx(raw.it_kwh, rel=1e-9)


def test_simulated_scheduler_follows_apscheduler_triggers(run):
    fired: list[tuple[str, int]] = []

    async def record(name: str, ms: int) -> None:
        fired.append((name, ms))

    import asyncio

    sched = SimScheduler(job_triggers(run.site), record, START_MS - 1)
    asyncio.run(sched.advance(START_MS + 2 * DAY_MS))
    by_job: dict[str, list[int]] = {}
    for name, ms in fired:
        by_job.setdefault(name, []).append(ms)
    assert by_job["write_back"][:2] == [START_MS, START_MS + 900_000]
    assert len(by_job["write_back"]) == 2 * 96 + 1
    # retrain daily at 03:00 America/New_York = 07:00 UTC in July (EDT)
    assert by_job["retrain"] == [START_MS + 7 * 3_600_000, START_MS + 31 * 3_600_000]
    assert by_job["report"] == [START_MS + 4 * 3_600_000 + 1_800_000]  # 1st, 00:30 local
    assert [ms for _, ms in fired] == sorted(ms for _, ms in fired)
    # the interval jobs' next fire times are added up, not asked of the trigger: the same runs
    plain = SimScheduler(job_triggers(run.site), record, START_MS - 1)
    plain._interval_ms = {}
    assert list(plain.due(START_MS + 2 * DAY_MS)) == fired
    assert set(sched._interval_ms) >= {"write_back", "alerts", "proposals", "rollups"}


def _parse_ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)



@pytest.fixture
def live_api(run):
    """The API served by uvicorn on a free port, protected by a bearer token."""
    import dataclasses
    import threading

    import uvicorn
    from dcpue.service.api import create_app

    with Store(run.site.store.path) as store:
        runtime = Runtime(run.site, store, SimClock(START_MS + int(DAYS * DAY_MS) - 60_000))
        sources = dataclasses.replace(runtime.api_sources(), token="s3cret")
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(sources), host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started, "uvicorn")
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
        thread.join(timeout=10)


def test_bearer_token_protects_everything_but_healthz(live_api):
    assert httpx.get(f"{live_api}/healthz").status_code == 200
    assert httpx.get(f"{live_api}/api/pue").status_code == 401
    assert httpx.get(f"{live_api}/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = httpx.get(f"{live_api}/metrics", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert httpx.get(f"{live_api}/openapi.json", headers={"Authorization": "Bearer s3cret"}).json()["openapi"] == "3.1.0"


def test_dashboard_in_headless_chromium_shows_the_api_pue(live_api):
    from playwright.sync_api import sync_playwright

    api = httpx.get(f"{live_api}/api/pue", headers={"Authorization": "Bearer s3cret"}).json()
    expected = f"{api['current']['value']:.3f}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(f"{live_api}/?access_token=s3cret")
            page.wait_for_selector("body[data-loaded='true']", timeout=20_000)
            shown = page.text_content("#pue-current")
            status = page.text_content("#status")
            alerts = page.locator("#alerts li[data-alert='PueDrift']").count()
            energy = page.text_content("#energy-split")
            trend = page.get_attribute("#pue-line", "points")
        finally:
            browser.close()
    assert shown == expected
    assert status.startswith("updated"), status
    assert alerts == 1
    assert "IT" in energy and "Cooling" in energy and "kWh" in energy
    assert len(trend.split()) >= 24  # 24 h of quarter-hour points, or more


def test_fast_forward_keeps_every_store_call_off_the_event_loop(tmp_path, monkeypatch):
    """A one-day fast-forward of the bundled site (twin straight into the collector, the API
    asked meanwhile): no Store method is called from the event loop's thread (checked by
    wrapping every public Store method; a worker thread has no running loop), and asyncio's
    debug mode reports no callback that held the loop for 2 s or more (coarse: on a loaded
    2-core box even a timer callback can wait half a second for the CPU and the GIL)."""
    import asyncio
    import functools
    import logging
    import traceback

    from dcpue.service.demo import run_with_twin

    on_loop: list[str] = []

    def guard(name, method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                on_loop.append(f"Store.{name}\n" + "".join([f for f in traceback.format_stack()[:-1] if "/service/" in f or "/collector/" in f]))
            return method(*args, **kwargs)
        return wrapper

    for name, method in list(vars(Store).items()):
        if callable(method) and not name.startswith("_") and name not in ("close",):
            monkeypatch.setattr(Store, name, guard(name, method))
    slow: list[str] = []

    class Slow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "took" in record.getMessage():
                slow.append(record.getMessage())

    handler = Slow()
    logging.getLogger("asyncio").addHandler(handler)
    site = load_site(example_path("single_hall"))
    site.store.path = tmp_path / "ff.duckdb"

    async def main() -> int:
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = 2.0
        stop = asyncio.Event()
        task = asyncio.ensure_future(run_with_twin(site, store, stop, days=1.0,
                                                   via_mqtt=False, port=0))
        asked = 0
        async with httpx.AsyncClient(timeout=30) as client:
            while not task.done():
                info = site.store.path.with_name(site.store.path.name + ".daemon.json")
                if info.exists():
                    try:
                        url = json.loads(info.read_text())["url"]
                        (await client.get(f"{url}/api/pue")).raise_for_status()
                        asked += 1
                    except (httpx.TransportError, json.JSONDecodeError, KeyError):
                        pass
                await asyncio.sleep(0.02)
        await task
        return asked

    store = Store(site.store.path)
    try:
        asked = asyncio.run(main(), debug=True)
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
        store.close()
    assert asked > 0
    assert on_loop == [], "\n".join(sorted(set(on_loop)))
    assert slow == [], slow


def test_api_socket_is_tcp_so_responses_are_not_held_by_nagle():
    """The API's pre-bound socket names IPPROTO_TCP: asyncio sets TCP_NODELAY only on
    sockets whose protocol says TCP, and without it each response (headers and body written
    apart) waited ~40 ms for the client's delayed ACK. Checked on an accepted connection."""
    import socket

    from dcpue.service.daemon import bind_api

    site = load_site(example_path("single_hall"))
    site.service.host = "127.0.0.1"
    listener = bind_api(site, 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
        client = socket.create_connection(listener.getsockname()[:2], timeout=5)
        conn, _ = listener.accept()
        with client, conn:
            assert conn.proto == socket.IPPROTO_TCP
    finally:
        listener.close()
