"""A backfill into a running daemon changes its figures at the next write-back, no restart."""

from __future__ import annotations

import pytest
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store
from dcpue.service.daemon import Runtime

from tests.metrics.synth import HOUR, MICROGRID_KW, T0, counters, microgrid_site

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
