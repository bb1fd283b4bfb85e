"""CLI start-up: median wall and CPU time of ``dcpue --version``, ``--help``, ``dcpue pue``,
``dcpue report --format json`` and ``dcpue import`` on a small store, beside ``python -c pass``
and the imports these commands cannot avoid (``import duckdb``; ``import numpy, pydantic,
duckdb``) measured in the same run, and ``import pandas, duckdb`` and ``dcpue pue`` with pandas
imported first (what it loaded before pandas became a lazy import of the store's writers),
and ``dcpue import`` with pandas imported first (the import cost it paid when pandas read
the CSV).

Usage: ``python bench/cli.py [--runs 11] [--only TEXT ...]``. The commands take turns (each
round runs every one once). Each is a fresh process (what a user or a shell completion pays) with bytecode caching
on, as in an installed package (the warm-up round writes dcpue's ``__pycache__`` even where
``PYTHONDONTWRITEBYTECODE`` is set). The small store is one simulated day of the bundled site;
``dcpue import`` re-imports one hour of it (960 readings exported by ``dcpue export``) into a
second store, so after the warm-up round it validates and adds 0 (idempotent rerun). CPU time
(user + sys of the child) moves less with the machine's load than wall time does; the load
average is printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Children cache bytecode as an installed package does.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU time (user + sys) of one run of ``argv`` (s)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=ENV)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def timed(rows: list[tuple[str, list[str]]], runs: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU time of each command (s) over ``runs`` rounds after one warm-up
    round; each round runs every command once, so a change of the machine's load during the
    benchmark reaches every row alike."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in rows}
    for i in range(runs + 1):
        for name, argv in rows:
            sample = run_once(argv)
            if i:
                samples[name].append(sample)
    return {name: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s))
            for name, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="run only the rows whose name contains TEXT (repeatable)")
    args = parser.parse_args()
    py = sys.executable
    dcpue = [py, "-m", "dcpue"]
    with tempfile.TemporaryDirectory() as tmp:
        from dcpue.config import example_path

        config = Path(tmp) / "site.toml"
        store = Path(tmp) / "small.duckdb"
        csv = Path(tmp) / "hour.csv"
        config.write_text(example_path("single_hall").read_text())
        site = ["--config", str(config)]
        subprocess.run([*dcpue, "simulate", *site, "--days", "1", "--store", str(store),
                        "--no-progress"], check=True, stdout=subprocess.DEVNULL, env=ENV)
        subprocess.run([*dcpue, "export", *site, "--store", str(store), "--from",
                        "2023-01-01T12:00", "--to", "2023-01-01T13:00", "-o", str(csv)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        rows = [
            ("python -c pass (comparison)", [py, "-c", "pass"]),
            ("python -c 'import duckdb' (comparison)", [py, "-c", "import duckdb"]),
            ("python -c 'import numpy, pydantic, duckdb' (comparison)",
             [py, "-c", "import numpy, pydantic, duckdb"]),
            ("python -c 'import pandas, duckdb' (comparison)",
             [py, "-c", "import pandas, duckdb"]),
            ("dcpue --version", [*dcpue, "--version"]),
            ("dcpue --help", [*dcpue, "--help"]),
            ("dcpue pue --window 1h (1-day store)", [*dcpue, "pue", *site, "--store", str(store)]),
            ("dcpue pue, pandas imported first (comparison: as before)",
             [py, "-c", "import sys, pandas; from dcpue.cli import main; sys.exit(main())",
              "pue", *site, "--store", str(store)]),
            ("dcpue report --format json (1-day store)",
             [*dcpue, "report", *site, "--store", str(store), "--from", "2023-01-01", "--to",
              "2023-01-02", "--format", "json"]),
            ("dcpue import (960 readings, rerun adds 0)",
             [*dcpue, "import", *site, "--store", str(Path(tmp) / "import.duckdb"), str(csv),
              "--no-progress"]),
            ("dcpue import, pandas imported first (comparison: as before)",
             [py, "-c", "import sys, pandas; from dcpue.cli import main; sys.exit(main())",
              "import", *site, "--store", str(Path(tmp) / "import.duckdb"), str(csv),
              "--no-progress"]),
        ]
        if args.only:
            rows = [row for row in rows if any(text in row[0] for text in args.only)]
        print(f"medians over {args.runs} runs, {time.strftime('%Y-%m-%d %H:%M')}, "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"{'command':<58} {'wall':>8} {'cpu':>8}")
        for name, (wall, cpu) in timed(rows, args.runs).items():
            print(f"{name:<58} {wall * 1000:5.0f} ms {cpu * 1000:5.0f} ms")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
