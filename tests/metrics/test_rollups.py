"""Hourly rollups: hand-worked hours, agreement with the raw-reading path, late data, idempotence."""

import numpy as np
import pytest
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store
from dcpue.metrics import rollups
from dcpue.metrics.balance import energy_balance

from tests.metrics.synth import HOUR, MICROGRID_KW, MINUTE, T0, counters, microgrid_site


@pytest.fixture
def site():
    return microgrid_site()


def test_constant_power_gives_hand_worked_hours(site):
    """Computed: each hour's kWh from 1-minute counters of constant powers. Declared: the
    powers (synth.MICROGRID_KW); hand result: kWh per hour = kW, coverage 1, facility 1130 kWh
    and PUE 1130 / 800 per hour."""
    store = Store()
    store.append(counters(MICROGRID_KW, T0, 3 * 60))
    rollups.refresh(site, store, T0, T0 + 3 * HOUR)
    rows = rollups.hourly(store, ("ups-out", "grid-main"), T0, T0 + 3 * HOUR)
    assert rows["ups-out"].amount == pytest.approx([800.0] * 3, rel=1e-12)
    assert rows["grid-main"].measured_ms == pytest.approx([HOUR] * 3)
    hours = rollups.hourly_balances(site, store, T0, T0 + 3 * HOUR)
    assert [b.facility_kwh for b in hours] == pytest.approx([1130.0] * 3, rel=1e-12)
    assert all(b.coverage == pytest.approx(1.0) for b in hours)


def test_rollup_window_equals_the_raw_path_with_a_gap_and_a_rollover(site):
    """Computed twice, independently: the balance of two days from summed hours and from the
    raw readings (metrics.balance.energy_balance); they must agree to 1e-9 with a 90-minute
    outage of one meter and a counter rollover inside the window."""
    store = Store()
    ts = T0 + MINUTE * np.arange(3 * 24 * 60 + 1, dtype=np.int64)
    cols = counters(MICROGRID_KW, T0, 3 * 24 * 60)
    gap = (cols.meter == "chiller-1") & (cols.ts_ms > T0 + 30 * HOUR) & (
        cols.ts_ms < T0 + 31 * HOUR + 30 * MINUTE)
    grid = cols.meter == "grid-main"
    wrap = 99_999_999.9  # grid-main's configured rollover: 20,000 kWh before it, ~20 h in
    cols.value[grid] = np.mod(cols.value[grid] + wrap - 21_000.0, wrap)
    keep = ~gap
    store.append(ReadingColumns(cols.ts_ms[keep], cols.meter[keep], cols.quantity[keep],
                                cols.value[keep], cols.unit[keep]))
    assert len(ts) == int(np.count_nonzero(cols.meter == "ups-out"))
    rollups.refresh(site, store, T0, T0 + 3 * 24 * HOUR)
    lo, hi = T0 + 12 * HOUR, T0 + 60 * HOUR
    from_hours = rollups.rollup_balance(site, store, lo, hi)
    raw = energy_balance(site, store, lo, hi)
    assert from_hours.facility_kwh == pytest.approx(raw.facility_kwh, rel=1e-9)
    assert from_hours.cooling_kwh == pytest.approx(raw.cooling_kwh, rel=1e-9)
    assert from_hours.meter_energy["chiller-1"].coverage == pytest.approx(
        raw.meter_energy["chiller-1"].coverage, rel=1e-9)
    assert from_hours.meter_energy["grid-main"].rollovers == 1
    assert from_hours.meter_energy["grid-main"].events == raw.meter_energy["grid-main"].events
    assert any(e.kind == "rollover" for e in raw.meter_energy["grid-main"].events)
    assert from_hours.meter_energy["chiller-1"].coverage < 1.0


def test_late_readings_refinalize_only_their_hours_and_refresh_is_idempotent(site):
    """Computed: hours of a meter before and after a late backfill of its missing second hour.
    Hand result: before, hour 2 lies inside a counter interval longer than max_gap_s, so it
    has no measured time (coverage 0); after, 800 kWh fully measured like its neighbours."""
    store = Store()
    full = counters({"ups-out": 800.0}, T0, 4 * 60)
    late = (full.ts_ms > T0 + HOUR) & (full.ts_ms < T0 + 2 * HOUR)
    first = ReadingColumns(*(getattr(full, f)[~late] for f in ReadingColumns.__slots__))
    store.append(first)
    rollups.refresh(site, store, T0, T0 + 4 * HOUR)
    before = rollups.hourly(store, ("ups-out",), T0, T0 + 4 * HOUR)["ups-out"]
    assert before.measured_ms[1] == 0.0
    store.append(ReadingColumns(*(getattr(full, f)[late] for f in ReadingColumns.__slots__)))
    rollups.refresh(site, store, T0 + HOUR, T0 + 2 * HOUR)
    after = rollups.hourly(store, ("ups-out",), T0, T0 + 4 * HOUR)["ups-out"]
    assert after.amount == pytest.approx([800.0] * 4, rel=1e-12)
    assert after.measured_ms == pytest.approx([HOUR] * 4)
    rows = store.execute("SELECT count(*) FROM energy_hourly").fetchone()[0]
    rollups.refresh(site, store, T0, T0 + 4 * HOUR)
    assert store.execute("SELECT count(*) FROM energy_hourly").fetchone()[0] == rows
    again = rollups.hourly(store, ("ups-out",), T0, T0 + 4 * HOUR)["ups-out"]
    assert np.array_equal(again.amount, after.amount)


def test_unaligned_windows_are_refused(site):
    with pytest.raises(ValueError, match="whole UTC hours"):
        rollups.rollup_balance(site, Store(), T0 + 1, T0 + HOUR)


def test_catch_up_follows_every_stored_reading_once(site):
    """Computed: hours refreshed by catch_up after a live append and after a backfill of an
    earlier day; hand result: 800 kWh in every hour of both days, and a second catch_up with
    nothing new stored writes nothing."""
    store = Store()
    store.append(counters({"ups-out": 800.0}, T0 + 24 * HOUR, 24 * 60))
    assert rollups.catch_up(site, store) > 0
    store.append(counters({"ups-out": 800.0}, T0, 24 * 60, offset=1000.0 - 800.0 * 24))
    rollups.catch_up(site, store)
    rows = rollups.hourly(store, ("ups-out",), T0, T0 + 48 * HOUR)["ups-out"]
    assert rows.amount == pytest.approx([800.0] * 48, rel=1e-9)
    assert rollups.catch_up(site, store) == 0
