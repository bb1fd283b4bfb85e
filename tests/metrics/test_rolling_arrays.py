"""The rolling calculator's array form (:meth:`RollingCalculator.balances` with
:func:`dcpue.metrics.indicators.site_indicator_values`) gives the values of its scalar form
(:meth:`RollingCalculator.snapshot`) at every window end, on messy data.

Computed: both forms from the same calculator, at each whole minute (hour for long windows) of
a 5-hour span, on the microgrid example's meters (PV, battery, EV chargers outside the
boundary, water) with a gap longer than ``max_gap_s``, a counter jump above its ceiling (a
data-quality error) and a short dropout bridged at the meter's mean rate. Declared: only the
tolerance (relative 1e-12: the array form sums buckets by a cumulative sum, the scalar one by a
reduction), and by hand that the messy data does reach each rule (some windows are
data-quality errors, some below coverage, some bridged), so a test that compared empty
values could not pass.
"""

import numpy as np
import pytest
from dcpue.core.readings import ReadingColumns
from dcpue.metrics.indicators import site_indicator_values
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


def _messy() -> ReadingColumns:
    kw = {m: p for m, p in MICROGRID_KW.items() if m != "lighting"}
    cols = counters(kw, T0, 300, water_m3_per_h=WATER_M3_PER_H)
    ts, value = cols.ts_ms.copy(), cols.value.copy()
    # a 40-minute gap on the chiller's counter (longer than max_gap_s: energy known, time
    # unmeasured)
    keep = ~((cols.meter == "chiller-1") & (ts > T0 + 60 * MINUTE) & (ts < T0 + 100 * MINUTE))
    # a jump of 1e6 kWh on the pumps' (far above any ceiling: a data-quality error)
    value[(cols.meter == "pumps") & (ts >= T0 + 200 * MINUTE)] += 1e6
    out = ReadingColumns(cols.ts_ms, cols.meter, cols.quantity, value, cols.unit)
    out = ReadingColumns(*(getattr(out, f)[keep] for f in ReadingColumns.__slots__))
    # lighting by power with a 15-minute dropout: unknown time, bridged where coverage allows
    t = T0 + MINUTE * np.arange(301, dtype=np.int64)
    t = t[(t <= T0 + 120 * MINUTE) | (t >= T0 + 135 * MINUTE)]
    light = ReadingColumns.series("lighting", "power", "kW", t,
                                  np.full(len(t), MICROGRID_KW["lighting"]))
    return ReadingColumns.concat([out, light])


@pytest.mark.parametrize(("window", "reached"), [
    ("15m", {"bridged", "coverage", "pumps:"}), ("1h", {"bridged", "coverage", "pumps:"}),
    ("1d", {"coverage"}),  # 5 h of a day: never enough coverage, so never bridged
])
def test_array_form_equals_the_snapshot_at_every_minute(window, reached):
    site = microgrid_site(("lighting",), windows=["15m", "1h", "1d"], max_gap_s=600,
                          min_coverage=0.5)
    calc = RollingCalculator(site)  # no store: the origin is each window's own balance
    assert calc.origin_free
    calc.update(_messy(), now_ms=T0 + 301 * MINUTE)
    ends = T0 + MINUTE * np.arange(16, 301, dtype=np.int64)
    values = site_indicator_values(site, calc.balances(window, ends))
    notes = set()
    for i, end in enumerate(ends.tolist()):
        snap = {k.removesuffix(f".{window}"): f for k, f in calc.snapshot(end).items()
                if k.endswith(f".{window}")}
        assert calc.window_bounds(window, end)[1] == end
        assert snap.keys() == values.keys()
        for name, fig in snap.items():
            got = values[name][i]
            if fig.value is None:
                assert np.isnan(got), (name, end, fig.note)
                notes.add(fig.note.split(" ")[0])
            else:
                assert got == pytest.approx(fig.value, rel=1e-12), (name, end)
        bridged = calc.balance(window, end).bridged
        notes |= {"bridged"} if bridged else set()
    # the messy data reaches every rule: a data-quality error names the meter
    assert reached <= notes, notes


def test_array_form_of_long_windows_at_hour_ends():
    """The hour ring's windows (7 d) at whole hours, as the snapshot gives them."""
    site = microgrid_site(windows=["1h", "7d"])
    calc = RollingCalculator(site)
    calc.update(counters(MICROGRID_KW, T0, 600, water_m3_per_h=WATER_M3_PER_H),
                now_ms=T0 + 601 * MINUTE)
    ends = T0 + HOUR * np.arange(1, 11, dtype=np.int64)
    values = site_indicator_values(site, calc.balances("7d", ends))
    for i, end in enumerate(ends.tolist()):
        fig = calc.snapshot(end)["pue.7d"]
        assert fig.value is None and np.isnan(values["pue"][i])  # 10 h of a week
    b = calc.balances("7d", ends)
    assert b.facility_kwh[-1] == pytest.approx(calc.balance("7d", int(ends[-1])).facility_kwh,
                                               rel=1e-12)
    assert b.facility_kwh[-1] > b.facility_kwh[0] > 0
