"""A year of 1-minute digital-twin data through the rolling calculator.

Computed: the annual (12-month) PUE of the incrementally updated calculator, and of one
rebuilt from the store. Reference: the PUE from the stored counters' first and last values
(plus one rollover per wrap), computed here independently of the engine; they agree to 1e-9.
(The former "twin year scaled to the fleet reports PUE 1.279" check scaled the counters to the
target and so reproduced any target: removed.)
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

