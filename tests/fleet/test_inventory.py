"""The 2023 inventory (shared/SEED_FACTS.md) as an honest table: every figure marked declared
or computed, the computed ones equal to the published values from the lowest-level inputs the
report publishes, and GHG Protocol market-based beside the identity method.

Declared inputs (typed into config/examples/fleet_2023.toml from the published report): total
energy 5,165,168.2 MWh, electricity 5,114,669.0 MWh, on-site PV 28,311.5 MWh, purchased green
power 604,277.1 MWh (one instrument), fleet PUE 1.279, location-based Scope 2 2,922,093.6 tCO2e,
the grid factor 0.5703 tCO2/MWh and the measures' MWh. Everything else is computed; the values
below are the published results, not inputs.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from dcpue.config import example_path

from dcpue.cli import main

FLEET = str(example_path("fleet_2023"))
DECLARED = {"total_energy": 5_165_168.2, "electricity": 5_114_669.0, "onsite_pv": 28_311.5,
            "pue": 1.279, "scope2_location": 2_922_093.6}
PG = "Purchased green power (PPA and green-power trading)"  # the declared instrument
COMPUTED = {  # published value, the declared inputs it is computed from (and the grid factor)
    "renewable_electricity": (632_588.6, {PG, "onsite_pv"}),
    "renewable_share": (12.4, {PG, "onsite_pv", "electricity"}),
    "avoided_renewables": (360_765.3, {PG, "onsite_pv"}),
    "avoided_purchased_green": (344_619.2, {PG}),
    "scope2_market": (2_561_328.3, {"scope2_location", PG, "onsite_pv"}),
    "avoided:AI cooling optimization, newly deployed modules": (
        2_851.5, {"AI cooling optimization, newly deployed modules"}),
    "avoided:Office retrofits": (807.5, {"Office retrofits"}),
}


@pytest.fixture(scope="module")
def report() -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", "--inventory", FLEET, "--format", "json"]) == 0
    return json.loads(out.getvalue())


def test_declared_figures_are_marked_declared(report):
    values = {r["key"]: r["values"][0] for r in report["rows"]}
    audit = report["audit"]["2023"]
    for key, published in DECLARED.items():
        assert audit[key]["basis"] == "declared", key
        assert values[key] == published


def test_computed_figures_equal_the_published_ones_from_declared_inputs(report):
    values = {r["key"]: r["values"][0] for r in report["rows"]}
    audit = report["audit"]["2023"]
    for key, (published, inputs) in COMPUTED.items():
        assert audit[key]["basis"] == "computed", key
        assert values[key] == published, key
        assert set(audit[key]["computed_from"]) == inputs, key
    # purchased green power: the applied MWh of the one declared instrument (not re-typed)
    assert audit["purchased_green"]["basis"] == "computed"
    assert audit["purchased_green"]["computed_from"] == [PG]


def test_ghg_market_based_beside_the_identity_with_the_residual_mix_named(report, capsys):
    """GHG Protocol market-based, by hand: grid electricity 5,114,669.0 - 28,311.5 =
    5,086,357.5 MWh; minus the instrument 604,277.1 = 4,482,080.4 MWh at the residual mix,
    which the report does not publish, so the grid factor 0.5703 is used and named:
    4,482,080.4 x 0.5703 = 2,556,130.5 tCO2e. The identity: 2,922,093.6 - 360,765.3 =
    2,561,328.3 (the published figure)."""
    values = {r["key"]: r["values"][0] for r in report["rows"]}
    assert values["scope2_market_ghg"] == 2_556_130.5
    assert values["scope2_location_ghg"] == 2_900_749.7
    assert values["scope2_market"] == 2_561_328.3
    assert main(["report", "--inventory", FLEET]) == 0
    md = capsys.readouterr().out
    assert "| Scope 2 emissions, market-based | tCO2e | 2,561,328.3 | computed |" in md
    assert ("| Scope 2 emissions, market-based (GHG Protocol, residual mix) | tCO2e | "
            "2,556,130.5 | computed |") in md
    assert ("Residual mix (2023, scope2_market_ghg): 0.5703 tCO2/MWh: residual mix not "
            "configured: location factor used") in md
    assert "| PUE | 1 | 1.279 | declared |" in md


def test_csv_has_a_basis_column(capsys):
    assert main(["report", "--inventory", FLEET, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "key,indicator,unit,2023,basis"
    assert "pue,PUE,1,1.279,declared" in lines
