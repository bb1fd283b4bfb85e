"""Training frames from hand-made readings: counter powers, rollover, coverage, psychrometrics."""

from __future__ import annotations

import numpy as np
import pytest
from dcpue.core.readings import ReadingColumns
from dcpue.core.store import Store
from dcpue.optimizer.frames import FRAME_COLUMNS, FrameError, build_frame
from dcpue.optimizer.live import LiveState
from dcpue.optimizer.propose import current_state

from tests.optimizer.helpers import setpoint_readings, small_site, state_series

T0 = 1_688_169_600_000  # 2023-07-01T00:00Z
MIN = 60_000
STEP = 15 * MIN


def _counter(meter: str, kw: float, ts: np.ndarray, start: float = 0.0, rollover=None):
    value = start + kw * (ts - ts[0]) / 3_600_000.0
    if rollover:
        value = np.mod(value, rollover)
    return ReadingColumns.series(meter, "energy", "kWh", ts, value)




def _readings() -> ReadingColumns:
    """Two hours of 1-minute readings at constant plant powers (kW):
    IT 600, chiller 100, CRAH 30, pump 10, tower 5, UPS loss 20, lighting 5."""
    ts = T0 + np.arange(120, dtype=np.int64) * MIN
    parts = [
        _counter("it", 600.0, ts, start=900.0, rollover=1000.0),  # wraps every 100 min
        _counter("ch", 100.0, ts), _counter("pump", 10.0, ts), _counter("tower", 5.0, ts),
        _counter("ups", 20.0, ts), _counter("light", 5.0, ts),
        state_series("crah", "power", "kW", ts, 30.0),
        state_series("orh", "humidity", "%", ts, 50.0),
        state_series("inlet-a", "temperature", "degC", ts, 22.0),
        # inlet-b spikes to 25.5 degC once, in the bucket starting at 45 min
        state_series("inlet-b", "temperature", "degC", ts, np.where(ts == T0 + 50 * MIN, 25.5, 21.0)),
    ]
    # outdoor temperature: only 2 of 15 samples in the bucket starting at 75 min
    thin = (ts < T0 + 77 * MIN) | (ts >= T0 + 90 * MIN)
    parts.append(state_series("oat", "temperature", "degC", ts[thin], 30.0))
    parts += setpoint_readings(
        ts, {"sp-sa": 22.0, "sp-chw": 12.0, "sp-fan": 70.0, "sp-pump": 45.0, "sp-units": 6.0})
    return ReadingColumns.concat(parts)


def test_frame_powers_coverage_and_psychrometrics() -> None:
    site = small_site()
    with Store() as store:
        store.append(_readings())
        frame = build_frame(store, site, T0, T0 + 120 * MIN, step_s=900, min_coverage=0.8)
    data = frame.data
    assert list(data.columns) == list(FRAME_COLUMNS)
    # 8 buckets; the one at 75 min lacks outdoor air (the first and last are covered 14 of 15
    # minutes by the counters' interpolation, above min_coverage)
    assert (frame.total_rows, frame.dropped_rows, len(frame)) == (8, 1, 7)
    assert T0 in data.index and T0 + 75 * MIN not in data.index
    # IT across the rollover (900 + 600 kWh/h wraps at 1000) still reads 600 kW
    assert data["it_kw"].to_numpy() == pytest.approx(600.0)
    assert data["cooling_kw"].to_numpy() == pytest.approx(100 + 30 + 10 + 5)
    assert data["facility_kw"].to_numpy() == pytest.approx(600 + 145 + 20 + 5)
    assert data["pue"].to_numpy() == pytest.approx(770 / 600)
    # hottest of two sensors, bucket maximum
    assert data.loc[T0 + 45 * MIN, "rack_inlet_max_c"] == 25.5
    assert data.loc[T0 + 30 * MIN, "rack_inlet_max_c"] == 22.0
    # ASHRAE psychrometric chart at sea level: 30 degC, 50 % -> wet bulb 22.0, dew point 18.4
    assert data["wet_bulb_c"].to_numpy() == pytest.approx(22.0, abs=0.05)
    assert data["dew_point_c"].to_numpy() == pytest.approx(18.45, abs=0.05)
    assert data["running_units"].to_numpy() == pytest.approx(6.0)


def test_current_state_is_the_last_complete_row() -> None:
    site = small_site()
    with Store() as store:
        store.append(_readings())
        state = current_state(store, site)
    # newest reading at 119 min: the state is the 15 minutes ending there, not an older bucket
    assert state.ts_ms == T0 + 119 * MIN
    assert state.conditions["it_kw"] == pytest.approx(600.0)
    assert state.setpoints["chilled_water_temperature"] == 12.0


def test_any_subset_of_levers_and_several_instances() -> None:
    """A site without a pump-frequency meter still frames (the lever is held at its declared
    value: the default bounds' midpoint 37.5 Hz); two supply-air setpoint meters (one per air
    handler, 22 and 24 degC declared) give their mean, 23 degC."""
    site = small_site()
    site.meters = [m for m in site.meters if m.id != "sp-pump"]
    second = next(m for m in site.meters if m.id == "sp-sa").model_copy(update={"id": "sp-sa2"})
    site.meters.append(second)
    ts = T0 + np.arange(120, dtype=np.int64) * MIN
    with Store() as store:
        store.append(_readings())
        store.append(state_series("sp-sa2", "temperature", "degC", ts, 24.0))
        frame = build_frame(store, site, T0, T0 + 120 * MIN, step_s=900)
    assert len(frame) == 7
    assert frame.data["pump_frequency_hz"].to_numpy() == pytest.approx(37.5)
    assert frame.data["supply_air_c"].to_numpy() == pytest.approx(23.0)
    with Store() as store, pytest.raises(FrameError, match="no readings"):
        current_state(store, small_site())
    site.meters = [m for m in site.meters if m.role.value != "rack_inlet_temperature"]
    with Store() as store, pytest.raises(FrameError, match="rack_inlet_temperature"):
        build_frame(store, site, T0, T0 + STEP)


def _it_counter(case: str) -> ReadingColumns:
    """The readings of :func:`_readings` with the IT counter replaced: 600 kW (10 kWh a minute)
    from 5,000,000 kWh, and at minute 40 either one torn sample 0.1 kWh below its predecessor
    (``torn``), a restart from 0 (``reset``) or a new meter starting at 73,512.3 kWh (``swap``)."""
    ts = T0 + np.arange(120, dtype=np.int64) * MIN
    value = 5_000_000.0 + 10.0 * np.arange(120)
    if case == "torn":
        value[40] = value[39] - 0.1
    else:
        value[40:] += {"reset": 0.0, "swap": 73_512.3}[case] - value[40]
    others = _readings()
    keep = others.meter != "it"
    return ReadingColumns.concat([
        ReadingColumns.series("it", "energy", "kWh", ts, value),
        ReadingColumns(*(getattr(others, f)[keep] for f in ReadingColumns.__slots__)),
    ])


@pytest.mark.parametrize("case", ["torn", "reset", "swap"])
def test_torn_read_reset_or_swap_never_makes_a_giant_it_row(case: str) -> None:
    """Issue 9: one torn read (a sample 0.1 kWh below its predecessor) once made a 9,994,252 kW
    IT row that training accepted. Through the counter engine every kept row's IT power is the
    declared 600 kW (within 1 %: a jitter step may shift 0.1 kWh between buckets) and a bucket
    whose energy the engine cannot know (a reset) is dropped and counted, not trained on."""
    site = small_site()
    next(m for m in site.meters if m.id == "it").rollover = 9_999_999.9
    with Store() as store:
        store.append(_it_counter(case))
        frame = build_frame(store, site, T0, T0 + 120 * MIN, step_s=900, min_coverage=0.8)
    assert len(frame) >= 5  # at most the bucket of the event and the thin outdoor-air one go
    assert frame.data["it_kw"].to_numpy() == pytest.approx(600.0, rel=0.01)
    assert frame.data["pue"].to_numpy() == pytest.approx(770 / 600, rel=0.01)
    if frame.resets or frame.implausible:  # the event's bucket [30, 45) min was dropped
        assert T0 + 30 * MIN not in frame.data.index
        assert frame.resets | frame.implausible == {"it": 1}


def test_a_cooling_meter_reset_is_counted_once() -> None:
    """A cooling meter is both in the cooling sum and in the facility overhead. Computed: the
    frame's reset count after the chiller counter restarts from 0 at minute 40. Declared: one
    reset, so {"ch": 1} (it was read twice and counted 2); the chiller's 100 kW is unchanged in
    the rows kept."""
    site = small_site()
    ts = T0 + np.arange(120, dtype=np.int64) * MIN
    value = 1_000.0 + 100.0 / 60 * np.arange(120)
    value[40:] -= value[40]
    others = _readings()
    keep = others.meter != "ch"
    with Store() as store:
        store.append(ReadingColumns.concat([
            ReadingColumns.series("ch", "energy", "kWh", ts, value),
            ReadingColumns(*(getattr(others, f)[keep] for f in ReadingColumns.__slots__)),
        ]))
        frame = build_frame(store, site, T0, T0 + 120 * MIN, step_s=900, min_coverage=0.8)
    assert frame.resets == {"ch": 1}
    assert T0 + 30 * MIN not in frame.data.index
    assert frame.data["cooling_kw"].to_numpy() == pytest.approx(145.0, rel=0.01)


def test_live_state_from_memory_equals_the_storestate_series() -> None:
    """LiveState fed the readings in 10-minute batches (and a replayed batch) gives the same
    state as current_state on a store holding them all."""
    site = small_site()
    cols = _readings()
    live = LiveState(site)
    order = np.argsort(cols.ts_ms, kind="stable")
    batches = np.array_split(order, 12)
    for idx in [*batches, batches[-1]]:
        live.add(ReadingColumns(*(getattr(cols, f)[idx] for f in ReadingColumns.__slots__)))
    with Store() as store:
        store.append(cols)
        expected = current_state(store, site)
    got = live.state()
    assert got.ts_ms == expected.ts_ms == T0 + 119 * MIN
    assert got.conditions == pytest.approx(expected.conditions)
    assert got.setpoints == expected.setpoints and got.rack_inlet_c == expected.rack_inlet_c
    # memory holds the last 5 steps plus max_gap only
    assert live.recent.time_range()[0] >= T0 + 119 * MIN - 5 * STEP - 300_000


def test_a_mostly_idle_load_keeps_its_busy_buckets() -> None:
    """Computed: the frame of two hours in 15-min buckets where the chiller (``ch``) idles at
    1 kW except from 60 to 75 min at 150 kW (an economizer hall: the chiller runs one
    bucket). Declared: every bucket is kept, the busy one at 150 kW. The old guard (10 x the
    median bucket power, 10 kW) dropped it as implausible; the engine's ceiling (the larger
    of 10 x the median and 2 x the 99th percentile) keeps it."""
    site = small_site()
    ts = T0 + np.arange(120, dtype=np.int64) * MIN
    kw = np.where((ts > T0 + 60 * MIN) & (ts <= T0 + 75 * MIN), 150.0, 1.0)
    chiller = np.concatenate(([0.0], np.cumsum(kw[1:]) / 60.0))  # kWh, end-stamped minutes
    others = _readings()
    keep = others.meter != "ch"
    with Store() as store:
        store.append(ReadingColumns.concat([
            ReadingColumns.series("ch", "energy", "kWh", ts, chiller),
            ReadingColumns(*(getattr(others, f)[keep] for f in ReadingColumns.__slots__))]))
        frame = build_frame(store, site, T0, T0 + 120 * MIN, step_s=900, min_coverage=0.8)
    assert frame.implausible == {}
    assert T0 + 60 * MIN in frame.data.index
    # the busy bucket's cooling is the chiller's 150 kW plus the other cooling meters' 45 kW
    assert frame.data.loc[T0 + 60 * MIN, "cooling_kw"] == pytest.approx(195.0, rel=1e-6)
