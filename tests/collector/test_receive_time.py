"""Receive-time stamping: distinct readings get distinct keys, device-stamped replays stay idempotent.

Computed: the timestamps the decoder and a real collector give readings without ``ts``.
Declared: the payloads (50 messages, two meters each) and their receive times.
"""

from __future__ import annotations

import json

from dcpue.collector.normalise import MeterIndex
from dcpue.collector.payloads import PayloadDecoder
from dcpue.collector.service import Collector
from dcpue.config.collector import Subscription
from dcpue.core.store import Store

from tests.collector.conftest import T0_MS, make_site, wait_until
from tests.collector.helpers import collector_site
from tests.collector.test_mqtt import publish_raw

BURST = 50


def burst() -> list[bytes]:
    """50 distinct map payloads without ``ts``: a counter rising 1 kWh and a power reading each."""
    return [json.dumps({"it": 1000.0 + i, "pdu-1": 10.0 + i / 2}).encode() for i in range(BURST)]


def test_a_burst_within_one_millisecond_gets_consecutive_milliseconds() -> None:
    index = MeterIndex(make_site())
    batch = PayloadDecoder(index, Subscription(topic="a/#"), 1 << 20)
    other = PayloadDecoder(index, Subscription(topic="b/#"), 1 << 20)
    readings = []
    for i, payload in enumerate(burst()):  # every message "received" at the same instant
        readings += (batch if i % 2 else other).decode(payload, "t", T0_MS)[0]
    for meter in ("it", "pdu-1"):
        stamps = [r.ts_ms for r in readings if r.meter == meter]
        assert stamps == list(range(T0_MS, T0_MS + BURST))  # shared clock across subscriptions
    # a later message received after the burst's last stamp keeps its own receive time
    later = batch.decode(b'{"it": 2000}', "t", T0_MS + 10_000)[0]
    assert [r.ts_ms for r in later] == [T0_MS + 10_000]


def test_device_stamped_replay_stays_idempotent() -> None:
    decoder = PayloadDecoder(MeterIndex(make_site()), Subscription(topic="t"), 1 << 20)
    payload = json.dumps({"ts": T0_MS, "it": 5.0, "pdu-1": 7.0}).encode()
    first, _ = decoder.decode(payload, "t", T0_MS + 5)
    replay, _ = decoder.decode(payload, "t", T0_MS + 5)  # redelivered in the same millisecond
    assert first == replay and {r.ts_ms for r in first} == {T0_MS}
    with Store() as store:
        assert store.append(first) == 2
        assert store.append(replay) == 0


async def test_queued_burst_of_receive_stamped_messages_stores_every_reading(mosquitto) -> None:
    """Published while the collector is away (persistent session), delivered as one burst."""
    site = collector_site(mosquitto.port)
    store = Store()
    async with Collector(site, store) as collector:  # creates the persistent session
        await wait_until(lambda: collector.stats().mqtt_connected, "connection")
    await publish_raw(mosquitto.port, [("dcpue/test-site/gw", p) for p in burst()])
    async with Collector(site, store) as collector:
        await wait_until(lambda: store.count() == 2 * BURST, f"{2 * BURST} readings", 30)
        assert collector.stats().duplicates == 0
    columns = store.read()
    for meter, first in (("it", 1000.0), ("pdu-1", 10.0)):
        values = sorted(v for m, v in zip(columns.meter, columns.value, strict=True) if m == meter)
        assert len(values) == BURST
        assert values[0] == first and len(set(values)) == BURST
