"""The reference operator's 2023 figures (shared/SEED_FACTS.md) reproduced through the CLI.

The fleet example holds the published annual INPUTS (energies, instrument MWh, measure MWh,
location-based Scope 2); every figure checked here is computed and must equal the published
value at its published decimal.
"""

import contextlib
import io
import json

import pytest
from dcpue.config import example_path

from dcpue.cli import main

FLEET = str(example_path("fleet_2023"))
PUBLISHED = {  # figure key -> published value
    "electricity": 5_114_669.0,
    "total_energy": 5_165_168.2,
    "renewable_electricity": 632_588.6,
    "purchased_green": 604_277.1,
    "onsite_pv": 28_311.5,
    "renewable_share": 12.4,
    "pue": 1.279,
    "avoided_renewables": 360_765.3,
    "avoided_purchased_green": 344_619.2,
    "avoided:AI cooling optimization, newly deployed modules": 2_851.5,
    "avoided:Higher-efficiency cooling systems": 11_406.0,
    "avoided:Office energy-saving management": 4_092.2,
    "avoided:Office retrofits": 807.5,
    "scope2_location": 2_922_093.6,
    "scope2_market": 2_561_328.3,
}


@pytest.fixture(scope="module")
def fleet_json() -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", "--inventory", FLEET, "--format", "json"]) == 0
    return json.loads(out.getvalue())


def test_published_figures_reproduced_exactly(fleet_json):
    values = {r["key"]: r["values"][0] for r in fleet_json["rows"]}
    for key, published in PUBLISHED.items():
        assert values[key] == published, key


def test_scope2_identity_market_is_location_minus_avoided(fleet_json):
    values = {r["key"]: r["values"][0] for r in fleet_json["rows"]}
    assert values["scope2_market"] == pytest.approx(
        values["scope2_location"] - values["avoided_renewables"], abs=1e-6
    )
    audit = fleet_json["audit"]["2023"]
    market = audit["scope2_market"]
    assert [i["name"] for i in market["inputs"]] == ["scope2_location", "avoided_renewables"]
    assert audit["avoided_purchased_green"]["factor"]["value"] == 0.5703


def test_declared_location_figure_shows_what_it_implies(fleet_json):
    location = fleet_json["audit"]["2023"]["scope2_location"]
    assert location["note"].startswith("declared: ")
    assert location["implied_factor_t_per_mwh"] == pytest.approx(2_922_093.6 / 5_114_669.0)
    assert round(location["basis_x_grid_factor_tco2e"], 1) == 2_916_895.7
    assert round(location["difference_tco2e"], 1) == 5_197.9


def test_markdown_table_prints_published_decimals(capsys):
    assert main(["report", "--inventory", FLEET]) == 0
    out = capsys.readouterr().out
    assert "| Renewable share of electricity | % | 12.4 |" in out
    assert "| Avoided emissions: all renewable electricity | tCO2 | 360,765.3 |" in out
    assert "| Scope 2 emissions, market-based | tCO2e | 2,561,328.3 |" in out


def test_example_holds_inputs_not_results():
    text = example_path("fleet_2023").read_text()
    for computed in ("360765.3", "344619.2", "2851.5", "11406", "4092.2", "807.5",
                     "2561328.3", "632588.6", "12.4"):
        assert computed not in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--monthly"], "no --monthly"),
        (["--from", "2023-06-01"], "covers 2023-01-01..2024-01-01 only"),
    ],
)
def test_inventory_is_for_its_whole_period(capsys, argv, message):
    assert main(["report", "--inventory", FLEET, *argv]) == 2
    assert message in capsys.readouterr().err
