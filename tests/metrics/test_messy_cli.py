"""Messy meter data through the public CLI (``dcpue pue --json``, ``dcpue meter``) on a DuckDB
store written with ``Store.append``.

Site: grid incomer (counter, wraps at 99,999.9 kWh) 1,300 kW, IT (counter) 1,000 kW, read
every minute from 00:00 to 01:30 UTC. Computed by dcpue: the energies and PUE over the latest
hour (00:30-01:30). Declared: the constant powers, so the hand-worked figures are grid
1,300 kWh, IT 1,000 kWh, PUE 1.3; each case must give those (within 0.1 %) or say
"data-quality error" with its cause.
"""

import json

import numpy as np
import pytest
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store

from dcpue.cli import main
from tests.metrics.synth import MINUTE, T0

SITE = """
id = "messy"
timezone = "Europe/Berlin"
latitude = 52.5
longitude = 13.4
store = { path = "messy.duckdb" }
grid = { emission_factor_t_per_mwh = 0.4, source = "test factor" }
[[meters]]
id = "grid-main"
role = "grid_import"
kind = "counter"
unit = "kWh"
rollover = 99999.9
[[meters]]
id = "ups-out"
role = "it_load"
kind = "counter"
unit = "kWh"
it_category = "ups_output"
parent = "grid-main"
"""
MINUTES = np.arange(91)
TS = T0 + MINUTE * MINUTES.astype(np.int64)


def grid_values(start: float = 60_000.0) -> np.ndarray:
    return start + 1300.0 * MINUTES / 60


def it_values(start: float = 5_000_000.0) -> np.ndarray:
    return start + 1000.0 * MINUTES / 60


def run_pue(tmp_path, capsys, grid: np.ndarray, it: np.ndarray, ts=TS, it_ts=None) -> dict:
    site = tmp_path / "site.toml"
    site.write_text(SITE)
    with Store(tmp_path / "messy.duckdb") as store:
        store.append(ReadingColumns.concat([
            ReadingColumns.series("grid-main", "energy", "kWh", ts, grid),
            ReadingColumns.series("ups-out", "energy", "kWh", ts if it_ts is None else it_ts,
                                  it),
        ]))
    capsys.readouterr()
    assert main(["pue", "--config", str(site), "--store", str(tmp_path / "messy.duckdb"),
                 "--json"]) == 0
    return json.loads(capsys.readouterr().out)["figures"]


def assert_pue(figs: dict, grid_kwh: float = 1300.0, it_kwh: float = 1000.0) -> None:
    assert figs["facility"]["value"] == pytest.approx(grid_kwh, rel=1e-3)
    assert figs["it"]["value"] == pytest.approx(it_kwh, rel=1e-3)
    assert figs["pue"]["value"] == pytest.approx(grid_kwh / it_kwh, rel=1e-3)


def test_clean_data_gives_the_hand_worked_pue(tmp_path, capsys):
    assert_pue(run_pue(tmp_path, capsys, grid_values(), it_values()))


def test_jitter_dip_on_it_and_grid_counts_nothing(tmp_path, capsys):
    # one 0.1 kWh step back on each counter (float32 rounding, torn read), then recovery
    grid, it = grid_values(), it_values(5_000_029.0)
    grid[50] = grid[49] - 0.1
    it[60] = it[59] - 0.1
    assert_pue(run_pue(tmp_path, capsys, grid, it))


def test_rollover_near_the_top_of_the_range_is_wrapped(tmp_path, capsys):
    grid = grid_values(99_999.9 - 1300.0 * 60 / 60) % 99_999.9  # wraps at 01:00
    assert_pue(run_pue(tmp_path, capsys, grid, it_values()))


def test_reset_in_the_upper_half_counts_from_zero(tmp_path, capsys):
    # grid counter at 80,000 resets to 0 at 01:00 and counts on from there
    grid = grid_values(80_000.0)
    after = MINUTES >= 60
    grid[after] = 1300.0 * (MINUTES[after] - 59) / 60  # 00:59 -> 01:00 delivers 21.67 kWh
    assert_pue(run_pue(tmp_path, capsys, grid, it_values()))


def test_reset_to_an_impossible_value_is_a_data_quality_error(tmp_path, capsys):
    grid = grid_values(80_000.0)
    after = MINUTES >= 60
    grid[after] = 19_971.0 + 1300.0 * (MINUTES[after] - 60) / 60
    figs = run_pue(tmp_path, capsys, grid, it_values())
    assert figs["pue"]["value"] is None
    assert figs["pue"]["status"] == "data-quality error"
    assert "grid-main: replacement" in figs["pue"]["cause"]


def test_unrecorded_swap_is_an_error_and_recording_it_restores_the_figure(tmp_path, capsys):
    # the IT meter is swapped at 01:00 for a used one reading 73,512.3 kWh
    it = it_values(5_029.0)
    after = MINUTES >= 60
    it[after] = 73_512.3 + 1000.0 * (MINUTES[after] - 60) / 60
    figs = run_pue(tmp_path, capsys, grid_values(), it)
    assert figs["pue"]["status"] == "data-quality error"
    assert "ups-out: jump" in figs["pue"]["cause"]
    # the old meter closed at 5,029 + 1000 x 59.5 / 60; the new one opened at 73,512.3 - 1000/120
    site, store = str(tmp_path / "site.toml"), str(tmp_path / "messy.duckdb")
    assert main(["meter", "replace", "--config", site, "--store", store, "--meter", "ups-out",
                 "--at", "2023-01-01T00:59:30+00:00", "--old-final", str(5_029.0 + 1000 * 59.5
                                                                          / 60),
                 "--new-initial", str(73_512.3 - 1000 / 120)]) == 0
    capsys.readouterr()
    assert main(["pue", "--config", site, "--store", store, "--json"]) == 0
    assert_pue(json.loads(capsys.readouterr().out)["figures"])
    assert main(["meter", "events", "--config", site, "--store", store, "--json"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert [(e["meter"], e["kind"]) for e in events] == [("ups-out", "recorded_replacement")]


def test_torn_read_outlier_is_bridged(tmp_path, capsys):
    it = it_values()
    it[70] = 9.99e9  # a word-order mistake for one read
    assert_pue(run_pue(tmp_path, capsys, grid_values(), it))


def test_lagging_meter_holds_the_window_back(tmp_path, capsys):
    # IT's last two readings have not arrived: the window ends at 01:28, where both meters are
    figs = run_pue(tmp_path, capsys, grid_values(), it_values()[:-2], it_ts=TS[:-2])
    assert_pue(figs)
    assert figs["pue"]["coverage"] == 1.0


def test_pue_below_one_is_a_data_quality_error(tmp_path, capsys):
    figs = run_pue(tmp_path, capsys, grid_values(), 5e6 + 1400.0 * MINUTES / 60)  # IT 1,400 kW
    assert figs["pue"]["value"] is None
    assert figs["pue"]["status"] == "data-quality error"
    assert "PUE < 1" in figs["pue"]["cause"]


def test_report_json_says_data_quality_error_for_an_unrecorded_swap(tmp_path, capsys):
    it = it_values(5_029.0)
    after = MINUTES >= 60
    it[after] = 73_512.3 + 1000.0 * (MINUTES[after] - 60) / 60
    run_pue(tmp_path, capsys, grid_values(), it)
    assert main(["report", "--config", str(tmp_path / "site.toml"), "--store",
                 str(tmp_path / "messy.duckdb"), "--from", "2023-01-01", "--to", "2023-01-02",
                 "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["key"]: r for r in doc["rows"]}
    assert rows["pue"]["values"] == [None]
    assert rows["pue"]["status"] == ["data-quality error"]
    assert any("ups-out: jump" in w for w in doc["warnings"])
