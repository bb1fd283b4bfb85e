"""Plant evaluation: conventional setpoints vs the optimizer loop vs an oracle, same world.

Three runs of one plant (:class:`EvaluationPlant`) over the same weather and IT work:

1. **fixed**: the plant's conventional setpoints throughout;
2. **loop**: first an exploration period just before the evaluation window
   (:func:`dcpue.optimizer.explore.exploration_schedule`) is run into a store, framed and a
   model trained on it; then every control interval the loop calls :func:`propose` with that
   model on what the meters show at the decision instant and applies the proposal;
3. **oracle**: the same :func:`propose` search, under the same constraints, but predicting with
   the plant's own physics instead of a learned model.

The objective and the headline share are **total facility energy** (IT included: a plant whose
IT power rises with inlet temperature makes a warmer hall cost IT energy). Energies are
integrated at the plant's step (kWh); an interval violates the inlet limit when any of its steps
has a maximum rack inlet above ``inlet_limit_c``. The report also scores the loop's model on the
evaluation period itself: its predictions at each decision against what the interval then
measured (PUE MAE and bias, inlet MAE and bias).

The plant interface is deliberately small, so another simulation engine can stand in for the
native twin (:class:`TwinPlant`): see :class:`EvaluationPlant`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
from dcpue.config import SetpointName, Site
from dcpue.core.readings import ReadingColumns, datetime_to_ms, ms_to_datetime
from dcpue.core.store import Store
from dcpue.optimizer.explore import exploration_schedule
from dcpue.optimizer.frames import (
    SETPOINTS,
    build_frame,
    dew_point_c,
    site_pressure_pa,
    wet_bulb_c,
)
from dcpue.optimizer.models import (
    InletResponse,
    PlantModel,
    PlantPredictor,
    Prediction,
    TrustRegion,
    train,
)
from dcpue.optimizer.propose import PlantState, propose
from dcpue.twin.plant import Conditions, PlantParams, Setpoints, evaluate
from dcpue.twin.simulator import Twin


class EvaluationError(ValueError):
    """The site cannot be evaluated (no plant to evaluate on)."""


@dataclass(frozen=True, slots=True)
class PlantRun:
    """Per-step results of one run: powers in kW, the hottest rack inlet in degC."""

    facility_kw: np.ndarray
    cooling_kw: np.ndarray
    it_kw: np.ndarray
    rack_inlet_max_c: np.ndarray


class EvaluationPlant(Protocol):
    """What :func:`run_evaluation` needs of a plant.

    Setpoint mappings are keyed by frame column (``SETPOINTS`` values, e.g. ``supply_air_c``)
    and hold one value per plant step of ``step_s`` seconds from ``start_ms`` (UTC epoch ms).

    - ``conventional``: the setpoints the plant runs with when nobody optimizes it;
    - ``readings(start_ms, setpoints)``: the site meters' readings of such a run (exploration),
      as the collector would store them;
    - ``conditions(ts_ms)``: what the optimizer does not control, at instants: the
      ``CONDITION_COLUMNS`` with ``it_kw`` the IT power the workload draws where inlet
      temperature does not raise it;
    - ``observe(conditions, setpoints)``: what the meters show at a decision: metered IT kW and
      the hottest rack inlet (degC), for one instant's conditions and one value per setpoint;
    - ``run(start_ms, setpoints)``: the true per-step result (:class:`PlantRun`);
    - ``oracle(target)``: a :class:`PlantPredictor` with the plant's own physics.
    """

    step_s: int
    conventional: dict[SetpointName, float]

    def readings(
        self, start_ms: int, setpoints: Mapping[str, np.ndarray]
    ) -> Iterator[ReadingColumns]: ...

    def conditions(self, ts_ms: np.ndarray) -> dict[str, np.ndarray]: ...

    def observe(
        self, conditions: Mapping[str, float], setpoints: Mapping[SetpointName, float]
    ) -> tuple[float, float]: ...

    def run(self, start_ms: int, setpoints: Mapping[str, np.ndarray]) -> PlantRun: ...

    def oracle(self, target: str) -> PlantPredictor: ...


@dataclass(frozen=True, slots=True)
class TwinPredictor:
    """The oracle's "model": the twin's physics, exact, with no trust region; an
    ``it_response`` when the plant's IT power depends on inlet temperature."""

    params: PlantParams
    pressure_pa: float
    target: str = "facility"
    power_rmse_kw: float = 0.0
    inlet_rmse_c: float = 0.0
    trust: TrustRegion | None = None
    it_response: InletResponse | None = None

    def predict(self, x: Mapping[str, np.ndarray]) -> Prediction:
        cond = Conditions(
            it_kw=x["it_kw"], dry_bulb_c=x["dry_bulb_c"],
            relative_humidity_pct=x["relative_humidity_pct"], pressure_pa=self.pressure_pa,
            wet_bulb_c=x["wet_bulb_c"],
        )
        sp = Setpoints(**{column: x[column] for column in SETPOINTS.values()})
        result = evaluate(cond, sp, self.params)
        power = result.facility_kw if self.target == "facility" else result.cooling_kw
        return Prediction(np.asarray(power), np.asarray(result.rack_inlet_max_c))


class TwinPlant:
    """The native digital twin (:class:`dcpue.twin.simulator.Twin`) as an evaluation plant."""

    def __init__(self, site: Site, seed: int) -> None:
        self.site, self.seed = site, seed
        self.step_s = site.twin.step_s
        self.params = PlantParams.from_settings(site.twin)
        self.pressure_pa = site_pressure_pa(site)
        self.conventional = {name: float(getattr(self.params.default_setpoints, column))
                             for name, column in SETPOINTS.items()}
        self._physics = TwinPredictor(self.params, self.pressure_pa)

    def _twin(self, start_ms: int) -> Twin:
        return Twin(self.site, seed=self.seed, start=ms_to_datetime(start_ms))

    def readings(
        self, start_ms: int, setpoints: Mapping[str, np.ndarray]
    ) -> Iterator[ReadingColumns]:
        steps = len(next(iter(setpoints.values())))
        yield from self._twin(start_ms).run(
            steps * self.step_s / 86400, setpoints=Setpoints(**setpoints), chunk_days=1e6)

    def conditions(self, ts_ms: np.ndarray) -> dict[str, np.ndarray]:
        c = self._twin(int(ts_ms[0])).conditions(ts_ms)
        db, rh = np.asarray(c.dry_bulb_c, float), np.asarray(c.relative_humidity_pct, float)
        return {
            "it_kw": np.asarray(c.it_kw, float), "dry_bulb_c": db, "relative_humidity_pct": rh,
            "wet_bulb_c": wet_bulb_c(db, rh, self.pressure_pa), "dew_point_c": dew_point_c(db, rh),
        }

    def observe(
        self, conditions: Mapping[str, float], setpoints: Mapping[SetpointName, float]
    ) -> tuple[float, float]:
        x = dict(conditions) | {column: setpoints[name] for name, column in SETPOINTS.items()}
        inlet = self._physics.predict({k: np.array([v]) for k, v in x.items()}).rack_inlet_c
        return float(conditions["it_kw"]), float(inlet[0])

    def run(self, start_ms: int, setpoints: Mapping[str, np.ndarray]) -> PlantRun:
        steps = len(next(iter(setpoints.values())))
        r = self._twin(start_ms).simulate(steps, Setpoints(**setpoints)).result
        return PlantRun(*(np.broadcast_to(np.asarray(v, float), (steps,)) for v in (
            r.facility_kw, r.cooling_kw, r.it_kw, r.rack_inlet_max_c)))

    def oracle(self, target: str) -> PlantPredictor:
        return TwinPredictor(self.params, self.pressure_pa, target=target)


def site_plant(site: Site, seed: int | None = None) -> EvaluationPlant:
    """The plant a site declares in ``[twin]``; :class:`EvaluationError` when it has none
    (evaluating dcpue's default twin instead would report figures of a plant that is not the
    site's)."""
    if "twin" not in site.model_fields_set:
        raise EvaluationError(
            f"site {site.id} has no [twin] section: there is no plant to evaluate on "
            "(describe the hall in [twin], see docs/twin.md)")
    return TwinPlant(site, site.twin.seed if seed is None else seed)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One run's totals: energies in kWh, PUE (1), inlet in degC, interval counts."""

    name: str
    facility_kwh: float
    cooling_kwh: float
    it_kwh: float
    max_inlet_c: float
    violations: int
    intervals: int
    changes: int

    @property
    def pue(self) -> float:
        return self.facility_kwh / self.it_kwh


@dataclass(frozen=True)
class Evaluation:
    """The three runs, the model the loop used and its accuracy on the evaluation period
    (``period_accuracy``: ``pue_mae``, ``pue_bias`` (predicted - measured), ``inlet_mae_c``,
    ``inlet_bias_c``, ``intervals`` scored)."""

    start_ms: int
    days: float
    interval_s: int
    inlet_limit_c: float
    fixed: Scenario
    loop: Scenario
    oracle: Scenario
    model: dict = field(default_factory=dict)
    period_accuracy: dict[str, float] = field(default_factory=dict)

    def saving_kwh(self, run: Scenario, what: str = "facility") -> float:
        return getattr(self.fixed, f"{what}_kwh") - getattr(run, f"{what}_kwh")

    @property
    def oracle_share(self) -> float:
        """Share of the oracle's total facility energy saving the loop achieved (1 = all)."""
        best = self.saving_kwh(self.oracle)
        return self.saving_kwh(self.loop) / best if best > 0 else float("nan")

    def report(self) -> str:
        """A plain-text table for the terminal."""
        lines = [
            f"plant evaluation: {self.days:g} days from "
            f"{ms_to_datetime(self.start_ms).isoformat()}, control every "
            f"{self.interval_s // 60} min, inlet limit {self.inlet_limit_c:g} degC",
            f"{'run':<8}{'facility kWh':>14}{'IT kWh':>12}{'cooling kWh':>13}{'PUE':>8}"
            f"{'saved kWh':>11}{'saved %':>9}{'max inlet':>10}{'violations':>11}",
        ]
        for run in (self.fixed, self.loop, self.oracle):
            saved = self.saving_kwh(run)
            lines.append(
                f"{run.name:<8}{run.facility_kwh:>14.0f}{run.it_kwh:>12.0f}"
                f"{run.cooling_kwh:>13.0f}{run.pue:>8.4f}{saved:>11.0f}"
                f"{100 * saved / self.fixed.facility_kwh:>9.2f}"
                f"{run.max_inlet_c:>10.2f}{run.violations:>11d}"
            )
        lines.append(
            f"loop achieved {100 * self.oracle_share:.1f} % of the oracle's total facility "
            f"energy saving ({self.saving_kwh(self.loop):.0f} of "
            f"{self.saving_kwh(self.oracle):.0f} kWh)"
        )
        if self.model:
            m = self.model["metrics"].get("holdout", self.model["metrics"]["cv"])
            lines.append(
                f"model {self.model['kind']} on {self.model['rows']} rows: held-out PUE MAE "
                f"{m['pue_mae']:.4f}, CV(RMSE) {m['power_cvrmse_pct']:.2f} %, NMBE "
                f"{m['power_nmbe_pct']:.2f} %, inlet RMSE {m['inlet_rmse_c']:.2f} degC"
            )
        if self.period_accuracy:
            a = self.period_accuracy
            lines.append(
                f"model on the evaluation period ({a['intervals']:.0f} intervals): PUE MAE "
                f"{a['pue_mae']:.4f} (bias {a['pue_bias']:+.4f}), inlet MAE "
                f"{a['inlet_mae_c']:.2f} degC (bias {a['inlet_bias_c']:+.2f})"
            )
        return "\n".join(lines)


def explore_and_train(
    site: Site, start: datetime, days: float, seed: int = 0,
    plant: EvaluationPlant | None = None,
) -> PlantModel:
    """Run ``days`` of exploration ending at ``start`` into a scratch store; train on it."""
    cfg = site.optimizer
    plant = plant or TwinPlant(site, seed)
    t0 = datetime_to_ms(start - timedelta(days=days))
    steps = round(days * 86400 / plant.step_s)
    ts = t0 + np.arange(steps, dtype=np.int64) * plant.step_s * 1000
    schedule = exploration_schedule(ts, cfg, seed=seed)
    with Store(":memory:") as store:
        for cols in plant.readings(t0, schedule):
            store.append(cols)
        frame = build_frame(store, site, int(ts[0]), int(ts[-1]) + plant.step_s * 1000)
    return train(frame, cfg.model_kind, cfg.target, cfg.cv_splits, seed=seed)


@dataclass(frozen=True, slots=True)
class _Loop:
    """Setpoints per control interval, how often they changed, and the predicted facility
    power (kW), IT power (kW) and hottest inlet (degC) of each interval's choice."""

    setpoints: dict[SetpointName, np.ndarray]
    changes: int
    facility_kw: np.ndarray
    it_kw: np.ndarray
    inlet_c: np.ndarray


def _control(
    predictor: PlantPredictor, site: Site, plant: EvaluationPlant, decisions: np.ndarray,
    observed: Mapping[str, np.ndarray], start_sp: Mapping[SetpointName, float],
) -> _Loop:
    """Setpoints per control interval chosen by ``propose`` with ``predictor`` on what the
    plant's meters show at each decision."""
    current = dict(start_sp)
    chosen = {name: np.empty(len(decisions)) for name in SETPOINTS}
    predicted = np.full((3, len(decisions)), np.nan)
    changes = 0
    for i, ts in enumerate(decisions):
        conditions = {k: float(v[i]) for k, v in observed.items()}
        it_kw, inlet = plant.observe(conditions, current)
        state = PlantState(int(ts), conditions | {"it_kw": it_kw}, current, inlet)
        proposal = propose(predictor, state, site.optimizer, site=site.id, levels=3)
        changes += proposal.status == "proposed"
        current = {SetpointName(k): v for k, v in proposal.proposed.items()}
        for name in SETPOINTS:
            chosen[name][i] = current[name]
        if proposal.proposed_kw is not None:
            predicted[:, i] = (proposal.proposed_kw, proposal.proposed_it_kw,
                               proposal.predicted_inlet_c)
    return _Loop(chosen, changes, *predicted)


def _accuracy(loop: _Loop, run: PlantRun, per_step: int, target: str) -> dict[str, float]:
    """The loop model's predictions at each decision against the interval that followed."""
    def per_interval(a: np.ndarray, how: Callable = np.mean) -> np.ndarray:
        return how(a.reshape(-1, per_step), axis=1)

    it = per_interval(run.it_kw)
    measured = per_interval(run.facility_kw if target == "facility" else run.cooling_kw + it)
    inlet = per_interval(run.rack_inlet_max_c, np.max)
    ok = np.isfinite(loop.facility_kw)
    pue_hat = loop.facility_kw[ok] / loop.it_kw[ok]
    pue = measured[ok] / it[ok]
    return {
        "pue_mae": float(np.mean(np.abs(pue_hat - pue))),
        "pue_bias": float(np.mean(pue_hat - pue)),
        "inlet_mae_c": float(np.mean(np.abs(loop.inlet_c[ok] - inlet[ok]))),
        "inlet_bias_c": float(np.mean(loop.inlet_c[ok] - inlet[ok])),
        "intervals": float(np.count_nonzero(ok)),
    }


def _scenario(name: str, run: PlantRun, per_step: int, step_s: int, limit_c: float,
              changes: int) -> Scenario:
    h = step_s / 3600.0
    inlet = run.rack_inlet_max_c.reshape(-1, per_step).max(axis=1)
    return Scenario(
        name=name, facility_kwh=float(np.sum(run.facility_kw) * h),
        cooling_kwh=float(np.sum(run.cooling_kw) * h), it_kwh=float(np.sum(run.it_kw) * h),
        max_inlet_c=float(inlet.max()), violations=int(np.sum(inlet > limit_c)),
        intervals=len(inlet), changes=changes,
    )


def run_evaluation(
    site: Site,
    days: float,
    start: datetime | None = None,
    *,
    explore_days: float = 14.0,
    seed: int | None = None,
    model: PlantModel | None = None,
    plant: EvaluationPlant | None = None,
    progress: Callable[[str], object] | None = None,
) -> Evaluation:
    """Run the three scenarios (see the module docstring) on ``plant`` (default: the site's
    own, :func:`site_plant`). ``model`` skips exploration."""
    cfg = site.optimizer
    seed = site.twin.seed if seed is None else seed
    plant = plant or site_plant(site, seed)
    start = start or site.twin.start
    say = progress or (lambda _msg: None)
    if cfg.interval_s % plant.step_s:
        raise ValueError(f"interval_s {cfg.interval_s} must be a multiple of the plant step "
                         f"{plant.step_s} s")
    if model is None:
        say(f"exploring {explore_days:g} days and training")
        model = explore_and_train(site, start, explore_days, seed, plant)
    intervals = round(days * 86400 / cfg.interval_s)
    per_step = cfg.interval_s // plant.step_s
    start_ms = datetime_to_ms(start)
    decisions = start_ms + np.arange(intervals, dtype=np.int64) * cfg.interval_s * 1000
    observed = plant.conditions(decisions)
    fixed = _Loop({k: np.full(intervals, v) for k, v in plant.conventional.items()}, 0,
                  *np.full((3, intervals), np.nan))
    say("running the loop")
    loops = {"fixed": fixed,
             "loop": _control(model, site, plant, decisions, observed, plant.conventional)}
    say("running the oracle")
    loops["oracle"] = _control(plant.oracle(cfg.target), site, plant, decisions, observed,
                               plant.conventional)
    runs = {
        name: plant.run(start_ms, {SETPOINTS[k]: np.repeat(v, per_step)
                                   for k, v in loop.setpoints.items()})
        for name, loop in loops.items()
    }
    scenarios = {
        name: _scenario(name, runs[name], per_step, plant.step_s, cfg.inlet_limit_c,
                        loop.changes)
        for name, loop in loops.items()
    }
    return Evaluation(
        start_ms=start_ms, days=days, interval_s=cfg.interval_s,
        inlet_limit_c=cfg.inlet_limit_c, model=model.summary(),
        period_accuracy=_accuracy(loops["loop"], runs["loop"], per_step, cfg.target),
        **scenarios,
    )
