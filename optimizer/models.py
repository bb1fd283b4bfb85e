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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Literal, Protocol

import joblib
import numpy as np
import pandas as pd
from dcpue.optimizer import trees
from dcpue.optimizer.frames import (
    FEATURE_COLUMNS,
    SETPOINT_COLUMNS,
    STAGE_COLUMN,
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
MODEL_FORMAT = 8


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


#: Conditions of the joint trust region (:class:`JointRegion`), beside the levers.
JOINT_CONDITIONS: tuple[str, ...] = ("it_kw", "dry_bulb_c", "wet_bulb_c")


@dataclass
class JointRegion:
    """The trust region of the joint conditions: how far a row of conditions and setpoints
    (``columns``: IT work, outdoor dry and wet bulb and the levers that varied in training)
    lies from the training rows, in units of each column's training standard deviation.

    A row's distance is that to its ``k``-th nearest training row; ``radius`` is the largest
    such distance of a training row from the others (leave-one-out). A row farther than
    ``radius`` is in a combination the training never came near, even where every column
    on its own is inside its trained range (:class:`TrustRegion`): warm outdoor air with
    warm chilled water when the sweep met warm air only with cold water."""

    columns: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    points: np.ndarray
    k: int
    radius: float
    _tree: Any = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, data: pd.DataFrame, columns: tuple[str, ...], k: int = 5
           ) -> JointRegion | None:
        """The region of ``data``'s rows over ``columns`` (None with too few rows)."""
        x = data[list(columns)].to_numpy(float)
        if len(x) <= 2 * k or not columns:
            return None
        mean, sd = x.mean(axis=0), x.std(axis=0)
        scale = np.where(sd > 0, sd, 1.0)
        region = cls(tuple(columns), mean, scale, (x - mean) / scale, k, 0.0)
        own = region.tree().query(region.points, k=[k + 1])[0][:, 0]  # the first is the row
        region.radius = float(np.max(own))
        return region

    def tree(self) -> Any:
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.points)
        return self._tree

    def distance(self, x: Mapping[str, np.ndarray], bound: float = np.inf) -> np.ndarray:
        """Each row's distance to its ``k``-th nearest training row (standard deviations);
        inf where it is farther than ``bound`` (the search then prunes: a candidate outside
        costs less)."""
        n = max(np.size(x[c]) for c in self.columns)
        z = np.column_stack([np.broadcast_to(np.asarray(x[c], float), (n,))
                             for c in self.columns])
        return self.tree().query((z - self.mean) / self.scale, k=[self.k],
                                 distance_upper_bound=bound)[0][:, 0]


def joint_columns(data: pd.DataFrame, features: tuple[str, ...]) -> tuple[str, ...]:
    """The joint region's columns of a training frame: :data:`JOINT_CONDITIONS` and the
    lever columns that varied (a type searched per instance by its instances)."""
    levers = [c for c in features if c.split("@", 1)[0] in SETPOINT_COLUMNS
              and not any(f.startswith(c + "@") for f in features)]
    return JOINT_CONDITIONS + tuple(c for c in levers if data[c].nunique() > 1)


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

    ``cv_pct_per_k`` (% of IT power per kelvin between two inlets) is the response's
    cross-validated error inside its trained range, from ``cv_blocks`` contiguous blocks of
    the fitted differences (:func:`response_cv_pct_per_k`); M&V bounds the IT-at-reference
    adjustment with it (:func:`dcpue.optimizer.mv.it_reference_uncertainty_kwh`).
    """

    knots: tuple[float, ...]
    coef: tuple[float, ...]
    lo_c: float
    hi_c: float
    significant: bool
    pct_per_k_at_max: float = 0.0
    cv_pct_per_k: float = 0.0
    cv_blocks: int = 0

    def h(self, inlet_c: np.ndarray) -> np.ndarray:
        x = np.clip(np.asarray(inlet_c, float), self.lo_c, self.hi_c)
        return _inlet_basis(x, self.knots) @ np.asarray(self.coef)

    def log_ratio(self, inlet_c: np.ndarray, ref_c: float) -> np.ndarray:
        if not self.significant:
            return np.zeros(np.shape(inlet_c))
        return self.h(inlet_c) - _h_at(self, float(ref_c))

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
        gram = _gram(dx)
        beta = _difference_fit(dx, dy)
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
        cv, blocks = response_cv_pct_per_k(dx, dy, np.diff(inlet)[pair])
        return cls(knots, tuple(float(b) for b in beta), lo, hi, True,
                   float(100.0 * np.max(np.abs(slope))), cv, blocks)


#: Contiguous blocks :func:`response_cv_pct_per_k` leaves out in turn (fewer when the sweep
#: gives fewer than :data:`CV_MIN_PAIRS` row pairs a block).
CV_BLOCKS = 14
CV_MIN_PAIRS = 20


def _gram(dx: np.ndarray) -> np.ndarray:
    """The difference fit's normal matrix, with a ridge of 1e-6 per pair (it keeps the
    knots the data never crossed at 0)."""
    return dx.T @ dx + 1e-6 * len(dx) * np.eye(dx.shape[1])


def _difference_fit(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Coefficients of ``d ln(IT) ~ d basis`` (:func:`_gram`)."""
    return np.linalg.solve(_gram(dx), dx.T @ dy)


def response_cv_pct_per_k(dx: np.ndarray, dy: np.ndarray, step_c: np.ndarray
                          ) -> tuple[float, int]:
    """Blocked cross-validated error of the IT response between two inlets (% of IT power
    per kelvin between them) and the number of blocks.

    The row pairs (``dx`` basis differences, ``dy`` centred ln(IT) differences, ``step_c``
    the hottest inlet's change, K) are cut into contiguous blocks (the sweep's holds, in
    time order; Roberts et al. 2017, Ecography 40:913); each is left out in turn, the
    response refitted on the rest predicts the block's ln(IT) changes, and each pair's error
    r is set against its inlet step: least squares of r^2 = s0^2 + a^2 step^2 separates the
    workload's own changes between two rows (s0^2, whatever the step) from the response's
    error, which grows with the step (a, the linear growth :func:`dcpue.optimizer.mv.
    extrapolation_uncertainty_kwh` uses beyond a range). Declared: the error between two
    inlets D kelvin apart is a x D, one sign along a run (a response that is wrong for a
    whole region, not noise); what every block shares (a bias of the sweep as a whole, e.g.
    levers or conditions the sweep never varied) is not seen.
    """
    n = len(dy)
    blocks = min(CV_BLOCKS, n // CV_MIN_PAIRS)
    if blocks < 2 or not np.any(step_c):
        return 0.0, 0
    errors = np.empty(n)
    for block in np.array_split(np.arange(n), blocks):
        keep = np.ones(n, bool)
        keep[block] = False
        mean = float(np.mean(dy[keep]))
        errors[block] = dy[block] - mean - dx[block] @ _difference_fit(dx[keep], dy[keep] - mean)
    # r^2 = s0^2 + a^2 step^2: the workload's changes between two rows (s0, whatever the
    # step) and the response's error, growing with the step
    design = np.column_stack([np.ones(n), step_c**2])
    a2 = float(np.linalg.lstsq(design, errors**2, rcond=None)[0][1])
    return 100.0 * float(np.sqrt(max(a2, 0.0))), blocks


@lru_cache(maxsize=64)
def _h_at(response: ITResponse, ref_c: float) -> float:
    """``response.h`` at one inlet (degC), kept: every prediction of a model with an IT
    response needs it at the model's reference inlet."""
    return float(response.h(np.array([ref_c]))[0])


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

#: Candidate values of the air side's parameters (:func:`_air_side`), searched by
#: :func:`fit_air_side`: an air economizer's changeover (outdoor dry bulb, degC; the first
#: value means none, the last one always below it), the return air's rise over the supply
#: setpoint at the most airflow per kW seen (K) and the cooling coil's effectiveness (1).
AIR_GRID: dict[str, tuple[float, ...]] = {
    "air_economizer_max_c": (-50.0, *(float(k) for k in range(12, 33))),
    "air_return_rise_k": tuple(float(k) for k in range(4, 17)),
    "coil_effectiveness": tuple(round(0.5 + 0.05 * k, 2) for k in range(10)),
}

#: The model form of a plant whose air side :func:`fit_air_side` found (fields of
#: :class:`Scales`; the defaults there are the form without it).
AIR_FORM: dict[str, Any] = {"air_side": True, "power_on_it": True, "inlet_over_supply": True,
                            "moded": True, "alpha": 10.0}


@dataclass(frozen=True, slots=True)
class Scales:
    """Site scales and plant parameters taken from the training data, so the features are
    dimensionless and carry no constant of one plant: ``it_kw`` the largest IT load (kW),
    ``airflow`` the largest running units x fan speed fraction per IT kW (a proxy of airflow
    per kW of heat, in units per kW), ``pump_hz`` the highest pump frequency (Hz, the pump
    affinity law's reference speed); ``physics`` the plant parameters of
    :data:`PHYSICS_GRID` (K) as :func:`fit_physics` found them (the grid middles until
    then); ``instances`` the per-instance lever columns (``<column>@<meter id>``, see
    :func:`dcpue.optimizer.frames.instance_columns`) the design adds. The model's form
    (:data:`AIR_FORM` where :func:`fit_air_side` found an air side): ``power_on_it`` (the power model's load
    is metered IT, the heat the servers give off, which rises with their inlet where IT power
    does; else IT work), ``inlet_over_supply`` (the inlet model's target is the rise over the
    supply air the coil achieves, :func:`supply_air_c`; else over the supply setpoint),
    ``moded`` (one model per plant mode, :class:`Moded`), ``alpha`` (the linear model's
    ridge penalty) and ``air_side`` (the design has the air-side terms of :func:`_air_side`;
    without them neither modes nor the supply-air estimate); ``staged``: the training data
    show the plant's cooling loads switching off and on (the frame's
    :data:`~dcpue.optimizer.frames.STAGE_COLUMN` varies), so the design takes that staging."""

    it_kw: float
    airflow: float
    pump_hz: float = 50.0
    physics: tuple[tuple[str, float], ...] = tuple(
        (k, v[len(v) // 2]) for k, v in (PHYSICS_GRID | AIR_GRID).items())
    instances: tuple[str, ...] = ()
    power_on_it: bool = False
    inlet_over_supply: bool = False
    moded: bool = False
    alpha: float = 1e-2
    air_side: bool = False
    staged: bool = False

    @classmethod
    def of(cls, x: Mapping[str, np.ndarray]) -> Scales:
        it = np.asarray(x["it_kw"], float)
        airflow = np.asarray(x["running_units"], float) * np.asarray(x["crah_fan_speed_pct"]) / 100
        pump = float(np.max(x["pump_frequency_hz"]))
        return cls(float(it.max()), float((airflow / it).max()), pump if pump > 0 else 1.0,
                   instances=tuple(c for c in x if "@" in c), staged=_varies(x))

    def param(self, name: str) -> float:
        return dict(self.physics)[name]


def fit_physics(x: Mapping[str, np.ndarray], power_y: np.ndarray, rise_y: np.ndarray,
                scales: Scales, passes: int = 2) -> Scales:
    """``scales`` with the plant parameters (:data:`PHYSICS_GRID`) chosen from the data:
    coordinate search, each parameter over its grid in turn, for the lowest validation error
    of the linear model (:func:`_ridge`'s fit, as :class:`Linear` without clipping: fitted on
    the first 75 % of the rows, scored on the rest, both targets' mean squared errors over
    their variances summed)."""
    n = len(power_y)
    cut = int(0.75 * n)
    if cut < 20 or n - cut < 10:
        return scales
    targets = [(np.asarray(y, float), max(float(np.var(y[cut:])), 1e-12)) for y in (power_y, rise_y)]

    def error(candidate: Scales) -> float:
        design = design_matrix(x, candidate)
        return sum(float(np.mean((Linear(1e-2, clip=False).fit(design[:cut], y[:cut]).predict(
            design[cut:]) - y[cut:]) ** 2)) / var for y, var in targets)

    return _coordinate_search(scales, PHYSICS_GRID, error, passes)


def _coordinate_search(scales: Scales, grids: Mapping[str, tuple[float, ...]],
                       error: Callable[[Scales], float], passes: int) -> Scales:
    """Each parameter over its grid in turn, ``passes`` times, keeping what lowers ``error``."""
    best, best_err = scales, error(scales)
    for _ in range(passes):
        for name, grid in grids.items():
            for value in grid:
                candidate = replace(best, physics=tuple(
                    (k, value if k == name else v) for k, v in best.physics))
                err = error(candidate)
                if err < best_err - 1e-12:
                    best, best_err = candidate, err
    return best


def fit_air_side(data: pd.DataFrame, target: Target, scales: Scales, passes: int = 1
                 ) -> Scales:
    """``scales`` in :data:`AIR_FORM` with the air side's parameters (:data:`AIR_GRID`)
    chosen from the data, where they show an air economizer's changeover inside the trained
    outdoor range; else ``scales`` unchanged (the form without an air side).

    Coordinate search as in :func:`fit_physics`, on the linear model of that form
    (:class:`Linear` per plant mode, :class:`Moded`): power per metered IT kW (the heat the
    servers give off) and the hottest inlet's rise over the supply air the candidate gives
    (:func:`supply_air_c`), scored by the validation mean absolute errors of power (kW) and
    inlet (K), each over the tail's mean absolute deviation (a few unmet-supply rows of a
    10 K rise do not steer it). The air side is kept only where its linear model scores
    better than the form without it."""
    cut = int(0.75 * len(data))
    if cut < 20 or len(data) - cut < 10:
        return scales
    columns, it = _columns(data), data["it_kw"].to_numpy()
    inlet = data["rack_inlet_max_c"].to_numpy()
    mad = [max(float(np.mean(np.abs(v[cut:] - np.median(v[cut:])))), 1e-12)
           for v in (_targets(data, target, on_it=True)[0] * it, inlet)]

    def error(candidate: Scales) -> float:
        """Validation MAE of power (kW) and inlet (K), each over its tail's deviation."""
        power_y = _targets(data, target, candidate.power_on_it)[0]
        load = it if candidate.power_on_it else _work(data)
        total = 0.0
        for cols, y, scale, kw in ((_power_columns(data, candidate), power_y, mad[0], load),
                                   (columns, inlet - _inlet_offset(columns, candidate), mad[1],
                                    np.ones(len(it)))):
            design = design_matrix(cols, candidate)
            fit = _estimator("ridge", 0, candidate).fit(design[:cut], y[:cut])
            miss = (fit.predict(design[cut:]) - y[cut:]) * kw[cut:]
            total += float(np.mean(np.abs(miss))) / scale
        return total

    found = _coordinate_search(replace(scales, **AIR_FORM), AIR_GRID, error, passes)
    changeover = found.param("air_economizer_max_c")
    grid, db = AIR_GRID["air_economizer_max_c"], columns["dry_bulb_c"]
    if (changeover in (grid[0], grid[-1]) or not db.min() < changeover < db.max()
            or error(found) >= error(scales)):
        return scales
    return found


def _airflow(x: Mapping[str, np.ndarray], scales: Scales) -> np.ndarray:
    """Running units x fan speed per IT kW over the most seen (1 = the most airflow per kW)."""
    units = np.asarray(x["running_units"], float)
    fan = np.asarray(x["crah_fan_speed_pct"], float) / 100.0
    return np.maximum(units * fan / np.asarray(x["it_kw"], float) / scales.airflow, 1e-3)


def _air_side(x: Mapping[str, np.ndarray], scales: Scales) -> tuple[np.ndarray, ...]:
    """The air side as the learned plant parameters describe it: (outdoor air in use (bool),
    mixed air degC, supply air degC). An air economizer lets outdoor air replace return air
    below its changeover (``air_economizer_max_c``) while outdoor air is cooler than the return
    air (``air_return_rise_k`` over the supply setpoint at the most airflow per kW seen); the
    coil cools the mixed air to the supply setpoint, or only to ``mixed - e (mixed - chilled
    water)`` (``coil_effectiveness`` e) when that is warmer: supply air then runs warm."""
    db = np.asarray(x["dry_bulb_c"], float)
    chw, sa = np.asarray(x["chilled_water_c"], float), np.asarray(x["supply_air_c"], float)
    hall_return = sa + scales.param("air_return_rise_k") / _airflow(x, scales)
    outdoor = (db <= scales.param("air_economizer_max_c")) & (db < hall_return)
    mixed = np.where(outdoor, np.maximum(db, sa), hall_return)
    coil = scales.param("coil_effectiveness") * np.maximum(mixed - chw, 0.0)
    return outdoor, mixed, np.maximum(sa, mixed - coil)


def _inlet_offset(x: Mapping[str, np.ndarray], scales: Scales) -> np.ndarray:
    """What the inlet model's target is the rise over (degC): the achieved supply air
    (:func:`supply_air_c`) or the supply setpoint (``Scales.inlet_over_supply``)."""
    if scales.inlet_over_supply:
        return supply_air_c(x, scales)
    return np.asarray(x["supply_air_c"], float)


def supply_air_c(x: Mapping[str, np.ndarray], scales: Scales) -> np.ndarray:
    """The supply air the coil achieves (degC, see :func:`_air_side`): the inlet model's
    target is the hottest inlet's rise over it."""
    return _air_side(x, scales)[2]


def _air_side_terms(x: Mapping[str, np.ndarray], scales: Scales, air: np.ndarray,
                    chw: np.ndarray, carnot: np.ndarray) -> list[np.ndarray]:
    """The air side's design columns (:func:`_air_side`): the mode (the coil cools; first,
    :data:`MODE_COLUMN`), outdoor air in use, mixed air, the supply shortfall, the coil's
    sensible load (per airflow), the latent load of humid outdoor air over chilled water,
    these over the chiller's Carnot factor, and how hard the coil works (:func:`_coil_duty`)."""
    outdoor, mixed, supply = _air_side(x, scales)
    coil_dt = mixed - supply
    coil_on = (coil_dt > 0.0).astype(float)
    latent = outdoor * np.maximum(np.asarray(x["dew_point_c"], float) - chw, 0.0)
    return [coil_on, outdoor.astype(float), mixed, supply - np.asarray(x["supply_air_c"], float),
            coil_dt, coil_dt / air, latent, coil_on * carnot * 100.0,
            coil_dt / air * carnot * 100.0, latent * carnot * 100.0,
            *_coil_duty(mixed, supply, chw, air)]


#: Knots of the coil's needed effectiveness (:func:`_coil_duty`).
COIL_DUTY_KNOTS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _coil_duty(mixed: np.ndarray, supply: np.ndarray, chw: np.ndarray, air: np.ndarray
               ) -> list[np.ndarray]:
    """How hard the coil works: the air-side effectiveness it needs, ``(mixed - supply) /
    (mixed - chilled water)`` (1), and its hinges at :data:`COIL_DUTY_KNOTS` per airflow. A
    coil's water flow, and with it pump power (~ flow^3), climbs steeply as the needed
    effectiveness nears what the coil can give: on the EnergyPlus hall (Chicago, 3 July days
    at 18 degC supply air) chilled water 13.5 -> 16.75 degC saved 11 % of chiller energy and
    cost 29 % more pump energy, which the design without these terms could not tell."""
    need = np.clip((mixed - supply) / np.maximum(mixed - chw, 0.25), 0.0, 1.5)
    return [need, *(np.maximum(need - k, 0.0) / air for k in COIL_DUTY_KNOTS)]


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
    air = _airflow(x, scales)
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
        *(_air_side_terms(x, scales, air, chw, carnot) if scales.air_side else []),
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
                           + spread + (_stage_terms(x, load) if scales.staged else []))


def _stage_terms(x: Mapping[str, np.ndarray], load: np.ndarray) -> list[np.ndarray]:
    """The plant's staging (:data:`~dcpue.optimizer.frames.STAGE_COLUMN`, the share of
    cooling meters off the step before) and the same per IT load: a load that is off saves
    its own kW, which per kW of IT goes as 1 / IT."""
    off = np.asarray(x[STAGE_COLUMN], float)
    return [off, off / load]


def _varies(x: Mapping[str, Any]) -> bool:
    """Whether ``x`` (frame or columns) has a staging column that is not constant."""
    if STAGE_COLUMN not in x:
        return False
    off = np.asarray(x[STAGE_COLUMN], float)
    return bool(len(off) and np.ptp(off) > 0)


class Linear:
    """Ridge regression on standardised inputs clipped to their fitted range (NumPy; the
    same fit as scikit-learn's ``StandardScaler`` + ``Ridge(alpha)`` with an intercept,
    without its per-call input checks). Clipping every column to the range it had in ``fit``
    keeps a nonlinear feature (a cube of flow, a hinge) from being extrapolated linearly
    where a combination of setpoints the data hold few of would make it large."""

    def __init__(self, alpha: float = 10.0, clip: bool = True) -> None:
        self.alpha, self.clip = alpha, clip

    def fit(self, x: np.ndarray, y: np.ndarray) -> Linear:
        x = np.asarray(x, float)
        self.lo_, self.hi_ = x.min(axis=0), x.max(axis=0)
        self.mean_ = x.mean(axis=0)
        sd = x.std(axis=0)
        self.scale_ = np.where(sd > 1e-12 * np.maximum(np.abs(self.mean_), 1.0), sd, 1.0)
        z = (x - self.mean_) / self.scale_
        self.intercept_ = float(np.mean(y))
        gram = z.T @ z + self.alpha * np.eye(z.shape[1])
        self.coef_ = np.linalg.solve(gram, z.T @ (np.asarray(y, float) - self.intercept_))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, float)
        z = ((np.clip(x, self.lo_, self.hi_) if self.clip else x) - self.mean_) / self.scale_
        return z @ self.coef_ + self.intercept_


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
        return trees.mean_predict(self.fits, x)


class Boosted:
    """The air-side form's model: :class:`Linear` plus the mean of ``n`` gradient-boosting
    fits of its residuals that differ only in their subsampling seed (``100 x seed + i``);
    the linear part is fitted once (the same fits as :class:`Bagged` with a clipped linear
    init)."""

    def __init__(self, seed: int, n: int = 3, alpha: float = 10.0) -> None:
        self.seed, self.n, self.alpha = seed, n, alpha
        self.fits: list[GradientBoostingRegressor] = []

    def fit(self, x: np.ndarray, y: np.ndarray) -> Boosted:
        self.init = Linear(self.alpha).fit(x, y)
        residual = y - self.init.predict(x)
        self.fits = [GradientBoostingRegressor(
            init="zero", n_estimators=100, max_depth=3, learning_rate=0.15, subsample=0.8,
            random_state=100 * self.seed + i,
        ).fit(x, residual) for i in range(self.n)]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.init.predict(x) + trees.mean_predict(self.fits, x)


#: The design column of the plant's mode (1: the coil cools, 0: outdoor air alone does).
MODE_COLUMN = len(FEATURE_COLUMNS)


class Moded:
    """One estimator per plant mode (:data:`MODE_COLUMN` of the design): where both modes
    hold at least ``min_rows`` rows, each is fitted on its own rows, so what the chilled water
    does while the coil cools is not averaged with the hours it does nothing; else one
    estimator on all rows."""

    def __init__(self, make: Any, min_rows: int = 30) -> None:
        self.make, self.min_rows = make, min_rows
        self.fits: dict[bool, Any] = {}

    def fit(self, x: np.ndarray, y: np.ndarray) -> Moded:
        on = x[:, MODE_COLUMN] > 0.5
        if min(on.sum(), (~on).sum()) < self.min_rows:
            self.fits = {True: self.make().fit(x, y)}
            self.fits[False] = self.fits[True]
        else:
            self.fits = {m: self.make().fit(x[on == m], y[on == m]) for m in (True, False)}
        return self

    def members(self, x: np.ndarray) -> np.ndarray:
        on = x[:, MODE_COLUMN] > 0.5
        out = None
        for m in (True, False):
            if (on == m).any():
                fit = self.fits[m]
                got = fit.members(x[on == m]) if hasattr(fit, "members") else fit.predict(
                    x[on == m])[None, :]
                if out is None:
                    out = np.empty((len(got), len(x)))
                out[:, on == m] = got
        return out if out is not None else np.empty((1, 0))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.members(x).mean(axis=0)


def _estimator(kind: ModelKind, seed: int, scales: Scales) -> Any:
    """The model of ``kind`` in the form ``scales`` holds: without an air side the ridge
    pipeline (:func:`_ridge`) or :class:`Bagged`; with it :class:`Linear` or
    :class:`Boosted` at ``alpha``, per plant mode where ``moded``."""
    if not scales.air_side:
        return _ridge() if kind == "ridge" else Bagged(seed)
    make = partial(_air_side_estimator, kind, seed, scales.alpha)
    return Moded(make) if scales.moded else make()


def _air_side_estimator(kind: ModelKind, seed: int, alpha: float) -> Linear | Boosted:
    """One air-side estimator (a module-level factory: a :class:`Moded` model keeps it and
    must pickle, into the daemon's trainer process and back, and into the model file)."""
    return Linear(alpha) if kind == "ridge" else Boosted(seed, alpha=alpha)


def _work(data: pd.DataFrame) -> np.ndarray:
    """The IT work column (``work_kw``, IT power at the model's reference inlet), or IT."""
    return data["work_kw" if "work_kw" in data else "it_kw"].to_numpy()


def _targets(data: pd.DataFrame, target: Target, on_it: bool = False
             ) -> tuple[np.ndarray, np.ndarray]:
    """Power per kW of load (metered IT, or IT work with ``on_it`` False, see
    :attr:`Scales.power_on_it`) and the hottest inlet's rise over the supply setpoint (K)."""
    it = data["it_kw"].to_numpy()
    power = data["facility_kw"].to_numpy() - it if target == "facility" else data[
        "cooling_kw"
    ].to_numpy()
    rise = data["rack_inlet_max_c"].to_numpy() - data["supply_air_c"].to_numpy()
    return power / (it if on_it else _work(data)), rise


def feature_columns(data: pd.DataFrame) -> tuple[str, ...]:
    """The model's input columns of a frame: ``FEATURE_COLUMNS``, any per-instance lever
    columns (``<column>@<meter id>``) and the staging column where it varies."""
    return (FEATURE_COLUMNS + tuple(c for c in data.columns if "@" in c)
            + ((STAGE_COLUMN,) if _varies(data) else ()))


def _power_columns(data: pd.DataFrame, scales: Scales) -> dict[str, np.ndarray]:
    return _columns(data, "it" if scales.power_on_it else "work")


def _columns(data: pd.DataFrame, load: Literal["work", "it"] = "work") -> dict[str, np.ndarray]:
    """Model inputs: the feature columns with IT work in place of IT power (the inlet model,
    see :class:`PlantModel`), or with metered IT (``load = "it"``: the power model, whose
    load is the heat the servers actually give off)."""
    names = feature_columns(data) + ((STAGE_COLUMN,) if STAGE_COLUMN in data else ())
    columns = {c: data[c].to_numpy() for c in names}
    return columns if load == "it" else columns | {"it_kw": _work(data)}


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
    joint: JointRegion | None = None

    @property
    def error_metrics(self) -> dict[str, float]:
        """Scores of the situation closest to use (a model fitted on the past, scoring the
        later tail): ``holdout`` if there is one, else ``cv``."""
        return self.metrics["holdout"] if "holdout" in self.metrics else self.metrics["cv"]

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

    def predict_work(
        self, x: Mapping[str, np.ndarray],
        power_rows: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> Prediction:
        """Predict with ``x["it_kw"]`` the IT **work** (see the class docstring): the
        prediction's ``it_kw`` is the IT power at the predicted inlet, its ``power_kw`` the
        target power (facility: overhead + that IT power); with ``power_rows`` (the rows
        whose power is wanted, given the predicted inlet) NaN on the other rows."""
        cols = self._broadcast(x)
        design = design_matrix(cols, self.scales)
        work = cols["it_kw"]
        inlet = self.inlet_model.predict(design) + _inlet_offset(cols, self.scales)
        if self.it_response is None or self.it_reference_c is None:
            it = work
        else:
            it = work * np.exp(self.it_response.log_ratio(inlet, self.it_reference_c))
        if self.scales.power_on_it and it is not work:
            design = design_matrix(cols | {"it_kw": it}, self.scales)
        factor = it if self.scales.power_on_it else work
        if power_rows is None:
            power = self.power_model.predict(design) * factor
        else:
            wanted = power_rows(inlet)
            power = np.full(len(inlet), np.nan)
            if wanted.any():
                power[wanted] = self.power_model.predict(design[wanted]) * factor[wanted]
        if self.target == "facility":
            power = power + it
        return Prediction(power, inlet, it)

    def predict(
        self, x: Mapping[str, np.ndarray],
        power_rows: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> Prediction:
        """Predict for feature columns (arrays, or scalars broadcast to a common length) with
        ``it_kw`` the metered IT power: it is turned into work at the measured hottest inlet
        when ``x`` has ``rack_inlet_max_c``, else at the predicted one (fixed point, 3 passes);
        ``power_rows`` as in :meth:`predict_work`."""
        cols = self._broadcast(x)
        it = cols["it_kw"]
        if self.it_response is None or self.it_reference_c is None:
            return self.predict_work(cols, power_rows)
        if "rack_inlet_max_c" in x:
            work = self.work_kw(it, np.broadcast_to(np.asarray(x["rack_inlet_max_c"]), it.shape))
        else:
            work = it
            for _ in range(3):
                work = self.work_kw(it, self.predict_work(cols | {"it_kw": work}).rack_inlet_c)
        pred = self.predict_work(cols | {"it_kw": work}, power_rows)
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
                "cv_pct_per_k": round(getattr(self.it_response, "cv_pct_per_k", np.nan), 4),
                "inlet_range_c": [getattr(self.it_response, "lo_c", np.nan),
                                  getattr(self.it_response, "hi_c", np.nan)],
            },
            "it_reference_c": self.it_reference_c,
            "settling_rows": self.settling_rows,
            "notes": dict(self.notes),
            "scales": {"it_kw": self.scales.it_kw, "pump_hz": self.scales.pump_hz,
                       "physics": dict(self.scales.physics), "air_side": self.scales.air_side},
            "trust_region": {c: [self.trust.lo[c], self.trust.hi[c]] for c in self.features},
            "joint_region": None if self.joint is None else {
                "columns": list(self.joint.columns), "k": self.joint.k,
                "radius_sd": round(self.joint.radius, 3)},
        }


def _scores(
    data: pd.DataFrame, target: Target, power_hat: np.ndarray, rise_hat: np.ndarray,
    on_it: bool = False,
) -> dict[str, float]:
    """Accuracy of power (per kW of load, see :func:`_targets`) and inlet-rise predictions on
    the rows of ``data``."""
    it = data["it_kw"].to_numpy()
    power_y, rise_y = _targets(data, target, on_it)
    load = it if on_it else _work(data)
    actual_kw, predicted_kw = power_y * load, power_hat * load
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
        """Power per IT kW at the metered IT; the inlet's rise over the supply setpoint at
        the IT work."""
        columns = _columns(data)
        offset = _inlet_offset(columns, self.scales) - columns["supply_air_c"]
        return (self.power.predict(design_matrix(_power_columns(data, self.scales), self.scales)),
                self.inlet.predict(design_matrix(columns, self.scales)) + offset)


def _fit(data: pd.DataFrame, kind: ModelKind, target: Target, seed: int,
         physics: Scales | None = None) -> _Fitted:
    """Fit both models; the plant parameters come from ``physics`` (a :func:`fit_physics`
    result) when given, else from the grid middles."""
    columns = _columns(data)
    scales = Scales.of(columns)
    if physics is not None:
        scales = replace(scales, physics=physics.physics, **{k: getattr(physics, k)
                                                             for k in AIR_FORM})
    power_y, rise_y = _targets(data, target, scales.power_on_it)
    rise_y = rise_y + columns["supply_air_c"] - _inlet_offset(columns, scales)
    return _Fitted(
        _estimator(kind, seed, scales).fit(
            design_matrix(_power_columns(data, scales), scales), power_y),
        _estimator(kind, seed, scales).fit(design_matrix(columns, scales), rise_y),
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
    return _scores(data[scored], target, power_hat[scored], rise_hat[scored],
                   physics is not None and physics.power_on_it)


def train(
    frame: TrainingFrame,
    kind: ModelKind = "gbr",
    target: Target = "facility",
    splits: int = 5,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    cross_validated: bool = True,
) -> PlantModel:
    """Fit a :class:`PlantModel` on a frame.

    Metrics: ``cv`` from :func:`cross_validate` over the first ``1 - holdout_fraction`` of the
    rows, ``holdout`` from a model fitted on those rows and scored on the later tail. Without
    ``cross_validated`` (the daemon's automatic fits: half the cost) ``cv`` is left out when
    there is a holdout, which is what proposals rest on (:attr:`PlantModel.error_metrics`). The
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
                         f"the rack inlet settles {lag} rows after a setpoint change: sweep "
                         f"with holds of at least {(lag + 1) * frame.step_s} s, "
                         "[optimizer] explore_hold_s)")
    cut = int(len(data) * (1.0 - holdout_fraction))
    head, tail = data.iloc[:cut], data.iloc[cut:]
    physics = fit_physics(_columns(head), *_targets(head, target, on_it=False),
                          Scales.of(_columns(head)))
    physics = fit_air_side(head, target, physics)
    metrics = {}
    if cross_validated or cut == len(data):
        metrics["cv"] = cross_validate(head, kind, target, splits, seed, physics)
    if cut < len(data):
        metrics["holdout"] = _scores(
            tail, target, *_fit(head, kind, target, seed, physics).targets(tail),
            physics.power_on_it)
    fitted = _fit(data, kind, target, seed, physics)
    return PlantModel(
        kind=kind, target=target, features=feature_columns(data), power_model=fitted.power,
        inlet_model=fitted.inlet,
        trust=TrustRegion.of(data.assign(it_kw=data["work_kw"]), feature_columns(data)),
        scales=fitted.scales, metrics=metrics,
        train_start_ms=int(data.index[0]), train_end_ms=int(data.index[-1]) + frame.step_s * 1000,
        rows=len(data), dropped_rows=frame.dropped_rows, step_s=frame.step_s,
        it_response=response, it_reference_c=ref_c, settling_rows=lag,
        joint=JointRegion.of(data.assign(it_kw=data["work_kw"]),
                             joint_columns(data, feature_columns(data))),
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

