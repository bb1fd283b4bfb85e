"""Benchmark of the rolling PUE calculator (prints figures; no pass/fail).

1. Incremental cost: one minute of readings for every meter (the daemon's steady state) fed
   to :class:`RollingCalculator.update`, per update and per reading, plus a full snapshot.
2. Full recompute: a year of 1-minute counter data for every meter fed meter by meter, the
   way :meth:`RollingCalculator.from_store` rebuilds after a restart (store read excluded).

Targets (issue 4): < 1 s per incremental minute update, < 30 s for the full-year recompute
of 500 meters. Usage: ``python bench/pue.py [--meters 500] [--days 365] [--minutes 120]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from dcpue.config import Site, parse_site
from dcpue.core.readings import ReadingColumns
from dcpue.metrics.rolling import RollingCalculator

T0 = 1_672_531_200_000  # 2023-01-01T00:00:00Z
MINUTE = 60_000
ROLES = ("chiller", "crah", "pump", "cooling_tower", "ups_loss", "lighting")


def bench_site(n_meters: int) -> Site:
    """One incomer, half the meters IT (rack feeds), the rest spread over the subsystems."""
    meters = [{"id": "grid", "role": "grid_import", "kind": "counter", "unit": "kWh",
               "rollover": 99_999_999.9}]
    for i in range(1, n_meters):
        role = "it_load" if i % 2 else ROLES[i % len(ROLES)]
        meter = {"id": f"m{i:04d}", "role": role, "kind": "counter", "unit": "kWh",
                 "parent": "grid"}
        if role == "it_load":
            meter["it_category"] = "pdu_output"
        meters.append(meter)
    return parse_site({
        "id": "bench", "latitude": 0.0, "longitude": 0.0, "meters": meters,
        "grid": {"emission_factor_t_per_mwh": 0.5, "source": "bench"},
    })


def power_kw(site: Site) -> np.ndarray:
    """Mean power per meter: sub-meters 10 kW, the incomer their sum x 1.05."""
    kw = np.full(len(site.meters), 10.0)
    kw[0] = 10.0 * (len(site.meters) - 1) * 1.05
    return kw


def incremental(site: Site, minutes: int) -> None:
    calc = RollingCalculator(site)
    ids = np.array([m.id for m in site.meters], dtype=object)
    kw = power_kw(site)
    n = len(ids)
    qty, unit = np.full(n, "energy", dtype=object), np.full(n, "kWh", dtype=object)
    batches = [
        ReadingColumns(np.full(n, T0 + k * MINUTE, np.int64), ids, qty, kw * k / 60.0, unit)
        for k in range(minutes + 1)
    ]
    calc.update(batches[0])
    started = time.perf_counter()
    for batch in batches[1:]:
        calc.update(batch)
    per_update = (time.perf_counter() - started) / minutes
    started = time.perf_counter()
    figures = calc.snapshot()
    snap_s = time.perf_counter() - started
    print(f"incremental: {n} meters, {minutes} minute updates: {per_update * 1e3:.2f} ms per "
          f"update ({per_update / n * 1e6:.1f} us per reading; target < 1000 ms per update)")
    print(f"snapshot: {len(figures)} figures over {len(calc.windows)} windows in "
          f"{snap_s * 1e3:.1f} ms; pue.1h = {figures['pue.1h'].value}")


def full_recompute(site: Site, days: int) -> None:
    calc = RollingCalculator(site)
    ts = T0 + MINUTE * np.arange(days * 1440 + 1, dtype=np.int64)
    hours = (ts - T0) / 3_600_000
    rng = np.random.default_rng(0)
    generate = 0.0
    started = time.perf_counter()
    for meter, kw in zip(site.meters, power_kw(site), strict=True):
        t = time.perf_counter()
        values = 1_000.0 + kw * hours * rng.uniform(0.98, 1.02)
        generate += time.perf_counter() - t
        calc.update_series(meter.id, ts, values)
    total = time.perf_counter() - started - generate
    readings = len(ts) * len(site.meters)
    fig = calc.snapshot(int(ts[-1]))
    key = f"pue.{calc.windows[-1]}"
    print(f"full recompute: {len(site.meters)} meters x {days} d of 1-minute data = "
          f"{readings / 1e6:.1f} M readings in {total:.1f} s "
          f"({readings / total / 1e6:.1f} M readings/s; target < 30 s for 365 d x 500 meters); "
          f"{key} = {fig[key].value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=500)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--minutes", type=int, default=120)
    args = parser.parse_args()
    site = bench_site(args.meters)
    incremental(site, args.minutes)
    full_recompute(site, args.days)


if __name__ == "__main__":
    main()
