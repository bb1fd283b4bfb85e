"""Exploration schedule: setpoints randomly perturbed within their hard bounds, each held for
a while, so a model can learn how the plant responds to every lever.

A model trained only on a plant run at fixed setpoints has never seen the setpoints change and
cannot predict what a change does. Real sites need the same thing as the twin: a commissioning
sweep in which each setpoint visits its allowed range (within bounds the operator accepts as
safe, with the rack-inlet alarms watched) before the optimizer is trusted.
"""

from __future__ import annotations

import numpy as np
from dcpue.config.optimizer import OptimizerSettings
from dcpue.optimizer.frames import SETPOINTS
from dcpue.optimizer.propose import setpoint_bounds


def exploration_schedule(
    ts_ms: np.ndarray, cfg: OptimizerSettings, *, hold_s: int | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Setpoint arrays (keyed by frame column, e.g. ``supply_air_c``) for timestamps ``ts_ms``.

    Each hold period ``(k * hold_s, (k + 1) * hold_s]`` since the epoch (end-stamped samples,
    so a hold fills whole frame buckets) draws every setpoint
    uniformly within its hard bounds (integers uniformly among the whole values). The draws
    follow one generator seeded by ``seed`` from the first period of ``ts_ms`` on, so call it
    once for a whole sweep: the same ``(ts_ms, seed)`` always gives the same schedule, but a
    sweep cut into pieces draws differently.
    """
    hold_ms = (hold_s or cfg.explore_hold_s) * 1000
    # a sample stamped ts describes the time up to ts (end-stamped, as frames read it)
    period = (np.asarray(ts_ms, dtype=np.int64) - 1) // hold_ms
    first = int(period.min()) if len(period) else 0
    rng = np.random.default_rng(seed)
    count = int(period.max()) - first + 1 if len(period) else 0
    out = {}
    for name, column in SETPOINTS.items():
        b = setpoint_bounds(cfg)[name.value]
        if b.integer:
            draws = rng.integers(int(np.ceil(b.min)), int(np.floor(b.max)) + 1, count)
        else:
            draws = rng.uniform(b.min, b.max, count)
        out[column] = draws.astype(float)[period - first]
    return out
