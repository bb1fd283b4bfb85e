"""Property-based tests of the counter/energy engine (hypothesis).

Computed: the engine's energies and figures. Declared: a random true energy profile (power
100..3,000 kW per 1-minute interval); the meter readings are derived from it with jitter dips,
rollovers, resets and gaps, so the true total is known exactly and the engine must find it.
"""

import numpy as np
import pytest
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store
from dcpue.metrics.balance import BalanceTopology, balance_from_energies, energy_balance
from dcpue.metrics.energy import MeterEnergy, counter_intervals, window_energy
from dcpue.metrics.indicators import pue
from dcpue.metrics.rolling import RollingCalculator
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from tests.metrics.synth import HOUR, MINUTE, T0, microgrid_site

ROLLOVER = 10_000.0
# no shrinking phase: a failure reports its example at once instead of minutes later
FAST = settings(max_examples=60, deadline=None, phases=[Phase.explicit, Phase.reuse,
                                                        Phase.generate])


@st.composite
def messy_counter(draw):
    """(times ms, readings, true total kWh): a counter with jitter, rollovers, resets, gaps."""
    n = draw(st.integers(3, 120))
    kw = np.array(draw(st.lists(st.floats(100.0, 3000.0), min_size=n - 1, max_size=n - 1)))
    inc = kw / 60.0  # kWh per minute, at most 50: well under 5 % of the range
    true = 9_000.0 + np.concatenate(([0.0], np.cumsum(inc)))
    reading = true.copy()
    base = 0.0  # the meter's zero after resets
    for k in range(1, n):
        # the meter restarts from 0 during interval k. Told apart from jitter, from normal
        # counting, from a wrap and from a single bad read only when it drops from well above
        # what the meter counts in two intervals (3,000 kWh) and not from the top of the range
        if draw(st.integers(0, 19)) == 0 and 3_000 <= (true[k - 1] - base) % ROLLOVER < 9_000:
            base = true[k - 1]
        reading[k] = (true[k] - base) % ROLLOVER
    reading[0] = true[0] % ROLLOVER
    # a reset or wrap must be seen across one interval: an unread restart is unknowable
    seen = np.zeros(n, bool)
    drops = np.flatnonzero(np.diff(reading) < 0)
    seen[drops] = seen[drops + 1] = seen[np.minimum(drops + 2, n - 1)] = True
    for k in range(1, n - 1):  # jitter dips (never on the last sample)
        if draw(st.integers(0, 9)) == 0:
            reading[k] = max(reading[k] - draw(st.floats(0.01, 0.4)), 0.0)
    keep = np.ones(n, bool)
    for k in range(1, n - 1):  # gaps
        keep[k] = seen[k] or draw(st.integers(0, 7)) != 0
    ts = T0 + MINUTE * np.arange(n, dtype=np.int64)
    return ts[keep], reading[keep], float(true[-1] - true[0])


@FAST
@given(messy_counter())
def test_energy_is_conserved_under_jitter_rollover_reset_and_gaps(case):
    ts, reading, total = case
    iv = counter_intervals(ts, reading, ROLLOVER)
    e = window_energy("m", iv, int(ts[0]), int(ts[-1]))
    assert e.quality == ""
    assert e.amount == pytest.approx(total, rel=1e-9, abs=1e-6)


@FAST
@given(st.dictionaries(
    st.sampled_from(["grid-main", "grid-export", "pv-roof", "ev-chargers", "ups-out",
                     "bess-charge", "bess-discharge"]),
    st.floats(0.0, 5000.0), min_size=1))
def test_pue_is_at_least_one_or_not_reported(kwh):
    topo = BalanceTopology.from_site(microgrid_site())
    energies = {m: MeterEnergy(m, kwh.get(m, 0.0), 1.0) for m in topo.all_meters}
    b = balance_from_energies(topo, energies, 0, HOUR)
    fig = pue(b, 0.95)
    if b.facility_kwh >= b.it_kwh > 0:
        assert fig.value is not None and fig.value >= 1.0
    else:
        assert fig.value is None
    assert b.pv_inside_kwh <= max(b.facility_kwh, 0.0) + 1e-9  # REF <= 1


def _cols(ts: np.ndarray, reading: np.ndarray) -> ReadingColumns:
    return ReadingColumns.concat([
        ReadingColumns.series("ups-out", "energy", "kWh", ts, reading),
        ReadingColumns.series("grid-main", "energy", "kWh", ts, 3.0 * (ts - T0) / MINUTE),
    ])


@settings(FAST, max_examples=25)
@given(messy_counter(), st.randoms(use_true_random=False), st.integers(1, 6))
def test_any_interleaving_and_replay_gives_the_stored_figure(case, rnd, n_batches):
    """Batches in any order, with one replayed, end where the store's direct balance is."""
    ts, reading, _ = case
    site = microgrid_site(windows=["1h"], max_gap_s=600)
    cols = _cols(ts, reading)
    store = Store()
    store.append(cols)
    order = list(range(len(cols)))
    rnd.shuffle(order)
    calc = RollingCalculator(site, store, clock=lambda: int(ts[-1]))
    batches = np.array_split(np.array(order), n_batches)
    def feed(idx):
        calc.update(ReadingColumns(*(getattr(cols, f)[idx] for f in ReadingColumns.__slots__)))

    for idx in batches:
        feed(idx)
    end = int(ts[-1]) // MINUTE * MINUTE
    before = calc.snapshot(end)
    feed(batches[0])  # a replayed batch
    assert {k: f.value for k, f in calc.snapshot(end).items()} == {
        k: f.value for k, f in before.items()}
    rolled = calc.balance("1h", end)
    direct = energy_balance(site, store, end - HOUR, end)
    assert rolled.it_kwh == pytest.approx(direct.it_kwh, rel=1e-9, abs=1e-6)
    assert rolled.grid_import_kwh == pytest.approx(direct.grid_import_kwh, rel=1e-9, abs=1e-6)
