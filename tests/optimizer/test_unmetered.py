"""Levers without a setpoint meter: never proposed on a stand-in value.

A site that meters no running-units setpoint frames the lever at the default bounds' midpoint
(4.5 of 1-8, a stand-in, not a reading); the daemon once logged "running_units 4.5 -> 4" (the
stand-in rounded to a whole unit and proposed as a change).
"""

from __future__ import annotations

import numpy as np
from dcpue.config import SetpointName
from dcpue.config.optimizer import OptimizerSettings
from dcpue.core.store import Store
from dcpue.optimizer.models import TrustRegion
from dcpue.optimizer.propose import PlantState, current_state, describe, propose
from dcpue.optimizer.writeback import plan_writes

from tests.optimizer.test_frames import _readings, small_site
from tests.optimizer.test_propose import CONDITIONS, CURRENT, LINEAR, Model

UNITS = SetpointName.RUNNING_UNITS
# fewer running units save 20 kW each; chilled water and supply air as LINEAR
FEWER = Model(lambda x: LINEAR.power(x) + 20.0 * x["running_units"], LINEAR.inlet)


def test_the_state_says_which_levers_are_not_metered() -> None:
    """Computed: the plant state of a site whose running-units setpoint meter is removed.
    Declared: that lever is marked unmetered and carries the default bounds' midpoint (1-8:
    4.5); the metered ones are not."""
    site = small_site()
    site.meters = [m for m in site.meters if m.id != "sp-units"]
    with Store() as store:
        store.append(_readings())
        state = current_state(store, site)
    assert state.unmetered == {UNITS}
    assert state.setpoints[UNITS] == 4.5
    with Store() as store:
        store.append(_readings())
        assert current_state(store, small_site()).unmetered == frozenset()


def test_an_unmetered_lever_is_left_out_of_the_proposal() -> None:
    """Computed: the proposal for a state whose running units are the 4.5 stand-in, on a
    model that saves 20 kW per unit fewer. Declared: running units are neither in the
    proposal's current nor its proposed values (so not written back either), the reason
    says why, and the metered levers still move by their step (chilled water 10 -> 11, supply
    air 20 -> 21). The same state with the lever metered at 4.5 would propose 3 units."""
    cfg = OptimizerSettings(inlet_sigmas=0.0)
    metered = PlantState(0, dict(CONDITIONS), CURRENT | {UNITS: 4.5})
    assert propose(FEWER, metered, cfg).proposed["running_units"] == 3.0
    state = PlantState(0, dict(CONDITIONS), CURRENT | {UNITS: 4.5}, unmetered=frozenset({UNITS}))
    p = propose(FEWER, state, cfg)
    assert "running_units" not in p.proposed and "running_units" not in p.current
    assert "running_units not metered" in p.reason
    assert p.status == "proposed"
    assert (p.proposed["chilled_water_temperature"], p.proposed["supply_air_temperature"]) == (
        11.0, 21.0)
    assert "running_units" not in describe(p)["changes"]
    on = {"enabled": True, "transport": "mqtt", "topic": "dc/cmd/units"}
    wb = OptimizerSettings(setpoints={"running_units": {
        "min": 1, "max": 8, "max_step": 1, "integer": True, "writeback": on}})
    assert plan_writes(p, wb, {}) == []
    # a proposal in which only the stand-in would "change" (4.5 rounded to 4) is a keep
    flat = Model(lambda x: 1000.0 + 0.0 * x["it_kw"], LINEAR.inlet)
    assert propose(flat, state, cfg).status == "keep"


def test_a_model_trained_on_the_lever_is_not_used_without_its_reading() -> None:
    """Computed: the proposal when the model's trust region shows running units varied in
    training (1-8) but the site no longer meters them. Declared: keep current, the reason
    names the lever; with the measured inlet above the limit less the margin (26.5 > 26),
    the metered levers step cooler without the model and the unmetered one stays out."""
    cols = ("it_kw", "dry_bulb_c", "relative_humidity_pct", "wet_bulb_c", "dew_point_c",
            "supply_air_c", "chilled_water_c", "crah_fan_speed_pct", "pump_frequency_hz",
            "running_units")
    lo = {c: -1e9 for c in cols} | {"running_units": 1.0}
    hi = {c: 1e9 for c in cols} | {"running_units": 8.0}
    trained = Model(FEWER.power, FEWER.inlet, trust=TrustRegion(lo, hi))
    cfg = OptimizerSettings(inlet_sigmas=0.0)
    state = PlantState(0, dict(CONDITIONS), CURRENT | {UNITS: 4.5}, rack_inlet_c=22.0,
                       unmetered=frozenset({UNITS}))
    p = propose(trained, state, cfg)
    assert p.status == "keep" and "trained on readings of running_units" in p.reason
    hot = PlantState(0, dict(CONDITIONS), CURRENT | {UNITS: 4.5}, rack_inlet_c=26.5,
                     unmetered=frozenset({UNITS}))
    p = propose(trained, hot, cfg)
    assert p.reason.startswith("step cooler without the model")
    assert p.proposed["supply_air_temperature"] == 19.0 and "running_units" not in p.proposed
    assert np.isfinite(p.proposed["chilled_water_temperature"])
