"""``dcpue simulate`` and ``dcpue demo`` end to end on a real DuckDB file."""

from __future__ import annotations

import re

import pytest
from dcpue.config import example_path
from dcpue.core.store import Store

from dcpue.cli import main

ROW = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$")


def test_simulate_writes_store_and_rerun_is_idempotent(tmp_path, capsys):
    db = tmp_path / "hall.duckdb"
    argv = ["simulate", "--config", str(example_path("single_hall")), "--days", "0.5",
            "--store", str(db), "--no-progress"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "wrote 11,520 new rows (11,520 generated)" in first  # 720 steps x 16 meters
    pue = float(re.search(r"PUE (\d\.\d+)", first).group(1))
    assert 1.05 < pue < 2.0
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "wrote 0 new rows" in second and "store holds 11,520 rows" in second
    with Store(db) as store:
        assert store.count() == 11_520
        assert store.time_range() == (1_672_531_200_000, 1_672_531_200_000 + 719 * 60_000)


def test_simulate_rejects_a_bad_counter_reset(tmp_path, capsys):
    text = example_path("single_hall").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("[twin]\n", '[twin]\ncounter_reset = { meter = "nope", at_day = 1 }\n'))
    assert main(["simulate", "--config", str(bad), "--store", str(tmp_path / "x.duckdb")]) == 2
    assert "twin.counter_reset.meter" in capsys.readouterr().err


@pytest.mark.parametrize("config, pv", [(None, False), ("microgrid", True)])
def test_demo_prints_plausible_values_from_the_store_and_is_safe_twice(
    tmp_path, monkeypatch, capsys, config, pv
):
    monkeypatch.chdir(tmp_path)
    argv = ["demo", "--days", "0.25"] + (["--config", str(example_path(config))] if config else [])
    outputs = []
    for _ in range(2):
        assert main(argv) == 0
        outputs.append(capsys.readouterr().out)
    assert (tmp_path / "var" / "demo.duckdb").exists()
    rows = [ROW.match(line) for line in outputs[1].splitlines()]
    rows = [m for m in rows if m]
    assert len(rows) == 5
    nominal = 6000.0 if pv else 800.0
    for m in rows:
        it, facility, pue, pv_kw = (float(m.group(i)) for i in range(2, 6))
        assert 0.85 * nominal <= it <= 1.1 * nominal
        assert 1.05 < pue < 2.0
        assert pue == pytest.approx(facility / it, abs=1e-3)
        assert pv_kw == 0.0  # 06:00 UTC is night in New York; no PV in the single hall
    assert "wrote 0 new rows" in outputs[1]
    assert [ROW.match(x) and x for x in outputs[0].splitlines()] == [
        ROW.match(x) and x for x in outputs[1].splitlines()
    ]
