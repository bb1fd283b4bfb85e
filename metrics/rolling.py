"""Rolling PUE family, updated incrementally as readings arrive.

Per meter the calculator keeps the amount (kWh or m3) and the measured time (ms) of every
bucket in two ring buffers: 1-minute buckets for windows up to a day and 1-hour buckets for
longer ones (7 d, 30 d, 12 mo). A new batch of readings only touches the buckets between each
meter's previous sample and its newest one (see :mod:`dcpue.metrics.energy` for how an interval
is split exactly across buckets), so an update costs O(new readings) and reading a window is a
vectorised sum over its buckets, independent of how many readings it spans.

Windows up to one day end at the last complete minute before ``now``; longer ones at the last
complete hour.

Time rules:
- a reading stamped more than ``calculator.future_skew_s`` past the calculator's clock (wall
  clock, or the ``clock`` given) is ignored and counted in ``ignored_future``: it never
  advances or clears buckets;
- a reading older than its meter's newest sample (late delivery, store-and-forward, a
  backfill) makes the calculator recompute that meter from the store: every bucket from the
  hour holding the earliest late reading (less ``max_gap_s``) on is rebuilt from its samples
  from ``max(6 h, max_gap_s)`` before that hour on, so every rolling window reflects it at
  once. Cost: one store read and one interval split of that meter's span (a day of 1-minute
  samples: ~1,440 samples, milliseconds; a year: ~0.5 M samples, about a second). Without a
  store late readings are ignored and counted in ``ignored_stale``;
- the span whose buckets such a recompute (or a meter lagging behind windows already
  written back) changed is marked, and :meth:`RollingCalculator.write_back` rewrites the
  stored ``metric.*`` rows of every window overlapping it (see :meth:`RollingCalculator.
  rewrite` for the rule and docs/metrics.md for the cost).

A counter with ``also = ["power"]`` follows the engine's one rule here too (counter preferred,
its power readings only for the time the counter's energy is unknown: a jump or swap interval,
after its last sample), the same call :func:`dcpue.metrics.balance.energy_balance` makes: with
a store (readings stored before they are fed, as the daemon does), each batch of such a meter rebuilds its buckets from the store from the hour of its
last counter sample (less ``max_gap_s``) on, so a provisional power fill after the counter's
last sample is replaced once the counter reports again. Cost per batch: one store read of that
meter's samples from ``max(6 h, max_gap_s)`` before that hour on (a few hundred samples at one a
minute). Without a store it is followed through its counter only (its energy still counted
once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from dcpue.config.calculator import window_ms
from dcpue.config.factors import site_hourly_factors
from dcpue.config.site import Site
from dcpue.config.topology import MeterKind
from dcpue.core.figures import Figure
from dcpue.core.readings import Reading, ReadingColumns
from dcpue.core.store import Store
from dcpue.metrics import rollups
from dcpue.metrics.balance import (
    LOOKAROUND_MS,
    BalanceArrays,
    BalanceTopology,
    EnergyBalance,
    balance_arrays,
    balance_from_energies,
    canonical_values,
    counter_rules,
    meter_intervals,
    read_meter,
    stored_intervals,
    stored_meter_intervals,
)
from dcpue.metrics.energy import (
    CounterEvent,
    Intervals,
    MeterEnergy,
    accumulated_all,
    bucket_totals,
    clean_series,
    derived_ceiling_kw,
    events_in,
)
from dcpue.metrics.events import record_events, replacements
from dcpue.metrics.indicators import site_indicator_values, site_indicators
from dcpue.metrics.provenance import (
    Origin,
    has_battery,
    stored_origin,
    stored_window_origins,
)

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
    #: amount, measured ms and known ms per (meter, bucket), stacked: ``amount`` etc. are
    #: views of it, and a window's three sums are one reduction
    data: np.ndarray
    head: int = -1  # newest bucket index in use; -1 before any data

    @classmethod
    def new(cls, n_meters: int, step_ms: int, size: int) -> _Ring:
        return cls(step_ms, size, np.zeros((3, n_meters, size)))

    @property
    def amount(self) -> np.ndarray:
        return self.data[0]

    @property
    def measured(self) -> np.ndarray:
        return self.data[1]

    @property
    def known(self) -> np.ndarray:
        return self.data[2]

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.amount, self.measured, self.known

    def advance(self, k: int) -> None:
        """Make bucket ``k`` the newest, clearing the recycled buckets in between."""
        if k <= self.head:
            return
        if self.head < 0 or k - self.head >= self.size:
            for arr in self.arrays:
                arr[:] = 0.0
        else:
            idx = np.arange(self.head + 1, k + 1) % self.size
            for arr in self.arrays:
                arr[:, idx] = 0.0
        self.head = k

    def clear_from(self, row: int, ms: int) -> None:
        """Zero one meter's retained buckets from the one holding ``ms`` on."""
        k_first = max(ms // self.step_ms, self.head - self.size + 1)
        if self.head < 0 or k_first > self.head:
            return
        idx = np.arange(k_first, self.head + 1) % self.size
        for arr in self.arrays:
            arr[row, idx] = 0.0

    def add(self, row: int, intervals: Intervals, from_ms: int | None = None) -> None:
        """Split one meter's ``intervals`` (from ``from_ms`` on) over this ring's buckets."""
        iv_first_ms, iv_last_ms = int(intervals.t0[0]), int(intervals.t1[-1])
        if from_ms is not None:
            iv_first_ms = max(iv_first_ms, from_ms)
        k_last = (iv_last_ms - 1) // self.step_ms
        self.advance(k_last)
        k_first = max(iv_first_ms // self.step_ms, self.head - self.size + 1)
        if k_first > k_last:
            return
        totals = bucket_totals(
            intervals.after(k_first * self.step_ms), k_first * self.step_ms, self.step_ms,
            k_last - k_first + 1,
        )
        idx = np.arange(k_first, k_last + 1) % self.size
        for arr, add in zip(self.arrays, totals, strict=True):
            arr[row, idx] += add

    def changed(
        self, row: int, old_head: int, old: list[np.ndarray], before_ms: int
    ) -> tuple[int, int] | None:
        """Span (ms) of one meter's buckets ending by ``before_ms`` that differ from ``old``
        (its arrays when the newest bucket was ``old_head``), None when none does."""
        k_lo = max(self.head, old_head) - self.size + 1
        k_hi = min(old_head, before_ms // self.step_ms - 1)
        if old_head < 0 or k_hi < k_lo:
            return None
        ks = np.arange(k_lo, k_hi + 1)
        idx = ks % self.size
        diff = np.zeros(len(ks), bool)
        for arr, prev in zip(self.arrays, old, strict=True):
            diff |= ~np.isclose(arr[row, idx], prev[idx], rtol=1e-12, atol=1e-9)
        hit = ks[diff]
        return None if len(hit) == 0 else (int(hit[0]) * self.step_ms,
                                           int(hit[-1] + 1) * self.step_ms)

    def window(self, end_k: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-meter amount, measured ms and known ms over buckets ``[end_k - n, end_k)``
        still retained."""
        lo = max(end_k - n, self.head - self.size + 1)
        hi = min(end_k, self.head + 1)
        if hi <= lo:
            zero = np.zeros(self.amount.shape[0])
            return zero, zero.copy(), zero.copy()
        # at most two contiguous runs of the ring: sum views, no copies
        a, b = lo % self.size, (hi - 1) % self.size + 1
        runs = [slice(a, b)] if a < b else [slice(a, self.size), slice(0, b)]
        sums = np.add.reduce(self.data[:, :, runs[0]], axis=2)
        if len(runs) > 1:
            sums += np.add.reduce(self.data[:, :, runs[1]], axis=2)
        return sums[0], sums[1], sums[2]

    def windows(self, end_k: np.ndarray, n: int) -> np.ndarray:
        """:meth:`window` at each of ``end_k`` (bucket indices): amount, measured ms and known
        ms per meter and window end, shape (3, meters, len(end_k)), from one cumulative sum
        over the retained buckets they span."""
        if len(end_k) == 1:  # one window: the sums over its buckets, no cumulative sum
            return np.stack(self.window(int(end_k[0]), n))[:, :, None]
        lo = max(int(end_k.min()) - n, self.head - self.size + 1)
        hi = min(int(end_k.max()), self.head + 1)
        if hi <= lo:
            return np.zeros((3, self.amount.shape[0], len(end_k)))
        cum = np.zeros((3, self.amount.shape[0], hi - lo + 1))
        np.cumsum(self.data[:, :, np.arange(lo, hi) % self.size], axis=2, out=cum[:, :, 1:])
        return (cum[:, :, np.clip(end_k, lo, hi) - lo]
                - cum[:, :, np.clip(end_k - n, lo, hi) - lo])

    def powers(self, row: int) -> np.ndarray:
        """Mean power (amount per hour) of one meter's fully measured retained buckets."""
        full = self.measured[row] >= self.step_ms
        return self.amount[row, full] / self.step_ms * HOUR_MS


def figure_keys(window: str, names: Sequence[str]) -> list[str]:
    """The keys ``<metric>.<window>`` of ``names`` (what :meth:`RollingCalculator.values`
    and the snapshot return)."""
    return [f"{name}.{window}" for name in names]


def value_rows(values: dict[str, np.ndarray]) -> list[list[float | None]]:
    """The array form's ``values`` (indicator -> values per window end, NaN: no figure) as
    one list per window end, in ``values``' order, None for NaN."""
    columns = [v.tolist() for v in values.values()]
    return [[None if x != x else x for x in row] for row in zip(*columns, strict=True)]


@dataclass(frozen=True, slots=True)
class Window:
    """One configured window: its name (``1h``), length (ms) and the ring it sums."""

    name: str
    length_ms: int
    ring: _Ring

    def end_at(self, now_ms: int) -> int:
        """The window's end at ``now_ms`` (held back already): its last whole step."""
        return now_ms // self.ring.step_ms * self.ring.step_ms


class RollingCalculator:
    """Rolling PUE, DCiE, pPUE, CUE, REF, ERF and WUE over the site's configured windows.

    ``update()`` feeds readings (any meters; those outside the energy balance are ignored),
    ``snapshot()`` returns the figures, ``write_back()`` stores them as ``metric.*`` series.
    ``clock`` returns "now" in UTC ms for the future-skew rule (default: the wall clock).
    Counter events are recorded in the store given here (:mod:`dcpue.metrics.events`).
    """

    def __init__(
        self, site: Site, store: Store | None = None, clock: Callable[[], int] | None = None
    ) -> None:
        self.site = site
        self.store = store
        self._source = store  # late readings are recomputed from here (store may be replaced)
        self._clock = clock or (lambda: int(time.time() * 1000))
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
            Window(name, n, self._minutes if n <= DAY_MS else self._hours)
            for name, n in lengths.items()
        ]
        self._by_name = {w.name: w for w in self._windows}
        self._span_ms = max(w.length_ms for w in self._windows) + DAY_MS
        self._last_ts = np.full(n_meters, _NEVER, dtype=np.int64)
        self._last_value = np.zeros(n_meters)
        self._ceiling: list[float | None] = [None] * n_meters
        self._ceiling_head = np.full(n_meters, -1, dtype=np.int64)
        self._events: list[list[CounterEvent]] = [[] for _ in range(n_meters)]
        self._replacements = [
            replacements(store, m) if store is not None and m.kind is MeterKind.COUNTER else ()
            for m in self.topology.meters.values()
        ]
        #: Counters whose power readings fill their unknown time (``also = ["power"]``), and
        #: each one's newest counter and power sample fed (ms).
        self._fills = np.array([m.kind is MeterKind.COUNTER and "power" in m.also
                                for m in self.topology.meters.values()], dtype=bool)
        self._counter_ts = np.full(n_meters, _NEVER, dtype=np.int64)
        self._power_ts = np.full(n_meters, _NEVER, dtype=np.int64)
        #: Span (ms) whose buckets changed under windows already computed (late data, a
        #: backfill, a lagging meter), and the window end up to which its stored figures were
        #: rewritten since: :meth:`write_back` continues from there.
        self._dirty: tuple[int, int, int] | None = None
        #: Most stored figures (window ends) one :meth:`write_back` recomputes (~5 ms each).
        self.rewrite_budget = 500
        self._written_end = _NEVER  # newest window end written back
        #: window end of each figure last appended (the hour windows' ends stay for an hour)
        self._appended: dict[str, int] = {}
        #: per window: (end, recompute count) after which write_back has nothing to append
        self._complete: dict[str, tuple[int, int]] = {}
        self._origin_free = store is None or not (
            has_battery(self.topology) or site.carbon.hourly_factors_csv is not None)
        self.ignored_stale = 0
        self.ignored_future = 0
        self.recomputed = 0
        self.rewritten = 0

    # -- feeding ----------------------------------------------------------------------------
    @property
    def latest_ms(self) -> int | None:
        """Newest reading time fed so far (UTC epoch ms), None before any."""
        newest = int(self._last_ts.max())
        return None if newest == _NEVER else newest

    def update(
        self, readings: Sequence[Reading] | ReadingColumns, now_ms: int | None = None
    ) -> int:
        """Add a batch of readings; returns how many were used for the balance meters.

        ``now_ms`` (default: the clock) is the instant readings may be at most
        ``future_skew_s`` past.
        """
        cols = readings if isinstance(readings, ReadingColumns) else (
            ReadingColumns.from_readings(readings)
        )
        if len(cols) == 0:
            return 0
        codes, uniques = pd.factorize(cols.meter)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
        limit = (self._clock() if now_ms is None else now_ms) + int(
            self.settings.future_skew_s * 1000)
        used = 0
        for code, mid in enumerate(uniques):
            meter = self.topology.meters.get(str(mid))
            if meter is None:
                continue
            mine = order[bounds[code]:bounds[code + 1]]
            future = cols.ts_ms[mine] > limit
            if future.any():
                self.ignored_future += int(np.count_nonzero(
                    future & np.isin(cols.quantity[mine], meter.quantities)))
                mine = mine[~future]
            take = mine[cols.quantity[mine] == meter.quantity]
            values = canonical_values(cols.value[take], cols.unit[take], meter.quantity)
            row = self._row[meter.id]
            if self._fills[row] and self._source is not None:
                power = mine[cols.quantity[mine] == "power"]
                used += self._update_filled(row, cols.ts_ms[take], values, cols.ts_ms[power])
                continue
            used += self.update_series(meter.id, cols.ts_ms[take], values)
        return used

    def _update_filled(
        self, row: int, ts_ms: np.ndarray, values: np.ndarray, power_ts: np.ndarray
    ) -> int:
        """Feed a counter with ``also = ["power"]`` (its readings are in the store): rebuild
        its buckets from its last counter sample (or the earliest new reading, if older) on,
        through the engine's fill rule (see the module docstring)."""
        ts = ts_ms[np.isfinite(values)]
        if len(ts) + len(power_ts) == 0:
            return 0
        if self._counter_ts[row] == _NEVER and self._last_ts[row] != _NEVER:
            self._counter_ts[row] = self._stored_counter_ts(row)  # after a restart
        firsts = [int(a.min()) for a in (ts, power_ts) if len(a)]
        late = (len(ts) and int(ts.min()) <= self._counter_ts[row]) or (
            len(power_ts) and int(power_ts.min()) <= self._power_ts[row])
        held = self._counter_ts[row]
        from_ms = min([*firsts, *([int(held)] if held != _NEVER else [])])
        if len(ts):
            self._counter_ts[row] = max(self._counter_ts[row], int(ts.max()))
        if len(power_ts):
            self._power_ts[row] = max(self._power_ts[row], int(power_ts.max()))
        # counted as a recompute when late, or when a power fill after the counter's last
        # sample was replaced under windows already computed
        if self._rebuild(row, from_ms) or late:
            self.recomputed += 1
        return len(ts) + len(power_ts)

    def _stored_counter_ts(self, row: int) -> int:
        """Newest stored counter sample of a meter up to its newest reading fed (ms)."""
        assert self._source is not None
        meter = self.topology.meters[self._ids[row]]
        last = int(self._last_ts[row])
        ts, _ = read_meter(self._source, meter, last - LOOKAROUND_MS, last + 1)
        return int(ts[-1]) if len(ts) else last - LOOKAROUND_MS

    def update_series(self, meter_id: str, ts_ms: np.ndarray, values: np.ndarray) -> int:
        """Add one meter's samples (canonical unit: kWh, kW or m3); returns how many were used.

        Samples may come in any order; non-finite values and repeated timestamps are dropped.
        Samples older than the meter's newest make it recompute from the store (see the module
        docstring); without a store they are ignored.
        """
        row = self._row[meter_id]
        ts, vs = clean_series(ts_ms, values)
        if len(ts) == 0:
            return 0
        fresh = ts > self._last_ts[row]
        n_fresh = int(np.count_nonzero(fresh))
        if n_fresh < len(ts):
            if self._source is not None:
                self.recompute(meter_id, int(ts[0]))
                return len(ts)
            self.ignored_stale += len(ts) - n_fresh
            if n_fresh == 0:
                return 0
            ts, vs = ts[fresh], vs[fresh]
        if self._last_ts[row] != _NEVER:
            ts = np.concatenate(([self._last_ts[row]], ts))
            vs = np.concatenate(([self._last_value[row]], vs))
        iv = self._intervals(row, ts, vs)
        if len(iv) == 0 and iv.hold is not None:  # one accepted sample: the first state
            self._last_ts[row], self._last_value[row] = ts[-1], iv.hold
        self._add(row, iv, None)
        return n_fresh

    def _intervals(self, row: int, ts: np.ndarray, vs: np.ndarray) -> Intervals:
        meter = self.topology.meters[self._ids[row]]
        return meter_intervals(meter, ts, vs, self._max_gap_ms, settings=self.settings,
                               ceiling_kw=self._history_ceiling(row),
                               replacements=self._replacements[row])

    def _add(self, row: int, iv: Intervals, from_ms: int | None, mark: bool = True) -> None:
        """Split ``iv`` over both rings and take over its state and events; with ``mark``, a
        split reaching before the newest window end written back marks it for a rewrite."""
        if mark and len(iv):
            first = int(iv.t0[0]) if from_ms is None else max(int(iv.t0[0]), from_ms)
            if first < self._written_end:
                self._mark(first, int(iv.t1[-1]))
        if len(iv):
            self._minutes.add(row, iv, from_ms)
            self._hours.add(row, iv, from_ms)
            self._last_ts[row] = iv.t1[-1]
            if iv.hold is not None:
                self._last_value[row] = iv.hold
        new = [e for e in iv.events if from_ms is None or e.ts_ms >= from_ms]
        if new:
            horizon = (self.latest_ms or 0) - self._span_ms
            self._events[row] = [e for e in self._events[row] if e.ts_ms >= horizon] + new
            if self._source is not None:
                record_events(self._source, self._ids[row], new)

    def _history_ceiling(self, row: int) -> float | None:
        """Ceiling from the meter's retained minute buckets (None: too little history yet, the
        engine derives it from the samples at hand); refreshed hourly."""
        if self._minutes.head - self._ceiling_head[row] >= 60:
            powers = self._minutes.powers(row)
            rules = counter_rules(self.settings)
            self._ceiling[row] = (derived_ceiling_kw(powers, rules)
                                  if np.count_nonzero(powers > 0) >= 60 else None)
            self._ceiling_head[row] = self._minutes.head
        return self._ceiling[row]

    def recompute(self, meter_id: str, from_ms: int) -> None:
        """Rebuild one meter's buckets from the hour holding ``from_ms - max_gap_s`` on, from the
        store (after late readings or a backfill)."""
        if self._source is None:
            raise ValueError("recompute needs a store: RollingCalculator(site, store)")
        self._rebuild(self._row[meter_id], from_ms)
        self.recomputed += 1

    def _rebuild(self, row: int, from_ms: int) -> bool:
        """Rebuild one meter's buckets from the hour holding ``from_ms - max_gap_s`` on from the
        store (samples from ``max(6 h, max_gap_s)`` before it, as the direct balance reads).

        Marks for :meth:`write_back` the span whose buckets (before the meter's previous
        newest reading) or events changed, and, when the meter lagged behind windows already
        written, the span after its previous newest reading; returns whether anything
        before that reading changed."""
        assert self._source is not None
        meter = self.topology.meters[self._ids[row]]
        pad = int(self._max_gap_ms)
        start = (from_ms - pad) // HOUR_MS * HOUR_MS
        iv = stored_meter_intervals(self.site, self._source, meter,
                                    start - max(pad, LOOKAROUND_MS), 2**62,
                                    self._history_ceiling(row))
        rings = (self._minutes, self._hours)
        old = [(ring.head, [arr[row].copy() for arr in ring.arrays]) for ring in rings]
        events, newest = list(self._events[row]), int(self._last_ts[row])
        for ring in rings:
            ring.clear_from(row, start)
        self._events[row] = [e for e in events if e.ts_ms < start]
        self._add(row, iv, start, mark=False)
        spans = [span for ring, (head, arrays) in zip(rings, old, strict=True)
                 if (span := ring.changed(row, head, arrays, newest)) is not None]
        moved = {e for e in events if e.ts_ms >= start} ^ {
            e for e in self._events[row] if e.ts_ms >= start}
        if moved:
            spans.append((min(e.ts_ms if e.start_ms is None else e.start_ms for e in moved),
                          max(e.ts_ms for e in moved) + 1))
        if spans:
            self._mark(min(s[0] for s in spans), max(s[1] for s in spans))
        if newest != _NEVER and newest < self._written_end:
            self._mark(newest, int(self._written_end))
        return bool(spans)

    def _mark(self, start_ms: int, end_ms: int) -> None:
        """Widen the span whose written-back figures :meth:`write_back` checks next."""
        lo, hi, checked = self._dirty or (start_ms, end_ms, start_ms)
        self._dirty = (min(lo, start_ms), max(hi, end_ms), min(checked, start_ms))

    @property
    def rewrite_pending(self) -> bool:
        """Whether stored figures changed by late data are still to be rewritten."""
        return self._dirty is not None

    @classmethod
    def from_store(
        cls, site: Site, store: Store, now_ms: int, clock: Callable[[], int] | None = None
    ) -> RollingCalculator:
        """Rebuild the calculator from the store up to ``now_ms`` (after a restart): the hours
        before the minute ring's reach from the hourly rollups (brought up to date first, see
        :mod:`dcpue.metrics.rollups`), the rest from the raw readings. A year of 500 meters
        then reads 4.4 M hour rows and one day of raw samples instead of 262.8 M samples."""
        calc = cls(site, store, clock)
        pad = int(calc._max_gap_ms)
        start = now_ms - calc._span_ms - pad
        raw_from = (now_ms - calc._minutes.size * MINUTE_MS) // HOUR_MS * HOUR_MS
        from_rollups = raw_from > start + HOUR_MS
        if from_rollups:
            rollups.catch_up(site, store)
            calc._restore_hours(store, start // HOUR_MS * HOUR_MS, raw_from)
        for mid, meter in calc.topology.meters.items():
            first = raw_from - pad if from_rollups else start
            iv = stored_meter_intervals(site, store, meter, first, now_ms + 1)
            calc._add(calc._row[mid], iv, raw_from if from_rollups else None)
        return calc

    def _restore_hours(self, store: Store, start_ms: int, end_ms: int) -> None:
        """Fill the hour ring's buckets ``[start_ms, end_ms)`` (whole hours) and the events of
        that span from the rollups."""
        ring = self._hours
        ring.advance((end_ms - 1) // HOUR_MS)
        found = rollups.events(store, self._ids, start_ms, end_ms)
        for mid, h in rollups.hourly(store, self._ids, start_ms, end_ms).items():
            row = self._row[mid]
            k = h.hour_ms // HOUR_MS
            keep = k > ring.head - ring.size
            idx = k[keep] % ring.size
            ring.amount[row, idx] = h.amount[keep]
            ring.measured[row, idx] = h.measured_ms[keep]
            ring.known[row, idx] = h.known_ms[keep]
            self._events[row] = list(found.get(mid, ()))

    # -- reading ----------------------------------------------------------------------------
    def balance(self, window: str, now_ms: int | None = None) -> EnergyBalance:
        """Energy balance of one configured window at ``now_ms`` (default: the newest reading).

        The window ends at the last complete minute (hour for windows over a day) before
        ``now_ms`` held back to the slowest meter's newest reading, by at most ``max_gap_s``.
        """
        w = self._window(window)
        start, end = self.window_bounds(window, now_ms)
        amount, measured, known = w.ring.window(end // w.ring.step_ms,
                                                w.length_ms // w.ring.step_ms)
        events = self._events
        energies = {
            mid: MeterEnergy(mid, a, m, events=events_in(events[i], start, end) if events[i]
                             else (), known=k)
            for i, (mid, a, m, k) in enumerate(zip(
                self._ids, amount.tolist(), (measured / w.length_ms).tolist(),
                (known / w.length_ms).tolist(), strict=True))
        }
        return balance_from_energies(self.topology, energies, start, end,
                                     min_coverage=self.settings.min_coverage)

    def _window(self, name: str) -> Window:
        w = self._by_name.get(name)
        if w is None:
            raise KeyError(f"window {name!r} is not configured ({', '.join(self.windows)})")
        return w

    def window_bounds(self, window: str, now_ms: int | None = None) -> tuple[int, int]:
        """(start, end) in UTC ms of one configured window at ``now_ms`` (see :meth:`balance`)."""
        w = self._window(window)
        end = w.end_at(self._now(now_ms))
        return end - w.length_ms, end

    def balances(self, window: str, ends_ms: np.ndarray) -> BalanceArrays:
        """The balances of one configured window ending at each of ``ends_ms`` (UTC ms, whole
        minutes or hours as the window's step), as arrays: the values :meth:`balance` gives
        at those ends, for many ends in one pass (the write-back's and the alerts' minutes)."""
        w = self._window(window)
        ends = np.asarray(ends_ms, dtype=np.int64)
        starts = ends - w.length_ms
        sums = w.ring.windows(ends // w.ring.step_ms, w.length_ms // w.ring.step_ms)
        error = np.zeros(sums.shape[1:], bool)
        for row, events in enumerate(self._events):
            for e in events:
                if e.error:
                    error[row] |= ((starts <= e.ts_ms) & (e.ts_ms < ends) if e.start_ms is None
                                   else (e.ts_ms > starts) & (e.start_ms < ends))
        return balance_arrays(self.topology, sums[0], sums[1] / w.length_ms,
                              sums[2] / w.length_ms, error, starts, ends,
                              min_coverage=self.settings.min_coverage)

    @property
    def origin_free(self) -> bool:
        """Whether each window's figures follow from its own balance (no battery provenance,
        no hourly factors to read from the store): :meth:`balances` then gives them."""
        return self._origin_free

    @property
    def windows(self) -> list[str]:
        return [w.name for w in self._windows]

    def values(
        self, now_ms: int | None = None, only: Collection[str] | None = None
    ) -> dict[str, float | None]:
        """The value (None: no figure) of every figure :meth:`snapshot` gives (with ``only``:
        just those keys), keyed ``<metric>.<window>``: what the write-back stores and the
        alert rules read; each window's span is :meth:`window_bounds`'. From the array form
        (:meth:`balances`) where each window's origin is its own balance
        (:attr:`origin_free`), from the snapshot's figures otherwise."""
        now = self._now(now_ms)
        out: dict[str, float | None] = {}
        for w in self._windows:
            keys = [k for k in only if k.endswith(f".{w.name}")] if only is not None else None
            if keys is not None and not keys:
                continue
            got = self._figure_values(w, w.end_at(now), now_ms)
            out.update(got if keys is None else {k: got[k] for k in keys if k in got})
        return out

    def _figure_values(
        self, w: Window, end_ms: int, now_ms: int | None
    ) -> dict[str, float | None]:
        """:meth:`values` of window ``w`` ending at ``end_ms`` (``now_ms``'s end)."""
        if self.origin_free:
            return self._window_values(w.name, end_ms)
        b = self.balance(w.name, now_ms)
        return {f"{name}.{w.name}": fig.value
                for name, fig in site_indicators(self.site, b, self.origin(b)).items()}

    def _window_values(self, window: str, end_ms: int) -> dict[str, float | None]:
        """The values of one window ending at ``end_ms``, from the array form."""
        values = site_indicator_values(self.site, self.balances(window, np.array([end_ms])))
        return dict(zip(figure_keys(window, list(values)), value_rows(values)[0], strict=True))

    def snapshot(self, now_ms: int | None = None) -> dict[str, Figure]:
        """Every metric over every window, keyed ``<metric>.<window>`` (e.g. ``pue.1h``)."""
        out: dict[str, Figure] = {}
        for w in self._windows:
            balance = self.balance(w.name, now_ms)
            figures = site_indicators(self.site, balance, self.origin(balance))
            out.update({f"{name}.{w.name}": fig for name, fig in figures.items()})
        return out

    def origin(self, balance: EnergyBalance) -> Origin | None:
        """Where the window's facility energy came from (battery provenance, hourly factors;
        :func:`dcpue.metrics.provenance.stored_origin`, read from the store), or None without
        a store, a battery or hourly factors."""
        if self.origin_free:
            return None  # the window's origin is its own balance
        return stored_origin(self.site, self._source, balance.start_ms, balance.end_ms,
                             site_hourly_factors(self.site))

    def write_back(self, now_ms: int | None = None) -> int:
        """Append the sufficient figures to the store as ``metric.<name>.<window>`` readings,
        and rewrite the ones already written that late data changed.

        Each reading is stamped at its window's end; returns the number of rows added (the
        store ignores a (meter, quantity, ts) it already holds, so calling twice is harmless;
        a figure already appended at the same window end is not offered again).
        When late readings, a backfill or a lagging meter changed buckets under windows
        already written back (:meth:`_rebuild` marks the span), the stored rows of every window
        overlapping that span are recomputed from the store (:meth:`rewrite`), at most
        ``rewrite_budget`` window ends per call, the earliest first; the next calls go on
        from there (``rewrite_pending``), so one call never holds the calculator for long.
        """
        if self.store is None:
            raise ValueError("write_back needs a store: RollingCalculator(site, store)")
        appended, complete, rows = self._appended, self._complete, []
        now, reported = self._now(now_ms), int(self._last_ts.min())
        for w in self._windows:
            end = w.end_at(now)
            if complete.get(w.name) == (end, self.recomputed):  # nothing more to append
                continue
            values = self._figure_values(w, end, now_ms)
            rows += [Reading(end, f"metric.{key}", name, value, METRIC_UNITS[name])
                     for key, value in values.items()
                     if value is not None and appended.get(key) != end
                     and (name := key.partition(".")[0])]
            # every figure appended, or the window final (every meter past its end: its
            # figures change only by a recompute, which the key holds)
            if reported >= end or None not in values.values():
                complete[w.name] = (end, self.recomputed)
        added = self.store.append(rows) if rows else 0
        appended.update({r.meter.removeprefix("metric."): r.ts_ms for r in rows})
        if self._dirty is not None and self._source is not None:
            lo, hi, checked = self._dirty
            changed, done_to = self.rewrite(lo, hi, checked, self.rewrite_budget)
            self.rewritten += changed
            self._dirty = None if done_to is None else (lo, hi, done_to)
        self._written_end = max([self._written_end, *(r.ts_ms for r in rows)])
        return added

    def rewrite(
        self, start_ms: int, end_ms: int, after_ms: int | None = None,
        budget: int | None = None,
    ) -> tuple[int, int | None]:
        """Recompute the stored ``metric.*`` rows of every window overlapping ``[start_ms,
        end_ms)`` (UTC ms) from the store through the engine, as ``dcpue pue`` computes them,
        and replace those whose value changed (relative 1e-9); a row whose window now has no
        figure (insufficient data, a data-quality error) is deleted. Rows ending at or
        before ``after_ms`` are skipped; with ``budget``, at most that many window ends (the
        earliest) are recomputed. Returns the rows replaced or deleted and the window end
        the rows were checked up to when the budget stopped short (None: all checked).

        Windows up to a day are recomputed from one read of the raw readings of their span
        (plus 6 h), longer ones from the hourly rollups (brought up to date first); CUE and
        REF with the hourly factors and the battery provenance ledger of each window
        (:func:`dcpue.metrics.provenance.stored_window_origins`, one read per window length).
        """
        assert self._source is not None
        store, changed = self._source, 0
        after = start_ms if after_ms is None else max(start_ms, after_ms)
        names = list(METRIC_UNITS)
        stored = {
            (w.name, name): store.series(f"metric.{name}.{w.name}", name, after + 1,
                                         end_ms + w.length_ms)
            for w in self._windows for name in names
        }
        todo = sorted({(int(t), w) for (w, _), ser in stored.items() for t in ser.ts_ms})
        resume = None
        if budget is not None and len(todo) > budget:
            resume = todo[budget - 1][0]
            todo = [(t, w) for t, w in todo if t <= resume]
        short = [w for w in self._windows if w.length_ms <= DAY_MS]
        ends = {w.name: np.array(sorted(t for t, name in todo if name == w.name), np.int64)
                for w in self._windows}
        spans = [(int(ends[w.name][0]) - w.length_ms, int(ends[w.name][-1]))
                 for w in short if len(ends[w.name])]
        raw = stored_intervals(self.site, store, min(s[0] for s in spans),
                               max(s[1] for s in spans))[1] if spans else {}
        figures: dict[tuple[str, int], dict[str, Figure]] = {}
        for w in self._windows:
            if len(ends[w.name]):
                origins = stored_window_origins(  # battery provenance, hourly factors
                    self.site, store, [(int(e) - w.length_ms, int(e)) for e in ends[w.name]],
                    site_hourly_factors(self.site)) or [None] * len(ends[w.name])
                figures.update({
                    (w.name, int(e)): site_indicators(self.site, b, o)
                    for e, b, o in zip(ends[w.name], self._past_balances(w, ends[w.name], raw),
                                       origins, strict=True)})
        for (window, name), ser in stored.items():
            rows = [(int(t), old, figures[(window, int(t))][name].value)
                    for t, old in zip(ser.ts_ms, ser.value, strict=True)
                    if (window, int(t)) in figures]
            stale = [(t, new) for t, old, new in rows
                     if new is None or not np.isclose(new, old, rtol=1e-9, atol=0.0)]
            if not stale:
                continue
            meter = f"metric.{name}.{window}"
            changed += store.rewrite_series(
                meter, name, [t for t, _ in stale],
                [Reading(t, meter, name, float(new), METRIC_UNITS[name])
                 for t, new in stale if new is not None])
        return changed, resume

    def _past_balances(
        self, w: Window, ends: np.ndarray, raw: dict[str, Intervals]
    ) -> list[EnergyBalance]:
        """The balance of window ``w`` ending at each of ``ends`` (sorted UTC ms), from the
        store: the meters' intervals ``raw`` for windows up to a day, hourly rollups for
        longer ones."""
        assert self._source is not None
        store, n = self._source, len(ends)
        starts = ends - w.length_ms
        lo, hi = int(starts[0]), int(ends[-1])
        totals: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if w.length_ms <= DAY_MS:
            found = {mid: iv.events for mid, iv in raw.items()}
            for mid, iv in raw.items():
                acc = accumulated_all(iv, np.concatenate((starts, ends)))
                totals[mid] = (acc[0][n:] - acc[0][:n], acc[1][n:] - acc[1][:n],
                               acc[2][n:] - acc[2][:n])
        else:
            rollups.catch_up(self.site, store)
            found = rollups.events(store, self._ids, lo, hi)
            k_start, k_end = (starts - lo) // HOUR_MS, (ends - lo) // HOUR_MS
            for mid, h in rollups.hourly(store, self._ids, lo, hi).items():
                k = (h.hour_ms - lo) // HOUR_MS
                sums = []
                for values in (h.amount, h.measured_ms, h.known_ms):
                    dense = np.zeros((hi - lo) // HOUR_MS)
                    dense[k] = values
                    cum = np.concatenate(([0.0], np.cumsum(dense)))
                    sums.append(cum[k_end] - cum[k_start])
                totals[mid] = (sums[0], sums[1], sums[2])
        zero = np.zeros(n)
        out = []
        for i in range(n):
            s, e = int(starts[i]), int(ends[i])
            energies = {
                mid: MeterEnergy(mid, float(a[i]), float(m[i]) / w.length_ms,
                                 events=events_in(found.get(mid, ()), s, e),
                                 known=float(k[i]) / w.length_ms)
                for mid in self._ids
                for a, m, k in (totals.get(mid, (zero, zero, zero)),)
            }
            out.append(balance_from_energies(self.topology, energies, s, e,
                                             min_coverage=self.settings.min_coverage))
        return out

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
