"""The twin over time: determinism, profiles, PV, battery, counters and energy conservation."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime

import numpy as np
import pytest
from dcpue.config import MeterKind, MeterRole, example_path, parse_site
from dcpue.core.readings import ReadingColumns, datetime_to_ms
from dcpue.twin.plant import Setpoints
from dcpue.twin.simulator import Twin

from tests.twin.conftest import example

DAY_MS = 86_400_000


def by_meter(cols: ReadingColumns) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for meter in dict.fromkeys(cols.meter.tolist()):
        mask = cols.meter == meter
        order = np.argsort(cols.ts_ms[mask], kind="stable")
        out[meter] = (cols.ts_ms[mask][order], cols.value[mask][order])
    return out


def unwrap(values: np.ndarray, rollover: float | None, reset_index: int | None) -> np.ndarray:
    """Cumulative energy since the first sample from wrapped / reset counter values."""
    inc = np.diff(values)
    if reset_index is not None:
        inc[reset_index - 1] = values[reset_index]  # restarted from 0 at that sample
    wraps = inc < 0
    if rollover is not None:
        inc[wraps] += rollover
    assert np.all(inc >= 0)
    return np.concatenate(([0.0], np.cumsum(inc)))


@pytest.fixture(scope="module")
def stressed_campus():
    """The microgrid with tiny rollovers (several wraps a day) and a chiller counter reset."""
    data = tomllib.loads(example_path("microgrid").read_text())
    for m in data["meters"]:
        if m["id"] in ("grid-main", "ups-out", "pv-roof"):
            m["rollover"] = 20_000.0
    data["twin"]["counter_reset"] = {"meter": "chiller-1", "at_day": 0.75}
    site = parse_site(data, "stressed")
    twin = Twin(site, start=datetime(2023, 6, 20, tzinfo=UTC))
    cols = ReadingColumns.concat(list(twin.run(2.0, chunk_days=0.5)))
    return site, twin, by_meter(cols)


def test_energy_conservation_from_counters_to_1e_9(stressed_campus):
    site, twin, series = stressed_campus
    energy = {}
    for m in site.meters:
        if m.kind is not MeterKind.COUNTER or m.role is MeterRole.WATER:
            continue
        reset = twin.meters.reset_step if m.id == "chiller-1" else None
        energy[m.id] = (m.role, unwrap(series[m.id][1], m.rollover, reset))
    wrapped = [mid for mid in energy if np.any(np.diff(series[mid][1]) < 0)]
    assert sorted(wrapped) == ["chiller-1", "grid-main", "pv-roof", "ups-out"]

    def total(*roles: MeterRole) -> np.ndarray:
        return sum(e for role, e in energy.values() if role in roles)

    supply = (total(MeterRole.GRID_IMPORT) - total(MeterRole.GRID_EXPORT)
              + total(MeterRole.PV_GENERATION) + total(MeterRole.BATTERY_DISCHARGE)
              - total(MeterRole.BATTERY_CHARGE))
    demand = total(MeterRole.IT_LOAD, MeterRole.CHILLER, MeterRole.CRAH, MeterRole.PUMP,
                   MeterRole.COOLING_TOWER, MeterRole.UPS_LOSS, MeterRole.LIGHTING,
                   MeterRole.OTHER_LOAD)
    n = len(supply)
    rng = np.random.default_rng(3)
    intervals = [(0, n - 1), (0, 1), (n - 2, n - 1), *map(tuple, np.sort(rng.integers(0, n, (50, 2))))]
    for a, b in intervals:
        if b > a:
            s, d = supply[b] - supply[a], demand[b] - demand[a]
            assert abs(s - d) <= 1e-9 * d, (a, b)
    assert total(MeterRole.PV_GENERATION)[-1] > 0 and total(MeterRole.BATTERY_DISCHARGE)[-1] > 0


def test_counters_monotone_except_rollover_and_one_reset(stressed_campus):
    site, twin, series = stressed_campus
    for m in site.meters:
        if m.kind is not MeterKind.COUNTER:
            continue
        drops = np.flatnonzero(np.diff(series[m.id][1]) < 0) + 1
        if m.id == "chiller-1":
            assert drops.tolist() == [twin.meters.reset_step]
            assert series[m.id][0][drops[0]] == twin.start_ms + 0.75 * DAY_MS
        elif m.rollover is None:
            assert len(drops) == 0, m.id
        else:
            assert np.all(series[m.id][1][drops - 1] > 0.95 * m.rollover), m.id


def test_same_seed_same_world_other_seed_other_noise(hall):
    a = ReadingColumns.concat(list(Twin(hall, seed=7).run(0.5, chunk_days=0.1)))
    b = ReadingColumns.concat(list(Twin(hall, seed=7).run(0.5, chunk_days=0.1)))
    c = ReadingColumns.concat(list(Twin(hall, seed=8).run(0.5, chunk_days=0.1)))
    np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_array_equal(a.meter, b.meter)
    np.testing.assert_array_equal(a.ts_ms, b.ts_ms)
    assert not np.array_equal(a.value, c.value)
    twin = Twin(hall, seed=7)
    ts = twin.start_ms + np.arange(0, DAY_MS, 60_000)
    whole = twin.conditions(ts).it_kw
    parts = np.concatenate([twin.conditions(ts[:700]).it_kw, twin.conditions(ts[700:]).it_kw])
    np.testing.assert_array_equal(whole, parts)  # a pure function of seed and time


def test_it_load_within_profile_with_daily_and_weekly_shape(hall):
    twin = Twin(hall)
    ts = twin.start_ms + np.arange(0, 14 * DAY_MS, 60_000)
    it = twin.conditions(ts).it_kw
    low, high = twin.it_bounds_kw
    assert (low, high) == pytest.approx((680.0, 880.0))
    assert low <= it.min() and it.max() <= high
    assert abs(it.mean() - 800.0) < 0.03 * 800.0
    hour = (ts // 3_600_000 - 5) % 24  # New York standard time in January
    afternoon, night = it[(hour >= 14) & (hour < 16)].mean(), it[(hour >= 2) & (hour < 4)].mean()
    assert afternoon - night > 0.05 * 800.0  # daily swing 2 x 5 % minus the noise


def test_pv_zero_at_night_plausible_at_noon_and_over_a_year(campus):
    twin = Twin(campus)
    june = datetime_to_ms(datetime(2023, 6, 1, tzinfo=UTC))
    ts = june + np.arange(0, 7 * DAY_MS, 60_000)
    pv = twin.pv.ac_at(ts)
    local_hour = (ts // 60_000 / 60.0 - 5.0) % 24  # Miami standard time (TMY clock)
    assert np.all(pv[(local_hour < 4.5) | (local_hour > 20.5)] == 0.0)
    noon = pv[np.abs(local_hour - 12.5) < 1.0]
    ac_rating = 4000.0 / 1.2
    assert noon.max() > 0.6 * ac_rating and noon.max() <= ac_rating + 1e-9
    year = twin.pv.ac_kw.sum() / 4000.0  # kWh per kWp from the hourly profile
    assert 1300 < year < 1650  # PVWatts, Miami, 20 degree tilt: ~1450 kWh/kWp


def test_battery_charges_at_night_discharges_in_the_evening_within_soc(campus):
    twin = Twin(campus)
    flows = twin.simulate(2 * 1440)
    hour = ((flows.ts_ms // 60_000) / 60.0 - 5.0) % 24  # New York, January (EST)
    assert np.all(flows.charge_kw[(hour >= 0) & (hour < 6)] >= 0)
    assert flows.charge_kw[(hour >= 0) & (hour < 6)].sum() > 0
    assert flows.discharge_kw[(hour >= 17) & (hour < 21)].sum() > 0
    assert flows.discharge_kw[(hour < 17) | (hour >= 21)].sum() == 0
    assert np.all((flows.charge_kw == 0) | (flows.discharge_kw == 0))
    assert flows.soc_pct.min() >= 10.0 - 1e-9 and flows.soc_pct.max() <= 95.0 + 1e-9
    assert flows.export_kw.sum() == 0  # PV never exceeds this campus's load


def test_step_matches_run_and_fault_injection_at_runtime(hall):
    july = datetime(2023, 7, 1, 18, tzinfo=UTC)  # afternoon: the chiller runs
    stepped, ran = Twin(hall, start=july), Twin(hall, start=july)
    readings = [r for _ in range(3) for r in stepped.step().readings]
    cols = ReadingColumns.concat(list(ran.run(3 * 60 / 86400)))
    assert sorted((r.meter, r.ts_ms, r.value) for r in readings) == sorted(
        zip(cols.meter.tolist(), cols.ts_ms.tolist(), cols.value.tolist(), strict=True)
    )
    healthy = stepped.step()
    ran.chiller_degradation = 0.15
    faulty = ran.step()
    assert faulty.result.chiller_kw == pytest.approx(1.15 * healthy.result.chiller_kw, rel=1e-12)
    assert faulty.result.facility_kw > healthy.result.facility_kw


def test_setpoint_arrays_drive_each_step_and_are_metered(hall):
    twin = Twin(hall)
    n = 10
    speeds = np.linspace(40.0, 100.0, n)
    sp = Setpoints(22.0, 10.0, speeds, 50.0, 8.0)
    cols = ReadingColumns.concat(list(twin.run(n * 60 / 86400, setpoints=sp)))
    series = by_meter(cols)
    np.testing.assert_allclose(series["sp-fan"][1], speeds)
    assert np.all(np.diff(series["rack-inlet-max"][1]) < 0)  # more air, cooler inlets
    with pytest.raises(ValueError, match="crah_fan_speed_pct"):
        next(twin.run(1.0, setpoints=sp))


def test_annual_pue_plausible_for_each_climate():
    for name, lo, hi in (("single_hall", 1.25, 1.45), ("microgrid", 1.35, 1.6)):
        twin = Twin(example(name, step_s=900))
        r = twin.simulate(365 * 96).result
        pue = r.facility_kw.sum() / r.it_kw.sum()
        assert lo < pue < hi, (name, pue)


def test_meters_the_twin_does_not_model_get_no_readings_and_no_error():
    """Declared: a CRAC energy meter and a voltage meter beside the example hall's meters.
    Checked: the twin runs, gives them no readings and names them as unmodelled."""
    import tomllib

    from dcpue.config import example_path, parse_site
    from dcpue.twin.simulator import Twin

    data = tomllib.loads(example_path("single_hall").read_text())
    data["meters"] += [
        {"id": "crac-1", "role": "crac", "kind": "counter", "unit": "kWh", "max_power_kw": 50},
        {"id": "l1-volts", "role": "voltage", "kind": "state", "unit": "V"},
    ]
    twin = Twin(parse_site(data))
    cols = next(twin.run(0.01))
    assert not {"crac-1", "l1-volts"} & set(cols.meter.tolist())
    assert len(cols) > 0
