"""Levers through EnergyPlus actuators, applied from the next timestep, and IT power that rises
with the inlet temperature as the generated model's curves declare."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from dcpue.config import SetpointName, parse_site
from dcpue.twin.energyplus import EnergyPlusPlant

from tests.twin_energyplus.conftest import HALL_TOML, hall_site

SAT, CHW = SetpointName.SUPPLY_AIR_TEMPERATURE, SetpointName.CHILLED_WATER_TEMPERATURE
STEPS = 96  # one day of 15-min steps


def _steps(site, steps: int, first: dict, later: dict | None = None) -> list:
    """``steps`` timesteps: ``first`` setpoints at the first, ``later`` from the second on."""
    with EnergyPlusPlant(site, days=1) as plant:
        out = [plant.step(first)]
        out += [plant.step(later) for _ in range(steps - 1)]
    return out


@pytest.fixture(scope="module")
def mechanical():
    """The hall without its air-side economizer: the chiller carries the whole load."""
    return hall_site(hall={"economizer": False})


def test_setpoint_applies_at_the_next_timestep(mechanical):
    """Supply air 20 -> 25 degC given with step k: the coil and chiller run at 25 degC in step
    k (less chilled water needed at once), the setpoint meter reports 25; the ITE inlet, an
    internal gain EnergyPlus computes at the start of each zone timestep from the supply node,
    shows it from step k + 1: almost +5 K (inlet = supply + 10 % recirculated room air)."""
    with EnergyPlusPlant(mechanical, days=1) as plant:
        assert set(plant.levers) == {SAT, CHW}
        before = plant.step()
        changed = plant.step({SAT: 25.0})
        after = plant.step()
    assert changed.values["chiller"] < 0.97 * before.values["chiller"]
    assert abs(changed.values["inlet"] - before.values["inlet"]) < 0.05
    assert 4.5 < after.values["inlet"] - before.values["inlet"] < 5.5
    sp = {r.meter: r.value for r in changed.readings}
    assert sp["sp-sat"] == 25.0 and sp["sp-chw"] == 10.0
    assert [after.ts_ms - changed.ts_ms, changed.ts_ms - before.ts_ms] == [900_000, 900_000]


def test_warmer_chilled_water_saves_chiller_energy(mechanical):
    """Same day, chilled water 8 vs 12 degC: the chiller's EIR falls 2.5 %/K of leaving water
    (its curve), so chiller energy falls; the coil still holds 18 degC supply, so the inlet
    stays put and IT energy with it."""
    cold = _steps(mechanical, STEPS, {CHW: 8.0})
    warm = _steps(mechanical, STEPS, {CHW: 12.0})
    chiller = [sum(s.values["chiller"] for s in run) for run in (cold, warm)]
    assert chiller[1] < 0.95 * chiller[0]
    inlet = [np.mean([s.values["inlet"] for s in run]) for run in (cold, warm)]
    assert abs(inlet[1] - inlet[0]) < 0.05


def test_it_power_rises_with_inlet_as_the_curves_declare():
    """Constant CPU loading (daily_swing = 0), supply air 18 vs 24 degC. Declared curves
    (HallDesign defaults): IT / design = (1 - f)(1 + a dT) + f (1 + b dT)^3, dT = inlet - 20,
    f = 0.1 server fan share, a = 0.01/K CPU, b = 0.03/K airflow. Computed: IT kW from the
    ITE-CPU + ITE-Fans meters, checked step by step against the formula at the metered inlet."""
    data = tomllib.loads(HALL_TOML.read_text())
    data["twin"]["daily_swing"] = 0.0
    data["twin"]["energyplus"]["hall"] = {"economizer": False}
    site = parse_site(data, "no-swing")
    design_kw = site.twin.nominal_it_kw
    runs = {t: _steps(site, 24, {SAT: t}) for t in (18.0, 24.0)}
    for sat, run in runs.items():
        for s in run[1:]:  # the first step's inlet still saw [twin.setpoints]' 20 degC
            dt = s.values["inlet"] - 20.0
            expected = design_kw * (0.9 * (1 + 0.01 * dt) + 0.1 * (1 + 0.03 * dt) ** 3)
            assert s.values["it"] * 4 == pytest.approx(expected, rel=1e-6), sat
    cool, hot = (np.array([s.values["it"] for s in runs[t]]) for t in (18.0, 24.0))
    assert np.all(hot > cool * 1.05)


def test_economizer_carries_a_cold_day_and_warmer_supply_air_buys_free_cooling(hall):
    """Chicago, 1 January (outdoor air well below the supply air): with the economizer the
    chiller does no work; without it the chiller carries the hall. 1 July with supply air 18
    vs 24 degC: the warmer setpoint lets more outdoor air in, so the chiller uses less."""
    from datetime import UTC, datetime

    winter = datetime(2023, 1, 1, 6, tzinfo=UTC)
    chiller = {}
    for name, site in (("economizer", hall), ("mechanical", hall_site(hall={"economizer": False}))):
        with EnergyPlusPlant(site, days=1, start=winter) as plant:
            chiller[name] = sum(plant.step().values["chiller"] for _ in range(STEPS))
    assert chiller["economizer"] == 0.0 and chiller["mechanical"] > 1000.0  # kWh in a day
    summer = [sum(s.values["chiller"] for s in _steps(hall, STEPS, {SAT: t})) for t in (18.0, 24.0)]
    assert summer[1] < 0.9 * summer[0]
