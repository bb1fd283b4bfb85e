"""Measurement and verification of savings (ASHRAE Guideline 14-2014, whole-facility approach).

A baseline model fitted on a pre-period (before the measure) predicts what the energy would have
been in the post-period under the post-period's IT load and weather; avoided energy = baseline -
actual over the post-period. The baseline is an ordinary least-squares regression of power on
IT load and outdoor air (:func:`baseline_design`); setpoints are deliberately not inputs, since
changing them is the measure. Its goodness of fit (CV(RMSE), NMBE, with p = number of
coefficients) and the Guideline 14 fractional savings uncertainty
(:func:`dcpue.optimizer.stats.savings_uncertainty_kwh`) come with every result.

Results go to the DuckDB table ``mv_savings(measure, start_ms, end_ms, savings_kwh,
uncertainty_kwh, cvrmse, nmbe)`` (CV(RMSE) and NMBE as fractions, 0.05 = 5 %), which the carbon calculator reads for
avoided emissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from dcpue.core.store import Store
from dcpue.optimizer.frames import TrainingFrame
from dcpue.optimizer.stats import (
    cvrmse_pct,
    lag1_autocorrelation,
    nmbe_pct,
    savings_uncertainty_kwh,
)
from sklearn.linear_model import LinearRegression

MvTarget = Literal["facility", "cooling"]
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mv_savings (measure VARCHAR, start_ms BIGINT, end_ms BIGINT,"
    " savings_kwh DOUBLE, uncertainty_kwh DOUBLE, cvrmse DOUBLE, nmbe DOUBLE)"
)


@dataclass(frozen=True, slots=True)
class MvResult:
    """Avoided energy over ``[start_ms, end_ms)`` with its Guideline 14 statistics.

    Energies in kWh; ``uncertainty_kwh`` is the half-width at ``confidence``; ``cvrmse`` and
    ``nmbe`` (%) describe the baseline fit (stored as fractions); ``n`` baseline and ``m`` post-period rows; ``rho``
    the lag-1 autocorrelation of baseline residuals.
    """

    measure: str
    start_ms: int
    end_ms: int
    savings_kwh: float
    uncertainty_kwh: float
    cvrmse_pct: float
    nmbe_pct: float
    baseline_kwh: float
    actual_kwh: float
    n: int
    m: int
    rho: float
    confidence: float



def baseline_design(frame: TrainingFrame) -> np.ndarray:
    """Regressors: IT kW, dry bulb, wet bulb, wet bulb squared, IT x wet bulb, and wet-bulb
    hinges at 12 and 18 degC (economizer and condenser regimes of a chilled-water plant)."""
    d = frame.data
    it, db, wb = d["it_kw"].to_numpy(), d["dry_bulb_c"].to_numpy(), d["wet_bulb_c"].to_numpy()
    return np.column_stack(
        [it, db, wb, wb**2, it * wb, np.maximum(wb - 12.0, 0.0), np.maximum(wb - 18.0, 0.0)]
    )


def _power(frame: TrainingFrame, target: MvTarget) -> np.ndarray:
    return frame.data["facility_kw" if target == "facility" else "cooling_kw"].to_numpy()


def measure_savings(
    pre: TrainingFrame,
    post: TrainingFrame,
    measure: str,
    *,
    target: MvTarget = "facility",
    confidence: float = 0.90,
) -> MvResult:
    """Fit the baseline on ``pre``, predict ``post`` and report avoided energy (kWh)."""
    if len(pre) < 20 or len(post) < 1:
        raise ValueError(f"M&V needs >= 20 baseline rows and a post-period ({len(pre)}, {len(post)})")
    x_pre, y_pre = baseline_design(pre), _power(pre, target)
    model = LinearRegression().fit(x_pre, y_pre)
    fitted = model.predict(x_pre)
    p = x_pre.shape[1] + 1
    baseline_kw = model.predict(baseline_design(post))
    actual_kw = _power(post, target)
    baseline_kwh = float(np.sum(baseline_kw) * post.step_h)
    actual_kwh = float(np.sum(actual_kw) * post.step_h)
    cv = cvrmse_pct(y_pre, fitted, p)
    rho = lag1_autocorrelation(y_pre - fitted)
    index = post.data.index
    return MvResult(
        measure=measure,
        start_ms=int(index[0]),
        end_ms=int(index[-1]) + post.step_s * 1000,
        savings_kwh=baseline_kwh - actual_kwh,
        uncertainty_kwh=savings_uncertainty_kwh(
            cv / 100.0, len(pre), len(post), rho, baseline_kwh, confidence, p
        ),
        cvrmse_pct=cv,
        nmbe_pct=nmbe_pct(y_pre, fitted, p),
        baseline_kwh=baseline_kwh,
        actual_kwh=actual_kwh,
        n=len(pre),
        m=len(post),
        rho=rho,
        confidence=confidence,
    )


def record_savings(store: Store, result: MvResult) -> None:
    """Append a result to ``mv_savings`` (replacing a row of the same measure and window)."""
    store.execute(_SCHEMA)
    store.execute(
        "DELETE FROM mv_savings WHERE measure = ? AND start_ms = ? AND end_ms = ?",
        [result.measure, result.start_ms, result.end_ms],
    )
    store.execute(
        "INSERT INTO mv_savings VALUES (?, ?, ?, ?, ?, ?, ?)",
        [result.measure, result.start_ms, result.end_ms, result.savings_kwh,
         result.uncertainty_kwh, result.cvrmse_pct / 100.0, result.nmbe_pct / 100.0],
    )


def recorded_savings(store: Store) -> list[tuple[str, int, int, float, float, float, float]]:
    """Rows of ``mv_savings`` in time order."""
    store.execute(_SCHEMA)
    return [tuple(r) for r in store.execute(
        "SELECT measure, start_ms, end_ms, savings_kwh, uncertainty_kwh, cvrmse, nmbe "
        "FROM mv_savings ORDER BY start_ms, measure"
    ).fetchall()]
