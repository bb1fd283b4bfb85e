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
        assert s.append(counter("m", 5)) == 2  # a reopened store appends (DuckDB 2 results)


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


# -- layout: month tables, sorting, migration, retention -------------------------------------
JAN_2024 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
DAY = 86_400_000


def spread(meters: list[str], days: int, step_ms: int = 6 * 3600_000) -> ReadingColumns:
    """Every meter every ``step_ms`` from 2024-01-01 for ``days`` days; value = hours since start
    plus the meter's index / 10, so each row names its own meter and time."""
    parts = []
    for k, meter in enumerate(meters):
        ts = JAN_2024 + np.arange(0, days * DAY, step_ms, dtype=np.int64)
        parts.append(ReadingColumns.series(meter, "power", "kW", ts, (ts - JAN_2024) / 3600_000 + k / 10))
    return ReadingColumns.concat(parts)


def tables(store: Store) -> list[str]:
    return [r[0] for r in store.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'raw_2%' ORDER BY 1"
    ).fetchall()]


@pytest.fixture
def moving(tmp_path):
    """A store whose maintain() moves the hot table however few rows it holds."""
    with Store(tmp_path / "m.duckdb", hot_rows=0) as s:
        yield s


def test_readings_go_to_one_table_per_month_and_read_back_across_months(moving):
    """Three months of four meters; every read path gives back what was appended, before and
    after the hot table is moved into month tables and the closed months are sorted."""
    store = moving
    data = spread(["a", "b", "c", "d"], 91)  # Jan, Feb, Mar 2024 (91 days: leap February)
    assert store.append(data) == len(data) == 4 * 91 * 4
    assert tables(store) == []  # in the hot table
    assert store.series("b").value.tolist() == data.value[data.meter == "b"].tolist()
    done = store.maintain(now_ms=JAN_2024)
    assert (done["moved"], done["sorted"]) == (len(data), 4 * 4 * (31 + 29))  # Jan, Feb closed
    assert tables(store) == ["raw_202401", "raw_202402", "raw_202403"]
    series = store.series("b")
    ts_b = data.ts_ms[data.meter == "b"]
    assert series.ts_ms.tolist() == ts_b.tolist()
    assert series.value.tolist() == data.value[data.meter == "b"].tolist()
    assert set(series.unit) == {"kW"}
    assert store.count("b") == 91 * 4 and store.count() == len(data)
    assert store.time_range("d") == (JAN_2024, JAN_2024 + 91 * DAY - 6 * 3600_000)
    assert store.latest("c") == Reading(
        JAN_2024 + 91 * DAY - 6 * 3600_000, "c", "power", 91 * 24 - 6 + 0.2, "kW"
    )
    got = store.read(["d", "a"], JAN_2024 + 30 * DAY, JAN_2024 + 32 * DAY)
    assert got.meter.tolist() == ["a"] * 8 + ["d"] * 8  # by meter, then time, over Jan/Feb
    daily = store.bucketed(["a"], JAN_2024, JAN_2024 + 91 * DAY, DAY, "count")["a"]
    assert daily.value.tolist() == [4.0] * 91
    assert store.meters() == [(m, "power", "kW") for m in "abcd"]
    store.append([Reading(JAN_2024, "e", "power", 1.0, "kW")])  # only in January
    assert store.last_ts_by_meter() == {
        **{m: JAN_2024 + 91 * DAY - 6 * 3600_000 for m in "abcd"}, "e": JAN_2024
    }
    # The forwarder's cursor sees every row once, in seq order, sorted months or not.
    rows, last = store.read_since(0, 10_000)
    assert len(rows) == len(data) + 1 and last == store.last_seq() and store.backlog(last) == 0
    # Late data for a sorted month is stored and read like the rest.
    assert store.append([Reading(JAN_2024 + 5 * DAY + 1, "b", "power", -1.0, "kW")]) == 1
    assert store.series("b", start_ms=JAN_2024 + 5 * DAY, end_ms=JAN_2024 + 5 * DAY + 2).value.tolist() == [120.1, -1.0]
    assert store.backlog(last) == 1


def test_moved_and_sorted_months_stay_idempotent(moving):
    store = moving
    store.append(spread(["a", "b"], 40))
    store.maintain()
    assert store.execute("SELECT count(*) FROM raw_hot").fetchone()[0] == 0
    rows, _ = store.read_since(0, 10**6)
    assert len(rows) == store.count() == 2 * 40 * 4
    assert store.append(spread(["a", "b"], 40)) == 0  # idempotent after moving and sorting
    assert store.append(spread(["a", "b"], 41)) == 2 * 4  # only the new day


def test_the_readings_view_answers_sql_on_strings(store):
    store.append(counter("m1", 3))
    store.append(spread(["a"], 2))
    rows = store.execute(
        "SELECT meter, quantity, unit, count(*), max(seq) FROM readings GROUP BY ALL ORDER BY 1"
    ).fetchall()
    assert rows == [("a", "power", "kW", 8, store.last_seq()), ("m1", "energy", "kWh", 3, 3)]


def test_old_store_file_is_migrated_on_open_without_losing_a_row(tmp_path):
    """A file of the previous layout (strings per row) opens with every row, value and seq."""
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE SEQUENCE reading_seq; CREATE TABLE readings (meter VARCHAR NOT NULL, "
        "quantity VARCHAR NOT NULL, ts BIGINT NOT NULL, value DOUBLE NOT NULL, unit VARCHAR NOT NULL,"
        " seq BIGINT NOT NULL DEFAULT nextval('reading_seq'))"
    )
    con.execute(
        "INSERT INTO readings (meter, quantity, ts, value, unit) SELECT 'm' || (i % 3), "
        "CASE WHEN i % 2 = 0 THEN 'energy' ELSE 'power' END, ? + i * 3600000, i * 1.5, "
        "CASE WHEN i % 2 = 0 THEN 'kWh' ELSE 'kW' END FROM range(2000) t(i)", [JAN_2024]
    )
    con.execute("CREATE TABLE cursors (name VARCHAR PRIMARY KEY, position BIGINT NOT NULL)")
    con.execute("INSERT INTO cursors VALUES ('remote', 1500)")
    before = con.execute("SELECT meter, quantity, ts, value, unit, seq FROM readings ORDER BY seq").fetchall()
    con.close()
    with Store(path) as s:
        after = s.execute("SELECT meter, quantity, ts, value, unit, seq FROM readings ORDER BY seq").fetchall()
        assert after == before
        assert tables(s) == ["raw_202401", "raw_202402", "raw_202403"]
        assert s.backlog(s.get_cursor("remote")) == 500
        assert s.append([Reading(JAN_2024, "m0", "energy", 0.0, "kWh")]) == 0  # already there
        assert s.append([Reading(JAN_2024 + 1, "m0", "energy", 0.0, "kWh")]) == 1
        rows, seq = s.read_since(2000, 10)  # seq goes on from the old table's
        assert rows.ts_ms.tolist() == [JAN_2024 + 1] and seq == s.last_seq() > 2000


def test_prune_raw_drops_whole_months_and_keeps_seq_increasing(tmp_path):
    path = tmp_path / "r.duckdb"
    with Store(path, raw_retention_days=30, hot_rows=0) as s:
        s.append(spread(["a", "b"], 60))  # Jan + Feb
        s.maintain(now_ms=JAN_2024)
        s.append([Reading(JAN_2024 + DAY + 1, "a", "power", 0.5, "kW")])  # late: hot table
        last = s.last_seq()
        assert s.prune_raw(JAN_2024 + 45 * DAY) == 2 * 45 * 4 + 1
        assert tables(s) == ["raw_202402"]
        assert s.time_range() == (JAN_2024 + 45 * DAY, JAN_2024 + 60 * DAY - 6 * 3600_000)
        # retention through maintain(): 30 days before "now" = 2024-04-01 drops February too
        assert s.maintain(now_ms=JAN_2024 + 91 * DAY)["pruned"] == 2 * 15 * 4
        assert s.count() == 0 and s.meters() == [] and s.series("a").ts_ms.size == 0
    with Store(path) as s:
        s.append(spread(["a"], 1))
        rows, seq = s.read_since(last, 100)  # a forwarder at the old cursor gets the new rows
        assert len(rows) == 4 and seq > last


def test_unstorable_batches_are_refused_whole_with_a_reason(store):
    with pytest.raises(ValueError, match="outside years 1900-9999"):
        store.append([Reading(T0, "m", "power", 1.0, "kW"), Reading(10**15, "m", "power", 1.0, "kW")])
    with pytest.raises(ValueError, match="integer ms"):
        store.append(ReadingColumns(np.array([np.nan]), np.array(["m"], object),
                                    np.array(["power"], object), np.array([1.0]),
                                    np.array(["kW"], object)))
    assert store.count() == 0 and store.meters() == []
    floats = ReadingColumns(np.array([float(T0)]), np.array(["m"], object),
                            np.array(["power"], object), np.array([1.0]), np.array(["kW"], object))
    assert store.append(floats) == 1


def test_dead_letter_aggregates_count_and_retention_bounds_rows(store):
    store.add_dead_letters([DeadLetter(T0 + i, "mqtt", "t", "unknown_meter", "x", b"{}") for i in range(10)])
    store.add_dead_letters([DeadLetter(T0 + 20, "mqtt", "t", "unknown_meter", "agg", b"{}", 5000)])
    assert store.dead_letter_counts() == {"unknown_meter": 5010}
    assert store.dead_letter_counts(since_ms=T0 + 5) == {"unknown_meter": 5005}
    assert store.dead_letters(1)[0].count == 5000
    assert store.prune_dead_letters(T0 + 2, None) == 2  # older than T0 + 2
    assert store.prune_dead_letters(None, 3) == 6  # keep the newest three rows
    assert [d.received_ms for d in store.dead_letters()] == [T0 + 20, T0 + 9, T0 + 8]


def test_an_empty_store_has_no_newest_readings():
    with Store() as store:
        assert store.last_ts_by_meter() == {}
        assert store.last_seq() == 0


def test_rewrite_series_replaces_in_one_transaction(store, monkeypatch):
    """Computed: the rows after ``rewrite_series``. Declared: the old and new values. A key
    left out of the new readings is deleted; a failure inside the transaction (the insert
    raising, as a crash or full disk would) leaves the old rows, never a hole."""
    store.append(counter("metric.pue.1h", 3))  # values 0, 1, 2 at T0, T0+1min, T0+2min
    seq_before = store.last_seq()
    keys = [T0, T0 + MIN]
    new = [Reading(T0, "metric.pue.1h", "energy", 7.5, "kWh")]  # T0 + MIN left out: deleted
    assert store.rewrite_series("metric.pue.1h", "energy", keys, new) == 2
    got = store.series("metric.pue.1h", "energy")
    assert list(got.ts_ms) == [T0, T0 + 2 * MIN] and list(got.value) == [7.5, 2.0]
    assert store.count("metric.pue.1h") == 2 and store.last_seq() > seq_before

    def broken_insert(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "_insert", broken_insert)
    with pytest.raises(OSError, match="disk full"):
        store.rewrite_series("metric.pue.1h", "energy", [T0],
                             [Reading(T0, "metric.pue.1h", "energy", 9.0, "kWh")])
    got = store.series("metric.pue.1h", "energy")
    assert list(got.value) == [7.5, 2.0] and store.count("metric.pue.1h") == 2


def test_factorize_without_pandas_matches_pandas(monkeypatch) -> None:
    """Computed: ``_factorize`` through pandas' hash table (pandas loaded: the daemon, the
    collector) and through its dict path (pandas not loaded: ``dcpue import``). Declared by
    hand: codes by first appearance, -1 for None and NaN, the distinct values in that order;
    both paths give exactly that."""
    from dcpue.core import store as store_module

    values = np.array(["b", "a", None, "b", float("nan"), "c", "a"], dtype=object)
    expected_codes, expected_keys = [0, 1, -1, 0, -1, 2, 1], ["b", "a", "c"]
    import pandas  # noqa: F401  (the pandas path)

    codes, keys = store_module._factorize(values)
    assert codes.tolist() == expected_codes and list(keys) == expected_keys
    monkeypatch.delitem(sys.modules, "pandas")  # the dict path
    codes, keys = store_module._factorize(values)
    assert codes.tolist() == expected_codes and list(keys) == expected_keys
    pairs_codes, pairs = store_module._factorize_pairs(
        np.array(["m1", "m2", "m1"], dtype=object), np.array(["energy", "energy", "power"],
                                                             dtype=object))
    assert pairs_codes.tolist() == [0, 1, 2]
    assert pairs == [("m1", "energy"), ("m2", "energy"), ("m1", "power")]
