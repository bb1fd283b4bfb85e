"""The columnar normaliser agrees with the scalar one on every row, whatever the input.

Computed: :func:`normalise_columns` and :func:`normalise` over the same random rows. Declared:
the test site and the receive time. Equal accepted readings (same timestamp, meter, value,
unit) and the same rejection reasons prove there is one rule, applied two ways.
"""

from __future__ import annotations

import numpy as np
from dcpue.collector.normalise import MeterIndex, Rejected, normalise, normalise_columns
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.collector.conftest import make_site
from tests.collector.test_fuzz import NOW_MS

INDEX = MeterIndex(make_site())
rows = st.lists(st.tuples(
    st.sampled_from(["grid", "it", "pdu-1", "oat", "ghost", ""]),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
        [0.0, -0.5, 1.5, 99.0, 101.0, 1e6, -1e-9, 250.0, 2e5])),
    st.sampled_from([None, "", "kW", "W", "MW", "kWh", "Wh", "MWh", "degF", "K", "degC", "x"]),
    st.one_of(st.integers(min_value=NOW_MS - 10**12, max_value=NOW_MS + 10**9),
              st.sampled_from([NOW_MS, NOW_MS + 300_000, NOW_MS + 300_001]))),
    max_size=40)


def scalar(row):
    meter, value, unit, ts = row
    try:
        r = normalise(INDEX, meter, value, unit or None, ts, NOW_MS)
        return ("ok", r.ts_ms, r.meter, r.value, r.unit)
    except Rejected as exc:
        return ("rejected", exc.reason)


@settings(max_examples=300, deadline=None)
@given(rows, st.booleans())
def test_columns_agree_with_the_scalar_rule(batch, with_units) -> None:
    meter = np.array([r[0] for r in batch], dtype=object)
    value = np.array([r[1] for r in batch], dtype=np.float64)
    unit = np.array([r[2] for r in batch], dtype=object) if with_units else None
    ts = np.array([r[3] for r in batch], dtype=np.int64)
    accepted, rejected = normalise_columns(INDEX, meter, value, unit, ts, NOW_MS)
    expected = [scalar((m, v, u if with_units else None, t)) for m, v, u, t in batch]
    got_ok = sorted(zip(["ok"] * len(accepted), accepted.ts_ms.tolist(), accepted.meter.tolist(),
                        accepted.value.tolist(), accepted.unit.tolist(), strict=True))
    assert got_ok == sorted(e for e in expected if e[0] == "ok")
    assert [("rejected", exc.reason) for _, exc in rejected] == [
        e for e in expected if e[0] == "rejected"]
    assert all(m is INDEX.columns.ids[list(INDEX.specs).index(m)] for m in accepted.meter)
