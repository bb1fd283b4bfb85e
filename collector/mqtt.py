"""MQTT source (aiomqtt 2.x): subscriptions -> payload decoders -> the pipeline.

Delivery: QoS 1 on a persistent session (fixed client id; MQTT 3.1.1 ``clean_session=False``,
MQTT 5 ``clean_start=False`` plus a session-expiry interval), so the broker queues messages
while the collector is away. Messages are acknowledged (PUBACK) only after the pipeline has
committed their readings to DuckDB, so a crash between receipt and write makes the broker
redeliver instead of losing them; redelivered readings are absorbed by the store's
idempotent append. Connection loss is retried forever with capped exponential backoff and
full jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import aiomqtt
import paho.mqtt.client as paho
from dcpue.collector.backoff import Backoff
from dcpue.collector.normalise import MeterIndex
from dcpue.collector.payloads import PayloadDecoder
from dcpue.collector.pipeline import Pipeline
from dcpue.config import ConfigError, Site
from dcpue.config.collector import MqttSettings
from dcpue.core.store import DeadLetter
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

#: Topic -> decoder cache size (topics are finite per site; the bound guards against floods).
_ROUTE_CACHE_MAX = 10_000


@dataclass(slots=True)
class MqttStats:
    """Source counters since start."""

    messages: int = 0
    connected: bool = False
    connects: int = 0
    connection_errors: int = 0
    last_error: str = ""


def subscription_topic(settings: MqttSettings, topic: str) -> str:
    """The filter sent to the broker: ``$share/GROUP/topic`` when a shared group is set."""
    return f"$share/{settings.shared_group}/{topic}" if settings.shared_group else topic


def make_client(settings: MqttSettings) -> aiomqtt.Client:
    """An aiomqtt client with the persistent-session, TLS and credential settings applied."""
    v5 = settings.protocol == "5"
    properties = None
    if v5:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = settings.session_expiry_s
        # Unacknowledged messages the broker may send ahead: room for a few ack batches,
        # so it keeps sending while one batch is being committed.
        properties.ReceiveMaximum = min(65_535, max(4 * settings.ack_batch, 64))
    tls = settings.tls
    if tls.enabled and tls.insecure:
        log.warning("MQTT %s:%d: TLS host-name verification is off (tls.insecure, lab setups "
                    "only)", settings.host, settings.port)
    return aiomqtt.Client(
        settings.host,
        settings.port,
        identifier=settings.client_id,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        clean_session=None if v5 else False,
        clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
        properties=properties,
        keepalive=settings.keepalive_s,
        username=settings.username,
        password=settings.password(),
        tls_params=aiomqtt.TLSParameters(
            ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file
        ) if tls.enabled else None,
        tls_insecure=tls.insecure if tls.enabled else None,
    )


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
        self._cache: dict[str, PayloadDecoder | None] = {}
        self._unacked: list[int] = []

    # -- message handling (no I/O) ----------------------------------------------------------
    def _decoder(self, name: str) -> PayloadDecoder | None:
        if name not in self._cache:
            if len(self._cache) >= _ROUTE_CACHE_MAX:
                self._cache.clear()
            topic = aiomqtt.Topic(name)
            self._cache[name] = next((d for f, d in self.routes if topic.matches(f)), None)
        return self._cache[name]

    def handle(self, topic: str, payload: bytes, received_ms: int) -> None:
        """Decode one message into the pipeline; never raises on bad input."""
        self.stats.messages += 1
        try:
            decoder = self._decoder(topic)
            if decoder is None:
                self.pipeline.reject(DeadLetter(
                    received_ms, "mqtt", topic, "unrouted",
                    "topic matches no configured subscription", payload,
                ))
                return
            readings, letters = decoder.decode_any(payload, topic, received_ms)
        except Exception as exc:  # a decoder bug must not stop ingestion
            log.exception("mqtt: cannot decode message on %s", topic)
            self.pipeline.reject(DeadLetter(
                received_ms, "mqtt", topic, "internal_error", repr(exc), payload
            ))
            return
        if len(readings):
            self.pipeline.submit(readings)
        if letters:
            self.pipeline.reject_many(letters)

    def _on_message(self, due: asyncio.Event, message: paho.MQTTMessage) -> None:
        """paho's message callback (on the event loop, inside the socket reader): decode at
        once and remember the id for the acknowledgement after commit."""
        try:
            topic = message.topic
        except UnicodeDecodeError:  # the broker checks UTF-8; guard anyway
            topic = message._topic.decode("utf-8", "replace")
        self.handle(topic, message.payload, time.time_ns() // 1_000_000)
        if message.qos > 0:
            self._unacked.append(message.mid)
            if len(self._unacked) >= self.settings.ack_batch:
                due.set()

    # -- connection -------------------------------------------------------------------------
    async def run(self) -> None:
        """Stay connected and consume messages until cancelled."""
        backoff = Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s)
        while True:
            try:
                await self._session(backoff)
            except aiomqtt.MqttError as exc:
                self.stats.connection_errors += 1
                self.stats.last_error = str(exc)
                log.warning("mqtt: %s:%d: %s", self.settings.host, self.settings.port, exc)
            finally:
                self.stats.connected = False
                self._unacked.clear()  # the broker redelivers what the old session did not ack
            await asyncio.sleep(backoff.next())

    async def _session(self, backoff: Backoff) -> None:
        client = make_client(self.settings)
        # Acknowledge only after commit; set before connecting, as a resumed session's queue
        # is delivered straight after CONNACK. Messages are taken from paho's callback
        # directly: aiomqtt's queue costs a task and an event-loop turn per message.
        due = asyncio.Event()
        paho_client = client._client
        paho_client.manual_ack_set(True)
        paho_client.on_message = lambda _c, _u, message: self._on_message(due, message)
        async with client:
            for topic, _ in self.routes:
                granted = await client.subscribe(subscription_topic(self.settings, topic), qos=1)
                if any(getattr(code, "value", code) >= 0x80 for code in granted):
                    raise aiomqtt.MqttError(f"broker refused subscription to {topic!r}")
            self.stats.connected = True
            self.stats.connects += 1
            backoff.reset()
            log.info("mqtt: connected to %s:%d", self.settings.host, self.settings.port)
            acker = asyncio.create_task(self._ack_loop(paho_client, due))
            try:
                async for _ in client.messages:  # returns (raises) only on disconnection
                    pass
            finally:
                acker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acker
                # Commit and acknowledge what arrived on this session while it is still open.
                with contextlib.suppress(Exception):
                    await self._commit_and_ack(paho_client)

    async def _ack_loop(self, paho_client: paho.Client, due: asyncio.Event) -> None:
        """Commit and acknowledge when ``ack_batch`` messages wait or ``ack_interval_s`` has
        passed, whichever is first; receiving goes on while a commit runs."""
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), self.settings.ack_interval_s)
            due.clear()
            try:
                await self._commit_and_ack(paho_client)
            except Exception:
                failures += 1
                if failures == 1:  # once per failure streak, not every 50 ms
                    log.exception("mqtt: commit failed; messages stay unacknowledged")
                await asyncio.sleep(min(5.0, self.settings.ack_interval_s * 2**failures))
                continue
            if failures:
                log.info("mqtt: commit works again after %d failed attempts", failures)
                failures = 0

    async def _commit_and_ack(self, paho_client: paho.Client) -> None:
        mids, self._unacked = self._unacked, []
        if not mids:
            return
        try:
            await self.pipeline.commit()
        except BaseException:
            self._unacked[:0] = mids
            raise
        for mid in mids:
            paho_client.ack(mid, 1)
