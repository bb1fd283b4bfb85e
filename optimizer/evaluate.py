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
from dcpue.config import MeterRole, SetpointName, Site
from dcpue.core.readings import ReadingColumns, datetime_to_ms, ms_to_datetime
from dcpue.core.store import Store
from dcpue.optimizer.explore import exploration_schedule, lengthened_hold_s, sweep_hold_s
from dcpue.optimizer.frames import (
    SETPOINTS,
    STAGE_COLUMN,
    TrainingFrame,
    build_frame,
    cooling_meters,
    dew_point_c,
    off_share,
    response_lag,
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
from dcpue.optimizer.mv import measure_savings
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


#: ``decide(interval index, plant state at the decision or None) -> setpoints`` (all names).
Decide = Callable[[int, PlantState | None], dict[SetpointName, float]]


class EvaluationPlant(Protocol):
    """What :func:`run_evaluation` needs of a plant.

    Setpoint schedules given to ``readings`` and ``run`` are keyed by frame column
    (``SETPOINTS`` values, e.g. ``supply_air_c``) and hold one value per plant step of
    ``step_s`` seconds from ``start_ms`` (UTC epoch ms); per-interval setpoints are keyed by
    name, one value per control interval.

    - ``conventional``: the setpoints the plant runs with when nobody optimizes it (every
      name; a name that is not a lever at the value the frames carry for it);
    - ``levers``: the setpoints the plant takes; the others are held where they are;
    - ``readings(start_ms, setpoints)``: the site meters' readings of such a run (exploration,
      M&V), as the collector would store them;
    - ``run(start_ms, setpoints)``: the true per-step result (:class:`PlantRun`);
    - ``control(start_ms, intervals, interval_s, decide)``: the closed loop: at each interval
      boundary ``decide`` gets the plant state the meters show (None before there is one) and
      returns the next interval's setpoints; (setpoints applied per interval, the run);
    - ``oracle(start_ms, intervals, interval_s)``: the best the plant allows, knowing its
      physics (for the native twin ``propose`` with the twin's equations; for a plant without
      equations, the best fixed setpoints of a grid per interval); (setpoints, the run).
    """

    step_s: int
    conventional: dict[SetpointName, float]
    levers: list[SetpointName]

    def readings(
        self, start_ms: int, setpoints: Mapping[str, np.ndarray]
    ) -> Iterator[ReadingColumns]: ...

    def run(self, start_ms: int, setpoints: Mapping[str, np.ndarray]) -> PlantRun: ...

    def control(self, start_ms: int, intervals: int, interval_s: int, decide: Decide
                ) -> tuple[dict[SetpointName, np.ndarray], PlantRun]: ...

    def oracle(self, start_ms: int, intervals: int, interval_s: int
               ) -> tuple[dict[SetpointName, np.ndarray], PlantRun]: ...


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
        self.levers = list(SETPOINTS)
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
        """What the meters show at a decision: metered IT kW and the hottest rack inlet (degC)."""
        x = dict(conditions) | {column: setpoints[name] for name, column in SETPOINTS.items()}
        inlet = self._physics.predict({k: np.array([v]) for k, v in x.items()}).rack_inlet_c
        return float(conditions["it_kw"]), float(inlet[0])

    def staging(self, conditions: Mapping[str, float],
                setpoints: Mapping[SetpointName, float]) -> float:
        """The frames' :data:`STAGE_COLUMN` as the twin's cooling meters show it at these
        conditions and setpoints (:func:`off_share` of its powers per role; 0 where no
        cooling meter has a ``max_power_kw``)."""
        meters = [m for m in cooling_meters(self.site) if m.max_power_kw is not None]
        if not meters:
            return 0.0
        c = {k: np.array([v]) for k, v in conditions.items()}
        r = evaluate(Conditions(it_kw=c["it_kw"], dry_bulb_c=c["dry_bulb_c"],
                                relative_humidity_pct=c["relative_humidity_pct"],
                                pressure_pa=self.pressure_pa, wet_bulb_c=c["wet_bulb_c"]),
                     Setpoints(**{col: setpoints[k] for k, col in SETPOINTS.items()}), self.params)
        kw = {MeterRole.CHILLER: r.chiller_kw, MeterRole.CRAH: r.crah_kw,
              MeterRole.PUMP: r.pump_kw, MeterRole.COOLING_TOWER: r.tower_kw}
        return float(off_share([np.atleast_1d(kw.get(m.role, np.nan)) for m in meters],
                               [m.max_power_kw for m in meters])[0])

    def control(self, start_ms: int, intervals: int, interval_s: int, decide: Decide
                ) -> tuple[dict[SetpointName, np.ndarray], PlantRun]:
        """Decisions on the twin's conditions (weather and IT work, known at every instant)
        and what its meters show at the current setpoints; then one run of the choices."""
        decisions = start_ms + np.arange(intervals, dtype=np.int64) * interval_s * 1000
        observed = self.conditions(decisions)
        current = dict(self.conventional)
        chosen = {name: np.empty(intervals) for name in SETPOINTS}
        for i, ts in enumerate(decisions):
            conditions = {k: float(v[i]) for k, v in observed.items()}
            it_kw, inlet = self.observe(conditions, current)
            stage = self.staging(conditions, current)
            current = decide(i, PlantState(int(ts), conditions | {"it_kw": it_kw, STAGE_COLUMN: stage},
                                           current, inlet))
            for name in SETPOINTS:
                chosen[name][i] = current[name]
        per_step = interval_s // self.step_s
        return chosen, self.run(start_ms, {SETPOINTS[k]: np.repeat(v, per_step)
                                           for k, v in chosen.items()})

    def oracle(self, start_ms: int, intervals: int, interval_s: int
               ) -> tuple[dict[SetpointName, np.ndarray], PlantRun]:
        """The loop's search with the twin's own equations as the model."""
        physics = TwinPredictor(self.params, self.pressure_pa, target=self.site.optimizer.target)
        return self.control(start_ms, intervals, interval_s,
                            _Decider(physics, self.site, self, intervals))

    def run(self, start_ms: int, setpoints: Mapping[str, np.ndarray]) -> PlantRun:
        steps = len(next(iter(setpoints.values())))
        r = self._twin(start_ms).simulate(steps, Setpoints(**setpoints)).result
        return PlantRun(*(np.broadcast_to(np.asarray(v, float), (steps,)) for v in (
            r.facility_kw, r.cooling_kw, r.it_kw, r.rack_inlet_max_c)))


def site_plant(site: Site, seed: int | None = None, *, oracle_points: int = 5
               ) -> EvaluationPlant:
    """The plant a site declares in ``[twin]`` (the native twin, or EnergyPlus with
    ``oracle_points`` grid values per lever for its oracle); :class:`EvaluationError` when it
    has none (evaluating dcpue's default twin instead would report figures of a plant that is
    not the site's)."""
    if "twin" not in site.model_fields_set:
        raise EvaluationError(
            f"site {site.id} has no [twin] section: there is no plant to evaluate on "
            "(describe the hall in [twin], see docs/twin.md)")
    if site.twin.engine == "energyplus":
        from dcpue.optimizer.evaluate_energyplus import EnergyPlusEvaluationPlant

        return EnergyPlusEvaluationPlant(site, oracle_points=oracle_points)
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
    mv: dict = field(default_factory=dict)

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
            if "explore_hold" in self.model.get("notes", {}):
                lines.append(f"exploration: {self.model['notes']['explore_hold']}")
        if self.period_accuracy:
            a = self.period_accuracy
            lines.append(
                f"model on the evaluation period ({a['intervals']:.0f} intervals): PUE MAE "
                f"{a['pue_mae']:.4f} (bias {a['pue_bias']:+.4f}), inlet MAE "
                f"{a['inlet_mae_c']:.2f} degC (bias {a['inlet_bias_c']:+.2f})"
            )
        if self.mv:
            v = self.mv
            lines.append(
                f"M&V of the loop ({v['baseline_days']:g} baseline days, option "
                f"{v['ipmvp_option']}): {v['savings_kwh']:.0f} +- {v['uncertainty_kwh']:.0f} kWh "
                f"({100 * v['confidence']:.0f} %), {v['status']}; truth "
                f"{v['truth_kwh']:.0f} kWh" + (f" ({v['reason']})" if v["reason"] else "")
            )
        return "\n".join(lines)


def explore_and_train(
    site: Site, start: datetime, days: float, seed: int = 0,
    plant: EvaluationPlant | None = None,
) -> PlantModel:
    """Run ``days`` of exploration ending at ``start`` into a scratch store; train on it.

    The sweep's holds are ``[optimizer] explore_hold_s`` made to fit the plant
    (:func:`sweep_hold_s`: at least two plant steps, whole frame steps); where the settling
    lag the sweep measures leaves no settled row per hold, the sweep is run again with longer
    holds (:func:`lengthened_hold_s`, at most twice). The model's ``notes`` say which hold
    it was trained on (``explore_hold_s``) and why."""
    cfg = site.optimizer
    plant = plant or TwinPlant(site, seed)
    hold = sweep_hold_s(cfg.explore_hold_s, cfg.step_s, plant.step_s)
    why = []
    for _ in range(3):
        frame = _explore(site, plant, start, days, seed, hold)
        lag = response_lag(frame.data.sort_index(), frame.step_s)
        longer = lengthened_hold_s(hold, frame.step_s, lag)
        if longer is None:
            break
        why.append(f"{hold} s holds settle no row at a lag of {lag} rows")
        hold = longer
    model = train(frame, cfg.model_kind, cfg.target, cfg.cv_splits, seed=seed)
    model.notes["explore_hold_s"] = str(hold)
    if why:
        model.notes["explore_hold"] = "; ".join(why) + f": swept again with {hold} s holds"
    return model


def _explore(site: Site, plant: EvaluationPlant, start: datetime, days: float, seed: int,
             hold_s: int) -> TrainingFrame:
    """The frame of ``days`` of sweep (holds of ``hold_s``) ending at ``start``."""
    t0 = datetime_to_ms(start - timedelta(days=days))
    steps = round(days * 86400 / plant.step_s)
    ts = t0 + np.arange(steps, dtype=np.int64) * plant.step_s * 1000
    schedule = _sweep(site, plant, t0, steps, seed, hold_s)
    with Store(":memory:") as store:
        for cols in plant.readings(t0, schedule):
            store.append(cols)
        return build_frame(store, site, int(ts[0]), int(ts[-1]) + plant.step_s * 1000)


class _Decider:
    """``propose`` with ``predictor`` at each decision (a :data:`Decide`); keeps the choices'
    predicted facility power (kW), IT power (kW) and hottest inlet (degC) per interval (NaN
    where it made no prediction). Levers the plant lacks are ``enabled = false`` (left where
    the state has them) and not ``integer`` (the frames hold an unmetered integer lever at its
    range's midpoint, which a whole-number search window would not contain)."""

    def __init__(self, predictor: PlantPredictor, site: Site, plant: EvaluationPlant,
                 intervals: int) -> None:
        self.predictor, self.site = predictor, site
        sp = site.optimizer.setpoints
        self.cfg = site.optimizer.model_copy(update={"setpoints": sp.model_copy(update={
            name.value: getattr(sp, name.value).model_copy(update={"enabled": False, "integer": False})
            for name in SETPOINTS if name not in plant.levers})})
        self.current = dict(plant.conventional)
        self.predicted = np.full((3, intervals), np.nan)

    def __call__(self, i: int, state: PlantState | None) -> dict[SetpointName, float]:
        if state is not None:
            proposal = propose(self.predictor, state, self.cfg, site=self.site.id, levels=3)
            # A type with several instances also has per-instance keys (<name>@<meter>); the
            # evaluation plants actuate one value per type, which the type's key carries.
            # (a lever the site does not meter is left out of the proposal: it stays)
            self.current |= {SetpointName(k): v for k, v in proposal.proposed.items()
                             if "@" not in k}
            if proposal.proposed_kw is not None:
                self.predicted[:, i] = (proposal.proposed_kw, proposal.proposed_it_kw,
                                        proposal.predicted_inlet_c)
        return dict(self.current)


def _accuracy(predicted: np.ndarray, run: PlantRun, per_step: int, target: str
              ) -> dict[str, float]:
    """The loop model's predictions at each decision against the interval that followed."""
    def per_interval(a: np.ndarray, how: Callable = np.mean) -> np.ndarray:
        return how(a.reshape(-1, per_step), axis=1)

    facility_hat, it_hat, inlet_hat = predicted
    it = per_interval(run.it_kw)
    measured = per_interval(run.facility_kw if target == "facility" else run.cooling_kw + it)
    inlet = per_interval(run.rack_inlet_max_c, np.max)
    ok = np.isfinite(facility_hat)
    pue_hat = facility_hat[ok] / it_hat[ok]
    pue = measured[ok] / it[ok]
    return {
        "pue_mae": float(np.mean(np.abs(pue_hat - pue))),
        "pue_bias": float(np.mean(pue_hat - pue)),
        "inlet_mae_c": float(np.mean(np.abs(inlet_hat[ok] - inlet[ok]))),
        "inlet_bias_c": float(np.mean(inlet_hat[ok] - inlet[ok])),
        "intervals": float(np.count_nonzero(ok)),
    }


def _changes(setpoints: Mapping[SetpointName, np.ndarray],
             start: Mapping[SetpointName, float]) -> int:
    """Intervals whose setpoints differ from the previous interval's (the first: from
    ``start``)."""
    names = list(setpoints)
    a = np.array([np.concatenate([[start[n]], setpoints[n]]) for n in names])
    return int(np.count_nonzero(np.any(np.diff(a, axis=1) != 0, axis=0)))


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


def _sweep(site: Site, plant: EvaluationPlant, t0_ms: int, steps: int, seed: int,
           hold_s: int | None = None) -> dict[str, np.ndarray]:
    """The exploration's setpoints per plant step from ``t0_ms`` (holds of ``hold_s``, default
    ``[optimizer] explore_hold_s``)."""
    ts = t0_ms + np.arange(steps, dtype=np.int64) * plant.step_s * 1000
    return exploration_schedule(
        ts, site.optimizer, hold_s=hold_s, seed=seed,
        held={SETPOINTS[k]: v for k, v in plant.conventional.items()})


def _per_step(setpoints: Mapping[SetpointName, np.ndarray], per_step: int
              ) -> dict[str, np.ndarray]:
    return {SETPOINTS[k]: np.repeat(v, per_step) for k, v in setpoints.items()}


def verify_savings(site: Site, plant: EvaluationPlant, model: PlantModel, start_ms: int,
                   baseline_start_ms: int, baseline_days: float,
                   loop: Mapping[SetpointName, np.ndarray], seed: int) -> dict:
    """M&V of the loop as a measure (``measure_savings``, the site's ``[optimizer.mv]``) on one
    timeline, as a site lives it: ``baseline_days`` from ``baseline_start_ms`` at the
    conventional setpoints, the exploration sweep (``seed``, the holds the model was trained
    on) up to ``start_ms``, then the loop's setpoints (the post-period). The truth is the same
    timeline with the conventional setpoints after ``start_ms`` (same history) minus the
    loop's, in kWh.

    One run, not a baseline run and a post-period run each from its own start: a plant's
    state can outlast days (measured on the generated EnergyPlus hall in Phoenix: its
    chilled-water pump drew 18.7 kW through 2 July in a run started on 17 June and 21.4-22.0
    kW in one started on 1 July, 0.3 % of facility power), which separate runs would add to
    the baseline's error."""
    cfg = site.optimizer
    per_step = cfg.interval_s // plant.step_s
    post = _per_step(loop, per_step)
    post_steps = len(next(iter(post.values())))
    base_steps = round(baseline_days * 86400 / plant.step_s)
    gap_steps = (start_ms - baseline_start_ms) // (plant.step_s * 1000) - base_steps
    hold = model.notes.get("explore_hold_s")  # the sweep the model was trained on
    sweep = _sweep(site, plant, baseline_start_ms + base_steps * plant.step_s * 1000,
                   gap_steps, seed, None if hold is None else int(hold))
    spans = {"pre": (baseline_start_ms, baseline_start_ms + base_steps * plant.step_s * 1000),
             "post": (start_ms, start_ms + post_steps * plant.step_s * 1000)}
    frames: dict[str, TrainingFrame] = {}
    for name, after in (("loop", post), ("conventional", {})):
        timeline = {
            col: np.concatenate([np.full(base_steps, value), sweep[col],
                                 after.get(col, np.full(post_steps, value))])
            for col, value in ((SETPOINTS[k], v) for k, v in plant.conventional.items())
        }
        with Store(":memory:") as store:
            for cols in plant.readings(baseline_start_ms, timeline):
                store.append(cols)
            # the baseline is the loop run's (the conventional run has the same history)
            for span in ("pre", "post") if name == "loop" else ("post",):
                frames[f"{name} {span}"] = build_frame(
                    store, site, *spans[span], step_s=cfg.mv.step_s, utility=True)
    pre, actual = frames["loop pre"], frames["loop post"]
    column = "cooling_kw" if cfg.mv.target == "cooling" else "utility_kw"
    # over the post-period rows both runs' frames kept (M&V measures the loop's)
    saved = frames["conventional post"].data[column].sub(actual.data[column]).dropna()
    truth_kwh = float(saved.sum()) * actual.step_h
    r = measure_savings(pre, actual, "optimizer loop", target=cfg.mv.target, settings=cfg.mv,
                        it_response=model.it_response)
    return {"savings_kwh": r.savings_kwh, "uncertainty_kwh": r.uncertainty_kwh,
            "confidence": r.confidence, "truth_kwh": truth_kwh, "status": r.status,
            "reason": r.reason, "basis": r.basis, "ipmvp_option": r.ipmvp_option,
            "cvrmse_pct": r.cvrmse_pct, "baseline_days": baseline_days}


def run_evaluation(
    site: Site,
    days: float,
    start: datetime | None = None,
    *,
    explore_days: float = 14.0,
    baseline_days: float = 0.0,
    seed: int | None = None,
    model: PlantModel | None = None,
    plant: EvaluationPlant | None = None,
    progress: Callable[[str], object] | None = None,
) -> Evaluation:
    """Run the three scenarios (see the module docstring) on ``plant`` (default: the site's
    own, :func:`site_plant`). ``model`` skips exploration. ``baseline_days`` > 0 also
    verifies the loop's saving with M&V against a baseline of that many days at the
    conventional setpoints before the exploration (:func:`verify_savings`)."""
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
    say("running the conventional setpoints")
    setpoints = {"fixed": {k: np.full(intervals, v) for k, v in plant.conventional.items()}}
    runs = {"fixed": plant.run(start_ms, _per_step(setpoints["fixed"], per_step))}
    say("running the loop")
    decider = _Decider(model, site, plant, intervals)
    setpoints["loop"], runs["loop"] = plant.control(start_ms, intervals, cfg.interval_s, decider)
    say("running the oracle")
    setpoints["oracle"], runs["oracle"] = plant.oracle(start_ms, intervals, cfg.interval_s)
    scenarios = {
        name: _scenario(name, runs[name], per_step, plant.step_s, cfg.inlet_limit_c,
                        _changes(setpoints[name], plant.conventional))
        for name in runs
    }
    mv = {}
    if baseline_days > 0:
        say(f"M&V: {baseline_days:g} baseline days before the exploration")
        begin = datetime_to_ms(start - timedelta(days=explore_days + baseline_days))
        mv = verify_savings(site, plant, model, start_ms, begin, baseline_days,
                            setpoints["loop"], seed)
    return Evaluation(
        start_ms=start_ms, days=days, interval_s=cfg.interval_s,
        inlet_limit_c=cfg.inlet_limit_c, model=model.summary(),
        period_accuracy=_accuracy(decider.predicted, runs["loop"], per_step, cfg.target),
        mv=mv, **scenarios,
    )
