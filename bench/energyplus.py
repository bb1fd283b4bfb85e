"""Speed of the EnergyPlus plant: simulated days per second of the generated hall, beside the
native twin on the same site and period (same run, same machine).

Prints, for each engine, the wall time of ``--days`` days (EnergyPlus: including its start and
warm-up) and the seconds per simulated day, then the period PUE of each from its own readings.
Usage: ``python bench/energyplus.py [--days 30] [--config FILE]`` (needs dcpue[energyplus]).
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    site = load_site(args.config)
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


if __name__ == "__main__":
    main()
