"""MQTT 3.1.1 and 5.0 packets of a receive-only QoS 1 subscriber (pure: bytes in, bytes out).

Only what the collector's session needs: CONNECT (persistent session, credentials, MQTT 5
session expiry and receive maximum), SUBSCRIBE, PINGREQ, DISCONNECT and the publish
acknowledgements out; CONNACK, SUBACK, PUBLISH, PUBREL, PINGRESP and DISCONNECT in.
:class:`PacketReader` cuts a byte stream into packets and many PUBLISH packets per call into
parallel lists, so a socket read of thousands of small messages costs one call.

Sources: OASIS MQTT Version 3.1.1 (2014) and MQTT Version 5.0 (2019), chapters 2 (fixed
header, remaining length as a variable byte integer, MQTT 5 properties) and 3 (packets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Protocol levels of the CONNECT packet.
V311, V5 = 4, 5

CONNACK, PUBLISH, PUBREL, SUBACK, PINGRESP, DISCONNECT = 2, 3, 6, 9, 13, 14
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # MQTT 5: no reason code means 0x00, normal disconnection
#: First byte of PUBACK (QoS 1), PUBREC (QoS 2, first step) and PUBCOMP (QoS 2, last step).
PUBACK_BYTE, PUBREC_BYTE, PUBCOMP_BYTE = 0x40, 0x50, 0x70

#: MQTT 3.1.1 CONNACK return codes (section 3.2.2.3).
CONNACK_V311 = {
    1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
    4: "bad user name or password", 5: "not authorized",
}
#: MQTT 5 reason codes of CONNACK and DISCONNECT (sections 3.2.2.2, 3.14.2.1).
REASONS_V5 = {
    0x04: "disconnect with will message", 0x80: "unspecified error",
    0x81: "malformed packet", 0x82: "protocol error", 0x83: "implementation specific error",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid",
    0x86: "bad user name or password", 0x87: "not authorized", 0x88: "server unavailable",
    0x89: "server busy", 0x8A: "banned", 0x8B: "server shutting down",
    0x8C: "bad authentication method", 0x8D: "keep alive timeout", 0x8E: "session taken over",
    0x8F: "topic filter invalid", 0x90: "topic name invalid", 0x93: "receive maximum exceeded",
    0x94: "topic alias invalid", 0x95: "packet too large", 0x96: "message rate too high",
    0x97: "quota exceeded", 0x98: "administrative action", 0x99: "payload format invalid",
    0x9A: "retain not supported", 0x9B: "QoS not supported", 0x9C: "use another server",
    0x9D: "server moved", 0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded", 0xA0: "maximum connect time",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}
#: MQTT 5 property identifiers by value type (section 2.2.2.2), to skip or read them.
_PROP_BYTE = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
_PROP_U16 = frozenset({0x13, 0x21, 0x22, 0x23})
_PROP_U32 = frozenset({0x02, 0x11, 0x18, 0x27})
_PROP_VARINT = frozenset({0x0B})
_PROP_DATA = frozenset({0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F})
_PROP_PAIR = 0x26
PROP_SERVER_KEEP_ALIVE, PROP_REASON_STRING = 0x13, 0x1F


class ProtocolError(Exception):
    """The broker sent bytes that are not a valid packet for this client."""


def varint(n: int) -> bytes:
    """A variable byte integer: 7 bits per byte, least significant first (section 1.5.5)."""
    if not 0 <= n < 128**4:
        raise ValueError(f"{n} does not fit a variable byte integer")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the variable byte integer at ``pos``.

    Raises:
        IndexError: the integer is not complete in ``data``.
        ProtocolError: longer than four bytes.
    """
    value = shift = 0
    for i in range(pos, pos + 4):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    raise ProtocolError("variable byte integer longer than 4 bytes")


def _string(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("MQTT strings are at most 65,535 bytes")
    return len(data).to_bytes(2, "big") + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect(
    level: int, client_id: str, keepalive_s: int, *, username: str | None = None,
    password: str | None = None, session_expiry_s: int = 0, receive_maximum: int = 65_535,
) -> bytes:
    """CONNECT with clean session (3.1.1) / clean start (5) off, no will; MQTT 5 adds the
    session-expiry interval and the receive maximum. MQTT 3.1.1 sends a password only with a
    user name (section 3.1.2.9)."""
    flags = 0
    payload = _string(client_id.encode())
    if username is not None:
        flags |= 0x80
        payload += _string(username.encode())
    if password is not None and (username is not None or level == V5):
        flags |= 0x40
        payload += _string(password.encode())
    header = _string(b"MQTT") + bytes([level, flags]) + keepalive_s.to_bytes(2, "big")
    if level == V5:
        props = (b"\x11" + session_expiry_s.to_bytes(4, "big")
                 + b"\x21" + receive_maximum.to_bytes(2, "big"))
        header += varint(len(props)) + props
    return _packet(0x10, header + payload)


def subscribe(level: int, packet_id: int, filters: list[str], qos: int = 1) -> bytes:
    """One SUBSCRIBE for every filter at ``qos`` (MQTT 5 options: no local off, retain as
    published off, retained messages sent at subscribe)."""
    body = packet_id.to_bytes(2, "big") + (b"\x00" if level == V5 else b"")
    for topic in filters:
        body += _string(topic.encode()) + bytes([qos])
    return _packet(0x82, body)


def acks(first_byte: int, packet_ids: list[int]) -> bytes:
    """Many PUBACK / PUBREC / PUBCOMP packets in one buffer: 4 bytes each, the MQTT 5 reason
    code (success) and properties left out, as section 3.4.2.1 allows."""
    out = np.empty((len(packet_ids), 2), dtype=">u2")
    out[:, 0] = (first_byte << 8) | 2
    out[:, 1] = packet_ids
    return out.tobytes()


def properties(body: bytes, pos: int) -> tuple[dict[int, int | bytes], int]:
    """MQTT 5 properties at ``pos``: {identifier: value} (the last of repeated ones; user
    properties left out) and the position after them."""
    length, pos = read_varint(body, pos)
    end = pos + length
    if end > len(body):
        raise ProtocolError("properties run past the packet")
    out: dict[int, int | bytes] = {}
    while pos < end:
        ident = body[pos]
        pos += 1
        if ident in _PROP_BYTE:
            out[ident], pos = body[pos], pos + 1
        elif ident in _PROP_U16:
            out[ident], pos = int.from_bytes(body[pos:pos + 2], "big"), pos + 2
        elif ident in _PROP_U32:
            out[ident], pos = int.from_bytes(body[pos:pos + 4], "big"), pos + 4
        elif ident in _PROP_VARINT:
            out[ident], pos = read_varint(body, pos)
        elif ident in _PROP_DATA:
            n = int.from_bytes(body[pos:pos + 2], "big")
            out[ident], pos = body[pos + 2:pos + 2 + n], pos + 2 + n
        elif ident == _PROP_PAIR:
            for _ in range(2):
                pos += 2 + int.from_bytes(body[pos:pos + 2], "big")
        else:
            raise ProtocolError(f"unknown property 0x{ident:02x}")
    if pos != end:
        raise ProtocolError("properties overrun their length")
    return out, end


@dataclass(slots=True)
class Connack:
    """The broker's answer to CONNECT; ``reason`` 0 is success."""

    session_present: bool
    reason: int
    keepalive_s: int | None  # MQTT 5 Server Keep Alive, which then replaces ours
    text: str  # reason in words, with the broker's reason string if it sent one


def parse_connack(level: int, body: bytes) -> Connack:
    if len(body) < 2:
        raise ProtocolError("CONNACK too short")
    reason = body[1]
    if level != V5:
        return Connack(bool(body[0] & 1), reason, None,
                       CONNACK_V311.get(reason, f"return code {reason}"))
    props, _ = properties(body, 2) if len(body) > 2 else ({}, 2)
    text = REASONS_V5.get(reason, "success" if reason == 0 else "unknown reason")
    if isinstance(said := props.get(PROP_REASON_STRING), bytes):
        text += f": {said.decode('utf-8', 'replace')}"
    keepalive = props.get(PROP_SERVER_KEEP_ALIVE)
    return Connack(bool(body[0] & 1), reason, keepalive if isinstance(keepalive, int) else None,
                   f"{text} (reason code 0x{reason:02x})")


def parse_suback(level: int, body: bytes) -> tuple[int, list[int]]:
    """(packet id, granted QoS or failure code per filter; >= 0x80 is a refusal)."""
    pos = 2
    if level == V5:
        _, pos = properties(body, pos)
    return int.from_bytes(body[:2], "big"), list(body[pos:])


def disconnect_reason(body: bytes) -> str:
    """Words for a broker's MQTT 5 DISCONNECT."""
    reason = body[0] if body else 0
    return f"broker disconnected: {REASONS_V5.get(reason, 'normal')} (reason code 0x{reason:02x})"


class PacketReader:
    """Cuts the broker's byte stream into packets; feed it whatever the socket gave.

    :meth:`feed` returns the PUBLISH packets as parallel lists (topic bytes, payload, QoS,
    packet id, 0 for QoS 0) and every other packet as (type, flags, body).
    """

    def __init__(self, level: int) -> None:
        self.v5 = level == V5
        #: Bytes of an incomplete packet, how many there are and how many it needs (joined
        #: only once it is complete, so a large packet in many reads is copied once).
        self._parts: list[bytes] = []
        self._have = self._need = 0

    def feed(self, data: bytes) -> tuple[
        list[bytes], list[bytes], list[int], list[int], list[tuple[int, int, bytes]]
    ]:
        if self._parts:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return [], [], [], [], []
            data, self._parts = b"".join(self._parts), []
        topics: list[bytes] = []
        payloads: list[bytes] = []
        qos_of: list[int] = []
        ids: list[int] = []
        others: list[tuple[int, int, bytes]] = []
        pos, end, v5 = 0, len(data), self.v5
        need = 2  # bytes from pos for the next packet, once known
        while pos + 2 <= end:
            first = data[pos]
            length = data[pos + 1]
            if length < 0x80:
                start = pos + 2
            else:
                try:
                    length, start = read_varint(data, pos + 1)
                except IndexError:
                    need = end - pos + 1  # the length itself is incomplete
                    break
            stop = start + length
            if stop > end:
                need = stop - pos
                break
            if first >> 4 == PUBLISH:
                qos = (first >> 1) & 3
                at = start + 2 + ((data[start] << 8) | data[start + 1])
                topic = data[start + 2:at]
                pid = 0
                if qos:
                    pid = (data[at] << 8) | data[at + 1]
                    at += 2
                if v5:
                    n = data[at]
                    if n < 0x80:
                        at += 1 + n
                    else:
                        n, at = read_varint(data, at)
                        at += n
                if at > stop or qos == 3:
                    raise ProtocolError("malformed PUBLISH")
                topics.append(topic)
                payloads.append(data[at:stop])
                qos_of.append(qos)
                ids.append(pid)
            else:
                others.append((first >> 4, first & 0x0F, data[start:stop]))
            pos = stop
        if pos < end:
            self._parts, self._have, self._need = [data[pos:]], end - pos, need
        return topics, payloads, qos_of, ids, others


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching (section 4.7): ``+`` is one level, a final ``#`` this level and
    every one below (``a/#`` matches ``a``); wildcards in the first level do not match topics
    starting with ``$``."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    parts, levels = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(parts):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(parts) == len(levels)
