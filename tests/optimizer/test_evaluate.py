"""The twin evaluation: 30 days of July (Greensboro TMY), loop vs oracle vs fixed setpoints."""

from __future__ import annotations

from dcpue.config import Site
from dcpue.optimizer.evaluate import run_evaluation
from dcpue.optimizer.models import PlantModel

from tests.optimizer.conftest import JULY


def test_loop_reaches_ninety_percent_of_the_oracle_without_violations(
    hall: Site, july_model: PlantModel
) -> None:
    ev = run_evaluation(hall, 30, JULY, model=july_model)
    assert ev.fixed.intervals == ev.loop.intervals == 30 * 96
    # same weather and IT load in every run
    assert ev.fixed.it_kwh == ev.loop.it_kwh == ev.oracle.it_kwh
    assert ev.saving_kwh(ev.oracle) > 0.2 * ev.fixed.cooling_kwh  # there is a lot to save
    assert ev.oracle_share >= 0.90
    assert ev.loop.violations == 0 and ev.oracle.violations == 0
    assert ev.loop.max_inlet_c <= hall.optimizer.inlet_limit_c
    assert ev.loop.pue < ev.fixed.pue
    assert ev.fixed.changes == 0 < ev.loop.changes
    text = ev.report()
    assert "% of the oracle's total facility energy saving" in text and "violations" in text
