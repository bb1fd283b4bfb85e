"""Embedded DuckDB store: idempotent appends, buckets, cursors, dead letters."""

import subprocess
import sys

import numpy as np
import pytest
from dcpue.config import example_path
from dcpue.core.readings import Reading, ReadingColumns
from dcpue.core.store import DeadLetter, Store, StoreBusy

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
MIN = 60_000


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        yield s


def counter(meter: str, n: int, step_kwh: float = 1.0) -> ReadingColumns:
    ts = T0 + np.arange(n, dtype=np.int64) * MIN
    return ReadingColumns.series(meter, "energy", "kWh", ts, np.arange(n) * step_kwh)


def test_append_is_idempotent_and_deduplicates_within_batch(store):
    batch = counter("m1", 10)
    assert store.append(batch) == 10
    assert store.append(batch) == 0
    dup = [Reading(T0 + 20 * MIN, "m1", "energy", 5.0, "kWh")] * 3
    assert store.append(dup) == 1
    assert store.count() == 11


def test_replay_overlapping_range_adds_only_new_rows(store):
    store.append(counter("m1", 10))
    assert store.append(counter("m1", 15)) == 5
    assert store.count("m1") == 15


def test_values_round_trip_exactly(store):
    value = 123456.78901234567
    store.append([Reading(T0, "m1", "power", value, "kW")])
    got = store.latest("m1")
    assert got == Reading(T0, "m1", "power", value, "kW")


def test_bucketed_aggregations(store):
    # 0..59 kWh, one per minute: hourly-free 15-minute buckets
    store.append(counter("m1", 60))
    q = store.bucketed(["m1"], T0, T0 + 60 * MIN, 15 * MIN, "delta")["m1"]
    # first bucket 0..14 -> 14 (baseline is its own first sample), then 15 each
    assert q.value.tolist() == [14.0, 15.0, 15.0, 15.0]
    assert q.ts_ms.tolist() == [T0 + k * 15 * MIN for k in range(4)]
    assert store.bucketed(["m1"], T0, T0 + 60 * MIN, 15 * MIN, "mean")["m1"].value[0] == 7.0
    assert store.bucketed(["m1"], T0, T0 + 60 * MIN, 15 * MIN, "last")["m1"].value[1] == 29.0
    assert store.bucketed(["m1"], T0, T0 + 60 * MIN, 15 * MIN, "max")["m1"].value[3] == 59.0
    assert store.bucketed(["m1"], T0, T0 + 60 * MIN, 15 * MIN, "count")["m1"].value[0] == 15
    with pytest.raises(ValueError, match="unknown aggregation"):
        store.bucketed(["m1"], T0, T0 + MIN, MIN, "median")


def test_cursor_reads_in_insertion_order(store):
    store.append(counter("a", 5))
    store.append(counter("b", 5))
    first, pos = store.read_since(0, 7)
    assert len(first) == 7 and set(first.meter[:5]) == {"a"}
    store.set_cursor("remote", pos)
    assert store.backlog(store.get_cursor("remote")) == 3
    rest, pos2 = store.read_since(pos, 100)
    assert len(rest) == 3 and pos2 > pos
    assert store.read_since(pos2, 100)[0].ts_ms.size == 0


def test_dead_letters_are_kept_and_counted(store):
    store.add_dead_letters(
        [
            DeadLetter(T0, "mqtt", "site/x", "bad_json", "Expecting value", b"{oops"),
            DeadLetter(T0, "mqtt", "site/x", "bad_json", "Expecting value", b"]"),
            DeadLetter(T0, "mqtt", "site/y", "unknown_meter", "zz", b"{}"),
        ]
    )
    assert store.dead_letter_counts() == {"bad_json": 2, "unknown_meter": 1}
    assert store.dead_letters(1)[0].raw == b"{}"


def test_state_persists_across_reopen(tmp_path):
    path = tmp_path / "p.duckdb"
    with Store(path) as s:
        s.set_state("k", "v1")
        s.set_cursor("c", 42)
        s.append(counter("m", 3))
    with Store(path) as s:
        assert s.get_state("k") == "v1"
        assert s.get_cursor("c") == 42
        assert s.count() == 3
        assert s.time_range("m") == (T0, T0 + 2 * MIN)


def test_a_store_held_by_another_process_is_a_clear_error(tmp_path):
    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"from dcpue.core.store import Store; s = Store({str(path)!r}); print('ready', flush=True); input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreBusy, match=f"store {path} is in use by another process"):
            Store(path)
        proc = subprocess.run(
            [sys.executable, "-m", "dcpue", "pue", "--config",
             str(example_path("single_hall")), "--store", str(path)],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1 and "in use by another process" in proc.stderr
    finally:
        holder.communicate("\n", timeout=30)
