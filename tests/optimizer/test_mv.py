"""M&V on twin data with a known injected saving, and the table the carbon calculator reads."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from dcpue.carbon.savings import measured_savings
from dcpue.config import Site
from dcpue.core.readings import datetime_to_ms
from dcpue.core.store import Store
from dcpue.optimizer.frames import build_frame
from dcpue.optimizer.mv import measure_savings, record_savings, recorded_savings
from dcpue.twin.plant import Setpoints, evaluate
from dcpue.twin.simulator import Twin

from tests.optimizer.conftest import JULY

PRE_DAYS, POST_DAYS = 21, 7


def test_mv_recovers_a_known_saving(hall: Site) -> None:
    """Conventional setpoints for 21 days, then chilled water 10 -> 14 degC and supply air
    20 -> 21 degC for 7 days. The true saving is the twin's own physics at both setpoints over
    the post-period's weather and IT load."""
    start = JULY - timedelta(days=PRE_DAYS)
    twin = Twin(hall, start=start)
    steps = round((PRE_DAYS + POST_DAYS) * 86400 / twin.step_s)
    post = np.arange(steps) >= PRE_DAYS * 86400 // twin.step_s
    conventional = twin.params.default_setpoints
    improved = replace(conventional, chilled_water_c=14.0, supply_air_c=21.0)
    schedule = Setpoints(**{
        f: np.where(post, getattr(improved, f), getattr(conventional, f)).astype(float)
        for f in vars(conventional)
    })
    ts = twin.now_ms + np.arange(steps, dtype=np.int64) * twin.step_s * 1000
    # a counter reading at ts holds the energy of the step ending at ts: the hour [t1, t1 + 1 h)
    # of the frame is the steps sampled in (t1, t1 + 1 h]
    cond = twin.conditions(ts[post] + twin.step_s * 1000)
    h = twin.step_s / 3600.0
    true_kwh = float(np.sum(
        evaluate(cond, conventional, twin.params).facility_kw
        - evaluate(cond, improved, twin.params).facility_kw) * h)
    with Store() as store:
        for cols in twin.run(PRE_DAYS + POST_DAYS, setpoints=schedule):
            store.append(cols)
        t0, t1, t2 = (datetime_to_ms(t) for t in (start, JULY, JULY + timedelta(days=POST_DAYS)))
        pre_frame = build_frame(store, hall, t0, t1, step_s=3600, utility=True)
        post_frame = build_frame(store, hall, t1, t2, step_s=3600, utility=True)
        result = measure_savings(pre_frame, post_frame, "chw-reset")
        # no measure at all: the baseline's own last week as the "post-period"
        nothing = measure_savings(pre_frame, build_frame(
            store, hall, t1 - 7 * 86_400_000, t1, step_s=3600, utility=True), "nothing")
        record_savings(store, nothing)
        short = measure_savings(build_frame(store, hall, t1 - 5 * 86_400_000, t1, step_s=3600,
                                            utility=True), post_frame, "short-baseline")
        record_savings(store, short)
        record_savings(store, result)
        record_savings(store, result)  # idempotent per measure and window
        rows = recorded_savings(store)
        carbon = measured_savings(store, "AI cooling optimization", t1, t2)

    print(f"\ntrue {true_kwh:.0f} kWh, M&V {result.savings_kwh:.0f} +- {result.uncertainty_kwh:.0f}"
          f" kWh (formula {result.formula_uncertainty_kwh:.0f}, hold-out "
          f"{result.holdout_uncertainty_kwh:.0f}), {result.status}")
    # the counters cover every hour of both periods
    assert (pre_frame.dropped_rows, post_frame.dropped_rows) == (0, 0)
    assert len(post_frame) == POST_DAYS * 24
    assert 0.0 < result.uncertainty_kwh < 0.5 * true_kwh
    assert abs(result.savings_kwh - true_kwh) <= result.uncertainty_kwh
    assert result.cvrmse_pct < 5.0 and abs(result.nmbe_pct) < 0.01  # OLS: no in-sample bias
    # the site has a utility meter: whole-facility measure, IPMVP option C, all gates passed
    assert result.ipmvp_option == "C" and result.basis.startswith("utility meter")
    assert result.status == "reported" and all(result.gates.values())
    assert result.fsu_pct < 50.0
    assert ("chw-reset", result.start_ms, result.end_ms, result.savings_kwh,
            result.uncertainty_kwh, result.cvrmse_pct / 100, result.nmbe_pct / 100,
            "reported") in rows
    assert nothing.status == "not_significant" and "within its uncertainty" in nothing.reason
    assert abs(nothing.savings_kwh) <= nothing.uncertainty_kwh
    assert short.status == "rejected" and not short.gates["baseline_length"]
    assert "baseline 5.0 days, below 14" in short.reason
    # only the reported saving becomes avoided energy (the rejected one overlaps the window)
    assert carbon is not None
    assert carbon.value == np.float64(result.savings_kwh / 1000.0)
    assert [p.name for p in carbon.inputs] == ["chw-reset"]


def test_a_measure_that_raises_it_power_is_never_credited(hall: Site) -> None:
    """Issue 14: IT power rising 4 %/K above a 22 degC inlet (``InletSensitiveTwin``, declared),
    supply air 20 -> 24 and chilled water 10 -> 14 degC for a week after 21 conventional days.
    The truth, from the plant's own runs of the week with both schedules, is an energy
    increase: cooling falls but IT rises more. A baseline on metered IT credits a saving (the
    old M&V); on IT at the reference inlet, M&V reports the increase within its uncertainty."""
    from tests.optimizer.test_it_inlet import InletSensitiveTwin, TrueResponse

    response = TrueResponse(4.0, 22.0)
    plant = InletSensitiveTwin(hall, hall.twin.seed, response)
    start = JULY - timedelta(days=PRE_DAYS)
    t0, t1 = datetime_to_ms(start), datetime_to_ms(JULY)
    steps = (PRE_DAYS + POST_DAYS) * 1440
    post = np.arange(steps) >= PRE_DAYS * 1440
    conventional = {c: np.full(steps, v) for c, v in (
        ("supply_air_c", 20.0), ("chilled_water_c", 10.0), ("crah_fan_speed_pct", 80.0),
        ("pump_frequency_hz", 50.0), ("running_units", 8.0))}
    measure = conventional | {"supply_air_c": np.where(post, 24.0, 20.0),
                              "chilled_water_c": np.where(post, 14.0, 10.0)}
    week = {k: v[post] for k, v in conventional.items()}
    true_kwh = float(np.sum(plant.run(t1, week).facility_kw
                            - plant.run(t1, {k: v[post] for k, v in measure.items()}).facility_kw)
                     / 60.0)
    with Store() as store:
        for cols in plant.readings(t0, measure):
            store.append(cols)
        pre = build_frame(store, hall, t0, t1, step_s=3600, utility=True)
        after = build_frame(store, hall, t1, t1 + POST_DAYS * 86_400_000, step_s=3600,
                            utility=True)

    class Flat:
        def log_ratio(self, inlet_c, ref_c):
            return np.zeros(np.shape(inlet_c))

    metered = measure_savings(pre, after, "warm-hall", it_response=Flat())
    fair = measure_savings(pre, after, "warm-hall", it_response=response)
    assert true_kwh < 0
    assert metered.savings_kwh > 0  # the old baseline credits the IT rise as a saving
    assert fair.savings_kwh < 0 and abs(fair.savings_kwh - true_kwh) <= fair.uncertainty_kwh
    assert fair.it_ref_inlet_c == pytest.approx(21.9, abs=0.5)


def test_holdout_uncertainty_is_the_left_out_blocks_error() -> None:
    """Computed: :func:`holdout_uncertainty_kwh` for an intercept-only baseline (a constant
    regressor) of 12 hourly rows, 0 kW for 6 hours then 1 kW (a step the fit cannot follow),
    and a 3-row post-period. Declared (by hand): blocks of 3 rows, one every row (3 // 4 ->
    1), 10 blocks; a block's prediction is the mean of the 9 rows left in, its error
    3 x (mean left in - mean of the block); t at 90 % with 12 / 3 - 1 = 3 degrees of freedom
    is 2.353."""
    from dcpue.optimizer.mv import holdout_uncertainty_kwh

    y = np.r_[np.zeros(6), np.ones(6)]
    errors = []
    for s in range(10):  # by hand: ones left in over 9 rows, minus the block's ones
        ones_in_block = sum(1 for i in range(s, s + 3) if i >= 6)
        errors.append(3 * ((6 - ones_in_block) / 9 - ones_in_block / 3))
    rms = np.sqrt(np.mean(np.square(errors)))
    got, blocks = holdout_uncertainty_kwh(np.ones((12, 1)), y, 1.0, 3, 0.90)
    assert blocks == 10
    assert got == pytest.approx(2.353 * rms, rel=1e-3)


def test_a_post_period_more_humid_than_the_baseline_is_outside_its_range() -> None:
    """Computed: the range gate of :func:`measure_savings`. Declared: a baseline of 48 hourly
    rows whose dew point stays 0-8 degC and a post-period of 24 rows at 10-11 degC with IT,
    dry and wet bulb all inside the baseline's ranges (the coil's latent load, which neither
    bulb carries, is outside anything the baseline saw)."""
    from dcpue.optimizer.frames import TrainingFrame

    rng = np.random.default_rng(3)

    def frame(n: int, dew: tuple[float, float]) -> TrainingFrame:
        it = rng.uniform(800, 850, n)
        db, wb = rng.uniform(30, 40, n), rng.uniform(15, 20, n)
        data = pd.DataFrame({
            "it_kw": it, "dry_bulb_c": db, "wet_bulb_c": wb,
            "dew_point_c": rng.uniform(*dew, n), "rack_inlet_max_c": np.full(n, 21.0),
            "facility_kw": 1.3 * it + 2 * wb, "cooling_kw": 0.3 * it + 2 * wb,
        }, index=pd.Index(3_600_000 * np.arange(n), name="ts_ms"))
        return TrainingFrame(data, 3600, n, 0)

    pre, post = frame(48, (0.0, 8.0)), frame(24, (10.0, 11.0))
    result = measure_savings(pre, post, "humid")
    assert not result.gates["post_in_baseline_range"]
    assert "100.0 % of post-period rows outside" in result.reason and "dew point" in result.reason
    # the baseline's own rows as the post-period: every condition inside its range
    same = TrainingFrame(pre.data.iloc[:24], 3600, 24, 0)
    assert measure_savings(pre, same, "same").gates["post_in_baseline_range"]
