"""Goodness-of-fit and savings-uncertainty statistics of ASHRAE Guideline 14-2014.

Pure functions over NumPy arrays. ``y`` are measured values, ``y_hat`` model predictions, ``p``
the number of model parameters (Guideline 14 uses ``n - p`` degrees of freedom).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def cvrmse_pct(y: np.ndarray, y_hat: np.ndarray, p: int = 1) -> float:
    """Coefficient of variation of the RMSE in %:
    ``100 * sqrt(sum((y - y_hat)^2) / (n - p)) / mean(y)`` (Guideline 14-2014 eq. 4-3)."""
    y, y_hat = np.asarray(y, float), np.asarray(y_hat, float)
    dof = max(len(y) - p, 1)
    return float(100.0 * np.sqrt(np.sum((y - y_hat) ** 2) / dof) / np.mean(y))


def nmbe_pct(y: np.ndarray, y_hat: np.ndarray, p: int = 1) -> float:
    """Normalised mean bias error in %: ``100 * sum(y - y_hat) / ((n - p) * mean(y))``
    (Guideline 14-2014 eq. 4-4); positive when the model under-predicts."""
    y, y_hat = np.asarray(y, float), np.asarray(y_hat, float)
    dof = max(len(y) - p, 1)
    return float(100.0 * np.sum(y - y_hat) / (dof * np.mean(y)))


def mae(y: np.ndarray, y_hat: np.ndarray) -> float:
    """Mean absolute error, in the unit of ``y``."""
    return float(np.mean(np.abs(np.asarray(y, float) - np.asarray(y_hat, float))))


def lag1_autocorrelation(residuals: np.ndarray) -> float:
    """Lag-1 autocorrelation coefficient of residuals (time-ordered), 0 for fewer than 3."""
    r = np.asarray(residuals, float) - np.mean(residuals)
    if len(r) < 3 or not np.any(r):
        return 0.0
    return float(np.sum(r[1:] * r[:-1]) / np.sum(r * r))


def t_critical(confidence: float, dof: float) -> float:
    """Two-sided Student-t critical value at ``confidence`` (e.g. 0.90 -> 1.645 for large dof)."""
    return float(stats.t.ppf(0.5 + confidence / 2.0, max(dof, 1.0)))


def savings_uncertainty_kwh(
    cvrmse_fraction: float,
    n: int,
    m: int,
    rho: float,
    baseline_post_kwh: float,
    confidence: float = 0.90,
    p: int = 1,
) -> float:
    """Absolute uncertainty of avoided energy at ``confidence``, in kWh.

    ASHRAE Guideline 14-2014 Annex B (Reddy and Claridge 2000) fractional savings uncertainty:

        dE_save / E_save = t * 1.26 * CV * sqrt((n / n') * (1 + 2 / n') * (1 / m)) / F

    with CV the baseline model's CV(RMSE) as a fraction, n baseline points, m reporting-period
    points, n' = n (1 - rho) / (1 + rho) the effective number of baseline points for lag-1
    residual autocorrelation rho (negative rho treated as 0), F = E_save / E_baseline,post and t
    the Student-t value at ``confidence`` with n' - p degrees of freedom. Multiplying by E_save
    gives dE_save = t * 1.26 * CV * sqrt(...) * E_baseline,post, which this returns.
    """
    rho = max(rho, 0.0)
    n_eff = n * (1.0 - rho) / (1.0 + rho)
    if m <= 0 or n_eff <= 0:
        return float("inf")
    spread = np.sqrt((n / n_eff) * (1.0 + 2.0 / n_eff) / m)
    return float(t_critical(confidence, n_eff - p) * 1.26 * cvrmse_fraction * spread
                 * abs(baseline_post_kwh))
