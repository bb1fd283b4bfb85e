"""The lean MQTT codec against the byte layouts of the MQTT 3.1.1 and 5.0 specifications.

Computed: packets encoded and cut from a byte stream by :mod:`dcpue.collector.mqtt_wire`.
Declared: the expected bytes, written out by hand from the specifications' figures (OASIS MQTT
3.1.1 sections 1.5.3, 2.2.3, 3.1, 3.4, 4.7; MQTT 5.0 sections 1.5.5, 2.2.2, 3.3.2).
"""

from __future__ import annotations

import random

import pytest
from dcpue.collector.mqtt_wire import (
    PINGRESP,
    SUBACK,
    V5,
    V311,
    PacketReader,
    ProtocolError,
    acks,
    connect,
    parse_connack,
    read_varint,
    subscribe,
    topic_matches,
    varint,
)


@pytest.mark.parametrize(("value", "encoded"), [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"), (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_remaining_length_boundaries_of_the_spec_table(value, encoded):
    assert varint(value) == encoded
    assert read_varint(b"\x00" + encoded, 1) == (value, 1 + len(encoded))


def test_a_five_byte_length_is_refused():
    with pytest.raises(ProtocolError):
        read_varint(b"\xff\xff\xff\xff\x7f", 0)


def test_connect_v311_persistent_session_with_credentials():
    packet = connect(V311, "c1", 30, username="u", password="pw")
    body = (b"\x00\x04MQTT" b"\x04" b"\xc0" b"\x00\x1e"  # level 4; user+password; clean 0
            b"\x00\x02c1" b"\x00\x01u" b"\x00\x02pw")
    assert packet == b"\x10" + bytes([len(body)]) + body


def test_connect_v5_carries_session_expiry_and_receive_maximum():
    packet = connect(V5, "c1", 30, session_expiry_s=604_800, receive_maximum=8000)
    props = b"\x11\x00\x09\x3a\x80" b"\x21\x1f\x40"
    body = b"\x00\x04MQTT\x05\x00\x00\x1e" + bytes([len(props)]) + props + b"\x00\x02c1"
    assert packet == b"\x10" + bytes([len(body)]) + body


def test_subscribe_and_acknowledgements():
    assert subscribe(V311, 1, ["a/#"]) == b"\x82\x08\x00\x01\x00\x03a/#\x01"
    assert subscribe(V5, 1, ["a/#"]) == b"\x82\x09\x00\x01\x00\x00\x03a/#\x01"
    assert acks(0x40, [1, 0x1234]) == b"\x40\x02\x00\x01\x40\x02\x12\x34"
    assert acks(0x40, []) == b""


def test_connack_reasons_in_words():
    assert parse_connack(V311, b"\x00\x05").text == "not authorized"
    refused = parse_connack(V5, b"\x00\x87\x00")
    assert refused.reason == 0x87 and "not authorized" in refused.text
    ok = parse_connack(V5, b"\x01\x00\x03\x13\x00\x3c")  # Server Keep Alive 60 s
    assert (ok.session_present, ok.reason, ok.keepalive_s) == (True, 0, 60)


def publish(level: int, topic: bytes, payload: bytes, qos: int, pid: int,
            props: bytes = b"") -> bytes:
    """A PUBLISH packet laid out by hand (fixed header, topic, packet id, properties)."""
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += pid.to_bytes(2, "big")
    if level == V5:
        body += varint(len(props)) + props
    return bytes([0x30 | qos << 1]) + varint(len(body) + len(payload)) + body + payload


@pytest.mark.parametrize("level", [V311, V5])
def test_a_stream_cut_anywhere_gives_the_same_packets(level):
    rng = random.Random(7)
    expected = []
    stream = b""
    for i, size in enumerate([0, 1, 100, 121, 122, 16_000, 16_400, 70_000, 3]):
        topic, payload = f"t/{i}".encode(), bytes(rng.randrange(256) for _ in range(size))
        qos = i % 3
        props = b"\x02\x00\x00\x00\x3c\x26\x00\x01k\x00\x01v" if i % 2 else b""  # expiry, user
        stream += publish(level, topic, payload, qos, 1000 + i, props)
        expected.append((topic, payload, qos, 1000 + i if qos else 0))
        if i == 4:
            stream += b"\xd0\x00" + b"\x90\x03\x00\x01\x01"  # PINGRESP, SUBACK (3.1.1 layout)
    for chunk in (1, 7, 4096, len(stream)):
        reader = PacketReader(level)
        got, others = [], []
        for at in range(0, len(stream), chunk):
            topics, payloads, qos, ids, rest = reader.feed(stream[at:at + chunk])
            got += list(zip(topics, payloads, qos, ids, strict=True))
            others += rest
        assert got == expected
        assert [(kind, body) for kind, _, body in others] == [
            (PINGRESP, b""), (SUBACK, b"\x00\x01\x01")
        ]


def test_a_publish_whose_properties_overrun_it_is_a_protocol_error():
    reader = PacketReader(V5)
    with pytest.raises(ProtocolError):
        reader.feed(b"\x30\x05\x00\x01t\x09x")  # property length 9 in a 5-byte body


@pytest.mark.parametrize(("topic_filter", "topic", "matches"), [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("#", "$SYS/broker", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/broker", True),
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
])
def test_topic_matching_examples_of_section_4_7(topic_filter, topic, matches):
    assert topic_matches(topic_filter, topic) is matches
