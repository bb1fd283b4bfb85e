"""What the read-only commands import: ``dcpue pue`` and ``dcpue report`` on a small store load
NumPy, pydantic and DuckDB but none of pandas, scikit-learn, pvlib, SciPy or the daemon's
server libraries, nor does ``dcpue import`` (a CSV into the store); ``dcpue --help`` and
``--version`` load none of the scientific stack.

Each command runs as ``python -X importtime -m dcpue ...`` in a fresh process (the entry point a
user runs, unchanged); the modules it imported are read from that report. Start-up *time* is a
benchmark (bench/cli.py), not asserted here.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.metrics.test_cli import HALL, hall_store

#: Libraries a read-only command must not load (the optimizer's, the twin's, the daemon's).
HEAVY = ("pandas", "sklearn", "scipy", "pvlib", "pyarrow", "starlette", "uvicorn", "aiomqtt",
         "paho", "pymodbus", "influxdb_client", "apscheduler")


def imported(*args: str) -> tuple[set[str], str]:
    """Top-level packages ``dcpue ARGS`` imported (from ``-X importtime``) and its stdout."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "dcpue", *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    names = {line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines()
             if line.startswith("import time:") and line.count("|") == 2}
    return {n.split(".")[0] for n in names} | names, run.stdout


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cli_imports") / "s.duckdb"
    hall_store(path)
    return str(path)


@pytest.mark.parametrize("command", [
    ["pue", "--window", "1h"],
    ["report", "--from", "2022-12-31", "--to", "2023-01-02", "--format", "json"],
])
def test_read_commands_skip_pandas_and_the_optimizer(store, command):
    """The command answered (its figures are in stdout) from DuckDB, and none of HEAVY was
    imported; the presence of duckdb and the store module shows the report was read."""
    modules, out = imported(*command, "--config", HALL, "--store", store)
    assert "pue" in out
    assert {"duckdb", "numpy", "dcpue.core.store"} <= modules
    assert sorted(modules & set(HEAVY)) == []


def test_import_writes_the_store_without_pandas(tmp_path):
    """``dcpue import`` of a long CSV (two good rows, one unknown meter): counted, stored and
    dead-lettered through the CSV reader, NumPy and DuckDB, with none of HEAVY loaded."""
    csv = tmp_path / "hour.csv"
    csv.write_text("ts,meter,quantity,value,unit\n"
                   "2023-01-01T00:00:00Z,grid-main,energy,1000.5,kWh\n"
                   "2023-01-01T00:01:00Z,grid-main,energy,1001,kWh\n"
                   "2023-01-01T00:01:00Z,ghost,energy,1,kWh\n")
    modules, out = imported("import", "--config", HALL, "--store", str(tmp_path / "i.duckdb"),
                            str(csv), "--no-progress")
    assert '"accepted": 2, "added": 2' in out and '"unknown_meter": 1' in out
    assert {"duckdb", "numpy", "csv", "dcpue.collector.importer"} <= modules
    assert sorted(modules & set(HEAVY)) == []


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_skip_the_scientific_stack(flag):
    modules, out = imported(flag)
    assert "dcpue" in out and "dcpue.cli" in modules
    assert sorted(modules & {"numpy", "pydantic", "duckdb", *HEAVY}) == []


def test_proposals_listing_skips_the_optimizer_stack(store):
    """``dcpue optimize proposals`` prints the proposal stored here (its id) from DuckDB and
    loads none of HEAVY: not scikit-learn, pandas or SciPy (the plant model's libraries)."""
    from dcpue.core.store import Store
    from dcpue.optimizer.proposals import Proposal, ProposalLog

    with Store(store) as s:
        ProposalLog(s).save(Proposal("p-imports", 0, "hall", "proposed", {"running_units": 4.0},
                                     {"running_units": 5.0}, "test"))
    modules, out = imported("optimize", "proposals", "--config", HALL, "--store", store)
    assert '"id": "p-imports"' in out and '"running_units": "4 -> 5"' in out
    assert {"duckdb", "dcpue.optimizer.proposals"} <= modules
    assert sorted(modules & set(HEAVY)) == []
