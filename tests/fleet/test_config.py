"""The fleet file: the shipped example loads; bad files give one-line errors naming the field."""

from __future__ import annotations

from datetime import date

import pytest
from dcpue.config import example_path
from dcpue.config.site import ConfigError
from dcpue.fleet.config import load_fleet, parse_fleet
from dcpue.fleet.report import months_in_operation

from dcpue.cli import main

BASE = {
    "id": "f", "remote": {"url": "http://127.0.0.1:8428"},
    "regions": [{"id": "r", "emission_factor_t_per_mwh": 0.5, "source": "s"}],
    "sites": [{"id": "a", "commissioned": date(2020, 1, 1), "region": "r"}],
}


def test_example_fleet_loads_with_resolved_paths():
    fleet = load_fleet(example_path("fleet_sim"))
    assert [s.id for s in fleet.sites] == ["dc-miami", "dc-greensboro", "dc-sandpoint",
                                           "dc-young"]
    assert fleet.instruments[0].delivery_csv.exists()
    assert fleet.inclusion.min_months == 12


@pytest.mark.parametrize(("change", "message"), [
    ({"sites": [{"id": "a", "commissioned": date(2020, 1, 1), "region": "nowhere"}]},
     "unknown region 'nowhere'"),
    ({"regions": [{"id": "r", "emission_factor_t_per_mwh": 3.0, "source": "s"}]},
     "regions[r].emission_factor_t_per_mwh"),  # named by id, not index
    ({"inclusion": {"min_months": -1}}, "inclusion.min_months"),
    ({"regions": [{"id": "r", "emission_factor_t_per_mwh": 0.5, "source": "s",
                   "residual_mix_t_per_mwh": 0.6}]}, "residual_mix_source is required"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_fleet_files_give_one_line_errors(change, message):
    with pytest.raises(ConfigError) as info:
        parse_fleet({**BASE, **change}, "fleet.toml")
    text = str(info.value)
    assert message in text and "\n" not in text and text.startswith("fleet.toml")


def test_cli_config_error_exits_2(tmp_path, capsys):
    path = tmp_path / "fleet.toml"
    path.write_text('id = "f"\n[remote]\nurl = "x"\n')
    assert main(["fleet", "report", "--fleet", str(path), "--from", "2023-01-01",
                 "--to", "2023-02-01"]) == 2
    assert "config error" in capsys.readouterr().err


@pytest.mark.parametrize(("commissioned", "at", "months"), [
    (date(2022, 7, 1), date(2023, 1, 3), 6),
    (date(2022, 1, 1), date(2023, 1, 1), 12),
    (date(2022, 1, 15), date(2023, 1, 14), 11),
    (date(2023, 5, 1), date(2023, 1, 1), 0),
])
def test_months_in_operation(commissioned, at, months):
    assert months_in_operation(commissioned, at) == months


def test_simulate_fleet_cli_writes_site_files_and_stores(tmp_path, capsys):
    assert main(["simulate", "--fleet", str(example_path("fleet_sim")), "--days", "0.05",
                 "--out", str(tmp_path), "--no-publish", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("new rows into") == 4
    site = tmp_path / "dc-young.toml"
    assert main(["check-config", str(site)]) == 0
    assert (tmp_path / "dc-young.duckdb").exists()


def test_simulate_needs_a_site_or_a_fleet(capsys):
    assert main(["simulate", "--days", "1"]) == 2
    assert "--config SITE or --fleet FLEET" in capsys.readouterr().err


def test_declared_sites_count_and_are_marked_declared(tmp_path):
    """A site not metered by dcpue with declared period totals (typed here): it enters fleet
    PUE and the energy totals as declared inputs. Metered site: 1,000 MWh facility / 800 MWh
    IT (as its hourly sums); declared: 500 / 450. Fleet PUE = 1,500 / 1,250 = 1.2."""
    from dcpue.fleet.query import SiteSums
    from dcpue.fleet.report import compute

    fleet = parse_fleet({**BASE, "sites": [
        {"id": "a", "commissioned": date(2020, 1, 1), "region": "r"},
        {"id": "b", "commissioned": date(2020, 1, 1), "region": "r", "declared": {
            "facility_mwh": 500.0, "it_mwh": 450.0, "grid_import_mwh": 500.0,
            "start": date(2023, 1, 1), "end": date(2023, 1, 2), "source": "operator EMS"}},
    ]}, "fleet.toml")
    cov = {f"{t}_coverage": 24.0 for t in ("it", "facility", "grid_import", "grid_export",
                                            "pv_generation", "battery_charge",
                                            "battery_discharge", "outside_boundary",
                                            "reused_heat", "water")}
    sums = {"a": SiteSums("a", {"facility_kwh": 1e6, "it_kwh": 8e5, "grid_import_kwh": 1e6,
                                **cov}, 24)}
    report = compute(fleet, date(2023, 1, 1), date(2023, 1, 2), sums)
    assert report.figures["fleet_pue"].value == pytest.approx(1.2, rel=1e-12)
    assert report.figures["electricity"].value == pytest.approx(1500.0, rel=1e-12)
    assert report.figures["scope2_location"].value == pytest.approx(1500.0 * 0.5, rel=1e-12)
    row = next(r for r in report.sites if r.site.id == "b")
    assert row.source == "declared" and row.figures["it"].note == "declared: operator EMS"
    assert "| b | r | 2020-01-01 |" in report.to_markdown()


def test_site_daemon_publishes_hourly_only_with_a_remote_sink():
    from dcpue.config import load_site
    from dcpue.service.daemon import job_triggers

    site = load_site(example_path("single_hall"))
    assert "fleet_publish" not in job_triggers(site)
    site.collector.remote.url = "http://127.0.0.1:8428"
    assert "fleet_publish" in job_triggers(site)


def test_a_fleet_time_zone_off_the_whole_hour_is_refused(capsys):
    from dcpue.fleet.report import fleet_report

    fleet = parse_fleet({**BASE, "timezone": "Asia/Kolkata"}, "fleet.toml")
    with pytest.raises(ConfigError, match="whole UTC hour"):
        fleet_report(fleet, date(2023, 1, 1), date(2023, 2, 1))
