"""Plant state kept incrementally: the last few steps of readings in memory, no store re-read.

:class:`LiveState` is fed every batch of readings as the collector stores it (:meth:`add`) and
keeps, per meter, the samples of the last ``keep_steps`` frame steps plus the calculator's
``max_gap_s``. :meth:`state` builds the newest complete frame row from those buffers through
the same :func:`dcpue.optimizer.frames.build_frame` (and so the same counter/energy engine) as
training: :class:`RecentReadings` answers the two reads frames make of a store (``series`` and
``bucketed``) from NumPy arrays. Recorded meter swaps (``dcpue meter replace``) are not applied
on this path; training and M&V read the store and apply them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from dcpue.config import Site
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Series
from dcpue.optimizer.propose import PlantState, current_state


class RecentReadings:
    """Per-meter sample buffers (time ordered) with the store reads frames use."""

    def __init__(self, meters: Sequence[str], horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self._ts = {m: np.empty(0, np.int64) for m in meters}
        self._value = {m: np.empty(0) for m in meters}
        self._unit = {m: np.empty(0, object) for m in meters}
        self._newest: int | None = None

    def add(self, cols: ReadingColumns) -> None:
        """Append a batch (any order; a sample at an already held instant replaces it) and
        forget samples older than the horizon before the newest one."""
        for meter in set(cols.meter.tolist()) & self._ts.keys():
            mask = cols.meter == meter
            ts = np.concatenate([self._ts[meter], cols.ts_ms[mask]])
            value = np.concatenate([self._value[meter], cols.value[mask]])
            unit = np.concatenate([self._unit[meter], cols.unit[mask]])
            order = np.argsort(ts, kind="stable")
            ts, value, unit = ts[order], value[order], unit[order]
            last = np.append(ts[1:] != ts[:-1], True)
            self._ts[meter], self._value[meter], self._unit[meter] = (
                ts[last], value[last], unit[last])
            newest = int(ts[-1])
            self._newest = newest if self._newest is None else max(self._newest, newest)
        if self._newest is not None:
            cut = self._newest - self.horizon_ms
            for meter, ts in self._ts.items():
                first = int(np.searchsorted(ts, cut))
                if first:
                    self._ts[meter] = ts[first:]
                    self._value[meter] = self._value[meter][first:]
                    self._unit[meter] = self._unit[meter][first:]

    def time_range(self) -> tuple[int, int] | None:
        held = [ts for ts in self._ts.values() if len(ts)]
        return None if not held else (min(int(t[0]) for t in held), int(self._newest or 0))

    def _window(self, meter: str, start_ms: int | None, end_ms: int | None) -> slice:
        ts = self._ts.get(meter, np.empty(0, np.int64))
        lo = 0 if start_ms is None else int(np.searchsorted(ts, start_ms))
        hi = len(ts) if end_ms is None else int(np.searchsorted(ts, end_ms))
        return slice(lo, hi)

    def series(self, meter: str, quantity: str | None = None, start_ms: int | None = None,
               end_ms: int | None = None) -> Series:
        """Samples in ``[start_ms, end_ms)`` with their units (as :meth:`Store.series`)."""
        if meter not in self._ts:
            return Series(np.empty(0, np.int64), np.empty(0), np.empty(0, object))
        w = self._window(meter, start_ms, end_ms)
        return Series(self._ts[meter][w], self._value[meter][w], self._unit[meter][w])

    def bucketed(self, meters: Sequence[str], start_ms: int, end_ms: int, step_ms: int,
                 agg: str = "mean", quantity: str | None = None) -> dict[str, Series]:
        """``mean``, ``max`` or ``count`` per bucket ``[start + k step, ...)`` (as the store)."""
        out = {}
        for meter in meters:
            s = self.series(meter, None, start_ms, end_ms)
            if not len(s):
                continue
            k = (s.ts_ms - start_ms) // step_ms
            buckets, inverse, counts = np.unique(k, return_inverse=True, return_counts=True)
            if agg == "count":
                v = counts.astype(float)
            elif agg == "mean":
                v = np.bincount(inverse, weights=s.value) / counts
            elif agg == "max":
                v = np.full(len(buckets), -np.inf)
                np.maximum.at(v, inverse, s.value)
            else:
                raise ValueError(f"RecentReadings has no aggregation {agg!r}")
            out[meter] = Series(start_ms + buckets * step_ms, v)
        return out


class LiveState:
    """The plant state of one site from readings fed as they arrive (see the module docs)."""

    def __init__(self, site: Site, keep_steps: int = 5) -> None:
        self.site = site
        horizon = keep_steps * site.optimizer.step_s * 1000 + int(site.calculator.max_gap_s * 1000)
        self.recent = RecentReadings([m.id for m in site.meters], horizon)

    def add(self, cols: ReadingColumns) -> None:
        self.recent.add(cols)

    def state(self, end_ms: int | None = None) -> PlantState:
        """As :func:`dcpue.optimizer.propose.current_state`, from memory."""
        return current_state(self.recent, self.site, end_ms)  # type: ignore[arg-type]
