"""The receive path cannot stall: framing cut at any byte, flow control at the broker's window,
and the stall watchdog, against a real Mosquitto.

Computed: what the collector stores and counts. Declared: the streams, the window (MQTT 5
receive maximum = max(4 x ack_batch, 64) = 64 for ack_batch 16) and the watchdog's 1 s.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from dcpue.collector.mqtt import BrokerConnection, MqttSource, receive_maximum
from dcpue.collector.mqtt_wire import V5, V311, PacketReader, varint
from dcpue.collector.pipeline import Pipeline
from dcpue.collector.service import Collector
from dcpue.core.store import Store

from tests.collector.conftest import wait_until
from tests.collector.helpers import collector_site, once, stored, stream
from tests.collector.test_mqtt import publish_raw
from tests.collector.test_mqtt_wire import publish

WINDOW_SITE = {"ack_batch": 16, "stall_timeout_s": 1.0}


def small_stream(level: int) -> tuple[bytes, list[tuple[bytes, bytes, int, int]]]:
    """Packets whose remaining length takes 1, 2 and 3 bytes, QoS 0/1/2, a PINGRESP between."""
    rng = random.Random(3)
    stream, expected = b"", []
    for i, size in enumerate([0, 5, 120, 130, 300, 17_000, 2]):
        topic, payload = f"s/{i}".encode(), bytes(rng.randrange(256) for _ in range(size))
        qos = i % 3
        stream += publish(level, topic, payload, qos, 40_000 + i, b"\x01\x01" if i % 2 else b"")
        expected.append((topic, payload, qos, 40_000 + i if qos else 0))
        if i == 2:
            stream += b"\xd0\x00"
    return stream, expected


def feed_all(level: int, pieces: list[bytes]) -> tuple[list, int]:
    reader = PacketReader(level)
    got, others = [], 0
    for piece in pieces:
        topics, payloads, qos, ids, rest = reader.feed(piece)
        got += zip(topics, payloads, qos, ids, strict=True)
        others += len(rest)
    assert not reader._parts, "bytes left over after the last packet"
    return got, others


@pytest.mark.parametrize("level", [V311, V5])
def test_every_cut_of_a_stream_in_two_or_three_reads_gives_the_same_packets(level):
    """Each position as the end of a read (a header, a length byte of a multi-byte length, a
    packet boundary), then 300 random three-way cuts: same packets, nothing left over."""
    data, expected = small_stream(level)
    assert varint(17_000 + 10)[2:] and varint(130)[1:]  # 3- and 2-byte lengths are in it
    for at in range(len(data) + 1):
        assert feed_all(level, [data[:at], data[at:]]) == (expected, 1), at
    rng = random.Random(5)
    for _ in range(300):
        a, b = sorted(rng.randrange(len(data) + 1) for _ in range(2))
        assert feed_all(level, [data[:a], data[a:b], data[b:]]) == (expected, 1), (a, b)


def one_reading_messages(n: int) -> list[tuple[str, bytes]]:
    readings = stream(0, (n + 3) // 4)[:n]
    return [("dcpue/test-site/batch",
             json.dumps([{"meter": r.meter, "value": r.value, "ts": r.ts_ms}]).encode())
            for r in readings]


async def queue_while_away(site, port: int, messages: list[tuple[str, bytes]]) -> None:
    """Create the collector's persistent session, leave, and publish ``messages`` to it."""
    async with Collector(site, Store()) as collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "session set-up")
    await publish_raw(port, messages)


@pytest.mark.parametrize("extra", [1, 63])
async def test_a_queue_longer_than_the_window_drains_without_a_stall(mosquitto, extra):
    """window + 1 and window + 63 queued messages: the broker sends a window (64), waits for
    the acknowledgements, then the rest; all stored once, the watchdog never fires."""
    site = collector_site(mosquitto.port, **WINDOW_SITE)
    window = receive_maximum(site.collector.mqtt)
    assert window == 64
    messages = one_reading_messages(window + extra)
    await queue_while_away(site, mosquitto.port, messages)
    store = Store()
    async with Collector(site, store) as collector:
        await wait_until(lambda: store.count() == len(messages), "the queue", 30)
        await asyncio.sleep(1.5)  # longer than the watchdog's 1 s
        assert collector.mqtt.stats.stalls == 0 and collector.mqtt.stats.connects == 1
    assert len(stored(store)) == len(messages)


async def test_silence_after_a_full_window_is_taken_for_a_stall_and_reconnected(mosquitto):
    """Exactly one window (64) queued: after its acknowledgement the broker has nothing more,
    which on the wire looks like a broker that stopped sending. The watchdog reconnects once
    (a cheap false alarm, no loop); nothing is lost or stored twice and live messages arrive."""
    site = collector_site(mosquitto.port, **WINDOW_SITE)
    messages = one_reading_messages(64)
    await queue_while_away(site, mosquitto.port, messages)
    store = Store()
    async with Collector(site, store) as collector:
        await wait_until(lambda: collector.mqtt.stats.stalls == 1, "the watchdog", 15)
        await wait_until(lambda: collector.mqtt.stats.connects == 2, "the reconnection")
        live = [("dcpue/test-site/batch", b'{"oat": 3.5, "ts": 1704153600000}')]
        await publish_raw(mosquitto.port, live)
        await wait_until(lambda: store.count() == 65, "a live message after it")
        await asyncio.sleep(1.5)
        assert collector.mqtt.stats.stalls == 1
        assert "stalled, nothing progressed" in collector.mqtt.stats.last_error
    assert all(len(v) == 1 for v in stored(store).values())


async def test_messages_left_unacknowledged_are_flushed_and_the_connection_renewed(mosquitto):
    """The acker of the first connection never runs (the failure the watchdog guards against:
    received messages whose acknowledgement never leaves, while the broker waits for it). After
    1 s the watchdog commits and acknowledges them and reconnects; the broker redelivers
    nothing, and the next connection works normally."""
    site = collector_site(mosquitto.port, **WINDOW_SITE)
    store = Store()
    collector = Collector(site, store)
    source = collector.mqtt
    real, connections = source._ack_loop, []

    async def first_never_acks(conn, due):
        connections.append(conn)
        if len(connections) == 1:
            await asyncio.Event().wait()
        await real(conn, due)

    source._ack_loop = first_never_acks
    messages = one_reading_messages(5)
    marker = ("dcpue/test-site/batch", b'{"oat": 3.5, "ts": 1704153600000}')
    async with collector:
        await wait_until(lambda: source.stats.connected, "connection with a stuck acker")
        await publish_raw(mosquitto.port, messages)
        await wait_until(lambda: source.stats.stalls == 1, "the watchdog", 15)
        await wait_until(lambda: source.stats.connects == 2, "the reconnection")
        await publish_raw(mosquitto.port, [marker])  # after any redelivery, in order
        await wait_until(lambda: store.count() == 6, "the marker")
        assert "5 received messages unacknowledged" in source.stats.last_error
        assert collector.stats().duplicates == 0  # acknowledged by the flush: no redelivery
        assert source.stats.stalls == 1
    assert stored(store) == {**once(stream(0, 2)[:5]), ("oat", "temperature", 1704153600000): [3.5]}


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
async def test_the_acker_ends_when_cancelled_just_as_a_batch_is_due(turns):
    """The stall of bench/ingest.py: Python 3.11's ``asyncio.wait_for`` returns the inner
    result when a cancellation arrives just after it completed (CPython gh-86296). The acker
    waited that way for "a batch is due", so a connection that ended just after a burst left
    it running: the session's clean-up awaited it forever, never reconnected, and the drain
    stopped short with the broker holding the rest. Cancelled 0-3 loop turns after the batch
    became due, the acker ends (no broker needed: nothing is sent on an unconnected
    connection)."""
    store = Store()
    source = MqttSource(collector_site(1), Pipeline(store))
    conn = BrokerConnection(V5, lambda *_: None)
    due = asyncio.Event()
    task = asyncio.create_task(source._ack_loop(conn, due))
    await asyncio.sleep(0.01)  # the acker waits for the batch
    due.set()
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait([task], timeout=2)
    assert task.cancelled()


async def test_a_connection_lost_while_messages_wait_for_acknowledgement_resumes(mosquitto):
    """3,000 queued messages are received and held unacknowledged (acknowledgements every
    20 s, batches of 5,000: neither comes due before the restart) when the broker restarts:
    the collector reconnects by itself, the broker redelivers the unacknowledged messages, and
    each reading is stored once (the redeliveries are duplicates). With batches of 1,000 the
    first were acknowledged before the restart, and once all of them (a failed CI run)."""
    site = collector_site(mosquitto.port, ack_batch=5000, ack_interval_s=20.0,
                          stall_timeout_s=120.0)
    messages = one_reading_messages(3000)
    await queue_while_away(site, mosquitto.port, messages)
    store = Store()
    async with Collector(site, store) as collector:
        await wait_until(lambda: collector.stats().readings_in >= 1000, "messages held", 30)
        await asyncio.to_thread(mosquitto.restart)
        await wait_until(lambda: collector.mqtt.stats.connects >= 2, "the reconnection", 30)
        await wait_until(lambda: collector.stats().readings_in > 3000,
                         "redelivery after the restart", 60)
        await wait_until(lambda: collector.stats().duplicates > 0,
                         "the redelivered readings committed as duplicates", 60)
        await wait_until(lambda: store.count() == 3000, "every reading", 60)
    assert stored(store) == once(stream(0, 750))


async def test_a_handler_bug_dead_letters_the_messages_instead_of_a_redelivery_loop(mosquitto):
    """A decoder that raises past its own guard (injected): had the exception reached the
    transport, the connection would close and every redelivery fail again. The messages are
    dead letters ``internal_error``, acknowledged; the connection stays and the next message,
    once the decoder works, is stored."""
    site = collector_site(mosquitto.port)
    store = Store()
    collector = Collector(site, store)
    decoder = collector.mqtt.routes[0][1]
    real = decoder.decode_many

    def broken(*args, **kwargs):
        raise RuntimeError("injected decoder bug")

    decoder.decode_many = broken
    async with collector:
        await wait_until(lambda: collector.stats().mqtt_connected, "connection")
        await publish_raw(mosquitto.port, one_reading_messages(3))
        await wait_until(lambda: collector.stats().dead_letters.get("internal_error") == 3,
                         "three dead letters")
        decoder.decode_many = real
        await publish_raw(mosquitto.port, [("dcpue/test-site/batch",
                                            b'{"oat": 3.5, "ts": 1704153600000}')])
        await wait_until(lambda: store.count() == 1, "the next message")
        assert collector.mqtt.stats.connects == 1 and collector.stats().mqtt_messages == 4
    assert store.dead_letter_counts() == {"internal_error": 3}
