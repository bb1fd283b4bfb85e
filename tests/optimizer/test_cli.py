"""``dcpue optimize ...`` end to end on a store filled by the twin."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from dcpue.config import Site, example_path
from dcpue.core.store import Store
from dcpue.optimizer.explore import exploration_schedule
from dcpue.optimizer.mv import recorded_savings
from dcpue.twin.plant import Setpoints
from dcpue.twin.simulator import Twin

from dcpue.cli import main
from tests.optimizer.conftest import JULY

CONFIG = str(example_path("single_hall"))


@pytest.fixture(scope="module")
def store_path(hall: Site, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Five days of exploration before 1 July into a DuckDB file."""
    path = tmp_path_factory.mktemp("cli") / "hall.duckdb"
    twin = Twin(hall, start=JULY - timedelta(days=5))
    ts = twin.now_ms + np.arange(5 * 1440, dtype=np.int64) * 60_000
    schedule = Setpoints(**exploration_schedule(ts, hall.optimizer, seed=3))
    with Store(path) as store:
        for cols in twin.run(5, setpoints=schedule):
            store.append(cols)
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["optimize", *args])
    return code, capsys.readouterr().out


def test_train_propose_override_apply_and_list(store_path: str, capsys) -> None:
    site_args = ["--config", CONFIG, "--store", store_path]
    code, out = _run(capsys, "propose", *site_args)
    assert code == 1 and "no model file" in out
    code, out = _run(capsys, "train", *site_args, "--kind", "ridge")
    assert code == 0
    trained = json.loads(out)
    assert trained["kind"] == "ridge" and trained["rows"] == 5 * 96 - 1  # the last 15 min are not complete
    assert trained["model"].endswith("hall-a-optimizer.joblib")
    assert trained["metrics"]["holdout"]["pue_mae"] < 0.01

    code, out = _run(capsys, "propose", *site_args)
    first = json.loads(out)
    assert code == 0 and first["site"] == "hall-a"

    assert _run(capsys, "override", *site_args, "chilled_water_temperature", "12")[0] == 0
    code, out = _run(capsys, "override", *site_args, "crah_fan_speed", "150")
    assert code == 1 and "outside hard bounds" in out
    assert _run(capsys, "override", *site_args)[1].strip() == "chilled_water_temperature = 12"
    code, out = _run(capsys, "propose", *site_args)
    held = json.loads(out)
    assert held["proposed"]["chilled_water_temperature"] == 12.0
    assert "override:chilled_water_temperature" in held["binding"]
    assert "cleared" in _run(capsys, "override", *site_args, "chilled_water_temperature",
                             "clear")[1]

    code, out = _run(capsys, "apply", *site_args)
    assert code == 0 and f"proposal {held['id']}: accepted (no write-back enabled)" in out
    code, out = _run(capsys, "proposals", *site_args)
    listed = [json.loads(line) for line in out.splitlines()]
    assert [p["id"] for p in listed] == [held["id"], first["id"]]
    assert listed[0]["status"] == "accepted"


def test_mv_writes_the_table(store_path: str, capsys) -> None:
    code, out = _run(capsys, "mv", "--config", CONFIG, "--store", store_path, "--measure", "m1",
                     "--pre", "2023-06-26", "2023-06-29", "--post", "2023-06-29", "2023-07-01")
    assert code == 0
    result = json.loads(out)
    # the store starts on 26 June at 00:00: the counters cover every hour from there
    assert (result["baseline_rows"], result["post_rows"], result["dropped_rows"]) == (72, 48, 0)
    with Store(store_path) as store:
        rows = recorded_savings(store)
    assert [r[0] for r in rows] == ["m1"]
    assert rows[0][3] == pytest.approx(result["savings_kwh"], abs=0.1)


def test_evaluate_refuses_a_site_without_a_twin(tmp_path, capsys) -> None:
    """Issue 14: a site with no [twin] used to be evaluated on dcpue's default 800 kW twin."""
    text = Path(CONFIG).read_text(encoding="utf-8")
    start = text.index("[twin]")
    end = text.index("[calculator]")
    path = tmp_path / "no-twin.toml"
    path.write_text(text[:start] + text[end:])
    code, out = _run(capsys, "evaluate", "--config", str(path), "--days", "1")
    assert code == 1 and "no [twin] section" in out


def test_evaluate_prints_the_three_runs(capsys) -> None:
    code, out = _run(capsys, "evaluate", "--config", CONFIG, "--days", "1",
                     "--start", "2023-07-01", "--explore-days", "3")
    assert code == 0
    for word in ("fixed", "loop", "oracle", "of the oracle's total facility",
                 "model on the evaluation period"):
        assert word in out
