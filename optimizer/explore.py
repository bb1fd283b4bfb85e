"""Exploration schedule: setpoints randomly perturbed within their hard bounds, each held for
a while, so a model can learn how the plant responds to every lever.

A model trained only on a plant run at fixed setpoints has never seen the setpoints change and
cannot predict what a change does. Real sites need the same thing as the twin: a commissioning
sweep in which each setpoint visits its allowed range (within bounds the operator accepts as
safe, with the rack-inlet alarms watched) before the optimizer is trusted.
"""

from __future__ import annotations

import math

import numpy as np
from dcpue.config.optimizer import OptimizerSettings
from dcpue.optimizer.frames import SETPOINTS
from dcpue.optimizer.propose import setpoint_bounds


def exploration_schedule(
    ts_ms: np.ndarray, cfg: OptimizerSettings, *, hold_s: int | None = None, seed: int = 0,
    held: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Setpoint arrays (keyed by frame column, e.g. ``supply_air_c``) for timestamps ``ts_ms``.

    Each hold period ``(k * hold_s, (k + 1) * hold_s]`` since the epoch (end-stamped samples,
    so a hold fills whole frame buckets) draws every setpoint
    uniformly within its hard bounds (integers uniformly among the whole values). The draws
    follow one generator seeded by ``seed`` from the first period of ``ts_ms`` on, so call it
    once for a whole sweep: the same ``(ts_ms, seed)`` always gives the same schedule, but a
    sweep cut into pieces draws differently. Held levers (``enabled = false`` or ``min = max``)
    stay constant: at ``min = max``, else at ``held[column]`` (the plant's own value).
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
        if b.held:  # not the optimizer's: stays where the plant runs it (min = max: there)
            value = b.min if b.min == b.max else (held or {}).get(column, (b.min + b.max) / 2)
            draws = np.full(count, float(value))
        elif b.integer:
            draws = rng.integers(int(np.ceil(b.min)), int(np.floor(b.max)) + 1, count)
        else:
            draws = rng.uniform(b.min, b.max, count)
        out[column] = draws.astype(float)[period - first]
    return out


def sweep_hold_s(hold_s: int, frame_step_s: int, plant_step_s: int) -> int:
    """The hold a sweep uses for a requested ``hold_s`` (s): at least two plant readings
    (``plant_step_s``) and whole frame steps (``frame_step_s``), so every hold fills at least
    one frame row with settled readings of its own draw. The native twin (1-min steps,
    15-min frames): 1800 s stays 1800 s."""
    hold = max(int(hold_s), 2 * int(plant_step_s))
    return math.ceil(hold / frame_step_s) * int(frame_step_s)


def lengthened_hold_s(hold_s: int, frame_step_s: int, lag: int) -> int | None:
    """A longer hold (s) when a sweep of ``hold_s`` leaves no settled frame row per hold at
    the settling lag the sweep itself measured (``lag`` rows after a lever change the rack
    inlet still moves, :func:`dcpue.optimizer.frames.response_lag`): holds of ``2 lag``
    rows, half of each settled. None when each hold spans more than ``lag`` rows (at least one
    settled row per draw). EnergyPlus's generated hall in Miami at 15-min steps settles in 3
    rows where its coil runs out of water flow: 30-min holds (2 rows) leave none, 90-min holds
    half (docs/energyplus.md, The CRAH coil's analysis)."""
    rows = hold_s // frame_step_s
    if lag <= 0 or rows > lag:
        return None
    return 2 * lag * frame_step_s
