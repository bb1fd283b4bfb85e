"""Hourly energy rollups: each balance meter's finalized amount and coverage per UTC hour.

The long-term statistics of the store (as Home Assistant keeps hourly statistics beside its
short-term states): per meter and hour ``[h, h + 1 h)`` the amount (kWh, or m3 for water), the
measured time (ms) and the counter corrections inside it, computed by the one energy engine
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
    BalanceTopology,
    EnergyBalance,
    balance_from_energies,
    stored_intervals,
)
from dcpue.metrics.energy import Intervals, MeterEnergy, bucket_amounts

HOUR_MS = 3_600_000
#: Raw readings are refreshed in slices of this many hours (bounds memory on a year's backfill).
SLICE_HOURS = 24 * 31

_SCHEMA = """
CREATE TABLE IF NOT EXISTS energy_hourly (
    meter VARCHAR NOT NULL,
    hour_ms BIGINT NOT NULL,
    amount DOUBLE NOT NULL,
    measured_ms DOUBLE NOT NULL,
    rollovers INTEGER NOT NULL,
    resets INTEGER NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class HourlyMeter:
    """One meter's hours: start (UTC ms), amount (kWh or m3), measured ms, corrections."""

    hour_ms: np.ndarray
    amount: np.ndarray
    measured_ms: np.ndarray
    rollovers: np.ndarray
    resets: np.ndarray


def ensure_table(store: Store) -> None:
    store.execute(_SCHEMA)


def floor_hour(ms: int) -> int:
    return int(ms) // HOUR_MS * HOUR_MS


def ceil_hour(ms: int) -> int:
    return -(-int(ms) // HOUR_MS) * HOUR_MS


def _hour_rows(mid: str, iv: Intervals, lo: int, n: int) -> pd.DataFrame:
    """Rows of ``energy_hourly`` for one meter's intervals over hours ``[lo, lo + n h)``."""
    amount, measured = bucket_amounts(iv, lo, HOUR_MS, n)
    rollovers = np.zeros(n, np.int32)
    resets = np.zeros(n, np.int32)
    if len(iv):
        k = (iv.t0 - lo) // HOUR_MS
        inside = (k >= 0) & (k < n)
        np.add.at(rollovers, k[inside & iv.rollover], 1)
        np.add.at(resets, k[inside & iv.reset], 1)
    keep = (measured > 0) | (amount != 0) | (rollovers > 0) | (resets > 0)
    hours = lo + HOUR_MS * np.arange(n, dtype=np.int64)
    return pd.DataFrame({
        "meter": mid, "hour_ms": hours[keep], "amount": amount[keep],
        "measured_ms": measured[keep], "rollovers": rollovers[keep], "resets": resets[keep],
    })


def refresh(site: Site, store: Store, start_ms: int, end_ms: int) -> int:
    """Recompute the hours of every balance meter that ``[start_ms, end_ms)`` touches.

    Returns the number of hour rows written. Idempotent; call it with the time range of
    readings just stored (live, backfilled or imported).
    """
    ensure_table(store)
    pad = int(site.calculator.max_gap_s * 1000)
    lo_all, hi_all = floor_hour(start_ms - pad), ceil_hour(end_ms + pad)
    written = 0
    for lo in range(lo_all, hi_all, SLICE_HOURS * HOUR_MS):
        hi = min(lo + SLICE_HOURS * HOUR_MS, hi_all)
        topology, intervals = stored_intervals(site, store, lo, hi)
        n = (hi - lo) // HOUR_MS
        frame = pd.concat(
            [_hour_rows(mid, iv, lo, n) for mid, iv in intervals.items()], ignore_index=True
        )
        meters = list(topology.all_meters)
        store.replace_rows(
            "energy_hourly",
            f"hour_ms >= ? AND hour_ms < ? AND meter IN ({', '.join('?' * len(meters))})",
            [lo, hi, *meters], frame,
        )
        written += len(frame)
    return written


def hourly(
    store: Store, meters: tuple[str, ...], start_ms: int, end_ms: int
) -> dict[str, HourlyMeter]:
    """Stored hours of ``meters`` whose start lies in ``[start_ms, end_ms)``, time ordered."""
    ensure_table(store)
    if not meters:
        return {}
    got = store.execute(
        "SELECT meter, hour_ms, amount, measured_ms, rollovers, resets FROM energy_hourly "
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
            np.asarray(got["measured_ms"][r], float),
            np.asarray(got["rollovers"][r], np.int64), np.asarray(got["resets"][r], np.int64),
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
        "SELECT meter, sum(amount), sum(measured_ms), sum(rollovers), sum(resets) "
        "FROM energy_hourly WHERE hour_ms >= ? AND hour_ms < ? "
        f"AND meter IN ({', '.join('?' * len(meters))}) GROUP BY meter",
        [int(start_ms), int(end_ms), *meters],
    ).fetchall()
    span = float(end_ms - start_ms)
    got = {str(r[0]): r for r in rows}
    return {
        mid: MeterEnergy(mid, float(r[1]), float(r[2]) / span, int(r[3]), int(r[4]))
        if r is not None else MeterEnergy(mid, 0.0, 0.0)
        for mid in meters
        for r in (got.get(mid),)
    }


def rollup_balance(site: Site, store: Store, start_ms: int, end_ms: int) -> EnergyBalance:
    """The energy balance of whole hours ``[start_ms, end_ms)`` from the rollups."""
    topology = BalanceTopology.from_site(site)
    energies = window_energies(topology, store, start_ms, end_ms)
    return balance_from_energies(topology, energies, start_ms, end_ms)


def hourly_balances(
    site: Site, store: Store, start_ms: int, end_ms: int
) -> list[EnergyBalance]:
    """One energy balance per hour of ``[start_ms, end_ms)`` from the rollups (hourly carbon
    factors, fleet publishing, 24/7 matching)."""
    _check_aligned(start_ms, end_ms)
    topology = BalanceTopology.from_site(site)
    rows = hourly(store, topology.all_meters, start_ms, end_ms)
    n = (end_ms - start_ms) // HOUR_MS
    dense: dict[str, tuple[np.ndarray, ...]] = {}
    for mid, h in rows.items():
        k = (h.hour_ms - start_ms) // HOUR_MS
        cols = [np.zeros(n), np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64)]
        for col, src in zip(cols, (h.amount, h.measured_ms, h.rollovers, h.resets), strict=True):
            col[k] = src
        dense[mid] = tuple(cols)
    out = []
    for i in range(n):
        lo = start_ms + i * HOUR_MS
        energies = {
            mid: MeterEnergy(mid, float(a[i]), float(m[i]) / HOUR_MS, int(r[i]), int(s[i]))
            for mid, (a, m, r, s) in dense.items()
        }
        out.append(balance_from_energies(topology, energies, lo, lo + HOUR_MS))
    return out
