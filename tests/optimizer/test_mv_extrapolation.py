"""M&V's uncertainty off the baseline's distribution: a hand-built plant whose post-period
lies beyond the baseline's weather, the opening transient of a post-period, and the IT
response beyond its trained inlets. Every truth here is the plant's own formula."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from dcpue.optimizer.frames import TrainingFrame
from dcpue.optimizer.mv import (
    it_reference_uncertainty_kwh,
    measure_savings,
    transition_kwh,
)

#: The measure's saving (kW), declared: the post-period's power is the plant's minus this.
SAVED_KW = 20.0


def plant_kw(it_kw: np.ndarray, dry_bulb_c: np.ndarray) -> np.ndarray:
    """The hand-built plant (kW): 1.25 x IT + 0.002 x (dry bulb - 10)^3 above 10 degC, a
    cooling term that steepens with heat (a coil nearing its capacity), declared."""
    return 1.25 * it_kw + 0.002 * np.maximum(dry_bulb_c - 10.0, 0.0) ** 3


def frame(hours: int, dry_bulb: tuple[float, float], seed: int, saved_kw: float = 0.0,
          start_h: int = 0) -> TrainingFrame:
    """``hours`` hourly rows: IT 800-850 kW, dry bulb a daily cycle over ``dry_bulb`` (degC),
    wet bulb 10-16 and dew point 5-10 degC drawn alike in every period (inside the baseline's
    range), power = :func:`plant_kw` + N(0, 1 kW) - ``saved_kw``."""
    rng = np.random.default_rng(seed)
    h = np.arange(hours)
    lo, hi = dry_bulb
    db = lo + (hi - lo) * (0.5 - 0.5 * np.cos(2 * np.pi * h / 24.0)) + rng.uniform(-0.3, 0.3, hours)
    db = np.clip(db, lo, hi)
    it = rng.uniform(800.0, 850.0, hours)
    power = plant_kw(it, db) + rng.normal(0.0, 1.0, hours) - saved_kw
    data = pd.DataFrame({
        "it_kw": it, "dry_bulb_c": db, "wet_bulb_c": rng.uniform(10.0, 16.0, hours),
        "dew_point_c": rng.uniform(5.0, 10.0, hours), "rack_inlet_max_c": np.full(hours, 21.0),
        "facility_kw": power, "cooling_kw": power - it,
    }, index=pd.Index(3_600_000 * (start_h + h), name="ts_ms"))
    return TrainingFrame(data, 3600, hours, 0)


def truth_kwh(post: TrainingFrame) -> float:
    """The measure's saving over the post-period by the plant's formula: SAVED_KW x hours."""
    return SAVED_KW * len(post) * post.step_h


def old_uncertainty_kwh(result) -> float:
    """The uncertainty before extrapolation was counted: max(Annex B, blocked CV)."""
    return max(result.formula_uncertainty_kwh, result.holdout_uncertainty_kwh)


def test_a_post_period_hotter_than_the_baseline_is_covered() -> None:
    """Computed: :func:`measure_savings` on a 14-day baseline at 10-30 degC dry bulb and a
    3-day post-period at 30-38 degC (a heatwave the baseline never saw) under a measure
    saving 20 kW. Declared: the plant (:func:`plant_kw`, cubic in dry bulb), so the truth is
    20 kW x 72 h = 1440 kWh; the baseline's hinges extrapolate the cubic linearly beyond
    30 degC and under-predict. The old uncertainty (Annex B, blocked cross-validation: errors
    inside the baseline's conditions) misses the truth; the new one, whose extrapolation term
    measures how the baseline errs when made to extrapolate within its own data, covers it
    and names extrapolation as the dominant term."""
    pre = frame(14 * 24, (10.0, 30.0), seed=1)
    post = frame(3 * 24, (30.0, 38.0), seed=2, saved_kw=SAVED_KW, start_h=21 * 24)
    result = measure_savings(pre, post, "heatwave")
    error = abs(result.savings_kwh - truth_kwh(post))
    print(f"\nsaving {result.savings_kwh:.0f} kWh, truth {truth_kwh(post):.0f}, new +-"
          f"{result.uncertainty_kwh:.0f}, old +-{old_uncertainty_kwh(result):.0f}; {result.reason}")
    assert error > old_uncertainty_kwh(result)  # the old uncertainty misses the truth
    assert error <= result.uncertainty_kwh  # the new one covers it
    assert result.dominant_term == "extrapolation"
    assert "dominated by extrapolation" in result.reason
    # honest, not unbounded: the stated half-width stays within 3 x the actual error
    assert result.uncertainty_kwh < 3.0 * error
    # the range gate still rejects the row (every post-period row is outside)
    assert result.status == "rejected" and not result.gates["post_in_baseline_range"]


def test_a_post_period_inside_the_baseline_is_not_inflated() -> None:
    """Computed: the same plant and measure with the post-period's dry bulb inside the
    baseline's (12-28 degC in 10-30). Declared: truth 1440 kWh. No row lies outside, no
    transient opens the period and there is no IT adjustment, so the uncertainty is the fit
    term alone (within 1 % of the old max(Annex B, blocked CV)) and covers the truth."""
    pre = frame(14 * 24, (10.0, 30.0), seed=1)
    post = frame(3 * 24, (12.0, 28.0), seed=3, saved_kw=SAVED_KW, start_h=21 * 24)
    result = measure_savings(pre, post, "mild")
    assert result.extrapolation_uncertainty_kwh == 0.0
    assert result.transition_kwh == 0.0 and result.it_reference_uncertainty_kwh == 0.0
    assert result.uncertainty_kwh <= 1.01 * old_uncertainty_kwh(result)
    assert abs(result.savings_kwh - truth_kwh(post)) <= result.uncertainty_kwh
    assert result.dominant_term == "fit" and result.status == "reported"


def test_the_opening_transient_is_counted() -> None:
    """Computed: :func:`transition_kwh` on hourly savings of 20 kW with a first hour at
    -100 kW and a second at 0 kW (the plant settling after a sweep), small scatter after.
    Declared (by hand): median 20 kW; deviations 120 and 20 kW exceed 3 x 1.4826 x the
    median absolute deviation (0.5 kW -> 2.2 kW); the third row (0.5 kW off) does not, so two
    rows and 140 kWh."""
    saving = np.r_[-100.0, 0.0, 20.5, 19.5, 20.5, 19.5, 20.5, 19.5, 20.0, 20.0, 20.5, 19.5, 20.0]
    assert transition_kwh(saving, 1.0) == (pytest.approx(140.0), 2)
    assert transition_kwh(np.full(12, 20.0) + np.r_[0.5, -0.5] .repeat(6), 1.0) == (0.0, 0)


@dataclass(frozen=True)
class EdgeResponse:
    """A learned-looking IT response (the attributes of ``ITResponse`` the bound reads):
    trained on inlets 19-27 degC, steepest slope 2 %/K."""

    lo_c: float = 19.0
    hi_c: float = 27.0
    pct_per_k_at_max: float = 2.0

    def log_ratio(self, inlet_c, ref_c):
        return np.zeros(np.shape(inlet_c))


def test_the_it_response_beyond_its_trained_inlets_is_bounded() -> None:
    """Computed: :func:`it_reference_uncertainty_kwh` for 4 hourly rows of IT 800 kW at the
    reference, dP/dIT 1.3, inlets 18, 18.5, 21 and 28 degC, a response trained on 19-27 degC
    with a steepest slope of 2 %/K. Declared (by hand): the rows lie 1, 0.5, 0 and 1 K
    beyond; the bound is 1.3 x 800 x 0.02 x (1 + 0.5 + 0 + 1) x 1 h = 52 kWh. A response
    without a trained range (a hand-made protocol object) gives 0."""
    it, inlet, dp = np.full(4, 800.0), np.array([18.0, 18.5, 21.0, 28.0]), np.full(4, 1.3)
    assert it_reference_uncertainty_kwh(it, inlet, dp, 1.0, EdgeResponse()) == pytest.approx(52.0)

    class Bare:
        def log_ratio(self, inlet_c, ref_c):
            return np.zeros(np.shape(inlet_c))

    assert it_reference_uncertainty_kwh(it, inlet, dp, 1.0, Bare()) == 0.0
