"""The fleet path on a simulated fleet through a real VictoriaMetrics.

Computed: each site's hourly terms (published from its DuckDB store), the fleet report read
back with MetricsQL. Compared against: each site's own ``dcpue report`` (carbon.report.
site_report over the same period from its store) and the metrics energy balance. Nothing in
the expected values is typed in except the period and the inclusion rule of the example fleet
(dc-young commissioned 2022-07-01: 6 months at 2023-01-03, below 12).
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from dcpue.carbon.periods import date_ms
from dcpue.carbon.report import site_report
from dcpue.config.site import load_site
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store
from dcpue.fleet.publish import publish_site
from dcpue.fleet.query import RemoteError
from dcpue.fleet.report import fleet_report
from dcpue.metrics.balance import energy_balance
from dcpue.twin.simulator import Twin

from dcpue.cli import main
from tests.fleet.conftest import DAYS, END, START, DedupVictoriaMetrics, VmAgent, fleet_for
from tests.servers import wait_for

REL = 1e-9


def site_figures(site, path):
    """The site's own report figures and energy balance over the period, from its store."""
    with Store(path) as store:
        acc = site_report(site, store, START, END).accounts[0]
        balance = energy_balance(site, store, date_ms(START, _zone(site)), date_ms(END, _zone(site)))
    return acc.figures, balance


def _zone(site):
    from zoneinfo import ZoneInfo
    return ZoneInfo(site.timezone)


def test_fleet_report_equals_the_sum_of_the_site_reports(sim):
    report = fleet_report(sim["fleet"], START, END)
    rows = {r.site.id: r for r in report.sites}
    totals = {"electricity": 0.0, "grid_electricity": 0.0, "onsite_pv": 0.0,
              "scope2_location": 0.0}
    facility_in = it_in = 0.0
    for s in sim["sites"]:
        figures, balance = site_figures(s.site, s.site.store.path)
        row = rows[s.site.id]
        assert row.hours == 48
        assert row.figures["facility"].value == pytest.approx(figures["electricity"].value, rel=REL)
        assert row.figures["grid_import"].value == pytest.approx(
            figures["grid_electricity"].value, rel=REL)
        assert row.figures["pv_self_consumed"].value == pytest.approx(
            figures["onsite_pv"].value, rel=REL, abs=1e-9)
        assert row.figures["pue"].value == pytest.approx(figures["pue"].value, rel=REL)
        for key in totals:
            totals[key] += figures[key].value
        if s.site.id != "dc-young":
            facility_in += balance.facility_kwh / 1000
            it_in += balance.it_kwh / 1000
    for key, expected in totals.items():
        assert report.figures[key].value == pytest.approx(expected, rel=REL), key
    assert report.figures["fleet_pue"].value == pytest.approx(facility_in / it_in, rel=REL)
    assert not rows["dc-young"].included and rows["dc-young"].status.startswith("EXCLUDED")
    assert sum(r.included for r in report.sites) == 3
    assert totals["onsite_pv"] > 0  # the microgrid's PV is in the comparison


def test_cli_shows_the_young_site_marked_excluded_and_names_the_residual_mix(sim):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["fleet", "report", "--fleet", str(_example()), "--url", sim["vm"].url,
                     "--from", str(START), "--to", str(END)]) == 0
    md = out.getvalue()
    young = next(line for line in md.splitlines() if line.startswith("| dc-young"))
    assert "EXCLUDED: in operation 6 months (< 12)" in young
    assert "0.43 tCO2/MWh (illustrative residual mix" in md
    assert "| identity (location - avoided) |" in md
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["fleet", "report", "--fleet", str(_example()), "--url", sim["vm"].url,
                     "--from", str(START), "--to", str(END), "--format", "json"]) == 0
    data = json.loads(out.getvalue())
    pue = data["audit"]["fleet_pue"]
    assert pue["excluded"] == {"dc-young": young.split("|")[-2].strip()}
    assert [i["name"] for i in pue["inputs"]] == ["facility_included", "it_included"]
    site_input = pue["inputs"][0]["inputs"][0]
    assert site_input["hours_published"] == 48 and "dcpue_hourly_facility_kwh" in (
        site_input["formula"])


def test_fleet_mode_api_serves_the_same_figures(sim):
    """``dcpue fleet serve``'s app under uvicorn on a free port, queried over HTTP."""
    import threading

    import httpx
    import uvicorn
    from dcpue.fleet.jobs import api_routes
    from starlette.applications import Starlette

    from tests.servers import free_port, wait_for

    expected = json.loads(fleet_report(sim["fleet"], START, END).to_json())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=api_routes(sim["fleet"])),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "uvicorn")
        url = f"http://127.0.0.1:{port}"
        got = httpx.get(f"{url}/api/fleet/report", params={"from": str(START), "to": str(END)},
                        timeout=60)
        assert got.status_code == 200
        assert got.json()["rows"] == expected["rows"]
        assert got.json()["sites"] == expected["sites"]
        bad = httpx.get(f"{url}/api/fleet/report", params={"from": "2023-01-03",
                                                            "to": "2023-01-01"})
        assert bad.status_code == 400 and "after" in bad.json()["error"]
        assert [s["site"] for s in httpx.get(f"{url}/api/fleet/sites").json()][-1] == "dc-young"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_publish_job_uses_the_sites_remote_sink(sim, tmp_path):
    """The daemon hook: a site whose [collector.remote] points at the store publishes there;
    without a URL it does nothing."""
    from dcpue.fleet.jobs import publish_job

    s = sim["sites"][2]
    site = load_site(s.config_path)
    with Store(s.site.store.path) as store:
        assert publish_job(site, store) is None
        site.collector.remote.url = sim["vm"].url
        result = publish_job(site, store)
    assert result is not None and result.written == 0  # everything was published already


def test_vmagent_in_front_buffers_while_victoriametrics_is_down(sim):
    """Sites publish to a vmagent that forwards to VictoriaMetrics; VictoriaMetrics is down
    while they publish (vmagent accepts and buffers on disk), comes back, receives the backlog,
    and the report equals the clean run's."""
    root = sim["root"]
    clean = fleet_report(sim["fleet"], START, END)
    sites = [load_site(root / "pristine-agent" / f"{s.site.id}.toml") for s in sim["sites"]]
    with DedupVictoriaMetrics(root / "vm-agent") as vm, VmAgent(root / "agent", vm.url) as agent:
        vm.kill()
        settings = fleet_for(agent.url).remote.model_copy(update={"admin_url": vm.url})
        for site in sites:
            site.store.path = root / "pristine-agent" / f"{site.id}.duckdb"
            with Store(site.store.path) as store:
                assert publish_site(site, store, settings).written > 0
        vm.start()
        fleet = fleet_for(vm.url)

        def arrived() -> bool:
            vm.flush()
            got = fleet_report(fleet, START, END, hourly_matching=False)
            return all(got.figures[k].value == pytest.approx(clean.figures[k].value, rel=1e-12)
                       for k in ("fleet_pue", "electricity", "scope2_market"))

        wait_for(arrived, "vmagent's backlog in VictoriaMetrics", 60)
        after = fleet_report(fleet, START, END)
    for key, fig in clean.figures.items():
        assert after.figures[key].value == pytest.approx(fig.value, rel=1e-12), key


def _take(cols: ReadingColumns, mask) -> ReadingColumns:
    return ReadingColumns(cols.ts_ms[mask], cols.meter[mask], cols.quantity[mask],
                          cols.value[mask], cols.unit[mask])


def _example():
    from dcpue.config import example_path
    return example_path("fleet_sim")


def test_kill_during_publishing_and_backfill_give_the_clean_figures(sim):
    """A fresh VictoriaMetrics is SIGKILLed after it acknowledged two sites' hours (its last
    second of writes is then lost, not flushed) and before the third site publishes (that write
    fails); one site's store misses 6 hours of readings at first and gets them backfilled
    afterwards. After restart, ``republish`` and a normal pass for the backfill, every figure
    equals the clean run's (same readings, same hours)."""
    root = sim["root"]
    clean = fleet_report(sim["fleet"], START, END)
    sites = [load_site(root / "pristine" / f"{s.site.id}.toml") for s in sim["sites"]]
    for site in sites:
        site.store.path = root / "pristine" / f"{site.id}.duckdb"
    start_ms = date_ms(START, _zone(sites[1]))
    gap = (start_ms + 20 * 3_600_000, start_ms + 26 * 3_600_000)
    sites[1].store.path.unlink()
    missing = []
    # The gapped site's store stays open from the first append to the backfill.
    gapped = Store(sites[1].store.path)
    for cols in Twin(sites[1]).run(DAYS):  # the same twin run, 6 hours held back
        inside = (cols.ts_ms >= gap[0]) & (cols.ts_ms < gap[1])
        gapped.append(_take(cols, ~inside))
        missing.append(_take(cols, inside))

    def publish(site, **kwargs):
        if site is sites[1]:
            return publish_site(site, gapped, fleet.remote, **kwargs)
        with Store(site.store.path) as store:
            return publish_site(site, store, fleet.remote, **kwargs)

    with DedupVictoriaMetrics(root / "vm-kill") as vm:
        fleet = fleet_for(vm.url)
        for site in sites[:2]:
            assert publish(site).written > 0
        vm.kill()
        with pytest.raises(RemoteError):
            publish(sites[2])
        vm.start()
        for site in sites:
            publish(site, republish=True)
        assert sum(gapped.append(cols) for cols in missing) == sum(map(len, missing)) > 0
        result = publish(sites[1])
        assert result.changed >= 6 and result.rewrote_all
        vm.flush()
        after = fleet_report(fleet, START, END)
    gapped.close()
    for key, fig in clean.figures.items():
        assert after.figures[key].value == pytest.approx(fig.value, rel=1e-12), key
    for a, b in zip(clean.sites, after.sites, strict=True):
        for key, fig in a.figures.items():
            assert b.figures[key].value == pytest.approx(fig.value, rel=1e-12), (a.site.id, key)
