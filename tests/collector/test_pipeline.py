"""The DuckDB pipeline: batching, idempotent commits, counters, failure keeps the batch."""

import asyncio
import json

import numpy as np
import pytest
from dcpue.collector.pipeline import Pipeline
from dcpue.config.collector import PipelineSettings
from dcpue.core.readings import Reading, ReadingColumns
from dcpue.core.store import DeadLetter, Store

from tests.collector.conftest import T0_MS, wait_until


def readings(n, meter="it", start=T0_MS):
    return [Reading(start + 60_000 * i, meter, "energy", 100.0 + i, "kWh") for i in range(n)]


async def test_commit_writes_readings_and_dead_letters_and_counts_duplicates():
    store = Store()
    commits = []
    pipeline = Pipeline(store, on_commit=lambda: commits.append(1))
    pipeline.submit(readings(5))
    pipeline.submit(readings(2))  # the first two again: a redelivery
    pipeline.reject(DeadLetter(T0_MS, "mqtt", "t", "nan", "x", b"raw"))
    assert pipeline.pending == 8
    assert await pipeline.commit() == 5
    assert await pipeline.commit() == 0
    s = pipeline.stats
    assert (s.readings_in, s.readings_stored, s.duplicates, s.commits) == (7, 5, 2, 1)
    assert s.dead_letters == {"nan": 1}
    assert s.last_ts_ms == {"it": T0_MS + 4 * 60_000}
    assert store.count() == 5
    assert store.dead_letter_counts() == {"nan": 1}
    assert store.dead_letters()[0].raw == b"raw"
    assert commits == [1]


async def test_flushes_by_size_and_by_age_and_on_exit():
    store = Store()
    async with Pipeline(store, PipelineSettings(batch_size=10, max_age_s=60)) as pipeline:
        pipeline.submit(readings(10))  # full batch: written long before the 60 s age
        await wait_until(lambda: store.count() == 10, "size flush", 5)
        pipeline.submit(readings(3, meter="grid"))
        await asyncio.sleep(0.05)
        assert store.count() == 10
    assert store.count() == 13  # flushed on exit
    async with Pipeline(store, PipelineSettings(batch_size=1000, max_age_s=0.05)) as pipeline:
        pipeline.submit(readings(1, start=T0_MS + 10**9))
        await wait_until(lambda: store.count() == 14, "age flush", 5)


async def test_failed_write_keeps_the_batch_queued():
    store = Store()
    pipeline = Pipeline(store)
    pipeline.submit(readings(3))
    pipeline.reject(DeadLetter(T0_MS, "mqtt", "t", "nan", "x"))
    store.close()
    with pytest.raises(Exception, match="closed"):
        await pipeline.commit()
    assert pipeline.pending == 4
    assert pipeline.stats.commit_errors == 1


async def test_a_poison_reading_is_isolated_and_dead_lettered_and_the_rest_stored():
    """Two readings the store cannot take (a timestamp beyond int64, one in year 33658)
    among 1,000 valid ones: the batch is split until each is alone; nothing is retried."""
    store = Store()
    pipeline = Pipeline(store)
    good = readings(1000)
    pipeline.submit([*good[:500], Reading(10**19, "it", "energy", 1.0, "kWh"), *good[500:]])
    pipeline.submit(ReadingColumns.series(
        "grid", "energy", "kWh", np.array([T0_MS, 10**15]), np.array([1.0, 2.0])
    ))
    assert await pipeline.commit() == 1001
    assert pipeline.pending == 0
    assert store.count() == 1001 and store.count("grid") == 1
    assert store.dead_letter_counts() == {"unstorable": 2}
    assert pipeline.stats.dead_letters == {"unstorable": 2}
    assert pipeline.stats.duplicates == 0
    assert pipeline.stats.last_ts_ms == {"it": T0_MS + 999 * 60_000, "grid": T0_MS}
    letters = {d.origin: d for d in store.dead_letters()}
    assert json.loads(letters["it"].raw)["ts"] == 10**19
    assert "outside years 1900-9999" in letters["grid"].detail
    assert await pipeline.commit() == 0  # nothing left to retry


async def test_a_store_failure_is_not_mistaken_for_poison():
    """Disk full, closed file: every half fails, so the batch stays queued, none dead-lettered."""
    store = Store()
    pipeline = Pipeline(store)
    pipeline.submit(readings(8))
    store.close()
    with pytest.raises(Exception, match="closed"):
        await pipeline.commit()
    assert pipeline.pending == 8 and pipeline.stats.dead_letters == {}


async def test_dead_letters_beyond_the_cap_are_aggregated_with_their_count():
    store = Store()
    pipeline = Pipeline(store, dead_letter_cap=100)
    minute = T0_MS - T0_MS % 60_000
    for i in range(15_000):
        pipeline.reject(DeadLetter(minute + i % 1000, "mqtt", "t/flood", "unknown_meter", f"m{i}", b"{}"))
    pipeline.reject(DeadLetter(minute, "mqtt", "t/other", "bad_json", "x", b"{"))
    pipeline.reject(DeadLetter(minute + 60_000, "mqtt", "t/flood", "unknown_meter", "next", b"{}"))
    assert pipeline.pending == 100 + 1 + 1  # verbatim letters; the aggregate is held ...
    await pipeline.commit()  # ... until its minute is over: then one row for 14,900
    assert store.dead_letter_counts() == {"unknown_meter": 15_001, "bad_json": 1}
    assert pipeline.stats.dead_letters == {"unknown_meter": 15_001, "bad_json": 1}
    assert pipeline.stats.dead_letters_aggregated == 14_900
    aggregate = next(d for d in store.dead_letters(200) if d.count > 1)
    assert (aggregate.origin, aggregate.count) == ("t/flood", 14_900)
    assert aggregate.detail.startswith("14900 dead letters beyond 100 per minute")
    assert store.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 103


async def test_each_commit_stores_the_letters_folded_since_into_one_row_per_minute(tmp_path):
    """Computed: the stored aggregate after each commit inside one minute. Declared: 100 + 250
    + 50 letters of one (origin, reason) within a minute, cap 100. Every commit (what precedes
    an acknowledgement) stores what was folded so far, so a store reopened after it (as after
    a kill -9) already holds the count; the minute keeps one aggregate row."""
    path = tmp_path / "s.duckdb"
    minute = T0_MS - T0_MS % 60_000
    store = Store(path)
    pipeline = Pipeline(store, dead_letter_cap=100)
    for i in range(350):
        pipeline.reject(DeadLetter(minute + i, "mqtt", "t/flood", "unknown_meter", f"m{i}", b"{}"))
    await pipeline.commit()
    assert store.dead_letter_counts() == {"unknown_meter": 350}
    for i in range(50):
        pipeline.reject(DeadLetter(minute + 400 + i, "mqtt", "t/flood", "unknown_meter", "m", b"{}"))
    await pipeline.commit()
    store.close()  # nothing else is flushed: the pipeline is left as a killed process leaves it
    with Store(path) as reopened:
        assert reopened.dead_letter_counts() == {"unknown_meter": 400}
        aggregates = [d for d in reopened.dead_letters(200) if d.count > 1]
        assert [(d.origin, d.count) for d in aggregates] == [("t/flood", 300)]
        assert aggregates[0].detail.startswith("300 dead letters beyond 100 per minute")
        assert reopened.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 101
