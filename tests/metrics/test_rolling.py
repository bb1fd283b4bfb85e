"""The incremental rolling calculator agrees with direct computation from the store."""

import tomllib

import numpy as np
import pytest
from dcpue.config import example_path, parse_site
from dcpue.core.readings import Reading, ReadingColumns
from dcpue.core.store import Store
from dcpue.metrics.balance import energy_balance
from dcpue.metrics.rolling import RollingCalculator

from tests.metrics.synth import (
    HOUR,
    MICROGRID_KW,
    MINUTE,
    T0,
    WATER_M3_PER_H,
    counters,
    microgrid_site,
)

DAY = 24 * HOUR


def minute_batches(cols: ReadingColumns):
    for t in np.unique(cols.ts_ms):
        take = cols.ts_ms == t
        yield ReadingColumns(*(getattr(cols, f)[take] for f in ReadingColumns.__slots__))


def test_minute_by_minute_updates_match_bulk_and_store():
    site = microgrid_site()
    cols = counters(MICROGRID_KW, T0, 150, water_m3_per_h=WATER_M3_PER_H)
    store = Store()
    store.append(cols)
    live, bulk = RollingCalculator(site), RollingCalculator(site)
    for batch in minute_batches(cols):
        live.update(batch)
    bulk.update(cols)
    now = T0 + 150 * MINUTE
    live_snap, bulk_snap = live.snapshot(now), bulk.snapshot(now)
    assert live_snap.keys() == bulk_snap.keys()
    for key, fig in live_snap.items():
        other = bulk_snap[key].value
        assert fig.value == (None if other is None else pytest.approx(other, rel=1e-12)), key
    direct = energy_balance(site, store, now - HOUR, now)
    rolled = live.balance("1h", now)
    assert rolled.facility_kwh == pytest.approx(direct.facility_kwh, rel=1e-12)
    assert rolled.it_kwh == pytest.approx(direct.it_kwh, rel=1e-12)
    assert live_snap["pue.1h"].value == pytest.approx(1.4125)
    assert live_snap["pue.15m"].value == pytest.approx(1.4125)
    assert live_snap["wue.1h"].value == pytest.approx(2.0)
    # 150 minutes of data: a day is far from covered
    assert live_snap["pue.1d"].value is None
    assert live_snap["pue.1d"].coverage == pytest.approx(150 / 1440)


def test_readings_objects_rollover_across_batches_and_stale_reading():
    site = microgrid_site(windows=["15m"])
    calc = RollingCalculator(site)
    wrap = 99_999_999.9  # grid-main rollover in the example
    # grid-main wraps between the two batches: 99,999,999.0 -> 99,999,999.9 -> 16.6 kWh
    first = [Reading(T0 + i * MINUTE, "grid-main", "energy", wrap - 0.9 + i * 0.9, "kWh")
             for i in range(2)]
    later = [Reading(T0 + (i + 2) * MINUTE, "grid-main", "energy", 16.6 * (i + 1), "kWh")
             for i in range(13)]
    assert calc.update(first) == 2
    assert calc.update([*later, first[0]]) == 13  # the old reading is ignored
    assert calc.ignored_stale == 1
    b = calc.balance("15m", T0 + 15 * MINUTE)
    assert b.grid_import_kwh == pytest.approx(0.9 + 16.6 * 13)
    # the meters that never reported leave the window uncovered
    assert b.coverage == 0.0
    assert calc.snapshot(T0 + 15 * MINUTE)["pue.15m"].value is None


def test_readings_in_other_units_are_converted():
    site = microgrid_site(windows=["1h"])
    kwh = counters(MICROGRID_KW, T0, 60)
    mwh = kwh.value / 1000.0
    calc = RollingCalculator(site)
    calc.update(ReadingColumns(kwh.ts_ms, kwh.meter, kwh.quantity, mwh,
                               np.full(len(kwh), "MWh", dtype=object)))
    assert calc.balance("1h", T0 + HOUR).facility_kwh == pytest.approx(1130.0)


def test_write_back_stores_sufficient_figures_once():
    site = microgrid_site(windows=["15m", "1h", "1d"])
    store = Store()
    cols = counters(MICROGRID_KW, T0, 60, water_m3_per_h=WATER_M3_PER_H)
    store.append(cols)
    calc = RollingCalculator(site, store)
    calc.update(cols)
    now = T0 + HOUR
    # 8 metrics x (15m, 1h) sufficient; 1d is not written
    assert calc.write_back(now) == 16
    assert calc.write_back(now) == 0
    pue = store.latest("metric.pue.1h")
    assert pue is not None
    assert (pue.ts_ms, pue.quantity, pue.unit) == (now, "pue", "1")
    assert pue.value == pytest.approx(1.4125)
    assert store.latest("metric.cue.15m").unit == "kgCO2/kWh"
    assert store.latest("metric.pue.1d") is None


def test_rebuild_from_store_equals_live_calculator():
    site = microgrid_site(windows=["15m", "1d", "7d"])
    store = Store()
    cols = counters(MICROGRID_KW, T0, 3 * 24 * 60, step_ms=5 * MINUTE)
    store.append(cols)
    now = T0 + 3 * DAY
    live = RollingCalculator(site, store)  # the same store: the battery's provenance ledger
    live.update(cols)
    rebuilt = RollingCalculator.from_store(site, store, now)
    for key, fig in live.snapshot(now).items():
        assert rebuilt.snapshot(now)[key].value == fig.value, key
        assert rebuilt.snapshot(now)[key].coverage == pytest.approx(fig.coverage), key
    assert rebuilt.latest_ms == now


def test_annual_pue_equals_first_and_last_counter_values():
    """A year at 15-min steps with varying loads and a grid counter that rolls over."""
    site = microgrid_site(max_gap_s=900, windows=["12mo"])
    rng = np.random.default_rng(7)
    step = 15 * 60_000
    ts = T0 + step * np.arange(365 * 96 + 1, dtype=np.int64)
    parts, first_last = [], {}
    for mid, kw in MICROGRID_KW.items():
        kwh = np.concatenate(([0.0], np.cumsum(kw * 0.25 * rng.uniform(0.5, 1.5, len(ts) - 1))))
        start = 99_999_999.9 - 5_000.0 if mid == "grid-main" else 1_234.5
        raw = start + kwh
        if mid == "grid-main":
            raw = np.where(raw >= 99_999_999.9, raw - 99_999_999.9, raw)
        parts.append(ReadingColumns.series(mid, "energy", "kWh", ts, raw))
        first_last[mid] = kwh[-1]
    store = Store()
    store.append(ReadingColumns.concat(parts))
    calc = RollingCalculator.from_store(site, store, int(ts[-1]))
    # direct: last - first of each stored counter (+ the rollover for grid-main)
    grid = store.series("grid-main")
    direct = {m: store.series(m).value[-1] - store.series(m).value[0] for m in MICROGRID_KW}
    direct["grid-main"] = grid.value[-1] - grid.value[0] + 99_999_999.9
    facility = (direct["grid-main"] - direct["grid-export"] + direct["pv-roof"]
                + direct["bess-discharge"] - direct["bess-charge"] - direct["ev-chargers"])
    fig = calc.snapshot(int(ts[-1]))["pue.12mo"]
    assert fig.coverage == 1.0
    assert fig.value == pytest.approx(facility / direct["ups-out"], rel=1e-9, abs=0)


def test_windows_wait_for_a_lagging_meter_but_not_beyond_the_gap_limit():
    site = microgrid_site(windows=["15m"])  # max_gap_s 300
    cols = counters(MICROGRID_KW, T0, 60)
    late = (cols.meter == "pv-roof") & (cols.ts_ms == T0 + 60 * MINUTE)
    calc = RollingCalculator(site)
    calc.update(ReadingColumns(*(getattr(cols, f)[~late] for f in ReadingColumns.__slots__)))
    # 30 s after the minute, PV's last reading still in transit: the window ends at 00:59
    fig = calc.snapshot(T0 + 60 * MINUTE + 30_000)["pue.15m"]
    assert (fig.end_ms, fig.coverage, fig.value) == (T0 + 59 * MINUTE, 1.0, pytest.approx(1.4125))
    # ten minutes later PV is still silent: held back only 5 min, PV measured 9 of 15 minutes
    fig = calc.snapshot(T0 + 70 * MINUTE)["pue.15m"]
    assert fig.end_ms == T0 + 65 * MINUTE
    assert fig.coverage == pytest.approx(9 / 15)
    assert fig.value is None


def test_power_meter_integrated_in_rolling_and_direct_balance():
    data = tomllib.loads(example_path("single_hall").read_text())
    grid = next(m for m in data["meters"] if m["id"] == "grid-main")
    grid.update(kind="power", unit="MW")
    del grid["rollover"]
    site = parse_site(data)
    ts = T0 + MINUTE * np.arange(61, dtype=np.int64)
    # grid ramps 1.2 -> 1.4 MW over the hour (trapezoid: 1300 kWh); IT counter 1000 kWh/h
    power = ReadingColumns.series("grid-main", "power", "MW", ts, 1.2 + 0.2 * np.arange(61) / 60)
    it = ReadingColumns.series("ups-out", "energy", "kWh", ts, 1000.0 * np.arange(61) / 60)
    gap = (ts > T0 + 20 * MINUTE) & (ts < T0 + 30 * MINUTE)  # 10 minutes without power readings
    cols = ReadingColumns.concat([power, it])
    keep = np.concatenate([~gap, np.ones(61, bool)])
    cols = ReadingColumns(*(getattr(cols, f)[keep] for f in ReadingColumns.__slots__))
    store = Store()
    store.append(cols)
    calc = RollingCalculator(site)
    calc.update(cols)
    rolled = calc.balance("1h", T0 + HOUR)
    direct = energy_balance(site, store, T0, T0 + HOUR)
    # the 10-minute gap (> max_gap_s 300) is not bridged: 50 of 60 minutes measured
    gap_kwh = 10 / 60 * (1.2 + 0.2 * 25 / 60) * 1000
    for b in (rolled, direct):
        assert b.grid_import_kwh == pytest.approx(1300.0 - gap_kwh)
        assert b.coverage == pytest.approx(50 / 60)
    assert calc.snapshot(T0 + HOUR)["pue.1h"].value is None


def test_unsorted_batch_with_nan_keeps_the_newest_sample_as_state():
    site = microgrid_site(windows=["15m"])
    calc = RollingCalculator(site)
    ts = T0 + MINUTE * np.array([2, 0, 1, 3], dtype=np.int64)
    values = np.array([2.0, 0.0, 1.0, np.nan])  # 60 kW; the 00:03 reading is garbage
    calc.update(ReadingColumns.series("ups-out", "energy", "kWh", ts, values))
    assert calc.latest_ms == T0 + 2 * MINUTE
    calc.update(ReadingColumns.series("ups-out", "energy", "kWh", ts[3:], np.array([3.0])))
    assert calc.balance("15m", T0 + 15 * MINUTE).it_kwh == pytest.approx(3.0)
    assert calc.ignored_stale == 0


def test_ref_counts_purchased_green_power_and_never_exceeds_one():
    # The microgrid example holds a 10,000 MWh green tariff over 2023 (local time).
    site = microgrid_site()
    june = T0 + 151 * DAY  # 2023-06-01T00:00Z
    calc = RollingCalculator(site)
    calc.update(counters(MICROGRID_KW, june, 150))
    snap = calc.snapshot(june + 150 * MINUTE)
    # facility 1130 kWh/h, PV inside 250 x 1130 / 1290 = 218.99 (the rest feeds the EV chargers
    # and the battery): the tariff's 10,000 MWh / 8,760 h = 1,141.6 kWh/h is capped at the
    # 911.01 kWh of grid electricity used inside the boundary
    assert snap["ref.1h"].value == pytest.approx(1.0)
    lean = microgrid_site()
    lean.carbon.instruments[0].mwh = 2190.0  # 250 kWh per hour of 2023
    calc = RollingCalculator(lean)
    calc.update(counters(MICROGRID_KW, june, 150))
    ref = calc.snapshot(june + 150 * MINUTE)["ref.1h"]
    assert ref.value == pytest.approx((250.0 * 1130 / 1290 + 250.0) / 1130.0)
    assert {i["name"] for i in ref.explain()["inputs"]} >= {"pv_inside", "purchased_green"}
