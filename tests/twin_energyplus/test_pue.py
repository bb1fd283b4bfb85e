"""dcpue's PUE from stored counters equals EnergyPlus's own run-period totals.

Computed: facility and IT energy by dcpue.metrics.balance from the counters the plant wrote into
the store. Declared (EnergyPlus's own figures, from its eplusout.sql): Electricity:Facility and
ITE-CPU + ITE-Fans InteriorEquipment:Electricity over the same run period, in J.
"""

from __future__ import annotations

import json

from dcpue.core.store import Store
from dcpue.metrics.balance import energy_balance
from dcpue.twin.energyplus import EnergyPlusPlant, energyplus_totals
from dcpue.twin.runner import simulate_into

from tests.twin_energyplus.conftest import hall_site

J_PER_KWH = 3.6e6
IT_METERS = ("ITE-CPU:InteriorEquipment:Electricity", "ITE-Fans:InteriorEquipment:Electricity")


def _check_against_energyplus(site, tmp_path, days: float) -> float:
    with EnergyPlusPlant(site, days=days, workdir=tmp_path / "eplus") as plant, Store() as store:
        summary = simulate_into(plant, store, days, progress=False)
        b = energy_balance(site, store, summary.first_ms, summary.last_ms)
    assert summary.last_ms - summary.first_ms == days * 86_400_000
    ep = energyplus_totals(tmp_path / "eplus" / "eplusout.sql")
    facility = ep["Electricity:Facility"] / J_PER_KWH
    it = sum(ep[name] for name in IT_METERS) / J_PER_KWH
    assert abs(b.facility_kwh / facility - 1) < 1e-9
    assert abs(b.it_kwh / it - 1) < 1e-9
    pue = b.facility_kwh / b.it_kwh
    assert abs(pue / (facility / it) - 1) < 1e-9
    assert abs(b.cooling_kwh * J_PER_KWH / sum(
        ep[n] for n in ("Cooling:Electricity", "Fans:Electricity", "Pumps:Electricity",
                        "HeatRejection:Electricity")) - 1) < 1e-9
    return pue


def test_generated_hall_pue_equals_energyplus_totals(hall, tmp_path):
    """Three July days in Chicago at 15-min steps: PUE, facility and IT energy to 1e-9."""
    pue = _check_against_energyplus(hall, tmp_path, 3)
    assert 1.1 < pue < 1.6  # a chilled-water hall with UPS losses, not a degenerate model


def test_bring_your_own_epjson_with_explicit_mapping(tmp_path):
    """A user's epJSON (here: the generated model written to a file, Phoenix weather, 10-min
    steps) with every meter mapped in the site file, not by role."""
    phoenix = {"timezone": "America/Phoenix"}
    generated = hall_site(phoenix, weather="USA_AZ_Phoenix-Sky.Harbor.Intl.AP.722780_TMY3.epw")
    with EnergyPlusPlant(generated, days=1, workdir=tmp_path / "gen") as plant:
        model = json.loads(plant.model_path.read_text())
    for key in ("Output:Meter", "Meter:Custom"):
        model.pop(key)
    path = tmp_path / "user.epJSON"
    path.write_text(json.dumps(model))
    site = hall_site(
        phoenix, model=str(path), weather="USA_AZ_Phoenix-Sky.Harbor.Intl.AP.722780_TMY3.epw",
        timesteps_per_hour=6,
        meters={
            "grid-main": {"meter": "Electricity:Facility"},
            "it": {"meter": list(IT_METERS)},
            "chiller": {"meter": "Cooling:Electricity"},
            "crah": {"meter": "Fans:Electricity"},
            "crah-kw": {"variable": "Fan Electricity Rate", "key": "CRAH Fan"},
            "pumps": {"meter": "Pumps:Electricity"},
            "tower": {"meter": "HeatRejection:Electricity"},
            "inlet": {"variable": "ITE Air Inlet Dry-Bulb Temperature", "key": "Data Hall ITE"},
        },
    )
    _check_against_energyplus(site, tmp_path, 1)
