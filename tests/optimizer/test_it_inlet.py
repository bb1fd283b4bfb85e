"""Total facility energy, not PUE: a plant whose IT power rises with rack inlet temperature.

The native twin's IT load does not depend on inlet temperature and ``[twin]`` has no setting
for it, so this test post-processes the twin (``InletSensitiveTwin``): IT power, and with it the
IT and utility counters, rise by ``PCT_PER_K`` % per K of the hottest rack inlet above
``THRESHOLD_C`` (as servers' fans and leakage do; EnergyPlus's ITE model uses +6.7 %/K of CPU
power). The extra IT heat does not reach the twin's cooling physics (a simplification the
learned model and the oracle share).

Declared: the response (4 %/K above 22 degC). Computed: the response the model learns from the
exploration data, and what the loop does with it against the old objective, which held IT
power at its metered value (the same model with its IT response removed).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest
from dcpue.config import MeterKind, MeterRole, SetpointName, Site
from dcpue.core.readings import ReadingColumns
from dcpue.core.units import unit
from dcpue.optimizer.evaluate import (
    PlantRun,
    TwinPlant,
    TwinPredictor,
    _Decider,
    explore_and_train,
    run_evaluation,
)
from dcpue.optimizer.models import PlantModel, Prediction, TrustRegion

from tests.optimizer.conftest import JULY

PCT_PER_K, THRESHOLD_C = 4.0, 22.0
START = JULY + timedelta(days=7)


@dataclass(frozen=True, slots=True)
class TrueResponse:
    """The declared IT response: ln(f(inlet) / f(ref)) with f = 1 + a max(inlet - t, 0)."""

    pct_per_k: float
    threshold_c: float

    def factor(self, inlet_c: np.ndarray) -> np.ndarray:
        return 1.0 + self.pct_per_k / 100.0 * np.maximum(np.asarray(inlet_c) - self.threshold_c,
                                                         0.0)

    def log_ratio(self, inlet_c: np.ndarray, ref_c: float) -> np.ndarray:
        return np.log(self.factor(inlet_c)) - float(np.log(self.factor(np.array(ref_c))))


class InletSensitiveTwin(TwinPlant):
    """The native twin with IT power scaled by :class:`TrueResponse` of each step's inlet."""

    def __init__(self, site: Site, seed: int, response: TrueResponse) -> None:
        super().__init__(site, seed)
        self.response = response
        self.counters = [m for m in site.meters if m.kind is MeterKind.COUNTER
                         and m.role in (MeterRole.IT_LOAD, MeterRole.GRID_IMPORT)]

    def readings(
        self, start_ms: int, setpoints: Mapping[str, np.ndarray]
    ) -> Iterator[ReadingColumns]:
        base = super().run(start_ms, setpoints)
        extra_kwh = np.cumsum(base.it_kw * (self.response.factor(base.rack_inlet_max_c) - 1.0)
                              * self.step_s / 3600.0)
        for cols in super().readings(start_ms, setpoints):
            for m in self.counters:
                mask = cols.meter == m.id
                value = cols.value[mask] + extra_kwh[: np.count_nonzero(mask)] / unit(
                    m.unit).scale
                cols.value[mask] = np.mod(value, m.rollover) if m.rollover else value
            yield cols

    def observe(
        self, conditions: Mapping[str, float], setpoints: Mapping[SetpointName, float]
    ) -> tuple[float, float]:
        it_kw, inlet = super().observe(conditions, setpoints)
        return it_kw * float(self.response.factor(np.array(inlet))), inlet

    def run(self, start_ms: int, setpoints: Mapping[str, np.ndarray]) -> PlantRun:
        r = super().run(start_ms, setpoints)
        extra = r.it_kw * (self.response.factor(r.rack_inlet_max_c) - 1.0)
        return PlantRun(r.facility_kw + extra, r.cooling_kw, r.it_kw + extra, r.rack_inlet_max_c)

    def oracle(self, start_ms: int, intervals: int, interval_s: int
               ) -> tuple[dict[SetpointName, np.ndarray], PlantRun]:
        """The loop's search with the twin's equations and the declared IT response."""
        physics = TwinPredictor(self.params, self.pressure_pa, target=self.site.optimizer.target,
                                it_response=self.response)
        return self.control(start_ms, intervals, interval_s,
                            _Decider(physics, self.site, self, intervals))


@dataclass(frozen=True, slots=True)
class MeteredIT:
    """The old objective on the same model: IT power held at its metered value, so only the
    overhead (facility - IT, i.e. PUE) is minimised. The model's trust region, but for IT:
    the model's range is of IT work, this predictor is given metered IT."""

    model: PlantModel
    it_response: None = None

    @property
    def target(self) -> str:
        return self.model.target

    @property
    def power_rmse_kw(self) -> float:
        return self.model.power_rmse_kw

    @property
    def inlet_rmse_c(self) -> float:
        return self.model.inlet_rmse_c

    @property
    def trust(self) -> TrustRegion:
        t = self.model.trust
        return TrustRegion(t.lo | {"it_kw": 0.0}, t.hi | {"it_kw": np.inf})

    def predict(self, x: Mapping[str, np.ndarray]) -> Prediction:
        return self.model.predict(x)

    def summary(self) -> dict:
        return self.model.summary()


@pytest.fixture(scope="module")
def sensitive(hall: Site) -> tuple[InletSensitiveTwin, PlantModel]:
    plant = InletSensitiveTwin(hall, hall.twin.seed, TrueResponse(PCT_PER_K, THRESHOLD_C))
    return plant, explore_and_train(hall, START, 7.0, plant=plant)


def test_the_model_learns_how_it_power_rises_with_inlet(sensitive) -> None:
    """From 7 days of exploration the model recovers the declared response: IT power at
    26 degC over 22 degC is 1.16 (4 x 4 %); the learned ratio is within 25 % of that rise."""
    _, model = sensitive
    assert model.it_response is not None
    learned = float(np.exp(model.it_response.log_ratio(np.array([26.0]), 22.0)[0]))
    assert learned - 1.0 == pytest.approx(0.16, rel=0.25)
    assert model.summary()["it_response"]["max_pct_per_k"] > 2.0


def test_loop_lowers_facility_energy_where_the_pue_objective_raised_it(hall: Site, sensitive):
    """Four days of July at 15-minute control. Old objective (IT held at its metered value,
    i.e. overhead = PUE minimised): PUE falls but facility energy rises above the conventional
    run. New objective (total facility energy, IT predicted per candidate from the model of IT
    work): facility energy falls by at least 90 % of the oracle's saving (96.2 % measured; 71 %
    when the models took metered IT, which the setpoints themselves move), with no inlet above
    the limit. Computed on the evaluation period itself (each decision's prediction against the
    interval that followed): PUE MAE <= 0.004 and inlet MAE <= 0.5 degC (issue 14's targets;
    0.0014 and 0.08 degC measured)."""
    plant, model = sensitive
    new = run_evaluation(hall, 4, START, model=model, plant=plant)
    old = run_evaluation(hall, 4, START, model=MeteredIT(model), plant=plant)
    assert old.loop.pue < old.fixed.pue
    assert old.loop.facility_kwh > old.fixed.facility_kwh  # PUE "improved", energy rose
    assert old.loop.it_kwh > old.fixed.it_kwh
    assert new.saving_kwh(new.oracle) > 0
    assert new.oracle_share >= 0.9
    assert new.loop.violations == 0 and new.oracle.violations == 0
    assert new.period_accuracy["pue_mae"] <= 0.004
    assert new.period_accuracy["inlet_mae_c"] <= 0.5
    assert model.metrics["holdout"]["pue_mae"] <= 0.004
