"""The daemon's twin feed: commissioning sweep, then configured setpoints; restarts continue."""

from __future__ import annotations

import numpy as np
from dcpue.config import example_path, load_site
from dcpue.core.store import Store
from dcpue.service.demo import TwinFeed

DAY_STEPS = 1440


def supply_air(cols) -> np.ndarray:
    return cols.value[cols.meter == "sp-supply-air"]


def test_sweep_for_the_commissioning_days_then_configured_setpoints():
    site = load_site(example_path("single_hall"))
    feed = TwinFeed(site, Store(), commission_days=0.5)
    sweep = supply_air(feed.next(DAY_STEPS // 2))
    after = supply_air(feed.next(60))
    bounds = site.optimizer.setpoints.supply_air_temperature
    assert len(np.unique(sweep)) >= 20  # 12 h of 30-minute holds
    assert sweep.min() >= bounds.min and sweep.max() <= bounds.max
    assert np.unique(after).tolist() == [site.twin.setpoints.supply_air_c]


def test_a_restart_inside_the_sweep_continues_the_same_world():
    site = load_site(example_path("single_hall"))
    whole = TwinFeed(site, Store(), commission_days=0.5)
    expected = whole.next(DAY_STEPS)
    store = Store()
    first = TwinFeed(site, store, commission_days=0.5)
    head = first.next(500)
    first.save()
    resumed = TwinFeed(site, store, commission_days=0.5)  # skips silently to step 500
    tail = resumed.next(DAY_STEPS - 500)
    keys = list(zip(expected.meter.tolist(), expected.ts_ms.tolist(), strict=True))
    joined = dict(zip(
        zip([*head.meter.tolist(), *tail.meter.tolist()],
            [*head.ts_ms.tolist(), *tail.ts_ms.tolist()], strict=True),
        [*head.value.tolist(), *tail.value.tolist()], strict=True,
    ))
    assert set(joined) == set(keys)
    # counters are running sums: chunking may change the last bit of a float, nothing more
    got = np.array([joined[k] for k in keys])
    np.testing.assert_allclose(got, expected.value, rtol=1e-13, atol=0)
