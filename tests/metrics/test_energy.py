"""Hand-worked energy from counters and power: rollover, reset, jump, gap, trapezoid, edges."""

import numpy as np
import pytest
from dcpue.metrics.energy import (
    Replacement,
    bucket_amounts,
    clean_series,
    counter_intervals,
    derived_ceiling_kw,
    power_intervals,
    window_energy,
)

MIN = 60_000


def ts(*minutes: float) -> np.ndarray:
    return (np.array(minutes) * MIN).astype(np.int64)


def counter(minutes, values, **kw):
    return counter_intervals(ts(*minutes), np.array(values, float), **kw)


def test_counter_deltas_sum_to_last_minus_first():
    iv = counter([0, 1, 2], [100.0, 110.0, 125.0])
    e = window_energy("m", iv, 0, 2 * MIN)
    assert (e.amount, e.coverage, e.rollovers, e.resets) == (25.0, 1.0, 0, 0)


def test_rollover_wraps_at_configured_maximum():
    # 990 -> 995 (+5), wraps at 1000: 995 -> 5 is +10, not -990
    iv = counter([0, 1, 2], [990.0, 995.0, 5.0], rollover=1000.0)
    e = window_energy("m", iv, 0, 2 * MIN)
    assert e.amount == pytest.approx(15.0)
    assert (e.rollovers, e.resets) == (1, 0)


def test_reset_counts_post_reset_value_from_zero():
    # a drop in the lower half of the range is a reset, not a rollover: 510 -> 3 is +3
    iv = counter([0, 1, 2, 3], [500.0, 510.0, 3.0, 7.0], rollover=1e6)
    e = window_energy("m", iv, 0, 3 * MIN)
    assert e.amount == pytest.approx(10.0 + 3.0 + 4.0)
    assert (e.rollovers, e.resets) == (0, 1)
    # without a configured rollover every drop is a reset
    assert window_energy("m", counter([0, 1], [50.0, 2.0]), 0, MIN).amount == 2.0


def test_implausible_increment_counts_nothing_and_is_unmeasured():
    # 600 kW max -> at most 10 kWh per minute; 995 -> 300 is neither a plausible wrap (305 kWh)
    # nor plausible after a reset (300 kWh): counted 0, and that minute is not measured
    iv = counter([0, 1, 2, 3], [990.0, 995.0, 300.0, 305.0], rollover=1000.0, max_power_kw=600.0)
    e = window_energy("m", iv, 0, 3 * MIN)
    assert e.amount == pytest.approx(10.0)
    assert e.coverage == pytest.approx(2 / 3)


def test_power_trapezoid_and_partial_interval():
    iv = power_intervals(ts(0, 1), np.array([0.0, 60.0]))
    assert window_energy("p", iv, 0, MIN).amount == pytest.approx(0.5)  # 30 kW mean for 1 min
    # first half: power rises 0 -> 30 kW over 30 s: 15 kW x 30 s = 0.125 kWh
    assert window_energy("p", iv, 0, MIN // 2).amount == pytest.approx(0.125)


def test_power_gap_longer_than_limit_is_not_bridged():
    minutes = [0, 1, 2, 3, 4, 5, 20, 21, 22, 23, 24, 25]
    iv = power_intervals(ts(*minutes), np.full(len(minutes), 60.0), max_gap_ms=5 * MIN)
    e = window_energy("p", iv, 0, 25 * MIN)
    assert e.amount == pytest.approx(10.0)  # 60 kW = 1 kWh/min over 10 measured minutes
    assert e.coverage == pytest.approx(10 / 25)


def test_counter_gap_keeps_energy_but_not_coverage():
    minutes = [0, 1, 2, 3, 4, 5, 20, 21, 22, 23, 24, 25]
    iv = counter(minutes, [float(m) for m in minutes], max_gap_ms=5 * MIN)
    e = window_energy("c", iv, 0, 25 * MIN)
    assert e.amount == pytest.approx(25.0)
    assert e.coverage == pytest.approx(10 / 25)


def test_counter_interpolates_to_window_edges():
    iv = counter([0, 60], [0.0, 60.0])
    e = window_energy("c", iv, 15 * MIN, 45 * MIN)
    assert (e.amount, e.coverage) == (pytest.approx(30.0), 1.0)
    # before the first and after the last sample nothing is known
    e = window_energy("c", iv, -30 * MIN, 30 * MIN)
    assert (e.amount, e.coverage) == (pytest.approx(30.0), pytest.approx(0.5))


def test_buckets_split_intervals_exactly():
    iv = counter([0, 3], [0.0, 3.0])
    amount, measured = bucket_amounts(iv, 0, MIN, 4)
    np.testing.assert_allclose(amount, [1.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(measured, [MIN, MIN, MIN, 0.0])


def test_clean_series_sorts_and_keeps_last_duplicate_and_finite():
    t, v = clean_series(ts(2, 0, 1, 1), np.array([3.0, 0.0, 1.0, 1.5]))
    np.testing.assert_array_equal(t, ts(0, 1, 2))
    np.testing.assert_array_equal(v, [0.0, 1.5, 3.0])
    t, v = clean_series(ts(0, 1), np.array([np.nan, 1.0]))
    assert list(v) == [1.0]


def test_window_must_have_positive_length():
    with pytest.raises(ValueError):
        window_energy("c", counter([0, 1], [0.0, 1.0]), MIN, MIN)


# -- the counter rules on messy meter data (issue 9); every expected value is hand-worked --
def kinds(e):
    return [ev.kind for ev in e.events]


def test_jitter_dip_and_recovery_counts_once():
    # 5,000,029.0 -> 5,000,028.9 (float32 / torn-read dip) -> 5,000,031.0: 2.0 kWh, not +5 GWh
    iv = counter([0, 1, 2], [5_000_029.0, 5_000_028.9, 5_000_031.0])
    e = window_energy("m", iv, 0, 2 * MIN)
    assert (e.amount, e.coverage, e.jitter, e.events) == (pytest.approx(2.0), 1.0, 1, ())
    assert iv.hold == 5_000_031.0


def test_rollover_only_from_the_top_of_the_range():
    # 99,990 -> 99,995 -> 3 on a 99,999.9 range: wraps, 5 + (3 + 99,999.9 - 99,995) = 12.9
    e = window_energy("m", counter([0, 1, 2], [99_990.0, 99_995.0, 3.0], rollover=99_999.9), 0,
                      2 * MIN)
    assert (e.amount, kinds(e)) == (pytest.approx(12.9), ["rollover"])


def test_reset_from_the_upper_half_counts_the_post_reset_value_when_plausible():
    # 80,000 -> 80,005 -> 3 (reset, 80 % of the range is no wrap): 5 + 3 = 8 kWh
    e = window_energy("m", counter([0, 1, 2, 3], [80_000.0, 80_005.0, 3.0, 8.0],
                                   rollover=99_999.9), 0, 3 * MIN)
    assert (e.amount, kinds(e), e.coverage) == (pytest.approx(13.0), ["reset"], 1.0)


def test_drop_to_a_value_not_countable_from_zero_is_a_replacement_and_an_error():
    # 80,005 -> 19,971 in one minute: a reset would mean 1.2 GW; counted 0, unmeasured
    e = window_energy("m", counter([0, 1, 2, 3], [80_000.0, 80_005.0, 19_971.0, 19_976.0],
                                   rollover=99_999.9), 0, 3 * MIN)
    assert (e.amount, kinds(e)) == (pytest.approx(10.0), ["replacement"])
    assert e.coverage == pytest.approx(2 / 3)
    assert "replacement" in e.quality


def test_swap_to_a_used_meter_is_a_jump_unless_recorded():
    # old meter 5,029 -> 5,034, new meter starts at 73,512.3: no +68,483 kWh
    e = window_energy("m", counter([0, 1, 2, 3], [5_029.0, 5_034.0, 73_512.3, 73_517.3]), 0,
                      3 * MIN)
    assert (e.amount, kinds(e)) == (pytest.approx(10.0), ["jump"])
    assert e.quality
    # recorded: old meter closed at 5,036.0, new opened at 73,510.3 at 00:02:
    # 5 + (5,036.0 - 5,034.0) + (73,512.3 - 73,510.3) + 5 = 14 kWh, fully measured
    iv = counter([0, 1, 2, 3], [5_029.0, 5_034.0, 73_512.3, 73_517.3],
                 replacements=[Replacement(2 * MIN, 5_036.0, 73_510.3)])
    e = window_energy("m", iv, 0, 3 * MIN)
    assert (e.amount, e.coverage, kinds(e), e.quality) == (
        pytest.approx(14.0), 1.0, ["recorded_replacement"], "")


def test_single_torn_read_is_an_outlier_bridged_by_its_neighbours():
    for torn in (9e9, 3.0):
        e = window_energy("m", counter([0, 1, 2, 3, 4], [5_029.0, 5_034.0, torn, 5_039.0, 5_044.0]),
                          0, 4 * MIN)
        assert (e.amount, e.coverage, kinds(e), e.quality) == (
            pytest.approx(15.0), 1.0, ["outlier"], "")


def test_configured_ceiling_and_derived_ceiling():
    # 600 kW configured: 10 kWh/min at most, so +20 in a minute is a jump
    e = window_energy("m", counter([0, 1, 2, 3], [0.0, 5.0, 25.0, 30.0], max_power_kw=600.0),
                      0, 3 * MIN)
    assert (e.amount, kinds(e)) == (pytest.approx(10.0), ["jump"])
    # derived: 60 kW steady (1 kWh/min) -> ceiling max(10 x 60, 2 x 60) = 600 kW
    minutes = list(range(30))
    iv = counter(minutes, [float(m) for m in minutes])
    assert iv.ceiling_kw == pytest.approx(600.0)
    assert derived_ceiling_kw(np.array([1.0, 2.0])) == 100_000.0  # too little history


def test_power_above_ceiling_and_negative_load_are_dropped_and_flagged():
    kw = np.array([60.0, 60.0, -5.0, 60.0, 9e6, 60.0])
    iv = power_intervals(ts(0, 1, 2, 3, 4, 5), kw, load=True, max_power_kw=1000.0)
    e = window_energy("p", iv, 0, 5 * MIN)
    assert e.amount == pytest.approx(5.0)  # the neighbours bridge the dropped samples
    assert kinds(e) == ["negative_power", "over_ceiling"]
    assert "over_ceiling" in e.quality
