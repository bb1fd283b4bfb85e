"""deploy/: the compose file, Grafana provisioning and dashboard, and the systemd unit."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import pytest
import yaml
from dcpue.config import example_path, load_site
from dcpue.core.store import Store
from dcpue.optimizer.propose import ProposalLog
from dcpue.service.api import BadRequest, query_series

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_compose_runs_the_four_services_with_existing_files():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"mosquitto", "victoriametrics", "grafana", "dcpue"}
    assert services["dcpue"]["stop_signal"] == "SIGTERM"
    assert services["dcpue"]["command"][:2] == ["dcpue", "run"]
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and not source.endswith("site.toml"):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
            elif not source.startswith("./"):
                assert source in compose["volumes"], f"{name}: named volume {source}"
    assert (DEPLOY / services["dcpue"]["build"]["dockerfile"].removeprefix("deploy/")).exists()


def test_grafana_datasources_point_at_victoriametrics_and_the_json_api():
    doc = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/dcpue.yaml").read_text())
    by_uid = {d["uid"]: d for d in doc["datasources"]}
    assert by_uid["victoriametrics"]["type"] == "prometheus"
    assert by_uid["victoriametrics"]["url"] == "http://victoriametrics:8428"
    assert by_uid["dcpue-json"]["type"] == "simpod-json-datasource"
    assert by_uid["dcpue-json"]["url"].endswith("/grafana")
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/dcpue.yaml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboard_targets_are_all_answered_by_the_api(tmp_path):
    dash = json.loads((DEPLOY / "grafana/dashboards/dcpue.json").read_text())
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("pue", "energy", "carbon", "proposals"):
        assert topic in titles
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]}
    assert uids == {"victoriametrics", "dcpue-json"}
    site = load_site(example_path("single_hall"))
    json_targets = [t for p in dash["panels"] for t in p["targets"]
                    if t["datasource"]["uid"] == "dcpue-json"]
    with Store(tmp_path / "s.duckdb") as store:
        ProposalLog(store)
        for t in json_targets:  # every target is valid for the API (empty store: no points)
            agg = (t.get("payload") or {}).get("agg")
            assert len(query_series(site, store, t["target"], 0, 3_600_000, 60_000, agg)) == 0
        with pytest.raises(BadRequest):
            query_series(site, store, "role:nope", 0, 3_600_000, 60_000, None)


def test_systemd_unit_restarts_on_failure_as_its_own_user():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string((DEPLOY / "dcpue.service").read_text())
    svc = unit["Service"]
    assert svc["Restart"] == "on-failure"
    assert svc["User"] == svc["Group"] == "dcpue"
    assert " run --config " in svc["ExecStart"]
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
