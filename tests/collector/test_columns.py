"""The columnar normaliser agrees with the scalar one on every row, whatever the input.

Computed: :func:`normalise_columns` and :func:`normalise` over the same random rows. Declared:
the test site and the receive time. Equal accepted readings (same timestamp, meter, value,
unit) and the same rejection reasons prove there is one rule, applied two ways.
"""

from __future__ import annotations

import json

import numpy as np
from dcpue.collector.normalise import MeterIndex, Rejected, normalise, normalise_columns
from dcpue.collector.payloads import PayloadDecoder
from dcpue.config.collector import Subscription
from dcpue.core.readings import ReadingColumns
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.collector.conftest import make_site
from tests.collector.test_fuzz import NOW_MS, assert_storable, json_values

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


@settings(max_examples=150, deadline=None)
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


clean_items = st.builds(
    lambda meter, value, ts, unit: {"meter": meter, "value": value, "ts": ts}
    | ({} if unit is None else {"unit": unit}),
    st.sampled_from(["grid", "it", "pdu-1", "oat", "ghost"]),
    st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**6)),
    st.one_of(st.integers(NOW_MS - 10**12, NOW_MS + 10**9), st.integers(1, 10**10)),
    st.sampled_from([None, "W", "kW", "kWh", "degF", "x"]),
)


def as_rows(columns) -> list[tuple]:
    return sorted(zip(columns.ts_ms.tolist(), columns.meter.tolist(), columns.value.tolist(),
                      columns.unit.tolist(), strict=True))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(clean_items, json_values), max_size=20), st.booleans())
def test_columnar_decode_equals_the_per_item_decode(items, wrapped) -> None:
    """Clean batches take the NumPy path, others the per-item path: the outcome is the same."""
    site = make_site()  # one fresh index (and receive clock) per decoder
    one, two = (PayloadDecoder(MeterIndex(site), Subscription(topic="t"), 1 << 20)
                for _ in range(2))
    payload = json.dumps({"readings": items} if wrapped else items).encode()
    readings, letters = one.decode(payload, "t", NOW_MS)
    columns, column_letters = two.decode_columns(payload, "t", NOW_MS)
    assert as_rows(columns) == as_rows(ReadingColumns.from_readings(readings))
    assert sorted(d.reason for d in column_letters) == sorted(d.reason for d in letters)
    assert_storable(columns.to_readings())
