"""CLI start-up: median wall time of ``dcpue --version``, ``dcpue --help`` and ``dcpue pue`` on a
small store, beside ``python -c pass`` measured in the same run.

Usage: ``python bench/cli.py [--runs 11]``. Each command is a fresh process (what a user or a
shell completion pays); the small store is one simulated day of the bundled site.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wall_s(argv: list[str], runs: int) -> float:
    """Median wall time of ``argv`` over ``runs`` runs (s), after one warm-up run."""
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    py = sys.executable
    dcpue = [py, "-m", "dcpue"]
    with tempfile.TemporaryDirectory() as tmp:
        from dcpue.config import example_path

        config = Path(tmp) / "site.toml"
        store = Path(tmp) / "small.duckdb"
        config.write_text(example_path("single_hall").read_text())
        subprocess.run([*dcpue, "simulate", "--config", str(config), "--days", "1",
                        "--store", str(store), "--no-progress"], check=True,
                       stdout=subprocess.DEVNULL)
        rows = [
            ("python -c pass (comparison)", [py, "-c", "pass"]),
            ("python -c 'import pandas, duckdb' (comparison)",
             [py, "-c", "import pandas, duckdb"]),
            ("dcpue --version", [*dcpue, "--version"]),
            ("dcpue --help", [*dcpue, "--help"]),
            ("dcpue pue --window 1h (1-day store)",
             [*dcpue, "pue", "--config", str(config), "--store", str(store)]),
        ]
        print(f"median wall time over {args.runs} runs, {time.strftime('%Y-%m-%d')}")
        for name, argv in rows:
            print(f"{name:<50} {wall_s(argv, args.runs) * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
