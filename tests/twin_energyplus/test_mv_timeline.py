"""M&V of a setpoint measure on the generated EnergyPlus hall, on one timeline as a site lives
it (14 baseline days at 20 / 10 degC, the 7-day exploration sweep, then 3 July days of supply
air 18 degC and chilled water 13.5 degC), against the truth: the same timeline with the
conventional setpoints after 1 July (same history), minus the measure's."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from dcpue.config import SetpointName
from dcpue.core.readings import datetime_to_ms
from dcpue.optimizer.evaluate import explore_and_train, site_plant, verify_savings

from tests.twin_energyplus.conftest import hall_site

DAYS, EXPLORE, BASELINE = 3, 7, 14


@pytest.fixture(scope="module")
def mv() -> dict:
    site = hall_site()
    plant = site_plant(site)
    start = site.twin.start
    model = explore_and_train(site, start, EXPLORE, 0, plant)
    intervals = DAYS * 86400 // site.optimizer.interval_s
    measure = {SetpointName.SUPPLY_AIR_TEMPERATURE: np.full(intervals, 18.0),
               SetpointName.CHILLED_WATER_TEMPERATURE: np.full(intervals, 13.5)}
    begin = datetime_to_ms(start - timedelta(days=EXPLORE + BASELINE))
    out = verify_savings(site, plant, model, datetime_to_ms(start), begin, BASELINE, measure, 0)
    print(f"\nM&V {out['savings_kwh']:.0f} +- {out['uncertainty_kwh']:.0f} kWh, truth "
          f"{out['truth_kwh']:.0f} kWh, {out['status']}: {out['reason']}")
    return out


def test_a_real_saving_is_measured_within_its_uncertainty(mv):
    """Computed: M&V's avoided energy and its 90 % uncertainty, and the truth from the two
    EnergyPlus runs. Measured 2026-12-01 with the coil's detailed analysis: 759 +- 345 kWh
    (2026-12-02: +- 373, the uncertainty now also counting the transient after the sweep,
    extrapolation beyond the baseline's IT range and the IT response beyond its inlets)
    against a truth of 948 kWh (its 13.5 degC chilled water now meets the coil's capacity on
    warm afternoons), rejected on one gate only: 18.1 % of the post-period's hours (13 of 72)
    have IT at the reference inlet below the baseline's range, the first hour after the sweep
    and the nightly CPU trough 0.1 % below the baseline's 813.0 kW (the same trough: 9.7 %,
    reported, with the simple analysis, 1,144 +- 377 kWh against 1,225). Declared: every
    other gate passes and the truth lies within the uncertainty. The baseline without
    dry-bulb hinges (an air economizer below 24 degC, which changes the slope of facility
    power with outdoor temperature) gave 1,406 +- 818 kWh, rejected on its 58 % fractional
    savings uncertainty."""
    assert mv["truth_kwh"] > 0  # cooler air and warmer chilled water saved energy here
    assert abs(mv["savings_kwh"] - mv["truth_kwh"]) <= mv["uncertainty_kwh"]
    assert mv["uncertainty_kwh"] < 0.5 * mv["savings_kwh"]
    if mv["status"] != "reported":
        assert mv["reason"].endswith("% of post-period rows outside the baseline's range of "
                                     "IT load and weather (dry bulb, wet bulb, dew point)")
        assert float(mv["reason"].split(" %")[0]) < 25.0 and ";" not in mv["reason"]
