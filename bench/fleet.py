"""Fleet report over 50 sites x 1 year of hourly terms in VictoriaMetrics, beside a naive read.

Starts a VictoriaMetrics (the Debian binary, ``-dedup.minScrapeInterval=1ms``) on a free port,
publishes synthetic hourly terms for ``--sites`` sites over ``--days`` (as the site daemons
would: ``dcpue_hourly`` lines, 20 fields per hour), then times, in the same run:

- ``dcpue fleet report`` as the CLI computes it (``fleet.report.fleet_report``): per-field
  ``sum_over_time`` in the store plus the hourly export 24/7 CFE needs, and without the export;
- a naive report: export every raw hourly sample of every field and sum in Python.

Both give the same fleet PUE (checked). Usage: ``python bench/fleet.py [--sites 50 --days 365]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.servers, run from anywhere

import httpx
import numpy as np
from dcpue.carbon.periods import date_ms
from dcpue.collector.remote import write_lines
from dcpue.fleet.config import parse_fleet
from dcpue.fleet.publish import hourly_lines
from dcpue.fleet.report import fleet_report
from dcpue.fleet.terms import FIELDS, HOUR_MS, TERMS, HourlyTerms

from tests.servers import VictoriaMetrics

START = date(2023, 1, 1)


class DedupVictoriaMetrics(VictoriaMetrics):
    def command(self) -> list[str]:
        return [*super().command(), "-dedup.minScrapeInterval=1ms"]


def synthetic(site: int, n: int, start_ms: int, rng: np.random.Generator) -> HourlyTerms:
    """Plausible hourly terms: IT 0.5-5 MW with a daily swing, PUE 1.15-1.5, midday PV."""
    hours = start_ms + HOUR_MS * np.arange(n, dtype=np.int64)
    hod = (hours // HOUR_MS) % 24
    it = (500 + 4500 * rng.random()) * (1 + 0.05 * np.sin(2 * np.pi * hod / 24))
    pue = 1.15 + 0.35 * rng.random() + 0.03 * rng.standard_normal(n)
    facility = it * pue
    pv = np.where((hod >= 7) & (hod <= 17), 0.1 * facility * np.sin(np.pi * (hod - 7) / 10), 0)
    values = {f: np.zeros(n) for f in FIELDS}
    values |= {"it_kwh": it, "facility_kwh": facility, "pv_generation_kwh": pv,
               "grid_import_kwh": facility - pv, "water_m3": 0.002 * it}
    values |= {f"{t}_coverage": np.ones(n) for t in TERMS}
    return HourlyTerms(hours, values)


def fleet_doc(url: str, n_sites: int, end: date) -> dict:
    regions = [{"id": f"r{k}", "emission_factor_t_per_mwh": 0.4 + 0.1 * k,
                "source": "bench factor"} for k in range(3)]
    sites = [{"id": f"dc-{i:03d}", "region": f"r{i % 3}",
              "commissioned": (end - timedelta(days=200 if i % 10 == 0 else 2000)).isoformat()}
             for i in range(n_sites)]
    instruments = [{"name": "PPA r0", "type": "ppa", "region": "r0", "mwh": 50_000.0,
                    "start": START, "end": end, "vintage": START.year}]
    return {"id": "bench", "remote": {"url": url}, "regions": regions, "sites": sites,
            "instruments": instruments}


def naive(url: str, measurement: str, start_ms: int, end_ms: int) -> dict[str, dict[str, float]]:
    """Export every raw sample of every field and sum per site in Python."""
    sums: dict[str, dict[str, float]] = {}
    with httpx.Client(timeout=600) as client:
        for f in FIELDS:
            resp = client.get(f"{url}/api/v1/export", params={
                "match[]": f"{measurement}_{f}", "start": start_ms / 1000,
                "end": (end_ms - 1) / 1000})
            for line in resp.text.splitlines():
                row = json.loads(line)
                sums.setdefault(row["metric"]["site"], {})[f] = float(sum(row["values"]))
    return sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    end = START + timedelta(days=args.days)
    with tempfile.TemporaryDirectory() as tmp, DedupVictoriaMetrics(Path(tmp)) as vm:
        fleet = parse_fleet(fleet_doc(vm.url, args.sites, end), "bench")
        start_ms, end_ms = date_ms(START, fleet.zone), date_ms(end, fleet.zone)
        n = (end_ms - start_ms) // HOUR_MS
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        lines = 0
        for i, site in enumerate(fleet.sites):
            lines += write_lines(fleet.remote, hourly_lines(
                site.id, "ups_output", fleet.remote.measurement, synthetic(i, n, start_ms, rng)))
        vm.flush()
        t_pub = time.perf_counter() - t0
        print(f"published {args.sites} sites x {n:,} hours = {lines:,} lines "
              f"({lines * len(FIELDS):,} samples) in {t_pub:.1f} s")

        print(f"  ({lines * len(FIELDS) / t_pub:,.0f} samples/s into VictoriaMetrics here)")
        timings = {}
        reports = {}
        for label, hourly_matching in (("fleet report (sums + hourly export for 24/7 CFE)", True),
                                       ("fleet report --no-hourly (sums only)", False)):
            t0 = time.perf_counter()
            reports[hourly_matching] = fleet_report(fleet, START, end,
                                                    hourly_matching=hourly_matching)
            timings[label] = time.perf_counter() - t0
        report = reports[True]
        pue = report.figures["fleet_pue"].value
        assert reports[False].figures["fleet_pue"].value == pue
        t0 = time.perf_counter()
        sums = naive(vm.url, fleet.remote.measurement, start_ms, end_ms)
        included = [r.site.id for r in report.sites if r.included]
        naive_pue = (sum(sums[s]["facility_kwh"] for s in included)
                     / sum(sums[s]["it_kwh"] for s in included))
        timings["naive: export every sample, sum in Python"] = time.perf_counter() - t0
        assert abs(naive_pue - pue) <= 1e-9 * pue, (naive_pue, pue)
        for label, seconds in timings.items():
            print(f"{label:55s} {seconds:6.2f} s")
        cfe = report.figures["cfe_hourly_score"].value
        print(f"fleet PUE {pue:.4f} over {len(included)} of {args.sites} sites (all three "
              f"ways); hourly-matched CFE {cfe:.1f} %")


if __name__ == "__main__":
    main()
