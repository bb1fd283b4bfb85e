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
     "regions[0].emission_factor_t_per_mwh"),
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
