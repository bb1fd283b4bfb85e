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
savings uncertainty below ``max_fsu_pct`` at ``confidence``.

**Uncertainty.** Four independent sources, combined in quadrature (each a half-width at
``confidence``, kWh); ``MvResult`` carries each and ``dominant_term`` names the largest,
which the reason states (with every term) when it is not ``fit``:

- ``fit``: the larger of Annex B's (:func:`dcpue.optimizer.stats.savings_uncertainty_kwh`,
  the fit's random scatter) and the baseline's out-of-sample error on blocks of the
  post-period's length (:func:`holdout_uncertainty_kwh`): errors *inside* the baseline's
  conditions.
- ``extrapolation``: the model-form error of predicting conditions *beyond* the baseline's
  range (:func:`extrapolation_uncertainty_kwh`, leave-extreme-out over the baseline, scaled
  by how far the post-period's rows lie outside).
- ``transition``: a post-period that starts right after a change of operation (a sweep, a
  new measure) opens with a transient the steady-state baseline cannot predict, for the
  measured run and for the counterfactual alike (:func:`transition_kwh`).
- ``it_reference``: the error of the IT-at-reference-inlet adjustment
  (:func:`it_reference_uncertainty_kwh`): where the post-period's inlets lie beyond those the
  IT response was learned on, the interval between flat and its steepest slope; inside them,
  the response's cross-validated error on the sweep's blocks. An error the sweep shares in all
  its blocks is not seen (docs/optimizer.md, M&V).

Status: ``reported`` (all pass), ``not_significant`` (the
saving is not larger than its uncertainty), ``rejected`` (a gate failed). Only ``reported``
rows flow into avoided emissions (:mod:`dcpue.carbon.savings`).

Results go to the DuckDB table ``mv_savings`` (CV(RMSE) and NMBE stored as fractions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

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
    ``uncertainty_kwh`` combines in quadrature the ``fit`` term (the larger of
    ``formula_uncertainty_kwh``, Guideline 14 Annex B, and ``holdout_uncertainty_kwh``, blocked
    cross-validation), ``extrapolation_uncertainty_kwh``, ``transition_kwh`` and
    ``it_reference_uncertainty_kwh``; ``dominant_term`` names the largest (module docstring).
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
    extrapolation_uncertainty_kwh: float = 0.0
    transition_kwh: float = 0.0
    it_reference_uncertainty_kwh: float = 0.0
    dominant_term: str = "fit"

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


#: Shares of the baseline's rows held out at each end of each condition by
#: :func:`extrapolation_uncertainty_kwh`: up to 40 %, so the baseline is made to extrapolate
#: as far as a post-period a season away does (a daily cycle packs rows near its extremes,
#: and a 20 % end can lie within a fifth of a standard deviation of the rest).
EXTREME_SHARES = (0.1, 0.2, 0.3, 0.4)


def outside_distance(c_pre: np.ndarray, c_post: np.ndarray) -> np.ndarray:
    """Per post-period row and condition column, how far the row lies outside the baseline's
    range: distance beyond [min, max] / the baseline's standard deviation of that column
    (0 inside the range); shape (m, columns)."""
    sd = c_pre.std(axis=0)
    sd[sd == 0] = 1.0
    beyond = np.maximum(c_post - c_pre.max(axis=0), c_pre.min(axis=0) - c_post)
    return np.maximum(beyond, 0.0) / sd


def extrapolation_uncertainty_kwh(
    x: np.ndarray, y: np.ndarray, c_pre: np.ndarray, c_post: np.ndarray, step_h: float,
    confidence: float,
) -> float:
    """Model-form uncertainty of a baseline predicting conditions beyond its range (kWh, at
    ``confidence``).

    The baseline is made to extrapolate inside its own data: for each condition column j,
    each end and each of :data:`EXTREME_SHARES`, the rows beyond that quantile are held out, the
    regression refitted on the rest predicts them, and each held-out row's error e is paired
    with its distance d beyond the rows kept (in the column's standard deviations). The
    column's error beyond its scatter (s^2, the fit's residual variance, which the ``fit``
    term already counts) is fitted in two growth forms: linear, a_j = sqrt(sum(e^2 - s^2) /
    sum(d^2)), as a step or kink grows (an economizer changeover), and quadratic, b_j =
    sqrt(sum(e^2 - s^2) / sum(d^4)), as a linear extension of a curve does (the Taylor
    remainder). A post-period row's error is max_j max(a_j D_ij, b_j D_ij^2), D_ij its
    :func:`outside_distance`, and the term is t x the sum over rows x step_h: summed, not in
    quadrature, because a model-form error keeps its sign along a run of like conditions;
    t at the number of held-out sets - 1 degrees of freedom. This is validation by data
    splitting at the extremes (Snee 1977, Technometrics 19:415; Roberts et al. 2017,
    Ecography 40:913, blocking in predictor space). It assumes the error keeps growing as it
    does inside the baseline's own range (declared: a regime the baseline never approaches,
    e.g. a coil reaching its capacity only in the post-period, is not seen). 0 when no
    post-period row lies outside.
    """
    dist = outside_distance(c_pre, c_post)
    if not np.any(dist > 0):
        return 0.0
    s2 = float(np.sum((y - LinearRegression().fit(x, y).predict(x)) ** 2)) / max(
        len(y) - x.shape[1] - 1, 1)
    sd = c_pre.std(axis=0)
    rate = np.zeros((2, c_pre.shape[1]))  # per standard deviation, per squared one
    tests = 0
    for j in np.flatnonzero(sd > 0):
        excess, d2, d4 = 0.0, 0.0, 0.0
        for v, share in product((c_pre[:, j], -c_pre[:, j]), EXTREME_SHARES):
            out = v > np.quantile(v, 1.0 - share)
            if out.sum() < 5 or (~out).sum() < x.shape[1] + 5:
                continue
            e = LinearRegression().fit(x[~out], y[~out]).predict(x[out]) - y[out]
            d = (v[out] - v[~out].max()) / sd[j]
            excess += float(np.sum(e**2 - s2))
            d2, d4 = d2 + float(np.sum(d**2)), d4 + float(np.sum(d**4))
            tests += 1
        if d2 > 0 and excess > 0:
            rate[:, j] = np.sqrt(excess / d2), np.sqrt(excess / d4)
    if tests == 0:
        return 0.0
    per_row = np.maximum(dist * rate[0], dist**2 * rate[1]).max(axis=1)
    return t_critical(confidence, tests - 1) * float(np.sum(per_row)) * step_h


def transition_kwh(saving_kw: np.ndarray, step_h: float) -> tuple[float, int]:
    """The transient at the post-period's start (kWh) and the number of rows it spans.

    ``saving_kw`` is the baseline's prediction minus the measured power per post-period row.
    A post-period that starts right after a change of operation (a commissioning sweep,
    another measure) opens with the plant settling from its previous state: the leading
    rows whose saving departs from the period's median by more than 3 robust standard
    deviations (1.4826 x the median absolute deviation; at most a quarter of the rows).
    The steady-state baseline predicts no transient for the counterfactual either, which
    settles from the same state, so the truth can differ from the estimate by a transient of
    about that size in either direction: the term is sum |saving - median| over those rows x
    ``step_h``. IPMVP and Guideline 14 leave such transition periods out of the reporting
    period; here it stays in (the post-period is the caller's) and is counted instead.
    """
    dev = np.abs(saving_kw - np.median(saving_kw))
    # a floor far below any meter's resolution: identical savings open no transient
    limit = 3.0 * 1.4826 * float(np.median(dev)) + 1e-9 * float(np.max(np.abs(saving_kw)))
    rows = 0
    while rows < len(dev) // 4 and dev[rows] > limit:
        rows += 1
    return float(np.sum(dev[:rows])) * step_h, rows


def it_reference_uncertainty_kwh(
    it_ref_kw: np.ndarray, inlet_c: np.ndarray, dp_dit: np.ndarray, step_h: float,
    response: InletResponse, ref_c: float | None = None, confidence: float = 0.90,
) -> float:
    """Bound on the IT-at-reference-inlet adjustment's error over the post-period (kWh).

    Beyond the inlets the IT response was learned on [``lo_c``, ``hi_c``] it is held flat;
    there the true response lies anywhere between flat and the steepest slope the data
    showed (``pct_per_k_at_max``, %/K): that whole interval, |dP/dIT_i| x IT_ref_i x slope
    x (K beyond the range)_i. Inside the range (with ``ref_c``, the reference inlet), the
    response's cross-validated error (``cv_pct_per_k``, %/K between two inlets, over
    ``cv_blocks`` blocks of the sweep: :func:`dcpue.optimizer.models.response_cv_pct_per_k`)
    at t (``confidence``, blocks - 1 degrees of freedom): |dP/dIT_i| x IT_ref_i x t x cv x
    |clip(inlet_i) - clip(ref)|. Both are summed over rows (one sign along a run) x
    ``step_h``. A response without those attributes (a hand-made one) gives 0 for the part
    it lacks: declared, not estimated.
    """
    lo, hi = getattr(response, "lo_c", None), getattr(response, "hi_c", None)
    slope = getattr(response, "pct_per_k_at_max", None)
    if lo is None or hi is None or slope is None:
        return 0.0
    weight = np.abs(dp_dit) * it_ref_kw * step_h
    beyond = np.maximum(np.maximum(lo - inlet_c, inlet_c - hi), 0.0)
    total = float(np.sum(weight * beyond)) * slope / 100.0
    cv, blocks = getattr(response, "cv_pct_per_k", 0.0), getattr(response, "cv_blocks", 0)
    if ref_c is not None and cv > 0 and blocks >= 2:
        inside = np.abs(np.clip(inlet_c, lo, hi) - float(np.clip(ref_c, lo, hi)))
        total += t_critical(confidence, blocks - 1) * cv / 100.0 * float(np.sum(weight * inside))
    return total


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
    predicted = model.predict(x_post)
    baseline_kwh = float(np.sum(predicted) * post.step_h)
    actual_kwh = float(np.sum(post.data[column].to_numpy()) * post.step_h)
    savings = baseline_kwh - actual_kwh
    cv = cvrmse_pct(y_pre, fitted, p)
    nmbe = nmbe_pct(y_pre, fitted, p)
    rho = lag1_autocorrelation(y_pre - fitted)
    formula = savings_uncertainty_kwh(
        cv / 100.0, len(pre), len(post), rho, baseline_kwh, cfg.confidence, p)
    holdout, _ = holdout_uncertainty_kwh(x_pre, y_pre, pre.step_h, len(post), cfg.confidence)
    c_pre, c_post = conditions(pre.data, it_pre), conditions(post.data, it_post)
    transition, settling = transition_kwh(predicted - post.data[column].to_numpy(), post.step_h)
    terms = {
        "fit": max(formula, holdout),
        # the transient's rows are the transition term's (their IT at the reference inlet is
        # off by up to 14 % while the hour mixes two operations), not an extrapolation
        "extrapolation": extrapolation_uncertainty_kwh(
            x_pre, y_pre, c_pre, c_post[settling:], post.step_h, cfg.confidence),
        "transition": transition,
        "it_reference": 0.0 if it_response is None else it_reference_uncertainty_kwh(
            it_post, post.data["rack_inlet_max_c"].to_numpy(),
            model.predict(baseline_design(post.data, it_post + 1.0)) - predicted,
            post.step_h, it_response, ref_c, cfg.confidence),
    }
    uncertainty = float(np.sqrt(sum(v * v for v in terms.values())))
    dominant = max(terms, key=lambda k: terms[k])
    fsu = 100.0 * uncertainty / abs(savings) if savings else float("inf")
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
    if dominant != "fit":  # the usual case needs no word; an unusual one says why
        reasons.append(f"uncertainty +-{uncertainty:.0f} kWh dominated by {dominant} "
                       f"({', '.join(f'{k} {v:.0f}' for k, v in terms.items())} kWh)")
    index = post.data.index
    return MvResult(
        measure=measure, start_ms=int(index[0]), end_ms=int(index[-1]) + post.step_s * 1000,
        savings_kwh=savings, uncertainty_kwh=uncertainty, cvrmse_pct=cv, nmbe_pct=nmbe,
        baseline_kwh=baseline_kwh, actual_kwh=actual_kwh, n=len(pre), m=len(post), rho=rho,
        confidence=cfg.confidence, fsu_pct=fsu, status=status, reason="; ".join(reasons),
        basis=basis, ipmvp_option=option, it_ref_inlet_c=ref_c, gates=gates,
        formula_uncertainty_kwh=formula, holdout_uncertainty_kwh=holdout,
        extrapolation_uncertainty_kwh=terms["extrapolation"], transition_kwh=transition,
        it_reference_uncertainty_kwh=terms["it_reference"], dominant_term=dominant,
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
