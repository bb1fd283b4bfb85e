"""Energy in a time window from cumulative counters or power readings, with coverage.

Pure NumPy, no I/O. Timestamps are UTC epoch milliseconds (int64); counter values and
energies are in the meter's canonical unit (kWh for energy, m3 for water volume); power in kW.

Model: consecutive samples ``t[i] < t[i+1]`` form intervals. Each interval carries an amount
``e[i]`` and a rate that varies linearly from ``r0[i]`` to ``r1[i]`` (amount per ms) across it,
so the amount accumulated from the first sample up to any instant ``x`` is exact:
``A(x) = sum(e[:j]) + w * (r0[j] + r(x)) / 2`` with ``w = x - t[j]``, ``r(x) = r0[j] +
(r1[j] - r0[j]) * w / dt[j]`` (``j`` the interval holding ``x``). The amount in a window
``[a, b)`` is ``A(b) - A(a)``; the same construction over "measured" time gives coverage.

- **Counter** (cumulative energy, wraps to 0 at ``rollover``): ``e[i] = v[i+1] - v[i]``. A drop
  is a rollover when the counter was in the upper half of its range, the wrapped increment
  ``v[i+1] - v[i] + rollover`` is below half the range and (if ``max_power_kw`` is known) no
  more than ``max_power_kw * dt`` could deliver; otherwise it is a **reset** and the
  post-reset value is counted from zero (``e[i] = v[i+1]``). An increment above
  ``max_power_kw * dt`` (a jump, e.g. a meter swap) counts 0 and is unmeasured. The rate is
  constant over an interval (``r0 = r1 = e / dt``: the counter is interpolated linearly).
  Intervals longer than ``max_gap_ms`` keep their energy (the counter measured it) but count
  as unmeasured time, since when it was used inside the gap is unknown.
- **Power** (kW): trapezoid rule, ``e[i] = (p[i] + p[i+1]) / 2 * dt / 3.6e6`` kWh; intervals
  longer than ``max_gap_ms`` are not bridged (energy 0, unmeasured).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MS_PER_HOUR = 3_600_000.0


@dataclass(frozen=True, slots=True)
class Intervals:
    """Consecutive-sample intervals of one meter (arrays of equal length, time ordered).

    ``amount`` in kWh (or m3), ``rate0``/``rate1`` in amount per ms at the interval's start
    and end, ``measured`` whether the interval counts toward coverage; ``rollover``/``reset``
    flag the counter corrections applied to each interval.
    """

    t0: np.ndarray
    t1: np.ndarray
    amount: np.ndarray
    rate0: np.ndarray
    rate1: np.ndarray
    measured: np.ndarray
    rollover: np.ndarray
    reset: np.ndarray

    def __len__(self) -> int:
        return len(self.t0)

    @classmethod
    def empty(cls) -> Intervals:
        i, f, b = np.empty(0, np.int64), np.empty(0), np.empty(0, bool)
        return cls(i, i, f, f, f, b, b, b)

    def after(self, ms: int) -> Intervals:
        """The intervals that end after ``ms`` (those before it add nothing from ``ms`` on)."""
        first = int(np.searchsorted(self.t1, ms, side="right"))
        if first == 0:
            return self
        return Intervals(*(getattr(self, f)[first:] for f in Intervals.__slots__))


@dataclass(frozen=True, slots=True)
class MeterEnergy:
    """Amount one meter measured in a window: kWh (energy meters) or m3 (water meters).

    ``coverage`` is the measured share of the window, 0..1; ``rollovers``/``resets`` count
    the counter corrections inside it.
    """

    meter: str
    amount: float
    coverage: float
    rollovers: int = 0
    resets: int = 0


def clean_series(ts_ms: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort samples by time and keep the last of equal timestamps and finite values only."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    vs = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(vs)
    if not keep.all():
        ts, vs = ts[keep], vs[keep]
    if len(ts) > 1 and not (ts[1:] > ts[:-1]).all():
        order = np.argsort(ts, kind="stable")
        ts, vs = ts[order], vs[order]
        last = np.append(ts[1:] != ts[:-1], True)
        ts, vs = ts[last], vs[last]
    return ts, vs


def counter_intervals(
    ts_ms: np.ndarray,
    values: np.ndarray,
    rollover: float | None = None,
    max_gap_ms: float | None = None,
    max_power_kw: float | None = None,
) -> Intervals:
    """Intervals of a cumulative counter (see the module docstring for the rules).

    ``ts_ms`` strictly increasing; ``values`` and ``rollover`` in the canonical unit (kWh, m3);
    ``max_power_kw`` bounds plausible increments (energy counters only; None: no bound).
    """
    if len(ts_ms) < 2:
        return Intervals.empty()
    t0, t1 = ts_ms[:-1], ts_ms[1:]
    dt = (t1 - t0).astype(np.float64)
    before, after = values[:-1], values[1:]
    inc = after - before
    drop = inc < 0
    ceiling = None if max_power_kw is None else max_power_kw * dt / MS_PER_HOUR
    rolled = np.zeros(len(inc), bool)
    reset = rolled
    if drop.any():
        if rollover is not None:
            wrapped = inc + rollover
            rolled = drop & (before >= rollover / 2) & (wrapped < rollover / 2)
            if ceiling is not None:
                rolled &= wrapped <= ceiling
            inc = np.where(rolled, wrapped, inc)
        reset = drop & ~rolled
        inc = np.where(reset, after, inc)
    measured = np.ones(len(inc), bool)
    if ceiling is not None:
        measured = inc <= ceiling
        inc = np.where(measured, inc, 0.0)
    if max_gap_ms is not None:
        measured &= dt <= max_gap_ms
    rate = inc / dt
    return Intervals(t0, t1, inc, rate, rate, measured, rolled, reset)


def power_intervals(
    ts_ms: np.ndarray, kw: np.ndarray, max_gap_ms: float | None = None
) -> Intervals:
    """Trapezoid intervals of power readings in kW (amounts in kWh); long gaps not bridged."""
    if len(ts_ms) < 2:
        return Intervals.empty()
    t0, t1 = ts_ms[:-1], ts_ms[1:]
    dt = (t1 - t0).astype(np.float64)
    bridged = np.ones(len(dt), bool) if max_gap_ms is None else dt <= max_gap_ms
    r0 = np.where(bridged, kw[:-1] / MS_PER_HOUR, 0.0)
    r1 = np.where(bridged, kw[1:] / MS_PER_HOUR, 0.0)
    amount = (r0 + r1) / 2 * dt
    flags = np.zeros(len(dt), bool)
    return Intervals(t0, t1, amount, r0, r1, bridged, flags, flags)


def accumulated(iv: Intervals, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Amount and measured time (ms) accumulated from the first sample up to each instant ``x``.

    ``x`` is any array of epoch-ms instants; before the first sample both are 0, after the
    last sample they stay at their totals.
    """
    x = np.asarray(x, dtype=np.int64)
    if len(iv) == 0:
        zero = np.zeros(len(x))
        return zero, zero.copy()
    j = np.clip(np.searchsorted(iv.t0, x, side="right") - 1, 0, len(iv) - 1)
    dt_j = (iv.t1[j] - iv.t0[j]).astype(np.float64)
    amount_before = np.concatenate(([0.0], np.cumsum(iv.amount)))[j]
    if iv.measured.all():  # contiguous intervals: measured time before j is t0[j] - t0[0]
        measured_before = (iv.t0[j] - iv.t0[0]).astype(np.float64)
    else:
        dt = (iv.t1 - iv.t0).astype(np.float64)
        measured_before = np.concatenate(([0.0], np.cumsum(np.where(iv.measured, dt, 0.0))))[j]
    w = np.clip((x - iv.t0[j]).astype(np.float64), 0.0, dt_j)
    rate_x = iv.rate0[j] + (iv.rate1[j] - iv.rate0[j]) * (w / dt_j)
    partial = np.where(w >= dt_j, iv.amount[j], w * (iv.rate0[j] + rate_x) / 2)
    return amount_before + partial, measured_before + np.where(iv.measured[j], w, 0.0)


def bucket_amounts(
    iv: Intervals, first_edge_ms: int, step_ms: int, n_buckets: int
) -> tuple[np.ndarray, np.ndarray]:
    """Amount and measured ms in each bucket ``[first + k*step, first + (k+1)*step)``."""
    edges = first_edge_ms + step_ms * np.arange(n_buckets + 1, dtype=np.int64)
    amount, measured = accumulated(iv, edges)
    return np.diff(amount), np.diff(measured)


def window_energy(
    meter: str, iv: Intervals, start_ms: int, end_ms: int
) -> MeterEnergy:
    """Amount in ``[start_ms, end_ms)`` and its coverage (measured share of the window)."""
    if end_ms <= start_ms:
        raise ValueError("window end must be after its start")
    amount, measured = accumulated(iv, np.array([start_ms, end_ms], dtype=np.int64))
    inside = (iv.t1 > start_ms) & (iv.t0 < end_ms)
    return MeterEnergy(
        meter,
        float(amount[1] - amount[0]),
        float((measured[1] - measured[0]) / (end_ms - start_ms)),
        int(np.count_nonzero(iv.rollover & inside)),
        int(np.count_nonzero(iv.reset & inside)),
    )
