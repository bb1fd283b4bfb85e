"""The DuckDB pipeline: batching, idempotent commits, counters, failure keeps the batch."""

import asyncio

import pytest
from dcpue.collector.pipeline import Pipeline
from dcpue.config.collector import PipelineSettings
from dcpue.core.readings import Reading
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
