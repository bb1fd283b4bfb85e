"""The MQTT source against a real Mosquitto: bad input, persistent sessions, shared subscriptions."""

from __future__ import annotations

import asyncio
import json
import random

import aiomqtt
import pytest
from dcpue.collector.gateway_mqtt import publish_readings
from dcpue.collector.normalise import MeterIndex
from dcpue.collector.payloads import PayloadDecoder
from dcpue.collector.service import Collector
from dcpue.config import ConfigError
from dcpue.config.collector import Subscription
from dcpue.core.store import Store

from tests.collector.conftest import T0_MS, make_site, wait_until
from tests.collector.helpers import as_map, collector_site, once, stored, stream


async def publish_raw(port: int, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


def malformed_stream() -> tuple[list[tuple[str, bytes]], dict, dict[str, int]]:
    """100 messages, 10 of them bad: what to publish, the valid readings, dead letters by reason."""
    good = stream(0, 90)
    messages: list[tuple[str, bytes]] = []
    for i in range(90):  # one batch message per minute, four readings each
        batch = [{"meter": r.meter, "value": r.value, "ts": r.ts_ms} for r in good[4 * i: 4 * i + 4]]
        messages.append(("dcpue/test-site/batch", json.dumps(batch).encode()))
    bad = [
        ("dcpue/test-site/batch", b'[{"meter": "it", "value": 1,'),  # truncated JSON
        ("dcpue/test-site/batch", b"\x00\x01binary"),
        ("dcpue/test-site/batch", b'[{"meter": "ghost", "value": 1}]'),
        ("dcpue/test-site/batch", b'{"ts": 1704067200, "unknown-meter": 3}'),
        ("dcpue/test-site/batch", b'[{"meter": "it", "value": NaN, "ts": 1704067200}]'),
        ("dcpue/test-site/batch", b'[{"meter": "oat", "value": Infinity}]'),
        ("dcpue/test-site/batch", b'[{"meter": "it", "value": "12.5"}]'),
        ("dcpue/test-site/batch", b'[{"meter": "it", "value": true}]'),
        ("dcpue/test-site/batch", json.dumps([{"meter": "it", "value": 1.0}] * 200).encode()),
        ("dcpue/test-site/batch", b" " * 5000),
    ]
    for k, message in enumerate(bad):  # spread through the stream
        messages.insert(10 * k + 5, message)
    reasons = {"bad_json": 2, "unknown_meter": 2, "nan": 2, "bad_type": 2, "oversized": 2}
    return messages, as_map(good), reasons


async def test_ten_percent_malformed_loses_no_valid_reading_and_keeps_every_bad_one(mosquitto):
    messages, expected, reasons = malformed_stream()
    site = collector_site(mosquitto.port, max_payload_bytes=4096)
    store = Store()
    async with Collector(site, store) as collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "connection")
        await publish_raw(mosquitto.port, messages)
        await wait_until(lambda: collector.stats().mqtt_messages == 100, "all messages")
    assert {k: v[0] for k, v in stored(store).items()} == expected
    assert store.count() == len(expected) == 360
    assert store.dead_letter_counts() == reasons
    assert collector.stats().dead_letters == reasons
    letters = store.dead_letters(limit=100)
    assert {d.origin for d in letters} == {"dcpue/test-site/batch"}
    raw = {d.raw for d in letters}
    assert b"\x00\x01binary" in raw and b'{"meter":"ghost","value":1}' in raw
    assert b" " * 4096 in raw  # oversized payloads keep their first 4 KiB


def test_gateway_paths_must_name_site_meters():
    with pytest.raises(ConfigError, match="unknown meters ghost"):
        Collector(collector_site(1, subscriptions=[
            {"topic": "gw", "format": "gateway", "paths": {"ghost": "$.x"}}
        ]), Store())


async def test_messages_for_a_dropped_subscription_are_dead_lettered_as_unrouted(mosquitto):
    """A persistent session remembers old subscriptions; their messages are kept, not lost."""
    store = Store()
    old = collector_site(mosquitto.port, subscriptions=[{"topic": "old/#"}])
    async with Collector(old, store) as collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "connection")
    await publish_raw(mosquitto.port, [("old/x", b'{"it": 1}')])
    async with Collector(collector_site(mosquitto.port), store) as collector:
        await wait_until(lambda: collector.stats().mqtt_messages == 1, "queued message")
    assert [(d.reason, d.origin, d.raw) for d in store.dead_letters()] == [
        ("unrouted", "old/x", b'{"it": 1}')
    ]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_readings_published_while_down_arrive_after_reconnect(mosquitto, protocol):
    site = collector_site(mosquitto.port, protocol=protocol)
    before, offline, after_restart = stream(0, 10), stream(10, 60), stream(60, 70)
    store = Store()
    async with Collector(site, store) as collector:  # creates the persistent session
        await wait_until(lambda: collector.stats().mqtt_connected, "connection")
        await publish_readings(site, [before], "127.0.0.1", mosquitto.port)
        await wait_until(lambda: store.count() == len(before), "online readings")
    await publish_readings(site, [offline], "127.0.0.1", mosquitto.port, batch_size=20)
    await asyncio.to_thread(mosquitto.restart)  # the queue survives a broker restart too
    await publish_readings(site, [after_restart], "127.0.0.1", mosquitto.port)
    async with Collector(site, store):
        await wait_until(lambda: store.count() == 280, "queued readings")
    assert stored(store) == once(before + offline + after_restart)


async def test_shared_subscription_splits_messages_between_collectors(mosquitto):
    readings = stream(0, 100)
    sites = [
        collector_site(mosquitto.port, client_id=f"member-{n}", shared_group="g") for n in (1, 2)
    ]
    stores = [Store(), Store()]
    async with Collector(sites[0], stores[0]) as one, Collector(sites[1], stores[1]) as two:
        await wait_until(
            lambda: one.stats().mqtt_connected and two.stats().mqtt_connected, "both subscribed"
        )
        await publish_readings(sites[0], [readings], "127.0.0.1", mosquitto.port, batch_size=8)
        await wait_until(lambda: stores[0].count() + stores[1].count() == 400, "all readings")
    parts = [stored(s) for s in stores]
    assert parts[0] and parts[1]  # both members took a share
    assert not set(parts[0]) & set(parts[1])  # no reading went to both
    assert parts[0] | parts[1] == once(readings)


async def test_a_dead_letter_flood_does_not_keep_valid_readings_out(mosquitto):
    """20 messages of 15,000 unknown-meter items each (300,000 dead letters) between valid
    batches: every valid reading is stored and acknowledged; the flood is counted in full
    but kept as at most 100 letters per minute plus one aggregate row per minute."""
    site = collector_site(mosquitto.port)
    good = stream(0, 160)  # 640 readings
    flood = json.dumps([{"meter": f"ghost-{i}", "value": 1.0} for i in range(15_000)]).encode()
    messages = []
    for k in range(20):
        batch = [{"meter": r.meter, "value": r.value, "ts": r.ts_ms} for r in good[32 * k: 32 * k + 32]]
        messages += [("dcpue/test-site/batch", json.dumps(batch).encode()),
                     ("dcpue/test-site/flood", flood)]
    store = Store()
    async with Collector(site, store) as collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "connection")
        await publish_raw(mosquitto.port, messages)
        # Bounds for a loaded 2-core box; decoding the flood takes about 10 s on an idle one.
        await wait_until(lambda: store.count() == 640, "valid readings beside the flood", 180)
        await wait_until(lambda: collector.stats().dead_letters == {"unknown_meter": 300_000},
                         "flood counted", 60)
    assert stored(store) == once(good)
    assert store.dead_letter_counts() == {"unknown_meter": 300_000}
    # The cap is per minute: a flood that straddles a minute boundary keeps 100 letters (and
    # its aggregates) in each minute it touched, never more.
    per_minute = store.execute(
        "SELECT received_ms // 60000 AS minute, count(*) FROM dead_letters GROUP BY minute"
    ).fetchall()
    assert per_minute and all(n <= 100 + 2 * 3 for _, n in per_minute), per_minute


async def test_a_poison_timestamp_is_dead_lettered_and_acknowledged_not_redelivered(mosquitto):
    """A timestamp that does not fit int64 ms next to valid readings: they are stored, it is a
    dead letter, and the message is acknowledged (a restart does not bring it back)."""
    site = collector_site(mosquitto.port)
    store = Store()
    poison = b'[{"meter": "it", "value": 1, "ts": 1e19}, {"meter": "grid", "value": 5, "ts": 1704067200000}]'
    async with Collector(site, store) as collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "connection")
        await publish_raw(mosquitto.port, [("dcpue/test-site/batch", poison)])
        await wait_until(lambda: store.count() == 1, "the valid reading")
        await wait_until(lambda: sum(collector.stats().dead_letters.values()) == 1, "dead letter")
    assert store.latest("grid").value == 5.0
    async with Collector(site, store) as collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "reconnection")
        await publish_raw(mosquitto.port, [("dcpue/test-site/batch", b'{"oat": 3.5}')])
        await wait_until(lambda: store.count() == 2, "marker after restart")
        assert collector.stats().mqtt_messages == 1  # the poison message was not redelivered


def test_decoding_a_read_at_once_equals_decoding_each_message():
    """decode_many (what the source does with one socket read) against decode_any per
    message: the same readings and the same dead letters, whatever the mix. Computed: both
    decodes; declared: the payloads (device-stamped, so no receive clock is involved)."""
    def item(i: int) -> dict:
        return {"meter": ("grid", "it", "pdu-1", "oat")[i % 4], "value": float(i % 80),
                "ts": T0_MS + 1000 * i}

    rng = random.Random(3)
    now_ms = T0_MS + 7 * 86_400_000  # after every reading
    bad = [b"{", b"[1, 2]", b'{"meter": "ghost", "value": 1, "ts": 1704067200000}',
           b'{"meter": "it", "value": "x", "ts": 1704067200000}', b" " * 9000,
           b'{"meter": "pdu-1", "value": 1e9, "ts": 1704067200000}',
           # encodings json.loads(bytes) detects, invalid UTF-8, an integer beyond the limit
           '{"meter": "it", "value": 2, "ts": 1704067200000}'.encode("utf-16-le"),
           b'\xef\xbb\xbf{"meter": "it", "value": 3, "ts": 1704067200000}',
           b'{"meter": "it\xff", "value": 1, "ts": 1704067200000}',
           b'{"meter": "it", "value": 1' + b"0" * 4400 + b', "ts": 1704067200000}',
           # trailing JSON whitespace, trailing data, a trailing form feed (not JSON space)
           b'{"meter": "it", "value": 4, "ts": 1704067200000}\r\n',
           b'{"meter": "it", "value": 4, "ts": 1704067200000} x',
           b'[{"meter": "it", "value": 5, "ts": 1704067200000}]\x0c']
    for fmt in ("reading", "batch"):
        payloads = []
        for i in range(400):
            if rng.random() < 0.1:
                payloads.append(rng.choice(bad))
            elif fmt == "reading":
                payloads.append(json.dumps(item(i)).encode())
            else:
                items = [item(1000 * i + k) for k in range(rng.choice([1, 3, 200]))]
                doc = rng.choice([items, {"readings": items},
                                  {"ts": T0_MS, "readings": [{**x, "ts": None} for x in items]}])
                payloads.append(json.dumps(doc).encode())
        decoder = PayloadDecoder(MeterIndex(make_site()), Subscription(topic="#", format=fmt), 8192)
        one_by_one_readings, one_by_one_letters = [], []
        for payload in payloads:
            readings, letters = decoder.decode_any(payload, "t", now_ms)
            one_by_one_readings += list(readings) if isinstance(readings, list) else readings.to_readings()
            one_by_one_letters += letters
        chunks, letters = decoder.decode_many(payloads, "t", now_ms)
        readings = [r for c in chunks for r in (c if isinstance(c, list) else c.to_readings())]
        assert len(one_by_one_readings) > 300
        assert sorted(readings, key=repr) == sorted(one_by_one_readings, key=repr)
        assert sorted(letters, key=repr) == sorted(one_by_one_letters, key=repr)


async def test_an_idle_connection_is_kept_alive_with_pings(mosquitto):
    """Keep-alive 5 s and nothing to receive for 9 s: the broker closes a silent client after
    1.5 keep-alives (MQTT 3.1.1 section 3.1.2.10), so only PINGREQs keep this one session."""
    site = collector_site(mosquitto.port, keepalive_s=5)
    store = Store()
    async with Collector(site, store) as collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "connection")
        await asyncio.sleep(9)
        await publish_raw(mosquitto.port, [("dcpue/test-site/batch", b'{"oat": 3.5, "ts": 1704067200000}')])
        await wait_until(lambda: store.count() == 1, "a reading after the idle time")
        assert collector.mqtt.stats.connects == 1 and collector.mqtt.stats.connection_errors == 0
