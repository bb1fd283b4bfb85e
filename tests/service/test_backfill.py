"""A backfill into a running daemon changes its figures and its stored ``metric.*`` series at
the next write-back, no restart."""

from __future__ import annotations

import asyncio
import tomllib
from datetime import UTC

import httpx
import numpy as np
import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from dcpue.config import example_path, parse_site
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store
from dcpue.service.daemon import HttpService, Runtime, bind_api, wall_clock_ms

from tests.metrics.synth import HOUR, MICROGRID_KW, MINUTE, T0, counters, microgrid_site

DAY = 24 * HOUR


async def test_a_backfilled_day_changes_the_daemons_pue_at_the_next_write_back():
    """Declared: the microgrid's constant powers (tests.metrics.synth), 1-minute counters for
    a day, the IT counter missing from 06:00 to 12:00. Computed: the daemon's pue.1d before
    (IT coverage 0.75 < min_coverage: insufficient, no number) and after the missing six
    hours are stored late (what the API serves at the next write-back job, here run at once):
    hand-worked 1130 / 800 = 1.4125 at coverage 1."""
    site = microgrid_site()
    day = counters(MICROGRID_KW, T0, 24 * 60)
    late = (day.meter == "ups-out") & (day.ts_ms > T0 + 6 * HOUR) & (day.ts_ms < T0 + 12 * HOUR)

    def part(mask):
        return ReadingColumns(*(getattr(day, f)[mask] for f in ReadingColumns.__slots__))

    store = Store()
    store.append(part(~late))
    now = T0 + DAY
    runtime = Runtime(site, store, lambda: now)
    await runtime.run_job("write_back", now)
    before = runtime.figures(now)["pue.1d"]
    assert before.value is None and before.coverage == pytest.approx(0.75, abs=0.01)

    store.append(part(late))  # e.g. `dcpue import --mqtt`, or a gateway's store-and-forward
    await runtime.run_job("write_back", now)
    after = runtime.figures(now)["pue.1d"]
    assert after.value == pytest.approx(1130 / 800, rel=1e-9)
    assert after.coverage == pytest.approx(1.0)
    assert runtime.calculator.recomputed >= 1
    stored = store.latest("metric.pue.1d")  # the written-back series the forwarder sends on
    assert stored is not None and stored.value == pytest.approx(1130 / 800, rel=1e-9)


async def test_a_backfill_into_a_running_daemon_rewrites_its_api_pue_and_stored_series(tmp_path):
    """A running daemon (wall-clock write-back job every second, HTTP API): a late hour of
    IT readings changes ``/api/pue`` and the stored ``metric.pue.1d`` row within a minute.

    Declared: the microgrid's constant powers as 1-minute counters over the 26 h before the
    current minute N, the IT counter silent in the hour centred on N - 1 day, where IT really
    drew 1,400 kW for its first half and 200 kW for its second (800 kWh in all, so later
    counter readings are unchanged). Computed: pue.1d over [N - 1 d, N), served and stored:
    before the late hour arrives the counter spreads it evenly (800 kW): 27,120 / 19,200 =
    1.4125; after, the window holds its second half at 200 kW: 27,120 / (19,200 - 300) =
    1.4349206.
    """
    data = tomllib.loads(example_path("microgrid").read_text())
    data["calculator"] = {"outside_boundary": ["ev-chargers"], "windows": ["1h", "1d"]}
    data["store"]["path"] = str(tmp_path / "site.duckdb")
    site = parse_site(data)
    n = wall_clock_ms() // MINUTE * MINUTE
    others = counters({m: kw for m, kw in MICROGRID_KW.items() if m != "ups-out"},
                      n - DAY - 2 * HOUR, 26 * 60)
    ts = n - DAY - 2 * HOUR + MINUTE * np.arange(26 * 60 + 1, dtype=np.int64)
    mid, half = n - DAY, 30 * MINUTE
    extra = 600.0 * (np.clip(ts - (mid - half), 0, half) - np.clip(ts - mid, 0, half)) / HOUR
    it = ReadingColumns.series("ups-out", "energy", "kWh", ts,
                               1000.0 + 800.0 * (ts - ts[0]) / HOUR + extra)
    day = ReadingColumns.concat([others, it])
    late = (day.meter == "ups-out") & (np.abs(day.ts_ms - mid) < half)

    def part(mask):
        return ReadingColumns(*(getattr(day, f)[mask] for f in ReadingColumns.__slots__))

    store = Store()
    store.append(part(~late))
    runtime = Runtime(site, store, wall_clock_ms)
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(runtime.run_job_now, IntervalTrigger(seconds=1), args=["write_back"],
                      coalesce=True, max_instances=1)
    http = HttpService(runtime, bind_api(site, 0))
    scheduler.start()
    http.start()

    async def settled(expected: float) -> None:
        """Poll (bounded: 60 s) until the API and the stored row both show ``expected``."""
        async with httpx.AsyncClient(base_url=http.url, timeout=5.0) as client:
            for _ in range(600):
                served = (await client.get("/api/pue")).json()["figures"]["pue.1d"]
                row = store.series("metric.pue.1d", "pue", n, n + 1)
                if (served["value"] == pytest.approx(expected, rel=1e-9) and len(row)
                        and row.value[0] == pytest.approx(expected, rel=1e-9)):
                    return
                await asyncio.sleep(0.1)
        raise AssertionError(f"pue.1d served {served['value']}, stored {row.value}, "
                             f"not {expected} within 60 s")

    try:
        await settled(27120 / 19200)
        store.append(part(late))  # e.g. a gateway's store-and-forward, or `dcpue import`
        await settled(27120 / 18900)
        # The write-back job counts the rewrite after its commit, which the poll above may
        # see first: wait (bounded) for the count itself.
        for _ in range(100):
            if runtime.calculator.rewritten >= 1:
                break
            await asyncio.sleep(0.1)
        assert runtime.calculator.rewritten >= 1
    finally:
        scheduler.shutdown(wait=False)
        await http.stop()
