"""The daemon's own health in Prometheus form (``/metrics``).

Counters kept by other components (collector, notifier dispatcher, store) are read at scrape
time through :class:`HealthSnapshot` instead of being mirrored, so there is one source of truth.
Job durations are a real histogram observed by the scheduler wrapper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # pymodbus is imported only when a site polls Modbus
    from dcpue.collector.modbus import DeviceStatus

#: Histogram buckets for scheduled job durations, in seconds.
JOB_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0)


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """Counters at one instant. Times are UTC epoch ms; ``now_ms`` may be simulated time."""

    now_ms: int
    readings_in: Mapping[str, int] = field(default_factory=dict)
    readings_stored: int = 0
    duplicates: int = 0
    dead_letters: Mapping[str, int] = field(default_factory=dict)
    backlog: Mapping[str, int] = field(default_factory=dict)
    pending: int = 0
    #: MQTT connections the collector's stall watchdog renewed.
    mqtt_stalls: int = 0
    last_seen_ms: Mapping[str, int] = field(default_factory=dict)
    alerts_firing: Mapping[str, int] = field(default_factory=dict)
    notifications: Mapping[tuple[str, str], int] = field(default_factory=dict)
    figures: Mapping[str, tuple[float, str]] = field(default_factory=dict)
    modbus: tuple[DeviceStatus, ...] = ()
    #: Age of the newest stored reading (s) while collecting: how far ingestion is behind.
    ingest_lag_s: float = 0.0
    #: The rolling calculator's data-quality counts: readings ignored as too far in the
    #: future, late readings that made it recompute a meter, and current figures in
    #: "data-quality error" status.
    data_quality: Mapping[str, int] = field(default_factory=dict)
    #: Plant-model fits finished by the trainer's worker process, and their CPU seconds.
    model_fits: int = 0
    model_fit_cpu_s: float = 0.0


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], HealthSnapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot()
        readings = CounterMetricFamily(
            "dcpue_readings_received", "Valid readings received since start, by source.",
            labels=["source"],
        )
        for source, n in sorted(s.readings_in.items()):
            readings.add_metric([source], n)
        yield readings
        yield CounterMetricFamily("dcpue_readings_stored",
                                  "Readings added to the embedded store since start.",
                                  value=s.readings_stored)
        yield CounterMetricFamily("dcpue_readings_duplicate",
                                  "Readings already stored (redeliveries) since start.",
                                  value=s.duplicates)
        dead = CounterMetricFamily("dcpue_dead_letters",
                                   "Rejected payloads and readings kept in the store, by reason.",
                                   labels=["reason"])
        for reason, n in sorted(s.dead_letters.items()):
            dead.add_metric([reason], n)
        yield dead
        quality = CounterMetricFamily(
            "dcpue_data_quality", "Data-quality findings of the rolling calculator since start "
            "(future_ignored, late_recomputed) and figures in error now (figures_in_error).",
            labels=["kind"])
        for kind, n in sorted(s.data_quality.items()):
            quality.add_metric([kind], n)
        yield quality
        backlog = GaugeMetricFamily("dcpue_backlog_readings",
                                    "Readings stored locally but not yet forwarded, by sink.",
                                    labels=["sink"])
        for sink, n in sorted(s.backlog.items()):
            backlog.add_metric([sink], n)
        yield backlog
        yield CounterMetricFamily("dcpue_mqtt_stalls",
                                  "MQTT connections renewed by the stall watchdog since start.",
                                  value=s.mqtt_stalls)
        yield GaugeMetricFamily("dcpue_pending_readings",
                                "Readings received but not yet written to the store.",
                                value=s.pending)
        yield GaugeMetricFamily("dcpue_ingest_lag_seconds",
                                "Age of the newest stored reading: how far ingestion is behind.",
                                value=s.ingest_lag_s)
        age = GaugeMetricFamily("dcpue_meter_last_reading_age_seconds",
                                "Seconds since the newest reading of each meter.",
                                labels=["meter"])
        for meter, ts in sorted(s.last_seen_ms.items()):
            age.add_metric([meter], max(0.0, (s.now_ms - ts) / 1000.0))
        yield age
        firing = GaugeMetricFamily("dcpue_alerts_firing", "Alerts firing now, by severity.",
                                   labels=["severity"])
        for severity in ("info", "warning", "critical"):
            firing.add_metric([severity], s.alerts_firing.get(severity, 0))
        yield firing
        sent = CounterMetricFamily("dcpue_notifications", "Notification attempts by outcome.",
                                   labels=["notifier", "outcome"])
        for (name, outcome), n in sorted(s.notifications.items()):
            sent.add_metric([name, outcome], n)
        yield sent
        figures = GaugeMetricFamily("dcpue_figure",
                                    "Current rolling figures (e.g. pue.1h), in their own unit.",
                                    labels=["name", "unit"])
        for name, (value, unit) in sorted(s.figures.items()):
            figures.add_metric([name, unit], value)
        yield figures
        yield CounterMetricFamily("dcpue_model_fits", "Plant-model fits finished since start.",
                                  value=s.model_fits)
        yield CounterMetricFamily("dcpue_model_fit_cpu_seconds",
                                  "CPU seconds of those fits (in the trainer's worker process).",
                                  value=s.model_fit_cpu_s)
        yield from _modbus_families(s.modbus)


def _modbus_families(devices: tuple[DeviceStatus, ...]) -> Iterator[Metric]:
    """Per-device Modbus health: up, consecutive failures, polls by outcome."""
    up = GaugeMetricFamily("dcpue_modbus_device_up",
                           "1 while the device answers its polls, 0 while failing.",
                           labels=["device"])
    failures = GaugeMetricFamily("dcpue_modbus_consecutive_failures",
                                 "Failed polls in a row (drives the backoff).", labels=["device"])
    polls = CounterMetricFamily("dcpue_modbus_polls", "Poll-group reads by outcome.",
                                labels=["device", "outcome"])
    for d in devices:
        up.add_metric([d.name], 1.0 if d.state == "ok" else 0.0)
        failures.add_metric([d.name], d.consecutive_failures)
        polls.add_metric([d.name, "ok"], d.polls_ok)
        polls.add_metric([d.name, "failed"], d.polls_failed)
    yield up
    yield failures
    yield polls


class Telemetry:
    """A private registry with the snapshot collector and the job-duration histogram."""

    def __init__(self, snapshot: Callable[[], HealthSnapshot]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_SnapshotCollector(snapshot))
        self.job_seconds = Histogram(
            "dcpue_job_duration_seconds", "Wall-clock duration of scheduled jobs.", ["job"],
            registry=self.registry, buckets=JOB_BUCKETS,
        )
        self.job_runs = Counter(
            "dcpue_job_runs", "Scheduled job runs by outcome.", ["job", "outcome"],
            registry=self.registry,
        )
