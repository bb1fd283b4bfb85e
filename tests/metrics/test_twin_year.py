"""A year of 1-minute digital-twin data through the rolling calculator.

- The annual (12-month) PUE of the incrementally updated calculator, and of one rebuilt from
  the store, equals the PUE from the stored counters' first and last values, to 1e-9.
- Seed check: a twin year whose counters are scaled to the reference fleet's 2023 energy
  (5,114,669.0 MWh of electricity at PUE 1.279, SEED_FACTS.md) reports PUE 1.279.
"""

import numpy as np
import pandas as pd
import pytest
from dcpue.config import example_path, load_site
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store
from dcpue.metrics.balance import FACILITY_GROUPS, BalanceTopology, read_meter
from dcpue.metrics.rolling import RollingCalculator
from dcpue.twin.simulator import Twin

YEAR_MS = 365 * 86_400_000


def only(cols: ReadingColumns, meters: list[str]) -> ReadingColumns:
    mask = pd.Series(cols.meter).isin(meters).to_numpy()
    return ReadingColumns(*(getattr(cols, f)[mask] for f in ReadingColumns.__slots__))


def test_annual_pue_of_a_twin_year_equals_first_and_last_counter_values():
    site = load_site(example_path("microgrid"))
    topo = BalanceTopology.from_site(site)
    pue_meters = [m for g in (*FACILITY_GROUPS, "it") for m in topo.groups[g]]
    twin = Twin(site)
    store, calc = Store(), RollingCalculator(site)
    chunks = [*twin.run(365), *twin.run(1 / 1440)]  # 365 d of intervals: end on 1 Jan 2024
    for cols in chunks[:-2]:  # 30-day chunks, then the last 5 days hour by hour
        calc.update(cols)
    last = ReadingColumns.concat(chunks[-2:])
    hours = last.ts_ms // 3_600_000
    for hour in np.unique(hours):
        calc.update(ReadingColumns(*(getattr(last, f)[hours == hour]
                                     for f in ReadingColumns.__slots__)))
    store.append(only(ReadingColumns.concat(chunks), pue_meters))
    now = twin.start_ms + YEAR_MS

    def delta(mid: str) -> float:
        """Last - first stored value, plus one rollover for each time the counter wrapped."""
        meter = site.meter_by_id[mid]
        _, value = read_meter(store, meter, twin.start_ms, now + 1)
        assert len(value) == 365 * 1440 + 1
        wraps = int(np.count_nonzero(np.diff(value) < 0))
        return value[-1] - value[0] + wraps * (meter.rollover or 0.0)

    d = {m: delta(m) for m in pue_meters}
    facility = (d["grid-main"] - d["grid-export"] + d["pv-roof"] + d["bess-discharge"]
                - d["bess-charge"] - d["ev-chargers"])
    direct = facility / d["ups-out"]
    live = calc.snapshot(now)["pue.12mo"]
    rebuilt = RollingCalculator.from_store(site, store, now).snapshot(now)["pue.12mo"]
    assert live.value == pytest.approx(direct, rel=1e-9, abs=0)
    assert rebuilt.value == pytest.approx(direct, rel=1e-9, abs=0)
    assert live.coverage > 0.9999
    # the IT counter (10 GWh rollover) wraps several times a year at 6 MW
    assert d["ups-out"] > 5 * site.meter_by_id["ups-out"].rollover


def test_twin_year_scaled_to_the_fleet_reports_pue_1_279():
    site = load_site(example_path("single_hall"))
    twin = Twin(site)
    cols = ReadingColumns.concat([*twin.run(365), *twin.run(1 / 1440)])
    facility_mwh = 5_114_669.0  # total electricity used, 2023 (SEED_FACTS.md)
    it_mwh = facility_mwh / 1.279  # what IT must have been at the published PUE
    targets = {"grid-main": facility_mwh * 1000, "ups-out": it_mwh * 1000}
    scaled = []
    for mid, target_kwh in targets.items():
        meter = site.meter_by_id[mid]
        take = cols.meter == mid
        ts, raw = cols.ts_ms[take], cols.value[take]
        steps = np.diff(raw) % meter.rollover  # unwrap the twin's own rollovers
        kwh = np.concatenate(([0.0], np.cumsum(steps * (target_kwh / steps.sum()))))
        # the scaled counters wrap many times a year at the meter's configured rollover
        scaled.append(ReadingColumns.series(mid, "energy", "kWh", ts, kwh % meter.rollover))
    calc = RollingCalculator(site)
    calc.update(ReadingColumns.concat(scaled))
    b = calc.balance("12mo", int(cols.ts_ms[0]) + YEAR_MS)
    assert b.facility_kwh / 1000 == pytest.approx(5_114_669.0, abs=0.05)
    fig = calc.snapshot(int(cols.ts_ms[0]) + YEAR_MS)["pue.12mo"]
    assert round(fig.value, 3) == 1.279
    assert fig.value == pytest.approx(1.279, rel=1e-9)
