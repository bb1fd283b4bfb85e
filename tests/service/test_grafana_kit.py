"""The Grafana kit: both dashboards are structurally valid Grafana dashboards (what can be
checked offline: ids, grid, refIds, data sources, variables, `$site` everywhere), and every
panel's query returns data from a real VictoriaMetrics fed by a fast-forwarded twin and by
scraping the daemon's /metrics; power-kind meters count in the energy panels."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.servers import wait_for
from tests.service.conftest import TWIN_START_MS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana/dashboards").glob("*.json"))
PANEL_TYPES = {"stat", "timeseries", "table", "gauge", "barchart", "text"}
#: Rolling windows longer than the 4-day twin run: never computed there (insufficient data).
LONGER_THAN_RUN = ("metric.pue.12mo",)
#: Metrics that come from scraping /metrics (wall-clock time), not from the twin's readings.
SCRAPED = ("dcpue_meter_last_reading_age_seconds", "dcpue_dead_letters_total")
HOUR_MS = 3_600_000


def dashboards() -> list[dict]:
    return [json.loads(p.read_text()) for p in DASHBOARDS]


def targets(dash: dict) -> list[tuple[dict, dict]]:
    return [(p, t) for p in dash["panels"] for t in p["targets"]]


def test_dashboards_are_valid_grafana_dashboards():
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/dcpue.yaml").read_text())["datasources"]
    uids = {d["uid"]: d["type"] for d in provisioned}
    assert [p.name for p in DASHBOARDS] == ["dcpue.json", "fleet.json"]
    seen_uids = set()
    for dash in dashboards():
        for key, kind in (("uid", str), ("title", str), ("schemaVersion", int),
                          ("panels", list), ("templating", dict), ("time", dict)):
            assert isinstance(dash[key], kind), key
        assert dash["uid"] not in seen_uids and len(dash["uid"]) <= 40
        seen_uids.add(dash["uid"])
        variables = {v["name"] for v in dash["templating"]["list"]}
        assert "site" in variables
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids))
        for p in dash["panels"]:
            assert p["type"] in PANEL_TYPES and p["title"]
            g = p["gridPos"]
            assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)) and refs
            for t in p["targets"]:
                ds = t["datasource"]
                assert uids[ds["uid"]] == ds["type"]
                text = json.dumps(t)
                used = set(re.findall(r"\$(\w+)", text)) - {"__interval", "__interval_ms",
                                                            "__range", "__rate_interval"}
                assert used <= variables, used
                if ds["uid"] == "victoriametrics":
                    # $site honoured by every selector of every query
                    selectors = re.findall(r"\b(dcpue_\w+)\{([^}]*)\}", t["expr"])
                    assert selectors and all('site=~"$site"' in sel for _, sel in selectors), \
                        t["expr"]
                else:
                    assert t["payload"]["site"] == "$site"


def substitute(expr: str, site: str, step: str, step_ms: int, span: str) -> str:
    return (expr.replace("$__interval_ms", str(step_ms)).replace("$__interval", step)
            .replace("$__rate_interval", step).replace("$__range", span)
            .replace("$site", site))


def series(daemon, expr: str, start_ms: int, end_ms: int, step_s: int) -> list[dict]:
    body = daemon.victoria.query("/api/v1/query_range", query=expr, start=start_ms / 1000,
                                 end=end_ms / 1000, step=f"{step_s}s")
    assert body["status"] == "success", body
    return [s for s in body["data"]["result"] if s["values"]]


def test_every_panel_query_returns_data(daemon):
    vm = daemon.victoria
    urllib.request.urlopen(f"{vm.url}/internal/force_flush", timeout=10).close()
    wait_for(lambda: vm.query("/api/v1/query", query="dcpue_meter_last_reading_age_seconds")
             ["data"]["result"], "a scrape of /metrics", 60)
    start, end = TWIN_START_MS + 24 * HOUR_MS, TWIN_START_MS + 96 * HOUR_MS - 15 * 60_000
    empty = []
    for dash in dashboards():
        for panel, t in targets(dash):
            if t["datasource"]["uid"] != "victoriametrics":
                continue
            expr = t["expr"]
            if any(name in expr for name in SCRAPED):
                now = int(time.time() * 1000)
                q = substitute(expr, "hall-a", "30s", 30_000, "5m")
                got = series(daemon, q, now - 300_000, now, 15)
            elif t.get("instant"):
                q = substitute(expr, "hall-a", "1h", HOUR_MS, "3d")
                body = vm.query("/api/v1/query", query=q, time=end / 1000)
                got = body["data"]["result"]
            else:
                q = substitute(expr, "hall-a", "1h", HOUR_MS, "3d")
                got = series(daemon, q, start, end, 3600)
            if not got and not any(name in expr for name in LONGER_THAN_RUN):
                empty.append((dash["uid"], panel["title"], t["refId"], q))
    assert empty == []


def test_json_panel_honours_site(daemon):
    import httpx

    (panel,) = [p for p in dashboards()[0]["panels"]
                if p["targets"][0]["datasource"]["uid"] == "dcpue-json"]
    target = panel["targets"][0]
    body = {"range": {"from": TWIN_START_MS, "to": TWIN_START_MS + 96 * HOUR_MS},
            "intervalMs": HOUR_MS, "targets": [target | {"payload": {"site": "hall-a"}}]}
    headers = {"Authorization": f"Bearer {daemon.token}"}
    ours = httpx.post(f"{daemon.url}/grafana/query", json=body, headers=headers).json()
    assert ours[0]["datapoints"], "no proposal series"
    body["targets"] = [target | {"payload": {"site": "{hall-b,hall-c}"}}]
    other = httpx.post(f"{daemon.url}/grafana/query", json=body, headers=headers).json()
    assert other[0]["datapoints"] == []


def test_power_meters_count_in_the_energy_panel(daemon):
    """50 kW on a power-kind CRAH meter of a site 'lab' for 3 h: the energy panel's query
    gives 50 kWh in each full hour (integrated, not dropped)."""
    vm = daemon.victoria
    t0 = TWIN_START_MS + 10 * 24 * HOUR_MS  # after the twin's days, nothing else there
    lines = "\n".join(f"dcpue,meter=crah-p,role=crah,site=lab power=50 {(t0 + k * 60_000) * 10**6}"
                      for k in range(181))
    req = urllib.request.Request(f"{vm.url}/write", data=lines.encode(), method="POST")
    urllib.request.urlopen(req, timeout=10).close()
    urllib.request.urlopen(f"{vm.url}/internal/force_flush", timeout=10).close()
    (panel,) = [p for p in dashboards()[0]["panels"] if p["title"].startswith("Energy by")]
    q = substitute(panel["targets"][0]["expr"], "lab", "1h", HOUR_MS, "3h")

    def hourly() -> list[float]:
        got = series(daemon, q, t0 + 2 * HOUR_MS, t0 + 3 * HOUR_MS, 3600)
        return [float(v) for s in got if s["metric"].get("role") == "crah"
                for _, v in s["values"]]

    wait_for(hourly, "lab power series", 30)
    assert hourly() == pytest.approx([50.0, 50.0], rel=0.02)
