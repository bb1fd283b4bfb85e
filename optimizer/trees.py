"""Prediction of fitted scikit-learn gradient-boosting regressors without per-call input
checks.

``GradientBoostingRegressor.predict`` validates its input again for the model, its ``init``
estimator and each step of that estimator (feature names, finiteness, dataframe detection):
about 0.3 ms per call, most of a proposal's cost when it predicts a few thousand candidate
rows with six fitted ensembles. The plant models predict only arrays they built themselves
(:func:`dcpue.optimizer.models.design_matrix`), so :func:`predict` checks the shape once and
computes what the library computes after its checks: the init estimator's prediction of the
rows read as float32, plus ``learning_rate`` times each stage's tree, summed by the library's
own compiled routine (``sklearn.ensemble._gradient_boosting.predict_stages``; where a future
release lacks it, the checked ``model.predict``). The result equals ``model.predict(X)``
(tests/optimizer/test_trees.py). The fits of a bagged model share their init estimator's
parameters (scikit-learn fits it on all rows, before subsampling): :func:`mean_predict`
evaluates equal standardised ridges once.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

try:
    from sklearn.ensemble._gradient_boosting import predict_stages as _predict_stages
except ImportError:  # pragma: no cover - a release without it: the checked predict
    _predict_stages = None


def _ridge_parts(init: object) -> tuple[StandardScaler, Ridge] | None:
    """The scaler and ridge of a standardised single-output ridge pipeline, else None."""
    if isinstance(init, Pipeline) and len(init.steps) == 2:
        scaler, linear = init.steps[0][1], init.steps[1][1]
        if isinstance(scaler, StandardScaler) and isinstance(linear, Ridge) and np.ndim(
                linear.coef_) == 1:
            return scaler, linear
    return None


def _init_predict(init: object, x32: np.ndarray) -> np.ndarray:
    """The init estimator's prediction for the float32 rows scikit-learn hands it; a
    standardised ridge (the plant models' init) is evaluated from its coefficients, in the
    same float32 then float64 arithmetic as its own ``predict``."""
    parts = _ridge_parts(init)
    if parts is None:
        return np.asarray(init.predict(x32), dtype=np.float64)  # type: ignore[attr-defined]
    scaler, linear = parts
    z = x32.copy()
    if scaler.mean_ is not None:
        z -= scaler.mean_.astype(z.dtype)
    if scaler.scale_ is not None:
        z /= scaler.scale_.astype(z.dtype)
    return z @ linear.coef_ + linear.intercept_


def _ridge_key(init: object) -> bytes | None:
    """A standardised ridge's parameters as bytes (equal bytes, equal predictions), else
    None."""
    parts = _ridge_parts(init)
    if parts is None:
        return None
    scaler, linear = parts
    return b"|".join(np.asarray(a, np.float64).tobytes() for a in (
        scaler.mean_, scaler.scale_, linear.coef_, linear.intercept_))


def predict(model: GradientBoostingRegressor, x: np.ndarray) -> np.ndarray:
    """``model.predict(x)`` for a fitted single-output squared-error regressor and a 2-D
    float array ``x`` with the model's features as columns."""
    return mean_predict([model], x)


def mean_predict(models: list[GradientBoostingRegressor], x: np.ndarray) -> np.ndarray:
    """The mean of :func:`predict` over fitted regressors of the same features (a bagged
    model), the rows converted to float32 once for all of them."""
    x = np.asarray(x, dtype=np.float64)
    width = models[0].n_features_in_
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"expected {width} feature columns, got shape {x.shape}")
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    out = []
    inits: dict[bytes, np.ndarray] = {}  # ridge inits evaluated, by their parameters
    for model in models:
        if _predict_stages is None or model.n_trees_per_iteration_ != 1:
            out.append(np.asarray(model.predict(x), dtype=np.float64))
            continue
        if model.init_ == "zero":
            raw = np.zeros(len(x))
        else:
            key = _ridge_key(model.init_)
            raw = inits.get(key) if key is not None else None
            if raw is None:
                raw = _init_predict(model.init_, x32)
                if key is not None:
                    inits[key] = raw
        acc = np.array(raw, dtype=np.float64).reshape(-1, 1)  # a copy: raw may be shared
        _predict_stages(model.estimators_, x32, model.learning_rate, acc)
        out.append(acc[:, 0])
    return out[0] if len(out) == 1 else np.mean(out, axis=0)
