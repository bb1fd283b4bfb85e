"""Hourly energy rollups: each balance meter's finalized amount and coverage per UTC hour.

The long-term statistics of the store (as Home Assistant keeps hourly statistics beside its
short-term states): per meter and hour ``[h, h + 1 h)`` the amount (kWh, or m3 for water), the
measured and the known time (ms), the counter corrections inside it and the engine's events
(rollovers, resets, data-quality findings, in ``energy_hourly_events``), computed by the one
energy engine
(:func:`dcpue.metrics.balance.stored_intervals` split by :func:`dcpue.metrics.energy.
bucket_amounts`) from the raw readings, and kept in the store's ``energy_hourly`` table.

:func:`refresh` recomputes every hour a time range touches, widened by ``calculator.max_gap_s``
on both sides because an interval that crosses an hour edge is split between both hours; it
overwrites what was there, so a late or backfilled reading re-finalizes exactly the hours it
changes and rerunning it changes nothing. Long windows (12-month PUE, reports, the fleet
export) then sum at most 8,784 rows per meter and year instead of reading every raw sample.

Summing hours is exact: the amount accumulated up to an instant is a function of the intervals
alone (:func:`dcpue.metrics.energy.accumulated`), so the hours of a window add up to the window's
own amount, given the same readings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from dcpue.config.site import Site
from dcpue.core.store import Store
from dcpue.metrics.balance import (
    LOOKAROUND_MS,
    BalanceTopology,
    EnergyBalance,
    balance_from_energies,
    stored_intervals,
)
from dcpue.metrics.energy import (
    CounterEvent,
    Intervals,
    MeterEnergy,
    bucket_totals,
    events_in,
)

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: Raw readings are refreshed in slices of this many hours (bounds memory on a year's backfill).
SLICE_HOURS = 24 * 31

_SCHEMA = """
CREATE TABLE IF NOT EXISTS energy_hourly (
    meter VARCHAR NOT NULL,
    hour_ms BIGINT NOT NULL,
    amount DOUBLE NOT NULL,
    measured_ms DOUBLE NOT NULL,
    known_ms DOUBLE NOT NULL,
    rollovers INTEGER NOT NULL,
    resets INTEGER NOT NULL,
    jitter INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS energy_hourly_events (
    meter VARCHAR NOT NULL,
    hour_ms BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    kind VARCHAR NOT NULL,
    before DOUBLE NOT NULL,
    after DOUBLE NOT NULL,
    counted DOUBLE NOT NULL,
    start_ms BIGINT
);
"""


@dataclass(frozen=True, slots=True)
class HourlyMeter:
    """One meter's hours: start (UTC ms), amount (kWh or m3), measured and known ms,
    corrections."""

    hour_ms: np.ndarray
    amount: np.ndarray
    measured_ms: np.ndarray
    known_ms: np.ndarray
    rollovers: np.ndarray
    resets: np.ndarray
    jitter: np.ndarray


def ensure_table(store: Store) -> None:
    store.execute(_SCHEMA)


def floor_hour(ms: int) -> int:
    return int(ms) // HOUR_MS * HOUR_MS


def ceil_hour(ms: int) -> int:
    return -(-int(ms) // HOUR_MS) * HOUR_MS


def _hour_rows(mid: str, iv: Intervals, lo: int, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of ``energy_hourly`` and of ``energy_hourly_events`` for one meter's intervals
    over hours ``[lo, lo + n h)``."""
    amount, measured, known = bucket_totals(iv, lo, HOUR_MS, n)
    flags = {"rollovers": iv.rollover, "resets": iv.reset, "jitter": iv.jitter}
    counts = {name: np.zeros(n, np.int32) for name in flags}
    if len(iv):
        k = (iv.t0 - lo) // HOUR_MS
        inside = (k >= 0) & (k < n)
        for name, flag in flags.items():
            if flag is not None:
                np.add.at(counts[name], k[inside & flag], 1)
    keep = (measured > 0) | (known > 0) | (amount != 0)
    for c in counts.values():
        keep |= c > 0
    hours = lo + HOUR_MS * np.arange(n, dtype=np.int64)
    rows = pd.DataFrame({
        "meter": mid, "hour_ms": hours[keep], "amount": amount[keep],
        "measured_ms": measured[keep], "known_ms": known[keep],
        **{name: c[keep] for name, c in counts.items()},
    })
    hi = lo + n * HOUR_MS
    events = [  # each event in the hours it concerns: from its interval's start to its sample
        (mid, h, e.ts_ms, e.kind, e.before, e.after, e.counted, e.start_ms)
        for e in iv.events
        for h in range(max(floor_hour(e.ts_ms if e.start_ms is None else e.start_ms), lo),
                       min(e.ts_ms + 1, hi), HOUR_MS)
        if e.inside(h, h + HOUR_MS)
    ]
    return rows, pd.DataFrame(events, columns=_EVENT_COLUMNS).astype({"start_ms": "Int64"})


_EVENT_COLUMNS = ["meter", "hour_ms", "ts", "kind", "before", "after", "counted", "start_ms"]


def refresh(site: Site, store: Store, start_ms: int, end_ms: int) -> int:
    """Recompute the hours of every balance meter that ``[start_ms, end_ms)`` touches.

    Returns the number of hour rows written. Idempotent; call it with the time range of
    readings just stored (live, backfilled or imported).
    """
    ensure_table(store)
    pad = int(max(site.calculator.max_gap_s * 1000, LOOKAROUND_MS))
    lo_all, hi_all = floor_hour(start_ms - pad), ceil_hour(end_ms + pad)
    written = 0
    for lo in range(lo_all, hi_all, SLICE_HOURS * HOUR_MS):
        hi = min(lo + SLICE_HOURS * HOUR_MS, hi_all)
        topology, intervals = stored_intervals(site, store, lo, hi)
        n = (hi - lo) // HOUR_MS
        parts = [_hour_rows(mid, iv, lo, n) for mid, iv in intervals.items()]
        frame = pd.concat([p[0] for p in parts], ignore_index=True)
        events = pd.concat([p[1] for p in parts], ignore_index=True)
        meters = list(topology.all_meters)
        where = f"hour_ms >= ? AND hour_ms < ? AND meter IN ({', '.join('?' * len(meters))})"
        store.replace_rows("energy_hourly", where, [lo, hi, *meters], frame)
        store.replace_rows("energy_hourly_events", where, [lo, hi, *meters], events)
        written += len(frame)
    return written


#: Store cursor: the ``seq`` of the newest reading the rollups have been refreshed for.
CURSOR = "rollups.energy_hourly"


def catch_up(site: Site, store: Store) -> int:
    """Refresh the hours touched by every balance reading stored since the last call (live,
    late, backfilled or imported alike); returns the number of hour rows written."""
    ensure_table(store)
    after, newest = store.get_cursor(CURSOR), store.last_seq()
    if newest <= after:
        return 0
    meters = BalanceTopology.from_site(site).all_meters
    days = np.array(sorted(int(r[0]) for r in store.execute(
        "SELECT DISTINCT ts // 86400000 FROM readings WHERE seq > ? AND seq <= ? "
        f"AND meter IN ({', '.join('?' * len(meters))})", [after, newest, *meters],
    ).fetchall()), dtype=np.int64)
    written = 0
    if len(days):  # contiguous runs of touched UTC days, each refreshed once
        breaks = np.flatnonzero(np.diff(days) > 1)
        for first, last in zip(np.r_[days[0], days[breaks + 1]], np.r_[days[breaks], days[-1]],
                               strict=True):
            written += refresh(site, store, int(first) * DAY_MS, (int(last) + 1) * DAY_MS)
    store.set_cursor(CURSOR, newest)
    return written


def hourly(
    store: Store, meters: tuple[str, ...], start_ms: int, end_ms: int
) -> dict[str, HourlyMeter]:
    """Stored hours of ``meters`` whose start lies in ``[start_ms, end_ms)``, time ordered."""
    ensure_table(store)
    if not meters:
        return {}
    got = store.execute(
        "SELECT meter, hour_ms, amount, measured_ms, known_ms, rollovers, resets, jitter "
        "FROM energy_hourly "
        f"WHERE hour_ms >= ? AND hour_ms < ? AND meter IN ({', '.join('?' * len(meters))}) "
        "ORDER BY meter, hour_ms",
        [int(start_ms), int(end_ms), *meters],
    ).fetchnumpy()
    names = np.asarray(got["meter"], dtype=object)
    bounds = np.flatnonzero(names[1:] != names[:-1]) + 1 if len(names) else np.empty(0, int)
    starts = np.concatenate(([0], bounds)).astype(int) if len(names) else np.empty(0, int)
    ends = np.concatenate((bounds, [len(names)])).astype(int) if len(names) else starts
    runs = {str(names[a]): slice(a, b) for a, b in zip(starts, ends, strict=True)}
    empty = slice(0, 0)
    return {
        mid: HourlyMeter(
            np.asarray(got["hour_ms"][r], np.int64), np.asarray(got["amount"][r], float),
            np.asarray(got["measured_ms"][r], float), np.asarray(got["known_ms"][r], float),
            np.asarray(got["rollovers"][r], np.int64), np.asarray(got["resets"][r], np.int64),
            np.asarray(got["jitter"][r], np.int64),
        )
        for mid in meters
        for r in (runs.get(mid, empty),)
    }


def _check_aligned(start_ms: int, end_ms: int) -> None:
    if start_ms % HOUR_MS or end_ms % HOUR_MS or end_ms <= start_ms:
        raise ValueError("rollup windows start and end on whole UTC hours, end after start")


def window_energies(
    topology: BalanceTopology, store: Store, start_ms: int, end_ms: int
) -> dict[str, MeterEnergy]:
    """Each balance meter's amount and coverage over the whole hours ``[start_ms, end_ms)``."""
    _check_aligned(start_ms, end_ms)
    ensure_table(store)
    meters = topology.all_meters
    rows = store.execute(
        "SELECT meter, sum(amount), sum(measured_ms), sum(known_ms), sum(rollovers), "
        "sum(resets), sum(jitter) FROM energy_hourly WHERE hour_ms >= ? AND hour_ms < ? "
        f"AND meter IN ({', '.join('?' * len(meters))}) GROUP BY meter",
        [int(start_ms), int(end_ms), *meters],
    ).fetchall()
    found = events(store, meters, start_ms, end_ms)
    span = float(end_ms - start_ms)
    got = {str(r[0]): r for r in rows}
    return {
        mid: MeterEnergy(mid, float(r[1]), float(r[2]) / span, int(r[4]), int(r[5]), int(r[6]),
                         found.get(mid, ()), float(r[3]) / span)
        if r is not None else MeterEnergy(mid, 0.0, 0.0)
        for mid in meters
        for r in (got.get(mid),)
    }


def events(
    store: Store, meters: tuple[str, ...], start_ms: int, end_ms: int
) -> dict[str, tuple[CounterEvent, ...]]:
    """The engine's events concerning ``[start_ms, end_ms)`` per meter (each once)."""
    rows = store.execute(
        "SELECT DISTINCT meter, ts, kind, before, after, counted, start_ms "
        "FROM energy_hourly_events WHERE hour_ms >= ? AND hour_ms < ? "
        f"AND meter IN ({', '.join('?' * len(meters))}) ORDER BY meter, ts",
        [int(start_ms), int(end_ms), *meters],
    ).fetchall()
    out: dict[str, list[CounterEvent]] = {}
    for mid, ts, kind, before, after, counted, start in rows:
        event = CounterEvent(int(ts), str(kind), float(before), float(after), float(counted),
                             None if start is None else int(start))
        if event.inside(start_ms, end_ms):
            out.setdefault(str(mid), []).append(event)
    return {mid: tuple(found) for mid, found in out.items()}


def rollup_balance(site: Site, store: Store, start_ms: int, end_ms: int) -> EnergyBalance:
    """The energy balance of whole hours ``[start_ms, end_ms)`` from the rollups."""
    topology = BalanceTopology.from_site(site)
    energies = window_energies(topology, store, start_ms, end_ms)
    return balance_from_energies(topology, energies, start_ms, end_ms,
                                 min_coverage=site.calculator.min_coverage)


def hourly_balances(
    site: Site, store: Store, start_ms: int, end_ms: int
) -> list[EnergyBalance]:
    """One energy balance per hour of ``[start_ms, end_ms)`` from the rollups (hourly carbon
    factors, fleet publishing, 24/7 matching)."""
    _check_aligned(start_ms, end_ms)
    topology = BalanceTopology.from_site(site)
    rows = hourly(store, topology.all_meters, start_ms, end_ms)
    n = (end_ms - start_ms) // HOUR_MS
    found = events(store, topology.all_meters, start_ms, end_ms)
    fields = ("amount", "measured_ms", "known_ms", "rollovers", "resets", "jitter")
    dense: dict[str, dict[str, np.ndarray]] = {}
    for mid, h in rows.items():
        k = (h.hour_ms - start_ms) // HOUR_MS
        dense[mid] = {f: np.zeros(n) for f in fields}
        for f in fields:
            dense[mid][f][k] = getattr(h, f)
    out = []
    for i in range(n):
        lo = start_ms + i * HOUR_MS
        energies = {
            mid: MeterEnergy(
                mid, float(d["amount"][i]), float(d["measured_ms"][i]) / HOUR_MS,
                int(d["rollovers"][i]), int(d["resets"][i]), int(d["jitter"][i]),
                events_in(found.get(mid, ()), lo, lo + HOUR_MS),
                float(d["known_ms"][i]) / HOUR_MS,
            )
            for mid, d in dense.items()
        }
        out.append(balance_from_energies(topology, energies, lo, lo + HOUR_MS,
                                         min_coverage=site.calculator.min_coverage))
    return out
