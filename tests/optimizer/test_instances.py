"""Several instances of a setpoint type: two air handlers, each with its own supply-air lever.

A hand-made plant (no twin), declared here: AHU-1 (meter ``sp-sa``) serves racks whose hottest
inlet is its supply air + 2 K (sensor ``inlet-a``), AHU-2 (``sp-sa2``) a denser zone at its
supply air + 4 K (``inlet-b``); the chiller draws 260 - 4 x (SA1 + SA2) kW (a warmer supply,
less chiller power), IT 600 kW and the other loads constant. The site meters no other lever
(chilled water, fans, pumps and running units are declared ``min = max``: held), so training
also covers a site with a subset of the levers. Four days of a sweep (both supply airs drawn
independently in 18-27 degC, held 30 min, 5-minute samples) train the real model.

Computed: with both supply airs at 21.5 degC (hottest inlets 23.5 and 25.5 degC, inlet limit
27 - 1 - 2 x the model's inlet RMSE ~ 26 degC) the proposal raises AHU-1's supply air by its
maximum step and AHU-2's by at most what its zone's inlet limit leaves (its true inlet stays
within 27 - 1 degC): one lever per air handler, proposed separately, not their mean.
"""

from __future__ import annotations

import numpy as np
import pytest
from dcpue.config import SetpointName
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store
from dcpue.optimizer.explore import exploration_schedule
from dcpue.optimizer.frames import build_frame, instance_columns
from dcpue.optimizer.models import train
from dcpue.optimizer.propose import current_state, propose

from tests.optimizer.helpers import small_site

T0 = 1_688_169_600_000  # 2023-07-01T00:00Z
STEP_MS = 5 * 60_000
HELD = {"chilled_water_temperature": 12.0, "crah_fan_speed": 70.0, "pump_frequency": 45.0,
        "running_units": 6.0}


def _site():
    site = small_site({"setpoints": {k: {"min": v, "max": v, "max_step": 1.0, "integer":
                                         k == "running_units"} for k, v in HELD.items()}})
    sa = next(m for m in site.meters if m.id == "sp-sa")
    site.meters = [m for m in site.meters if m.role.value != "setpoint"] + [
        sa, sa.model_copy(update={"id": "sp-sa2"})]
    return site


def _energy(meter: str, kw: np.ndarray, ts: np.ndarray) -> ReadingColumns:
    # end-stamped: the sample at ts holds the energy used up to ts
    return ReadingColumns.series(meter, "energy", "kWh", ts, np.cumsum(kw) * STEP_MS / 3.6e6)


def _plant(ts: np.ndarray, sa1: np.ndarray, sa2: np.ndarray) -> ReadingColumns:
    n = len(ts)
    const = {"it": 600.0, "pump": 10.0, "tower": 5.0, "ups": 20.0, "light": 5.0}

    def state(meter: str, quantity: str, unit: str, value) -> ReadingColumns:
        return ReadingColumns.series(meter, quantity, unit, ts, np.broadcast_to(value, (n,)))

    return ReadingColumns.concat([
        *(_energy(m, np.full(n, kw), ts) for m, kw in const.items()),
        _energy("ch", 260.0 - 4.0 * (sa1 + sa2), ts),
        state("crah", "power", "kW", 30.0), state("oat", "temperature", "degC", 28.0),
        state("orh", "humidity", "%", 55.0),
        state("inlet-a", "temperature", "degC", sa1 + 2.0),
        state("inlet-b", "temperature", "degC", sa2 + 4.0),
        state("sp-sa", "temperature", "degC", sa1), state("sp-sa2", "temperature", "degC", sa2),
    ])


@pytest.fixture(scope="module")
def trained():
    site = _site()
    ts = T0 + STEP_MS * np.arange(1, 4 * 288 + 1, dtype=np.int64)
    sweep = exploration_schedule(ts, site.optimizer, seed=3)
    second = exploration_schedule(ts, site.optimizer, seed=4)["supply_air_c"]
    with Store() as store:
        store.append(_plant(ts, sweep["supply_air_c"], second))
        frame = build_frame(store, site, T0, int(ts[-1]))
        model = train(frame, "gbr")
        now = T0 + 4 * 86_400_000 + STEP_MS * np.arange(1, 19, dtype=np.int64)
        store.append(_plant(now, np.full(18, 21.5), np.full(18, 21.5)))
        state = current_state(store, site)
    return site, frame, model, state


def test_each_air_handler_is_its_own_lever(trained) -> None:
    site, frame, model, state = trained
    columns = instance_columns(site)[SetpointName.SUPPLY_AIR_TEMPERATURE]
    assert columns == ["supply_air_c@sp-sa", "supply_air_c@sp-sa2"]
    assert set(columns) <= set(frame.data.columns) and set(columns) <= set(model.features)
    assert state.instances == pytest.approx({c: 21.5 for c in columns})
    assert model.metrics["holdout"]["inlet_mae_c"] < 0.3
    p = propose(model, state, site.optimizer)
    one, two = (p.proposed[f"supply_air_temperature@{m}"] for m in ("sp-sa", "sp-sa2"))
    assert one == pytest.approx(22.5)  # one max_step up: AHU-1's racks have room
    # AHU-2's zone is at its inlet limit: its true hottest inlet (SA2 + 4) stays within
    # 27 - 1 degC, and the two levers are not moved together
    assert two + 4.0 <= 26.0 and one - two >= 0.5
    assert p.predicted_inlet_c <= p.inlet_limit_c
    assert p.proposed["supply_air_temperature"] == pytest.approx((one + two) / 2)
    assert all(p.proposed[k] == v for k, v in HELD.items())  # held levers stay
