"""M&V on twin data with a known injected saving, and the table the carbon calculator reads."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
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
        pre_frame = build_frame(store, hall, t0, t1, step_s=3600)
        post_frame = build_frame(store, hall, t1, t2, step_s=3600)
        result = measure_savings(pre_frame, post_frame, "chw-reset", confidence=0.90)
        record_savings(store, result)
        record_savings(store, result)  # idempotent per measure and window
        rows = recorded_savings(store)
        carbon = measured_savings(store, "AI cooling optimization", t1, t2)

    # the counters cover every hour of both periods
    assert (pre_frame.dropped_rows, post_frame.dropped_rows) == (0, 0)
    assert len(post_frame) == POST_DAYS * 24
    assert 0.0 < result.uncertainty_kwh < 0.5 * true_kwh
    assert abs(result.savings_kwh - true_kwh) <= result.uncertainty_kwh
    assert result.cvrmse_pct < 5.0 and abs(result.nmbe_pct) < 0.01  # OLS: no in-sample bias
    assert rows == [("chw-reset", result.start_ms, result.end_ms, result.savings_kwh,
                     result.uncertainty_kwh, result.cvrmse_pct / 100, result.nmbe_pct / 100)]
    assert carbon is not None
    assert carbon.value == np.float64(result.savings_kwh / 1000.0)
