"""Written-back ``metric.*`` series follow late data: a backfill rewrites the stored rows it
changes, and only those; a replayed batch changes nothing.

Declared: the microgrid example's constant powers (facility 1,130 kW, IT 800 kW: PUE 1.4125)
as 5-minute counters over two days, except that on day 2 the IT counter (``ups-out``) is
silent from 11:30 to 12:30 and its readings of that hour arrive only after the day (a
gateway's store-and-forward). In that hour IT really drew 1,400 kW to 12:00 and 200 kW after
(the same 800 kWh, so the counter's later readings are unchanged). Hand-worked, for windows
ending at 12:00 on day 2: live, IT's last half hour is bridged at its mean (800 kW): PUE
1.4125; after the backfill the window holds 30 min at 1,400 kW: 1d: 27,120 / (800 x 23.5 +
700) = 1.3907692; 30h: 33,900 / (800 x 29.5 + 700) = 1.3950617. Computed: the stored rows
written back live (every 5 minutes from 11:00 to 13:00 on day 2, and at the day's end), then
after the backfill (spread over several write-backs by a small budget), each against
``energy_balance`` over the row's window.
"""

import numpy as np
import pytest
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store
from dcpue.metrics.balance import energy_balance
from dcpue.metrics.indicators import site_indicators
from dcpue.metrics.provenance import stored_origin
from dcpue.metrics.rolling import RollingCalculator

from tests.metrics.synth import HOUR, MICROGRID_KW, MINUTE, T0, counters, microgrid_site

DAY = 24 * HOUR
STEP = 5 * MINUTE
GAP = (T0 + DAY + 11 * HOUR + 30 * MINUTE, T0 + DAY + 12 * HOUR + 30 * MINUTE)
NOON = T0 + DAY + 12 * HOUR


def _take(cols: ReadingColumns, mask: np.ndarray) -> ReadingColumns:
    return ReadingColumns(*(getattr(cols, f)[mask] for f in ReadingColumns.__slots__))


def _readings() -> tuple[ReadingColumns, np.ndarray]:
    """Two days of counters and the mask of the IT readings held back (inside the gap)."""
    others = counters({m: kw for m, kw in MICROGRID_KW.items() if m != "ups-out"}, T0,
                      2 * 24 * 60, STEP)
    ts = T0 + STEP * np.arange(2 * 288 + 1, dtype=np.int64)
    half = 30 * MINUTE
    extra = 600.0 * (np.clip(ts - GAP[0], 0, half) - np.clip(ts - NOON, 0, half)) / HOUR
    it = ReadingColumns.series("ups-out", "energy", "kWh", ts,
                               1000.0 + 800.0 * (ts - T0) / HOUR + extra)
    cols = ReadingColumns.concat([others, it])
    held = (cols.meter == "ups-out") & (cols.ts_ms > GAP[0]) & (cols.ts_ms < GAP[1])
    return cols, held


def _metric_rows(store: Store) -> dict[tuple[str, int], tuple[float, int]]:
    rows = store.execute("SELECT meter, ts, value, seq FROM readings WHERE meter LIKE "
                         "'metric.%'").fetchall()
    return {(m, int(t)): (float(v), int(s)) for m, t, v, s in rows}


def test_a_backfill_rewrites_the_stored_metric_rows_it_changes():
    site = microgrid_site(windows=["1h", "1d", "30h"])
    cols, held = _readings()
    live = _take(cols, ~held)
    store = Store()
    calc = RollingCalculator(site, store, clock=lambda: T0 + 2 * DAY)
    edges = [NOON - HOUR, *range(NOON - HOUR + STEP, NOON + HOUR + 1, STEP), T0 + 2 * DAY]
    for lo, hi in zip([T0 - 1, *edges], edges, strict=False):  # written back every 5 min
        chunk = _take(live, (live.ts_ms > lo) & (live.ts_ms <= hi))
        store.append(chunk)
        calc.update(chunk)
        calc.write_back(hi)
    before = _metric_rows(store)
    assert before[("metric.pue.1d", NOON)][0] == pytest.approx(1.4125, rel=1e-9)
    assert before[("metric.pue.30h", NOON)][0] == pytest.approx(1.4125, rel=1e-9)

    backfill = _take(cols, held)
    store.append(backfill)
    calc.update(backfill)
    calc.rewrite_budget = 25  # window ends per write-back: the rewrite takes several calls
    calls = 0
    while calls == 0 or calc.rewrite_pending:
        assert calls < 10, "the rewrite does not finish"
        calc.write_back(T0 + 2 * DAY)
        calls += 1
    assert calls > 1
    after = _metric_rows(store)
    assert after[("metric.pue.1d", NOON)][0] == pytest.approx(27120 / 19500, rel=1e-9)
    assert after[("metric.pue.30h", NOON)][0] == pytest.approx(33900 / 24300, rel=1e-9)
    changed = {k for k in before if k not in after or after[k] != before[k]}
    assert calc.rewritten == len(changed) > 0
    # every stored row of every window overlapping the backfill equals the direct figure
    lengths = {"1h": HOUR, "1d": DAY, "30h": 30 * HOUR}
    direct = {}
    for (meter, ts), (value, _) in after.items():
        _, name, window = meter.split(".")
        if not GAP[0] - HOUR < ts < GAP[1] + lengths[window]:
            assert after[(meter, ts)] == before[(meter, ts)]  # outside the span: untouched
            continue
        if (window, ts) not in direct:
            b = energy_balance(site, store, ts - lengths[window], ts)
            origin = stored_origin(site, store, ts - lengths[window], ts, None)  # battery
            direct[(window, ts)] = site_indicators(site, b, origin)
        assert value == pytest.approx(direct[(window, ts)][name].value, rel=1e-9), (meter, ts)
    assert len(direct) > 15
    assert {k[0] for k in changed} >= {"metric.pue.1d", "metric.pue.30h", "metric.dcie.1d"}

    # a replayed identical batch changes nothing: no row, no value, no seq
    store.append(backfill)
    calc.update(backfill)
    calc.write_back(T0 + 2 * DAY)
    assert _metric_rows(store) == after
    assert calc.rewritten == len(changed)
