"""`dcpue export` offline and its paging: every reading once, in time then meter order, pages
cut on whole milliseconds; CSV and Parquet hold the same rows."""

from __future__ import annotations

import csv
import io
import json

import duckdb
from dcpue.config import example_path
from dcpue.core.readings import Reading
from dcpue.core.store import Store
from dcpue.service.export import page

from dcpue.cli import main

T0 = 1_688_169_600_000


def readings() -> list[Reading]:
    """3 meters x 50 one-minute readings (kWh counters), values typed here."""
    return [Reading(T0 + k * 60_000, m, "energy", 1000.0 * i + k, "kWh")
            for k in range(50) for i, m in enumerate(("grid-main", "ups-out", "chiller-1"))]


def test_pages_cut_on_whole_milliseconds_and_lose_nothing(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        store.append(readings())
        seen, frm, pages = [], T0, 0
        while frm is not None:
            got = page(store, None, frm, T0 + 3_600_000, 100)
            assert len(got.rows) <= 100 and len(got.rows) % 3 == 0  # 3 readings per ms
            seen += got.rows
            frm, pages = got.next_from, pages + 1
    assert pages == 2 and len(seen) == 150
    assert [(r[1], r[2]) for r in seen] == sorted((r[1], r[2]) for r in seen)
    assert len({(r[1], r[2]) for r in seen}) == 150


def test_export_csv_and_parquet_offline(tmp_path, capsys):
    text = example_path("single_hall").read_text().replace(
        'path = "var/hall-a.duckdb"', f"path = {json.dumps(str(tmp_path / 's.duckdb'))}")
    config = tmp_path / "site.toml"
    config.write_text(text)
    with Store(tmp_path / "s.duckdb") as store:
        store.append(readings())
    args = ["export", "--config", str(config), "--from", "2023-07-01T00:00:00Z",
            "--to", "2023-07-01T00:10:00Z"]
    assert main([*args, "--meter", "ups-out"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[1] == ["2023-07-01T00:00:00.000Z", str(T0), "ups-out", "energy", "1000.0", "kWh"]
    assert len(rows) == 11
    out = tmp_path / "r.parquet"
    assert main([*args, "--format", "parquet", "--output", str(out)]) == 0
    got = duckdb.sql(f"SELECT ts_ms, meter, value FROM '{out}' ORDER BY ts_ms, meter").fetchall()
    assert len(got) == 30 and got[0] == (T0, "chiller-1", 2000.0)
    assert main([*args, "--meter", "nope"]) == 2
    assert "unknown meter 'nope'" in capsys.readouterr().err


def test_quality_counts_a_counter_reset_in_range(tmp_path):
    """A counter that drops from 1049 to 5 kWh is a reset the engine reports; the quality
    view counts it for that meter and in the total."""
    from dcpue.config import example_path, load_site
    from dcpue.service.views import data_quality

    site = load_site(example_path("single_hall"))
    with Store(tmp_path / "s.duckdb") as store:
        rows = [r for r in readings() if r.meter == "ups-out"]
        rows = rows[:25] + [Reading(r.ts_ms, r.meter, r.quantity, r.value - 1020.0, r.unit)
                            for r in rows[25:]]
        store.append(rows)
        q = data_quality(site, store, T0, T0 + 3_000_000, T0 + 3_000_000, 300_000)
    ups = {m["meter"]: m for m in q["meters"]}["ups-out"]
    assert ups["events"].get("reset") == 1 and q["counter_events"].get("reset") == 1
