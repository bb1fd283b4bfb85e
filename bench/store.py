"""Store layout: appends, one meter's year, bytes per reading, each beside a comparison.

Run from the repository root: ``.venv/bin/python bench/store.py [--meters 500]`` (the default,
100 meters x 1 year at 1 minute = 52.6 M readings, takes a few minutes on 2 cores). Needs the
``victoria-metrics`` binary for the bytes-per-reading comparison. Prints a table; nothing here
is asserted.

* append: one day of every meter per :meth:`Store.append` (idempotent, interned ids, month
  tables), beside a plain DuckDB ``INSERT`` of the same NumPy columns into a naive table of
  strings per row (meter, quantity, ts, value, unit).
* one meter's year: :meth:`Store.series` with :meth:`Store.maintain` run after every day (it
  moves the hot table into month tables and sorts closed months; the newest month stays in
  moved chunks, as in a live store), beside ``SELECT ts, value FROM
  naive WHERE meter = ? ORDER BY ts`` on the naive table. Medians of 5 over different meters.
* bytes per reading: the store file after a checkpoint, the naive table's file, and
  VictoriaMetrics' data directory after a flush, all holding the same ``--vm-meters`` x 1 year.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.servers, run from anywhere

import duckdb
import numpy as np
import pandas as pd
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store

from tests.servers import VictoriaMetrics

T0_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MIN_MS = 60_000
DAY_MIN = 1440


def days(n_meters: int, n_days: int, seed: int = 7) -> Iterator[ReadingColumns]:
    """Each day of ``n_meters`` at 1 minute: half power meters (kW, random walk, 2 decimals),
    half energy counters (kWh, integral of the power, 3 decimals)."""
    rng = np.random.default_rng(seed)
    names = np.array([f"m{i:04d}" for i in range(n_meters)], dtype=object)
    power = n_meters // 2
    level = rng.uniform(20, 400, n_meters)
    energy = rng.uniform(1e4, 1e6, n_meters)
    quantity = np.where(np.arange(n_meters) < power, "power", "energy").astype(object)
    unit = np.where(np.arange(n_meters) < power, "kW", "kWh").astype(object)
    minutes = np.arange(DAY_MIN, dtype=np.int64) * MIN_MS
    for d in range(n_days):
        walk = level[:, None] + rng.normal(0, 0.5, (n_meters, DAY_MIN)).cumsum(axis=1)
        walk = np.abs(walk)
        level = walk[:, -1]
        counter = energy[:, None] + (walk / 60).cumsum(axis=1)
        energy = counter[:, -1]
        value = np.where((np.arange(n_meters) < power)[:, None], walk.round(2), counter.round(3))
        yield ReadingColumns(
            np.tile(T0_MS + d * DAY_MIN * MIN_MS + minutes, n_meters),
            np.repeat(names, DAY_MIN), np.repeat(quantity, DAY_MIN), value.ravel(),
            np.repeat(unit, DAY_MIN),
        )


def fill(path: Path, n_meters: int, n_days: int) -> tuple[float, float, int]:
    """Append into a dcpue store and into a naive DuckDB table; seconds each, and rows."""
    naive = duckdb.connect(str(path.with_suffix(".naive.duckdb")))
    naive.execute("CREATE TABLE readings (meter VARCHAR, quantity VARCHAR, ts BIGINT, "
                  "value DOUBLE, unit VARCHAR)")
    t_store = t_naive = t_maint = 0.0
    rows = 0
    with Store(path) as store:
        for chunk in days(n_meters, n_days):
            t = time.perf_counter()
            rows += store.append(chunk)
            t_store += time.perf_counter() - t
            t = time.perf_counter()
            store.maintain()  # as the pipeline does every minute: moves the hot table
            t_maint += time.perf_counter() - t
            frame = pd.DataFrame({"meter": chunk.meter, "quantity": chunk.quantity,
                                  "ts": chunk.ts_ms, "value": chunk.value, "unit": chunk.unit})
            t = time.perf_counter()
            naive.register("frame", frame)
            naive.execute("INSERT INTO readings SELECT * FROM frame")
            naive.unregister("frame")
            t_naive += time.perf_counter() - t
        t = time.perf_counter()
        store.maintain()
        t_sort = time.perf_counter() - t
        store.execute("CHECKPOINT")
        used = used_bytes(store.execute("PRAGMA database_size").fetchone())
    naive.execute("CHECKPOINT")
    naive_used = used_bytes(naive.execute("PRAGMA database_size").fetchone())
    naive.close()
    print(f"  blocks in use: {used / rows:.1f} B per reading (naive table {naive_used / rows:.1f} B);"
          " the rest of the file is free blocks that later months reuse", flush=True)
    print(f"  maintenance (moving the hot table, sorting closed months) {t_maint:.1f} s while "
          f"filling, {t_sort:.1f} s at the end", flush=True)
    return t_store, t_naive, rows


def used_bytes(size: tuple) -> int:
    """Bytes in used blocks from ``PRAGMA database_size`` (block size x used blocks)."""
    return int(size[2]) * int(size[4])


def read_year(path: Path, n_meters: int) -> tuple[float, float, int]:
    """Median seconds to read one meter's year: dcpue, then the naive table."""
    picks = [f"m{i:04d}" for i in np.linspace(0, n_meters - 1, 5).astype(int)]
    ours, theirs = [], []
    with Store(path) as store:
        for meter in picks:
            t = time.perf_counter()
            got = store.series(meter)
            ours.append(time.perf_counter() - t)
    naive = duckdb.connect(str(path.with_suffix(".naive.duckdb")), read_only=True)
    for meter in picks:
        t = time.perf_counter()
        other = naive.execute(
            "SELECT ts, value FROM readings WHERE meter = ? ORDER BY ts", [meter]
        ).fetchnumpy()
        theirs.append(time.perf_counter() - t)
    naive.close()
    assert np.array_equal(other["value"], store_values(path, picks[-1])), "same readings"
    return statistics.median(ours), statistics.median(theirs), len(got)


def store_values(path: Path, meter: str) -> np.ndarray:
    with Store(path) as store:
        return store.series(meter).value


def vm_bytes(workdir: Path, n_meters: int, n_days: int) -> tuple[int, int]:
    """Bytes of VictoriaMetrics' data directory (data and index) holding the readings, and
    the reading count; imported per series and day through ``/api/v1/import``."""
    n = 0
    with VictoriaMetrics(workdir / "vm") as vm:
        for chunk in days(n_meters, n_days):
            lines = []
            for meter in dict.fromkeys(chunk.meter):
                sel = chunk.meter == meter
                lines.append(json.dumps({
                    "metric": {"__name__": f"dcpue_{chunk.quantity[sel][0]}", "meter": meter,
                               "site": "bench"},
                    "values": chunk.value[sel].tolist(), "timestamps": chunk.ts_ms[sel].tolist(),
                }))
                n += int(sel.sum())
            request = urllib.request.Request(
                f"{vm.url}/api/v1/import", data="\n".join(lines).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=60):
                pass
        vm.stop()  # a graceful stop writes its in-memory parts to disk
        size = sum(f.stat().st_size for f in (workdir / "vm" / "data").rglob("*") if f.is_file())
    return size, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--days", type=int, default=366)
    parser.add_argument("--vm-meters", type=int, default=20)
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.duckdb"
        t_store, t_naive, n = fill(path, args.meters, args.days)
        rows.append((f"append, {n:,} readings ({args.meters} meters x {args.days} days, 1 min)",
                     f"{n / t_store:,.0f} /s", f"{n / t_naive:,.0f} /s naive INSERT"))
        ours, theirs, k = read_year(path, args.meters)
        rows.append((f"one meter's year ({k:,} samples)", f"{ours * 1000:,.0f} ms",
                     f"{theirs * 1000:,.0f} ms naive query"))
        size = path.stat().st_size
        naive_size = path.with_suffix(".naive.duckdb").stat().st_size
        rows.append(("file bytes per reading", f"{size / n:.1f} B",
                     f"{naive_size / n:.1f} B naive table"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "small.duckdb"
        _, _, n_small = fill(path, args.vm_meters, args.days)
        small = path.stat().st_size
        vm, n_vm = vm_bytes(Path(tmp), args.vm_meters, args.days)
        assert n_vm == n_small
        rows.append((f"bytes per reading, {n_small:,} readings", f"{small / n_small:.1f} B",
                     f"{vm / n_vm:.1f} B VictoriaMetrics"))
    width = max(len(r[0]) for r in rows)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; duckdb {duckdb.__version__}")
    print(f"{'':<{width}}  {'dcpue':>14}  comparison (same run)")
    for label, ours_s, theirs_s in rows:
        print(f"{label:<{width}}  {ours_s:>14}  {theirs_s}")


if __name__ == "__main__":
    main()
