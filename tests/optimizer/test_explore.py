"""The commissioning sweep: inside the hard bounds, held per period, independent of chunking."""

import numpy as np
from dcpue.config import example_path, load_site
from dcpue.optimizer.explore import exploration_schedule
from dcpue.optimizer.propose import setpoint_bounds

T0 = 1_688_169_600_000  # 2023-07-01T00:00:00Z
MIN = 60_000


def test_same_sweep_and_seed_give_the_same_schedule():
    cfg = load_site(example_path("single_hall")).optimizer
    ts = T0 + np.arange(600, dtype=np.int64) * MIN
    whole = exploration_schedule(ts, cfg, seed=4)
    again = exploration_schedule(ts.copy(), cfg, seed=4)
    assert all(np.array_equal(whole[k], again[k]) for k in whole)
    other = exploration_schedule(ts, cfg, seed=5)
    assert not np.array_equal(whole["supply_air_c"], other["supply_air_c"])


def test_held_per_period_and_inside_bounds():
    cfg = load_site(example_path("single_hall")).optimizer
    hold_s = 1800
    # end-stamped one-minute samples: (T0, T0 + 30 min] is the first hold period
    ts = T0 + (1 + np.arange(24 * 60, dtype=np.int64)) * MIN
    schedule = exploration_schedule(ts, cfg, hold_s=hold_s, seed=0)
    bounds = setpoint_bounds(cfg)
    names = {"supply_air_c": "supply_air_temperature", "running_units": "running_units"}
    for column, name in names.items():
        values = schedule[column].reshape(-1, hold_s // 60)  # 48 periods of 30 one-minute steps
        assert (values == values[:, :1]).all()
        assert values.min() >= bounds[name].min and values.max() <= bounds[name].max
    assert len(np.unique(schedule["supply_air_c"])) == 48
    assert set(np.unique(schedule["running_units"])) == set(range(1, 9))
    assert np.array_equal(schedule["running_units"], np.round(schedule["running_units"]))


def test_sweep_holds_fit_the_plant_step():
    """Computed: the hold a sweep uses. Declared: at least two plant readings, whole 15-min
    frame steps; the native twin's 1-min steps keep the 1800 s default."""
    from dcpue.optimizer.explore import sweep_hold_s

    assert sweep_hold_s(1800, 900, 60) == 1800
    assert sweep_hold_s(1800, 900, 900) == 1800
    assert sweep_hold_s(1800, 900, 1800) == 3600  # a 30-min plant: two readings per hold
    assert sweep_hold_s(1000, 900, 60) == 1800  # whole frame steps


def test_holds_lengthen_only_where_the_lag_leaves_no_settled_row():
    """Computed: the lengthened hold for a measured settling lag (frame rows). Declared: a
    hold of h rows leaves h - lag settled rows per draw; none left -> holds of 2 lag rows."""
    from dcpue.optimizer.explore import lengthened_hold_s

    assert lengthened_hold_s(1800, 900, 0) is None  # native twin: settles within the row
    assert lengthened_hold_s(1800, 900, 1) is None  # EnergyPlus Chicago: 1 of 2 rows settled
    assert lengthened_hold_s(1800, 900, 2) == 3600  # Miami / Phoenix: none of 2 rows
    assert lengthened_hold_s(3600, 900, 3) is None
    assert lengthened_hold_s(2700, 900, 3) == 5400
