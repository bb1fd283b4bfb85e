"""The generated hall's CRAH coil: one solution whatever day a run starts, and how fast the
rack inlet follows a setpoint (docs/energyplus.md, The CRAH coil's analysis)."""

from __future__ import annotations

import json
import tomllib
from datetime import datetime, timedelta, timezone

import numpy as np
from dcpue.config import SetpointName, parse_site
from dcpue.core.readings import datetime_to_ms
from dcpue.core.store import Store
from dcpue.optimizer.evaluate import SETPOINTS, site_plant
from dcpue.twin.energyplus import EnergyPlusPlant

from tests.twin_energyplus.conftest import HALL_TOML, hall_site

PHOENIX = "USA_AZ_Phoenix-Sky.Harbor.Intl.AP.722780_TMY3.epw"
MIAMI = "USA_FL_Miami.Intl.AP.722020_TMY3.epw"
SAT, CHW = SetpointName.SUPPLY_AIR_TEMPERATURE, SetpointName.CHILLED_WATER_TEMPERATURE


def test_the_same_days_cost_the_same_whenever_the_run_started() -> None:
    """Computed: grid energy over 2-3 July (Phoenix TMY3, the conventional 20 / 10 degC) from
    a run started on 17 June and from one started on 1 July. Declared: the same weather, IT
    load and setpoints, so the same energy. The sealed hall keeps the humidity its start day
    gave it (5.1 against 9.7 g/kg here); measured 2026-12-01: 53,382.1 and 53,379.8 kWh
    (0.004 %); with the coil's simple analysis (all dry below, all wet above the entering
    water's 10 degC dew point) 53,165.8 and 53,325.5 kWh (0.3 %: 16 against 30 kg/s of
    chilled water for the same 0.93-1.03 MW, no condensate either way)."""
    site = hall_site({"timezone": "America/Phoenix"}, weather=PHOENIX)
    site.twin.start = datetime(2023, 7, 1, tzinfo=timezone(timedelta(hours=-7)))  # 00:00 MST
    plant = site_plant(site)
    start = site.twin.start
    lo, hi = (datetime_to_ms(start + timedelta(days=d)) for d in (1, 3))
    energies = []
    for begin in (start - timedelta(days=14), start):
        steps = round(((start - begin).days + 3) * 86400 / plant.step_s)
        with Store(":memory:") as store:
            for cols in plant.readings(datetime_to_ms(begin), {
                    SETPOINTS[k]: np.full(steps, v) for k, v in plant.conventional.items()}):
                store.append(cols)
            grid = store.series("grid-main", "energy", lo, hi)
            energies.append(float(grid.value[-1] - grid.value[0]))
    print(f"\n2-3 July grid energy: {energies[0]:,.1f} kWh (run from 17 June), "
          f"{energies[1]:,.1f} kWh (run from 1 July)")
    assert energies[0] > 50_000
    assert abs(energies[0] - energies[1]) < 1e-4 * energies[1]


def _miami_with_coil_meters():
    """The test hall in Miami with the coil's water flow (kg/s) and supply air (degC) metered."""
    data = tomllib.loads(HALL_TOML.read_text())
    data["timezone"] = "America/New_York"
    data["twin"]["energyplus"]["weather"] = MIAMI
    data["meters"] += [
        {"id": "coil-water", "role": "other_load", "kind": "power", "unit": "kW"},
        {"id": "supply-air", "role": "outdoor_temperature", "kind": "state", "unit": "degC"},
    ]
    data["twin"]["energyplus"]["meters"] = {  # W read as kW: 1 kg/s = 1 "kW" / 1000
        "coil-water": {"variable": "System Node Mass Flow Rate", "key": "CRAH Coil Water Inlet",
                       "unit": "W"},
        "supply-air": {"variable": "System Node Temperature", "key": "Supply Air"},
    }
    site = parse_site(data, str(HALL_TOML), HALL_TOML.parent)
    site.twin.start = datetime(2023, 7, 1, tzinfo=timezone(timedelta(hours=-5)))
    return site


def test_the_inlet_settles_in_one_row_unless_the_coil_is_at_its_capacity() -> None:
    """Computed: the ITE inlet's share of its 4-row response 1 and 2 rows (15-min timesteps)
    after a 2 K supply-air step (20 -> 22 degC, 10:00) and a 4 K chilled-water step
    (10 -> 14 degC, 18:00), Miami, 1 July. Declared: the ITE inlet reads the supply-air node
    at the start of each zone timestep, so the supply-air step shows fully 1 row later (the
    coil holds the setpoint below its maximum water flow). At 14 degC the coil reaches its
    maximum flow (the controller's ``maximum_actuated_flow``) and misses the 20 degC setpoint:
    supply air then follows the return air, and EnergyPlus carries that loop one zone
    timestep at a time, so the inlet needs 2 rows. Measured 2026-12-01: 98 % after 1 row for
    the supply-air step; 78 % after 1 row, 95 % after 2 for the chilled-water one (at 1-min
    timesteps the same step settles within 10 min)."""
    site = _miami_with_coil_meters()
    rows = []
    with EnergyPlusPlant(site, days=1) as plant:
        doc = json.loads(plant.model_path.read_text())
        controller = doc["Controller:WaterCoil"]["CRAH Coil Controller"]
        max_flow = controller["maximum_actuated_flow"] * 1000.0  # m3/s of water -> kg/s
        for k in range(80):
            sat = 22.0 if 40 <= k < 56 else 20.0
            step = plant.step({SAT: sat, CHW: 14.0 if k >= 72 else 10.0})
            v = step.values
            rows.append((v["inlet"], v["supply-air"], v["coil-water"] * 1000.0))
    inlet, supply, water = np.array(rows).T

    def settled(k0: int) -> tuple[float, float]:
        total = inlet[k0 + 4] - inlet[k0]
        return (inlet[k0 + 1] - inlet[k0]) / total, (inlet[k0 + 2] - inlet[k0]) / total

    sat_1, _ = settled(40)
    chw_1, chw_2 = settled(72)
    print(f"\nsupply-air step: {sat_1:.1%} after 1 row; chilled-water step: {chw_1:.1%} after "
          f"1 row, {chw_2:.1%} after 2 (coil water {water[73]:.1f} of {max_flow:.1f} kg/s, "
          f"supply air {supply[73]:.2f} degC)")
    assert abs(supply[41:56] - 22.0).max() < 0.01 and water[41:56].max() < 0.9 * max_flow
    assert sat_1 > 0.95
    assert water[73:80].min() > 0.99 * max_flow and supply[73] > 20.5
    assert chw_1 < 0.9 < chw_2
