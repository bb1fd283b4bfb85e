"""``dcpue pue`` over a real DuckDB store file."""

import json

from dcpue.config import example_path, load_site
from dcpue.core.store import Store

from dcpue.cli import main
from tests.metrics.synth import MINUTE, T0, counters

HALL = str(example_path("single_hall"))


def hall_store(path) -> None:
    """90 minutes of the single hall: grid 1300 kW, IT 1000 kW, every other meter 100 kW."""
    site = load_site(HALL)
    kw = {m.id: 100.0 for m in site.meters if m.kind == "counter"}
    kw.update({"grid-main": 1300.0, "ups-out": 1000.0})
    with Store(path) as store:
        store.append(counters(kw, T0, 90))


def test_pue_table_for_the_latest_hour(tmp_path, capsys):
    hall_store(tmp_path / "s.duckdb")
    assert main(["pue", "--config", HALL, "--store", str(tmp_path / "s.duckdb")]) == 0
    out = capsys.readouterr().out
    assert "1h from 2023-01-01T00:30:00+00:00 to 2023-01-01T01:30:00+00:00" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert rows["pue"] == ["1.3000", "1", "1.000"]
    assert rows["ppue_cooling"][0] == "1.4000"  # (1000 + 4 x 100) / 1000
    assert rows["facility"][0] == "1300.0000"


def test_pue_json_explain_and_insufficient_window(tmp_path, capsys):
    hall_store(tmp_path / "s.duckdb")
    store = str(tmp_path / "s.duckdb")
    assert main(["pue", "--config", HALL, "--store", store, "--window", "1d", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["figures"]["pue"]["value"] is None
    assert doc["figures"]["pue"]["coverage"] == 90 * MINUTE / 86_400_000
    assert main(["pue", "--config", HALL, "--store", store, "--window", "15m", "--explain"]) == 0
    tree = json.loads(capsys.readouterr().out)["figures"]["pue"]
    assert tree["value"] == 1.3
    assert tree["inputs"][0]["meters"] == ["grid-main"]
    assert tree["window"]["from"] == "2023-01-01T01:15:00+00:00"


def test_pue_errors(tmp_path, capsys):
    assert main(["pue", "--config", HALL, "--store", str(tmp_path / "none.duckdb")]) == 1
    Store(tmp_path / "empty.duckdb").close()
    assert main(["pue", "--config", HALL, "--store", str(tmp_path / "empty.duckdb")]) == 1
    assert main(["pue", "--config", HALL, "--store", str(tmp_path / "empty.duckdb"),
                 "--window", "2x"]) == 2
    assert "bad window" in capsys.readouterr().out
