"""Collector settings: MQTT, Modbus TCP, the local pipeline and the remote sink.

Owned by :mod:`dcpue.collector`. Every field has a default so a site file without a
``[collector]`` block stays valid (then no MQTT subscription and no remote sink are active).
"""

from __future__ import annotations

import os
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dcpue.config.base import Section
from dcpue.config.modbus import ModbusSettings
from dcpue.core.jsonpath import JsonPathError, compile_path
from dcpue.core.units import SANITY_RANGES
from pydantic import Field, field_validator, model_validator


def _check_bounds(name: str, low_s: float, high_s: float) -> None:
    if low_s > high_s:
        raise ValueError(f"{name}_min_s ({low_s} s) exceeds {name}_max_s ({high_s} s)")


def _zone(value: str | None) -> str | None:
    """``value`` if None or an IANA time-zone name, else ValueError."""
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
    return value


class PayloadFormat(StrEnum):
    """How the JSON payloads of one subscription are laid out.

    ``reading``: one object ``{"meter", "value", "unit"?, "ts"?}``.
    ``batch``: an array of such objects, ``{"readings": [...], "ts"?}``, or a map
    ``{meter_id: value, ..., "ts"?}``.
    ``gateway``: arbitrary JSON; ``paths`` maps each meter id to a JSON path such as
    ``$.data.pdu[2].kw``.
    """

    READING = "reading"
    BATCH = "batch"
    GATEWAY = "gateway"


class Subscription(Section):
    """One MQTT topic filter and how to read its payloads."""

    topic: str = Field(min_length=1)
    format: PayloadFormat = PayloadFormat.BATCH
    #: ``gateway`` format: meter id -> JSON path of its value.
    paths: dict[str, str] = Field(default_factory=dict)
    #: ``gateway`` format: meter id -> unit of the value at its path (default: the meter's unit).
    units: dict[str, str] = Field(default_factory=dict)
    #: ``gateway`` format: JSON path of the device timestamp (default: receive time).
    ts_path: str | None = None
    #: IANA zone of device timestamps without a UTC offset (Tasmota's ``Time``); default the
    #: site's ``timezone``.
    timezone: str | None = None

    _known_zone = field_validator("timezone")(_zone)

    @field_validator("topic")
    @classmethod
    def _filter(cls, topic: str) -> str:
        if topic.startswith("$share/"):
            raise ValueError("give the plain topic; set mqtt.shared_group for $share/GROUP/")
        return topic

    @model_validator(mode="after")
    def _gateway_paths(self) -> Subscription:
        if (self.format is PayloadFormat.GATEWAY) != bool(self.paths):
            raise ValueError("paths are required for format 'gateway' and only for it")
        unmapped = sorted(set(self.units) - set(self.paths))
        if unmapped:
            raise ValueError(f"units given for meters without a path: {', '.join(unmapped)}")
        for path in (*self.paths.values(), *([self.ts_path] if self.ts_path else [])):
            try:
                compile_path(path)
            except JsonPathError as exc:
                raise ValueError(str(exc)) from None
        return self


class TlsSettings(Section):
    """TLS towards the broker (files in PEM)."""

    enabled: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    #: Skip broker host-name verification (test rigs only).
    insecure: bool = False


class MqttSettings(Section):
    """The MQTT source: broker, session and subscriptions.

    The session is persistent (fixed ``client_id``; MQTT 3.1.1 clean session off, MQTT 5
    clean start off with ``session_expiry_s``) so QoS 1 messages published while the
    collector is down are delivered when it returns.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(default="dcpue-collector", min_length=1, max_length=64)
    protocol: str = Field(default="5", pattern=r"^(3\.1\.1|5)$")
    username: str | None = None
    #: Name of the environment variable that holds the password (never the password itself).
    password_env: str | None = None
    tls: TlsSettings = TlsSettings()
    #: MQTT shared-subscription group: topics become ``$share/GROUP/topic``.
    shared_group: str | None = Field(default=None, pattern=r"^[^/#+]+$")
    #: MQTT 5 session expiry in s: how long the broker keeps the session while we are away.
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    keepalive_s: int = Field(default=30, ge=5)
    #: Payloads larger than this many bytes are dead-lettered unparsed.
    max_payload_bytes: int = Field(default=1_048_576, ge=64)
    #: Messages are acknowledged only after their readings are in DuckDB; at most this many
    #: wait for one commit (MQTT 5: the broker may send 4x this unacknowledged; MQTT 3.1.1:
    #: the broker's max_inflight_messages caps it, Mosquitto default 20).
    ack_batch: int = Field(default=2000, ge=1)
    #: Longest a received message waits for its commit and acknowledgement, in s.
    ack_interval_s: float = Field(default=0.05, gt=0)
    #: Stall watchdog: a connection on which nothing progresses this long while messages
    #: wait for their acknowledgement is ended and reconnected (nothing is lost), in s.
    stall_timeout_s: float = Field(default=30.0, gt=0)
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    subscriptions: list[Subscription] = Field(default_factory=list)

    @model_validator(mode="after")
    def _backoff_bounds(self) -> MqttSettings:
        _check_bounds("reconnect", self.reconnect_min_s, self.reconnect_max_s)
        return self

    def password(self) -> str | None:
        """The password from ``password_env`` (None if unset)."""
        return os.environ.get(self.password_env) if self.password_env else None


class PipelineSettings(Section):
    """Batching of accepted readings into the embedded DuckDB store."""

    #: Flush when this many readings are buffered.
    batch_size: int = Field(default=20_000, ge=1)
    #: Flush buffered readings at least this often, in s.
    max_age_s: float = Field(default=1.0, gt=0)


class RemoteSettings(Section):
    """Remote InfluxDB-compatible sink (line protocol to ``/api/v2/write``), fed by cursor.

    Empty ``url`` disables it. ``token_env`` names the environment variable holding the API
    token. Works with InfluxDB 2.x/3.x and VictoriaMetrics (run VictoriaMetrics with
    ``-dedup.minScrapeInterval=1ms`` so replays overwrite instead of duplicating). An
    ``https://`` server's certificate and host name are verified against the system trust
    store plus ``ca_file`` (PEM, e.g. a private CA) unless ``tls_verify = false``, an explicit
    opt-out for lab setups that is logged.
    """

    url: str = ""
    #: PEM file of the CA that signed the server's certificate, trusted besides the system store.
    ca_file: str | None = None
    #: False: verify neither certificate nor host name (lab setups only; logged at start).
    tls_verify: bool = True
    org: str = "dcpue"
    bucket: str = "dcpue"
    token_env: str | None = None
    measurement: str = Field(default="dcpue", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    gzip: bool = True
    #: Readings per HTTP write.
    batch_size: int = Field(default=5000, ge=1)
    #: Poll the local store for new readings this often when idle, in s.
    interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    retry_min_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    #: Cursor name in the store (one per remote, so two remotes advance independently).
    cursor: str = "remote"

    @model_validator(mode="after")
    def _backoff_bounds(self) -> RemoteSettings:
        _check_bounds("retry", self.retry_min_s, self.retry_max_s)
        return self

    def token(self) -> str | None:
        return os.environ.get(self.token_env) if self.token_env else None


class ValidationSettings(Section):
    """What every reading must satisfy before it is stored (any source, ``dcpue import`` too).

    A timestamp must lie within ``max_age_days`` before and ``max_future_skew_s`` after the
    time the reading was received; a value within its quantity's plausible range
    (:data:`dcpue.core.units.SANITY_RANGES`, canonical units), which ``ranges`` overrides per
    quantity, e.g. ``ranges = { temperature = [-40, 90] }``.
    """

    max_future_skew_s: float = Field(default=300.0, ge=0, le=366 * 86400, allow_inf_nan=False)
    max_age_days: float = Field(default=3660.0, gt=0, le=36_600, allow_inf_nan=False)
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)

    @field_validator("ranges")
    @classmethod
    def _known_ranges(cls, ranges: dict[str, tuple[float, float]]) -> dict:
        for quantity, (low, high) in ranges.items():
            if quantity not in SANITY_RANGES:
                raise ValueError(
                    f"unknown quantity {quantity!r}; known: {', '.join(sorted(SANITY_RANGES))}"
                )
            if not low <= high:
                raise ValueError(f"range of {quantity}: {low} > {high}")
        return ranges


class CollectorSettings(Section):
    """Where readings come from and where they go."""

    validation: ValidationSettings = ValidationSettings()
    modbus: ModbusSettings = ModbusSettings()
    mqtt: MqttSettings = MqttSettings()
    pipeline: PipelineSettings = PipelineSettings()
    remote: RemoteSettings = RemoteSettings()
