"""Settling: how many frame rows a response takes to follow a lever change, learned from the
step responses of a sweep, and which rows are settled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dcpue.optimizer.frames import response_lag, settled_rows
from dcpue.optimizer.models import PlantModel

STEP_S = 900


def _sweep(lag: int, rows: int = 400, seed: int = 1) -> pd.DataFrame:
    """Two levers held 2 rows each at uniform draws (supply air 18-27, chilled water 7-20
    degC); declared: the inlet is 1.1 K above supply air plus 0.05 x chilled water, shown
    ``lag`` rows after the setpoints, plus 0.05 K noise."""
    rng = np.random.default_rng(seed)
    sa = np.repeat(rng.uniform(18, 27, rows // 2), 2)
    chw = np.repeat(rng.uniform(7, 20, rows // 2), 2)
    steady = sa + 1.1 + 0.05 * chw
    inlet = np.concatenate([np.full(lag, steady[0]), steady[: rows - lag]])
    inlet = inlet + rng.normal(0, 0.05, rows)
    ts = 1_688_169_600_000 + np.arange(rows, dtype=np.int64) * STEP_S * 1000
    return pd.DataFrame({"supply_air_c": sa, "chilled_water_c": chw, "crah_fan_speed_pct": 80.0,
                         "rack_inlet_max_c": inlet}, index=pd.Index(ts, name="ts_ms"))


@pytest.mark.parametrize("lag", [0, 1, 2])
def test_response_lag_is_learned_from_the_step_responses(lag: int) -> None:
    """Computed: the lag from the sweep's data. Declared: the lag the sweep was built with."""
    assert response_lag(_sweep(lag), STEP_S) == lag


def test_too_few_changes_give_no_lag() -> None:
    assert response_lag(_sweep(1, rows=40), STEP_S) == 0


def test_settled_rows() -> None:
    """Hand-worked: supply air 20, 20, 22, 22, 22, [gap], 23, 24, 24; chilled water constant.
    Changes at rows 2 and 7 (row 6 follows a gap: counted settled). Lag 1 marks rows 2 and 7
    unsettled, lag 2 also rows 3 and 8; lag 0 none."""
    ts = np.array([0, 1, 2, 3, 4, 6, 7, 8], dtype=np.int64) * STEP_S * 1000
    data = pd.DataFrame({"supply_air_c": [20, 20, 22, 22, 22, 23, 24, 24.0],
                         "chilled_water_c": 10.0, "supply_air_c@crah-2": 20.0,
                         "rack_inlet_max_c": 21.0}, index=ts)
    assert settled_rows(data, STEP_S, 0).all()
    assert list(settled_rows(data, STEP_S, 1)) == [1, 1, 0, 1, 1, 1, 0, 1]
    assert list(settled_rows(data, STEP_S, 2)) == [1, 1, 0, 0, 1, 1, 0, 0]
    # an instance column is a lever too
    data.iloc[4, 2] = 21.0
    assert list(settled_rows(data, STEP_S, 1)) == [1, 1, 0, 1, 0, 1, 0, 1]


def test_the_twin_settles_within_a_row(july_model: PlantModel) -> None:
    """The native twin's rack inlet follows its setpoints within the 15-min row: no row is
    dropped for settling."""
    assert july_model.settling_rows == 0
