"""The EnergyPlus plant (``[twin] engine = "energyplus"``) as an :class:`EvaluationPlant`.

EnergyPlus has no equations the optimizer could call, so the adapter runs it: every scenario
is a fresh lock-step run (:mod:`dcpue.twin.energyplus_scenarios`) over the same weather and
loads (EnergyPlus is deterministic, so the runs share one world).

- ``control`` is the closed loop as the daemon would run it: every timestep's readings feed a
  :class:`dcpue.optimizer.live.LiveState`, and at each interval boundary ``decide`` gets the
  state of the newest complete frame step (the same frame code as training); the first
  interval, before any reading, runs the conventional setpoints.
- ``oracle`` is :func:`grid_oracle`: every combination of ``oracle_points`` values per lever
  (evenly over its hard bounds, plus the conventional value) run at fixed setpoints, and per
  interval the feasible run (inlet <= ``inlet_limit_c``) with the least facility energy.

Levers are the site's actuated setpoints that a setpoint meter reads back (the model can only
learn a lever it sees); others keep their conventional value throughout. Runs start at
00:00 local standard time (EnergyPlus runs whole days of the weather file).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from dcpue.config import SetpointName, Site
from dcpue.core.readings import ReadingColumns, ms_to_datetime
from dcpue.optimizer.evaluate import Decide, EvaluationError, PlantRun
from dcpue.optimizer.frames import SETPOINTS, FrameError, setpoint_meters, unmetered_value
from dcpue.optimizer.live import LiveState
from dcpue.optimizer.propose import setpoint_bounds
from dcpue.twin.energyplus import EnergyPlusPlant, EnergyPlusStep, load_api, site_levers
from dcpue.twin.energyplus_scenarios import IntervalTotals, grid_oracle, run_intervals


def _plant_run(totals: IntervalTotals) -> PlantRun:
    per_h = 3600.0 / totals.step_s
    return PlantRun(totals.step_facility_kwh * per_h, totals.step_cooling_kwh * per_h,
                    totals.step_it_kwh * per_h, totals.step_inlet_c)


class EnergyPlusEvaluationPlant:
    """The site's EnergyPlus model (generated hall or your own) for ``optimize evaluate``."""

    def __init__(self, site: Site, *, oracle_points: int = 5) -> None:
        load_api()  # the extra's clear error, before any run
        self.site = site
        self.step_s = 3600 // site.twin.energyplus.timesteps_per_hour
        self.oracle_points = oracle_points
        actuators, initial = site_levers(site)
        missing = sorted(str(k) for k in actuators if k not in initial)
        if missing:
            raise EvaluationError(
                f"site {site.id}: levers {missing} have no value in [twin.setpoints]: the "
                "conventional run needs one (the setpoints the plant runs with unoptimized)")
        metered = setpoint_meters(site)
        self.levers = [name for name in SETPOINTS if name in actuators and name in metered]
        self.conventional = {name: initial.get(name, unmetered_value(site, name))
                             for name in SETPOINTS}

    def _start(self, start_ms: int) -> datetime:
        """``start_ms`` as a datetime; EvaluationError unless it is 00:00 local standard time
        (EnergyPlus runs whole days of the weather file)."""
        start = ms_to_datetime(start_ms)
        tz = ZoneInfo(self.site.timezone)
        offset = tz.utcoffset(start) - (tz.dst(start) or timedelta(0))
        if (start + offset).time() != time(0):
            raise EvaluationError(
                f"EnergyPlus runs whole local days: {start.isoformat()} is not 00:00 local "
                f"standard time in {self.site.timezone}; give a start at midnight and whole "
                "exploration and baseline days")
        return start

    def _days(self, steps: int) -> float:
        return steps * self.step_s / 86400

    def _lever_schedule(self, setpoints: Mapping[str, np.ndarray]) -> dict[SetpointName, np.ndarray]:
        return {name: np.asarray(setpoints[SETPOINTS[name]], float) for name in self.levers}

    def readings(self, start_ms: int, setpoints: Mapping[str, np.ndarray]
                 ) -> Iterator[ReadingColumns]:
        steps = len(next(iter(setpoints.values())))
        with EnergyPlusPlant(self.site, days=self._days(steps), start=self._start(start_ms)
                             ) as plant:
            yield from plant.run(self._days(steps), setpoints=self._lever_schedule(setpoints))

    def run(self, start_ms: int, setpoints: Mapping[str, np.ndarray]) -> PlantRun:
        steps = len(next(iter(setpoints.values())))
        return _plant_run(run_intervals(
            self.site, start=self._start(start_ms), intervals=steps, interval_s=self.step_s,
            setpoints=self._lever_schedule(setpoints)))

    def control(self, start_ms: int, intervals: int, interval_s: int, decide: Decide
                ) -> tuple[dict[SetpointName, np.ndarray], PlantRun]:
        live = LiveState(self.site)

        def on_step(step: EnergyPlusStep) -> None:
            live.add(ReadingColumns.from_readings(step.readings))

        def choose(i: int, last: EnergyPlusStep | None) -> dict[SetpointName, float]:
            state = None
            if last is not None:
                try:
                    state = live.state(last.ts_ms)
                except FrameError:  # too little data yet: keep what runs
                    state = None
            chosen = decide(i, state)
            return {name: chosen[name] for name in self.levers}

        totals = run_intervals(self.site, start=self._start(start_ms), intervals=intervals,
                               interval_s=interval_s, choose=choose, on_step=on_step)
        return self._named(totals.setpoints), _plant_run(totals)

    def _named(self, applied: Mapping[SetpointName, np.ndarray]) -> dict[SetpointName, np.ndarray]:
        """Per-interval setpoints of every name (the non-levers at their conventional value)."""
        n = len(next(iter(applied.values())))
        return {name: np.asarray(applied[name], float) if name in applied
                else np.full(n, self.conventional[name]) for name in SETPOINTS}

    def oracle_grid(self) -> dict[SetpointName, list[float]]:
        """``oracle_points`` values per lever evenly over its hard bounds, and its
        conventional value."""
        bounds = setpoint_bounds(self.site.optimizer)
        grid = {}
        for name in self.levers:
            b = bounds[name.value]
            values = [self.conventional[name]]
            if not b.held:
                values += np.linspace(b.min, b.max, self.oracle_points).tolist()
            grid[name] = sorted({round(v, 6) for v in values})
        return grid

    def oracle(self, start_ms: int, intervals: int, interval_s: int
               ) -> tuple[dict[SetpointName, np.ndarray], PlantRun]:
        best, _ = grid_oracle(self.site, start=self._start(start_ms), intervals=intervals,
                              interval_s=interval_s, grid=self.oracle_grid(),
                              inlet_limit_c=self.site.optimizer.inlet_limit_c)
        return self._named(best.setpoints), _plant_run(best)
