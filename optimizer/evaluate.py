"""Twin evaluation: conventional setpoints vs the optimizer loop vs an oracle, same world.

Three runs of the digital twin over the same weather and IT load (same seed and start):

1. **fixed**: the twin's conventional setpoints (``[twin.setpoints]``) throughout;
2. **loop**: first an exploration period just before the evaluation window
   (:func:`dcpue.optimizer.explore.exploration_schedule`) is simulated into a store, framed and
   a model trained on it; then every control interval the loop calls :func:`propose` with that
   model on the conditions the meters show at the decision instant and applies the proposal;
3. **oracle**: the same :func:`propose` search, under the same constraints, but predicting with
   the twin's own physics (:func:`dcpue.twin.plant.evaluate`) instead of a learned model.

Energies are integrated at the twin's step (kWh); an interval violates the inlet limit when any
of its steps has a maximum rack inlet above ``inlet_limit_c``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from dcpue.config import SetpointName, Site
from dcpue.core.readings import datetime_to_ms, ms_to_datetime
from dcpue.core.store import Store
from dcpue.optimizer.explore import exploration_schedule
from dcpue.optimizer.frames import (
    SETPOINTS,
    build_frame,
    dew_point_c,
    site_pressure_pa,
    wet_bulb_c,
)
from dcpue.optimizer.models import PlantModel, PlantPredictor, Prediction, TrustRegion, train
from dcpue.optimizer.propose import PlantState, propose
from dcpue.twin.plant import Conditions, PlantParams, Setpoints, evaluate
from dcpue.twin.simulator import Twin


@dataclass(frozen=True, slots=True)
class TwinPredictor:
    """The oracle's "model": the twin's physics, exact, with no trust region."""

    params: PlantParams
    pressure_pa: float
    target: str = "facility"
    power_rmse_kw: float = 0.0
    inlet_rmse_c: float = 0.0
    trust: TrustRegion | None = None

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
    """The three runs and the model the loop used."""

    start_ms: int
    days: float
    interval_s: int
    inlet_limit_c: float
    fixed: Scenario
    loop: Scenario
    oracle: Scenario
    model: dict = field(default_factory=dict)

    def saving_kwh(self, run: Scenario, what: str = "cooling") -> float:
        return getattr(self.fixed, f"{what}_kwh") - getattr(run, f"{what}_kwh")

    @property
    def oracle_share(self) -> float:
        """Share of the oracle's cooling-energy saving the loop achieved (1 = all of it)."""
        best = self.saving_kwh(self.oracle)
        return self.saving_kwh(self.loop) / best if best > 0 else float("nan")

    def report(self) -> str:
        """A plain-text table for the terminal."""
        lines = [
            f"twin evaluation: {self.days:g} days from "
            f"{ms_to_datetime(self.start_ms).isoformat()}, control every "
            f"{self.interval_s // 60} min, inlet limit {self.inlet_limit_c:g} degC",
            f"{'run':<8}{'facility kWh':>14}{'cooling kWh':>13}{'PUE':>8}{'saved kWh':>11}"
            f"{'saved %':>9}{'max inlet':>10}{'violations':>11}",
        ]
        for run in (self.fixed, self.loop, self.oracle):
            saved = self.saving_kwh(run, "facility")
            lines.append(
                f"{run.name:<8}{run.facility_kwh:>14.0f}{run.cooling_kwh:>13.0f}{run.pue:>8.4f}"
                f"{saved:>11.0f}{100 * saved / self.fixed.facility_kwh:>9.2f}"
                f"{run.max_inlet_c:>10.2f}{run.violations:>11d}"
            )
        lines.append(
            f"loop achieved {100 * self.oracle_share:.1f} % of the oracle's cooling-energy saving"
            f" ({self.saving_kwh(self.loop):.0f} of {self.saving_kwh(self.oracle):.0f} kWh)"
        )
        if self.model:
            m = self.model["metrics"].get("holdout", self.model["metrics"]["cv"])
            lines.append(
                f"model {self.model['kind']} on {self.model['rows']} rows: held-out PUE MAE "
                f"{m['pue_mae']:.4f}, CV(RMSE) {m['power_cvrmse_pct']:.2f} %, NMBE "
                f"{m['power_nmbe_pct']:.2f} %, inlet RMSE {m['inlet_rmse_c']:.2f} degC"
            )
        return "\n".join(lines)


def _observed(twin: Twin, decisions: np.ndarray, p_pa: float) -> list[dict[str, float]]:
    """The conditions the meters show at each decision instant (wet bulb and dew point
    derived as in training frames)."""
    c = twin.conditions(decisions)
    db, rh = np.asarray(c.dry_bulb_c, float), np.asarray(c.relative_humidity_pct, float)
    columns = {
        "it_kw": np.asarray(c.it_kw, float), "dry_bulb_c": db, "relative_humidity_pct": rh,
        "wet_bulb_c": wet_bulb_c(db, rh, p_pa), "dew_point_c": dew_point_c(db, rh),
    }
    return [{k: float(v[i]) for k, v in columns.items()} for i in range(len(decisions))]


def _setpoints_of(values: Mapping[SetpointName, np.ndarray | float]) -> Setpoints:
    return Setpoints(**{column: values[name] for name, column in SETPOINTS.items()})


def explore_and_train(site: Site, start: datetime, days: float, seed: int = 0) -> PlantModel:
    """Simulate ``days`` of exploration ending at ``start`` into a scratch store; train on it."""
    cfg = site.optimizer
    twin = Twin(site, seed=seed, start=start - timedelta(days=days))
    steps = round(days * 86400 / twin.step_s)
    ts = twin.now_ms + np.arange(steps, dtype=np.int64) * twin.step_s * 1000
    schedule = exploration_schedule(ts, cfg, seed=seed)
    with Store(":memory:") as store:
        for cols in twin.run(days, setpoints=Setpoints(**schedule)):
            store.append(cols)
        frame = build_frame(store, site, int(ts[0]), int(ts[-1]) + twin.step_s * 1000)
    return train(frame, cfg.model_kind, cfg.target, cfg.cv_splits, seed=seed)


def _control(
    predictor: PlantPredictor, site: Site, decisions: np.ndarray,
    observed: list[dict[str, float]], start_sp: Mapping[SetpointName, float],
    measure: Callable[[dict[str, float], Mapping[SetpointName, float]], float],
) -> tuple[dict[SetpointName, np.ndarray], int]:
    """Setpoints per control interval chosen by ``propose`` with ``predictor``; changes count.
    ``measure`` gives the rack inlet the sensors show at a decision (degC)."""
    current = dict(start_sp)
    chosen = {name: np.empty(len(decisions)) for name in SETPOINTS}
    changes = 0
    for i, ts in enumerate(decisions):
        state = PlantState(int(ts), observed[i], current, measure(observed[i], current))
        proposal = propose(predictor, state, site.optimizer, site=site.id, levels=3)
        changes += proposal.status == "proposed"
        current = {SetpointName(k): v for k, v in proposal.proposed.items()}
        for name in SETPOINTS:
            chosen[name][i] = current[name]
    return chosen, changes


def _simulate(
    site: Site, name: str, start: datetime, per_interval: Mapping[SetpointName, np.ndarray],
    intervals: int, interval_s: int, limit_c: float, changes: int, seed: int,
) -> Scenario:
    twin = Twin(site, seed=seed, start=start)
    per_step = interval_s // twin.step_s
    sp = _setpoints_of({k: np.repeat(v, per_step) for k, v in per_interval.items()})
    flows = twin.simulate(intervals * per_step, sp)
    r, h = flows.result, twin.step_s / 3600.0
    inlet = np.asarray(r.rack_inlet_max_c).reshape(intervals, per_step).max(axis=1)
    return Scenario(
        name=name,
        facility_kwh=float(np.sum(r.facility_kw) * h),
        cooling_kwh=float(np.sum(r.cooling_kw) * h),
        it_kwh=float(np.sum(r.it_kw) * h),
        max_inlet_c=float(inlet.max()),
        violations=int(np.sum(inlet > limit_c)),
        intervals=intervals,
        changes=changes,
    )


def run_evaluation(
    site: Site,
    days: float,
    start: datetime | None = None,
    *,
    explore_days: float = 14.0,
    seed: int | None = None,
    model: PlantModel | None = None,
    progress: Callable[[str], object] | None = None,
) -> Evaluation:
    """Run the three scenarios (see the module docstring). ``model`` skips exploration."""
    cfg = site.optimizer
    seed = site.twin.seed if seed is None else seed
    start = start or site.twin.start
    say = progress or (lambda _msg: None)
    if cfg.interval_s % site.twin.step_s:
        raise ValueError(f"interval_s {cfg.interval_s} must be a multiple of twin.step_s")
    if model is None:
        say(f"exploring {explore_days:g} days and training")
        model = explore_and_train(site, start, explore_days, seed)
    twin = Twin(site, seed=seed, start=start)
    params = twin.params
    intervals = round(days * 86400 / cfg.interval_s)
    decisions = datetime_to_ms(start) + np.arange(intervals, dtype=np.int64) * cfg.interval_s * 1000
    conventional = {name: float(getattr(params.default_setpoints, column))
                    for name, column in SETPOINTS.items()}
    observed = _observed(twin, decisions, site_pressure_pa(site))
    runs = {"fixed": ({k: np.full(intervals, v) for k, v in conventional.items()}, 0)}
    say("running the loop")
    oracle = TwinPredictor(params, site_pressure_pa(site), target=cfg.target)

    def measure(conditions: dict[str, float], sp: Mapping[SetpointName, float]) -> float:
        x = conditions | {column: sp[name] for name, column in SETPOINTS.items()}
        return float(oracle.predict({k: np.array([v]) for k, v in x.items()}).rack_inlet_c[0])

    runs["loop"] = _control(model, site, decisions, observed, conventional, measure)
    say("running the oracle")
    runs["oracle"] = _control(oracle, site, decisions, observed, conventional, measure)
    scenarios = {
        name: _simulate(site, name, start, sp, intervals, cfg.interval_s, cfg.inlet_limit_c,
                        changes, seed)
        for name, (sp, changes) in runs.items()
    }
    return Evaluation(
        start_ms=datetime_to_ms(start), days=days, interval_s=cfg.interval_s,
        inlet_limit_c=cfg.inlet_limit_c, model=model.summary(), **scenarios,
    )
