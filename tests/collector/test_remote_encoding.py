"""Line protocol encoding for the remote sink."""

import numpy as np
from dcpue.collector.remote import LineEncoder, meter_roles
from dcpue.core.readings import ReadingColumns

from tests.collector.conftest import T0_MS, make_site


def test_lines_carry_site_meter_role_tags_quantity_field_and_ms_timestamp():
    site = make_site()
    encoder = LineEncoder(site.id, meter_roles(site))
    cols = ReadingColumns(
        np.array([T0_MS, T0_MS + 1, T0_MS + 2, T0_MS + 3]),
        np.array(["it", "metric.pue.1h", "odd meter,x=y", "pdu-1"], dtype=object),
        np.array(["energy", "pue", "power", "power"], dtype=object),
        np.array([1234.5, 1.279, 0.1, float("nan")]),
        np.array(["kWh", "1", "kW", "kW"], dtype=object),
    )
    body, skipped = encoder.encode(cols)
    assert skipped == 1
    assert body.split("\n") == [
        f"dcpue,meter=it,role=it_load,site=test-site energy=1234.5 {T0_MS}",
        f"dcpue,meter=metric.pue.1h,role=metric,site=test-site pue=1.279 {T0_MS + 1}",
        f"dcpue,meter=odd\\ meter\\,x\\=y,role=unknown,site=test-site power=0.1 {T0_MS + 2}",
    ]


def test_values_keep_every_digit():
    encoder = LineEncoder("s", {}, "m")
    value = 0.1 + 0.2  # 0.30000000000000004
    body, _ = encoder.encode(ReadingColumns.series("x", "power", "kW", np.array([1]), np.array([value])))
    assert float(body.split(" ")[1].split("=")[1]) == value
