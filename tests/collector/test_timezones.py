"""Offset-less device timestamps (Tasmota's ``Time``) placed in UTC by the source's zone, across DST.

Computed: the UTC instants the decoder and a real collector give wall times. Declared: the
zones and the wall times. Hand-worked UTC instants (Europe/Berlin is UTC+1, UTC+2 in summer
time; the 2024 changes were 2024-03-31 02:00 CET -> 03:00 CEST and 2024-10-27 03:00 CEST ->
02:00 CET; America/New_York changed 2024-03-10 02:00 EST -> 03:00 EDT).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from dcpue.collector.normalise import MeterIndex
from dcpue.collector.payloads import PayloadDecoder
from dcpue.collector.service import Collector
from dcpue.config import parse_site
from dcpue.config.collector import Subscription
from dcpue.core.store import Store

from tests.collector.conftest import make_site, site_doc, wait_until
from tests.collector.helpers import collector_site
from tests.collector.test_mqtt import publish_raw

TASMOTA = {"paths": {"it": "$.ENERGY.Total", "pdu-1": "$.ENERGY.Power"},
           "units": {"pdu-1": "W"}, "ts_path": "$.Time"}


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def tasmota(wall: str, total: float, watts: float) -> bytes:
    """A Tasmota SENSOR message: local ``Time`` without offset, energy in kWh, power in W."""
    return json.dumps({"Time": wall, "ENERGY": {"Total": total, "Power": watts}}).encode()


def berlin_decoder() -> PayloadDecoder:
    sub = Subscription(topic="tele/+/SENSOR", format="gateway", timezone="Europe/Berlin",
                       **TASMOTA)
    return PayloadDecoder(MeterIndex(make_site()), sub, 1 << 20)


def stamps(decoder: PayloadDecoder, walls: list[str], origin: str = "tele/plug/SENSOR"):
    out = []
    for i, wall in enumerate(walls):
        readings, letters = decoder.decode(tasmota(wall, 10.0 + i, 500), origin, utc_ms(
            "2024-11-01T00:00:00"))
        out.append(readings[0].ts_ms if readings else letters[0].reason)
    return out


def test_spring_forward_gap_is_a_dead_letter_and_neighbours_shift_by_the_offset() -> None:
    assert stamps(berlin_decoder(), [
        "2024-03-31T01:30:00", "2024-03-31T02:30:00", "2024-03-31T03:30:00",
    ]) == [utc_ms("2024-03-31T00:30:00"), "nonexistent_local_time", utc_ms("2024-03-31T01:30:00")]


def test_fall_back_fold_in_device_order_gets_distinct_instants() -> None:
    """02:00-02:59 happens twice; a device reporting in order is stored in order."""
    walls = ["2024-10-27T01:30:00", "2024-10-27T02:00:00", "2024-10-27T02:30:00",
             "2024-10-27T02:00:00", "2024-10-27T02:30:00", "2024-10-27T03:00:00"]
    assert stamps(berlin_decoder(), walls) == [utc_ms(t) for t in (
        "2024-10-26T23:30:00", "2024-10-27T00:00:00", "2024-10-27T00:30:00",  # CEST, UTC+2
        "2024-10-27T01:00:00", "2024-10-27T01:30:00", "2024-10-27T02:00:00",  # CET, UTC+1
    )]


def test_fold_memory_is_per_topic_and_a_lone_ambiguous_time_takes_the_first_instant() -> None:
    decoder = berlin_decoder()
    assert stamps(decoder, ["2024-10-27T02:45:00"], "tele/a/SENSOR") == [
        utc_ms("2024-10-27T00:45:00")]
    assert stamps(decoder, ["2024-10-27T02:50:00"], "tele/b/SENSOR") == [
        utc_ms("2024-10-27T00:50:00")]
    # the same wall time again on topic a: its first instant is not before a's last, so a
    # redelivery stays on the same key (idempotent)
    assert stamps(decoder, ["2024-10-27T02:45:00"], "tele/a/SENSOR") == [
        utc_ms("2024-10-27T00:45:00")]


def test_default_zone_is_the_sites_and_an_explicit_offset_wins() -> None:
    site = parse_site(site_doc() | {"timezone": "America/New_York"})
    decoder = PayloadDecoder(MeterIndex(site), Subscription(topic="t"), 1 << 20)
    received = utc_ms("2024-03-11T00:00:00")
    payloads = [
        {"ts": "2024-03-10T01:30:00", "oat": 1.0},  # EST, UTC-5
        {"ts": "2024-03-10T03:30:00", "oat": 2.0},  # EDT, UTC-4
        {"ts": "2024-03-10T03:30:00+00:00", "oat": 3.0},
    ]
    got = [decoder.decode(json.dumps(p).encode(), "t", received)[0][0].ts_ms for p in payloads]
    assert got == [utc_ms("2024-03-10T06:30:00"), utc_ms("2024-03-10T07:30:00"),
                   utc_ms("2024-03-10T03:30:00")]


async def test_tasmota_through_a_real_broker_across_the_fall_back(mosquitto) -> None:
    site = collector_site(mosquitto.port, subscriptions=[
        {"topic": "tele/+/SENSOR", "format": "gateway", "timezone": "Europe/Berlin", **TASMOTA}])
    walls = ["2024-10-27T02:15:00", "2024-10-27T02:45:00", "2024-10-27T02:15:00",
             "2024-10-27T02:45:00"]
    store = Store()
    async with Collector(site, store) as collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "connection")
        await publish_raw(mosquitto.port, [
            ("tele/plug/SENSOR", tasmota(w, 100.0 + i, 1000.0 * (i + 1)))
            for i, w in enumerate(walls)])
        await wait_until(lambda: store.count() == 8, "8 readings")
    got = sorted((r.ts_ms, r.meter, r.value) for r in store.read().to_readings())
    instants = [utc_ms(t) for t in ("2024-10-27T00:15:00", "2024-10-27T00:45:00",
                                    "2024-10-27T01:15:00", "2024-10-27T01:45:00")]
    assert got == sorted(
        [(t, "it", 100.0 + i) for i, t in enumerate(instants)]
        + [(t, "pdu-1", 1.0 * (i + 1)) for i, t in enumerate(instants)]
    )
