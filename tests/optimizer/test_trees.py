"""dcpue.optimizer.trees.predict against scikit-learn's own GradientBoostingRegressor.predict
(computed by the library, compared element by element), for the plant models' standardised
ridge init, the default init and a non-ridge init pipeline; mean_predict of a bagged model
against the mean of the library's predictions."""

from __future__ import annotations

import numpy as np
import pytest
from dcpue.optimizer import trees
from dcpue.optimizer.trees import mean_predict, predict
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Lasso, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def data(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)) * [1, 10, 0.1, 5, 100, 1] + [0, 20, 1, 0, 500, 3]
    y = 2 * x[:, 0] + np.sin(x[:, 1] / 3) + 0.01 * x[:, 4] + rng.normal(0, 0.1, n)
    return x, y


@pytest.mark.parametrize("init", ["ridge", "default", "lasso"])
def test_equals_scikit_learn(init):
    x, y = data(1)
    est = {"ridge": make_pipeline(StandardScaler(), Ridge(alpha=1e-2)), "default": None,
           "lasso": make_pipeline(StandardScaler(), Lasso(alpha=1e-3))}[init]
    model = GradientBoostingRegressor(init=est, n_estimators=60, max_depth=3,
                                      learning_rate=0.15, subsample=0.8, random_state=3)
    model.fit(x, y)
    for probe in (data(2, 1250)[0], data(3, 1)[0], x[:7]):
        np.testing.assert_allclose(predict(model, probe), model.predict(probe),
                                   rtol=1e-12, atol=1e-12)


def test_wrong_width_refused():
    x, y = data(1, 50)
    model = GradientBoostingRegressor(n_estimators=5).fit(x, y)
    with pytest.raises(ValueError, match="expected 6 feature columns"):
        predict(model, x[:, :5])


def _bagged(x: np.ndarray, y: np.ndarray, seeds: range) -> list[GradientBoostingRegressor]:
    return [GradientBoostingRegressor(
        init=make_pipeline(StandardScaler(), Ridge(alpha=1e-2)), n_estimators=40, max_depth=3,
        learning_rate=0.15, subsample=0.8, random_state=s).fit(x, y) for s in seeds]


@pytest.mark.parametrize("same_rows", [True, False])
def test_bagged_fits_share_one_init_evaluation(monkeypatch, same_rows):
    """Computed: mean_predict over three fits and how often it evaluates an init. Declared:
    the mean of scikit-learn's own predictions (1e-12); fits of the same rows (subsampling
    seeds 0-2: scikit-learn fits the init on all rows) share one init evaluation, fits of
    different rows (different ridges) need three."""
    x, y = data(1)
    fits = (_bagged(x, y, range(3)) if same_rows else
            [f for i in range(3) for f in _bagged(x[i::3], y[i::3], range(i, i + 1))])
    calls = []
    inner = trees._init_predict
    monkeypatch.setattr(trees, "_init_predict", lambda init, x32: calls.append(1) or inner(
        init, x32))
    probe = data(4, 900)[0]
    np.testing.assert_allclose(mean_predict(fits, probe),
                               np.mean([f.predict(probe) for f in fits], axis=0),
                               rtol=1e-12, atol=1e-12)
    assert len(calls) == (1 if same_rows else 3)
