"""Scenario runs for evaluations on the EnergyPlus plant: open and closed loop, grid oracle."""

from __future__ import annotations

import numpy as np
import pytest
from dcpue.config import SetpointName
from dcpue.twin.energyplus_scenarios import grid_oracle, run_intervals

SAT, CHW = SetpointName.SUPPLY_AIR_TEMPERATURE, SetpointName.CHILLED_WATER_TEMPERATURE


def test_oracle_and_loop_on_energyplus(hall):
    """One July day, 15-min intervals. Declared: a grid of supply air 18 / 24 degC at 10 degC
    chilled water, inlet limit 27 degC. Computed: the oracle per interval is the cheaper
    feasible run; a closed loop that holds 18 degC reproduces the open-loop 18 degC run
    exactly; and, with IT power rising with inlet, 24 degC has the better PUE but uses more
    energy (the trap issue 14 describes)."""
    oracle, (cool, warm) = grid_oracle(hall, start=None, intervals=96, interval_s=900,
                                       grid={SAT: [18.0, 24.0], CHW: [10.0]}, inlet_limit_c=27.0)
    assert oracle.violations(27.0) == 0
    np.testing.assert_array_equal(oracle.facility_kwh, np.minimum(cool.facility_kwh,
                                                                  warm.facility_kwh))
    assert warm.pue < cool.pue and warm.facility_kwh.sum() > cool.facility_kwh.sum()
    assert warm.it_kwh.sum() > 1.05 * cool.it_kwh.sum()
    seen = []

    def hold(i, last):
        seen.append(last is None)
        return {SAT: 18.0, CHW: 10.0}

    loop = run_intervals(hall, start=None, intervals=96, interval_s=900, choose=hold)
    assert seen[0] and not any(seen[1:]) and len(seen) == 96
    np.testing.assert_array_equal(loop.facility_kwh, cool.facility_kwh)
    np.testing.assert_array_equal(loop.setpoints[SAT], np.full(96, 18.0))


def test_interval_must_be_whole_timesteps(hall):
    with pytest.raises(ValueError, match="multiple of the EnergyPlus timestep 900 s"):
        run_intervals(hall, start=None, intervals=4, interval_s=600,
                      setpoints={SAT: np.full(4, 18.0)})
