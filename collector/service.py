"""The reusable :class:`Collector`: sources -> pipeline -> DuckDB, and DuckDB -> remote.

``dcpue collect`` runs one on its own; the daemon embeds one with its own store::

    async with Collector(site, store) as collector:
        ...                       # collector.stats() for /metrics
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcpue.collector.backoff import Backoff
from dcpue.collector.mqtt import MqttSource
from dcpue.collector.normalise import MeterIndex
from dcpue.collector.pipeline import Pipeline
from dcpue.collector.remote import Forwarder
from dcpue.config import Site
from dcpue.core.store import Store

if TYPE_CHECKING:
    from dcpue.collector.modbus import DeviceStatus, ModbusPoller

log = logging.getLogger(__name__)
#: A source that ran this long before failing was healthy: its restart backoff starts afresh.
HEALTHY_S = 60.0
#: How often the collector checks whether store writes fail (s).
WATCH_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class CollectorStats:
    """A snapshot of the collector's counters (counts since start unless stated)."""

    readings_in: int
    readings_stored: int
    duplicates: int
    #: Dead letters since start, by reason code.
    dead_letters: dict[str, int]
    #: Newest reading timestamp per meter, UTC epoch ms.
    last_ts_ms: dict[str, int]
    #: Readings or dead letters received but not yet written to DuckDB.
    pending: int
    mqtt_connected: bool
    mqtt_messages: int
    #: MQTT connections the stall watchdog renewed since start.
    mqtt_stalls: int
    #: Readings stored locally but not yet confirmed by the remote (None: no remote sink).
    backlog: int | None
    remote_written: int
    remote_errors: int
    sources: tuple[str, ...]
    #: Per Modbus device: state, failures, backoff (empty without Modbus devices).
    modbus: tuple[DeviceStatus, ...]


class Collector:
    """Runs the configured sources, the DuckDB pipeline and the remote forwarder.

    Args:
        site: the site; ``site.collector`` says which sources and sinks are active.
        store: the store to write into (opened from ``site.store.path`` and closed on exit
            when omitted).
        remote: set False to run without the remote sink even if one is configured.
    """

    def __init__(self, site: Site, store: Store | None = None, *, remote: bool = True) -> None:
        self.site = site
        self._own_store = store is None
        self.store = store if store is not None else Store(site.store.path)
        settings = site.collector
        self.forwarder = (
            Forwarder(self.store, site, settings.remote) if remote and settings.remote.url else None
        )
        self.pipeline = Pipeline(
            self.store, settings.pipeline, self.forwarder.wake if self.forwarder else None
        )
        index = MeterIndex(site)
        self.mqtt = MqttSource(site, self.pipeline, index) if settings.mqtt.subscriptions else None
        self.modbus: ModbusPoller | None = None
        if settings.modbus.active_devices:
            from dcpue.collector.modbus import ModbusPoller  # pymodbus only when polling

            self.modbus = ModbusPoller(site, self.pipeline)
        self._sources: list[asyncio.Task[None]] = []
        self._forwarding: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._commits_seen = 0
        self._errors_at_success = 0

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(n for n, s in (("mqtt", self.mqtt), ("modbus", self.modbus)) if s)

    async def start(self) -> None:
        """Start the pipeline, the sources and the forwarder as background tasks."""
        await self.pipeline.__aenter__()
        for name, source in (("mqtt", self.mqtt), ("modbus", self.modbus)):
            if source is not None:
                self._sources.append(asyncio.create_task(_supervise(name, source.run), name=name))
        if self.forwarder is not None:
            self._forwarding = asyncio.create_task(
                _supervise("remote", self.forwarder.run), name="remote"
            )
        self._watching = asyncio.create_task(self._watch(), name="store-watch")

    @property
    def store_failing(self) -> int:
        """Failed store writes since the last successful one while readings wait (e.g. a full
        disk: nothing is acknowledged, the broker keeps the messages); 0 when writing works."""
        p = self.pipeline.stats
        if p.commits != self._commits_seen:
            self._commits_seen, self._errors_at_success = p.commits, p.commit_errors
        failed = p.commit_errors - self._errors_at_success
        return failed if failed and self.pipeline.pending else 0

    async def _watch(self) -> None:
        """Log once when store writes start failing and once when they work again."""
        failing = False
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            now = bool(self.store_failing)
            if now and not failing:
                log.error("store %s: writes failing (disk full?); %d readings held in memory, "
                          "nothing acknowledged until writes work again", self.store.path,
                          self.pipeline.pending)
            elif failing and not now:
                log.warning("store %s: writes work again; collecting resumed", self.store.path)
            failing = now

    async def stop(self) -> None:
        """Stop sources, write everything received, stop forwarding; close an owned store."""
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching
            self._watching = None
        for task in self._sources:
            task.cancel()
        for task in self._sources:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._sources.clear()
        await self.pipeline.__aexit__(None, None, None)
        if self._forwarding is not None and self.forwarder is not None:
            self.forwarder.stop()
            await self._forwarding
            self._forwarding = None
            self.forwarder.close()
        if self._own_store:
            self.store.close()

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def stats(self) -> CollectorStats:
        p = self.pipeline.stats
        f = self.forwarder.stats if self.forwarder else None
        return CollectorStats(
            readings_in=p.readings_in,
            readings_stored=p.readings_stored,
            duplicates=p.duplicates,
            dead_letters=dict(p.dead_letters),
            last_ts_ms=dict(p.last_ts_ms),
            pending=self.pipeline.pending,
            mqtt_connected=bool(self.mqtt and self.mqtt.stats.connected),
            mqtt_messages=self.mqtt.stats.messages if self.mqtt else 0,
            mqtt_stalls=self.mqtt.stats.stalls if self.mqtt else 0,
            backlog=f.backlog if f else None,
            remote_written=f.written if f else 0,
            remote_errors=f.errors if f else 0,
            sources=self.source_names,
            modbus=tuple(self.modbus.status()) if self.modbus else (),
        )


async def _supervise(
    name: str, run: Callable[[], Awaitable[None]], *, backoff: Backoff | None = None,
    healthy_s: float = HEALTHY_S,
) -> None:
    """Run ``run()`` and restart it with backoff if it fails unexpectedly (never on cancel).

    A run that lasted ``healthy_s`` or longer before failing resets the backoff, so a failure
    after hours of service is retried after about a second, not after the cap.
    """
    backoff = backoff or Backoff(1.0, 60.0)
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            await run()
            return
        except Exception:
            if loop.time() - started >= healthy_s:
                backoff.reset()
            delay = backoff.next()
            log.exception("%s: stopped unexpectedly; restarting in %.1f s", name, delay)
            await asyncio.sleep(delay)
