"""Speed of the EnergyPlus plant: simulated days per second of the generated hall, beside the
native twin on the same site and period (same run, same machine).

Prints, for each engine, the wall time of ``--days`` days (EnergyPlus: including its start and
warm-up) and the seconds per simulated day, then the period PUE of each from its own readings.
Usage: ``python bench/energyplus.py [--days 30] [--config FILE]`` (needs dcpue[energyplus]).

``--evaluate N`` instead times ``optimize evaluate`` on the site's EnergyPlus plant (N days, 7
of exploration): the wall time of each phase, and the closed loop's cost per control decision
(``LiveState`` + ``propose``) as the loop run's time beyond the fixed run's (same days, same
engine, measured in the same run).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from dcpue.config import load_site
from dcpue.core.store import Store
from dcpue.metrics.balance import energy_balance
from dcpue.twin.energyplus import EnergyPlusPlant
from dcpue.twin.runner import simulate_into
from dcpue.twin.simulator import Twin

HALL = Path(__file__).resolve().parents[1] / "tests" / "twin_energyplus" / "hall.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--config", default=str(HALL))
    parser.add_argument("--evaluate", type=float, metavar="DAYS")
    args = parser.parse_args()
    site = load_site(args.config)
    if args.evaluate:
        evaluate(site, args.evaluate)
        return
    plants = {
        "energyplus": lambda: EnergyPlusPlant(site, days=args.days),
        "native twin": lambda: Twin(site.model_copy(update={"twin": site.twin.model_copy(
            update={"engine": "native", "step_s": 900})}), start=site.twin.start),
    }
    for name, make in plants.items():
        with Store() as store:
            t0 = time.perf_counter()
            plant = make()
            summary = simulate_into(plant, store, args.days, progress=False)
            dt = time.perf_counter() - t0
            if isinstance(plant, EnergyPlusPlant):
                plant.close()
            b = energy_balance(site, store, summary.first_ms, summary.last_ms)
        print(f"{name:12} {args.days:g} days, {summary.generated:,} readings in {dt:.2f} s "
              f"({dt / args.days:.3f} s per simulated day), PUE {b.facility_kwh / b.it_kwh:.3f}")


def evaluate(site, days: float) -> None:
    from dcpue.optimizer.evaluate import run_evaluation

    marks: list[tuple[str, float]] = []
    ev = run_evaluation(site, days, explore_days=7,
                        progress=lambda msg: marks.append((msg, time.perf_counter())))
    marks.append(("done", time.perf_counter()))
    took = {msg: b - a for (msg, a), (_, b) in itertools.pairwise(marks)}
    for msg, dt in took.items():
        print(f"{msg:40} {dt:6.2f} s")
    fixed, loop = took["running the conventional setpoints"], took["running the loop"]
    decisions = ev.loop.intervals
    print(f"closed loop: {1000 * (loop - fixed) / decisions:.1f} ms per decision beyond the "
          f"fixed run ({decisions} decisions; fixed run {fixed:.2f} s, loop {loop:.2f} s)")


if __name__ == "__main__":
    main()
