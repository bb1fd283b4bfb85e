"""Bring-your-own IDF, and the clear errors a wrong mapping or site gets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dcpue.config import ConfigError, SetpointName
from dcpue.twin.energyplus import EnergyPlusError, EnergyPlusPlant, load_api

from tests.twin_energyplus.conftest import hall_site


def _user_epjson(tmp_path) -> dict:
    """The generated model as a user would hand it over (without dcpue's output objects)."""
    with EnergyPlusPlant(hall_site(), days=1, workdir=tmp_path / "gen") as plant:
        model = json.loads(plant.model_path.read_text())
    for key in ("Output:Meter", "Meter:Custom"):
        model.pop(key)
    return model


def test_bring_your_own_idf(tmp_path):
    """An IDF (converted from epJSON by EnergyPlus itself, its own 2-day RunPeriod and 4 steps
    an hour) runs for dcpue's one day at 6 steps an hour, actuated through a schedule."""
    src = tmp_path / "user.epJSON"
    src.write_text(json.dumps(_user_epjson(tmp_path)))
    api = load_api()()
    state = api.state_manager.new_state()
    api.runtime.set_console_output_status(state, False)
    assert api.runtime.run_energyplus(state, ["--convert-only", "-d", str(tmp_path), str(src)]) == 0
    api.state_manager.delete_state(state)
    site = hall_site(
        model=str(tmp_path / "user.idf"), timesteps_per_hour=6,
        meters={"grid-main": {"meter": "Electricity:Facility"},
                "it": {"meter": ["ITE-CPU:InteriorEquipment:Electricity",
                                 "ITE-Fans:InteriorEquipment:Electricity"]},
                "inlet": {"variable": "ITE Air Inlet Dry-Bulb Temperature",
                          "key": "Data Hall ITE"}},
        actuators={"supply_air_temperature": {"component_type": "Schedule:Compact",
                                              "control_type": "Schedule Value",
                                              "key": "Supply Air Setpoint"}},
    )
    with EnergyPlusPlant(site, days=1, setpoints={SetpointName.SUPPLY_AIR_TEMPERATURE: 21.0}) as p:
        assert p.step_s == 600 and p.levers == [SetpointName.SUPPLY_AIR_TEMPERATURE]
        steps = [p.step() for _ in range(144)]
        with pytest.raises(EnergyPlusError, match="covers 1 days"):
            p.step()
    assert 21.5 < steps[-1].values["inlet"] < 23.0
    assert sorted(p.unmapped)[:3] == ["chiller", "crah", "crah-kw"]


def test_unknown_energyplus_names_are_errors_naming_them(tmp_path):
    site = hall_site(meters={"chiller": {"meter": "Chillers:Electricity"},
                             "inlet": {"variable": "Zone Mean Air Temperature", "key": "Nowhere"}})
    with EnergyPlusPlant(site, days=1) as plant, pytest.raises(
        EnergyPlusError, match=r"no meter 'Chillers:Electricity' \(twin.energyplus.meters.chiller\)"
        r" \(closest: [^)]*Cooling:Electricity.*; no variable 'Zone Mean Air Temperature' key "
        r"'Nowhere' \(twin.energyplus.meters.inlet\) \(closest: Zone Mean Air Temperature / DATA HALL"
    ):
        plant.step()
    site = hall_site(actuators={"crah_fan_speed": {
        "component_type": "Fan", "control_type": "Fan Air Mass Flow Rate", "key": "No Fan"}})
    with EnergyPlusPlant(site, days=1, setpoints={SetpointName.CRAH_FAN_SPEED: 1.0}) as plant, \
            pytest.raises(EnergyPlusError, match=r"no actuator \(Fan, Fan Air Mass Flow Rate, No Fan\)"):
        plant.step()


def test_broken_model_reports_energyplus_severe_errors(tmp_path):
    model = _user_epjson(tmp_path)
    del model["Chiller:Electric:EIR"]
    path = tmp_path / "broken.epJSON"
    path.write_text(json.dumps(model))
    with EnergyPlusPlant(hall_site(model=str(path)), days=1) as plant, pytest.raises(
        EnergyPlusError, match=r"exited with code 1: .*Severe"
    ):
        plant.step()


@pytest.mark.parametrize(
    ("top", "energyplus", "message"),
    [
        ({"timezone": "America/New_York"}, {}, r"standard UTC-5 h\) differs from the weather"),
        ({"calculator": {"max_gap_s": 300}}, {}, "below the EnergyPlus timestep 900 s"),
        ({}, {"weather": "Nowhere.epw"}, "no file 'Nowhere.epw'; shipped: USA_AZ_Phoenix"),
        ({}, {"meters": {"nope": {"meter": "Electricity:Facility"}}}, r"\['nope'\] are not meters"),
        ({}, {"meters": {"inlet": {"meter": "Fans:Electricity"}}}, "cannot read a source in J"),
    ],
)
def test_site_errors_before_any_run(top, energyplus, message):
    with pytest.raises(ConfigError, match=message):
        EnergyPlusPlant(hall_site(top, **energyplus), days=1)


def test_a_run_over_29_february_is_refused():
    """TMY weather has no 29 February and EnergyPlus skips the day: dcpue's clock would slip."""
    from datetime import UTC, datetime

    with pytest.raises(ConfigError, match="covers 29 February 2024"):
        EnergyPlusPlant(hall_site(), days=4, start=datetime(2024, 2, 27, 6, tzinfo=UTC))


def test_a_setpoint_without_actuator_is_refused(hall):
    with EnergyPlusPlant(hall, days=1) as plant, pytest.raises(
        ConfigError, match=r"\['pump_frequency'\] have no EnergyPlus actuator"
    ):
        plant.step({SetpointName.PUMP_FREQUENCY: 40.0})


def test_a_reference_model_with_autosizing_through_the_idf_path(tmp_path):
    """The ASHRAE 90.1-2019 small office shipped in the wheel (an IDF with design-day sizing,
    three RunPeriods and its own Timestep), Denver TMY3, its interior equipment standing in for
    IT: dcpue's 'PUE' from the stored counters equals EnergyPlus's own totals to 1e-9."""
    from dcpue.core.store import Store
    from dcpue.metrics.balance import energy_balance
    from dcpue.twin.energyplus import energyplus_totals, shipped_weather_dir
    from dcpue.twin.runner import simulate_into

    model = shipped_weather_dir().parent / "model" / "ASHRAE901_OfficeSmall_STD2019_Denver.idf"
    site = hall_site(
        {"timezone": "America/Denver"}, model=str(model),
        weather="USA_CO_Denver-Aurora-Buckley.AFB.724695_TMY3.epw",
        meters={"grid-main": {"meter": "Electricity:Facility"},
                "it": {"meter": "InteriorEquipment:Electricity"},
                "lights": {"meter": "InteriorLights:Electricity"},
                "crah": {"meter": "Fans:Electricity"},
                "outdoor-temp": {"variable": "Site Outdoor Air Drybulb Temperature",
                                 "key": "Environment"}},
    )
    with EnergyPlusPlant(site, days=2, workdir=tmp_path) as plant, Store() as store:
        summary = simulate_into(plant, store, 2, progress=False)
        b = energy_balance(site, store, summary.first_ms, summary.last_ms)
    ep = energyplus_totals(tmp_path / "eplusout.sql")
    assert abs(b.facility_kwh * 3.6e6 / ep["Electricity:Facility"] - 1) < 1e-9
    assert abs((b.facility_kwh / b.it_kwh) / (
        ep["Electricity:Facility"] / ep["InteriorEquipment:Electricity"]) - 1) < 1e-9


def test_hvac_templates_are_refused_with_the_reason(tmp_path):
    path = tmp_path / "templated.idf"
    path.write_text("Version,25.2;\n  HVACTemplate:Thermostat,T1,,20,,27;\n")
    with pytest.raises(ConfigError, match="uses HVACTemplate objects; pyenergyplus-lbnl cannot"):
        EnergyPlusPlant(hall_site(model=str(path)), days=1)


def test_own_model_levers_start_from_the_site_file_or_the_model(tmp_path):
    """Your own model: a lever the site file sets in [twin.setpoints] is actuated from the
    first timestep and reported; an unset one keeps the model's own schedule (20 degC supply
    air here) and has no setpoint readings until step() gives it a value."""
    path = tmp_path / "user.epJSON"
    path.write_text(json.dumps(_user_epjson(tmp_path)))
    actuator = {"component_type": "Schedule:Compact", "control_type": "Schedule Value"}
    site = hall_site(
        setpoints={"chilled_water_c": 12.0}, model=str(path),
        meters={"grid-main": {"meter": "Electricity:Facility"},
                "it": {"meter": "ITE-CPU:InteriorEquipment:Electricity"},
                "inlet": {"variable": "ITE Air Inlet Dry-Bulb Temperature", "key": "Data Hall ITE"}},
        actuators={"chilled_water_temperature": actuator | {"key": "Chilled Water Setpoint"},
                   "supply_air_temperature": actuator | {"key": "Supply Air Setpoint"}},
    )
    with EnergyPlusPlant(site, days=1) as plant:
        first = {r.meter: r.value for r in plant.step().readings}
        plant.step({SetpointName.SUPPLY_AIR_TEMPERATURE: 24.0})
        third = plant.step()
    assert first["sp-chw"] == 12.0 and "sp-sat" not in first
    assert 20.5 < first["inlet"] < 21.5  # the model's 20 degC supply plus recirculation
    assert {r.meter: r.value for r in third.readings}["sp-sat"] == 24.0
    assert third.values["inlet"] > first["inlet"] + 3.0


def test_a_schedule_of_setpoints_runs_open_loop(hall):
    """run() takes one setpoint per step (an exploration schedule) and refuses a wrong length."""
    sat = np.repeat([18.0, 24.0], 48)
    with EnergyPlusPlant(hall, days=1) as plant:
        with pytest.raises(ValueError, match="has 95 values for 96 steps"):
            next(plant.run(1, setpoints={SetpointName.SUPPLY_AIR_TEMPERATURE: sat[:-1]}))
        (cols,) = plant.run(1, setpoints={SetpointName.SUPPLY_AIR_TEMPERATURE: sat})
    np.testing.assert_array_equal(cols.value[cols.meter == "sp-sat"], sat)
