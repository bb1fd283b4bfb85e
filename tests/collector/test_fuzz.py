"""Property and corpus tests: no payload can crash the decoder, lose a neighbour or wedge the store.

Computed: what :class:`PayloadDecoder` makes of random and hostile payloads. Declared: the
test site (``conftest.make_site``), the receive time and the validation window (defaults:
300 s future skew, 3,660 days back). Every accepted reading must be storable (int64 ms
inside the window, finite float64 in the quantity's range) and each item of a batch must
give exactly one outcome, a reading or a dead letter.
"""

from __future__ import annotations

import json
import math
import time

import pytest
from dcpue.collector.normalise import MeterIndex, Rejected, parse_timestamp
from dcpue.collector.payloads import PayloadDecoder
from dcpue.config.collector import Subscription
from dcpue.core.readings import Reading
from dcpue.core.store import Store
from dcpue.core.units import SANITY_RANGES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.collector.conftest import make_site

NOW_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z, the receive time of every payload
INT64 = 2**63
SITE = make_site()
INDEX = MeterIndex(SITE)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from([
        "1.5", "NaN", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
        "2024-01-01T00:00:00", "2024-03-31T02:30:00", "2023-12-31T23:59:00Z", "\ud800", "\x00",
        "grid", "it", "pdu-1", "oat", "kW", "W", "MWh", "degF", "1e19",
    ]),
)
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["meter", "value", "unit", "ts", "readings", "x"]) | st.text(max_size=5),
        kids, max_size=5,
    ),
    max_leaves=20,
)
valid_items = st.builds(
    lambda meter, value, offset: {"meter": meter, "value": value, "ts": NOW_MS - offset},
    st.sampled_from(["grid", "it", "pdu-1", "oat"]),
    st.floats(min_value=0, max_value=99, allow_nan=False),
    st.integers(min_value=0, max_value=10**9),
)


def decoder(fmt: str = "batch", max_bytes: int = 1 << 20, **sub) -> PayloadDecoder:
    return PayloadDecoder(INDEX, Subscription(topic="t/#", format=fmt, **sub), max_bytes)


def dumps(document: object) -> bytes:
    return json.dumps(document, allow_nan=True).encode("utf-8", errors="surrogatepass")


def assert_storable(readings: list[Reading]) -> None:
    for r in readings:
        assert type(r.ts_ms) is int and -INT64 <= r.ts_ms < INT64
        assert NOW_MS - INDEX.max_age_ms <= r.ts_ms <= NOW_MS + INDEX.max_skew_ms
        assert type(r.value) is float and math.isfinite(r.value)
        spec = INDEX.specs[r.meter]
        assert (r.quantity, r.unit) == (spec.quantity, spec.canonical)
        low, high = SANITY_RANGES[r.quantity]
        assert low <= r.value <= high


def assert_letters_storable(letters) -> None:
    for d in letters:
        d.detail.encode("utf-8")
        assert d.raw is None or isinstance(d.raw, bytes)
        assert len(d.detail) <= 500


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_decode_without_raising(payload: bytes) -> None:
    for fmt in ("batch", "reading"):
        readings, letters = decoder(fmt).decode(payload, "t/x", NOW_MS)
        assert_storable(readings)
        assert_letters_storable(letters)
        assert readings or letters


@FUZZ
@given(json_values)
def test_any_json_document_decodes_in_every_format(document: object) -> None:
    payload = dumps(document)
    gateway = decoder("gateway", paths={"it": "$.value", "oat": "$.readings[0].value"},
                      ts_path="$.ts")
    for dec in (decoder("batch"), decoder("reading"), gateway):
        readings, letters = dec.decode(payload, "t/x", NOW_MS)
        assert_storable(readings)
        assert_letters_storable(letters)


@FUZZ
@given(st.lists(st.tuples(st.booleans(), valid_items, json_values), max_size=12))
def test_valid_readings_beside_bad_ones_are_kept(mix) -> None:
    """Each array item gives exactly one outcome; every valid item becomes its reading."""
    items = [good if keep else junk for keep, good, junk in mix]
    readings, letters = decoder().decode(dumps(items), "t/x", NOW_MS)
    assert len(readings) + len(letters) == len(items)
    assert_storable(readings)
    got = [(r.meter, r.ts_ms, r.value) for r in readings]
    expected = [(g["meter"], g["ts"], float(g["value"])) for keep, g, _ in mix if keep]
    it = iter(got)
    assert all(e in it for e in expected), "valid items lost or reordered"


@FUZZ
@given(st.one_of(
    scalars, json_values,
    st.integers(min_value=-(10**500), max_value=10**500),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.floats(),
))
def test_parse_timestamp_raises_only_rejected_and_returns_int64(raw: object) -> None:
    try:
        ts = parse_timestamp(raw, decoder().local, "t/x")
    except Rejected:
        return
    assert type(ts) is int and -INT64 <= ts < INT64


NASTIES: list[tuple[str, bytes]] = [
    ("deep array", b"[" * 100_000 + b"]" * 100_000),
    ("deep object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    ("deep item", b'[{"meter":"it","value":1},' + b"[" * 500 + b"]" * 500 + b"]"),
    ("too deep item", b'[{"meter":"it","value":1},' + b"[" * 5000 + b"]" * 5000 + b"]"),
    ("invalid utf-8", b'[{"meter":"it","value":1,"unit":"\xff\xfe"}]'),
    ("lone surrogate", b'[{"meter":"\\ud800","value":1},{"meter":"it","value":1}]'),
    ("duplicate keys", b'{"meter":"it","value":1,"value":2,"meter":"grid"}'),
    ("nan infinity", b'[{"meter":"it","value":NaN},{"meter":"it","value":-Infinity},'
                     b'{"meter":"it","value":3}]'),
    ("strings for numbers", b'[{"meter":"it","value":"1.5"},{"meter":"it","value":"1e3"}]'),
    ("400-digit value", b'[{"meter":"it","value":' + b"9" * 400 + b'},{"meter":"it","value":2}]'),
    ("5000-digit value", b'[{"meter":"it","value":' + b"9" * 5000 + b'},{"meter":"it","value":2}]'),
    ("5000-digit ts", b'[{"meter":"it","value":1,"ts":' + b"9" * 5000 + b'},{"meter":"it","value":2}]'),
    ("ts 1e19", b'[{"meter":"it","value":1,"ts":1e19},{"meter":"it","value":2}]'),
    ("ts year 1", b'[{"meter":"it","value":1,"ts":"0001-01-01T00:00:00+14:00"}]'),
    ("ts year 9999", b'[{"meter":"it","value":1,"ts":"9999-12-31T23:59:59-14:00"}]'),
    ("ts negative", b'[{"meter":"it","value":1,"ts":-1}]'),
    ("ts nanoseconds", b'[{"meter":"it","value":1,"ts":1704067200000000000}]'),
    ("ts future", b'[{"meter":"it","value":1,"ts":1735689600000}]'),
    ("huge exponent", b'[{"meter":"it","value":1e999999},{"meter":"it","value":-0.0}]'),
    ("value beyond range", b'[{"meter":"pdu-1","value":9e9,"unit":"W"},{"meter":"oat","value":1e6}]'),
    ("wrong types", b'[{"meter":["it"],"value":1},{"meter":"it","value":{"a":1}},'
                    b'{"meter":"it","value":1,"unit":{}},{"meter":"it","value":1,"ts":[1]}]'),
    ("null bytes", b'\x00\x00[{"meter":"it","value":1}]'),
    ("empty", b""),
    ("bom", b'\xef\xbb\xbf[{"meter":"it","value":1}]'),
    ("long meter id", b'[{"meter":"' + b"m" * 500_000 + b'","value":1}]'),
]


@pytest.mark.parametrize("fmt", ["batch", "reading"])
def test_corpus_of_nasties_decodes_and_stores(tmp_path, fmt) -> None:
    """Each nasty payload gives readings and dead letters that a real DuckDB store takes."""
    readings: list[Reading] = []
    letters = []
    for name, payload in NASTIES:
        got, bad = decoder(fmt).decode(payload, "t/x", NOW_MS)
        assert got or bad, name
        assert_storable(got)
        assert_letters_storable(bad)
        readings += got
        letters += bad
    with Store(tmp_path / "s.duckdb") as store:
        store.append(readings)
        store.add_dead_letters(letters)
        assert store.count() == len({(r.meter, r.quantity, r.ts_ms) for r in readings})


def test_nasties_keep_their_valid_neighbours() -> None:
    by_name = dict(NASTIES)

    def outcome(name):
        readings, letters = decoder().decode(by_name[name], "t/x", NOW_MS)
        return [(r.meter, r.value) for r in readings], [d.reason for d in letters]

    assert outcome("deep array") == ([], ["too_deep"])
    assert outcome("deep item") == ([("it", 1.0)], ["bad_shape"])
    # beyond the parser's depth the payload cannot be read at all: one letter, raw bytes kept
    assert outcome("too deep item") == ([], ["too_deep"])
    assert outcome("invalid utf-8") == ([], ["bad_json"])
    assert outcome("lone surrogate") == ([("it", 1.0)], ["unknown_meter"])
    assert outcome("nan infinity") == ([("it", 3.0)], ["nan", "nan"])
    assert outcome("strings for numbers") == ([], ["bad_type", "bad_type"])
    assert outcome("400-digit value") == ([("it", 2.0)], ["out_of_range"])
    assert outcome("5000-digit value") == ([("it", 2.0)], ["nan"])
    assert outcome("5000-digit ts") == ([("it", 2.0)], ["bad_timestamp"])
    assert outcome("ts 1e19") == ([("it", 2.0)], ["bad_timestamp"])
    assert outcome("ts year 1") == ([], ["stale_timestamp"])
    assert outcome("ts year 9999") == ([], ["future_timestamp"])
    assert outcome("ts nanoseconds") == ([], ["bad_timestamp"])
    assert outcome("ts future") == ([], ["future_timestamp"])
    assert outcome("value beyond range") == ([], ["above_ceiling", "out_of_range"])
    assert outcome("wrong types")[1] == [
        "unknown_meter", "bad_type", "bad_unit", "bad_timestamp"]
    readings, _ = decoder("reading").decode(by_name["duplicate keys"], "t/x", NOW_MS)
    assert [(r.meter, r.value) for r in readings] == [("grid", 2.0)]  # the last key wins


def test_ten_megabyte_payloads() -> None:
    """Above the limit: one ``oversized`` letter, unparsed. Under a raised limit: all kept."""
    item = b'{"meter":"oat","value":1.5},'
    payload = b"[" + item * (10_000_000 // len(item)) + b'{"meter":"oat","value":2}]'
    readings, letters = decoder().decode(payload, "t/x", NOW_MS)
    assert (readings, [d.reason for d in letters]) == ([], ["oversized"])
    assert len(letters[0].raw) == 4096
    started = time.process_time()
    readings, letters = decoder(max_bytes=len(payload)).decode(payload, "t/x", NOW_MS)
    assert letters == [] and len(readings) == 10_000_000 // len(item) + 1
    assert len({r.ts_ms for r in readings}) == len(readings)  # receive clock: distinct stamps
    assert time.process_time() - started < 30
