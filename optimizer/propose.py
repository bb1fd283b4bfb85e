"""Safe setpoint proposals: a bounded search of the setpoint space on a plant model.

The search (:func:`propose`) evaluates, in one vectorised call per stage, a grid of candidates
inside each setpoint's window ``[current - max_step, current + max_step]`` intersected with the
hard bounds and the model's trained range, then refines around the best candidate with half the
grid spacing. It picks the lowest predicted power whose predicted maximum rack inlet stays at or
below ``inlet_limit_c - inlet_margin_c - inlet_sigmas * inlet_rmse_c``.

Safety, in order: operator overrides fix their setpoints; a model whose predicted maximum inlet
at the current setpoints is more than ``max(3 x inlet RMSE, inlet_disagreement_c)`` from the
measured one (the plant left the training distribution in a way the feature ranges cannot
show) and conditions outside the trained region
(beyond ``trust_tolerance`` of each feature's span) or a model without finite predictions mean
"keep current", unless the *measured* maximum inlet is already above ``inlet_limit_c -
inlet_margin_c``: then, without the model, every lever that lowers rack inlet moves one maximum
step the cool way (supply air and chilled water down, fan speed and running units up).
A candidate in a combination of conditions and setpoints the training never came near (the
model's joint trust region, :class:`dcpue.optimizer.models.JointRegion`) is not feasible. A
lever without a setpoint meter (``PlantState.unmetered``) is held and left out of the proposal.
Candidates never leave the windows; a final :func:`enforce_bounds` clamps every proposed value
into its hard bounds, so even a deliberately wrong model cannot push a setpoint out of bounds.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from math import erf, sqrt
from pathlib import Path

import aiomqtt
import numpy as np
import pandas as pd
from dcpue.config import SetpointName, Site
from dcpue.config.optimizer import MqttBroker, OptimizerSettings, SetpointBounds
from dcpue.core.store import Store
from dcpue.optimizer.frames import (
    CONDITION_COLUMNS,
    FEATURE_COLUMNS,
    SETPOINTS,
    FrameError,
    build_frame,
    setpoint_meters,
)
from dcpue.optimizer.models import PlantPredictor
from dcpue.optimizer.proposals import STATUSES as STATUSES
from dcpue.optimizer.proposals import Proposal
from dcpue.optimizer.proposals import ProposalLog as ProposalLog
from dcpue.optimizer.proposals import describe as describe

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class PlantState:
    """Measured conditions (``CONDITION_COLUMNS``), current setpoints keyed by name (a type
    with several instances: their mean), the measured maximum rack inlet in degC (None if
    unknown) and each instance's setpoint keyed by frame column (``<column>@<meter id>``,
    :func:`dcpue.optimizer.frames.instance_columns`; an instance missing here is taken at its
    type's value)."""

    ts_ms: int
    conditions: dict[str, float]
    setpoints: dict[SetpointName, float]
    rack_inlet_c: float | None = None
    instances: dict[str, float] = field(default_factory=dict)
    #: Setpoint names the site has no setpoint meter for: their value in ``setpoints`` is the
    #: frames' stand-in (:func:`dcpue.optimizer.frames.unmetered_value`), not a reading, so
    #: :func:`propose` never moves them.
    unmetered: frozenset[SetpointName] = frozenset()


def current_state(store: Store, site: Site, end_ms: int | None = None) -> PlantState:
    """Conditions and setpoints of the newest complete frame row: the ``step_s`` ending at
    ``end_ms`` (default: the store's newest reading), or the newest complete one of the three
    steps before it; :class:`FrameError` when the recent data is too thin."""
    cfg = site.optimizer
    if end_ms is None:
        span = store.time_range()
        if span is None:
            raise FrameError("the store holds no readings")
        end_ms = span[1]
    step_ms = cfg.step_s * 1000
    frame = build_frame(store, site, end_ms - 4 * step_ms, end_ms)
    return plant_state(site, frame.data, step_ms)


def plant_state(site: Site, data: pd.DataFrame, step_ms: int) -> PlantState:
    """The :class:`PlantState` of a frame's last row (``step_ms`` its step), with the levers
    the site has no setpoint meter for marked ``unmetered``; :class:`FrameError` when there
    is no row."""
    if not len(data):
        raise FrameError("no complete frame row in the last 4 steps: cannot read the plant state")
    row = data.iloc[-1]
    metered = setpoint_meters(site)
    return PlantState(
        int(data.index[-1]) + step_ms,
        {c: float(row[c]) for c in CONDITION_COLUMNS},
        {name: float(row[column]) for name, column in SETPOINTS.items()},
        float(row["rack_inlet_max_c"]),
        {c: float(row[c]) for c in data.columns if "@" in c},
        frozenset(name for name in SETPOINTS if name not in metered),
    )


def model_path(site: Site) -> Path:
    """Where the site's model lives: ``[optimizer] model_path`` (relative to the store's
    folder) or ``<store folder>/<site id>-optimizer.joblib``."""
    folder = site.store.path.parent
    return folder / (site.optimizer.model_path or f"{site.id}-optimizer.joblib")


def enforce_bounds(values: Mapping[str, float], bounds: Mapping[str, SetpointBounds]) -> dict[
    str, float
]:
    """Clamp each setpoint into its hard bounds (integer setpoints rounded inside them); a
    disabled lever (``enabled = false``) keeps its value, the optimizer does not own it. An
    instance key ``<name>@<meter id>`` takes its type's bounds."""
    out = {}
    for name, value in values.items():
        b = bounds[name.split("@", 1)[0]]
        if not np.isfinite(value):
            raise ValueError(f"setpoint {name} is not a finite number: {value!r}")
        if not b.enabled:
            out[name] = float(value)
            continue
        v = float(np.clip(value, b.min, b.max))
        if b.integer:
            v = float(np.clip(round(v), np.ceil(b.min), np.floor(b.max)))
        out[name] = v
    return out


def setpoint_bounds(cfg: OptimizerSettings) -> dict[str, SetpointBounds]:
    """Hard bounds per setpoint name (``SetpointName`` values)."""
    return {name.value: getattr(cfg.setpoints, name.value) for name in SETPOINTS}


@dataclass(frozen=True, slots=True)
class Lever:
    """One searched setpoint: ``key`` in proposals (the setpoint name, or ``<name>@<meter id>``
    for one instance of a type the site meters several times), its type and the predictor's
    input ``column``."""

    key: str
    name: SetpointName
    column: str


def levers(predictor: PlantPredictor) -> list[Lever]:
    """The predictor's levers: one per setpoint type, or one per instance where the predictor
    takes per-instance columns (its ``features``, see
    :func:`dcpue.optimizer.frames.instance_columns`)."""
    features = tuple(getattr(predictor, "features", FEATURE_COLUMNS))
    out = []
    for name, column in SETPOINTS.items():
        instances = [c for c in features if c.startswith(column + "@")]
        out += ([Lever(f"{name.value}@{c.split('@', 1)[1]}", name, c) for c in instances]
                or [Lever(name.value, name, column)])
    return out


def _inputs(levers: list[Lever], values: np.ndarray) -> dict[str, np.ndarray]:
    """Predictor setpoint inputs of points (one column per lever): each lever's column and,
    for a type searched per instance, the type's column as the instances' mean."""
    x = {lv.column: values[:, j] for j, lv in enumerate(levers)}
    for column in SETPOINTS.values():
        group = [j for j, lv in enumerate(levers) if lv.column.startswith(column + "@")]
        if group:
            x[column] = values[:, group].mean(axis=1)
    return x


def _with_types(values: Mapping[str, float], levers: list[Lever]) -> dict[str, float]:
    """Proposal values per lever plus, for a type searched per instance, the type's key at the
    instances' mean (what a type-level write-back and listing see)."""
    out = dict(values)
    for name in SETPOINTS:
        group = [values[lv.key] for lv in levers if lv.name is name and lv.key != name.value]
        if group:
            out[name.value] = float(np.mean(group))
    return out


def _phi(z: float) -> float:
    return 0.5 * (1.0 + erf(z / sqrt(2.0)))


@dataclass(slots=True)
class _Window:
    lo: float
    hi: float
    lo_why: str
    hi_why: str
    integer: bool

    def levels(self, n: int, around: float | None = None, spacing: float | None = None) -> (
        np.ndarray
    ):
        if self.integer:
            return np.arange(np.ceil(self.lo), np.floor(self.hi) + 1.0)
        if around is None or spacing is None:
            return np.unique(np.linspace(self.lo, self.hi, n))
        return np.unique(np.clip(around + spacing * np.array([-1.0, 0.0, 1.0]), self.lo, self.hi))


def _window(
    name: str, base: float, b: SetpointBounds, trust: tuple[float, float] | None,
    fixed: str | None,
) -> _Window:
    """The lever's search window; ``fixed`` (why it is held: ``override``, ``unmetered``)
    or a held declaration makes it one point."""
    if fixed or b.held:
        why = f"{fixed}:{name}" if fixed else f"held:{name}"
        return _Window(base, base, why, why, b.integer)
    lows = [(b.min, f"bound:{name}"), (base - b.max_step, f"max_step:{name}")]
    highs = [(b.max, f"bound:{name}"), (base + b.max_step, f"max_step:{name}")]
    if trust is not None:
        lows.append((trust[0], f"trust:{name}"))
        highs.append((trust[1], f"trust:{name}"))
    lo, lo_why = max(lows)
    hi, hi_why = min(highs)
    return _Window(lo, hi, lo_why, hi_why, b.integer)


def _grid(axes: list[np.ndarray]) -> np.ndarray:
    """Every combination of the axes' values, the last axis varying fastest (the order of
    ``itertools.product``)."""
    if not axes:
        return np.empty((1, 0))
    mesh = np.meshgrid(*(np.asarray(a, float) for a in axes), indexing="ij")
    return np.stack(mesh, axis=-1).reshape(-1, len(axes))


@dataclass(frozen=True, slots=True)
class _Rows:
    """Evaluated candidates: points (one column per lever), the objective's power (kW), the
    predicted hottest inlet (degC) and IT power (kW) per point."""

    points: np.ndarray
    power: np.ndarray
    inlet: np.ndarray
    it_kw: np.ndarray
    #: distance to the trained combinations (:class:`dcpue.optimizer.models.JointRegion`,
    #: in its radii; 0 without one, NaN until asked: :meth:`_Search.inside`)
    joint: np.ndarray

    def __len__(self) -> int:
        return len(self.power)

    def __getitem__(self, rows: slice) -> _Rows:
        return _Rows(self.points[rows], self.power[rows], self.inlet[rows], self.it_kw[rows],
                     self.joint[rows])

    def __add__(self, other: _Rows) -> _Rows:
        return _Rows(*(np.concatenate([a, b]) for a, b in zip(
            (self.points, self.power, self.inlet, self.it_kw, self.joint),
            (other.points, other.power, other.inlet, other.it_kw, other.joint), strict=True)))

    @property
    def finite(self) -> np.ndarray:
        return np.isfinite(self.power) & np.isfinite(self.inlet)

    def cool(self, limit_c: float) -> np.ndarray:
        """Finite predictions that meet the inlet limit (inside the joint region or not)."""
        with np.errstate(invalid="ignore"):
            return self.finite & (self.inlet <= limit_c)


class _Search:
    """Candidate evaluation for one state: predictions and feasibility, accumulated in
    ``rows``.

    ``power`` is the objective, total facility power in kW. A predictor with an
    ``it_response`` and ``predict_work`` (a :class:`dcpue.optimizer.models.PlantModel`) is
    given the IT work in ``conditions`` (:func:`model_conditions`) and predicts each
    candidate's IT power itself; another predictor with an ``it_response`` (the evaluation's
    oracle) scales the metered IT by the response between the inlet predicted at the current
    setpoints (``reference``) and at the candidate and is predicted again at that IT load. For
    a ``cooling`` target the candidate's IT power is added to the predicted cooling power
    (losses then stay out of the objective)."""

    def __init__(
        self, predictor: PlantPredictor, conditions: Mapping[str, float], limit_c: float,
        reference: np.ndarray, levers: list[Lever], joint_radius: float = 1.0,
    ) -> None:
        self.predictor, self.conditions, self.limit = predictor, conditions, limit_c
        self.levers = levers
        self.response = getattr(predictor, "it_response", None)
        self.predict_work = getattr(predictor, "predict_work", None)
        region = getattr(predictor, "joint", None)
        self.region = region if region is not None and joint_radius > 0 else None
        self.radius = joint_radius * (region.radius if self.region is not None else 1.0)
        self.rows = _Rows(np.empty((0, len(levers))), *(np.empty(0) for _ in range(4)))
        if self.response is None or self.predict_work is not None:
            self.ref_inlet = float("nan")
        else:
            self.ref_inlet = float(predictor.predict(self._columns(reference[None, :])
                                                     ).rack_inlet_c[0])

    def _columns(self, points: np.ndarray) -> dict[str, np.ndarray]:
        x = {c: np.full(len(points), self.conditions[c]) for c in CONDITION_COLUMNS
             if c in self.conditions}  # a hand-made state may lack the staging column
        return x | _inputs(self.levers, points)

    def evaluate(self, points: np.ndarray, cool_from: int | None = None) -> _Rows:
        """Predictions of candidate points (one row per point, one column per lever), in one
        predictor call (two for a predictor that scales metered IT by its response). From
        row ``cool_from`` on, a plant model predicts power only where the inlet meets the
        limit (NaN elsewhere: such a row is never feasible, and no caller compares its
        power)."""
        x = self._columns(points)
        it = x["it_kw"]
        wanted = None
        if cool_from is not None and self.predict_work is not None:
            def wanted(inlet: np.ndarray) -> np.ndarray:
                with np.errstate(invalid="ignore"):
                    return (np.arange(len(inlet)) < cool_from) | (inlet <= self.limit)
        if self.response is not None and self.predict_work is not None:
            pred = self.predict_work(x, wanted)
            it = pred.it_kw
        elif wanted is not None:
            pred = self.predictor.predict(x, wanted)  # type: ignore[call-arg]
        else:
            pred = self.predictor.predict(x)
        if self.response is not None and np.isfinite(self.ref_inlet):
            ratio = np.exp(self.response.log_ratio(np.asarray(pred.rack_inlet_c, float),
                                                   self.ref_inlet))
            x["it_kw"] = it = it * ratio
            pred = self.predictor.predict(x)
        power = np.asarray(pred.power_kw, float) + 0.0 * it
        if self.predictor.target == "cooling":
            power = power + it
        joint = np.zeros(len(power)) if self.region is None else np.full(len(power), np.nan)
        return _Rows(points, power, np.asarray(pred.rack_inlet_c, float), np.asarray(it, float),
                     joint)

    def add(self, points: np.ndarray | _Rows) -> None:
        """Append candidates: points (evaluated here) or rows :meth:`evaluate` gave."""
        self.rows = self.rows + (points if isinstance(points, _Rows) else self.evaluate(points))

    def first_feasible(self, rows: _Rows) -> int | None:
        """The index in ``rows`` of the lowest power among those with finite predictions,
        meeting the inlet limit and inside the joint trust region (ties go to the smallest
        move from the current point, candidate 0 of the search), or None. The joint region
        is asked in order of power, a few at a time: most searches ask it once."""
        cool = rows.cool(self.limit)
        if not cool.any():
            return None
        move = np.abs(rows.points - self.rows.points[0]).sum(axis=1)
        order = np.lexsort((move, np.where(cool, np.round(rows.power, 6), np.inf)))
        order = order[: int(np.count_nonzero(cool))]
        if self.region is None:
            return int(order[0])
        # the distance only up to the radius: a k-d tree query that can stop early
        for start in range(0, len(order), 16):
            chunk = order[start:start + 16]
            asked = np.isnan(rows.joint[chunk])
            # rows.joint is the search's own array for its candidates: asked once
            rows.joint[chunk[asked]] = self._distance(rows.points[chunk[asked]], self.radius)
            ok = rows.joint[chunk] <= 1.0
            if ok.any():
                return int(chunk[np.argmax(ok)])
        return None

    def _distance(self, points: np.ndarray, bound: float = np.inf) -> np.ndarray:
        """Distances of points to the trained combinations, in radii (inf beyond ``bound``)."""
        assert self.region is not None
        return self.region.distance(self._columns(points), bound=bound) / self.radius

    def inside(self, index: int) -> bool:
        """Whether candidate ``index`` lies inside the joint trust region (asked once)."""
        joint = self.rows.joint
        if np.isnan(joint[index]):
            joint[index] = self._distance(self.rows.points[index:index + 1])[0]
        return bool(joint[index] <= 1.0)

    def keep(self, n: int) -> None:
        """Forget every candidate after the first ``n``."""
        self.rows = self.rows[:n]

    @property
    def cool(self) -> np.ndarray:
        """Finite predictions of the candidates that meet the inlet limit."""
        return self.rows.cool(self.limit)

    @property
    def feasible(self) -> np.ndarray:
        """Cool and inside the joint region (False where the region was not asked)."""
        return self.cool & (self.rows.joint <= 1.0)

    def best(self) -> int | None:
        """Lowest power among feasible candidates (ties go to the smallest move from the
        current point, candidate 0), else, where candidates meet the inlet limit only outside
        the joint trust region, the one nearest the trained combinations, else the coolest
        finite one, else None."""
        found = self.first_feasible(self.rows)
        if found is not None:
            return found
        rows, cool = self.rows, self.cool
        if cool.any():  # only outside the joint region: the nearest to it
            rows.joint[cool] = self._distance(rows.points[cool])
            return int(np.lexsort((rows.power, np.where(cool, rows.joint, np.inf)))[0])
        if rows.finite.any():
            return int(np.argmin(np.where(rows.finite, rows.inlet, np.inf)))
        return None


def model_conditions(
    predictor: PlantPredictor, state: PlantState, setpoints: Mapping[str, float]
) -> dict[str, float]:
    """The state's conditions as the predictor takes them: for a model of IT work (an
    ``it_response`` and ``work_kw``, see :class:`dcpue.optimizer.models.PlantModel`) ``it_kw``
    is the metered IT turned into work at the measured hottest inlet (the inlet predicted at
    ``setpoints``, keyed by frame column, when none is measured); else as measured."""
    work_kw = getattr(predictor, "work_kw", None)
    if getattr(predictor, "it_response", None) is None or work_kw is None:
        return dict(state.conditions)
    inlet = state.rack_inlet_c
    if inlet is None or not np.isfinite(inlet):
        x = {k: np.array([v]) for k, v in (state.conditions | dict(setpoints)).items()}
        inlet = float(predictor.predict(x).rack_inlet_c[0])
    work = work_kw(np.array([state.conditions["it_kw"]]), np.array([inlet]))
    return state.conditions | {"it_kw": float(work[0])}


def propose(
    predictor: PlantPredictor,
    state: PlantState,
    cfg: OptimizerSettings,
    *,
    site: str = "",
    fixed: Mapping[str, float] | None = None,
    levels: int = 5,
) -> Proposal:
    """Search the setpoints for the lowest predicted power under the constraints.

    ``fixed`` setpoints (operator overrides, keyed by setpoint name or instance key; an
    instance's own key wins) are held at their given value, and so are levers declared held
    (``enabled = false``: at their current value; ``min = max``). A lever the site has no
    setpoint meter for (``state.unmetered``: its value is a stand-in, not a reading) and
    does not declare at one value (``min = max``) is held where the state has it and left
    out of the proposal, with the reason saying so; if the
    model was trained on readings of it, the model cannot be used (keep current, or step
    cooler on the metered levers if the measured inlet is too warm). Never returns a
    proposed value outside the configured hard bounds.
    """
    searched = levers(predictor)
    given = dict(fixed or {})
    bounds = setpoint_bounds(cfg)
    # a lever declared at one value (min = max) is known by its declaration
    unknown = [lv.key for lv in searched if lv.name in state.unmetered
               and bounds[lv.name.value].min != bounds[lv.name.value].max
               and lv.key not in given
               and lv.name not in given]
    proposal = _propose(predictor, state, cfg, site, given, levels, unknown)
    if not unknown:
        return proposal
    current = {k: v for k, v in proposal.current.items() if k not in unknown}
    proposed = {k: v for k, v in proposal.proposed.items() if k not in unknown}
    status = proposal.status
    if status in ("proposed", "keep"):
        status = "proposed" if proposed != current else "keep"
    note = (f"{', '.join(unknown)} not metered (no setpoint meter): left out of the proposal, "
            "held where the plant runs them")
    return replace(proposal, current=current, proposed=proposed, status=status,
                   reason=f"{proposal.reason}; {note}")


def _propose(
    predictor: PlantPredictor, state: PlantState, cfg: OptimizerSettings, site: str,
    given: Mapping[str, float], levels: int, unknown: list[str],
) -> Proposal:
    """:func:`propose` with the ``unknown`` (unmetered) levers held at the state's values."""
    bounds = setpoint_bounds(cfg)
    searched = levers(predictor)
    fixed = {lv.key: given.get(lv.key, given.get(lv.name)) for lv in searched
             if lv.key in given or lv.name in given}
    keys = [lv.key for lv in searched]
    current = {lv.key: float(state.instances.get(lv.column, state.setpoints[lv.name]))
               for lv in searched}
    base = enforce_bounds(current | {lv.key: fixed[lv.key] for lv in searched
                                     if lv.key in fixed}, bounds) | {k: current[k] for k in unknown}
    held = fixed | {k: current[k] for k in unknown}
    limit = cfg.inlet_limit_c - cfg.inlet_margin_c - cfg.inlet_sigmas * predictor.inlet_rmse_c
    proposal = Proposal(
        id=uuid.uuid4().hex[:16], ts_ms=state.ts_ms, site=site, status="keep",
        current=_with_types(current, searched), proposed=_with_types(base, searched), reason="",
        target=predictor.target, inlet_limit_c=limit,
    )
    notes = [f"{lv.key} {current[lv.key]:g} outside hard bounds, clamped" for lv in searched
             if base[lv.key] != current[lv.key] and lv.key not in fixed]
    trust = None if predictor.trust is None else predictor.trust.widened(cfg.trust_tolerance)
    at_base = {c: float(v[0]) for c, v in _inputs(searched, np.array([[base[k] for k in keys]])
                                                  ).items()}
    conditions = model_conditions(predictor, state, at_base)
    if trust is not None:
        outside = trust.outside(conditions | at_base, tuple(trust.lo))
        learned = [lv.key for lv in searched
                   if lv.key in unknown and trust.lo[lv.column] < trust.hi[lv.column]]
        if learned:
            outside.insert(0, f"the model was trained on readings of {', '.join(learned)}, "
                              "which the site does not meter now")
        if outside:
            return _fallback(proposal, state, cfg, bounds, held, searched,
                             "; ".join(outside + notes))
        free = [lv.column for lv in searched
                if lv.key not in held and not bounds[lv.name.value].held]
        if all(trust.lo[c] == trust.hi[c] for c in free):
            return replace(proposal, reason=(
                "keep current: the model was trained at fixed setpoints and cannot tell what a "
                "change would do; run a commissioning sweep (docs/optimizer.md) and retrain"))
    windows = [
        _window(lv.key, base[lv.key], bounds[lv.name.value],
                None if trust is None else (trust.lo[lv.column], trust.hi[lv.column]),
                "unmetered" if lv.key in unknown else "override" if lv.key in fixed else None)
        for lv in searched
    ]
    search = _Search(predictor, conditions, limit, np.array([current[k] for k in keys]),
                     searched, cfg.joint_radius)
    reach = [w if w.lo == w.hi else _Window(
        max(b.min, t[0]), min(b.max, t[1]), w.lo_why, w.hi_why, w.integer)
        for w, b, t in zip(windows, (bounds[lv.name.value] for lv in searched), (
            (-np.inf, np.inf) if trust is None else (trust.lo[lv.column], trust.hi[lv.column])
            for lv in searched), strict=True)]
    start = np.array([[base[k] for k in keys]])
    search.add(start)
    measured = state.rack_inlet_c
    allowed = max(3.0 * predictor.inlet_rmse_c, cfg.inlet_disagreement_c)
    if (measured is not None and base == current and np.isfinite(search.rows.inlet[0])
            and abs(search.rows.inlet[0] - measured) > allowed):
        return _fallback(proposal, state, cfg, bounds, held, searched, (
            f"the model predicts a {search.rows.inlet[0]:.2f} degC maximum inlet at the current "
            f"setpoints, the sensors read {measured:.2f} (more than {allowed:.2f} apart): the "
            "plant is outside what the model learned"), float(search.rows.inlet[0]))
    # one predictor call for the grid within one step and the far grid over the whole
    # trusted range (_toward), a far point's power only where its inlet meets the limit
    local = _grid([w.levels(levels) for w in windows])
    rows = search.evaluate(np.vstack([local, _far_grid(reach, start[0])]), len(local))
    search.add(rows[:len(local)])
    far = rows[len(local):]
    best = search.best()
    if best is None:
        return _fallback(proposal, state, cfg, bounds, held, searched,
                         "model gave no finite prediction")
    spacing = [(w.hi - w.lo) / max(levels - 1, 1) / 2.0 for w in windows]
    search.add(_grid([w.levels(3, search.rows.points[best, j], spacing[j])
                      for j, w in enumerate(windows)]))
    goal = _toward(search, far, windows, cfg.min_saving_pct,
                   cfg.reach_sigmas * predictor.power_rmse_kw)
    return _decide(proposal, search, windows, searched, bounds, cfg, predictor, notes, goal)


def _far_grid(reach: list[_Window], start: np.ndarray, budget: int = 256) -> np.ndarray:
    """The far grid of :func:`_toward`: about ``budget`` points over each lever's whole
    trusted range (``reach``), the current values (``start``) included; no point when no
    lever is free."""
    free = sum(w.lo < w.hi for w in reach)
    if not free:
        return np.empty((0, len(reach)))
    n = max(3, int(budget ** (1.0 / free)))
    return _grid([np.unique(np.append(w.levels(n), np.clip(c, w.lo, w.hi)))
                  for w, c in zip(reach, start, strict=True)])


def _toward(search: _Search, far: _Rows, windows: list[_Window], min_saving_pct: float,
            margin_kw: float) -> tuple[int, float] | None:
    """A step toward a better point more than one ``max_step`` away: the best feasible point
    of the far grid (``far``, evaluated, :func:`_far_grid`), when its predicted power beats
    the best point within one step by more than ``margin_kw`` (and ``min_saving_pct`` of the
    current power). Each lever the best point within one step does not already move the
    goal's way then moves one ``max_step`` toward the goal, if that point is feasible. A
    bump of the model's between the current point and a better one then does not hold the
    loop where it is. Returns (the step's index in ``search``, the goal's power kW) or
    None."""
    local = search.best()
    now = float(search.rows.power[0])
    if not len(far) or local is None or not search.feasible[local] or not np.isfinite(now):
        return None
    # ties (levers the model is indifferent to) go to the smallest move, as in best()
    goal = search.first_feasible(far)
    goal_kw = float(far.power[goal]) if goal is not None else np.inf
    target = far.points[goal] if goal is not None else None
    if target is None or goal_kw >= search.rows.power[local] - max(
            min_saving_pct / 100.0 * now, margin_kw):
        return None
    # each lever one step toward the goal, unless the best point within one step already
    # moves it that way (or the goal leaves it where it is)
    start, best = search.rows.points[0], search.rows.points[local]
    toward = np.array([np.clip(g, w.lo, w.hi) for g, w in zip(target, windows, strict=True)])
    same = np.sign(best - start) == np.sign(target - start)
    step = np.where(same | np.isclose(target, start), best, toward)
    if np.allclose(step, start) or np.allclose(step, best):
        return None
    search.add(step[None, :])
    at = len(search.rows) - 1
    if not (search.cool[at] and search.inside(at)):
        search.keep(at)
        return None
    return at, goal_kw


#: Levers that lower rack inlet, and which way (-1: lower the setpoint, +1: raise it).
_COOLER = {
    SetpointName.SUPPLY_AIR_TEMPERATURE: -1.0, SetpointName.CHILLED_WATER_TEMPERATURE: -1.0,
    SetpointName.CRAH_FAN_SPEED: 1.0, SetpointName.RUNNING_UNITS: 1.0,
}


def _fallback(
    proposal: Proposal, state: PlantState, cfg: OptimizerSettings,
    bounds: Mapping[str, SetpointBounds], fixed: Mapping[str, float],
    searched: list[Lever], why: str, predicted_c: float | None = None,
) -> Proposal:
    """No usable model: keep current, or step cooler if the measured inlet is too warm, or
    where the model disagrees with the sensors (``predicted_c``, its inlet at the current
    setpoints) and the warmer of the two is."""
    limit = cfg.inlet_limit_c - cfg.inlet_margin_c
    warm = max((t for t in (state.rack_inlet_c, predicted_c) if t is not None), default=None)
    if warm is None or warm <= limit:
        return replace(proposal, reason=f"keep current: {why}")
    cooler = {lv.key: proposal.proposed[lv.key] for lv in searched}
    for lv in searched:
        if lv.name in _COOLER and lv.key not in fixed and not bounds[lv.name.value].held:
            cooler[lv.key] += _COOLER[lv.name] * bounds[lv.name.value].max_step
    cooler = _with_types(enforce_bounds(cooler, bounds), searched)
    return replace(
        proposal, status="proposed" if cooler != proposal.current else "keep", proposed=cooler,
        reason=f"step cooler without the model: {'measured' if warm == state.rack_inlet_c else 'predicted'} "
               f"inlet {warm:.2f} degC above {limit:.2f} and {why}",
    )


def _decide(
    proposal: Proposal,
    search: _Search,
    windows: list[_Window],
    searched: list[Lever],
    bounds: Mapping[str, SetpointBounds],
    cfg: OptimizerSettings,
    predictor: PlantPredictor,
    notes: list[str],
    goal: tuple[int, float] | None = None,
) -> Proposal:
    best = search.best() if goal is None else goal[0]
    assert best is not None
    rows = search.rows
    now_kw, now_inlet = float(rows.power[0]), float(rows.inlet[0])
    best_kw = float(rows.power[best])
    saving = now_kw - best_kw if np.isfinite(now_kw) else 0.0
    pct = 100.0 * saving / now_kw if np.isfinite(now_kw) and now_kw > 0 else 0.0
    if goal is not None:  # the threshold is the goal's saving, the figures the step's
        notes = [f"one step toward a point predicted at {goal[1]:.1f} kW", *notes]
        goal_pct = 100.0 * (now_kw - goal[1]) / now_kw if now_kw > 0 else 0.0
    else:
        goal_pct = pct
    names = [lv.key for lv in searched]
    point = dict(zip(names, rows.points[best], strict=True))
    binding = [w.lo_why for w, n in zip(windows, names, strict=True) if point[n] <= w.lo
               and w.lo < w.hi] + [w.hi_why for w, n in zip(windows, names, strict=True)
                                   if point[n] >= w.hi and w.lo < w.hi]
    binding += sorted({w.lo_why for w in windows if w.lo == w.hi})
    search.inside(0)
    better = rows.finite & (rows.power < best_kw)
    if np.any(search.cool & (rows.joint > 1.0) & better):
        binding.insert(0, "trust:joint")
    if np.any(~search.cool & better):
        binding.insert(0, "inlet_limit")
    if not search.feasible[best] and search.cool[best]:
        reason = (f"no candidate within the trained combinations of conditions and setpoints "
                  f"(joint trust region): proposing the nearest, {rows.joint[best]:.2f} "
                  "radii away")
    elif not search.feasible[best]:
        reason = "no candidate meets the inlet limit: proposing the coolest"
    elif search.feasible[0] and goal_pct < cfg.min_saving_pct:
        best, point = 0, dict(zip(names, rows.points[0], strict=True))
        reason = f"keep current: predicted saving {pct:.2f} % below {cfg.min_saving_pct} %"
        saving, pct, best_kw = 0.0, 0.0, now_kw
    elif not search.cool[0] and np.isfinite(now_inlet):
        reason = f"predicted inlet {now_inlet:.2f} degC above {proposal.inlet_limit_c:.2f}: cool"
    elif not search.feasible[0] and np.isfinite(now_inlet):
        reason = (f"the current setpoints lie {rows.joint[0]:.2f} radii from the trained "
                  f"combinations (joint trust region): predicted saving {saving:.1f} kW "
                  f"({pct:.2f} %) inside it")
    else:
        reason = f"predicted saving {saving:.1f} kW ({pct:.2f} %)"
    proposed = _with_types(enforce_bounds(point, bounds), searched)
    sigma = sqrt(2.0) * predictor.power_rmse_kw
    confidence = _phi(saving / sigma) if sigma > 0 else float(saving > 0)
    status = "proposed" if proposed != proposal.current else "keep"
    return replace(
        proposal, status=status, proposed=proposed, current_kw=now_kw, proposed_kw=best_kw,
        current_it_kw=float(rows.it_kw[0]), proposed_it_kw=float(rows.it_kw[best]),
        saving_kw=saving, saving_pct=pct, predicted_inlet_c=float(rows.inlet[best]),
        confidence=confidence, binding=tuple(dict.fromkeys(binding)),
        reason="; ".join([reason, *notes]),
    )


def broker_client(broker: MqttBroker) -> aiomqtt.Client:
    """A client for ``[optimizer.mqtt]`` with its credentials and TLS (verified by default;
    ``tls.insecure`` skips the host-name check and is logged)."""
    tls = broker.tls
    if tls.enabled and tls.insecure:
        log.warning("optimizer MQTT %s:%d: TLS host-name verification is off (tls.insecure)",
                    broker.host, broker.port)
    return aiomqtt.Client(
        broker.host, broker.port, username=broker.username, password=broker.password(),
        tls_params=aiomqtt.TLSParameters(
            ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file
        ) if tls.enabled else None,
        tls_insecure=tls.insecure if tls.enabled else None,
    )


async def publish_proposal(
    client_or_broker: aiomqtt.Client | MqttBroker,
    topic: str,
    proposal: Proposal,
    *,
    qos: int = 1,
) -> None:
    """Publish ``proposal.to_json()`` on ``topic`` (retained, so a late subscriber sees the
    latest), through a connected client or a new connection to the configured broker."""
    if isinstance(client_or_broker, aiomqtt.Client):
        await client_or_broker.publish(topic, proposal.to_json(), qos=qos, retain=True)
        return
    async with broker_client(client_or_broker) as client:
        await client.publish(topic, proposal.to_json(), qos=qos, retain=True)
