"""Scenario runs on the EnergyPlus plant for evaluations: per-interval totals of a schedule or
a control loop, and a quasi-steady oracle over a grid of fixed setpoints.

These are the building blocks ``optimize evaluate`` needs on a plant it cannot predict with
formulas: :func:`run_intervals` drives a fresh :class:`EnergyPlusPlant` (same weather and loads
every run: EnergyPlus is deterministic) either open loop (one setpoint per interval) or closed
loop (``choose`` sees the last timestep's readings at each interval boundary and returns the
setpoints of the next interval); :func:`grid_oracle` runs every combination of a setpoint grid
and keeps, interval by interval, the feasible one with the least facility energy.

Energies in kWh per interval (facility = grid_import meters, IT = it_load meters, cooling = the
cooling roles); inlet = the highest rack-inlet reading of the interval's timesteps, degC.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from dcpue.config import Meter, MeterKind, MeterRole, SetpointName, Site
from dcpue.config.topology import COOLING_ROLES
from dcpue.twin.energyplus import EnergyPlusPlant, EnergyPlusStep

#: ``choose(interval index, last timestep or None before the first) -> setpoints``.
Chooser = Callable[[int, EnergyPlusStep | None], Mapping[SetpointName, float]]


@dataclass(frozen=True)
class IntervalTotals:
    """One run: per EnergyPlus timestep (``step_*`` arrays: kWh over the timestep, the highest
    rack inlet at its end in degC) and, as properties, per control interval of ``interval_s``
    (``facility_kwh``, ``it_kwh``, ``cooling_kwh`` summed, ``max_inlet_c`` the highest).
    ``setpoints``: the values the plant ran each interval with."""

    start_ms: int
    interval_s: int
    step_s: int
    step_facility_kwh: np.ndarray
    step_it_kwh: np.ndarray
    step_cooling_kwh: np.ndarray
    step_inlet_c: np.ndarray
    setpoints: dict[SetpointName, np.ndarray]

    def _per_interval(self, a: np.ndarray, how: Callable = np.sum) -> np.ndarray:
        return how(a.reshape(-1, self.interval_s // self.step_s), axis=1)

    @property
    def facility_kwh(self) -> np.ndarray:
        return self._per_interval(self.step_facility_kwh)

    @property
    def it_kwh(self) -> np.ndarray:
        return self._per_interval(self.step_it_kwh)

    @property
    def cooling_kwh(self) -> np.ndarray:
        return self._per_interval(self.step_cooling_kwh)

    @property
    def max_inlet_c(self) -> np.ndarray:
        return self._per_interval(self.step_inlet_c, np.max)

    def violations(self, limit_c: float) -> int:
        """Intervals with an inlet above ``limit_c``."""
        return int(np.sum(self.max_inlet_c > limit_c))

    @property
    def pue(self) -> float:
        return float(self.step_facility_kwh.sum() / self.step_it_kwh.sum())


def _kwh(site: Site, plant: EnergyPlusPlant, roles: frozenset[MeterRole]) -> list[tuple[str, float]]:
    """(meter id, factor to kWh over a timestep) of the fed meters with ``roles``, sub-meters
    of one of them left out (a CRAH power meter under the CRAH counter would count twice)."""
    h = plant.step_s / 3600.0
    fed = [f.meter for f in plant.feeds if f.meter.role in roles]
    ids = {m.id for m in fed}

    def under(m: Meter) -> bool:
        seen = set()
        while m.parent is not None and m.parent not in seen:
            if m.parent in ids:
                return True
            seen.add(m.parent)
            m = site.meter_by_id[m.parent]
        return False

    return [(m.id, 1.0 if m.kind is MeterKind.COUNTER else h) for m in fed if not under(m)]


def run_intervals(site: Site, *, start: datetime | None, intervals: int, interval_s: int,
                  setpoints: Mapping[SetpointName, np.ndarray] | None = None,
                  choose: Chooser | None = None,
                  on_step: Callable[[EnergyPlusStep], object] | None = None) -> IntervalTotals:
    """``intervals`` control intervals from ``start``: ``setpoints`` (one value per interval)
    open loop, or ``choose`` closed loop (exactly one of them). ``on_step`` sees every
    timestep (e.g. to feed its readings to a store or a live state) before the next one."""
    if (setpoints is None) == (choose is None):
        raise ValueError("give exactly one of setpoints or choose")
    n = intervals
    with EnergyPlusPlant(site, days=n * interval_s / 86400, start=start) as plant:
        if interval_s % plant.step_s:
            raise ValueError(f"interval_s {interval_s} must be a multiple of the EnergyPlus "
                             f"timestep {plant.step_s} s")
        per = interval_s // plant.step_s
        meters = {g: _kwh(site, plant, roles) for g, roles in (
            ("facility", frozenset({MeterRole.GRID_IMPORT})), ("it", frozenset({MeterRole.IT_LOAD})),
            ("cooling", COOLING_ROLES))}
        inlets = [f.meter.id for f in plant.feeds
                  if f.meter.role is MeterRole.RACK_INLET_TEMPERATURE]
        out = {g: np.zeros(n * per) for g in meters}
        out["inlet"] = np.full(n * per, -np.inf)
        chosen = {k: np.empty(n) for k in plant.levers}
        last: EnergyPlusStep | None = None
        for i in range(n):
            sp = ({k: float(v[i]) for k, v in setpoints.items()} if setpoints is not None
                  else dict(choose(i, last)))
            for j in range(i * per, (i + 1) * per):
                last = plant.step(sp if j == i * per else None)
                if on_step is not None:
                    on_step(last)
                for g, ids in meters.items():
                    out[g][j] = sum(last.values[m] * k for m, k in ids)
                if inlets:
                    out["inlet"][j] = max(last.values[m] for m in inlets)
            for k in plant.levers:
                chosen[k][i] = plant.setpoints[k]
        return IntervalTotals(plant.start_ms, interval_s, plant.step_s, out["facility"],
                              out["it"], out["cooling"], out["inlet"], chosen)


def grid_oracle(site: Site, *, start: datetime | None, intervals: int, interval_s: int,
                grid: Mapping[SetpointName, list[float]], inlet_limit_c: float
                ) -> tuple[IntervalTotals, list[IntervalTotals]]:
    """The quasi-steady oracle: every combination of ``grid`` run open loop at fixed
    setpoints; per interval the feasible run (inlet <= limit) with the least facility energy
    (if none is feasible, the coolest). Returns (oracle, the runs). Quasi-steady: it assumes an
    interval's energy depends on its own setpoints only (true to the room air's thermal mass,
    which is small in a data hall; the ITE inlet lags one timestep)."""
    names = list(grid)
    runs = [
        run_intervals(site, start=start, intervals=intervals, interval_s=interval_s,
                      setpoints={k: np.full(intervals, v) for k, v in zip(names, combo, strict=True)})
        for combo in itertools.product(*(grid[k] for k in names))
    ]
    facility = np.array([r.facility_kwh for r in runs])
    inlet = np.array([r.max_inlet_c for r in runs])
    cost = np.where(inlet <= inlet_limit_c, facility, np.inf)
    pick = np.where(np.isfinite(cost).any(axis=0), cost.argmin(axis=0), inlet.argmin(axis=0))
    per = interval_s // runs[0].step_s
    steps = np.repeat(pick, per), np.arange(intervals * per)

    def take(attr: str) -> np.ndarray:
        return np.array([getattr(r, attr) for r in runs])[steps]

    oracle = IntervalTotals(
        runs[0].start_ms, interval_s, runs[0].step_s, take("step_facility_kwh"),
        take("step_it_kwh"), take("step_cooling_kwh"), take("step_inlet_c"),
        {k: np.array([r.setpoints[k] for r in runs])[pick, np.arange(intervals)]
         for k in runs[0].setpoints},
    )
    return oracle, runs
