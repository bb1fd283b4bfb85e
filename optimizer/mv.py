"""Measurement and verification of savings (ASHRAE Guideline 14-2014, IPMVP).

A baseline model fitted on a pre-period (before the measure) predicts what the energy would have
been in the post-period under the post-period's IT work and weather; avoided energy = baseline -
actual over the post-period. The baseline is an ordinary least-squares regression of power on IT
power and outdoor air (:func:`baseline_design`); setpoints are deliberately not inputs, since
changing them is the measure.

**IT that setpoints cannot inflate.** Where IT power rises with rack inlet temperature, a warmer
hall raises IT power, and a baseline regressed on metered IT would credit the measure with that
rise. The regressor is therefore IT power at a reference inlet (the baseline's median hottest
inlet): metered IT divided by the IT response between the bucket's inlet and the reference
(the plant model's :class:`dcpue.optimizer.models.ITResponse`, learned from the commissioning
sweep). A measure that raises IT power then shows as more energy, never as a saving. Without a
plant model the regressor is metered IT and the result says so (``it_ref_inlet_c`` None).

**Boundary and option.** ``target = "facility"`` measures at the utility meter when the site has
grid meters (the balance's facility formula: grid import - export + PV + battery - outside
loads): IPMVP **Option C**, whole facility. Without grid meters, or for ``target = "cooling"``,
it is the sum of sub-meters, labelled as such: IPMVP **Option B**, retrofit isolation.

**Acceptance (Guideline 14).** Before a saving is reported the baseline must pass, with the
thresholds of ``[optimizer.mv]``: CV(RMSE) and |NMBE| (eq. 4-3, 4-4, p = number of
coefficients) at most ``max_cvrmse_pct`` / ``max_nmbe_pct``, a baseline of at least
``min_baseline_days`` with at least ``min_baseline_coverage`` of its buckets usable, post-period
conditions inside the baseline's range (at most 10 % of its rows outside), and the fractional
savings uncertainty below ``max_fsu_pct`` at ``confidence``. The uncertainty is the larger of
Annex B's (:func:`dcpue.optimizer.stats.savings_uncertainty_kwh`, which sees only the fit's
random scatter) and the baseline's out-of-sample error on blocks of the post-period's length
(:func:`holdout_uncertainty_kwh`). Status: ``reported`` (all pass), ``not_significant`` (the
saving is not larger than its uncertainty), ``rejected`` (a gate failed). Only ``reported``
rows flow into avoided emissions (:mod:`dcpue.carbon.savings`).

Results go to the DuckDB table ``mv_savings`` (CV(RMSE) and NMBE stored as fractions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from dcpue.carbon.savings import ensure_mv_table
from dcpue.config.optimizer import MvSettings
from dcpue.core.store import Store
from dcpue.optimizer.frames import TrainingFrame
from dcpue.optimizer.models import InletResponse
from dcpue.optimizer.stats import (
    cvrmse_pct,
    lag1_autocorrelation,
    nmbe_pct,
    savings_uncertainty_kwh,
    t_critical,
)
from sklearn.linear_model import LinearRegression

#: Share of post-period rows allowed outside the baseline's range of conditions.
MAX_OUTSIDE_SHARE = 0.10


@dataclass(frozen=True, slots=True)
class MvResult:
    """Avoided energy over ``[start_ms, end_ms)`` with its Guideline 14 statistics.

    Energies in kWh; ``uncertainty_kwh`` is the half-width at ``confidence``; ``cvrmse_pct``
    and ``nmbe_pct`` (%) describe the baseline fit; ``fsu_pct`` = uncertainty / |saving| (%);
    ``n`` baseline and ``m`` post-period rows; ``rho`` the lag-1 autocorrelation of baseline
    residuals. ``status``, ``gates`` (name -> passed) and ``reason`` are the acceptance
    verdict; ``basis`` says where the energy was measured, ``ipmvp_option`` is ``B`` or ``C``;
    ``it_ref_inlet_c`` the reference inlet of the IT regressor (None: metered IT).
    ``uncertainty_kwh`` is the larger of ``formula_uncertainty_kwh`` (Guideline 14 Annex B)
    and ``holdout_uncertainty_kwh`` (blocked cross-validation, :func:`holdout_uncertainty_kwh`).
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
    fsu_pct: float = float("nan")
    status: str = "reported"
    reason: str = ""
    basis: str = ""
    ipmvp_option: str = "C"
    it_ref_inlet_c: float | None = None
    gates: dict[str, bool] = field(default_factory=dict)
    formula_uncertainty_kwh: float = float("nan")
    holdout_uncertainty_kwh: float = float("nan")

    @property
    def significant(self) -> bool:
        return self.status == "reported"


#: Dry-bulb hinges of the baseline (degC): air-side economizer changeovers lie in this range
#: (ASHRAE 90.4 high limits 18-24 degC, integrated economizers from about 10 degC).
DRY_BULB_HINGES_C = (10.0, 16.0, 22.0, 28.0)
#: Wet-bulb hinges (degC): water-side economizer and condenser regimes of a chilled-water plant.
WET_BULB_HINGES_C = (12.0, 18.0)
#: The conditions a post-period must share with the baseline (IT at the reference inlet, then
#: these frame columns); dew point carries the coil's latent load, which neither dry nor wet
#: bulb alone does (a monsoon July after a dry June).
RANGE_COLUMNS = ("dry_bulb_c", "wet_bulb_c", "dew_point_c")


def baseline_design(data: pd.DataFrame, it_kw: np.ndarray) -> np.ndarray:
    """Regressors: IT kW (``it_kw``), dry bulb, wet bulb, wet bulb squared, IT x wet bulb, and
    hinges max(t - h, 0) at the baseline-independent :data:`WET_BULB_HINGES_C` (wet bulb) and
    :data:`DRY_BULB_HINGES_C` (dry bulb: where an economizer switches over, facility power
    changes slope with outdoor temperature)."""
    db, wb = data["dry_bulb_c"].to_numpy(), data["wet_bulb_c"].to_numpy()
    return np.column_stack(
        [it_kw, db, wb, wb**2, it_kw * wb,
         *(np.maximum(wb - h, 0.0) for h in WET_BULB_HINGES_C),
         *(np.maximum(db - h, 0.0) for h in DRY_BULB_HINGES_C)]
    )


def conditions(data: pd.DataFrame, it_kw: np.ndarray) -> np.ndarray:
    """IT kW and the frame's :data:`RANGE_COLUMNS` it has, per row (the range check's space)."""
    return np.column_stack([it_kw, *(data[c].to_numpy() for c in RANGE_COLUMNS if c in data)])


def holdout_uncertainty_kwh(
    x: np.ndarray, y: np.ndarray, step_h: float, m: int, confidence: float
) -> tuple[float, int]:
    """Out-of-sample uncertainty of a baseline's prediction of an ``m``-row total (kWh) at
    ``confidence``, and the number of blocks it rests on.

    Blocked cross-validation over the baseline (the M&V 2.0 out-of-sample test; Granderson
    et al., LBNL 2015): each contiguous block of L = min(m, n / 3) rows (blocks every L / 4
    rows) is left out, the regression refitted on the rest predicts the block's total, and
    the error is scaled to m rows (x m / L: as a bias, not shrinking with length). Returns
    t x the root mean square of those errors, t at the independent blocks' (n / L) degrees
    of freedom. Unlike Guideline 14's formula it sees errors that are not random noise around
    the fit (model form, days unlike the rest), which a noise-free plant or a smooth model
    hides: CV(RMSE) 0.07 % can still miss a period total by 0.3 %.
    """
    n = len(y)
    size = max(min(m, n // 3), 1)
    errors = []
    for s in range(0, n - size + 1, max(size // 4, 1)):
        keep = np.ones(n, bool)
        keep[s:s + size] = False
        fit = LinearRegression().fit(x[keep], y[keep])
        errors.append(float(np.sum(fit.predict(x[~keep]) - y[~keep])) * step_h * m / size)
    rms = float(np.sqrt(np.mean(np.square(errors))))
    return t_critical(confidence, n / size - 1.0) * rms, len(errors)


def _basis(frame: TrainingFrame, target: str) -> tuple[str, str, str]:
    """(frame column, basis label, IPMVP option) of the measured energy."""
    if target == "cooling":
        return "cooling_kw", "sub-meter sum: cooling meters", "B"
    if "utility_kw" in frame.data:
        return "utility_kw", "utility meter: grid import - export + PV + battery - outside", "C"
    return ("facility_kw", "sub-meter sum: IT + cooling + losses + lighting (no grid meter)",
            "B")


def _reference_it(
    pre: TrainingFrame, post: TrainingFrame, response: InletResponse | None
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """IT kW at the reference inlet for both periods; metered IT without a response (the
    response cannot be learned from the periods themselves: at fixed setpoints the hottest
    inlet rises *because* IT load rises, which would read as IT following inlet)."""
    if response is None:
        return pre.data["it_kw"].to_numpy(), post.data["it_kw"].to_numpy(), None
    ref = float(np.median(pre.data["rack_inlet_max_c"]))

    def at_ref(frame: TrainingFrame) -> np.ndarray:
        inlet = frame.data["rack_inlet_max_c"].to_numpy()
        return frame.data["it_kw"].to_numpy() / np.exp(response.log_ratio(inlet, ref))

    return at_ref(pre), at_ref(post), ref


def measure_savings(
    pre: TrainingFrame,
    post: TrainingFrame,
    measure: str,
    *,
    target: str = "facility",
    settings: MvSettings | None = None,
    it_response: InletResponse | None = None,
) -> MvResult:
    """Fit the baseline on ``pre``, predict ``post``, report avoided energy (kWh) and the
    Guideline 14 verdict (see the module docstring). ``it_response``: the plant model's IT
    response to inlet temperature (None: the regressor is metered IT)."""
    cfg = settings or MvSettings()
    if len(pre) < 20 or len(post) < 1:
        raise ValueError(f"M&V needs >= 20 baseline rows and a post-period ({len(pre)}, {len(post)})")
    column, basis, option = _basis(pre, target)
    if column not in post.data:
        raise ValueError(f"the post-period frame has no {column} column (build both alike)")
    it_pre, it_post, ref_c = _reference_it(pre, post, it_response)
    x_pre, y_pre = baseline_design(pre.data, it_pre), pre.data[column].to_numpy()
    x_post = baseline_design(post.data, it_post)
    model = LinearRegression().fit(x_pre, y_pre)
    fitted = model.predict(x_pre)
    p = x_pre.shape[1] + 1
    baseline_kwh = float(np.sum(model.predict(x_post)) * post.step_h)
    actual_kwh = float(np.sum(post.data[column].to_numpy()) * post.step_h)
    savings = baseline_kwh - actual_kwh
    cv = cvrmse_pct(y_pre, fitted, p)
    nmbe = nmbe_pct(y_pre, fitted, p)
    rho = lag1_autocorrelation(y_pre - fitted)
    formula = savings_uncertainty_kwh(
        cv / 100.0, len(pre), len(post), rho, baseline_kwh, cfg.confidence, p)
    holdout, _ = holdout_uncertainty_kwh(x_pre, y_pre, pre.step_h, len(post), cfg.confidence)
    uncertainty = max(formula, holdout)
    fsu = 100.0 * uncertainty / abs(savings) if savings else float("inf")
    c_pre, c_post = conditions(pre.data, it_pre), conditions(post.data, it_post)
    lo, hi = c_pre.min(axis=0), c_pre.max(axis=0)
    outside = float(np.mean(np.any((c_post < lo) | (c_post > hi), axis=1)))
    days = len(pre) * pre.step_h / 24.0
    coverage = len(pre) / max(pre.total_rows, 1)
    gates = {
        "cvrmse": cv <= cfg.max_cvrmse_pct,
        "nmbe": abs(nmbe) <= cfg.max_nmbe_pct,
        "baseline_length": days >= cfg.min_baseline_days,
        "baseline_coverage": coverage >= cfg.min_baseline_coverage,
        "post_in_baseline_range": outside <= MAX_OUTSIDE_SHARE,
        "fsu": fsu < cfg.max_fsu_pct,
    }
    failed = {
        "cvrmse": f"CV(RMSE) {cv:.2f} % above {cfg.max_cvrmse_pct:g} %",
        "nmbe": f"|NMBE| {abs(nmbe):.3f} % above {cfg.max_nmbe_pct:g} %",
        "baseline_length": f"baseline {days:.1f} days, below {cfg.min_baseline_days:g}",
        "baseline_coverage": f"baseline coverage {100 * coverage:.1f} % below "
                             f"{100 * cfg.min_baseline_coverage:g} %",
        "post_in_baseline_range": f"{100 * outside:.1f} % of post-period rows outside the "
                                  "baseline's range of IT load and weather (dry bulb, wet "
                                  "bulb, dew point)",
        "fsu": f"fractional savings uncertainty {fsu:.0f} % not below {cfg.max_fsu_pct:g} % "
               f"at {100 * cfg.confidence:g} % confidence",
    }
    if not all(v for k, v in gates.items() if k != "fsu"):
        status = "rejected"
    elif abs(savings) <= uncertainty:
        status = "not_significant"
    elif not gates["fsu"]:
        status = "rejected"
    else:
        status = "reported"
    reasons = [failed[k] for k, ok in gates.items() if not ok]
    if status == "not_significant":
        reasons.insert(0, f"saving {savings:.0f} kWh within its uncertainty "
                          f"+-{uncertainty:.0f} kWh")
    index = post.data.index
    return MvResult(
        measure=measure, start_ms=int(index[0]), end_ms=int(index[-1]) + post.step_s * 1000,
        savings_kwh=savings, uncertainty_kwh=uncertainty, cvrmse_pct=cv, nmbe_pct=nmbe,
        baseline_kwh=baseline_kwh, actual_kwh=actual_kwh, n=len(pre), m=len(post), rho=rho,
        confidence=cfg.confidence, fsu_pct=fsu, status=status, reason="; ".join(reasons),
        basis=basis, ipmvp_option=option, it_ref_inlet_c=ref_c, gates=gates,
        formula_uncertainty_kwh=formula, holdout_uncertainty_kwh=holdout,
    )


def record_savings(store: Store, result: MvResult) -> None:
    """Append a result to ``mv_savings`` (replacing a row of the same measure and window)."""
    ensure_mv_table(store)
    store.execute(
        "DELETE FROM mv_savings WHERE measure = ? AND start_ms = ? AND end_ms = ?",
        [result.measure, result.start_ms, result.end_ms],
    )
    store.execute(
        "INSERT INTO mv_savings (measure, start_ms, end_ms, savings_kwh, uncertainty_kwh, "
        "cvrmse, nmbe, status, basis, ipmvp_option, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "?, ?)",
        [result.measure, result.start_ms, result.end_ms, result.savings_kwh,
         result.uncertainty_kwh, result.cvrmse_pct / 100.0, result.nmbe_pct / 100.0,
         result.status, result.basis, result.ipmvp_option, result.reason],
    )


def recorded_savings(store: Store) -> list[tuple]:
    """Rows of ``mv_savings`` in time order: measure, start_ms, end_ms, savings_kwh,
    uncertainty_kwh, cvrmse, nmbe, status."""
    ensure_mv_table(store)
    return [tuple(r) for r in store.execute(
        "SELECT measure, start_ms, end_ms, savings_kwh, uncertainty_kwh, cvrmse, nmbe, status "
        "FROM mv_savings ORDER BY start_ms, measure"
    ).fetchall()]
