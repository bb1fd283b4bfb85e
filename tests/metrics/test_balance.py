"""Facility energy balance: export, PV charging the battery, EV outside the boundary, categories."""

import tomllib

import pytest
from dcpue.config import ConfigError, example_path, parse_site
from dcpue.core.store import Store
from dcpue.metrics.balance import BalanceTopology, balance_from_energies, energy_balance
from dcpue.metrics.energy import MeterEnergy

from tests.metrics.synth import (
    HOUR,
    MICROGRID_KW,
    MINUTE,
    T0,
    WATER_M3_PER_H,
    counters,
    microgrid_site,
)


def hand_energies(**override: float) -> dict[str, MeterEnergy]:
    kwh = {**MICROGRID_KW, "tower-water": WATER_M3_PER_H, **override}
    return {m: MeterEnergy(m, v, 1.0) for m, v in kwh.items()}


def test_pure_balance_with_export_pv_battery_and_ev_outside():
    # 1 h: import 1000, export 50, PV 300 of which 100 charges the battery, discharge 40,
    # EV chargers 60 outside the boundary: facility = 1000 - 50 + 300 + 40 - 100 - 60 = 1130
    b = balance_from_energies(BalanceTopology.from_site(microgrid_site()), hand_energies(), 0, HOUR)
    assert b.facility_kwh == pytest.approx(1130.0)
    assert b.pv_self_consumed_kwh == pytest.approx(250.0)
    # the same total seen as PV self-consumption + grid net + battery net - outside loads
    assert b.facility_kwh == pytest.approx(
        b.grid_import_kwh + b.pv_self_consumed_kwh + b.battery_discharge_kwh
        - b.battery_charge_kwh - b.outside_boundary_kwh
    )
    assert (b.it_kwh, b.cooling_kwh, b.power_loss_kwh, b.lighting_kwh) == (800, 200, 60, 20)
    assert b.other_kwh == pytest.approx(1130 - 800 - 200 - 60 - 20)
    assert b.water_m3 == pytest.approx(1.6)
    assert b.coverage == 1.0


def test_battery_charged_from_pv_only_moves_energy_in_time():
    # hour 1: PV 300 all into the battery; hour 2: battery gives 270 back (90 % round trip)
    topo = BalanceTopology.from_site(microgrid_site())
    base = {m: 0.0 for m in MICROGRID_KW}
    h1 = balance_from_energies(topo, hand_energies(
        **{**base, "grid-main": 500.0, "pv-roof": 300.0, "bess-charge": 300.0}), 0, HOUR)
    h2 = balance_from_energies(topo, hand_energies(
        **{**base, "grid-main": 230.0, "bess-discharge": 270.0}), HOUR, 2 * HOUR)
    assert h1.facility_kwh == pytest.approx(500.0)
    assert h2.facility_kwh == pytest.approx(500.0)
    assert h1.pv_self_consumed_kwh == pytest.approx(300.0)


def test_missing_meter_means_no_coverage():
    energies = hand_energies()
    del energies["grid-export"]
    b = balance_from_energies(BalanceTopology.from_site(microgrid_site()), energies, 0, HOUR)
    assert b.coverage == 0.0
    assert b.group_coverage("it") == 1.0


def test_balance_from_store_matches_hand_worked_values():
    store = Store()
    store.append(counters(MICROGRID_KW, T0, 120, water_m3_per_h=WATER_M3_PER_H))
    b = energy_balance(microgrid_site(), store, T0 + 30 * MINUTE, T0 + 90 * MINUTE)
    assert b.facility_kwh == pytest.approx(1130.0)
    assert b.it_kwh == pytest.approx(800.0)
    assert b.water_m3 == pytest.approx(1.6)
    assert b.coverage == 1.0
    figs = b.figures()
    assert figs["facility"].meters == (
        "grid-main", "grid-export", "pv-roof", "bess-charge", "bess-discharge", "ev-chargers"
    )
    assert figs["other"].value == pytest.approx(50.0)
    assert figs["grid_import"].inputs[0].name == "grid-main"
    assert figs["water"].unit == "m3"


def test_balance_window_past_the_data_is_partially_covered():
    store = Store()
    store.append(counters(MICROGRID_KW, T0, 60))
    b = energy_balance(microgrid_site(), store, T0 + 30 * MINUTE, T0 + 90 * MINUTE)
    assert b.coverage == pytest.approx(0.5)
    assert b.it_kwh == pytest.approx(400.0)


def _site_with(**calculator: object):
    data = tomllib.loads(example_path("single_hall").read_text())
    data["meters"].append({"id": "pdu-out", "role": "it_load", "kind": "counter",
                           "unit": "kWh", "it_category": "pdu_output", "parent": "ups-out"})
    data["calculator"] = calculator
    return parse_site(data)


def test_it_category_chosen_when_several_are_metered():
    with pytest.raises(ConfigError, match="several categories"):
        BalanceTopology.from_site(_site_with())
    topo = BalanceTopology.from_site(_site_with(it_category="pdu_output"))
    assert topo.groups["it"] == ("pdu-out",)
    with pytest.raises(ConfigError, match="no it_load meter of category it_input"):
        BalanceTopology.from_site(_site_with(it_category="it_input"))


def test_outside_boundary_must_name_other_load_meters():
    with pytest.raises(ConfigError, match="unknown meter 'nope'"):
        BalanceTopology.from_site(microgrid_site(outside_boundary=["nope"]))
    with pytest.raises(ConfigError, match="only other_load"):
        BalanceTopology.from_site(microgrid_site(outside_boundary=["lighting"]))


def test_sub_meter_of_a_grouped_meter_is_not_added_twice():
    data = tomllib.loads(example_path("single_hall").read_text())
    data["meters"].append({"id": "chiller-1-comp", "role": "chiller", "kind": "counter",
                           "unit": "kWh", "parent": "chiller-1"})
    topo = BalanceTopology.from_site(parse_site(data))
    assert topo.groups["cooling"] == ("chiller-1", "crah-fans", "pumps", "tower-1")
