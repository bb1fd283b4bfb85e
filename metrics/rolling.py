"""Rolling PUE family, updated incrementally as readings arrive.

Per meter the calculator keeps the amount (kWh or m3) and the measured time (ms) of every
bucket in two ring buffers: 1-minute buckets for windows up to a day and 1-hour buckets for
longer ones (7 d, 30 d, 12 mo). A new batch of readings only touches the buckets between each
meter's previous sample and its newest one (see :mod:`dcpue.metrics.energy` for how an interval
is split exactly across buckets), so an update costs O(new readings) and reading a window is a
vectorised sum over its buckets, independent of how many readings it spans.

Windows up to one day end at the last complete minute before ``now``; longer ones at the last
complete hour. Readings older than a meter's newest sample are ignored (the interval they fall
in is already counted); rebuild with :meth:`RollingCalculator.from_store` after a backfill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from dcpue.config.calculator import window_ms
from dcpue.config.site import Site
from dcpue.core.figures import Figure
from dcpue.core.readings import Reading, ReadingColumns
from dcpue.core.store import Store
from dcpue.metrics.balance import (
    BalanceTopology,
    EnergyBalance,
    balance_from_energies,
    canonical_values,
    meter_intervals,
    read_meter,
)
from dcpue.metrics.energy import Intervals, MeterEnergy, bucket_amounts, clean_series
from dcpue.metrics.indicators import site_indicators

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_NEVER = np.iinfo(np.int64).min  # last-sample time of a meter that has not reported yet
#: Unit of each rolling metric as written back to the store.
METRIC_UNITS = {
    "pue": "1", "dcie": "%", "ppue_cooling": "1", "ppue_power": "1", "cue": "kgCO2/kWh",
    "ref": "1", "erf": "1", "wue": "L/kWh",
}


@dataclass
class _Ring:
    """Per-meter buckets ``k`` (absolute index: bucket start = k * step_ms) kept mod ``size``."""

    step_ms: int
    size: int
    amount: np.ndarray
    measured: np.ndarray
    head: int = -1  # newest bucket index in use; -1 before any data

    @classmethod
    def new(cls, n_meters: int, step_ms: int, size: int) -> _Ring:
        return cls(step_ms, size, np.zeros((n_meters, size)), np.zeros((n_meters, size)))

    def advance(self, k: int) -> None:
        """Make bucket ``k`` the newest, clearing the recycled buckets in between."""
        if k <= self.head:
            return
        if self.head < 0 or k - self.head >= self.size:
            self.amount[:] = 0.0
            self.measured[:] = 0.0
        else:
            idx = np.arange(self.head + 1, k + 1) % self.size
            self.amount[:, idx] = 0.0
            self.measured[:, idx] = 0.0
        self.head = k

    def add(self, row: int, intervals: Intervals) -> None:
        """Split one meter's ``intervals`` over this ring's buckets."""
        iv_first_ms, iv_last_ms = int(intervals.t0[0]), int(intervals.t1[-1])
        k_last = (iv_last_ms - 1) // self.step_ms
        self.advance(k_last)
        k_first = max(iv_first_ms // self.step_ms, self.head - self.size + 1)
        if k_first > k_last:
            return
        amount, measured = bucket_amounts(
            intervals.after(k_first * self.step_ms), k_first * self.step_ms, self.step_ms,
            k_last - k_first + 1,
        )
        idx = np.arange(k_first, k_last + 1) % self.size
        self.amount[row, idx] += amount
        self.measured[row, idx] += measured

    def window(self, end_k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-meter amount and measured ms over buckets ``[end_k - n, end_k)`` still retained."""
        lo = max(end_k - n, self.head - self.size + 1)
        hi = min(end_k, self.head + 1)
        if hi <= lo:
            zero = np.zeros(self.amount.shape[0])
            return zero, zero.copy()
        # at most two contiguous runs of the ring: sum views, no copies
        a, b = lo % self.size, (hi - 1) % self.size + 1
        runs = [slice(a, b)] if a < b else [slice(a, self.size), slice(0, b)]
        amount = sum(self.amount[:, r].sum(axis=1) for r in runs)
        measured = sum(self.measured[:, r].sum(axis=1) for r in runs)
        return np.asarray(amount), np.asarray(measured)


@dataclass(frozen=True, slots=True)
class _Window:
    name: str
    length_ms: int
    ring: _Ring


class RollingCalculator:
    """Rolling PUE, DCiE, pPUE, CUE, REF, ERF and WUE over the site's configured windows.

    ``update()`` feeds readings (any meters; those outside the energy balance are ignored),
    ``snapshot()`` returns the figures, ``write_back()`` stores them as ``metric.*`` series.
    """

    def __init__(self, site: Site, store: Store | None = None) -> None:
        self.site = site
        self.store = store
        self.settings = site.calculator
        self.topology = BalanceTopology.from_site(site)
        self._ids = self.topology.all_meters
        self._row = {mid: i for i, mid in enumerate(self._ids)}
        self._max_gap_ms = self.settings.max_gap_s * 1000.0
        lengths = {name: window_ms(name) for name in self.settings.windows}
        fine = [n for n in lengths.values() if n <= DAY_MS]
        coarse = [n for n in lengths.values() if n > DAY_MS]
        n_meters = len(self._ids)
        self._minutes = _Ring.new(n_meters, MINUTE_MS, max(fine, default=0) // MINUTE_MS + 60)
        self._hours = _Ring.new(n_meters, HOUR_MS, max(coarse, default=0) // HOUR_MS + 24)
        self._windows = [
            _Window(name, n, self._minutes if n <= DAY_MS else self._hours)
            for name, n in lengths.items()
        ]
        self._last_ts = np.full(n_meters, _NEVER, dtype=np.int64)
        self._last_value = np.zeros(n_meters)
        self.ignored_stale = 0

    # -- feeding ----------------------------------------------------------------------------
    @property
    def latest_ms(self) -> int | None:
        """Newest reading time fed so far (UTC epoch ms), None before any."""
        newest = int(self._last_ts.max())
        return None if newest == _NEVER else newest

    def update(self, readings: Sequence[Reading] | ReadingColumns) -> int:
        """Add a batch of readings; returns how many were used for the balance meters."""
        cols = readings if isinstance(readings, ReadingColumns) else (
            ReadingColumns.from_readings(readings)
        )
        if len(cols) == 0:
            return 0
        codes, uniques = pd.factorize(cols.meter)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
        used = 0
        for code, mid in enumerate(uniques):
            meter = self.topology.meters.get(str(mid))
            if meter is None:
                continue
            take = order[bounds[code]:bounds[code + 1]]
            take = take[cols.quantity[take] == meter.quantity]
            values = canonical_values(cols.value[take], cols.unit[take], meter.quantity)
            used += self.update_series(meter.id, cols.ts_ms[take], values)
        return used

    def update_series(self, meter_id: str, ts_ms: np.ndarray, values: np.ndarray) -> int:
        """Add one meter's samples (canonical unit: kWh, kW or m3); returns how many were used.

        Samples may come in any order; non-finite values and repeated timestamps are dropped.
        """
        row = self._row[meter_id]
        ts, vs = clean_series(ts_ms, values)
        fresh = ts > self._last_ts[row]
        n_fresh = int(np.count_nonzero(fresh))
        self.ignored_stale += len(ts) - n_fresh
        if n_fresh == 0:
            return 0
        if n_fresh < len(ts):
            ts, vs = ts[fresh], vs[fresh]
        if self._last_ts[row] != _NEVER:
            ts = np.concatenate(([self._last_ts[row]], ts))
            vs = np.concatenate(([self._last_value[row]], vs))
        iv = meter_intervals(self.topology.meters[meter_id], ts, vs, self._max_gap_ms)
        if len(iv):
            self._minutes.add(row, iv)
            self._hours.add(row, iv)
        self._last_ts[row] = ts[-1]
        self._last_value[row] = vs[-1]
        return n_fresh

    @classmethod
    def from_store(cls, site: Site, store: Store, now_ms: int) -> RollingCalculator:
        """Rebuild the calculator from the store's readings up to ``now_ms`` (after a restart)."""
        calc = cls(site, store)
        span = max(w.length_ms for w in calc._windows) + DAY_MS + int(calc._max_gap_ms)
        for mid, meter in calc.topology.meters.items():
            calc.update_series(mid, *read_meter(store, meter, now_ms - span, now_ms + 1))
        return calc

    # -- reading ----------------------------------------------------------------------------
    def balance(self, window: str, now_ms: int | None = None) -> EnergyBalance:
        """Energy balance of one configured window at ``now_ms`` (default: the newest reading).

        The window ends at the last complete minute (hour for windows over a day) before
        ``now_ms`` held back to the slowest meter's newest reading, by at most ``max_gap_s``.
        """
        w = next((w for w in self._windows if w.name == window), None)
        if w is None:
            raise KeyError(f"window {window!r} is not configured ({', '.join(self.windows)})")
        now = self._now(now_ms)
        end = now // w.ring.step_ms * w.ring.step_ms
        amount, measured = w.ring.window(end // w.ring.step_ms, w.length_ms // w.ring.step_ms)
        energies = {
            mid: MeterEnergy(mid, float(amount[i]), float(measured[i]) / w.length_ms)
            for i, mid in enumerate(self._ids)
        }
        return balance_from_energies(self.topology, energies, end - w.length_ms, end)

    @property
    def windows(self) -> list[str]:
        return [w.name for w in self._windows]

    def snapshot(self, now_ms: int | None = None) -> dict[str, Figure]:
        """Every metric over every window, keyed ``<metric>.<window>`` (e.g. ``pue.1h``)."""
        out: dict[str, Figure] = {}
        for w in self._windows:
            figures = site_indicators(self.site, self.balance(w.name, now_ms))
            out.update({f"{name}.{w.name}": fig for name, fig in figures.items()})
        return out

    def write_back(self, now_ms: int | None = None) -> int:
        """Append the sufficient figures to the store as ``metric.<name>.<window>`` readings.

        Each reading is stamped at its window's end; returns the number of rows added (the
        store ignores a (meter, quantity, ts) it already holds, so calling twice is harmless).
        """
        if self.store is None:
            raise ValueError("write_back needs a store: RollingCalculator(site, store)")
        rows = [
            Reading(int(fig.end_ms or 0), f"metric.{key}", fig.name, float(fig.value),
                    METRIC_UNITS[fig.name])
            for key, fig in self.snapshot(now_ms).items()
            if fig.value is not None
        ]
        return self.store.append(rows)

    def _now(self, now_ms: int | None) -> int:
        """The instant windows end at: ``now_ms`` held back to the slowest meter's newest
        reading (so collection latency does not read as missing data), but never by more
        than ``max_gap_s`` (so a silent meter does show as lost coverage)."""
        reported = self._last_ts[self._last_ts != _NEVER]
        if len(reported) == 0:
            if now_ms is None:
                raise ValueError("no readings yet: give now_ms")
            return int(now_ms)
        now = int(reported.max()) if now_ms is None else int(now_ms)
        return max(min(now, int(reported.min())), now - int(self._max_gap_ms))
