"""``dcpue import``: CSV backfill through the live validation, idempotent, with counted dead letters.

Computed: what the CLI stores from hand-written CSV files. Declared: the test site, the rows
and the import's receive time (real now: the rows are from 2024, inside the 3,660-day window).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from dcpue.collector.importer import CsvImporter, import_csv, publish_csv
from dcpue.collector.service import Collector
from dcpue.core.store import Store

from dcpue.cli import main
from tests.collector.conftest import T0_MS, make_site, site_doc, wait_until
from tests.collector.helpers import collector_site

LONG = """ts,meter,quantity,value,unit
2024-01-01T00:00:00Z,grid,energy,1000.5,kWh
2024-01-01T01:00:00+01:00,it,energy,800,
2024-01-01T00:00:00Z,pdu-1,power,20000,W
2024-01-01T00:01:00Z,pdu-1,power,250,kW
2024-01-01T00:00:00Z,ghost,energy,1,kWh
2024-01-01T00:00:00Z,oat,temperature,abc,degC
2024-01-01T00:00:00Z,oat,power,5,
yesterday,oat,temperature,5,
2024-01-01T00:01:00Z,oat,temperature,41,degF
2024-01-01T00:02:00Z,oat,temperature,NaN,
2030-01-01T00:00:00Z,oat,temperature,1,
2024-01-01T00:03:00Z,grid,energy,-1,
2024-01-01T00:04:00Z,oat,temperature,,
"""

WIDE = """ts,grid,it [MWh],pdu-1 [W],oat
2024-01-01T00:00:00Z,1000,0.8,1500,5.5
2024-01-01T00:01:00Z,1001,0.801,,6
2024-01-01T00:02:00Z,1002,bad,1600,
"""


@pytest.fixture
def run_cli(capsys):
    """``dcpue import --no-progress ARGS`` in this process: (exit code, JSON output, stderr)."""

    def run(*args: str) -> tuple[int, dict, str]:
        code = main(["import", "--no-progress", *args])
        out, err = capsys.readouterr()
        return code, json.loads(out) if code == 0 else {}, err

    return run


@pytest.fixture
def site_file(tmp_path):
    doc = site_doc()
    lines = [f'id = "{doc["id"]}"', "latitude = 36.1", "longitude = -79.95",
             "[grid]", "emission_factor_t_per_mwh = 0.5703", 'source = "test"']
    for m in doc["meters"]:
        lines.append("[[meters]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in m.items()]
    path = tmp_path / "site.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_long_csv_is_validated_counted_and_idempotent(tmp_path, site_file, run_cli) -> None:
    csv = tmp_path / "long.csv"
    csv.write_text(LONG)
    db = tmp_path / "s.duckdb"
    code, first, err = run_cli("--config", str(site_file), "--store", str(db), str(csv))
    assert code == 0, err
    assert first == {
        "rows": 13, "accepted": 4, "added": 4, "duplicates": 0, "published": 0,
        "dead_letters": {"above_ceiling": 1, "bad_quantity": 1, "bad_timestamp": 1,
                         "bad_type": 1, "future_timestamp": 1, "missing_field": 1, "nan": 1,
                         "negative_counter": 1, "unknown_meter": 1},
    }
    code, again, _ = run_cli("--config", str(site_file), "--store", str(db), str(csv))
    assert (code, again["accepted"], again["added"], again["duplicates"]) == (0, 4, 0, 4)
    with Store(db) as store:
        got = sorted((r.ts_ms, r.meter, r.value, r.unit) for r in store.read().to_readings())
        letters = store.dead_letters(limit=100)
    assert got == [
        (T0_MS, "grid", 1000.5, "kWh"), (T0_MS, "it", 800.0, "kWh"),
        (T0_MS, "pdu-1", 20.0, "kW"), (T0_MS + 60_000, "oat", 5.0, "degC"),
    ]
    ghost = next(d for d in letters if d.reason == "unknown_meter")
    assert (ghost.source, ghost.origin, ghost.raw) == (
        "import", "long.csv:6", b"2024-01-01T00:00:00Z,ghost,energy,1,kWh")


def test_wide_csv_with_units_in_the_header(tmp_path) -> None:
    """Empty cells are gaps; ``it [MWh]`` and ``pdu-1 [W]`` are converted to kWh and kW."""
    csv = tmp_path / "wide.csv"
    csv.write_text(WIDE)
    with Store() as store:
        stats = import_csv(make_site(), csv, store, progress=False, chunk_rows=2)
        got = sorted((r.ts_ms, r.meter, r.value) for r in store.read().to_readings())
        letters = store.dead_letters()
    assert (stats.rows, stats.accepted, dict(stats.dead_letters)) == (3, 9, {"bad_type": 1})
    assert [d.origin for d in letters] == ["wide.csv:4"]
    minute = 60_000
    assert got == sorted([
        (T0_MS, "grid", 1000.0), (T0_MS, "it", 800.0), (T0_MS, "pdu-1", 1.5),
        (T0_MS, "oat", 5.5), (T0_MS + minute, "grid", 1001.0), (T0_MS + minute, "it", 801.0),
        (T0_MS + minute, "oat", 6.0), (T0_MS + 2 * minute, "grid", 1002.0),
        (T0_MS + 2 * minute, "pdu-1", 1.6),
    ])


def test_offset_less_times_use_the_site_zone_and_epochs_are_read(tmp_path) -> None:
    """New York wall times (EST, UTC-5) and an epoch in seconds, like the live decoder."""
    site = make_site()
    site.timezone = "America/New_York"
    csv = tmp_path / "local.csv"
    csv.write_text("ts,meter,value\n2023-12-31T19:00:00,oat,1\n1704067260,oat,2\n"
                   "2024-03-10T02:30:00,oat,3\n")
    importer = CsvImporter(site, csv)
    accepted, letters, _ = next(importer.chunks())
    assert sorted(zip(accepted.ts_ms.tolist(), accepted.value.tolist(), strict=True)) == [
        (T0_MS, 1.0), (T0_MS + 60_000, 2.0)]
    assert [d.reason for d in letters] == ["nonexistent_local_time"]


@pytest.mark.parametrize(("header", "message"), [
    ("ts,grid,ghost", "unknown: ghost"), ("time,meter,value", "no 'ts' column"),
    ("ts,meter,unit", "needs a 'value' column"),
])
def test_bad_headers_exit_2_with_one_line(tmp_path, site_file, run_cli, header, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(header + "\n")
    code, _, err = run_cli("--config", str(site_file), "--store", str(tmp_path / "s.duckdb"),
                           str(csv))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


async def test_backfill_over_mqtt_reaches_a_running_collector(tmp_path, mosquitto) -> None:
    """``--mqtt`` publishes on dcpue/<site>/readings, which the running collector stores."""
    csv = tmp_path / "wide.csv"
    csv.write_text(WIDE)
    site = collector_site(mosquitto.port)
    store = Store()
    async with Collector(site, store) as collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "connection")
        stats = await asyncio.to_thread(
            publish_csv, site, csv, "127.0.0.1", mosquitto.port, progress=False)
        await wait_until(lambda: store.count() == 9, "9 readings")
    assert stats.published == 9 and dict(stats.dead_letters) == {"bad_type": 1}
    assert store.dead_letter_counts() == {}
