"""Real-time pacing and store read-back of the twin runner."""

from __future__ import annotations

import pytest
from dcpue.core.store import Store
from dcpue.twin.runner import paced, recent_steps, simulate_into
from dcpue.twin.simulator import Twin


async def test_paced_steps_each_step_in_wall_time(hall):
    twin = Twin(hall)
    pauses = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    steps = [s async for s in paced(twin, 5 * 60 / 86400, speedup=600.0, sleep=sleep)]
    assert len(steps) == 5 and len(pauses) == 5
    assert [s.ts_ms for s in steps] == [twin.start_ms + k * 60_000 for k in range(5)]
    # the fake sleep returns at once, so step k waits for its deadline (k + 1) x 0.1 s
    assert all(0.0 <= p <= 0.1 * (k + 1) for k, p in enumerate(pauses))
    assert pauses[-1] > 0.3


def test_recent_steps_from_counters_equal_the_twin_powers(hall, tmp_path):
    twin = Twin(hall)
    flows = Twin(hall).simulate(30)
    with Store(tmp_path / "s.duckdb") as store:
        simulate_into(twin, store, 30 * 60 / 86400, progress=False)
        recent = recent_steps(hall, store, twin.step_s, 3)
    assert [s.ts_ms for s in recent] == flows.ts_ms[-3:].tolist()
    for s, it, fac in zip(recent, flows.result.it_kw[-3:], flows.result.facility_kw[-3:], strict=True):
        assert s.it_kw == pytest.approx(it, rel=1e-9)
        assert s.facility_kw == pytest.approx(fac, rel=1e-9)  # single hall: facility = grid import
        assert s.pv_kw == 0.0
