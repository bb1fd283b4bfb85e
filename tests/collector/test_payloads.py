"""Payload decoding: formats, unit conversion, timestamps and per-item dead letters."""

import json

import pytest
from dcpue.collector.normalise import MeterIndex
from dcpue.collector.payloads import OVERSIZED_KEEP_BYTES, PayloadDecoder
from dcpue.config import ConfigError
from dcpue.config.collector import Subscription
from dcpue.core.readings import Reading

from tests.collector.conftest import T0_MS, make_site

RECEIVED = T0_MS + 999


def decoder(fmt="batch", max_bytes=10_000, **sub):
    return PayloadDecoder(
        MeterIndex(make_site()), Subscription(topic="t/#", format=fmt, **sub), max_bytes
    )


def decode(payload, **kw):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decoder(**kw).decode(raw, "t/x", RECEIVED)


def test_single_reading_with_unit_conversion_and_receive_time():
    readings, letters = decode({"meter": "pdu-1", "value": 1500, "unit": "W"}, fmt="reading")
    assert letters == []
    assert readings == [Reading(RECEIVED, "pdu-1", "power", 1.5, "kW")]


@pytest.mark.parametrize(
    ("ts", "expected_ms"),
    [
        (1_704_067_200, T0_MS),  # epoch seconds
        (1_704_067_200_500, T0_MS + 500),  # epoch milliseconds
        (1_704_067_200.25, T0_MS + 250),  # fractional seconds
        ("2024-01-01T01:00:00+01:00", T0_MS),  # ISO 8601 with offset -> UTC
        ("2024-01-01T00:00:00Z", T0_MS),
    ],
)
def test_device_timestamps_become_utc_ms(ts, expected_ms):
    readings, _ = decode({"meter": "oat", "value": 5, "ts": ts}, fmt="reading")
    assert readings[0].ts_ms == expected_ms


def test_batch_array_converts_each_item_to_its_canonical_unit():
    readings, letters = decode([
        {"meter": "grid", "value": 2, "unit": "MWh", "ts": T0_MS},
        {"meter": "oat", "value": 212, "unit": "degF", "ts": T0_MS},
        {"meter": "oat", "value": 50, "unit": "°F", "ts": T0_MS + 1},
        {"meter": "it", "value": 1234.5, "ts": T0_MS},
    ])
    assert letters == []
    assert [(r.meter, r.value, r.unit) for r in readings] == [
        ("grid", 2000.0, "kWh"), ("oat", 100.0, "degC"), ("oat", 10.0, "degC"),
        ("it", 1234.5, "kWh"),
    ]


def test_readings_object_top_level_ts_is_the_default():
    readings, _ = decode({"ts": T0_MS, "readings": [
        {"meter": "it", "value": 1.0}, {"meter": "grid", "value": 2.0, "ts": T0_MS + 60_000},
    ]})
    assert [(r.meter, r.ts_ms) for r in readings] == [("it", T0_MS), ("grid", T0_MS + 60_000)]


def test_map_batch_with_plain_and_object_values():
    readings, letters = decode(
        {"ts": "2024-01-01T00:00:00Z", "it": 10.25, "pdu-1": {"value": 20000, "unit": "W"}}
    )
    assert letters == []
    assert readings == [
        Reading(T0_MS, "it", "energy", 10.25, "kWh"),
        Reading(T0_MS, "pdu-1", "power", 20.0, "kW"),
    ]


def test_one_bad_item_never_drops_its_neighbours():
    readings, letters = decode(
        b'[{"meter":"it","value":1},{"meter":"ghost","value":2},{"meter":"it","value":NaN,"ts":5},'
        b'{"meter":"grid","value":"3"},{"meter":"pdu-1","value":250},{"meter":"grid","value":-1},'
        b'{"value":4},7,{"meter":"oat","value":1,"ts":"2024-01-01T00:10:00Z"},'
        b'{"meter":"oat","value":1,"unit":"kW"},{"meter":"oat","value":1e400},'
        b'{"meter":"oat","value":1' + b"0" * 400 + b'},{"meter":"oat","value":true},'
        b'{"meter":"oat","value":1,"ts":"0001-01-01T00:00:00+14:00"},'
        b'{"meter":"oat","value":1,"ts":1e19},{"meter":"grid","value":9}]'
    )
    assert [(r.meter, r.value) for r in readings] == [("it", 1.0), ("grid", 9.0)]
    assert [d.reason for d in letters] == [
        "unknown_meter", "nan", "bad_type", "above_ceiling", "negative_counter",
        "missing_field", "bad_shape", "future_timestamp", "bad_unit", "nan", "out_of_range",
        "bad_type", "stale_timestamp", "bad_timestamp",
    ]
    assert all(d.origin == "t/x" and d.source == "mqtt" for d in letters)
    assert all(d.received_ms == RECEIVED for d in letters)
    assert json.loads(letters[0].raw) == {"meter": "ghost", "value": 2}


@pytest.mark.parametrize(
    ("payload", "fmt", "reason"),
    [
        (b"{not json", "batch", "bad_json"),
        (b"\xff\xfe", "batch", "bad_json"),
        (b'"text"', "batch", "bad_shape"),
        (b'{"readings": 5}', "batch", "bad_shape"),
        (b"[1, 2]", "reading", "bad_shape"),
        (b'{"ts": "yesterday", "it": 1}', "batch", "bad_timestamp"),
    ],
)
def test_unreadable_payloads_become_one_dead_letter_with_raw_bytes(payload, fmt, reason):
    readings, letters = decode(payload, fmt=fmt)
    assert readings == []
    assert [(d.reason, d.raw) for d in letters] == [(reason, payload)]


def test_oversized_payload_is_refused_unparsed_and_truncated():
    payload = json.dumps([{"meter": "it", "value": 1.0}] * 2000).encode()
    readings, letters = decode(payload, max_bytes=len(payload) - 1)
    assert readings == []
    assert letters[0].reason == "oversized"
    assert letters[0].raw == payload[:OVERSIZED_KEEP_BYTES]
    readings, letters = decode(payload, max_bytes=len(payload))
    assert (len(readings), letters) == (2000, [])


def test_gateway_mapping_reads_arbitrary_json_by_path():
    sub = {
        "paths": {"pdu-1": "$.data.pdu[2].kw", "oat": "$.env['outdoor air'].f", "it": "$.x.y"},
        "units": {"oat": "degF"},
        "ts_path": "$.time",
    }
    doc = {
        "time": "2024-01-01T00:00:00Z",
        "data": {"pdu": [{"kw": 1}, {"kw": 2}, {"kw": 42.5}]},
        "env": {"outdoor air": {"f": 41}},
    }
    readings, letters = decode(doc, fmt="gateway", **sub)
    assert readings == [
        Reading(T0_MS, "pdu-1", "power", 42.5, "kW"),
        Reading(T0_MS, "oat", "temperature", 5.0, "degC"),
    ]
    assert [(d.reason, json.loads(d.raw)) for d in letters] == [
        ("path_not_found", {"meter": "it", "path": "$.x.y"})
    ]
    _, letters = decode({"data": {}}, fmt="gateway", **sub)
    assert [d.reason for d in letters] == ["path_not_found"]


def test_gateway_config_is_checked():
    with pytest.raises(ValueError, match="paths are required"):
        Subscription(topic="t", format="gateway")
    with pytest.raises(ValueError, match="cannot parse"):
        Subscription(topic="t", format="gateway", paths={"it": "$.a[x]"})
    with pytest.raises(ValueError, match="without a path"):
        Subscription(topic="t", format="gateway", paths={"it": "$.a"}, units={"oat": "degF"})
    with pytest.raises(ConfigError, match=r"mqtt\.subscriptions\[0\]\.topic"):
        make_site({"mqtt": {"subscriptions": [{"topic": "$share/g/t"}]}})


def test_backoff_bounds_are_checked():
    with pytest.raises(ConfigError, match=r"reconnect_min_s \(5.0 s\) exceeds reconnect_max_s"):
        make_site({"mqtt": {"reconnect_min_s": 5, "reconnect_max_s": 1}})
    with pytest.raises(ConfigError, match="retry_min_s"):
        make_site({"remote": {"retry_min_s": 5, "retry_max_s": 1}})
