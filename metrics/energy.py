"""Energy in a time window from cumulative counters or power readings, with coverage.

Pure NumPy, no I/O. Timestamps are UTC epoch milliseconds (int64); counter values and
energies are in the meter's canonical unit (kWh for energy, m3 for water volume); power in kW.

Model: consecutive samples ``t[i] < t[i+1]`` form intervals. Each interval carries an amount
``e[i]`` and a rate that varies linearly from ``r0[i]`` to ``r1[i]`` (amount per ms) across it,
so the amount accumulated from the first sample up to any instant ``x`` is exact:
``A(x) = sum(e[:j]) + w * (r0[j] + r(x)) / 2`` with ``w = x - t[j]``, ``r(x) = r0[j] +
(r1[j] - r0[j]) * w / dt[j]`` (``j`` the interval holding ``x``). The amount in a window
``[a, b)`` is ``A(b) - A(a)``; the same construction over "measured" time gives coverage and
over "known" time (energy known, even if not when inside the interval) the bridgeable gaps.

**Plausibility ceiling** (kW) of a meter: its configured ``max_power_kw``, else derived from its
own samples (:func:`derived_ceiling_kw`: the larger of ``margin`` x the median and 2 x the 99th
percentile of its positive interval powers, at least ``floor_kw``, at most
``default_max_power_kw``), never unbounded.

**Counter** (cumulative energy, wraps to 0 at ``rollover``), :func:`counter_intervals`. The
energy of an interval is measured from the *held* value ``h`` (the running maximum of the
counter since its last correction), so ``e[i] = max(v[i+1] - h[i], 0)``:

- **jitter**: a step back of at most ``tol = abs_tol + rel_tol x |h|`` (float32 rounding, a torn
  two-register read) counts 0 and keeps ``h``; the recovery is counted from ``h``, so a dip and
  its recovery never count twice (5,000,029.0 -> 5,000,028.9 -> 5,000,031.0 is 2.0 kWh);
- **outlier**: one sample that leaves ``h`` implausibly (a larger drop, or a rise above the
  ceiling) while the next sample is consistent with ``h`` is ignored (the neighbours bridge it);
- **rollover**: a larger drop from the top ``rollover_band`` of the range (``h >= rollover x
  (1 - band)``) whose wrapped increment ``v[i+1] + rollover - h`` is plausible (0..ceiling x dt);
- **reset**: any other drop to a value the meter can have counted from zero (``v[i+1] <=
  ceiling x dt``): the post-reset value counts;
- **replacement**: a drop to a value it cannot have counted from zero (a swapped meter):
  0 counted, the interval is unmeasured and unknown, and a data-quality error;
- **jump**: a rise above ``ceiling x dt``: 0 counted, unmeasured and unknown, a data-quality
  error; later increments count from the new level.

Operator-recorded replacements (:class:`Replacement`) are applied first: samples from ``at`` on
are shifted by ``old_final - new_initial``, so the energy across the swap is ``old_final -
last_old + first_new - new_initial``. Intervals longer than ``max_gap_ms`` keep their energy
(the counter measured it, it is *known*) but count as unmeasured time, since when it was used
inside the gap is unknown. The rate is constant over an interval (linear interpolation).

**Power** (kW), :func:`power_intervals`: trapezoid rule, ``e[i] = (p[i] + p[i+1]) / 2 * dt /
3.6e6`` kWh; intervals longer than ``max_gap_ms`` are not bridged (energy 0, unmeasured,
unknown). Samples above the ceiling, and negative samples of a load, are dropped as
``over_ceiling`` / ``negative_power`` events (data-quality errors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

MS_PER_HOUR = 3_600_000.0
_WINDOW = 4096  # samples scanned at a time by the counter rules
#: Event kinds that make any window holding them a data-quality error.
ERROR_EVENTS = frozenset({"replacement", "jump", "over_ceiling", "negative_power"})


@dataclass(frozen=True, slots=True)
class CounterRules:
    """Plausibility rules of the counter and power engine (defaults: ``[calculator]``).

    ``abs_tol`` (canonical unit) + ``rel_tol`` x value is the jitter tolerance; ``rollover_band``
    the top share of the range a rollover must start from; ``margin``, ``floor_kw``,
    ``default_max_power_kw`` and ``min_history`` derive a ceiling from a meter's history.
    """

    abs_tol: float = 0.5
    rel_tol: float = 1e-6
    rollover_band: float = 0.05
    margin: float = 10.0
    floor_kw: float = 1.0
    default_max_power_kw: float = 100_000.0
    min_history: int = 5


DEFAULT_RULES = CounterRules()


@dataclass(frozen=True, slots=True)
class Replacement:
    """An operator-recorded meter swap: at ``at_ms`` the old meter read ``old_final`` and the
    new one ``new_initial`` (canonical unit)."""

    at_ms: int
    old_final: float
    new_initial: float


@dataclass(frozen=True, slots=True)
class CounterEvent:
    """A correction or data-quality finding at sample time ``ts_ms``.

    ``kind``: rollover, reset, replacement, jump, outlier, recorded_replacement, over_ceiling,
    negative_power. ``before``/``after`` are the held and the new value (canonical unit),
    ``counted`` the amount the engine counted for the interval; ``start_ms`` the previous
    sample's time for a counter event (it concerns the interval ``(start_ms, ts_ms]``).
    """

    ts_ms: int
    kind: str
    before: float
    after: float
    counted: float
    start_ms: int | None = None

    def inside(self, start_ms: int, end_ms: int) -> bool:
        """Whether the event concerns the window ``[start_ms, end_ms)``."""
        if self.start_ms is None:
            return start_ms <= self.ts_ms < end_ms
        return self.ts_ms > start_ms and self.start_ms < end_ms

    @property
    def error(self) -> bool:
        return self.kind in ERROR_EVENTS

    def describe(self, meter: str) -> str:
        return (f"{meter}: {self.kind} at {self.ts_ms} ms ({self.before:,.6g} -> "
                f"{self.after:,.6g}, counted {self.counted:,.6g})")


_ARRAYS = ("t0", "t1", "amount", "rate0", "rate1", "measured", "rollover", "reset", "known",
           "jitter")


@dataclass(frozen=True, slots=True)
class Intervals:
    """Consecutive-sample intervals of one meter (arrays of equal length, time ordered).

    ``amount`` in kWh (or m3), ``rate0``/``rate1`` in amount per ms at the interval's start
    and end, ``measured`` whether the interval counts toward coverage, ``known`` whether its
    energy is known (a long counter gap is known but unmeasured); ``rollover``/``reset``/
    ``jitter`` flag the counter rules applied to each interval. ``events`` lists the rarer
    corrections and findings; ``hold`` is the value the next sample is measured from (counters),
    ``ceiling_kw`` the plausibility ceiling used.
    """

    t0: np.ndarray
    t1: np.ndarray
    amount: np.ndarray
    rate0: np.ndarray
    rate1: np.ndarray
    measured: np.ndarray
    rollover: np.ndarray
    reset: np.ndarray
    known: np.ndarray | None = None
    jitter: np.ndarray | None = None
    events: tuple[CounterEvent, ...] = ()
    hold: float | None = None
    ceiling_kw: float | None = None

    def __post_init__(self) -> None:
        if self.known is None:
            object.__setattr__(self, "known", self.measured.copy())
        if self.jitter is None:
            object.__setattr__(self, "jitter", np.zeros(len(self.t0), bool))

    def __len__(self) -> int:
        return len(self.t0)

    @classmethod
    def empty(cls, hold: float | None = None) -> Intervals:
        i, f, b = np.empty(0, np.int64), np.empty(0), np.empty(0, bool)
        return cls(i, i, f, f, f, b, b, b, b, b, hold=hold)

    def after(self, ms: int) -> Intervals:
        """The intervals that end after ``ms`` (those before it add nothing from ``ms`` on)."""
        first = int(np.searchsorted(self.t1, ms, side="right"))
        if first == 0:
            return self
        return replace(self, **{f: getattr(self, f)[first:] for f in _ARRAYS},
                       events=tuple(e for e in self.events if e.inside(ms, 2**62)))


@dataclass(slots=True)
class MeterEnergy:
    """Amount one meter measured in a window: kWh (energy meters) or m3 (water meters).
    Treat it as immutable (not frozen: the rolling calculator builds one per meter and window
    every minute, and a frozen ``__init__`` costs four times as much).

    ``coverage`` is the measured share of the window, 0..1; ``known`` the share whose energy
    is known (>= coverage: long counter gaps); ``rollovers``/``resets``/``jitter`` count the
    counter corrections inside it; ``events`` are the corrections and findings inside it and
    ``quality`` the data-quality error they amount to ('' when none).
    """

    meter: str
    amount: float
    coverage: float
    rollovers: int = 0
    resets: int = 0
    jitter: int = 0
    events: tuple[CounterEvent, ...] = ()
    known: float | None = None

    @property
    def quality(self) -> str:
        return "; ".join(e.describe(self.meter) for e in self.events if e.error)


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


def derived_ceiling_kw(kw: np.ndarray, rules: CounterRules = DEFAULT_RULES) -> float:
    """Plausibility ceiling in kW from a meter's own interval powers ``kw`` (kW, any order).

    The larger of ``margin`` x the median and 2 x the 99th percentile of the positive powers
    (an implausible minority of under 1 % moves neither), at least ``floor_kw``, at most
    ``default_max_power_kw``; with fewer than ``min_history`` positive powers just
    ``default_max_power_kw``.
    """
    positive = kw[np.isfinite(kw) & (kw > 0)]
    if len(positive) < rules.min_history:
        return rules.default_max_power_kw
    median, p99 = np.percentile(positive, [50, 99])
    return float(min(max(rules.margin * median, 2.0 * p99, rules.floor_kw),
                     rules.default_max_power_kw))


def shift_replacements(
    ts_ms: np.ndarray, values: np.ndarray, replacements: Sequence[Replacement]
) -> np.ndarray:
    """Counter values continued across recorded swaps: ``+ old_final - new_initial`` from each
    swap's ``at_ms`` on (cumulative, so any number of swaps chain)."""
    if not replacements:
        return values
    out = np.array(values, dtype=np.float64)
    for r in replacements:
        out[ts_ms >= r.at_ms] += r.old_final - r.new_initial
    return out


def counter_intervals(
    ts_ms: np.ndarray,
    values: np.ndarray,
    rollover: float | None = None,
    max_gap_ms: float | None = None,
    max_power_kw: float | None = None,
    *,
    rules: CounterRules = DEFAULT_RULES,
    replacements: Sequence[Replacement] = (),
) -> Intervals:
    """Intervals of a cumulative counter (see the module docstring for the rules).

    ``ts_ms`` strictly increasing; ``values`` and ``rollover`` in the canonical unit (kWh, m3);
    ``max_power_kw`` the plausibility ceiling (None: derived from these samples).
    Cost: O(n) vectorised, plus O(n) per correction (rollover, reset, jump, outlier).
    """
    n = len(ts_ms)
    if n < 2:
        return Intervals.empty(float(values[-1]) if n else None)
    raw = shift_replacements(ts_ms, values, replacements)
    t0, t1 = ts_ms[:-1], ts_ms[1:]
    dt = (t1 - t0).astype(np.float64)
    if max_power_kw is None:
        max_power_kw = derived_ceiling_kw(np.diff(raw) / dt * MS_PER_HOUR, rules)
    cap = max_power_kw * dt / MS_PER_HOUR
    a = raw.copy()  # adjusted values: corrections shift every later sample
    known = np.ones(n - 1, bool)
    rolled = np.zeros(n - 1, bool)
    reset = np.zeros(n - 1, bool)
    events: list[CounterEvent] = [
        CounterEvent(int(ts_ms[j]), "recorded_replacement", r.old_final, r.new_initial, 0.0,
                     int(ts_ms[j - 1]))
        for r in replacements
        for j in np.flatnonzero(ts_ms >= r.at_ms)[:1] if j > 0
    ]
    shift = 0.0  # correction offset not yet applied to the samples after ``s``
    prefix = -np.inf  # held value before sample ``s``
    s = 0
    while s < n - 1:  # windows of samples s..e: O(n) in all plus O(_WINDOW) per correction
        e = min(s + _WINDOW, n - 1)
        a[s + 1:e + 1] += shift
        first = 0
        while True:
            held = np.maximum(prefix, np.maximum.accumulate(a[s:e + 1]))
            inc = a[s + 1:e + 1] - held[:-1]
            tol = rules.abs_tol + rules.rel_tol * np.abs(held[:-1])
            c = cap[s:e]
            bad = np.flatnonzero((inc[first:] < -tol[first:]) | (inc[first:] > c[first:]))
            if len(bad) == 0:
                break
            k = first + int(bad[0])
            i = s + k
            h, x, ts = float(held[k]), float(a[i + 1]), int(ts_ms[i + 1])
            if i + 2 < n:  # the next sample consistent with the held value: an outlier
                inc2 = a[i + 2] + (shift if i + 2 > e else 0.0) - h
                if -tol[k] <= inc2 <= max_power_kw * (ts_ms[i + 2] - ts_ms[i]) / MS_PER_HOUR:
                    events.append(CounterEvent(ts, "outlier", h, x, 0.0, int(ts_ms[i])))
                    a[i + 1] = h
                    first = k + 1
                    continue
            raw_h = h - (a[i] - raw[i])  # the held value on the meter's own scale
            new = x - (a[i + 1] - raw[i + 1])
            if inc[k] > c[k]:
                kind, counted = "jump", 0.0
            elif (rollover is not None and raw_h >= rollover * (1 - rules.rollover_band)
                  and 0 <= new + rollover - raw_h <= c[k]):
                kind, counted = "rollover", new + rollover - raw_h
                rolled[i] = True
            elif 0 <= new <= c[k]:
                kind, counted = "reset", new
                reset[i] = True
            else:
                kind, counted = "replacement", 0.0
            known[i] = kind not in ("jump", "replacement")
            events.append(CounterEvent(ts, kind, raw_h, new, float(counted), int(ts_ms[i])))
            delta = h + counted - x
            a[i + 1:e + 1] += delta
            shift += delta
            first = k + 1
        prefix = float(held[-1])
        s = e
    hold = np.maximum.accumulate(a)
    amount = np.diff(hold)
    jitter = a[1:] < hold[:-1]
    measured = known.copy()
    if max_gap_ms is not None:
        measured &= dt <= max_gap_ms
    rate = amount / dt
    return Intervals(t0, t1, amount, rate, rate, measured, rolled, reset, known, jitter,
                     tuple(sorted(events, key=lambda e: e.ts_ms)),
                     float(hold[-1] - (a[-1] - values[-1])), max_power_kw)


def power_intervals(
    ts_ms: np.ndarray,
    kw: np.ndarray,
    max_gap_ms: float | None = None,
    *,
    max_power_kw: float | None = None,
    load: bool = False,
    rules: CounterRules = DEFAULT_RULES,
) -> Intervals:
    """Trapezoid intervals of power readings in kW (amounts in kWh); long gaps not bridged.

    Samples above the ceiling (``max_power_kw``, else derived from these samples) and, for a
    ``load``, negative samples are dropped and reported as events (data-quality errors).
    """
    if max_power_kw is None:
        max_power_kw = derived_ceiling_kw(np.abs(kw), rules)
    over = np.abs(kw) > max_power_kw
    negative = (kw < 0) & ~over if load else np.zeros(len(kw), bool)
    events: tuple[CounterEvent, ...] = ()
    if over.any() or negative.any():
        events = tuple(
            CounterEvent(int(t), "over_ceiling" if o else "negative_power", max_power_kw
                         if o else 0.0, float(p), 0.0)
            for t, p, o in zip(ts_ms[over | negative], kw[over | negative],
                               over[over | negative], strict=True)
        )
        ts_ms, kw = ts_ms[~(over | negative)], kw[~(over | negative)]
    if len(ts_ms) < 2:
        return replace(Intervals.empty(float(kw[-1]) if len(kw) else None), events=events,
                       ceiling_kw=max_power_kw)
    t0, t1 = ts_ms[:-1], ts_ms[1:]
    dt = (t1 - t0).astype(np.float64)
    bridged = np.ones(len(dt), bool) if max_gap_ms is None else dt <= max_gap_ms
    r0 = np.where(bridged, kw[:-1] / MS_PER_HOUR, 0.0)
    r1 = np.where(bridged, kw[1:] / MS_PER_HOUR, 0.0)
    amount = (r0 + r1) / 2 * dt
    flags = np.zeros(len(dt), bool)
    return Intervals(t0, t1, amount, r0, r1, bridged, flags, flags, bridged, flags, events,
                     float(kw[-1]), max_power_kw)


def _time_before(iv: Intervals, mask: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Time (ms) of the ``mask`` intervals before interval ``j``."""
    if mask.all():  # contiguous intervals: the time before j is t0[j] - t0[0]
        return (iv.t0[j] - iv.t0[0]).astype(np.float64)
    dt = (iv.t1 - iv.t0).astype(np.float64)
    return np.concatenate(([0.0], np.cumsum(np.where(mask, dt, 0.0))))[j]


def accumulated_all(
    iv: Intervals, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Amount, measured time and known time (ms) from the first sample up to each ``x``."""
    x = np.asarray(x, dtype=np.int64)
    if len(iv) == 0:
        zero = np.zeros(len(x))
        return zero, zero.copy(), zero.copy()
    assert iv.known is not None
    j = np.clip(np.searchsorted(iv.t0, x, side="right") - 1, 0, len(iv) - 1)
    dt_j = (iv.t1[j] - iv.t0[j]).astype(np.float64)
    amount_before = np.concatenate(([0.0], np.cumsum(iv.amount)))[j]
    w = np.clip((x - iv.t0[j]).astype(np.float64), 0.0, dt_j)
    rate_x = iv.rate0[j] + (iv.rate1[j] - iv.rate0[j]) * (w / dt_j)
    partial = np.where(w >= dt_j, iv.amount[j], w * (iv.rate0[j] + rate_x) / 2)
    measured = _time_before(iv, iv.measured, j) + np.where(iv.measured[j], w, 0.0)
    known = (measured if iv.known is iv.measured or np.array_equal(iv.known, iv.measured)
             else _time_before(iv, iv.known, j) + np.where(iv.known[j], w, 0.0))
    return amount_before + partial, measured, known


def accumulated(iv: Intervals, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Amount and measured time (ms) accumulated from the first sample up to each instant ``x``.

    ``x`` is any array of epoch-ms instants; before the first sample both are 0, after the
    last sample they stay at their totals.
    """
    amount, measured, _ = accumulated_all(iv, x)
    return amount, measured


def bucket_totals(
    iv: Intervals, first_edge_ms: int, step_ms: int, n_buckets: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Amount, measured ms and known ms in each bucket ``[first + k*step, first + (k+1)*step)``."""
    edges = first_edge_ms + step_ms * np.arange(n_buckets + 1, dtype=np.int64)
    amount, measured, known = accumulated_all(iv, edges)
    return np.diff(amount), np.diff(measured), np.diff(known)


def bucket_amounts(
    iv: Intervals, first_edge_ms: int, step_ms: int, n_buckets: int
) -> tuple[np.ndarray, np.ndarray]:
    """Amount and measured ms in each bucket ``[first + k*step, first + (k+1)*step)``."""
    amount, measured, _ = bucket_totals(iv, first_edge_ms, step_ms, n_buckets)
    return amount, measured


def events_in(
    events: Sequence[CounterEvent], start_ms: int, end_ms: int
) -> tuple[CounterEvent, ...]:
    """The events concerning ``[start_ms, end_ms)``."""
    return tuple(e for e in events if e.inside(start_ms, end_ms))


def window_energy(
    meter: str, iv: Intervals, start_ms: int, end_ms: int
) -> MeterEnergy:
    """Amount in ``[start_ms, end_ms)``, its coverage (measured share of the window), known
    share, corrections and events."""
    if end_ms <= start_ms:
        raise ValueError("window end must be after its start")
    amount, measured, known = accumulated_all(iv, np.array([start_ms, end_ms], dtype=np.int64))
    inside = (iv.t1 > start_ms) & (iv.t0 < end_ms)
    length = end_ms - start_ms
    assert iv.jitter is not None
    return MeterEnergy(
        meter,
        float(amount[1] - amount[0]),
        float((measured[1] - measured[0]) / length),
        int(np.count_nonzero(iv.rollover & inside)),
        int(np.count_nonzero(iv.reset & inside)),
        int(np.count_nonzero(iv.jitter & inside)),
        events_in(iv.events, start_ms, end_ms),
        float((known[1] - known[0]) / length),
    )
