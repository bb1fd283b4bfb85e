"""The long-running daemon: collector, rolling calculator, scheduled jobs, alerts and HTTP API.

One asyncio process. :class:`Runtime` holds the live state of one site and implements the jobs
(write-back, alert evaluation, proposals, retraining, monthly carbon report). Jobs are driven
either by APScheduler's ``AsyncIOScheduler`` on the wall clock, or, in fast-forward, by
:class:`SimScheduler`, which asks the same APScheduler triggers for their fire times on the
simulated clock, so both modes run the same schedule.

Restart safety: readings are only acknowledged (MQTT) after they are durable; the calculator
is rebuilt from the store; alert state, next fire times and the twin position are kept in the
store's state table; write-back and report rows are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from dcpue.carbon.report import site_report
from dcpue.collector.service import Collector
from dcpue.config.service import METER_FIGURE
from dcpue.config.site import Site
from dcpue.core.figures import Figure
from dcpue.core.readings import Reading, ms_to_datetime
from dcpue.core.store import Store
from dcpue.fleet.jobs import publish_job
from dcpue.metrics.balance import energy_balance
from dcpue.metrics.rolling import RollingCalculator
from dcpue.optimizer.propose import ProposalLog, describe
from dcpue.service import plant
from dcpue.service.alerts import Alert, AlertEngine, Observation
from dcpue.service.api import ApiSources, create_app
from dcpue.service.notify import Dispatcher, build_notifiers
from dcpue.service.telemetry import HealthSnapshot, Telemetry

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_MS = 86_400_000
#: Readings read per call when feeding the calculator from the store.
INGEST_BATCH = 200_000
#: How long cached carbon figures stay valid, in ms of the daemon's clock.
CARBON_TTL_MS = 15 * 60_000
STATE_ALERTS = "service.alerts"
STATE_SCHEDULE = "service.schedule"

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def job_triggers(site: Site) -> dict[str, BaseTrigger]:
    """The daemon's jobs and when they run (intervals aligned to the Unix epoch, i.e. whole
    minutes; daily and monthly jobs in the site's time zone)."""
    s, zone = site.service.schedule, ZoneInfo(site.timezone)
    return {
        "write_back": IntervalTrigger(seconds=s.write_back_every_s, start_date=EPOCH),
        "alerts": IntervalTrigger(seconds=site.service.alerts.evaluate_every_s, start_date=EPOCH),
        "proposals": IntervalTrigger(minutes=s.proposals_every_min, start_date=EPOCH),
        "retrain": CronTrigger(hour=s.retrain_at_hour, minute=0, timezone=zone),
        "report": CronTrigger(day=s.report_day_of_month, hour=0, minute=30, timezone=zone),
        # hourly boundary terms for the fleet report, to the remote sink (docs/fleet.md)
        **({"fleet_publish": IntervalTrigger(hours=1, start_date=EPOCH)}
           if site.collector.remote.url else {}),
    }


class SimScheduler:
    """Runs jobs at their trigger times on a simulated clock, in time order.

    ``next_fire`` (job -> UTC ms) is the persisted position; jobs missing from it start at their
    first fire time after ``start_ms``.
    """

    def __init__(
        self, triggers: dict[str, BaseTrigger], run: Callable[[str, int], Awaitable[None]],
        start_ms: int, next_fire: dict[str, int] | None = None,
    ) -> None:
        self.triggers, self.run = triggers, run
        start = ms_to_datetime(start_ms)
        saved = next_fire or {}
        self.next_fire: dict[str, int] = {}
        for name, trigger in triggers.items():
            first = trigger.get_next_fire_time(None, start)
            self.next_fire[name] = saved.get(name, _ms(first))

    async def advance(self, until_ms: int) -> int:
        """Run every job due at or before ``until_ms``; returns how many runs were made."""
        runs = 0
        while True:
            name = min(self.next_fire, key=lambda n: (self.next_fire[n], n))
            fire = self.next_fire[name]
            if fire > until_ms:
                return runs
            await self.run(name, fire)
            at = ms_to_datetime(fire)
            self.next_fire[name] = _ms(self.triggers[name].get_next_fire_time(at, at))
            runs += 1


def _ms(moment: datetime | None) -> int:
    return 2**62 if moment is None else int(moment.timestamp() * 1000)


@dataclass
class _CarbonCache:
    window: tuple[int, int] | None = None
    figures: dict[str, Figure] | None = None
    computed_ms: int = 0


class Runtime:
    """Live state of one site and the jobs that update it.

    ``clock`` returns the daemon's "now" in UTC ms (wall clock, or the simulated clock in
    fast-forward). ``collector`` supplies ingestion counters when the daemon runs one.
    """

    def __init__(
        self, site: Site, store: Store, clock: Clock, collector: Collector | None = None
    ) -> None:
        self.site, self.store, self.clock, self.collector = site, store, clock, collector
        now = clock()
        self.calculator = RollingCalculator.from_store(site, store, now, clock)
        self.cursor = int(store.execute("SELECT coalesce(max(seq), 0) FROM readings").fetchone()[0])
        self.last_seen: dict[str, int] = {
            str(m): int(t) for m, t in store.execute(
                "SELECT meter, max(ts) FROM readings WHERE meter NOT LIKE 'metric.%' "
                "GROUP BY meter"
            ).fetchall()
        }
        cfg = site.service
        self.engine = AlertEngine(cfg.alerts, site.id, [m.id for m in site.meters], now)
        saved = store.get_state(STATE_ALERTS)
        if saved is not None:
            self.engine.load(saved)
        self.dispatcher = Dispatcher(build_notifiers(
            cfg.notifiers, site.id, cfg.alerts.evaluate_every_s, cfg.public_url
        ))
        self.telemetry = Telemetry(self.health)
        self.model = plant.try_load_model(site)
        self.proposal_log = ProposalLog(store)
        store.execute(
            "CREATE TABLE IF NOT EXISTS service_reports (period VARCHAR PRIMARY KEY, "
            "start_ms BIGINT NOT NULL, end_ms BIGINT NOT NULL, created_ms BIGINT NOT NULL, "
            "report VARCHAR NOT NULL)"
        )
        self._carbon = _CarbonCache()
        self.expected: float | None = None
        self._saved_alerts = saved
        self._stored_seen = -1
        # Write-back rows are buffered and flushed per scheduler round (one store append per
        # fast-forward chunk instead of one per simulated minute).
        self.write_buffer = WriteBuffer(store)
        self.flush_each_write_back = True
        self.calculator.store = self.write_buffer  # type: ignore[assignment]

    # -- ingestion ------------------------------------------------------------------------
    def ingest(self) -> int:
        """Feed readings stored since the last call to the calculator; returns how many."""
        if self.collector is not None:
            stored = self.collector.pipeline.stats.readings_stored
            if stored == self._stored_seen:
                return 0
            self._stored_seen = stored
        total = 0
        while True:
            cols, last = self.store.read_since(self.cursor, INGEST_BATCH)
            if len(cols) == 0:
                return total
            self.cursor = last
            self.calculator.update(cols)
            for meter, ts in zip(cols.meter, cols.ts_ms.tolist(), strict=True):
                if ts > self.last_seen.get(meter, -1) and not meter.startswith("metric."):
                    self.last_seen[meter] = ts
            total += len(cols)

    # -- jobs -----------------------------------------------------------------------------
    async def run_job(self, name: str, now_ms: int) -> None:
        """Run one job at ``now_ms``, timing it; a failing job is logged, never fatal."""
        job = getattr(self, f"job_{name}")
        started = time.perf_counter()
        try:
            await job(now_ms)
        except Exception:
            log.exception("job %s failed at %s", name, ms_to_datetime(now_ms).isoformat())
            self.telemetry.job_runs.labels(name, "error").inc()
        else:
            self.telemetry.job_runs.labels(name, "ok").inc()
        finally:
            self.telemetry.job_seconds.labels(name).observe(time.perf_counter() - started)

    async def run_job_now(self, name: str) -> None:
        """Run one job at the clock's current time (the wall-clock scheduler's entry point)."""
        await self.run_job(name, self.clock())

    async def job_write_back(self, now_ms: int) -> None:
        self.ingest()
        self.calculator.write_back(now_ms)
        if self.flush_each_write_back:
            self.write_buffer.flush()

    async def job_alerts(self, now_ms: int) -> None:
        self.ingest()
        snapshot = self.calculator.snapshot(now_ms)
        drift_fig = snapshot.get(self.site.service.alerts.drift.figure)
        if self.engine.drift_due(now_ms):  # expected PUE is only needed for a drift sample
            self.expected = None
            if self.model is not None and drift_fig is not None and drift_fig.value is not None:
                self.expected = plant.expected_pue(
                    self.model, self.site, self.store, int(drift_fig.start_ms or 0),
                    int(drift_fig.end_ms or 0),
                )
        figures = {k: f.value for k, f in snapshot.items()} | self.meter_values()
        obs = Observation(now_ms, figures, self.expected, self.last_seen)
        changes = self.engine.evaluate(obs)
        for alert in changes:
            log.warning("alert %s %s: %s", alert.status, alert.name, alert.summary)
        self.save_alerts()
        await self.dispatcher.dispatch(changes, list(self.engine.active.values()))

    def meter_values(self) -> dict[str, float | None]:
        """Latest value of each meter a threshold rule names as ``meter:<id>`` (e.g. the
        hottest rack inlet), keyed like the rule's figure."""
        out: dict[str, float | None] = {}
        for rule in self.site.service.alerts.thresholds:
            if rule.figure.startswith(METER_FIGURE):
                latest = self.store.latest(rule.figure.removeprefix(METER_FIGURE))
                out[rule.figure] = None if latest is None else latest.value
        return out

    def save_alerts(self) -> None:
        """Persist the alert engine's state when it changed since the last save."""
        state = self.engine.dump()
        if state != self._saved_alerts:
            self.store.set_state(STATE_ALERTS, state)
            self._saved_alerts = state

    async def job_proposals(self, now_ms: int) -> None:
        if self.model is None:
            self._first_training(now_ms)
            return
        proposal = await asyncio.to_thread(plant.propose_now, self.model, self.site,
                                           self.store, now_ms)
        if proposal is not None:
            log.info("proposal %s: %s", proposal.status, proposal.reason)
            await plant.announce(self.site, proposal)

    async def job_retrain(self, now_ms: int) -> None:
        if not self._enough_history(now_ms):
            return
        model = await asyncio.to_thread(plant.retrain, self.site, self.store, now_ms,
                                        self.site.service.schedule.retrain_days)
        if model is not None:
            self.model = model

    async def job_fleet_publish(self, now_ms: int) -> None:
        """Publish the finalized hourly terms touched since the last pass (dcpue.fleet)."""
        await asyncio.to_thread(publish_job, self.site, self.store)

    async def job_report(self, now_ms: int) -> None:
        """Store the carbon report of the calendar month that just ended."""
        today = ms_to_datetime(now_ms).astimezone(ZoneInfo(self.site.timezone)).date()
        end = today.replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)
        span = self.store.time_range()
        if span is None or span[0] >= _date_ms(end, ZoneInfo(self.site.timezone)):
            return  # no reading in that month
        report = await asyncio.to_thread(site_report, self.site, self.store, start, end)
        account = report.accounts[0]
        self.store.execute(
            "INSERT OR REPLACE INTO service_reports VALUES (?, ?, ?, ?, ?)",
            [account.label, account.start_ms, account.end_ms, now_ms, report.to_json()],
        )

    def _enough_history(self, now_ms: int) -> bool:
        """At least ``first_train_after_days`` of readings are stored, and no PUE drift is
        suspected (a model retrained on faulty data would hide the fault)."""
        if self.engine.drift_suspected():
            log.warning("retraining postponed: PUE drift suspected")
            return False
        span = self.store.time_range()
        need = self.site.service.schedule.first_train_after_days * DAY_MS
        return span is not None and now_ms - span[0] >= need

    def _first_training(self, now_ms: int) -> None:
        """Train once as soon as enough history exists, instead of waiting for the night."""
        if self._enough_history(now_ms):
            self.model = plant.retrain(self.site, self.store, now_ms,
                                       self.site.service.schedule.retrain_days)

    # -- reads for the API and /metrics ---------------------------------------------------
    def figures(self, now_ms: int) -> dict[str, Figure]:
        self.ingest()
        return self.calculator.snapshot(now_ms)

    def carbon(self, now_ms: int) -> dict[str, Figure]:
        """Carbon figures of the current calendar month up to the start of today (site time)."""
        zone = ZoneInfo(self.site.timezone)
        today = ms_to_datetime(now_ms).astimezone(zone).date()
        start = today.replace(day=1) if today.day > 1 else (
            today - timedelta(days=1)).replace(day=1)
        cache = self._carbon
        window = (_date_ms(start, zone), _date_ms(today, zone))
        if cache.window == window and now_ms - cache.computed_ms < CARBON_TTL_MS:
            return cache.figures or {}
        figures = site_report(self.site, self.store, start, today).accounts[0].figures
        self._carbon = _CarbonCache(window, figures, now_ms)
        return figures

    def energy(self, start_ms: int, end_ms: int) -> dict[str, Figure]:
        return energy_balance(self.site, self.store, start_ms, end_ms).figures()

    def proposals(self, limit: int) -> list[dict]:
        return [describe(p) for p in self.proposal_log.list(limit)]

    def alerts(self) -> tuple[list[Alert], list[Alert]]:
        return list(self.engine.active.values()), list(self.engine.history)

    def reports(self) -> list[dict]:
        rows = self.store.execute(
            "SELECT period, start_ms, end_ms, created_ms FROM service_reports ORDER BY start_ms"
        ).fetchall()
        return [dict(zip(("period", "start_ms", "end_ms", "created_ms"), r, strict=True))
                for r in rows]

    def health(self) -> HealthSnapshot:
        now = self.clock()
        firing: dict[str, int] = {}
        for a in self.engine.active.values():
            firing[a.severity] = firing.get(a.severity, 0) + 1
        stats = self.collector.stats() if self.collector is not None else None
        last_seen = dict(self.last_seen)
        for meter, ts in (stats.last_ts_ms.items() if stats else ()):
            last_seen[meter] = max(ts, last_seen.get(meter, ts))
        # The collector counts readings over all its sources together.
        readings_in = {"+".join(stats.sources) or "direct": stats.readings_in} if stats else {}
        name = self.site.service.current_figure
        current = self.calculator.snapshot(now).get(name)
        figures = {} if current is None or current.value is None else {
            name: (current.value, current.unit)
        }
        return HealthSnapshot(
            now_ms=now,
            readings_in=readings_in,
            readings_stored=stats.readings_stored if stats else 0,
            duplicates=stats.duplicates if stats else 0,
            dead_letters=self.store.dead_letter_counts(),
            backlog={"remote": stats.backlog} if stats and stats.backlog is not None else {},
            pending=stats.pending if stats else 0,
            last_seen_ms=last_seen,
            alerts_firing=firing,
            notifications=dict(self.dispatcher.outcomes),
            figures=figures,
            modbus=stats.modbus if stats else (),
        )

    def api_sources(self) -> ApiSources:
        cfg = self.site.service
        return ApiSources(
            site=self.site, store=self.store, registry=self.telemetry.registry,
            now_ms=self.clock, figures=self.figures, alerts=self.alerts, carbon=self.carbon,
            energy=self.energy, proposals=self.proposals, current_figure=cfg.current_figure,
            token=bearer_token(self.site),
        )

    def finish(self, now_ms: int) -> None:
        """Flush on shutdown: feed and write back the last figures, save alert state."""
        self.ingest()
        self.calculator.write_back(now_ms)
        self.write_buffer.flush()
        self.save_alerts()


class WriteBuffer:
    """Collects the calculator's write-back rows; :meth:`flush` appends them in one batch."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.rows: list[Reading] = []

    def append(self, rows: list[Reading]) -> int:
        self.rows.extend(rows)
        return len(rows)

    def flush(self) -> int:
        rows, self.rows = self.rows, []
        return self.store.append(rows) if rows else 0


def _date_ms(day: date, zone: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)


def bearer_token(site: Site) -> str | None:
    """The API token from ``[service] bearer_token`` or the variable ``bearer_token_env`` names."""
    cfg = site.service
    if cfg.bearer_token_env:
        return os.environ.get(cfg.bearer_token_env) or cfg.bearer_token
    return cfg.bearer_token


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the daemon owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def http_server(runtime: Runtime, port: int | None = None) -> uvicorn.Server:
    cfg = runtime.site.service
    config = uvicorn.Config(
        create_app(runtime.api_sources()), host=cfg.host,
        port=cfg.port if port is None else port, log_level="warning", lifespan="off",
    )
    return _QuietServer(config)


def install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def serve_realtime(site: Site, store: Store, stop: asyncio.Event) -> None:
    """Production mode: collector + wall-clock scheduler + HTTP API until ``stop`` is set."""
    collector = Collector(site, store)
    await collector.start()
    runtime = Runtime(site, store, wall_clock_ms, collector)
    scheduler = AsyncIOScheduler(timezone=UTC)
    for name, trigger in job_triggers(site).items():
        scheduler.add_job(
            runtime.run_job_now, trigger, args=[name], id=name,
            coalesce=True, max_instances=1, misfire_grace_time=None,
        )
    scheduler.start()
    server = http_server(runtime)
    api = asyncio.create_task(server.serve(), name="http")
    try:
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)
        server.should_exit = True
        await api
        await collector.stop()
        runtime.finish(wall_clock_ms())
        log.info("daemon stopped cleanly")


def save_schedule(store: Store, scheduler: SimScheduler) -> None:
    store.set_state(STATE_SCHEDULE, json.dumps(scheduler.next_fire))


def load_schedule(store: Store) -> dict[str, int] | None:
    saved = store.get_state(STATE_SCHEDULE)
    return None if saved is None else {k: int(v) for k, v in json.loads(saved).items()}
