"""MQTT source: a lean asyncio subscriber -> payload decoders -> the pipeline.

Delivery: QoS 1 on a persistent session (fixed client id; MQTT 3.1.1 clean session off,
MQTT 5 clean start off plus a session-expiry interval), so the broker queues messages while
the collector is away. Messages are acknowledged (PUBACK) only after the pipeline has
committed their readings to DuckDB, so a crash between receipt and write makes the broker
redeliver instead of losing them; redelivered readings are absorbed by the store's
idempotent append. Connection loss is retried forever with capped exponential backoff and
full jitter.

The receive path is hand-written (:mod:`dcpue.collector.mqtt_wire`) because paho's cost per
packet (three ``recv`` calls, a properties object, a callback) bounded one-reading messages
below the ingest goal (``bench/ingest.py``): each socket read (up to 256 KiB) is cut into all
the PUBLISH packets it holds, their payloads are decoded per topic as one batch stamped with
one receive time, and the acknowledgements of a commit go out in one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from dcpue.collector.backoff import Backoff
from dcpue.collector.mqtt_wire import (
    CONNACK,
    DISCONNECT,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PINGRESP,
    PUBACK_BYTE,
    PUBCOMP_BYTE,
    PUBREC_BYTE,
    PUBREL,
    SUBACK,
    V5,
    V311,
    PacketReader,
    ProtocolError,
    acks,
    connect,
    disconnect_reason,
    parse_connack,
    parse_suback,
    subscribe,
    topic_matches,
)
from dcpue.collector.normalise import MeterIndex
from dcpue.collector.payloads import PayloadDecoder
from dcpue.collector.pipeline import Pipeline
from dcpue.config import ConfigError, Site
from dcpue.config.collector import MqttSettings
from dcpue.core.store import DeadLetter

log = logging.getLogger(__name__)

#: Topic -> decoder cache size (topics are finite per site; the bound guards against floods).
_ROUTE_CACHE_MAX = 10_000
#: Seconds for TCP/TLS set-up, CONNACK and SUBACK each.
_HANDSHAKE_TIMEOUT_S = 10.0
#: Seconds to wait for the last acknowledgements and DISCONNECT to leave on shutdown.
_CLOSE_TIMEOUT_S = 1.0

PublishHandler = Callable[
    ["BrokerConnection", list[bytes], list[bytes], list[int], list[int], int], None
]


class MqttError(Exception):
    """The broker refused us, broke the protocol, or the connection was lost."""


@dataclass(slots=True)
class MqttStats:
    """Source counters since start."""

    messages: int = 0
    connected: bool = False
    connects: int = 0
    connection_errors: int = 0
    last_error: str = ""
    #: Connections the stall watchdog ended (see :meth:`MqttSource._watchdog`).
    stalls: int = 0


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """How to reach the broker: address, protocol level, CONNECT packet, TLS context."""

    host: str
    port: int
    level: int
    keepalive_s: int
    connect: bytes
    ssl: ssl.SSLContext | None


def subscription_topic(settings: MqttSettings, topic: str) -> str:
    """The filter sent to the broker: ``$share/GROUP/topic`` when a shared group is set."""
    return f"$share/{settings.shared_group}/{topic}" if settings.shared_group else topic


def make_client(settings: MqttSettings) -> ClientSpec:
    """The connection with the persistent-session, TLS and credential settings applied."""
    level = V5 if settings.protocol == "5" else V311
    context = None
    tls = settings.tls
    if tls.enabled:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.insecure:  # the certificate is still verified, only not its host name
            log.warning("MQTT %s:%d: TLS host-name verification is off (tls.insecure, lab "
                        "setups only)", settings.host, settings.port)
            context.check_hostname = False
    packet = connect(
        level, settings.client_id, settings.keepalive_s, username=settings.username,
        password=settings.password(), session_expiry_s=settings.session_expiry_s,
        receive_maximum=receive_maximum(settings),
    )
    return ClientSpec(settings.host, settings.port, level, settings.keepalive_s, packet, context)


def receive_maximum(settings: MqttSettings) -> int:
    """Unacknowledged messages the broker may send ahead (MQTT 5): room for a few ack
    batches, so it keeps sending while one batch is being committed."""
    return min(65_535, max(4 * settings.ack_batch, 64))


class BrokerConnection(asyncio.Protocol):
    """One TCP (or TLS) connection: cuts what arrives into packets, hands each read's PUBLISH
    packets to ``on_publish`` at once, and remembers which wait for their acknowledgement."""

    def __init__(self, level: int, on_publish: PublishHandler) -> None:
        loop = asyncio.get_running_loop()
        self.level = level
        self.reader = PacketReader(level)
        self.on_publish = on_publish
        self.transport: asyncio.Transport | None = None
        #: Why the connection ended (set once).
        self.closed: asyncio.Future[str] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.connack: asyncio.Future[bytes] = loop.create_future()
        self.suback: asyncio.Future[bytes] = loop.create_future()
        #: Packet ids received with QoS 1 (PUBACK due) and QoS 2 (PUBREC due), not yet acked.
        self.unacked: list[int] = []
        self.unreceived: list[int] = []
        #: Of those, how many a commit under way has taken (acknowledged when it returns).
        self.committing = 0
        self.last_sent = loop.time()
        self.ping_sent: float | None = None
        #: For the stall watchdog: loop time of the last PUBLISH received or acknowledgement
        #: written, and of the arrival of the oldest message waiting for its acknowledgement;
        #: whether the broker's window (receive maximum) was full since the last
        #: acknowledgement, and whether it was before that one.
        self.progressed = loop.time()
        self.held_since: float | None = None
        self.window_full = self.full_before_ack = False

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        received_ms = time.time_ns() // 1_000_000
        try:
            topics, payloads, qos, ids, others = self.reader.feed(data)
        except (ProtocolError, IndexError) as exc:
            self.fail(f"malformed packet from the broker: {exc}")
            return
        if topics:
            self.progressed = asyncio.get_running_loop().time()
            self.on_publish(self, topics, payloads, qos, ids, received_ms)
        for kind, _flags, body in others:
            if kind == CONNACK and not self.connack.done():
                self.connack.set_result(body)
            elif kind == SUBACK and not self.suback.done():
                self.suback.set_result(body)
            elif kind == PINGRESP:
                self.ping_sent = None
            elif kind == PUBREL:  # QoS 2, last step: the broker has our PUBREC
                self.write(acks(PUBCOMP_BYTE, [int.from_bytes(body[:2], "big")]))
            elif kind == DISCONNECT:
                self.fail(disconnect_reason(body))

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(f"connection lost: {exc}" if exc else "connection closed by the broker")
        if not self.lost.done():
            self.lost.set_result(None)

    # -- use --------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return not self.closed.done() and self.transport is not None

    @property
    def outstanding(self) -> int:
        """Messages received and not yet acknowledged (the broker counts them in flight)."""
        return self.committing + len(self.unacked) + len(self.unreceived)

    def write(self, data: bytes) -> None:
        if self.is_open:
            self.transport.write(data)
            self.last_sent = asyncio.get_running_loop().time()

    def fail(self, reason: str) -> None:
        self._end(reason)
        if self.transport is not None:
            self.transport.close()

    def _end(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)

    async def expect(self, answer: asyncio.Future[bytes], what: str) -> bytes:
        """The body of the packet ``answer`` waits for; MqttError if the connection ends or
        it does not come in time."""
        await asyncio.wait([answer, self.closed], timeout=_HANDSHAKE_TIMEOUT_S,
                           return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            return answer.result()
        raise MqttError(self.closed.result() if self.closed.done()
                        else f"no {what} within {_HANDSHAKE_TIMEOUT_S:.0f} s")

    async def close(self) -> None:
        """Send DISCONNECT (the session stays on the broker) and wait, bounded, until what
        was written has left."""
        self.write(DISCONNECT_PACKET)
        self.fail("closed by the collector")
        await asyncio.wait([self.lost], timeout=_CLOSE_TIMEOUT_S)

    async def keep_alive(self, keepalive_s: int) -> None:
        """PINGREQ when nothing was sent for half the keep-alive; a PINGRESP missing for a
        whole keep-alive ends the connection (MQTT 3.1.1 and 5, section 3.1.2.10)."""
        loop = asyncio.get_running_loop()
        while self.is_open:
            await asyncio.sleep(keepalive_s / 4)
            now = loop.time()
            if self.ping_sent is not None and now - self.ping_sent > keepalive_s:
                self.fail(f"no PINGRESP within the {keepalive_s} s keep-alive")
            elif self.ping_sent is None and now - self.last_sent >= keepalive_s / 2:
                self.write(PINGREQ_PACKET)
                self.ping_sent = now


class MqttSource:
    """Subscribes to the site's topics and feeds decoded readings into ``pipeline``."""

    def __init__(self, site: Site, pipeline: Pipeline, index: MeterIndex | None = None) -> None:
        self.settings = site.collector.mqtt
        self.pipeline = pipeline
        index = index or MeterIndex(site)
        for sub in self.settings.subscriptions:
            unknown = sorted(set(sub.paths) - set(index.specs))
            if unknown:
                raise ConfigError(
                    f"collector.mqtt subscription {sub.topic!r}: unknown meters {', '.join(unknown)}"
                )
        self.routes = [
            (sub.topic, PayloadDecoder(index, sub, self.settings.max_payload_bytes))
            for sub in self.settings.subscriptions
        ]
        self.stats = MqttStats()
        self._cache: dict[bytes, tuple[str, PayloadDecoder | None]] = {}
        #: Unacknowledged messages the broker may send (MQTT 5 receive maximum).
        self._window = receive_maximum(self.settings)
        #: Failed commits in a row (the acker backs off; the watchdog leaves them alone).
        self._failures = 0

    # -- message handling (no I/O) ----------------------------------------------------------
    def _route(self, raw: bytes) -> tuple[str, PayloadDecoder | None]:
        route = self._cache.get(raw)
        if route is None:
            if len(self._cache) >= _ROUTE_CACHE_MAX:
                self._cache.clear()
            name = raw.decode("utf-8", "replace")  # the broker checks UTF-8; guard anyway
            decoder = next((d for f, d in self.routes if topic_matches(f, name)), None)
            route = self._cache[raw] = (name, decoder)
        return route

    def receive(self, topics: list[bytes], payloads: list[bytes], received_ms: int) -> None:
        """Decode messages received together (one socket read) into the pipeline, one batch
        per topic; never raises on bad input."""
        self.stats.messages += len(payloads)
        by_topic: dict[bytes, list[bytes]] = {}
        for topic, payload in zip(topics, payloads, strict=True):
            group = by_topic.get(topic)
            if group is None:
                by_topic[topic] = [payload]
            else:
                group.append(payload)
        for raw, group in by_topic.items():
            name, decoder = self._route(raw)
            if decoder is None:
                self.pipeline.reject_many(
                    DeadLetter(received_ms, "mqtt", name, "unrouted",
                               "topic matches no configured subscription", payload)
                    for payload in group
                )
                continue
            chunks, letters = decoder.decode_many(group, name, received_ms)
            for chunk in chunks:
                self.pipeline.submit(chunk)
            if letters:
                self.pipeline.reject_many(letters)

    def _on_publish(
        self, conn: BrokerConnection, topics: list[bytes], payloads: list[bytes],
        qos: list[int], ids: list[int], received_ms: int, due: asyncio.Event,
    ) -> None:
        """Decode at once; remember the packet ids for the acknowledgement after commit."""
        try:
            self.receive(topics, payloads, received_ms)
        except Exception as exc:  # a bug past the decoders' guards: dead letters, not a
            # closed connection whose redelivery fails again forever
            log.exception("mqtt: cannot handle %d messages; dead-lettered", len(payloads))
            self.pipeline.reject_many(
                DeadLetter(received_ms, "mqtt", topic.decode("utf-8", "replace"),
                           "internal_error", repr(exc)[:500], payload)
                for topic, payload in zip(topics, payloads, strict=True)
            )
        if qos.count(1) == len(qos):
            conn.unacked += ids
        else:
            for q, packet_id in zip(qos, ids, strict=True):
                if q == 1:
                    conn.unacked.append(packet_id)
                elif q == 2:
                    conn.unreceived.append(packet_id)
        if len(conn.unacked) + len(conn.unreceived) >= self.settings.ack_batch:
            due.set()
        if conn.held_since is None and (conn.unacked or conn.unreceived):
            conn.held_since = conn.progressed
        if conn.outstanding >= self._window:
            conn.window_full = True

    # -- connection -------------------------------------------------------------------------
    async def run(self) -> None:
        """Stay connected and consume messages until cancelled."""
        backoff = Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s)
        while True:
            try:
                await self._session(backoff)
            except (MqttError, OSError) as exc:
                self.stats.connection_errors += 1
                self.stats.last_error = str(exc) or type(exc).__name__
                log.warning("mqtt: %s:%d: %s", self.settings.host, self.settings.port,
                            self.stats.last_error)
            finally:
                self.stats.connected = False  # the broker redelivers what was not acked
            await asyncio.sleep(backoff.next())

    async def _session(self, backoff: Backoff) -> None:
        spec = make_client(self.settings)
        due = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Acknowledge only after commit; the handler is in place before CONNECT, as a resumed
        # session's queue is delivered straight after CONNACK (before SUBACK).
        try:
            async with asyncio.timeout(_HANDSHAKE_TIMEOUT_S):
                _, conn = await loop.create_connection(
                    lambda: BrokerConnection(
                        spec.level, lambda *m: self._on_publish(*m, due=due)),
                    spec.host, spec.port, ssl=spec.ssl,
                    server_hostname=spec.host if spec.ssl else None,
                )
        except TimeoutError:
            raise MqttError(f"no connection within {_HANDSHAKE_TIMEOUT_S:.0f} s") from None
        tasks: list[asyncio.Task[None]] = []
        try:
            conn.write(spec.connect)
            connack = parse_connack(spec.level, await conn.expect(conn.connack, "CONNACK"))
            if connack.reason:
                raise MqttError(f"connection refused: {connack.text}")
            keepalive = connack.keepalive_s if connack.keepalive_s is not None else spec.keepalive_s
            filters = [subscription_topic(self.settings, topic) for topic, _ in self.routes]
            conn.write(subscribe(spec.level, 1, filters))
            _, granted = parse_suback(spec.level, await conn.expect(conn.suback, "SUBACK"))
            refused = [f for f, code in zip(filters, granted, strict=False) if code >= 0x80]
            if refused or len(granted) != len(filters):
                raise MqttError(f"broker refused subscription to {(refused or filters)[0]!r}")
            self.stats.connected = True
            self.stats.connects += 1
            backoff.reset()
            log.info("mqtt: connected to %s:%d", self.settings.host, self.settings.port)
            tasks.append(asyncio.create_task(self._ack_loop(conn, due)))
            tasks.append(asyncio.create_task(self._watchdog(conn)))
            if keepalive:
                tasks.append(asyncio.create_task(conn.keep_alive(keepalive)))
            reason = await asyncio.shield(conn.closed)
            raise MqttError(reason)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # Commit and acknowledge what arrived on this connection while it is still open.
            if conn.is_open:
                with contextlib.suppress(Exception):
                    await self._commit_and_ack(conn)
            await conn.close()

    async def _ack_loop(self, conn: BrokerConnection, due: asyncio.Event) -> None:
        """Commit and acknowledge when ``ack_batch`` messages wait or ``ack_interval_s`` has
        passed, whichever is first; receiving goes on while a commit runs."""
        self._failures = 0
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result of
            # an awaitable that completed just before a cancellation and drops that
            # cancellation (CPython gh-86296); the acker then outlived its connection and
            # the session never ended (the drain that stopped short in bench/ingest.py).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.ack_interval_s):
                    await due.wait()
            due.clear()
            try:
                await self._commit_and_ack(conn)
            except Exception:
                self._failures += 1
                if self._failures == 1:  # once per failure streak, not every 50 ms
                    log.exception("mqtt: commit failed; messages stay unacknowledged")
                await asyncio.sleep(min(5.0, self.settings.ack_interval_s * 2**self._failures))
                continue
            if self._failures:
                log.info("mqtt: commit works again after %d failed attempts", self._failures)
                self._failures = 0

    async def _commit_and_ack(self, conn: BrokerConnection) -> None:
        ones, twos = conn.unacked, conn.unreceived
        if not ones and not twos:
            return
        conn.unacked, conn.unreceived = [], []
        since, conn.held_since = conn.held_since, None
        taken = len(ones) + len(twos)
        conn.committing += taken
        try:
            await self.pipeline.commit()
        except BaseException:
            conn.unacked[:0], conn.unreceived[:0] = ones, twos
            conn.held_since = since
            raise
        finally:
            conn.committing -= taken
        # One write for the whole batch; ids from a connection that has ended are dropped
        # (the broker redelivers those messages on the next one).
        conn.write(acks(PUBACK_BYTE, ones) + acks(PUBREC_BYTE, twos))
        conn.progressed = asyncio.get_running_loop().time()
        conn.full_before_ack, conn.window_full = conn.window_full, conn.outstanding >= self._window

    async def _watchdog(self, conn: BrokerConnection) -> None:
        """End a connection on which nothing progresses for ``stall_timeout_s``: no PUBLISH
        arrived and no acknowledgement left while (a) received messages wait for theirs
        although the store works, or (b) the broker's window was full before our last
        acknowledgement (MQTT 5), so it should have sent more. The session is persistent:
        the broker redelivers what was not acknowledged on the next connection, and a
        reconnect resets its in-flight accounting. Logged once per stall, counted in
        :attr:`MqttStats.stalls`."""
        limit = self.settings.stall_timeout_s
        loop = asyncio.get_running_loop()
        while conn.is_open:
            await asyncio.sleep(min(1.0, limit / 4))
            if conn.committing or self._failures:
                continue  # a running or failing commit is the store's matter, logged there
            now = loop.time()
            held = len(conn.unacked) + len(conn.unreceived)
            if held and conn.held_since is not None and now - conn.held_since >= limit:
                idle, why = now - conn.held_since, f"{held} received messages unacknowledged"
            elif (not held and conn.full_before_ack and conn.level == V5
                  and now - conn.progressed >= limit):
                idle = now - conn.progressed
                why = f"the broker sent nothing after its window of {self._window} was acknowledged"
            else:
                continue
            self.stats.stalls += 1
            with contextlib.suppress(Exception):  # flush what can be: fewer redeliveries
                async with asyncio.timeout(limit):
                    await self._commit_and_ack(conn)
            # The one log line is run()'s, with this reason.
            conn.fail(f"stalled, nothing progressed for {idle:.0f} s: {why}; reconnecting "
                      "(the broker keeps the session)")
