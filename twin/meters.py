"""Turn simulated flows into what the site's meters report: counters, powers and states.

Energy counters accumulate kWh (water counters m3) from a seeded starting offset, wrap at the
meter's ``rollover`` and can restart from zero once (``[twin] counter_reset``). A counter's value at
step ``k`` includes the energy of the interval ending at ``k`` (power sampled at ``k`` x step).
Several meters with the same role share that role's flow equally.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from dcpue.config import ConfigError, Meter, MeterKind, MeterRole, Site
from dcpue.config.topology import COOLING_EQUIPMENT
from dcpue.core.readings import ReadingColumns
from dcpue.core.units import unit

#: Roles the twin has no model for: their meters get no readings.
UNMODELLED_ROLES = frozenset({
    MeterRole.TRANSFORMER_LOSS, MeterRole.REUSED_HEAT, *COOLING_EQUIPMENT,
    MeterRole.VOLTAGE, MeterRole.CURRENT, MeterRole.POWER_FACTOR, MeterRole.APPARENT_POWER,
    MeterRole.REACTIVE_POWER, MeterRole.FREQUENCY,
})


@dataclass
class _Counter:
    offset: float  # in the meter's unit
    total: float = 0.0  # canonical units (kWh or m3) accumulated since the twin's start
    reset_base: float | None = None  # total at the step before the reset


class MeterBank:
    """Counter state and unit conversion for every meter the twin can feed.

    ``flows`` passed to :meth:`columns` map a flow name to an array per step: for energy roles
    the role value (kW), ``water`` in m3/h, and state names such as ``outdoor_temperature``
    or ``setpoint:supply_air_temperature`` in canonical units.
    """

    def __init__(self, site: Site, seed: int, step_s: int) -> None:
        self.step_s = step_s
        self.meters = [m for m in site.meters if m.role not in UNMODELLED_ROLES]
        self.unmodelled = [m.id for m in site.meters if m.role in UNMODELLED_ROLES]
        self._share = {
            m.id: 1.0 / sum(1 for o in self.meters if o.role is m.role) for m in self.meters
        }
        self._labels = [
            np.array([getattr(m, attr) for m in self.meters], dtype=object)
            for attr in ("id", "quantity", "unit")
        ]
        self._counters = {
            m.id: _Counter(_offset(m, seed)) for m in self.meters if m.kind is MeterKind.COUNTER
        }
        reset = site.twin.counter_reset
        self.reset_meter: str | None = None
        self.reset_step = 0
        if reset is not None:
            meter = site.meter_by_id.get(reset.meter)
            if meter is None or meter.kind is not MeterKind.COUNTER:
                raise ConfigError(
                    f"twin.counter_reset.meter: {reset.meter!r} is not a counter meter of the site"
                )
            self.reset_meter = reset.meter
            self.reset_step = math.ceil(reset.at_day * 86400 / step_s)

    def columns(self, k0: int, ts_ms: np.ndarray, flows: Mapping[str, np.ndarray]) -> ReadingColumns:
        """Readings of every meter for steps ``k0 .. k0 + len(ts_ms) - 1``; advances counters."""
        values = []
        for m in self.meters:
            canonical = flows[flow_name(m)]
            if m.kind is MeterKind.COUNTER:
                values.append(self._accumulate(m, k0, canonical * self._share[m.id]))
            elif m.kind is MeterKind.POWER:
                values.append(_from_canonical(canonical * self._share[m.id], m))
            else:
                values.append(_from_canonical(canonical, m))
        n = len(ts_ms)
        return ReadingColumns(
            np.tile(np.asarray(ts_ms, dtype=np.int64), len(self.meters)),
            np.repeat(self._labels[0], n),
            np.repeat(self._labels[1], n),
            np.concatenate(values) if values else np.empty(0),
            np.repeat(self._labels[2], n),
        )

    def _accumulate(self, m: Meter, k0: int, rate: np.ndarray) -> np.ndarray:
        """Counter values in the meter's unit; ``rate`` in kW (or m3/h)."""
        state = self._counters[m.id]
        total = state.total + np.cumsum(rate * (self.step_s / 3600.0))
        values = state.offset + _from_canonical(total, m)
        if m.id == self.reset_meter and self.reset_step < k0 + len(rate):
            i = self.reset_step - k0
            if state.reset_base is None:
                state.reset_base = state.total if i <= 0 else float(total[i - 1])
            after = slice(max(i, 0), None)
            values[after] = _from_canonical(total[after] - state.reset_base, m)
        state.total = float(total[-1])
        return np.mod(values, m.rollover) if m.rollover else values


def flow_name(m: Meter) -> str:
    """The flow a meter reads: its role, or ``setpoint:<name>`` for setpoint meters."""
    return f"setpoint:{m.setpoint}" if m.role is MeterRole.SETPOINT else str(m.role)


def _from_canonical(values: np.ndarray, m: Meter) -> np.ndarray:
    u = unit(m.unit)
    return (values - u.offset) / u.scale


def _offset(m: Meter, seed: int) -> float:
    """Seeded starting value of a counter, in its unit (below 90 % of its rollover)."""
    rng = np.random.default_rng([seed, zlib.crc32(m.id.encode())])
    return float(rng.uniform(0.0, 0.9 * m.rollover if m.rollover else 1e6))
