"""The daemon with the digital twin as the site's meters (demo, fast-forward and fault tests).

The twin's readings reach the collector either over MQTT (published by the collector's MQTT
gateway to a broker the collector subscribes to, like field hardware) or, without a broker,
straight into the collector's pipeline. The simulated clock follows the twin: after each chunk
of readings is durable, :class:`~dcpue.service.daemon.SimScheduler` runs the jobs that fell due.
In real time the same loop paces the twin by the wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from dcpue.collector.gateway_mqtt import publish_readings, readings_topic
from dcpue.collector.service import Collector
from dcpue.config.collector import Subscription
from dcpue.config.site import ConfigError, Site
from dcpue.core.readings import ReadingColumns, ms_to_datetime
from dcpue.core.store import Store
from dcpue.optimizer.explore import exploration_schedule
from dcpue.service.daemon import (
    DAY_MS,
    HttpService,
    Runtime,
    SimScheduler,
    SiteLoader,
    bind_api,
    install_reload_handler,
    job_triggers,
    load_schedule,
    log_ready,
    save_schedule,
    wall_clock_ms,
)
from dcpue.twin.energyplus import EnergyPlusFeed
from dcpue.twin.plant import Setpoints
from dcpue.twin.simulator import Twin
from tqdm import tqdm

log = logging.getLogger(__name__)
STATE_TWIN = "service.twin_next_ms"
STATE_TWIN_START = "service.twin_start_ms"
#: Twin steps delivered per chunk while catching up (one day of 1-minute steps): the jobs of
#: the chunk then run in time order, each seeing the readings up to its own fire time.
CHUNK_STEPS = 1440
#: Longest wait for the collector to store a published chunk, in seconds.
INGEST_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Fault:
    """Chiller efficiency loss injected in the twin from ``at_ms`` on (0.15 = 15 % more power)."""

    chiller_degradation: float
    at_ms: int


class TwinFeed:
    """The twin, resumed at the position stored by a previous run (counters stay continuous).

    For its first ``commission_days`` the twin follows a commissioning sweep (the optimizer's
    exploration schedule: every setpoint drawn within its hard bounds and held a while), as a
    real site does before its optimizer is trusted; afterwards it runs at its configured
    setpoints, so proposals show what the learned model would save.
    """

    def __init__(self, site: Site, store: Store, fault: Fault | None = None,
                 start: datetime | None = None, commission_days: float = 0.0) -> None:
        saved_start = store.get_state(STATE_TWIN_START)
        if saved_start is not None:
            start = ms_to_datetime(int(saved_start))
        self.twin = Twin(site, start=start)
        self.store, self.fault = store, fault
        self.step_ms = self.twin.step_s * 1000
        sweep_steps = round(commission_days * DAY_MS / self.step_ms)
        ts = self.twin.start_ms + np.arange(sweep_steps, dtype=np.int64) * self.step_ms
        self.sweep = exploration_schedule(ts, site.optimizer, seed=self.twin.seed)
        self.sweep_steps = sweep_steps
        saved = store.get_state(STATE_TWIN)
        if saved is not None:
            self._skip_to(int(saved))

    @property
    def now_ms(self) -> int:
        """Time of the next step (UTC ms)."""
        return self.twin.now_ms

    def _phase(self, n: int) -> tuple[int, Setpoints | None]:
        """How many of the next ``n`` steps share one fault state and setpoint regime (at least
        one), with the fault state applied, and their setpoints (None: the twin's own)."""
        k, f = n, self.fault
        if f is not None:
            faulty = self.now_ms >= f.at_ms
            self.twin.chiller_degradation = f.chiller_degradation if faulty else 0.0
            if not faulty:
                k = min(k, -(-(f.at_ms - self.now_ms) // self.step_ms))
        i = self.twin.next_step
        if i >= self.sweep_steps:
            return max(1, k), None
        k = max(1, min(k, self.sweep_steps - i))
        return k, Setpoints(**{c: v[i : i + k] for c, v in self.sweep.items()})

    def _skip_to(self, target_ms: int) -> None:
        """Advance silently (no readings) so counters and battery match an uninterrupted run."""
        while (n := (target_ms - self.now_ms) // self.step_ms) > 0:
            k, setpoints = self._phase(n)
            self.twin.simulate(k, setpoints)

    def next(self, n: int) -> ReadingColumns:
        """Readings of the next ``n`` steps."""
        parts = []
        while n > 0:
            k, setpoints = self._phase(n)
            parts += list(
                self.twin.run(k * self.twin.step_s / 86400, setpoints=setpoints, chunk_days=k)
            )
            n -= k
        return ReadingColumns.concat(parts)

    def save(self) -> None:
        self.store.set_state(STATE_TWIN_START, str(self.twin.start_ms))
        self.store.set_state(STATE_TWIN, str(self.now_ms))


def subscribe_to_twin(site: Site, host: str, port: int) -> None:
    """Point the collector at ``host:port`` with a batch subscription to the twin's topic."""
    mqtt = site.collector.mqtt
    mqtt.host, mqtt.port = host, port
    topic = readings_topic(site).rsplit("/", 1)[0] + "/#"
    if not any(s.topic == topic for s in mqtt.subscriptions):
        mqtt.subscriptions.append(Subscription(topic=topic))


async def deliver(site: Site, collector: Collector, cols: ReadingColumns, via_mqtt: bool) -> None:
    """Hand a chunk to the collector and return once it is in the store."""
    pipeline = collector.pipeline
    if not via_mqtt:
        pipeline.submit(cols)  # columns straight into the store: no per-reading objects
        await pipeline.commit()
        return
    mqtt = site.collector.mqtt
    loop = asyncio.get_running_loop()
    deadline = loop.time() + INGEST_TIMEOUT_S
    # Until the collector has subscribed, a new broker session would drop what we publish.
    while not collector.stats().mqtt_connected and loop.time() < deadline:
        await asyncio.sleep(0.02)
    await publish_readings(site, [cols], mqtt.host, mqtt.port, client_id=f"{site.id}-twin")
    last = int(cols.ts_ms.max())
    meters = set(cols.meter.tolist())
    while True:
        await pipeline.commit()
        seen = pipeline.stats.last_ts_ms
        if all(seen.get(m, -1) >= last for m in meters):
            return
        if loop.time() > deadline:
            log.warning("collector did not store the twin chunk ending %s within %.0f s",
                        ms_to_datetime(last).isoformat(), INGEST_TIMEOUT_S)
            return
        await asyncio.sleep(0.02)


class SimClock:
    """The daemon's clock in fast-forward: set by the loop, read by jobs and the API."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def __call__(self) -> int:
        return self.now


async def run_with_twin(
    site: Site, store: Store, stop: asyncio.Event, *, days: float | None,
    via_mqtt: bool, fault: Fault | None = None, start: datetime | None = None,
    serve_after: bool = False, port: int | None = None, commission_days: float = 0.0,
    load: SiteLoader | None = None,
) -> Runtime:
    """Run the daemon fed by the twin.

    ``days``: fast-forward as fast as possible until the twin is ``days`` after its start (a
    restarted run continues to the same end), then keep serving the API on the frozen clock
    until ``stop`` if ``serve_after``; None: real time until ``stop``, the twin first catching
    up as fast as possible from ``start`` (or its stored position) to the wall clock, then paced
    by it. The daemon's clock is the twin's: the fire time of the last job run. A progress bar
    shows on a terminal. Returns the runtime after a clean shutdown.
    """
    realtime = days is None
    sock = bind_api(site, port)
    if site.twin.engine == "energyplus":
        if fault is not None:
            raise ConfigError("--chiller-degradation needs the native twin, not EnergyPlus")
        feed = await asyncio.to_thread(EnergyPlusFeed, site, store, days=days or 366.0,
                                       start=start)
    else:
        feed = await asyncio.to_thread(TwinFeed, site, store, fault, start, commission_days)
    clock = SimClock(feed.now_ms - feed.step_ms)
    collector = Collector(site, store)
    await collector.start()
    # Store reads (state, calculator restore) in a worker thread: the loop only routes.
    runtime = await asyncio.to_thread(Runtime, site, store, clock, collector, hold_future=True)
    runtime.save_each_job = False  # saved once per chunk below
    runtime.proposal_log.hold = days is not None  # (fast-forward) proposals too
    runtime.clock_mode = "catching-up" if days is None else "fast-forward"

    async def run_job(name: str, fire_ms: int) -> None:
        clock.now = fire_ms
        await runtime.run_job(name, fire_ms)

    def run_chunk(until_ms: int) -> list[Awaitable[object]]:
        """The chunk's jobs in one worker thread (no thread hop per simulated minute)."""
        follow_ups = []
        for name, fire_ms in scheduler.due(until_ms):
            clock.now = fire_ms
            follow_up = runtime.run_job_sync(name, fire_ms)
            if follow_up is not None:
                follow_ups.append(follow_up)
        _save_chunk(runtime, scheduler)
        return follow_ups

    scheduler = SimScheduler(job_triggers(site), run_job, clock.now,
                             await asyncio.to_thread(load_schedule, store))
    if load is not None:
        install_reload_handler(runtime, load,
                               lambda s: setattr(scheduler, "triggers", job_triggers(s)))
    http = await asyncio.to_thread(HttpService, runtime, sock)
    http.start()
    end_ms = None if realtime else feed.twin.start_ms + round(days * DAY_MS)
    target = end_ms if end_ms is not None else wall_clock_ms()
    bar = tqdm(total=max(0, (target - feed.now_ms) // feed.step_ms), unit="step",
               unit_scale=True, file=sys.stderr, disable=not sys.stderr.isatty(),
               desc=f"{site.id}: {'fast-forward' if end_ms else 'catching up'}")
    log_ready(runtime, "fast-forward" if end_ms else "twin in real time")
    live = False
    ahead: asyncio.Future[ReadingColumns] | None = None  # the next chunk, being simulated
    ahead_n = 0
    try:
        while not stop.is_set():
            if end_ms is not None:
                n = min(CHUNK_STEPS, (end_ms - feed.now_ms) // feed.step_ms)
                if n <= 0 and ahead is None:
                    break
            else:
                n = min(CHUNK_STEPS, (wall_clock_ms() - feed.now_ms) // feed.step_ms + 1)
                if n <= 0:
                    if not live:
                        live = True
                        runtime.clock_mode = "wall"
                        bar.close()
                        log.info("caught up with the wall clock: running live")
                    wait_s = (feed.now_ms - wall_clock_ms()) / 1000
                    if not await _stopped(stop, wait_s):
                        continue
                    break
            if ahead is not None:
                n = ahead_n
            # the twin off the event loop
            cols = await (ahead or asyncio.to_thread(feed.next, n))
            await deliver(site, collector, cols, via_mqtt)
            await asyncio.to_thread(feed.save)  # the twin's position: its readings are durable
            # In fast-forward the twin simulates the next chunk while this chunk's jobs run
            # (its steps do not depend on them); it is stored only after they finished.
            ahead, ahead_n = None, 0
            if end_ms is not None and (end_ms - feed.now_ms) // feed.step_ms > 0:
                ahead_n = min(CHUNK_STEPS, (end_ms - feed.now_ms) // feed.step_ms)
                ahead = asyncio.ensure_future(asyncio.to_thread(feed.next, ahead_n))
            for follow_up in await asyncio.to_thread(run_chunk, int(cols.ts_ms.max())):
                await runtime.follow(follow_up)
            bar.update(n)
        bar.close()
        await asyncio.to_thread(runtime.make_deferred_proposals)
        if serve_after:
            runtime.clock_mode = "stopped"
            await stop.wait()
    finally:
        bar.close()
        if ahead is not None:  # stopped meanwhile: let the twin finish (it is not saved)
            await asyncio.wait([ahead])
        await http.stop()
        await collector.stop()
        await asyncio.to_thread(_finish, runtime, feed, scheduler, clock.now)
    return runtime


def _finish(runtime: Runtime, feed: TwinFeed | EnergyPlusFeed, scheduler: SimScheduler,
            now_ms: int) -> None:
    runtime.finish(now_ms)
    save_schedule(runtime.store, scheduler)
    if isinstance(feed, EnergyPlusFeed):
        feed.close()


def _save_chunk(runtime: Runtime, scheduler: SimScheduler) -> None:
    """After a chunk's jobs: figures, alert state and next fire times, together (the twin's
    position was saved once its readings were stored; a restart feeds the calculator what
    was stored after its saved cursor and runs the jobs due after the saved fire times)."""
    runtime.ingest()
    runtime.write_buffer.flush()
    runtime.proposal_log.flush()
    runtime.save_alerts()
    runtime.save_calculator()
    save_schedule(runtime.store, scheduler)


async def _stopped(stop: asyncio.Event, timeout_s: float) -> bool:
    """Whether ``stop`` was set within ``timeout_s``. ``asyncio.timeout``, not ``wait_for``:
    on Python 3.11 ``wait_for`` can swallow a cancellation that arrives as the event fires
    (CPython gh-86296), leaving the caller running after a shutdown."""
    try:
        async with asyncio.timeout(max(0.0, timeout_s)):
            await stop.wait()
    except TimeoutError:
        return False
    return True
