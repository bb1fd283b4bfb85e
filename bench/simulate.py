"""Throughput of the digital twin: a simulated year of the microgrid example at 1-minute steps.

Prints simulated steps/s and readings/s for the twin alone, then for the twin writing into a
fresh DuckDB store (what ``dcpue simulate --days 365`` does), and the annual PUE from the
stored counters. Usage: ``python bench/simulate.py [--days 365] [--config FILE]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dcpue.config import example_path, load_site
from dcpue.core.store import Store
from dcpue.metrics.balance import energy_balance
from dcpue.twin.runner import simulate_into
from dcpue.twin.simulator import Twin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=365.0)
    parser.add_argument("--config", default=str(example_path("microgrid")))
    args = parser.parse_args()
    site = load_site(args.config)

    twin = Twin(site)
    t0 = time.perf_counter()
    rows = sum(len(c) for c in twin.run(args.days))
    dt = time.perf_counter() - t0
    steps = twin.next_step
    print(f"twin only: {steps:,} steps, {rows:,} readings in {dt:.2f} s "
          f"({steps / dt:,.0f} steps/s, {rows / dt:,.0f} readings/s)")

    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.duckdb") as store:
        twin = Twin(site)
        t0 = time.perf_counter()
        summary = simulate_into(twin, store, args.days, progress=False)
        dt = time.perf_counter() - t0
        print(f"twin + store: {summary.added:,} rows in {dt:.2f} s "
              f"({steps / dt:,.0f} steps/s, {summary.added / dt:,.0f} rows/s)")
        t0 = time.perf_counter()
        b = energy_balance(site, store, summary.first_ms, summary.last_ms)
        dt = time.perf_counter() - t0
        print(f"PUE from stored counters: {b.facility_kwh / b.it_kwh:.3f} (read back in {dt:.2f} s)")


if __name__ == "__main__":
    main()
