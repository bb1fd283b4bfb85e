"""The model's plant parameters come from the site's data, not from the twin they were written
beside: a twin whose coil approach and cooling-tower approach differ from the default plant's.

Declared: the twin's plant with a 2 K coil approach (default 5 K) and a 6 K tower approach
(default 3.5 K). Computed: 4 days of exploration before 1 July (Greensboro TMY), framed at
15 min, gradient-boosted model; the coil approach :func:`fit_physics` learns, the held-out PUE
MAE and inlet MAE.
"""

from __future__ import annotations

from dcpue.config import Site
from dcpue.optimizer.evaluate import explore_and_train

from tests.optimizer.conftest import JULY


def test_features_learn_another_plants_coil_and_tower(hall: Site) -> None:
    """The learned coil approach is at most 3 K, not the 5 K the features once fixed (1 K
    measured: the sweep seldom runs supply air within the approach of chilled water, so the
    value is weakly identified, and the hinges every kelvin carry the rest); the model meets
    issue 14's accuracy targets on that plant (held-out PUE MAE <= 0.004, 0.0030 measured;
    inlet MAE <= 0.5 degC, 0.06 measured)."""
    plant = hall.twin.plant.model_copy(update={"coil_approach_k": 2.0, "tower_approach_k": 6.0})
    site = hall.model_copy(update={"twin": hall.twin.model_copy(update={"plant": plant})})
    model = explore_and_train(site, JULY, 4.0)
    physics = model.summary()["scales"]["physics"]
    assert physics["coil_approach_k"] <= 3.0
    assert model.metrics["holdout"]["pue_mae"] <= 0.004
    assert model.metrics["holdout"]["inlet_mae_c"] <= 0.5
