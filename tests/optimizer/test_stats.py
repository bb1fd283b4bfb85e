"""Guideline 14 statistics against hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest
from dcpue.optimizer.stats import (
    cvrmse_pct,
    lag1_autocorrelation,
    mae,
    nmbe_pct,
    savings_uncertainty_kwh,
    t_critical,
)

Y = np.array([10.0, 12.0, 14.0, 16.0])
Y_HAT = np.array([11.0, 12.0, 13.0, 17.0])  # residuals -1, 0, 1, -1; mean(y) = 13


def test_cvrmse_and_nmbe_by_hand() -> None:
    # CV(RMSE) = 100 * sqrt(3 / (4 - 1)) / 13; NMBE = 100 * (-1) / ((4 - 1) * 13)
    assert cvrmse_pct(Y, Y_HAT) == pytest.approx(100.0 / 13.0)
    assert nmbe_pct(Y, Y_HAT) == pytest.approx(-100.0 / 39.0)
    # two parameters: n - p = 2
    assert cvrmse_pct(Y, Y_HAT, p=2) == pytest.approx(100.0 * np.sqrt(1.5) / 13.0)
    assert mae(Y, Y_HAT) == pytest.approx(0.75)


def test_lag1_autocorrelation() -> None:
    assert lag1_autocorrelation(np.array([1.0, -1.0, 1.0, -1.0])) == pytest.approx(-0.75)
    assert lag1_autocorrelation(np.array([1.0, 2.0])) == 0.0


def test_t_critical_matches_tables() -> None:
    assert t_critical(0.90, 1e9) == pytest.approx(1.645, abs=1e-3)  # normal quantile
    assert t_critical(0.90, 10) == pytest.approx(1.812, abs=1e-3)  # Student-t table, 10 dof


def test_fractional_savings_uncertainty() -> None:
    # No autocorrelation: n' = n = 50, m = 10, CV 5 %, baseline 2000 kWh, p = 1 (49 dof):
    # 1.6766 * 1.26 * 0.05 * sqrt((1 + 2/50) / 10) * 2000 = 68.12 kWh
    assert savings_uncertainty_kwh(0.05, 50, 10, 0.0, 2000.0) == pytest.approx(68.12, abs=0.02)
    # rho = 0.5 shrinks n = 100 to n' = 33.3: 1.6934 * 1.26 * 0.1 * sqrt(3 * 1.06 / 50) * 1e4
    assert savings_uncertainty_kwh(0.1, 100, 50, 0.5, 10_000.0) == pytest.approx(538.08, abs=0.1)
    # negative autocorrelation is treated as none (conservative)
    assert savings_uncertainty_kwh(0.05, 50, 10, -0.4, 2000.0) == pytest.approx(68.12, abs=0.02)
    assert savings_uncertainty_kwh(0.05, 50, 0, 0.0, 2000.0) == float("inf")
