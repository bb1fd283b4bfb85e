"""Plant physics: hand-worked values, affinity laws, monotonicity, real trade-offs."""

from __future__ import annotations

import numpy as np
import psychrolib
import pytest
from dcpue.twin.plant import (
    Conditions,
    PlantParams,
    Setpoints,
    chiller_cop,
    evaluate,
    pump_power_kw,
    ups_loss_kw,
    wet_bulb_c,
)


@pytest.fixture(scope="module")
def params(hall) -> PlantParams:
    return PlantParams.from_settings(hall.twin)


MILD = Conditions(it_kw=800.0, dry_bulb_c=15.0, relative_humidity_pct=70.0, pressure_pa=98_000.0)
HOT = Conditions(it_kw=800.0, dry_bulb_c=32.0, relative_humidity_pct=60.0, pressure_pa=98_000.0)
CONVENTIONAL = Setpoints(20.0, 10.0, 80.0, 50.0, 8.0)


def test_ups_loss_hand_worked(params):
    # rating 1000 kW (1.25 x 800), f = 0.8: 1000 x (0.02 + 0.03 x 0.8 + 0.015 x 0.64) = 53.6 kW
    assert params.ups_rated_kw == 1000.0
    assert ups_loss_kw(800.0, params) == pytest.approx(53.6, rel=1e-12)


def test_chiller_cop_hand_worked_and_monotone(params):
    # T_evap = 10 - 1.5 = 8.5 degC = 281.65 K; T_cond = 30 + 1.5 = 31.5 degC; lift 23 K
    assert chiller_cop(10.0, 30.0, params) == pytest.approx(0.42 * 281.65 / 23.0, rel=1e-12)
    chw = np.linspace(6.0, 20.0, 29)
    assert np.all(np.diff(chiller_cop(chw, 30.0, params)) > 0)
    cond = np.linspace(20.0, 40.0, 21)
    assert np.all(np.diff(chiller_cop(10.0, cond, params)) < 0)


def test_wet_bulb_matches_psychrolib_and_published_value():
    # ASHRAE psychrometric chart: 30 degC dry bulb, 50 % RH at sea level -> wet bulb ~22.0 degC
    assert wet_bulb_c(30.0, 50.0, 101_325.0) == pytest.approx(22.0, abs=0.2)
    arr = wet_bulb_c(np.array([0.0, 30.0]), np.array([80.0, 50.0]), np.array([1e5, 101_325.0]))
    ref = psychrolib.GetTWetBulbFromRelHum(0.0, 0.8, 1e5)
    assert arr[0] == pytest.approx(ref, abs=1e-9)


def test_fan_affinity_law(params):
    units = 8.0
    fixed = units * params.crah_unit_fixed_kw
    half = evaluate(MILD, Setpoints(20.0, 10.0, 50.0, 50.0, units), params).crah_kw
    full = evaluate(MILD, Setpoints(20.0, 10.0, 100.0, 50.0, units), params).crah_kw
    assert (half - fixed) / (full - fixed) == pytest.approx(0.125, rel=1e-12)
    assert full == pytest.approx(units * (params.crah_unit_fixed_kw + params.crah_fan_kw))


def test_pump_affinity_law(params):
    flow = 0.8  # chilled-water flow fraction, held fixed
    base = pump_power_kw(0.0, flow, params)
    assert base == pytest.approx(params.chw_pump_kw * 0.512, rel=1e-12)
    ratio = (pump_power_kw(40.0, flow, params) - base) / (pump_power_kw(50.0, flow, params) - base)
    assert ratio == pytest.approx((40.0 / 50.0) ** 3, rel=1e-12)


def test_conservation_exact_and_vectorised(params):
    n = 200
    rng = np.random.default_rng(1)
    cond = Conditions(rng.uniform(300, 880, n), rng.uniform(-10, 35, n), rng.uniform(20, 100, n),
                      np.full(n, 98_000.0))
    sp = Setpoints(rng.uniform(16, 27, n), rng.uniform(6, 20, n), rng.uniform(30, 100, n),
                   rng.uniform(25, 50, n), rng.integers(1, 9, n).astype(float))
    r = evaluate(cond, sp, params)
    parts = r.chiller_kw + r.crah_kw + r.pump_kw + r.tower_kw
    np.testing.assert_allclose(r.cooling_kw, parts, rtol=1e-12)
    total = cond.it_kw + r.cooling_kw + r.ups_loss_kw + r.lighting_kw
    np.testing.assert_allclose(r.facility_kw, total, rtol=1e-12)
    one = evaluate(cond.at(7), sp.at(7), params)
    assert float(one.facility_kw) == pytest.approx(r.facility_kw[7], rel=1e-12)


def test_inlet_rises_with_supply_air_and_falls_with_fan_speed(params):
    supply = np.arange(18.0, 27.0, 1.0)
    inlet = evaluate(MILD, Setpoints(supply, 10.0, 80.0, 50.0, 8.0), params).rack_inlet_max_c
    np.testing.assert_allclose(np.diff(inlet), 1.0)  # 1:1 with supply air above the coil limit
    speed = np.arange(30.0, 101.0, 10.0)
    inlet = evaluate(MILD, Setpoints(22.0, 10.0, speed, 50.0, 8.0), params).rack_inlet_max_c
    assert np.all(np.diff(inlet) < 0)


def test_supply_air_floor_is_chilled_water_plus_coil_approach(params):
    r = evaluate(MILD, Setpoints(16.0, 14.0, 80.0, 50.0, 8.0), params)
    assert float(r.supply_air_c) == pytest.approx(14.0 + params.coil_approach_k)


def test_raising_chilled_water_buys_free_cooling_and_saves_chiller_power(params):
    chw = np.arange(7.0, 19.0, 1.0)
    r = evaluate(MILD, Setpoints(26.0, chw, 80.0, 50.0, 8.0), params)
    assert np.all(np.diff(r.free_cooling_fraction) >= 0) and r.free_cooling_fraction[-1] == 1.0
    assert np.all(np.diff(r.chiller_kw) <= 0) and r.chiller_kw[-1] == 0.0 < r.chiller_kw[0]
    hot = evaluate(HOT, Setpoints(26.0, chw, 80.0, 50.0, 8.0), params)
    assert np.all(hot.free_cooling_fraction == 0) and np.all(np.diff(hot.chiller_kw) < 0)


def test_slower_condenser_pump_trades_pump_power_for_chiller_power(params):
    hz = np.array([25.0, 50.0])
    r = evaluate(HOT, Setpoints(20.0, 10.0, 80.0, hz, 8.0), params)
    assert r.pump_kw[0] < r.pump_kw[1] and r.chiller_kw[0] > r.chiller_kw[1]
    assert r.condenser_water_c[0] > r.condenser_water_c[1]


def test_chiller_degradation_scales_chiller_power_only(params):
    ok = evaluate(HOT, CONVENTIONAL, params)
    bad = evaluate(HOT, CONVENTIONAL, params, chiller_degradation=0.15)
    assert float(bad.chiller_kw) == pytest.approx(1.15 * float(ok.chiller_kw), rel=1e-12)
    assert float(bad.crah_kw) == float(ok.crah_kw)


@pytest.mark.parametrize("cond", [MILD, HOT], ids=["mild", "hot"])
def test_oracle_finds_savings_and_some_setpoints_violate_the_inlet_limit(params, cond):
    grid = np.meshgrid(
        np.arange(18, 27.1, 1.0), np.arange(7, 20.1, 1.0), np.arange(30, 101, 10.0),
        np.arange(25, 51, 5.0), np.arange(2, 9, 1.0), indexing="ij",
    )
    sp = Setpoints(*(g.ravel() for g in grid))
    r = evaluate(cond, sp, params)
    safe = r.rack_inlet_max_c <= params.inlet_limit_c
    assert 0.2 < 1 - safe.mean() < 0.95  # many candidates are unsafe, many are safe
    base = float(evaluate(cond, CONVENTIONAL, params).facility_kw)
    best = float(np.min(r.facility_kw[safe]))
    assert best < 0.95 * base  # at least 5 % facility power to win
    assert float(np.min(r.facility_kw)) < best  # the unconstrained optimum is unsafe
