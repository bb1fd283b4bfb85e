"""PUE family over the hand-worked microgrid balance (facility 1130 kWh, IT 800 kWh)."""

import dataclasses

import pytest
from dcpue.config import example_path, load_site
from dcpue.metrics.balance import BalanceTopology, balance_from_energies
from dcpue.metrics.energy import MeterEnergy
from dcpue.metrics.indicators import cue, dcie, erf, indicators, pue, ref, wue

from tests.metrics.synth import HOUR, MICROGRID_KW, WATER_M3_PER_H, microgrid_site

SOURCE = "national grid average"


def balance(coverage: float = 1.0, **override: float):
    kwh = {**MICROGRID_KW, "tower-water": WATER_M3_PER_H, **override}
    energies = {m: MeterEnergy(m, v, coverage if m == "pv-roof" else 1.0) for m, v in kwh.items()}
    return balance_from_energies(BalanceTopology.from_site(microgrid_site()), energies, 0, HOUR)


def test_hand_worked_indicators():
    figs = indicators(balance(), 0.95, 0.5703, SOURCE)
    assert figs["pue"].value == pytest.approx(1130 / 800)  # 1.4125
    assert figs["dcie"].value == pytest.approx(100 * 800 / 1130)
    assert figs["ppue_cooling"].value == pytest.approx((800 + 200) / 800)  # 1.25
    assert figs["ppue_power"].value == pytest.approx((800 + 60) / 800)  # 1.075
    # PV left on site 300 - 50 = 250 kWh, shared by facility 1130, EV chargers 60 (outside)
    # and the battery charge 100: 250 x 1130 / 1290 = 218.99 kWh inside the boundary;
    # grid-sourced 1130 - 218.99 = 911.01 kWh x 0.5703 kg/kWh / 800 kWh IT
    assert figs["cue"].value == pytest.approx(0.5703 * (1130 - 250 * 1130 / 1290) / 800)
    assert figs["ref"].value == pytest.approx(250 / 1290)
    assert figs["erf"].value == 0.0
    assert figs["wue"].value == pytest.approx(1600 / 800)  # 1.6 m3 = 1600 L
    assert figs["cue"].factor == 0.5703 and figs["cue"].factor_source == SOURCE
    assert figs["pue"].explain()["inputs"][0]["name"] == "facility"


def test_ref_with_purchased_green_power_and_erf_with_reused_heat():
    b = dataclasses.replace(balance(), reused_heat_kwh=113.0)
    # 218.99 kWh of PV inside + 315 kWh green power (below the 911.01 kWh of grid inside)
    assert ref(b, 0.95, purchased_green_kwh=315.0).value == pytest.approx(
        (250 * 1130 / 1290 + 315) / 1130)
    # instruments beyond the grid electricity used inside are not counted: REF <= 1
    assert ref(b, 0.95, purchased_green_kwh=5000.0).value == pytest.approx(1.0)
    assert erf(b, 0.95).value == pytest.approx(0.1)


def test_low_coverage_reports_insufficient_data():
    b = balance(coverage=0.9)  # PV meter measured only 90 % of the window
    fig = pue(b, 0.95)
    assert fig.value is None and fig.coverage == pytest.approx(0.9)
    assert fig.explain()["status"] == "insufficient data"
    assert "below the threshold" in fig.note
    assert pue(b, 0.85).value == pytest.approx(1.4125)
    # WUE rests on water and IT meters only, so it is still reported
    assert wue(b, 0.95).value == pytest.approx(2.0)


def test_zero_it_energy_is_insufficient_not_infinite():
    b = balance(**{"ups-out": 0.0})
    assert pue(b, 0.95).value is None
    assert dcie(b, 0.95).value == 0.0
    assert cue(b, 0.5703, SOURCE, 0.95).value is None


def test_single_hall_has_no_water_so_no_wue():
    site = load_site(example_path("single_hall"))
    topo = BalanceTopology.from_site(site)
    energies = {m: MeterEnergy(m, 10.0, 1.0) for m in topo.all_meters}
    figs = indicators(balance_from_energies(topo, energies, 0, HOUR), 0.95, 0.5703, SOURCE)
    assert "wue" not in figs and "ppue_cooling" in figs
