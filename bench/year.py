"""Benchmark: a year of many meters in the store — build, rollups, one-meter read, 12-month PUE.

Builds an on-disk store of ``--meters`` 1-minute counters over ``--days`` (default 500 x 365 =
262.8 M readings) and prints, each beside a comparison measured in the same run:

1. ingest: :meth:`Store.append` in daily batches vs a raw DuckDB ``INSERT`` from NumPy;
2. rollups: :func:`dcpue.metrics.rollups.refresh` of the whole span (a one-off: live ingest
   refreshes only the hours it touches);
3. one meter's year: :meth:`Store.series` vs a raw DuckDB ``SELECT`` of that meter;
4. 12-month PUE: :func:`dcpue.metrics.rollups.rollup_balance` (what ``dcpue pue --window 12mo``
   reads) vs the raw-reading path (:func:`dcpue.metrics.balance.energy_balance`) and vs a naive
   DuckDB first/last-per-meter query (which ignores rollovers, resets and gaps).

Usage: ``python bench/year.py [--meters 500] [--days 365] [--path /tmp/dcpue-year.duckdb]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store
from dcpue.metrics import rollups
from dcpue.metrics.balance import energy_balance
from pue import bench_site, power_kw  # bench/ is on sys.path when run as a script

T0 = 1_672_531_200_000  # 2023-01-01T00:00:00Z
MINUTE = 60_000
DAY = 86_400_000


def day_batch(ids: np.ndarray, kw: np.ndarray, day: int) -> ReadingColumns:
    """One day of 1-minute counters for every meter (constant power, counters from 1000 kWh)."""
    ts = T0 + day * DAY + MINUTE * np.arange(1440, dtype=np.int64)
    hours = (ts - T0) / 3_600_000
    n, m = len(ts), len(ids)
    return ReadingColumns(
        np.tile(ts, m), np.repeat(ids, n), np.full(n * m, "energy", dtype=object),
        (1_000.0 + np.outer(kw, hours)).ravel(), np.full(n * m, "kWh", dtype=object),
    )


def timed(label: str, fn, *args):
    started = time.perf_counter()
    out = fn(*args)
    took = time.perf_counter() - started
    print(f"{label}: {took:.2f} s")
    return out, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=500)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--path", default="/tmp/dcpue-year.duckdb")
    args = parser.parse_args()
    for suffix in ("", ".wal"):
        Path(args.path + suffix).unlink(missing_ok=True)
    site = bench_site(args.meters)
    ids = np.array([m.id for m in site.meters], dtype=object)
    kw = power_kw(site)
    total = args.days * 1440 * len(ids)
    store = Store(args.path)

    started = time.perf_counter()
    for day in range(args.days):
        store.append(day_batch(ids, kw, day))
        store.maintain()  # as the collector's pipeline does every minute
    took = time.perf_counter() - started
    raw = duckdb.connect()
    raw.execute("CREATE TABLE r (meter VARCHAR, ts BIGINT, value DOUBLE)")
    sample = day_batch(ids, kw, 0)
    frame = pd.DataFrame({"meter": sample.meter, "ts": sample.ts_ms, "value": sample.value})
    t_raw = time.perf_counter()
    raw.register("frame", frame)
    raw.execute("INSERT INTO r SELECT * FROM frame")
    raw_rate = len(sample) / (time.perf_counter() - t_raw)
    print(f"ingest: {total / 1e6:.1f} M readings in {took:.1f} s = {total / took:,.0f} "
          f"readings/s (raw DuckDB INSERT of one day's batch: {raw_rate:,.0f} readings/s)")

    end = T0 + args.days * DAY
    _, refresh_s = timed("rollups.refresh of the whole span", rollups.refresh, site, store, T0, end)

    one = site.meters[1]
    series, series_s = timed(f"Store.series({one.id!r}) over {args.days} d", store.series,
                             one.id, "energy", T0, end)
    print(f"  -> {len(series):,} samples")

    span = min(args.days, 365) * DAY
    lo, hi = end - span, end
    balance, rollup_s = timed("12-month PUE from rollups", rollups.rollup_balance,
                              site, store, lo, hi)
    print(f"  -> PUE {balance.facility_kwh / balance.it_kwh:.6f} (declared powers give "
          f"{kw[0] / kw[1::2].sum():.6f}), coverage {balance.coverage:.4f}")
    if args.days <= 31:
        direct, _ = timed("the same window from raw readings", energy_balance,
                                 site, store, lo, hi)
        print(f"  -> PUE {direct.facility_kwh / direct.it_kwh:.6f}")
    else:
        print("the same window from raw readings: skipped above 31 days (minutes per run)")
    store.close()
    con = duckdb.connect(args.path, read_only=True)
    started = time.perf_counter()
    con.execute(
        "SELECT meter, arg_max(value, ts) - arg_min(value, ts) FROM readings "
        "WHERE ts >= ? AND ts < ? GROUP BY meter", [lo, hi]
    ).fetchall()
    naive_s = time.perf_counter() - started
    print(f"naive DuckDB first/last per meter over the window: {naive_s:.2f} s "
          f"(dcpue from rollups: {rollup_s:.2f} s; one-off refresh {refresh_s:.1f} s; "
          f"one-meter read {series_s:.3f} s)")


if __name__ == "__main__":
    main()
