"""The reference operator's 2023 figures (shared/SEED_FACTS.md) through ``dcpue report``.

The fleet example holds the published annual INPUTS. Of the 15 published figures checked
here, 9 are COMPUTED by dcpue from those inputs (sums, shares, MWh x factor, location minus
avoided) and must equal the published value at its published decimal; 6 are DECLARED inputs
that the report only echoes back (electricity, total energy, on-site PV, purchased green power
applied uncapped, PUE, location-based Scope 2): checking them shows they pass through
unchanged, not that anything was computed.
"""

import contextlib
import io
import json

import pytest
from dcpue.config import example_path

from dcpue.cli import main

FLEET = str(example_path("fleet_2023"))
COMPUTED = {  # figure key -> published value, computed by dcpue from the example's inputs
    "renewable_electricity": 632_588.6,  # purchased green + on-site PV
    "renewable_share": 12.4,  # renewable / electricity x 100
    "avoided_renewables": 360_765.3,  # renewable MWh x 0.5703
    "avoided_purchased_green": 344_619.2,
    "avoided:AI cooling optimization, newly deployed modules": 2_851.5,  # measure MWh x 0.5703
    "avoided:Higher-efficiency cooling systems": 11_406.0,
    "avoided:Office energy-saving management": 4_092.2,
    "avoided:Office retrofits": 807.5,
    "scope2_market": 2_561_328.3,  # location-based - avoided renewables
}
DECLARED = {  # figure key -> published value, typed into the example and echoed back
    "electricity": 5_114_669.0,
    "total_energy": 5_165_168.2,
    "purchased_green": 604_277.1,
    "onsite_pv": 28_311.5,
    "pue": 1.279,
    "scope2_location": 2_922_093.6,
}


@pytest.fixture(scope="module")
def fleet_json() -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", "--inventory", FLEET, "--format", "json"]) == 0
    return json.loads(out.getvalue())


def test_computed_figures_equal_the_published_ones(fleet_json):
    """Computed: the 9 figures in COMPUTED, from the example's declared inputs."""
    values = {r["key"]: r["values"][0] for r in fleet_json["rows"]}
    for key, published in COMPUTED.items():
        assert values[key] == published, key


def test_declared_inputs_pass_through_unchanged(fleet_json):
    """Declared, not computed: the 6 inputs in DECLARED are echoed back at their published
    decimal (and the instruments are not capped: 604,277.1 MWh fit the grid electricity)."""
    values = {r["key"]: r["values"][0] for r in fleet_json["rows"]}
    for key, published in DECLARED.items():
        assert values[key] == published, key


def test_scope2_identity_market_is_location_minus_avoided(fleet_json):
    """Computed: market-based = location-based (declared) - avoided renewables (computed)."""
    values = {r["key"]: r["values"][0] for r in fleet_json["rows"]}
    assert values["scope2_market"] == pytest.approx(
        values["scope2_location"] - values["avoided_renewables"], abs=1e-6
    )
    audit = fleet_json["audit"]["2023"]
    market = audit["scope2_market"]
    assert [i["name"] for i in market["inputs"]] == ["scope2_location", "avoided_renewables"]
    assert audit["avoided_purchased_green"]["factor"]["value"] == 0.5703


def test_declared_location_figure_shows_what_it_implies(fleet_json):
    """Declared: the location-based total. Computed: its implied factor and the difference
    to electricity x the grid factor (5,114,669.0 MWh x 0.5703 = 2,916,895.7 tCO2e)."""
    location = fleet_json["audit"]["2023"]["scope2_location"]
    assert location["note"].startswith("declared: ")
    assert location["implied_factor_t_per_mwh"] == pytest.approx(2_922_093.6 / 5_114_669.0)
    assert round(location["basis_x_grid_factor_tco2e"], 1) == 2_916_895.7
    assert round(location["difference_tco2e"], 1) == 5_197.9


def test_markdown_table_prints_published_decimals(capsys):
    """Computed figures, as the Markdown table prints them."""
    assert main(["report", "--inventory", FLEET]) == 0
    out = capsys.readouterr().out
    assert "| Renewable share of electricity | % | 12.4 |" in out
    assert "| Avoided emissions: all renewable electricity | tCO2 | 360,765.3 |" in out
    assert "| Scope 2 emissions, market-based | tCO2e | 2,561,328.3 |" in out


def test_example_holds_inputs_not_results():
    """The computed figures' values do not appear in the example (they cannot be echoed)."""
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
