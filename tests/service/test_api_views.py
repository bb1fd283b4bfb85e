"""The dashboard's API against a daemon that fast-forwarded the twin: ranges, per-day and
per-hour balance, PUE against wet bulb, data quality, raw readings, proposals in words, and
`dcpue export` while the daemon holds the store (same rows as offline, checked in
test_export_after_stop)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import pytest

from tests.service.conftest import TWIN_START_MS

DAY_MS = 86_400_000


def test_energy_takes_from_and_to(daemon):
    day2 = (TWIN_START_MS + DAY_MS, TWIN_START_MS + 2 * DAY_MS)
    body = daemon.get("/api/energy", **{"from": day2[0], "to": day2[1]}).json()
    assert (body["from_ms"], body["to_ms"]) == day2 and body["hours"] == 24
    f = body["figures"]
    # An 800 kW-class hall: 24 h of IT energy is 15-25 MWh; facility above IT.
    assert 15_000 < f["it"]["value"] < 25_000 and f["it"]["unit"] == "kWh"
    assert f["facility"]["value"] > f["it"]["value"]
    iso = daemon.get("/api/energy", **{"from": "2023-07-01T20:00:00", "to": "2023-07-02T20:00"})
    assert iso.json()["from"] == "2023-07-02T00:00:00+00:00"  # site time: America/New_York EDT
    assert daemon.get("/api/energy", **{"from": "nope"}).status_code == 400


def test_daily_balance_is_the_energy_engine_per_local_day(daemon):
    """Each day's bucket equals /api/energy over the same local day (one engine), and PUE =
    facility / IT of that day."""
    body = daemon.get("/api/balance", step="day", **{"from": "2023-07-01",
                                                      "to": "2023-07-04"}).json()
    days = body["buckets"]
    assert [d["start_ms"] for d in days] == [TWIN_START_MS + 4 * 3_600_000 + k * DAY_MS
                                             for k in range(3)]  # local midnight = 04:00Z
    for d in days[1:]:
        same = daemon.get("/api/energy", **{"from": d["start_ms"], "to": d["end_ms"]}).json()
        assert d["it"] == pytest.approx(same["figures"]["it"]["value"], rel=1e-9)
        assert d["pue"] == pytest.approx(d["facility"] / d["it"], rel=1e-12)
        assert 1.05 < d["pue"] < 2.0
        parts = sum(d[k] for k in ("it", "cooling", "power_loss", "lighting", "other"))
        assert parts == pytest.approx(d["facility"], rel=1e-9)
    hours = daemon.get("/api/balance", step="hour", **{"from": TWIN_START_MS + DAY_MS,
                                                       "to": TWIN_START_MS + 2 * DAY_MS}).json()
    assert len(hours["buckets"]) == 24
    assert sum(h["it"] for h in hours["buckets"]) == pytest.approx(
        daemon.get("/api/energy", **{"from": TWIN_START_MS + DAY_MS,
                                     "to": TWIN_START_MS + 2 * DAY_MS}).json()["figures"]["it"]
        ["value"], rel=1e-9)
    assert daemon.get("/api/balance", step="hour", hours=24 * 3000).status_code == 400


def test_pue_against_wet_bulb(daemon):
    body = daemon.get("/api/pue/weather", **{"from": TWIN_START_MS,
                                             "to": TWIN_START_MS + 3 * DAY_MS}).json()
    pts = body["points"]
    assert len(pts) >= 60  # hourly, a few hours short of coverage at the start
    wet = [p[0] for p in pts]
    assert 10 < min(wet) < max(wet) < 30  # Greensboro July wet bulb, degC
    assert all(1.0 < p[1] < 2.5 for p in pts)


def test_data_quality(daemon):
    body = daemon.get("/api/quality", **{"from": TWIN_START_MS + DAY_MS,
                                         "to": TWIN_START_MS + 2 * DAY_MS}).json()
    by_meter = {m["meter"]: m for m in body["meters"]}
    assert by_meter["ups-out"]["coverage"] == pytest.approx(1.0)
    assert by_meter["ups-out"]["rollovers"] == 0 and not by_meter["ups-out"]["stale"]
    assert body["stale"] == [] and isinstance(body["dead_letters"], dict)


def test_warming_up_and_best_window(daemon):
    body = daemon.get("/api/pue").json()
    assert body["warming_up"] is None and body["best_figure"] == "pue.1h"
    assert body["timezone"] == "America/New_York"


def test_raw_readings_bounded_pages(daemon):
    rng = {"from": TWIN_START_MS, "to": TWIN_START_MS + 3_600_000}
    first = daemon.get("/api/readings", meter="ups-out", limit=100, **rng).json()
    assert first["columns"] == ["ts", "ts_ms", "meter", "quantity", "value", "unit"]
    assert len(first["rows"]) == 60 and first["next_from"] is None  # 1-minute counter, 1 h
    assert first["rows"][0][:4] == ["2023-07-01T00:00:00.000Z", TWIN_START_MS, "ups-out",
                                    "energy"]
    paged = daemon.get("/api/readings", limit=100, **rng).json()
    assert len(paged["rows"]) <= 100 and paged["next_from"] is not None
    cut = paged["next_from"]
    assert all(r[1] < cut for r in paged["rows"])  # pages end on a whole millisecond
    text = daemon.get("/api/readings", meter="ups-out", format="csv", limit=100, **rng).text
    assert len(list(csv.reader(io.StringIO(text)))) == 61
    assert daemon.get("/api/readings", meter="nope", **rng).status_code == 400
    assert daemon.get("/api/readings", limit=10**9, **rng).status_code == 400


def test_proposals_in_plain_words(daemon):
    props = daemon.get("/api/proposals", limit=5).json()["proposals"]
    assert props, "the optimizer proposed nothing after the commissioning sweep"
    for p in props:
        assert "_" not in p["text"].split(":")[0], p["text"]  # words, not column names
        if p["status"] == "proposed":
            assert " -> " in p["text"] and ("raise" in p["text"] or "lower" in p["text"])


def test_alert_groups_ack_and_silence(daemon):
    import httpx

    body = daemon.get("/api/alerts").json()
    (group,) = [g for g in body["groups"] if g["cause"] == "PueAboveOne"]
    alert_id = group["ids"][0]
    headers = {"Authorization": f"Bearer {daemon.token}"}
    acked = httpx.post(f"{daemon.url}/api/alerts/{alert_id}/ack", headers=headers).json()
    assert acked["acknowledged_by"] == "bearer_token"
    httpx.post(f"{daemon.url}/api/alerts/{alert_id}/silence", json={"minutes": 60},
               headers=headers).raise_for_status()
    shown = {a["id"]: a for a in daemon.get("/api/alerts").json()["active"]}[alert_id]
    assert shown["acknowledged_by"] == "bearer_token" and shown["silenced_until_ms"]


def export(daemon, *extra: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "dcpue", "export", "--config", str(daemon.config),
         "--from", "2023-07-01T00:00:00Z", "--to", "2023-07-01T02:00:00Z", *extra],
        capture_output=True, text=True, timeout=120,
        env=os.environ | {"DCPUE_TEST_DAEMON_TOKEN": daemon.token})


def test_export_while_the_daemon_runs(daemon, tmp_path):
    got = export(daemon, "--meter", "ups-out", "--meter", "chiller-1")
    assert got.returncode == 0, got.stderr
    rows = list(csv.reader(io.StringIO(got.stdout)))
    assert rows[0] == ["ts", "ts_ms", "meter", "quantity", "value", "unit"]
    assert len(rows) == 1 + 2 * 120
    assert [r[2] for r in rows[1:3]] == ["chiller-1", "ups-out"]  # time order, then meter
    parquet = export(daemon, "--format", "parquet", "--output", str(tmp_path / "r.parquet"))
    assert parquet.returncode == 0, parquet.stderr
    import duckdb

    ((n, meters),) = duckdb.sql(f"SELECT count(*), count(DISTINCT meter) FROM "
                                f"'{tmp_path / 'r.parquet'}'").fetchall()
    assert meters == 16 and n == 16 * 120
