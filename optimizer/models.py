"""Regression models of the cooling plant: power and maximum rack inlet from IT load, weather
and setpoints, trained with time-ordered cross-validation.

Two kinds share one feature design (:func:`design_matrix`):

* ``ridge``: a linear baseline, :class:`sklearn.linear_model.Ridge` on standardised physical
  features (fan and pump affinity-law cubes, condenser lift, airflow per IT kW, ...).
* ``gbr``: the mean of three :class:`sklearn.ensemble.GradientBoostingRegressor` fits
  (:class:`Bagged`, different subsampling seeds) whose initial estimate is that linear model
  (``init=``), so the trees only learn what the physics features leave over.

The power target is normalised by IT load (``(facility - IT) / IT = PUE - 1`` for
``target = "facility"``, ``cooling / IT`` for ``"cooling"``); the inlet target is the rise of the
maximum rack inlet over the supply-air setpoint. Both make the response nearly scale-free.

Accuracy is reported from time-ordered cross-validation (:class:`TimeSeriesSplit`, no shuffling)
and on a held-out tail of the frame: MAE on PUE (1), CV(RMSE) and NMBE of the power target (%,
Guideline 14 definitions), MAE and RMSE of the maximum inlet (degC).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import joblib
import numpy as np
import pandas as pd
from dcpue.optimizer import trees
from dcpue.optimizer.frames import (
    FEATURE_COLUMNS,
    TrainingFrame,
    response_lag,
    settled_rows,
)
from dcpue.optimizer.stats import cvrmse_pct, mae, nmbe_pct
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

ModelKind = Literal["gbr", "ridge"]
Target = Literal["facility", "cooling"]
MODEL_FORMAT = 4


class ModelError(ValueError):
    """A model file is missing, unreadable or not a dcpue plant model."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """Predicted plant response per row: target power in kW (facility or cooling, see the
    model's ``target``), maximum rack inlet temperature in degC and, from
    :meth:`PlantModel.predict_work`, the IT power in kW at that inlet (None otherwise)."""

    power_kw: np.ndarray
    rack_inlet_c: np.ndarray
    it_kw: np.ndarray | None = None


class InletResponse(Protocol):
    """How IT power responds to the hottest rack inlet (server fans, leakage):
    ``log_ratio(inlet, ref)`` = ln(IT power at ``inlet`` / IT power at ``ref``), degC in."""

    def log_ratio(self, inlet_c: np.ndarray, ref_c: float) -> np.ndarray: ...


class PlantPredictor(Protocol):
    """What the proposal search needs from a model: vectorised predictions over feature columns
    (``FEATURE_COLUMNS``, arrays of equal length), an error scale and an optional trust region.

    A predictor may also carry ``it_response`` (an :class:`InletResponse`, or None when IT
    power does not depend on inlet temperature): the search then predicts each candidate's IT
    power from it and minimises total facility power, IT included."""

    @property
    def target(self) -> str: ...

    @property
    def power_rmse_kw(self) -> float: ...

    @property
    def inlet_rmse_c(self) -> float: ...

    @property
    def trust(self) -> TrustRegion | None: ...

    def predict(self, x: Mapping[str, np.ndarray]) -> Prediction: ...


@dataclass(frozen=True, slots=True)
class TrustRegion:
    """Per-feature [min, max] seen in training: predictions outside it are extrapolations."""

    lo: dict[str, float]
    hi: dict[str, float]

    @classmethod
    def of(cls, data: pd.DataFrame, columns: tuple[str, ...]) -> TrustRegion:
        return cls(
            {c: float(data[c].min()) for c in columns}, {c: float(data[c].max()) for c in columns}
        )

    def widened(self, tolerance: float) -> TrustRegion:
        """The region grown by ``tolerance`` times each feature's trained span on both sides."""
        pad = {c: tolerance * (self.hi[c] - self.lo[c]) for c in self.lo}
        return TrustRegion(
            {c: v - pad[c] for c, v in self.lo.items()}, {c: v + pad[c] for c, v in self.hi.items()}
        )

    def outside(self, x: Mapping[str, float], columns: tuple[str, ...]) -> list[str]:
        """Descriptions of the ``columns`` of one row that leave the region."""
        return [
            f"{c}={x[c]:.4g} outside trained range [{self.lo[c]:.4g}, {self.hi[c]:.4g}]"
            for c in columns if not self.lo[c] <= x[c] <= self.hi[c]
        ]


@dataclass(frozen=True, slots=True)
class ITResponse:
    """IT power as a function of the hottest rack inlet, learned from the data:
    ``ln(IT) = ln(work) + h(inlet)``, ``h(x) = b0 x + sum_k b_k max(x - k, 0)`` (degC), knots
    ``k`` every kelvin from the coolest trained inlet to the 90th percentile.

    Fitted (:meth:`fit`) on first differences of consecutive frame rows, ``d ln(IT) ~ d h``:
    the IT work behind the load changes slowly between two steps while setpoints, and with them
    rack inlets, change, so the difference separates the inlet effect from the workload without
    a work meter. ``significant`` is False when the data show no effect (the change of ``h``
    over the trained inlet range is within three standard errors or below 0.2 %): then
    ``log_ratio`` is 0 and IT power is taken as independent of inlet temperature.
    """

    knots: tuple[float, ...]
    coef: tuple[float, ...]
    lo_c: float
    hi_c: float
    significant: bool
    pct_per_k_at_max: float = 0.0

    def h(self, inlet_c: np.ndarray) -> np.ndarray:
        x = np.clip(np.asarray(inlet_c, float), self.lo_c, self.hi_c)
        return _inlet_basis(x, self.knots) @ np.asarray(self.coef)

    def log_ratio(self, inlet_c: np.ndarray, ref_c: float) -> np.ndarray:
        if not self.significant:
            return np.zeros(np.shape(inlet_c))
        return self.h(inlet_c) - self.h(np.array([ref_c]))[0]

    @classmethod
    def fit(cls, data: pd.DataFrame, step_s: int) -> ITResponse:
        """Fit on the consecutive rows (``step_s`` apart) of a frame's data."""
        inlet = data["rack_inlet_max_c"].to_numpy()
        lo, hi = float(np.min(inlet)), float(np.max(inlet))
        # a knot every kelvin up to the 90th percentile: a threshold (servers' fans ramping up)
        # is found wherever it lies in the usual range
        knots = tuple(float(k) for k in np.arange(np.floor(lo) + 1.0, np.quantile(inlet, 0.9)))
        null = cls(knots, (0.0,) * (len(knots) + 1), lo, hi, False)
        ts = data.index.to_numpy()
        pair = np.flatnonzero(np.diff(ts) == step_s * 1000)
        if len(pair) < 20 or hi - lo < 1.0:
            return null
        basis = _inlet_basis(inlet, knots)
        dx = basis[pair + 1] - basis[pair]
        dy = np.diff(np.log(data["it_kw"].to_numpy()))[pair]
        dy = dy - np.mean(dy)
        gram = dx.T @ dx + 1e-6 * len(pair) * np.eye(dx.shape[1])
        beta = np.linalg.solve(gram, dx.T @ dy)
        resid = dy - dx @ beta
        sigma2 = float(resid @ resid) / max(len(pair) - dx.shape[1], 1)
        grid = np.linspace(lo, hi, 50)
        g = _inlet_basis(grid, knots)
        span = g[-1] - g[0]
        effect = float(span @ beta)
        se = float(np.sqrt(sigma2 * span @ np.linalg.solve(gram, span)))
        if abs(effect) < max(3.0 * se, 0.002):
            return null
        slope = np.diff(g @ beta) / np.diff(grid)
        return cls(knots, tuple(float(b) for b in beta), lo, hi, True,
                   float(100.0 * np.max(np.abs(slope))))


def _inlet_basis(x: np.ndarray, knots: tuple[float, ...]) -> np.ndarray:
    x = np.asarray(x, float)
    return np.column_stack([x, *(np.maximum(x - k, 0.0) for k in knots)])


#: Candidate values of the plant parameters the physical features use (K), searched by
#: :func:`fit_physics`; the search starts at each grid's middle.
PHYSICS_GRID: dict[str, tuple[float, ...]] = {
    "coil_approach_k": tuple(float(k) for k in range(0, 9)),
    "return_rise_k": tuple(float(k) for k in range(3, 16, 2)),
    "tower_approach_k": tuple(float(k) for k in range(1, 8)),
    "economizer_approach_k": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0),
}


@dataclass(frozen=True, slots=True)
class Scales:
    """Site scales and plant parameters taken from the training data, so the features are
    dimensionless and carry no constant of one plant: ``it_kw`` the largest IT load (kW),
    ``airflow`` the largest running units x fan speed fraction per IT kW (a proxy of airflow
    per kW of heat, in units per kW), ``pump_hz`` the highest pump frequency (Hz, the pump
    affinity law's reference speed); ``physics`` the plant parameters of
    :data:`PHYSICS_GRID` (K) as :func:`fit_physics` found them (the grid middles until
    then); ``instances`` the per-instance lever columns (``<column>@<meter id>``, see
    :func:`dcpue.optimizer.frames.instance_columns`) the design adds."""

    it_kw: float
    airflow: float
    pump_hz: float = 50.0
    physics: tuple[tuple[str, float], ...] = tuple(
        (k, v[len(v) // 2]) for k, v in PHYSICS_GRID.items())
    instances: tuple[str, ...] = ()

    @classmethod
    def of(cls, x: Mapping[str, np.ndarray]) -> Scales:
        it = np.asarray(x["it_kw"], float)
        airflow = np.asarray(x["running_units"], float) * np.asarray(x["crah_fan_speed_pct"]) / 100
        pump = float(np.max(x["pump_frequency_hz"]))
        return cls(float(it.max()), float((airflow / it).max()), pump if pump > 0 else 1.0,
                   instances=tuple(c for c in x if "@" in c))

    def param(self, name: str) -> float:
        return dict(self.physics)[name]


def fit_physics(x: Mapping[str, np.ndarray], power_y: np.ndarray, rise_y: np.ndarray,
                scales: Scales, passes: int = 2) -> Scales:
    """``scales`` with the plant parameters (:data:`PHYSICS_GRID`) chosen from the data:
    coordinate search, each parameter over its grid in turn, for the lowest validation error
    of the linear model (:func:`_ridge`: fitted on the first 75 % of the rows, scored on the
    rest, both targets' mean squared errors over their variances summed)."""
    n = len(power_y)
    cut = int(0.75 * n)
    if cut < 20 or n - cut < 10:
        return scales
    targets = [(np.asarray(y, float), max(float(np.var(y[cut:])), 1e-12)) for y in (power_y, rise_y)]

    def error(candidate: Scales) -> float:
        design = design_matrix(x, candidate)
        return sum(float(np.mean((_ridge().fit(design[:cut], y[:cut]).predict(design[cut:])
                                  - y[cut:]) ** 2)) / var for y, var in targets)

    best, best_err = scales, error(scales)
    for _ in range(passes):
        for name, grid in PHYSICS_GRID.items():
            for value in grid:
                candidate = replace(best, physics=tuple(
                    (k, value if k == name else v) for k, v in best.physics))
                err = error(candidate)
                if err < best_err - 1e-12:
                    best, best_err = candidate, err
    return best


def design_matrix(x: Mapping[str, np.ndarray], scales: Scales) -> np.ndarray:
    """Feature columns -> model inputs: the raw features plus physically motivated terms.

    Fan and pump power follow the affinity laws (P ~ speed^3, times the number of running
    units for fans); chiller power per kW of heat grows with the lift between condenser water
    (tracking outdoor wet bulb) and chilled water, and falls to the economizer's share when
    chilled-water return is warm enough; chilled-water flow (pump power ~ flow^3) goes with
    heat over the coil's water temperature rise; hot-aisle recirculation at the racks grows as
    airflow per IT kW falls. Loads per IT kW are divided by ``it_kw``, pump speed by the
    trained highest. The plant parameters (coil approach, return-air rise at the most airflow
    per kW seen, cooling-tower and economizer approaches) are the ones :func:`fit_physics`
    learned from the site's data; hinges of supply air over chilled water every kelvin from 0
    to 8 K and of airflow per kW leave their shape to the fit. Generic shapes remain (coil
    water leaving a third of the way to return air, tower range 5.5 K at full load and
    condenser flow, a 3 K refrigerant lift allowance, 8 K minimum lift): typical plant values,
    not fitted. Hinges of outdoor dry bulb every 2 K from 10 to 32 degC let the fit place an
    air economizer's changeover (a dry-bulb limit) where the data show it.
    """
    it = np.asarray(x["it_kw"], float)
    units = np.asarray(x["running_units"], float)
    fan = np.asarray(x["crah_fan_speed_pct"], float) / 100.0
    pump = np.maximum(np.asarray(x["pump_frequency_hz"], float) / scales.pump_hz, 1e-3)
    wb, db = np.asarray(x["wet_bulb_c"], float), np.asarray(x["dry_bulb_c"], float)
    chw, sa = np.asarray(x["chilled_water_c"], float), np.asarray(x["supply_air_c"], float)
    coil, rise_k = scales.param("coil_approach_k"), scales.param("return_rise_k")
    tower_k, econ_k = scales.param("tower_approach_k"), scales.param("economizer_approach_k")
    load = it / scales.it_kw
    air = np.maximum(units * fan / it / scales.airflow, 1e-3)  # 1 = most airflow per kW seen
    return_air = np.maximum(sa, chw + coil) + rise_k / air
    rise = np.maximum((return_air - chw) / 3.0, 0.5)
    flow = load * 6.0 / rise
    tower = wb + tower_k * np.sqrt(np.maximum(load, 0.2) / pump)
    econ = np.clip((chw + rise - tower - econ_k) / rise, 0.0, 1.0)
    lift = np.maximum(tower + 5.5 * load / pump + 3.0 - chw, 8.0)
    mech_lift = (1.0 - econ) * lift
    carnot = lift / (chw + 273.15 - econ_k)
    raw = [np.asarray(x[c], float) for c in FEATURE_COLUMNS]
    extra = [
        load,
        1.0 / load,
        rise,
        flow,
        np.maximum(flow, 0.3) ** 3 / load,
        econ,
        mech_lift,
        mech_lift / pump,
        (1.0 - econ) * carnot * 100.0,
        carnot / load * 100.0,
        units * fan**3 / load,
        units / load,
        pump**3 / load,
        1.0 / pump,
        load / pump,
        lift,
        wb - chw,
        np.maximum(chw - wb, 0.0),
        db - sa,
        sa - chw,
        air,
        1.0 / air,
        # hinges: supply air held up by the coil, and recirculation once airflow falls short
        *(np.maximum(chw + k - sa, 0.0) for k in range(9)),
        np.maximum(chw + coil - sa, 0.0),
        *(np.maximum(k - air, 0.0) for k in (0.35, 0.55, 0.75, 0.9)),
        *(np.maximum(db - k, 0.0) for k in range(10, 34, 2)),
    ]
    # several instances of a lever (one supply-air setpoint per air handler): each instance,
    # and how far the warmest and coolest stand from the type's mean (the hottest rack inlet
    # follows the warmest supply)
    per_type: dict[str, list[np.ndarray]] = {}
    for c in scales.instances:
        per_type.setdefault(c.split("@", 1)[0], []).append(np.asarray(x[c], float))
    spread = [f(np.column_stack(v), axis=1) - np.asarray(x[t], float)
              for t, v in per_type.items() for f in (np.max, np.min)]
    return np.column_stack(raw + extra + [np.asarray(x[c], float) for c in scales.instances]
                           + spread)


def _ridge() -> Pipeline:
    return make_pipeline(StandardScaler(), Ridge(alpha=1e-2))


class Bagged:
    """The mean prediction of ``n`` gradient-boosting fits that differ only in their
    subsampling seed (``100 x seed + i``): one fit's choice between near-equal setpoints
    follows its seed (EnergyPlus hall, docs/energyplus.md), the mean's less so."""

    def __init__(self, seed: int, n: int = 3) -> None:
        self.seed, self.n = seed, n
        self.fits: list[GradientBoostingRegressor] = []

    def fit(self, x: np.ndarray, y: np.ndarray) -> Bagged:
        self.fits = [GradientBoostingRegressor(
            init=_ridge(), n_estimators=100, max_depth=3, learning_rate=0.15, subsample=0.8,
            random_state=100 * self.seed + i,
        ).fit(x, y) for i in range(self.n)]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.mean([trees.predict(f, x) for f in self.fits], axis=0)


def _estimator(kind: ModelKind, seed: int) -> Pipeline | Bagged:
    if kind == "ridge":
        return _ridge()
    return Bagged(seed)


def _work(data: pd.DataFrame) -> np.ndarray:
    """The IT work column (``work_kw``, IT power at the model's reference inlet), or IT."""
    return data["work_kw" if "work_kw" in data else "it_kw"].to_numpy()


def _targets(data: pd.DataFrame, target: Target) -> tuple[np.ndarray, np.ndarray]:
    it = data["it_kw"].to_numpy()
    power = data["facility_kw"].to_numpy() - it if target == "facility" else data[
        "cooling_kw"
    ].to_numpy()
    rise = data["rack_inlet_max_c"].to_numpy() - data["supply_air_c"].to_numpy()
    return power / _work(data), rise


def feature_columns(data: pd.DataFrame) -> tuple[str, ...]:
    """The model's input columns of a frame: ``FEATURE_COLUMNS`` and any per-instance lever
    columns (``<column>@<meter id>``)."""
    return FEATURE_COLUMNS + tuple(c for c in data.columns if "@" in c)


def _columns(data: pd.DataFrame) -> dict[str, np.ndarray]:
    """Model inputs: the feature columns with IT work in place of IT power (see
    :class:`PlantModel`)."""
    return {c: data[c].to_numpy() for c in feature_columns(data)} | {"it_kw": _work(data)}


def with_work(data: pd.DataFrame, response: ITResponse | None, ref_c: float | None) -> (
    pd.DataFrame
):
    """``data`` with a ``work_kw`` column: metered IT divided by the IT response between the
    row's measured hottest inlet and ``ref_c`` (metered IT where there is no response)."""
    it = data["it_kw"].to_numpy()
    if response is None or ref_c is None:
        return data.assign(work_kw=it)
    inlet = data["rack_inlet_max_c"].to_numpy()
    return data.assign(work_kw=it * np.exp(-response.log_ratio(inlet, ref_c)))


@dataclass
class PlantModel:
    """A fitted power model and maximum-inlet model with their provenance.

    ``metrics`` holds ``cv`` (out-of-fold, time-ordered) and ``holdout`` dictionaries with
    ``pue_mae`` (1), ``power_cvrmse_pct`` and ``power_nmbe_pct`` (%), ``power_rmse_kw`` (kW),
    ``inlet_mae_c`` and ``inlet_rmse_c`` (degC) and ``rows``. ``trust`` is the training range.
    ``settling_rows``: the frame rows the rack inlet took to follow a lever change in the
    training data (:func:`dcpue.optimizer.frames.response_lag`); the models were fitted and
    scored on the settled rows only (:func:`dcpue.optimizer.frames.settled_rows`), ``rows``
    counts those.

    Load input: where IT power responds to inlet temperature (``it_response``), metered IT is
    not an input the setpoints leave alone (a warmer hall draws more IT power), so the models
    take the **IT work** instead: IT power at the reference inlet ``it_reference_c`` (the
    training's 10th percentile, near normal operation; the exploration's hot corners are not), ``work = IT x exp(-h(inlet) + h(ref))`` (:meth:`work_kw`). Both targets
    are then functions of work, weather and setpoints, and IT power is an output
    (:meth:`predict_work`); the trust region's ``it_kw`` range is that of work. Without a
    response work is metered IT.
    """

    kind: ModelKind
    target: Target
    features: tuple[str, ...]
    power_model: Any
    inlet_model: Any
    trust: TrustRegion
    scales: Scales
    metrics: dict[str, dict[str, float]]
    train_start_ms: int
    train_end_ms: int
    rows: int
    dropped_rows: int
    step_s: int
    it_response: ITResponse | None = None
    it_reference_c: float | None = None
    settling_rows: int = 0
    format: int = MODEL_FORMAT
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def error_metrics(self) -> dict[str, float]:
        """Scores of the situation closest to use (a model fitted on the past, scoring the
        later tail): ``holdout`` if there is one, else ``cv``."""
        return self.metrics.get("holdout", self.metrics["cv"])

    @property
    def power_rmse_kw(self) -> float:
        return float(self.error_metrics["power_rmse_kw"])

    @property
    def inlet_rmse_c(self) -> float:
        return float(self.error_metrics["inlet_rmse_c"])

    def work_kw(self, it_kw: np.ndarray, inlet_c: np.ndarray) -> np.ndarray:
        """IT work (kW at ``it_reference_c``) of IT power ``it_kw`` drawn at inlet ``inlet_c``."""
        if self.it_response is None or self.it_reference_c is None:
            return np.asarray(it_kw, float)
        return np.asarray(it_kw, float) * np.exp(
            -self.it_response.log_ratio(np.asarray(inlet_c, float), self.it_reference_c))

    def _broadcast(self, x: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = max(np.size(v) for v in x.values())
        return {c: np.broadcast_to(np.asarray(x[c], float), (n,)) for c in self.features}

    def predict_work(self, x: Mapping[str, np.ndarray]) -> Prediction:
        """Predict with ``x["it_kw"]`` the IT **work** (see the class docstring): the
        prediction's ``it_kw`` is the IT power at the predicted inlet, its ``power_kw`` the
        target power (facility: overhead + that IT power)."""
        cols = self._broadcast(x)
        design = design_matrix(cols, self.scales)
        work = cols["it_kw"]
        inlet = self.inlet_model.predict(design) + cols["supply_air_c"]
        it = work if self.it_response is None or self.it_reference_c is None else work * np.exp(
            self.it_response.log_ratio(inlet, self.it_reference_c))
        power = self.power_model.predict(design) * work
        if self.target == "facility":
            power = power + it
        return Prediction(power, inlet, it)

    def predict(self, x: Mapping[str, np.ndarray]) -> Prediction:
        """Predict for feature columns (arrays, or scalars broadcast to a common length) with
        ``it_kw`` the metered IT power: it is turned into work at the measured hottest inlet
        when ``x`` has ``rack_inlet_max_c``, else at the predicted one (fixed point, 3 passes)."""
        cols = self._broadcast(x)
        it = cols["it_kw"]
        if self.it_response is None or self.it_reference_c is None:
            return self.predict_work(cols)
        if "rack_inlet_max_c" in x:
            work = self.work_kw(it, np.broadcast_to(np.asarray(x["rack_inlet_max_c"]), it.shape))
        else:
            work = it
            for _ in range(3):
                work = self.work_kw(it, self.predict_work(cols | {"it_kw": work}).rack_inlet_c)
        pred = self.predict_work(cols | {"it_kw": work})
        power = pred.power_kw if self.target == "cooling" else pred.power_kw - pred.it_kw + it
        return Prediction(power, pred.rack_inlet_c)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: kind, target, training window, rows and metrics."""
        return {
            "kind": self.kind, "target": self.target, "features": list(self.features),
            "train_start_ms": self.train_start_ms, "train_end_ms": self.train_end_ms,
            "rows": self.rows, "dropped_rows": self.dropped_rows, "step_s": self.step_s,
            "metrics": self.metrics,
            "it_response": None if self.it_response is None else {
                "max_pct_per_k": round(getattr(self.it_response, "pct_per_k_at_max", np.nan), 3),
                "inlet_range_c": [getattr(self.it_response, "lo_c", np.nan),
                                  getattr(self.it_response, "hi_c", np.nan)],
            },
            "it_reference_c": self.it_reference_c,
            "settling_rows": self.settling_rows,
            "scales": {"it_kw": self.scales.it_kw, "pump_hz": self.scales.pump_hz,
                       "physics": dict(self.scales.physics)},
            "trust_region": {c: [self.trust.lo[c], self.trust.hi[c]] for c in self.features},
        }


def _scores(
    data: pd.DataFrame, target: Target, power_hat: np.ndarray, rise_hat: np.ndarray
) -> dict[str, float]:
    """Accuracy of per-IT-work-kW power and inlet-rise predictions on the rows of ``data``."""
    it, work = data["it_kw"].to_numpy(), _work(data)
    power_y, rise_y = _targets(data, target)
    actual_kw, predicted_kw = power_y * work, power_hat * work
    # PUE from the prediction: the modelled part replaced, the rest as metered.
    pue = data["pue"].to_numpy()
    pue_hat = pue + (predicted_kw - actual_kw) / it
    return {
        "pue_mae": mae(pue, pue_hat),
        "power_cvrmse_pct": cvrmse_pct(actual_kw, predicted_kw),
        "power_nmbe_pct": nmbe_pct(actual_kw, predicted_kw),
        "power_rmse_kw": float(np.sqrt(np.mean((actual_kw - predicted_kw) ** 2))),
        "inlet_mae_c": mae(rise_y, rise_hat),
        "inlet_rmse_c": float(np.sqrt(np.mean((rise_y - rise_hat) ** 2))),
        "rows": float(len(data)),
    }


@dataclass(frozen=True, slots=True)
class _Fitted:
    power: Any
    inlet: Any
    scales: Scales

    def targets(self, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        design = design_matrix(_columns(data), self.scales)
        return self.power.predict(design), self.inlet.predict(design)


def _fit(data: pd.DataFrame, kind: ModelKind, target: Target, seed: int,
         physics: Scales | None = None) -> _Fitted:
    """Fit both models; the plant parameters come from ``physics`` (a :func:`fit_physics`
    result) when given, else from the grid middles."""
    columns = _columns(data)
    scales = Scales.of(columns)
    if physics is not None:
        scales = replace(scales, physics=physics.physics)
    design = design_matrix(columns, scales)
    power_y, rise_y = _targets(data, target)
    return _Fitted(
        _estimator(kind, seed).fit(design, power_y), _estimator(kind, seed).fit(design, rise_y),
        scales,
    )


def cross_validate(
    data: pd.DataFrame, kind: ModelKind, target: Target, splits: int = 5, seed: int = 0,
    physics: Scales | None = None,
) -> dict[str, float]:
    """Time-ordered cross-validation: each fold trains on the past and scores the next block;
    scores are computed over all out-of-fold predictions together. ``physics``: the plant
    parameters to use (see :func:`_fit`)."""
    data = data.sort_index()
    power_hat = np.full(len(data), np.nan)
    rise_hat = np.full(len(data), np.nan)
    for train, test in TimeSeriesSplit(n_splits=splits).split(data):
        power_hat[test], rise_hat[test] = _fit(data.iloc[train], kind, target, seed,
                                               physics).targets(
            data.iloc[test])
    scored = np.isfinite(power_hat)
    return _scores(data[scored], target, power_hat[scored], rise_hat[scored])


def train(
    frame: TrainingFrame,
    kind: ModelKind = "gbr",
    target: Target = "facility",
    splits: int = 5,
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> PlantModel:
    """Fit a :class:`PlantModel` on a frame.

    Metrics: ``cv`` from :func:`cross_validate` over the first ``1 - holdout_fraction`` of the
    rows, ``holdout`` from a model fitted on those rows and scored on the later tail. The
    returned model is then refitted on all rows; its trust region spans all rows. The IT
    response (and with it the work column, see :class:`PlantModel`) is fitted on all rows,
    the plant parameters of the features (:func:`fit_physics`) on the rows before the tail.

    Settling: where the rack inlet follows a lever change only some frame rows later (the
    data's step responses say how many, :func:`dcpue.optimizer.frames.response_lag`), the rows
    before it settles pair new setpoints with the old inlet (and the old IT power); every fit
    and score then uses the settled rows only (the IT response, fitted on differences of
    measured inlet and IT power, uses all rows).
    """
    data = frame.data.sort_index()
    if len(data) < 4 * splits:
        raise ValueError(f"{len(data)} usable rows is too few to train ({4 * splits} needed)")
    response = _significant(ITResponse.fit(data, frame.step_s))
    ref_c = None if response is None else float(np.quantile(data["rack_inlet_max_c"], 0.1))
    lag = response_lag(data, frame.step_s)
    data = with_work(data, response, ref_c)[settled_rows(data, frame.step_s, lag)]
    if len(data) < 4 * splits:
        raise ValueError(f"{len(data)} settled rows is too few to train ({4 * splits} needed; "
                         f"the rack inlet settles {lag} rows after a setpoint change)")
    cut = int(len(data) * (1.0 - holdout_fraction))
    head, tail = data.iloc[:cut], data.iloc[cut:]
    physics = fit_physics(_columns(head), *_targets(head, target), Scales.of(_columns(head)))
    metrics = {"cv": cross_validate(head, kind, target, splits, seed, physics)}
    if cut < len(data):
        metrics["holdout"] = _scores(
            tail, target, *_fit(head, kind, target, seed, physics).targets(tail)
        )
    fitted = _fit(data, kind, target, seed, physics)
    return PlantModel(
        kind=kind, target=target, features=feature_columns(data), power_model=fitted.power,
        inlet_model=fitted.inlet,
        trust=TrustRegion.of(data.assign(it_kw=data["work_kw"]), feature_columns(data)),
        scales=fitted.scales, metrics=metrics,
        train_start_ms=int(data.index[0]), train_end_ms=int(data.index[-1]) + frame.step_s * 1000,
        rows=len(data), dropped_rows=frame.dropped_rows, step_s=frame.step_s,
        it_response=response, it_reference_c=ref_c, settling_rows=lag,
    )


def _significant(response: ITResponse) -> ITResponse | None:
    """The response when the data show one; None (IT independent of inlet) otherwise."""
    return response if response.significant else None


def save_model(model: PlantModel, path: str | Path) -> Path:
    """Write the model with joblib (feature list, trust region and metrics included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path)
    return path


def load_model(path: str | Path) -> PlantModel:
    """Read a model written by :func:`save_model`; :class:`ModelError` if it is not one."""
    try:
        model = joblib.load(Path(path))
    except FileNotFoundError:
        raise ModelError(f"{path}: no model file (run `dcpue optimize train`)") from None
    except Exception as exc:
        raise ModelError(f"{path}: unreadable model: {exc}") from None
    if not isinstance(model, PlantModel) or model.format != MODEL_FORMAT:
        raise ModelError(f"{path}: not a dcpue plant model of format {MODEL_FORMAT}")
    return model

