"""Time in the rolling calculator: future stamps, late readings and backfills, gaps, and one
meter carrying power and energy.

Computed: the calculator's windows. Declared: constant powers (microgrid example: facility
1,130 kW, IT 800 kW, PUE 1.4125; single hall variant: grid 1,300 kW, IT 1,000 kW, PUE 1.3),
so every expected figure is hand-worked from them.
"""

import tomllib

import numpy as np
import pytest
from dcpue.config import example_path, parse_site
from dcpue.core.readings import Reading, ReadingColumns
from dcpue.core.store import Store
from dcpue.metrics.balance import energy_balance
from dcpue.metrics.rolling import RollingCalculator

from tests.metrics.synth import HOUR, MICROGRID_KW, MINUTE, T0, counters, microgrid_site

YEAR = 365 * 24 * HOUR


def take(cols: ReadingColumns, mask: np.ndarray) -> ReadingColumns:
    return ReadingColumns(*(getattr(cols, f)[mask] for f in ReadingColumns.__slots__))


def test_a_reading_a_year_ahead_is_ignored_and_clears_nothing():
    site = microgrid_site(windows=["15m", "1h"])
    cols = counters(MICROGRID_KW, T0, 90)
    now = T0 + 90 * MINUTE
    calc = RollingCalculator(site, clock=lambda: now)
    calc.update(cols)
    future = Reading(now + YEAR, "ups-out", "energy", 1e6, "kWh")
    assert calc.update([future]) == 0
    assert calc.ignored_future == 1
    assert calc.snapshot(now)["pue.1h"].value == pytest.approx(1.4125)
    # within the skew (5 min by default) a reading is taken
    assert calc.update(counters({"ups-out": 800.0}, T0 + 91 * MINUTE, 0, offset=1000.0
                                + 800.0 * 91 / 60), now_ms=now) == 1


def test_late_readings_and_a_backfill_update_the_windows_without_restart():
    site = microgrid_site(windows=["15m", "1h", "1d"])
    cols = counters(MICROGRID_KW, T0, 120)
    held_back = (cols.ts_ms > T0 + 30 * MINUTE) & (cols.ts_ms < T0 + 100 * MINUTE) & (
        cols.meter == "grid-main")
    store = Store()
    store.append(take(cols, ~held_back))
    calc = RollingCalculator(site, store)
    calc.update(take(cols, ~held_back))
    now = T0 + 120 * MINUTE
    assert calc.snapshot(now)["pue.1h"].value is None  # grid-main has a 70-minute gap...
    # ...which its counter bridges in energy but not in coverage; the backfill arrives late
    store.append(take(cols, held_back))
    calc.update(take(cols, held_back))
    assert calc.recomputed == 1
    fresh = RollingCalculator.from_store(site, store, now)
    for key, fig in fresh.snapshot(now).items():
        assert calc.snapshot(now)[key].value == (
            None if fig.value is None else pytest.approx(fig.value, rel=1e-12)), key
    assert calc.snapshot(now)["pue.1h"].value == pytest.approx(1.4125)
    assert calc.snapshot(now)["pue.15m"].coverage == 1.0


def _power_grid_site():
    data = tomllib.loads(example_path("single_hall").read_text())
    grid = next(m for m in data["meters"] if m["id"] == "grid-main")
    grid.update(kind="power", unit="kW")
    del grid["rollover"]
    data["calculator"] = {"windows": ["1h", "7d"], "max_gap_s": 600}
    return parse_site(data)


def test_three_hour_power_outage_in_seven_days_is_bridged_not_biased():
    site = _power_grid_site()
    step = 5 * MINUTE
    ts = T0 + step * np.arange(7 * 288 + 1, dtype=np.int64)
    outage = (ts > T0 + 50 * HOUR) & (ts < T0 + 53 * HOUR)  # 3 h without grid readings
    grid = ReadingColumns.series("grid-main", "power", "kW", ts[~outage],
                                 np.full(int((~outage).sum()), 1300.0))
    meters = ["ups-out", "ups-loss", "chiller-1", "crah-fans", "pumps", "tower-1", "lighting"]
    kw = {"ups-out": 1000.0, **{m: 50.0 for m in meters[1:]}}
    others = [ReadingColumns.series(m, "energy", "kWh", ts, 1000.0 + kw[m] * (ts - T0) / HOUR)
              for m in meters]
    cols = ReadingColumns.concat([grid, *others])
    store = Store()
    store.append(cols)
    calc = RollingCalculator(site)
    calc.update(cols)
    now = int(ts[-1])
    fig = calc.snapshot(now)["pue.7d"]
    assert fig.coverage == pytest.approx(1 - 3 / 168, abs=1e-3)  # 3 h of 168 unmeasured
    assert fig.value == pytest.approx(1.3, rel=1e-3)  # bridged at the mean measured power
    b = energy_balance(site, store, now - 7 * 24 * HOUR, now)
    assert b.facility_kwh / b.it_kwh == pytest.approx(1.3, rel=1e-3)
    assert b.bridged["grid-main"] > 0
    assert "bridged" in b.figures()["grid_import"].inputs[0].extra


def test_a_meter_with_power_and_energy_counts_its_energy_once():
    # one IT meter reports a counter and power: 750 kW for an hour. The counter misses
    # 00:20-00:40 (two readings torn, one jump); the power readings fill exactly that
    data = tomllib.loads(example_path("single_hall").read_text())
    ups = next(m for m in data["meters"] if m["id"] == "ups-out")
    ups["also"] = ["power"]
    site = parse_site(data)
    ts = T0 + MINUTE * np.arange(61, dtype=np.int64)
    energy = 100.0 + 12.5 * np.arange(61)
    energy[ts >= T0 + 30 * MINUTE] += 50_000.0  # the counter jumps at 00:30: unknown interval
    store = Store()
    store.append(ReadingColumns.concat([
        ReadingColumns.series("ups-out", "energy", "kWh", ts, energy),
        ReadingColumns.series("ups-out", "power", "kW", ts, np.full(61, 750.0)),
    ]))
    b = energy_balance(site, store, T0, T0 + HOUR)
    assert b.it_kwh == pytest.approx(750.0)  # 59 counter minutes + 1 power minute, once
    assert b.meter_energy["ups-out"].coverage == 1.0
    assert [e.kind for e in b.meter_energy["ups-out"].events] == ["jump_filled_by_power"]
    assert b.figures()["it"].value == pytest.approx(750.0)  # not a data-quality error
